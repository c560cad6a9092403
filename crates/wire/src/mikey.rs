//! MIKEY (RFC 3830) messages, byte for byte.
//!
//! A message is the common header (HDR, RFC 3830 §6.1) followed by a chain of payloads, each
//! announcing the type of the one after it in its first byte ("next payload"); the header carries
//! the type of the first. The chain is computed by [`Message::encode`] from the order of
//! [`Message::payloads`] — never taken from the caller — and checked by [`Message::decode`]. The
//! SIGN payload (§6.5) has no next-payload field and is always last.
//!
//! The field layouts follow RFC 3830 §6 and were checked against the independent implementation in
//! Wireshark (`epan/dissectors/packet-mikey.c`), which must be able to dissect what we send.
//!
//! What a MAC or signature covers (§5.2: the whole message except the MAC/signature field itself)
//! is computed by [`mac_input`], [`kemac_mac_input`] and [`signature_input`] on received bytes,
//! and by the methods of the same names on a [`Message`] about to be sent.
//!
//! The KEMAC payload (§6.2) carries its key material as an opaque, usually encrypted, byte string;
//! the plaintext — a chain of Key Data sub-payloads (§6.13), preceded by the initiator's ID in the
//! public-key mode (§3.2) — is [`KemacPlaintext`], encoded and decoded separately so that the
//! protocol can encrypt and decrypt it.

use core::ops::Range;

use crate::{Error, Result};

mod cursor;
mod key_data;
mod payloads;

use cursor::Cursor;
pub use key_data::{KemacPlaintext, KeyData, KeyKind, KeyValidity};
pub use payloads::{
    Cert, Chash, ErrorPayload, GeneralExt, Id, Kemac, Mac, Pke, Rand, SecurityPolicy, Sign,
    SpParam, SrtpPolicy, Timestamp, Verification,
};

/// The only MIKEY version (RFC 3830 §6.1).
pub const VERSION: u8 = 1;

/// Data type codes of the common header (RFC 3830 §6.1, Table 6.1.a).
pub mod data_type {
    /// Pre-shared key I_MESSAGE.
    pub const PRE_SHARED: u8 = 0;
    /// Pre-shared key verification message.
    pub const PSK_VERIFY: u8 = 1;
    /// Public-key I_MESSAGE.
    pub const PUBLIC_KEY: u8 = 2;
    /// Public-key verification message.
    pub const PK_VERIFY: u8 = 3;
    /// Diffie-Hellman I_MESSAGE.
    pub const DH_INIT: u8 = 4;
    /// Diffie-Hellman R_MESSAGE.
    pub const DH_RESP: u8 = 5;
    /// Error message.
    pub const ERROR: u8 = 6;
}

/// Payload type codes used in next-payload fields (RFC 3830 §6.1, Table 6.1.b).
pub mod payload_type {
    /// No further payload.
    pub const LAST: u8 = 0;
    /// Key data transport (§6.2).
    pub const KEMAC: u8 = 1;
    /// Envelope data (§6.4).
    pub const PKE: u8 = 2;
    /// Diffie-Hellman data (§6.3; not implemented here).
    pub const DH: u8 = 3;
    /// Signature (§6.5).
    pub const SIGN: u8 = 4;
    /// Timestamp (§6.6).
    pub const T: u8 = 5;
    /// Identity (§6.7).
    pub const ID: u8 = 6;
    /// Certificate (§6.7).
    pub const CERT: u8 = 7;
    /// Certificate hash (§6.8).
    pub const CHASH: u8 = 8;
    /// Verification message (§6.9).
    pub const V: u8 = 9;
    /// Security policy (§6.10).
    pub const SP: u8 = 10;
    /// Random value (§6.11).
    pub const RAND: u8 = 11;
    /// Error (§6.12).
    pub const ERR: u8 = 12;
    /// Key data sub-payload (§6.13), only inside a KEMAC's plaintext.
    pub const KEY_DATA: u8 = 20;
    /// General extension (§6.15).
    pub const GENERAL_EXT: u8 = 21;
}

