//! Fragments: the datagrams that carry one message too large for the path between two roles.
//!
//! A 16 KiB collab CertRequest sent as one UDP datagram is split by IP into fragments that many
//! networks drop, so the sender cuts any message larger than its path allows into fragments of
//! its own, each a datagram that fits, and the receiver puts them together again
//! (`m2msec_protocol::fragment`). The same format serves every protocol whose roles run as an
//! `Endpoint` (collab, MIKEY, SGA, E2SEC):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | [`MARKER`], `0xfa` |
//! | 1 | 1 | format version, [`VERSION`] |
//! | 2 | 8 | message id: the first 8 bytes of the whole message's SHA-256, so that a retransmission's fragments fill the gaps of the first transmission's |
//! | 10 | 1 | index of this fragment, from 0 |
//! | 11 | 1 | count of fragments, 2 to 255 |
//! | 12 | rest | this fragment's bytes of the message, at least one |
//!
//! The marker starts no message of those protocols: theirs are CBOR arrays (`0x80`–`0x9f`) or
//! MIKEY headers (version `0x01`), and `0xfa` is not a CoAP version-1 first byte either.

use crate::{Error, Result};

/// First byte of every fragment.
pub const MARKER: u8 = 0xfa;
/// Version of the fragment format.
pub const VERSION: u8 = 1;
/// Bytes before a fragment's share of the message.
pub const HEADER_LEN: usize = 12;
/// Most fragments of one message (the count is one byte).
pub const MAX_COUNT: u8 = u8::MAX;

/// One fragment of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The message's id (see the module documentation).
    pub id: [u8; 8],
    /// Which fragment this is, from 0.
    pub index: u8,
    /// How many fragments the message has.
    pub count: u8,
    /// This fragment's bytes of the message.
    pub chunk: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Whether `datagram` is a fragment rather than a whole message (its first byte; the rest
    /// is checked by [`Fragment::decode`]).
    #[must_use]
    pub fn is_fragment(datagram: &[u8]) -> bool {
        datagram.first() == Some(&MARKER)
    }

    /// Reads a fragment.
    ///
    /// # Errors
    /// [`Error::Truncated`] for a datagram shorter than the header plus one byte,
    /// [`Error::UnsupportedVersion`] for another format version, [`Error::Fragment`] for a
    /// wrong marker, a count below 2 or an index not below the count.
    pub fn decode(datagram: &'a [u8]) -> Result<Self> {
        let (header, chunk) = datagram
            .split_at_checked(HEADER_LEN)
            .ok_or(Error::Truncated)?;
        let header: &[u8; HEADER_LEN] = header.try_into().map_err(|_| Error::Truncated)?;
        let [marker, version, id @ .., index, count] = *header;
        if marker != MARKER {
            return Err(Error::Fragment("not a fragment"));
        }
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version.into()));
        }
        if count < 2 {
            return Err(Error::Fragment("a message of fewer than 2 fragments"));
        }
        if index >= count {
            return Err(Error::Fragment("index beyond the count"));
        }
        if chunk.is_empty() {
            return Err(Error::Truncated);
        }
        Ok(Self {
            id,
            index,
            count,
            chunk,
        })
    }

    /// The fragment's datagram.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.chunk.len());
        out.extend_from_slice(&[MARKER, VERSION]);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&[self.index, self.count]);
        out.extend_from_slice(self.chunk);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let f = Fragment {
            id: [7; 8],
            index: 2,
            count: 3,
            chunk: b"abc",
        };
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN + 3);
        assert!(Fragment::is_fragment(&bytes));
        assert_eq!(Fragment::decode(&bytes).unwrap(), f);
    }

    #[test]
    fn bad_bytes_are_refused() {
        let good = Fragment {
            id: [1; 8],
            index: 0,
            count: 2,
            chunk: b"x",
        }
        .to_bytes();
        assert_eq!(Fragment::decode(&good[..HEADER_LEN]), Err(Error::Truncated));
        assert_eq!(Fragment::decode(&[]), Err(Error::Truncated));
        let with = |at: usize, value: u8| {
            let mut b = good.clone();
            b[at] = value;
            Fragment::decode(&b).map(|_| ())
        };
        assert!(matches!(with(0, 0x82), Err(Error::Fragment(_))));
        assert_eq!(with(1, 2), Err(Error::UnsupportedVersion(2)));
        assert!(matches!(with(11, 1), Err(Error::Fragment(_))));
        assert!(matches!(with(10, 2), Err(Error::Fragment(_))));
        // No message of the protocols that fragment starts with the marker.
        for first in [0x01, 0x80, 0x9f, 0x40, 0x7f] {
            assert!(!Fragment::is_fragment(&[first, 1, 2]));
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Fragment::decode(&bytes);
        }
    }
}
