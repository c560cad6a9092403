//! MIKEY (RFC 3830 and the distributed mode of paper 001) in the node: daemons, demo,
//! provisioning, traces and benchmarks, shaped like [`crate::collab`].
//!
//! Three roles: `mikey-initiator` (the constrained device I, runs its exchanges and exits),
//! `mikey-third-party` (TPi) and `mikey-responder` (R), on the IANA MIKEY port
//! [`PORT`] (UDP 2269), each on its own address.

pub mod bench;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod deployment;
pub mod plug;
pub mod provision;
pub mod report;

use crate::harness::daemon::RoleInfo;

pub use m2msec_protocol::mikey::PORT;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "mikey";

/// The roles `m2msec run` knows for MIKEY.
pub const ROLES: &[RoleInfo] = &[
    RoleInfo {
        name: "mikey-initiator",
        about: "The MIKEY initiator I (constrained device): runs its exchanges, then exits",
    },
    RoleInfo {
        name: "mikey-third-party",
        about: "A MIKEY third party TPi of the distributed mode",
    },
    RoleInfo {
        name: "mikey-responder",
        about: "The MIKEY responder R",
    },
];

/// What the protocol is, in one line of `--help`.
pub const ABOUT: &str = "MIKEY (RFC 3830) and its distributed mode over third parties (paper 001)";
