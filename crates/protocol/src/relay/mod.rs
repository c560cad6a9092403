//! The secure store-and-forward relay (paper 004): key streams at the source, the proxy's
//! re-encryption of management messages, and the sink.
//!
//! Three roles, none of them a request/response endpoint, all I/O-free (time and an RNG are
//! passed in):
//! - [`Source`] (the device or M2M gateway α1): seals one stream of data.
//! - [`Forwarder`] (the untrusted proxy P, one per sink): turns the stored stream into the
//!   sink's stream, holding only re-encryption keys.
//! - [`Sink`] (the data sink α2): opens what the proxy forwards, and trusts only what the source's
//!   owner key signed. [`Source::own_reader`] is the same machine for the source reading its own
//!   stored messages back.
//!
//! # Streams, sections and epochs
//! A stream is a sequence of data messages under a **key stream** of random AEAD keys (§III-C).
//! The messages under one key form a **section**; its key has an index (u16, +1 per section,
//! wrapping) and is announced by a **management message** that precedes the section's first data
//! message: the section key, sealed with AFGH to the source itself (eq. (1)). The source rotates
//! the key after `rotate_messages` data messages, after `rotate_after`, and at every epoch change.
//!
//! Time is cut into **epochs** (`epoch = ⌊now_ms / epoch_length_ms⌋`, default one hour). The
//! source's AFGH key pair is per epoch, derived from a 32-byte [`SourceSeed`]
//! ([`pre::SecretKey::derive`] with info `"m2msec relay epoch key" ‖ epoch (u32 BE)`), and a
//! management body carries its epoch in the clear. A sink is authorised for a time window by
//! handing the proxy one re-encryption key per epoch of the window ([`Source::rekeys_for`],
//! eq. (2)): the proxy re-encrypts (eq. (3)) the management messages of those epochs, and only
//! those, for that sink (eq. (4) at the sink). Sections never straddle epochs, so a section's key
//! reaches a sink exactly when the sink holds a re-encryption key for the section's epoch — "sections
//! allow revoking authorisation after a given time" (§III-C) — and revocation means not granting
//! the next epochs.
//!
//! # Why this is secure
//! - **The proxy holds only re-encryption keys.** No API here hands a [`Forwarder`] a secret key or
//!   a section key; it sees second-level ciphertexts, re-encryption keys and AEAD ciphertexts. A
//!   re-encryption key is unidirectional and does not decrypt (see [`m2msec_crypto::pre`]).
//! - **Signature inside the ciphertext.** AFGH is CPA-secure only and does not authenticate the
//!   sender: anyone holding the source's epoch public key can encrypt to it, and the proxy could
//!   re-encrypt a section key of its own choosing. So the [`SectionKey`] is signed by the source's
//!   owner key over the header's authenticated bytes, the epoch, suite, key and validity, and the
//!   signature travels inside the AFGH plaintext (hidden from the proxy). Individually protected
//!   messages are signed the same way ([`Individual`]).
//! - **Data** messages are AEAD under the section key with the header's authenticated bytes
//!   (version, flags without REENCRYPTED, message id, stream id, key index, source URL) as
//!   associated data, so the proxy can neither alter nor move them; it may rewrite only the sink
//!   URL and the REENCRYPTED flag, which are not authenticated.
//! - **Replays** are refused by the sink per (source, stream, message id): message ids are unique
//!   within a stream for 2^32 messages (see [`Source`]). Sections are installed at most once and a
//!   section older than one the sink has evicted is refused, so a replayed management message
//!   cannot reopen a section. The in-memory state is bounded; the sink daemon keeps a durable
//!   seen set on top, so a proxy that redelivers after a crash causes no duplicate output.
//!
//! # Caveats
//! - **Collusion (inherent to AFGH).** A proxy colluding with a sink authorised for some epoch can
//!   compute `g2^{a1}` of that epoch and open every management message of that epoch, including
//!   those the source meant for nobody; it learns nothing about other epochs, since each epoch has
//!   its own key pair.
//! - **Data authenticity is to the section.** The section key is shared by the source and every
//!   sink authorised for its epoch, so a data message proves it came from one of them; the
//!   management message (signed) proves only the source chose the key.
//! - A sink sees when each section was used (`not_before_ms`, `not_after_ms`, signed), not when
//!   each data message was sealed; store-and-forward delivery may come long after.

