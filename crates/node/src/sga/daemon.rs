//! The two SGA daemons.
//!
//! **Server.** The generic [`Driver`](crate::runtime::driver::Driver) around [`Server`], with a handler that writes every
//! [`ServerEvent::Persist`] to the store as the event is drained — and the driver drains every
//! event before it sends the datagrams of the same call, so a `Stored` acknowledgement never
//! leaves before the message is durable. At start the registrations
//! ([`DEVICES_TABLE`]) and held messages ([`MESSAGES_TABLE`]) are loaded into
//! [`Server::new`]: a server killed at any point (SIGKILL) and restarted on the same store
//! still knows every device and forwards every message it had acknowledged.
//!
//! **Device.** A [`DeviceNode`]: the device's own loop over its UDP socket, its timers, a
//! periodic poll of the server (so that the server knows where to forward), and a command
//! channel ([`Command`]) fed by the control socket of the `m2msec sga` commands
//! ([`super::control`]) or by the demo. Its store keeps whether the device registered
//! ([`DEVICE_TABLE`]) and its inbox ([`INBOX_QUEUE`], written before the delivery is
//! acknowledged). Sessions and their keys live in memory only (the protocol's `Device` has no
//! way to export them): a restarted device daemon must be invited again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::{CryptoRng, OsRng};
use m2msec_protocol::sga::{
    DEVICES_TABLE, Device, DeviceEvent, Error as SgaError, MESSAGES_TABLE, RefusalCode, Server,
    ServerConfig, ServerEvent, SessionId, StoreOp,
};
use m2msec_protocol::{Endpoint, Millis};
use m2msec_store::Store;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::config::{self, SuiteName};
use super::control::{ControlSocket, InboxEntry, Request, Response, SessionInfo};
use crate::error::{Error, Result};
use crate::harness::daemon::{Daemon, Exit, Persisting, RoleArgs};
use crate::hex;
use crate::runtime::driver::open_store;
use crate::runtime::driver::{self, Context, Flow, Handler, Shutdown, wall_clock};
use crate::runtime::tap::Wiretap;

/// Device store table of its own state (key `registered`: the identity it registered as).
pub const DEVICE_TABLE: &str = "sga_device";
/// Device store queue of received messages (JSON [`InboxEntry`] values, in order of arrival).
pub const INBOX_QUEUE: &str = "sga_inbox";

/// How long a `send` command waits for the server's acknowledgement.
const SEND_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Server

/// What an SGA server of a demo tells the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerReport {
    /// A device registered.
    Registered(String),
    /// Two devices completed a key exchange.
    Exchanged {
        /// d_i.
        initiator: String,
        /// d_j.
        responder: String,
    },
}

/// The server daemon's handler: writes every [`StoreOp`] before the driver sends anything.
pub type ServerHandler = Persisting<ServerReport>;

/// Applies one durable change to `store`.
///
/// # Errors
///
/// [`Error::Store`] if the write could not be made durable.
pub fn apply(store: &dyn Store, op: &StoreOp) -> Result<()> {
    match op {
        StoreOp::Put { table, key, value } => store.put(table, key, value)?,
        StoreOp::Remove { table, key } => {
            store.remove(table, key)?;
        }
    }
    Ok(())
}

impl Handler<Server> for ServerHandler {
    fn on_event(&mut self, _cx: &mut Context<'_, Server>, event: ServerEvent) -> Result<Flow> {
        match event {
            // Durable before the transmits of the same call leave (see the driver).
            ServerEvent::Persist(op) => apply(&*self.store, &op)?,
            ServerEvent::Registered { device } => {
                tracing::info!(%device, "device registered");
                self.report.send(ServerReport::Registered(device));
            }
            ServerEvent::Exchanged {
                session,
                initiator,
                responder,
            } => {
                tracing::info!(%session, %initiator, %responder, "key exchange relayed");
                self.report.send(ServerReport::Exchanged {
                    initiator,
                    responder,
                });
            }
            ServerEvent::Refusal { device, error } => {
                tracing::warn!(%device, %error, "request refused");
            }
            ServerEvent::Rejected { remote, error } => {
                tracing::warn!(%remote, %error, "datagram rejected");
            }
            #[allow(unreachable_patterns)]
            other => tracing::debug!(event = ?other, "server event"),
        }
        Ok(Flow::Continue)
    }
}

