//! E2SEC (paper 003, Cao, Zhang, Ma and Lin): the core network (EPC) delegates signing power to an
//! MTC device (MTCD) and an MTC server (MTCS) with warrants (proxy signatures, equations (1)–(4));
//! device and server then authenticate each other end to end with ElGamal-type proxy signatures
//! (5)–(14) and agree on SK = h(g^ab ‖ g^a ‖ g^b ‖ ID_D ‖ ID_S) (15). See `docs/e2sec.md`.
//!
//! Roles: [`Epc`] and [`Party`] (one type for MTCD and MTCS; either may initiate).
//!
//! # Resolutions
//! - **EPS-AKA is out of scope**: a pre-shared-key channel (HMAC-authenticated request, AEAD-sealed
//!   grant) stands in for the 3GPP access authentication that delivers the warrant.
//! - **The warrant binds the holder's public key and role** (m = ID_EPC, ID, role, v, group,
//!   validity), so σ' = σ + x·e can only be used with the key it was issued for and a device
//!   cannot present a server's warrant.
//! - **r as an exponent.** Equations (7), (9), (12), (14) use r = g^ℓ mod p as an exponent; in a
//!   prime-order group we use its scalar image r̄ (r mod q for the finite-field groups, a hash of
//!   the encoding for Ristretto255), as DSA does.
//! - **Key confirmation** (our addition): the paper's message 2 signs g^ab, proving the responder
//!   holds b; the initiator's message 1 cannot. A third message, an HMAC under a key derived from
//!   SK over the transcript, gives the responder the same assurance — what SIGMA requires.
//! - **Variants**: the paper's ElGamal form, and Schnorr and DSA forms over the same proxy key.
//! - **Replayed warrant requests** (our addition): the request carries the holder's clock under
//!   its MAC, and the EPC admits it only within [`EpcConfig::replay_window`] of its own clock and
//!   once per (holder, nonce) — MIKEY's window + cache (`crate::replay`). Without it a recorded
//!   request makes the EPC issue again (`models/e2sec_warrant.vp`).

mod agent;
pub mod cost;
mod epc;
mod log;
mod party;
mod proxy_sig;
pub mod sim;
pub mod trace;

pub use agent::{PartyAgent, WARRANT_RETRY};
pub use epc::{Epc, EpcConfig, EpcEvent, Subscriber};
pub use party::{Party, PartyConfig, PartyEvent, PeerEntry};

use core::fmt;
use core::time::Duration;

use m2msec_crypto::group::{Group, GroupId, Scalar};
use m2msec_crypto::rng::CryptoRng;
use m2msec_wire::cbor;
use m2msec_wire::e2sec::Message;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const LABEL: &[u8] = b"m2msec e2sec v1 ";

/// How far a warrant request's timestamp may lie from the EPC's clock, either way, and how long
/// the EPC remembers it: loose enough for unsynchronised device clocks, short enough to keep the
/// cache small.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(30);

/// Most warrant requests the EPC remembers at once; when full it refuses new ones
/// ([`Error::ReplayCacheFull`]) rather than grow or forget one still inside the window.
pub const REPLAY_CACHE_CAPACITY: usize = 65_536;

/// The proxy signature's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The paper's ElGamal-type signature.
    ElGamal = 1,
    /// Schnorr over the same proxy key.
    Schnorr = 2,
    /// DSA over the same proxy key.
    Dsa = 3,
}

impl Variant {
    /// All variants.
    pub const ALL: [Self; 3] = [Self::ElGamal, Self::Schnorr, Self::Dsa];

    /// Its name on the command line and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::ElGamal => "elgamal",
            Self::Schnorr => "schnorr",
            Self::Dsa => "dsa",
        }
    }

    fn from_code(code: u8) -> Result<Self, Error> {
        match code {
            1 => Ok(Self::ElGamal),
            2 => Ok(Self::Schnorr),
            3 => Ok(Self::Dsa),
            other => Err(Error::UnsupportedVariant(other)),
        }
    }
}

/// Which side of the end-to-end exchange a warrant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// MTC device.
    Device = 1,
    /// MTC server.
    Server = 2,
}

impl Role {
    fn code(self) -> u8 {
        self as u8
    }
}