mod forwarder;
pub mod proxy;
pub mod send_plan;
mod sink;
pub mod sink_store;
mod source;
pub mod source_store;
pub mod trace;
pub mod window;

use core::fmt;
use core::time::Duration;

use m2msec_crypto::pre;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use forwarder::{Forwarded, Forwarder, MAX_FORWARD_SECTIONS, SkipReason};
pub use m2msec_wire::relay::api::EpochRekey;
pub use m2msec_wire::relay::management::{Body, Individual, SectionKey};
pub use sink::{Delivered, Sink, SinkConfig, SinkStats, TrustedSource};
pub use source::{
    DEFAULT_ROTATE_AFTER, DEFAULT_ROTATE_MESSAGES, Source, SourceConfig, StreamPosition,
};

/// HKDF info prefix of the source's per-epoch AFGH key; the epoch follows as u32 big-endian.
pub const EPOCH_KEY_INFO: &[u8] = b"m2msec relay epoch key";

/// Default length of an epoch: one hour.
pub const DEFAULT_EPOCH_LENGTH: Duration = Duration::from_secs(3600);

/// Most re-encryption keys one grant carries: a list in the proxy API's CBOR holds at most
/// [`m2msec_wire::cbor::MAX_LIST`] elements.
pub const MAX_REKEYS: usize = m2msec_wire::cbor::MAX_LIST;

/// Why a relay operation failed, grouped by whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Bad bytes.
    /// A header, body or plaintext is not well formed (what is wrong is named).
    #[error("malformed relay message: {0}")]
    Malformed(&'static str),
    /// A CBOR body or record does not decode.
    #[error("malformed relay body: {0}")]
    Decode(#[from] m2msec_wire::Error),
    /// A key, ciphertext or other cryptographic value is malformed, or a local crypto misuse.
    #[error("cryptographic value: {0}")]
    Crypto(m2msec_crypto::Error),

    // The peer's (or an attacker's) fault.
    /// The message names a source this sink does not trust.
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    /// Decryption failed: tampering, another sink's or epoch's re-encryption, a wrong key
    /// (deliberately unspecific).
    #[error("authentication failed")]
    Authentication,
    /// The section key or individual message is not signed by the source's owner key.
    #[error("bad owner signature")]
    BadSignature,
    /// The signed stream id or key index differ from the header's.
    #[error("signed section does not match the header")]
    HeaderMismatch,
    /// The section's validity is empty, starts too far in the future, or ended longer ago than
    /// the sink accepts.
    #[error("section outside its validity window")]
    OutsideValidity,
    /// The message was delivered before, or reopens a section that was installed or retired.
    #[error("replayed message")]
    Replay,
    /// Data is waiting for too many section keys already: this message was dropped.
    #[error("buffer for data awaiting its section key is full")]
    BufferFull,
    /// A section has seen more distinct message-id ranges than the sink keeps.
    #[error("section replay record is full")]
    SectionFull,

    // Local misuse.
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The clock is beyond the last epoch a u32 can number.
    #[error("time {0} ms is beyond the last epoch")]
    ClockOutOfRange(u64),
    /// A grant asked for more epochs than one list can carry.
    #[error("{requested} epochs requested, at most {max} per grant")]
    TooManyEpochs {
        /// Epochs asked for.
        requested: u64,
        /// The limit, [`MAX_REKEYS`].
        max: usize,
    },
}

crypto_error_from!(Error);

/// The source's 32-byte seed: its AFGH key pair of every epoch is derived from it.
///
/// Zeroized on drop; `Debug` shows nothing.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SourceSeed([u8; 32]);

impl SourceSeed {
    /// Wraps seed bytes (32 random bytes, kept secret like a private key).
    #[must_use]
    pub fn new(bytes: [u8; 32]) -> Self {
        m2msec_crypto::keylog::log("relay source seed", &bytes);
        Self(bytes)
    }

    /// A fresh random seed.
    #[must_use]
    pub fn generate(rng: &mut dyn m2msec_crypto::rng::CryptoRng) -> Self {
        Self::new(m2msec_crypto::rng::random_array(rng))
    }

    /// The seed bytes, for writing a key file.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The AFGH secret key of `epoch`: `pre::SecretKey::derive(seed, EPOCH_KEY_INFO ‖ epoch BE)`.
    ///
    /// # Errors
    /// None in practice (see [`pre::SecretKey::derive`]).
    pub fn epoch_key(&self, epoch: u32) -> Result<pre::SecretKey, Error> {
        let mut info = Vec::with_capacity(EPOCH_KEY_INFO.len() + 4);
        info.extend_from_slice(EPOCH_KEY_INFO);
        info.extend_from_slice(&epoch.to_be_bytes());
        Ok(pre::SecretKey::derive(&self.0, &info)?)
    }
}

impl From<zeroize::Zeroizing<[u8; 32]>> for SourceSeed {
    fn from(bytes: zeroize::Zeroizing<[u8; 32]>) -> Self {
        Self::new(*bytes)
    }
}

impl fmt::Debug for SourceSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceSeed(..)")
    }
}

