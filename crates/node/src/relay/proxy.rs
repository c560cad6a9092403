//! The relay proxy daemon (`m2msec run relay-proxy`): the secure store-and-forward proxy of
//! paper 004 §IV, serving its RESTful API over CoAP (RFC 7252) on UDP.
//!
//! The proxy is untrusted: it stores sources' protected streams while no data sink is known,
//! and later forwards them, re-encrypting only the management messages (AFGH eq. (3)) to each
//! sink its owner grants, with re-encryption keys that cannot decrypt anything. The API and
//! every field of its config file are described in `examples/relay-proxy.toml`.
//!
//! # Structure
//! The API's decisions — routing, reads, admission, the control calls with owner
//! authorisation, positions, retention — are the engine's, one sans-IO role
//! (`m2msec_protocol::relay::proxy::Proxy`); this module is its tokio shell.
//!
//! - `server`: one task owns the CoAP socket: parses, deduplicates, reassembles block-wise
//!   uploads, hands the decoded request to the engine, does what it asks (commits through the
//!   writer, sockets, tasks), answers, notifies observers (`runtime::coap::Observers`).
//! - `ingest`: admission of messages into a bounded queue (5.03 + Max-Age when full, so memory
//!   stays bounded under a flood), and the plain-UDP ingestion sockets.
//! - `writer`: the only task that writes queues — group commits (one transaction per batch;
//!   a message is acknowledged only after it), housekeeping (positions, retention, dedup
//!   pruning) and the control plane's writes.
//! - `control`: what the shell does for the engine's `store`, `forward`, `control` and
//!   `DELETE` calls (commits, UDP sockets, tasks, logs).
//! - `forward`: one task per sink driving the engine's pump (`pump::Pump`), delivering
//!   through `deliver`.
//! - `state`: what all of them share in memory; `records` (the engine's): what is kept in the
//!   store.
//!
//! # Guarantees
//! - **Durability**: a 2.04 for a message leaves only after the transaction holding it
//!   committed. A proxy killed at any moment (SIGKILL) and restarted on the same state database
//!   holds every message it acknowledged, exactly once: a retransmission of a message stored but
//!   not yet acknowledged is recognised by its dedup key (flags, message id, stream id, key
//!   index) and acknowledged without a second copy.
//! - **Back-pressure**: a message that does not fit its storage's or the proxy's capacity is
//!   answered 5.03 Service Unavailable with Max-Age, never dropped silently; plain-UDP refusals
//!   are counted in the storage's monitor and logged.
//! - **Retention**: a message is removed once every sink of every forward of its storage has
//!   passed it (delivered, or skipped as outside its epochs). A storage without a forward, or
//!   with a forward that has no sink, keeps everything until it is full or deleted.
//! - **Forwarding never skips** a message for lack of an answer: a sink that is down gets the
//!   same message again with back-off, for as long as it takes. After a restart delivery resumes
//!   from the positions written at most 100 ms before the crash, so a sink may see a message
//!   again; its durable seen set drops it.
//! - **Bounded**: the ingest queue, storages, forwards, sinks per forward, observers, block-wise
//!   uploads, cached answers and concurrent control calls all have limits.

pub mod config;
pub(crate) mod control;
pub(crate) mod deliver;
pub(crate) mod forward;
pub(crate) mod ingest;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod writer;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub(crate) use m2msec_protocol::relay::proxy::records;
use m2msec_store::Store;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

pub use config::ProxyConfig;

use self::state::Engine;
use self::writer::{Command, Deferred, Ingest};
use crate::error::{Error, Result};
use crate::runtime::driver::open_store;
use crate::runtime::driver::{self, Egress, Shutdown, wall_clock};
use crate::runtime::log_limit::LogLimit;
use crate::runtime::tap::Wiretap;

/// Control calls (store, forward, control, delete) waiting or running at once, at most.
const CONTROL_SLOTS: usize = 64;

