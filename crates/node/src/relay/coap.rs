//! CoAP (RFC 7252) over tokio UDP for the relay's daemons and command-line clients.
//!
//! Two halves:
//!
//! - [`CoapClient`]: one UDP socket and a receive task; [`CoapClient::request`] sends a
//!   request and returns its response, doing everything RFC 7252 and RFC 7959 ask of a client
//!   on the way: CON retransmission with exponential back-off (§4.2, §4.8), empty ACK followed
//!   by a separate response (§5.2.2), Block1 upload of large bodies and Block2 download of large
//!   representations (RFC 7959 §2); [`CoapClient::observe`] registers with a resource (RFC 7641)
//!   and yields its notifications in order until dropped or cancelled.
//! - server helpers for a daemon that owns its own socket: [`DedupCache`] answers a
//!   retransmitted CON with the cached response instead of processing it twice (RFC 7252 §4.5),
//!   [`response`] / [`piggybacked_response`] build a response matching a request,
//!   [`Block1Assembler`] reassembles a block-wise upload, [`slice_block2`] serves a large
//!   representation block by block, and [`Observers`] keeps a resource's observers and builds
//!   their notifications.
//!
//! Every cache, table and reassembly buffer here is capped and expires, so a peer that sends
//! garbage, never finishes an upload or vanishes costs bounded memory.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use m2msec_crypto::rng::{OsRng, random_array};
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use m2msec_wire::relay::coap::{self as mapping, Target};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::runtime::driver::Egress;
use crate::runtime::tap::Wiretap;

/// RFC 7252 §4.8 ACK_TIMEOUT.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 §4.8 ACK_RANDOM_FACTOR.
pub const ACK_RANDOM_FACTOR: f64 = 1.5;
/// RFC 7252 §4.8 MAX_RETRANSMIT.
pub const MAX_RETRANSMIT: u32 = 4;
/// RFC 7252 §4.8.2 MAX_TRANSMIT_WAIT: how long a CON request may go unanswered, retransmissions
/// included — also how long this client waits for a separate response by default.
pub const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);
/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME: how long a message id identifies one exchange.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Default block size exponent: SZX 6 = 1024-byte blocks (RFC 7959 §2.2).
pub const DEFAULT_SZX: u8 = 6;
/// Largest datagram the receive loops accept.
const RECV_BUFFER: usize = 65_535;
/// Longest token RFC 7252 §3 allows.
const MAX_TOKEN: usize = 8;
/// How many times a Block2 download restarts when the representation changes underneath.
const BLOCK2_RESTARTS: u32 = 3;
/// RFC 7641 §3.4: a notification this much newer is fresh whatever its sequence number.
const OBSERVE_FRESHNESS: Duration = Duration::from_secs(128);
/// Observe sequence numbers are 24 bits (RFC 7641 §2).
const OBSERVE_MASK: u32 = 0x00ff_ffff;

/// Why a CoAP exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Sending or receiving on the socket failed.
    #[error("CoAP socket: {0}")]
    Io(#[from] std::io::Error),
    /// A CON request was never acknowledged, retransmissions included.
    #[error("no acknowledgement from {peer} after {transmissions} transmissions")]
    Timeout {
        /// The server.
        peer: SocketAddr,
        /// Transmissions made (1 + MAX_RETRANSMIT).
        transmissions: u32,
    },
    /// The request was acknowledged (or sent NON) but no response came in time.
    #[error("no response from {peer} within {after:?}")]
    NoResponse {
        /// The server.
        peer: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The server rejected the message with a Reset.
    #[error("{peer} reset the exchange")]
    Reset {
        /// The server.
        peer: SocketAddr,
    },
    /// A message could not be encoded (too large for the datagram limit, bad token).
    #[error("cannot encode CoAP message: {0}")]
    Encode(String),
    /// The request is not one this client can send.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The relay mapping refused the message.
    #[error("relay mapping: {0}")]
    Wire(#[from] m2msec_wire::Error),
    /// Another exchange with the same token towards the same peer is running.
    #[error("token already in use towards {peer}")]
    TokenInUse {
        /// The server.
        peer: SocketAddr,
    },
    /// A block-wise transfer went wrong.
    #[error("block-wise transfer with {peer}: {reason}")]
    Blockwise {
        /// The server.
        peer: SocketAddr,
        /// What went wrong.
        reason: &'static str,
    },
    /// A body exceeded the configured limit.
    #[error("body of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Bytes received or to send.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The server answered with a code the operation cannot continue from.
    #[error("{peer} answered {code}")]
    Status {
        /// The server.
        peer: SocketAddr,
        /// The response code as `class.detail` (e.g. `4.04`).
        code: String,
    },
    /// The client's receive task is gone (the runtime is shutting down).
    #[error("the CoAP endpoint was closed")]
    Closed,
}

/// Result of the CoAP transport.
pub type Result<T> = core::result::Result<T, Error>;

/// Transmission parameters and limits of a [`CoapClient`].
///
/// The defaults are RFC 7252 §4.8's; tests shrink the timeouts so that a lost message costs
/// milliseconds instead of seconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Initial retransmission timeout of a CON message.
    pub ack_timeout: Duration,
    /// The initial timeout is drawn uniformly from `[ack_timeout, ack_timeout × factor]`, so
    /// that many clients that lost the same message do not retransmit in lock-step.
    pub ack_random_factor: f64,
    /// Retransmissions of a CON message before giving up.
    pub max_retransmit: u32,
    /// How long to wait for a separate response after an empty ACK, or for the response to a
    /// NON request.
    pub response_timeout: Duration,
    /// Block size exponent for uploads and downloads (size = 16 << szx, 0..=6).
    pub block_szx: u8,
    /// Largest body the client uploads or downloads block-wise.
    pub max_body: usize,
    /// Requests in flight towards one server at a time (RFC 7252 §4.7 NSTART, default 1).
    pub nstart: usize,
    /// Largest datagram the client sends.
    pub max_datagram: usize,
    /// Records every datagram the client sends and, when it stands for a bad link, loses,
    /// doubles or delays them (`m2msec demo --loss`, tests).
    pub tap: Option<Wiretap>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ack_timeout: ACK_TIMEOUT,
            ack_random_factor: ACK_RANDOM_FACTOR,
            max_retransmit: MAX_RETRANSMIT,
            response_timeout: MAX_TRANSMIT_WAIT,
            block_szx: DEFAULT_SZX,
            max_body: 1 << 20,
            nstart: 1,
            max_datagram: 4096,
            tap: None,
        }
    }
}

/// The two RFC 7252 §4.8 transmission parameters a deployment tunes to its link, as the
/// relay's config files give them (a `[coap]` table). The defaults are the RFC's, made for
/// lossy low-rate links; RFC 7252 §4.8.1 allows shorter ones where the round trip is known to
/// be short (the demo, on loopback).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Transmission {
    /// ACK_TIMEOUT, milliseconds: the first wait for an acknowledgement, doubled after each
    /// retransmission.
    pub ack_timeout_ms: u32,
    /// MAX_RETRANSMIT: retransmissions of a confirmable message before the exchange fails.
    pub max_retransmit: u32,
}

impl Default for Transmission {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 2_000,
            max_retransmit: MAX_RETRANSMIT,
        }
    }
}

impl Transmission {
    /// Checks the values; the message names the field.
    ///
    /// # Errors
    ///
    /// What is out of range.
    pub fn check(&self) -> core::result::Result<(), String> {
        if !(10..=60_000).contains(&self.ack_timeout_ms) {
            return Err("coap.ack_timeout_ms must be in 10..=60000".into());
        }
        if self.max_retransmit > 10 {
            return Err("coap.max_retransmit must be at most 10".into());
        }
        Ok(())
    }