/// A server built from what `store` holds: its registrations and held messages.
///
/// # Errors
///
/// [`Error::Store`] if the store cannot be read; [`Error::Sga`] for a corrupt record or a
/// config without suites or groups.
pub fn server_from_store(config: ServerConfig, store: &dyn Store) -> Result<Server> {
    let devices: Vec<Vec<u8>> = store
        .scan(DEVICES_TABLE)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let messages = store.scan(MESSAGES_TABLE)?;
    tracing::info!(
        devices = devices.len(),
        held = messages.len(),
        "server state loaded"
    );
    Ok(Server::new(config, devices, messages)?)
}

/// Runs the server daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file, store and bind errors; a store error while serving stops the daemon
/// (nothing that depended on the failed write was sent).
pub async fn run_server(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_server(config_file)?;
    let store = open_store(Some(&setup.state))?;
    let identity = setup.config.identity.clone();
    let server = server_from_store(setup.config, &*store)?;
    tracing::info!(state = %setup.state.display(), "server state");
    let daemon = Daemon::bind("sga-server", identity, setup.listen, server).await?;
    daemon
        .serve(&mut ServerHandler::new(store, None), shutdown)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Device

/// What a device node is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A control request; the answer goes to the sender.
    Request(Request, oneshot::Sender<Response>),
    /// Close the socket: the device is offline (its radio sleeps); what it would send is lost.
    Sleep(oneshot::Sender<()>),
    /// Bind the socket again on the same address and poll the server at once.
    Wake(oneshot::Sender<()>),
}

/// What a device node reports (to a demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A session key is in place.
    Established(SessionInfo),
    /// A message arrived (once, in order).
    Received(InboxEntry),
    /// A step failed.
    Failed {
        /// What was under way.
        what: &'static str,
        /// Why.
        error: String,
    },
}

#[derive(Debug)]
enum Wait {
    Registered,
    Established { peer: String },
    Stored { session: SessionId, message_id: u64 },
}

/// One smart device on a UDP socket, with its command channel.
pub struct DeviceNode {
    device: Device,
    local: SocketAddr,
    suites: Vec<AeadSuite>,
    rng: Box<dyn CryptoRng + Send>,
    tap: Option<Wiretap>,
    store: Arc<dyn Store>,
    poll_every: Duration,
    next_poll: Option<Millis>,
    registered: bool,
    /// A registration is under way.
    registering: bool,
    sessions: BTreeMap<String, (SessionId, SessionInfo)>,
    waiting: Vec<(Wait, Millis, oneshot::Sender<Response>)>,
    events: Option<mpsc::UnboundedSender<NodeEvent>>,
}

/// Hex of a session id.
fn session_hex(s: SessionId) -> String {
    hex(&s.0)
}

impl DeviceNode {
    /// A node for `device`, bound to `local`, keeping its state in `store`; `suites` are the
    /// device's (the first is the default of an invitation).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn new(
        device: Device,
        local: SocketAddr,
        suites: Vec<AeadSuite>,
        store: Arc<dyn Store>,
        poll_every: Duration,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Result<Self> {
        let registered = store
            .get(DEVICE_TABLE, b"registered")?
            .is_some_and(|v| v == device.identity().as_bytes());
        Ok(Self {
            device,
            local,
            suites,
            rng,
            tap: None,
            store,
            poll_every,
            next_poll: None,
            registered,
            registering: false,
            sessions: BTreeMap::new(),
            waiting: Vec::new(),
            events: None,
        })
    }

