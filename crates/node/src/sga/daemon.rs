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
//! **Device.** The generic driver around [`Device`], with a [`DeviceNode`] handler: a
//! periodic poll of the server (so that the server knows where to forward), and the driver's
//! command channel ([`Command`]) fed by the control socket of the `m2msec sga` commands
//! ([`super::control`]) or by the demo; asleep, the device is offline and has no socket. Its store keeps whether the device registered
//! ([`DEVICE_TABLE`]) and its inbox ([`INBOX_QUEUE`], written before the delivery is
//! acknowledged). Sessions and their keys live in memory only (the protocol's `Device` has no
//! way to export them): a restarted device daemon must be invited again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_protocol::Millis;
pub use m2msec_protocol::sga::device_store::{DEVICE_TABLE, INBOX_QUEUE};
use m2msec_protocol::sga::{
    DEVICES_TABLE, Device, DeviceEvent, DeviceRecords, Error as SgaError, MESSAGES_TABLE,
    RefusalCode, Server, ServerConfig, ServerEvent, Wait,
};
use m2msec_store::Store;
use tokio::sync::{mpsc, oneshot};

use super::config::{self, SuiteName};
use super::control::{ControlSocket, InboxEntry, Request, Response, SessionInfo};
use crate::error::{Error, Result};
use crate::harness::daemon::{Daemon, Exit, Persisting, Reporter, RoleArgs};
use crate::hex;
use crate::runtime::driver::{Context, Driver, Flow, Handler, Shutdown, open_store, wall_clock};

// ---------------------------------------------------------------------------------------------
// Server

/// The server daemon's handler: writes every [`StoreOp`](m2msec_protocol::sga::StoreOp) before the driver sends anything.
pub type ServerHandler = Persisting;