/// SRTP policy parameter types of the SP payload (RFC 3830 §6.10.1, Table 6.10.1.a).
pub mod srtp_param {
    /// Encryption algorithm ([`SrtpEncrAlg`](super::SrtpEncrAlg)).
    pub const ENCR_ALG: u8 = 0;
    /// Session encryption key length, in bytes.
    pub const ENCR_KEY_LEN: u8 = 1;
    /// Authentication algorithm ([`SrtpAuthAlg`](super::SrtpAuthAlg)).
    pub const AUTH_ALG: u8 = 2;
    /// Session authentication key length, in bytes.
    pub const AUTH_KEY_LEN: u8 = 3;
    /// Session salt key length, in bytes.
    pub const SALT_KEY_LEN: u8 = 4;
    /// SRTP pseudo-random function (0 = AES-CM).
    pub const PRF: u8 = 5;
    /// Key derivation rate.
    pub const KD_RATE: u8 = 6;
    /// SRTP encryption off (0) / on (1).
    pub const SRTP_ENCR: u8 = 7;
    /// SRTCP encryption off (0) / on (1).
    pub const SRTCP_ENCR: u8 = 8;
    /// Sender's FEC order (0 = FEC-SRTP).
    pub const FEC_ORDER: u8 = 9;
    /// SRTP authentication off (0) / on (1).
    pub const SRTP_AUTH: u8 = 10;
    /// Authentication tag length, in bytes.
    pub const AUTH_TAG_LEN: u8 = 11;
    /// SRTP prefix length.
    pub const SRTP_PREFIX_LEN: u8 = 12;
}

/// General extension types (RFC 3830 §6.15; RFC 4567 §4.1 for SDP IDs; RFC 4563 §4 for Key ID).
pub mod general_ext {
    /// Vendor ID.
    pub const VENDOR_ID: u8 = 0;
    /// SDP IDs.
    pub const SDP_IDS: u8 = 1;
    /// Key ID.
    pub const KEY_ID: u8 = 2;
}

/// A field holding a code point, named in [`MikeyError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// HDR data type.
    DataType,
    /// HDR PRF func.
    PrfFunc,
    /// HDR CS ID map type.
    CsIdMapType,
    /// KEMAC encryption algorithm.
    EncrAlg,
    /// KEMAC or V MAC algorithm.
    MacAlg,
    /// PKE cache indicator C.
    PkeCache,
    /// SIGN signature type.
    SignType,
    /// T timestamp type.
    TsType,
    /// ID type.
    IdType,
    /// CERT type.
    CertType,
    /// CHASH hash function.
    HashFunc,
    /// SP protocol type.
    SpProtType,
    /// ERR error number.
    ErrorCode,
    /// Key data type.
    KeyType,
    /// Key data key validity type.
    KvType,
    /// SRTP policy encryption algorithm.
    SrtpEncrAlg,
    /// SRTP policy authentication algorithm.
    SrtpAuthAlg,
}