    /// `config` with these parameters, and MAX_TRANSMIT_WAIT (the wait for a response that
    /// comes separately) derived from them as RFC 7252 §4.8.2 does.
    #[must_use]
    pub fn apply(self, config: Config) -> Config {
        let ack_timeout = Duration::from_millis(self.ack_timeout_ms.into());
        let span = (1u32 << (self.max_retransmit.min(10) + 1)) - 1;
        Config {
            ack_timeout,
            max_retransmit: self.max_retransmit,
            response_timeout: ack_timeout
                .saturating_mul(span)
                .mul_f64(config.ack_random_factor.max(1.0)),
            ..config
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options and codes

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOpt {
    /// The block number (20 bits).
    pub num: u32,
    /// Whether more blocks follow.
    pub more: bool,
    /// Size exponent: the block holds `16 << szx` bytes (0..=6; 7 is reserved).
    pub szx: u8,
}

impl BlockOpt {
    /// Largest block number the 3-byte option can carry.
    pub const MAX_NUM: u32 = (1 << 20) - 1;

    /// The block size in bytes.
    #[must_use]
    pub fn size(self) -> usize {
        block_size(self.szx)
    }

    /// The number of the block of size exponent `szx` that starts at `offset`; `None` past
    /// [`BlockOpt::MAX_NUM`].
    fn number_at(offset: usize, szx: u8) -> Option<u32> {
        u32::try_from(offset / block_size(szx))
            .ok()
            .filter(|n| *n <= Self::MAX_NUM)
    }

    /// Offset of this block's first byte in the body.
    #[must_use]
    pub fn offset(self) -> usize {
        usize::try_from(self.num)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.size())
    }

    /// The option value: the shortest big-endian encoding of `num << 4 | m << 3 | szx`.
    #[must_use]
    pub fn to_bytes(self) -> Vec<u8> {
        let v = (self.num.min(Self::MAX_NUM) << 4)
            | (u32::from(self.more) << 3)
            | u32::from(self.szx & 7);
        uint_bytes(v)
    }

    /// Decodes an option value; `None` for more than 3 bytes or the reserved SZX 7.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let v = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let szx = u8::try_from(v & 7).ok()?;
        (szx < 7).then_some(Self {
            num: v >> 4,
            more: v & 8 != 0,
            szx,
        })
    }

    /// The block option of `option` (Block1 or Block2) in `packet`: `Ok(None)` when absent.
    ///
    /// # Errors
    /// `Err(())` when the option is present but malformed or repeated; the caller answers
    /// 4.02 Bad Option or gives up, there is nothing more to say.
    #[allow(clippy::result_unit_err)]
    pub fn of(packet: &Packet, option: CoapOption) -> core::result::Result<Option<Self>, ()> {
        match single(packet, option) {
            Ok(None) => Ok(None),
            Ok(Some(v)) => Self::from_bytes(v).map(Some).ok_or(()),
            Err(()) => Err(()),
        }
    }
}

/// Bytes in a block of size exponent `szx` (clamped to 6).
#[must_use]
pub fn block_size(szx: u8) -> usize {
    16 << szx.min(6)
}

/// The shortest big-endian encoding of an unsigned option value (RFC 7252 §3.2).
fn uint_bytes(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

fn uint_of(bytes: &[u8]) -> Option<u32> {
    (bytes.len() <= 4).then(|| bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// The one value of a non-repeatable option.
fn single(packet: &Packet, option: CoapOption) -> core::result::Result<Option<&Vec<u8>>, ()> {
    match packet.get_option(option) {
        None => Ok(None),
        Some(list) if list.len() > 1 => Err(()),
        Some(list) => Ok(list.front()),
    }
}

/// Sets an unsigned option (Content-Format, Observe, Max-Age, Size1…), replacing any value.
pub fn set_uint_option(packet: &mut Packet, option: CoapOption, value: u32) {
    packet.clear_option(option);
    packet.add_option(option, uint_bytes(value));
}

/// An unsigned option's value, if present exactly once and at most 4 bytes.
#[must_use]
pub fn uint_option(packet: &Packet, option: CoapOption) -> Option<u32> {
    single(packet, option)
        .ok()
        .flatten()
        .and_then(|v| uint_of(v))
}

/// The Content-Format of a message, if any.
#[must_use]
pub fn content_format(packet: &Packet) -> Option<u16> {
    uint_option(packet, CoapOption::ContentFormat).and_then(|v| u16::try_from(v).ok())
}

/// The Observe value of a message, if any.
#[must_use]
pub fn observe_value(packet: &Packet) -> Option<u32> {
    uint_option(packet, CoapOption::Observe)
}

/// The response code of a message, if it is a response.
#[must_use]
pub fn response_code(packet: &Packet) -> Option<ResponseType> {
    match packet.header.code {
        MessageClass::Response(code) => Some(code),
        _ => None,
    }
}

/// Whether a message is a 2.xx response.
#[must_use]
pub fn is_success(packet: &Packet) -> bool {
    matches!(packet.header.code, MessageClass::Response(_))
        && u8::from(packet.header.code) >> 5 == 2
}

/// `class.detail` of a message's code, for errors and logs.
#[must_use]
pub fn code_string(packet: &Packet) -> String {
    packet.header.code.to_string()
}

/// Decodes a datagram into a CoAP message, or `None` when it is not one this endpoint may
/// process (RFC 7252 §3: version 1, token ≤ 8 bytes; §4.1: an Empty message has no token,
/// options or payload). Such datagrams are silently ignored (§4.2, §4.3).
#[must_use]
pub fn parse_datagram(bytes: &[u8]) -> Option<Packet> {
    let first = *bytes.first()?;
    if first >> 6 != 1 {
        return None;
    }
    let packet = Packet::from_bytes(bytes).ok()?;
    if packet.header.code == MessageClass::Empty
        && (!packet.get_token().is_empty() || bytes.len() != 4)
    {
        return None;
    }
    Some(packet)
}

/// Builds a request for `path`, which may carry a query: `load?window=60&x` becomes Uri-Path
/// `load` and Uri-Query `window=60`, `x`.
///
/// # Errors
/// [`Error::Wire`] when the path does not map onto Uri-Path options.
pub fn new_request(method: RequestType, path: &str, confirmable: bool) -> Result<Packet> {
    let mut p = Packet::new();
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.code = MessageClass::Request(method);
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    mapping::set_uri_path(&mut p, path.strip_prefix('/').unwrap_or(path))?;
    for q in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|q| !q.is_empty())
    {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    Ok(p)
}

fn encode(packet: &Packet, limit: usize) -> Result<Vec<u8>> {
    packet
        .to_bytes_with_limit(limit)
        .map_err(|e| Error::Encode(e.to_string()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain tables behind, still consistent
    // enough to serve: recover them rather than propagate the panic to every exchange.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Client

/// What the receive task hands an exchange.
enum Event {
    /// An ACK with this message id: empty, or carrying a piggy-backed response.
    Ack(Packet),
    /// A Reset with this message id.
    Reset,
    /// A CON or NON response with this token (separate response, or response to NON).
    Response(Packet),
}

type Key = (SocketAddr, Vec<u8>);

struct ClientState {
    next_mid: u16,
    by_mid: HashMap<(SocketAddr, u16), mpsc::Sender<Event>>,
    by_token: HashMap<Key, mpsc::Sender<Event>>,
    observations: HashMap<Key, mpsc::Sender<Packet>>,
    /// CON responses this client acknowledged: a retransmitted copy (our ACK was lost) gets
    /// the ACK again instead of a Reset.
    acked: RecentSet<(SocketAddr, u16)>,
    peers: HashMap<SocketAddr, Arc<Semaphore>>,
}

struct Shared {
    socket: Egress,
    config: Config,
    state: Mutex<ClientState>,
}

/// Aborts the receive task once the last client handle is gone.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A CoAP client endpoint: one UDP socket, any number of concurrent requests and observations.
///
/// Cheap to clone; the socket and its receive task live until the last clone (and the last
/// [`Observation`]) is dropped.
///
/// ```no_run
/// # async fn demo() -> m2msec_node::relay::coap::Result<()> {
/// use m2msec_node::relay::coap::{CoapClient, Config};
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

impl CoapClient {
    /// Binds a client socket (port 0 for an ephemeral one) and starts its receive task.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be bound; [`Error::InvalidRequest`] for a config
    /// with `nstart` 0 or a block size exponent above 6.
    pub async fn bind(addr: SocketAddr, config: Config) -> Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Self::from_socket(socket, config)
    }

    /// A client on an already bound socket. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a config with `nstart` 0 or a block size exponent above 6.
    pub fn from_socket(socket: UdpSocket, config: Config) -> Result<Self> {
        if config.nstart == 0 {
            return Err(Error::InvalidRequest("nstart must be at least 1"));
        }
        if config.block_szx > 6 {
            return Err(Error::InvalidRequest("block size exponent above 6"));
        }
        let socket = Egress::new(Arc::new(socket), config.tap.clone())?;
        let shared = Arc::new(Shared {
            socket,
            config,
            state: Mutex::new(ClientState {
                next_mid: u16::from_be_bytes(random_array(&mut OsRng)),
                by_mid: HashMap::new(),
                by_token: HashMap::new(),
                observations: HashMap::new(),
                acked: RecentSet::new(1024, EXCHANGE_LIFETIME),
                peers: HashMap::new(),
            }),
        });
        let task = tokio::spawn(receive_loop(Arc::clone(&shared)));
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
    pub async fn request(&self, peer: SocketAddr, mut req: Packet) -> Result<Packet> {
        if !matches!(req.header.code, MessageClass::Request(_)) {
            return Err(Error::InvalidRequest("not a request code"));
        }
        if !matches!(
            req.header.get_type(),
            MessageType::Confirmable | MessageType::NonConfirmable
        ) {
            return Err(Error::InvalidRequest("a request is CON or NON"));
        }
        if req.get_token().len() > MAX_TOKEN {
            return Err(Error::InvalidRequest("token longer than 8 bytes"));
        }
        if req.get_token().is_empty() {
            req.set_token(random_token());
        }
        let config = &self.shared.config;
        if req.payload.len() > config.max_body {
            return Err(Error::TooLarge {
                size: req.payload.len(),
                max: config.max_body,
            });
        }
        let _permit = self.permit(peer).await?;
        let response = if req.payload.len() > block_size(config.block_szx) {
            self.upload(peer, &req).await?
        } else {
            self.exchange(peer, req.clone()).await?
        };
        self.download_rest(peer, &req, response).await
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

    /// Sends one NON message without waiting for anything: for traffic whose responses do not
    /// matter (a response that comes anyway is answered with a Reset, RFC 7252 §4.3).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a CON message, [`Error::Encode`], [`Error::Io`].
    pub async fn send_non(&self, peer: SocketAddr, mut packet: Packet) -> Result<()> {
        if packet.header.get_type() != MessageType::NonConfirmable {
            return Err(Error::InvalidRequest("send_non sends NON messages only"));
        }
        if packet.get_token().len() > MAX_TOKEN {
            return Err(Error::InvalidRequest("token longer than 8 bytes"));
        }
        packet.header.message_id = self.shared.next_mid();
        let bytes = encode(&packet, self.shared.config.max_datagram)?;
        self.shared.socket.send_to(&bytes, peer).await?;
        Ok(())
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
        let token = random_token();
        let (tx, rx) = mpsc::channel(16);
        let key = (peer, token.clone());
        lock(&self.shared.state)
            .observations
            .insert(key.clone(), tx);
        let mut observation = Observation {
            client: self.clone(),
            key,
            path: path.to_owned(),
            rx,
            first: None,
            last: None,
            ended: false,
        };
        let mut req = new_request(RequestType::Get, path, true)?;
        req.set_token(token);
        set_uint_option(&mut req, CoapOption::Observe, 0);
        // On error the observation is dropped, which unregisters it.
        let first = self.request(peer, req).await?;
        if !is_success(&first) {
            return Err(Error::Status {
                peer,
                code: code_string(&first),
            });
        }
        match observe_value(&first) {
            Some(v) => observation.last = Some((v & OBSERVE_MASK, Instant::now())),
            None => observation.end(),
        }
        observation.first = Some(first);
        Ok(observation)
    }

    async fn permit(&self, peer: SocketAddr) -> Result<OwnedSemaphorePermit> {
        let semaphore = {
            let mut st = lock(&self.shared.state);
            if st.peers.len() > 1024 {
                // Forget idle peers: nobody holds their semaphore but the table.
                st.peers.retain(|_, s| Arc::strong_count(s) > 1);
            }
            Arc::clone(
                st.peers
                    .entry(peer)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.shared.config.nstart))),
            )
        };
        semaphore.acquire_owned().await.map_err(|_| Error::Closed)
    }

    /// One message exchange: send, retransmit a CON until acknowledged, wait for the response.
    async fn exchange(&self, peer: SocketAddr, mut packet: Packet) -> Result<Packet> {
        let shared = &self.shared;
        let mid = shared.next_mid();
        packet.header.message_id = mid;
        let bytes = encode(&packet, shared.config.max_datagram)?;
        let (tx, mut rx) = mpsc::channel(8);
        let token = packet.get_token().to_vec();
        let _registration = Registration::new(shared, peer, mid, token.clone(), tx)?;
        shared.socket.send_to(&bytes, peer).await?;

        if packet.header.get_type() == MessageType::Confirmable {
            let mut wait = shared.initial_timeout();
            let mut transmissions = 1u32;
            loop {
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(Event::Ack(ack))) if ack.header.code == MessageClass::Empty => break,
                    Ok(Some(Event::Ack(ack))) => {
                        // §5.3.2: a piggy-backed response matches by message id AND token.
                        if ack.get_token() == token.as_slice() {
                            return Ok(ack);
                        }
                    }
                    // The ACK was lost but the separate response arrived.
                    Ok(Some(Event::Response(response))) => return Ok(response),
                    Ok(Some(Event::Reset)) => return Err(Error::Reset { peer }),
                    Ok(None) => return Err(Error::Closed),
                    Err(_) => {
                        if transmissions > shared.config.max_retransmit {
                            return Err(Error::Timeout {
                                peer,
                                transmissions,
                            });
                        }
                        shared.socket.send_to(&bytes, peer).await?;
                        transmissions += 1;
                        wait = wait.saturating_mul(2);
                    }
                }
            }
        }

        let after = shared.config.response_timeout;
        let deadline = tokio::time::Instant::now() + after;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Event::Response(response))) => return Ok(response),
                Ok(Some(Event::Ack(ack)))
                    if ack.header.code != MessageClass::Empty
                        && ack.get_token() == token.as_slice() =>
                {
                    return Ok(ack);
                }
                Ok(Some(Event::Ack(_))) => {}
                Ok(Some(Event::Reset)) => return Err(Error::Reset { peer }),
                Ok(None) => return Err(Error::Closed),
                Err(_) => return Err(Error::NoResponse { peer, after }),
            }
        }
    }

    /// Block1 upload (RFC 7959 §2.5): one exchange per block; the server may lower the block
    /// size in its 2.31 Continue (§2.3) or refuse the first block with 4.13 naming a smaller
    /// one (§2.9.3).
    async fn upload(&self, peer: SocketAddr, req: &Packet) -> Result<Packet> {
        let body = &req.payload;
        // Blocks are cut from `body`; the template carries everything else, so the body is
        // not copied once per block.
        let mut template = req.clone();
        template.payload = Vec::new();
        let mut szx = self.shared.config.block_szx;
        let mut offset = 0usize;
        loop {
            let size = block_size(szx);
            let num = BlockOpt::number_at(offset, szx).ok_or(Error::TooLarge {
                size: body.len(),
                max: self.shared.config.max_body,
            })?;
            let end = offset.saturating_add(size).min(body.len());
            let more = end < body.len();
            let mut block = template.clone();
            block.payload = body[offset..end].to_vec();
            let opt = BlockOpt { num, more, szx };
            block.clear_option(CoapOption::Block1);
            block.add_option(CoapOption::Block1, opt.to_bytes());
            if num == 0 {
                let total = u32::try_from(body.len()).unwrap_or(u32::MAX);
                set_uint_option(&mut block, CoapOption::Size1, total);
            } else {
                block.clear_option(CoapOption::Size1);
            }
            let response = self.exchange(peer, block).await?;
            let echoed = BlockOpt::of(&response, CoapOption::Block1).ok().flatten();
            let code = response_code(&response);
            if num == 0
                && code == Some(ResponseType::RequestEntityTooLarge)
                && let Some(smaller) = echoed.filter(|b| b.szx < szx)
            {
                szx = smaller.szx;
                continue;
            }
            if !more || code != Some(ResponseType::Continue) {
                return Ok(response);
            }
            if let Some(e) = echoed.filter(|b| b.szx < szx) {
                szx = e.szx;
            }
            offset = end;
            if !offset.is_multiple_of(block_size(szx)) {
                return Err(Error::Blockwise {
                    peer,
                    reason: "server changed the block size mid-block",
                });
            }
        }
    }

    /// Fetches the remaining Block2 blocks of `first` (RFC 7959 §2.4), each with a fresh
    /// token, restarting if the representation's ETag changes underneath.
    async fn download_rest(&self, peer: SocketAddr, req: &Packet, first: Packet) -> Result<Packet> {
        let Some(block) = block2_of(peer, &first)? else {
            return Ok(first);
        };
        if !block.more {
            return Ok(first);
        }
        if !matches!(
            req.header.code,
            MessageClass::Request(RequestType::Get | RequestType::Fetch)
        ) {
            return Err(Error::Blockwise {
                peer,
                reason: "Block2 continuation of a request other than GET or FETCH",
            });
        }
        let max = self.shared.config.max_body;
        let mut template = req.clone();
        template.clear_option(CoapOption::Block1);
        template.clear_option(CoapOption::Size1);
        template.clear_option(CoapOption::Observe);
        template.payload.clear();

        let mut current = first;
        let mut current_block = block;
        let mut restarts = 0;
        'restart: loop {
            if current_block.num != 0 {
                return Err(Error::Blockwise {
                    peer,
                    reason: "first Block2 block is not block 0",
                });
            }
            let etag = current.get_first_option(CoapOption::ETag).cloned();
            let mut body = core::mem::take(&mut current.payload);
            let mut szx = current_block.szx;
            while current_block.more {
                if !body.len().is_multiple_of(block_size(szx)) || body.is_empty() {
                    return Err(Error::Blockwise {
                        peer,
                        reason: "Block2 block shorter than its size",
                    });
                }
                let num = BlockOpt::number_at(body.len(), szx).ok_or(Error::TooLarge {
                    size: body.len(),
                    max,
                })?;
                let response = self
                    .exchange(peer, block2_request(&template, num, szx))
                    .await?;
                if !is_success(&response) {
                    return Err(Error::Status {
                        peer,
                        code: code_string(&response),
                    });
                }
                if response.get_first_option(CoapOption::ETag).cloned() != etag {
                    restarts += 1;
                    if restarts > BLOCK2_RESTARTS {
                        return Err(Error::Blockwise {
                            peer,
                            reason: "representation kept changing during the transfer",
                        });
                    }
                    current = self
                        .exchange(peer, block2_request(&template, 0, szx))
                        .await?;
                    current_block = match block2_of(peer, &current)? {
                        Some(b) => b,
                        None => return Ok(current),
                    };
                    continue 'restart;
                }
                let got = match BlockOpt::of(&response, CoapOption::Block2) {
                    Ok(Some(b)) if b.offset() == body.len() => b,
                    _ => {
                        return Err(Error::Blockwise {
                            peer,
                            reason: "Block2 response for another block",
                        });
                    }
                };
                if body.len().saturating_add(response.payload.len()) > max {
                    return Err(Error::TooLarge {
                        size: body.len().saturating_add(response.payload.len()),
                        max,
                    });
                }
                body.extend_from_slice(&response.payload);
                szx = got.szx;
                current_block = got;
                current = response;
            }
            current.payload = body;
            current.clear_option(CoapOption::Block2);
            return Ok(current);
        }
    }
}

