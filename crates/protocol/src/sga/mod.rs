//! The security gateway application (paper 002): smart devices register with an SGA server,
//! negotiate a lightweight cipher through it (steps A1–A5), agree on K = g^(Ri·Rs·Rj) through
//! it (B1–B7) without the server learning K, and exchange messages that the server stores
//! durably and forwards but cannot read. `docs/sga.md` says how the paper's gaps are resolved.
//!
//! Two roles: [`Device`] (d_i or d_j, one type) and [`Server`] (the gateway and its crypto
//! accelerator).
//!
//! # Resolutions of the paper's inconsistencies
//! - F_G, the "trapdoor one-way hash", is public-key encryption of r to the server.
//! - f_K is HMAC-SHA-256 keyed with the canonical encoding of the element K.
//! - "k_t ⊕ k_d" and "N ⊕ k_d" between values of different lengths XOR with key material of the
//!   right length expanded by HKDF-SHA-256 from the shorter key.
//! - Index typos: device i always uses its own temporary key k_t^i (B1 says k_t^j), device j
//!   k_t^j; F_S in B2/B4 is F_G.
//! - K_is is not sent in B1 (the paper does): the server recomputes it from N_i and r_i, which is
//!   the check.
//! - A1 and A3 carry an HMAC under the sender's registered key, since the paper's check
//!   "(k_t ⊕ k_d) ⊕ k_d = k_t" verifies nothing; A1 also carries a nonce and a timestamp for the
//!   replay cache.
//! - A2, sealed under the long-term k_dj, binds its session id as associated data and carries
//!   the server's timestamp; d_j refuses one outside its clock skew or for a session it accepted
//!   already, so a recorded A2 cannot hold it in a dead exchange.
//! - Identities never travel in clear (the paper encrypts ID_di): a device names itself by a
//!   pseudonym that it and the server derive from k_d for each epoch ([`ALIAS_EPOCH`]), so an
//!   observer can neither name a device nor link its pseudonyms across epochs (`docs/sga.md`).
//! - The server never learns K (it would have to solve CDH on g^Ri, g^Rj), but it authenticates
//!   both devices and so could impersonate one to the other: the paper's trust model.

mod device;
mod device_agent;
pub mod device_store;
mod log;
mod pseudonym;
mod server;
mod server_store;
pub mod sim;
pub mod trace;

use core::fmt;
use core::time::Duration;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::{Element, Group};
use m2msec_crypto::kdf;
use m2msec_crypto::rng::CryptoRng;
use m2msec_wire::cbor::{self, Cbor};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::replay::{Refusal, ReplayCache};
use crate::{Millis, OpCounts};

pub use device::{Device, DeviceConfig, DeviceEvent};
pub use device_agent::{DeviceAgent, Noted};
pub use device_store::{
    DeviceRecords, InboxEntry, Request, Response, SessionInfo, SuiteName, Wait, control_line,
};
pub use pseudonym::ALIAS_EPOCH;
pub use server::{Server, ServerConfig, ServerEvent, ServerFault};
pub use server_store::{DEVICES_TABLE, MESSAGES_TABLE, ServerState, StoreOp};

/// Domain-separation prefix of every label.
const LABEL: &[u8] = b"m2msec sga v1 ";

/// Suites a device may negotiate, as the issue and the paper ask: lightweight AEADs.
pub const LIGHTWEIGHT_SUITES: [AeadSuite; 3] = [
    AeadSuite::Aes128Ccm8,
    AeadSuite::ChaCha20Poly1305,
    AeadSuite::Ascon128,
];

/// An exchange between two devices, named by the server.
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

/// A device's long-term key k_d, shared with the server at registration.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceKey(Vec<u8>);

impl DeviceKey {
    /// Wraps key bytes (at least 16).
    ///
    /// # Errors
    /// [`Error::Config`] when shorter.
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 16 {
            return Err(Error::Config("a device key has at least 16 bytes".into()));
        }
        m2msec_crypto::keylog::log("sga device key", bytes);
        Ok(Self(bytes.to_vec()))
    }

    /// The key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

