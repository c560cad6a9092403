//! `m2msec bench`: the constrained device's cost against each paper's baseline (collab: the
//! simple scheme; MIKEY: RFC 3830's public-key mode), and the servers' rates, measured on
//! in-memory runs.

use std::process::ExitCode;

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use m2msec_node::collab::bench::figures;
use m2msec_node::collab::deployment::{Params, Suite};
use m2msec_node::e2sec::bench as e2sec_bench;
use m2msec_node::figure::Figure;
use m2msec_node::loss_bench;
use m2msec_node::mikey::bench as mikey_bench;
use m2msec_node::mikey::deployment::Params as MikeyParams;
use m2msec_node::relay::bench as relay_bench;
use m2msec_node::sga::bench as sga_bench;

use crate::options::SuiteArg;
use crate::protocols::ProtocolArg;

/// `m2msec bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// One JSON object per figure per line.
    #[arg(long)]
    json: bool,
    /// Protocols to measure (repeatable; default: every implemented one).
    #[arg(long, value_enum)]
    protocol: Vec<ProtocolArg>,
    /// Sessions per collab suite, exchanges per MIKEY mode, key exchanges per SGA group (at
    /// most 20: a MODP-2048 exponentiation costs milliseconds), E2SEC authentications per cell
    /// of the cost table (at most 3: the counts do not vary).
    #[arg(long, default_value_t = 50)]
    sessions: u32,
    /// Collab suites to measure (repeatable; default: modern and classic).
    #[arg(long, value_enum)]
    suite: Vec<SuiteArg>,
    /// Seed of the deployment.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Relay: messages streamed through the proxy.
    #[arg(long, default_value_t = 2000)]
    relay_messages: u32,
    /// Relay: plaintext bytes per streamed message.
    #[arg(long, default_value_t = 1024)]
    relay_size: usize,
    /// Runs per loss rate of the completion-against-loss table (0 to 30 % loss in each
    /// direction, in memory, 100 ms one way; 0 leaves the table out).
    #[arg(long, default_value_t = 10)]
    loss_runs: u32,
}

pub(crate) fn bench(args: &BenchArgs) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: unoptimised build; measure with `cargo run --release -- bench`");
    }
    let protocols = if args.protocol.is_empty() {
        ProtocolArg::all()
    } else {
        args.protocol.clone()
    };
    for protocol in protocols {
        match protocol {
            ProtocolArg::Collab => {
                let suites: Vec<Suite> = if args.suite.is_empty() {
                    vec![Suite::Modern, Suite::Classic]
                } else {
                    args.suite.iter().map(|s| (*s).into()).collect()
                };
                for suite in suites {
                    let params = Params {
                        suite,
                        ..Params::default()
                    };
                    print_figures(&figures(&params, args.sessions, args.seed)?, args.json)?;
                }
            }
            ProtocolArg::Mikey => {
                let figures =
                    mikey_bench::figures(&MikeyParams::default(), args.sessions, args.seed)?;
                print_figures(&figures, args.json)?;
            }
            ProtocolArg::Sga => {
                let figures = sga_bench::figures(args.sessions.min(20), args.seed)?;
                print_figures(&figures, args.json)?;
            }
            ProtocolArg::E2sec => {
                let table = e2sec_bench::cost_table(args.sessions.min(3), args.seed)?;
                if args.json {
                    print_figures(&e2sec_bench::figures_of(&table), true)?;
                } else {
                    print!("{}", e2sec_bench::render(&table));
                }
            }
            ProtocolArg::Relay => {
                let rates = relay_bench::afgh_rates(Duration::from_millis(400), args.seed)?;
                let mut figures = relay_bench::afgh_figures(&rates);
                let opts = relay_bench::StreamOptions {
                    messages: args.relay_messages.max(1),
                    size: args.relay_size.max(4),
                    proxy_exe: std::env::current_exe().ok(),
                    seed: args.seed,
                    ..relay_bench::StreamOptions::default()
                };
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the tokio runtime")?;
                let stream = rt.block_on(relay_bench::stream_throughput(&opts))?;
                figures.extend(relay_bench::stream_figures(&stream));
                print_figures(&figures, args.json)?;
                if !args.json {
                    println!(
                        "  (AFGH on BLS12-381: re-encryption {:.1}x as fast as encryption; the paper \
                         found 4-8x with its symmetric pairing. Stream: {} of {} messages of {} \
                         bytes through the proxy with durable storage, against raw UDP forwarding)",
                        rates.reencrypt / rates.encrypt,
                        stream.delivered,
                        stream.messages,
                        opts.size
                    );
                }
            }
        }
        let name = protocol.name();
        if args.loss_runs > 0 && loss_bench::PROTOCOLS.contains(&name) {
            let table = loss_bench::measure(name, args.loss_runs, args.seed);
            if args.json {
                print_figures(&loss_bench::figures_of(&table), true)?;
            } else {
                print!("{}", loss_bench::render(&table));
                println!(
                    "  (virtual time of the completed runs; within 10x: share of all runs that \
                     completed within 10 times the lossless time; datagrams: sent per run, \
                     lost ones and retransmissions included; see docs/lossy-links.md)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_figures(figures: &[Figure], json: bool) -> Result<()> {
    for f in figures {
        if json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            let cmp = match (f.baseline, f.ratio) {
                (Some(b), Some(r)) => format!("  (baseline {b:.3}, ratio {r:.3})"),
                (Some(b), None) => format!("  (baseline {b:.3})"),
                _ => String::new(),
            };
            println!("{:<52} {:>14.3} {:<4}{cmp}", f.name, f.value, f.unit);
        }
    }
    Ok(())
}
