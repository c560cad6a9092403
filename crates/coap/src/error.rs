//! The crate's one error type: why a CoAP exchange failed.

use core::net::SocketAddr;
use core::time::Duration;

/// Why a CoAP exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Sending or receiving on the socket failed (raised by the I/O shell, never by an engine).
    #[error("CoAP socket: {0}")]
    Io(#[from] std::io::Error),
    /// A CON request was never acknowledged, retransmissions included.
    #[error("no acknowledgement from {peer} after {transmissions} transmissions")]
    Timeout {
        /// The server.
        peer: SocketAddr,
        /// Transmissions made (1 + MAX_RETRANSMIT).
        transmissions: u32,
    },
    /// The request was acknowledged (or sent NON) but no response came in time.
    #[error("no response from {peer} within {after:?}")]
    NoResponse {
        /// The server.
        peer: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The server rejected the message with a Reset.
    #[error("{peer} reset the exchange")]
    Reset {
        /// The server.
        peer: SocketAddr,
    },
    /// A message could not be encoded (too large for the datagram limit, bad token).
    #[error("cannot encode CoAP message: {0}")]
    Encode(String),
    /// The request is not one this client can send.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The relay mapping refused the message.
    #[error("relay mapping: {0}")]
    Wire(#[from] m2msec_wire::Error),
    /// Another exchange with the same token towards the same peer is running.
    #[error("token already in use towards {peer}")]
    TokenInUse {
        /// The server.
        peer: SocketAddr,
    },
    /// A block-wise transfer went wrong.
    #[error("block-wise transfer with {peer}: {reason}")]
    Blockwise {
        /// The server.
        peer: SocketAddr,
        /// What went wrong.
        reason: &'static str,
    },
    /// A body exceeded the configured limit.
    #[error("body of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Bytes received or to send.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The server answered with a code the operation cannot continue from.
    #[error("{peer} answered {code}")]
    Status {
        /// The server.
        peer: SocketAddr,
        /// The response code as `class.detail` (e.g. `4.04`).
        code: String,
    },
    /// A link-format document (RFC 6690) did not parse.
    #[error("link format: {0}")]
    LinkFormat(&'static str),
    /// The endpoint was closed (the shell's task is gone, or the request was cancelled).
    #[error("the CoAP endpoint was closed")]
    Closed,
}

/// Result of the CoAP engines.
pub type Result<T> = core::result::Result<T, Error>;
