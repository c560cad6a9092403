//! What the `m2msec` commands do for collab: its own flags, and the options its demo,
//! provisioning, bench and trace take from the flags of every command.

use std::path::Path;

use clap::Args;
use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::collab::ProxyFault;

use super::deployment::{Params, Suite};
use crate::error::Result;
use crate::harness::demo::RunOptions;
use crate::harness::flags::{FaultArg, FaultArgs, ShapeArgs, SuiteArg};
use crate::harness::provision::Provisioned;
use crate::harness::report::{Progress, RunReport};
use crate::protocols::{BenchFlags, BenchOutput, DemoFlags, ProvisionFlags, TraceFlags};

/// collab's flags of `m2msec provision`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct ProvisionArgs {
    /// UDP port of every collab role (each role has its own 127.0.0.x address).
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
}

/// collab's flags of `m2msec bench`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct BenchArgs {
    /// Collab suites to measure (repeatable; default: modern and classic).
    #[arg(long, value_enum)]
    pub suite: Vec<SuiteArg>,
}

impl From<SuiteArg> for Suite {
    fn from(s: SuiteArg) -> Self {
        match s {
            SuiteArg::Modern => Self::Modern,
            SuiteArg::Classic => Self::Classic,
        }
    }
}

/// The deployment of `shape`, with `faults` if the command takes them.
#[must_use]
pub fn params(shape: &ShapeArgs, faults: Option<&FaultArgs>) -> Params {
    let (faulty, fault) = match faults.and_then(FaultArgs::chosen) {
        Some((n, f)) => (
            n,
            Some(match f {
                FaultArg::Silent => ProxyFault::Silent,
                FaultArg::Forge | FaultArg::Alter => ProxyFault::ForgeFragment,
                FaultArg::Corrupt => ProxyFault::CorruptAnswer,
            }),
        ),
        None => (0, None),
    };
    Params {
        proxies: shape.proxies,
        threshold: shape.threshold,
        sharing: shape.sharing.into(),
        suite: shape.suite.into(),
        aead: shape.aead.into(),
        ots: shape.ots.into(),
        faulty,
        fault,
        ..Params::default()
    }
}

/// One demo run.
///
/// # Errors
///
/// As [`super::demo::run`].
pub async fn demo(
    flags: &DemoFlags,
    run: RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport> {
    let opts = super::demo::DemoOptions {
        params: params(&flags.shape, Some(&flags.faults)),
        run,
    };
    super::demo::run(&opts, progress).await
}

/// What `m2msec provision` says to do next.
pub const NEXT_STEPS: &str =
    "collab: start the daemons, each in its own terminal (the client last):";

/// Writes a local deployment into `dir`.
///
/// # Errors
///
/// As [`super::provision::provision`].
pub fn provision(
    dir: &Path,
    flags: &ProvisionFlags,
    force: bool,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    let opts = super::provision::ProvisionOptions {
        params: params(&flags.shape, None),
        port: flags.collab.port,
        force,
    };
    super::provision::provision(dir, &opts, rng)
}

/// The figures of `m2msec bench`: one set per suite.
///
/// # Errors
///
/// As [`super::bench::figures`].
pub fn bench(flags: &BenchFlags) -> Result<BenchOutput> {
    let suites: Vec<Suite> = if flags.collab.suite.is_empty() {
        vec![Suite::Modern, Suite::Classic]
    } else {
        flags.collab.suite.iter().map(|s| (*s).into()).collect()
    };
    let mut figures = Vec::new();
    for suite in suites {
        let params = Params {
            suite,
            ..Params::default()
        };
        figures.extend(super::bench::figures(&params, flags.sessions, flags.seed)?);
    }
    Ok(BenchOutput::figures(figures))
}

/// `m2msec trace collab`: one in-memory session with `seed`, annotated by the protocol crate
/// (`m2msec_protocol::collab::trace`, the generator of the committed `vectors/collab/`) for the
/// shape on the command line: every datagram in order with sender, receiver, named fields, the
/// plaintext of sealed bodies and hex, then the keys both ends derived. Same seed and shape,
/// same bytes.
///
/// # Errors
///
/// Parameter and key generation errors, or a run that does not establish a key.
pub fn trace(flags: &TraceFlags, seed: u64) -> Result<String> {
    let params = params(&flags.shape, Some(&flags.faults));
    params.check()?;
    Ok(m2msec_protocol::collab::trace::render(
        &params.spec(),
        seed,
    )?)
}
