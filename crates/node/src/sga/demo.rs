//! `m2msec demo --protocol sga`: the server and two devices, each a tokio task with its own UDP
//! socket on 127.0.0.1 (ephemeral ports), keys generated in memory, the server's store a redb
//! file in a temporary directory. Registration of both devices, negotiation and key exchange
//! started by device-i, then `messages` messages from device-i to device-j through the server.
//!
//! With `restart_gateway`, device-j goes offline (closes its socket) before the messages are
//! sent; once the server has acknowledged every one (so each is durable), the server task is
//! aborted — dropped without any shutdown path, as a crash would — and a new server task is
//! started on the same address from the same store; device-j comes back online, polls, and
//! must receive every message exactly once and in order.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_protocol::sga::sim::{self, Spec};
use m2msec_protocol::sga::{Device, Noted, Server, ServerConfig, Timeouts};
use m2msec_protocol::{Endpoint, OpCounts};
use m2msec_store::{MemoryStore, RedbStore, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{GroupName, SuiteName};
use super::control::{Request, Response, ask, command};
use super::daemon::{Command, DeviceNode, ServerHandler, server_from_store};

use crate::error::{Error, Result};
use crate::harness::demo::{Deployment, RunOptions, joined, millis};
use crate::harness::report::{Detail, Progress, RunReport};
use crate::runtime::driver;

/// The invited device (the second of the deployment), recipient of the messages.
pub const DEVICE_J: &str = "device-j";

/// Options of one SGA demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The key-exchange group.
    pub group: GroupName,
    /// The suite device-i negotiates.
    pub suite: SuiteName,
    /// The server's public-key suite (E_PK^G and F_G).
    pub pke: PkeSuite,
    /// Messages device-i sends to device-j.
    pub messages: u32,
    /// Kill and restart the server between sending and delivery.
    pub restart_gateway: bool,
    /// Seed, capture, time limit (default 60 s) and link of the run.
    pub run: RunOptions,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            group: GroupName::Ristretto255,
            suite: SuiteName::Aes128Ccm8,
            pke: PkeSuite::X25519Ecies,
            messages: 3,
            restart_gateway: false,
            run: RunOptions {
                timeout: Duration::from_secs(60),
                ..RunOptions::default()
            },
        }
    }
}

/// Seeded RNG streams of this demo's roles ("SGA" and the role's number).
const RNG_DOMAIN: u64 = 0x5347_4100;

/// The text of message `k`.
#[must_use]
pub fn message_text(k: u32) -> String {
    format!("reading {k}: temperature {}.{} C", 20 + k % 5, k % 10)
}

/// A running server task and what restarts it.
struct Gateway {
    task: JoinHandle<Result<()>>,
    addr: SocketAddr,
}

/// The deployment: the devices and the server as the in-memory one has them, over `opts`'
/// group and the server's public-key suite, with waits for a loopback run.
fn spec(opts: &DemoOptions) -> Spec {
    Spec {
        group: opts.group.into(),
        pke: opts.pke,
        timeouts: Timeouts {
            exchange: Duration::from_secs(20),
            retransmit: Duration::from_millis(300),
            ..Timeouts::default()
        },
        ..Spec::default()
    }
}

/// Starts a server task on `addr` from the store at `path` (opened here and owned by the task,
/// so that aborting the task closes it).
async fn start_gateway(
    run: &Deployment,
    addr: SocketAddr,
    path: &std::path::Path,
    config: ServerConfig,
    role: u64,
) -> Result<Gateway> {
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(path)?);
    let server: Server = server_from_store(config, &*store)?;
    let d = run.driver("sga-server", driver::bind(addr).await?, server, role)?;
    let (addr, shutdown) = (d.local_addr(), run.shutdown.clone());
    let task = tokio::spawn(async move {
        let mut h = ServerHandler::new(store, None);
        d.run(&mut h, shutdown).await.map(|_| ())
    });
    Ok(Gateway { task, addr })
}

/// The error of a device task that stopped.
fn stopped(_: &str) -> Error {
    Error::Control("the device task stopped".into())
}

