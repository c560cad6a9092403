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

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2msec_node::collab::demo as collab_demo;
use m2msec_node::e2sec::demo as e2sec_demo;
use m2msec_node::mikey::demo as mikey_demo;
use m2msec_node::relay::demo::{self as relay_demo, RelayReport};
use m2msec_node::report::{Progress, RunReport};
use m2msec_node::sga::demo as sga_demo;
use m2msec_protocol::link::LinkFaults;

use crate::options::{
    E2secArgs, FaultArgs, MikeyArgs, RelayDemoArgs, SgaArgs, ShapeArgs, SuiteArg,
};
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
    mikey: MikeyArgs,
    #[command(flatten)]
    sga: SgaArgs,
    #[command(flatten)]
    e2sec: E2secArgs,
    #[command(flatten)]
    relay: RelayDemoArgs,
    #[command(flatten)]
    faults: FaultArgs,
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
    let protocols = if args.protocol.is_empty() {
        ProtocolArg::all()
    } else {
        args.protocol.clone()
    };
    // Options are checked for every protocol before any runs.
    let mikey_params = if protocols.contains(&ProtocolArg::Mikey) {
        let p = args.mikey.params(&args.shape, Some(&args.faults))?;
        p.check()?;
        Some(p)
    } else {
        None
    };
    let e2sec_group = if protocols.contains(&ProtocolArg::E2sec) {
        Some(args.sga.group.e2sec()?)
    } else {
        None
    };
    let faults = args.link.faults()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let mut all_as_expected = true;
    for (index, protocol) in protocols.into_iter().enumerate() {
        let pcap = args.pcap.as_ref().map(|p| pcap_path(p, index, protocol));
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
                    pcap,
                    timeout: Duration::from_secs(args.timeout.max(1)),
                    faults,
                };
                rt.block_on(collab_demo::run(&opts, &Bar(bar.clone())))?
            }
            ProtocolArg::Mikey => {
                bar.set_prefix("mikey");
                let opts = mikey_demo::DemoOptions {
                    params: mikey_params.clone().unwrap_or_default(),
                    seed: args.seed,
                    pcap,
                    timeout: Duration::from_secs(args.timeout.max(1)),
                    faults,
                };
                rt.block_on(mikey_demo::run(&opts, &Bar(bar.clone())))?
            }
            ProtocolArg::Sga => {
                bar.set_prefix("sga");
                let opts = sga_demo::DemoOptions {
                    group: args.sga.group.sga()?,
                    suite: args.sga.sga_suite.into(),
                    pke: match args.shape.suite {
                        SuiteArg::Modern => m2msec_crypto::pke::PkeSuite::X25519Ecies,
                        SuiteArg::Classic => m2msec_crypto::pke::PkeSuite::RsaOaep2048,
                    },
                    messages: args.sga.messages,
                    restart_gateway: args.sga.restart_gateway,
                    seed: args.seed,
                    pcap,
                    timeout: Duration::from_secs(args.timeout.max(1)),
                    faults,
                };
                rt.block_on(sga_demo::run(&opts, &Bar(bar.clone())))?
            }
            ProtocolArg::E2sec => {
                bar.set_prefix("e2sec");
                let opts = e2sec_demo::DemoOptions {
                    group: e2sec_group.unwrap_or(m2msec_crypto::group::GroupId::Ristretto255),
                    variant: args.e2sec.variant.into(),
                    expired_warrant: args.e2sec.expired_warrant,
                    seed: args.seed,
                    pcap,
                    timeout: Duration::from_secs(args.timeout.max(1)),
                    faults,
                };
                rt.block_on(e2sec_demo::run(&opts, &Bar(bar.clone())))?
            }
            ProtocolArg::Relay => {
                bar.set_prefix("relay");
                let opts = relay_demo::DemoOptions {
                    phases: args.relay.phases(),
                    size: args.relay.relay_size,
                    rotate_messages: args.relay.relay_rotate,
                    seed: args.seed,
                    timeout: Duration::from_secs(args.timeout.max(1)),
                    pcap,
                    faults,
                };
                let report = rt.block_on(relay_demo::run(&opts, &Bar(bar.clone())))?;
                bar.finish_and_clear();
                all_as_expected &= report.run.as_expected;
                if args.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print_relay_summary(&report);
                }
                continue;
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

