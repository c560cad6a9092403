//! Replay protection shared by the protocols whose receiver keeps no per-peer session: a
//! timestamp window around the receiver's clock and a cache of what it admitted inside that
//! window (RFC 3830 §5.4 for MIKEY; the E2SEC EPC's warrant requests; SGA's invitations at the
//! gateway and negotiations at the invited device). The window bounds how long
//! an entry must be kept; the cache makes "inside the window" mean "at most once".

use core::time::Duration;
use std::collections::BTreeMap;

use crate::Millis;

/// Why [`ReplayCache::admit`] refused a message. Each protocol maps it to its own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The sender's timestamp is further than the window from our clock.
    OutsideWindow,
    /// The same key was admitted before, inside the window.
    Replayed,
    /// The cache holds its maximum of entries, none of them expired.
    Full,
}

/// What was admitted inside the window: a key naming the message (a digest, a nonce, a session
/// id) → when it leaves.
#[derive(Debug)]
pub(crate) struct ReplayCache<K = [u8; 32]> {
    seen: BTreeMap<K, Millis>,
    capacity: usize,
}

impl<K: Ord> ReplayCache<K> {
    /// A cache that refuses new entries beyond `capacity` instead of growing.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: BTreeMap::new(),
            capacity,
        }
    }

    /// Admits `key`, sent at `sent`, if `sent` lies within `window` of `now` and `key` was not
    /// admitted before; the entry is kept until `sent + window`, after which the window check
    /// alone refuses it. Expired entries are pruned first. Call only after the message
    /// authenticated, so forgeries cannot fill the cache.
    pub(crate) fn admit(
        &mut self,
        now: Millis,
        window: Duration,
        sent: Millis,
        key: K,
    ) -> Result<(), Refusal> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        if sent.0.abs_diff(now.0) > window_ms {
            return Err(Refusal::OutsideWindow);
        }
        self.prune(now);
        if self.seen.contains_key(&key) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        self.seen.insert(key, sent.after(window));
        Ok(())
    }

    /// Forgets the entries whose window has passed, so an idle receiver does not hold them.
    pub(crate) fn prune(&mut self, now: Millis) {
        // Kept while `until >= now`: at `now == sent + window` the window check still admits,
        // so the entry must still be there.
        self.seen.retain(|_, until| *until >= now);
    }

    /// Adds entries persisted by an earlier run (they expire as usual).
    pub(crate) fn restore(&mut self, entries: impl IntoIterator<Item = (K, Millis)>) {
        self.seen.extend(entries);
    }

    /// How many entries are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(30);

    #[test]
    fn admits_once_inside_the_window_then_forgets() {
        let mut c = ReplayCache::with_capacity(4);
        let t = Millis(1_000_000);
        assert_eq!(c.admit(t, W, t, [1; 32]), Ok(()));
        assert_eq!(c.admit(t, W, t, [1; 32]), Err(Refusal::Replayed));
        // The last instant the window admits it: still remembered.
        let edge = t.after(W);
        assert_eq!(c.admit(edge, W, t, [1; 32]), Err(Refusal::Replayed));
        // One millisecond later the window refuses it, and the entry is gone on the next admit.
        let past = Millis(edge.0 + 1);
        assert_eq!(c.admit(past, W, t, [1; 32]), Err(Refusal::OutsideWindow));
        assert_eq!(c.admit(past, W, past, [2; 32]), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn refuses_timestamps_outside_the_window_both_ways() {
        let mut c = ReplayCache::with_capacity(4);
        let now = Millis(1_000_000);
        assert_eq!(
            c.admit(now, W, Millis(now.0 - 30_001), [1; 32]),
            Err(Refusal::OutsideWindow)
        );
        assert_eq!(
            c.admit(now, W, Millis(now.0 + 30_001), [1; 32]),
            Err(Refusal::OutsideWindow)
        );
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn refuses_rather_than_grows_when_full() {
        let mut c = ReplayCache::with_capacity(2);
        let t = Millis(1_000_000);
        assert_eq!(c.admit(t, W, t, [1; 32]), Ok(()));
        assert_eq!(c.admit(t, W, t, [2; 32]), Ok(()));
        assert_eq!(c.admit(t, W, t, [3; 32]), Err(Refusal::Full));
        assert_eq!(c.len(), 2);
        // Once the entries expire there is room again.
        let later = Millis(t.after(W).0 + 1);
        assert_eq!(c.admit(later, W, later, [3; 32]), Ok(()));
        assert_eq!(c.len(), 1);
    }
}
