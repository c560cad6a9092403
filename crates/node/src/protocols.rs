//! The registry: the one place that names every protocol. A protocol plugs in here with its
//! entry in [`PROTOCOLS`], its arm in each dispatch below and its [`Detail`]; the CLI takes the
//! protocols, their roles and what each command does from here.

use core::fmt;
use std::path::Path;

use clap::Args;
use m2msec_crypto::rng::CryptoRng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::harness::daemon::{Exit, RoleArgs, RoleInfo};
use crate::harness::demo::RunOptions;
use crate::harness::figure::Figure;
use crate::harness::flags::{FaultArgs, GroupArgs, ShapeArgs};
use crate::harness::provision::Provisioned;
use crate::harness::report::{Progress, RunReport, Summary};
use crate::runtime::driver::Shutdown;
use crate::{collab, e2sec, mikey, relay, sga};

/// One protocol as the commands see it.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    /// Its name in commands and reports.
    pub name: &'static str,
    /// One line of `--help`.
    pub about: &'static str,
    /// Its daemons for `m2msec run`.
    pub roles: &'static [RoleInfo],
    /// What `m2msec provision` says to do with what it wrote.
    pub next_steps: &'static str,
}

/// Every implemented protocol, in the order `m2msec demo` runs them.
pub const PROTOCOLS: [Protocol; 5] = [
    Protocol {
        name: collab::PROTOCOL,
        about: collab::ABOUT,
        roles: collab::ROLES,
        next_steps: collab::plug::NEXT_STEPS,
    },
    Protocol {
        name: mikey::PROTOCOL,
        about: mikey::ABOUT,
        roles: mikey::ROLES,
        next_steps: mikey::plug::NEXT_STEPS,
    },
    Protocol {
        name: sga::PROTOCOL,
        about: sga::ABOUT,
        roles: sga::ROLES,
        next_steps: sga::plug::NEXT_STEPS,
    },
    Protocol {
        name: e2sec::PROTOCOL,
        about: e2sec::ABOUT,
        roles: e2sec::ROLES,
        next_steps: e2sec::plug::NEXT_STEPS,
    },
    Protocol {
        name: relay::PROTOCOL,
        about: relay::ABOUT,
        roles: relay::ROLES,
        next_steps: relay::plug::NEXT_STEPS,
    },
];

/// The protocol named `name`.
#[must_use]
pub fn find(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.name == name)
}

/// Every daemon role of every protocol, with its protocol.
pub fn roles() -> impl Iterator<Item = (&'static Protocol, &'static RoleInfo)> {
    PROTOCOLS
        .iter()
        .flat_map(|p| p.roles.iter().map(move |r| (p, r)))
}

/// Runs the daemon `role` until it is done or `shutdown` fires.
///
/// # Errors
///
/// [`Error::Usage`] for an unknown role; the role's own errors.
pub async fn run_role(role: &str, args: &RoleArgs, shutdown: Shutdown) -> Result<Exit> {
    let Some((protocol, _)) = roles().find(|(_, r)| r.name == role) else {
        return Err(Error::Usage(format!("{role}: no such role")));
    };
    match protocol.name {
        collab::PROTOCOL => collab::daemon::run_role(role, args, shutdown).await,
        mikey::PROTOCOL => mikey::daemon::run_role(role, args, shutdown).await,
        sga::PROTOCOL => sga::daemon::run_role(role, args, shutdown).await,
        e2sec::PROTOCOL => e2sec::daemon::run_role(role, args, shutdown).await,
        relay::PROTOCOL => relay::run_role(role, args, shutdown).await,
        other => Err(Error::Usage(format!("{other}: no daemons"))),
    }
}

/// The flags of `m2msec demo`, each protocol's own and those several read.
#[derive(Clone, Debug, Args)]
pub struct DemoFlags {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mikey: mikey::plug::MikeyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub group: GroupArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sga: sga::plug::DemoArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub e2sec: e2sec::plug::DemoArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub relay: relay::plug::DemoArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub faults: FaultArgs,
}

/// Refuses demo flags `protocol` cannot run with (checked for every chosen protocol before
/// any runs).
///
/// # Errors
///
/// [`Error::Usage`] and the protocol's own checks.
pub fn check_demo(protocol: &str, flags: &DemoFlags) -> Result<()> {
    match protocol {
        mikey::PROTOCOL => mikey::plug::check_demo(flags),
        sga::PROTOCOL => flags.group.check(sga::plug::group),
        e2sec::PROTOCOL => flags.group.check(e2sec::plug::group),
        _ => Ok(()),
    }
}

