//! `m2msec relay store|send|forward|rate|remove-sink|pause|resume|status`: the source's commands against a
//! running relay proxy (`m2msec run relay-proxy`), over CoAP. The source's config
//! (examples/relay-source.toml) names the proxy, the keys and the source's store, which keeps
//! the stream position (so a later `send` never reuses a key index or a message id), the
//! storage the proxy created and the forwards made.
//!
//! Exit status: 0 on success, 2 when the config is unusable, the proxy does not answer or
//! refuses (the error says which and why).

use std::io::{BufRead as _, Read as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use m2msec_crypto::rng::OsRng;
use m2msec_node::relay::client::{self, ProxyClient, SendOptions, grant_summary};
use m2msec_node::relay::config::load_source;
use m2msec_node::relay::source::SourceNode;
use m2msec_node::runtime::keyfile;
use m2msec_protocol::Millis;
use m2msec_wire::relay::api::{self, Body as _, Control, ForwardMonitor, Start, StorageMonitor};
use m2msec_wire::relay::parse_sink_url;
use serde_json::json;

/// `m2msec relay`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// The source's config file (see examples/relay-source.toml).
    #[arg(long, short, global = true, default_value = "relay-source.toml")]
    config: PathBuf,
    /// The proxy's CoAP address (default: the config's `proxy`).
    #[arg(long, global = true)]
    proxy: Option<SocketAddr>,
    /// Print the result as one JSON object.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: RelayCommand,
}

/// Where a forward, or a sink added to one, starts in the storage.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum StartArg {
    /// From the oldest stored message: the backlog too.
    Beginning,
    /// From the next message to arrive.
    Now,
}

impl From<StartArg> for Start {
    fn from(s: StartArg) -> Self {
        match s {
            StartArg::Beginning => Self::Beginning,
            StartArg::Now => Self::Now,
        }
    }
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// Create a storage for this source on the proxy (its owner key registered, a UDP port if
    /// the config asks for one) and remember it.
    Store,
    /// Seal messages into the stream and send them to the storage: each line of standard
    /// input (read to its end), each line of --file, or --count generated messages of --size
    /// bytes. Prints what the proxy acknowledged and the 5.03 back-offs waited.
    Send {
        /// Send each non-empty line of this file.
        #[arg(long, conflicts_with = "count")]
        file: Option<PathBuf>,
        /// Send this many generated messages.
        #[arg(long)]
        count: Option<u32>,
        /// Size of each generated message, in bytes.
        #[arg(long, default_value_t = 64, requires = "count")]
        size: usize,
        /// Data messages as plain UDP datagrams to the storage's UDP port (management messages
        /// still over CoAP, acknowledged before their section's data).
        #[arg(long)]
        udp: bool,
        /// CoAP data messages in flight at a time.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Seal each message on its own (§III-B: the data and the owner's signature under the
        /// source's AFGH key of the epoch, no section key, no stream position) and post it,
        /// one at a time, over CoAP.
        #[arg(long, conflicts_with = "udp")]
        individual: bool,
    },
    /// Designate a sink: compute re-encryption keys to its AFGH public key for the epochs
    /// granted and hand them to the proxy (owner-signed), in a new forward or, with --add-to,
    /// in a running one.
    Forward {
        /// The sink's URL: coap://IP:PORT/PATH or udp://IP:PORT.
        #[arg(long)]
        sink: String,
        /// The sink's AFGH public key (PEM "M2MSEC AFGH PUBLIC KEY", its key's FILE.pub).
        #[arg(long)]
        sink_key: PathBuf,
        /// First epoch the sink may read (default: the stream's first epoch, or the current
        /// one before anything was sent).
        #[arg(long)]
        from_epoch: Option<u32>,
        /// Seconds from now the grant still covers (default one day): the last epoch granted
        /// is the one of now + WINDOW.
        #[arg(long, default_value_t = 86_400)]
        window: u64,
        /// Delivery rate limit, messages per second (0: unlimited).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Where in the storage delivery starts.
        #[arg(long, value_enum, default_value_t = StartArg::Beginning)]
        start: StartArg,
        /// Add the sink to this running forward instead of creating one.
        #[arg(long)]
        add_to: Option<u32>,
    },
    /// Change how many messages per second a forward delivers to each sink (0: unlimited).
    Rate {
        /// The forward's id.
        #[arg(long)]
        forward: u32,
        /// Messages per second, 0 for no limit.
        #[arg(long)]
        rate: u32,
    },
    /// Remove a sink from a forward: the proxy stops delivering to it and forgets its position.
    RemoveSink {
        /// The forward's id.
        #[arg(long)]
        forward: u32,
        /// The sink's URL, as it was designated.
        #[arg(long)]
        sink: String,
    },
    /// Pause a forward (the proxy keeps its position).
    Pause {
        /// The forward's id (from `forward` or `status`).
        #[arg(long)]
        forward: u32,
    },
    /// Resume a paused forward.
    Resume {
        /// The forward's id.
        #[arg(long)]
        forward: u32,
    },
    /// The proxy's info, load and throughput, this source's stream, its storage's monitor and
    /// the monitors of its forwards.
    Status {
        /// Window of load and throughput, in seconds.
        #[arg(long, default_value_t = 60)]
        window: u32,
        /// Then observe the storage's and the forwards' monitors (RFC 7641) for this many
        /// seconds, printing each notification.
        #[arg(long)]
        watch: Option<u64>,
    },
}

