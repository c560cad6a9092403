//! The message layer of a server (RFC 7252 §4), written once for every daemon that answers
//! requests on its own socket: it sorts what arrives, answers a retransmission from the cache,
//! reassembles block-wise uploads, and remembers each answer for the copies to come. What a
//! request means is left to the daemon, which gets only whole, new requests.

use core::net::SocketAddr;

use m2msec_protocol::Millis;
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use crate::block::{Assembled, Block1Assembler, slice_block2};
use crate::dedup::{Dedup, DedupCache};
use crate::message::{MessageIds, response};
use crate::options::parse_datagram;

/// The largest response a server sends in one datagram unless told otherwise
/// ([`Server::with_max_answer`]); larger ones go block-wise.
const MAX_RESPONSE: usize = 4096;

/// Where the answer to a request goes: the peer and the request's last datagram (for a
/// block-wise upload, its last block) without its payload or other options — its type, message
/// id and token, which the answer matches and under which it is cached for copies, its Block1,
/// which the answer echoes, and its Block2, which says what part of a representation to send.
/// Small, so that an answer that waits (for a commit) keeps no copy of the request's body.
#[derive(Clone, Debug)]
pub struct ReplyTo {
    /// The requesting endpoint.
    pub peer: SocketAddr,
    /// The request's header, token, Block1 and Block2.
    pub request: Packet,
}

impl ReplyTo {
    /// Where the answer to `req` from `peer` goes.
    #[must_use]
    pub fn new(peer: SocketAddr, req: &Packet) -> Self {
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

/// A server's message layer: duplicate detection with cached answers, Block1 reassembly,
/// Block2 slicing of GET answers if asked for, and the message ids of its non-piggy-backed
/// answers. Capped as [`DedupCache`] and [`Block1Assembler`] are.
#[derive(Debug)]
pub struct Server {
    ids: MessageIds,
    dedup: DedupCache,
    uploads: Block1Assembler,
    /// The largest answer encoded, in bytes.
    max_answer: usize,
    /// The largest block (SZX) a GET's answer is cut into, if this server serves Block2.
    block2: Option<u8>,
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
            max_answer: MAX_RESPONSE,
            block2: None,
        }
    }

