//! MIKEY (RFC 3830) and the distributed hybrid mode of paper 001 (Abdmeziem and Tandjaoui).
//!
//! Three roles, one state machine each: [`Initiator`] (the constrained device, I), [`ThirdParty`]
//! (TPi) and [`Responder`] (R). The initiator runs RFC 3830's pre-shared-key mode or public-key
//! mode directly with a responder, or the distributed mode: it splits the TGK k-of-n and sends
//! part i to TPi in pre-shared-key mode; each TPi forwards its part to R in public-key mode,
//! signed by itself; R rebuilds the TGK from any k parts and proves it to I with a verification
//! message under a key derived from the TGK. I performs no public-key operation.
//!
//! Every message is RFC 3830 bytes (`m2msec_wire::mikey`), so an independent implementation
//! such as Wireshark's dissector reads them.
//!
//! # Interpretations (the RFC and the paper leave these open)
//! - **Crypto session ids.** The TEK of the i-th crypto session of the CS map uses cs_id = i,
//!   counting from 1 (RFC 3830 §4.1.3 with the SRTP-ID map of §6.1.1).
//! - **Verification MAC** (§5.2): HMAC over the verification message up to its MAC, then the
//!   initiator's identity data, the responder's identity data and the 64-bit timestamp of the
//!   message being verified, each as raw bytes.
//! - **Distributed parameters** travel in a General Extension payload of type
//!   [`DISTRIBUTED_EXT_TYPE`] (see [`DistributedParams`]): part index, k, n, sharing scheme, TGK
//!   length, a commitment to the whole TGK, the original initiator's identity and where R sends
//!   its verification. TPi's message to R names TPi as its initiator (IDi, the signer) as
//!   public-key mode requires; the original initiator is named in the extension.
//! - **A third party that alters its part** signs a message R cannot tell from an honest one. I
//!   commits to the TGK (SHA-256 over a label, the CSB ID and the TGK) in every part; R accepts
//!   the commitment that at least k third parties agree on, rebuilds the TGK from k-subsets of
//!   the parts until one matches it, and so excludes the altered parts.
//! - **R → I verification** ("{HDR, T, \[IDR\]}TEK" in the paper) is an RFC 3830 verification
//!   message (data type PSK verification) whose MAC key is derived from the TGK as §4.1.4 derives
//!   keys from a PSK.
//! - **Error messages** (§5.1.2, §6.12): a responder or third party that refuses an I_MESSAGE
//!   whose header it could read answers with an RFC 3830 error message. It is unauthenticated, so
//!   an initiator treats it only as the reason to stop waiting.

mod initiator;
mod log;
mod message;
pub mod replay_store;
mod responder;
pub mod sim;
pub mod trace;

mod third_party;

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

use m2msec_crypto::hash;
use m2msec_crypto::mikey::{self as mk, EnvelopeScheme, KemacEncryption, SignScheme, TgkKey};
use m2msec_crypto::pke::PkePublicKey;
use m2msec_crypto::sig::VerifyingKey;
use m2msec_wire::mikey::{ErrorCode, GeneralExt, Message};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Millis, OpCounts};

use message::{
    Offer, Received, answer_refusal, check_verification, header, open_pk, open_psk, tgk_key_data,
    tgk_verification_keys, verification_message,
};

pub use initiator::{Initiator, InitiatorConfig, InitiatorEvent, Mode};
pub use responder::{Responder, ResponderConfig, ResponderEvent};
pub use third_party::{ThirdParty, ThirdPartyConfig, ThirdPartyEvent, ThirdPartyFault};

/// The IANA port for MIKEY.
pub const PORT: u16 = 2269;

/// General Extension type of [`DistributedParams`] (from the range IANA has not assigned).
pub const DISTRIBUTED_EXT_TYPE: u8 = 0xF1;

/// Length of the TGK the initiator makes.
pub const TGK_LEN: usize = 16;
/// Length of RAND.
const RAND_LEN: usize = 16;
/// Length of the envelope key of public-key mode.
const ENVELOPE_KEY_LEN: usize = 16;
/// Length of an RSA-2048 signature.
const RSA_SIGNATURE_LEN: usize = 256;

/// Seconds between the NTP epoch (1900) and the UNIX epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A peer with which this role shares a MIKEY pre-shared key.
#[derive(Clone)]
pub struct PskPeer {
    /// Identity, as carried in ID payloads (NAI).
    pub id: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// The pre-shared key.
    pub psk: Psk,
}

impl fmt::Debug for PskPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PskPeer")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A MIKEY pre-shared key: secret bytes, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Psk(Vec<u8>);

