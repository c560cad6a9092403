//! The CoAP server: one task owning the API socket. It parses every datagram (a datagram that
//! does not parse is dropped and logged, rate-limited), deduplicates retransmitted requests
//! (RFC 7252 §4.5), reassembles Block1 uploads and cuts Block2 downloads (RFC 7959), routes the
//! request, answers what it can at once, hands messages to the writer and calls that change
//! state to their own tasks, sends their answers when they come back, and notifies observers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_crypto::hash::sha256;
use m2msec_wire::relay::api::{
    CONTENT_FORMAT_CBOR, CONTENT_FORMAT_LINK_FORMAT, DEFAULT_WINDOW_S, Load, Throughput,
};
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType,
};
use m2msec_wire::relay::coap::{from_request, reset, uri_path, uri_query};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::coap_msg::{
    Block, CONTENT_FORMAT_JSON, ReplyTo, Response, SZX, block_size, code, encode, uint, uint_option,
};
use super::control;
use super::ingest::{LogLimit, Submitted, submit};
use super::metrics::bits_per_second;
use super::observe::{Observers, Outgoing, Registered};
use super::resources::{Repr, links};
use super::state::MonitorId;
use super::writer::{Deferred, now_s};

/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME: how long a request's answer is kept for retransmissions.
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Answers kept for retransmitted requests, at most.
const MAX_EXCHANGES: usize = 65_536;
/// A block-wise upload that sees no block for this long is dropped.
const UPLOAD_LIFETIME: Duration = Duration::from_secs(60);

/// Options the proxy understands; an unknown critical (odd) option in a request is refused with
/// 4.02 (RFC 7252 §5.4.1).
const KNOWN_CRITICAL: [u16; 8] = [3, 7, 11, 15, 17, 23, 27, 35];

/// What the routing of a request produced.
enum Handled {
    /// Answer now.
    Now(Response),
    /// Someone else answers later (the writer, a control task).
    Later,
}

#[derive(Debug)]
struct Exchange {
    at: Instant,
    answer: Option<Vec<u8>>,
}

/// Answers to non-idempotent requests, by (endpoint, message id), for retransmissions.
#[derive(Debug, Default)]
struct Exchanges {
    map: HashMap<(SocketAddr, u16), Exchange>,
    order: VecDeque<((SocketAddr, u16), Instant)>,
}

impl Exchanges {
    fn start(&mut self, key: (SocketAddr, u16), now: Instant) {
        self.map.insert(
            key,
            Exchange {
                at: now,
                answer: None,
            },
        );
        self.order.push_back((key, now));
        self.expire(now);
    }

    fn finish(&mut self, key: (SocketAddr, u16), answer: Vec<u8>) {
        if let Some(e) = self.map.get_mut(&key) {
            e.answer = Some(answer);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(key, at)) = self.order.front() {
            let old = now.saturating_duration_since(at) >= EXCHANGE_LIFETIME;
            if !old && self.order.len() <= MAX_EXCHANGES {
                break;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|e| e.at == at) {
                self.map.remove(&key);
            }
        }
    }
}

#[derive(Debug)]
struct Upload {
    first: Packet,
    body: Vec<u8>,
    last: Instant,
}

/// What a Block1 block did.
enum Step {
    /// More to come: answer 2.31 with this Block1.
    Continue(Block),
    /// The whole request, and the Block1 to echo in its answer.
    Complete(Box<Packet>, Block),
    Refuse(Response),
}

/// Block-wise uploads being reassembled, by (endpoint, target).
#[derive(Debug, Default)]
struct Uploads {
    map: HashMap<(SocketAddr, String), Upload>,
}

