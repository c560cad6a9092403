//! The CoAP server: one task owning the API socket. It parses every datagram (a datagram that
//! does not parse is dropped and logged, rate-limited), deduplicates retransmitted requests
//! (RFC 7252 §4.5), reassembles Block1 uploads and cuts Block2 downloads (RFC 7959), routes the
//! request, answers what it can at once, hands messages to the writer and calls that change
//! state to their own tasks, sends their answers when they come back, and notifies observers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use m2msec_crypto::rng::OsRng;
use m2msec_protocol::Millis;

use crate::runtime::driver::Egress;
use m2msec_wire::relay::api::{
    CONTENT_FORMAT_CBOR, CONTENT_FORMAT_LINK_FORMAT, DEFAULT_WINDOW_S, Load, Throughput,
};
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use m2msec_wire::relay::coap::{from_request, reset, uri_path, uri_query};
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::coap_msg::{CONTENT_FORMAT_JSON, ReplyTo, Response, encode};
use super::control;
use super::ingest::{LogLimit, Submitted, submit};
use super::metrics::bits_per_second;
use super::resources::{Repr, links};
use super::state::MonitorId;
use super::writer::{Deferred, now_s};
use crate::runtime::coap::{
    Assembled, Block1Assembler, DEFAULT_SZX, Dedup, DedupCache, EXCHANGE_LIFETIME, MessageIds,
    Observers, monotonic_now, parse_datagram, slice_block2, uint_option,
};

/// Answers kept for retransmitted requests, at most (mostly the few bytes of a 2.04).
const MAX_EXCHANGES: usize = 65_536;
/// A block-wise upload that sees no block for this long is dropped.
const UPLOAD_LIFETIME: Duration = Duration::from_secs(60);

/// Options the proxy understands; an unknown critical (odd) option in a request is refused with
/// 4.02 (RFC 7252 §5.4.1).
const KNOWN_CRITICAL: [u16; 8] = [3, 7, 11, 15, 17, 23, 27, 35];

/// A datagram to send.
type Outgoing = (SocketAddr, Vec<u8>);

/// What the routing of a request produced.
enum Handled {
    /// Answer now.
    Now(Response),
    /// Someone else answers later (the writer, a control task).
    Later,
}

/// The CoAP server task's state.
pub(crate) struct Server {
    shared: Arc<Shared>,
    socket: Egress,
    deferred: mpsc::UnboundedReceiver<Deferred>,
    dedup: DedupCache,
    uploads: Block1Assembler,
    observers: Observers,
    ids: MessageIds,
    junk: LogLimit,
}

