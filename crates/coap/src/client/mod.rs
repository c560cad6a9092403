//! A CoAP client as a sans-IO engine: requests in, datagrams and timers out, events back.
//!
//! The shell that drives it (a tokio task in `m2msec-node`, a test with virtual time) feeds
//! every datagram to [`Client::handle_datagram`], calls [`Client::handle_timeout`] when
//! [`Client::poll_timeout`] says so, and drains [`Client::poll_transmit`] and
//! [`Client::poll_event`] after each call — the shape of quinn-proto and of the protocol
//! crate's `Endpoint`. Everything RFC 7252, RFC 7959 and RFC 7641 ask of a client happens
//! inside: CON retransmission with exponential back-off (RFC 7252 §4.2, §4.8), an empty ACK
//! followed by a separate response (§5.2.2), NSTART (§4.7), Block1 uploads and Block2
//! downloads (RFC 7959 §2), observations whose notifications come out fresh and in order
//! (RFC 7641 §3.4) and whole (RFC 7959 §3.4).

mod transfer;

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_protocol::{Millis, Transmit};
use m2msec_wire::relay::coap as mapping;
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType,
};

use crate::dedup::RecentSet;
use crate::error::{Error, Result};
use crate::observe::{OBSERVE_MASK, fresher};
use crate::options::{
    BlockOpt, code_string, encode, is_success, new_request, observe_value, parse_datagram,
    set_uint_option,
};
use crate::params::{Config, EXCHANGE_LIFETIME, MAX_TOKEN};
use transfer::{Step, Transfer};

/// Notifications of one observation waiting while an earlier one is completed block-wise; past
/// this the newest are dropped (newer ones will follow).
const NOTIFICATION_QUEUE: usize = 16;
/// CON responses remembered as acknowledged, so that a copy gets the ACK again.
const ACKED_REMEMBERED: usize = 1024;

/// Names a request (and, for [`Client::observe`], the observation it registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// What the client tells its driver.
#[derive(Debug)]
pub enum Event {
    /// A request completed: the response holds the whole payload (error codes included).
    Response {
        /// The request.
        request: RequestId,
        /// Its response.
        response: Packet,
    },
    /// A request failed: no acknowledgement, no response, a Reset, a block-wise error…
    Failed {
        /// The request.
        request: RequestId,
        /// Why.
        error: Error,
    },
    /// A notification of an observation, newer than every one before it (RFC 7641 §3.4) and
    /// with its whole payload, or the error that stopped it being completed block-wise.
    Notification {
        /// The observation ([`Client::observe`]'s id).
        observation: RequestId,
        /// The notification.
        notification: Result<Packet>,
    },
    /// The server ended the observation (a final response, RFC 7641 §3.2); nothing follows.
    ObservationEnded {
        /// The observation.
        observation: RequestId,
    },
}

/// Why a request was made, which decides what its outcome becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The caller's: its outcome is [`Event::Response`] or [`Event::Failed`].
    Caller,
    /// The GET with Observe = 0 of the observation with the same id.
    Registration,
    /// The rest of a notification sent block-wise.
    Completion { observation: RequestId },
}

/// One request, from submission to outcome.
struct Request {
    peer: SocketAddr,
    purpose: Purpose,
    transfer: Transfer,
    /// The message on the wire now.
    exchange: Option<Exchange>,
}

/// One message exchange (RFC 7252 §4): a message id, a token, and what is awaited.
struct Exchange {
    mid: u16,
    token: Vec<u8>,
    bytes: Vec<u8>,
    wait: Wait,
}

enum Wait {
    /// A CON not acknowledged yet: retransmitted at `deadline`, up to MAX_RETRANSMIT times.
    Ack {
        transmissions: u32,
        timeout: Duration,
        deadline: Millis,
    },
    /// Acknowledged (or sent NON): the response must come by `deadline`.
    Response { deadline: Millis },
}

impl Wait {
    fn deadline(&self) -> Millis {
        match self {
            Self::Ack { deadline, .. } | Self::Response { deadline } => *deadline,
        }
    }
}

/// Requests towards one server: those holding one of its NSTART slots, and those waiting.
#[derive(Default)]
struct PeerSlots {
    active: usize,
    /// Each with the first message it will send.
    queue: VecDeque<(RequestId, Request, Packet)>,
}

