//! Byte formats of the m2msec protocols.
//!
//! Every decoder here is total: any byte string either decodes into a typed value or yields an
//! [`Error`] naming what is wrong; none panics or allocates more than its input justifies.
//! The compact protocols (collab, and later sga, e2sec and the relay's management bodies) use
//! deterministically encoded CBOR (RFC 8949 §4.2) with the message type and a protocol version
//! first, as EDHOC and OSCORE do; see [`cbor`].
#![forbid(unsafe_code)]

pub mod cbor;
pub mod collab;
pub mod e2sec;
pub mod fragment;
pub mod mikey;
pub mod pcap;
pub mod relay;
pub mod sga;

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside an item.
    #[error("truncated input")]
    Truncated,
    /// An item of another CBOR type stood where `expected` was due.
    #[error("malformed CBOR: expected {expected}")]
    UnexpectedType {
        /// What the decoder wanted.
        expected: &'static str,
    },
    /// An array had another number of elements than the message defines.
    #[error("{what} has {found} elements, expected {expected}")]
    WrongArity {
        /// The structure being decoded.
        what: &'static str,
        /// Elements present.
        found: u64,
        /// Elements the format defines.
        expected: u64,
    },
    /// A fixed-size byte string had another length.
    #[error("byte string of {found} bytes where {expected} are required")]
    WrongLength {
        /// Bytes present.
        found: usize,
        /// Bytes required.
        expected: usize,
    },
    /// An integer did not fit its field.
    #[error("integer out of range")]
    IntegerRange,
    /// Bytes remained after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The encoding was valid CBOR but not the deterministic encoding (indefinite lengths,
    /// non-minimal integers): refused so that every message has exactly one byte form.
    #[error("non-deterministic CBOR encoding")]
    NonCanonical,
    /// The message type byte is not one this protocol defines.
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    /// The message is of another protocol version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u64),
    /// A text string was not UTF-8 or exceeded its bound.
    #[error("invalid text string")]
    InvalidText,
    /// A list exceeded the bound the format sets.
    #[error("list longer than {0} elements")]
    TooManyElements(usize),
    /// A relay header's flags byte set bits the format reserves: refused so that a future
    /// meaning of those bits is never silently ignored.
    #[error("reserved relay flag bits {0:#04x} set")]
    ReservedFlags(u8),
    /// A URL longer than the relay header's one-byte length field can carry.
    #[error("URL of {0} bytes exceeds the 255-byte limit")]
    UrlTooLong(usize),
    /// A relay URL (sink URL, CoAP target path) that is not of a form the relay can address.
    #[error("invalid relay URL: {0}")]
    InvalidUrl(&'static str),
    /// A CoAP request lacks an option the relay mapping requires.
    #[error("CoAP option {0} missing")]
    MissingCoapOption(u16),
    /// A CoAP option is repeated or has a value the relay mapping does not allow.
    #[error("invalid value of CoAP option {0}")]
    InvalidCoapOption(u16),
    /// A CoAP message of another code (method or response) than the mapping expects.
    #[error("unexpected CoAP code {0:#04x}")]
    UnexpectedCoapCode(u8),
    /// An enumeration's discriminant is not one the format defines.
    #[error("unknown {what} {value}")]
    UnknownVariant {
        /// The enumeration being decoded.
        what: &'static str,
        /// The discriminant found.
        value: u64,
    },
    /// A fragment of a message that cannot be one (see [`fragment`]), or fragments that do
    /// not add up to their message.
    #[error("invalid fragment: {0}")]
    Fragment(&'static str),
    /// A MIKEY (RFC 3830) message was malformed or could not be encoded.
    #[error("MIKEY: {0}")]
    Mikey(#[from] mikey::MikeyError),
}

/// Result of decoding.
pub type Result<T> = core::result::Result<T, Error>;
