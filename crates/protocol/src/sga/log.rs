//! How SGA's events read in a daemon's log ([`Logged`]).

use core::fmt;

use super::{Noted, ServerEvent, StoreOp};
use crate::{Level, Logged, Rejection};

impl fmt::Display for ServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Persist(StoreOp::Put { table, .. } | StoreOp::Remove { table, .. }) => {
                write!(f, "state written table={table}")
            }
            Self::Registered { device } => write!(f, "device registered device={device}"),
            Self::Exchanged {
                session,
                initiator,
                responder,
            } => write!(
                f,
                "key exchange relayed session={session} initiator={initiator} responder={responder}"
            ),
            Self::Refusal {
                remote,
                device,
                error,
            } => {
                write!(
                    f,
                    "request refused remote={remote} device={device} error={error}"
                )
            }
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for ServerEvent {
    fn level(&self) -> Level {
        match self {
            Self::Persist(_) => Level::Trace,
            Self::Registered { .. } | Self::Exchanged { .. } => Level::Info,
            Self::Refusal { .. } | Self::Rejected { .. } => Level::Warn,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            // Limited by where it came from: the device it names (a pseudonym the server may
            // not resolve) is anything a sender writes, and would make each refusal new.
            Self::Refusal { remote, error, .. } => Some(Rejection::new(remote, error)),
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}

/// The plaintext of a received message stays out of the log (`m2msec sga inbox` reads it,
/// owner-only).
impl fmt::Display for Noted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registered { known: false } => f.write_str("registered"),
            Self::Registered { known: true } => {
                f.write_str("the server knows this device already: taken as registered")
            }
            Self::Established(i) => write!(
                f,
                "session established peer={} session={} fingerprint={} suite={}",
                i.peer, i.session, i.fingerprint, i.suite
            ),
            Self::Stored {
                to,
                session,
                message_id,
            } => write!(
                f,
                "message stored by the server to={to} session={session} message_id={message_id}"
            ),
            Self::Received { entry, bytes } => write!(
                f,
                "message received from={} session={} message_id={} bytes={bytes}",
                entry.from, entry.session, entry.message_id
            ),
            Self::Failed { what, error } => write!(f, "failed what={what:?} error={error}"),
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
            Self::Skipped { seq, error } => {
                write!(f, "malformed inbox entry skipped seq={seq} error={error}")
            }
        }
    }
}

impl Logged for Noted {
    fn level(&self) -> Level {
        match self {
            Self::Registered { known: false }
            | Self::Established(_)
            | Self::Stored { .. }
            | Self::Received { .. } => Level::Info,
            Self::Registered { known: true } | Self::Failed { .. } | Self::Skipped { .. } => {
                Level::Warn
            }
            Self::Rejected { .. } => Level::Debug,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sga::InboxEntry;

    #[test]
    fn a_received_message_is_logged_without_its_plaintext() {
        let entry = InboxEntry {
            from: "device-i".into(),
            session: "0a0b".into(),
            message_id: 3,
            text: "temperature 21.5".into(),
        };
        let noted = Noted::Received { entry, bytes: 16 };
        assert_eq!(
            noted.to_string(),
            "message received from=device-i session=0a0b message_id=3 bytes=16"
        );
        assert_eq!(noted.level(), Level::Info);
    }
}
