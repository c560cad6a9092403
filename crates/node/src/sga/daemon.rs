//! The two SGA daemons.
//!
//! **Server.** The generic [`Driver`] around [`Server`], with a handler that writes every
//! [`ServerEvent::Persist`] to the store as the event is drained — and the driver drains every
//! event before it sends the datagrams of the same call, so a `Stored` acknowledgement never
//! leaves before the message is durable. At start the registrations and held messages
//! ([`ServerState`]) are loaded into [`Server::new`]: a server killed at any point (SIGKILL)
//! and restarted on the same store still knows every device and forwards every message it had
//! acknowledged.
//!
//! **Device.** The generic driver around [`Device`], with a [`DeviceNode`] handler around the
//! protocol's [`DeviceAgent`], which decides what each command does, what each event of the
//! device answers and when the server is polled (so that it knows where to forward); the
//! node sends the answers and logs. Commands ([`Command`]) come on the driver's command
//! channel, fed by the control socket of the `m2msec sga` commands ([`super::control`]) or by
//! the demo; asleep, the device is offline and has no socket. Its store keeps whether the
//! device registered ([`DEVICE_TABLE`]) and its inbox ([`INBOX_QUEUE`], written before the
//! delivery is acknowledged). Sessions and their keys live in memory only (the protocol's `Device` has no
//! way to export them): a restarted device daemon must be invited again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use m2msec_protocol::sga::device_store::{DEVICE_TABLE, INBOX_QUEUE};
use m2msec_protocol::sga::{
    Device, DeviceAgent, DeviceEvent, DeviceRecords, Noted, Server, ServerConfig, ServerEvent,
    ServerState,
};
use m2msec_protocol::{Logged as _, Millis};
use m2msec_store::Store;
use tokio::sync::{mpsc, oneshot};

use super::config;
use super::control::{ControlSocket, Request, Response};
use crate::error::{Error, Result};
use crate::harness::daemon::{Daemon, Exit, Persisting, Reporter, RoleArgs};
use crate::runtime::driver::{
    Context, Driver, Flow, Handler, Shutdown, admitted, log_at, log_event, open_store, wall_clock,
};

// ---------------------------------------------------------------------------------------------
// Server

/// The server daemon's handler: writes every [`StoreOp`](m2msec_protocol::sga::StoreOp) before the driver sends anything.
pub type ServerHandler = Persisting;

impl Handler<Server> for ServerHandler {
    type Error = Error;

    fn on_event(&mut self, _cx: &mut Context<'_, Server>, event: ServerEvent) -> Result<Flow> {
        log_event(&event);
        if let ServerEvent::Persist(op) = event {
            // Durable before the transmits of the same call leave (see the driver).
            op.apply(&*self.store)?;
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
    let state = ServerState::load(store)?;
    let (devices, held) = (state.devices.len(), state.messages.len());
    tracing::info!(devices, held, "server state loaded");
    Ok(Server::new(config, state)?)
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
    let daemon = Daemon::bind("sga-server", identity, setup.link, server).await?;
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

/// The device's side of its [`Driver`]: the [`DeviceAgent`] that turns commands into the
/// device's calls and its events into answers, the replies it hands back, and what is logged
/// and reported.
pub struct DeviceNode {
    agent: DeviceAgent<oneshot::Sender<Response>>,
    report: Reporter<Noted>,
}

impl DeviceNode {
    /// The node of `device`, keeping its state in `store` and polling the server every
    /// `poll_every`. What its agent notes is reported on `report` (a demo's).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub fn new(
        device: &Device,
        store: Arc<dyn Store>,
        poll_every: Duration,
        report: Option<mpsc::UnboundedSender<Noted>>,
    ) -> Result<Self> {
        let records = DeviceRecords::open(store, device.identity())?;
        Ok(Self {
            agent: DeviceAgent::new(records, poll_every),
            report: Reporter::new(report),
        })
    }

    /// Whether the store says this device registered.
    #[must_use]
    pub fn registered(&self) -> bool {
        self.agent.registered()
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
        self.agent.start(device, wall_clock(), rng, auto_register)?;
        driver.run_with(&mut self, commands, shutdown).await
    }

    /// Sends the agent's answers, logs and reports what it noted.
    fn flush(&mut self, me: &str) {
        while let Some((reply, answer)) = self.agent.poll_answer() {
            let _ = reply.send(answer);
        }
        while let Some(noted) = self.agent.poll_note() {
            if admitted(&noted) {
                log_at!(noted.level(), device = %me, "{noted}");
            }
            self.report.send(noted);
        }
    }
}

impl Handler<Device, Command> for DeviceNode {
    type Error = Error;

    fn on_event(&mut self, cx: &mut Context<'_, Device>, event: DeviceEvent) -> Result<Flow> {
        let handled = self.agent.on_event(cx.endpoint, cx.now, event);
        // What the agent noted before a store error is logged and answered all the same.
        self.flush(cx.endpoint.identity());
        handled?;
        Ok(Flow::Continue)
    }

    fn on_command(&mut self, cx: &mut Context<'_, Device>, command: Command) -> Result<Flow> {
        let (device, now) = (&mut *cx.endpoint, cx.now);
        let (online, done) = match command {
            Command::Request(request, reply) => {
                self.agent.request(device, now, cx.rng, request, reply);
                self.flush(device.identity());
                return Ok(Flow::Continue);
            }
            Command::Sleep(done) => (false, done),
            Command::Wake(done) => (true, done),
        };
        self.agent.set_online(online, device, now);
        let state = if online { "online" } else { "offline" };
        tracing::info!(device = %device.identity(), "{state}");
        let _ = done.send(());
        self.flush(device.identity());
        Ok(Flow::Continue)
    }

    fn online(&self) -> bool {
        self.agent.online()
    }

    fn next_wakeup(&self) -> Option<Millis> {
        self.agent.next_wakeup()
    }

    fn on_wakeup(&mut self, cx: &mut Context<'_, Device>) -> Result<Flow> {
        self.agent.on_wakeup(cx.endpoint, cx.now);
        self.flush(cx.endpoint.identity());
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
    let device = Device::new(setup.config)?;
    let node = DeviceNode::new(&device, store, setup.poll, None)?;
    let daemon = Daemon::bind("sga-device", identity, setup.link, device).await?;
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