    /// Records every sent datagram in `tap`.
    #[must_use]
    pub fn with_tap(mut self, tap: Wiretap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Reports established sessions, received messages and failures on `events`.
    #[must_use]
    pub fn with_events(mut self, events: mpsc::UnboundedSender<NodeEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// Whether the store says this device registered.
    #[must_use]
    pub fn registered(&self) -> bool {
        self.registered
    }

    /// Serves `commands` on `socket` until `shutdown` (or until the command channel closes
    /// and `stop_without_commands` is set); registers first if the store says it never did,
    /// else polls the server at once. Returns the device (its counters).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the inbox or the registration cannot be written (the delivery
    /// that depended on it is not acknowledged); [`Error::Bind`] if waking fails.
    pub async fn run(
        mut self,
        socket: UdpSocket,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: Shutdown,
        auto_register: bool,
    ) -> Result<Device> {
        let mut socket = Some(Arc::new(socket));
        let now = wall_clock();
        if self.registered {
            self.device.poll(now);
            self.next_poll = Some(now.after(self.poll_every));
        } else if auto_register {
            self.device.register(now, &mut *self.rng)?;
            self.registering = true;
        }
        let mut buf = vec![0u8; 65_535];
        let mut commands_open = true;
        loop {
            self.drain(socket.as_ref()).await?;
            let sleep = self
                .deadline(socket.is_some())
                .map(|d| Duration::from_millis(d.0.saturating_sub(wall_clock().0)));
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                command = commands.recv(), if commands_open => match command {
                    None => commands_open = false,
                    Some(Command::Request(request, reply)) => self.request(request, reply),
                    Some(Command::Sleep(done)) => {
                        socket = None;
                        tracing::info!(device = %self.device.identity(), "offline");
                        let _ = done.send(());
                    }
                    Some(Command::Wake(done)) => {
                        socket = Some(Arc::new(driver::bind(self.local).await?));
                        let now = wall_clock();
                        self.device.poll(now);
                        self.next_poll = Some(now.after(self.poll_every));
                        tracing::info!(device = %self.device.identity(), "online");
                        let _ = done.send(());
                    }
                },
                received = recv(socket.as_deref(), &mut buf) => match received {
                    Ok((len, from)) => {
                        let datagram = buf.get(..len).unwrap_or_default();
                        self.device.handle_datagram(wall_clock(), from, datagram, &mut *self.rng);
                    }
                    Err(e) => tracing::debug!(error = %e, "receive failed"),
                },
                () = sleep_for(sleep) => self.on_timer(socket.is_some()),
            }
        }
        Ok(self.device)
    }

    fn deadline(&self, online: bool) -> Option<Millis> {
        [
            self.device.poll_timeout(),
            self.next_poll.filter(|_| online && self.registered),
            self.waiting.iter().map(|(_, t, _)| *t).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_timer(&mut self, online: bool) {
        let now = wall_clock();
        if self.device.poll_timeout().is_some_and(|t| t <= now) {
            self.device.handle_timeout(now, &mut *self.rng);
        }
        if online && self.registered && self.next_poll.is_some_and(|t| t <= now) {
            self.device.poll(now);
            self.next_poll = Some(now.after(self.poll_every));
        }
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, t, _)| *t <= now);
        self.waiting = kept;
        for (wait, _, reply) in expired {
            let error = match wait {
                Wait::Stored { .. } => {
                    "the server has not acknowledged the message yet; the device keeps sending it"
                }
                Wait::Registered => {
                    self.registering = false;
                    "no answer from the server to the registration"
                }
                Wait::Established { .. } => "no session key within the wait",
            };
            let _ = reply.send(Response::Error {
                error: error.into(),
            });
        }
    }

    fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let now = wall_clock();
        let failed = |e: &dyn std::fmt::Display| Response::Error {
            error: e.to_string(),
        };
        match request {
            Request::Register => {
                if self.registered {
                    let _ = reply.send(Response::Registered {
                        device: self.device.identity().to_owned(),
                    });
                    return;
                }
                if !self.registering {
                    if let Err(e) = self.device.register(now, &mut *self.rng) {
                        let _ = reply.send(failed(&e));
                        return;
                    }
                    self.registering = true;
                }
                self.waiting
                    .push((Wait::Registered, now.after(Duration::from_secs(30)), reply));
            }
            Request::Invite { peer, suite } => {
                if !self.registered {
                    let _ = reply.send(Response::Error {
                        error: "the device is not registered yet (`m2msec sga register`)".into(),
                    });
                    return;
                }
                let suite = suite.map_or_else(
                    || {
                        self.suites
                            .first()
                            .copied()
                            .unwrap_or(AeadSuite::Aes128Ccm8)
                    },
                    AeadSuite::from,
                );
                match self.device.invite(now, &mut *self.rng, &peer, suite) {
                    Ok(()) => self.waiting.push((
                        Wait::Established { peer },
                        now.after(Duration::from_secs(60)),
                        reply,
                    )),
                    Err(e) => {
                        let _ = reply.send(failed(&e));
                    }
                }
            }
            Request::Send { to, text } => {
                let Some((session, _)) = self.sessions.get(&to) else {
                    let _ = reply.send(Response::Error {
                        error: format!(
                            "no session with {to:?}: invite it first (`m2msec sga invite {to}`)"
                        ),
                    });
                    return;
                };
                let session = *session;
                match self
                    .device
                    .send(now, &mut *self.rng, session, text.as_bytes())
                {
                    Ok(message_id) => self.waiting.push((
                        Wait::Stored {
                            session,
                            message_id,
                        },
                        now.after(SEND_WAIT),
                        reply,
                    )),
                    Err(e) => {
                        let _ = reply.send(failed(&e));
                    }
                }
            }
            Request::Inbox => {
                let answer = match self.inbox() {
                    Ok(messages) => Response::Inbox { messages },
                    Err(e) => failed(&e),
                };
                let _ = reply.send(answer);
            }
            Request::Status => {
                let _ = reply.send(Response::Status {
                    device: self.device.identity().to_owned(),
                    registered: self.registered,
                    sessions: self.sessions.values().map(|(_, i)| i.clone()).collect(),
                    unacknowledged: self.device.unacknowledged(),
                });
            }
        }
    }

