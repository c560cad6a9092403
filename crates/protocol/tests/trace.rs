//! The committed annotated traces under `vectors/collab/` are re-derived byte for byte.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_crypto::ots::OtsScheme;
use m2msec_protocol::collab::sim::Spec;
use m2msec_protocol::collab::trace;

fn check(file: &str, spec: &Spec, seed: u64) {
    let path = format!("{}/../../vectors/collab/{file}", env!("CARGO_MANIFEST_DIR"));
    let rendered = trace::render(spec, seed).unwrap();
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
fn default_trace_is_reproduced() {
    check("trace-seed-1.txt", &Spec::default(), 1);
}

#[test]
fn lmots_trace_is_reproduced() {
    let spec = Spec {
        ots: OtsScheme::LmotsSha256N32W4,
        ..Spec::default()
    };
    check("trace-lmots-seed-1.txt", &spec, 1);
}

#[test]
fn traces_are_deterministic_and_seed_dependent() {
    let a = trace::render(&Spec::default(), 7).unwrap();
    let b = trace::render(&Spec::default(), 7).unwrap();
    let c = trace::render(&Spec::default(), 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}
