//! Every protocol on a bad link (issue 19), on the in-memory network with the trials' one-way
//! delay (`trial::LATENCY`), independently in each direction:
//!
//! - at 10 % loss, 2 % duplication and reordering by up to 3, every key establishment and
//!   every SGA message completes;
//! - at 30 % loss, at least 95 % of them complete within 10× the same trial's lossless time;
//! - on a link too bad to finish, every run that does not complete ends with the error a role
//!   reported, at a deadline, never a hang.
//!
//! The roles retransmit what waits for an answer and answer copies from what they sent
//! (`m2msec_protocol::reliable`). Each case runs over many seeds, so many loss patterns
//! (`m2msec_protocol::trial` runs one); `m2msec bench` runs the same trials at every rate.
#![allow(missing_docs)]

use core::time::Duration;

use m2msec_protocol::link::LinkFaults;
use m2msec_protocol::mikey::ModeName;
use m2msec_protocol::network::HORIZON;
use m2msec_protocol::trial::{self, LATENCY, Link, Trial};

/// The bad link every establishment must survive.
const LOSSY: Link = Link {
    latency: LATENCY,
    faults: LinkFaults {
        loss: 0.10,
        duplicate: 0.02,
        reorder: 3,
    },
};

/// Seeds per protocol at 10 %: each a different pattern of losses.
const RUNS: u64 = 25;

/// Seeds per protocol at 30 %: enough that 95 % means something (at most 5 runs late), few
/// enough for a debug build.
const RUNS_AT_30: u64 = 100;

fn all_complete(what: &str, run: impl Fn(u64) -> Trial) {
    for seed in 0..RUNS {
        let t = run(seed);
        assert!(t.completed, "{what}, seed {seed}: {t:?}");
    }
}

#[test]
fn collab_establishes_every_key_at_10_percent_loss() {
    all_complete("collab", |seed| trial::collab(&LOSSY, seed));
}

#[test]
fn mikey_establishes_every_key_at_10_percent_loss_in_every_mode() {
    for mode in [ModeName::Psk, ModeName::Pk, ModeName::Distributed] {
        for (seed, t) in trial::mikey(mode, &LOSSY, 0..RUNS).iter().enumerate() {
            assert!(t.completed, "mikey {mode:?}, seed {seed}: {t:?}");
        }
    }
}

#[test]
fn sga_establishes_every_key_and_delivers_every_message_once_at_10_percent_loss() {
    all_complete("sga", |seed| trial::sga(&LOSSY, seed, 5));
}

#[test]
fn e2sec_establishes_every_key_at_10_percent_loss() {
    all_complete("e2sec", |seed| trial::e2sec(&LOSSY, seed));
}

/// Asserts the goal at 30 % loss: at least 95 % of `trials` completed within 10× `lossless`
/// (the same trial on the same link without loss), and the rest failed with an error at a
/// deadline.
fn within_ten_times(what: &str, lossless: &Trial, trials: &[Trial]) {
    assert!(lossless.completed, "{what} lossless: {lossless:?}");
    let budget = lossless.took * 10;
    let mut late = Vec::new();
    for (seed, t) in trials.iter().enumerate() {
        if !t.completed {
            assert!(
                t.error.is_some() && t.took < HORIZON,
                "{what}, seed {seed}: {t:?}"
            );
        }
        if !t.completed || t.took > budget {
            late.push((seed, t.completed, t.took));
        }
    }
    let within = trials.len() - late.len();
    assert!(
        within * 100 >= trials.len() * 95,
        "{what}: {within} of {} within {budget:?} (lossless {:?}); late or failed: {late:?}",
        trials.len(),
        lossless.took
    );
}

#[test]
fn collab_establishes_95_percent_of_keys_within_10x_at_30_percent_loss() {
    let link = Link::lossy(0.30);
    let trials: Vec<Trial> = (0..RUNS_AT_30)
        .map(|seed| trial::collab(&link, seed))
        .collect();
    within_ten_times("collab", &trial::collab(&link.lossless(), 0), &trials);
}

