//! The async shell around one sans-IO role: a UDP socket, a clock and an RNG.
//!
//! The whole driver is the loop quinn's `ConnectionDriver` has (STYLE.md): wait for a datagram
//! or for the role's deadline, feed it to the role, then drain the role's events — handing each
//! to a [`Handler`] that persists what must survive a restart — and only after that send the
//! role's datagrams. A handler error stops the loop *before* anything is sent, so a datagram
//! never leaves that depends on state the store failed to record.
//!
//! What of that loop needs no I/O — the [`Handler`] trait, the deadline, the timer and the
//! drain — is [`m2msec_protocol::drive`], tested there without sockets; this shell waits, owns
//! the socket and the clock.
//!
//! Besides datagrams and timers, a handler may take commands from outside the network (a
//! device's control socket, a demo's script: [`Driver::run_with`]) and take the role off the
//! network ([`Handler::online`]).
//!
//! Time given to the role is [`wall_clock`]: milliseconds since the UNIX epoch, the time base
//! trust records are stored in.
//!
//! Refused input is logged through the running driver's [`LogLimit`] (see [`log_event`]): once
//! per peer and reason in an interval, with a summary of the rest.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use m2msec_crypto::rng::{CryptoRng, OsRng, SeededRng};
use m2msec_protocol::drive::{self, Drained};
pub use m2msec_protocol::drive::{Context, Flow, Handler};
use m2msec_protocol::{Endpoint, Logged, Millis};
use m2msec_store::{MemoryStore, RedbStore, Store};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::runtime::log_limit::LogLimit;
use crate::runtime::tap::Wiretap;

/// The largest datagram the driver receives (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// The RNG of one role in a demo run: with a seed, a stream of its own for each `role` (a
/// number distinct per protocol and role), so that a run repeats; without, the operating
/// system's.
#[must_use]
pub fn role_rng(seed: Option<u64>, role: u64) -> Box<dyn CryptoRng + Send> {
    match seed {
        Some(s) => Box::new(SeededRng::from_seed_u64(
            s.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(role),
        )),
        None => Box::new(OsRng),
    }
}

/// Milliseconds since the UNIX epoch, the time the daemons feed their roles.
#[must_use]
pub fn wall_clock() -> Millis {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// Writes a log line at `level`, a [`m2msec_protocol::Level`] known only at run time (`tracing` fixes each
/// line's level where it is written).
macro_rules! log_at {
    ($level:expr, $($line:tt)+) => {
        match $level {
            m2msec_protocol::Level::Error => tracing::error!($($line)+),
            m2msec_protocol::Level::Warn => tracing::warn!($($line)+),
            m2msec_protocol::Level::Info => tracing::info!($($line)+),
            m2msec_protocol::Level::Debug => tracing::debug!($($line)+),
            m2msec_protocol::Level::Trace => tracing::trace!($($line)+),
        }
    };
}
pub(crate) use log_at;

tokio::task_local! {
    /// The log limit of the driver running on this task. Every handler of every protocol logs
    /// with [`log_event`], and the limit must be one per daemon (a demo runs several in one
    /// process), live as long as its driver runs and be summarised on the driver's timer: a
    /// task-local of [`Driver::run_with`] is all of that without a limit in every handler.
    static REJECTIONS: RefCell<LogLimit>;
}

/// Writes `event` to the log at its level, as it reads ([`Logged`]), if it is [`admitted`].
pub fn log_event(event: &impl Logged) {
    if admitted(event) {
        log_at!(event.level(), "{event}");
    }
}

/// Whether to log `event`: every event but refused input ([`Logged::rejection`]) whose peer
/// had one refused for the same reason logged this interval by the running driver's
/// [`LogLimit`], which counts it and summarises such refusals. Outside a driver, every event.
pub fn admitted(event: &impl Logged) -> bool {
    let Some(rejection) = event.rejection() else {
        return true;
    };
    REJECTIONS
        .try_with(|limit| limit.borrow_mut().admit(&rejection.peer, &rejection.reason))
        .unwrap_or(true)
}

/// How long until the running driver's log limit has a summary to write, if it has one.
fn summary_due() -> Option<Duration> {
    let due = REJECTIONS.try_with(|limit| limit.borrow().due()).ok()??;
    Some(due.saturating_duration_since(Instant::now()))
}

/// The handler of a role whose events are only logged: nothing to persist, nothing to report.
#[derive(Debug, Default)]
pub struct Logs;

impl<E: Endpoint<Event: Logged>> Handler<E> for Logs {
    type Error = Error;

    fn on_event(&mut self, _cx: &mut Context<'_, E>, event: E::Event) -> Result<Flow> {
        log_event(&event);
        Ok(Flow::Continue)
    }
}

/// A signal telling every driver of a deployment to stop.
#[derive(Debug)]
pub struct ShutdownSender(watch::Sender<bool>);

/// The receiving side of [`ShutdownSender`]; cheap to clone, one per driver.
#[derive(Clone, Debug)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

/// A new shutdown signal.
#[must_use]
pub fn shutdown_channel() -> (ShutdownSender, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownSender(tx), Shutdown(Some(rx)))
}