/// A secret exponent (x_EPC, x_MTCD, x_MTCS) with its group.
#[derive(Clone)]
pub struct SecretKey {
    group: GroupId,
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretKey {
    /// A fresh key in `group`.
    pub fn generate(group: GroupId, rng: &mut dyn CryptoRng) -> Self {
        let g = Group::new(group);
        Self {
            group,
            bytes: g.random_scalar(rng).to_bytes(),
        }
    }

    /// A key from its canonical scalar encoding.
    ///
    /// # Errors
    /// If the bytes are not a scalar of `group`.
    pub fn from_bytes(group: GroupId, bytes: &[u8]) -> Result<Self, Error> {
        Group::new(group).scalar_from_bytes(bytes)?;
        m2msec_crypto::keylog::log("e2sec secret key", bytes);
        Ok(Self {
            group,
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The canonical encoding (for key files).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.bytes.clone()
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The public key v = g^x.
    ///
    /// # Errors
    /// Never for a key made by this type.
    pub fn public_key(&self) -> Result<Vec<u8>, Error> {
        let g = Group::new(self.group);
        Ok(g.exp_generator(&g.scalar_from_bytes(&self.bytes)?)?
            .to_bytes())
    }

    /// The public key v = g^x with its group, as a key file holds it.
    ///
    /// # Errors
    /// Never for a key made by this type.
    pub fn public(&self) -> Result<PublicKey, Error> {
        let element = self.public_key()?;
        Ok(PublicKey {
            group: self.group,
            element,
        })
    }

    fn scalar(&self, g: &Group) -> Result<Scalar, Error> {
        Ok(g.scalar_from_bytes(&self.bytes)?)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({:?})", self.group)
    }
}

/// A public key v = g^x with its group, as a key file holds it (see [`crate::pem_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The group.
    pub group: GroupId,
    /// The element's encoding in the group.
    pub element: Vec<u8>,
}

/// The session key SK.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A short, non-secret fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 8] {
        crate::fingerprint(LABEL, &[&self.0])
    }

    /// The key bytes, for tests.
    #[must_use]
    pub fn expose_for_testing_only(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", cbor::hex(&self.fingerprint()))
    }
}

/// Why a message was refused or an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Bad bytes.
    /// Not a well-formed E2SEC message.
    #[error("malformed message: {0}")]
    Decode(#[from] m2msec_wire::Error),
    /// A group element, scalar or ciphertext is malformed.
    #[error("malformed cryptographic value: {0}")]
    Crypto(m2msec_crypto::Error),

    // The peer's fault.
    /// A warrant, signature or MAC did not verify (deliberately unspecific).
    #[error("authentication failed")]
    Authentication,
    /// The warrant's validity period does not cover now.
    #[error("warrant not valid now (valid from {from} to {until}, now {now})")]
    WarrantExpired {
        /// Start (ms since the UNIX epoch).
        from: u64,
        /// End.
        until: u64,
        /// Now.
        now: u64,
    },
    /// The warrant was issued by another EPC.
    #[error("warrant issued by {0:?}, not by our EPC")]
    WrongIssuer(String),
    /// The warrant is for another identity, key or group than the one presenting it.
    #[error("warrant bound to another identity or key")]
    WrongHolder,
    /// The warrant is for the wrong side (a device presenting a server's warrant).
    #[error("warrant issued for another role")]
    WrongRole,
    /// The peer is not configured.
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    /// The variant is unknown or not the configured one.
    #[error("signature variant {0} not accepted")]
    UnsupportedVariant(u8),
    /// The message does not fit the exchange's state.
    #[error("unexpected {0} message")]
    UnexpectedMessage(&'static str),
    /// The peer refused (its code).
    #[error("peer refused the exchange (code {0})")]
    Refused(u8),
    /// A warrant request's timestamp lies outside the EPC's replay window (a replay, or a holder
    /// whose clock is off).
    #[error("warrant request timestamp {sent} outside the replay window (now {now})")]
    StaleRequest {
        /// The request's timestamp (ms since the UNIX epoch).
        sent: u64,
        /// The EPC's clock.
        now: u64,
    },
    /// This warrant request (holder and nonce) was already admitted inside the window.
    #[error("replayed warrant request")]
    Replayed,

    // Outcomes / local.
    /// A wait ran out.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// No valid warrant is held.
    #[error("no valid warrant: ask the EPC first")]
    NoWarrant,
    /// The EPC's replay cache is full of requests still inside the window: it refuses new ones
    /// until some expire.
    #[error("replay cache full: try again later")]
    ReplayCacheFull,
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

crypto_error_from!(Error);

impl Error {
    /// The code a refusal carries.
    fn code(&self) -> u8 {
        match self {
            Self::Authentication => 1,
            Self::WarrantExpired { .. } => 2,
            Self::WrongIssuer(_) => 3,
            Self::WrongHolder => 4,
            Self::WrongRole => 5,
            Self::UnknownPeer(_) => 6,
            Self::UnsupportedVariant(_) => 7,
            Self::StaleRequest { .. } => REFUSED_STALE,
            Self::ReplayCacheFull => REFUSED_FULL,
            _ => 255,
        }
    }
}

/// The code of a warrant request refused for its timestamp.
const REFUSED_STALE: u8 = 8;
/// The code of a warrant request refused because the EPC's replay cache is full.
const REFUSED_FULL: u8 = 9;

/// What the MAC of a [`WarrantRefused`](m2msec_wire::e2sec::WarrantRefused) covers, under the
/// holder's pre-shared key: the EPC writes it, the holder checks it.
fn refusal_input<'a>(
    holder: &'a str,
    nonce: &'a [u8; 16],
    code: &'a [u8; 1],
    epc_time: &'a [u8; 8],
) -> [&'a [u8]; 6] {
    [
        LABEL,
        b"warrant refused",
        holder.as_bytes(),
        nonce,
        code,
        epc_time,
    ]
}

impl crate::outbox::WireMessage for Message {
    fn into_bytes(self) -> Vec<u8> {
        self.to_bytes()
    }
}

/// The E2SEC protocol as its roles share it ([`crate::Protocol`]): CBOR messages and this
/// module's [`Error`].
#[derive(Debug)]
pub enum E2sec {}

impl crate::Protocol for E2sec {
    type Message = Message;
    type Error = Error;
    type Wire = Message;

    fn decode(datagram: &[u8]) -> Result<Message, Error> {
        Ok(Message::decode(datagram)?)
    }
}

/// The E2SEC roles' queues: events `E`, the protocol's wire messages.
type Outbox<E> = crate::outbox::Outbox<E, <E2sec as crate::Protocol>::Wire>;
