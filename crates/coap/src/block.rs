//! Block-wise transfer on a server (RFC 7959): reassembling Block1 uploads and serving a large
//! representation block by block through Block2.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::HashMap;

use m2msec_protocol::Millis;
use m2msec_wire::relay::coap as mapping;
use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageClass, Packet, ResponseType};

use crate::message::{MessageIds, response};
use crate::options::{BlockOpt, block_size, set_uint_option, uint_option};
use crate::time::elapsed;

/// An upload's identity: the peer and [`upload_key`].
type Key = (SocketAddr, Vec<u8>);

/// What [`Block1Assembler::accept`] made of a request.
#[derive(Debug)]
pub enum Assembled {
    /// A whole request: not block-wise, or the last block of a complete upload (payload =
    /// the whole body; the last Block1 option is kept, so [`response`] echoes it).
    Complete(Packet),
    /// Send this response and nothing else: 2.31 Continue for an intermediate block, or 4.08
    /// (block out of order / unknown upload), 4.13 (body too large), 4.02 (bad Block1), 4.00.
    Respond(Packet),
}

struct Partial {
    body: Vec<u8>,
    at: Millis,
}

/// Reassembles Block1 uploads (RFC 7959 §2.5) per peer and request.
///
/// An upload is identified by the peer and the request's method and options other than the
/// block options — RFC 7959 §2.5's notion of "the same request", which also works for clients
/// that change the token with each block (libcoap). A relay message's token is its identity
/// (the relay message id), so for requests carrying Relay-Stream the token is part of the key
/// too, and concurrent uploads of two relay messages from one source stay apart.
///
/// Capped: at most `max_partials` uploads in progress (the oldest is dropped), `max_body`
/// bytes each (4.13 beyond), and an upload idle for `ttl` is forgotten.
pub struct Block1Assembler {
    partials: HashMap<Key, Partial>,
    max_body: usize,
    max_partials: usize,
    ttl: Duration,
    max_szx: u8,
}

impl core::fmt::Debug for Block1Assembler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Block1Assembler")
            .field("in_progress", &self.partials.len())
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Block1Assembler {
    /// An assembler accepting bodies up to `max_body` bytes, `max_partials` uploads at a time,
    /// each forgotten after `ttl` without a block; it asks clients for blocks of at most
    /// `16 << max_szx` bytes.
    #[must_use]
    pub fn new(max_body: usize, max_partials: usize, ttl: Duration, max_szx: u8) -> Self {
        Self {
            partials: HashMap::new(),
            max_body,
            max_partials: max_partials.max(1),
            ttl,
            max_szx: max_szx.min(6),
        }
    }

    /// Uploads in progress.
    #[must_use]
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Takes one request from `peer`.
    pub fn accept(
        &mut self,
        peer: SocketAddr,
        req: Packet,
        now: Millis,
        ids: &mut MessageIds,
    ) -> Assembled {
        let ttl = self.ttl;
        self.partials.retain(|_, p| elapsed(p.at, now) <= ttl);
        let block = match BlockOpt::of(&req, CoapOption::Block1) {
            Ok(None) => return Assembled::Complete(req),
            Ok(Some(b)) => b,
            Err(()) => return Assembled::Respond(response(&req, ResponseType::BadOption, ids)),
        };
        let key = (peer, upload_key(&req));
        let size = block.size();
        // RFC 7959 §2.3: every block but the last is exactly the block size.
        if (block.more && req.payload.len() != size) || req.payload.len() > size {
            self.partials.remove(&key);
            return Assembled::Respond(response(&req, ResponseType::BadRequest, ids));
        }
        if block.num == 0 {
            let announced = uint_option(&req, CoapOption::Size1)
                .and_then(|s| usize::try_from(s).ok())
                .unwrap_or(0);
            if announced > self.max_body {
                return Assembled::Respond(self.too_large(&req, ids));
            }
            if !self.partials.contains_key(&key)
                && self.partials.len() >= self.max_partials
                && let Some(oldest) = self
                    .partials
                    .iter()
                    .min_by_key(|(_, p)| p.at)
                    .map(|(k, _)| k.clone())
            {
                self.partials.remove(&oldest);
            }
            self.partials.insert(
                key.clone(),
                Partial {
                    body: Vec::new(),
                    at: now,
                },
            );
        }
        let Some(partial) = self.partials.get_mut(&key) else {
            return Assembled::Respond(response(&req, ResponseType::RequestEntityIncomplete, ids));
        };
        let offset = block.offset();
        if offset != partial.body.len() {
            // A copy of the block just taken (a retransmission that escaped deduplication)
            // is answered again; anything else is out of order.
            let previous = partial.body.len().checked_sub(req.payload.len());
            if block.more && previous == Some(offset) && partial.body.ends_with(&req.payload) {
                return Assembled::Respond(self.continue_response(&req, block, ids));
            }
            self.partials.remove(&key);
            return Assembled::Respond(response(&req, ResponseType::RequestEntityIncomplete, ids));
        }
        if partial.body.len().saturating_add(req.payload.len()) > self.max_body {
            self.partials.remove(&key);
            return Assembled::Respond(self.too_large(&req, ids));
        }
        partial.body.extend_from_slice(&req.payload);
        partial.at = now;
        if block.more {
            return Assembled::Respond(self.continue_response(&req, block, ids));
        }
        let body = self
            .partials
            .remove(&key)
            .map(|p| p.body)
            .unwrap_or_default();
        let mut whole = req;
        whole.payload = body;
        whole.clear_option(CoapOption::Size1);
        Assembled::Complete(whole)
    }

    /// 2.31 Continue echoing the block, with our preferred size if smaller (RFC 7959 §2.3).
    fn continue_response(&self, req: &Packet, block: BlockOpt, ids: &mut MessageIds) -> Packet {
        let mut p = response(req, ResponseType::Continue, ids);
        p.clear_option(CoapOption::Block1);
        p.add_option(
            CoapOption::Block1,
            BlockOpt {
                szx: block.szx.min(self.max_szx),
                ..block
            }
            .to_bytes(),
        );
        p
    }

    /// 4.13 with Size1 = the limit (RFC 7959 §2.9.3).
    fn too_large(&self, req: &Packet, ids: &mut MessageIds) -> Packet {
        let mut p = response(req, ResponseType::RequestEntityTooLarge, ids);
        p.clear_option(CoapOption::Block1);
        set_uint_option(
            &mut p,
            CoapOption::Size1,
            u32::try_from(self.max_body).unwrap_or(u32::MAX),
        );
        p
    }
}

