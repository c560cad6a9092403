//! Duplicate detection (RFC 7252 §4.5): a server's cache of answered requests, and the bounded,
//! expiring set it and the client are built on.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use m2msec_protocol::Millis;
use m2msec_wire::relay::coap::coap_lite::Packet;

use crate::params::EXCHANGE_LIFETIME;
use crate::time::elapsed;

/// Keys with an insertion time, capped in number and expiring in age.
///
/// `order` lists insertions oldest first; a key inserted again leaves a stale entry behind,
/// recognised by its generation and skipped. The cap counts `order`, so memory is bounded
/// whatever the insertion pattern.
pub(crate) struct RecentSet<K: core::hash::Hash + Eq + Clone> {
    map: HashMap<K, u64>,
    order: VecDeque<(K, u64, Millis)>,
    generation: u64,
    capacity: usize,
    lifetime: Duration,
}

impl<K: core::hash::Hash + Eq + Clone> RecentSet<K> {
    pub(crate) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            capacity: capacity.max(1),
            lifetime,
        }
    }

    /// Drops expired and excess insertions; returns the keys forgotten.
    pub(crate) fn purge(&mut self, now: Millis) -> Vec<K> {
        let mut forgotten = Vec::new();
        while let Some((k, generation, at)) = self.order.front() {
            let expired = elapsed(*at, now) > self.lifetime;
            if !expired && self.order.len() <= self.capacity {
                break;
            }
            if self.map.get(k) == Some(generation) {
                self.map.remove(k);
                forgotten.push(k.clone());
            }
            self.order.pop_front();
        }
        forgotten
    }

    /// Remembers `k` from `now` on; returns the keys forgotten to make room.
    pub(crate) fn insert(&mut self, k: K, now: Millis) -> Vec<K> {
        self.generation = self.generation.wrapping_add(1);
        self.map.insert(k.clone(), self.generation);
        self.order.push_back((k, self.generation, now));
        self.purge(now)
    }

    pub(crate) fn contains(&mut self, k: &K, now: Millis) -> bool {
        self.purge(now);
        self.map.contains_key(k)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// What [`DedupCache::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dedup {
    /// A new request: process it, then [`DedupCache::complete`] it with the response.
    New,
    /// A copy of a request still being processed (a slow handler): drop it; the response
    /// (or an empty ACK the daemon already sent) will do.
    InProgress,
    /// A copy of a request already answered: send these response bytes again, do not
    /// process it twice.
    Replay(Vec<u8>),
}

struct DedupEntry {
    token: Vec<u8>,
    response: Option<Vec<u8>>,
}

/// Duplicate detection of a server (RFC 7252 §4.5): requests are identified by (peer,
/// message id) for `lifetime` (EXCHANGE_LIFETIME by default), and the response to each is kept
/// so a retransmitted CON — whose ACK was lost — gets the same answer again instead of being
/// processed twice (a relay message stored twice, a forward started twice).
///
/// The token is compared as well: a peer whose message ids wrap within the lifetime (more than
/// 65 536 requests in 247 s) starts a new request with a reused id, and that must not be
/// mistaken for a copy. Capped at `capacity` entries, oldest evicted first, so its memory is
/// at most `capacity` times the largest response.
pub struct DedupCache {
    /// Which exchanges are remembered (and until when).
    recent: RecentSet<(SocketAddr, u16)>,
    /// What is known of each; entries the set forgot are dropped lazily.
    entries: HashMap<(SocketAddr, u16), DedupEntry>,
    capacity: usize,
}

impl core::fmt::Debug for DedupCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DedupCache")
            .field("entries", &self.entries.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for DedupCache {
    fn default() -> Self {
        Self::new(4096, EXCHANGE_LIFETIME)
    }
}

impl DedupCache {
    /// A cache of at most `capacity` exchanges, each remembered for `lifetime`.
    #[must_use]
    pub fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            recent: RecentSet::new(capacity, lifetime),
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Exchanges remembered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.recent.len() == 0
    }

    /// Classifies an incoming request from `peer`, remembering it when new.
    pub fn check(&mut self, peer: SocketAddr, req: &Packet, now: Millis) -> Dedup {
        // RFC 7252 §4.5: a message is a duplicate when its message id (and endpoint) was seen
        // within EXCHANGE_LIFETIME.
        let key = (peer, req.header.message_id);
        for gone in self.recent.purge(now) {
            self.entries.remove(&gone);
        }
        if self.recent.contains(&key, now)
            && let Some(e) = self.entries.get(&key)
            && e.token == req.get_token()
        {
            return match &e.response {
                Some(bytes) => Dedup::Replay(bytes.clone()),
                None => Dedup::InProgress,
            };
        }
        self.entries.insert(
            key,
            DedupEntry {
                token: req.get_token().to_vec(),
                response: None,
            },
        );
        for gone in self.recent.insert(key, now) {
            self.entries.remove(&gone);
        }
        Dedup::New
    }

    /// Records the response sent to `req` (its encoded bytes), to replay for copies.
    pub fn complete(&mut self, peer: SocketAddr, req: &Packet, response: &[u8]) {
        if let Some(e) = self.entries.get_mut(&(peer, req.header.message_id))
            && e.token == req.get_token()
        {
            e.response = Some(response.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::{con_request, peer};

    #[test]
    fn dedup_replays_and_expires() {
        let t0 = Millis(1_000);
        let mut cache = DedupCache::new(2, Duration::from_secs(10));
        let req = con_request(7, b"ab");
        assert_eq!(cache.check(peer(), &req, t0), Dedup::New);
        assert_eq!(cache.check(peer(), &req, t0), Dedup::InProgress);
        cache.complete(peer(), &req, b"resp");
        assert_eq!(
            cache.check(peer(), &req, t0),
            Dedup::Replay(b"resp".to_vec())
        );
        // Same id, another token: a new request after the ids wrapped.
        assert_eq!(cache.check(peer(), &con_request(7, b"cd"), t0), Dedup::New);
        // Another peer is another exchange.
        let other = SocketAddr::from(([127, 0, 0, 2], 5683));
        assert_eq!(cache.check(other, &req, t0), Dedup::New);
        assert_eq!(cache.len(), 2, "capped");
        assert_eq!(
            cache.check(
                peer(),
                &con_request(8, b"x"),
                t0.after(Duration::from_secs(11))
            ),
            Dedup::New
        );
        assert_eq!(cache.len(), 1, "expired entries purged");
    }
}