/// Why MIKEY bytes were refused (wrapped in [`Error::Mikey`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MikeyError {
    /// The input ended inside `what`.
    #[error("truncated MIKEY {what}")]
    Truncated {
        /// The payload or field being read.
        what: &'static str,
    },
    /// The header's version is not 1.
    #[error("unsupported MIKEY version {0}")]
    UnsupportedVersion(u8),
    /// A code point this implementation does not know (including unknown data types).
    #[error("unsupported {field:?} value {value}")]
    Unsupported {
        /// The field.
        field: Field,
        /// Its value on the wire.
        value: u8,
    },
    /// A next-payload field named a payload type this implementation does not decode (unknown,
    /// or DH, which the modes used here do not need).
    #[error("unknown MIKEY payload type {0}")]
    UnknownPayloadType(u8),
    /// A next-payload field named a type not allowed at that place (a Key data sub-payload outside a
    /// KEMAC's plaintext, or anything but Key data inside one).
    #[error("payload type {next} may not follow {after}")]
    BadChain {
        /// The payload whose next-payload field is wrong.
        after: &'static str,
        /// The type it announced.
        next: u8,
    },
    /// A length field runs past the structure that encloses it (an SP parameter past the policy
    /// parameter block).
    #[error("length of {what} overflows its enclosing structure")]
    LengthOverflow {
        /// The item whose length is wrong.
        what: &'static str,
    },
    /// A SIGN payload was followed by more bytes or payloads; it must be last (§6.5).
    #[error("SIGN payload is not the last payload")]
    SignNotLast,
    /// Bytes remained after the last payload.
    #[error("{0} trailing bytes after the MIKEY message")]
    TrailingBytes(usize),
    /// A reserved field was not zero.
    #[error("reserved field of {what} is not zero")]
    ReservedNonZero {
        /// The payload.
        what: &'static str,
    },
    /// A field is too long for its length field (encoding only).
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The most its length field can express.
        max: usize,
    },
    /// A payload the operation needs is absent.
    #[error("no {what} payload in the message")]
    MissingPayload {
        /// The payload looked for.
        what: &'static str,
    },
    /// A security policy parameter has a malformed value (wrong length, repeated, not 0/1).
    #[error("malformed security policy parameter {param_type}")]
    BadParam {
        /// The parameter type.
        param_type: u8,
    },
}

impl MikeyError {
    /// The RFC 3830 §6.12 error number a responder answers this failure with.
    #[must_use]
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Unsupported { field, .. } => match field {
                Field::DataType => ErrorCode::InvalidDt,
                Field::PrfFunc => ErrorCode::InvalidPrf,
                Field::MacAlg => ErrorCode::InvalidMac,
                Field::EncrAlg => ErrorCode::InvalidEa,
                Field::HashFunc => ErrorCode::InvalidHa,
                Field::IdType => ErrorCode::InvalidId,
                Field::CertType => ErrorCode::InvalidCert,
                Field::SpProtType => ErrorCode::InvalidSp,
                Field::TsType => ErrorCode::InvalidTs,
                Field::SrtpEncrAlg | Field::SrtpAuthAlg => ErrorCode::InvalidSpPar,
                _ => ErrorCode::Unspecified,
            },
            Self::BadParam { .. } => ErrorCode::InvalidSpPar,
            _ => ErrorCode::Unspecified,
        }
    }
}

