//! The relay's binary header for protected messages over plain UDP (paper 004 §III-E).
//!
//! ```text
//! byte 0      version = 1
//! byte 1      flags (STREAM 0x01, MANAGEMENT 0x02, REENCRYPTED 0x04; other bits must be 0)
//! bytes 2..6  message id (u32 BE)
//! bytes 6..8  stream id (u16 BE)
//! bytes 8..10 key index (u16 BE)
//! byte 10     source URL length L, then L bytes UTF-8
//! next byte   sink URL length M, then M bytes UTF-8 (empty = not yet known)
//! rest        body
//! ```
//!
//! For an individually protected message (STREAM clear) bytes 2..10 are one 64-bit random
//! number (§III-E: "the binary header contains a 64 bit random number"); for a stream message
//! that number "is divided in three parts" — message id, stream id and key index.

use core::fmt;

use crate::{Error, Result};

/// Version byte of the binary header.
pub const HEADER_VERSION: u8 = 1;

/// Longest source or sink URL the header's one-byte length field can carry.
pub const MAX_URL_LEN: usize = 255;

/// Bytes before the source URL: version, flags, message id, stream id, key index.
const FIXED_LEN: usize = 10;

/// The header's flags byte.
///
/// A newtype rather than a bare `u8` so that reserved bits can only enter through
/// [`Flags::from_bits`], which refuses them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// The message is part of a key stream (§III-C); clear for an individually protected one.
    pub const STREAM: Self = Self(0x01);
    /// The body is a `management::Body`: a section key sealed with AFGH.
    pub const MANAGEMENT: Self = Self(0x02);
    /// The AFGH part of the body is first-level: the proxy re-encrypted it. Not authenticated
    /// (see [`Header::aad`]) because the proxy, not the source, sets it.
    pub const REENCRYPTED: Self = Self(0x04);

    /// Every bit the format defines.
    const DEFINED: u8 = 0x07;

    /// No flag set: an individually protected message as the source sends it.
    #[must_use]
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Flags from a wire byte.
    ///
    /// # Errors
    /// [`Error::ReservedFlags`] when a bit the format reserves is set.
    pub const fn from_bits(bits: u8) -> Result<Self> {
        if bits & !Self::DEFINED == 0 {
            Ok(Self(bits))
        } else {
            Err(Error::ReservedFlags(bits & !Self::DEFINED))
        }
    }

    /// The wire byte.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set here.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags plus `other`.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These flags minus `other`.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (Self::STREAM, "STREAM"),
            (Self::MANAGEMENT, "MANAGEMENT"),
            (Self::REENCRYPTED, "REENCRYPTED"),
        ]
        .into_iter()
        .filter(|(flag, _)| self.contains(*flag))
        .map(|(_, name)| name)
        .collect();
        if names.is_empty() {
            f.write_str("Flags(empty)")
        } else {
            write!(f, "Flags({})", names.join("|"))
        }
    }
}

/// The header of a relay message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// What kind of message this is and whether the proxy re-encrypted it.
    pub flags: Flags,
    /// Random message id (stream messages) or the high 32 bits of the 64-bit random number
    /// (individual messages); also the CoAP token.
    pub message_id: u32,
    /// The key stream this message belongs to.
    pub stream_id: u16,
    /// The index of the section key in its stream.
    pub key_index: u16,
    /// The source's callback URL, naming who sealed the message.
    pub source: String,
    /// Where the message goes; empty while the sink is not yet known (stored at the proxy).
    pub sink: String,
}

impl Header {
    /// The header of an individually protected message: STREAM clear, bytes 2..10 carry `id`.
    #[must_use]
    pub fn individual(id: u64, source: String, sink: String) -> Self {
        let b = id.to_be_bytes();
        Self {
            flags: Flags::empty(),
            message_id: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            stream_id: u16::from_be_bytes([b[4], b[5]]),
            key_index: u16::from_be_bytes([b[6], b[7]]),
            source,
            sink,
        }
    }