/// `request`'s answer from the device behind `commands`, or (`Err`) its error.
async fn expect(
    commands: &mpsc::Sender<Command>,
    request: Request,
    what: &str,
) -> Result<Response> {
    let answer = ask(commands, request).await;
    match answer {
        Response::Error { error } => Err(Error::Control(format!("{what}: {error}"))),
        other => Ok(other),
    }
}

/// What device-j reports next within `within`; `None` if nothing comes in time.
async fn next_note(events: &mut mpsc::UnboundedReceiver<Noted>, within: Duration) -> Option<Noted> {
    tokio::time::timeout(within, events.recv())
        .await
        .ok()
        .flatten()
}

/// What the orchestration found.
#[derive(Default)]
struct Outcome {
    fingerprints: (Option<String>, Option<String>),
    session: Option<String>,
    stored: u32,
    delivered: Vec<(u64, String)>,
    restarted: bool,
    /// When the last expected message arrived.
    done: Option<Instant>,
}

impl Outcome {
    /// Whether both devices hold the same session key.
    fn keys_agree(&self) -> bool {
        matches!(&self.fingerprints, (Some(a), Some(b)) if a == b)
    }

    /// What is wrong with a run that ended, if anything: the keys differ, or device-j did not
    /// receive each of the `messages` once and in order.
    fn fault(&self, messages: u32) -> Option<String> {
        if !self.keys_agree() {
            return Some("device-i and device-j keys differ".into());
        }
        let expected = (0..messages).map(|k| (u64::from(k), message_text(k)));
        if self.delivered.iter().cloned().eq(expected) {
            return None;
        }
        let ids: Vec<u64> = self.delivered.iter().map(|(id, _)| *id).collect();
        Some(format!(
            "device-j received {ids:?}, expected message ids 0..{messages} once each, in order"
        ))
    }

    /// Keeps a message device-j noted it received.
    fn take(&mut self, note: Noted) {
        if let Noted::Received { entry: e, .. } = note {
            self.delivered.push((e.message_id, e.text));
        }
    }
}

