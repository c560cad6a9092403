//! The [`Proxy`] role: the API of paper 004 §IV-B routed over the engine's [`Core`], the reads
//! answered at once, relay messages admitted, and the control calls queued (`control.rs`).

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use m2msec_store::Store;
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::{
    CONTENT_FORMAT_CBOR, CONTENT_FORMAT_LINK_FORMAT, DEFAULT_WINDOW_S, Load, Throughput,
};
use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};

use super::api::{Action, Admitted, Event, Handled, Limits, Request, Response};
use super::control::Calls;
use super::metrics::bits_per_second;
use super::records::dedup_table;
use super::resources::{CONTENT_FORMAT_JSON, Repr, resources};
use super::retention::dedup_key;
use super::state::{Core, Handles, MonitorId, Refusal};
use crate::Millis;

/// The relay proxy P of paper 004 §IV as one sans-IO role: storages, forwards, owner
/// authorisation, admission (back-pressure), positions and monitors over the engine's
/// [`Core`], its durable state behind the `Store` trait.
///
/// It does not implement [`Role`](crate::Role): the proxy serves a RESTful API over CoAP, whose
/// requests the shell must first take apart (message layer, block-wise transfer, observe) with
/// the `coap` crate, which depends on this one; and an answer may wait for a commit (a message
/// is acknowledged only once durable). It keeps the contract's shape instead: a decoded
/// [`Request`] and the time go in ([`Proxy::handle_request`]); what the shell must do comes out
/// ([`Handled`] at once, then [`Proxy::poll_action`] and [`Proxy::poll_event`]); and the shell
/// reports what it did ([`Proxy::on_committed`], [`Proxy::on_udp_bound`]). Time is the wall
/// clock in Unix milliseconds, as the owners' signed timestamps are. The store is read (replay
/// cache, dedup keys) but never written here: writes leave as [`Action::Commit`].
///
/// The shell's tasks (pumps, the writer) read and change the [`Core`] between calls, through
/// `Deref`: the proxy is its engine state plus the API.
pub struct Proxy<H: Handles = ()> {
    pub(super) core: Core<H>,
    pub(super) limits: Limits,
    pub(super) store: Arc<dyn Store>,
    pub(super) calls: Calls<H::Reply>,
    pub(super) actions: VecDeque<Action<H::Reply>>,
    pub(super) events: VecDeque<Event<H>>,
}

