//! Small CoAP helpers over `coap-lite`: response codes, uint and block options, and building a
//! response to a request (piggy-backed in the ACK of a CON, a NON for a NON).

use std::net::SocketAddr;

use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet};

/// Response codes the proxy uses, as `class << 5 | detail`.
pub(crate) mod code {
    /// 2.01 Created.
    pub(crate) const CREATED: u8 = 0x41;
    /// 2.02 Deleted.
    pub(crate) const DELETED: u8 = 0x42;
    /// 2.04 Changed.
    pub(crate) const CHANGED: u8 = 0x44;
    /// 2.05 Content.
    pub(crate) const CONTENT: u8 = 0x45;
    /// 2.31 Continue (RFC 7959).
    pub(crate) const CONTINUE: u8 = 0x5F;
    /// 4.00 Bad Request.
    pub(crate) const BAD_REQUEST: u8 = 0x80;
    /// 4.01 Unauthorized.
    pub(crate) const UNAUTHORIZED: u8 = 0x81;
    /// 4.02 Bad Option.
    pub(crate) const BAD_OPTION: u8 = 0x82;
    /// 4.03 Forbidden.
    pub(crate) const FORBIDDEN: u8 = 0x83;
    /// 4.04 Not Found.
    pub(crate) const NOT_FOUND: u8 = 0x84;
    /// 4.05 Method Not Allowed.
    pub(crate) const METHOD_NOT_ALLOWED: u8 = 0x85;
    /// 4.06 Not Acceptable.
    pub(crate) const NOT_ACCEPTABLE: u8 = 0x86;
    /// 4.08 Request Entity Incomplete (RFC 7959).
    pub(crate) const INCOMPLETE: u8 = 0x88;
    /// 4.13 Request Entity Too Large.
    pub(crate) const TOO_LARGE: u8 = 0x8D;
    /// 5.00 Internal Server Error.
    pub(crate) const INTERNAL: u8 = 0xA0;
    /// 5.03 Service Unavailable.
    pub(crate) const UNAVAILABLE: u8 = 0xA3;

    /// "c.dd" for logs.
    pub(crate) fn show(code: u8) -> String {
        format!("{}.{:02}", code >> 5, code & 0x1F)
    }
}

/// Content-Format `application/json`, offered besides CBOR to humans and shell tools.
pub(crate) const CONTENT_FORMAT_JSON: u16 = 50;

/// Block size exponent the proxy uses: 2^(6+4) = 1024 bytes (RFC 7959 §2.2).
pub(crate) const SZX: u8 = 6;

/// Bytes of a block of exponent `szx` (0..=6).
pub(crate) fn block_size(szx: u8) -> usize {
    16usize << szx.min(6)
}

/// The minimal big-endian encoding of a uint option (RFC 7252 §3.2: no leading zeros).
pub(crate) fn uint(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(skip..).map(<[u8]>::to_vec).unwrap_or_default()
}

/// A uint option's value, if it is at most 4 bytes.
pub(crate) fn read_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// The first value of option `option` as a uint; `Some(Err(()))` when present but malformed.
pub(crate) fn uint_option(packet: &Packet, option: CoapOption) -> Option<Result<u32, ()>> {
    packet
        .get_first_option(option)
        .map(|v| read_uint(v).ok_or(()))
}

/// A Block1 or Block2 option value (RFC 7959 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) num: u32,
    pub(crate) more: bool,
    pub(crate) szx: u8,
}

impl Block {
    /// Decodes a block option; `None` for a malformed one (over 3 bytes, or SZX 7).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let v = read_uint(bytes)?;
        let szx = u8::try_from(v & 0x7).ok()?;
        if szx == 7 {
            return None;
        }
        Some(Self {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        })
    }

    /// The option value.
    pub(crate) fn encode(self) -> Vec<u8> {
        uint((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx))
    }

    /// The block's first byte offset.
    pub(crate) fn offset(self) -> usize {
        usize::try_from(self.num)
            .unwrap_or(usize::MAX)
            .saturating_mul(block_size(self.szx))
    }

    /// The block option `option` of `packet`; `Some(Err(()))` when present but malformed.
    pub(crate) fn of(packet: &Packet, option: CoapOption) -> Option<Result<Self, ()>> {
        packet
            .get_first_option(option)
            .map(|v| Self::decode(v).ok_or(()))
    }
}

/// Where a response goes: the request's endpoint, message id, token and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplyTo {
    pub(crate) peer: SocketAddr,
    pub(crate) message_id: u16,
    pub(crate) token: Vec<u8>,
    pub(crate) confirmable: bool,
    /// The Block1 option to echo in the final response of a block-wise request.
    pub(crate) block1: Option<Block>,
}