/// The request for Block2 block `num` of size exponent `szx`: `template` with a fresh token.
fn block2_request(template: &Packet, num: u32, szx: u8) -> Packet {
    let mut p = template.clone();
    p.set_token(random_token());
    p.clear_option(CoapOption::Block2);
    let block = BlockOpt {
        num,
        more: false,
        szx,
    };
    p.add_option(CoapOption::Block2, block.to_bytes());
    p
}

/// The Block2 option of a response from `peer`.
fn block2_of(peer: SocketAddr, p: &Packet) -> Result<Option<BlockOpt>> {
    BlockOpt::of(p, CoapOption::Block2).map_err(|()| Error::Blockwise {
        peer,
        reason: "malformed Block2 option",
    })
}

impl Shared {
    fn next_mid(&self) -> u16 {
        let mut st = lock(&self.state);
        let mid = st.next_mid;
        st.next_mid = mid.wrapping_add(1);
        mid
    }

    /// Uniform in `[ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR]` (RFC 7252 §4.2).
    fn initial_timeout(&self) -> Duration {
        let r = f64::from(u32::from_be_bytes(random_array(&mut OsRng))) / f64::from(u32::MAX);
        let factor = 1.0 + (self.config.ack_random_factor - 1.0).max(0.0) * r;
        self.config.ack_timeout.mul_f64(factor)
    }

    /// Routes one incoming message; returns the ACK or RST to send for it, if any.
    fn dispatch(&self, peer: SocketAddr, packet: Packet) -> Option<Packet> {
        let mid = packet.header.message_id;
        let mut st = lock(&self.state);
        match packet.header.get_type() {
            MessageType::Acknowledgement | MessageType::Reset => {
                let event = if packet.header.get_type() == MessageType::Reset {
                    Event::Reset
                } else {
                    Event::Ack(packet)
                };
                // Nothing waits for a late ACK of an exchange that is over, or a Reset of a
                // fire-and-forget NON: those are dropped.
                if let Some(tx) = st.by_mid.get(&(peer, mid)) {
                    let _ = tx.try_send(event);
                }
                None
            }
            MessageType::Confirmable | MessageType::NonConfirmable => {
                let con = packet.header.get_type() == MessageType::Confirmable;
                if !matches!(packet.header.code, MessageClass::Response(_)) {
                    // A client serves nothing: requests and CoAP pings get a Reset (§4.3).
                    return con.then(|| mapping::reset(&packet));
                }
                let key = (peer, packet.get_token().to_vec());
                let now = Instant::now();
                if let Some(tx) = st.by_token.get(&key) {
                    let ack = con.then(|| mapping::empty_ack(&packet));
                    let _ = tx.try_send(Event::Response(packet));
                    if ack.is_some() {
                        st.acked.insert((peer, mid), now);
                    }
                    return ack;
                }
                if let Some(tx) = st.observations.get(&key) {
                    let reply = con.then(|| mapping::empty_ack(&packet));
                    match tx.try_send(packet) {
                        // A full queue drops this notification; the newer ones will follow.
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {
                            if reply.is_some() {
                                st.acked.insert((peer, mid), now);
                            }
                            return reply;
                        }
                        Err(mpsc::error::TrySendError::Closed(p)) => {
                            st.observations.remove(&key);
                            return Some(mapping::reset(&p));
                        }
                    }
                }
                if con && st.acked.contains(&(peer, mid), now) {
                    return Some(mapping::empty_ack(&packet));
                }
                // Nobody waits for it: RFC 7252 §5.3.2 / RFC 7641 §3.6 — reject, which also
                // ends an observation we no longer want.
                Some(mapping::reset(&packet))
            }
        }
    }
}