    /// Every message received so far, from the store.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn inbox(&self) -> Result<Vec<InboxEntry>> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let batch = self.store.queue_range(INBOX_QUEUE, from, 256)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            for (seq, value) in batch {
                match serde_json::from_slice(&value) {
                    Ok(e) => out.push(e),
                    Err(e) => tracing::warn!(seq, error = %e, "malformed inbox entry skipped"),
                }
            }
        }
        Ok(out)
    }

    fn resolve(&mut self, matches: impl Fn(&Wait) -> bool, answer: &Response) {
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(w, _, _)| matches(w));
        self.waiting = kept;
        for (_, _, reply) in done {
            let _ = reply.send(answer.clone());
        }
    }

    fn report(&self, event: NodeEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    fn mark_registered(&mut self) -> Result<()> {
        self.store.put(
            DEVICE_TABLE,
            b"registered",
            self.device.identity().as_bytes(),
        )?;
        self.registered = true;
        self.registering = false;
        self.next_poll = Some(wall_clock().after(self.poll_every));
        let answer = Response::Registered {
            device: self.device.identity().to_owned(),
        };
        self.resolve(|w| matches!(w, Wait::Registered), &answer);
        Ok(())
    }

    fn on_event(&mut self, event: DeviceEvent) -> Result<()> {
        let me = self.device.identity().to_owned();
        match event {
            DeviceEvent::Registered => {
                tracing::info!(device = %me, "registered");
                self.mark_registered()?;
            }
            DeviceEvent::Established { session, peer, key } => {
                let info = SessionInfo {
                    peer: peer.clone(),
                    session: session_hex(session),
                    fingerprint: hex(&key.fingerprint()),
                    suite: SuiteName::of(key.suite())
                        .map_or_else(|| key.suite().name().to_owned(), |s| s.name().to_owned()),
                };
                tracing::info!(device = %me, %peer, %session, fingerprint = %info.fingerprint, suite = %info.suite, "session established");
                self.sessions.insert(peer.clone(), (session, info.clone()));
                self.resolve(
                    |w| matches!(w, Wait::Established { peer: p } if *p == peer),
                    &Response::Established(info.clone()),
                );
                self.report(NodeEvent::Established(info));
            }
            DeviceEvent::Stored {
                session,
                message_id,
            } => {
                let to = self
                    .sessions
                    .values()
                    .find(|(s, _)| *s == session)
                    .map(|(_, i)| i.peer.clone())
                    .unwrap_or_default();
                tracing::info!(device = %me, %to, %session, message_id, "message stored by the server");
                self.resolve(
                    |w| matches!(w, Wait::Stored { session: s, message_id: m } if *s == session && *m == message_id),
                    &Response::Stored {
                        to,
                        session: session_hex(session),
                        message_id,
                    },
                );
            }
            DeviceEvent::Received {
                session,
                from,
                message_id,
                plaintext,
            } => {
                let entry = InboxEntry {
                    from,
                    session: session_hex(session),
                    message_id,
                    text: String::from_utf8_lossy(&plaintext).into_owned(),
                };
                let json = serde_json::to_vec(&entry)
                    .map_err(|e| Error::Control(format!("cannot encode an inbox entry: {e}")))?;
                // In the inbox before the delivery acknowledgement of the same call leaves.
                self.store.queue_push(INBOX_QUEUE, &json)?;
                // The plaintext stays out of logs (`m2msec sga inbox` reads it, owner-only).
                tracing::info!(device = %me, from = %entry.from, session = %entry.session, message_id, bytes = plaintext.len(), "message received");
                self.report(NodeEvent::Received(entry));
            }
            DeviceEvent::Failed { what, error } => {
                tracing::warn!(device = %me, what, %error, "failed");
                if what == "registering" {
                    self.registering = false;
                    if matches!(error, SgaError::Refused(RefusalCode::AlreadyRegistered)) {
                        tracing::warn!(device = %me, "the server knows this device already: taken as registered");
                        self.mark_registered()?;
                    } else {
                        let answer = Response::Error {
                            error: format!("registration failed: {error}"),
                        };
                        self.resolve(|w| matches!(w, Wait::Registered), &answer);
                    }
                } else {
                    let answer = Response::Error {
                        error: format!("{what}: {error}"),
                    };
                    self.resolve(|w| matches!(w, Wait::Established { .. }), &answer);
                }
                self.report(NodeEvent::Failed {
                    what,
                    error: error.to_string(),
                });
            }
            DeviceEvent::Rejected { remote, error } => {
                tracing::debug!(device = %me, %remote, %error, "datagram rejected");
            }
            #[allow(unreachable_patterns)]
            other => tracing::debug!(device = %me, event = ?other, "device event"),
        }
        Ok(())
    }

    /// Handles every pending event (persisting), then sends every pending datagram (dropped
    /// while offline).
    async fn drain(&mut self, socket: Option<&Arc<UdpSocket>>) -> Result<()> {
        while let Some(event) = self.device.poll_event() {
            self.on_event(event)?;
        }
        while let Some(t) = self.device.poll_transmit() {
            let Some(socket) = socket else { continue };
            driver::send("sga-device", socket, self.local, self.tap.as_ref(), t).await;
        }
        Ok(())
    }
}

