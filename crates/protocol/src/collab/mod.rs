//! Collaborative key establishment (paper 000, Ben Saied, Olivereau and Laurent).
//!
//! A constrained client A agrees on a master key with a server B while performing no public-key
//! operation: neighbouring proxies Pi do the asymmetric work on A's behalf, authorised by one-time
//! signature keys that the trusted entity T generates, binds into a Merkle tree and signs.
//!
//! One state machine per role: [`Client`] (A), [`Proxy`] (Pi), [`Trusted`] (T), [`Server`] (B).
//! The client runs one session at a time; the others serve many sessions from a session table.
//!
//! # How the paper's gaps are resolved
//! - **Who starts the proxies.** T's key material answers a hello from the proxy (Figure 1), so
//!   T first summons each chosen proxy ([`ProxySummon`](m2msec_wire::collab::ProxySummon)).
//! - **A waits for both hellos** (NB from B, NT from T) before asking T for keys, so B knows the
//!   session before any proxy reaches it and MK can bind both nonces.
//! - **Forged fragments from authorised proxies.** A one-time signature stops an outsider, not a
//!   proxy that signs a wrong share with its genuine key. A commits to every share
//!   (H(session ‖ index ‖ blinding ‖ share)) inside RP, which T signs: B turns a share that misses
//!   its commitment into an erasure and leaves the proxy out of its list. The blinding value keeps
//!   the commitment from revealing short shares.
//! - **{…}_KPi in Figure 2.** A Lamport key cannot encrypt; y is already sealed under a key
//!   derived from x, so B's answer to a proxy is only signed (with NPiB) and the proxy checks the
//!   signature before relaying.
//! - **Key confirmation both ways.** The paper ends with B's list under the new key. A first sends
//!   [`ClientFinished`](m2msec_wire::collab::ClientFinished) under MK with the proxies that relayed
//!   y faithfully; B answers with the proxies that did both halves. B so learns that A holds the
//!   key, and a proxy that corrupted y on the way back is missing from B's list.
//! - **Acceptance of y.** A accepts y once `answer_quorum` proxies relayed the same bytes and the
//!   AEAD under the x-derived key opens; after that it waits `answer_grace` for the remaining
//!   proxies so that their relays are judged too.
//! - **MK** = SHA-256 over A, B, NA, NB, x, y, each prefixed with its 32-bit length.
//! - **The grant** T signs is [RP, A, B, MTRoot] plus the session id, so it cannot be replayed into
//!   another session.

mod cert;
mod client;
mod log;
mod proxy;
pub mod records;
mod server;
pub mod sim;
pub mod simple_scheme;
pub mod trace;
mod trust;
mod trusted;

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::{hash, keylog};
use m2msec_wire::cbor::{self, Cbor};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::OpCounts;

pub use cert::Certificate;
pub use client::{Client, ClientConfig, ClientEvent, ProxyEntry};
pub use proxy::{Proxy, ProxyConfig, ProxyEvent, ProxyFault};
pub use server::{Server, ServerConfig, ServerEvent};
pub use trust::{HALF_LIFE, TrustBook, TrustRecord};
pub use trusted::{Trusted, TrustedConfig, TrustedEvent};

/// Domain-separation prefix of every label this protocol hashes, signs or derives with.
const LABEL: &[u8] = b"m2msec collab v1 ";

/// Length of x, the client's secret (the paper's s).
pub const SECRET_LEN: usize = 32;

/// Whether a message that opens session `id` may open it in `sessions` of at most `max`: refused
/// as a replay when the session is open already, with `beyond_capacity` when the table is full.
fn admit_session<S>(
    sessions: &BTreeMap<SessionId, S>,
    id: SessionId,
    max: usize,
    beyond_capacity: &'static str,
) -> Result<(), Error> {
    if sessions.contains_key(&id) {
        return Err(Error::ReplayedSession);
    }
    if sessions.len() >= max {
        return Err(Error::UnexpectedMessage(beyond_capacity));
    }
    Ok(())
}

/// A session identifier, chosen at random by the client.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cbor::hex(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A named peer and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// Identity, as it appears in messages.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
}

/// A peer with which this role shares a symmetric key.
#[derive(Clone, Debug)]
pub struct KeyedPeer {
    /// Identity, as it appears in messages.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// The pre-shared key (kAT, kAPi or kPiT).
    pub key: AeadKey,
}

impl KeyedPeer {
    /// The index of the peer named `name` in `peers`.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when none is.
    fn index_of(peers: &[Self], name: &str) -> Result<usize, Error> {
        peers
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::UnknownPeer(name.to_owned()))
    }
}

