//! The committed MIKEY traces under `vectors/mikey/` are re-derived byte for byte.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_protocol::mikey::ModeName;
use m2msec_protocol::mikey::sim::Spec;
use m2msec_protocol::mikey::trace;

fn check(mode: ModeName, seed: u64) {
    let file = format!("{}-seed-{seed}.txt", mode.name());
    let path = format!("{}/../../vectors/mikey/{file}", env!("CARGO_MANIFEST_DIR"));
    let spec = Spec {
        mode,
        ..Spec::default()
    };
    let rendered = trace::render(&spec, seed).unwrap();
    if std::env::var_os("M2MSEC_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (set M2MSEC_BLESS=1 to write it)"));
    assert!(
        committed == rendered,
        "{path} differs from the re-derived trace (M2MSEC_BLESS=1 rewrites it after a deliberate change)"
    );
}

#[test]
fn psk_trace_is_reproduced() {
    check(ModeName::Psk, 1);
}

#[test]
fn pk_trace_is_reproduced() {
    check(ModeName::Pk, 1);
}

#[test]
fn distributed_trace_is_reproduced() {
    check(ModeName::Distributed, 1);
}
