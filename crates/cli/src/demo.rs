//! `m2msec demo`: every implemented protocol on loopback, a summary or JSON lines.
//!
//! Exit status: 0 when every run ended as expected — a key established and matching on both
//! ends, or, when more helpers (collab proxies, MIKEY third parties) misbehave than the
//! threshold tolerates (`--faulty` > n − k), a clean failure with a typed error. 1 when a run
//! ended otherwise; 2 for a set-up error.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2msec_node::harness::demo::RunOptions;
use m2msec_node::harness::report::Progress;
use m2msec_node::protocols::{self, DemoFlags};
use m2msec_protocol::link::LinkFaults;

use crate::protocols::{chosen, protocol_parser};

/// `m2msec demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Protocols to run (repeatable; default: every implemented one).
    #[arg(long, value_parser = protocol_parser())]
    protocol: Vec<String>,
    #[command(flatten)]
    flags: DemoFlags,
    /// Seed of every key and role RNG (default: the operating system's RNG).
    #[arg(long)]
    seed: Option<u64>,
    /// Write every datagram to this pcap file (LINKTYPE_RAW, IPv4/UDP headers synthesised);
    /// with several protocols, FILE gets the first and FILE-PROTOCOL.pcap the others.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// One JSON object per protocol run per line on stdout, nothing else.
    #[arg(long)]
    json: bool,
    /// Overall limit per run, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    link: LinkArgs,
}

/// A bad link between the roles (seeded by `--seed`).
#[derive(Debug, Args)]
struct LinkArgs {
    /// Probability that a datagram is lost, in [0, 1) (e.g. 0.1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a datagram arrives twice, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Up to this many later datagrams may overtake a datagram.
    #[arg(long, default_value_t = 0)]
    reorder: u16,
}

impl LinkArgs {
    fn faults(&self) -> Result<LinkFaults> {
        let faults = LinkFaults {
            loss: self.loss,
            duplicate: self.duplicate,
            reorder: self.reorder,
        };
        faults.check().map_err(anyhow::Error::msg)?;
        Ok(faults)
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }
}

pub(crate) fn demo(args: &DemoArgs) -> Result<ExitCode> {
    let names = chosen(&args.protocol);
    // Options are checked for every protocol before any runs.
    for name in &names {
        protocols::check_demo(name, &args.flags)?;
    }
    let faults = args.link.faults()?;
    let rt = crate::protocols::runtime()?;
    let mut all_as_expected = true;
    for (index, protocol) in names.into_iter().enumerate() {
        let run = RunOptions {
            seed: args.seed,
            pcap: args.pcap.as_ref().map(|p| pcap_path(p, index, protocol)),
            timeout: Duration::from_secs(args.timeout.max(1)),
            faults,
        };
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
        bar.set_prefix(protocol.to_owned());
        let report = rt.block_on(protocols::demo(
            protocol,
            &args.flags,
            run,
            &Bar(bar.clone()),
        ))?;
        bar.finish_and_clear();
        all_as_expected &= report.as_expected;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{report}");
        }
    }
    Ok(if all_as_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The capture file of the `index`-th protocol run: FILE itself for the first, then
/// FILE's stem with `-PROTOCOL` appended.
fn pcap_path(file: &Path, index: usize, protocol: &str) -> PathBuf {
    if index == 0 {
        return file.to_path_buf();
    }
    let stem = file.file_stem().map_or_else(
        || "capture".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let ext = file
        .extension()
        .map_or_else(|| "pcap".to_owned(), |e| e.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}-{protocol}.{ext}"))
}