/// Waits and windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a device waits for an answer, and the server keeps an unfinished exchange.
    pub exchange: Duration,
    /// How often unacknowledged messages are sent again.
    pub retransmit: Duration,
    /// Largest accepted difference between a timestamp and the local clock.
    pub clock_skew: Duration,
    /// How requests (registration, invitation, negotiation, key shares) are retransmitted until
    /// answered (see [`crate::reliable`]); delivered messages use `retransmit` until stored.
    pub requests: crate::RetransmitPolicy,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            // Long enough for every retransmission of a request on a lossy link.
            exchange: Duration::from_secs(20),
            retransmit: Duration::from_millis(500),
            clock_skew: Duration::from_secs(60),
            requests: crate::RetransmitPolicy::default(),
        }
    }
}

/// The key two devices agreed on, for their messages.
#[derive(Clone)]
pub struct SessionKey {
    key: AeadKey,
    fingerprint: [u8; 8],
}

impl SessionKey {
    /// A short, non-secret fingerprint, for logs and for comparing both ends in demos.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// The negotiated suite.
    #[must_use]
    pub fn suite(&self) -> AeadSuite {
        self.key.suite()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionKey({:?}, {})",
            self.key.suite(),
            cbor::hex(&self.fingerprint)
        )
    }
}

/// Why a message was refused or a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Bad bytes.
    /// Not a well-formed SGA message.
    #[error("malformed message: {0}")]
    Decode(#[from] m2msec_wire::Error),
    /// A key, element or ciphertext inside the message is malformed.
    #[error("malformed cryptographic value: {0}")]
    Crypto(m2msec_crypto::Error),

    // The peer's fault.
    /// A MAC, AEAD tag or the key-exchange check f_K failed (deliberately unspecific).
    #[error("authentication failed")]
    Authentication,
    /// The device is not registered.
    #[error("device {0:?} is not registered")]
    UnknownDevice(String),
    /// The device is registered already.
    #[error("device {0:?} is registered already")]
    AlreadyRegistered(String),
    /// The suite is not in both devices' sets (or not offered by the server).
    #[error("cipher suite {0} is not available to both devices")]
    UnsupportedSuite(u8),
    /// The group is not offered.
    #[error("group {0} is not offered")]
    UnsupportedGroup(u8),
    /// The message was seen before or its timestamp is outside the window.
    #[error("replayed or stale message")]
    Replayed,
    /// The message does not fit the exchange's state.
    #[error("unexpected {0} message")]
    UnexpectedMessage(&'static str),
    /// No exchange with this id exists here.
    #[error("unknown session")]
    UnknownSession,
    /// The peer device never told the server where it is.
    #[error("device {0:?} is not reachable")]
    Unreachable(String),
    /// The server refused (its code; see [`RefusalCode`]).
    #[error("server refused: {0}")]
    Refused(RefusalCode),

    // Outcomes.
    /// A wait ran out.
    #[error("timed out while {0}")]
    Timeout(&'static str),

    // Local misuse.
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The device must register (or finish an exchange) first.
    #[error("{0}")]
    NotReady(&'static str),
}

crypto_error_from!(Error);

/// Codes of [`RegisterResponse`](m2msec_wire::sga::RegisterResponse) and
/// [`Refused`](m2msec_wire::sga::Refused), mapped from [`Error`] in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalCode {
    /// Authentication failed.
    Authentication,
    /// Unknown or unregistered device.
    UnknownDevice,
    /// Already registered.
    AlreadyRegistered,
    /// No common suite.
    UnsupportedSuite,
    /// Group not offered.
    UnsupportedGroup,
    /// Replay.
    Replayed,
    /// The peer is unreachable.
    Unreachable,
    /// Anything else.
    Other(u8),
}

impl RefusalCode {
    /// The code on the wire.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Authentication => 1,
            Self::UnknownDevice => 2,
            Self::AlreadyRegistered => 3,
            Self::UnsupportedSuite => 4,
            Self::UnsupportedGroup => 5,
            Self::Replayed => 6,
            Self::Unreachable => 7,
            Self::Other(c) => c,
        }
    }

    /// The code read from the wire.
    #[must_use]
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Authentication,
            2 => Self::UnknownDevice,
            3 => Self::AlreadyRegistered,
            4 => Self::UnsupportedSuite,
            5 => Self::UnsupportedGroup,
            6 => Self::Replayed,
            7 => Self::Unreachable,
            c => Self::Other(c),
        }
    }

    fn of(error: &Error) -> Self {
        match error {
            Error::Authentication => Self::Authentication,
            Error::UnknownDevice(_) => Self::UnknownDevice,
            Error::AlreadyRegistered(_) => Self::AlreadyRegistered,
            Error::UnsupportedSuite(_) => Self::UnsupportedSuite,
            Error::UnsupportedGroup(_) => Self::UnsupportedGroup,
            Error::Replayed => Self::Replayed,
            Error::Unreachable(_) => Self::Unreachable,
            _ => Self::Other(255),
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authentication => f.write_str("authentication failed"),
            Self::UnknownDevice => f.write_str("unknown device"),
            Self::AlreadyRegistered => f.write_str("already registered"),
            Self::UnsupportedSuite => f.write_str("no common cipher suite"),
            Self::UnsupportedGroup => f.write_str("group not offered"),
            Self::Replayed => f.write_str("replayed message"),
            Self::Unreachable => f.write_str("peer unreachable"),
            Self::Other(c) => write!(f, "code {c}"),
        }
    }
}

