//! The MIKEY demo over real UDP on loopback: every mode, tolerable faulty third parties, and
//! too many.

use std::time::{Duration, Instant};

use m2msec_node::harness::report::{Detail, NoProgress, RunReport};
use m2msec_node::mikey::demo::{DemoOptions, run};
use m2msec_node::mikey::deployment::Params;
use m2msec_protocol::mikey::{ModeName, ThirdPartyFault};

mod runtime;

fn demo(mode: ModeName, faulty: u8, fault: Option<ThirdPartyFault>) -> RunReport {
    let mut params = Params {
        mode,
        faulty,
        fault,
        ..Params::default()
    };
    // A short wait keeps the failing case quick; loopback answers in milliseconds.
    params.policy.session = Duration::from_secs(2);
    let opts = DemoOptions {
        params,
        run: runtime::run_options(),
    };
    runtime::demo(run(&opts, &NoProgress))
}

fn established(r: &RunReport, mode: ModeName) {
    assert!(r.ok, "{r:?}");
    assert!(r.session_key_match, "{r:?}");
    let Detail::Mikey(d) = &r.detail else {
        panic!("not a MIKEY report: {r:?}")
    };
    assert!(d.verified);
    assert_eq!(d.mode, mode.name());
    assert_eq!(r.protocol, "mikey");
    assert!(r.messages > 0 && r.bytes > 0);
    assert!(r.error.is_none());
    assert!(r.as_expected);
}

#[test]
fn psk_mode_establishes_matching_keys() {
    let r = demo(ModeName::Psk, 0, None);
    established(&r, ModeName::Psk);
    assert_eq!(r.messages, 2, "I_MESSAGE and R's verification");
    assert_eq!(r.device_ops.asymmetric, 0);
}

#[test]
fn pk_mode_establishes_matching_keys() {
    let r = demo(ModeName::Pk, 0, None);
    established(&r, ModeName::Pk);
    assert_eq!(r.messages, 2);
    assert_eq!(
        r.device_ops.asymmetric, 2,
        "the initiator encrypts the envelope key and signs"
    );
}

#[test]
fn distributed_mode_establishes_matching_keys_without_public_key_work() {
    let r = demo(ModeName::Distributed, 0, None);
    established(&r, ModeName::Distributed);
    assert_eq!(r.device_ops.asymmetric, 0, "the initiator does no RSA");
    assert!(r.device_ops.symmetric >= 5, "one KEMAC per third party");
    assert_eq!(r.helpers.participants.len(), 5);
    assert_eq!(r.helpers.proxies, 5);
    assert_eq!(r.helpers.threshold, 3);
}

fn tolerated(fault: ThirdPartyFault) {
    let r = demo(ModeName::Distributed, 2, Some(fault));
    established(&r, ModeName::Distributed);
    assert_eq!(
        r.helpers.faulty_proxies,
        ["tp4@m2msec.example", "tp5@m2msec.example"]
    );
    for p in &r.helpers.faulty_proxies {
        assert!(
            !r.helpers.participants.contains(p),
            "{fault:?}: faulty {p} listed as participant: {r:?}"
        );
    }
}

#[test]
fn two_silent_third_parties_are_tolerated() {
    tolerated(ThirdPartyFault::Silent);
}

#[test]
fn two_altering_third_parties_are_tolerated() {
    tolerated(ThirdPartyFault::AlterPart);
}

#[test]
fn three_silent_third_parties_fail_cleanly_and_quickly() {
    let start = Instant::now();
    let r = demo(ModeName::Distributed, 3, Some(ThirdPartyFault::Silent));
    assert!(!r.ok);
    assert!(!r.session_key_match);
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains("timed out")),
        "a typed error is reported: {r:?}"
    );
    assert!(!r.expected_ok && r.as_expected);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn three_altering_third_parties_fail_cleanly() {
    let r = demo(ModeName::Distributed, 3, Some(ThirdPartyFault::AlterPart));
    assert!(!r.ok, "{r:?}");
    assert!(r.error.is_some());
    assert!(r.as_expected);
}