async fn receive_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (n, peer) = match shared.socket.socket().recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier sends surface here on some systems; keep serving.
                tracing::debug!(error = %e, "CoAP client receive");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let Some(packet) = buf.get(..n).and_then(parse_datagram) else {
            continue;
        };
        if let Some(reply) = shared.dispatch(peer, packet)
            && let Ok(bytes) = encode(&reply, shared.config.max_datagram)
        {
            let _ = shared.socket.send_to(&bytes, peer).await;
        }
    }
}

/// An exchange's entries in the routing tables, removed when the exchange ends however it
/// ends (response, error, or the caller dropping the future).
struct Registration<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    mid: u16,
    token: Vec<u8>,
}

impl<'a> Registration<'a> {
    fn new(
        shared: &'a Shared,
        peer: SocketAddr,
        mid: u16,
        token: Vec<u8>,
        tx: mpsc::Sender<Event>,
    ) -> Result<Self> {
        let mut st = lock(&shared.state);
        let key = (peer, token.clone());
        if st.by_token.contains_key(&key) {
            return Err(Error::TokenInUse { peer });
        }
        st.by_token.insert(key, tx.clone());
        st.by_mid.insert((peer, mid), tx);
        Ok(Self {
            shared,
            peer,
            mid,
            token,
        })
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.by_mid.remove(&(self.peer, self.mid));
        st.by_token
            .remove(&(self.peer, core::mem::take(&mut self.token)));
    }
}

fn random_token() -> Vec<u8> {
    random_array::<MAX_TOKEN>(&mut OsRng).to_vec()
}

/// A registration as observer of one resource (RFC 7641): yields notifications in order.
///
/// Dropping it forgets the registration at once; the server learns it from the Reset its
/// next notification gets (RFC 7641 §3.6). [`Observation::cancel`] deregisters explicitly.
pub struct Observation {
    client: CoapClient,
    key: Key,
    path: String,
    rx: mpsc::Receiver<Packet>,
    first: Option<Packet>,
    /// Sequence number and arrival time of the newest notification delivered.
    last: Option<(u32, Instant)>,
    ended: bool,
}

impl core::fmt::Debug for Observation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observation")
            .field("peer", &self.key.0)
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
    /// Notifications older than one already delivered are skipped (RFC 7641 §3.4).
    pub async fn next(&mut self) -> Option<Result<Packet>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        loop {
            if self.ended {
                return None;
            }
            let notification = self.rx.recv().await?;
            let now = Instant::now();
            match observe_value(&notification) {
                Some(v) => {
                    let v = v & OBSERVE_MASK;
                    if let Some((last, at)) = self.last
                        && !fresher(last, at, v, now)
                    {
                        continue;
                    }
                    self.last = Some((v, now));
                }
                // A final response: the server ended the observation (RFC 7641 §3.2).
                None => self.end(),
            }
            if !is_success(&notification) {
                self.end();
                return Some(Ok(notification));
            }
            return Some(self.complete(notification).await);
        }
    }

    /// Deregisters explicitly with a GET carrying Observe = 1 (RFC 7641 §3.6).
    ///
    /// # Errors
    /// As [`CoapClient::request`]; the local registration is gone either way.
    pub async fn cancel(mut self) -> Result<()> {
        self.end();
        let mut req = new_request(RequestType::Get, &self.path, true)?;
        req.set_token(self.key.1.clone());
        set_uint_option(&mut req, CoapOption::Observe, 1);
        self.client.request(self.key.0, req).await.map(|_| ())
    }

    /// Fetches the rest of a notification sent block-wise (RFC 7959 §3.4).
    async fn complete(&self, notification: Packet) -> Result<Packet> {
        match BlockOpt::of(&notification, CoapOption::Block2) {
            Ok(Some(b)) if b.more => {
                let template = new_request(RequestType::Get, &self.path, true)?;
                let _permit = self.client.permit(self.key.0).await?;
                self.client
                    .download_rest(self.key.0, &template, notification)
                    .await
            }
            _ => Ok(notification),
        }
    }

    fn end(&mut self) {
        self.ended = true;
        lock(&self.client.shared.state)
            .observations
            .remove(&self.key);
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        lock(&self.client.shared.state)
            .observations
            .remove(&self.key);
    }
}

/// RFC 7641 §3.4: whether notification `v2` arriving at `t2` is newer than `v1` at `t1`.
fn fresher(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF)
        || (v1 > v2 && v1 - v2 > HALF)
        || t2.saturating_duration_since(t1) > OBSERVE_FRESHNESS
}

// ---------------------------------------------------------------------------------------------
// Server helpers

/// Message ids of one endpoint: a random start (RFC 7252 §4.4) then consecutive.
#[derive(Debug, Clone)]
pub struct MessageIds(u16);

impl MessageIds {
    /// Starts at a random id, so a restarted daemon does not reuse its previous life's ids.
    #[must_use]
    pub fn random() -> Self {
        Self(u16::from_be_bytes(random_array(&mut OsRng)))
    }

    /// Starts at `first` (tests, traces).
    #[must_use]
    pub fn starting_at(first: u16) -> Self {
        Self(first)
    }

    /// The next id.
    pub fn next_id(&mut self) -> u16 {
        let id = self.0;
        self.0 = id.wrapping_add(1);
        id
    }
}

/// The piggy-backed response to a CON request (RFC 7252 §5.2.1): an ACK with the request's
/// message id and token. A Block1 option of the request is echoed, as the final response
/// of a block-wise upload requires (RFC 7959 §2.3).
#[must_use]
pub fn piggybacked_response(req: &Packet, code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Response(code);
    p.header.message_id = req.header.message_id;
    p.set_token(req.get_token().to_vec());
    if let Some(b1) = req.get_first_option(CoapOption::Block1) {
        p.add_option(CoapOption::Block1, b1.clone());
    }
    p
}

/// The response to `req`: piggy-backed on the ACK for a CON request, a NON with a fresh
/// message id for a NON request (RFC 7252 §5.2.3). Token and Block1 echo as
/// [`piggybacked_response`].
#[must_use]
pub fn response(req: &Packet, code: ResponseType, ids: &mut MessageIds) -> Packet {
    let mut p = piggybacked_response(req, code);
    if req.header.get_type() != MessageType::Confirmable {
        p.header.set_type(MessageType::NonConfirmable);
        p.header.message_id = ids.next_id();
    }
    p
}

/// A separate response (RFC 7252 §5.2.2), sent after an empty ACK: its own message id, the
/// request's token; CON when it must be acknowledged.
#[must_use]
pub fn separate_response(
    req: &Packet,
    code: ResponseType,
    ids: &mut MessageIds,
    confirmable: bool,
) -> Packet {
    let mut p = piggybacked_response(req, code);
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.message_id = ids.next_id();
    p
}

/// Keys with an insertion time, capped in number and expiring in age.
///
/// `order` lists insertions oldest first; a key inserted again leaves a stale entry behind,
/// recognised by its generation and skipped. The cap counts `order`, so memory is bounded
/// whatever the insertion pattern.
struct RecentSet<K: std::hash::Hash + Eq + Clone> {
    map: HashMap<K, u64>,
    order: VecDeque<(K, u64, Instant)>,
    generation: u64,
    capacity: usize,
    lifetime: Duration,
}

impl<K: std::hash::Hash + Eq + Clone> RecentSet<K> {
    fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            capacity: capacity.max(1),
            lifetime,
        }
    }

    /// Drops expired and excess insertions; returns the keys forgotten.
    fn purge(&mut self, now: Instant) -> Vec<K> {
        let mut forgotten = Vec::new();
        while let Some((k, generation, at)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) > self.lifetime;
            if !expired && self.order.len() <= self.capacity {
                break;
            }
            if self.map.get(k) == Some(generation) {
                self.map.remove(k);
                forgotten.push(k.clone());
            }
            self.order.pop_front();
        }
        forgotten
    }

    /// Remembers `k` from `now` on; returns the keys forgotten to make room.
    fn insert(&mut self, k: K, now: Instant) -> Vec<K> {
        self.generation = self.generation.wrapping_add(1);
        self.map.insert(k.clone(), self.generation);
        self.order.push_back((k, self.generation, now));
        self.purge(now)
    }

    fn contains(&mut self, k: &K, now: Instant) -> bool {
        self.purge(now);
        self.map.contains_key(k)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// What [`DedupCache::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dedup {
    /// A new request: process it, then [`DedupCache::complete`] it with the response.
    New,
    /// A copy of a request still being processed (a slow handler): drop it; the response
    /// (or an empty ACK the daemon already sent) will do.
    InProgress,
    /// A copy of a request already answered: send these response bytes again, do not
    /// process it twice.
    Replay(Vec<u8>),
}

struct DedupEntry {
    token: Vec<u8>,
    response: Option<Vec<u8>>,
}

/// Duplicate detection of a server (RFC 7252 §4.5): requests are identified by (peer,
/// message id) for `lifetime` (EXCHANGE_LIFETIME by default), and the response to each is kept
/// so a retransmitted CON — whose ACK was lost — gets the same answer again instead of being
/// processed twice (a relay message stored twice, a forward started twice).
///
/// The token is compared as well: a peer whose message ids wrap within the lifetime (more than
/// 65 536 requests in 247 s) starts a new request with a reused id, and that must not be
/// mistaken for a copy. Capped at `capacity` entries, oldest evicted first, so its memory is
/// at most `capacity` times the largest response.
pub struct DedupCache {
    /// Which exchanges are remembered (and until when).
    recent: RecentSet<(SocketAddr, u16)>,
    /// What is known of each; entries the set forgot are dropped lazily.
    entries: HashMap<(SocketAddr, u16), DedupEntry>,
    capacity: usize,
}

