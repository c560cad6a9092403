//! The control channel of an `sga-device` daemon: how `m2msec sga register|invite|send|inbox`
//! talk to the device that lives in the daemon.
//!
//! The protocol's [`Device`](m2msec_protocol::sga::Device) keeps its sessions (keys, counters)
//! in memory, so the device must live somewhere between commands: in its daemon. Each command
//! is one UDP datagram holding a JSON [`Request`] sent to the daemon's `control` address (a
//! loopback address, checked when the config is read; requests from other sources are
//! ignored), and one datagram back holding a JSON [`Response`]. The channel is not
//! authenticated: whoever may use the machine's loopback interface may command the device, as
//! with any local admin socket bound to 127.0.0.1.
//!
//! ```text
//! → {"op":"invite","peer":"device-j","suite":"chacha20-poly1305"}
//! ← {"result":"established","peer":"device-j","session":"…","fingerprint":"…","suite":"chacha20-poly1305"}
//! → {"op":"send","to":"device-j","text":"temperature 21.5"}
//! ← {"result":"stored","to":"device-j","session":"…","message_id":0}
//! → {"op":"inbox"}
//! ← {"result":"inbox","messages":[{"from":"device-i","session":"…","message_id":0,"text":"…"}]}
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::SuiteName;
use crate::error::{Error, Result};

/// The largest control datagram.
pub const MAX_CONTROL_DATAGRAM: usize = 65_507;

/// A command to a device daemon.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Register with the server (if not registered yet) and answer once registered.
    Register,
    /// Invite `peer` (negotiation and key exchange); answers once a session key is in place.
    Invite {
        /// The other device's identity.
        peer: String,
        /// The suite to negotiate (default: the device's first suite).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suite: Option<SuiteName>,
    },
    /// Send `text` to `to` under the latest session with it; answers once the server holds it
    /// durably.
    Send {
        /// The recipient.
        to: String,
        /// The message.
        text: String,
    },
    /// Every message received so far, in the order of arrival.
    Inbox,
    /// The device's registration and sessions.
    Status,
}

/// A device daemon's answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// The device is registered.
    Registered {
        /// Its identity.
        device: String,
    },
    /// A session key is in place.
    Established(SessionInfo),
    /// The server holds the message (durably).
    Stored {
        /// The recipient.
        to: String,
        /// The session, hex.
        session: String,
        /// The message id.
        message_id: u64,
    },
    /// Received messages.
    Inbox {
        /// In the order of arrival.
        messages: Vec<InboxEntry>,
    },
    /// The device's state.
    Status {
        /// Its identity.
        device: String,
        /// Whether it is registered.
        registered: bool,
        /// Its sessions, one per peer (the latest).
        sessions: Vec<SessionInfo>,
        /// Messages sent and not yet acknowledged by the server.
        unacknowledged: usize,
    },
    /// The command failed.
    Error {
        /// Why.
        error: String,
    },
}

/// A session, without its key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The other device.
    pub peer: String,
    /// The session id, hex.
    pub session: String,
    /// The session key's fingerprint, hex.
    pub fingerprint: String,
    /// The negotiated suite.
    pub suite: String,
}

/// A received message, as the inbox keeps it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct InboxEntry {
    /// The sender.
    pub from: String,
    /// The session, hex.
    pub session: String,
    /// The sender's message id (0, 1, … per session).
    pub message_id: u64,
    /// The plaintext (lossy UTF-8).
    pub text: String,
}

/// Sends `request` to the daemon at `control` and waits up to `timeout` for its answer.
///
/// # Errors
///
/// [`Error::Control`] when nobody answers (naming the address and the command that starts the
/// daemon) or the answer is malformed; [`Error::Socket`] for local socket errors. A command
/// the daemon refused is `Ok(Response::Error { .. })`.
pub fn request(control: SocketAddr, request: &Request, timeout: Duration) -> Result<Response> {
    let local = if control.is_ipv4() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
    };
    let socket = UdpSocket::bind(local).map_err(Error::Socket)?;
    socket.connect(control).map_err(Error::Socket)?;
    socket
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(Error::Socket)?;
    let bytes = serde_json::to_vec(request)
        .map_err(|e| Error::Control(format!("cannot encode the request: {e}")))?;
    let unreachable = || {
        Error::Control(format!(
            "no sga-device daemon answers on {control} (start it with `m2msec run sga-device --config FILE`)"
        ))
    };
    socket.send(&bytes).map_err(|_| unreachable())?;
    let mut buf = vec![0u8; MAX_CONTROL_DATAGRAM];
    let len = match socket.recv(&mut buf) {
        Ok(len) => len,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(Error::Control(format!(
                "the sga-device daemon on {control} did not answer within {timeout:?}"
            )));
        }
        Err(_) => return Err(unreachable()),
    };
    serde_json::from_slice(buf.get(..len).unwrap_or_default())
        .map_err(|e| Error::Control(format!("malformed answer from {control}: {e}")))
}
