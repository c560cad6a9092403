//! What the `m2msec` commands do for E2SEC: its own flags, and the options its demo,
//! provisioning and bench take from the flags of every command.

use std::path::Path;

use clap::Args;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::CryptoRng;

use super::config::VariantName;
use crate::error::{Error, Result};
use crate::harness::demo::RunOptions;
use crate::harness::flags::GroupArg;
use crate::harness::provision::Provisioned;
use crate::harness::report::{Progress, RunReport};
use crate::protocols::{BenchFlags, BenchOutput, DemoFlags, ProvisionFlags, TraceFlags};

/// The E2SEC demo's flags (the group is `--group`).
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct DemoArgs {
    /// E2SEC: the proxy-signature variant of both parties.
    #[arg(long, value_enum, default_value_t = VariantName::Elgamal)]
    pub variant: VariantName,
    /// E2SEC: let the server's warrant (valid for one second) expire while its AuthInit is on
    /// the way; the device's refusal is the expected outcome.
    #[arg(long)]
    pub expired_warrant: bool,
}

/// E2SEC's flags of `m2msec provision`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct ProvisionArgs {
    /// UDP port of every E2SEC role.
    #[arg(long, default_value_t = super::PORT)]
    pub e2sec_port: u16,
    /// E2SEC: the group of every key (ristretto, ffdh1024, ffdh2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    pub e2sec_group: GroupArg,
    /// E2SEC: the proxy-signature variant written into both parties' configs.
    #[arg(long, value_enum, default_value_t = VariantName::Elgamal)]
    pub variant: VariantName,
}

/// E2SEC's group of `group`.
///
/// # Errors
///
/// [`Error::Usage`] for a group E2SEC does not run over.
pub fn group(group: GroupArg) -> Result<GroupId> {
    match group {
        GroupArg::Ristretto => Ok(GroupId::Ristretto255),
        GroupArg::Ffdh1024 => Ok(GroupId::Dsa1024_160),
        GroupArg::Ffdh2048 => Ok(GroupId::Dsa2048_256),
        GroupArg::Modp2048 => Err(Error::Usage(
            "--group modp2048 is for SGA; E2SEC runs over ristretto, ffdh1024 or ffdh2048".into(),
        )),
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
        group: group(flags.group.group)?,
        variant: flags.e2sec.variant.into(),
        expired_warrant: flags.e2sec.expired_warrant,
        run,
    };
    super::demo::run(&opts, progress).await
}

/// The annotated trace of one seeded in-memory run (`m2msec_protocol::e2sec::trace`, the
/// generator of the committed `vectors/e2sec/`).
///
/// # Errors
///
/// [`Error::Usage`] for a group E2SEC does not run over or `--expired-warrant` (a trace shows
/// an honest run); the run's own errors.
pub fn trace(flags: &TraceFlags, seed: u64) -> Result<String> {
    if flags.e2sec.expired_warrant {
        return Err(Error::Usage(
            "a trace shows an honest run; leave out --expired-warrant".into(),
        ));
    }
    let spec = m2msec_protocol::e2sec::sim::Spec {
        group: group(flags.group.group)?,
        variant: flags.e2sec.variant.into(),
        ..Default::default()
    };
    Ok(m2msec_protocol::e2sec::trace::render(&spec, seed)?)
}

/// What `m2msec provision` says to do next.
pub const NEXT_STEPS: &str = "e2sec: start the EPC and the device, each in its own terminal, then \
                              the server (it authenticates the device and exits 0 on success):";

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
    let keys = super::provision::Keys {
        group: group(flags.e2sec.e2sec_group)?,
        variant: flags.e2sec.variant.into(),
    };
    let opts = super::provision::ProvisionOptions {
        params: keys,
        port: flags.e2sec.e2sec_port,
        force,
    };
    super::provision::provision(dir, &opts, rng)
}

/// The cost table of `m2msec bench` (at most 3 authentications per cell: the counts do not
/// vary), as figures and, for people, as the table.
///
/// # Errors
///
/// As [`super::bench::cost_table`].
pub fn bench(flags: &BenchFlags) -> Result<BenchOutput> {
    let table = super::bench::cost_table(flags.sessions.min(3), flags.seed)?;
    Ok(BenchOutput {
        figures: super::bench::figures_of(&table),
        table: Some(super::bench::render(&table)),
        note: None,
    })
}
