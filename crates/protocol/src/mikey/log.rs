//! How MIKEY's events read in a daemon's log ([`Logged`]).

use core::fmt;

use m2msec_wire::cbor::hex;

use super::{Established, InitiatorEvent, ResponderEvent, ThirdPartyEvent};
use crate::{Level, Logged, Rejection};

/// The line of an established TGK, the initiator's and the responder's alike.
fn established(f: &mut fmt::Formatter<'_>, e: &Established) -> fmt::Result {
    write!(
        f,
        "mikey key established csb_id={:#010x} peer={} mode={:?} verified={} tek_fingerprint={}",
        e.csb_id,
        e.peer,
        e.mode.name(),
        e.verified,
        hex(&e.keys.fingerprint())
    )
}

impl fmt::Display for InitiatorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Established(e) => established(f, e),
            Self::ThirdPartyConfirmed { third_party } => {
                write!(
                    f,
                    "third party confirmed its part third_party={third_party}"
                )
            }
            Self::Failed { csb_id, error } => {
                write!(
                    f,
                    "mikey exchange failed csb_id={csb_id:#010x} error={error}"
                )
            }
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for InitiatorEvent {
    fn level(&self) -> Level {
        match self {
            Self::Established(_) => Level::Info,
            Self::ThirdPartyConfirmed { .. } => Level::Debug,
            Self::Failed { .. } => Level::Error,
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

impl fmt::Display for ResponderEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Established(e) => established(f, e),
            Self::PartAccepted {
                initiator,
                csb_id,
                third_party,
            } => write!(
                f,
                "TGK part fits initiator={initiator} csb_id={csb_id:#010x} third_party={third_party}"
            ),
            Self::PartRejected {
                initiator,
                csb_id,
                third_party,
            } => write!(
                f,
                "TGK part refused: it does not fit the commitment initiator={initiator} csb_id={csb_id:#010x} third_party={third_party}"
            ),
            Self::ReplayRecorded { digest, until } => {
                write!(
                    f,
                    "replay-cache entry recorded digest={} until={}",
                    hex(digest),
                    until.0
                )
            }
            Self::Failed {
                initiator,
                csb_id,
                error,
            } => write!(
                f,
                "exchange failed initiator={initiator} csb_id={csb_id:#010x} error={error}"
            ),
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for ResponderEvent {
    fn level(&self) -> Level {
        match self {
            Self::Established(_) => Level::Info,
            Self::PartAccepted { .. } => Level::Debug,
            Self::PartRejected { .. } | Self::Failed { .. } | Self::Rejected { .. } => Level::Warn,
            Self::ReplayRecorded { .. } => Level::Trace,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}

impl fmt::Display for ThirdPartyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forwarded {
                initiator,
                csb_id,
                responder,
            } => write!(
                f,
                "forwarded a TGK part initiator={initiator} csb_id={csb_id:#010x} responder={responder}"
            ),
            Self::Confirmed { csb_id } => {
                write!(f, "responder confirmed the part csb_id={csb_id:#010x}")
            }
            Self::ReplayRecorded { digest, until } => {
                write!(
                    f,
                    "replay-cache entry recorded digest={} until={}",
                    hex(digest),
                    until.0
                )
            }
            Self::Failed { csb_id, error } => {
                write!(f, "exchange failed csb_id={csb_id:#010x} error={error}")
            }
            Self::Rejected { remote, error } => {
                write!(f, "datagram rejected remote={remote} error={error}")
            }
        }
    }
}

impl Logged for ThirdPartyEvent {
    fn level(&self) -> Level {
        match self {
            Self::Forwarded { .. } => Level::Info,
            Self::Confirmed { .. } => Level::Debug,
            Self::ReplayRecorded { .. } => Level::Trace,
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
