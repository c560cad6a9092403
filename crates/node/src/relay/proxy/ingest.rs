//! Admission of relay messages, from CoAP and from the plain-UDP sockets, into the writer's
//! bounded queue — and the plain-UDP ingestion sockets themselves.
//!
//! Admission is the engine's (`Proxy::offer_message`; `Proxy::offer_datagram` for plain UDP,
//! with what to log of a refusal) and decides at once: a message that is
//! too large, from another source than the storage's, or for an unknown storage is refused
//! (4.13, 4.00, 4.04);
//! one that does not fit the storage's or the proxy's capacity is answered 5.03 with Max-Age
//! `max_age_when_full_s` (unless it is a retransmission of a message already stored, which is
//! acknowledged); and when the ingest queue itself is full, 5.03 with Max-Age
//! `max_age_when_busy_s`. Memory therefore stays bounded under a flood: at most `ingest_queue`
//! messages of at most `max_message_bytes` wait, everything else is refused and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;

use m2msec_protocol::relay::proxy::{Admitted, Response, datagram_refused};

use super::Shared;
use crate::runtime::coap::ReplyTo;
use crate::runtime::driver::wall_clock;
use crate::runtime::log_limit::LogLimit;

/// Hands an admitted message to the writer, which answers once it is durable (`None`), or
/// gives its reservation back when the ingest queue is full and answers at once.
pub(crate) fn queue(
    shared: &Shared,
    admitted: Admitted,
    reply: Option<ReplyTo>,
) -> Option<Response> {
    match shared.ingest.try_send((admitted, reply)) {
        Ok(()) => None,
        Err(TrySendError::Full((admitted, _)) | TrySendError::Closed((admitted, _))) => {
            Some(shared.core().busy(&admitted, wall_clock()))
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
        // The engine's admission (`Proxy::offer_datagram`), then the writer's bounded queue.
        let offered = shared.core().offer_datagram(id, bytes, wall_clock());
        let refused = match offered {
            Ok(admitted) => queue(&shared, admitted, None).and_then(|r| datagram_refused(id, &r)),
            Err(why) => why,
        };
        if let Some(why) = refused {
            junk.warn(peer, &why);
        }
    }
}