async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Runs the device daemon of `config_file` until `shutdown`: registers if its store says it
/// never did, polls the server, accepts invitations, logs and keeps what it receives, and
/// serves the `m2msec sga` commands on its control socket.
///
/// # Errors
///
/// Config, key file, store and bind errors; a store error while serving stops the daemon.
pub async fn run_device(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_device(config_file)?;
    let store = open_store(Some(&setup.state))?;
    let identity = setup.config.identity.clone();
    let suites = setup.config.suites.clone();
    let device = Device::new(setup.config)?;
    let socket = driver::bind(setup.listen).await?;
    let local = socket.local_addr().map_err(Error::Socket)?;
    let control = ControlSocket::bind(&setup.control)?;
    let node = DeviceNode::new(device, local, suites, store, setup.poll, Box::new(OsRng))?;
    tracing::info!(
        role = "sga-device",
        %identity,
        listen = %local,
        control = %setup.control.display(),
        registered = node.registered(),
        "serving"
    );
    let (tx, rx) = mpsc::channel(64);
    let control_task = tokio::spawn(control.serve(tx, shutdown.clone()));
    let result = node.run(socket, rx, shutdown, true).await;
    control_task.abort();
    result.map(|_| ())
}

/// Runs the SGA daemon `role` as `m2msec run` asks.
///
/// # Errors
///
/// As the role's runner; [`Error::Usage`] for a role that is not SGA's.
pub async fn run_role(role: &str, args: &RoleArgs, shutdown: Shutdown) -> Result<Exit> {
    match role {
        "sga-server" => run_server(&args.config, shutdown).await,
        "sga-device" => run_device(&args.config, shutdown).await,
        other => return Err(Error::Usage(format!("{other}: not an SGA role"))),
    }
    .map(|()| Exit::Served)
}
