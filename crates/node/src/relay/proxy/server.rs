//! The CoAP server: one task owning the API socket. The message layer is `m2msec_coap::Server`
//! (a datagram that does not parse is dropped and logged, rate-limited; retransmitted requests
//! are answered from its cache, RFC 7252 §4.5; Block1 uploads are reassembled and GET answers
//! cut block-wise, RFC 7959); this task routes each whole request, answers what it can at
//! once, hands messages to the writer and calls that change state to their own tasks, sends
//! their answers when they come back, and notifies observers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use m2msec_coap::relay::{MAX_DATAGRAM, links, notifications, to_packet};
use m2msec_crypto::rng::OsRng;
use m2msec_protocol::Millis;
use m2msec_protocol::relay::proxy::{Action, Handled, Request, Response, Ticket};
use m2msec_wire::relay::api::CONTENT_FORMAT_LINK_FORMAT;
use m2msec_wire::relay::coap::coap_lite::{CoapOption, ResponseType};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::control;
use super::ingest;
use super::writer::Deferred;
use crate::runtime::coap::{
    self, Block1Assembler, DEFAULT_SZX, DedupCache, EXCHANGE_LIFETIME, MessageIds, Observers,
    Received, ReplyTo, monotonic_now, uint_option,
};
use crate::runtime::driver::{Egress, wall_clock};
use crate::runtime::log_limit::LogLimit;

/// Answers kept for retransmitted requests, at most (mostly the few bytes of a 2.04).
const MAX_EXCHANGES: usize = 65_536;
/// A block-wise upload that sees no block for this long is dropped.
const UPLOAD_LIFETIME: Duration = Duration::from_secs(60);

/// A datagram to send.
type Outgoing = (SocketAddr, Vec<u8>);

/// The CoAP server task's state.
pub(crate) struct Server {
    shared: Arc<Shared>,
    socket: Egress,
    deferred: mpsc::UnboundedReceiver<Deferred>,
    /// The message layer: copies, uploads, Block2, and the ids of our own messages.
    server: coap::Server,
    observers: Observers,
    junk: LogLimit,
    /// The plain-UDP socket bound for the storage being created, until it is.
    udp: Option<(Ticket, UdpSocket)>,
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
            server: coap::Server::new(
                MessageIds::random(&mut OsRng),
                DedupCache::new(MAX_EXCHANGES, EXCHANGE_LIFETIME),
                uploads,
            )
            .with_max_answer(MAX_DATAGRAM)
            .with_block2(DEFAULT_SZX),
            observers,
            junk: LogLimit::new("coap"),
            udp: None,
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
        match d {
            Deferred::Answer { reply, response } => self.answer(&reply, &response),
            Deferred::Committed(ticket, result) => {
                self.shared
                    .core()
                    .on_committed(ticket, result, wall_clock());
                self.drive()
            }
            Deferred::Bound(ticket, result) => {
                let port = result.map_err(|e| e.to_string()).map(|socket| {
                    let port = socket.local_addr().ok().map(|a| a.port());
                    self.udp = Some((ticket, socket));
                    port
                });
                self.shared.core().on_udp_bound(ticket, port, wall_clock());
                self.drive()
            }
        }
    }

    /// Does what the engine asks for its control calls: their events, commits, sockets and
    /// answers.
    fn drive(&mut self) -> Vec<Outgoing> {
        let actions: Vec<_> = {
            let mut core = self.shared.core();
            std::iter::from_fn(|| core.poll_action()).collect()
        };
        control::on_events(&self.shared, &mut self.udp, &mut self.junk);
        let mut out = Vec::new();
        for action in actions {
            match action {
                Action::Respond(reply, response) => out.extend(self.answer(&reply, &response)),
                Action::Commit { ticket, ops } => control::commit(&self.shared, ticket, ops),
                Action::BindUdp { ticket } => control::bind_udp(&self.shared, ticket),
            }
        }
        out
    }

    /// Encodes an answer (a GET's cut block-wise), remembers it for retransmissions of the
    /// request, and sends it.
    fn answer(&mut self, reply: &ReplyTo, response: &Response) -> Vec<Outgoing> {
        let p = to_packet(response, reply, self.server.ids());
        self.server
            .answer(reply, p)
            .map(|bytes| vec![(reply.peer, bytes)])
            .unwrap_or_default()
    }

    /// The notifications of the monitors that changed, and the retransmissions due.
    fn on_tick(&mut self, now: Millis) -> Vec<Outgoing> {
        let observers = &self.observers;
        let changed = self
            .shared
            .core()
            .notifications(|path| observers.count(path) > 0);
        notifications(&mut self.observers, changed, now, self.server.ids())
    }

    fn on_datagram(&mut self, peer: SocketAddr, bytes: &[u8]) -> Vec<Outgoing> {
        let now = monotonic_now();
        match self.server.receive(peer, bytes, now) {
            Received::Request(r) => self.on_request(peer, r, now),
            // A copy's cached answer, an upload's 2.31 Continue or refusal, or a Reset.
            Received::Reply(bytes) => vec![(peer, bytes)],
            Received::Ack(id) => {
                self.observers.on_ack(peer, id);
                Vec::new()
            }
            Received::Reset(id) => {
                self.observers.on_reset(peer, id);
                Vec::new()
            }
            Received::Nothing => Vec::new(),
            Received::Junk => {
                self.junk
                    .warn(peer, &"datagram is not a CoAP message: dropped");
                Vec::new()
            }
        }
    }

    fn on_request(
        &mut self,
        peer: SocketAddr,
        r: m2msec_coap::Request,
        now: Millis,
    ) -> Vec<Outgoing> {
        let Some(response) = self.route(peer, &r, now) else {
            return self.drive();
        };
        let mut out = self.answer(&r.reply, &response);
        out.extend(self.drive());
        out
    }

    /// Has the engine route the request; `None` when the answer comes later (the writer's, or
    /// a control call's).
    fn route(
        &mut self,
        peer: SocketAddr,
        r: &m2msec_coap::Request,
        now: Millis,
    ) -> Option<Response> {
        let (req, reply) = (&r.whole, &r.reply);
        let accept = uint_option(req, CoapOption::Accept);
        let request = match Request::from_packet(peer, req, r.method, accept, reply.clone()) {
            Ok(request) => request,
            Err(refused) => return Some(refused),
        };
        let handled = self.shared.core().handle_request(wall_clock(), request);
        match handled {
            Handled::Respond(r) => Some(r),
            Handled::Later => None,
            Handled::Discovery { resources, query } => Some(Response::content(
                links(&resources, &query).into_bytes(),
                CONTENT_FORMAT_LINK_FORMAT,
            )),
            Handled::Monitor { path, response } => match response {
                None => {
                    self.observers.remove(peer, req.get_token());
                    Some(Response::error(ResponseType::NotFound, "no such resource"))
                }
                Some(r) => Some(match self.observers.on_get(peer, req, &path, now) {
                    Some(n) => r.with_uint(CoapOption::Observe, n),
                    None => r,
                }),
            },
            Handled::Store(admitted) => ingest::queue(&self.shared, admitted, Some(reply.clone())),
        }
    }
}