impl Psk {
    /// Wraps key bytes (at least 16).
    ///
    /// # Errors
    /// [`Error::Config`] when shorter than 16 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 16 {
            return Err(Error::Config(
                "a MIKEY pre-shared key has at least 16 bytes".into(),
            ));
        }
        m2msec_crypto::keylog::log("mikey psk", bytes);
        Ok(Self(bytes.to_vec()))
    }

    /// The key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A peer known by its public keys (public-key mode).
#[derive(Clone, Debug)]
pub struct PkPeer {
    /// Identity, as carried in ID payloads (NAI).
    pub id: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// Its RSA encryption key (for envelope keys sent to it), if it receives I_MESSAGEs.
    pub encryption_key: Option<PkePublicKey>,
    /// Its RSA signature key (to verify what it signs), if it sends I_MESSAGEs.
    pub verifying_key: Option<VerifyingKey>,
}

/// Choices every role shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Largest accepted difference between a message's timestamp and the local clock (§5.4).
    pub clock_skew: Duration,
    /// How long an initiator waits for verification, and a responder for the parts of a TGK.
    pub session: Duration,
    /// Whether initiators ask for verification messages (the V flag).
    pub verification: bool,
    /// KEMAC encryption.
    pub kemac_encryption: KemacEncryption,
    /// Envelope-key encryption of public-key mode.
    pub envelope: EnvelopeScheme,
    /// SIGN payload scheme of public-key mode.
    pub signature: SignScheme,
    /// How an initiator retransmits its I_MESSAGEs until verified (see [`crate::reliable`]).
    pub retransmit: crate::RetransmitPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(60),
            // Long enough for every retransmission of the I_MESSAGE on a lossy link.
            session: Duration::from_secs(20),
            verification: true,
            kemac_encryption: KemacEncryption::AesCm128,
            // The RFC's mandatory envelope encryption (see the crypto crate on RUSTSEC-2023-0071).
            envelope: EnvelopeScheme::RsaPkcs1v15,
            signature: SignScheme::Pkcs1v15Sha256,
            retransmit: crate::RetransmitPolicy::default(),
        }
    }
}

/// The traffic keys both ends derive from the TGK (§4.1.3) for the first crypto session.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TrafficKeys {
    tek: Vec<u8>,
    salt: Vec<u8>,
}

impl TrafficKeys {
    fn derive(ops: &mut OpCounts, tgk: &[u8], csb_id: u32, rand: &[u8]) -> Result<Self, Error> {
        ops.hash += 2;
        m2msec_crypto::keylog::log("mikey TGK", tgk);
        Ok(Self {
            tek: mk::derive_tgk_key(tgk, TgkKey::Tek, 1, csb_id, rand, 16)?.to_vec(),
            salt: mk::derive_tgk_key(tgk, TgkKey::Salt, 1, csb_id, rand, 14)?.to_vec(),
        })
    }

    /// A short, non-secret fingerprint for logs and demos.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 8] {
        crate::fingerprint(b"m2msec mikey ", &[&self.tek, &self.salt])
    }

    /// The TEK (SRTP master key) and its salt. For tests and traces.
    #[must_use]
    pub fn expose_for_testing_only(&self) -> (&[u8], &[u8]) {
        (&self.tek, &self.salt)
    }
}

impl fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TrafficKeys(fingerprint {})",
            m2msec_wire::cbor::hex(&self.fingerprint())
        )
    }
}

/// A completed key exchange.
#[derive(Clone, Debug)]
pub struct Established {
    /// The crypto session bundle.
    pub csb_id: u32,
    /// The other end.
    pub peer: String,
    /// Which mode carried the TGK.
    pub mode: ModeName,
    /// TEK and salt of the first crypto session.
    pub keys: TrafficKeys,
    /// Whether the other end proved it holds the TGK (a verification message arrived).
    pub verified: bool,
}

/// The three ways a TGK travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeName {
    /// RFC 3830 pre-shared-key mode.
    Psk,
    /// RFC 3830 public-key mode.
    Pk,
    /// The distributed hybrid mode over third parties.
    Distributed,
}

impl ModeName {
    /// Its name on the command line and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Psk => "psk",
            Self::Pk => "pk",
            Self::Distributed => "distributed",
        }
    }
}