impl core::fmt::Debug for DedupCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DedupCache")
            .field("entries", &self.entries.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for DedupCache {
    fn default() -> Self {
        Self::new(4096, EXCHANGE_LIFETIME)
    }
}

impl DedupCache {
    /// A cache of at most `capacity` exchanges, each remembered for `lifetime`.
    #[must_use]
    pub fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            recent: RecentSet::new(capacity, lifetime),
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Exchanges remembered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.recent.len() == 0
    }

    /// Classifies an incoming request from `peer`, remembering it when new.
    pub fn check(&mut self, peer: SocketAddr, req: &Packet, now: Instant) -> Dedup {
        let key = (peer, req.header.message_id);
        for gone in self.recent.purge(now) {
            self.entries.remove(&gone);
        }
        if self.recent.contains(&key, now)
            && let Some(e) = self.entries.get(&key)
            && e.token == req.get_token()
        {
            return match &e.response {
                Some(bytes) => Dedup::Replay(bytes.clone()),
                None => Dedup::InProgress,
            };
        }
        self.entries.insert(
            key,
            DedupEntry {
                token: req.get_token().to_vec(),
                response: None,
            },
        );
        for gone in self.recent.insert(key, now) {
            self.entries.remove(&gone);
        }
        Dedup::New
    }

    /// Records the response sent to `req` (its encoded bytes), to replay for copies.
    pub fn complete(&mut self, peer: SocketAddr, req: &Packet, response: &[u8]) {
        if let Some(e) = self.entries.get_mut(&(peer, req.header.message_id))
            && e.token == req.get_token()
        {
            e.response = Some(response.to_vec());
        }
    }
}

/// What [`Block1Assembler::accept`] made of a request.
#[derive(Debug)]
pub enum Assembled {
    /// A whole request: not block-wise, or the last block of a complete upload (payload =
    /// the whole body; the last Block1 option is kept, so [`response`] echoes it).
    Complete(Packet),
    /// Send this response and nothing else: 2.31 Continue for an intermediate block, or 4.08
    /// (block out of order / unknown upload), 4.13 (body too large), 4.02 (bad Block1), 4.00.
    Respond(Packet),
}

struct Partial {
    body: Vec<u8>,
    at: Instant,
}

/// Reassembles Block1 uploads (RFC 7959 §2.5) per peer and request.
///
/// An upload is identified by the peer and the request's method and options other than the
/// block options — RFC 7959 §2.5's notion of "the same request", which also works for clients
/// that change the token with each block (libcoap). A relay message's token is its identity
/// (the relay message id), so for requests carrying Relay-Stream the token is part of the key
/// too, and concurrent uploads of two relay messages from one source stay apart.
///
/// Capped: at most `max_partials` uploads in progress (the oldest is dropped), `max_body`
/// bytes each (4.13 beyond), and an upload idle for `ttl` is forgotten.
pub struct Block1Assembler {
    partials: HashMap<Key, Partial>,
    max_body: usize,
    max_partials: usize,
    ttl: Duration,
    max_szx: u8,
}

impl core::fmt::Debug for Block1Assembler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Block1Assembler")
            .field("in_progress", &self.partials.len())
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Block1Assembler {
    /// An assembler accepting bodies up to `max_body` bytes, `max_partials` uploads at a time,
    /// each forgotten after `ttl` without a block; it asks clients for blocks of at most
    /// `16 << max_szx` bytes.
    #[must_use]
    pub fn new(max_body: usize, max_partials: usize, ttl: Duration, max_szx: u8) -> Self {
        Self {
            partials: HashMap::new(),
            max_body,
            max_partials: max_partials.max(1),
            ttl,
            max_szx: max_szx.min(6),
        }
    }

    /// Uploads in progress.
    #[must_use]
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Takes one request from `peer`.
    pub fn accept(
        &mut self,
        peer: SocketAddr,
        req: Packet,
        now: Instant,
        ids: &mut MessageIds,
    ) -> Assembled {
        let ttl = self.ttl;
        self.partials
            .retain(|_, p| now.saturating_duration_since(p.at) <= ttl);
        let block = match BlockOpt::of(&req, CoapOption::Block1) {
            Ok(None) => return Assembled::Complete(req),
            Ok(Some(b)) => b,
            Err(()) => return Assembled::Respond(response(&req, ResponseType::BadOption, ids)),
        };
        let key = (peer, upload_key(&req));
        let size = block.size();
        // §2.3: every block but the last is exactly the block size.
        if (block.more && req.payload.len() != size) || req.payload.len() > size {
            self.partials.remove(&key);
            return Assembled::Respond(response(&req, ResponseType::BadRequest, ids));
        }
        if block.num == 0 {
            let announced = uint_option(&req, CoapOption::Size1)
                .and_then(|s| usize::try_from(s).ok())
                .unwrap_or(0);
            if announced > self.max_body {
                return Assembled::Respond(self.too_large(&req, ids));
            }
            if !self.partials.contains_key(&key)
                && self.partials.len() >= self.max_partials
                && let Some(oldest) = self
                    .partials
                    .iter()
                    .min_by_key(|(_, p)| p.at)
                    .map(|(k, _)| k.clone())
            {
                self.partials.remove(&oldest);
            }
            self.partials.insert(
                key.clone(),
                Partial {
                    body: Vec::new(),
                    at: now,
                },
            );
        }
        let Some(partial) = self.partials.get_mut(&key) else {
            return Assembled::Respond(response(&req, ResponseType::RequestEntityIncomplete, ids));
        };
        let offset = block.offset();
        if offset != partial.body.len() {
            // A copy of the block just taken (a retransmission that escaped deduplication)
            // is answered again; anything else is out of order.
            let previous = partial.body.len().checked_sub(req.payload.len());
            if block.more && previous == Some(offset) && partial.body.ends_with(&req.payload) {
                return Assembled::Respond(self.continue_response(&req, block, ids));
            }
            self.partials.remove(&key);
            return Assembled::Respond(response(&req, ResponseType::RequestEntityIncomplete, ids));
        }
        if partial.body.len().saturating_add(req.payload.len()) > self.max_body {
            self.partials.remove(&key);
            return Assembled::Respond(self.too_large(&req, ids));
        }
        partial.body.extend_from_slice(&req.payload);
        partial.at = now;
        if block.more {
            return Assembled::Respond(self.continue_response(&req, block, ids));
        }
        let body = self
            .partials
            .remove(&key)
            .map(|p| p.body)
            .unwrap_or_default();
        let mut whole = req;
        whole.payload = body;
        whole.clear_option(CoapOption::Size1);
        Assembled::Complete(whole)
    }

    /// 2.31 Continue echoing the block, with our preferred size if smaller (§2.3).
    fn continue_response(&self, req: &Packet, block: BlockOpt, ids: &mut MessageIds) -> Packet {
        let mut p = response(req, ResponseType::Continue, ids);
        p.clear_option(CoapOption::Block1);
        p.add_option(
            CoapOption::Block1,
            BlockOpt {
                szx: block.szx.min(self.max_szx),
                ..block
            }
            .to_bytes(),
        );
        p
    }

    /// 4.13 with Size1 = the limit (§2.9.3).
    fn too_large(&self, req: &Packet, ids: &mut MessageIds) -> Packet {
        let mut p = response(req, ResponseType::RequestEntityTooLarge, ids);
        p.clear_option(CoapOption::Block1);
        set_uint_option(
            &mut p,
            CoapOption::Size1,
            u32::try_from(self.max_body).unwrap_or(u32::MAX),
        );
        p
    }
}

/// The identity of an upload: code and options except the block-wise and observe ones, plus
/// the token for relay messages.
fn upload_key(req: &Packet) -> Vec<u8> {
    let mut key = vec![u8::from(req.header.code)];
    let mut relay = false;
    for (number, values) in req.options() {
        let skip = [
            CoapOption::Block1,
            CoapOption::Block2,
            CoapOption::Size1,
            CoapOption::Size2,
            CoapOption::Observe,
        ]
        .iter()
        .any(|o| u16::from(*o) == *number);
        if skip {
            continue;
        }
        relay |= *number == mapping::OPTION_RELAY_STREAM;
        for v in values {
            key.extend_from_slice(&number.to_be_bytes());
            key.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            key.extend_from_slice(v);
        }
    }
    if relay {
        key.push(0xff);
        key.extend_from_slice(req.get_token());
    }
    key
}

/// Cuts a response's payload to the block the request asks for (RFC 7959 §2.4).
///
/// Call it with the whole representation in `response.payload`. Without a Block2 option in the
/// request, a payload that fits one block of `16 << max_szx` bytes is left alone, a larger one
/// becomes block 0. A requested block size above ours is lowered, keeping the byte offset. The
/// first block carries Size2; every block carries an ETag of the whole representation (unless
/// the response has one) so a client notices a change between blocks. A block past the end
/// turns the response into 4.02 Bad Option.
pub fn slice_block2(req: &Packet, response: &mut Packet, max_szx: u8) {
    fn bad_option(response: &mut Packet) {
        response.header.code = MessageClass::Response(ResponseType::BadOption);
        response.payload.clear();
    }
    let max_szx = max_szx.min(6);
    let Ok(requested) = BlockOpt::of(req, CoapOption::Block2) else {
        return bad_option(response);
    };
    let len = response.payload.len();
    let (szx, offset) = match requested {
        None if len <= block_size(max_szx) => return,
        None => (max_szx, 0),
        Some(b) => (b.szx.min(max_szx), b.offset()),
    };
    if offset >= len && !(offset == 0 && len == 0) {
        return bad_option(response);
    }
    let Some(num) = BlockOpt::number_at(offset, szx) else {
        return bad_option(response);
    };
    if response
        .get_option(CoapOption::ETag)
        .is_none_or(|l| l.is_empty())
    {
        response.add_option(CoapOption::ETag, etag(&response.payload).to_vec());
    }
    let end = offset.saturating_add(block_size(szx)).min(len);
    let more = end < len;
    if num == 0 {
        set_uint_option(
            response,
            CoapOption::Size2,
            u32::try_from(len).unwrap_or(u32::MAX),
        );
    }
    response.payload = response.payload[offset..end].to_vec();
    response.clear_option(CoapOption::Block2);
    response.add_option(CoapOption::Block2, BlockOpt { num, more, szx }.to_bytes());
}

