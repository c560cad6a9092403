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
pub mod provision;
pub mod trace;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "collab";

/// The roles `m2msec run` knows for collab.
pub const ROLES: [&str; 4] = [
    "collab-client",
    "collab-proxy",
    "collab-trusted",
    "collab-server",
];
