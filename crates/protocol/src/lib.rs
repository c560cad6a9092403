//! I/O-free state machines of the m2msec protocols.
//!
//! Every role is a value that is fed datagrams, the current time and an RNG, and hands back
//! datagrams to send, the next time it wants to be woken, and events. It never opens a socket,
//! reads a clock or draws randomness of its own (the shape of quinn-proto's `Connection`), so the
//! same role runs in unit tests, in the simulator and in the daemons of `m2msec-node`.
#![forbid(unsafe_code)]

// Defined before the protocol modules so that they can use it.
/// The [`Endpoint`] impl every role of every protocol shares: decode the datagram with
/// `$message::decode`, hand it to the role's
/// `handle(now, remote, message, rng)`, report a refusal as the role's `Rejected` event (the
/// session stays as it was), and serve the role's `out` queues. It also makes every role
/// reliable on a lossy link ([`reliable`]): a copy of a datagram already accepted is answered
/// with what was sent for it instead of being handled again, an accepted datagram answers the
/// requests that waited for its sender, and requests are retransmitted when due. Each role
/// supplies `handle`, `on_timeout` and `next_timeout`.
macro_rules! endpoint_impl {
    ($role:ty, $event:ident, $message:path) => {
        impl crate::Endpoint for $role {
            type Event = $event;

            fn handle_datagram(
                &mut self,
                now: crate::Millis,
                remote: std::net::SocketAddr,
                datagram: &[u8],
                rng: &mut dyn m2msec_crypto::rng::CryptoRng,
            ) {
                // A copy of a datagram already accepted: send again what was sent for it.
                let digest = crate::reliable::AnswerCache::digest(remote, datagram);
                if let Some(again) = self.out.answers.lookup(now, &digest) {
                    self.out.transmits.extend(again);
                    return;
                }
                let before = self.out.transmits.len();
                let waiting = self.out.retransmits.waiting();
                let result = <$message>::decode(datagram)
                    .map_err(Error::from)
                    .and_then(|msg| self.handle(now, remote, msg, rng));
                match result {
                    Ok(()) => {
                        self.out.retransmits.answered_by(remote, waiting);
                        let sent = self.out.transmits.iter().skip(before).cloned().collect();
                        self.out.answers.remember(now, digest, remote, sent);
                    }
                    Err(error) => self.out.event($event::Rejected { remote, error }),
                }
            }

            fn handle_timeout(
                &mut self,
                now: crate::Millis,
                rng: &mut dyn m2msec_crypto::rng::CryptoRng,
            ) {
                self.out
                    .retransmits
                    .on_timeout(now, &mut self.out.transmits);
                self.on_timeout(now, rng);
            }

            fn poll_transmit(&mut self) -> Option<crate::Transmit> {
                self.out.transmits.pop_front()
            }

            fn poll_timeout(&self) -> Option<crate::Millis> {
                match (self.next_timeout(), self.out.retransmits.next_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }

            fn poll_event(&mut self) -> Option<$event> {
                self.out.events.pop_front()
            }

            fn op_counts(&self) -> crate::OpCounts {
                self.out.ops
            }
        }
    };
}

/// Maps the crypto crate's errors into a protocol's `Error`: every failed check stays the one
/// opaque `Authentication`, malformed values keep their detail.
macro_rules! crypto_error_from {
    ($error:ty) => {
        impl From<m2msec_crypto::Error> for $error {
            fn from(e: m2msec_crypto::Error) -> Self {
                match e {
                    m2msec_crypto::Error::Authentication => Self::Authentication,
                    other => Self::Crypto(other),
                }
            }
        }
    };
}

/// A short, non-secret fingerprint of key material (a labelled hash), for logs and for
/// comparing both ends' keys in demos.
fn fingerprint(label: &[u8], key: &[&[u8]]) -> [u8; 8] {
    let mut parts = vec![label, b"fingerprint".as_slice()];
    parts.extend_from_slice(key);
    let h = m2msec_crypto::hash::sha256_length_prefixed(&parts);
    let mut out = [0; 8];
    out.copy_from_slice(&h[..8]);
    out
}

mod annotate;
pub mod collab;
pub mod e2sec;
mod endpoint;
pub mod link;
pub mod mikey;
pub mod network;
mod outbox;
pub mod relay;
pub mod reliable;
mod replay;
pub mod sga;
pub mod trial;

pub use endpoint::{Endpoint, Millis, OpCounts, Transmit};
pub use reliable::RetransmitPolicy;