impl<H: Handles> core::fmt::Debug for Proxy<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Proxy")
            .field("storages", &self.core.storages.len())
            .field("forwards", &self.core.forwards.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<H: Handles> Deref for Proxy<H> {
    type Target = Core<H>;

    fn deref(&self) -> &Core<H> {
        &self.core
    }
}

impl<H: Handles> DerefMut for Proxy<H> {
    fn deref_mut(&mut self) -> &mut Core<H> {
        &mut self.core
    }
}

impl<H: Handles> Proxy<H> {
    /// An empty proxy with `limits`, reading `store`; `now` is the wall clock.
    #[must_use]
    pub fn new(limits: Limits, store: Arc<dyn Store>, now: Millis) -> Self {
        Self {
            core: Core::new(
                limits.capacity_bytes,
                limits.max_load_window_s,
                now.0 / 1000,
            ),
            limits,
            store,
            calls: Calls::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Its limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next thing to do for a control call.
    pub fn poll_action(&mut self) -> Option<Action<H::Reply>> {
        self.actions.pop_front()
    }

    /// The next change to act on or log.
    pub fn poll_event(&mut self) -> Option<Event<H>> {
        self.events.pop_front()
    }

    /// Routes one request (paper 004 §IV-B: info, load, throughput, store, storage, monitors,
    /// forward, control; RFC 6690 discovery).
    pub fn handle_request(&mut self, now: Millis, req: Request<H::Reply>) -> Handled {
        use RequestType::{Delete, Get, Post};
        if req.proxy_uri {
            return match req.method {
                Post => self.relay_post(None, req, now),
                _ => respond(Response::error(
                    ResponseType::MethodNotAllowed,
                    "Proxy-Uri takes POST",
                )),
            };
        }
        let path = req.path.clone();
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        let id = |s: &str| -> Option<u32> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (segments.as_slice(), req.method) {
            ([".well-known", "core"], Get) => {
                match accept(req.accept, &[CONTENT_FORMAT_LINK_FORMAT]) {
                    Ok(_) => Handled::Discovery {
                        resources: resources(&self.core),
                        query: req.query,
                    },
                    Err(r) => respond(r),
                }
            }
            (["info"], Get) => get(req.accept, || Some(Repr::Info(self.core.info()))),
            (["load"] | ["throughput"], Get) => {
                let window = match self.window(&req.query) {
                    Ok(w) => w,
                    Err(r) => return respond(r),
                };
                let load = segments.first() == Some(&"load");
                get(req.accept, || {
                    let metrics = &mut self.core.metrics;
                    let sum = metrics.sum(now.0 / 1000, window);
                    Some(if load {
                        Repr::Load(Load {
                            window_s: window,
                            messages_in: sum.messages_in,
                            bytes_in: sum.bytes_in,
                            messages_out: sum.messages_out,
                            bytes_out: sum.bytes_out,
                            rejected_full: sum.rejected_full,
                            cpu_percent: sum.cpu_percent(window),
                        })
                    } else {
                        // Nothing forwarded in this window: what the longest one shows.
                        let capacity = match sum.capacity_bps() {
                            0 => metrics.sum(now.0 / 1000, u32::MAX).capacity_bps(),
                            c => c,
                        };
                        Repr::Throughput(Throughput {
                            window_s: window,
                            in_bps: bits_per_second(sum.bytes_in, window),
                            out_bps: bits_per_second(sum.bytes_out, window),
                            capacity_bps: capacity,
                        })
                    })
                })
            }
            (["store"], Post) => self.store_call(req, now),
            (["forward"], Post) => self.forward_call(req, now),
            (["storage", s], Post) => match id(s) {
                Some(id) => self.relay_post(Some(id), req, now),
                None => not_found(),
            },
            (["storage", s], Delete) => match id(s) {
                Some(id) => self.delete_call(id, req, now),
                None => not_found(),
            },
            (["forward", s, "control"], Post) => match id(s) {
                Some(id) => self.control_call(id, req, now),
                None => not_found(),
            },
            (["storage", s, "monitor"], Get) => match id(s) {
                Some(id) => self.monitor(req.accept, MonitorId::Storage(id)),
                None => not_found(),
            },
            (["forward", s, "monitor"], Get) => match id(s) {
                Some(id) => self.monitor(req.accept, MonitorId::Forward(id)),
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
            ) => respond(Response::error(
                ResponseType::MethodNotAllowed,
                "method not allowed",
            )),
            _ => not_found(),
        }
    }

    /// A GET of a monitor (RFC 7641: the shell registers or ends the observation).
    fn monitor(&self, accept_option: Option<u32>, monitor: MonitorId) -> Handled {
        let format = match accept(accept_option, &[CONTENT_FORMAT_CBOR, CONTENT_FORMAT_JSON]) {
            Ok(f) => f,
            Err(r) => return respond(r),
        };
        Handled::Monitor {
            path: monitor.path(),
            response: Repr::monitor(&self.core, monitor)
                .map(|repr| Response::content(repr.render(format), format)),
        }
    }

    /// What the observers of the monitors that changed since the last call must be sent
    /// (RFC 7641 §4.2), for those monitors `observed` says someone observes: their new
    /// representation, or the end of the observation when the storage or forward is gone. A
    /// change nobody observes is dropped; a monitor that changes again before the shell asks
    /// is notified once, with its latest state.
    pub fn notifications(&mut self, observed: impl Fn(&str) -> bool) -> Vec<Notification> {
        let dirty = std::mem::take(&mut self.core.dirty);
        dirty
            .into_iter()
            .map(|m| (m, m.path()))
            .filter(|(_, path)| observed(path))
            .map(|(m, path)| match Repr::monitor(&self.core, m) {
                Some(repr) => Notification::Changed { path, repr },
                None => Notification::Ended {
                    path,
                    code: ResponseType::NotFound,
                    diagnostic: "monitor deleted",
                },
            })
            .collect()
    }

    /// `?window=S` (seconds, 1..=max_load_window_s), else the configured default.
    fn window(&self, query: &[String]) -> Result<u32, Response> {
        let limits = &self.limits;
        let default = if limits.load_window_s == 0 {
            DEFAULT_WINDOW_S
        } else {
            limits.load_window_s
        };
        for q in query {
            if let Some(v) = q.strip_prefix("window=") {
                return match v.parse::<u32>() {
                    Ok(w) if w >= 1 && w <= limits.max_load_window_s => Ok(w),
                    _ => Err(Response::error(
                        ResponseType::BadRequest,
                        &format!("window must be 1..={} seconds", limits.max_load_window_s),
                    )),
                };
            }
        }
        Ok(default)
    }

    /// A relay message POSTed to a storage, or to its source's storage with Proxy-Uri.
    fn relay_post(&mut self, id: Option<u32>, req: Request<H::Reply>, now: Millis) -> Handled {
        let msg = match req.message {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.events.push_back(Event::Junk {
                    peer: req.peer,
                    detail: format!("relay message refused: {e}"),
                });
                return respond(Response::error(ResponseType::BadRequest, &e));
            }
            None => {
                return respond(Response::error(
                    ResponseType::BadRequest,
                    "not a relay message",
                ));
            }
        };
        let id = match id {
            Some(id) => id,
            None => match self.core.by_source.get(&msg.header.source) {
                Some(id) => *id,
                None => {
                    return respond(Response::error(
                        ResponseType::NotFound,
                        "no storage for this source",
                    ));
                }
            },
        };
        match self.offer_message(id, &msg, None, now) {
            Ok(admitted) => Handled::Store(admitted),
            Err(r) => respond(r),
        }
    }

    /// Admission of `msg` (whose binary form is `raw`, when it arrived as one) into storage
    /// `id`: too large (4.13 with Size1), unknown storage (4.04), another source (4.00), or
    /// not fitting (5.03 with Max-Age, counted) — unless it is a retransmission of a message
    /// already stored, which is acknowledged (2.04) even when full.
    ///
    /// # Errors
    ///
    /// The answer, when it is not admitted.
    pub fn offer_message(
        &mut self,
        id: u32,
        msg: &RelayMessage,
        raw: Option<Vec<u8>>,
        now: Millis,
    ) -> Result<Admitted, Response> {
        let limits = &self.limits;
        let value = match raw {
            Some(v) => v,
            None => msg
                .encode()
                .map_err(|e| Response::error(ResponseType::BadRequest, &e.to_string()))?,
        };
        let max = usize::try_from(limits.max_message_bytes).unwrap_or(usize::MAX);
        if value.len() > max {
            return Err(Response::error(
                ResponseType::RequestEntityTooLarge,
                "message larger than max_message_bytes",
            )
            .with_uint(CoapOption::Size1, limits.max_message_bytes));
        }
        let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
        let key = dedup_key(&msg.header);
        match self.core.offer(id, &msg.header.source, len) {
            Ok(()) => Ok(Admitted {
                storage: id,
                key,
                value,
            }),
            Err(Refusal::UnknownStorage) => {
                Err(Response::error(ResponseType::NotFound, "no such storage"))
            }
            Err(Refusal::WrongSource) => Err(Response::error(
                ResponseType::BadRequest,
                "the message's source is not the storage's",
            )),
            Err(Refusal::Full) => {
                // A retransmission of what is already stored is acknowledged even when full.
                if matches!(self.store.get(&dedup_table(id), &key), Ok(Some(_))) {
                    self.core.count_duplicate(id);
                    return Err(Response::code(ResponseType::Changed));
                }
                self.core.count_refused(id, now.0 / 1000);
                Err(Response::unavailable(
                    self.limits.max_age_when_full_s,
                    "storage full",
                ))
            }
        }
    }

    /// A plain-UDP datagram for storage `id` (the binary header form): decoded, then admitted
    /// as [`offer_message`](Self::offer_message) does. Nobody waits for an answer, so a
    /// refusal is only what the shell logs (rate-limited), never silent.
    ///
    /// # Errors
    ///
    /// What to log, if anything ([`datagram_refused`]).
    pub fn offer_datagram(
        &mut self,
        id: u32,
        bytes: &[u8],
        now: Millis,
    ) -> Result<Admitted, Option<String>> {
        let msg = RelayMessage::decode(bytes)
            .map_err(|e| Some(format!("storage {id}: datagram refused: {e}")))?;
        self.offer_message(id, &msg, Some(bytes.to_vec()), now)
            .map_err(|r| datagram_refused(id, &r))
    }

    /// The shell could not queue an admitted message (its ingest queue is full): the
    /// reservation is returned, the refusal counted, and the answer is 5.03 with Max-Age.
    pub fn busy(&mut self, admitted: &Admitted, now: Millis) -> Response {
        let len = u64::try_from(admitted.value.len()).unwrap_or(u64::MAX);
        self.core.release(admitted.storage, len);
        self.core.count_refused(admitted.storage, now.0 / 1000);
        Response::unavailable(self.limits.max_age_when_busy_s, "busy: ingest queue full")
    }
}

/// What the shell logs when a plain-UDP datagram for storage `id` is answered `response`
/// (to nobody): nothing for a 2.04, a copy of a stored message acknowledged.
#[must_use]
pub fn datagram_refused(id: u32, response: &Response) -> Option<String> {
    let code = MessageClass::Response(response.code);
    (response.code != ResponseType::Changed).then(|| {
        format!(
            "storage {id}: datagram refused ({code}): {}",
            response.text()
        )
    })
}

/// What one monitor's observers are sent.
#[derive(Debug)]
pub enum Notification {
    /// Its new representation, in each observer's format ([`notification_format`]).
    Changed {
        /// The monitor's path, the observers' key.
        path: String,
        /// Its representation.
        repr: Repr,
    },
    /// The observation ends with this error: the monitor is gone.
    Ended {
        /// The monitor's path.
        path: String,
        /// The final response's code.
        code: ResponseType,
        /// Its diagnostic.
        diagnostic: &'static str,
    },
}

/// The Content-Format of a notification for an observer that registered with `accept`: JSON
/// when it asked for JSON, CBOR otherwise.
#[must_use]
pub fn notification_format(accept: Option<u16>) -> u16 {
    if accept == Some(CONTENT_FORMAT_JSON) {
        CONTENT_FORMAT_JSON
    } else {
        CONTENT_FORMAT_CBOR
    }
}

fn respond(r: Response) -> Handled {
    Handled::Respond(r)
}

fn not_found() -> Handled {
    respond(Response::error(ResponseType::NotFound, "no such resource"))
}

/// A GET of a CBOR/JSON representation.
fn get(accept_option: Option<u32>, repr: impl FnOnce() -> Option<Repr>) -> Handled {
    let format = match accept(accept_option, &[CONTENT_FORMAT_CBOR, CONTENT_FORMAT_JSON]) {
        Ok(f) => f,
        Err(r) => return respond(r),
    };
    match repr() {
        Some(r) => respond(Response::content(r.render(format), format)),
        None => not_found(),
    }
}

/// The Content-Format to answer in: the Accept option's if offered, else the first
/// (RFC 7252 §5.10.4: 4.06 for one not offered).
fn accept(accept: Option<u32>, offered: &[u16]) -> Result<u16, Response> {
    let first = offered.first().copied().unwrap_or(CONTENT_FORMAT_CBOR);
    match accept {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use m2msec_crypto::rng::OsRng;
    use m2msec_crypto::sig::{SigSuite, SigningKey};
    use m2msec_store::{MemoryStore, QueueStats};
    use m2msec_wire::relay::{Flags, Header};

    use super::*;
    use crate::relay::proxy::records::{StorageCounters, StorageRecord};

    const SOURCE: &str = "coap://127.0.0.1/s";

    #[test]
    fn a_datagram_is_admitted_or_refused_with_what_to_log() {
        let limits = Limits::for_tests();
        let mut p: Proxy<()> = Proxy::new(limits, Arc::new(MemoryStore::new()), Millis(0));
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap();
        let record = StorageRecord {
            id: 1,
            owner_key: String::new(),
            source: SOURCE.into(),
            capacity: 100,
            udp: true,
            udp_port: None,
        };
        let stats = QueueStats::default();
        p.install_storage(
            record,
            owner.verifying_key(),
            StorageCounters::default(),
            stats,
        );
        let msg = RelayMessage {
            header: Header {
                flags: Flags::STREAM,
                message_id: 1,
                stream_id: 2,
                key_index: 3,
                source: SOURCE.into(),
                sink: String::new(),
            },
            body: vec![7; 10],
        };
        let bytes = msg.encode().unwrap();
        let admitted = p.offer_datagram(1, &bytes, Millis(0)).unwrap();
        assert_eq!((admitted.storage, admitted.value), (1, bytes.clone()));
        let unknown = p.offer_datagram(2, &bytes, Millis(0)).unwrap_err().unwrap();
        assert_eq!(
            unknown,
            "storage 2: datagram refused (4.04): no such storage"
        );
        let junk = p
            .offer_datagram(1, b"\xff", Millis(0))
            .unwrap_err()
            .unwrap();
        assert!(junk.starts_with("storage 1: datagram refused: "), "{junk}");
        // A copy acknowledged at once is nothing to log.
        assert_eq!(
            datagram_refused(1, &Response::code(ResponseType::Changed)),
            None
        );
    }
}
