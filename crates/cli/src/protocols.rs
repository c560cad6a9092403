//! Dispatch to the protocols: one arm per protocol in each command.
//!
//! A new protocol (SGA, …) adds its roles to [`Role`], its name to [`ProtocolArg`] and
//! one arm to each function here; the node crate holds the protocol's own module.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use m2msec_crypto::rng::OsRng;
use m2msec_node::collab::{self, daemon, provision as collab_provision};
use m2msec_node::driver::{self, shutdown_channel};
use m2msec_node::e2sec::{self, daemon as e2sec_daemon, provision as e2sec_provision};
use m2msec_node::mikey::{self, daemon as mikey_daemon, provision as mikey_provision};
use m2msec_node::relay::{
    config as relay_config, provision as relay_provision, proxy as relay_proxy, sink as relay_sink,
};
use m2msec_node::sga::{self, daemon as sga_daemon, provision as sga_provision};

use crate::options::{FaultArgs, GroupArg, MikeyArgs, ShapeArgs, SuiteArg, VariantArg};

/// The implemented protocols.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ProtocolArg {
    /// Collaborative key establishment through helper proxies (paper 000).
    Collab,
    /// MIKEY (RFC 3830) and its distributed mode over third parties (paper 001).
    Mikey,
    /// The security gateway application: key exchange and store-and-forward through a
    /// server (paper 002).
    Sga,
    /// E2SEC: proxy-signature mutual authentication of an MTC device and an MTC server with
    /// warrants from the EPC (paper 003).
    E2sec,
    /// The secure store-and-forward relay: key streams, AFGH proxy re-encryption, a CoAP
    /// proxy that stores what it cannot read until a sink is designated (paper 004).
    Relay,
}

impl ProtocolArg {
    pub(crate) fn all() -> Vec<Self> {
        vec![
            Self::Collab,
            Self::Mikey,
            Self::Sga,
            Self::E2sec,
            Self::Relay,
        ]
    }

    /// The protocol's name in commands and reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Collab => collab::PROTOCOL,
            Self::Mikey => mikey::PROTOCOL,
            Self::Sga => sga::PROTOCOL,
            Self::E2sec => e2sec::PROTOCOL,
            Self::Relay => relay_config::PROTOCOL,
        }
    }
}

/// Every daemon role.
// The names carry the protocol on purpose: `m2msec run collab-client`, later `mikey-…`.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Role {
    /// The constrained client A: runs key establishments, then exits.
    CollabClient,
    /// A helper proxy Pi.
    CollabProxy,
    /// The trusted entity T.
    CollabTrusted,
    /// The server B.
    CollabServer,
    /// The MIKEY initiator I (constrained device): runs its exchanges, then exits.
    MikeyInitiator,
    /// A MIKEY third party TPi of the distributed mode.
    MikeyThirdParty,
    /// The MIKEY responder R.
    MikeyResponder,
    /// The SGA server (gateway): registrations, key exchanges, durable store-and-forward.
    SgaServer,
    /// An SGA smart device: registers, polls, accepts invitations, serves `m2msec sga`.
    SgaDevice,
    /// The E2SEC EPC: issues warrants to its subscribers.
    E2secEpc,
    /// An E2SEC MTC device: keeps a warrant, answers (or, with --connect, runs) authentications.
    E2secDevice,
    /// An E2SEC MTC server: keeps a warrant, answers (or, with --connect, runs) authentications.
    E2secServer,
    /// The relay's secure store-and-forward proxy: stores what sources send, re-encrypts
    /// section keys to the sinks their owners designate.
    RelayProxy,
    /// A relay data sink: opens what the proxy forwards and writes it out.
    RelaySink,
}

/// `m2msec run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The role to run.
    #[arg(value_enum)]
    role: Role,
    /// The role's config file (see examples/ROLE.toml).
    #[arg(long, short)]
    config: PathBuf,
    /// E2SEC device or server: authenticate with this peer (repeatable; default: the config's
    /// `connect` list), `--count` times each, then exit (status 0 only if all succeeded).
    #[arg(long)]
    connect: Vec<String>,
    /// Client, initiator and E2SEC initiating party only: number of key establishments to run.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Client and initiator only: milliseconds between the end of one run and the start of
    /// the next.
    #[arg(long, default_value_t = 1000)]
    interval: u64,
    /// Client, initiator and E2SEC initiating party: tries per key establishment before it
    /// counts as failed (a timeout on a bad link or a refusal by a peer that was not ready is
    /// tried again after a backoff of 0.5 s, doubled each time).
    #[arg(long, default_value_t = 5)]
    attempts: u32,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// The exit of a daemon that serves until a signal stops it.
fn served(result: m2msec_node::error::Result<()>) -> Result<ExitCode> {
    result.map(|()| ExitCode::SUCCESS).map_err(Into::into)
}

