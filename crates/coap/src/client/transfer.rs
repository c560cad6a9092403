//! One request's way through block-wise transfer (RFC 7959): the Block1 blocks of a large body
//! going up, then the Block2 blocks of a large representation coming down. Each step takes the
//! response to the previous message and says what to send next, or that the response is whole.

use core::net::SocketAddr;

use m2msec_crypto::rng::CryptoRng;
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, Packet, RequestType, ResponseType,
};

use super::random_token;
use crate::error::{Error, Result};
use crate::options::{
    BlockOpt, block_size, code_string, is_success, response_code, set_uint_option,
};
use crate::params::Config;

/// How many times a Block2 download restarts when the representation changes underneath.
const BLOCK2_RESTARTS: u32 = 3;

/// What a request does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Exchange this message (the next block, or the request itself).
    Send(Packet),
    /// The response is complete: this packet holds the whole payload.
    Done(Packet),
}

/// A request between its first message and its complete response.
pub(crate) struct Transfer {
    /// The request as the caller gave it (the Block2 template is made from it).
    request: Packet,
    phase: Phase,
}

enum Phase {
    /// The request went in one message; its response is awaited.
    Whole,
    /// Block1 blocks going up.
    Upload(Upload),
    /// Block2 blocks coming down.
    Download(Download),
}

impl Transfer {
    /// Starts `request`: one message, or Block1 block 0 when the body is above the block size
    /// (RFC 7959 §2.5). Returns the transfer and the first message to exchange.
    pub(crate) fn start(request: Packet, config: &Config) -> Result<(Self, Packet)> {
        if request.payload.len() > block_size(config.block_szx) {
            let mut upload = Upload::new(&request, config.block_szx);
            let first = upload.block(&request.payload, config.max_body)?;
            let transfer = Self {
                request,
                phase: Phase::Upload(upload),
            };
            return Ok((transfer, first));
        }
        let first = request.clone();
        let transfer = Self {
            request,
            phase: Phase::Whole,
        };
        Ok((transfer, first))
    }

    /// Completes a notification sent block-wise (RFC 7959 §3.4) by GETting the rest with
    /// `template`: [`Step::Done`] at once when nothing is missing.
    pub(crate) fn complete(
        peer: SocketAddr,
        template: Packet,
        notification: Packet,
        config: &Config,
        rng: &mut dyn CryptoRng,
    ) -> Result<(Self, Step)> {
        let mut transfer = Self {
            request: template,
            phase: Phase::Whole,
        };
        let step = transfer.after_request(peer, notification, config, rng)?;
        Ok((transfer, step))
    }

    /// Takes the response to the last message sent.
    pub(crate) fn on_response(
        &mut self,
        peer: SocketAddr,
        response: Packet,
        config: &Config,
        rng: &mut dyn CryptoRng,
    ) -> Result<Step> {
        match &mut self.phase {
            Phase::Whole => self.after_request(peer, response, config, rng),
            Phase::Upload(upload) => {
                match upload.on_response(peer, &self.request.payload, response, config)? {
                    Step::Send(block) => Ok(Step::Send(block)),
                    Step::Done(last) => self.after_request(peer, last, config, rng),
                }
            }
            Phase::Download(download) => download.on_response(peer, response, config, rng),
        }
    }

    /// The response to the request (or to its last Block1 block): whole, or Block2 block 0 of
    /// a larger representation whose remaining blocks are fetched next (RFC 7959 §2.4).
    fn after_request(
        &mut self,
        peer: SocketAddr,
        first: Packet,
        config: &Config,
        rng: &mut dyn CryptoRng,
    ) -> Result<Step> {
        let Some(block) = block2_of(peer, &first)? else {
            return Ok(Step::Done(first));
        };
        if !block.more {
            return Ok(Step::Done(first));
        }
        if !matches!(
            self.request.header.code,
            MessageClass::Request(RequestType::Get | RequestType::Fetch)
        ) {
            return Err(Error::Blockwise {
                peer,
                reason: "Block2 continuation of a request other than GET or FETCH",
            });
        }
        let mut template = self.request.clone();
        template.clear_option(CoapOption::Block1);
        template.clear_option(CoapOption::Size1);
        template.clear_option(CoapOption::Observe);
        template.payload.clear();
        let mut download = Download {
            template,
            etag: None,
            body: Vec::new(),
            szx: block.szx,
            more: false,
            restarts: 0,
            restarting: false,
            current: Packet::new(),
        };
        let step = download.restart(peer, first, block, config, rng)?;
        self.phase = Phase::Download(download);
        Ok(step)
    }
}

