//! The collab demo over real UDP on loopback: honest, with tolerable faults, and with too many.

use std::time::{Duration, Instant};

use m2msec_node::collab::demo::{DemoOptions, run};
use m2msec_node::collab::deployment::Params;
use m2msec_node::harness::report::{NoProgress, RunReport};
use m2msec_protocol::collab::ProxyFault;

mod runtime;

fn demo(faulty: u8, fault: Option<ProxyFault>) -> RunReport {
    let mut params = Params {
        faulty,
        fault,
        ..Params::default()
    };
    // Short waits keep the failing case quick; loopback answers in milliseconds.
    params.timeouts.session = Duration::from_secs(2);
    let opts = DemoOptions {
        params,
        run: runtime::run_options(),
    };
    runtime::demo(run(&opts, &NoProgress))
}

#[test]
fn honest_run_establishes_matching_keys() {
    let r = demo(0, None);
    assert!(r.ok, "{r:?}");
    assert!(r.session_key_match);
    assert_eq!(r.helpers.participants.len(), 5);
    assert_eq!(
        r.device_ops.asymmetric, 0,
        "the client does no public-key operation"
    );
    assert!(r.messages > 0 && r.bytes > 0);
    assert!(r.as_expected);
}

fn tolerated(fault: ProxyFault) {
    let r = demo(2, Some(fault));
    assert!(r.ok, "{fault:?}: {r:?}");
    assert!(r.session_key_match);
    assert_eq!(r.helpers.faulty_proxies, ["proxy-4", "proxy-5"]);
    for p in &r.helpers.faulty_proxies {
        assert!(
            !r.helpers.participants.contains(p),
            "{fault:?}: faulty {p} listed as participant"
        );
    }
    assert!(r.as_expected);
}

#[test]
fn two_silent_proxies_are_tolerated() {
    tolerated(ProxyFault::Silent);
}

#[test]
fn two_forging_proxies_are_tolerated() {
    tolerated(ProxyFault::ForgeFragment);
}

#[test]
fn two_corrupting_proxies_are_tolerated() {
    tolerated(ProxyFault::CorruptAnswer);
}

#[test]
fn three_silent_proxies_fail_cleanly_and_quickly() {
    let start = Instant::now();
    let r = demo(3, Some(ProxyFault::Silent));
    assert!(!r.ok);
    assert!(!r.session_key_match);
    assert!(r.error.is_some(), "a typed error is reported");
    assert!(!r.expected_ok && r.as_expected);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn three_forging_proxies_fail_cleanly() {
    let r = demo(3, Some(ProxyFault::ForgeFragment));
    assert!(!r.ok);
    assert!(r.error.is_some());
    assert!(r.as_expected);
}