/// Key material of `len` bytes expanded from `key` for one purpose (the paper XORs keys of
/// different lengths; see `docs/sga.md`).
fn expand(key: &[u8], purpose: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0; len]);
    let mut info = LABEL.to_vec();
    info.extend_from_slice(purpose);
    // HKDF-SHA-256 fails only for outputs over 8160 bytes; ours are key-sized.
    let _ = kdf::hkdf_sha256(LABEL, key, &info, &mut out);
    out
}

fn xor(a: &[u8], b: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(a.iter().zip(b).map(|(x, y)| x ^ y).collect())
}

/// The AEAD key that seals what concerns the holder of `device_key` with `suite`.
fn device_aead(device_key: &DeviceKey, suite: AeadSuite, purpose: &[u8]) -> Result<AeadKey, Error> {
    let k = expand(device_key.as_bytes(), purpose, suite.key_len());
    Ok(AeadKey::new(suite, &k)?)
}

/// What each MAC under a device key covers: its purpose and fields. Written once, for the
/// roles and the trace.
#[derive(Clone, Copy, Debug)]
enum Mac<'a> {
    /// RegisterResponse: ID_d and the status.
    RegisterResponse(&'a str, u8),
    /// A1: the sealed body.
    Invite(&'a [u8]),
    /// A3: the session and the sealed body.
    NegotiateResponse(SessionId, &'a [u8]),
    /// Delivered: the session, the recipient's ID_d and the message id.
    Delivered(SessionId, &'a str, u64),
    /// Poll: ID_d and the timestamp.
    Poll(&'a str, u64),
}

impl Mac<'_> {
    fn purpose(self) -> &'static [u8] {
        match self {
            Self::RegisterResponse(..) => b"register response",
            Self::Invite(_) => b"invite",
            Self::NegotiateResponse(..) => b"negotiate response",
            Self::Delivered(..) => b"delivered",
            Self::Poll(..) => b"poll",
        }
    }

    fn input(self) -> Vec<u8> {
        let p = self.purpose();
        match self {
            Self::RegisterResponse(device, status) => labelled(p, &[device.as_bytes(), &[status]]),
            Self::Invite(sealed) => labelled(p, &[sealed]),
            Self::NegotiateResponse(session, sealed) => labelled(p, &[&session.0, sealed]),
            Self::Delivered(session, device, id) => {
                labelled(p, &[&session.0, device.as_bytes(), &id.to_be_bytes()])
            }
            Self::Poll(device, timestamp) => {
                labelled(p, &[device.as_bytes(), &timestamp.to_be_bytes()])
            }
        }
    }
}

/// HMAC-SHA-256 under the device key over `mac`'s labelled, length-prefixed fields.
fn device_mac(ops: &mut OpCounts, device_key: &DeviceKey, mac: Mac<'_>) -> [u8; 32] {
    ops.hash += 1;
    let k = expand(device_key.as_bytes(), b"mac", 32);
    kdf::hmac_sha256(&k, &[&mac.input()])
}

fn check_device_mac(
    ops: &mut OpCounts,
    device_key: &DeviceKey,
    mac: Mac<'_>,
    tag: &[u8],
) -> Result<(), Error> {
    ops.hash += 1;
    let k = expand(device_key.as_bytes(), b"mac", 32);
    kdf::verify_hmac_sha256(&k, &[&mac.input()], tag).map_err(|_| Error::Authentication)
}

/// B2's MAC under k_t^j over the session, ID_dj and the group (ID_dj is not sent).
fn key_share_invite_mac(
    ops: &mut OpCounts,
    temp_key: &[u8],
    session: SessionId,
    responder: &str,
    group: u8,
) -> [u8; 32] {
    ops.hash += 1;
    let k = expand(temp_key, b"key share invite", 32);
    let fields: [&[u8]; 3] = [&session.0, responder.as_bytes(), &[group]];
    kdf::hmac_sha256(&k, &[&labelled(b"key share invite", &fields)])
}

fn labelled(purpose: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out = LABEL.to_vec();
    out.extend_from_slice(purpose);
    for f in fields {
        out.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// f_K(fields): HMAC-SHA-256 keyed with the canonical encoding of the element K.
fn f_k(ops: &mut OpCounts, k: &Element, purpose: &[u8], fields: &[&[u8]]) -> [u8; 32] {
    ops.hash += 1;
    kdf::hmac_sha256(&k.to_bytes(), &[&labelled(purpose, fields)])
}

/// A key share's check f_Ks(N) (B1, B3), K_s = N^r; `n` is N's encoding.
fn share_check(ops: &mut OpCounts, k_s: &Element, n: &[u8]) -> [u8; 32] {
    f_k(ops, k_s, b"share", &[n])
}

/// A key result's check f_Ks(ID_di, ID_dj, K_s, N_other^Rs) (B6); `element` is N_other^Rs.
fn result_check(
    ops: &mut OpCounts,
    k_s: &Element,
    (initiator, responder): (&str, &str),
    element: &Element,
) -> [u8; 32] {
    let fields: [&[u8]; 4] = [
        initiator.as_bytes(),
        responder.as_bytes(),
        &k_s.to_bytes(),
        &element.to_bytes(),
    ];
    f_k(ops, k_s, b"result", &fields)
}

/// The associated data of each sealed body: its purpose and the fields outside the seal that
/// the receiver must not see rewritten. Written once, for the roles and the trace.
#[derive(Clone, Copy, Debug)]
enum Aad<'a> {
    /// [`RegistrationBody`](m2msec_wire::sga::RegistrationBody), to S.
    Register,
    /// ID_d under k_d: the registration proof.
    RegisterProof,
    /// A1's body to S, bound to ID_di.
    Invite(&'a str),
    /// A2's body under the long-term k_dj, bound to its session (nothing else ties it to one
    /// exchange).
    Negotiate(SessionId),
    /// A3's body to S.
    NegotiateResponse(SessionId),
    /// A4's body under k_t^i.
    InviteAccepted,
    /// A key share (B1, B3) under the sender's temporary key.
    KeyShare,
    /// E_kd(N) inside a key share.
    Element(SessionId),
    /// F_G(r), r to S, inside a key share.
    Trapdoor(SessionId),
    /// B6's body under the receiver's temporary key.
    KeyResult,
}

impl Aad<'_> {
    fn purpose(self) -> &'static [u8] {
        match self {
            Self::Register => b"register",
            Self::RegisterProof => b"register proof",
            Self::Invite(_) => b"invite",
            Self::Negotiate(_) => b"negotiate",
            Self::NegotiateResponse(_) => b"negotiate response",
            Self::InviteAccepted => b"invite accepted",
            Self::KeyShare => b"key share",
            Self::Element(_) => b"element",
            Self::Trapdoor(_) => b"trapdoor",
            Self::KeyResult => b"key result",
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Self::Invite(from) => labelled(self.purpose(), &[from.as_bytes()]),
            Self::Negotiate(s)
            | Self::NegotiateResponse(s)
            | Self::Element(s)
            | Self::Trapdoor(s) => labelled(self.purpose(), &[&s.0]),
            _ => labelled(self.purpose(), &[]),
        }
    }

    /// The AEAD key, from the device key, of a body sealed under k_d (the proof, A2, E_kd(N)).
    fn key_from(self, device_key: &DeviceKey, suite: AeadSuite) -> Result<AeadKey, Error> {
        device_aead(device_key, suite, self.purpose())
    }
}

/// Seals a body under a symmetric key, bound by `aad`.
fn seal<T: Cbor>(
    ops: &mut OpCounts,
    key: &AeadKey,
    rng: &mut dyn CryptoRng,
    aad: Aad<'_>,
    body: &T,
) -> m2msec_wire::cbor::Bytes {
    ops.symmetric += 1;
    key.seal_random_nonce(rng, &aad.bytes(), &cbor::to_vec(body))
        .into()
}

/// Opens what [`seal`] sealed with the same `aad`.
fn open<T: Cbor>(
    ops: &mut OpCounts,
    key: &AeadKey,
    aad: Aad<'_>,
    sealed: &[u8],
) -> Result<T, Error> {
    ops.symmetric += 1;
    let plain = key.open_with_nonce_prefix(&aad.bytes(), sealed)?;
    Ok(cbor::from_slice(&plain)?)
}

/// The mask of a temporary key k_t sent for the holder of `device_key`: "k_t ⊕ k_d" with k_d
/// expanded to the `len` bytes of k_t.
fn temp_key_mask(device_key: &DeviceKey, len: usize) -> Zeroizing<Vec<u8>> {
    expand(device_key.as_bytes(), b"temp key mask", len)
}

/// The key that seals a Deliver's recipient for S, from the sender's k_d and initial suite.
fn recipient_key(device_key: &DeviceKey, suite: AeadSuite) -> Result<AeadKey, Error> {
    device_aead(device_key, suite, b"deliver")
}

/// The session key both devices derive from K (step B7).
fn session_key(
    ops: &mut OpCounts,
    k: &Element,
    session: SessionId,
    initiator: &str,
    responder: &str,
    suite: AeadSuite,
) -> Result<SessionKey, Error> {
    ops.hash += 2;
    let info = labelled(
        b"session key",
        &[initiator.as_bytes(), responder.as_bytes(), &[suite.id()]],
    );
    let mut bytes = Zeroizing::new(vec![0; suite.key_len()]);
    let k = Zeroizing::new(k.to_bytes());
    m2msec_crypto::keylog::log("sga K", &k);
    kdf::hkdf_sha256(&session.0, &k, &info, &mut bytes)?;
    let fp = kdf::hmac_sha256(&bytes, &[b"m2msec sga fingerprint"]);
    let mut fingerprint = [0; 8];
    fingerprint.copy_from_slice(&fp[..8]);
    Ok(SessionKey {
        key: AeadKey::new(suite, &bytes)?,
        fingerprint,
    })
}

/// What a delivered message's AEAD binds: the session, both devices and the message id.
fn message_aad(session: SessionId, from: &str, to: &str, id: u64) -> Vec<u8> {
    labelled(
        b"message",
        &[
            &session.0,
            from.as_bytes(),
            to.as_bytes(),
            &id.to_be_bytes(),
        ],
    )
}

/// What the recipient's name in a [`Deliver`](m2msec_wire::sga::Deliver) is bound to: the
/// session, the message id and the ciphertext (not the sender's pseudonym, which a retry under a
/// later epoch replaces).
fn recipient_aad(session: SessionId, id: u64, ciphertext: &[u8]) -> Vec<u8> {
    labelled(b"recipient", &[&session.0, &id.to_be_bytes(), ciphertext])
}

/// Folds a group's operation tally into the role's counters: every exponentiation and group
/// multiplication is public-key work.
fn count_group(ops: &mut OpCounts, group: &Group) {
    let t = group.take_tally();
    ops.asymmetric += t.exp + t.mul;
    ops.hash += t.hash;
}

/// The SGA protocol as its roles share it ([`crate::Protocol`]): CBOR messages and this
/// module's [`Error`].
#[derive(Debug)]
pub enum Sga {}

impl crate::Protocol for Sga {
    type Message = m2msec_wire::sga::Message;
    type Error = Error;
    type Wire = m2msec_wire::sga::Message;

    fn decode(datagram: &[u8]) -> Result<m2msec_wire::sga::Message, Error> {
        Ok(m2msec_wire::sga::Message::decode(datagram)?)
    }
}

/// The SGA roles' queues: events `E`, the protocol's wire messages.
type Outbox<E> = crate::outbox::Outbox<E, <Sga as crate::Protocol>::Wire>;

/// Admits an authenticated message stamped `sent` into `cache` (see [`ReplayCache::admit`]),
/// with the clock skew as the window. SGA answers a stale timestamp and a repeat alike.
///
/// # Errors
/// [`Error::Replayed`] for either; [`Error::NotReady`] when the cache is full of live entries
/// (it refuses, never grows).
fn admit_fresh<K: Ord>(
    cache: &mut ReplayCache<K>,
    timeouts: Timeouts,
    now: Millis,
    sent: u64,
    key: K,
) -> Result<(), Error> {
    cache
        .admit(now, timeouts.clock_skew, Millis(sent), key)
        .map_err(|refusal| match refusal {
            Refusal::OutsideWindow | Refusal::Replayed => Error::Replayed,
            Refusal::Full => Error::NotReady("too many recent messages to remember"),
        })
}
