//! The collab protocol in the node: daemons, demo, provisioning, traces and benchmarks.
//!
//! Each protocol of m2msec has a module like this one; `m2msec run`, `demo`, `provision`,
//! `trace` and `bench` dispatch to it by protocol name, so a new protocol plugs in by adding
//! its module and one line per command.

pub mod bench;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod deployment;
pub mod plug;
pub mod provision;
pub mod report;

use crate::harness::daemon::RoleInfo;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "collab";

/// What the protocol is, in one line of `--help`.
pub const ABOUT: &str = "Collaborative key establishment through helper proxies (paper 000)";

/// The roles `m2msec run` knows for collab.
pub const ROLES: &[RoleInfo] = &[
    RoleInfo {
        name: "collab-client",
        about: "The constrained client A: runs key establishments, then exits",
    },
    RoleInfo {
        name: "collab-proxy",
        about: "A helper proxy Pi",
    },
    RoleInfo {
        name: "collab-trusted",
        about: "The trusted entity T",
    },
    RoleInfo {
        name: "collab-server",
        about: "The server B",
    },
];