/// One demo run of `protocol`: its whole deployment on loopback.
///
/// # Errors
///
/// Set-up errors; a run that fails is a report with `ok: false`.
pub async fn demo(
    protocol: &str,
    flags: &DemoFlags,
    run: RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport> {
    match protocol {
        collab::PROTOCOL => collab::plug::demo(flags, run, progress).await,
        mikey::PROTOCOL => mikey::plug::demo(flags, run, progress).await,
        sga::PROTOCOL => sga::plug::demo(flags, run, progress).await,
        e2sec::PROTOCOL => e2sec::plug::demo(flags, run, progress).await,
        relay::PROTOCOL => relay::plug::demo(flags, run, progress).await,
        other => Err(Error::Usage(format!("{other}: no such protocol"))),
    }
}

/// The flags of `m2msec provision`.
#[derive(Clone, Debug, Args)]
pub struct ProvisionFlags {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub collab: collab::plug::ProvisionArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mikey: mikey::plug::ProvisionArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sga: sga::plug::ProvisionArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub e2sec: e2sec::plug::ProvisionArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub relay: relay::plug::ProvisionArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mikey_shape: mikey::plug::MikeyArgs,
}

/// Writes `protocol`'s keys and one config per role into `dir`.
///
/// # Errors
///
/// As the protocol's provisioning.
pub fn provision(
    protocol: &str,
    dir: &Path,
    flags: &ProvisionFlags,
    force: bool,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    match protocol {
        collab::PROTOCOL => collab::plug::provision(dir, flags, force, rng),
        mikey::PROTOCOL => mikey::plug::provision(dir, flags, force, rng),
        sga::PROTOCOL => sga::plug::provision(dir, flags, force, rng),
        e2sec::PROTOCOL => e2sec::plug::provision(dir, flags, force, rng),
        relay::PROTOCOL => relay::plug::provision(dir, flags, force, rng),
        other => Err(Error::Usage(format!("{other}: no such protocol"))),
    }
}

/// The flags of `m2msec trace`.
#[derive(Clone, Debug, Args)]
pub struct TraceFlags {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mikey: mikey::plug::MikeyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub group: GroupArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub e2sec: e2sec::plug::DemoArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub faults: FaultArgs,
}

/// The annotated trace of one seeded in-memory run of `protocol`.
///
/// # Errors
///
/// [`Error::Usage`] for a protocol without one.
pub fn trace(protocol: &str, flags: &TraceFlags, seed: u64) -> Result<String> {
    match protocol {
        collab::PROTOCOL => collab::plug::trace(flags, seed),
        mikey::PROTOCOL => mikey::plug::trace(flags, seed),
        e2sec::PROTOCOL => e2sec::plug::trace(flags, seed),
        sga::PROTOCOL => sga::plug::trace(flags, seed),
        relay::PROTOCOL => Ok(m2msec_protocol::relay::trace::render(
            &m2msec_protocol::relay::trace::Spec::default(),
            seed,
        )?),
        other => Err(Error::Usage(format!("{other}: no such protocol"))),
    }
}

/// The flags of `m2msec bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchFlags {
    /// Sessions per collab suite, exchanges per MIKEY mode, key exchanges per SGA group (at
    /// most 20: a MODP-2048 exponentiation costs milliseconds), E2SEC authentications per cell
    /// of the cost table (at most 3: the counts do not vary).
    #[arg(long, default_value_t = 50)]
    pub sessions: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub collab: collab::plug::BenchArgs,
    /// Seed of the deployment.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub relay: relay::plug::BenchArgs,
    /// Runs per loss rate of the completion-against-loss table (0 to 30 % loss in each
    /// direction, in memory, 100 ms one way; 0 leaves the table out).
    #[arg(long, default_value_t = 10)]
    pub loss_runs: u32,
}

/// What `m2msec bench` measured for one protocol.
#[derive(Clone, Debug, Default)]
pub struct BenchOutput {
    /// Every figure (the JSON lines).
    pub figures: Vec<Figure>,
    /// For people, in place of the figure lines: a table that says more.
    pub table: Option<String>,
    /// For people, after the figures: what they compare.
    pub note: Option<String>,
}

impl BenchOutput {
    /// Figures alone.
    #[must_use]
    pub fn figures(figures: Vec<Figure>) -> Self {
        Self {
            figures,
            ..Self::default()
        }
    }
}

/// Measures `protocol`.
///
/// # Errors
///
/// As the protocol's bench.
pub fn bench(protocol: &str, flags: &BenchFlags) -> Result<BenchOutput> {
    match protocol {
        collab::PROTOCOL => collab::plug::bench(flags),
        mikey::PROTOCOL => mikey::plug::bench(flags),
        sga::PROTOCOL => sga::plug::bench(flags),
        e2sec::PROTOCOL => e2sec::plug::bench(flags),
        relay::PROTOCOL => relay::plug::bench(flags),
        other => Err(Error::Usage(format!("{other}: no such protocol"))),
    }
}

/// What only one protocol reports about a demo run; its keys sit beside the common ones in the
/// run's JSON object.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// collab reports nothing beyond the common fields and its helpers.
    Collab(collab::report::Detail),
    /// MIKEY: its mode and the responder's verification.
    Mikey(mikey::report::Detail),
    /// SGA: the group, the gateway's key and the stored messages.
    Sga(sga::report::Detail),
    /// E2SEC: the group and the proxy-signature variant.
    E2sec(e2sec::report::Detail),
    /// The relay: the storage, its sections and each sink's window.
    Relay(relay::report::Detail),
}

impl Summary for Detail {
    fn summary(&self, run: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Collab(d) => d.summary(run, f),
            Self::Mikey(d) => d.summary(run, f),
            Self::Sga(d) => d.summary(run, f),
            Self::E2sec(d) => d.summary(run, f),
            Self::Relay(d) => d.summary(run, f),
        }
    }
}
