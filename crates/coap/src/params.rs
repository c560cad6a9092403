//! Transmission parameters (RFC 7252 §4.8) and the limits of a client.

use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// RFC 7252 §4.8 ACK_TIMEOUT.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 §4.8 ACK_RANDOM_FACTOR.
pub const ACK_RANDOM_FACTOR: f64 = 1.5;
/// RFC 7252 §4.8 MAX_RETRANSMIT.
pub const MAX_RETRANSMIT: u32 = 4;
/// RFC 7252 §4.8.2 MAX_TRANSMIT_WAIT: how long a CON request may go unanswered, retransmissions
/// included — also how long this client waits for a separate response by default.
pub const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);
/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME: how long a message id identifies one exchange.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Default block size exponent: SZX 6 = 1024-byte blocks (RFC 7959 §2.2).
pub const DEFAULT_SZX: u8 = 6;
/// Longest token RFC 7252 §3 allows.
pub(crate) const MAX_TOKEN: usize = 8;

/// Transmission parameters and limits of a client.
///
/// The defaults are RFC 7252 §4.8's; tests shrink the timeouts so that a lost message costs
/// milliseconds instead of seconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Initial retransmission timeout of a CON message.
    pub ack_timeout: Duration,
    /// The initial timeout is drawn uniformly from `[ack_timeout, ack_timeout × factor]`, so
    /// that many clients that lost the same message do not retransmit in lock-step.
    pub ack_random_factor: f64,
    /// Retransmissions of a CON message before giving up.
    pub max_retransmit: u32,
    /// How long to wait for a separate response after an empty ACK, or for the response to a
    /// NON request.
    pub response_timeout: Duration,
    /// Block size exponent for uploads and downloads (size = 16 << szx, 0..=6).
    pub block_szx: u8,
    /// Largest body the client uploads or downloads block-wise.
    pub max_body: usize,
    /// Requests in flight towards one server at a time (RFC 7252 §4.7 NSTART, default 1).
    pub nstart: usize,
    /// Largest datagram the client sends.
    pub max_datagram: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ack_timeout: ACK_TIMEOUT,
            ack_random_factor: ACK_RANDOM_FACTOR,
            max_retransmit: MAX_RETRANSMIT,
            response_timeout: MAX_TRANSMIT_WAIT,
            block_szx: DEFAULT_SZX,
            max_body: 1 << 20,
            nstart: 1,
            max_datagram: 4096,
        }
    }
}

impl Config {
    /// Refuses what a client cannot run with.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for `nstart` 0 or a block size exponent above 6.
    pub fn check(&self) -> Result<()> {
        if self.nstart == 0 {
            return Err(Error::InvalidRequest("nstart must be at least 1"));
        }
        if self.block_szx > 6 {
            return Err(Error::InvalidRequest("block size exponent above 6"));
        }
        Ok(())
    }
}

/// The two RFC 7252 §4.8 transmission parameters a deployment tunes to its link, as the
/// relay's config files give them (a `[coap]` table). The defaults are the RFC's, made for
/// lossy low-rate links; RFC 7252 §4.8.1 allows shorter ones where the round trip is known to
/// be short (the demo, on loopback).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Transmission {
    /// ACK_TIMEOUT, milliseconds: the first wait for an acknowledgement, doubled after each
    /// retransmission.
    pub ack_timeout_ms: u32,
    /// MAX_RETRANSMIT: retransmissions of a confirmable message before the exchange fails.
    pub max_retransmit: u32,
}

impl Default for Transmission {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 2_000,
            max_retransmit: MAX_RETRANSMIT,
        }
    }
}

impl Transmission {
    /// Checks the values; the message names the field.
    ///
    /// # Errors
    ///
    /// What is out of range.
    pub fn check(&self) -> core::result::Result<(), String> {
        if !(10..=60_000).contains(&self.ack_timeout_ms) {
            return Err("coap.ack_timeout_ms must be in 10..=60000".into());
        }
        if self.max_retransmit > 10 {
            return Err("coap.max_retransmit must be at most 10".into());
        }
        Ok(())
    }

    /// `config` with these parameters, and MAX_TRANSMIT_WAIT (the wait for a response that
    /// comes separately) derived from them as RFC 7252 §4.8.2 does.
    #[must_use]
    pub fn apply(self, config: Config) -> Config {
        let ack_timeout = Duration::from_millis(self.ack_timeout_ms.into());
        // RFC 7252 §4.8.2: MAX_TRANSMIT_WAIT = ACK_TIMEOUT × (2^(MAX_RETRANSMIT + 1) − 1)
        // × ACK_RANDOM_FACTOR.
        let span = (1u32 << (self.max_retransmit.min(10) + 1)) - 1;
        Config {
            ack_timeout,
            max_retransmit: self.max_retransmit,
            response_timeout: ack_timeout
                .saturating_mul(span)
                .mul_f64(config.ack_random_factor.max(1.0)),
            ..config
        }
    }
}
