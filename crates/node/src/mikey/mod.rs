//! MIKEY (RFC 3830 and the distributed mode of paper 001) in the node: daemons, demo,
//! provisioning, traces and benchmarks, shaped like [`crate::collab`].
//!
//! Three roles: `mikey-initiator` (the constrained device I, runs its exchanges and exits),
//! `mikey-third-party` (TPi) and `mikey-responder` (R), on the IANA MIKEY port
//! [`PORT`](m2msec_protocol::mikey::PORT) (UDP 2269), each on its own address.

pub mod bench;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod deployment;
pub mod provision;
pub mod trace;

pub use m2msec_protocol::mikey::PORT;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "mikey";

/// The roles `m2msec run` knows for MIKEY.
pub const ROLES: [&str; 3] = ["mikey-initiator", "mikey-third-party", "mikey-responder"];
