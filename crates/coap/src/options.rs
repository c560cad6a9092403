//! Option values and codes: the Block1/Block2 option (RFC 7959 §2.2), unsigned options
//! (RFC 7252 §3.2), datagram acceptance (RFC 7252 §3, §4.1) and request construction.

use m2msec_wire::relay::coap as mapping;
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use crate::error::{Error, Result};

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOpt {
    /// The block number (20 bits).
    pub num: u32,
    /// Whether more blocks follow.
    pub more: bool,
    /// Size exponent: the block holds `16 << szx` bytes (0..=6; 7 is reserved).
    pub szx: u8,
}

impl BlockOpt {
    /// Largest block number the 3-byte option can carry.
    pub const MAX_NUM: u32 = (1 << 20) - 1;

    /// The block size in bytes.
    #[must_use]
    pub fn size(self) -> usize {
        block_size(self.szx)
    }

    /// The number of the block of size exponent `szx` that starts at `offset`; `None` past
    /// [`BlockOpt::MAX_NUM`].
    pub(crate) fn number_at(offset: usize, szx: u8) -> Option<u32> {
        u32::try_from(offset / block_size(szx))
            .ok()
            .filter(|n| *n <= Self::MAX_NUM)
    }

    /// Offset of this block's first byte in the body.
    #[must_use]
    pub fn offset(self) -> usize {
        usize::try_from(self.num)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.size())
    }

    /// The option value: the shortest big-endian encoding of `num << 4 | m << 3 | szx`.
    #[must_use]
    pub fn to_bytes(self) -> Vec<u8> {
        // RFC 7959 §2.2: NUM (4..20 bits), M (1 bit), SZX (3 bits).
        let v = (self.num.min(Self::MAX_NUM) << 4)
            | (u32::from(self.more) << 3)
            | u32::from(self.szx & 7);
        uint_bytes(v)
    }

    /// Decodes an option value; `None` for more than 3 bytes or the reserved SZX 7.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let v = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let szx = u8::try_from(v & 7).ok()?;
        (szx < 7).then_some(Self {
            num: v >> 4,
            more: v & 8 != 0,
            szx,
        })
    }

    /// The block option of `option` (Block1 or Block2) in `packet`: `Ok(None)` when absent.
    ///
    /// # Errors
    /// `Err(())` when the option is present but malformed or repeated; the caller answers
    /// 4.02 Bad Option or gives up, there is nothing more to say.
    #[allow(clippy::result_unit_err)]
    pub fn of(packet: &Packet, option: CoapOption) -> core::result::Result<Option<Self>, ()> {
        match single(packet, option) {
            Ok(None) => Ok(None),
            Ok(Some(v)) => Self::from_bytes(v).map(Some).ok_or(()),
            Err(()) => Err(()),
        }
    }
}

/// Bytes in a block of size exponent `szx` (clamped to 6).
#[must_use]
pub fn block_size(szx: u8) -> usize {
    16 << szx.min(6)
}

