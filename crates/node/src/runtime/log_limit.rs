//! Rate-limited warnings about input from the network: a flood of bad datagrams must not flood
//! the log, and none goes uncounted.
//!
//! Every daemon logs refused input through a [`LogLimit`]: the first refusal of one peer for one
//! reason in an [`INTERVAL`] is logged, the rest of that interval are only counted, and a
//! summary of what was not logged follows when the interval is over (and when the limit is
//! dropped, as its daemon stops). The decisions are [`Limiter`]'s, with the time passed in; the
//! `LogLimit` around it reads the clock and writes the lines.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Display};
use std::time::{Duration, Instant};

/// How long one refusal per peer and reason stands for the others: long enough that a flood
/// costs a handful of lines a minute, short enough that an operator watching the log sees a
/// new attack within seconds.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The most peer–reason pairs remembered in one interval. Source addresses cost an attacker
/// nothing to vary, so past this every new peer counts under [`OTHER_PEERS`] (one line per
/// reason): memory stays bounded (the reasons are a closed set, an error's variants).
pub const MAX_KEYS: usize = 1_024;

/// The peer that stands for every peer past [`MAX_KEYS`] in one interval.
pub const OTHER_PEERS: &str = "other peers";

/// What a limiter decides about one refusal.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The summary of the interval that ended before this refusal, if it left anything unlogged.
    pub ended: Option<Summary>,
    /// Whether to log this refusal (else it is only counted).
    pub log: bool,
}

/// What an interval did not log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Refusals counted but not logged, per reason.
    pub suppressed: BTreeMap<String, u64>,
    /// Of those and the logged ones, how many came from peers past [`MAX_KEYS`].
    pub other_peers: u64,
    /// Every refusal since the limiter started, logged or not.
    pub total: u64,
}

impl Summary {
    /// Refusals not logged, over all reasons.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.suppressed.values().sum()
    }
}

/// `reason:count` pairs, as one log field.
impl Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (reason, n)) in self.suppressed.iter().enumerate() {
            write!(f, "{}{reason}:{n}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// The decisions of a log limit, with the time passed in (see the module's doc).
#[derive(Debug)]
pub struct Limiter {
    /// When the current interval began.
    began: Instant,
    /// The peer–reason pairs logged this interval (at most [`MAX_KEYS`] peers' and one
    /// [`OTHER_PEERS`] pair per reason).
    logged: HashSet<(String, String)>,
    /// How many of `logged` are a peer's own (not [`OTHER_PEERS`]).
    pairs: usize,
    /// What this interval did not log.
    summary: Summary,
}

impl Limiter {
    /// A limiter whose first interval begins at `now`.
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self {
            began: now,
            logged: HashSet::new(),
            pairs: 0,
            summary: Summary::default(),
        }
    }

    /// Every refusal so far, logged or not.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.summary.total
    }

    /// Counts a refusal of `peer`'s input for `reason` at `now`, and says whether to log it.
    pub fn admit(&mut self, now: Instant, peer: &str, reason: &str) -> Verdict {
        let ended = self.tick(now);
        self.summary.total += 1;
        let key = (peer.to_owned(), reason.to_owned());
        let log = if self.logged.contains(&key) {
            false
        } else if self.pairs < MAX_KEYS {
            self.pairs += 1;
            self.logged.insert(key)
        } else {
            self.summary.other_peers += 1;
            self.logged.insert((OTHER_PEERS.to_owned(), key.1))
        };
        if !log {
            *self
                .summary
                .suppressed
                .entry(reason.to_owned())
                .or_default() += 1;
        }
        Verdict { ended, log }
    }

    /// When the current interval ends, if it has something to summarise.
    #[must_use]
    pub fn due(&self) -> Option<Instant> {
        (self.summary.count() > 0).then(|| self.began + INTERVAL)
    }

    /// Starts a new interval if the current one is over at `now`; its summary, if it left
    /// anything unlogged.
    pub fn tick(&mut self, now: Instant) -> Option<Summary> {
        if now.saturating_duration_since(self.began) < INTERVAL {
            return None;
        }
        self.began = now;
        self.logged.clear();
        self.pairs = 0;
        self.finish()
    }

    /// The summary of the interval so far, if it left anything unlogged; its counts start
    /// again (a daemon stopping, or a new interval).
    pub fn finish(&mut self) -> Option<Summary> {
        let total = self.summary.total;
        let summary = std::mem::replace(
            &mut self.summary,
            Summary {
                total,
                ..Summary::default()
            },
        );
        (summary.count() > 0).then_some(summary)
    }
}

/// A [`Limiter`] writing its lines: the refusals it lets through, and the summaries.
#[derive(Debug)]
pub struct LogLimit {
    what: &'static str,
    limiter: Limiter,
}

