//! Dispatch to the protocols: one arm per protocol in each command.
//!
//! A new protocol (SGA, …) adds its roles to [`Role`], its name to [`ProtocolArg`] and
//! one arm to each function here; the node crate holds the protocol's own module.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, ValueEnum};
use m2msec_crypto::rng::OsRng;
use m2msec_node::collab::{self, provision as collab_provision};
use m2msec_node::daemon::RoleArgs;
use m2msec_node::driver::{self, shutdown_channel};
use m2msec_node::e2sec::{self, provision as e2sec_provision};
use m2msec_node::mikey::{self, provision as mikey_provision};
use m2msec_node::protocols;
use m2msec_node::relay::{config as relay_config, provision as relay_provision};
use m2msec_node::sga::{self, provision as sga_provision};

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

/// `m2msec run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The role to run.
    #[arg(value_parser = role_parser())]
    role: String,
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

/// The roles of every protocol, each with its line of help.
fn role_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        protocols::roles().map(|(_, r)| PossibleValue::new(r.name).help(r.about)),
    )
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
        let role_args = RoleArgs {
            config: args.config.clone(),
            connect: args.connect.clone(),
            count: args.count,
            interval: Duration::from_millis(args.interval),
            attempts: args.attempts,
        };
        let exit = protocols::run_role(&args.role, &role_args, shutdown).await?;
        Ok(if exit.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
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