/// The shortest big-endian encoding of an unsigned option value (RFC 7252 §3.2).
fn uint_bytes(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

fn uint_of(bytes: &[u8]) -> Option<u32> {
    (bytes.len() <= 4).then(|| bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// The one value of a non-repeatable option.
fn single(packet: &Packet, option: CoapOption) -> core::result::Result<Option<&Vec<u8>>, ()> {
    match packet.get_option(option) {
        None => Ok(None),
        Some(list) if list.len() > 1 => Err(()),
        Some(list) => Ok(list.front()),
    }
}

/// Sets an unsigned option (Content-Format, Observe, Max-Age, Size1…), replacing any value.
pub fn set_uint_option(packet: &mut Packet, option: CoapOption, value: u32) {
    packet.clear_option(option);
    packet.add_option(option, uint_bytes(value));
}

/// An unsigned option's value, if present exactly once and at most 4 bytes.
#[must_use]
pub fn uint_option(packet: &Packet, option: CoapOption) -> Option<u32> {
    single(packet, option)
        .ok()
        .flatten()
        .and_then(|v| uint_of(v))
}

/// The Content-Format of a message, if any.
#[must_use]
pub fn content_format(packet: &Packet) -> Option<u16> {
    uint_option(packet, CoapOption::ContentFormat).and_then(|v| u16::try_from(v).ok())
}

/// The Observe value of a message, if any.
#[must_use]
pub fn observe_value(packet: &Packet) -> Option<u32> {
    uint_option(packet, CoapOption::Observe)
}

/// The response code of a message, if it is a response.
#[must_use]
pub fn response_code(packet: &Packet) -> Option<ResponseType> {
    match packet.header.code {
        MessageClass::Response(code) => Some(code),
        _ => None,
    }
}

/// Whether a message is a 2.xx response.
#[must_use]
pub fn is_success(packet: &Packet) -> bool {
    matches!(packet.header.code, MessageClass::Response(_))
        && u8::from(packet.header.code) >> 5 == 2
}

/// `class.detail` of a message's code, for errors and logs.
#[must_use]
pub fn code_string(packet: &Packet) -> String {
    packet.header.code.to_string()
}

/// Decodes a datagram into a CoAP message, or `None` when it is not one this endpoint may
/// process (RFC 7252 §3: version 1, token ≤ 8 bytes; §4.1: an Empty message has no token,
/// options or payload). Such datagrams are silently ignored (§4.2, §4.3).
#[must_use]
pub fn parse_datagram(bytes: &[u8]) -> Option<Packet> {
    let first = *bytes.first()?;
    if first >> 6 != 1 {
        return None;
    }
    let packet = Packet::from_bytes(bytes).ok()?;
    if packet.header.code == MessageClass::Empty
        && (!packet.get_token().is_empty() || bytes.len() != 4)
    {
        return None;
    }
    Some(packet)
}

/// Builds a request for `path`, which may carry a query: `load?window=60&x` becomes Uri-Path
/// `load` and Uri-Query `window=60`, `x`.
///
/// # Errors
/// [`Error::Wire`] when the path does not map onto Uri-Path options.
pub fn new_request(method: RequestType, path: &str, confirmable: bool) -> Result<Packet> {
    let mut p = Packet::new();
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.code = MessageClass::Request(method);
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    mapping::set_uri_path(&mut p, path.strip_prefix('/').unwrap_or(path))?;
    for q in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|q| !q.is_empty())
    {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    Ok(p)
}

/// The datagram of `packet`, at most `limit` bytes.
pub(crate) fn encode(packet: &Packet, limit: usize) -> Result<Vec<u8>> {
    packet
        .to_bytes_with_limit(limit)
        .map_err(|e| Error::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_option_codec() {
        for (b, bytes) in [
            (
                BlockOpt {
                    num: 0,
                    more: false,
                    szx: 0,
                },
                vec![],
            ),
            (
                BlockOpt {
                    num: 0,
                    more: true,
                    szx: 6,
                },
                vec![0x0e],
            ),
            (
                BlockOpt {
                    num: 1,
                    more: false,
                    szx: 6,
                },
                vec![0x16],
            ),
            (
                BlockOpt {
                    num: 20,
                    more: true,
                    szx: 2,
                },
                vec![0x01, 0x4a],
            ),
            (
                BlockOpt {
                    num: BlockOpt::MAX_NUM,
                    more: true,
                    szx: 6,
                },
                vec![0xff, 0xff, 0xfe],
            ),
        ] {
            assert_eq!(b.to_bytes(), bytes, "{b:?}");
            assert_eq!(BlockOpt::from_bytes(&bytes), Some(b));
        }
        assert_eq!(BlockOpt::from_bytes(&[0x07]), None, "SZX 7 is reserved");
        assert_eq!(BlockOpt::from_bytes(&[1, 2, 3, 4]), None);
        assert_eq!(
            BlockOpt {
                num: 3,
                more: false,
                szx: 4
            }
            .offset(),
            768
        );
    }

    #[test]
    fn datagram_parsing_refuses_what_rfc7252_ignores() {
        assert!(parse_datagram(&[0x40, 0x01, 0x00, 0x01]).is_some());
        assert!(
            parse_datagram(&[0x80, 0x01, 0x00, 0x01]).is_none(),
            "version 2"
        );
        assert!(
            parse_datagram(&[0x49, 0x01, 0x00, 0x01]).is_none(),
            "token length 9"
        );
        assert!(
            parse_datagram(&[0x41, 0x00, 0x00, 0x01, 0xaa]).is_none(),
            "empty with token"
        );
        assert!(parse_datagram(&[0x40]).is_none());
        let mut ping = Packet::new();
        ping.header.code = MessageClass::Empty;
        assert!(parse_datagram(&ping.to_bytes().expect("tiny")).is_some());
    }

    #[test]
    fn requests_with_queries() {
        let p = new_request(RequestType::Get, "/load?window=10&x", true).expect("valid");
        assert_eq!(mapping::uri_path(&p), "load");
        assert_eq!(mapping::uri_query(&p), ["window=10", "x"]);
        assert!(new_request(RequestType::Get, "a//b", true).is_err());
    }
}
