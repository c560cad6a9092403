//! E2SEC in the node: the example configs parse, and the cost table's counts.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use m2msec_crypto::group::GroupId;
use m2msec_node::e2sec::bench;
use m2msec_node::e2sec::config::{EpcFile, PartyFile};
use m2msec_node::runtime::config::load_toml;
use m2msec_protocol::e2sec::Variant;
use m2msec_protocol::e2sec::cost::paper_ops;

#[test]
fn example_configs_parse() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let _: EpcFile = load_toml(&ex.join("e2sec-epc.toml")).unwrap();
    let d: PartyFile = load_toml(&ex.join("e2sec-device.toml")).unwrap();
    let s: PartyFile = load_toml(&ex.join("e2sec-server.toml")).unwrap();
    assert!(d.connect.is_empty());
    assert_eq!(s.connect, ["mtcd-0001"]);
}

#[test]
fn cost_table_counts_match_on_both_sides() {
    for variant in Variant::ALL {
        let cell = bench::measure(GroupId::Ristretto255, variant, 1, 1).unwrap();
        assert_eq!(cell.device.ops, cell.server.ops, "{variant:?}");
        assert!(cell.device.ops.te >= paper_ops(variant).te - 1);
    }
}
