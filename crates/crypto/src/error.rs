//! The crate's one error type.

/// Everything that can go wrong in `m2msec-crypto`.
///
/// Variants are grouped by whose fault it is: the peer's or an attacker's ([`Error::Authentication`]),
/// bad bytes ([`Error::Decode`], [`Error::UnknownSuite`], [`Error::Pem`]), or local misuse
/// ([`Error::InvalidParameter`], [`Error::NotEnoughShares`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tag, MAC, signature or one-time signature did not verify, or a ciphertext did not decrypt.
    ///
    /// Deliberately opaque: the reason is never reported, so the error cannot serve as an oracle.
    #[error("authentication failed")]
    Authentication,
    /// Malformed key, signature, path or ciphertext bytes.
    #[error("malformed {what}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
    },
    /// A suite or scheme identifier byte that this build does not know.
    #[error("unknown suite identifier {0}")]
    UnknownSuite(u8),
    /// A parameter outside its allowed range (k > n, n = 0, a wrong length, ...): a local bug.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// Fewer distinct shares than the threshold were supplied.
    #[error("not enough shares: have {have}, need {need}")]
    NotEnoughShares {
        /// Distinct shares supplied.
        have: usize,
        /// Threshold k.
        need: usize,
    },
    /// A PEM key file could not be read or written.
    #[error("key file: {0}")]
    Pem(String),
}

/// Result alias of this crate.
pub type Result<T> = core::result::Result<T, Error>;