/// Why a message was refused or an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Bad bytes.
    /// Not a well-formed MIKEY message.
    #[error("malformed MIKEY message: {0}")]
    Decode(#[from] m2msec_wire::Error),
    /// A key or value inside the message is malformed.
    #[error("malformed cryptographic value: {0}")]
    Crypto(m2msec_crypto::Error),

    // The peer's fault.
    /// A MAC or signature did not verify, or a ciphertext did not decrypt (deliberately
    /// unspecific).
    #[error("authentication failed")]
    Authentication,
    /// The timestamp lies outside the allowed clock skew (§5.4).
    #[error("timestamp outside the allowed clock skew")]
    TimestampOutsideWindow,
    /// The message was seen before (replay cache, §5.4).
    #[error("replayed message")]
    Replayed,
    /// The sender's identity is not configured here.
    #[error("unknown identity {0:?}")]
    UnknownIdentity(String),
    /// A payload the mode requires is missing, or one it forbids is present.
    #[error("{0}")]
    Malformed(&'static str),
    /// The message does not fit the exchange's state.
    #[error("unexpected {0} message")]
    UnexpectedMessage(&'static str),
    /// The peer answered with an RFC 3830 error message.
    #[error("peer reported error {0:?}")]
    PeerError(ErrorCode),
    /// The parts of a distributed TGK did not rebuild a TGK matching its commitment.
    #[error("{valid} consistent TGK parts, {needed} needed")]
    NotEnoughParts {
        /// Parts that fit the commitment.
        valid: usize,
        /// Threshold k.
        needed: usize,
    },

    // Outcomes.
    /// A wait ran out.
    #[error("timed out while {0}")]
    Timeout(&'static str),

    // Local misuse.
    /// An exchange is already running on this initiator.
    #[error("an exchange is already in progress")]
    Busy,
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

crypto_error_from!(Error);

impl Error {
    /// The RFC 3830 §6.12 code to report this error with.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Decode(m2msec_wire::Error::Mikey(e)) => e.error_code(),
            Self::Authentication | Self::Replayed => ErrorCode::AuthFailure,
            Self::TimestampOutsideWindow => ErrorCode::InvalidTs,
            Self::UnknownIdentity(_) => ErrorCode::InvalidId,
            _ => ErrorCode::Unspecified,
        }
    }
}

/// The distributed mode's parameters, carried in a General Extension payload.
///
/// Layout (all integers big-endian): version (1), part index, k, n, sharing scheme id, TGK
/// length (2 bytes), TGK commitment (32), the initiator's timestamp (8), then two
/// length-prefixed (1 byte) strings: the original initiator's identity and the address R
/// answers it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedParams {
    /// This part's index (0-based).
    pub index: u8,
    /// Parts needed (k).
    pub k: u8,
    /// Parts made (n).
    pub n: u8,
    /// Sharing scheme id (`m2msec_crypto::split::SharingScheme`).
    pub sharing: u8,
    /// Length of the TGK.
    pub tgk_len: u16,
    /// SHA-256 commitment to the TGK.
    pub commitment: [u8; 32],
    /// The original initiator.
    pub initiator: String,
    /// Where R sends its verification to the initiator (filled in by the third party from the
    /// address the initiator's message came from).
    pub reply_to: String,
    /// The timestamp of the initiator's messages, which R's verification covers.
    pub initiator_ts: u64,
}

impl DistributedParams {
    const VERSION: u8 = 1;

    fn to_ext(&self) -> GeneralExt {
        let mut data = vec![Self::VERSION, self.index, self.k, self.n, self.sharing];
        data.extend_from_slice(&self.tgk_len.to_be_bytes());
        data.extend_from_slice(&self.commitment);
        data.extend_from_slice(&self.initiator_ts.to_be_bytes());
        for s in [&self.initiator, &self.reply_to] {
            data.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
            data.extend(s.bytes().take(255));
        }
        GeneralExt {
            ext_type: DISTRIBUTED_EXT_TYPE,
            data,
        }
    }

    fn from_ext(ext: &GeneralExt) -> Result<Self, Error> {
        const BAD: Error = Error::Malformed("malformed distributed-mode extension");
        let d = &ext.data;
        if ext.ext_type != DISTRIBUTED_EXT_TYPE || d.len() < 47 || d[0] != Self::VERSION {
            return Err(BAD);
        }
        let mut commitment = [0; 32];
        commitment.copy_from_slice(&d[7..39]);
        let mut ts = [0; 8];
        ts.copy_from_slice(&d[39..47]);
        let mut rest = &d[47..];
        let mut strings = Vec::with_capacity(2);
        for _ in 0..2 {
            let (&len, tail) = rest.split_first().ok_or(BAD)?;
            let len = usize::from(len);
            let s = tail.get(..len).ok_or(BAD)?;
            strings.push(String::from_utf8(s.to_vec()).map_err(|_| BAD)?);
            rest = &tail[len..];
        }
        if !rest.is_empty() || d[1] >= d[3] || d[2] == 0 || d[2] > d[3] {
            return Err(BAD);
        }
        let reply_to = strings.pop().ok_or(BAD)?;
        let initiator = strings.pop().ok_or(BAD)?;
        Ok(Self {
            index: d[1],
            k: d[2],
            n: d[3],
            sharing: d[4],
            tgk_len: u16::from_be_bytes([d[5], d[6]]),
            commitment,
            initiator,
            reply_to,
            initiator_ts: u64::from_be_bytes(ts),
        })
    }
}

/// I's commitment to the TGK (see the module docs).
fn tgk_commitment(ops: &mut OpCounts, csb_id: u32, tgk: &[u8]) -> [u8; 32] {
    ops.hash += 1;
    hash::sha256_length_prefixed(&[b"m2msec mikey tgk commitment", &csb_id.to_be_bytes(), tgk])
}

/// NTP-UTC 64-bit timestamp (§6.6) of `now` (milliseconds since the UNIX epoch).
#[must_use]
pub fn ntp_of(now: Millis) -> u64 {
    let secs = now.0 / 1000 + NTP_UNIX_OFFSET;
    let frac = ((now.0 % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// Milliseconds since the UNIX epoch of an NTP 64-bit timestamp (saturating before 1970).
#[must_use]
pub fn millis_of_ntp(ntp: u64) -> Millis {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let frac = ((ntp & 0xffff_ffff) * 1000) >> 32;
    Millis(secs * 1000 + frac)
}

/// Replay protection of §5.4: a timestamp window and a cache of what was accepted inside it
/// ([`crate::replay`], keyed by a digest of the whole message). Unbounded, as before the cache
/// was shared: only authenticated messages enter it and each leaves after the clock skew.
#[derive(Debug)]
struct ReplayCache(crate::replay::ReplayCache);

impl Default for ReplayCache {
    fn default() -> Self {
        Self(crate::replay::ReplayCache::with_capacity(usize::MAX))
    }
}

impl ReplayCache {
    /// Checks a message's timestamp against the window and its digest against the cache, then
    /// records it. Call only after the message authenticated, so forgeries cannot fill the cache.
    fn admit(
        &mut self,
        now: Millis,
        skew: Duration,
        ts: u64,
        authenticated: &[u8],
    ) -> Result<[u8; 32], Error> {
        use crate::replay::Refusal;
        let digest = hash::sha256_length_prefixed(&[b"m2msec mikey replay", authenticated]);
        self.0
            .admit(now, skew, millis_of_ntp(ts), digest)
            .map_err(|r| match r {
                Refusal::OutsideWindow => Error::TimestampOutsideWindow,
                // `Full` cannot happen with an unbounded cache; refusing is the safe answer.
                Refusal::Replayed | Refusal::Full => Error::Replayed,
            })?;
        Ok(digest)
    }

    fn restore(&mut self, entries: impl IntoIterator<Item = ([u8; 32], Millis)>) {
        self.0.restore(entries);
    }
}

/// A decoded MIKEY message with the bytes it arrived as (MACs and signatures cover those
/// bytes): what the MIKEY roles' [`ProtocolRole::handle`](crate::ProtocolRole::handle) reads.
#[derive(Debug)]
pub struct Datagram {
    msg: Message,
    bytes: Vec<u8>,
}

impl Datagram {
    /// Parses RFC 3830 bytes, keeping them.
    ///
    /// # Errors
    /// Bytes that are not a MIKEY message.
    pub fn decode(bytes: &[u8]) -> Result<Self, m2msec_wire::Error> {
        Ok(Self {
            msg: Message::decode(bytes)?,
            bytes: bytes.to_vec(),
        })
    }
}

/// The MIKEY protocol as its roles share it ([`crate::Protocol`]): RFC 3830 messages kept with
/// their bytes, and this module's [`Error`].
#[derive(Debug)]
pub enum Mikey {}

impl crate::Protocol for Mikey {
    type Message = Datagram;
    type Error = Error;
    type Wire = Vec<u8>;

    fn decode(datagram: &[u8]) -> Result<Datagram, Error> {
        Ok(Datagram::decode(datagram)?)
    }
}

/// The MIKEY roles' queues: events `E`, the protocol's wire messages.
type Outbox<E> = crate::outbox::Outbox<E, <Mikey as crate::Protocol>::Wire>;
