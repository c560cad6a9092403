//! `m2msec run`, `provision` and `trace`: the protocols, their roles and what each command
//! does for one protocol all come from the node's registry (`m2msec_node::protocols`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser};
use m2msec_crypto::rng::OsRng;
use m2msec_node::harness::daemon::RoleArgs;
use m2msec_node::protocols::{self, ProvisionFlags, TraceFlags};
use m2msec_node::runtime::driver::{self, shutdown_channel};

/// The implemented protocols, each with its line of help.
pub(crate) fn protocol_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        protocols::PROTOCOLS
            .iter()
            .map(|p| PossibleValue::new(p.name).help(p.about)),
    )
}

/// The protocols a command was given, or every implemented one.
pub(crate) fn chosen(protocols: &[String]) -> Vec<&str> {
    if protocols.is_empty() {
        protocols::PROTOCOLS.iter().map(|p| p.name).collect()
    } else {
        protocols.iter().map(String::as_str).collect()
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

/// The runtime of a command that runs roles or talks to daemons (every core).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
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
    #[command(flatten)]
    flags: ProvisionFlags,
    /// Protocols to provision (repeatable; default: every implemented one).
    #[arg(long, value_parser = protocol_parser())]
    protocol: Vec<String>,
    /// Overwrite an existing deployment.
    #[arg(long)]
    force: bool,
}

pub(crate) fn provision(args: &ProvisionArgs) -> Result<ExitCode> {
    let mut sections = Vec::new();
    for name in chosen(&args.protocol) {
        let written = protocols::provision(name, &args.dir, &args.flags, args.force, &mut OsRng)?;
        let next = protocols::find(name).map_or("", |p| p.next_steps);
        sections.push((written, next));
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
    #[arg(value_parser = protocol_parser())]
    protocol: String,
    /// Seed of every key and random value of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    flags: TraceFlags,
}

pub(crate) fn trace(args: &TraceArgs) -> Result<ExitCode> {
    let text = protocols::trace(&args.protocol, &args.flags, args.seed)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
