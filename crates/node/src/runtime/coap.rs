//! CoAP over tokio UDP for the relay's daemons and command-line clients: the thin I/O shell
//! around the sans-IO `m2msec_coap` crate.
//!
//! [`CoapClient`] is one UDP socket and one task driving an `m2msec_coap::Client`: it feeds
//! the engine the datagrams it receives and the time from tokio's clock, sends what the engine
//! asks through [`Egress`] (so taps, pcaps and loss injection apply), and hands each response to
//! the [`CoapClient::request`] waiting for it and each notification to its [`Observation`].
//! Retransmission, separate responses, NSTART, block-wise transfer and observe ordering all
//! happen in the engine. The server parts (dedup, Block1 reassembly, Block2 slicing, observers,
//! response builders) are the crate's, re-exported here with [`monotonic_now`] as their clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use m2msec_coap::client::{Client, Event, RequestId};
use m2msec_crypto::rng::OsRng;
use m2msec_protocol::Millis;
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::coap::coap_lite::{CoapOption, Packet, RequestType};
use m2msec_wire::relay::coap::{self as mapping, Target};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::runtime::driver::{self, Egress};
use crate::runtime::tap::Wiretap;

pub use m2msec_coap::{
    ACK_RANDOM_FACTOR, ACK_TIMEOUT, Assembled, Block1Assembler, BlockOpt, CON_EVERY, Config,
    DEFAULT_SZX, Dedup, DedupCache, EXCHANGE_LIFETIME, Error, MAX_RETRANSMIT, MAX_TRANSMIT_WAIT,
    MessageIds, Observers, Received, ReplyTo, Repost, Result, Server, Transmission, block_size,
    code_string, content_format, is_success, new_request, observe_value, parse_datagram,
    piggybacked_response, response, response_code, separate_response, set_uint_option,
    slice_block2, uint_option,
};

/// Largest datagram the receive loop accepts.
const RECV_BUFFER: usize = 65_535;
/// Notifications an observation holds for a reader that is behind; the newest are dropped past
/// it (newer ones will follow).
const NOTIFICATIONS_BUFFERED: usize = 16;

/// Milliseconds since this process first asked, on the monotonic clock: the `now` the server
/// parts (dedup, reassembly, observers) take, immune to wall-clock steps.
#[must_use]
pub fn monotonic_now() -> Millis {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    Millis(u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain tables behind, still consistent
    // enough to serve: recover them rather than propagate the panic to every exchange.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The engine and who waits for what it says.
struct State {
    engine: Client,
    /// The caller of each request (an observation's registration included).
    waiters: HashMap<RequestId, oneshot::Sender<Result<Packet>>>,
    /// The reader of each observation.
    observations: HashMap<RequestId, mpsc::Sender<Result<Packet>>>,
}

impl State {
    /// Routes the engine's events to their waiters.
    fn dispatch(&mut self, now: Millis) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Response { request, response } => {
                    if let Some(tx) = self.waiters.remove(&request) {
                        let _ = tx.send(Ok(response));
                    }
                }
                Event::Failed { request, error } => {
                    if let Some(tx) = self.waiters.remove(&request) {
                        let _ = tx.send(Err(error));
                    }
                }
                Event::Notification {
                    observation,
                    notification,
                } => {
                    let Some(tx) = self.observations.get(&observation) else {
                        continue;
                    };
                    match tx.try_send(notification) {
                        // A full queue drops this notification; the newer ones will follow.
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        // The reader is gone: its next notification gets a Reset.
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.observations.remove(&observation);
                            self.engine.forget_observation(now, observation, &mut OsRng);
                        }
                    }
                }
                // Dropping the sender ends the reader's stream once it has read what is queued.
                Event::ObservationEnded { observation } => {
                    self.observations.remove(&observation);
                }
            }
        }
    }
}