    /// Encodes answers of up to `bytes` (4096 by default), for a server whose answers or
    /// diagnostics may be longer and that would rather send them whole than fail.
    #[must_use]
    pub fn with_max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }

    /// Cuts the answer to a GET into blocks of at most SZX `szx` when it is larger than one
    /// or the request asks for a block (RFC 7959 §2.4), each block a request of its own.
    #[must_use]
    pub fn with_block2(mut self, szx: u8) -> Self {
        self.block2 = Some(szx);
        self
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
                encode(&reset(&p), self.max_answer).map_or(Received::Nothing, Received::Reply)
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
        let reply = ReplyTo::new(peer, &p);
        match self.uploads.accept(peer, p, now, &mut self.ids) {
            Assembled::Respond(answer) => self
                .answer(&reply, answer)
                .map_or(Received::Nothing, Received::Reply),
            Assembled::Complete(whole) => Received::Request(Request {
                reply,
                method,
                whole,
            }),
        }
    }

    /// Encodes the answer to a request (the block asked for, if this server serves Block2 and
    /// the request is a GET), and remembers it so that a copy of the request gets it again
    /// instead of being handled twice. `None` when it cannot be encoded (larger than the
    /// server's limit: serve it block-wise).
    pub fn answer(&mut self, to: &ReplyTo, mut answer: Packet) -> Option<Vec<u8>> {
        if let Some(szx) = self.block2
            && to.request.header.code == MessageClass::Request(RequestType::Get)
        {
            slice_block2(&to.request, &mut answer, szx);
        }
        let bytes = encode(&answer, self.max_answer)?;
        self.dedup.complete(to.peer, &to.request, &bytes);
        Some(bytes)
    }

    /// [`Server::answer`] with an answer of only a code, matching the request.
    pub fn answer_code(&mut self, to: &ReplyTo, code: ResponseType) -> Option<Vec<u8>> {
        let p = response(&to.request, code, &mut self.ids);
        self.answer(to, p)
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

fn encode(p: &Packet, limit: usize) -> Option<Vec<u8>> {
    p.to_bytes_with_limit(limit).ok()
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::message::tests::{con_request, peer};
    use crate::options::{BlockOpt, block_size, uint_option};
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

    fn get(mid: u16, block2: Option<BlockOpt>) -> Vec<u8> {
        let mut p = crate::options::new_request(RequestType::Get, "info", true).expect("path");
        p.header.message_id = mid;
        p.set_token(vec![3]);
        if let Some(b) = block2 {
            p.add_option(CoapOption::Block2, b.to_bytes());
        }
        p.to_bytes().expect("encodable")
    }

    fn content(to: &ReplyTo, len: usize, ids: &mut MessageIds) -> Packet {
        let mut p = response(&to.request, ResponseType::Content, ids);
        p.payload = vec![7; len];
        p
    }

    #[test]
    fn a_get_answer_is_cut_into_the_block_asked_for_and_replayed_as_cut() {
        let mut s = server().with_block2(DEFAULT_SZX);
        let mut ids = MessageIds::starting_at(9);
        let t = Millis(1);
        let size = block_size(DEFAULT_SZX);
        // No Block2 asked for, larger than a block: the first block, with Size2.
        let first = get(1, None);
        let Received::Request(r) = s.receive(peer(), &first, t) else {
            panic!("a new request")
        };
        let bytes = s.answer(&r.reply, content(&r.reply, size + 10, &mut ids));
        let p = Packet::from_bytes(&bytes.clone().expect("encodable")).expect("parses");
        assert_eq!(p.payload.len(), size);
        let b = BlockOpt::of(&p, CoapOption::Block2)
            .expect("valid")
            .expect("set");
        assert!(b.more && b.num == 0);
        assert_eq!(
            uint_option(&p, CoapOption::Size2),
            u32::try_from(size + 10).ok()
        );
        // Its copy gets the same block, not the whole.
        assert!(
            matches!(s.receive(peer(), &first, t), Received::Reply(b) if Some(&b) == bytes.as_ref())
        );
        // The second block, asked for.
        let block = BlockOpt {
            num: 1,
            more: false,
            szx: DEFAULT_SZX,
        };
        let Received::Request(r) = s.receive(peer(), &get(2, Some(block)), t) else {
            panic!("a new request")
        };
        let bytes = s.answer(&r.reply, content(&r.reply, size + 10, &mut ids));
        let p = Packet::from_bytes(&bytes.expect("encodable")).expect("parses");
        assert_eq!(p.payload.len(), 10);
        // A server that does not serve Block2 sends it whole, within its limit.
        let mut plain = server();
        let Received::Request(r) = plain.receive(peer(), &get(3, None), t) else {
            panic!("a new request")
        };
        let p = content(&r.reply, MAX_RESPONSE, &mut ids);
        assert!(
            plain.answer(&r.reply, p.clone()).is_none(),
            "over 4096 bytes"
        );
        let mut lifted = server().with_max_answer(65_507);
        let Received::Request(r) = lifted.receive(peer(), &get(3, None), t) else {
            panic!("a new request")
        };
        let whole = lifted.answer(&r.reply, p).expect("under the lifted limit");
        assert!(whole.len() > MAX_RESPONSE);
    }

    #[test]
    fn a_reply_to_keeps_no_body() {
        let mut req = con_request(77, &[1, 2]);
        req.payload = vec![9; 10];
        req.add_option(CoapOption::Block1, vec![0x0e]);
        let to = ReplyTo::new(peer(), &req);
        assert!(to.request.payload.is_empty());
        assert_eq!(to.request.header.message_id, 77);
        assert_eq!(to.request.get_token(), &[1, 2]);
        assert!(to.request.get_option(CoapOption::UriPath).is_none());
        assert!(to.request.get_option(CoapOption::Block1).is_some());
    }
}