/// What the proxy's tasks share.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) store: Arc<dyn Store>,
    core: Mutex<Engine>,
    /// Admitted messages on their way to the writer (bounded: `ingest_queue`).
    pub(crate) ingest: mpsc::Sender<Ingest>,
    /// Control-plane writes for the writer.
    pub(crate) writer: mpsc::Sender<Command>,
    /// Answers and results computed away from the server's task.
    pub(crate) deferred: mpsc::UnboundedSender<Deferred>,
    /// Fires when the proxy stops.
    pub(crate) stop: watch::Receiver<bool>,
    /// What every datagram the proxy sends goes through (answers and forwards): a demo's bad
    /// link.
    pub(crate) tap: Option<Wiretap>,
}

impl Shared {
    /// The engine and its state. Critical sections never await and never call the store, and leave
    /// the state consistent at every step, so a poisoned lock (a panic elsewhere) is carried on
    /// from rather than propagated.
    pub(crate) fn core(&self) -> MutexGuard<'_, Engine> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    shared: Arc<Shared>,
    socket: Egress,
    local: SocketAddr,
    ingest: mpsc::Receiver<Ingest>,
    commands: mpsc::Receiver<Command>,
    deferred: mpsc::UnboundedReceiver<Deferred>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// Runs the proxy of `config_file` until `shutdown` (`m2msec run relay-proxy --config FILE`).
///
/// # Errors
///
/// Config, store and bind errors; a store error while serving stops the proxy (nothing that
/// depended on the failed write was acknowledged).
pub async fn run_file(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    run(ProxyConfig::from_file(config_file)?, shutdown).await
}

/// Runs a proxy of `config` until `shutdown`.
///
/// # Errors
///
/// As [`run_file`].
pub async fn run(config: ProxyConfig, shutdown: Shutdown) -> Result<()> {
    Proxy::bind(config).await?.run(shutdown).await
}

impl Proxy {
    /// Opens the state database (or an in-memory store when `config.state` is `None`), reads
    /// back storages, forwards and positions, and binds the CoAP socket. Nothing is served until
    /// [`Proxy::run`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`]-like usage errors for invalid values, [`Error::Store`] if the database
    /// cannot be opened or read, [`Error::Bind`] if the address is taken.
    pub async fn bind(config: ProxyConfig) -> Result<Self> {
        Self::bind_tapped(config, None).await
    }

    /// As [`Proxy::bind`], every datagram the proxy sends (its answers and its forwards to
    /// the sinks) recorded by `tap` and, when it stands for a bad link, impaired by it.
    ///
    /// # Errors
    ///
    /// As [`Proxy::bind`].
    pub async fn bind_tapped(config: ProxyConfig, tap: Option<Wiretap>) -> Result<Self> {
        let store = open_store(config.state.as_deref())?;
        Self::bind_with_store(config, store, tap).await
    }

    /// As [`Proxy::bind_tapped`], on a store the caller opened.
    ///
    /// # Errors
    ///
    /// As [`Proxy::bind`].
    pub async fn bind_with_store(
        config: ProxyConfig,
        store: Arc<dyn Store>,
        tap: Option<Wiretap>,
    ) -> Result<Self> {
        config.check().map_err(Error::Usage)?;
        let socket = driver::bind(config.listen).await?;
        let local = socket.local_addr().map_err(Error::Socket)?;
        let queue = usize::try_from(config.ingest_queue).unwrap_or(usize::MAX);
        let (ingest_tx, ingest) = mpsc::channel(queue);
        let (writer_tx, commands) = mpsc::channel(CONTROL_SLOTS);
        let (deferred_tx, deferred) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let core = Engine::new(
            config.limits(CONTROL_SLOTS),
            Arc::clone(&store),
            wall_clock(),
        );
        let shared = Arc::new(Shared {
            config,
            store,
            core: Mutex::new(core),
            ingest: ingest_tx,
            writer: writer_tx,
            deferred: deferred_tx,
            stop: stop_rx,
            tap: tap.clone(),
        });
        recover(&shared).await?;
        Ok(Self {
            shared,
            socket: Egress::new(Arc::new(socket), tap).map_err(Error::Socket)?,
            local,
            ingest,
            commands,
            deferred,
            stop,
        })
    }