/// Where an incoming response goes.
enum Route {
    /// To the request whose exchange has its token.
    Exchange(RequestId),
    /// To the observation registered with its token.
    Observation(RequestId),
}

/// A registration as observer of one resource (RFC 7641 §3).
struct Observation {
    peer: SocketAddr,
    token: Vec<u8>,
    path: String,
    /// Sequence number and arrival time of the newest notification accepted.
    last: Option<(u32, Millis)>,
    /// Accepted notifications not handed out yet, oldest first.
    pending: VecDeque<Packet>,
    /// The request completing the oldest pending notification block-wise.
    completing: Option<RequestId>,
    /// The server ended the observation: after `pending`, nothing more.
    ending: bool,
}

/// A CoAP client: any number of concurrent requests and observations towards any servers.
pub struct Client {
    config: Config,
    next_mid: u16,
    next_request: u64,
    /// Requests holding an NSTART slot.
    active: HashMap<RequestId, Request>,
    peers: HashMap<SocketAddr, PeerSlots>,
    by_mid: HashMap<(SocketAddr, u16), RequestId>,
    by_token: HashMap<(SocketAddr, Vec<u8>), RequestId>,
    /// Live observations by (server, token); an ended one stays in `observation` until its
    /// pending notifications are out.
    observing: HashMap<(SocketAddr, Vec<u8>), RequestId>,
    observations: HashMap<RequestId, Observation>,
    /// CON responses this client acknowledged: a retransmitted copy (our ACK was lost) gets
    /// the ACK again instead of a Reset.
    acked: RecentSet<(SocketAddr, u16)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("active", &self.active.len())
            .field("observations", &self.observations.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `config`; its first message id is drawn from `rng` (RFC 7252 §4.4).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a config with `nstart` 0 or a block size exponent above 6.
    pub fn new(config: Config, rng: &mut dyn CryptoRng) -> Result<Self> {
        config.check()?;
        Ok(Self {
            config,
            next_mid: u16::from_be_bytes(random_array(rng)),
            next_request: 0,
            active: HashMap::new(),
            peers: HashMap::new(),
            by_mid: HashMap::new(),
            by_token: HashMap::new(),
            observing: HashMap::new(),
            observations: HashMap::new(),
            acked: RecentSet::new(ACKED_REMEMBERED, EXCHANGE_LIFETIME),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// The client's settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sends `req` to `peer`; its outcome comes as [`Event::Response`] or [`Event::Failed`].
    ///
    /// The request's type (CON or NON), code, options and payload are kept; its message id is
    /// assigned here, and so is a random 8-byte token when it has none (a relay POST carries
    /// the relay message id as token). A payload above the block size goes Block1, a
    /// response announcing more Block2 blocks is fetched to the end (GET and FETCH only).
    /// Error responses (4.xx, 5.xx) are responses, not failures. At most `nstart` requests
    /// towards one server are in flight; the others wait their turn in order.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a message that is not a CON or NON request or has a token
    /// over 8 bytes, [`Error::TooLarge`] for a body over `max_body`. Later failures
    /// ([`Error::Timeout`], [`Error::TokenInUse`], [`Error::Encode`]…) come as events.
    pub fn request(
        &mut self,
        now: Millis,
        peer: SocketAddr,
        req: Packet,
        rng: &mut dyn CryptoRng,
    ) -> Result<RequestId> {
        let id = self.new_id();
        self.submit(now, id, peer, req, Purpose::Caller, rng)?;
        Ok(id)
    }

    /// Registers as an observer of `path` (RFC 7641 §3.1). The registration's response comes
    /// as [`Event::Response`] (or [`Event::Failed`], [`Error::Status`] for a non-2.xx); the
    /// notifications after it as [`Event::Notification`] with the same id. A response without
    /// Observe means the server will not notify: [`Event::ObservationEnded`] follows it.
    ///
    /// # Errors
    /// [`Error::Wire`] when `path` does not map onto Uri-Path options.
    pub fn observe(
        &mut self,
        now: Millis,
        peer: SocketAddr,
        path: &str,
        rng: &mut dyn CryptoRng,
    ) -> Result<RequestId> {
        let token = random_token(rng);
        let mut req = new_request(RequestType::Get, path, true)?;
        req.set_token(token.clone());
        set_uint_option(&mut req, CoapOption::Observe, 0);
        let id = self.new_id();
        // Registered before the request starts, so that an outcome at once finds it.
        self.observing.insert((peer, token.clone()), id);
        self.observations.insert(
            id,
            Observation {
                peer,
                token,
                path: path.to_owned(),
                last: None,
                pending: VecDeque::new(),
                completing: None,
                ending: false,
            },
        );
        if let Err(e) = self.submit(now, id, peer, req, Purpose::Registration, rng) {
            self.drop_observation(id);
            return Err(e);
        }
        Ok(id)
    }

    /// The token of observation `id`: a GET with it and Observe = 1 deregisters explicitly
    /// (RFC 7641 §3.6).
    #[must_use]
    pub fn observation_token(&self, id: RequestId) -> Option<&[u8]> {
        self.observations.get(&id).map(|o| o.token.as_slice())
    }

    /// Forgets observation `id` at once (its registration request too, if still running);
    /// the server learns it from the Reset its next notification gets (RFC 7641 §3.6).
    pub fn forget_observation(&mut self, now: Millis, id: RequestId, rng: &mut dyn CryptoRng) {
        if let Some(o) = self.observations.remove(&id) {
            self.observing.remove(&(o.peer, o.token));
            if let Some(completing) = o.completing {
                self.cancel(now, completing, rng);
            }
        }
        self.cancel(now, id, rng);
    }

    /// Abandons request `id` without an event (its caller went away); a request waiting for
    /// its turn leaves the queue, one in flight frees its slot for the next.
    pub fn cancel(&mut self, now: Millis, id: RequestId, rng: &mut dyn CryptoRng) {
        if let Some(request) = self.active.remove(&id) {
            self.unregister(request.peer, request.exchange.as_ref());
            self.release_slot(now, request.peer, rng);
            return;
        }
        for slots in self.peers.values_mut() {
            slots.queue.retain(|(queued, ..)| *queued != id);
        }
    }

    /// Fails the request whose datagram `unsent` could not be sent, with `error`: the shell's
    /// way to report a send error. Only that request fails: the other requests towards the same
    /// peer (whose datagrams may not even have been tried yet) go on, and a datagram that is
    /// not one of this client's requests (an ACK, a Reset, a stale copy) fails nothing.
    pub fn fail_transmit(
        &mut self,
        now: Millis,
        unsent: &Transmit,
        error: Error,
        rng: &mut dyn CryptoRng,
    ) {
        // RFC 7252 §3: the code in byte 1 (a request is class 0 and not 0.00, Empty), the
        // message id in bytes 2 and 3.
        let [_, code, high, low, ..] = unsent.payload[..] else {
            return;
        };
        if code == 0 || code >> 5 != 0 {
            return;
        }
        let mid = u16::from_be_bytes([high, low]);
        let Some(&id) = self.by_mid.get(&(unsent.destination, mid)) else {
            return;
        };
        if let Some(request) = self.active.remove(&id) {
            self.finish(now, id, request, Err(error), rng);
        }
    }

    /// One NON message whose responses do not matter (a response that comes anyway is
    /// answered with a Reset, RFC 7252 §4.3): its message id assigned, encoded.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a CON message or a token over 8 bytes, [`Error::Encode`].
    pub fn encode_non(&mut self, mut packet: Packet) -> Result<Vec<u8>> {
        if packet.header.get_type() != MessageType::NonConfirmable {
            return Err(Error::InvalidRequest("send_non sends NON messages only"));
        }
        if packet.get_token().len() > MAX_TOKEN {
            return Err(Error::InvalidRequest("token longer than 8 bytes"));
        }
        packet.header.message_id = self.next_mid();
        encode(&packet, self.config.max_datagram)
    }

    /// As [`Client::encode_non`], queued for [`Client::poll_transmit`].
    ///
    /// # Errors
    /// As [`Client::encode_non`].
    pub fn send_non(&mut self, peer: SocketAddr, packet: Packet) -> Result<()> {
        let payload = self.encode_non(packet)?;
        self.transmit_bytes(peer, payload);
        Ok(())
    }

    /// Processes one datagram from `from`. What is not CoAP, or not for this client, is
    /// ignored or answered with a Reset (RFC 7252 §4.2, §4.3); it never fails.
    pub fn handle_datagram(
        &mut self,
        now: Millis,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn CryptoRng,
    ) {
        let Some(packet) = parse_datagram(datagram) else {
            return;
        };
        let mid = packet.header.message_id;
        match packet.header.get_type() {
            MessageType::Acknowledgement | MessageType::Reset => {
                // Nothing waits for a late ACK of an exchange that is over, or a Reset of a
                // fire-and-forget NON: those are dropped.
                let Some(id) = self.by_mid.get(&(from, mid)).copied() else {
                    return;
                };
                if packet.header.get_type() == MessageType::Reset {
                    if let Some(request) = self.active.remove(&id) {
                        self.finish(now, id, request, Err(Error::Reset { peer: from }), rng);
                    }
                } else {
                    self.on_ack(now, id, packet, rng);
                }
            }
            MessageType::Confirmable | MessageType::NonConfirmable => {
                let con = packet.header.get_type() == MessageType::Confirmable;
                if !matches!(packet.header.code, MessageClass::Response(_)) {
                    // RFC 7252 §4.3: a client serves nothing: requests and CoAP pings get a
                    // Reset.
                    if con {
                        self.transmit(from, mapping::reset(&packet));
                    }
                    return;
                }
                // RFC 7252 §4.5: a copy of a CON we acknowledged gets the ACK again and goes
                // no further (our ACK was lost; the response was already taken).
                if con && self.acked.contains(&(from, mid), now) {
                    self.transmit(from, mapping::empty_ack(&packet));
                    return;
                }
                let key = (from, packet.get_token().to_vec());
                let route = match (self.by_token.get(&key), self.observing.get(&key)) {
                    (Some(request), _) => Route::Exchange(*request),
                    (None, Some(observation)) => Route::Observation(*observation),
                    // Nobody waits for it: RFC 7252 §5.3.2 / RFC 7641 §3.6 — reject, which
                    // also ends an observation we no longer want.
                    (None, None) => return self.transmit(from, mapping::reset(&packet)),
                };
                if con {
                    // RFC 7252 §5.2.2: a CON separate response (or notification) is
                    // acknowledged.
                    self.transmit(from, mapping::empty_ack(&packet));
                    self.acked.insert((from, mid), now);
                }
                match route {
                    Route::Exchange(request) => self.exchange_done(now, request, packet, rng),
                    Route::Observation(observation) => {
                        self.on_notification(now, observation, packet, rng);
                    }
                }
            }
        }
    }

    /// Time has reached `now`: retransmissions due go out, exchanges past their last wait fail.
    pub fn handle_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        let due: Vec<RequestId> = self
            .active
            .iter()
            .filter(|(_, r)| {
                r.exchange
                    .as_ref()
                    .is_some_and(|e| e.wait.deadline() <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(mut request) = self.active.remove(&id) else {
                continue;
            };
            let peer = request.peer;
            let Some(exchange) = request.exchange.as_mut() else {
                self.active.insert(id, request);
                continue;
            };
            match &mut exchange.wait {
                Wait::Ack {
                    transmissions,
                    timeout,
                    deadline,
                } => {
                    // RFC 7252 §4.2: give up after MAX_RETRANSMIT retransmissions.
                    if *transmissions > self.config.max_retransmit {
                        let transmissions = *transmissions;
                        self.finish(
                            now,
                            id,
                            request,
                            Err(Error::Timeout {
                                peer,
                                transmissions,
                            }),
                            rng,
                        );
                        continue;
                    }
                    // RFC 7252 §4.2: retransmit, doubling the timeout each time.
                    *transmissions += 1;
                    *timeout = timeout.saturating_mul(2);
                    *deadline = now.after(*timeout);
                    let bytes = exchange.bytes.clone();
                    self.transmit_bytes(peer, bytes);
                    self.active.insert(id, request);
                }
                Wait::Response { .. } => {
                    let after = self.config.response_timeout;
                    self.finish(
                        now,
                        id,
                        request,
                        Err(Error::NoResponse { peer, after }),
                        rng,
                    );
                }
            }
        }
    }

    /// When [`Client::handle_timeout`] must be called next, if anything waits.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.active
            .values()
            .filter_map(|r| r.exchange.as_ref().map(|e| e.wait.deadline()))
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn submit(
        &mut self,
        now: Millis,
        id: RequestId,
        peer: SocketAddr,
        mut req: Packet,
        purpose: Purpose,
        rng: &mut dyn CryptoRng,
    ) -> Result<()> {
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
            req.set_token(random_token(rng));
        }
        if req.payload.len() > self.config.max_body {
            return Err(Error::TooLarge {
                size: req.payload.len(),
                max: self.config.max_body,
            });
        }
        let (transfer, first) = Transfer::start(req, &self.config)?;
        let request = Request {
            peer,
            purpose,
            transfer,
            exchange: None,
        };
        self.enqueue(now, id, request, first, rng);
        Ok(())
    }

    fn new_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request = self.next_request.wrapping_add(1);
        id
    }

    /// RFC 7252 §4.7 NSTART: the request starts now if `peer` has a free slot, else waits.
    fn enqueue(
        &mut self,
        now: Millis,
        id: RequestId,
        request: Request,
        first: Packet,
        rng: &mut dyn CryptoRng,
    ) {
        let peer = request.peer;
        self.peers
            .entry(peer)
            .or_default()
            .queue
            .push_back((id, request, first));
        self.fill_slots(now, peer, rng);
    }

    fn release_slot(&mut self, now: Millis, peer: SocketAddr, rng: &mut dyn CryptoRng) {
        if let Some(slots) = self.peers.get_mut(&peer) {
            slots.active = slots.active.saturating_sub(1);
        }
        self.fill_slots(now, peer, rng);
    }

    /// Starts waiting requests towards `peer` while it has free slots; forgets an idle peer.
    fn fill_slots(&mut self, now: Millis, peer: SocketAddr, rng: &mut dyn CryptoRng) {
        loop {
            let Some(slots) = self.peers.get_mut(&peer) else {
                return;
            };
            if slots.active >= self.config.nstart {
                return;
            }
            let Some((id, mut request, first)) = slots.queue.pop_front() else {
                if slots.active == 0 {
                    self.peers.remove(&peer);
                }
                return;
            };
            slots.active += 1;
            if let Err(e) = self.start_exchange(now, &mut request, first, rng) {
                // Its slot is given back here rather than by `finish`, so that this loop, not
                // a recursion, starts the next one.
                if let Some(slots) = self.peers.get_mut(&peer) {
                    slots.active = slots.active.saturating_sub(1);
                }
                self.conclude(now, id, request.peer, request.purpose, Err(e), rng);
                continue;
            }
            self.register(peer, id, &request);
            self.active.insert(id, request);
        }
    }

    /// Puts `packet` on the wire as a new exchange of `request`.
    fn start_exchange(
        &mut self,
        now: Millis,
        request: &mut Request,
        mut packet: Packet,
        rng: &mut dyn CryptoRng,
    ) -> Result<()> {
        let peer = request.peer;
        let mid = self.next_mid();
        packet.header.message_id = mid;
        let bytes = encode(&packet, self.config.max_datagram)?;
        let token = packet.get_token().to_vec();
        if self.by_token.contains_key(&(peer, token.clone())) {
            return Err(Error::TokenInUse { peer });
        }
        let wait = if packet.header.get_type() == MessageType::Confirmable {
            let timeout = self.initial_timeout(rng);
            Wait::Ack {
                transmissions: 1,
                timeout,
                deadline: now.after(timeout),
            }
        } else {
            Wait::Response {
                deadline: now.after(self.config.response_timeout),
            }
        };
        self.transmit_bytes(peer, bytes.clone());
        request.exchange = Some(Exchange {
            mid,
            token,
            bytes,
            wait,
        });
        Ok(())
    }

    fn register(&mut self, peer: SocketAddr, id: RequestId, request: &Request) {
        if let Some(e) = &request.exchange {
            self.by_mid.insert((peer, e.mid), id);
            self.by_token.insert((peer, e.token.clone()), id);
        }
    }

    fn unregister(&mut self, peer: SocketAddr, exchange: Option<&Exchange>) {
        if let Some(e) = exchange {
            self.by_mid.remove(&(peer, e.mid));
            self.by_token.remove(&(peer, e.token.clone()));
        }
    }

    /// An ACK to request `id`'s exchange: empty (a separate response will follow, RFC 7252
    /// §5.2.2) or carrying the response.
    fn on_ack(&mut self, now: Millis, id: RequestId, ack: Packet, rng: &mut dyn CryptoRng) {
        let response_timeout = self.config.response_timeout;
        let Some(exchange) = self.active.get_mut(&id).and_then(|r| r.exchange.as_mut()) else {
            return;
        };
        if ack.header.code == MessageClass::Empty {
            if matches!(exchange.wait, Wait::Ack { .. }) {
                exchange.wait = Wait::Response {
                    deadline: now.after(response_timeout),
                };
            }
            return;
        }
        // RFC 7252 §5.3.2: a piggy-backed response matches by message id AND token.
        if ack.get_token() == exchange.token.as_slice() {
            self.exchange_done(now, id, ack, rng);
        }
    }

    /// The response to request `id`'s exchange: the request goes on or is over.
    fn exchange_done(
        &mut self,
        now: Millis,
        id: RequestId,
        response: Packet,
        rng: &mut dyn CryptoRng,
    ) {
        let Some(mut request) = self.active.remove(&id) else {
            return;
        };
        let peer = request.peer;
        self.unregister(peer, request.exchange.take().as_ref());
        let step = request
            .transfer
            .on_response(peer, response, &self.config, rng);
        match step {
            Ok(Step::Send(next)) => match self.start_exchange(now, &mut request, next, rng) {
                Ok(()) => {
                    self.register(peer, id, &request);
                    self.active.insert(id, request);
                }
                Err(e) => self.finish(now, id, request, Err(e), rng),
            },
            Ok(Step::Done(whole)) => self.finish(now, id, request, Ok(whole), rng),
            Err(e) => self.finish(now, id, request, Err(e), rng),
        }
    }

    /// Request `id` (already out of `active`) is over: its slot is freed, its outcome told.
    fn finish(
        &mut self,
        now: Millis,
        id: RequestId,
        request: Request,
        outcome: Result<Packet>,
        rng: &mut dyn CryptoRng,
    ) {
        self.unregister(request.peer, request.exchange.as_ref());
        self.conclude(now, id, request.peer, request.purpose, outcome, rng);
        self.release_slot(now, request.peer, rng);
    }

    /// Turns a request's outcome into events, by purpose.
    fn conclude(
        &mut self,
        now: Millis,
        id: RequestId,
        peer: SocketAddr,
        purpose: Purpose,
        outcome: Result<Packet>,
        rng: &mut dyn CryptoRng,
    ) {
        match purpose {
            Purpose::Caller => self.events.push_back(match outcome {
                Ok(response) => Event::Response {
                    request: id,
                    response,
                },
                Err(error) => Event::Failed { request: id, error },
            }),
            Purpose::Registration => self.registered(now, id, peer, outcome),
            Purpose::Completion { observation } => {
                if let Some(o) = self.observations.get_mut(&observation) {
                    o.completing = None;
                    self.events.push_back(Event::Notification {
                        observation,
                        notification: outcome,
                    });
                    self.pump(now, observation, rng);
                }
            }
        }
    }

    /// The outcome of observation `id`'s registration (RFC 7641 §3.1).
    fn registered(
        &mut self,
        now: Millis,
        id: RequestId,
        peer: SocketAddr,
        outcome: Result<Packet>,
    ) {
        match outcome {
            Ok(first) if is_success(&first) => {
                let observe = observe_value(&first);
                self.events.push_back(Event::Response {
                    request: id,
                    response: first,
                });
                match (observe, self.observations.get_mut(&id)) {
                    (Some(v), Some(o)) => o.last = Some((v & OBSERVE_MASK, now)),
                    // No Observe: the server will not notify (RFC 7641 §3.1).
                    _ => self.end_observation(id),
                }
            }
            Ok(refused) => {
                self.drop_observation(id);
                self.events.push_back(Event::Failed {
                    request: id,
                    error: Error::Status {
                        peer,
                        code: code_string(&refused),
                    },
                });
            }
            Err(error) => {
                self.drop_observation(id);
                self.events.push_back(Event::Failed { request: id, error });
            }
        }
    }

    /// A notification of observation `id` (already acknowledged if CON).
    fn on_notification(
        &mut self,
        now: Millis,
        id: RequestId,
        notification: Packet,
        rng: &mut dyn CryptoRng,
    ) {
        let Some(o) = self.observations.get_mut(&id) else {
            return;
        };
        match observe_value(&notification) {
            Some(v) => {
                let v = v & OBSERVE_MASK;
                // RFC 7641 §3.4: a notification older than one already accepted is dropped.
                if let Some((last, at)) = o.last
                    && !fresher(last, at, v, now)
                {
                    return;
                }
                o.last = Some((v, now));
            }
            // RFC 7641 §3.2: a response without Observe ends the observation.
            None => o.ending = true,
        }
        if !is_success(&notification) {
            o.ending = true;
        }
        if o.ending {
            self.observing.remove(&(o.peer, o.token.clone()));
        }
        if o.pending.len() >= NOTIFICATION_QUEUE && !o.ending {
            return;
        }
        o.pending.push_back(notification);
        self.pump(now, id, rng);
    }

    /// Hands out observation `id`'s pending notifications in order, completing block-wise ones
    /// first (RFC 7959 §3.4); ends the observation once the last is out.
    fn pump(&mut self, now: Millis, id: RequestId, rng: &mut dyn CryptoRng) {
        loop {
            let Some(o) = self.observations.get_mut(&id) else {
                return;
            };
            if o.completing.is_some() {
                return;
            }
            let Some(notification) = o.pending.pop_front() else {
                if o.ending {
                    self.end_observation(id);
                }
                return;
            };
            let (peer, path) = (o.peer, o.path.clone());
            let more = is_success(&notification)
                && BlockOpt::of(&notification, CoapOption::Block2)
                    .ok()
                    .flatten()
                    .is_some_and(|b| b.more);
            if !more {
                self.events.push_back(Event::Notification {
                    observation: id,
                    notification: Ok(notification),
                });
                continue;
            }
            let started = new_request(RequestType::Get, &path, true).and_then(|template| {
                Transfer::complete(peer, template, notification, &self.config, rng)
            });
            match started {
                Ok((transfer, Step::Send(first))) => {
                    let completion = self.new_id();
                    if let Some(o) = self.observations.get_mut(&id) {
                        o.completing = Some(completion);
                    }
                    let request = Request {
                        peer,
                        purpose: Purpose::Completion { observation: id },
                        transfer,
                        exchange: None,
                    };
                    self.enqueue(now, completion, request, first, rng);
                }
                Ok((_, Step::Done(whole))) => self.events.push_back(Event::Notification {
                    observation: id,
                    notification: Ok(whole),
                }),
                Err(e) => self.events.push_back(Event::Notification {
                    observation: id,
                    notification: Err(e),
                }),
            }
        }
    }

    /// The server ended observation `id`: forgotten, and said so.
    fn end_observation(&mut self, id: RequestId) {
        if self.drop_observation(id) {
            self.events
                .push_back(Event::ObservationEnded { observation: id });
        }
    }

    fn drop_observation(&mut self, id: RequestId) -> bool {
        match self.observations.remove(&id) {
            Some(o) => {
                self.observing.remove(&(o.peer, o.token));
                true
            }
            None => false,
        }
    }

    fn next_mid(&mut self) -> u16 {
        let mid = self.next_mid;
        self.next_mid = mid.wrapping_add(1);
        mid
    }

    /// RFC 7252 §4.2: the first timeout is uniform in [ACK_TIMEOUT, ACK_TIMEOUT ×
    /// ACK_RANDOM_FACTOR].
    fn initial_timeout(&self, rng: &mut dyn CryptoRng) -> Duration {
        let r = f64::from(u32::from_be_bytes(random_array(rng))) / f64::from(u32::MAX);
        let factor = 1.0 + (self.config.ack_random_factor - 1.0).max(0.0) * r;
        Duration::try_from_secs_f64(self.config.ack_timeout.as_secs_f64() * factor)
            .unwrap_or(self.config.ack_timeout)
    }

    fn transmit(&mut self, to: SocketAddr, packet: Packet) {
        if let Ok(bytes) = encode(&packet, self.config.max_datagram) {
            self.transmit_bytes(to, bytes);
        }
    }

    fn transmit_bytes(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            destination,
            payload,
        });
    }
}

/// A random token of the longest length RFC 7252 §5.3.1 allows, hard to guess off-path.
pub(crate) fn random_token(rng: &mut dyn CryptoRng) -> Vec<u8> {
    random_array::<MAX_TOKEN>(rng).to_vec()
}
