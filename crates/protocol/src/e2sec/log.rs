//! How E2SEC's events read in a daemon's log ([`Logged`]).

use core::fmt;

use m2msec_wire::cbor::hex;

use super::{EpcEvent, PartyEvent};
use crate::{Level, Logged, Rejection};

impl fmt::Display for EpcEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Issued {
                holder,
                valid_until,
            } => write!(
                f,
                "warrant issued holder={holder} valid_until={valid_until}"
            ),
            Self::Rejected { remote, error } => {
                write!(f, "warrant request refused remote={remote} error={error}")
            }
        }
    }
}

impl Logged for EpcEvent {
    fn level(&self) -> Level {
        match self {
            Self::Issued { .. } => Level::Info,
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

impl fmt::Display for PartyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WarrantStored { valid_until } => {
                write!(f, "warrant stored valid_until={valid_until}")
            }
            Self::Established {
                peer,
                key,
                initiator,
            } => write!(
                f,
                "e2sec SK established peer={peer} initiator={initiator} sk_fingerprint={}",
                hex(&key.fingerprint())
            ),
            Self::Failed { peer, error } => {
                write!(f, "e2sec authentication failed peer={peer} error={error}")
            }
            // A new request follows at the agent's next fetch.
            Self::WarrantFailed { error } => write!(f, "no warrant from the EPC error={error}"),
            Self::Rejected { remote, error } => write!(f, "refused remote={remote} error={error}"),
        }
    }
}

impl Logged for PartyEvent {
    fn level(&self) -> Level {
        match self {
            Self::WarrantStored { .. } | Self::Established { .. } => Level::Info,
            Self::Failed { .. } => Level::Error,
            Self::WarrantFailed { .. } | Self::Rejected { .. } => Level::Warn,
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Rejected { remote, error } => Some(Rejection::new(remote, error)),
            _ => None,
        }
    }
}