struct Shared {
    socket: Egress,
    /// Time zero of the engine's clock.
    origin: tokio::time::Instant,
    state: Mutex<State>,
    /// Tells the driving task that the engine changed outside it (a request started or was
    /// abandoned): it has datagrams to send and perhaps an earlier timer.
    wake: Notify,
}

impl Shared {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Millis) -> tokio::time::Instant {
        self.origin + Duration::from_millis(at.0)
    }

    /// Sends what the engine queued and routes its events; a send that fails fails the
    /// request whose datagram it was with the socket's error, and no other.
    async fn flush(&self) {
        loop {
            let transmits: Vec<_> = {
                let mut st = lock(&self.state);
                st.dispatch(self.now());
                core::iter::from_fn(|| st.engine.poll_transmit()).collect()
            };
            if transmits.is_empty() {
                return;
            }
            for t in transmits {
                if let Err(e) = self.socket.send_to(&t.payload, t.destination).await {
                    tracing::debug!(error = %e, to = %t.destination, "CoAP client send");
                    let now = self.now();
                    lock(&self.state)
                        .engine
                        .fail_transmit(now, &t, Error::Io(e), &mut OsRng);
                }
            }
        }
    }
}

/// The task that owns the socket's receiving side and the engine's timer.
async fn drive(shared: Arc<Shared>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let deadline = lock(&shared.state)
            .engine
            .poll_timeout()
            .map(|at| shared.instant(at));
        let timer = driver::sleep_for(
            deadline.map(|at| at.saturating_duration_since(tokio::time::Instant::now())),
        );
        tokio::select! {
            received = shared.socket.socket().recv_from(&mut buf) => match received {
                Ok((n, peer)) => {
                    let now = shared.now();
                    if let Some(datagram) = buf.get(..n) {
                        lock(&shared.state)
                            .engine
                            .handle_datagram(now, peer, datagram, &mut OsRng);
                    }
                }
                Err(e) => {
                    // ICMP errors of earlier sends surface here on some systems; keep serving.
                    tracing::debug!(error = %e, "CoAP client receive");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            },
            () = timer => {
                let now = shared.now();
                lock(&shared.state).engine.handle_timeout(now, &mut OsRng);
            }
            () = shared.wake.notified() => {}
        }
        shared.flush().await;
    }
}

/// Aborts the driving task once the last client handle is gone.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A CoAP client endpoint: one UDP socket, any number of concurrent requests and observations.
///
/// Cheap to clone; the socket and its task live until the last clone (and the last
/// [`Observation`]) is dropped.
///
/// ```no_run
/// # async fn demo() -> m2msec_node::runtime::coap::Result<()> {
/// use m2msec_node::runtime::coap::{CoapClient, Config};
/// let client = CoapClient::bind("0.0.0.0:0".parse().unwrap(), Config::default()).await?;
/// let proxy = "127.0.0.1:5683".parse().unwrap();
/// let info = client.get(proxy, "info").await?;          // 2.05, payload = api::Info CBOR
/// let mut monitor = client.observe(proxy, "storage/1/monitor").await?;
/// while let Some(notification) = monitor.next().await { let _ = notification?; }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CoapClient {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl core::fmt::Debug for CoapClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoapClient")
            .field("local", &self.shared.socket.local_addr())
            .finish_non_exhaustive()
    }
}

/// Abandons a request whose caller stopped waiting (its future was dropped).
struct Abandon<'a> {
    shared: &'a Shared,
    id: RequestId,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        let now = self.shared.now();
        let mut st = lock(&self.shared.state);
        // Still waited for: the engine has not finished it, so it must stop.
        if st.waiters.remove(&self.id).is_some() {
            st.engine.cancel(now, self.id, &mut OsRng);
            drop(st);
            self.shared.wake.notify_one();
        }
    }
}

impl CoapClient {
    /// Binds a client socket (port 0 for an ephemeral one) and starts its task.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be bound; [`Error::InvalidRequest`] for a config
    /// with `nstart` 0 or a block size exponent above 6.
    pub async fn bind(addr: SocketAddr, config: Config) -> Result<Self> {
        Self::bind_tapped(addr, config, None).await
    }