/// How long each role waits; every wait ends in a typed error, never a hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Lifetime of a whole session, on every role.
    pub session: Duration,
    /// How long T waits for the summoned proxies' hellos before answering A with those that came.
    pub proxy_hello: Duration,
    /// How long A keeps listening for relays of y after it has accepted y.
    pub answer_grace: Duration,
    /// How long B waits for k valid shares before it aborts the session and tells A why
    /// (shorter than `session`, so that A hears the reason before its own wait ends).
    pub fragments: Duration,
    /// How requests are retransmitted until answered (see [`crate::reliable`]).
    pub retransmit: crate::RetransmitPolicy,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            // Long enough for every retransmission of a request (`RetransmitPolicy`'s span,
            // 15 s by default) on a lossy link.
            session: Duration::from_secs(20),
            // Three retransmissions of a summons (at 0.5, 1 and 1.5 s) fit in it.
            proxy_hello: Duration::from_millis(2000),
            answer_grace: Duration::from_millis(150),
            fragments: Duration::from_secs(16),
            retransmit: crate::RetransmitPolicy::default(),
        }
    }
}

/// The master key MK both ends derive.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A short, non-secret fingerprint (a hash of the key), for logs and for comparing the two
    /// ends' keys in demos.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 8] {
        crate::fingerprint(LABEL, &[&self.0])
    }

    /// The key bytes. For tests and the annotated traces; applications derive their keys with
    /// [`SessionKey::derive`].
    #[must_use]
    pub fn expose_for_testing_only(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives an application key from MK with HKDF-SHA-256.
    ///
    /// # Errors
    /// If `suite` rejects the derived length (cannot happen for the defined suites).
    pub fn derive(&self, suite: AeadSuite, info: &[u8]) -> Result<AeadKey, Error> {
        Ok(AeadKey::derive(suite, &self.0, LABEL, info)?)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionKey(fingerprint {})",
            cbor::hex(&self.fingerprint())
        )
    }
}

/// A completed key establishment, as seen by the client or the server.
#[derive(Clone, Debug)]
pub struct Established {
    /// The session.
    pub session: SessionId,
    /// The other end (B for the client, A for the server).
    pub peer: String,
    /// MK.
    pub key: SessionKey,
    /// The proxies that delivered their share to B and relayed y faithfully to A.
    pub participants: Vec<String>,
}

