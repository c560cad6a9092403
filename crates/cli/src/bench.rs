//! `m2msec bench`: the constrained device's cost against the paper's simple scheme, and the
//! server's handshake rate, measured on in-memory runs.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use m2msec_node::collab::bench::figures;
use m2msec_node::collab::deployment::{Params, Suite};

use crate::options::SuiteArg;

/// `m2msec bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// One JSON object per figure per line.
    #[arg(long)]
    json: bool,
    /// Sessions per suite.
    #[arg(long, default_value_t = 50)]
    sessions: u32,
    /// Suites to measure (repeatable; default: modern and classic).
    #[arg(long, value_enum)]
    suite: Vec<SuiteArg>,
    /// Seed of the deployment.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(crate) fn bench(args: &BenchArgs) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: unoptimised build; measure with `cargo run --release -- bench`");
    }
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
        for f in figures(&params, args.sessions, args.seed)? {
            if args.json {
                println!("{}", serde_json::to_string(&f)?);
            } else {
                let cmp = match (f.baseline, f.ratio) {
                    (Some(b), Some(r)) => format!("  (baseline {b:.3}, ratio {r:.3})"),
                    (Some(b), None) => format!("  (baseline {b:.3})"),
                    _ => String::new(),
                };
                println!("{:<48} {:>14.3} {:<4}{cmp}", f.name, f.value, f.unit);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