/// The identity of an upload: code and options except the block-wise and observe ones, plus
/// the token for relay messages.
fn upload_key(req: &Packet) -> Vec<u8> {
    let mut key = vec![u8::from(req.header.code)];
    let mut relay = false;
    for (number, values) in req.options() {
        let skip = [
            CoapOption::Block1,
            CoapOption::Block2,
            CoapOption::Size1,
            CoapOption::Size2,
            CoapOption::Observe,
        ]
        .iter()
        .any(|o| u16::from(*o) == *number);
        if skip {
            continue;
        }
        relay |= *number == mapping::OPTION_RELAY_STREAM;
        for v in values {
            key.extend_from_slice(&number.to_be_bytes());
            key.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            key.extend_from_slice(v);
        }
    }
    if relay {
        key.push(0xff);
        key.extend_from_slice(req.get_token());
    }
    key
}

/// Cuts a response's payload to the block the request asks for (RFC 7959 §2.4).
///
/// Call it with the whole representation in `response.payload`. Without a Block2 option in the
/// request, a payload that fits one block of `16 << max_szx` bytes is left alone, a larger one
/// becomes block 0. A requested block size above ours is lowered, keeping the byte offset. The
/// first block carries Size2; every block carries an ETag of the whole representation (unless
/// the response has one) so a client notices a change between blocks. A block past the end
/// turns the response into 4.02 Bad Option.
pub fn slice_block2(req: &Packet, response: &mut Packet, max_szx: u8) {
    fn bad_option(response: &mut Packet) {
        response.header.code = MessageClass::Response(ResponseType::BadOption);
        response.payload.clear();
    }
    let max_szx = max_szx.min(6);
    let Ok(requested) = BlockOpt::of(req, CoapOption::Block2) else {
        return bad_option(response);
    };
    let len = response.payload.len();
    let (szx, offset) = match requested {
        None if len <= block_size(max_szx) => return,
        None => (max_szx, 0),
        Some(b) => (b.szx.min(max_szx), b.offset()),
    };
    if offset >= len && !(offset == 0 && len == 0) {
        return bad_option(response);
    }
    let Some(num) = BlockOpt::number_at(offset, szx) else {
        return bad_option(response);
    };
    if response
        .get_option(CoapOption::ETag)
        .is_none_or(|l| l.is_empty())
    {
        response.add_option(CoapOption::ETag, etag(&response.payload).to_vec());
    }
    let end = offset.saturating_add(block_size(szx)).min(len);
    let more = end < len;
    if num == 0 {
        set_uint_option(
            response,
            CoapOption::Size2,
            u32::try_from(len).unwrap_or(u32::MAX),
        );
    }
    response.payload = response.payload[offset..end].to_vec();
    response.clear_option(CoapOption::Block2);
    response.add_option(CoapOption::Block2, BlockOpt { num, more, szx }.to_bytes());
}