impl Uploads {
    fn offer(
        &mut self,
        peer: SocketAddr,
        req: &Packet,
        b: Block,
        max_body: usize,
        max_uploads: usize,
        now: Instant,
    ) -> Step {
        let proxy_uri = req
            .get_first_option(CoapOption::ProxyUri)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let key = (peer, format!("{}\n{proxy_uri}", uri_path(req)));
        if b.more && req.payload.len() != block_size(b.szx) {
            self.map.remove(&key);
            return Step::Refuse(Response::error(
                code::BAD_REQUEST,
                "a block that is not the last must be full",
            ));
        }
        if b.num == 0 {
            if !self.map.contains_key(&key) && self.map.len() >= max_uploads {
                // Evict the stalest upload if it has been idle a while, else refuse.
                let stalest = self
                    .map
                    .iter()
                    .min_by_key(|(_, u)| u.last)
                    .map(|(k, u)| (k.clone(), u.last));
                match stalest {
                    Some((k, last))
                        if now.saturating_duration_since(last) > Duration::from_secs(5) =>
                    {
                        self.map.remove(&k);
                    }
                    _ => {
                        return Step::Refuse(Response::unavailable(
                            1,
                            "too many block-wise uploads",
                        ));
                    }
                }
            }
            let mut first = req.clone();
            first.clear_option(CoapOption::Block1);
            first.payload = Vec::new();
            self.map.insert(
                key.clone(),
                Upload {
                    first,
                    body: Vec::new(),
                    last: now,
                },
            );
        }
        let Some(upload) = self.map.get_mut(&key) else {
            return Step::Refuse(Response::error(
                code::INCOMPLETE,
                "block-wise upload not started",
            ));
        };
        if b.offset() != upload.body.len() {
            self.map.remove(&key);
            return Step::Refuse(Response::error(code::INCOMPLETE, "block out of order"));
        }
        if upload.body.len().saturating_add(req.payload.len()) > max_body {
            self.map.remove(&key);
            return Step::Refuse(
                Response::error(code::TOO_LARGE, "body larger than max_message_bytes").with(
                    CoapOption::Size1,
                    uint(u32::try_from(max_body).unwrap_or(u32::MAX)),
                ),
            );
        }
        upload.body.extend_from_slice(&req.payload);
        upload.last = now;
        if b.more {
            return Step::Continue(Block {
                num: b.num,
                more: true,
                szx: b.szx.min(SZX),
            });
        }
        match self.map.remove(&key) {
            Some(u) => {
                let mut whole = u.first;
                whole.payload = u.body;
                Step::Complete(
                    Box::new(whole),
                    Block {
                        num: b.num,
                        more: false,
                        szx: b.szx,
                    },
                )
            }
            None => Step::Refuse(Response::code(code::INTERNAL)),
        }
    }

    fn expire(&mut self, now: Instant) {
        self.map
            .retain(|_, u| now.saturating_duration_since(u.last) < UPLOAD_LIFETIME);
    }
}

/// The CoAP server task's state.
pub(crate) struct Server {
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    deferred: mpsc::UnboundedReceiver<Deferred>,
    exchanges: Exchanges,
    uploads: Uploads,
    observers: Observers,
    next_mid: u16,
    junk: LogLimit,
}

impl Server {
    pub(crate) fn new(
        shared: Arc<Shared>,
        socket: Arc<UdpSocket>,
        deferred: mpsc::UnboundedReceiver<Deferred>,
    ) -> Self {
        let config = &shared.config;
        let observers = Observers::new(
            usize::try_from(config.max_observers).unwrap_or(usize::MAX),
            Duration::from_secs(config.notify_con_interval_s.into()),
        );
        Self {
            shared,
            socket,
            deferred,
            exchanges: Exchanges::default(),
            uploads: Uploads::default(),
            observers,
            next_mid: u16::try_from(std::process::id() & 0xFFFF).unwrap_or(0),
            junk: LogLimit::new("coap"),
        }
    }

    fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// Serves until `stop` fires.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_535];
        let interval = Duration::from_millis(self.shared.config.notify_interval_ms.max(10).into());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let socket = Arc::clone(&self.socket);
        loop {
            let out = tokio::select! {
                _ = stop.changed() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => match buf.get(..n) {
                        Some(bytes) => self.on_datagram(peer, bytes),
                        None => Vec::new(),
                    },
                    Err(e) => {
                        // An ICMP error for an earlier send (a client gone): nothing to do.
                        tracing::debug!(error = %e, "receive");
                        Vec::new()
                    }
                },
                Some(d) = self.deferred.recv() => self.on_deferred(d),
                _ = tick.tick() => self.on_tick(Instant::now()),
            };
            for (peer, bytes) in out {
                if let Err(e) = socket.send_to(&bytes, peer).await {
                    tracing::debug!(%peer, error = %e, "send");
                }
            }
        }
        // Answers that were still on their way.
        while let Ok(d) = self.deferred.try_recv() {
            for (peer, bytes) in self.on_deferred(d) {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    }

    fn on_deferred(&mut self, d: Deferred) -> Vec<Outgoing> {
        let mid = self.mid();
        let Some(bytes) = encode(&d.response.to_packet(&d.reply, mid)) else {
            return Vec::new();
        };
        self.exchanges
            .finish((d.reply.peer, d.reply.message_id), bytes.clone());
        vec![(d.reply.peer, bytes)]
    }

    fn on_tick(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let watched = self.observers.monitors();
        let changed: Vec<(MonitorId, Option<Repr>)> = {
            let mut core = self.shared.core();
            let dirty = std::mem::take(&mut core.dirty);
            dirty
                .into_iter()
                .filter(|m| watched.contains(m))
                .map(|m| {
                    let repr = match m {
                        MonitorId::Storage(id) => core.storage_monitor(id).map(Repr::Storage),
                        MonitorId::Forward(id) => core.forward_monitor(id).map(Repr::Forward),
                    };
                    (m, repr)
                })
                .collect()
        };
        for (monitor, repr) in changed {
            let render = repr.map(|r| move |json: bool| r.render(json));
            let mut next = self.next_mid;
            let mut mid = || {
                next = next.wrapping_add(1);
                next
            };
            match &render {
                Some(f) => self
                    .observers
                    .notify(monitor, Some(f), now, &mut mid, &mut out),
                None => self
                    .observers
                    .notify(monitor, None, now, &mut mid, &mut out),
            }
            self.next_mid = next;
        }
        self.observers.retransmit(now, &mut out);
        self.exchanges.expire(now);
        self.uploads.expire(now);
        out
    }

    fn on_datagram(&mut self, peer: SocketAddr, bytes: &[u8]) -> Vec<Outgoing> {
        let Ok(p) = Packet::from_bytes(bytes) else {
            self.junk.warn(peer, &"datagram is not CoAP: dropped");
            return Vec::new();
        };
        if p.header.get_version() != 1 {
            self.junk.warn(peer, &"unknown CoAP version: dropped");
            return Vec::new();
        }
        let kind = p.header.get_type();
        match p.header.code {
            MessageClass::Empty => match kind {
                MessageType::Acknowledgement => {
                    self.observers.on_ack(peer, p.header.message_id);
                    Vec::new()
                }
                MessageType::Reset => {
                    self.observers.on_reset(peer, p.header.message_id);
                    Vec::new()
                }
                // A CoAP ping (RFC 7252 §4.3) is answered with a Reset.
                MessageType::Confirmable => rst(peer, &p),
                MessageType::NonConfirmable => Vec::new(),
            },
            MessageClass::Request(method) => match kind {
                MessageType::Confirmable | MessageType::NonConfirmable => {
                    self.on_request(peer, p, method)
                }
                _ => Vec::new(),
            },
            // Responses and reserved codes: this endpoint sends no requests from this socket.
            _ if kind == MessageType::Confirmable => rst(peer, &p),
            _ => Vec::new(),
        }
    }

    fn on_request(&mut self, peer: SocketAddr, req: Packet, method: RequestType) -> Vec<Outgoing> {
        let now = Instant::now();
        let mut reply = ReplyTo::of(peer, &req);
        let key = (peer, req.header.message_id);
        let safe = method == RequestType::Get;
        if !safe {
            if let Some(e) = self.exchanges.map.get(&key) {
                // A retransmission: the same answer again, or nothing while it is being made.
                return e
                    .answer
                    .clone()
                    .map(|a| vec![(peer, a)])
                    .unwrap_or_default();
            }
            self.exchanges.start(key, now);
        }
        let handled = self.dispatch(peer, req, method, &mut reply, now);
        match handled {
            Handled::Later => Vec::new(),
            Handled::Now(response) => {
                let mid = self.mid();
                let Some(bytes) = encode(&response.to_packet(&reply, mid)) else {
                    return Vec::new();
                };
                if !safe {
                    self.exchanges.finish(key, bytes.clone());
                }
                vec![(peer, bytes)]
            }
        }
    }

    fn dispatch(
        &mut self,
        peer: SocketAddr,
        req: Packet,
        method: RequestType,
        reply: &mut ReplyTo,
        now: Instant,
    ) -> Handled {
        if let Some(bad) = req.options().find_map(|(n, v)| {
            (n % 2 == 1 && !KNOWN_CRITICAL.contains(n) && !v.is_empty()).then_some(*n)
        }) {
            return Handled::Now(Response::error(
                code::BAD_OPTION,
                &format!("critical option {bad} not supported"),
            ));
        }
        let req = match Block::of(&req, CoapOption::Block1) {
            None => req,
            Some(Err(())) => {
                return Handled::Now(Response::error(code::BAD_OPTION, "malformed Block1"));
            }
            Some(Ok(b)) => {
                let config = &self.shared.config;
                let max = usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX);
                let slots = usize::try_from(config.max_block_transfers).unwrap_or(usize::MAX);
                match self.uploads.offer(peer, &req, b, max, slots, now) {
                    Step::Refuse(r) => return Handled::Now(r),
                    Step::Continue(echo) => {
                        reply.block1 = Some(echo);
                        return Handled::Now(Response::code(code::CONTINUE));
                    }
                    Step::Complete(whole, echo) => {
                        reply.block1 = Some(echo);
                        *whole
                    }
                }
            }
        };
        let handled = self.route(peer, &req, method, reply, now);
        match handled {
            Handled::Now(r) if method == RequestType::Get => Handled::Now(block2(r, &req)),
            other => other,
        }
    }

    fn route(
        &mut self,
        peer: SocketAddr,
        req: &Packet,
        method: RequestType,
        reply: &ReplyTo,
        now: Instant,
    ) -> Handled {
        use RequestType::{Delete, Get, Post};
        if req.get_first_option(CoapOption::ProxyUri).is_some() {
            return match method {
                Post => self.relay_post(None, req, reply),
                _ => Handled::Now(Response::error(
                    code::METHOD_NOT_ALLOWED,
                    "Proxy-Uri takes POST",
                )),
            };
        }
        let path = uri_path(req);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let id = |s: &str| -> Option<u32> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (segments.as_slice(), method) {
            ([".well-known", "core"], Get) => {
                let query = uri_query(req);
                let body = links(&self.shared.core(), &query);
                match accept(req, &[CONTENT_FORMAT_LINK_FORMAT]) {
                    Ok(_) => Handled::Now(Response::content(
                        body.into_bytes(),
                        CONTENT_FORMAT_LINK_FORMAT,
                    )),
                    Err(r) => Handled::Now(r),
                }
            }
            (["info"], Get) => self.get(req, |s, _| Some(Repr::Info(s.core().info()))),
            (["load"] | ["throughput"], Get) => {
                let window = match window(req, &self.shared) {
                    Ok(w) => w,
                    Err(r) => return Handled::Now(r),
                };
                let load = segments.first() == Some(&"load");
                self.get(req, move |s, _| {
                    let sum = s.core().metrics.sum(now_s(), window);
                    Some(if load {
                        Repr::Load(Load {
                            window_s: window,
                            messages_in: sum.messages_in,
                            bytes_in: sum.bytes_in,
                            messages_out: sum.messages_out,
                            bytes_out: sum.bytes_out,
                            rejected_full: sum.rejected_full,
                        })
                    } else {
                        Repr::Throughput(Throughput {
                            window_s: window,
                            in_bps: bits_per_second(sum.bytes_in, window),
                            out_bps: bits_per_second(sum.bytes_out, window),
                        })
                    })
                })
            }
            (["store"], Post) => {
                let payload = req.payload.clone();
                self.later(reply, move |shared| {
                    control::create_storage(shared, payload)
                })
            }
            (["forward"], Post) => {
                let payload = req.payload.clone();
                self.later(reply, move |shared| {
                    control::create_forward(shared, payload)
                })
            }
            (["storage", s], Post) => match id(s) {
                Some(id) => self.relay_post(Some(id), req, reply),
                None => not_found(),
            },
            (["storage", s], Delete) => match id(s) {
                Some(id) => {
                    let payload = req.payload.clone();
                    self.later(reply, move |shared| {
                        control::delete_storage(shared, id, payload)
                    })
                }
                None => not_found(),
            },
            (["forward", s, "control"], Post) => match id(s) {
                Some(id) => {
                    let payload = req.payload.clone();
                    self.later(reply, move |shared| {
                        control::control_forward(shared, id, payload)
                    })
                }
                None => not_found(),
            },
            (["storage", s, "monitor"], Get) => match id(s) {
                Some(id) => self.monitor(peer, req, MonitorId::Storage(id), now),
                None => not_found(),
            },
            (["forward", s, "monitor"], Get) => match id(s) {
                Some(id) => self.monitor(peer, req, MonitorId::Forward(id), now),
                None => not_found(),
            },
            (
                [".well-known", "core"]
                | ["info"]
                | ["load"]
                | ["throughput"]
                | ["store"]
                | ["forward"]
                | ["storage", _]
                | ["storage", _, "monitor"]
                | ["forward", _, "monitor"]
                | ["forward", _, "control"],
                _,
            ) => Handled::Now(Response::error(
                code::METHOD_NOT_ALLOWED,
                "method not allowed",
            )),
            _ => not_found(),
        }
    }

    /// A GET of a CBOR/JSON representation.
    fn get(&self, req: &Packet, repr: impl FnOnce(&Shared, ()) -> Option<Repr>) -> Handled {
        let format = match accept(req, &[CONTENT_FORMAT_CBOR, CONTENT_FORMAT_JSON]) {
            Ok(f) => f,
            Err(r) => return Handled::Now(r),
        };
        match repr(&self.shared, ()) {
            Some(r) => Handled::Now(Response::content(
                r.render(format == CONTENT_FORMAT_JSON),
                format,
            )),
            None => not_found(),
        }
    }

    /// A GET of a monitor, with Observe registration or deregistration (RFC 7641).
    fn monitor(
        &mut self,
        peer: SocketAddr,
        req: &Packet,
        monitor: MonitorId,
        now: Instant,
    ) -> Handled {
        let format = match accept(req, &[CONTENT_FORMAT_CBOR, CONTENT_FORMAT_JSON]) {
            Ok(f) => f,
            Err(r) => return Handled::Now(r),
        };
        let json = format == CONTENT_FORMAT_JSON;
        let repr = {
            let core = self.shared.core();
            match monitor {
                MonitorId::Storage(id) => core.storage_monitor(id).map(Repr::Storage),
                MonitorId::Forward(id) => core.forward_monitor(id).map(Repr::Forward),
            }
        };
        let token = req.get_token();
        let Some(repr) = repr else {
            self.observers.deregister(peer, token);
            return not_found();
        };
        let mut response = Response::content(repr.render(json), format);
        match uint_option(req, CoapOption::Observe) {
            Some(Ok(0)) => {
                if let Registered::Yes(n) = self.observers.register(peer, token, monitor, json, now)
                {
                    response = response.with(CoapOption::Observe, uint(n));
                }
            }
            _ => self.observers.deregister(peer, token),
        }
        Handled::Now(response)
    }

    /// A relay message POSTed to a storage, or to its source's storage with Proxy-Uri.
    fn relay_post(&mut self, id: Option<u32>, req: &Packet, reply: &ReplyTo) -> Handled {
        let msg = match from_request(req) {
            Ok(m) => m,
            Err(e) => {
                self.junk
                    .warn(reply.peer, &format!("relay message refused: {e}"));
                return Handled::Now(Response::error(code::BAD_REQUEST, &e.to_string()));
            }
        };
        let id = match id {
            Some(id) => id,
            None => match self.shared.core().by_source.get(&msg.header.source) {
                Some(id) => *id,
                None => {
                    return Handled::Now(Response::error(
                        code::NOT_FOUND,
                        "no storage for this source",
                    ));
                }
            },
        };
        match submit(&self.shared, id, &msg, None, Some(reply.clone())) {
            Submitted::Queued => Handled::Later,
            Submitted::Now(r) => Handled::Now(r),
        }
    }

    /// Runs a state-changing call in its own task (bounded in number), answered later.
    fn later<F, Fut>(&self, reply: &ReplyTo, call: F) -> Handled
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: std::future::Future<Output = Response> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.shared.control_slots).try_acquire_owned() else {
            return Handled::Now(Response::unavailable(
                self.shared.config.max_age_when_busy_s,
                "busy: too many calls in progress",
            ));
        };
        let fut = call(Arc::clone(&self.shared));
        let shared = Arc::clone(&self.shared);
        let reply = reply.clone();
        tokio::spawn(async move {
            let response = fut.await;
            drop(permit);
            let _ = shared.deferred.send(Deferred { reply, response });
        });
        Handled::Later
    }
}