impl Server {
    pub(crate) fn new(
        shared: Arc<Shared>,
        socket: Egress,
        deferred: mpsc::UnboundedReceiver<Deferred>,
    ) -> Self {
        let config = &shared.config;
        let observers = Observers::new(
            usize::try_from(config.max_observers).unwrap_or(usize::MAX),
            Duration::from_secs(config.notify_con_interval_s.into()),
        );
        let uploads = Block1Assembler::new(
            usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX),
            usize::try_from(config.max_block_transfers).unwrap_or(usize::MAX),
            UPLOAD_LIFETIME,
            DEFAULT_SZX,
        );
        Self {
            shared,
            socket,
            deferred,
            dedup: DedupCache::new(MAX_EXCHANGES, EXCHANGE_LIFETIME),
            uploads,
            observers,
            ids: MessageIds::random(&mut OsRng),
            junk: LogLimit::new("coap"),
        }
    }

    /// Serves until `stop` fires.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_535];
        let interval = Duration::from_millis(self.shared.config.notify_interval_ms.max(10).into());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let socket = self.socket.clone();
        loop {
            let out = tokio::select! {
                _ = stop.changed() => break,
                r = socket.socket().recv_from(&mut buf) => match r {
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
                _ = tick.tick() => self.on_tick(monotonic_now()),
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
        let Some(bytes) = encode(&d.response.to_packet(&d.reply, &mut self.ids)) else {
            return Vec::new();
        };
        self.dedup.complete(d.reply.peer, &d.reply.request, &bytes);
        vec![(d.reply.peer, bytes)]
    }

    fn on_tick(&mut self, now: Millis) -> Vec<Outgoing> {
        let changed: Vec<(String, Option<Repr>)> = {
            let mut core = self.shared.core();
            let dirty = std::mem::take(&mut core.dirty);
            dirty
                .into_iter()
                .map(|m| (m, m.path()))
                .filter(|(_, path)| self.observers.count(path) > 0)
                .map(|(m, path)| (path, Repr::monitor(&core, m)))
                .collect()
        };
        let mut out = Vec::new();
        for (path, repr) in changed {
            out.extend(match repr {
                Some(r) => {
                    self.observers
                        .notify(&path, now, &mut self.ids, DEFAULT_SZX, |accept| {
                            let format = if accept == Some(CONTENT_FORMAT_JSON) {
                                CONTENT_FORMAT_JSON
                            } else {
                                CONTENT_FORMAT_CBOR
                            };
                            (r.render(format == CONTENT_FORMAT_JSON), Some(format))
                        })
                }
                None => self.observers.end(
                    &path,
                    ResponseType::NotFound,
                    "monitor deleted",
                    &mut self.ids,
                ),
            });
        }
        out.extend(self.observers.poll(now));
        out.into_iter()
            .filter_map(|(peer, p)| Some((peer, encode(&p)?)))
            .collect()
    }

    fn on_datagram(&mut self, peer: SocketAddr, bytes: &[u8]) -> Vec<Outgoing> {
        let Some(p) = parse_datagram(bytes) else {
            self.junk
                .warn(peer, &"datagram is not a CoAP message: dropped");
            return Vec::new();
        };
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
        let now = monotonic_now();
        match self.dedup.check(peer, &req, now) {
            // A retransmission: the same answer again, or nothing while it is being made.
            Dedup::Replay(bytes) => return vec![(peer, bytes)],
            Dedup::InProgress => return Vec::new(),
            Dedup::New => {}
        }
        let reply = ReplyTo::new(peer, &req);
        let handled = match self.uploads.accept(peer, req, now, &mut self.ids) {
            // 2.31 Continue, or the upload's refusal.
            Assembled::Respond(p) => return self.send_reply(&reply, p),
            Assembled::Complete(whole) => match critical_option(&whole) {
                Some(r) => Handled::Now(r),
                None => self.route(peer, &whole, method, &reply, now),
            },
        };
        match handled {
            Handled::Later => Vec::new(),
            Handled::Now(response) => {
                let mut p = response.to_packet(&reply, &mut self.ids);
                if method == RequestType::Get {
                    slice_block2(&reply.request, &mut p, DEFAULT_SZX);
                }
                self.send_reply(&reply, p)
            }
        }
    }

    /// Encodes an answer, remembers it for retransmissions of the request, and sends it.
    fn send_reply(&mut self, reply: &ReplyTo, p: Packet) -> Vec<Outgoing> {
        let Some(bytes) = encode(&p) else {
            return Vec::new();
        };
        self.dedup.complete(reply.peer, &reply.request, &bytes);
        vec![(reply.peer, bytes)]
    }

    fn route(
        &mut self,
        peer: SocketAddr,
        req: &Packet,
        method: RequestType,
        reply: &ReplyTo,
        now: Millis,
    ) -> Handled {
        use RequestType::{Delete, Get, Post};
        if req.get_first_option(CoapOption::ProxyUri).is_some() {
            return match method {
                Post => self.relay_post(None, req, reply),
                _ => Handled::Now(Response::error(
                    ResponseType::MethodNotAllowed,
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
                ResponseType::MethodNotAllowed,
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
        now: Millis,
    ) -> Handled {
        let format = match accept(req, &[CONTENT_FORMAT_CBOR, CONTENT_FORMAT_JSON]) {
            Ok(f) => f,
            Err(r) => return Handled::Now(r),
        };
        let Some(repr) = Repr::monitor(&self.shared.core(), monitor) else {
            self.observers.remove(peer, req.get_token());
            return not_found();
        };
        let response = Response::content(repr.render(format == CONTENT_FORMAT_JSON), format);
        Handled::Now(
            match self.observers.on_get(peer, req, &monitor.path(), now) {
                Some(n) => response.with_uint(CoapOption::Observe, n),
                None => response,
            },
        )
    }

    /// A relay message POSTed to a storage, or to its source's storage with Proxy-Uri.
    fn relay_post(&mut self, id: Option<u32>, req: &Packet, reply: &ReplyTo) -> Handled {
        let msg = match from_request(req) {
            Ok(m) => m,
            Err(e) => {
                self.junk
                    .warn(reply.peer, &format!("relay message refused: {e}"));
                return Handled::Now(Response::error(ResponseType::BadRequest, &e.to_string()));
            }
        };
        let id = match id {
            Some(id) => id,
            None => match self.shared.core().by_source.get(&msg.header.source) {
                Some(id) => *id,
                None => {
                    return Handled::Now(Response::error(
                        ResponseType::NotFound,
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
    Handled::Now(Response::error(ResponseType::NotFound, "no such resource"))
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
        Some(f) => match u16::try_from(f).ok().filter(|f| offered.contains(f)) {
            Some(f) => Ok(f),
            None => Err(Response::error(
                ResponseType::NotAcceptable,
                "content format not offered",
            )),
        },
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
                    ResponseType::BadRequest,
                    &format!("window must be 1..={} seconds", config.max_load_window_s),
                )),
            };
        }
    }
    Ok(default)
}

/// An unknown critical option (odd number, RFC 7252 §5.4.1): answered 4.02 Bad Option.
fn critical_option(req: &Packet) -> Option<Response> {
    req.options()
        .find_map(|(n, v)| {
            (n % 2 == 1 && !KNOWN_CRITICAL.contains(n) && !v.is_empty()).then_some(*n)
        })
        .map(|n| {
            Response::error(
                ResponseType::BadOption,
                &format!("critical option {n} not supported"),
            )
        })
}