/// The capture file of the `index`-th protocol run: FILE itself for the first, then
/// FILE's stem with `-PROTOCOL` appended.
fn pcap_path(file: &Path, index: usize, protocol: ProtocolArg) -> PathBuf {
    if index == 0 {
        return file.to_path_buf();
    }
    let name = protocol.name();
    let stem = file.file_stem().map_or_else(
        || "capture".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let ext = file
        .extension()
        .map_or_else(|| "pcap".to_owned(), |e| e.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}-{name}.{ext}"))
}

fn print_summary(r: &RunReport) {
    if r.protocol == "mikey" {
        print_mikey_summary(r);
        return;
    }
    if r.protocol == "sga" {
        print_sga_summary(r);
        return;
    }
    if r.protocol == "e2sec" {
        print_e2sec_summary(r);
        return;
    }
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
    let verdict = verdict(
        r,
        "failed as expected: more proxies misbehaved than the threshold tolerates",
    );
    println!("  outcome          {verdict}");
}

/// The outcome line's verdict on a run; `failed_as_expected` says why a run meant to fail did.
fn verdict(r: &RunReport, failed_as_expected: &'static str) -> &'static str {
    match (r.ok, r.expected_ok) {
        (true, true) => "as expected",
        (false, false) => failed_as_expected,
        (false, true) => "UNEXPECTED FAILURE",
        (true, false) => "UNEXPECTED SUCCESS",
    }
}

fn print_mikey_summary(r: &RunReport) {
    let mode = r.mode.unwrap_or("?");
    let head = if r.ok {
        format!("key established in {:.1} ms", r.wall_ms)
    } else {
        "no key established".to_owned()
    };
    let shape = if mode == "distributed" {
        let sharing = if r.sharing == "shamir" {
            "Shamir"
        } else {
            "Reed-Solomon"
        };
        format!(
            "distributed mode, {} third parties, threshold {}, {sharing}",
            r.proxies, r.threshold
        )
    } else {
        format!("{mode} mode")
    };
    println!("{}: {head}  ({shape})", r.protocol);
    if let Some(s) = &r.session {
        println!("  CSB ID           {s}");
    }
    if let Some(f) = &r.key_fingerprint {
        let agree = if r.session_key_match {
            "initiator and responder agree"
        } else {
            "RESPONDER DIFFERS"
        };
        let verified = if r.verified == Some(true) {
            ", verified by the responder"
        } else {
            ""
        };
        println!("  TEK fingerprint  {f} ({agree}{verified})");
    }
    if !r.participants.is_empty() {
        println!("  parts accepted   {}", r.participants.join(", "));
    }
    if r.faulty > 0 {
        println!(
            "  faulty           {} ({})",
            r.faulty_proxies.join(", "),
            r.fault.unwrap_or("?")
        );
    }
    if let Some(e) = &r.error {
        println!("  error            {e}");
    }
    println!(
        "  wire             {} datagrams, {} bytes (UDP port 2269)",
        r.messages, r.bytes
    );
    let o = &r.device_ops;
    println!(
        "  initiator ops    symmetric {}, hash {}, redundancy {}, asymmetric {}",
        o.symmetric, o.hash, o.redundancy, o.asymmetric
    );
    if let Some(p) = &r.pcap {
        println!("  capture          {p}");
    }
    let verdict = verdict(
        r,
        "failed as expected: more third parties misbehaved than the threshold tolerates",
    );
    println!("  outcome          {verdict}");
}

fn print_sga_summary(r: &RunReport) {
    let head = if r.ok {
        format!(
            "key established and {} messages delivered in {:.1} ms",
            r.delivered.unwrap_or(0),
            r.wall_ms
        )
    } else {
        "failed".to_owned()
    };
    println!(
        "{}: {head}  ({}, {}, server key {})",
        r.protocol,
        r.group.unwrap_or("?"),
        r.suite,
        r.pke.unwrap_or("?")
    );
    if let Some(s) = &r.session {
        println!("  session          {s}");
    }
    if let Some(f) = &r.key_fingerprint {
        let agree = if r.session_key_match {
            "device-i and device-j agree"
        } else {
            "DEVICE-J DIFFERS"
        };
        println!("  key fingerprint  {f} ({agree})");
    }
    println!(
        "  messages         {} sent, {} stored by the server, {} delivered{}",
        r.sent.unwrap_or(0),
        r.stored.unwrap_or(0),
        r.delivered.unwrap_or(0),
        match r.restarted_gateway {
            Some(true) => " (server killed and restarted in between)",
            Some(false) => " (server restart NOT done)",
            None => "",
        }
    );
    if let Some(e) = &r.error {
        println!("  error            {e}");
    }
    println!(
        "  wire             {} datagrams, {} bytes",
        r.messages, r.bytes
    );
    let o = &r.device_ops;
    println!(
        "  device-i ops     symmetric {}, hash {}, redundancy {}, asymmetric {}",
        o.symmetric, o.hash, o.redundancy, o.asymmetric
    );
    if let Some(p) = &r.pcap {
        println!("  capture          {p}");
    }
    println!("  outcome          {}", verdict(r, "failed as expected"));
}

fn print_e2sec_summary(r: &RunReport) {
    let head = if r.ok {
        format!("SK agreed in {:.1} ms", r.wall_ms)
    } else {
        "no session key".to_owned()
    };
    println!(
        "{}: {head}  ({} proxy signatures, {}; warrants from the EPC, server initiates)",
        r.protocol,
        r.variant.unwrap_or("?"),
        r.group.unwrap_or("?"),
    );
    if let Some(f) = &r.key_fingerprint {
        let agree = if r.session_key_match {
            "device and server agree"
        } else {
            "DEVICE DIFFERS"
        };
        println!("  SK fingerprint   {f} ({agree})");
    }
    if let Some(e) = &r.error {
        println!("  error            {e}");
    }
    println!(
        "  wire             {} datagrams, {} bytes",
        r.messages, r.bytes
    );
    let o = &r.device_ops;
    print!(
        "  device ops       symmetric {}, hash {}, redundancy {}, asymmetric {}",
        o.symmetric, o.hash, o.redundancy, o.asymmetric
    );
    match o.group {
        Some(g) => println!("  (T_E {}, T_M {}, T_H {}, T_A {})", g.te, g.tm, g.th, g.ta),
        None => println!(),
    }
    if let Some(p) = &r.pcap {
        println!("  capture          {p}");
    }
    let verdict = match (r.ok, r.expected_ok, r.as_expected) {
        (true, true, _) => "as expected",
        (false, false, true) => "refused as expected: the warrant had expired",
        (false, false, false) => "UNEXPECTED: failed, but not for the expired warrant",
        (false, true, _) => "UNEXPECTED FAILURE",
        (true, false, _) => "UNEXPECTED SUCCESS",
    };
    println!("  outcome          {verdict}");
}

fn print_relay_summary(report: &RelayReport) {
    let r = &report.run;
    let head = if r.ok {
        format!(
            "{} messages streamed through the proxy, every sink got exactly its window, in {:.1} ms",
            r.sent.unwrap_or(0),
            r.wall_ms
        )
    } else {
        "failed".to_owned()
    };
    println!(
        "{}: {head}  (AFGH on BLS12-381, {}, {} messages per section)",
        r.protocol, r.suite, report.rotate_messages
    );
    println!(
        "  storage {}        {} messages stored while no sink was known",
        report.storage_id, report.stored_before_sink
    );
    println!(
        "  sections         {} section keys, each signed by the source and sealed to its epoch key",
        report.sections
    );
    for (i, s) in report.sinks.iter().enumerate() {
        let when = if i == 0 {
            format!(
                "designated after {} messages, forwarded from the beginning",
                s.designated_after
            )
        } else {
            format!(
                "added after {} messages, from section {} on (the one in progress, or the next if its key was gone)",
                s.designated_after, s.first_key_index
            )
        };
        let verdict = if s.matches {
            "each once, as sent"
        } else {
            "NOT WHAT WAS SENT"
        };
        println!(
            "  sink {}           {}: {when}: {} of {} delivered, {verdict}",
            i + 1,
            s.url,
            s.delivered,
            s.expected
        );
    }
    println!(
        "  proxy            {} management messages re-encrypted (AFGH eq. 3); it holds no key that opens them",
        report.reencrypted
    );
    if let Some(e) = &r.error {
        println!("  error            {e}");
    }
    println!(
        "  wire             {} relay messages in and out of the proxy, {} bytes",
        r.messages, r.bytes
    );
    let o = &r.device_ops;
    println!(
        "  source ops       symmetric {}, hash {}, asymmetric {}  (sinks: asymmetric {})",
        o.symmetric, o.hash, o.asymmetric, report.sink_asymmetric_ops
    );
    println!("  outcome          {}", verdict(r, "failed as expected"));
}
