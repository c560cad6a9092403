//! How collab's events read in a daemon's log ([`Logged`]).

use core::fmt;

use m2msec_wire::cbor::hex;

use super::{ClientEvent, Established, ProxyEvent, ServerEvent, TrustedEvent};
use crate::{Level, Logged, Rejection};

/// The line of an established key, the client's and the server's alike.
fn established(f: &mut fmt::Formatter<'_>, e: &Established) -> fmt::Result {
    write!(
        f,
        "collab key established session={} peer={} key_fingerprint={} participants={}",
        e.session,
        e.peer,
        hex(&e.key.fingerprint()),
        e.participants.join(",")
    )
}

impl fmt::Display for ClientEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Established(e) => established(f, e),
            Self::Failed { session, error } => {
                write!(
                    f,
                    "collab key establishment failed session={session} error={error}"
                )
            }
            Self::TrustUpdated(records) => {
                f.write_str("trust updated")?;
                for (i, r) in records.iter().enumerate() {
                    write!(
                        f,
                        "{} proxy={} score={:?} successes={} failures={}",
                        if i == 0 { "" } else { ";" },
                        r.proxy,
                        r.score,
                        r.successes,
                        r.failures
                    )?;
                }
                Ok(())
            }
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for ClientEvent {
    fn level(&self) -> Level {
        match self {
            Self::Established(_) => Level::Info,
            Self::Failed { .. } => Level::Error,
            Self::TrustUpdated(_) => Level::Debug,
            Self::Rejected { .. } => Level::Warn,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}

impl fmt::Display for ServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Established(e) => established(f, e),
            Self::Failed { session, error } => {
                write!(f, "session failed session={session} error={error}")
            }
            Self::OneTimeKeyUsed(id) => write!(f, "one-time key used id={}", hex(id)),
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for ServerEvent {
    fn level(&self) -> Level {
        match self {
            Self::Established(_) => Level::Info,
            Self::Failed { .. } | Self::Rejected { .. } => Level::Warn,
            Self::OneTimeKeyUsed(_) => Level::Trace,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}

impl fmt::Display for ProxyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relayed { session } => write!(f, "relayed a session session={session}"),
            Self::Failed { session, error } => {
                write!(f, "session failed session={session} error={error}")
            }
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for ProxyEvent {
    fn level(&self) -> Level {
        match self {
            Self::Relayed { .. } => Level::Info,
            Self::Failed { .. } | Self::Rejected { .. } => Level::Warn,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}

impl fmt::Display for TrustedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provisioned { session, proxies } => write!(
                f,
                "provisioned one-time keys session={session} proxies={}",
                proxies.join(",")
            ),
            Self::Failed { session, error } => {
                write!(f, "session failed session={session} error={error}")
            }
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for TrustedEvent {
    fn level(&self) -> Level {
        match self {
            Self::Provisioned { .. } => Level::Info,
            Self::Failed { .. } | Self::Rejected { .. } => Level::Warn,
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
    use crate::collab::Error;

    #[test]
    fn an_event_reads_as_what_happened_then_its_fields() {
        let remote = "127.0.0.1:5683".parse().unwrap_or_else(|e| panic!("{e}"));
        let event = ProxyEvent::Rejected {
            remote,
            error: Error::Authentication,
        };
        let expected = format!(
            "datagram rejected remote=127.0.0.1:5683 error={}",
            Error::Authentication
        );
        assert_eq!(event.to_string(), expected);
        assert_eq!(event.level(), Level::Warn);
        let rejection = Rejection {
            peer: "127.0.0.1:5683".into(),
            reason: "Authentication".into(),
        };
        assert_eq!(event.rejection(), Some(rejection));
        let decode = ProxyEvent::Rejected {
            remote,
            error: Error::Decode(m2msec_wire::Error::UnknownMessageType(7)),
        };
        let reason = decode.rejection().map(|r| r.reason);
        assert_eq!(reason.as_deref(), Some("Decode.UnknownMessageType"));
        let relayed = ProxyEvent::Relayed {
            session: crate::collab::SessionId([0; 16]),
        };
        assert!(relayed.rejection().is_none());
    }
}