pub(crate) fn relay(args: &RelayArgs) -> Result<ExitCode> {
    let setup = load_source(&args.config)?;
    let mut rng = OsRng;
    let rt = crate::protocols::runtime()?;
    rt.block_on(async {
        let mut source = SourceNode::open(setup, &mut rng)?;
        let proxy = args.proxy.unwrap_or_else(|| source.proxy());
        let client = ProxyClient::connect(proxy, source.client_config(), None).await?;
        match &args.command {
            RelayCommand::Store => store(args, &source, &client).await,
            RelayCommand::Send {
                file,
                count,
                size,
                udp,
                window,
                individual,
            } => {
                let payloads = payloads(file.as_ref(), *count, *size)?;
                if *individual {
                    return send_individual(args, &mut source, &client, payloads).await;
                }
                send(args, &mut source, &client, payloads, *udp, *window).await
            }
            RelayCommand::Forward {
                sink,
                sink_key,
                from_epoch,
                window,
                rate,
                start,
                add_to,
            } => {
                let grant = Grant {
                    sink,
                    sink_key,
                    from_epoch: *from_epoch,
                    window: *window,
                };
                forward(args, &mut source, &client, &grant, *rate, *start, *add_to).await
            }
            RelayCommand::Rate { forward, rate } => {
                control(args, &source, &client, *forward, &Control::SetRate(*rate)).await
            }
            RelayCommand::RemoveSink { forward, sink } => {
                let remove = Control::RemoveSink(sink.clone());
                control(args, &source, &client, *forward, &remove).await
            }
            RelayCommand::Pause { forward } => {
                control(args, &source, &client, *forward, &Control::Pause).await
            }
            RelayCommand::Resume { forward } => {
                control(args, &source, &client, *forward, &Control::Resume).await
            }
            RelayCommand::Status { window, watch } => {
                let code = status(args, &source, &client, *window).await?;
                let Some(secs) = watch else {
                    return Ok(code);
                };
                let paths = monitor_paths(&source)?;
                // The source's store is not needed while watching: let other commands use it.
                drop(source);
                watch_monitors(args, &client, paths, *secs).await
            }
        }
    })
}

async fn store(args: &RelayArgs, source: &SourceNode, client: &ProxyClient) -> Result<ExitCode> {
    if let Some(old) = source.storage()? {
        eprintln!(
            "note: replacing storage {} on {} recorded earlier",
            old.storage_id, old.proxy
        );
    }
    let record = client.store(source).await?;
    if args.json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        let udp = record
            .udp_port
            .map_or_else(String::new, |p| format!(", plain UDP on port {p}"));
        println!(
            "storage {} created on {} for {}{udp}",
            record.storage_id,
            record.proxy,
            source.url()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The generated message `k` of `size` bytes: its number, then filler.
fn generated(k: u32, size: usize) -> Vec<u8> {
    let mut m = format!("message {k:08} ").into_bytes();
    let mut i = 0usize;
    while m.len() < size {
        m.push(b'a' + u8::try_from((usize::try_from(k).unwrap_or(0) + i) % 26).unwrap_or(0));
        i += 1;
    }
    m.truncate(size);
    m
}

fn payloads(file: Option<&PathBuf>, count: Option<u32>, size: usize) -> Result<Vec<Vec<u8>>> {
    if let Some(n) = count {
        if size == 0 {
            bail!("--size must be at least 1");
        }
        return Ok((0..n).map(|k| generated(k, size)).collect());
    }
    let text = match file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_to_string(&mut s)
                .context("standard input")?;
            s
        }
    };
    let lines: Vec<Vec<u8>> = text
        .as_bytes()
        .lines()
        .map_while(core::result::Result::ok)
        .filter(|l| !l.is_empty())
        .map(String::into_bytes)
        .collect();
    if lines.is_empty() {
        bail!("nothing to send: no non-empty line (use --count N to generate messages)");
    }
    Ok(lines)
}

