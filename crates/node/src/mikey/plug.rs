//! What the `m2msec` commands do for MIKEY: its own flags, and the options its demo,
//! provisioning, bench and trace take from the flags of every command.

use std::path::Path;

use clap::Args;
use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::mikey::ThirdPartyFault;

use super::config::ModeFile;
use super::deployment::Params;
use crate::error::{Error, Result};
use crate::harness::demo::RunOptions;
use crate::harness::flags::{FaultArg, FaultArgs, ShapeArgs};
use crate::harness::provision::Provisioned;
use crate::harness::report::{Progress, RunReport};
use crate::protocols::{BenchFlags, BenchOutput, DemoFlags, ProvisionFlags, TraceFlags};

/// The shape of a MIKEY deployment (with `--threshold` and `--sharing` of [`ShapeArgs`]).
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct MikeyArgs {
    /// MIKEY: how the initiator sends its TGK.
    #[arg(long, value_enum, default_value_t = ModeFile::Distributed)]
    pub mode: ModeFile,
    /// MIKEY distributed mode: number of third parties (n); `--threshold` is k.
    #[arg(long, default_value_t = 5)]
    pub third_parties: u8,
}

/// MIKEY's flags of `m2msec provision`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct ProvisionArgs {
    /// UDP port of every MIKEY role (default: the IANA MIKEY port).
    #[arg(long, default_value_t = super::PORT)]
    pub mikey_port: u16,
}

impl MikeyArgs {
    /// The MIKEY deployment of these flags.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a fault third parties cannot have.
    pub fn params(&self, shape: &ShapeArgs, faults: Option<&FaultArgs>) -> Result<Params> {
        let (faulty, fault) = match faults.and_then(FaultArgs::chosen) {
            Some((n, f)) => {
                let fault = match f {
                    FaultArg::Silent => ThirdPartyFault::Silent,
                    FaultArg::Alter | FaultArg::Forge => ThirdPartyFault::AlterPart,
                    FaultArg::Corrupt => {
                        return Err(Error::Usage(
                            "--fault corrupt is a collab fault; MIKEY third parties are silent \
                             or alter"
                                .into(),
                        ));
                    }
                };
                (n, Some(fault))
            }
            None => (0, None),
        };
        Ok(Params {
            mode: self.mode.into(),
            third_parties: self.third_parties,
            threshold: shape.threshold,
            sharing: shape.sharing.into(),
            faulty,
            fault,
            ..Params::default()
        })
    }
}

fn demo_params(flags: &DemoFlags) -> Result<Params> {
    let params = flags.mikey.params(&flags.shape, Some(&flags.faults))?;
    params.check()?;
    Ok(params)
}

/// Refuses flags the demo cannot run with, before any protocol runs.
///
/// # Errors
///
/// [`Error::Usage`] and the deployment's own checks.
pub fn check_demo(flags: &DemoFlags) -> Result<()> {
    demo_params(flags).map(|_| ())
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
        params: demo_params(flags)?,
        run,
    };
    super::demo::run(&opts, progress).await
}

/// What `m2msec provision` says to do next.
pub const NEXT_STEPS: &str = "mikey: start the daemons, each in its own terminal (the initiator \
                              last; its `mode` line picks psk, pk or distributed):";

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
        params: flags.mikey_shape.params(&flags.shape, None)?,
        port: flags.mikey.mikey_port,
        force,
    };
    super::provision::provision(dir, &opts, rng)
}

/// The figures of `m2msec bench`.
///
/// # Errors
///
/// As [`super::bench::figures`].
pub fn bench(flags: &BenchFlags) -> Result<BenchOutput> {
    let figures = super::bench::figures(&Params::default(), flags.sessions, flags.seed)?;
    Ok(BenchOutput::figures(figures))
}

/// `m2msec trace mikey`: one honest in-memory exchange with `seed`, annotated by the protocol
/// crate (`m2msec_protocol::mikey::trace`, the generator of the committed `vectors/mikey/`) for
/// the mode and shape on the command line: every datagram in hex with its header and payloads
/// named, the opened KEMACs, and the keys both ends derived. Same seed and shape, same bytes.
///
/// # Errors
///
/// Parameter and key generation errors, or an exchange that does not establish a key.
pub fn trace(flags: &TraceFlags, seed: u64) -> Result<String> {
    let params = flags.mikey.params(&flags.shape, Some(&flags.faults))?;
    params.check()?;
    if params.faulty > 0 {
        return Err(Error::Usage(
            "a trace shows an honest exchange; leave out --faulty".into(),
        ));
    }
    Ok(m2msec_protocol::mikey::trace::render(&params.spec(), seed)?)
}