fn not_found() -> Handled {
    Handled::Now(Response::error(code::NOT_FOUND, "no such resource"))
}

fn rst(peer: SocketAddr, p: &Packet) -> Vec<Outgoing> {
    encode(&reset(p))
        .map(|b| vec![(peer, b)])
        .unwrap_or_default()
}

/// The Content-Format to answer in: the Accept option's if offered, else the first.
fn accept(req: &Packet, offered: &[u16]) -> Result<u16, Response> {
    let first = offered.first().copied().unwrap_or(CONTENT_FORMAT_CBOR);
    match uint_option(req, CoapOption::Accept) {
        None => Ok(first),
        Some(Ok(f)) => match u16::try_from(f).ok().filter(|f| offered.contains(f)) {
            Some(f) => Ok(f),
            None => Err(Response::error(
                code::NOT_ACCEPTABLE,
                "content format not offered",
            )),
        },
        Some(Err(())) => Err(Response::error(code::BAD_OPTION, "malformed Accept")),
    }
}

/// `?window=S` (seconds, 1..=max_load_window_s), else the configured default.
fn window(req: &Packet, shared: &Shared) -> Result<u32, Response> {
    let config = &shared.config;
    let default = if config.load_window_s == 0 {
        DEFAULT_WINDOW_S
    } else {
        config.load_window_s
    };
    for q in uri_query(req) {
        if let Some(v) = q.strip_prefix("window=") {
            return match v.parse::<u32>() {
                Ok(w) if w >= 1 && w <= config.max_load_window_s => Ok(w),
                _ => Err(Response::error(
                    code::BAD_REQUEST,
                    &format!("window must be 1..={} seconds", config.max_load_window_s),
                )),
            };
        }
    }
    Ok(default)
}