    /// As [`CoapClient::bind`], every datagram sent recorded by `tap` and, when it stands for
    /// a bad link, lost, doubled or delayed (`m2msec demo --loss`, tests).
    ///
    /// # Errors
    /// As [`CoapClient::bind`].
    pub async fn bind_tapped(
        addr: SocketAddr,
        config: Config,
        tap: Option<Wiretap>,
    ) -> Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        let engine = Client::new(config, &mut OsRng)?;
        let socket = Egress::new(Arc::new(socket), tap)?;
        let shared = Arc::new(Shared {
            socket,
            origin: tokio::time::Instant::now(),
            state: Mutex::new(State {
                engine,
                waiters: HashMap::new(),
                observations: HashMap::new(),
            }),
            wake: Notify::new(),
        });
        let task = tokio::spawn(drive(Arc::clone(&shared)));
        Ok(Self {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.shared.socket.local_addr())
    }

    /// Sends `req` to `peer` and returns the complete response.
    ///
    /// The request's type (CON or NON), code, options and payload are kept; its message id is
    /// assigned here, and so is a random 8-byte token when it has none (a relay POST carries
    /// the relay message id as token). A payload above the block size goes Block1, a
    /// response announcing more Block2 blocks is fetched to the end (GET and FETCH only). The
    /// returned packet holds the whole payload. Error responses (4.xx, 5.xx) are returned as
    /// responses, not as errors.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::NoResponse`], [`Error::Reset`], [`Error::TokenInUse`],
    /// [`Error::TooLarge`], [`Error::Blockwise`], [`Error::Encode`], [`Error::Io`].
    pub async fn request(&self, peer: SocketAddr, req: Packet) -> Result<Packet> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let now = self.shared.now();
            let mut st = lock(&self.shared.state);
            let id = st.engine.request(now, peer, req, &mut OsRng)?;
            st.waiters.insert(id, tx);
            id
        };
        let _abandon = Abandon {
            shared: &self.shared,
            id,
        };
        self.shared.wake.notify_one();
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// `GET path` (CON); `path` may carry a query (`load?window=60`).
    ///
    /// # Errors
    /// As [`CoapClient::request`].
    pub async fn get(&self, peer: SocketAddr, path: &str) -> Result<Packet> {
        self.request(peer, new_request(RequestType::Get, path, true)?)
            .await
    }

    /// `POST path` (CON) with a body and, if given, its Content-Format.
    ///
    /// # Errors
    /// As [`CoapClient::request`].
    pub async fn post(
        &self,
        peer: SocketAddr,
        path: &str,
        payload: Vec<u8>,
        content_format: Option<u16>,
    ) -> Result<Packet> {
        self.with_body(RequestType::Post, peer, path, payload, content_format)
            .await
    }

    /// `DELETE path` (CON) with a body (the owner's `api::Signed`).
    ///
    /// # Errors
    /// As [`CoapClient::request`].
    pub async fn delete(
        &self,
        peer: SocketAddr,
        path: &str,
        payload: Vec<u8>,
        content_format: Option<u16>,
    ) -> Result<Packet> {
        self.with_body(RequestType::Delete, peer, path, payload, content_format)
            .await
    }

    async fn with_body(
        &self,
        method: RequestType,
        peer: SocketAddr,
        path: &str,
        payload: Vec<u8>,
        content_format: Option<u16>,
    ) -> Result<Packet> {
        let mut req = new_request(method, path, true)?;
        if let Some(cf) = content_format {
            set_uint_option(&mut req, CoapOption::ContentFormat, u32::from(cf));
        }
        req.payload = payload;
        self.request(peer, req).await
    }

    /// POSTs a relay message mapped onto CoAP (token = relay message id) and returns the
    /// response (2.04 once stored, 5.03 + Max-Age when full…).
    ///
    /// # Errors
    /// [`Error::Wire`] when the message does not map, otherwise as [`CoapClient::request`].
    pub async fn post_relay(
        &self,
        peer: SocketAddr,
        msg: &RelayMessage,
        target: &Target<'_>,
        confirmable: bool,
    ) -> Result<Packet> {
        let req = mapping::to_request(msg, target, 0, confirmable)?;
        self.request(peer, req).await
    }

    /// Registers as an observer of `path` (RFC 7641) and returns the observation, whose first
    /// item is the current representation.
    ///
    /// If the server does not support observing the resource (no Observe option in its
    /// response), the observation yields that one response and ends.
    ///
    /// # Errors
    /// [`Error::Status`] when the server answers with anything but 2.xx, otherwise as
    /// [`CoapClient::request`].
    pub async fn observe(&self, peer: SocketAddr, path: &str) -> Result<Observation> {
        let (tx, rx) = oneshot::channel();
        let (notifications, reader) = mpsc::channel(NOTIFICATIONS_BUFFERED);
        let (id, token) = {
            let now = self.shared.now();
            let mut st = lock(&self.shared.state);
            let id = st.engine.observe(now, peer, path, &mut OsRng)?;
            let token = st
                .engine
                .observation_token(id)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            st.waiters.insert(id, tx);
            st.observations.insert(id, notifications);
            (id, token)
        };
        self.shared.wake.notify_one();
        // On error the observation is dropped, which forgets it.
        let mut observation = Observation {
            client: self.clone(),
            id,
            peer,
            token,
            path: path.to_owned(),
            rx: reader,
            first: None,
            ended: false,
        };
        let first = rx.await.unwrap_or(Err(Error::Closed))?;
        observation.first = Some(first);
        Ok(observation)
    }
}