/// Runs the SGA demo over real UDP on loopback. `wall_ms` runs from the first registration
/// to the last delivery (key generation excluded; with `restart_gateway`, the restart
/// included).
///
/// # Errors
///
/// Set-up errors only (sockets, keys, store, pcap file); a run that fails is a [`RunReport`]
/// with `ok: false` and its `error`.
#[allow(clippy::too_many_lines)] // one linear script: set-up, the steps, the report
pub async fn run(opts: &DemoOptions, progress: &dyn Progress) -> Result<RunReport> {
    if opts.messages == 0 {
        return Err(Error::Usage("--messages must be at least 1".into()));
    }
    let run = Deployment::new(&opts.run, RNG_DOMAIN, Vec::new())?;
    progress.stage("generating keys");
    let spec = spec(opts);
    let mut key_rng = run.rng(100);
    let server_key = PkeSecretKey::generate(opts.pke, &mut *key_rng)?;
    let pem = server_key.to_pem()?;
    let public = server_key.public_key();
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let store_path = dir.path().join("sga-server.redb");

    progress.stage("starting the server");
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = sim::server_config(&spec, &pem)?;
    let mut gateway = start_gateway(&run, any, &store_path, config, 1).await?;

    progress.stage("starting the devices");
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut commands = Vec::new();
    let mut device_tasks = Vec::new();
    for (i, d) in spec.devices.iter().enumerate() {
        let config = sim::device_config(&spec, d, gateway.addr, &public, &mut *key_rng)?;
        let device = Device::new(config)?;
        let report = (i == 1).then(|| events_tx.clone());
        let poll = Duration::from_millis(500);
        let node = DeviceNode::new(&device, Arc::new(MemoryStore::new()), poll, report)?;
        let role = 10 + i as u64;
        let driver = run.driver("sga-device", driver::bind(any).await?, device, role)?;
        let (tx, rx) = mpsc::channel(16);
        commands.push(tx);
        let sd = run.shutdown.clone();
        device_tasks.push(tokio::spawn(node.run(driver, rx, sd, false)));
    }
    drop(events_tx);
    let (i_cmd, j_cmd) = (commands[0].clone(), commands[1].clone());

    let start = Instant::now();
    let mut outcome = Outcome::default();
    let script = async {
        progress.stage("registering both devices");
        let (a, b) = tokio::join!(
            expect(&i_cmd, Request::Register, "registering device-i"),
            expect(&j_cmd, Request::Register, "registering device-j")
        );
        a?;
        b?;

        progress.stage(&format!(
            "negotiation and key exchange ({}, {})",
            opts.group.name(),
            opts.suite.name()
        ));
        let invite = Request::Invite {
            peer: DEVICE_J.into(),
            suite: Some(opts.suite),
        };
        let invited = expect(&i_cmd, invite, "inviting device-j").await?;
        if let Response::Established(info) = invited {
            outcome.fingerprints.0 = Some(info.fingerprint);
            outcome.session = Some(info.session);
        }
        // device-j established before it sent B3's answer's acknowledgement; its report is on
        // the channel already or very soon.
        while outcome.fingerprints.1.is_none() {
            match next_note(&mut events, Duration::from_secs(5)).await {
                Some(Noted::Established(info)) => outcome.fingerprints.1 = Some(info.fingerprint),
                Some(Noted::Failed { what, error }) => {
                    return Err(Error::Control(format!("device-j: {what}: {error}")));
                }
                Some(_) => {}
                None => return Err(Error::Control("device-j reported no session key".into())),
            }
        }

        if opts.restart_gateway {
            progress.stage("device-j goes offline");
            command(&j_cmd, Command::Sleep).await.map_err(stopped)?;
        }
        progress.stage(&format!("sending {} messages", opts.messages));
        for k in 0..opts.messages {
            let text = message_text(k);
            let send = Request::Send {
                to: DEVICE_J.into(),
                text,
            };
            expect(&i_cmd, send, "sending").await?;
            outcome.stored += 1;
        }
        if opts.restart_gateway {
            progress.stage("killing and restarting the server");
            gateway.task.abort();
            // Wait until the task's future (its socket and its store) is dropped.
            let _ = (&mut gateway.task).await;
            let config = sim::server_config(&spec, &pem)?;
            gateway = start_gateway(&run, gateway.addr, &store_path, config, 2).await?;
            outcome.restarted = true;
            progress.stage("device-j comes back online");
            command(&j_cmd, Command::Wake).await.map_err(stopped)?;
        }
        progress.stage("delivering");
        let want = usize::try_from(opts.messages).unwrap_or(usize::MAX);
        while outcome.delivered.len() < want {
            let Some(note) = next_note(&mut events, Duration::from_secs(10)).await else {
                break;
            };
            outcome.take(note);
        }
        outcome.done = Some(Instant::now());
        // Anything delivered twice would show up now.
        let grace = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Some(note)) = tokio::time::timeout_at(grace, events.recv()).await {
            outcome.take(note);
        }
        Ok::<(), Error>(())
    };
    let mut error = run.script(script).await;
    let wall_ms = millis(start, outcome.done);
    run.stop();
    let mut device_ops = OpCounts::default();
    for (i, task) in device_tasks.into_iter().enumerate() {
        let device = joined(task, Duration::from_secs(2), "device", &mut error).await;
        if let (0, Some(device)) = (i, device) {
            device_ops = device.op_counts();
        }
    }
    joined(gateway.task, Duration::from_secs(2), "server", &mut error).await;
    let wire = run.finish().await?;
    drop(dir);

    let session_key_match = outcome.keys_agree();
    let error = error.or_else(|| outcome.fault(opts.messages));
    progress.done(error.is_none(), "every message delivered");
    let detail = Detail::Sga(super::report::Detail {
        group: opts.group.name(),
        pke: match opts.pke {
            PkeSuite::RsaOaep2048 => "rsa-oaep-2048",
            _ => "x25519",
        },
        sent: opts.messages,
        stored: outcome.stored,
        delivered: u32::try_from(outcome.delivered.len()).unwrap_or(u32::MAX),
        restarted_gateway: opts.restart_gateway.then_some(outcome.restarted),
    });
    Ok(RunReport {
        device_ops: device_ops.into(),
        session: outcome.session,
        key_fingerprint: outcome.fingerprints.0,
        suite: opts.suite.name(),
        ..RunReport::new(super::PROTOCOL, &opts.run, wire, wall_ms, detail).judged(
            session_key_match,
            error,
            true,
        )
    })
}