/// A 64-bit FNV-1a digest of a representation: an ETag, not a security mechanism.
fn etag(bytes: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.to_be_bytes()
}

/// A notification is confirmable at least this often, counted per observer (RFC 7641 §4.5).
pub const CON_EVERY: u32 = 16;
/// Message ids of an observer's latest notifications kept, to match a Reset to one of them.
const RECENT_NOTIFICATIONS: usize = 4;

/// A confirmable notification waiting for its ACK.
struct Outstanding {
    packet: Packet,
    retransmits: u32,
    timeout: Duration,
    deadline: Instant,
}

/// One entry of the list of observers: the resource, and what its notifications need.
struct Observer {
    path: String,
    /// The registration's Accept option: the notifications are rendered for it.
    accept: Option<u16>,
    /// The Observe value of the last notification (or of the registration's response).
    observe: u32,
    /// Notifications since the last confirmable one, and when that one went out.
    since_con: u32,
    last_con: Instant,
    /// Message ids of the latest notifications, newest last: a Reset to one of them ends the
    /// registration (RFC 7641 §3.6).
    recent: VecDeque<u16>,
    outstanding: Option<Outstanding>,
}

/// The observers of a server's resources (RFC 7641 §4): registration, deregistration, the
/// notifications to send when a resource changes, and their retransmission.
///
/// - An entry is keyed by the client's endpoint and token (§4.1): a registration with the same
///   pair replaces the entry. A GET with Observe = 1, or without Observe, with the token of an
///   observation ends it, as does a Reset to one of its notifications (§3.6) and a final
///   response ([`Observers::end`], §4.2).
/// - Notifications are NON, except at least every [`CON_EVERY`]th one and at least every
///   `con_interval`, so an observer that went away without a word is found (§4.5). A CON
///   notification is retransmitted by [`Observers::poll`] after [`ACK_TIMEOUT`], doubling, and
///   the observer dropped when [`MAX_RETRANSMIT`] retransmissions stay unacknowledged
///   ([`Observers::on_ack`] clears it). While one is outstanding every newer notification is
///   CON and takes its place, keeping its retransmission counter and timeout (§4.5.2).
/// - Each observer gets the representation in the content format it asked for with Accept
///   (the caller renders it, once per format); Observe numbers are per observer, 24-bit and
///   increase by one per notification (§4.4).
/// - At most `max` observers are kept: past it a registration is not made and the GET is
///   answered without Observe, which tells the client so (§4.1).
pub struct Observers {
    entries: HashMap<Key, Observer>,
    max: usize,
    con_interval: Duration,
}

impl core::fmt::Debug for Observers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observers")
            .field("count", &self.entries.len())
            .field("max", &self.max)
            .field("con_interval", &self.con_interval)
            .finish_non_exhaustive()
    }
}

