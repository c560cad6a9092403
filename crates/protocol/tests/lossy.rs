//! Every protocol on a bad link (issue 19): the in-memory network loses 10 % of datagrams,
//! duplicates 2 % and lets up to 3 later datagrams overtake each one, independently in each
//! direction, and every key establishment and every SGA message still completes, because the
//! roles retransmit what waits for an answer and answer copies from what they sent
//! (`m2msec_protocol::reliable`). Each case runs over many seeds, so many loss patterns
//! (`m2msec_protocol::trial` runs one).
#![allow(missing_docs)]

use m2msec_protocol::link::LinkFaults;
use m2msec_protocol::mikey::ModeName;
use m2msec_protocol::trial::{self, Trial};

/// The bad link of the goal.
const LOSSY: LinkFaults = LinkFaults {
    loss: 0.10,
    duplicate: 0.02,
    reorder: 3,
};

/// Seeds per protocol: each a different pattern of losses.
const RUNS: u64 = 25;

fn all_complete(what: &str, run: impl Fn(u64) -> Trial) {
    for seed in 0..RUNS {
        let t = run(seed);
        assert!(t.completed, "{what}, seed {seed}: {t:?}");
    }
}

#[test]
fn collab_establishes_every_key_at_10_percent_loss() {
    all_complete("collab", |seed| trial::collab(LOSSY, seed));
}

#[test]
fn mikey_establishes_every_key_at_10_percent_loss_in_every_mode() {
    for mode in [ModeName::Psk, ModeName::Pk, ModeName::Distributed] {
        for (seed, t) in trial::mikey(mode, LOSSY, 0..RUNS).iter().enumerate() {
            assert!(t.completed, "mikey {mode:?}, seed {seed}: {t:?}");
        }
    }
}

#[test]
fn sga_establishes_every_key_and_delivers_every_message_once_at_10_percent_loss() {
    all_complete("sga", |seed| trial::sga(LOSSY, seed, 5));
}

#[test]
fn e2sec_establishes_every_key_at_10_percent_loss() {
    all_complete("e2sec", |seed| trial::e2sec(LOSSY, seed));
}

/// The link really is bad: the same trial on a perfect link takes no virtual time (no
/// retransmission was needed), on the lossy one some runs do.
#[test]
fn the_lossy_link_costs_retransmissions() {
    let perfect = trial::collab(LinkFaults::default(), 1);
    assert!(perfect.completed);
    assert!(perfect.took.as_millis() < 500, "{perfect:?}");
    let slower = (0..RUNS)
        .map(|seed| trial::collab(LOSSY, seed))
        .filter(|t| t.took > perfect.took)
        .count();
    assert!(slower > 0);
}