/// A 64-bit FNV-1a digest of a representation: an ETag, not a security mechanism.
fn etag(bytes: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::piggybacked_response;
    use crate::message::tests::{con_request, peer};
    use crate::options::{new_request, response_code};
    use m2msec_wire::relay::coap::coap_lite::RequestType;

    fn block1(mid: u16, token: &[u8], num: u32, more: bool, payload: &[u8]) -> Packet {
        let mut p = con_request(mid, token);
        p.add_option(
            CoapOption::Block1,
            BlockOpt { num, more, szx: 0 }.to_bytes(),
        );
        p.payload = payload.to_vec();
        p
    }

    #[test]
    fn block1_reassembly() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(0);
        let mut asm = Block1Assembler::new(64, 4, Duration::from_secs(5), 6);
        let a = [1u8; 16];
        let b = [2u8; 16];
        // A client changing tokens per block (libcoap) is one upload.
        match asm.accept(peer(), block1(1, b"t1", 0, true, &a), t, &mut ids) {
            Assembled::Respond(p) => {
                assert_eq!(response_code(&p), Some(ResponseType::Continue));
                assert_eq!(
                    BlockOpt::of(&p, CoapOption::Block1),
                    Ok(Some(BlockOpt {
                        num: 0,
                        more: true,
                        szx: 0
                    }))
                );
            }
            Assembled::Complete(_) => panic!("first of two blocks"),
        }
        match asm.accept(peer(), block1(2, b"t2", 1, false, &b[..5]), t, &mut ids) {
            Assembled::Complete(whole) => {
                assert_eq!(whole.payload.len(), 21);
                assert_eq!(&whole.payload[16..], &b[..5]);
                let r = response(&whole, ResponseType::Changed, &mut ids);
                assert_eq!(
                    BlockOpt::of(&r, CoapOption::Block1),
                    Ok(Some(BlockOpt {
                        num: 1,
                        more: false,
                        szx: 0
                    }))
                );
            }
            Assembled::Respond(p) => panic!("{p:?}"),
        }
        assert_eq!(asm.in_progress(), 0);

        // Out of order and unknown uploads: 4.08.
        let r = asm.accept(peer(), block1(3, b"t", 2, true, &a), t, &mut ids);
        assert!(
            matches!(r, Assembled::Respond(p) if response_code(&p) == Some(ResponseType::RequestEntityIncomplete))
        );
        // Too large: 4.13 with Size1.
        let mut big = None;
        for num in 0..5 {
            if let Assembled::Respond(p) =
                asm.accept(peer(), block1(4, b"t", num, true, &a), t, &mut ids)
                && response_code(&p) == Some(ResponseType::RequestEntityTooLarge)
            {
                big = Some(p);
                break;
            }
        }
        let big = big.expect("4.13 once over 64 bytes");
        assert_eq!(uint_option(&big, CoapOption::Size1), Some(64));
        assert_eq!(asm.in_progress(), 0);
        // A short intermediate block: 4.00.
        let r = asm.accept(peer(), block1(5, b"t", 0, true, &a[..3]), t, &mut ids);
        assert!(
            matches!(r, Assembled::Respond(p) if response_code(&p) == Some(ResponseType::BadRequest))
        );
    }

    #[test]
    fn block1_partials_are_capped_and_expire() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(0);
        let mut asm = Block1Assembler::new(1024, 2, Duration::from_secs(5), 6);
        for i in 0..5u8 {
            let mut req = block1(1, b"t", 0, true, &[0; 16]);
            mapping::set_uri_path(&mut req, &format!("r{i}")).expect("valid");
            let _ = asm.accept(peer(), req, t, &mut ids);
        }
        assert_eq!(asm.in_progress(), 2);
        let _ = asm.accept(
            peer(),
            con_request(9, b"z"),
            t.after(Duration::from_secs(6)),
            &mut ids,
        );
        assert_eq!(asm.in_progress(), 0);
    }

    #[test]
    fn relay_uploads_are_keyed_by_token() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(0);
        let mut asm = Block1Assembler::new(1024, 8, Duration::from_secs(5), 6);
        let with_relay = |token: &[u8], num, more, payload: &[u8]| {
            let mut p = block1(1, token, num, more, payload);
            p.add_option(
                CoapOption::Unknown(mapping::OPTION_RELAY_STREAM),
                vec![1, 0, 0, 0, 0],
            );
            p
        };
        let _ = asm.accept(peer(), with_relay(b"aaaa", 0, true, &[1; 16]), t, &mut ids);
        let _ = asm.accept(peer(), with_relay(b"bbbb", 0, true, &[2; 16]), t, &mut ids);
        assert_eq!(asm.in_progress(), 2);
        match asm.accept(peer(), with_relay(b"aaaa", 1, false, &[3]), t, &mut ids) {
            Assembled::Complete(p) => assert_eq!(p.payload[..16], [1; 16]),
            Assembled::Respond(p) => panic!("{p:?}"),
        }
    }

    #[test]
    fn block2_slicing() {
        let body: Vec<u8> = (0..=255u8).cycle().take(100).collect();
        let full = |req: &Packet| {
            let mut r = piggybacked_response(req, ResponseType::Content);
            r.payload = body.clone();
            r
        };
        let get = new_request(RequestType::Get, "x", true).expect("valid");
        // Small enough: untouched.
        let mut r = full(&get);
        slice_block2(&get, &mut r, 6);
        assert_eq!(r.payload, body);
        assert!(r.get_option(CoapOption::Block2).is_none());
        // Block 0 of 32-byte blocks, with Size2 and an ETag.
        let mut r = full(&get);
        slice_block2(&get, &mut r, 1);
        assert_eq!(r.payload, body[..32]);
        assert_eq!(
            BlockOpt::of(&r, CoapOption::Block2),
            Ok(Some(BlockOpt {
                num: 0,
                more: true,
                szx: 1
            }))
        );
        assert_eq!(uint_option(&r, CoapOption::Size2), Some(100));
        let etag0 = r.get_first_option(CoapOption::ETag).cloned();
        assert!(etag0.is_some());
        // The client asks for block 3 of 16-byte blocks: bytes 48..64.
        let mut req = get.clone();
        req.add_option(
            CoapOption::Block2,
            BlockOpt {
                num: 3,
                more: false,
                szx: 0,
            }
            .to_bytes(),
        );
        let mut r = full(&req);
        slice_block2(&req, &mut r, 6);
        assert_eq!(r.payload, body[48..64]);
        assert_eq!(r.get_first_option(CoapOption::ETag).cloned(), etag0);
        // Asking for 64-byte blocks from a server that wants 32: block 1 of 64 = bytes 64..96
        // = block 2 of 32.
        let mut req = get.clone();
        req.add_option(
            CoapOption::Block2,
            BlockOpt {
                num: 1,
                more: false,
                szx: 2,
            }
            .to_bytes(),
        );
        let mut r = full(&req);
        slice_block2(&req, &mut r, 1);
        assert_eq!(r.payload, body[64..96]);
        assert_eq!(
            BlockOpt::of(&r, CoapOption::Block2),
            Ok(Some(BlockOpt {
                num: 2,
                more: true,
                szx: 1
            }))
        );
        // Past the end: 4.02.
        let mut req = get;
        req.add_option(
            CoapOption::Block2,
            BlockOpt {
                num: 7,
                more: false,
                szx: 0,
            }
            .to_bytes(),
        );
        let mut r = full(&req);
        slice_block2(&req, &mut r, 6);
        assert_eq!(response_code(&r), Some(ResponseType::BadOption));
        assert!(r.payload.is_empty());
    }
}
