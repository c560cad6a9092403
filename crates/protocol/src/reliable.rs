//! Lossy links, handled once for every role: requests are retransmitted until answered, and a
//! request received twice is answered twice but processed once.
//!
//! Two halves, both kept in the role's [`Outbox`](crate::outbox) and run by `endpoint_impl!`,
//! so that no role writes retransmission or duplicate handling of its own:
//!
//! - [`Retransmits`]: a datagram a role sends with `send_reliable` is sent again, byte for byte,
//!   with exponential backoff ([`RetransmitPolicy`], RFC 7252 §4.8 in spirit), until a datagram
//!   from its destination is accepted or the tries run out. Byte-identical copies matter: a
//!   retransmission never draws a new nonce or signs again, so it never spends a one-time key,
//!   and its receiver can recognise it.
//! - [`AnswerCache`]: when a role accepts a datagram, what it sent while handling it (to anyone)
//!   is remembered under the datagram's digest; when it sent nothing at once, the first
//!   datagrams it later sends to the requester are (a deferred answer). A byte-identical copy of
//!   an accepted datagram from the same address is then not handed to the role again: what
//!   was sent for it is sent again. The role never processes it twice, never takes it for an
//!   attacker's replay, and never spends a second one-time key on it. Resending what was already
//!   on the wire tells an attacker who replays a datagram nothing new and changes no state;
//!   a datagram that was *refused* is not remembered, so a forgery is refused every time.
//!
//! Neither half keeps a timer of its own beyond pending retransmissions: cache entries expire
//! lazily, so a finished exchange leaves nothing due.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use m2msec_crypto::hash;

use crate::{Millis, Transmit};

/// How requests are retransmitted. Defaults suit a lossy low-rate link (802.15.4 with a few
/// hops, round trips well under the first wait): the first retransmission after 0.5 s, then
/// after 1, 2 and 4 s more, and no answer 8 s after the last one means none is coming
/// (15.5 s in all, inside every role's default session deadline of 20 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitPolicy {
    /// Wait before the first retransmission; doubled after each.
    pub initial: Duration,
    /// Retransmissions after the first send (0: send once).
    pub max_retransmit: u32,
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max_retransmit: 4,
        }
    }
}

impl RetransmitPolicy {
    /// From the first send to giving up: `initial × (2^(max_retransmit + 1) − 1)`.
    #[must_use]
    pub fn span(&self) -> Duration {
        let factor = (1u32 << self.max_retransmit.min(16).saturating_add(1)).saturating_sub(1);
        self.initial.saturating_mul(factor)
    }

    /// A policy that never retransmits (a perfect link, or tests that count datagrams).
    #[must_use]
    pub const fn never() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max_retransmit: 0,
        }
    }
}

#[derive(Debug)]
struct Pending {
    transmit: Transmit,
    /// Retransmitted until cleared, whatever its destination says (its answer comes from
    /// elsewhere: a MIKEY initiator's parts are confirmed by the responder).
    until_cleared: bool,
    next: Millis,
    interval: Duration,
    left: u32,
}

/// Datagrams waiting for an answer from their destination.
#[derive(Debug, Default)]
pub(crate) struct Retransmits {
    policy: RetransmitPolicy,
    pending: Vec<Pending>,
}

impl Retransmits {
    pub(crate) fn set_policy(&mut self, policy: RetransmitPolicy) {
        self.policy = policy;
    }

    /// Keeps `transmit` for retransmission, first after the policy's initial wait.
    pub(crate) fn track(&mut self, now: Millis, transmit: Transmit, until_cleared: bool) {
        if self.policy.max_retransmit == 0 {
            return;
        }
        self.pending.push(Pending {
            transmit,
            until_cleared,
            next: now.after(self.policy.initial),
            interval: self.policy.initial,
            left: self.policy.max_retransmit,
        });
    }

    /// How many datagrams wait; [`Retransmits::answered_by`] takes it from before a datagram
    /// was handled, so that what the handling itself sent is not taken as answered.
    pub(crate) fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// A datagram from `from` was accepted: what waited for `from` before it (the first
    /// `waiting` entries) is answered.
    pub(crate) fn answered_by(&mut self, from: SocketAddr, waiting: usize) {
        let mut i = 0;
        self.pending.retain(|p| {
            i += 1;
            i > waiting || p.until_cleared || p.transmit.destination != from
        });
    }

    /// Stops retransmitting everything (the role's exchange ended).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Queues what is due again; forgets what has no tries left.
    pub(crate) fn on_timeout(&mut self, now: Millis, out: &mut VecDeque<Transmit>) {
        for p in &mut self.pending {
            if p.next <= now {
                out.push_back(p.transmit.clone());
                p.left -= 1;
                p.interval = p.interval.saturating_mul(2);
                p.next = now.after(p.interval);
            }
        }
        self.pending.retain(|p| p.left > 0);
    }

    pub(crate) fn next_timeout(&self) -> Option<Millis> {
        self.pending.iter().map(|p| p.next).min()
    }
}

/// How long what was sent for a datagram is kept for its duplicates: longer than a session
/// lasts and than twice the default retransmission span. A copy that comes later is handed to
/// the role, which refuses it as the replay it then is.
pub const ANSWER_LIFETIME: Duration = Duration::from_secs(62);
/// At most this many datagrams are kept as one request's deferred answer.
const MAX_DEFERRED: usize = 8;
/// Copies of one datagram answered again at most: an honest peer's retransmissions (4 by
/// default) and a few duplicates.
const MAX_REANSWERS: u32 = 6;
/// At most this many answers are kept (oldest forgotten first), bounding memory under a flood.
const MAX_ANSWERS: usize = 1024;