/// A Block1 upload (RFC 7959 §2.5): one exchange per block; the server may lower the block
/// size in its 2.31 Continue (§2.3) or refuse the first block with 4.13 naming a smaller one
/// (§2.9.3).
struct Upload {
    /// The request without its body: every block is this plus a slice of the body, so the body
    /// is not copied once per block.
    template: Packet,
    szx: u8,
    /// Where the block in flight starts and ends, its number and whether more follow.
    offset: usize,
    end: usize,
    num: u32,
    more: bool,
}

impl Upload {
    fn new(request: &Packet, szx: u8) -> Self {
        let mut template = request.clone();
        template.payload = Vec::new();
        Self {
            template,
            szx,
            offset: 0,
            end: 0,
            num: 0,
            more: false,
        }
    }

    /// The block of `body` starting at `self.offset`.
    fn block(&mut self, body: &[u8], max_body: usize) -> Result<Packet> {
        let size = block_size(self.szx);
        self.num = BlockOpt::number_at(self.offset, self.szx).ok_or(Error::TooLarge {
            size: body.len(),
            max: max_body,
        })?;
        self.end = self.offset.saturating_add(size).min(body.len());
        self.more = self.end < body.len();
        let mut block = self.template.clone();
        block.payload = body.get(self.offset..self.end).unwrap_or_default().to_vec();
        let opt = BlockOpt {
            num: self.num,
            more: self.more,
            szx: self.szx,
        };
        block.clear_option(CoapOption::Block1);
        block.add_option(CoapOption::Block1, opt.to_bytes());
        if self.num == 0 {
            // RFC 7959 §4: Size1 in the first block announces the whole body.
            let total = u32::try_from(body.len()).unwrap_or(u32::MAX);
            set_uint_option(&mut block, CoapOption::Size1, total);
        } else {
            block.clear_option(CoapOption::Size1);
        }
        Ok(block)
    }

    fn on_response(
        &mut self,
        peer: SocketAddr,
        body: &[u8],
        response: Packet,
        config: &Config,
    ) -> Result<Step> {
        let echoed = BlockOpt::of(&response, CoapOption::Block1).ok().flatten();
        let code = response_code(&response);
        // RFC 7959 §2.9.3: 4.13 to block 0 with a smaller SZX asks to start again smaller.
        if self.num == 0
            && code == Some(ResponseType::RequestEntityTooLarge)
            && let Some(smaller) = echoed.filter(|b| b.szx < self.szx)
        {
            self.szx = smaller.szx;
            return self.block(body, config.max_body).map(Step::Send);
        }
        if !self.more || code != Some(ResponseType::Continue) {
            return Ok(Step::Done(response));
        }
        // RFC 7959 §2.3: the server may ask for smaller blocks in its 2.31 Continue.
        if let Some(e) = echoed.filter(|b| b.szx < self.szx) {
            self.szx = e.szx;
        }
        self.offset = self.end;
        if !self.offset.is_multiple_of(block_size(self.szx)) {
            return Err(Error::Blockwise {
                peer,
                reason: "server changed the block size mid-block",
            });
        }
        self.block(body, config.max_body).map(Step::Send)
    }
}

/// A Block2 download (RFC 7959 §2.4): each block with a fresh token, restarting if the
/// representation's ETag changes underneath.
struct Download {
    template: Packet,
    etag: Option<Vec<u8>>,
    body: Vec<u8>,
    szx: u8,
    /// Whether the last block said more follow.
    more: bool,
    restarts: u32,
    /// Block 0 was asked for again because the ETag changed.
    restarting: bool,
    /// The latest block's response, without its payload: the complete response is this plus
    /// the body.
    current: Packet,
}

