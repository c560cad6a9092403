//! I/O-free state machines of the m2msec protocols.
//!
//! Every role is a value that is fed datagrams, the current time and an RNG, and hands back
//! datagrams to send, the next time it wants to be woken, and events. It never opens a socket,
//! reads a clock or draws randomness of its own (the shape of quinn-proto's `Connection`), so the
//! same role runs in unit tests, in the simulator and in the daemons of `m2msec-node`.
//!
//! Each role implements [`Role`] (decode, handle a message, its deadlines, its [`Outbox`]); one
//! impl of [`Endpoint`] over every [`Role`] adds what they all share and is what drivers run.
#![forbid(unsafe_code)]

// Defined before the protocol modules so that they can use it.
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
pub mod drive;
pub mod e2sec;
mod endpoint;
pub mod fragment;
pub mod fuzzing;
pub mod link;
mod log;
pub mod mikey;
pub mod network;
mod outbox;
pub mod pem_key;
pub mod relay;
pub mod reliable;
mod replay;
mod role;
pub mod runs;
pub mod sga;
pub mod trial;

pub use endpoint::{Endpoint, GroupOps, Millis, OpCounts, Transmit};
pub use log::{Level, Logged, Rejection};
pub use outbox::Outbox;
pub use reliable::RetransmitPolicy;
pub use role::{Protocol, ProtocolRole, Role};
