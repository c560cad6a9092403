//! E2SEC (paper 003: proxy-signature mutual authentication of an MTC device and an MTC server,
//! warrants issued by the EPC) in the node: daemons, demo, provisioning and the cost table of
//! `m2msec bench`, shaped like [`crate::mikey`].
//!
//! Three roles on UDP [`PORT`] (5700, the port of the in-memory deployment), each on its own
//! address: `e2sec-epc` (issues warrants to its subscribers over the pre-shared-key channel
//! that stands in for EPS-AKA), `e2sec-device` and `e2sec-server` (fetch a warrant at start and
//! again before it expires, answer authentications, and initiate the ones of `connect`).

pub mod bench;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod plug;
pub mod provision;
pub mod report;

use crate::harness::daemon::RoleInfo;

use m2msec_crypto::group::GroupId;

use m2msec_protocol::GroupOps;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "e2sec";

/// The roles `m2msec run` knows for E2SEC.
pub const ROLES: &[RoleInfo] = &[
    RoleInfo {
        name: "e2sec-epc",
        about: "The E2SEC EPC: issues warrants to its subscribers",
    },
    RoleInfo {
        name: "e2sec-device",
        about: "An E2SEC MTC device: keeps a warrant, answers (or, with --connect, runs) \
                authentications",
    },
    RoleInfo {
        name: "e2sec-server",
        about: "An E2SEC MTC server: keeps a warrant, answers (or, with --connect, runs) \
                authentications",
    },
];

/// What the protocol is, in one line of `--help`.
pub const ABOUT: &str = "E2SEC: proxy-signature mutual authentication of an MTC device and an \
                         MTC server with warrants from the EPC (paper 003)";

/// UDP port of every role.
pub const PORT: u16 = m2msec_protocol::e2sec::sim::PORT;

/// The groups E2SEC runs over.
pub const GROUPS: [GroupId; 3] = [
    GroupId::Dsa1024_160,
    GroupId::Dsa2048_256,
    GroupId::Ristretto255,
];

/// A group's name in config files, options and reports.
#[must_use]
pub fn group_name(g: GroupId) -> &'static str {
    config::GroupFile::of(g).map_or("modp2048", config::GroupFile::name)
}

/// The device's operations in the four counts every protocol reports, from its group
/// arithmetic: `asymmetric` = T_E + T_M (exponentiations and multiplications of group
/// elements and scalars: the public-key work), `hash` = T_H plus the HMACs of the exchange
/// (`hmacs`: the key-confirmation MAC), `symmetric` = AEAD operations (`aeads`: none during an
/// authentication; the warrant grant is opened before the count starts), `redundancy` = 0.
#[must_use]
pub fn device_ops(
    t: &m2msec_crypto::group::OpTally,
    hmacs: u64,
    aeads: u64,
) -> crate::harness::report::DeviceOps {
    crate::harness::report::DeviceOps {
        counts: m2msec_protocol::OpCounts {
            symmetric: aeads,
            hash: t.hash + hmacs,
            redundancy: 0,
            asymmetric: t.exp + t.mul,
        },
        group: Some(GroupOps::from(t)),
    }
}