macro_rules! code_points {
    ($(#[$m:meta])* $name:ident, $field:ident { $($(#[$vm:meta])* $var:ident = $val:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vm])* $var = $val,)+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$var,)+];

            /// The code on the wire.
            #[must_use]
            pub const fn code(self) -> u8 {
                self as u8
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> Self {
                v as Self
            }
        }

        impl TryFrom<u8> for $name {
            type Error = Error;

            fn try_from(value: u8) -> Result<Self> {
                match value {
                    $($val => Ok(Self::$var),)+
                    _ => Err(MikeyError::Unsupported { field: Field::$field, value }.into()),
                }
            }
        }
    };
}

code_points! {
    /// Message data type (RFC 3830 §6.1, Table 6.1.a).
    DataType, DataType {
        /// Pre-shared key I_MESSAGE.
        PreShared = 0,
        /// Pre-shared key verification message.
        PskVerify = 1,
        /// Public-key I_MESSAGE.
        PublicKey = 2,
        /// Public-key verification message.
        PkVerify = 3,
        /// Diffie-Hellman I_MESSAGE.
        DhInit = 4,
        /// Diffie-Hellman R_MESSAGE.
        DhResp = 5,
        /// Error message.
        Error = 6,
    }
}

code_points! {
    /// Key derivation PRF (RFC 3830 §6.1, Table 6.1.c); 7 bits on the wire.
    PrfFunc, PrfFunc {
        /// MIKEY-1 (§4.1.2).
        Mikey1 = 0,
    }
}

code_points! {
    /// KEMAC encryption algorithm (RFC 3830 §6.2, Table 6.2.a).
    EncrAlg, EncrAlg {
        /// No encryption.
        Null = 0,
        /// AES in counter mode, 128-bit key (§4.2.3).
        AesCm128 = 1,
        /// AES key wrap, 128-bit key (§4.2.3).
        AesKw128 = 2,
    }
}

code_points! {
    /// PKE envelope key cache indicator C (RFC 3830 §6.4); 2 bits on the wire.
    PkeCache, PkeCache {
        /// The envelope key must not be cached.
        NoCache = 0,
        /// The envelope key may be cached.
        Cache = 1,
        /// The envelope key may be cached for this CSB only.
        CacheForCsb = 2,
    }
}

code_points! {
    /// Signature scheme of the SIGN payload (RFC 3830 §6.5); 4 bits on the wire.
    SignType, SignType {
        /// RSA with PKCS#1 v1.5 padding.
        Pkcs1v15 = 0,
        /// RSA-PSS.
        Pss = 1,
    }
}

code_points! {
    /// Identity type (RFC 3830 §6.7, Table 6.7.a).
    IdType, IdType {
        /// Network access identifier.
        Nai = 0,
        /// URI.
        Uri = 1,
    }
}

code_points! {
    /// Certificate type (RFC 3830 §6.7, Table 6.7.b).
    CertType, CertType {
        /// X.509v3 certificate.
        X509v3 = 0,
        /// URL of an X.509v3 certificate.
        X509v3Url = 1,
        /// X.509v3 signature certificate.
        X509v3Sign = 2,
        /// X.509v3 encryption certificate.
        X509v3Encr = 3,
    }
}

code_points! {
    /// Security protocol of an SP payload (RFC 3830 §6.10, Table 6.10.a).
    SpProtType, SpProtType {
        /// SRTP.
        Srtp = 0,
    }
}

code_points! {
    /// Error numbers of the ERR payload (RFC 3830 §6.12, Table 6.12.a).
    ErrorCode, ErrorCode {
        /// Authentication failure.
        AuthFailure = 0,
        /// Invalid timestamp.
        InvalidTs = 1,
        /// PRF function not supported.
        InvalidPrf = 2,
        /// MAC algorithm not supported.
        InvalidMac = 3,
        /// Encryption algorithm not supported.
        InvalidEa = 4,
        /// Hash function not supported.
        InvalidHa = 5,
        /// DH group not supported.
        InvalidDh = 6,
        /// ID not supported.
        InvalidId = 7,
        /// Certificate not supported.
        InvalidCert = 8,
        /// SP type not supported.
        InvalidSp = 9,
        /// SP parameters not supported.
        InvalidSpPar = 10,
        /// Data type not supported.
        InvalidDt = 11,
        /// Unspecified error.
        Unspecified = 12,
    }
}

code_points! {
    /// SRTP encryption algorithm policy value (RFC 3830 §6.10.1, Table 6.10.1.b).
    SrtpEncrAlg, SrtpEncrAlg {
        /// No encryption.
        Null = 0,
        /// AES in counter mode.
        AesCm = 1,
        /// AES in f8 mode.
        AesF8 = 2,
    }
}

code_points! {
    /// SRTP authentication algorithm policy value (RFC 3830 §6.10.1, Table 6.10.1.c).
    SrtpAuthAlg, SrtpAuthAlg {
        /// No authentication.
        Null = 0,
        /// HMAC-SHA-1.
        HmacSha1 = 1,
    }
}

/// One crypto session of the SRTP-ID map (RFC 3830 §6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrtpCs {
    /// The SP payload's policy number this session uses.
    pub policy_no: u8,
    /// The SRTP stream's SSRC.
    pub ssrc: u32,
    /// The current rollover counter.
    pub roc: u32,
}

/// The common header (HDR, RFC 3830 §6.1).
///
/// The version (always [`VERSION`]) and the next-payload field (computed by the encoder) are not
/// fields; the CS ID map type is always SRTP-ID (0) and `#CS` is `cs_map.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The message's data type.
    pub data_type: DataType,
    /// The V flag: the initiator asks for a verification message.
    pub v: bool,
    /// The PRF for key derivation.
    pub prf: PrfFunc,
    /// Crypto session bundle identifier.
    pub csb_id: u32,
    /// One entry per crypto session (at most 255).
    pub cs_map: Vec<SrtpCs>,
}

