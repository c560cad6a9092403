//! `m2msec demo`: every implemented protocol on loopback, a summary or JSON lines.
//!
//! Exit status: 0 when every run ended as expected — a key established and matching on both
//! ends, or, when more proxies misbehave than the threshold tolerates (`--faulty` > n − k), a
//! clean failure with a typed error. 1 when a run ended otherwise; 2 for a set-up error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2msec_node::collab::demo as collab_demo;
use m2msec_node::report::{Progress, RunReport};

use crate::options::{FaultArgs, ShapeArgs};
use crate::protocols::ProtocolArg;

/// `m2msec demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Protocols to run (repeatable; default: every implemented one).
    #[arg(long, value_enum)]
    protocol: Vec<ProtocolArg>,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    faults: FaultArgs,
    /// Seed of every key and role RNG (default: the operating system's RNG).
    #[arg(long)]
    seed: Option<u64>,
    /// Write every datagram to this pcap file (LINKTYPE_RAW, IPv4/UDP headers synthesised).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// One JSON object per protocol run per line on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Overall limit per run, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }
}

pub(crate) fn demo(args: &DemoArgs) -> Result<ExitCode> {
    let protocols = if args.protocol.is_empty() {
        ProtocolArg::all()
    } else {
        args.protocol.clone()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let mut all_as_expected = true;
    for protocol in protocols {
        let bar = if args.json || !std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
        } else {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(80));
            b
        };
        let report = match protocol {
            ProtocolArg::Collab => {
                bar.set_prefix("collab");
                let opts = collab_demo::DemoOptions {
                    params: args.shape.params(Some(&args.faults)),
                    seed: args.seed,
                    pcap: args.pcap.clone(),
                    timeout: Duration::from_secs(args.timeout.max(1)),
                };
                rt.block_on(collab_demo::run(&opts, &Bar(bar.clone())))?
            }
        };
        bar.finish_and_clear();
        all_as_expected &= report.as_expected;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_summary(&report);
        }
    }
    Ok(if all_as_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(r: &RunReport) {
    let sharing = if r.sharing == "shamir" {
        "Shamir"
    } else {
        "Reed-Solomon"
    };
    let head = if r.ok {
        format!("key established in {:.1} ms", r.wall_ms)
    } else {
        "no key established".to_owned()
    };
    println!(
        "{}: {head}  ({} suite, {} proxies, threshold {}, {sharing})",
        r.protocol, r.suite, r.proxies, r.threshold
    );
    if let Some(s) = &r.session {
        println!("  session          {s}");
    }
    if let Some(f) = &r.key_fingerprint {
        let agree = if r.session_key_match {
            "client and server agree"
        } else {
            "SERVER DIFFERS"
        };
        println!("  key fingerprint  {f} ({agree})");
    }
    if !r.participants.is_empty() {
        println!("  participants     {}", r.participants.join(", "));
    }
    if r.faulty > 0 {
        let fault = r.fault.unwrap_or("?");
        let among = r
            .faulty_proxies
            .iter()
            .filter(|p| r.participants.contains(p))
            .count();
        let note = if r.ok && among == 0 {
            " - none of them took part"
        } else {
            ""
        };
        println!(
            "  faulty           {} ({fault}){note}",
            r.faulty_proxies.join(", ")
        );
    }
    if let Some(e) = &r.error {
        println!("  error            {e}");
    }
    println!(
        "  wire             {} datagrams, {} bytes",
        r.messages, r.bytes
    );
    let o = &r.device_ops;
    println!(
        "  client ops       symmetric {}, hash {}, redundancy {}, asymmetric {}",
        o.symmetric, o.hash, o.redundancy, o.asymmetric
    );
    if let Some(p) = &r.pcap {
        println!("  capture          {p}");
    }
    let verdict = match (r.ok, r.expected_ok) {
        (true, true) => "as expected",
        (false, false) => {
            "failed as expected: more proxies misbehaved than the threshold tolerates"
        }
        (false, true) => "UNEXPECTED FAILURE",
        (true, false) => "UNEXPECTED SUCCESS",
    };
    println!("  outcome          {verdict}");
}