impl Observers {
    /// A list of at most `max` observers, each sent a confirmable notification at least every
    /// `con_interval` (and every [`CON_EVERY`]th).
    #[must_use]
    pub fn new(max: usize, con_interval: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            max,
            con_interval,
        }
    }

    /// Handles the Observe option of a GET of the observable resource `path` (the server's name
    /// for it). Returns the Observe value to put in the response when `peer` is (still)
    /// registered; `None` when the request registers nothing: Observe = 1 or no Observe, which
    /// end an observation with the request's token, or a full list.
    pub fn on_get(
        &mut self,
        peer: SocketAddr,
        req: &Packet,
        path: &str,
        now: Instant,
    ) -> Option<u32> {
        let key = (peer, req.get_token().to_vec());
        if observe_value(req) != Some(0) {
            self.entries.remove(&key);
            return None;
        }
        let accept = uint_option(req, CoapOption::Accept).and_then(|a| u16::try_from(a).ok());
        if let Some(o) = self.entries.get_mut(&key) {
            o.path = path.to_owned();
            o.accept = accept;
            o.observe = (o.observe + 1) & OBSERVE_MASK;
            return Some(o.observe);
        }
        if self.entries.len() >= self.max {
            return None;
        }
        let observe = 2;
        self.entries.insert(
            key,
            Observer {
                path: path.to_owned(),
                accept,
                observe,
                since_con: 0,
                last_con: now,
                recent: VecDeque::with_capacity(RECENT_NOTIFICATIONS),
                outstanding: None,
            },
        );
        Some(observe)
    }

    /// An empty ACK from `peer` with message id `mid`: the outstanding notification it answers
    /// arrived.
    pub fn on_ack(&mut self, peer: SocketAddr, mid: u16) {
        for ((p, _), o) in &mut self.entries {
            if *p == peer
                && o.outstanding
                    .as_ref()
                    .is_some_and(|out| out.packet.header.message_id == mid)
            {
                o.outstanding = None;
            }
        }
    }

    /// A Reset from `peer` with message id `mid`: if it answers one of an observer's latest
    /// notifications, that observer is gone (RFC 7641 §3.6).
    pub fn on_reset(&mut self, peer: SocketAddr, mid: u16) {
        self.entries
            .retain(|(p, _), o| !(*p == peer && o.recent.contains(&mid)));
    }

    /// Removes one registration.
    pub fn remove(&mut self, peer: SocketAddr, token: &[u8]) {
        self.entries.remove(&(peer, token.to_vec()));
    }

    /// Observers of `path`.
    #[must_use]
    pub fn count(&self, path: &str) -> usize {
        self.entries.values().filter(|o| o.path == path).count()
    }

    /// The notifications of a new representation of `path` (2.05 Content), one per observer.
    /// `render(accept)` gives the representation and its Content-Format for an observer that
    /// registered with that Accept option; it is called once per distinct Accept. A
    /// representation above one block of `16 << max_szx` bytes is sent as block 0 and the
    /// observers fetch the rest (RFC 7959 §3.4).
    pub fn notify(
        &mut self,
        path: &str,
        now: Instant,
        ids: &mut MessageIds,
        max_szx: u8,
        mut render: impl FnMut(Option<u16>) -> (Vec<u8>, Option<u16>),
    ) -> Vec<(SocketAddr, Packet)> {
        let mut rendered: Vec<(Option<u16>, Vec<u8>, Option<u16>)> = Vec::new();
        let mut out = Vec::new();
        for ((peer, token), o) in &mut self.entries {
            if o.path != path {
                continue;
            }
            let index = match rendered.iter().position(|(a, ..)| *a == o.accept) {
                Some(i) => i,
                None => {
                    let (payload, format) = render(o.accept);
                    rendered.push((o.accept, payload, format));
                    rendered.len() - 1
                }
            };
            let (_, payload, format) = &rendered[index];
            o.observe = (o.observe + 1) & OBSERVE_MASK;
            o.since_con += 1;
            let confirmable = o.since_con >= CON_EVERY
                || now.saturating_duration_since(o.last_con) >= self.con_interval
                || o.outstanding.is_some();
            let mut p = Packet::new();
            p.header.set_type(if confirmable {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            });
            p.header.code = MessageClass::Response(ResponseType::Content);
            p.header.message_id = ids.next_id();
            p.set_token(token.clone());
            set_uint_option(&mut p, CoapOption::Observe, o.observe);
            if let Some(cf) = format {
                set_uint_option(&mut p, CoapOption::ContentFormat, u32::from(*cf));
            }
            p.payload.clone_from(payload);
            slice_block2(&Packet::new(), &mut p, max_szx);
            if o.recent.len() >= RECENT_NOTIFICATIONS {
                o.recent.pop_front();
            }
            o.recent.push_back(p.header.message_id);
            if confirmable {
                o.since_con = 0;
                o.last_con = now;
                // A newer notification replaces the outstanding one and keeps its
                // retransmission state (RFC 7641 §4.5.2).
                let (retransmits, timeout) = o
                    .outstanding
                    .as_ref()
                    .map_or((0, ACK_TIMEOUT), |out| (out.retransmits, out.timeout));
                o.outstanding = Some(Outstanding {
                    packet: p.clone(),
                    retransmits,
                    timeout,
                    deadline: now + timeout,
                });
            }
            out.push((*peer, p));
        }
        out
    }

    /// Retransmissions of the confirmable notifications whose ACK is overdue. An observer whose
    /// notification stays unacknowledged after [`MAX_RETRANSMIT`] retransmissions is dropped.
    pub fn poll(&mut self, now: Instant) -> Vec<(SocketAddr, Packet)> {
        let mut out = Vec::new();
        self.entries.retain(|(peer, _), o| {
            let Some(pending) = o.outstanding.as_mut() else {
                return true;
            };
            if now < pending.deadline {
                return true;
            }
            if pending.retransmits >= MAX_RETRANSMIT {
                tracing::debug!(%peer, path = %o.path, "observer dropped: notification never acknowledged");
                return false;
            }
            pending.retransmits += 1;
            pending.timeout = pending.timeout.saturating_mul(2);
            pending.deadline = now + pending.timeout;
            out.push((*peer, pending.packet.clone()));
            true
        });
        out
    }

    /// Ends every observation of `path` with a final `code` response (e.g. 4.04 when the
    /// resource is deleted, RFC 7641 §3.2) carrying `diagnostic`, and forgets them.
    pub fn end(
        &mut self,
        path: &str,
        code: ResponseType,
        diagnostic: &str,
        ids: &mut MessageIds,
    ) -> Vec<(SocketAddr, Packet)> {
        let mut out = Vec::new();
        self.entries.retain(|(peer, token), o| {
            if o.path != path {
                return true;
            }
            let mut p = Packet::new();
            p.header.set_type(MessageType::NonConfirmable);
            p.header.code = MessageClass::Response(code);
            p.header.message_id = ids.next_id();
            p.set_token(token.clone());
            p.payload = diagnostic.as_bytes().to_vec();
            out.push((*peer, p));
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5683))
    }

    #[test]
    fn block_option_codec() {
        for (b, bytes) in [
            (
                BlockOpt {
                    num: 0,
                    more: false,
                    szx: 0,
                },
                vec![],
            ),
            (
                BlockOpt {
                    num: 0,
                    more: true,
                    szx: 6,
                },
                vec![0x0e],
            ),
            (
                BlockOpt {
                    num: 1,
                    more: false,
                    szx: 6,
                },
                vec![0x16],
            ),
            (
                BlockOpt {
                    num: 20,
                    more: true,
                    szx: 2,
                },
                vec![0x01, 0x4a],
            ),
            (
                BlockOpt {
                    num: BlockOpt::MAX_NUM,
                    more: true,
                    szx: 6,
                },
                vec![0xff, 0xff, 0xfe],
            ),
        ] {
            assert_eq!(b.to_bytes(), bytes, "{b:?}");
            assert_eq!(BlockOpt::from_bytes(&bytes), Some(b));
        }
        assert_eq!(BlockOpt::from_bytes(&[0x07]), None, "SZX 7 is reserved");
        assert_eq!(BlockOpt::from_bytes(&[1, 2, 3, 4]), None);
        assert_eq!(
            BlockOpt {
                num: 3,
                more: false,
                szx: 4
            }
            .offset(),
            768
        );
    }

    #[test]
    fn freshness_follows_rfc7641() {
        let t = Instant::now();
        assert!(fresher(1, t, 2, t));
        assert!(!fresher(2, t, 1, t));
        assert!(!fresher(5, t, 5, t));
        assert!(fresher(OBSERVE_MASK, t, 3, t), "wrap-around");
        assert!(
            fresher(9, t, 1, t + Duration::from_secs(129)),
            "stale by time"
        );
    }

    fn con_request(mid: u16, token: &[u8]) -> Packet {
        let mut p = new_request(RequestType::Post, "storage/1", true).expect("valid path");
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        p
    }

    #[test]
    fn dedup_replays_and_expires() {
        let t0 = Instant::now();
        let mut cache = DedupCache::new(2, Duration::from_secs(10));
        let req = con_request(7, b"ab");
        assert_eq!(cache.check(peer(), &req, t0), Dedup::New);
        assert_eq!(cache.check(peer(), &req, t0), Dedup::InProgress);
        cache.complete(peer(), &req, b"resp");
        assert_eq!(
            cache.check(peer(), &req, t0),
            Dedup::Replay(b"resp".to_vec())
        );
        // Same id, another token: a new request after the ids wrapped.
        assert_eq!(cache.check(peer(), &con_request(7, b"cd"), t0), Dedup::New);
        // Another peer is another exchange.
        let other = SocketAddr::from(([127, 0, 0, 2], 5683));
        assert_eq!(cache.check(other, &req, t0), Dedup::New);
        assert_eq!(cache.len(), 2, "capped");
        assert_eq!(
            cache.check(peer(), &con_request(8, b"x"), t0 + Duration::from_secs(11)),
            Dedup::New
        );
        assert_eq!(cache.len(), 1, "expired entries purged");
    }

    #[test]
    fn responses_match_requests() {
        let mut ids = MessageIds::starting_at(100);
        let req = con_request(7, b"tk");
        let p = response(&req, ResponseType::Changed, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 7);
        assert_eq!(p.get_token(), b"tk");
        let mut non = req.clone();
        non.header.set_type(MessageType::NonConfirmable);
        let p = response(&non, ResponseType::Changed, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 100);
        let s = separate_response(&req, ResponseType::Content, &mut ids, true);
        assert_eq!(s.header.get_type(), MessageType::Confirmable);
        assert_eq!((s.header.message_id, s.get_token()), (101, &b"tk"[..]));
    }

    fn block1(mid: u16, token: &[u8], num: u32, more: bool, payload: &[u8]) -> Packet {
        let mut p = con_request(mid, token);
        p.add_option(
            CoapOption::Block1,
            BlockOpt { num, more, szx: 0 }.to_bytes(),
        );
        p.payload = payload.to_vec();
        p
    }

    #[test]
    fn block1_reassembly() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(0);
        let mut asm = Block1Assembler::new(64, 4, Duration::from_secs(5), 6);
        let a = [1u8; 16];
        let b = [2u8; 16];
        // A client changing tokens per block (libcoap) is one upload.
        match asm.accept(peer(), block1(1, b"t1", 0, true, &a), t, &mut ids) {
            Assembled::Respond(p) => {
                assert_eq!(response_code(&p), Some(ResponseType::Continue));
                assert_eq!(
                    BlockOpt::of(&p, CoapOption::Block1),
                    Ok(Some(BlockOpt {
                        num: 0,
                        more: true,
                        szx: 0
                    }))
                );
            }
            Assembled::Complete(_) => panic!("first of two blocks"),
        }
        match asm.accept(peer(), block1(2, b"t2", 1, false, &b[..5]), t, &mut ids) {
            Assembled::Complete(whole) => {
                assert_eq!(whole.payload.len(), 21);
                assert_eq!(&whole.payload[16..], &b[..5]);
                let r = response(&whole, ResponseType::Changed, &mut ids);
                assert_eq!(
                    BlockOpt::of(&r, CoapOption::Block1),
                    Ok(Some(BlockOpt {
                        num: 1,
                        more: false,
                        szx: 0
                    }))
                );
            }
            Assembled::Respond(p) => panic!("{p:?}"),
        }
        assert_eq!(asm.in_progress(), 0);

        // Out of order and unknown uploads: 4.08.
        let r = asm.accept(peer(), block1(3, b"t", 2, true, &a), t, &mut ids);
        assert!(
            matches!(r, Assembled::Respond(p) if response_code(&p) == Some(ResponseType::RequestEntityIncomplete))
        );
        // Too large: 4.13 with Size1.
        let mut big = None;
        for num in 0..5 {
            if let Assembled::Respond(p) =
                asm.accept(peer(), block1(4, b"t", num, true, &a), t, &mut ids)
                && response_code(&p) == Some(ResponseType::RequestEntityTooLarge)
            {
                big = Some(p);
                break;
            }
        }
        let big = big.expect("4.13 once over 64 bytes");
        assert_eq!(uint_option(&big, CoapOption::Size1), Some(64));
        assert_eq!(asm.in_progress(), 0);
        // A short intermediate block: 4.00.
        let r = asm.accept(peer(), block1(5, b"t", 0, true, &a[..3]), t, &mut ids);
        assert!(
            matches!(r, Assembled::Respond(p) if response_code(&p) == Some(ResponseType::BadRequest))
        );
    }

    #[test]
    fn block1_partials_are_capped_and_expire() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(0);
        let mut asm = Block1Assembler::new(1024, 2, Duration::from_secs(5), 6);
        for i in 0..5u8 {
            let mut req = block1(1, b"t", 0, true, &[0; 16]);
            mapping::set_uri_path(&mut req, &format!("r{i}")).expect("valid");
            let _ = asm.accept(peer(), req, t, &mut ids);
        }
        assert_eq!(asm.in_progress(), 2);
        let _ = asm.accept(
            peer(),
            con_request(9, b"z"),
            t + Duration::from_secs(6),
            &mut ids,
        );
        assert_eq!(asm.in_progress(), 0);
    }

    #[test]
    fn relay_uploads_are_keyed_by_token() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(0);
        let mut asm = Block1Assembler::new(1024, 8, Duration::from_secs(5), 6);
        let with_relay = |token: &[u8], num, more, payload: &[u8]| {
            let mut p = block1(1, token, num, more, payload);
            p.add_option(
                CoapOption::Unknown(mapping::OPTION_RELAY_STREAM),
                vec![1, 0, 0, 0, 0],
            );
            p
        };
        let _ = asm.accept(peer(), with_relay(b"aaaa", 0, true, &[1; 16]), t, &mut ids);
        let _ = asm.accept(peer(), with_relay(b"bbbb", 0, true, &[2; 16]), t, &mut ids);
        assert_eq!(asm.in_progress(), 2);
        match asm.accept(peer(), with_relay(b"aaaa", 1, false, &[3]), t, &mut ids) {
            Assembled::Complete(p) => assert_eq!(p.payload[..16], [1; 16]),
            Assembled::Respond(p) => panic!("{p:?}"),
        }
    }

    #[test]
    fn block2_slicing() {
        let body: Vec<u8> = (0..=255u8).cycle().take(100).collect();
        let full = |req: &Packet| {
            let mut r = piggybacked_response(req, ResponseType::Content);
            r.payload = body.clone();
            r
        };
        let get = new_request(RequestType::Get, "x", true).expect("valid");
        // Small enough: untouched.
        let mut r = full(&get);
        slice_block2(&get, &mut r, 6);
        assert_eq!(r.payload, body);
        assert!(r.get_option(CoapOption::Block2).is_none());
        // Block 0 of 32-byte blocks, with Size2 and an ETag.
        let mut r = full(&get);
        slice_block2(&get, &mut r, 1);
        assert_eq!(r.payload, body[..32]);
        assert_eq!(
            BlockOpt::of(&r, CoapOption::Block2),
            Ok(Some(BlockOpt {
                num: 0,
                more: true,
                szx: 1
            }))
        );
        assert_eq!(uint_option(&r, CoapOption::Size2), Some(100));
        let etag0 = r.get_first_option(CoapOption::ETag).cloned();
        assert!(etag0.is_some());
        // The client asks for block 3 of 16-byte blocks: bytes 48..64.
        let mut req = get.clone();
        req.add_option(
            CoapOption::Block2,
            BlockOpt {
                num: 3,
                more: false,
                szx: 0,
            }
            .to_bytes(),
        );
        let mut r = full(&req);
        slice_block2(&req, &mut r, 6);
        assert_eq!(r.payload, body[48..64]);
        assert_eq!(r.get_first_option(CoapOption::ETag).cloned(), etag0);
        // Asking for 64-byte blocks from a server that wants 32: block 1 of 64 = bytes 64..96
        // = block 2 of 32.
        let mut req = get.clone();
        req.add_option(
            CoapOption::Block2,
            BlockOpt {
                num: 1,
                more: false,
                szx: 2,
            }
            .to_bytes(),
        );
        let mut r = full(&req);
        slice_block2(&req, &mut r, 1);
        assert_eq!(r.payload, body[64..96]);
        assert_eq!(
            BlockOpt::of(&r, CoapOption::Block2),
            Ok(Some(BlockOpt {
                num: 2,
                more: true,
                szx: 1
            }))
        );
        // Past the end: 4.02.
        let mut req = get;
        req.add_option(
            CoapOption::Block2,
            BlockOpt {
                num: 7,
                more: false,
                szx: 0,
            }
            .to_bytes(),
        );
        let mut r = full(&req);
        slice_block2(&req, &mut r, 6);
        assert_eq!(response_code(&r), Some(ResponseType::BadOption));
        assert!(r.payload.is_empty());
    }

    fn observe_get(token: &[u8], observe: u32, accept: Option<u16>) -> Packet {
        let mut get = new_request(RequestType::Get, "storage/1/monitor", true).expect("valid");
        get.set_token(token.to_vec());
        set_uint_option(&mut get, CoapOption::Observe, observe);
        if let Some(a) = accept {
            set_uint_option(&mut get, CoapOption::Accept, a.into());
        }
        get
    }

    /// Renders "state" as CBOR (60) unless JSON (50) is asked for.
    fn state(accept: Option<u16>) -> (Vec<u8>, Option<u16>) {
        match accept {
            Some(50) => (b"{\"state\":1}".to_vec(), Some(50)),
            _ => (b"state".to_vec(), Some(60)),
        }
    }

    const MONITOR: &str = "storage/1/monitor";

    #[test]
    fn observers_register_notify_and_leave() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(500);
        let mut obs = Observers::new(2, Duration::from_secs(60));
        let mut get = observe_get(b"ob", 0, None);
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), Some(2));
        assert_eq!(obs.count(MONITOR), 1);
        let sent = obs.notify(MONITOR, t, &mut ids, 6, state);
        assert_eq!(sent.len(), 1);
        let (to, n) = &sent[0];
        assert_eq!(*to, peer());
        assert_eq!(n.get_token(), b"ob");
        assert_eq!(n.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(observe_value(n), Some(3));
        assert_eq!(content_format(n), Some(60));
        assert_eq!(n.payload, b"state");
        assert!(obs.notify("other", t, &mut ids, 6, state).is_empty());
        // A Reset from another endpoint changes nothing; the observer's own ends it.
        obs.on_reset(SocketAddr::from(([127, 0, 0, 1], 9)), n.header.message_id);
        assert_eq!(obs.count(MONITOR), 1);
        obs.on_reset(peer(), n.header.message_id);
        assert_eq!(obs.count(MONITOR), 0);
        // Register again (the same endpoint and token replace the entry), then deregister with
        // Observe = 1.
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), Some(2));
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), Some(3));
        assert_eq!(obs.count(MONITOR), 1);
        set_uint_option(&mut get, CoapOption::Observe, 1);
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), None);
        assert_eq!(obs.count(MONITOR), 0);
        // A plain GET with an observation's token ends it too.
        assert!(
            obs.on_get(peer(), &observe_get(b"p", 0, None), MONITOR, t)
                .is_some()
        );
        let mut plain = new_request(RequestType::Get, MONITOR, true).expect("valid");
        plain.set_token(b"p".to_vec());
        assert_eq!(obs.on_get(peer(), &plain, MONITOR, t), None);
        assert_eq!(obs.count(MONITOR), 0);
        // Full: a third registration is refused, the two kept.
        assert!(
            obs.on_get(peer(), &observe_get(b"1", 0, None), MONITOR, t)
                .is_some()
        );
        assert!(
            obs.on_get(peer(), &observe_get(b"2", 0, None), MONITOR, t)
                .is_some()
        );
        assert_eq!(
            obs.on_get(peer(), &observe_get(b"3", 0, None), MONITOR, t),
            None
        );
        assert_eq!(obs.count(MONITOR), 2);
        // A deleted resource ends its observations with a final 4.04.
        let last = obs.end(MONITOR, ResponseType::NotFound, "deleted", &mut ids);
        assert_eq!(last.len(), 2);
        assert!(last.iter().all(|(_, p)| {
            response_code(p) == Some(ResponseType::NotFound)
                && observe_value(p).is_none()
                && p.payload == b"deleted"
        }));
        assert_eq!(obs.count(MONITOR), 0);
    }

    #[test]
    fn observers_get_their_accepted_format() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(60));
        obs.on_get(peer(), &observe_get(b"c", 0, Some(60)), MONITOR, t);
        obs.on_get(peer(), &observe_get(b"j", 0, Some(50)), MONITOR, t);
        obs.on_get(peer(), &observe_get(b"d", 0, None), MONITOR, t);
        let mut renders = Vec::new();
        let sent = obs.notify(MONITOR, t, &mut ids, 6, |accept| {
            renders.push(accept);
            state(accept)
        });
        renders.sort_unstable();
        assert_eq!(renders, [None, Some(50), Some(60)], "once per Accept");
        for (_, p) in &sent {
            let json = p.get_token() == b"j";
            assert_eq!(content_format(p), Some(if json { 50 } else { 60 }));
            assert_eq!(p.payload.starts_with(b"{"), json);
        }
        assert_eq!(sent.len(), 3);
    }

    #[test]
    fn every_16th_notification_is_confirmable_and_retransmitted() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(3600));
        obs.on_get(peer(), &observe_get(b"o", 0, None), MONITOR, t);
        let mut con = None;
        for i in 1..=CON_EVERY {
            let sent = obs.notify(MONITOR, t, &mut ids, 6, state);
            let p = &sent[0].1;
            let expect = if i == CON_EVERY {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            };
            assert_eq!(p.header.get_type(), expect, "notification {i}");
            assert_eq!(observe_value(p), Some(2 + i));
            con = Some(p.clone());
        }
        let con = con.expect("sent");
        // Nothing is due before ACK_TIMEOUT; then the same message, at doubling intervals.
        assert!(
            obs.poll(t + ACK_TIMEOUT - Duration::from_millis(1))
                .is_empty()
        );
        let mut now = t;
        let mut timeout = ACK_TIMEOUT;
        for _ in 0..MAX_RETRANSMIT {
            now += timeout;
            let again = obs.poll(now);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].1.header.message_id, con.header.message_id);
            assert_eq!(again[0].1.payload, con.payload);
            timeout *= 2;
            assert!(
                obs.poll(now + timeout - Duration::from_millis(1))
                    .is_empty()
            );
        }
        // Never acknowledged: the observer is dropped.
        assert!(obs.poll(now + timeout).is_empty());
        assert_eq!(obs.count(MONITOR), 0);
    }

    #[test]
    fn an_ack_clears_the_outstanding_notification() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(30));
        obs.on_get(peer(), &observe_get(b"o", 0, None), MONITOR, t);
        // The first notification after con_interval is CON.
        let later = t + Duration::from_secs(30);
        let sent = obs.notify(MONITOR, later, &mut ids, 6, state);
        let p = &sent[0].1;
        assert_eq!(p.header.get_type(), MessageType::Confirmable);
        // An ACK from elsewhere, or for another message, does not count.
        obs.on_ack(SocketAddr::from(([127, 0, 0, 1], 9)), p.header.message_id);
        obs.on_ack(peer(), p.header.message_id.wrapping_add(1));
        assert_eq!(obs.poll(later + ACK_TIMEOUT).len(), 1);
        obs.on_ack(peer(), p.header.message_id);
        assert!(obs.poll(later + Duration::from_secs(600)).is_empty());
        assert_eq!(obs.count(MONITOR), 1);
        // Acknowledged: the next one is NON again.
        let sent = obs.notify(MONITOR, later, &mut ids, 6, state);
        assert_eq!(sent[0].1.header.get_type(), MessageType::NonConfirmable);
    }

    #[test]
    fn a_newer_notification_takes_the_outstanding_ones_place() {
        let t = Instant::now();
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(30));
        obs.on_get(peer(), &observe_get(b"o", 0, None), MONITOR, t);
        let t1 = t + Duration::from_secs(30);
        let first = obs.notify(MONITOR, t1, &mut ids, 6, state)[0].1.clone();
        assert_eq!(first.header.get_type(), MessageType::Confirmable);
        // Retransmitted once: timeout now 4 s, one retransmission counted.
        let t2 = t1 + ACK_TIMEOUT;
        assert_eq!(obs.poll(t2).len(), 1);
        // A newer notification while it is outstanding: CON too, and the only one retransmitted,
        // with the timeout and counter it inherits.
        let newer = obs.notify(MONITOR, t2, &mut ids, 6, |_| (b"new".to_vec(), Some(60)))[0]
            .1
            .clone();
        assert_eq!(newer.header.get_type(), MessageType::Confirmable);
        assert_ne!(newer.header.message_id, first.header.message_id);
        assert!(
            obs.poll(t2 + 2 * ACK_TIMEOUT - Duration::from_millis(1))
                .is_empty()
        );
        let again = obs.poll(t2 + 2 * ACK_TIMEOUT);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.header.message_id, newer.header.message_id);
        assert_eq!(again[0].1.payload, b"new");
        // The old message id's ACK clears nothing; counted from the first notification, the
        // observer is dropped after MAX_RETRANSMIT retransmissions in all (two so far).
        obs.on_ack(peer(), first.header.message_id);
        let mut now = t2 + 2 * ACK_TIMEOUT;
        for _ in 2..MAX_RETRANSMIT {
            now += Duration::from_secs(600);
            assert_eq!(obs.poll(now).len(), 1);
        }
        now += Duration::from_secs(600);
        assert!(obs.poll(now).is_empty());
        assert_eq!(obs.count(MONITOR), 0);
    }

    #[test]
    fn datagram_parsing_refuses_what_rfc7252_ignores() {
        assert!(parse_datagram(&[0x40, 0x01, 0x00, 0x01]).is_some());
        assert!(
            parse_datagram(&[0x80, 0x01, 0x00, 0x01]).is_none(),
            "version 2"
        );
        assert!(
            parse_datagram(&[0x49, 0x01, 0x00, 0x01]).is_none(),
            "token length 9"
        );
        assert!(
            parse_datagram(&[0x41, 0x00, 0x00, 0x01, 0xaa]).is_none(),
            "empty with token"
        );
        assert!(parse_datagram(&[0x40]).is_none());
        let mut ping = Packet::new();
        ping.header.code = MessageClass::Empty;
        assert!(parse_datagram(&ping.to_bytes().expect("tiny")).is_some());
    }

    #[test]
    fn requests_with_queries() {
        let p = new_request(RequestType::Get, "/load?window=10&x", true).expect("valid");
        assert_eq!(mapping::uri_path(&p), "load");
        assert_eq!(mapping::uri_query(&p), ["window=10", "x"]);
        assert!(new_request(RequestType::Get, "a//b", true).is_err());
    }
}
