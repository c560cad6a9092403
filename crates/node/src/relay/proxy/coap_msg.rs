//! Responses as the engine describes them (`m2msec_protocol::relay::proxy::Response`), turned
//! into packets with the node's CoAP transport (`runtime::coap`: piggy-backed in the ACK of a
//! CON request, a NON for a NON, Block1 echoed).

use m2msec_wire::relay::coap::coap_lite::Packet;

use m2msec_protocol::relay::proxy::OptionValue;
pub(crate) use m2msec_protocol::relay::proxy::Response;

pub(crate) use crate::runtime::coap::ReplyTo;
use crate::runtime::coap::{MessageIds, set_uint_option};

/// The packet answering `to` with `response` (piggy-backed in the ACK of a CON request, a NON
/// for a NON, Block1 echoed).
pub(crate) fn to_packet(response: &Response, to: &ReplyTo, ids: &mut MessageIds) -> Packet {
    let mut p = crate::runtime::coap::response(&to.request, response.code, ids);
    for (option, value) in &response.options {
        match value {
            OptionValue::Uint(v) => set_uint_option(&mut p, *option, *v),
            OptionValue::Bytes(b) => p.add_option(*option, b.clone()),
        }
    }
    p.payload.clone_from(&response.payload);
    p
}

/// Encodes a packet of the proxy's. Responses are at most a block plus options, but an error
/// diagnostic or a notification may be longer than coap-lite's 1280-byte default: the limit is
/// lifted to what one UDP datagram can carry rather than fail.
pub(crate) fn encode(packet: &Packet) -> Option<Vec<u8>> {
    packet.to_bytes_with_limit(MAX_DATAGRAM).ok()
}

/// What one UDP datagram can carry: the proxy's limit on what it encodes.
pub(crate) const MAX_DATAGRAM: usize = 65_507;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageType, ResponseType};

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
        let p = to_packet(&Response::code(ResponseType::Changed), &to, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 77);
        assert_eq!(p.get_token(), &[1, 2]);
        req.header.set_type(MessageType::NonConfirmable);
        let to = ReplyTo::new("127.0.0.1:9".parse().unwrap(), &req);
        let p = to_packet(&Response::unavailable(5, "full"), &to, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 5);
        assert_eq!(uint_option(&p, CoapOption::MaxAge), Some(5));
        assert_eq!(p.payload, b"full");
    }
}
