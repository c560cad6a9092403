//! Responses as the proxy's handlers describe them, turned into packets with the node's CoAP
//! transport (`runtime::coap`: piggy-backed in the ACK of a CON request, a NON for a NON, Block1
//! echoed).

use std::net::SocketAddr;

use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageClass, Packet, ResponseType};

use crate::runtime::coap::{MessageIds, response, set_uint_option};

/// Content-Format `application/json`, offered besides CBOR to people and shell tools.
pub(crate) const CONTENT_FORMAT_JSON: u16 = 50;

/// "c.dd" of a response code, for logs and diagnostics.
pub(crate) fn show(code: ResponseType) -> String {
    MessageClass::Response(code).to_string()
}

/// Where a response goes: the requesting endpoint and the request itself without its payload —
/// its type, message id and token, which the response answers, its Block1 option, which the
/// response echoes, and its Block2 option, which says what part of a representation to send.
#[derive(Clone, Debug)]
pub(crate) struct ReplyTo {
    pub(crate) peer: SocketAddr,
    pub(crate) request: Packet,
}

impl ReplyTo {
    pub(crate) fn new(peer: SocketAddr, req: &Packet) -> Self {
        let mut request = Packet::new();
        request.header = req.header.clone();
        request.set_token(req.get_token().to_vec());
        for option in [CoapOption::Block1, CoapOption::Block2] {
            if let Some(values) = req.get_option(option) {
                for v in values {
                    request.add_option(option, v.clone());
                }
            }
        }
        Self { peer, request }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum OptionValue {
    Uint(u32),
    Bytes(Vec<u8>),
}

/// A response before it is addressed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Response {
    pub(crate) code: ResponseType,
    pub(crate) payload: Vec<u8>,
    options: Vec<(CoapOption, OptionValue)>,
}

impl Response {
    /// A response with no payload.
    pub(crate) fn code(code: ResponseType) -> Self {
        Self {
            code,
            payload: Vec::new(),
            options: Vec::new(),
        }
    }

    /// An error response with a diagnostic payload (RFC 7252 §5.5.2), UTF-8.
    pub(crate) fn error(code: ResponseType, diagnostic: &str) -> Self {
        Self {
            payload: diagnostic.as_bytes().to_vec(),
            ..Self::code(code)
        }
    }

    /// A 2.05 Content with its Content-Format.
    pub(crate) fn content(payload: Vec<u8>, content_format: u16) -> Self {
        Self {
            payload,
            ..Self::code(ResponseType::Content)
        }
        .with_uint(CoapOption::ContentFormat, content_format.into())
    }

    /// 5.03 Service Unavailable with Max-Age: when to try again (RFC 7252 §5.9.3.4).
    pub(crate) fn unavailable(max_age_s: u32, diagnostic: &str) -> Self {
        Self::error(ResponseType::ServiceUnavailable, diagnostic)
            .with_uint(CoapOption::MaxAge, max_age_s)
    }

    /// Adds an unsigned option.
    pub(crate) fn with_uint(mut self, option: CoapOption, value: u32) -> Self {
        self.options.push((option, OptionValue::Uint(value)));
        self
    }

    /// Adds an opaque or string option (repeatable: Location-Path).
    pub(crate) fn with(mut self, option: CoapOption, value: Vec<u8>) -> Self {
        self.options.push((option, OptionValue::Bytes(value)));
        self
    }

    /// The diagnostic or body, as text for logs.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The packet answering `to`.
    pub(crate) fn to_packet(&self, to: &ReplyTo, ids: &mut MessageIds) -> Packet {
        let mut p = response(&to.request, self.code, ids);
        self.apply(&mut p);
        p
    }

    /// Puts the options and payload into `p`.
    pub(crate) fn apply(&self, p: &mut Packet) {
        for (option, value) in &self.options {
            match value {
                OptionValue::Uint(v) => set_uint_option(p, *option, *v),
                OptionValue::Bytes(b) => p.add_option(*option, b.clone()),
            }
        }
        p.payload.clone_from(&self.payload);
    }
}

/// Encodes a packet of the proxy's. Responses are at most a block plus options, but an error
/// diagnostic or a notification may be longer than coap-lite's 1280-byte default: the limit is
/// lifted to what one UDP datagram can carry rather than fail.
pub(crate) fn encode(packet: &Packet) -> Option<Vec<u8>> {
    packet.to_bytes_with_limit(65_507).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use m2msec_wire::relay::coap::coap_lite::MessageType;

    use super::*;
    use crate::runtime::coap::uint_option;

    #[test]
    fn responses_are_piggybacked_or_non() {
        let mut ids = MessageIds::starting_at(5);
        let mut req = Packet::new();
        req.header.set_type(MessageType::Confirmable);
        req.header.message_id = 77;
        req.set_token(vec![1, 2]);
        req.payload = vec![9; 10];
        let to = ReplyTo::new("127.0.0.1:9".parse().unwrap(), &req);
        assert!(to.request.payload.is_empty());
        let p = Response::code(ResponseType::Changed).to_packet(&to, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 77);
        assert_eq!(p.get_token(), &[1, 2]);
        req.header.set_type(MessageType::NonConfirmable);
        let to = ReplyTo::new("127.0.0.1:9".parse().unwrap(), &req);
        let p = Response::unavailable(5, "full").to_packet(&to, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 5);
        assert_eq!(uint_option(&p, CoapOption::MaxAge), Some(5));
        assert_eq!(p.payload, b"full");
        assert_eq!(show(ResponseType::ServiceUnavailable), "5.03");
    }
}
