//! The client's trust model: a durable record per proxy, decayed over time, used to choose
//! the proxies of the next session.
//!
//! The paper asks for a trust model that tracks reputation and capability without fixing one
//! (paper 000 §III-B.1; B's closing list of participants, §III-B.3, is the evidence).
//! Ours: each session's outcome moves a proxy's score towards 1 (it did its part) or 0 (silent
//! or lying) by a fixed weight; between sessions the score relaxes towards the neutral 0.5 with
//! a half-life, so old evidence fades and a proxy that misbehaved long ago can be tried again.

use core::time::Duration;
use std::collections::BTreeMap;

use m2msec_wire::cbor;
use m2msec_wire::collab::TrustRecord as WireRecord;

use super::Error;
use crate::Millis;

/// Weight of one session's outcome in the score.
const LEARNING_RATE: f64 = 0.3;
/// Score of a proxy never seen.
const NEUTRAL: f64 = 0.5;
/// Half-life of the evidence.
pub const HALF_LIFE: Duration = Duration::from_secs(24 * 3600);

/// What the client remembers of one proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustRecord {
    /// Proxy identity.
    pub proxy: String,
    /// Sessions in which it did its part.
    pub successes: u32,
    /// Sessions in which it was silent or lied.
    pub failures: u32,
    /// Reputation in 0..=1 as of `last_seen`.
    pub score: f64,
    /// Last time the proxy's behaviour was judged.
    pub last_seen: Millis,
    /// Declared capability level (from configuration).
    pub capability: u8,
}

impl TrustRecord {
    /// A record for a proxy never used.
    #[must_use]
    pub fn new(proxy: &str, capability: u8) -> Self {
        Self {
            proxy: proxy.to_owned(),
            successes: 0,
            failures: 0,
            score: NEUTRAL,
            last_seen: Millis(0),
            capability,
        }
    }

    /// The score as of `now`: relaxed towards neutral with [`HALF_LIFE`].
    #[must_use]
    pub fn score_at(&self, now: Millis) -> f64 {
        if self.last_seen == Millis(0) {
            return self.score;
        }
        #[allow(clippy::cast_precision_loss)] // elapsed milliseconds fit f64 well enough
        let elapsed = now.0.saturating_sub(self.last_seen.0) as f64;
        #[allow(clippy::cast_precision_loss)]
        let half_life = HALF_LIFE.as_millis() as f64;
        let keep = 0.5_f64.powf(elapsed / half_life);
        NEUTRAL + (self.score - NEUTRAL) * keep
    }

    fn record(&mut self, now: Millis, good: bool) {
        let target = if good { 1.0 } else { 0.0 };
        self.score = self.score_at(now) * (1.0 - LEARNING_RATE) + target * LEARNING_RATE;
        self.last_seen = now;
        if good {
            self.successes = self.successes.saturating_add(1);
        } else {
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// The record's durable encoding (CBOR).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // clamped to 0..=1e6 first
        let score_micro = (self.score.clamp(0.0, 1.0) * 1e6).round() as u32;
        cbor::to_vec(&WireRecord {
            proxy: self.proxy.clone(),
            successes: self.successes,
            failures: self.failures,
            score_micro,
            last_seen: self.last_seen.0,
            capability: self.capability,
        })
    }

    /// Decodes [`TrustRecord::to_bytes`].
    ///
    /// # Errors
    /// Malformed bytes, or a score out of range.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let w: WireRecord = cbor::from_slice(bytes)?;
        if w.score_micro > 1_000_000 {
            return Err(Error::InvalidParameters("trust score out of range"));
        }
        Ok(Self {
            proxy: w.proxy,
            successes: w.successes,
            failures: w.failures,
            score: f64::from(w.score_micro) / 1e6,
            last_seen: Millis(w.last_seen),
            capability: w.capability,
        })
    }
}

/// All the client's trust records.
#[derive(Clone, Debug, Default)]
pub struct TrustBook {
    records: BTreeMap<String, TrustRecord>,
}

impl TrustBook {
    /// A book holding `records` (as loaded from the store).
    #[must_use]
    pub fn new(records: impl IntoIterator<Item = TrustRecord>) -> Self {
        Self {
            records: records.into_iter().map(|r| (r.proxy.clone(), r)).collect(),
        }
    }

    /// The record of `proxy`, if any.
    #[must_use]
    pub fn record(&self, proxy: &str) -> Option<&TrustRecord> {
        self.records.get(proxy)
    }

    /// Chooses up to `n` of `candidates` (name, declared capability) whose capability reaches
    /// `min_capability`, best score first; ties go to the lower name so the choice is
    /// deterministic.
    #[must_use]
    pub fn select(
        &self,
        now: Millis,
        candidates: &[(String, u8)],
        min_capability: u8,
        n: usize,
    ) -> Vec<String> {
        let mut scored: Vec<(f64, &String)> = candidates
            .iter()
            .filter(|(_, cap)| *cap >= min_capability)
            .map(|(name, _)| {
                let score = self.records.get(name).map_or(NEUTRAL, |r| r.score_at(now));
                (score, name)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(n)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Records one session's verdict on `proxy` and returns the updated record.
    pub fn judge(&mut self, now: Millis, proxy: &str, capability: u8, good: bool) -> TrustRecord {
        let record = self
            .records
            .entry(proxy.to_owned())
            .or_insert_with(|| TrustRecord::new(proxy, capability));
        record.capability = capability;
        record.record(now, good);
        record.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lower_the_score_and_successes_raise_it() {
        let mut book = TrustBook::default();
        let bad = book.judge(Millis(1000), "p1", 1, false);
        let good = book.judge(Millis(1000), "p2", 1, true);
        assert!(bad.score < NEUTRAL && good.score > NEUTRAL);
        let cands = vec![
            ("p1".to_owned(), 1),
            ("p2".to_owned(), 1),
            ("p3".to_owned(), 1),
        ];
        assert_eq!(book.select(Millis(2000), &cands, 0, 2), ["p2", "p3"]);
    }

    #[test]
    fn evidence_decays_towards_neutral() {
        let mut book = TrustBook::default();
        let r = book.judge(Millis(1), "p1", 1, false);
        let later = Millis(1 + 10 * u64::try_from(HALF_LIFE.as_millis()).unwrap_or(u64::MAX));
        assert!((r.score_at(later) - NEUTRAL).abs() < 0.001);
    }

    #[test]
    fn capability_bar_filters_candidates() {
        let book = TrustBook::default();
        let cands = vec![("weak".to_owned(), 0), ("strong".to_owned(), 2)];
        assert_eq!(book.select(Millis(0), &cands, 1, 5), ["strong"]);
    }

    #[test]
    fn records_round_trip_and_bad_bytes_are_refused() {
        let mut book = TrustBook::default();
        let r = book.judge(Millis(77), "p1", 3, true);
        let back = TrustRecord::from_bytes(&r.to_bytes()).expect("round trip");
        assert_eq!(back.proxy, "p1");
        assert_eq!(back.successes, 1);
        assert!((back.score - r.score).abs() < 1e-6);
        assert!(TrustRecord::from_bytes(&[0xff, 0x00]).is_err());
    }
}