/// Success only if each of the `count` runs (`outcomes` of them ran) established a key.
fn all_established(ok: usize, outcomes: usize, count: u32) -> ExitCode {
    if ok == outcomes && ok == usize::try_from(count).unwrap_or(usize::MAX) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let (stop, shutdown) = shutdown_channel();
        tokio::spawn(async move {
            driver::termination_signal().await;
            tracing::info!("signal received, stopping");
            stop.shutdown();
        });
        match args.role {
            Role::CollabClient => {
                let runs = daemon::ClientRuns {
                    count: args.count.max(1),
                    attempts: args.attempts.max(1),
                    interval: Duration::from_millis(args.interval),
                };
                let outcomes = daemon::run_client(&args.config, runs, shutdown).await?;
                let ok = outcomes
                    .iter()
                    .filter(|o| matches!(o, daemon::Outcome::Established(_)))
                    .count();
                tracing::info!(established = ok, runs = outcomes.len(), "client done");
                Ok(all_established(ok, outcomes.len(), runs.count))
            }
            Role::CollabProxy => served(daemon::run_proxy(&args.config, shutdown).await),
            Role::CollabTrusted => served(daemon::run_trusted(&args.config, shutdown).await),
            Role::CollabServer => served(daemon::run_server(&args.config, shutdown).await),
            Role::MikeyInitiator => {
                let runs = mikey_daemon::InitiatorRuns {
                    count: args.count.max(1),
                    attempts: args.attempts.max(1),
                    interval: Duration::from_millis(args.interval),
                };
                let outcomes = mikey_daemon::run_initiator(&args.config, runs, shutdown).await?;
                let ok = outcomes
                    .iter()
                    .filter(|o| matches!(o, mikey_daemon::Outcome::Established(_)))
                    .count();
                tracing::info!(
                    established = ok,
                    exchanges = outcomes.len(),
                    "initiator done"
                );
                Ok(all_established(ok, outcomes.len(), runs.count))
            }
            Role::MikeyThirdParty => {
                served(mikey_daemon::run_third_party(&args.config, shutdown).await)
            }
            Role::MikeyResponder => {
                served(mikey_daemon::run_responder(&args.config, shutdown).await)
            }
            Role::SgaServer => served(sga_daemon::run_server(&args.config, shutdown).await),
            Role::SgaDevice => served(sga_daemon::run_device(&args.config, shutdown).await),
            Role::E2secEpc => served(e2sec_daemon::run_epc(&args.config, shutdown).await),
            Role::RelayProxy => served(relay_proxy::run_file(&args.config, shutdown).await),
            Role::RelaySink => served(relay_sink::run_file(&args.config, shutdown).await),
            Role::E2secDevice | Role::E2secServer => {
                let role = if args.role == Role::E2secDevice {
                    m2msec_protocol::e2sec::Role::Device
                } else {
                    m2msec_protocol::e2sec::Role::Server
                };
                let connects = e2sec_daemon::Connects {
                    peers: args.connect.clone(),
                    count: args.count.max(1),
                    interval: Duration::from_millis(args.interval),
                    attempts: args.attempts.max(1),
                };
                let outcomes =
                    e2sec_daemon::run_party(&args.config, role, connects, shutdown).await?;
                if outcomes.is_empty() {
                    // Served until stopped; nothing was asked of it.
                    return Ok(ExitCode::SUCCESS);
                }
                let ok = outcomes
                    .iter()
                    .filter(|o| matches!(o, e2sec_daemon::Outcome::Established(_)))
                    .count();
                tracing::info!(
                    established = ok,
                    authentications = outcomes.len(),
                    "authentications done"
                );
                Ok(if ok == outcomes.len() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    })
}

/// `m2msec provision`.
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// UDP port of every collab role (each role has its own 127.0.0.x address).
    #[arg(long, default_value_t = 7400)]
    port: u16,
    /// UDP port of every MIKEY role (default: the IANA MIKEY port).
    #[arg(long, default_value_t = mikey::PORT)]
    mikey_port: u16,
    /// UDP port of the SGA server and devices.
    #[arg(long, default_value_t = sga::PORT)]
    sga_port: u16,
    /// SGA: the group of the devices' key exchanges (ristretto, modp2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    group: GroupArg,
    /// UDP port of every E2SEC role.
    #[arg(long, default_value_t = e2sec::PORT)]
    e2sec_port: u16,
    /// E2SEC: the group of every key (ristretto, ffdh1024, ffdh2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    e2sec_group: GroupArg,
    /// E2SEC: the proxy-signature variant written into both parties' configs.
    #[arg(long, value_enum, default_value_t = VariantArg::Elgamal)]
    variant: VariantArg,
    /// Relay: CoAP port of the proxy and the sinks (each on its own 127.0.0.x address).
    #[arg(long, default_value_t = relay_config::COAP_PORT)]
    relay_port: u16,
    /// Relay: plain-UDP port of the sinks.
    #[arg(long, default_value_t = relay_provision::SINK_UDP_PORT)]
    relay_udp_port: u16,
    /// Protocols to provision (repeatable; default: every implemented one).
    #[arg(long, value_enum)]
    protocol: Vec<ProtocolArg>,
    /// Overwrite an existing deployment.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    mikey: MikeyArgs,
}