impl ShutdownSender {
    /// Tells every [`Shutdown`] to stop.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A signal that never fires.
    #[must_use]
    pub fn never() -> Self {
        Self(None)
    }

    pub(crate) async fn wait(&mut self) {
        let Some(rx) = self.0.as_mut() else {
            return std::future::pending().await;
        };
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return; // sender gone: nobody can run us any more
            }
        }
    }
}

/// One role bound to one UDP socket.
pub struct Driver<E> {
    name: String,
    /// `None` while the handler keeps the role offline.
    socket: Option<Arc<UdpSocket>>,
    local: SocketAddr,
    endpoint: E,
    rng: Box<dyn CryptoRng + Send>,
    tap: Option<Wiretap>,
}

impl<E: Endpoint> Driver<E> {
    /// Wraps `endpoint` around an already bound `socket`.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] if the socket's local address cannot be read.
    pub fn new(
        name: impl Into<String>,
        socket: UdpSocket,
        endpoint: E,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Result<Self> {
        let local = socket.local_addr().map_err(Error::Socket)?;
        Ok(Self {
            name: name.into(),
            socket: Some(Arc::new(socket)),
            local,
            endpoint,
            rng,
            tap: None,
        })
    }

    /// Records every sent datagram in `tap`.
    #[must_use]
    pub fn with_tap(mut self, tap: Wiretap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The socket's local address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The role, for set-up before [`Driver::run`] (starting a client session…).
    pub fn endpoint_mut(&mut self) -> (&mut E, &mut dyn CryptoRng) {
        (&mut self.endpoint, &mut *self.rng)
    }

    /// Serves until the handler says stop or `shutdown` fires; returns the role (its counters).
    ///
    /// # Errors
    ///
    /// The first error of the handler; socket errors on receive or send are logged and the
    /// loop goes on (a peer that went away must not take the role down).
    pub async fn run<H: Handler<E, Error = Error>>(
        self,
        handler: &mut H,
        shutdown: Shutdown,
    ) -> Result<E> {
        let (_, none) = mpsc::channel::<Infallible>(1);
        self.run_with(handler, none, shutdown).await
    }

    /// As [`Driver::run`], also handing the handler each of `commands` until that channel
    /// closes.
    ///
    /// # Errors
    ///
    /// As [`Driver::run`]; [`Error::Bind`] if the socket cannot be bound again when the
    /// handler brings the role back online.
    pub async fn run_with<C, H: Handler<E, C, Error = Error>>(
        self,
        handler: &mut H,
        commands: mpsc::Receiver<C>,
        shutdown: Shutdown,
    ) -> Result<E> {
        // Dropped when the run ends, the limit then writes what it has not summarised yet.
        let limit = RefCell::new(LogLimit::new("rejected datagram"));
        REJECTIONS
            .scope(limit, self.serve(handler, commands, shutdown))
            .await
    }

    /// [`Driver::run_with`] within its log limit.
    async fn serve<C, H: Handler<E, C, Error = Error>>(
        mut self,
        handler: &mut H,
        mut commands: mpsc::Receiver<C>,
        mut shutdown: Shutdown,
    ) -> Result<E> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut commands_open = true;
        if self.drain(handler).await? == Flow::Stop {
            return Ok(self.endpoint);
        }
        loop {
            if let Some(until) = drive::held(handler, wall_clock) {
                let wait = Duration::from_millis(until.0.saturating_sub(wall_clock().0));
                tokio::select! {
                    biased;
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                if self.drain(handler).await? == Flow::Stop {
                    break;
                }
                continue;
            }
            let deadline = drive::deadline(&self.endpoint, handler);
            let sleep = deadline.map(|d| Duration::from_millis(d.0.saturating_sub(wall_clock().0)));
            let flow = tokio::select! {
                biased;
                () = shutdown.wait() => {
                    tracing::debug!(role = %self.name, "shutting down");
                    break;
                }
                command = commands.recv(), if commands_open => match command {
                    Some(command) => handler.on_command(&mut self.context(wall_clock()), command)?,
                    None => {
                        commands_open = false;
                        Flow::Continue
                    }
                },
                received = recv(self.socket.as_deref(), &mut buf) => {
                    match received {
                        Ok((len, from)) => {
                            tracing::trace!(role = %self.name, %from, len, "datagram in");
                            let datagram = buf.get(..len).unwrap_or_default();
                            self.endpoint.handle_datagram(wall_clock(), from, datagram, &mut *self.rng);
                        }
                        Err(e) => tracing::debug!(role = %self.name, error = %e, "receive failed"),
                    }
                    Flow::Continue
                }
                () = sleep_for(sleep) => {
                    drive::on_timer(&mut self.endpoint, &mut *self.rng, handler, wall_clock())?
                }
                () = sleep_for(summary_due()) => {
                    let _ = REJECTIONS.try_with(|limit| limit.borrow_mut().tick());
                    Flow::Continue
                }
            };
            if self.drain(handler).await? == Flow::Stop || flow == Flow::Stop {
                break;
            }
        }
        Ok(self.endpoint)
    }

    /// What the handler may touch at `now`.
    fn context(&mut self, now: Millis) -> Context<'_, E> {
        Context {
            endpoint: &mut self.endpoint,
            now,
            rng: &mut *self.rng,
        }
    }

    /// Hands every pending event to the handler, then sends every pending datagram (lost
    /// while the role is offline).
    async fn drain<C, H: Handler<E, C, Error = Error>>(&mut self, handler: &mut H) -> Result<Flow> {
        let Drained {
            flow,
            online,
            transmits,
        } = drive::drain(&mut self.endpoint, &mut *self.rng, handler, wall_clock)?;
        match (online, self.socket.is_some()) {
            (false, true) => self.socket = None,
            (true, false) => self.socket = Some(Arc::new(bind(self.local).await?)),
            _ => {}
        }
        // Datagrams come only while online, and the socket is bound then.
        if let Some(socket) = &self.socket {
            for transmit in transmits {
                send(&self.name, socket, self.local, self.tap.as_ref(), transmit).await;
            }
        }
        Ok(flow)
    }
}

/// How long a datagram that a bad link holds back waits per later datagram allowed to
/// overtake it: on loopback the next datagram follows within this.
const REORDER_STEP: Duration = Duration::from_millis(3);

/// Sends `transmit` from `socket` (bound on `local`), the one send path of every role's
/// driver; see [`Egress`]. A send error is logged: a peer that went away must not take the role
/// down.
pub async fn send(
    role: &str,
    socket: &Arc<UdpSocket>,
    local: SocketAddr,
    tap: Option<&Wiretap>,
    transmit: m2msec_protocol::Transmit,
) {
    let (to, payload) = (transmit.destination, transmit.payload);
    tracing::trace!(role, %to, len = payload.len(), "datagram out");
    if let Err(e) = send_datagram(socket, local, tap, &payload, to).await {
        tracing::warn!(role, %to, error = %e, "send failed");
    }
}

/// The tap records the datagram and, when it stands for a bad link ([`Wiretap::with_faults`]),
/// decides whether it is lost, sent twice, or delayed so that later datagrams overtake it.
async fn send_datagram(
    socket: &Arc<UdpSocket>,
    local: SocketAddr,
    tap: Option<&Wiretap>,
    payload: &[u8],
    to: SocketAddr,
) -> std::io::Result<()> {
    let fate = match tap {
        Some(tap) => {
            tap.record(local, to, payload);
            tap.fate(local)
        }
        None => vec![0],
    };
    if fate.is_empty() {
        tracing::trace!(%local, %to, "datagram lost on the bad link");
    }
    for hold in fate {
        if hold == 0 {
            socket.send_to(payload, to).await?;
        } else {
            let (socket, payload) = (Arc::clone(socket), payload.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(REORDER_STEP * u32::from(hold)).await;
                let _ = socket.send_to(&payload, to).await;
            });
        }
    }
    Ok(())
}

