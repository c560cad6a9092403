//! The `m2msec` command: daemons, demo, provisioning, traces and benchmarks.
//!
//! Every protocol plugs in through [`protocols`]: `run` dispatches on the role's protocol
//! prefix (`collab-…`, `mikey-…`, `sga-…`, `e2sec-…`, `relay-…`), `demo`, `provision`, `trace` and `bench` on the protocol
//! name.
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod keygen;
mod protocols;
mod relay;
mod sga;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// End-to-end security for machine-to-machine traffic between unequal peers.
#[derive(Debug, Parser)]
#[command(name = "m2msec", version, about, long_about = None)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one daemon (`m2msec run --help` lists the roles of every protocol).
    ///
    /// The collab client and the MIKEY initiator run their key establishments and exit (status 0
    /// only if all succeeded); the others serve until SIGINT or SIGTERM.
    Run(protocols::RunArgs),
    /// Make one key file (and its public part FILE.pub).
    Keygen(keygen::KeygenArgs),
    /// Write keys and one config per role for a whole local deployment on 127.0.0.x.
    Provision(protocols::ProvisionArgs),
    /// Run a whole deployment on loopback over real UDP and summarise each protocol run.
    Demo(demo::DemoArgs),
    /// Print a deterministic annotated trace of one run (in memory, seeded).
    Trace(protocols::TraceArgs),
    /// Measure the constrained device's cost against the paper's baseline, and server rates.
    Bench(bench::BenchArgs),
    /// Commands to a running sga-device daemon: register, invite, send, inbox, status.
    Sga(sga::SgaArgs),
    /// A relay source's commands against a running relay proxy: store, send, forward, pause,
    /// resume, status.
    Relay(relay::RelayArgs),
}

fn init_logging(verbose: u8, default: &str) {
    let level = match verbose {
        0 => default,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs redirected to files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) | Command::Provision(_) => "info",
        _ => "off",
    };
    init_logging(cli.verbose, default_level);
    match m2msec_node::runtime::keylog::install_from_env() {
        Ok(None) => {}
        Ok(Some(path)) => eprintln!(
            "warning: {} is set: every secret of this run is written to {}",
            m2msec_node::runtime::keylog::ENV,
            path.display()
        ),
        Err(e) => {
            eprintln!("error: {}: {e}", m2msec_node::runtime::keylog::ENV);
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Run(args) => protocols::run(&args),
        Command::Keygen(args) => keygen::keygen(&args),
        Command::Provision(args) => protocols::provision(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::Trace(args) => protocols::trace(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Sga(args) => sga::sga(&args),
        Command::Relay(args) => relay::relay(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text its parent already
/// shows: the node crate's errors embed their source in their own message (so that a log line
/// with only `Display` is complete), and anyhow's `{:#}` would print it twice.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap refuses a command whose flattened flag structs share a group name, but only in
    /// debug builds (a panic at parse time) and the tests run in release: checked here instead.
    #[test]
    fn argument_groups_are_unique_in_every_command() {
        fn check(cmd: &clap::Command) {
            let mut seen = std::collections::HashSet::new();
            for group in cmd.get_groups() {
                let id = group.get_id();
                assert!(
                    seen.insert(id.clone()),
                    "{}: group {id} twice",
                    cmd.get_name()
                );
            }
            cmd.get_subcommands().for_each(check);
        }
        check(&super::Cli::command());
    }
}
