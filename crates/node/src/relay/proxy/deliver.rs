//! Delivery to one sink: a CoAP client for `coap://` sinks (confirmable POSTs with RFC 7252
//! retransmission, separate responses, Block1 uploads for messages over one datagram), or a
//! socket for `udp://` sinks (binary-header datagrams).
//!
//! The socket is connected to the sink, so only the sink's datagrams reach it, and an ICMP
//! "port unreachable" (the sink is down) fails the attempt at once instead of after the whole
//! retransmission span.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use m2msec_wire::relay::coap::{Target, empty_ack, to_request};
use m2msec_wire::relay::{RelayMessage, SinkUrl};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::coap_msg::{Block, SZX, block_size, code, encode};

/// RFC 7252 §4.8 ACK_TIMEOUT.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 §4.8 MAX_RETRANSMIT.
const MAX_RETRANSMIT: u32 = 4;
/// How long a separate response may take after its empty ACK.
const SEPARATE_WAIT: Duration = Duration::from_secs(30);
/// Largest encoded request sent in one datagram; bigger ones go block-wise (RFC 7959).
const MAX_SINGLE: usize = 1152;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The sink has it (a 2.xx, or a datagram sent to a UDP sink).
    Accepted,
    /// The sink answered with a client error (4.xx): it has seen the message and refused it;
    /// sending it again would not change that.
    Refused(u8),
    /// Not delivered (no answer, refused connection, 5.xx): try again later.
    Failed(String),
}

/// A random number, for message ids and retransmission jitter (not for anything secret).
fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// One sink's transport.
#[derive(Debug)]
pub(crate) enum Transport {
    Coap(CoapSink),
    Udp(UdpSocket),
}

impl Transport {
    /// A socket connected to the sink.
    ///
    /// # Errors
    ///
    /// The socket's, if it cannot be bound or connected.
    pub(crate) async fn open(url: &SinkUrl) -> std::io::Result<Self> {
        let addr = url.addr();
        let any = if addr.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = UdpSocket::bind(any).await?;
        socket.connect(addr).await?;
        Ok(match url {
            SinkUrl::Coap { path, .. } => Self::Coap(CoapSink {
                socket,
                path: path.clone(),
                next_mid: u16::try_from(random_u64() & 0xFFFF).unwrap_or(0),
            }),
            SinkUrl::Udp(_) => Self::Udp(socket),
        })
    }

    /// One delivery attempt of `msg` (the forwarder's output, sink URL set).
    pub(crate) async fn send(&mut self, msg: &RelayMessage) -> Outcome {
        match self {
            Self::Udp(socket) => match msg.encode() {
                Ok(bytes) => match socket.send(&bytes).await {
                    Ok(_) => Outcome::Accepted,
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                Err(e) => unencodable(&e),
            },
            Self::Coap(sink) => sink.post(msg).await,
        }
    }
}

/// A message that cannot be put on the wire for this sink (a URL over 255 bytes) can never be
/// delivered: it is treated like a refusal by the sink, so the stream does not stall on it.
fn unencodable(e: &dyn std::fmt::Display) -> Outcome {
    tracing::warn!(error = %e, "message cannot be encoded for its sink");
    Outcome::Refused(code::BAD_REQUEST)
}

/// A CoAP client of one sink.
#[derive(Debug)]
pub(crate) struct CoapSink {
    socket: UdpSocket,
    path: String,
    next_mid: u16,
}

impl CoapSink {
    /// The socket, connected to the sink.
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// POSTs `msg` to the sink's path, block-wise when it does not fit one datagram.
    async fn post(&mut self, msg: &RelayMessage) -> Outcome {
        let mid = self.mid();
        let request = match to_request(msg, &Target::Path(&self.path), mid, true) {
            Ok(r) => r,
            Err(e) => return unencodable(&e),
        };
        let Some(whole) = encode(&request) else {
            return Outcome::Refused(code::BAD_REQUEST);
        };
        if whole.len() <= MAX_SINGLE {
            return classify(self.exchange(&request).await);
        }
        // Block1 (RFC 7959 §2.5): the payload in blocks, each a confirmable request; the sink
        // may ask for smaller blocks in its 2.31 Continue.
        let body = request.payload.clone();
        let mut szx = SZX;
        let mut offset = 0usize;
        loop {
            let size = block_size(szx);
            let end = (offset + size).min(body.len());
            let more = end < body.len();
            let num = u32::try_from(offset / size).unwrap_or(u32::MAX);
            let mut block = request.clone();
            block.header.message_id = self.mid();
            block.payload = body
                .get(offset..end)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            block.add_option(CoapOption::Block1, Block { num, more, szx }.encode());
            let response = match self.exchange(&block).await {
                Ok(r) => r,
                Err(e) => return Outcome::Failed(e),
            };
            let answer = u8::from(response.header.code);
            if !more {
                return classify(Ok(response));
            }
            if answer != code::CONTINUE {
                return classify(Ok(response));
            }
            offset = end;
            if let Some(Ok(echo)) = Block::of(&response, CoapOption::Block1)
                && echo.szx < szx
            {
                szx = echo.szx;
            }
        }
    }