    /// The 64-bit number in bytes 2..10: an individual message's random id (for a stream
    /// message, the concatenation of its message id, stream id and key index).
    #[must_use]
    pub fn individual_id(&self) -> u64 {
        (u64::from(self.message_id) << 32)
            | (u64::from(self.stream_id) << 16)
            | u64::from(self.key_index)
    }

    /// The bytes authenticated by the data AEAD and the management signature.
    ///
    /// Version, flags without REENCRYPTED, message id, stream id, key index and the source
    /// URL (as on the wire, with its length byte) — not the sink URL, which the proxy rewrites
    /// when forwarding, and not REENCRYPTED, which the proxy sets. Everything the source
    /// decides is bound; nothing the proxy legitimately changes is.
    ///
    /// A source longer than [`MAX_URL_LEN`] cannot be encoded; its length byte here saturates
    /// at 255 but the whole URL is still included, so distinct headers never share an aad.
    #[must_use]
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + 1 + self.source.len());
        self.write_fixed(&mut out, self.flags.without(Flags::REENCRYPTED));
        out.push(u8::try_from(self.source.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.source.as_bytes());
        out
    }

    /// The header's length on the wire.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + 2 + self.source.len() + self.sink.len()
    }

    fn write_fixed(&self, out: &mut Vec<u8>, flags: Flags) {
        out.push(HEADER_VERSION);
        out.push(flags.bits());
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.stream_id.to_be_bytes());
        out.extend_from_slice(&self.key_index.to_be_bytes());
    }
}

/// A relay message: the header and its opaque body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayMessage {
    /// The header.
    pub header: Header,
    /// The body: AEAD nonce ‖ ciphertext for data, a `management::Body` otherwise.
    pub body: Vec<u8>,
}

