//! The message layer of a server (RFC 7252 §4), written once for every daemon that answers
//! requests on its own socket: it sorts what arrives, answers a retransmission from the cache,
//! reassembles block-wise uploads, and remembers each answer for the copies to come. What a
//! request means is left to the daemon, which gets only whole, new requests.

use core::net::SocketAddr;

use m2msec_protocol::Millis;
use m2msec_wire::relay::coap::coap_lite::{
    MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use crate::block::{Assembled, Block1Assembler};
use crate::dedup::{Dedup, DedupCache};
use crate::message::{MessageIds, response};
use crate::options::parse_datagram;

/// The largest response a server sends in one datagram; larger ones go block-wise.
const MAX_RESPONSE: usize = 4096;

/// Where the answer to a request goes: the peer and the request as it arrived in its last
/// datagram (for a block-wise upload, its last block), which the answer must match (message
/// id, token, Block1) and under which it is cached for copies.
#[derive(Clone, Debug)]
pub struct ReplyTo {
    /// The requesting endpoint.
    pub peer: SocketAddr,
    /// The request's last datagram.
    pub request: Packet,
}

/// A whole, new request.
#[derive(Debug)]
pub struct Request {
    /// Where the answer goes; give it to [`Server::answer`].
    pub reply: ReplyTo,
    /// The request's method.
    pub method: RequestType,
    /// The request with the whole body of a block-wise upload.
    pub whole: Packet,
}

/// What [`Server::receive`] made of a datagram.
#[derive(Debug)]
pub enum Received {
    /// Handle it, then answer with [`Server::answer`] (now or later).
    Request(Request),
    /// Send these bytes back to the peer and do nothing else: the cached answer to a copy of
    /// a request (RFC 7252 §4.5), 2.31 Continue or a refusal of an upload block (RFC 7959
    /// §2.3), or a Reset to a ping or to a message this server does not expect (§4.2, §4.3).
    Reply(Vec<u8>),
    /// An empty ACK of a confirmable message this server sent (a notification), by message id.
    Ack(u16),
    /// A Reset of a message this server sent: the peer wants no more of it (RFC 7641 §3.6).
    Reset(u16),
    /// Nothing to do: a copy of a request still being handled, a non-confirmable ping, or a
    /// non-confirmable response.
    Nothing,
    /// Not a CoAP message: the daemon may count or log it.
    Junk,
}

/// A server's message layer: duplicate detection with cached answers, Block1 reassembly, and
/// the message ids of its non-piggy-backed answers. Capped as [`DedupCache`] and
/// [`Block1Assembler`] are.
#[derive(Debug)]
pub struct Server {
    ids: MessageIds,
    dedup: DedupCache,
    uploads: Block1Assembler,
}

impl Server {
    /// A server that answers copies from `dedup`, reassembles uploads with `uploads`, and
    /// numbers its own messages from `ids`.
    #[must_use]
    pub fn new(ids: MessageIds, dedup: DedupCache, uploads: Block1Assembler) -> Self {
        Self {
            ids,
            dedup,
            uploads,
        }
    }

    /// The message ids of this server's own messages (notifications, NON answers).
    pub fn ids(&mut self) -> &mut MessageIds {
        &mut self.ids
    }

    /// Sorts one datagram from `peer`.
    pub fn receive(&mut self, peer: SocketAddr, datagram: &[u8], now: Millis) -> Received {
        let Some(p) = parse_datagram(datagram) else {
            return Received::Junk;
        };
        let kind = p.header.get_type();
        match (p.header.code, kind) {
            (MessageClass::Empty, MessageType::Acknowledgement) => {
                Received::Ack(p.header.message_id)
            }
            (MessageClass::Empty, MessageType::Reset) => Received::Reset(p.header.message_id),
            (MessageClass::Request(method), MessageType::Confirmable)
            | (MessageClass::Request(method), MessageType::NonConfirmable) => {
                self.request(peer, p, method, now)
            }
            // A ping (RFC 7252 §4.3), or a response on a socket that sends no requests: a
            // confirmable one is rejected with a Reset (§4.2), anything else ignored.
            (_, MessageType::Confirmable) => {
                encode(&reset(&p)).map_or(Received::Nothing, Received::Reply)
            }
            _ => Received::Nothing,
        }
    }

    fn request(
        &mut self,
        peer: SocketAddr,
        p: Packet,
        method: RequestType,
        now: Millis,
    ) -> Received {
        match self.dedup.check(peer, &p, now) {
            Dedup::Replay(bytes) => return Received::Reply(bytes),
            Dedup::InProgress => return Received::Nothing,
            Dedup::New => {}
        }
        let reply = ReplyTo {
            peer,
            request: p.clone(),
        };
        match self.uploads.accept(peer, p, now, &mut self.ids) {
            Assembled::Respond(answer) => self
                .answer(&reply, &answer)
                .map_or(Received::Nothing, Received::Reply),
            Assembled::Complete(whole) => Received::Request(Request {
                reply,
                method,
                whole,
            }),
        }
    }

    /// Encodes the answer to a request, and remembers it so that a copy of the request gets
    /// it again instead of being handled twice. `None` when it cannot be encoded (larger than
    /// 4096 bytes: serve it block-wise).
    pub fn answer(&mut self, to: &ReplyTo, answer: &Packet) -> Option<Vec<u8>> {
        let bytes = encode(answer)?;
        self.dedup.complete(to.peer, &to.request, &bytes);
        Some(bytes)
    }

    /// [`Server::answer`] with an answer of only a code, matching the request.
    pub fn answer_code(&mut self, to: &ReplyTo, code: ResponseType) -> Option<Vec<u8>> {
        let p = response(&to.request, code, &mut self.ids);
        self.answer(to, &p)
    }
}

/// The Reset rejecting `p` (RFC 7252 §4.2): its message id, no token.
fn reset(p: &Packet) -> Packet {
    let mut r = Packet::new();
    r.header.set_type(MessageType::Reset);
    r.header.code = MessageClass::Empty;
    r.header.message_id = p.header.message_id;
    r
}

fn encode(p: &Packet) -> Option<Vec<u8>> {
    p.to_bytes_with_limit(MAX_RESPONSE).ok()
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::message::tests::{con_request, peer};
    use crate::params::DEFAULT_SZX;

    fn server() -> Server {
        Server::new(
            MessageIds::starting_at(1),
            DedupCache::default(),
            Block1Assembler::new(1 << 16, 4, Duration::from_secs(60), DEFAULT_SZX),
        )
    }

    #[test]
    fn a_copy_gets_the_cached_answer_and_is_not_handled_twice() {
        let mut s = server();
        let t = Millis(1);
        let req = con_request(7, b"x").to_bytes().expect("encodable");
        let Received::Request(r) = s.receive(peer(), &req, t) else {
            panic!("a new request")
        };
        assert_eq!(r.method, RequestType::Post);
        // A copy while it is being handled: nothing.
        assert!(matches!(s.receive(peer(), &req, t), Received::Nothing));
        let bytes = s
            .answer_code(&r.reply, ResponseType::Changed)
            .expect("encodable");
        match s.receive(peer(), &req, t) {
            Received::Reply(again) => assert_eq!(again, bytes),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pings_acks_resets_and_junk_are_sorted() {
        let mut s = server();
        let t = Millis(1);
        // A CON ping (empty, 4 bytes): a Reset with its message id.
        let ping = [0x40, 0x00, 0x12, 0x34];
        match s.receive(peer(), &ping, t) {
            Received::Reply(r) => assert_eq!(r, [0x70, 0x00, 0x12, 0x34]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.receive(peer(), &[0x60, 0, 0, 9], t),
            Received::Ack(9)
        ));
        assert!(matches!(
            s.receive(peer(), &[0x70, 0, 0, 9], t),
            Received::Reset(9)
        ));
        assert!(matches!(s.receive(peer(), b"\xff\x00", t), Received::Junk));
        assert!(matches!(s.receive(peer(), &[], t), Received::Junk));
        // A NON ping: nothing.
        assert!(matches!(
            s.receive(peer(), &[0x50, 0, 0, 1], t),
            Received::Nothing
        ));
    }
}