/// CS ID map type SRTP-ID (RFC 3830 §6.1, Table 6.1.d).
const CS_ID_MAP_SRTP: u8 = 0;
/// Bytes of the fixed part of HDR.
const HDR_LEN: usize = 10;
/// Bytes of one SRTP-ID map entry (§6.1.1).
const SRTP_CS_LEN: usize = 9;

/// One payload of a message (RFC 3830 §6.2–§6.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Key data transport (§6.2).
    Kemac(Kemac),
    /// Envelope data (§6.4).
    Pke(Pke),
    /// Signature (§6.5); must be last.
    Sign(Sign),
    /// Timestamp (§6.6).
    T(Timestamp),
    /// Identity (§6.7).
    Id(Id),
    /// Certificate (§6.7).
    Cert(Cert),
    /// Certificate hash (§6.8).
    Chash(Chash),
    /// Verification message (§6.9).
    V(Verification),
    /// Security policy (§6.10).
    Sp(SecurityPolicy),
    /// Random value (§6.11).
    Rand(Rand),
    /// Error (§6.12).
    Err(ErrorPayload),
    /// General extension (§6.15).
    GeneralExt(GeneralExt),
}

impl Payload {
    /// The payload type code (§6.1, Table 6.1.b) announced for this payload.
    #[must_use]
    pub fn type_code(&self) -> u8 {
        match self {
            Self::Kemac(_) => payload_type::KEMAC,
            Self::Pke(_) => payload_type::PKE,
            Self::Sign(_) => payload_type::SIGN,
            Self::T(_) => payload_type::T,
            Self::Id(_) => payload_type::ID,
            Self::Cert(_) => payload_type::CERT,
            Self::Chash(_) => payload_type::CHASH,
            Self::V(_) => payload_type::V,
            Self::Sp(_) => payload_type::SP,
            Self::Rand(_) => payload_type::RAND,
            Self::Err(_) => payload_type::ERR,
            Self::GeneralExt(_) => payload_type::GENERAL_EXT,
        }
    }

    /// The payload's name, as in the RFC's figures.
    #[must_use]
    pub fn name(&self) -> &'static str {
        type_name(self.type_code())
    }

    /// Appends the payload; returns the range of its MAC or signature field, if it has one.
    fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<Option<Range<usize>>> {
        match self {
            Self::Kemac(p) => return p.encode(next, out).map(Some),
            Self::Sign(p) => return p.encode(out).map(Some),
            Self::V(p) => return Ok(Some(p.encode(next, out))),
            Self::Pke(p) => p.encode(next, out)?,
            Self::T(p) => p.encode(next, out),
            Self::Id(p) => p.encode(next, out)?,
            Self::Cert(p) => p.encode(next, out)?,
            Self::Chash(p) => p.encode(next, out),
            Self::Sp(p) => p.encode(next, out)?,
            Self::Rand(p) => p.encode(next, out)?,
            Self::Err(p) => p.encode(next, out),
            Self::GeneralExt(p) => p.encode(next, out)?,
        }
        Ok(None)
    }
}

/// The name of a payload type, for error messages.
fn type_name(code: u8) -> &'static str {
    match code {
        payload_type::KEMAC => "KEMAC",
        payload_type::PKE => "PKE",
        payload_type::DH => "DH",
        payload_type::SIGN => "SIGN",
        payload_type::T => "T",
        payload_type::ID => "ID",
        payload_type::CERT => "CERT",
        payload_type::CHASH => "CHASH",
        payload_type::V => "V",
        payload_type::SP => "SP",
        payload_type::RAND => "RAND",
        payload_type::ERR => "ERR",
        payload_type::KEY_DATA => "Key data",
        payload_type::GENERAL_EXT => "General Ext.",
        _ => "unknown payload",
    }
}

/// A MIKEY message: the common header and its payloads in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The common header.
    pub header: Header,
    /// The payloads, in order; a [`Payload::Sign`] may only be last.
    pub payloads: Vec<Payload>,
}