#[derive(Debug)]
struct Answer {
    from: SocketAddr,
    sent: Vec<Transmit>,
    /// Copies answered so far: after [`MAX_REANSWERS`], copies are dropped unanswered, so that
    /// replaying one datagram cannot make a role send without bound.
    reanswered: u32,
    /// Whether the role answered at once; if not, the first datagrams to `from` are kept.
    deferred: bool,
    expires: Millis,
    order: u64,
}

/// What was sent for each accepted datagram, by the datagram's digest.
#[derive(Debug, Default)]
pub(crate) struct AnswerCache {
    answers: BTreeMap<[u8; 32], Answer>,
    order: u64,
}

impl AnswerCache {
    /// The digest a datagram is remembered by: its bytes and where it came from.
    pub(crate) fn digest(from: SocketAddr, datagram: &[u8]) -> [u8; 32] {
        hash::sha256_length_prefixed(&[from.to_string().as_bytes(), datagram])
    }

    /// What to send again for a duplicate of an accepted datagram (nothing once it was
    /// answered [`MAX_REANSWERS`] times), or `None` for a datagram not accepted before.
    pub(crate) fn lookup(&mut self, now: Millis, digest: &[u8; 32]) -> Option<Vec<Transmit>> {
        match self.answers.get_mut(digest) {
            Some(a) if a.expires > now => {
                if a.reanswered >= MAX_REANSWERS {
                    return Some(Vec::new());
                }
                a.reanswered += 1;
                Some(a.sent.clone())
            }
            Some(_) => {
                self.answers.remove(digest);
                None
            }
            None => None,
        }
    }

    /// Remembers what was sent while handling an accepted datagram.
    pub(crate) fn remember(
        &mut self,
        now: Millis,
        digest: [u8; 32],
        from: SocketAddr,
        sent: Vec<Transmit>,
    ) {
        if self.answers.len() >= MAX_ANSWERS {
            self.answers.retain(|_, a| a.expires > now);
            if self.answers.len() >= MAX_ANSWERS {
                if let Some(oldest) = self
                    .answers
                    .iter()
                    .min_by_key(|(_, a)| a.order)
                    .map(|(k, _)| *k)
                {
                    self.answers.remove(&oldest);
                }
            }
        }
        self.order += 1;
        let deferred = sent.is_empty();
        self.answers.insert(
            digest,
            Answer {
                from,
                sent,
                reanswered: 0,
                deferred,
                expires: now.after(ANSWER_LIFETIME),
                order: self.order,
            },
        );
    }

    /// A datagram sent outside any handling: the deferred answer of the latest accepted
    /// datagram from its destination that has none yet.
    pub(crate) fn sent_later(&mut self, transmit: &Transmit) {
        if let Some(a) = self
            .answers
            .values_mut()
            .filter(|a| a.deferred && a.from == transmit.destination && a.sent.len() < MAX_DEFERRED)
            .max_by_key(|a| a.order)
        {
            a.sent.push(transmit.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn t(port: u16, b: u8) -> Transmit {
        Transmit {
            destination: addr(port),
            payload: vec![b],
        }
    }

    #[test]
    fn retransmits_back_off_and_stop_when_answered_or_out_of_tries() {
        let mut r = Retransmits::default();
        r.track(Millis(0), t(1, 1), false);
        r.track(Millis(0), t(2, 2), false);
        let mut out = VecDeque::new();
        r.on_timeout(Millis(499), &mut out);
        assert!(out.is_empty());
        r.on_timeout(Millis(500), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(r.next_timeout(), Some(Millis(1500)));
        r.answered_by(addr(1), r.waiting());
        out.clear();
        for now in [1500, 3500, 7500, 15_500, 31_500] {
            r.on_timeout(Millis(now), &mut out);
        }
        // 4 retransmissions in all for the unanswered one, none after.
        assert_eq!(out.len(), 3);
        assert_eq!(r.next_timeout(), None);
        assert_eq!(
            RetransmitPolicy::default().span(),
            Duration::from_millis(15_500)
        );
    }

    #[test]
    fn duplicates_get_what_was_sent_and_deferred_answers_are_kept() {
        let mut c = AnswerCache::default();
        let d1 = AnswerCache::digest(addr(9), b"request");
        assert!(c.lookup(Millis(0), &d1).is_none());
        c.remember(Millis(0), d1, addr(9), vec![t(9, 1), t(5, 2)]);
        assert_eq!(c.lookup(Millis(1), &d1).unwrap().len(), 2);
        // Another sender's identical bytes are another datagram.
        assert!(
            c.lookup(Millis(1), &AnswerCache::digest(addr(8), b"request"))
                .is_none()
        );

        let d2 = AnswerCache::digest(addr(9), b"later");
        c.remember(Millis(2), d2, addr(9), Vec::new());
        assert_eq!(c.lookup(Millis(3), &d2).unwrap(), vec![]);
        c.sent_later(&t(9, 3));
        c.sent_later(&t(7, 4));
        assert_eq!(c.lookup(Millis(4), &d2).unwrap(), vec![t(9, 3)]);
        // A datagram replayed over and over is answered a bounded number of times.
        let again = (0..20)
            .filter(|_| c.lookup(Millis(5), &d1).is_some_and(|t| !t.is_empty()))
            .count();
        assert_eq!(again, usize::try_from(MAX_REANSWERS).unwrap() - 1);
        assert_eq!(c.lookup(Millis(6), &d1), Some(Vec::new()));
        // Expired entries are gone.
        assert!(c.lookup(Millis(100_000), &d1).is_none());
    }
}
