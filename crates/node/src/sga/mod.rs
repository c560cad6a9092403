//! The security gateway application (paper 002) in the node: daemons, the local control
//! channel of the `m2msec sga` commands, demo, provisioning and benchmarks, shaped like
//! [`crate::mikey`].
//!
//! Two roles: `sga-server` (the gateway: registrations and held messages in a redb store,
//! written before anything that depends on them is sent) and `sga-device` (a smart device:
//! registers, polls the server so that it stays reachable, accepts invitations, keeps its
//! sessions in memory and its received messages in its own store). Both listen on UDP
//! [`PORT`] (5684, the port of the in-memory deployment; CoAP's 5683 is left to CoAP), each on
//! its own address. A device daemon takes commands (`m2msec sga register|invite|send|inbox`)
//! on an owner-only Unix socket beside its state; see [`control`].

pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod plug;
pub mod provision;
pub mod report;

use crate::harness::daemon::RoleInfo;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "sga";

/// The roles `m2msec run` knows for SGA.
pub const ROLES: &[RoleInfo] = &[
    RoleInfo {
        name: "sga-server",
        about: "The SGA server (gateway): registrations, key exchanges, durable store-and-forward",
    },
    RoleInfo {
        name: "sga-device",
        about: "An SGA smart device: registers, polls, accepts invitations, serves `m2msec sga`",
    },
];

/// What the protocol is, in one line of `--help`.
pub const ABOUT: &str = "The security gateway application: key exchange and store-and-forward \
                         through a server (paper 002)";

/// UDP port of the server and the devices.
pub const PORT: u16 = m2msec_protocol::sga::sim::PORT;
