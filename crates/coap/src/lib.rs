//! CoAP (RFC 7252) with block-wise transfer (RFC 7959), observe (RFC 7641) and the link format
//! (RFC 6690), as sans-IO code on the protocol crate's clock.
//!
//! Nothing here owns a socket, reads a clock or draws from an RNG of its own: time comes in as
//! [`Millis`] chosen by the driver, randomness as `&mut dyn CryptoRng`, datagrams as bytes, and
//! what must be sent goes out as [`Transmit`]s. So the same code runs in unit tests with virtual
//! time, in the simulator, and under the tokio shell in `m2msec-node` (`relay::coap`). This is
//! the layer OSCORE (RFC 8613) sits on.
//!
//! - [`client::Client`]: the client engine — retransmission (RFC 7252 §4.2), separate responses,
//!   NSTART, Block1 and Block2, observations.
//! - [`Server`]: a server's message layer, written once for the daemons that own their
//!   socket: it sorts datagrams, answers copies from the cache and reassembles uploads, and
//!   hands the daemon whole, new requests. Its parts, also usable alone: [`DedupCache`] answers a
//!   retransmitted CON with the cached response instead of processing it twice (RFC 7252 §4.5),
//!   [`response`] / [`piggybacked_response`] / [`separate_response`] build a response matching
//!   a request, [`Block1Assembler`] reassembles a block-wise upload, [`slice_block2`] serves a
//!   large representation block by block, [`Observers`] keeps a resource's observers and builds
//!   their notifications, and [`link_format`] writes `/.well-known/core`.
//! - [`relay`]: the relay proxy engine's answers, notifications and resources as CoAP.
//! - [`Repost`]: when to post a request again that a busy server refused (5.03 and its
//!   Max-Age) or that went unanswered, and when to give up.
//!
//! Every cache, table and reassembly buffer here is capped and expires, so a peer that sends
//! garbage, never finishes an upload or vanishes costs bounded memory; nothing received from
//! the network can make it panic.
//!
//! [`Millis`]: m2msec_protocol::Millis
//! [`Transmit`]: m2msec_protocol::Transmit
#![forbid(unsafe_code)]

pub mod block;
pub mod client;
pub mod dedup;
mod error;
pub mod link_format;
pub mod message;
pub mod observe;
pub mod options;
mod params;
pub mod relay;
pub mod repost;
pub mod server;
mod time;

pub use block::{Assembled, Block1Assembler, slice_block2};
pub use client::{Client, Event, RequestId};
pub use dedup::{Dedup, DedupCache};
pub use error::{Error, Result};
pub use m2msec_wire::relay::coap::coap_lite;
pub use message::{MessageIds, piggybacked_response, response, separate_response};
pub use observe::{CON_EVERY, Observers};
pub use options::{
    BlockOpt, block_size, code_string, content_format, is_success, new_request, observe_value,
    parse_datagram, response_code, set_uint_option, uint_option,
};
pub use params::{
    ACK_RANDOM_FACTOR, ACK_TIMEOUT, Config, DEFAULT_SZX, EXCHANGE_LIFETIME, MAX_RETRANSMIT,
    MAX_TRANSMIT_WAIT, Transmission,
};
pub use repost::Repost;
pub use server::{Received, ReplyTo, Request, Server};