#[test]
fn mikey_establishes_95_percent_of_keys_within_10x_at_30_percent_loss() {
    let link = Link::lossy(0.30);
    let Ok(mut mikey) = trial::Mikey::new(ModeName::Distributed, 0) else {
        panic!("no MIKEY deployment");
    };
    let lossless = mikey.run(&link.lossless(), 0);
    let trials: Vec<Trial> = (0..RUNS_AT_30).map(|seed| mikey.run(&link, seed)).collect();
    within_ten_times("mikey", &lossless, &trials);
}

#[test]
fn sga_establishes_95_percent_of_keys_within_10x_at_30_percent_loss() {
    let link = Link::lossy(0.30);
    let trials: Vec<Trial> = (0..RUNS_AT_30)
        .map(|seed| trial::sga(&link, seed, 3))
        .collect();
    within_ten_times("sga", &trial::sga(&link.lossless(), 0, 3), &trials);
}

#[test]
fn e2sec_establishes_95_percent_of_keys_within_10x_at_30_percent_loss() {
    let link = Link::lossy(0.30);
    let trials: Vec<Trial> = (0..RUNS_AT_30)
        .map(|seed| trial::e2sec(&link, seed))
        .collect();
    within_ten_times("e2sec", &trial::e2sec(&link.lossless(), 0), &trials);
}

/// On a link that loses 70 % of datagrams many runs cannot finish: each of those ends with the
/// error a role reported when its deadline passed, and none runs into the network's horizon.
#[test]
fn runs_that_cannot_finish_end_with_an_error_at_a_deadline() {
    let link = Link::lossy(0.70);
    let mut failed = 0;
    let mut check = |what: &str, seed: u64, t: &Trial| {
        if !t.completed {
            failed += 1;
            assert!(t.error.is_some(), "{what}, seed {seed}: no error: {t:?}");
            // Each step of a trial ends at a role's deadline (20 s by default); SGA has three.
            assert!(
                t.took <= Duration::from_secs(75),
                "{what}, seed {seed}: {t:?}"
            );
        }
    };
    for seed in 0..20 {
        check("collab", seed, &trial::collab(&link, seed));
        check("sga", seed, &trial::sga(&link, seed, 3));
        check("e2sec", seed, &trial::e2sec(&link, seed));
    }
    for (seed, t) in (0..).zip(&trial::mikey(ModeName::Distributed, &link, 0..20)) {
        check("mikey", seed, t);
    }
    assert!(
        failed >= 20,
        "only {failed} runs failed: the link is not bad enough"
    );
}

/// The latency model: a lossless run takes its one-way trips times the latency, no more (no
/// retransmission was needed), and lossy runs take longer.
#[test]
fn a_lossless_run_takes_its_one_way_trips() {
    let perfect = Link::lossy(0.0);
    // Warrant request and grant (both parties at once), AuthInit, AuthReply, Confirm.
    assert_eq!(trial::e2sec(&perfect, 1).took, LATENCY * 5);
    // I_MESSAGE parts to the third parties, their forwards to R, R's verification.
    assert_eq!(
        trial::mikey(ModeName::Distributed, &perfect, 1..2)[0].took,
        LATENCY * 3
    );
    let lossless = trial::collab(&perfect, 1);
    assert!(lossless.completed);
    let slower = (0..RUNS)
        .map(|seed| trial::collab(&Link::lossy(0.10), seed))
        .filter(|t| t.took > lossless.took)
        .count();
    assert!(slower > 0);
}

/// The invariant the waits keep (docs/lossy-links.md): every deadline of an exchange outlasts
/// one request's retransmissions, so a request is never abandoned by its session while its
/// tries are still running.
#[test]
fn deadlines_outlast_a_requests_retransmissions() {
    let span = m2msec_protocol::RetransmitPolicy::default().span();
    let collab = m2msec_protocol::collab::Timeouts::default();
    assert!(collab.session > span && collab.fragments > span);
    assert!(collab.fragments < collab.session);
    assert!(m2msec_protocol::mikey::Policy::default().session > span);
    assert!(m2msec_protocol::sga::Timeouts::default().exchange > span);
    assert!(m2msec_protocol::e2sec::sim::Spec::default().timeout > span);
}