impl Download {
    /// Starts (again) from block 0 in `first`.
    fn restart(
        &mut self,
        peer: SocketAddr,
        mut first: Packet,
        block: BlockOpt,
        config: &Config,
        rng: &mut dyn CryptoRng,
    ) -> Result<Step> {
        if block.num != 0 {
            return Err(Error::Blockwise {
                peer,
                reason: "first Block2 block is not block 0",
            });
        }
        self.etag = first.get_first_option(CoapOption::ETag).cloned();
        self.body = core::mem::take(&mut first.payload);
        self.szx = block.szx;
        self.more = block.more;
        self.current = first;
        self.next(peer, config, rng)
    }

    /// The request for the block after the body so far, or the complete response.
    fn next(&mut self, peer: SocketAddr, config: &Config, rng: &mut dyn CryptoRng) -> Result<Step> {
        if !self.more {
            let mut whole = core::mem::replace(&mut self.current, Packet::new());
            whole.payload = core::mem::take(&mut self.body);
            whole.clear_option(CoapOption::Block2);
            return Ok(Step::Done(whole));
        }
        // RFC 7959 §2.2: every block but the last is exactly the block size.
        if !self.body.len().is_multiple_of(block_size(self.szx)) || self.body.is_empty() {
            return Err(Error::Blockwise {
                peer,
                reason: "Block2 block shorter than its size",
            });
        }
        let num = BlockOpt::number_at(self.body.len(), self.szx).ok_or(Error::TooLarge {
            size: self.body.len(),
            max: config.max_body,
        })?;
        Ok(Step::Send(block2_request(
            &self.template,
            num,
            self.szx,
            rng,
        )))
    }

    fn on_response(
        &mut self,
        peer: SocketAddr,
        mut response: Packet,
        config: &Config,
        rng: &mut dyn CryptoRng,
    ) -> Result<Step> {
        if core::mem::take(&mut self.restarting) {
            return match block2_of(peer, &response)? {
                Some(block) => self.restart(peer, response, block, config, rng),
                None => Ok(Step::Done(response)),
            };
        }
        if !is_success(&response) {
            return Err(Error::Status {
                peer,
                code: code_string(&response),
            });
        }
        // RFC 7959 §2.4: a changed ETag means the representation changed; start again.
        if response.get_first_option(CoapOption::ETag).cloned() != self.etag {
            self.restarts += 1;
            if self.restarts > BLOCK2_RESTARTS {
                return Err(Error::Blockwise {
                    peer,
                    reason: "representation kept changing during the transfer",
                });
            }
            self.restarting = true;
            return Ok(Step::Send(block2_request(&self.template, 0, self.szx, rng)));
        }
        let got = match BlockOpt::of(&response, CoapOption::Block2) {
            Ok(Some(b)) if b.offset() == self.body.len() => b,
            _ => {
                return Err(Error::Blockwise {
                    peer,
                    reason: "Block2 response for another block",
                });
            }
        };
        let size = self.body.len().saturating_add(response.payload.len());
        if size > config.max_body {
            return Err(Error::TooLarge {
                size,
                max: config.max_body,
            });
        }
        self.body.extend_from_slice(&response.payload);
        response.payload.clear();
        self.szx = got.szx;
        self.more = got.more;
        self.current = response;
        self.next(peer, config, rng)
    }
}

/// The request for Block2 block `num` of size exponent `szx`: `template` with a fresh token.
fn block2_request(template: &Packet, num: u32, szx: u8, rng: &mut dyn CryptoRng) -> Packet {
    let mut p = template.clone();
    p.set_token(random_token(rng));
    p.clear_option(CoapOption::Block2);
    let block = BlockOpt {
        num,
        more: false,
        szx,
    };
    p.add_option(CoapOption::Block2, block.to_bytes());
    p
}

/// The Block2 option of a response from `peer`.
fn block2_of(peer: SocketAddr, p: &Packet) -> Result<Option<BlockOpt>> {
    BlockOpt::of(p, CoapOption::Block2).map_err(|()| Error::Blockwise {
        peer,
        reason: "malformed Block2 option",
    })
}