/// Where one payload sits in an encoded message.
#[derive(Debug, Clone)]
struct Span {
    /// The payload type code.
    code: u8,
    /// The whole payload.
    range: Range<usize>,
    /// Its MAC (KEMAC, V) or signature (SIGN) field.
    auth: Option<Range<usize>>,
}

impl Message {
    /// The RFC 3830 bytes of the message; next-payload fields are computed from the payload order.
    ///
    /// # Errors
    /// [`MikeyError::SignNotLast`], or [`MikeyError::TooLong`] when a field exceeds what its
    /// length field can express (more than 255 crypto sessions, a signature over 4095 bytes…).
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(self.encode_with_spans()?.0)
    }

    /// Decodes a whole message; any byte string either decodes or yields a typed error.
    ///
    /// # Errors
    /// [`Error::Mikey`] naming what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(decode_with_spans(bytes)?.0)
    }

    /// The bytes a MAC in the last KEMAC or V payload covers: the encoded message up to, excluding,
    /// that MAC field (see [`mac_input`]). The MAC's value does not matter, only its algorithm.
    ///
    /// # Errors
    /// As [`Message::encode`], or [`MikeyError::MissingPayload`].
    pub fn mac_input(&self) -> Result<Vec<u8>> {
        let (mut bytes, spans) = self.encode_with_spans()?;
        bytes.truncate(mac_span(&spans)?.start);
        Ok(bytes)
    }

    /// The bytes the MAC of the (first) KEMAC payload covers in the public-key mode: that payload
    /// alone, up to, excluding, its MAC field (see [`kemac_mac_input`]).
    ///
    /// # Errors
    /// As [`Message::encode`], or [`MikeyError::MissingPayload`].
    pub fn kemac_mac_input(&self) -> Result<Vec<u8>> {
        let (bytes, spans) = self.encode_with_spans()?;
        let r = kemac_span(&spans)?;
        Ok(bytes[r].to_vec())
    }

    /// The bytes the signature of the SIGN payload covers: the encoded message up to, excluding,
    /// the signature field (see [`signature_input`]). The SIGN payload's signature must already
    /// have its final length (the length is covered), not its final value.
    ///
    /// # Errors
    /// As [`Message::encode`], or [`MikeyError::MissingPayload`].
    pub fn signature_input(&self) -> Result<Vec<u8>> {
        let (mut bytes, spans) = self.encode_with_spans()?;
        bytes.truncate(sign_span(&spans)?.start);
        Ok(bytes)
    }

    fn encode_with_spans(&self) -> Result<(Vec<u8>, Vec<Span>)> {
        let h = &self.header;
        let ncs = u8::try_from(h.cs_map.len()).map_err(|_| MikeyError::TooLong {
            what: "CS ID map (#CS)",
            len: h.cs_map.len(),
            max: usize::from(u8::MAX),
        })?;
        let first = self
            .payloads
            .first()
            .map_or(payload_type::LAST, Payload::type_code);
        let mut out = Vec::with_capacity(HDR_LEN + SRTP_CS_LEN * h.cs_map.len() + 64);
        // RFC 3830 §6.1: version, data type, next payload, V (1 bit) | PRF func (7 bits), CSB ID,
        // #CS, CS ID map type, CS ID map info.
        out.push(VERSION);
        out.push(h.data_type.code());
        out.push(first);
        out.push((if h.v { 0x80 } else { 0 }) | h.prf.code());
        out.extend_from_slice(&h.csb_id.to_be_bytes());
        out.push(ncs);
        out.push(CS_ID_MAP_SRTP);
        for cs in &h.cs_map {
            // RFC 3830 §6.1.1: Policy_no_i, SSRC_i, ROC_i.
            out.push(cs.policy_no);
            out.extend_from_slice(&cs.ssrc.to_be_bytes());
            out.extend_from_slice(&cs.roc.to_be_bytes());
        }
        let mut spans = Vec::with_capacity(self.payloads.len());
        for (i, p) in self.payloads.iter().enumerate() {
            let next = self
                .payloads
                .get(i + 1)
                .map_or(payload_type::LAST, Payload::type_code);
            if matches!(p, Payload::Sign(_)) && next != payload_type::LAST {
                return Err(MikeyError::SignNotLast.into());
            }
            let start = out.len();
            let auth = p.encode(next, &mut out)?;
            spans.push(Span {
                code: p.type_code(),
                range: start..out.len(),
                auth,
            });
        }
        Ok((out, spans))
    }
}

