//! What the `m2msec` commands do for SGA: its own flags, and the options its demo,
//! provisioning and bench take from the flags of every command.

use std::path::Path;

use clap::Args;
use m2msec_crypto::rng::CryptoRng;

use super::config::{GroupName, SuiteName};
use crate::error::{Error, Result};
use crate::harness::demo::RunOptions;
use crate::harness::flags::GroupArg;
use crate::harness::provision::Provisioned;
use crate::harness::report::{Progress, RunReport};
use crate::protocols::{BenchFlags, BenchOutput, DemoFlags, ProvisionFlags, TraceFlags};

crate::runtime::config::config_names! {
    /// SGA lightweight suites on the command line (their config names are aliases).
    pub enum SgaSuiteArg for SuiteName {
        /// AES-128-CCM with an 8-byte tag.
        #[value(alias = "aes-128-ccm8")]
        "ccm" => Ccm = Aes128Ccm8,
        /// ChaCha20-Poly1305.
        #[value(alias = "chacha20-poly1305")]
        "chacha" => Chacha = ChaCha20Poly1305,
        /// Ascon-AEAD128.
        #[value(alias = "ascon-128")]
        "ascon" => Ascon = Ascon128,
    }
}

/// The SGA demo's flags (the group is `--group`; the server's public-key encryption follows
/// `--suite`: modern = X25519, classic = RSA-OAEP-2048).
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct DemoArgs {
    /// SGA: the lightweight suite the devices negotiate.
    #[arg(long, value_enum, default_value_t = SgaSuiteArg::Ccm)]
    pub sga_suite: SgaSuiteArg,
    /// SGA: messages device-i sends device-j through the server.
    #[arg(long, default_value_t = 3)]
    pub messages: u32,
    /// SGA: kill the server (abort its task) after the messages were acknowledged and start a
    /// new one from its store before device-j fetches them.
    #[arg(long)]
    pub restart_gateway: bool,
}

/// SGA's flags of `m2msec provision`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct ProvisionArgs {
    /// UDP port of the SGA server and devices.
    #[arg(long, default_value_t = super::PORT)]
    pub sga_port: u16,
    /// SGA: the group of the devices' key exchanges (ristretto, modp2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    pub group: GroupArg,
}

/// SGA's group of `group`.
///
/// # Errors
///
/// [`Error::Usage`] for a group SGA does not run over.
pub fn group(group: GroupArg) -> Result<GroupName> {
    match group {
        GroupArg::Ristretto => Ok(GroupName::Ristretto255),
        GroupArg::Modp2048 => Ok(GroupName::Modp2048),
        GroupArg::Ffdh1024 | GroupArg::Ffdh2048 => Err(Error::Usage(
            "--group ffdh1024|ffdh2048 is for E2SEC; SGA runs over ristretto or modp2048".into(),
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
        suite: flags.sga.sga_suite.into(),
        pke: flags.shape.suite.pke(),
        messages: flags.sga.messages,
        restart_gateway: flags.sga.restart_gateway,
        run,
    };
    super::demo::run(&opts, progress).await
}

/// `m2msec trace sga`: one honest in-memory run with `seed` over `--group`, annotated by the
/// protocol crate (`m2msec_protocol::sga::trace`, the generator of the committed
/// `vectors/sga/`): registrations, negotiation, key exchange and one stored and forwarded
/// message, every sealed body opened, and the session key at both devices. Same seed and
/// group, same bytes.
///
/// # Errors
///
/// [`Error::Usage`] for a group SGA does not run over; the run's own errors.
pub fn trace(flags: &TraceFlags, seed: u64) -> Result<String> {
    let spec = m2msec_protocol::sga::sim::Spec {
        group: group(flags.group.group)?.into(),
        ..Default::default()
    };
    Ok(m2msec_protocol::sga::trace::render(&spec, seed)?)
}

/// What `m2msec provision` says to do next.
pub const NEXT_STEPS: &str = "sga: start the server and both devices, each in its own terminal, \
                              then drive the devices with `m2msec sga`:";

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
        port: flags.sga.sga_port,
        pke: flags.shape.suite.pke(),
        group: group(flags.sga.group)?,
        force,
    };
    super::provision::provision(dir, &opts, rng)
}

/// The figures of `m2msec bench` (at most 20 key exchanges per group: a MODP-2048
/// exponentiation costs milliseconds).
///
/// # Errors
///
/// As [`super::bench::figures`].
pub fn bench(flags: &BenchFlags) -> Result<BenchOutput> {
    let figures = super::bench::figures(flags.sessions.min(20), flags.seed)?;
    Ok(BenchOutput::figures(figures))
}