/// A registration as observer of one resource (RFC 7641): yields notifications in order.
///
/// Dropping it forgets the registration at once; the server learns it from the Reset its
/// next notification gets (RFC 7641 §3.6). [`Observation::cancel`] deregisters explicitly.
pub struct Observation {
    client: CoapClient,
    id: RequestId,
    peer: SocketAddr,
    token: Vec<u8>,
    path: String,
    rx: mpsc::Receiver<Result<Packet>>,
    first: Option<Packet>,
    ended: bool,
}

impl core::fmt::Debug for Observation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observation")
            .field("peer", &self.peer)
            .field("path", &self.path)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Observation {
    /// The next notification (the first is the registration's response), with its whole
    /// payload; `None` once the observation has ended (the server sent a non-2.xx or a
    /// response without Observe, or the client was shut down).
    ///
    /// Notifications older than one already delivered are skipped (RFC 7641 §3.4), and one
    /// sent block-wise is completed first (RFC 7959 §3.4): the engine does both.
    pub async fn next(&mut self) -> Option<Result<Packet>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        if self.ended {
            return None;
        }
        let next = self.rx.recv().await;
        self.ended = next.is_none();
        next
    }

    /// Deregisters explicitly with a GET carrying Observe = 1 (RFC 7641 §3.6).
    ///
    /// # Errors
    /// As [`CoapClient::request`]; the local registration is gone either way.
    pub async fn cancel(mut self) -> Result<()> {
        self.forget();
        let mut req = new_request(RequestType::Get, &self.path, true)?;
        req.set_token(self.token.clone());
        set_uint_option(&mut req, CoapOption::Observe, 1);
        self.client.request(self.peer, req).await.map(|_| ())
    }

    fn forget(&mut self) {
        self.ended = true;
        let shared = &self.client.shared;
        let now = shared.now();
        let mut st = lock(&shared.state);
        st.observations.remove(&self.id);
        st.waiters.remove(&self.id);
        st.engine.forget_observation(now, self.id, &mut OsRng);
        drop(st);
        shared.wake.notify_one();
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.forget();
    }
}