fn decode_with_spans(bytes: &[u8]) -> Result<(Message, Vec<Span>)> {
    let mut c = Cursor::new(bytes);
    // RFC 3830 §6.1.
    let version = c.u8("HDR")?;
    if version != VERSION {
        return Err(MikeyError::UnsupportedVersion(version).into());
    }
    let data_type = DataType::try_from(c.u8("HDR")?)?;
    let mut next = c.u8("HDR")?;
    let v_prf = c.u8("HDR")?;
    let prf = PrfFunc::try_from(v_prf & 0x7f)?;
    let csb_id = c.u32("HDR")?;
    let ncs = c.u8("HDR")?;
    let map_type = c.u8("HDR")?;
    if map_type != CS_ID_MAP_SRTP {
        return Err(MikeyError::Unsupported {
            field: Field::CsIdMapType,
            value: map_type,
        }
        .into());
    }
    let mut cs_map = Vec::new();
    for _ in 0..ncs {
        cs_map.push(SrtpCs {
            policy_no: c.u8("CS ID map info")?,
            ssrc: c.u32("CS ID map info")?,
            roc: c.u32("CS ID map info")?,
        });
    }
    let header = Header {
        data_type,
        v: v_prf & 0x80 != 0,
        prf,
        csb_id,
        cs_map,
    };

    let mut payloads = Vec::new();
    let mut spans = Vec::new();
    let mut prev = "HDR";
    while next != payload_type::LAST {
        let start = c.pos();
        let code = next;
        let (payload, auth) = match code {
            payload_type::KEMAC => {
                let (p, n, mac) = Kemac::decode(&mut c)?;
                next = n;
                (Payload::Kemac(p), Some(mac))
            }
            payload_type::SIGN => {
                let (p, sig) = Sign::decode(&mut c)?;
                if c.remaining() != 0 {
                    return Err(MikeyError::SignNotLast.into());
                }
                next = payload_type::LAST;
                (Payload::Sign(p), Some(sig))
            }
            payload_type::V => {
                let (p, n, mac) = Verification::decode(&mut c)?;
                next = n;
                (Payload::V(p), Some(mac))
            }
            payload_type::PKE => decode_plain(&mut c, &mut next, Pke::decode, Payload::Pke)?,
            payload_type::T => decode_plain(&mut c, &mut next, Timestamp::decode, Payload::T)?,
            payload_type::ID => decode_plain(&mut c, &mut next, Id::decode, Payload::Id)?,
            payload_type::CERT => decode_plain(&mut c, &mut next, Cert::decode, Payload::Cert)?,
            payload_type::CHASH => decode_plain(&mut c, &mut next, Chash::decode, Payload::Chash)?,
            payload_type::SP => {
                decode_plain(&mut c, &mut next, SecurityPolicy::decode, Payload::Sp)?
            }
            payload_type::RAND => decode_plain(&mut c, &mut next, Rand::decode, Payload::Rand)?,
            payload_type::ERR => {
                decode_plain(&mut c, &mut next, ErrorPayload::decode, Payload::Err)?
            }
            payload_type::GENERAL_EXT => {
                decode_plain(&mut c, &mut next, GeneralExt::decode, Payload::GeneralExt)?
            }
            payload_type::KEY_DATA => {
                return Err(MikeyError::BadChain {
                    after: prev,
                    next: code,
                }
                .into());
            }
            other => return Err(MikeyError::UnknownPayloadType(other).into()),
        };
        prev = type_name(code);
        payloads.push(payload);
        spans.push(Span {
            code,
            range: start..c.pos(),
            auth,
        });
    }
    if c.remaining() != 0 {
        return Err(MikeyError::TrailingBytes(c.remaining()).into());
    }
    Ok((Message { header, payloads }, spans))
}