/// `send --individual`: each payload sealed on its own and posted until the proxy stores it.
async fn send_individual(
    args: &RelayArgs,
    source: &mut SourceNode,
    client: &ProxyClient,
    payloads: Vec<Vec<u8>>,
) -> Result<ExitCode> {
    let Some(storage) = source.storage()? else {
        bail!(
            "no storage recorded for this source: run `m2msec relay store --config {}` first",
            args.config.display()
        );
    };
    let patience = SendOptions::default().patience;
    let mut ids = Vec::with_capacity(payloads.len());
    for p in &payloads {
        let msg =
            source.seal_individual(m2msec_node::runtime::driver::wall_clock(), p, &mut OsRng)?;
        client
            .post_until_stored(storage.storage_id, &msg, patience)
            .await?;
        ids.push(msg.header.individual_id());
    }
    if args.json {
        println!(
            "{}",
            json!({"individual": ids.len(), "ids": ids, "storage_id": storage.storage_id})
        );
    } else {
        println!(
            "sent {} individually protected messages to storage {} on {}: all stored",
            ids.len(),
            storage.storage_id,
            client.proxy()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn send(
    args: &RelayArgs,
    source: &mut SourceNode,
    client: &ProxyClient,
    payloads: Vec<Vec<u8>>,
    udp: bool,
    window: usize,
) -> Result<ExitCode> {
    let Some(storage) = source.storage()? else {
        bail!(
            "no storage recorded for this source: run `m2msec relay store --config {}` first",
            args.config.display()
        );
    };
    let opts = SendOptions {
        udp,
        window,
        ..SendOptions::default()
    };
    let total = payloads.len();
    let mut last_note = std::time::Instant::now();
    let mut progress = |r: &client::SendReport| {
        if !args.json && last_note.elapsed() > Duration::from_secs(2) {
            last_note = std::time::Instant::now();
            eprintln!(
                "  {} of {total} data messages acknowledged or sent",
                r.acknowledged - r.management.min(r.acknowledged) + r.udp_datagrams
            );
        }
    };
    let report = client::send_stream(
        source,
        client,
        &storage,
        payloads,
        opts,
        &mut OsRng,
        &mut client::SendHooks {
            sealed: &mut |_| {},
            acked: &mut progress,
        },
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let secs = (report.elapsed_ms as f64 / 1000.0).max(1e-3);
    let how = if udp {
        format!(
            "{} data as UDP datagrams, {} management messages acknowledged",
            report.udp_datagrams, report.management
        )
    } else {
        format!(
            "{} acknowledged ({} data, {} management)",
            report.acknowledged, report.data, report.management
        )
    };
    println!(
        "sent {} messages ({} bytes of data) to storage {} on {}: {how}",
        report.data + report.management,
        report.data_bytes,
        storage.storage_id,
        storage.proxy
    );
    if report.busy > 0 {
        println!(
            "  the proxy was full or busy {} times (5.03): waited {:.1} s as its Max-Age asked",
            report.busy,
            report.waited_ms as f64 / 1000.0
        );
    }
    println!(
        "  {:.1} s, {:.0} messages/s; stream position saved: next message id {}, next key index {}",
        secs,
        report.data as f64 / secs,
        report.next_message_id,
        report.next_key_index
    );
    Ok(ExitCode::SUCCESS)
}

struct Grant<'a> {
    sink: &'a str,
    sink_key: &'a PathBuf,
    from_epoch: Option<u32>,
    window: u64,
}

async fn forward(
    args: &RelayArgs,
    source: &mut SourceNode,
    client: &ProxyClient,
    grant: &Grant<'_>,
    rate: u32,
    start: StartArg,
    add_to: Option<u32>,
) -> Result<ExitCode> {
    parse_sink_url(grant.sink).map_err(|e| anyhow::anyhow!("--sink {}: {e}", grant.sink))?;
    let key: m2msec_crypto::pre::PublicKey = keyfile::load(grant.sink_key)?;
    let now = m2msec_node::runtime::driver::wall_clock();
    let current = source.epoch_at(now)?;
    let from = match grant.from_epoch {
        Some(e) => e,
        None => source.first_epoch()?.unwrap_or(current).min(current),
    };
    let until_ms = now.0.saturating_add(grant.window.saturating_mul(1000));
    let to = source.epoch_at(Millis(until_ms))?.max(from);
    let sink_grant = source.grant(grant.sink, &key, from..=to)?;
    let (url, first, last) = grant_summary(&sink_grant);
    let forward_id = if let Some(id) = add_to {
        client
            .control(
                source,
                id,
                &Control::AddSink(sink_grant, start.into()),
                &mut OsRng,
            )
            .await?;
        id
    } else {
        let Some(storage) = source.storage()? else {
            bail!(
                "no storage recorded for this source: run `m2msec relay store --config {}` first",
                args.config.display()
            );
        };
        client
            .forward(
                source,
                storage.storage_id,
                vec![sink_grant],
                rate,
                start.into(),
                &mut OsRng,
            )
            .await?
            .forward_id
    };
    if args.json {
        println!(
            "{}",
            json!({"forward_id": forward_id, "sink": url, "first_epoch": first,
                   "last_epoch": last, "added": add_to.is_some()})
        );
    } else {
        let what = if add_to.is_some() {
            format!("sink added to forward {forward_id}")
        } else {
            format!("forward {forward_id} created")
        };
        println!(
            "{what}: {url} may read epochs {first}..={last} ({} re-encryption keys; the current epoch is {current})",
            last - first + 1
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn control(
    args: &RelayArgs,
    source: &SourceNode,
    client: &ProxyClient,
    forward: u32,
    control: &Control,
) -> Result<ExitCode> {
    client.control(source, forward, control, &mut OsRng).await?;
    let (field, what) = match control {
        Control::Pause => ("state", "paused".to_owned()),
        Control::SetRate(0) => ("rate", "unlimited".to_owned()),
        Control::SetRate(rate) => ("rate", format!("{rate} messages/s per sink")),
        Control::RemoveSink(url) => ("removed_sink", url.clone()),
        _ => ("state", "resumed".to_owned()),
    };
    if args.json {
        println!("{}", json!({"forward_id": forward, field: what}));
    } else {
        println!("forward {forward}: {} {what}", field.replace('_', " "));
    }
    Ok(ExitCode::SUCCESS)
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn rate(bps: u64) -> String {
    let b = bps as f64;
    if b >= 1e6 {
        format!("{:.2} Mbit/s", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kbit/s", b / 1e3)
    } else {
        format!("{bps} bit/s")
    }
}

async fn status(
    args: &RelayArgs,
    source: &SourceNode,
    client: &ProxyClient,
    window: u32,
) -> Result<ExitCode> {
    let info = client.info().await?;
    let load = client.load(window).await?;
    let throughput = client.throughput(window).await?;
    let storage = source.storage()?;
    let monitor = match &storage {
        Some(s) => Some(client.storage_monitor(s.storage_id).await?),
        None => None,
    };
    let mut forwards = Vec::new();
    for f in source.forwards()? {
        match client.forward_monitor(f.forward_id).await {
            Ok(m) => forwards.push(m),
            Err(e) => eprintln!("note: forward {}: {e}", f.forward_id),
        }
    }
    let position = source.position();
    let epoch = source.epoch_at(m2msec_node::runtime::driver::wall_clock())?;
    if args.json {
        let forwards: Vec<_> = forwards
            .iter()
            .map(|m| {
                json!({"forward_id": m.forward_id, "storage_id": m.storage_id, "paused": m.paused,
                   "sinks": m.sinks.iter().map(|s| json!({"url": s.url, "delivered": s.delivered,
                   "reencrypted": s.reencrypted, "skipped": s.skipped, "pending": s.pending}))
                   .collect::<Vec<_>>()})
            })
            .collect();
        let value = json!({
            "proxy": client.proxy().to_string(),
            "info": {"capacity": info.capacity, "free": info.free, "storages": info.storages,
                     "forwards": info.forwards},
            "load": {"window_s": load.window_s, "messages_in": load.messages_in,
                     "bytes_in": load.bytes_in, "messages_out": load.messages_out,
                     "bytes_out": load.bytes_out, "rejected_full": load.rejected_full,
                     "cpu_percent": load.cpu_percent},
            "throughput": {"window_s": throughput.window_s, "in_bps": throughput.in_bps,
                           "out_bps": throughput.out_bps,
                           "capacity_bps": throughput.capacity_bps},
            "stream": {"source": source.url(), "stream_id": position.stream_id(),
                       "next_message_id": position.next_message_id(),
                       "next_key_index": position.next_key_index(), "epoch": epoch},
            "storage": monitor.as_ref().map(|m| json!({"storage_id": m.storage_id,
                "stored_messages": m.stored_messages, "stored_bytes": m.stored_bytes,
                "received": m.received, "duplicates": m.duplicates,
                "rejected_full": m.rejected_full, "last_seq": m.last_seq})),
            "forwards": forwards,
        });
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "proxy {}: capacity {}, free {}, {} storage(s), {} forward(s)",
        client.proxy(),
        size(info.capacity),
        size(info.free),
        info.storages,
        info.forwards
    );
    println!(
        "  load over {} s: CPU {}% of a core; in {} messages ({}), out {} messages ({}), {} refused when full",
        load.window_s,
        load.cpu_percent,
        load.messages_in,
        size(load.bytes_in),
        load.messages_out,
        size(load.bytes_out),
        load.rejected_full
    );
    let capacity = match throughput.capacity_bps {
        0 => "not measured yet (nothing forwarded)".to_owned(),
        c => format!("{} per core", rate(c)),
    };
    println!(
        "  throughput over {} s: in {}, out {}; forwarding capacity {capacity}",
        throughput.window_s,
        rate(throughput.in_bps),
        rate(throughput.out_bps)
    );
    println!(
        "source {}: stream {}, next message id {}, next key index {}, current epoch {epoch}",
        source.url(),
        position.stream_id(),
        position.next_message_id(),
        position.next_key_index()
    );
    match &monitor {
        Some(m) => println!(
            "storage {}: {} messages stored ({}), {} received, {} duplicates, {} refused when full",
            m.storage_id,
            m.stored_messages,
            size(m.stored_bytes),
            m.received,
            m.duplicates,
            m.rejected_full
        ),
        None => println!("no storage yet (`m2msec relay store`)"),
    }
    for m in &forwards {
        println!(
            "forward {} (storage {}): {}",
            m.forward_id,
            m.storage_id,
            if m.paused { "paused" } else { "running" }
        );
        for s in &m.sinks {
            println!(
                "  {}: delivered {}, re-encrypted {}, skipped {}, pending {}",
                s.url, s.delivered, s.reencrypted, s.skipped, s.pending
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One notification of a watched monitor, as a line.
fn monitor_line(path: &str, payload: &[u8], json_out: bool) -> String {
    if let Ok(m) = StorageMonitor::from_bytes(payload) {
        if json_out {
            return json!({"monitor": path, "storage_id": m.storage_id,
                "stored_messages": m.stored_messages, "stored_bytes": m.stored_bytes,
                "received": m.received, "duplicates": m.duplicates,
                "rejected_full": m.rejected_full})
            .to_string();
        }
        return format!(
            "{path}: {} stored ({}), {} received, {} duplicates, {} refused when full",
            m.stored_messages,
            size(m.stored_bytes),
            m.received,
            m.duplicates,
            m.rejected_full
        );
    }
    if let Ok(m) = ForwardMonitor::from_bytes(payload) {
        if json_out {
            return json!({"monitor": path, "forward_id": m.forward_id, "paused": m.paused,
                "sinks": m.sinks.iter().map(|s| json!({"url": s.url, "delivered": s.delivered,
                "reencrypted": s.reencrypted, "skipped": s.skipped, "pending": s.pending}))
                .collect::<Vec<_>>()})
            .to_string();
        }
        let sinks: Vec<String> = m
            .sinks
            .iter()
            .map(|s| {
                format!(
                    "{} delivered {} ({} re-encrypted), pending {}",
                    s.url, s.delivered, s.reencrypted, s.pending
                )
            })
            .collect();
        return format!(
            "{path}: {}{}",
            if m.paused { "paused; " } else { "" },
            sinks.join("; ")
        );
    }
    format!("{path}: {} bytes not understood", payload.len())
}

/// The monitors of the source's storage and forwards.
fn monitor_paths(source: &SourceNode) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    if let Some(s) = source.storage()? {
        paths.push(api::path::storage_monitor(s.storage_id));
    }
    for f in source.forwards()? {
        paths.push(api::path::forward_monitor(f.forward_id));
    }
    if paths.is_empty() {
        bail!("nothing to watch: no storage yet (`m2msec relay store`)");
    }
    Ok(paths)
}

/// Observes `paths` for `secs` seconds.
async fn watch_monitors(
    args: &RelayArgs,
    client: &ProxyClient,
    paths: Vec<String>,
    secs: u64,
) -> Result<ExitCode> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for path in paths {
        let mut obs = client.observe(&path).await?;
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Some(n) = obs.next().await {
                match n {
                    Ok(p) => {
                        if tx.send((path.clone(), p.payload)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("note: {path}: {e}");
                        break;
                    }
                }
            }
            let _ = obs.cancel().await;
        });
    }
    drop(tx);
    if !args.json {
        println!("watching for {secs} s:");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some((path, payload))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        println!("{}", monitor_line(&path, &payload, args.json));
    }
    tasks.abort_all();
    Ok(ExitCode::SUCCESS)
}