    /// Sends a confirmable request and waits for its response: piggy-backed in the ACK, or
    /// separate after an empty ACK; retransmitted with exponential back-off (RFC 7252 §4.2).
    async fn exchange(&mut self, request: &Packet) -> Result<Packet, String> {
        let bytes = encode(request).ok_or("request cannot be encoded")?;
        let mid = request.header.message_id;
        let token = request.get_token().to_vec();
        // ACK_TIMEOUT × a random factor in [1, 1.5) (ACK_RANDOM_FACTOR).
        let jitter = u32::try_from(random_u64() % 500).unwrap_or(0);
        let mut timeout = ACK_TIMEOUT + ACK_TIMEOUT * jitter / 1000;
        let mut buf = vec![0u8; 2048];
        for _ in 0..=MAX_RETRANSMIT {
            self.socket.send(&bytes).await.map_err(|e| e.to_string())?;
            let mut deadline = Instant::now() + timeout;
            let mut acknowledged = false;
            loop {
                let n = match tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                    Err(_) if acknowledged => return Err("separate response never came".into()),
                    Err(_) => break,
                    Ok(Err(e)) => return Err(e.to_string()),
                    Ok(Ok(n)) => n,
                };
                let Some(Ok(p)) = buf.get(..n).map(Packet::from_bytes) else {
                    continue;
                };
                let kind = p.header.get_type();
                let is_response = matches!(p.header.code, MessageClass::Response(_));
                if kind == MessageType::Reset && p.header.message_id == mid {
                    return Err("reset by the sink".into());
                }
                if kind == MessageType::Acknowledgement && p.header.message_id == mid {
                    if p.header.code == MessageClass::Empty {
                        acknowledged = true;
                        deadline = Instant::now() + SEPARATE_WAIT;
                        continue;
                    }
                    return Ok(p);
                }
                if is_response
                    && matches!(kind, MessageType::Confirmable | MessageType::NonConfirmable)
                {
                    if kind == MessageType::Confirmable {
                        // Acknowledge any separate response, ours or a late duplicate.
                        if let Some(ack) = encode(&empty_ack(&p)) {
                            let _ = self.socket.send(&ack).await;
                        }
                    }
                    if p.get_token() == token.as_slice() {
                        return Ok(p);
                    }
                }
            }
            timeout = timeout.saturating_mul(2);
        }
        Err("no answer".into())
    }
}

fn classify(response: Result<Packet, String>) -> Outcome {
    match response {
        Err(e) => Outcome::Failed(e),
        Ok(p) => {
            let c = u8::from(p.header.code);
            match c >> 5 {
                2 => Outcome::Accepted,
                4 => Outcome::Refused(c),
                _ => Outcome::Failed(format!("sink answered {}", code::show(c))),
            }
        }
    }
}
