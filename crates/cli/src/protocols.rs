//! Dispatch to the protocols: one arm per protocol in each command.
//!
//! A new protocol (MIKEY, SGA, …) adds its roles to [`Role`], its name to [`ProtocolArg`] and
//! one arm to each function here; the node crate holds the protocol's own module.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use m2msec_crypto::rng::OsRng;
use m2msec_node::collab::{self, daemon, provision as collab_provision};
use m2msec_node::driver::{self, shutdown_channel};

use crate::options::{FaultArgs, ShapeArgs};

/// The implemented protocols.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ProtocolArg {
    /// Collaborative key establishment through helper proxies (paper 000).
    Collab,
}

impl ProtocolArg {
    pub(crate) fn all() -> Vec<Self> {
        vec![Self::Collab]
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
    /// Client only: number of key establishments to run.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Client only: milliseconds between the end of one run and the start of the next.
    #[arg(long, default_value_t = 1000)]
    interval: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
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
                    interval: Duration::from_millis(args.interval),
                };
                let outcomes = daemon::run_client(&args.config, runs, shutdown).await?;
                let ok = outcomes
                    .iter()
                    .filter(|o| matches!(o, daemon::Outcome::Established(_)))
                    .count();
                tracing::info!(established = ok, runs = outcomes.len(), "client done");
                Ok(
                    if ok == outcomes.len()
                        && ok == usize::try_from(runs.count).unwrap_or(usize::MAX)
                    {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    },
                )
            }
            Role::CollabProxy => daemon::run_proxy(&args.config, shutdown)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into),
            Role::CollabTrusted => daemon::run_trusted(&args.config, shutdown)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into),
            Role::CollabServer => daemon::run_server(&args.config, shutdown)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into),
        }
    })
}

/// `m2msec provision`.
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// UDP port of every role (each role has its own 127.0.0.x address).
    #[arg(long, default_value_t = 7400)]
    port: u16,
    /// Overwrite an existing deployment.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    shape: ShapeArgs,
}

pub(crate) fn provision(args: &ProvisionArgs) -> Result<ExitCode> {
    let opts = collab_provision::ProvisionOptions {
        params: args.shape.params(None),
        port: args.port,
        force: args.force,
    };
    let written = collab_provision::provision(&args.dir, &opts, &mut OsRng)?;
    println!("wrote {} files:", written.files.len());
    for f in &written.files {
        println!("  {}", f.display());
    }
    println!();
    println!("start the daemons, each in its own terminal (the client last):");
    for c in &written.commands {
        println!("  {c}");
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
    faults: FaultArgs,
}

pub(crate) fn trace(args: &TraceArgs) -> Result<ExitCode> {
    match args.protocol {
        ProtocolArg::Collab => {
            let text = collab::trace::trace(&args.shape.params(Some(&args.faults)), args.seed)?;
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