/// A UDP socket's way out for code that owns its socket instead of running a [`Driver`] (the
/// relay's CoAP endpoints): every datagram goes through the same tap and bad link as a
/// driver's, so a lossy run treats every protocol alike.
#[derive(Clone, Debug)]
pub struct Egress {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tap: Option<Wiretap>,
}

impl Egress {
    /// Sends from `socket`, through `tap` when there is one.
    ///
    /// # Errors
    ///
    /// The socket's, if its local address cannot be read.
    pub fn new(socket: Arc<UdpSocket>, tap: Option<Wiretap>) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        Ok(Self { socket, local, tap })
    }

    /// The socket, to receive on.
    #[must_use]
    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// The socket's local address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `payload` to `to` (or, on a bad link, loses, doubles or delays it).
    ///
    /// # Errors
    ///
    /// The socket's.
    pub async fn send_to(&self, payload: &[u8], to: SocketAddr) -> std::io::Result<()> {
        send_datagram(&self.socket, self.local, self.tap.as_ref(), payload, to).await
    }
}

/// A datagram from `socket`, or never when there is none (a role offline, a sink without that
/// transport).
pub(crate) async fn recv(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Sleeps for `d`, or forever when there is nothing to wait for.
pub(crate) async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Opens the state database named by a config, or an in-memory store when none is.
///
/// # Errors
///
/// [`Error::Store`] if the database cannot be opened.
pub fn open_store(path: Option<&Path>) -> Result<Arc<dyn Store>> {
    match path {
        Some(p) => Ok(Arc::new(RedbStore::open(p)?)),
        None => Ok(Arc::new(MemoryStore::new())),
    }
}

/// Binds a UDP socket on `addr`.
///
/// # Errors
///
/// [`Error::Bind`] naming the address.
pub async fn bind(addr: SocketAddr) -> Result<UdpSocket> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn termination_signal() {
    // Unix only, as the node is (the SGA device's control socket is a Unix socket).
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
