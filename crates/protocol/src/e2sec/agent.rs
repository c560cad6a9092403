//! What a device or server daemon decides around its [`Party`](super::Party), sans IO: when
//! to ask the EPC for the next warrant, whether an authentication may start, which peer is next
//! in turn, and the demo's expired-warrant hold. The daemon's handler asks, acts and logs.
//!
//! Kept apart from the `Party` role on purpose: the in-memory runs fetch one warrant each and
//! must not be changed by refreshes scheduled through the role's timers.

use core::time::Duration;

use crate::Millis;

/// How long a party waits for a warrant before asking again with a new request: after the
/// protocol's own retransmissions of the last one have given up.
pub const WARRANT_RETRY: Duration = Duration::from_millis(16_000);

/// The earliest a held warrant is refreshed, however close its end.
const MIN_REFRESH: u64 = 500;

/// How far past its warrant's end the expired-warrant run holds the party off the network.
const HOLD_PAST_END: u64 = 300;

/// A party daemon's warrant and turns: the decisions, given events and `now`.
#[derive(Clone, Debug)]
pub struct PartyAgent {
    peers: Vec<String>,
    valid_until: Option<Millis>,
    next_fetch: Option<Millis>,
    /// The expired-warrant run ([`Self::held_past_warrant`]).
    stale: bool,
    hold: Option<Millis>,
}

impl PartyAgent {
    /// An agent initiating with `peers` in turn, whose first warrant request was sent at `now`.
    #[must_use]
    pub fn new(peers: Vec<String>, now: Millis) -> Self {
        Self {
            peers,
            valid_until: None,
            next_fetch: Some(now.after(WARRANT_RETRY)),
            stale: false,
            hold: None,
        }
    }

    /// Fetches no new warrant once one is held, and holds the party off the network from its
    /// first authentication's start until that warrant has expired (the demo's
    /// expired-warrant run: its AuthInit arrives late).
    #[must_use]
    pub fn held_past_warrant(mut self) -> Self {
        self.stale = true;
        self
    }

    /// The peers initiated with, in turn.
    #[must_use]
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// A warrant valid until `valid_until` was stored at `now`: the next is fetched once three
    /// quarters of what is left have passed (at least 500 ms on), so none expires in use.
    pub fn stored(&mut self, now: Millis, valid_until: u64) {
        self.valid_until = Some(Millis(valid_until));
        let left = valid_until.saturating_sub(now.0);
        let wait = (left.saturating_mul(3) / 4).max(MIN_REFRESH);
        self.next_fetch = (!self.stale).then(|| Millis(now.0.saturating_add(wait)));
    }

    /// When the next warrant request is due, if one is.
    #[must_use]
    pub fn next_fetch(&self) -> Option<Millis> {
        self.next_fetch
    }

    /// Whether a warrant request is due at `now`; if so, it counts as sent, and the next one
    /// follows [`WARRANT_RETRY`] later unless a warrant arrives first.
    pub fn fetch_due(&mut self, now: Millis) -> bool {
        let due = self.next_fetch.is_some_and(|t| t <= now);
        if due {
            self.next_fetch = Some(now.after(WARRANT_RETRY));
        }
        due
    }

    /// Whether an authentication may start at `now`: a warrant is held and has not expired.
    #[must_use]
    pub fn may_start(&self, now: Millis) -> bool {
        self.valid_until.is_some_and(|u| u >= now)
    }

    /// The peer of the `started`-th run (counted from 1), each peer in turn.
    #[must_use]
    pub fn peer_of_run(&self, started: u32) -> Option<&str> {
        let turn = usize::try_from(started.saturating_sub(1)).unwrap_or(0);
        let i = turn.checked_rem(self.peers.len())?;
        self.peers.get(i).map(String::as_str)
    }

    /// An authentication started at `now`: in the expired-warrant run, the first time, the
    /// party is held off the network until just past its warrant's end; returns for how long,
    /// in milliseconds.
    pub fn hold_from(&mut self, now: Millis) -> Option<u64> {
        if !self.stale || self.hold.is_some() {
            return None;
        }
        let until = self.valid_until?;
        let wait = until.0.saturating_sub(now.0).saturating_add(HOLD_PAST_END);
        self.hold = Some(now.after(Duration::from_millis(wait)));
        Some(wait)
    }

    /// Until when the party is held off the network, if it is.
    #[must_use]
    pub fn held_until(&self) -> Option<Millis> {
        self.hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(peers: &[&str]) -> PartyAgent {
        PartyAgent::new(
            peers.iter().map(|p| (*p).to_owned()).collect(),
            Millis(1000),
        )
    }

    #[test]
    fn e2sec_agent_asks_again_after_the_retry_until_a_warrant_arrives() {
        let mut a = agent(&["d"]);
        assert_eq!(a.next_fetch(), Some(Millis(17_000)));
        assert!(!a.fetch_due(Millis(16_999)));
        assert!(a.fetch_due(Millis(17_000)));
        assert_eq!(a.next_fetch(), Some(Millis(33_000)));
        assert!(!a.may_start(Millis(17_000)));
    }

    #[test]
    fn e2sec_agent_refreshes_at_three_quarters_of_the_validity_left_at_least_500_ms_on() {
        let mut a = agent(&["d"]);
        a.stored(Millis(2000), 6000);
        assert_eq!(a.next_fetch(), Some(Millis(5000)));
        assert!(a.may_start(Millis(6000)));
        assert!(!a.may_start(Millis(6001)));
        a.stored(Millis(6000), 6100);
        assert_eq!(a.next_fetch(), Some(Millis(6500)));
        a.stored(Millis(7000), 6100);
        assert_eq!(a.next_fetch(), Some(Millis(7500)));
    }

    #[test]
    fn e2sec_agent_takes_peers_in_turn() {
        let a = agent(&["a", "b"]);
        let order: Vec<_> = (1..=5).map(|n| a.peer_of_run(n)).collect();
        assert_eq!(
            order,
            [Some("a"), Some("b"), Some("a"), Some("b"), Some("a")]
        );
        assert_eq!(a.peer_of_run(0), Some("a"));
        assert_eq!(agent(&[]).peer_of_run(1), None);
    }

    #[test]
    fn e2sec_agent_holds_the_expired_warrant_run_once_and_fetches_no_more() {
        let mut plain = agent(&["d"]);
        plain.stored(Millis(2000), 3000);
        assert_eq!(plain.hold_from(Millis(2000)), None);

        let mut a = agent(&["d"]).held_past_warrant();
        assert_eq!(a.hold_from(Millis(1500)), None, "no warrant, no hold");
        a.stored(Millis(2000), 3000);
        assert_eq!(a.next_fetch(), None);
        assert_eq!(a.hold_from(Millis(2100)), Some(1200));
        assert_eq!(a.held_until(), Some(Millis(3300)));
        assert_eq!(a.hold_from(Millis(2200)), None);
        assert_eq!(a.held_until(), Some(Millis(3300)));
    }

    /// A warrant's end comes from the network (signed by the EPC, but still input): the
    /// furthest one saturates rather than overflow.
    #[test]
    fn e2sec_agent_saturates_at_the_furthest_warrant_end() {
        let mut a = agent(&["d"]);
        a.stored(Millis(2000), u64::MAX);
        assert!(a.next_fetch().is_some_and(|t| t > Millis(2000)));
        let mut held = agent(&["d"]).held_past_warrant();
        held.stored(Millis(2000), u64::MAX);
        assert_eq!(held.hold_from(Millis(2000)), Some(u64::MAX - 2000 + 300));
        assert_eq!(held.held_until(), Some(Millis(u64::MAX)));
    }
}