/// Decodes a payload without an authentication field, storing its next-payload field in `next`.
fn decode_plain<T>(
    c: &mut Cursor<'_>,
    next: &mut u8,
    decode: fn(&mut Cursor<'_>) -> Result<(T, u8)>,
    wrap: fn(T) -> Payload,
) -> Result<(Payload, Option<Range<usize>>)> {
    let (p, n) = decode(c)?;
    *next = n;
    Ok((wrap(p), None))
}

fn mac_span(spans: &[Span]) -> Result<Range<usize>> {
    spans
        .iter()
        .rev()
        .find(|s| s.code == payload_type::KEMAC || s.code == payload_type::V)
        .and_then(|s| s.auth.clone())
        .ok_or_else(|| MikeyError::MissingPayload { what: "KEMAC or V" }.into())
}

fn kemac_span(spans: &[Span]) -> Result<Range<usize>> {
    spans
        .iter()
        .find(|s| s.code == payload_type::KEMAC)
        .and_then(|s| s.auth.as_ref().map(|a| s.range.start..a.start))
        .ok_or_else(|| MikeyError::MissingPayload { what: "KEMAC" }.into())
}

fn sign_span(spans: &[Span]) -> Result<Range<usize>> {
    spans
        .iter()
        .find(|s| s.code == payload_type::SIGN)
        .and_then(|s| s.auth.clone())
        .ok_or_else(|| MikeyError::MissingPayload { what: "SIGN" }.into())
}

/// The bytes of a received message that the MAC of its last KEMAC or V payload covers: everything
/// before that MAC field (RFC 3830 §5.2: the entire message except the MAC field itself; KEMAC
/// ends the pre-shared-key I_MESSAGE and V ends the verification message, so nothing follows).
///
/// For the V payload of a verification message §5.2 also covers fields of the I_MESSAGE (the
/// identities and the timestamp): the protocol appends those to the returned bytes itself.
///
/// # Errors
/// Whatever [`Message::decode`] refuses, or [`MikeyError::MissingPayload`].
pub fn mac_input(bytes: &[u8]) -> Result<&[u8]> {
    let (_, spans) = decode_with_spans(bytes)?;
    Ok(&bytes[..mac_span(&spans)?.start])
}

/// The bytes of a received public-key-mode message that its KEMAC's MAC covers: the (first) KEMAC
/// payload alone, from its next-payload byte up to, excluding, its MAC field (RFC 3830 §3.2).
///
/// # Errors
/// Whatever [`Message::decode`] refuses, or [`MikeyError::MissingPayload`].
pub fn kemac_mac_input(bytes: &[u8]) -> Result<&[u8]> {
    let (_, spans) = decode_with_spans(bytes)?;
    Ok(&bytes[kemac_span(&spans)?])
}

/// The bytes of a received message that its SIGN payload's signature covers: everything before
/// the signature field, including the SIGN payload's S type and length (RFC 3830 §5.2, §6.5).
///
/// # Errors
/// Whatever [`Message::decode`] refuses, or [`MikeyError::MissingPayload`].
pub fn signature_input(bytes: &[u8]) -> Result<&[u8]> {
    let (_, spans) = decode_with_spans(bytes)?;
    Ok(&bytes[..sign_span(&spans)?.start])
}

/// A length as a `u8` field.
fn len_u8(what: &'static str, len: usize) -> Result<u8> {
    u8::try_from(len).map_err(|_| {
        MikeyError::TooLong {
            what,
            len,
            max: usize::from(u8::MAX),
        }
        .into()
    })
}

/// A length as a `u16` field, at most `max`.
fn len_u16(what: &'static str, len: usize, max: u16) -> Result<u16> {
    match u16::try_from(len) {
        Ok(l) if l <= max => Ok(l),
        _ => Err(MikeyError::TooLong {
            what,
            len,
            max: usize::from(max),
        }
        .into()),
    }
}
