//! `m2msec bench`: the constrained device's cost against each paper's baseline (collab: the
//! simple scheme; MIKEY: RFC 3830's public-key mode), and the servers' rates, measured on
//! in-memory runs.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use m2msec_node::harness::figure::Figure;
use m2msec_node::harness::loss_bench;
use m2msec_node::protocols::{self, BenchFlags};

use crate::protocols::{chosen, protocol_parser};

/// `m2msec bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// One JSON object per figure per line.
    #[arg(long)]
    json: bool,
    /// Protocols to measure (repeatable; default: every implemented one).
    #[arg(long, value_parser = protocol_parser())]
    protocol: Vec<String>,
    #[command(flatten)]
    flags: BenchFlags,
}

pub(crate) fn bench(args: &BenchArgs) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: unoptimised build; measure with `cargo run --release -- bench`");
    }
    for name in chosen(&args.protocol) {
        let out = protocols::bench(name, &args.flags)?;
        match (&out.table, args.json) {
            (Some(table), false) => print!("{table}"),
            _ => print_figures(&out.figures, args.json)?,
        }
        if let (Some(note), false) = (&out.note, args.json) {
            println!("{note}");
        }
        if args.flags.loss_runs > 0 && loss_bench::PROTOCOLS.contains(&name) {
            let table = loss_bench::measure(name, args.flags.loss_runs, args.flags.seed);
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
