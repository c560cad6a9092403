//! Admission of relay messages, from CoAP and from the plain-UDP sockets, into the writer's
//! bounded queue — and the plain-UDP ingestion sockets themselves.
//!
//! Admission decides at once, without waiting on anything: a message that is too large, from
//! another source than the storage's, or for an unknown storage is refused (4.13, 4.00, 4.04);
//! one that does not fit the storage's or the proxy's capacity is answered 5.03 with Max-Age
//! `max_age_when_full_s` (unless it is a retransmission of a message already stored, which is
//! acknowledged); and when the ingest queue itself is full, 5.03 with Max-Age
//! `max_age_when_busy_s`. Memory therefore stays bounded under a flood: at most `ingest_queue`
//! messages of at most `max_message_bytes` wait, everything else is refused and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_wire::relay::RelayMessage;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;

use super::Shared;
use super::coap_msg::{ReplyTo, Response, show};
use super::records::dedup_table;
use super::state::Refusal;
use super::writer::{Ingest, dedup_key, now_s};
use m2msec_wire::relay::coap::coap_lite::CoapOption;
use m2msec_wire::relay::coap::coap_lite::ResponseType;

/// The result of offering a message.
#[derive(Debug)]
pub(crate) enum Submitted {
    /// Queued: the writer answers once it is durable.
    Queued,
    /// Answered at once (refused, or a known duplicate acknowledged).
    Now(Response),
}

/// Offers `msg` (whose binary form is `raw`, when it arrived as one) for storage `id`.
pub(crate) fn submit(
    shared: &Shared,
    id: u32,
    msg: &RelayMessage,
    raw: Option<Vec<u8>>,
    reply: Option<ReplyTo>,
) -> Submitted {
    let config = &shared.config;
    let value = match raw {
        Some(v) => v,
        None => match msg.encode() {
            Ok(v) => v,
            Err(e) => {
                return Submitted::Now(Response::error(ResponseType::BadRequest, &e.to_string()));
            }
        },
    };
    let max = usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX);
    if value.len() > max {
        return Submitted::Now(
            Response::error(
                ResponseType::RequestEntityTooLarge,
                "message larger than max_message_bytes",
            )
            .with_uint(CoapOption::Size1, config.max_message_bytes),
        );
    }
    let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
    let key = dedup_key(&msg.header);
    let now = now_s();
    let admitted = shared.core().offer(id, &msg.header.source, len);
    match admitted {
        Ok(()) => {}
        Err(Refusal::UnknownStorage) => {
            return Submitted::Now(Response::error(ResponseType::NotFound, "no such storage"));
        }
        Err(Refusal::WrongSource) => {
            return Submitted::Now(Response::error(
                ResponseType::BadRequest,
                "the message's source is not the storage's",
            ));
        }
        Err(Refusal::Full) => {
            // A retransmission of what is already stored is acknowledged even when full.
            if matches!(shared.store.get(&dedup_table(id), &key), Ok(Some(_))) {
                shared.core().count_duplicate(id);
                return Submitted::Now(Response::code(ResponseType::Changed));
            }
            shared.core().count_refused(id, now);
            return Submitted::Now(Response::unavailable(
                config.max_age_when_full_s,
                "storage full",
            ));
        }
    }
    let item = Ingest {
        storage: id,
        key,
        value,
        reply,
    };
    match shared.ingest.try_send(item) {
        Ok(()) => Submitted::Queued,
        Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
            let mut core = shared.core();
            core.release(id, len);
            core.count_refused(id, now);
            Submitted::Now(Response::unavailable(
                config.max_age_when_busy_s,
                "busy: ingest queue full",
            ))
        }
    }
}

/// At most this many warnings per second about one kind of bad input; the rest are counted and
/// summarised.
const WARNINGS_PER_SECOND: u32 = 5;

/// Rate-limited warnings for input from the network (junk must not flood the log).
#[derive(Debug)]
pub(crate) struct LogLimit {
    what: &'static str,
    window: Instant,
    count: u32,
    suppressed: u64,
}

impl LogLimit {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            window: Instant::now(),
            count: 0,
            suppressed: 0,
        }
    }

    /// Logs `detail` about `peer` unless this second's budget is spent.
    pub(crate) fn warn(&mut self, peer: SocketAddr, detail: &dyn std::fmt::Display) {
        let now = Instant::now();
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(
                    what = self.what,
                    suppressed = self.suppressed,
                    "more of the same not logged"
                );
            }
            self.window = now;
            self.count = 0;
            self.suppressed = 0;
        }
        if self.count < WARNINGS_PER_SECOND {
            self.count += 1;
            tracing::warn!(what = self.what, %peer, "{detail}");
        } else {
            self.suppressed += 1;
        }
    }
}

/// The plain-UDP ingestion of storage `id`: binary-header datagrams, no replies; refusals are
/// counted in the storage's monitor and logged (rate-limited), never silent.
pub(crate) async fn udp_ingest(shared: Arc<Shared>, id: u32, socket: UdpSocket) {
    let mut buf = vec![0u8; 65_535];
    let mut junk = LogLimit::new("udp ingestion");
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                junk.warn(
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                    &format!("receive failed: {e}"),
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(bytes) = buf.get(..n) else {
            continue;
        };
        let msg = match RelayMessage::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                junk.warn(peer, &format!("storage {id}: datagram refused: {e}"));
                continue;
            }
        };
        if let Submitted::Now(r) = submit(&shared, id, &msg, Some(bytes.to_vec()), None)
            && r.code != ResponseType::Changed
        {
            let why = r.text();
            junk.warn(
                peer,
                &format!("storage {id}: datagram refused ({}): {why}", show(r.code)),
            );
        }
    }
}
