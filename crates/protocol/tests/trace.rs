//! The committed annotated traces under `vectors/collab/`, `vectors/e2sec/`, `vectors/relay/`
//! and `vectors/sga/` are re-derived byte for byte.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_crypto::ots::OtsScheme;
use m2msec_protocol::collab::sim::Spec;
use m2msec_protocol::collab::trace;

fn check(file: &str, spec: &Spec, seed: u64) {
    check_rendered(
        &format!("collab/{file}"),
        &trace::render(spec, seed).unwrap(),
    );
}

fn check_rendered(file: &str, rendered: &str) {
    let path = format!("{}/../../vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("M2MSEC_BLESS").is_some() {
        std::fs::write(&path, rendered).unwrap();
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

#[test]
fn e2sec_traces_are_reproduced() {
    use m2msec_crypto::group::GroupId;
    use m2msec_protocol::e2sec;

    let default = e2sec::sim::Spec::default();
    check_rendered(
        "e2sec/trace-seed-1.txt",
        &e2sec::trace::render(&default, 1).unwrap(),
    );
    // The paper's cost table is for 1024-bit p and 160-bit q.
    let paper = e2sec::sim::Spec {
        group: GroupId::Dsa1024_160,
        ..default
    };
    check_rendered(
        "e2sec/trace-ffdh1024-seed-1.txt",
        &e2sec::trace::render(&paper, 1).unwrap(),
    );
}

#[test]
fn relay_trace_is_reproduced() {
    use m2msec_protocol::relay::trace;
    let rendered = trace::render(&trace::Spec::default(), 1).unwrap();
    check_rendered("relay/trace-seed-1.txt", &rendered);
    assert_ne!(rendered, trace::render(&trace::Spec::default(), 2).unwrap());
}

#[test]
fn sga_traces_are_reproduced() {
    use m2msec_crypto::group::GroupId;
    use m2msec_protocol::sga;

    let default = sga::sim::Spec::default();
    let rendered = sga::trace::render(&default, 1).unwrap();
    // Every sealed part opened and every MAC and f_K check held with the receivers' keys.
    assert!(!rendered.contains("DOES NOT"), "{rendered}");
    check_rendered("sga/trace-seed-1.txt", &rendered);
    assert_ne!(rendered, sga::trace::render(&default, 2).unwrap());
    // The paper's setting: the 2048-bit MODP group.
    let paper = sga::sim::Spec {
        group: GroupId::Modp2048,
        ..default
    };
    check_rendered(
        "sga/trace-modp2048-seed-1.txt",
        &sga::trace::render(&paper, 1).unwrap(),
    );
}