impl LogLimit {
    /// The log of `what` ("coap", "udp ingestion", "rejected datagram"…).
    #[must_use]
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            limiter: Limiter::new(Instant::now()),
        }
    }

    /// Every warning so far, logged or not.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.limiter.total()
    }

    /// Counts `detail` about `peer` (its kind is this limit's `what`), and logs it unless
    /// one like it from `peer` was logged this interval.
    pub fn warn(&mut self, peer: impl Display, detail: &dyn Display) {
        if self.admit(&peer.to_string(), self.what) {
            let total = self.total();
            tracing::warn!(what = self.what, %peer, total, "{detail}");
        }
    }

    /// Counts a refusal of `peer`'s input for `reason`; whether the caller is to log it.
    pub fn admit(&mut self, peer: &str, reason: &str) -> bool {
        let verdict = self.limiter.admit(Instant::now(), peer, reason);
        if let Some(summary) = verdict.ended {
            self.summarise(&summary);
        }
        verdict.log
    }

    /// When the current interval's summary is due, if it has one.
    #[must_use]
    pub fn due(&self) -> Option<Instant> {
        self.limiter.due()
    }

    /// Writes the summary of the interval if it is over.
    pub fn tick(&mut self) {
        if let Some(summary) = self.limiter.tick(Instant::now()) {
            self.summarise(&summary);
        }
    }

    fn summarise(&self, summary: &Summary) {
        tracing::warn!(
            what = self.what,
            suppressed = summary.count(),
            total = summary.total,
            reasons = %summary,
            other_peers = summary.other_peers,
            "more of the same not logged"
        );
    }
}

/// What the last interval did not log is written when the limit goes: a daemon that stops,
/// however it stops, leaves no refusal uncounted in its log.
impl Drop for LogLimit {
    fn drop(&mut self) {
        if let Some(summary) = self.limiter.finish() {
            self.summarise(&summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(l: &mut Limiter, now: Instant, peer: &str, reason: &str) -> bool {
        let verdict = l.admit(now, peer, reason);
        assert_eq!(verdict.ended, None, "no interval ended");
        verdict.log
    }

    #[test]
    fn one_line_per_peer_and_reason_per_interval() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        assert!(admit(&mut l, t0, "a", "Decode"));
        assert!(!admit(&mut l, t0, "a", "Decode"));
        assert!(admit(&mut l, t0, "a", "Authentication"));
        assert!(admit(&mut l, t0, "b", "Decode"));
        for _ in 0..10 {
            assert!(!admit(&mut l, t0 + INTERVAL / 2, "b", "Decode"));
        }
        assert_eq!(l.total(), 14);
        assert_eq!(l.due(), Some(t0 + INTERVAL));

        // The next interval logs each pair once again, after the summary of the last.
        let t1 = t0 + INTERVAL;
        let verdict = l.admit(t1, "a", "Decode");
        assert!(verdict.log);
        let summary = verdict.ended.unwrap_or_else(|| panic!("no summary"));
        assert_eq!(summary.count(), 11);
        assert_eq!(summary.suppressed.get("Decode"), Some(&11));
        assert_eq!(
            summary.total, 14,
            "the refusal that ended the interval counts in the next"
        );
        assert_eq!(summary.to_string(), "Decode:11");
        assert_eq!(l.due(), None, "nothing suppressed yet in this interval");
        assert!(!admit(&mut l, t1, "a", "Decode"));
        assert_eq!(l.total(), 16);
    }

    #[test]
    fn a_quiet_interval_ends_without_a_summary() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        assert!(admit(&mut l, t0, "a", "Decode"));
        assert_eq!(l.tick(t0 + INTERVAL), None, "everything was logged");
        assert!(admit(&mut l, t0 + INTERVAL, "a", "Decode"));
        assert!(!admit(&mut l, t0 + INTERVAL, "a", "Decode"));
        assert_eq!(l.tick(t0 + INTERVAL), None, "not over yet");
        let summary = l
            .tick(t0 + INTERVAL * 2)
            .unwrap_or_else(|| panic!("no summary"));
        assert_eq!((summary.count(), summary.total), (1, 3));
    }

    #[test]
    fn finish_summarises_the_interval_so_far_once() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        for _ in 0..5 {
            l.admit(t0, "a", "Decode");
        }
        let summary = l.finish().unwrap_or_else(|| panic!("no summary"));
        assert_eq!((summary.count(), summary.total), (4, 5));
        assert_eq!(l.finish(), None);
        assert_eq!(l.total(), 5);
    }

    #[test]
    fn peers_past_the_table_share_one_bucket_per_reason() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let spoofed = MAX_KEYS * 3;
        let peer = |i: usize| format!("10.0.{}.{}:1", i / 256, i % 256);
        let logged = (0..spoofed)
            .filter(|&i| admit(&mut l, t0, &peer(i), "Decode"))
            .count();
        // Every pair the table holds, then one line for all the others.
        assert_eq!(logged, MAX_KEYS + 1);
        assert!(admit(&mut l, t0, "10.9.9.9:1", "Authentication"));
        // A peer the table holds keeps its own key.
        assert!(!admit(&mut l, t0, &peer(0), "Decode"));
        assert_eq!(l.logged.len(), MAX_KEYS + 2, "the table stays bounded");

        let summary = l.finish().unwrap_or_else(|| panic!("no summary"));
        let (spoofed, max) = (spoofed as u64, MAX_KEYS as u64);
        assert_eq!(summary.other_peers, spoofed - max + 1);
        assert_eq!(summary.total, spoofed + 2);
        // Nothing uncounted: each refusal was logged or is in the summary.
        assert_eq!(summary.count() + max + 2, summary.total);
    }
}