    /// The CoAP address it serves.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown`; then answers what was admitted, writes the final positions and
    /// returns.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store failed while serving.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<()> {
        let Self {
            shared,
            socket,
            local,
            ingest,
            commands,
            deferred,
            stop,
        } = self;
        let info = shared.core().info();
        tracing::info!(
            role = "relay-proxy",
            listen = %local,
            state = ?shared.config.state,
            capacity = info.capacity,
            storages = info.storages,
            forwards = info.forwards,
            "serving"
        );
        let mut writer = tokio::spawn(writer::run(
            Arc::clone(&shared),
            ingest,
            commands,
            shared.stop.clone(),
        ));
        let server = tokio::spawn(
            server::Server::new(Arc::clone(&shared), socket, deferred).run(shared.stop.clone()),
        );
        let ended = tokio::select! {
            () = shutdown.wait() => None,
            r = &mut writer => Some(r),
        };
        stop.send_replace(true);
        let joined = match ended {
            None => writer.await,
            Some(r) => r,
        };
        let result =
            joined.unwrap_or_else(|e| Err(Error::Control(format!("relay proxy writer: {e}"))));
        let _ = server.await;
        stop_tasks(&shared);
        tracing::info!(role = "relay-proxy", "stopped");
        result
    }
}

/// Aborts the pumps and ingestion sockets (they also stop on their own at `stop`).
fn stop_tasks(shared: &Shared) {
    let core = shared.core();
    let udp = core.storages.values().map(|s| &s.handles.udp_task);
    let pumps = core.forwards.values().flat_map(|f| f.sinks.values());
    let tasks = udp.chain(pumps.map(|s| &s.handles)).flatten();
    tasks.for_each(AbortHandle::abort);
}

/// Reads back storages, forwards and positions into the engine (`Proxy::restore`), re-binds
/// the UDP ingestion ports and starts the pumps.
async fn recover(shared: &Arc<Shared>) -> Result<()> {
    let store = Arc::clone(&shared.store);
    let loaded = writer::blocking(move || records::load(&*store)).await?;
    let restored = shared.core().restore(loaded);
    for warning in &restored.warnings {
        tracing::warn!("{warning}");
    }
    let mut ops = restored.orphans;
    for (id, port) in restored.udp {
        let socket = rebind(shared, port).await?;
        let bound = socket.local_addr().map_err(Error::Socket)?.port();
        if port != Some(bound) {
            tracing::warn!(storage = id, old = ?port, new = bound, "UDP ingestion port changed");
            let moved = shared.core().udp_moved(id, bound);
            ops.extend(moved.map_err(|e| Error::Control(format!("relay proxy record: {e}")))?);
        }
        control::start_udp(shared, id, socket);
    }
    // The pumps of the forwards read back.
    control::on_events(shared, &mut None, &mut LogLimit::new("recovery"));
    if !ops.is_empty() {
        let store = Arc::clone(&shared.store);
        writer::blocking(move || writer::apply(&*store, &ops)).await?;
    }
    Ok(())
}

/// Binds a restored storage's UDP port again: `port` if it is free, so sources keep working,
/// else a new one.
async fn rebind(shared: &Shared, port: Option<u16>) -> Result<UdpSocket> {
    let ip = shared.config.udp_bind;
    if let Some(port) = port
        && let Ok(s) = UdpSocket::bind(SocketAddr::new(ip, port)).await
    {
        return Ok(s);
    }
    let addr = SocketAddr::new(ip, 0);
    UdpSocket::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}
