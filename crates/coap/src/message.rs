//! The message layer's bookkeeping on a server: message ids (RFC 7252 §4.4) and responses that
//! match their request (RFC 7252 §5.2).

use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, ResponseType,
};

/// Message ids of one endpoint: a random start (RFC 7252 §4.4) then consecutive.
#[derive(Debug, Clone)]
pub struct MessageIds(u16);

impl MessageIds {
    /// Starts at a random id, so a restarted daemon does not reuse its previous life's ids.
    #[must_use]
    pub fn random(rng: &mut dyn CryptoRng) -> Self {
        Self(u16::from_be_bytes(random_array(rng)))
    }

    /// Starts at `first` (tests, traces).
    #[must_use]
    pub fn starting_at(first: u16) -> Self {
        Self(first)
    }

    /// The next id.
    pub fn next_id(&mut self) -> u16 {
        let id = self.0;
        self.0 = id.wrapping_add(1);
        id
    }
}

/// The piggy-backed response to a CON request (RFC 7252 §5.2.1): an ACK with the request's
/// message id and token. A Block1 option of the request is echoed, as the final response
/// of a block-wise upload requires (RFC 7959 §2.3).
#[must_use]
pub fn piggybacked_response(req: &Packet, code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Response(code);
    p.header.message_id = req.header.message_id;
    p.set_token(req.get_token().to_vec());
    if let Some(b1) = req.get_first_option(CoapOption::Block1) {
        p.add_option(CoapOption::Block1, b1.clone());
    }
    p
}

/// The response to `req`: piggy-backed on the ACK for a CON request, a NON with a fresh
/// message id for a NON request (RFC 7252 §5.2.3). Token and Block1 echo as
/// [`piggybacked_response`].
#[must_use]
pub fn response(req: &Packet, code: ResponseType, ids: &mut MessageIds) -> Packet {
    let mut p = piggybacked_response(req, code);
    if req.header.get_type() != MessageType::Confirmable {
        p.header.set_type(MessageType::NonConfirmable);
        p.header.message_id = ids.next_id();
    }
    p
}

/// A separate response (RFC 7252 §5.2.2), sent after an empty ACK: its own message id, the
/// request's token; CON when it must be acknowledged.
#[must_use]
pub fn separate_response(
    req: &Packet,
    code: ResponseType,
    ids: &mut MessageIds,
    confirmable: bool,
) -> Packet {
    let mut p = piggybacked_response(req, code);
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.message_id = ids.next_id();
    p
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::options::new_request;
    use core::net::SocketAddr;
    use m2msec_wire::relay::coap::coap_lite::RequestType;

    pub(crate) fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5683))
    }

    pub(crate) fn con_request(mid: u16, token: &[u8]) -> Packet {
        let mut p = new_request(RequestType::Post, "storage/1", true).expect("valid path");
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        p
    }

    #[test]
    fn responses_match_requests() {
        let mut ids = MessageIds::starting_at(100);
        let req = con_request(7, b"tk");
        let p = response(&req, ResponseType::Changed, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 7);
        assert_eq!(p.get_token(), b"tk");
        let mut non = req.clone();
        non.header.set_type(MessageType::NonConfirmable);
        let p = response(&non, ResponseType::Changed, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 100);
        let s = separate_response(&req, ResponseType::Content, &mut ids, true);
        assert_eq!(s.header.get_type(), MessageType::Confirmable);
        assert_eq!((s.header.message_id, s.get_token()), (101, &b"tk"[..]));
    }
}