impl RelayMessage {
    /// The message as one UDP datagram.
    ///
    /// # Errors
    /// [`Error::UrlTooLong`] when the source or sink URL exceeds [`MAX_URL_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        let source_len = url_len(&self.header.source)?;
        let sink_len = url_len(&self.header.sink)?;
        let mut out = Vec::with_capacity(self.header.encoded_len() + self.body.len());
        self.header.write_fixed(&mut out, self.header.flags);
        out.push(source_len);
        out.extend_from_slice(self.header.source.as_bytes());
        out.push(sink_len);
        out.extend_from_slice(self.header.sink.as_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Decodes one datagram.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::UnsupportedVersion`], [`Error::ReservedFlags`] or
    /// [`Error::InvalidText`] (a URL that is not UTF-8); never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Cursor(bytes);
        let version = r.u8()?;
        if version != HEADER_VERSION {
            return Err(Error::UnsupportedVersion(u64::from(version)));
        }
        let flags = Flags::from_bits(r.u8()?)?;
        let message_id = u32::from_be_bytes(r.array()?);
        let stream_id = u16::from_be_bytes(r.array()?);
        let key_index = u16::from_be_bytes(r.array()?);
        let source = r.url()?;
        let sink = r.url()?;
        Ok(Self {
            header: Header {
                flags,
                message_id,
                stream_id,
                key_index,
                source,
                sink,
            },
            body: r.0.to_vec(),
        })
    }
}

fn url_len(url: &str) -> Result<u8> {
    u8::try_from(url.len()).map_err(|_| Error::UrlTooLong(url.len()))
}

/// The unread rest of a datagram.
struct Cursor<'b>(&'b [u8]);

impl<'b> Cursor<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8]> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Error::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        let [b] = self.array()?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Error::Truncated)
    }

    fn url(&mut self) -> Result<String> {
        let len = self.u8()?;
        let raw = self.take(usize::from(len))?;
        core::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| Error::InvalidText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_message() -> RelayMessage {
        RelayMessage {
            header: Header {
                flags: Flags::STREAM.with(Flags::MANAGEMENT),
                message_id: 0xdead_beef,
                stream_id: 0x0102,
                key_index: 0x0304,
                source: "coap://[::1]/s".into(),
                sink: "udp://10.0.0.1:9".into(),
            },
            body: vec![0xaa, 0xbb],
        }
    }

    #[test]
    fn layout_is_the_contracts() {
        let bytes = stream_message().encode().expect("short URLs");
        let mut expected = vec![1, 0x03, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 14];
        expected.extend_from_slice(b"coap://[::1]/s");
        expected.push(16);
        expected.extend_from_slice(b"udp://10.0.0.1:9");
        expected.extend_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, expected);
        assert_eq!(RelayMessage::decode(&bytes), Ok(stream_message()));
        assert_eq!(stream_message().header.encoded_len() + 2, bytes.len());
    }

    #[test]
    fn minimal_message_is_twelve_bytes() {
        let msg = RelayMessage::default();
        let bytes = msg.encode().expect("empty URLs");
        assert_eq!(bytes, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(RelayMessage::decode(&bytes), Ok(msg));
    }

    #[test]
    fn aad_skips_sink_and_reencrypted() {
        let msg = stream_message();
        let mut forwarded = msg.header.clone();
        forwarded.sink = "coap://192.0.2.1/other".into();
        forwarded.flags = forwarded.flags.with(Flags::REENCRYPTED);
        assert_eq!(msg.header.aad(), forwarded.aad());
        let mut expected = vec![1, 0x03, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 14];
        expected.extend_from_slice(b"coap://[::1]/s");
        assert_eq!(msg.header.aad(), expected);

        // Everything the source decides is bound.
        let variants = [
            Header {
                flags: Flags::STREAM,
                ..msg.header.clone()
            },
            Header {
                message_id: 1,
                ..msg.header.clone()
            },
            Header {
                stream_id: 1,
                ..msg.header.clone()
            },
            Header {
                key_index: 1,
                ..msg.header.clone()
            },
            Header {
                source: "coap://[::1]/t".into(),
                ..msg.header.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.aad(), msg.header.aad(), "{v:?}");
        }
    }

    #[test]
    fn individual_id_spans_bytes_2_to_10() {
        let h = Header::individual(0x0102_0304_0506_0708, "s".into(), String::new());
        assert_eq!(h.flags, Flags::empty());
        assert_eq!(h.message_id, 0x0102_0304);
        assert_eq!(h.stream_id, 0x0506);
        assert_eq!(h.key_index, 0x0708);
        assert_eq!(h.individual_id(), 0x0102_0304_0506_0708);
        let bytes = RelayMessage {
            header: h,
            body: vec![],
        }
        .encode()
        .expect("short URLs");
        assert_eq!(&bytes[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn refusals_are_typed() {
        let good = stream_message().encode().expect("short URLs");
        for n in 0..good.len() - 2 {
            // Every cut inside the header (the body is the last 2 bytes) is a truncation.
            assert_eq!(
                RelayMessage::decode(&good[..n]),
                Err(Error::Truncated),
                "cut {n}"
            );
        }
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(RelayMessage::decode(&v), Err(Error::UnsupportedVersion(2)));
        let mut f = good.clone();
        f[1] = 0x0b;
        assert_eq!(RelayMessage::decode(&f), Err(Error::ReservedFlags(0x08)));
        let mut u = good;
        u[11] = 0xff;
        assert_eq!(RelayMessage::decode(&u), Err(Error::InvalidText));
    }

    #[test]
    fn over_long_urls_are_refused_on_encode() {
        let mut msg = stream_message();
        msg.header.source = "x".repeat(MAX_URL_LEN);
        assert!(msg.encode().is_ok());
        msg.header.sink = "y".repeat(MAX_URL_LEN + 1);
        assert_eq!(msg.encode(), Err(Error::UrlTooLong(256)));
    }

    #[test]
    fn flags_algebra() {
        assert_eq!(Flags::from_bits(0x07).map(Flags::bits), Ok(0x07));
        assert_eq!(Flags::from_bits(0x80), Err(Error::ReservedFlags(0x80)));
        let f = Flags::STREAM.with(Flags::REENCRYPTED);
        assert!(f.contains(Flags::STREAM));
        assert!(!f.contains(Flags::MANAGEMENT));
        assert_eq!(f.without(Flags::REENCRYPTED), Flags::STREAM);
        assert_eq!(format!("{f:?}"), "Flags(STREAM|REENCRYPTED)");
        assert_eq!(format!("{:?}", Flags::empty()), "Flags(empty)");
    }
}