pub(crate) fn provision(args: &ProvisionArgs) -> Result<ExitCode> {
    let protocols = if args.protocol.is_empty() {
        ProtocolArg::all()
    } else {
        args.protocol.clone()
    };
    let mut sections = Vec::new();
    for protocol in protocols {
        let (written, last) = match protocol {
            ProtocolArg::Collab => {
                let opts = collab_provision::ProvisionOptions {
                    params: args.shape.params(None),
                    port: args.port,
                    force: args.force,
                };
                let w = collab_provision::provision(&args.dir, &opts, &mut OsRng)?;
                (
                    w,
                    "collab: start the daemons, each in its own terminal (the client last):",
                )
            }
            ProtocolArg::Mikey => {
                let opts = mikey_provision::ProvisionOptions {
                    params: args.mikey.params(&args.shape, None)?,
                    port: args.mikey_port,
                    force: args.force,
                };
                let w = mikey_provision::provision(&args.dir, &opts, &mut OsRng)?;
                (
                    w,
                    "mikey: start the daemons, each in its own terminal (the initiator last; its \
                     `mode` line picks psk, pk or distributed):",
                )
            }
            ProtocolArg::Sga => {
                let opts = sga_provision::ProvisionOptions {
                    port: args.sga_port,
                    pke: match args.shape.suite {
                        SuiteArg::Modern => m2msec_crypto::pke::PkeSuite::X25519Ecies,
                        SuiteArg::Classic => m2msec_crypto::pke::PkeSuite::RsaOaep2048,
                    },
                    group: args.group.sga()?,
                    force: args.force,
                };
                let w = sga_provision::provision(&args.dir, &opts, &mut OsRng)?;
                (
                    w,
                    "sga: start the server and both devices, each in its own terminal, then \
                     drive the devices with `m2msec sga`:",
                )
            }
            ProtocolArg::E2sec => {
                let opts = e2sec_provision::ProvisionOptions {
                    port: args.e2sec_port,
                    group: args.e2sec_group.e2sec()?,
                    variant: args.variant.into(),
                    force: args.force,
                };
                let w = e2sec_provision::provision(&args.dir, &opts, &mut OsRng)?;
                (
                    w,
                    "e2sec: start the EPC and the device, each in its own terminal, then the \
                     server (it authenticates the device and exits 0 on success):",
                )
            }
            ProtocolArg::Relay => {
                let opts = relay_provision::ProvisionOptions {
                    port: args.relay_port,
                    udp_port: args.relay_udp_port,
                    force: args.force,
                };
                let w = relay_provision::provision(&args.dir, &opts, &mut OsRng)?;
                (
                    w,
                    "relay: start the proxy and the sinks, each in its own terminal, then store, \
                     send and forward with `m2msec relay` (examples/relay-source.toml):",
                )
            }
        };
        sections.push((written, last));
    }
    let files: usize = sections.iter().map(|(w, _)| w.files.len()).sum();
    println!("wrote {files} files:");
    for (w, _) in &sections {
        for f in &w.files {
            println!("  {}", f.display());
        }
    }
    for (w, title) in &sections {
        println!();
        println!("{title}");
        for c in &w.commands {
            println!("  {c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `m2msec trace`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The protocol to trace.
    #[arg(value_enum)]
    protocol: ProtocolArg,
    /// Seed of every key and random value of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    mikey: MikeyArgs,
    #[command(flatten)]
    faults: FaultArgs,
}

pub(crate) fn trace(args: &TraceArgs) -> Result<ExitCode> {
    let text = match args.protocol {
        ProtocolArg::Collab => {
            collab::trace::trace(&args.shape.params(Some(&args.faults)), args.seed)?
        }
        ProtocolArg::Mikey => mikey::trace::trace(
            &args.mikey.params(&args.shape, Some(&args.faults))?,
            args.seed,
        )?,
        ProtocolArg::Sga => anyhow::bail!(
            "no annotated trace of SGA yet (`m2msec demo --protocol sga` runs it over UDP)"
        ),
        ProtocolArg::E2sec => anyhow::bail!(
            "no annotated trace of E2SEC yet (`m2msec demo --protocol e2sec` runs it over UDP)"
        ),
        ProtocolArg::Relay => anyhow::bail!(
            "no annotated trace of the relay yet (`m2msec demo --protocol relay` runs it over CoAP)"
        ),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