impl Handler<Server> for ServerHandler {
    fn on_event(&mut self, _cx: &mut Context<'_, Server>, event: ServerEvent) -> Result<Flow> {
        match event {
            // Durable before the transmits of the same call leave (see the driver).
            ServerEvent::Persist(op) => op.apply(&*self.store)?,
            ServerEvent::Registered { device } => tracing::info!(%device, "device registered"),
            ServerEvent::Exchanged {
                session,
                initiator,
                responder,
            } => tracing::info!(%session, %initiator, %responder, "key exchange relayed"),
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
        .serve(ServerHandler::new(store, None), shutdown)
        .await
}

// ---------------------------------------------------------------------------------------------
// Device

/// What a device node is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A control request; the answer goes to the sender.
    Request(Request, oneshot::Sender<Response>),
    /// Go offline (the radio sleeps): the driver closes the socket; what it would send is lost.
    Sleep(oneshot::Sender<()>),
    /// Come back online (the driver binds the socket again on the same address) and poll the
    /// server at once.
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

/// A waiting control request's reply channel.
type Reply = oneshot::Sender<Response>;

/// The device's side of its [`Driver`]: how commands become the device's calls, the
/// [`DeviceRecords`] that answer them, the periodic poll of the server, and what is reported.
pub struct DeviceNode {
    suites: Vec<AeadSuite>,
    records: DeviceRecords<Reply>,
    poll_every: Duration,
    next_poll: Option<Millis>,
    online: bool,
    /// A registration is under way.
    registering: bool,
    report: Reporter<NodeEvent>,
}

/// Sends `answer` to each of `replies`.
fn answer_all(replies: Vec<Reply>, answer: &Response) {
    for reply in replies {
        let _ = reply.send(answer.clone());
    }
}

impl DeviceNode {
    /// The node of `device`, keeping its state in `store`; `suites` are the device's (the
    /// first is the default of an invitation). Established sessions, received messages and
    /// failures are reported on `report` (a demo's).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn new(
        device: &Device,
        suites: Vec<AeadSuite>,
        store: Arc<dyn Store>,
        poll_every: Duration,
        report: Option<mpsc::UnboundedSender<NodeEvent>>,
    ) -> Result<Self> {
        Ok(Self {
            suites,
            records: DeviceRecords::open(store, device.identity())?,
            poll_every,
            next_poll: None,
            online: true,
            registering: false,
            report: Reporter::new(report),
        })
    }

    /// Whether the store says this device registered.
    #[must_use]
    pub fn registered(&self) -> bool {
        self.records.registered()
    }

    /// Serves `commands` on `driver` until `shutdown`; registers first if the store says it
    /// never did (and `auto_register`), else polls the server at once. Returns the device
    /// (its counters).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the inbox or the registration cannot be written (the delivery
    /// that depended on it is not acknowledged); [`Error::Bind`] if waking fails.
    pub async fn run(
        mut self,
        mut driver: Driver<Device>,
        commands: mpsc::Receiver<Command>,
        shutdown: Shutdown,
        auto_register: bool,
    ) -> Result<Device> {
        let (device, rng) = driver.endpoint_mut();
        let now = wall_clock();
        if self.registered() {
            self.poll(device, now);
        } else if auto_register {
            device.register(now, rng)?;
            self.registering = true;
        }
        driver.run_with(&mut self, commands, shutdown).await
    }

    fn poll(&mut self, device: &mut Device, now: Millis) {
        device.poll(now);
        self.next_poll = Some(now.after(self.poll_every));
    }

    /// A control request's answer, or (`Err`) what the answer waits for.
    fn request(
        &mut self,
        cx: &mut Context<'_, Device>,
        request: Request,
    ) -> std::result::Result<Response, Wait> {
        let (device, now) = (&mut *cx.endpoint, cx.now);
        let failed = |e: &dyn std::fmt::Display| Response::Error {
            error: e.to_string(),
        };
        Ok(match request {
            Request::Register if self.registered() => Response::Registered {
                device: device.identity().to_owned(),
            },
            Request::Register => {
                if !self.registering {
                    if let Err(e) = device.register(now, cx.rng) {
                        return Ok(failed(&e));
                    }
                    self.registering = true;
                }
                return Err(Wait::Registered);
            }
            Request::Invite { .. } if !self.registered() => Response::Error {
                error: "the device is not registered yet (`m2msec sga register`)".into(),
            },
            Request::Invite { peer, suite } => {
                let default = || {
                    self.suites
                        .first()
                        .copied()
                        .unwrap_or(AeadSuite::Aes128Ccm8)
                };
                let suite = suite.map_or_else(default, AeadSuite::from);
                match device.invite(now, cx.rng, &peer, suite) {
                    Ok(()) => return Err(Wait::Established { peer }),
                    Err(e) => failed(&e),
                }
            }
            Request::Send { to, text } => {
                let Some(session) = self.records.session_with(&to) else {
                    return Ok(Response::Error {
                        error: format!(
                            "no session with {to:?}: invite it first (`m2msec sga invite {to}`)"
                        ),
                    });
                };
                match device.send(now, cx.rng, session, text.as_bytes()) {
                    Ok(message_id) => {
                        return Err(Wait::Stored {
                            session,
                            message_id,
                        });
                    }
                    Err(e) => failed(&e),
                }
            }
            Request::Inbox => match self.inbox() {
                Ok(messages) => Response::Inbox { messages },
                Err(e) => failed(&e),
            },
            Request::Status => Response::Status {
                device: device.identity().to_owned(),
                registered: self.registered(),
                sessions: self.records.sessions(),
                unacknowledged: device.unacknowledged(),
            },
        })
    }

    /// Every message received so far, from the store.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn inbox(&self) -> Result<Vec<InboxEntry>> {
        let skipped = |seq, e: &serde_json::Error| {
            tracing::warn!(seq, error = %e, "malformed inbox entry skipped");
        };
        Ok(self.records.inbox(skipped)?)
    }

    fn mark_registered(&mut self, device: &Device, now: Millis) -> Result<()> {
        let waiting = self.records.mark_registered(device.identity())?;
        self.registering = false;
        self.next_poll = Some(now.after(self.poll_every));
        let answer = Response::Registered {
            device: device.identity().to_owned(),
        };
        answer_all(waiting, &answer);
        Ok(())
    }
}