/// An epoch length in whole milliseconds, at least 1.
fn length_ms(what: &str, d: Duration) -> Result<u64, Error> {
    u64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| Error::Config(format!("{what} must be between 1 ms and u64::MAX ms")))
}

/// `⌊t / len⌋` as an epoch number.
fn epoch_of(t_ms: u64, len_ms: u64) -> Result<u32, Error> {
    u32::try_from(t_ms / len_ms).map_err(|_| Error::ClockOutOfRange(t_ms))
}

/// A fixed-size record read back from a store (the source's first epoch, the sink's output
/// length): its `N` bytes, or why they are not (a record's error says which record).
fn fixed_record<const N: usize>(value: &[u8]) -> Result<[u8; N], String> {
    <[u8; N]>::try_from(value).map_err(|_| format!("{} bytes, not {N}", value.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_epoch_keys_are_the_derivation() {
        let seed = SourceSeed::new([3; 32]);
        let mut info = EPOCH_KEY_INFO.to_vec();
        info.extend_from_slice(&7u32.to_be_bytes());
        let expected = pre::SecretKey::derive(&[3; 32], &info).expect("derive");
        let got = seed.epoch_key(7).expect("derive");
        assert_eq!(*got.to_bytes(), *expected.to_bytes());
        assert_ne!(
            *seed.epoch_key(8).expect("derive").to_bytes(),
            *expected.to_bytes()
        );
        assert_eq!(format!("{seed:?}"), "SourceSeed(..)");
    }

    #[test]
    fn epochs() {
        assert_eq!(epoch_of(0, 1000), Ok(0));
        assert_eq!(epoch_of(3_599_999, 3_600_000), Ok(0));
        assert_eq!(epoch_of(3_600_000, 3_600_000), Ok(1));
        assert_eq!(
            epoch_of(u64::from(u32::MAX) * 10 + 10, 10),
            Err(Error::ClockOutOfRange(u64::from(u32::MAX) * 10 + 10))
        );
        assert!(length_ms("x", Duration::ZERO).is_err());
        assert!(length_ms("x", Duration::from_micros(999)).is_err());
        assert_eq!(length_ms("x", Duration::from_secs(1)), Ok(1000));
    }
}