impl ReplyTo {
    pub(crate) fn of(peer: SocketAddr, req: &Packet) -> Self {
        Self {
            peer,
            message_id: req.header.message_id,
            token: req.get_token().to_vec(),
            confirmable: req.header.get_type() == MessageType::Confirmable,
            block1: None,
        }
    }
}

/// A response before it is addressed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Response {
    pub(crate) code: u8,
    pub(crate) payload: Vec<u8>,
    /// Options other than the echoed Block1, in any order.
    pub(crate) options: Vec<(CoapOption, Vec<u8>)>,
}

impl Response {
    /// A response with no payload.
    pub(crate) fn code(code: u8) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }

    /// An error response with a diagnostic payload (RFC 7252 §5.5.2), UTF-8.
    pub(crate) fn error(code: u8, diagnostic: &str) -> Self {
        Self {
            code,
            payload: diagnostic.as_bytes().to_vec(),
            options: Vec::new(),
        }
    }

    /// A 2.05 Content with a Content-Format.
    pub(crate) fn content(payload: Vec<u8>, content_format: u16) -> Self {
        Self {
            code: code::CONTENT,
            payload,
            options: vec![(CoapOption::ContentFormat, uint(content_format.into()))],
        }
    }

    /// 5.03 Service Unavailable with Max-Age: when to try again (RFC 7252 §5.9.3.4).
    pub(crate) fn unavailable(max_age_s: u32, diagnostic: &str) -> Self {
        let mut r = Self::error(code::UNAVAILABLE, diagnostic);
        r.options.push((CoapOption::MaxAge, uint(max_age_s)));
        r
    }

    pub(crate) fn with(mut self, option: CoapOption, value: Vec<u8>) -> Self {
        self.options.push((option, value));
        self
    }

    /// The packet answering `to`: piggy-backed in the ACK of a CON (same message id), or a NON
    /// with `fresh_id` for a NON.
    pub(crate) fn to_packet(&self, to: &ReplyTo, fresh_id: u16) -> Packet {
        let mut p = Packet::new();
        if to.confirmable {
            p.header.set_type(MessageType::Acknowledgement);
            p.header.message_id = to.message_id;
        } else {
            p.header.set_type(MessageType::NonConfirmable);
            p.header.message_id = fresh_id;
        }
        p.header.code = MessageClass::from(self.code);
        p.set_token(to.token.clone());
        for (option, value) in &self.options {
            p.add_option(*option, value.clone());
        }
        if let Some(b) = to.block1 {
            p.add_option(CoapOption::Block1, b.encode());
        }
        p.payload.clone_from(&self.payload);
        p
    }
}

/// Encodes `packet`; the proxy's own packets are at most a block plus options, so the size check
/// is lifted only to let a large error diagnostic through rather than fail.
pub(crate) fn encode(packet: &Packet) -> Option<Vec<u8>> {
    packet.to_bytes_with_limit(64 * 1024).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    #[test]
    fn uints_are_minimal() {
        assert_eq!(uint(0), Vec::<u8>::new());
        assert_eq!(uint(60), vec![60]);
        assert_eq!(uint(0x0102_0304), vec![1, 2, 3, 4]);
        assert_eq!(read_uint(&[]), Some(0));
        assert_eq!(read_uint(&[1, 0]), Some(256));
        assert_eq!(read_uint(&[1, 2, 3, 4, 5]), None);
    }

    #[test]
    fn block_options() {
        let b = Block {
            num: 3,
            more: true,
            szx: 6,
        };
        assert_eq!(Block::decode(&b.encode()), Some(b));
        assert_eq!(b.offset(), 3072);
        assert_eq!(Block::decode(&[0x0F]), None); // SZX 7 is reserved
        assert_eq!(Block::decode(&[1, 2, 3, 4]), None);
        assert_eq!(
            Block::decode(&[]),
            Some(Block {
                num: 0,
                more: false,
                szx: 0
            })
        );
    }

    #[test]
    fn responses_are_piggybacked_or_non() {
        let mut req = Packet::new();
        req.header.set_type(MessageType::Confirmable);
        req.header.message_id = 77;
        req.set_token(vec![1, 2]);
        let to = ReplyTo::of("127.0.0.1:9".parse().unwrap(), &req);
        let p = Response::code(code::CHANGED).to_packet(&to, 5);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 77);
        assert_eq!(p.get_token(), &[1, 2]);
        assert_eq!(u8::from(p.header.code), code::CHANGED);
        req.header.set_type(MessageType::NonConfirmable);
        let to = ReplyTo::of("127.0.0.1:9".parse().unwrap(), &req);
        let p = Response::unavailable(5, "full").to_packet(&to, 5);
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 5);
        assert_eq!(p.get_first_option(CoapOption::MaxAge), Some(&vec![5]));
        assert_eq!(code::show(code::UNAVAILABLE), "5.03");
    }
}