/// Cuts a GET's 2.05 into the block the request asks for (RFC 7959 §2.4), or into the first
/// block when it does not fit one, with Size2 and an ETag of the whole representation.
fn block2(mut r: Response, req: &Packet) -> Response {
    if r.code != code::CONTENT {
        return r;
    }
    let (szx, offset) = match Block::of(req, CoapOption::Block2) {
        Some(Err(())) => return Response::error(code::BAD_OPTION, "malformed Block2"),
        Some(Ok(b)) => (b.szx.min(SZX), b.offset()),
        None if r.payload.len() <= block_size(SZX) => return r,
        None => (SZX, 0),
    };
    let size = block_size(szx);
    let len = r.payload.len();
    if offset > 0 && offset >= len {
        return Response::error(code::BAD_OPTION, "block beyond the end");
    }
    let end = offset.saturating_add(size).min(len);
    let num = u32::try_from(offset / size).unwrap_or(u32::MAX);
    let etag = sha256(&r.payload);
    r.payload = r
        .payload
        .get(offset..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    r.options.push((
        CoapOption::ETag,
        etag.get(..4).map(<[u8]>::to_vec).unwrap_or_default(),
    ));
    r.options.push((
        CoapOption::Block2,
        Block {
            num,
            more: end < len,
            szx,
        }
        .encode(),
    ));
    if num == 0 {
        r.options.push((
            CoapOption::Size2,
            uint(u32::try_from(len).unwrap_or(u32::MAX)),
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    #[test]
    fn block2_cuts_large_bodies() {
        let body: Vec<u8> = (0..2500u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let req = Packet::new();
        let r = block2(Response::content(body.clone(), 60), &req);
        assert_eq!(r.payload, body[..1024]);
        let b = r
            .options
            .iter()
            .find(|(o, _)| *o == CoapOption::Block2)
            .map(|(_, v)| Block::decode(v).unwrap())
            .unwrap();
        assert_eq!(
            b,
            Block {
                num: 0,
                more: true,
                szx: 6
            }
        );
        let mut req = Packet::new();
        req.add_option(
            CoapOption::Block2,
            Block {
                num: 4,
                more: false,
                szx: 4,
            }
            .encode(),
        );
        let r = block2(Response::content(body.clone(), 60), &req);
        assert_eq!(r.payload, body[1024..1280]);
        let mut req = Packet::new();
        req.add_option(
            CoapOption::Block2,
            Block {
                num: 9,
                more: false,
                szx: 6,
            }
            .encode(),
        );
        assert_eq!(
            block2(Response::content(body, 60), &req).code,
            code::BAD_OPTION
        );
        // Small bodies and errors pass untouched.
        let small = block2(Response::content(vec![1], 60), &Packet::new());
        assert_eq!(small.options.len(), 1);
    }

    #[test]
    fn uploads_reassemble_in_order_only() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let now = Instant::now();
        let mut ups = Uploads::default();
        let block = |num: u32, more: bool, payload: Vec<u8>| {
            let mut p = Packet::new();
            p.add_option(CoapOption::UriPath, b"store".to_vec());
            p.payload = payload;
            (p, Block { num, more, szx: 0 })
        };
        let (p, b) = block(0, true, vec![1; 16]);
        assert!(matches!(
            ups.offer(peer, &p, b, 100, 4, now),
            Step::Continue(_)
        ));
        // Out of order.
        let (p, b) = block(2, true, vec![1; 16]);
        assert!(
            matches!(ups.offer(peer, &p, b, 100, 4, now), Step::Refuse(r) if r.code == code::INCOMPLETE)
        );
        let (p, b) = block(0, true, vec![1; 16]);
        ups.offer(peer, &p, b, 100, 4, now);
        let (p, b) = block(1, false, vec![2; 3]);
        match ups.offer(peer, &p, b, 100, 4, now) {
            Step::Complete(whole, echo) => {
                assert_eq!(whole.payload.len(), 19);
                assert!(whole.get_first_option(CoapOption::Block1).is_none());
                assert_eq!(echo.num, 1);
            }
            _ => panic!("not complete"),
        }
        // Too large.
        let (p, b) = block(0, true, vec![1; 16]);
        ups.offer(peer, &p, b, 20, 4, now);
        let (p, b) = block(1, true, vec![1; 16]);
        assert!(
            matches!(ups.offer(peer, &p, b, 20, 4, now), Step::Refuse(r) if r.code == code::TOO_LARGE)
        );
        // A short non-final block.
        let (p, b) = block(0, true, vec![1; 5]);
        assert!(
            matches!(ups.offer(peer, &p, b, 20, 4, now), Step::Refuse(r) if r.code == code::BAD_REQUEST)
        );
    }
}
