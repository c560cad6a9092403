//! The registry: the one place that names every protocol. A protocol plugs in here with its
//! entry in [`PROTOCOLS`], its arm in each dispatch below and its [`Detail`]; the CLI takes the
//! protocols, their roles and what each command does from here.

use core::fmt;

use serde::Serialize;

use crate::daemon::{Exit, RoleArgs, RoleInfo};
use crate::driver::Shutdown;
use crate::error::{Error, Result};
use crate::report::{RunReport, Summary};
use crate::{collab, e2sec, mikey, relay, sga};

/// One protocol as the commands see it.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    /// Its name in commands and reports.
    pub name: &'static str,
    /// One line of `--help`.
    pub about: &'static str,
    /// Its daemons for `m2msec run`.
    pub roles: &'static [RoleInfo],
}

/// Every implemented protocol, in the order `m2msec demo` runs them.
pub const PROTOCOLS: [Protocol; 5] = [
    Protocol {
        name: collab::PROTOCOL,
        about: collab::ABOUT,
        roles: collab::ROLES,
    },
    Protocol {
        name: mikey::PROTOCOL,
        about: mikey::ABOUT,
        roles: mikey::ROLES,
    },
    Protocol {
        name: sga::PROTOCOL,
        about: sga::ABOUT,
        roles: sga::ROLES,
    },
    Protocol {
        name: e2sec::PROTOCOL,
        about: e2sec::ABOUT,
        roles: e2sec::ROLES,
    },
    Protocol {
        name: relay::PROTOCOL,
        about: relay::ABOUT,
        roles: relay::ROLES,
    },
];

/// The protocol named `name`.
#[must_use]
pub fn find(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.name == name)
}

/// Every daemon role of every protocol, with its protocol.
pub fn roles() -> impl Iterator<Item = (&'static Protocol, &'static RoleInfo)> {
    PROTOCOLS
        .iter()
        .flat_map(|p| p.roles.iter().map(move |r| (p, r)))
}

/// Runs the daemon `role` until it is done or `shutdown` fires.
///
/// # Errors
///
/// [`Error::Usage`] for an unknown role; the role's own errors.
pub async fn run_role(role: &str, args: &RoleArgs, shutdown: Shutdown) -> Result<Exit> {
    let Some((protocol, _)) = roles().find(|(_, r)| r.name == role) else {
        return Err(Error::Usage(format!("{role}: no such role")));
    };
    match protocol.name {
        collab::PROTOCOL => collab::daemon::run_role(role, args, shutdown).await,
        mikey::PROTOCOL => mikey::daemon::run_role(role, args, shutdown).await,
        sga::PROTOCOL => sga::daemon::run_role(role, args, shutdown).await,
        e2sec::PROTOCOL => e2sec::daemon::run_role(role, args, shutdown).await,
        relay::PROTOCOL => relay::run_role(role, args, shutdown).await,
        other => Err(Error::Usage(format!("{other}: no daemons"))),
    }
}

/// What only one protocol reports about a demo run; its keys sit beside the common ones in the
/// run's JSON object.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// collab reports nothing beyond the common fields and its helpers.
    Collab(collab::report::Detail),
    /// MIKEY: its mode and the responder's verification.
    Mikey(mikey::report::Detail),
    /// SGA: the group, the gateway's key and the stored messages.
    Sga(sga::report::Detail),
    /// E2SEC: the group and the proxy-signature variant.
    E2sec(e2sec::report::Detail),
    /// The relay: the storage, its sections and each sink's window.
    Relay(relay::report::Detail),
}

impl Summary for Detail {
    fn summary(&self, run: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Collab(d) => d.summary(run, f),
            Self::Mikey(d) => d.summary(run, f),
            Self::Sga(d) => d.summary(run, f),
            Self::E2sec(d) => d.summary(run, f),
            Self::Relay(d) => d.summary(run, f),
        }
    }
}