/// Why a session failed or a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Bad bytes.
    /// The datagram is not a well-formed collab message.
    #[error("malformed message: {0}")]
    Decode(#[from] m2msec_wire::Error),
    /// A key, signature or ciphertext inside a message is malformed.
    #[error("malformed cryptographic value: {0}")]
    Crypto(m2msec_crypto::Error),

    // The peer's fault.
    /// A MAC, AEAD tag or signature did not verify (deliberately unspecific).
    #[error("authentication failed")]
    Authentication,
    /// The message does not fit the session's state.
    #[error("unexpected {0} message")]
    UnexpectedMessage(&'static str),
    /// No session with this id exists here.
    #[error("unknown session")]
    UnknownSession,
    /// A session with this id was already started: the message is a replay.
    #[error("replayed session")]
    ReplayedSession,
    /// A nonce echoed by the peer differs from the one sent.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// The peer is not configured here.
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    /// A one-time key was presented or used a second time.
    #[error("one-time key already used")]
    OneTimeKeyReused,
    /// A one-time public key is not in the tree T signed.
    #[error("Merkle path does not lead to the signed root")]
    BadMerklePath,
    /// T's grant names another session, client or server.
    #[error("grant does not match the session")]
    GrantMismatch,
    /// The server's certificate is not signed by the configured CA or names another server.
    #[error("bad server certificate")]
    BadCertificate,
    /// A share does not match the commitment A made to it: the proxy altered it.
    #[error("share does not match its commitment")]
    CommitmentMismatch,
    /// The session's parameters are out of range.
    #[error("invalid parameters: {0}")]
    InvalidParameters(&'static str),

    // Outcomes.
    /// A wait ran out.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// Fewer proxies than the threshold are available.
    #[error("{available} proxies available, {needed} needed")]
    NotEnoughProxies {
        /// Proxies that can take part.
        available: usize,
        /// Threshold k.
        needed: usize,
    },
    /// Fewer valid shares than the threshold reached B.
    #[error("{valid} valid fragments, {needed} needed")]
    NotEnoughFragments {
        /// Valid shares received.
        valid: usize,
        /// Threshold k.
        needed: usize,
    },
    /// The server aborted the session.
    #[error("server aborted the session ({0})")]
    Aborted(AbortReason),

    // Local misuse.
    /// A session is already running on this client.
    #[error("a session is already in progress")]
    Busy,
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

crypto_error_from!(Error);

/// Why B aborted; the code travels in the `Abort` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// Not enough valid shares arrived in time.
    NotEnoughFragments,
    /// A never confirmed the key.
    NoKeyConfirmation,
    /// B refused the session's parameters.
    Refused,
    /// A code this version does not know.
    Other(u8),
}

impl AbortReason {
    fn code(self) -> u8 {
        match self {
            Self::NotEnoughFragments => 1,
            Self::NoKeyConfirmation => 2,
            Self::Refused => 3,
            Self::Other(c) => c,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::NotEnoughFragments,
            2 => Self::NoKeyConfirmation,
            3 => Self::Refused,
            c => Self::Other(c),
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEnoughFragments => f.write_str("not enough fragments"),
            Self::NoKeyConfirmation => f.write_str("no key confirmation"),
            Self::Refused => f.write_str("refused"),
            Self::Other(c) => write!(f, "code {c}"),
        }
    }
}

/// The collab protocol as its roles share it ([`crate::Protocol`]): CBOR messages and this
/// module's [`Error`].
#[derive(Debug)]
pub enum Collab {}

impl crate::Protocol for Collab {
    type Message = m2msec_wire::collab::Message;
    type Error = Error;
    type Wire = m2msec_wire::collab::Message;

    fn decode(datagram: &[u8]) -> Result<m2msec_wire::collab::Message, Error> {
        Ok(m2msec_wire::collab::Message::decode(datagram)?)
    }
}

/// The collab roles' queues: events `E`, the protocol's wire messages.
type Outbox<E> = crate::outbox::Outbox<E, <Collab as crate::Protocol>::Wire>;

impl<E> Outbox<E> {
    /// Seals `body` under a pre-shared or derived key, bound to the message type and session.
    fn seal<T: Cbor>(
        &mut self,
        key: &AeadKey,
        rng: &mut dyn CryptoRng,
        message_type: u8,
        session: &SessionId,
        body: &T,
    ) -> m2msec_wire::cbor::Bytes {
        self.ops.symmetric += 1;
        let aad = sealing_aad(message_type, session);
        key.seal_random_nonce(rng, &aad, &cbor::to_vec(body)).into()
    }

    /// Opens what [`Outbox::seal`] sealed.
    fn open<T: Cbor>(
        &mut self,
        key: &AeadKey,
        message_type: u8,
        session: &SessionId,
        sealed: &[u8],
    ) -> Result<T, Error> {
        self.ops.symmetric += 1;
        let aad = sealing_aad(message_type, session);
        let plain = key.open_with_nonce_prefix(&aad, sealed)?;
        Ok(cbor::from_slice(&plain)?)
    }
}

fn sealing_aad(message_type: u8, session: &SessionId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL.len() + 17);
    aad.extend_from_slice(LABEL);
    aad.push(message_type);
    aad.extend_from_slice(&session.0);
    aad
}

/// What a signature covers: a label naming its purpose, then the structure's encoding.
fn signed_bytes<T: Cbor>(purpose: &[u8], value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(LABEL);
    out.extend_from_slice(purpose);
    out.extend_from_slice(&cbor::to_vec(value));
    out
}

/// The commitment A makes to share `index` (see the module docs).
fn share_commitment(
    ops: &mut OpCounts,
    session: &SessionId,
    index: u8,
    blinding: &[u8],
    share: &[u8],
) -> [u8; 32] {
    ops.hash += 1;
    hash::sha256_length_prefixed(&[LABEL, b"commitment", &session.0, &[index], blinding, share])
}

/// The key that seals y under x, bound to both parties and both nonces.
fn answer_key(
    ops: &mut OpCounts,
    suite: AeadSuite,
    session: &SessionId,
    x: &[u8],
    binding: &Binding,
) -> Result<AeadKey, Error> {
    ops.hash += 1;
    let info = binding.info(b"answer");
    Ok(AeadKey::derive(suite, x, &session.0, &info)?)
}

/// The identities and nonces both ends bind their keys to.
#[derive(Clone, Debug)]
struct Binding {
    client: String,
    server: String,
    client_nonce: [u8; 16],
    server_nonce: [u8; 16],
}

impl Binding {
    fn info(&self, purpose: &[u8]) -> Vec<u8> {
        let mut info = Vec::new();
        for field in [
            LABEL,
            purpose,
            self.client.as_bytes(),
            self.server.as_bytes(),
            &self.client_nonce,
            &self.server_nonce,
        ] {
            info.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            info.extend_from_slice(field);
        }
        info
    }

    /// MK = H(A | B | NA | NB | x | y), equation (1), with length-prefixed fields.
    fn master_key(&self, ops: &mut OpCounts, x: &[u8], y: &[u8]) -> SessionKey {
        ops.hash += 1;
        keylog::log("collab x", x);
        keylog::log("collab y", y);
        let key = SessionKey(hash::sha256_length_prefixed(&[
            self.client.as_bytes(),
            self.server.as_bytes(),
            &self.client_nonce,
            &self.server_nonce,
            x,
            y,
        ]));
        keylog::log("collab MK", &key.0);
        key
    }
}

/// The two keys of the Finished messages, derived from MK.
struct FinishedKeys {
    client: AeadKey,
    server: AeadKey,
}

impl FinishedKeys {
    fn derive(
        ops: &mut OpCounts,
        suite: AeadSuite,
        session: &SessionId,
        mk: &SessionKey,
    ) -> Result<Self, Error> {
        ops.hash += 2;
        Ok(Self {
            client: AeadKey::derive(
                suite,
                &mk.0,
                &session.0,
                b"m2msec collab v1 client finished",
            )?,
            server: AeadKey::derive(
                suite,
                &mk.0,
                &session.0,
                b"m2msec collab v1 server finished",
            )?,
        })
    }
}

fn random<const N: usize>(rng: &mut dyn CryptoRng) -> [u8; N] {
    m2msec_crypto::rng::random_array(rng)
}