impl Handler<Device, Command> for DeviceNode {
    fn on_event(&mut self, cx: &mut Context<'_, Device>, event: DeviceEvent) -> Result<Flow> {
        let me = cx.endpoint.identity().to_owned();
        match event {
            DeviceEvent::Registered => {
                tracing::info!(device = %me, "registered");
                self.mark_registered(cx.endpoint, cx.now)?;
            }
            DeviceEvent::Established { session, peer, key } => {
                let info = SessionInfo {
                    peer: peer.clone(),
                    session: session.to_string(),
                    fingerprint: hex(&key.fingerprint()),
                    suite: SuiteName::of(key.suite())
                        .map_or_else(|| key.suite().name().to_owned(), |s| s.name().to_owned()),
                };
                tracing::info!(device = %me, %peer, %session, fingerprint = %info.fingerprint, suite = %info.suite, "session established");
                let waiting = self.records.established(session, info.clone());
                answer_all(waiting, &Response::Established(info.clone()));
                self.report.send(NodeEvent::Established(info));
            }
            DeviceEvent::Stored {
                session,
                message_id,
            } => {
                let (to, waiting) = self.records.stored(session, message_id);
                tracing::info!(device = %me, %to, %session, message_id, "message stored by the server");
                let session = session.to_string();
                answer_all(
                    waiting,
                    &Response::Stored {
                        to,
                        session,
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
                // In the inbox before the delivery acknowledgement of the same call leaves.
                let entry = self
                    .records
                    .receive(session, from, message_id, &plaintext)?;
                // The plaintext stays out of logs (`m2msec sga inbox` reads it, owner-only).
                tracing::info!(device = %me, from = %entry.from, session = %entry.session, message_id, bytes = plaintext.len(), "message received");
                self.report.send(NodeEvent::Received(entry));
            }
            DeviceEvent::Failed { what, error } => {
                tracing::warn!(device = %me, what, %error, "failed");
                if what == "registering" {
                    self.registering = false;
                    if matches!(error, SgaError::Refused(RefusalCode::AlreadyRegistered)) {
                        tracing::warn!(device = %me, "the server knows this device already: taken as registered");
                        self.mark_registered(cx.endpoint, cx.now)?;
                    } else {
                        let waiting = self.records.resolve(|w| matches!(w, Wait::Registered));
                        let error = format!("registration failed: {error}");
                        answer_all(waiting, &Response::Error { error });
                    }
                } else {
                    let waiting = self
                        .records
                        .resolve(|w| matches!(w, Wait::Established { .. }));
                    let error = format!("{what}: {error}");
                    answer_all(waiting, &Response::Error { error });
                }
                self.report.send(NodeEvent::Failed {
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
        Ok(Flow::Continue)
    }

    fn on_command(&mut self, cx: &mut Context<'_, Device>, command: Command) -> Result<Flow> {
        match command {
            Command::Request(request, reply) => match self.request(cx, request) {
                Ok(answer) => {
                    let _ = reply.send(answer);
                }
                Err(wait) => self.records.wait(wait, cx.now, reply),
            },
            Command::Sleep(done) => {
                self.online = false;
                tracing::info!(device = %cx.endpoint.identity(), "offline");
                let _ = done.send(());
            }
            Command::Wake(done) => {
                self.online = true;
                self.poll(cx.endpoint, cx.now);
                tracing::info!(device = %cx.endpoint.identity(), "online");
                let _ = done.send(());
            }
        }
        Ok(Flow::Continue)
    }

    fn online(&self) -> bool {
        self.online
    }

    /// The next poll (online and registered only) or the end of a command's wait.
    fn next_wakeup(&self) -> Option<Millis> {
        let poll = self.next_poll.filter(|_| self.online && self.registered());
        poll.into_iter().chain(self.records.next_deadline()).min()
    }

    fn on_wakeup(&mut self, cx: &mut Context<'_, Device>) -> Result<Flow> {
        let now = cx.now;
        if self.online && self.registered() && self.next_poll.is_some_and(|t| t <= now) {
            self.poll(cx.endpoint, now);
        }
        for (wait, reply) in self.records.expire(now) {
            self.registering &= wait != Wait::Registered;
            let error = wait.expired().into();
            let _ = reply.send(Response::Error { error });
        }
        Ok(Flow::Continue)
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
    let node = DeviceNode::new(&device, suites, store, setup.poll, None)?;
    let daemon = Daemon::bind("sga-device", identity, setup.listen, device).await?;
    let control = ControlSocket::bind(&setup.control)?;
    let registered = node.registered();
    tracing::info!(control = %setup.control.display(), registered, "control socket");
    let (tx, rx) = mpsc::channel(64);
    let control_task = tokio::spawn(control.serve(tx, shutdown.clone()));
    let result = node.run(daemon.serving(), rx, shutdown, true).await;
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
