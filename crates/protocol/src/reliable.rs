//! Lossy links, handled once for every role: requests are retransmitted until answered, and a
//! request received twice is answered twice but processed once.
//!
//! Two halves, both kept in the role's [`Outbox`](crate::Outbox) and run by the one
//! [`Endpoint`](crate::Endpoint) impl over every [`Role`](crate::Role), so that no role writes
//! retransmission or duplicate handling of its own:
//!
//! - `Retransmits`: a datagram a role sends with `send_reliable` is sent again, byte for byte,
//!   with a capped backoff ([`RetransmitPolicy`], RFC 7252 §4.8 in spirit), until a datagram
//!   from its destination is accepted or the tries run out. Byte-identical copies matter: a
//!   retransmission never draws a new nonce or signs again, so it never spends a one-time key,
//!   and its receiver can recognise it.
//! - `AnswerCache`: when a role accepts a datagram, what it sent while handling it (to anyone)
//!   is remembered under the datagram's digest; when it sent nothing to the requester at once,
//!   the first datagrams it later sends to the requester are kept too (a deferred answer). A byte-identical copy of
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

/// How requests are retransmitted: `steady` retransmissions `initial` apart, then each wait
/// twice the one before up to `max_interval`, `max_retransmit` retransmissions in all.
///
/// The defaults suit a lossy low-rate link (a few 802.15.4 hops, 100 ms one way; see
/// `docs/lossy-links.md`): 8 retransmissions every 500 ms, then waits of 1, 2, 4 and 4 s, so
/// that no answer 15 s after the first send means none is coming, inside every role's default
/// session deadline of 20 s. 500 ms is longer than the slowest answer of a lossless exchange on
/// such a link (an SGA invitation is answered after four one-way trips), so a good link sees no
/// retransmission. The wait stays short at first because at 30 % loss in each direction a round
/// trip fails half the time: a request whose next try waited 1, 2, 4 s at once takes far longer
/// than the 10× its lossless time that issue 19 allows. It grows after 4 s of silence, when a
/// peer that is gone becomes likelier than a run of losses (8 failed round trips in a row at
/// 30 % loss: 0.5 %), so that a dead peer costs 12 datagrams per request, not a steady stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitPolicy {
    /// Wait before the first retransmission.
    pub initial: Duration,
    /// Retransmissions `initial` apart before the wait starts to double.
    pub steady: u32,
    /// Longest wait between two sends (taken as `initial` when shorter).
    pub max_interval: Duration,
    /// Retransmissions after the first send (0: send once).
    pub max_retransmit: u32,
}

impl RetransmitPolicy {
    /// The default policy, as a constant (what an honest peer's copies are counted against).
    pub const DEFAULT: Self = Self {
        initial: Duration::from_millis(500),
        steady: 8,
        max_interval: Duration::from_secs(4),
        max_retransmit: 11,
    };
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl RetransmitPolicy {
    /// From the first send to giving up: the sum of the wait after each of the
    /// `max_retransmit + 1` sends.
    #[must_use]
    pub fn span(&self) -> Duration {
        (0..=self.max_retransmit.min(1024))
            .map(|n| self.interval(n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// The wait after the send numbered `n` (0: the first send).
    #[must_use]
    pub fn interval(&self, n: u32) -> Duration {
        let doublings = (n + 1).saturating_sub(self.steady.max(1));
        let doubled = self.initial.saturating_mul(1u32 << doublings.min(31));
        doubled.min(self.max_interval.max(self.initial))
    }

    /// A policy that never retransmits (a perfect link, or tests that count datagrams).
    #[must_use]
    pub const fn never() -> Self {
        Self {
            initial: Duration::from_secs(1),
            steady: 1,
            max_interval: Duration::from_secs(1),
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
    /// Sends so far (the first one included).
    sent: u32,
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
            sent: 1,
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
        let policy = self.policy;
        for p in &mut self.pending {
            if p.next <= now {
                out.push_back(p.transmit.clone());
                p.next = now.after(policy.interval(p.sent));
                p.sent += 1;
            }
        }
        self.pending.retain(|p| p.sent <= policy.max_retransmit);
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
/// Copies of one datagram answered again at most: an honest peer's retransmissions (30 by
/// default) and a few duplicates.
const MAX_REANSWERS: u32 = RetransmitPolicy::DEFAULT.max_retransmit + 4;
/// At most this many answers are kept (oldest forgotten first), bounding memory under a flood.
const MAX_ANSWERS: usize = 1024;

#[derive(Debug)]
struct Answer {
    from: SocketAddr,
    sent: Vec<Transmit>,
    /// Copies answered so far: after [`MAX_REANSWERS`], copies are dropped unanswered, so that
    /// replaying one datagram cannot make a role send without bound.
    reanswered: u32,
    /// Whether the role sent nothing to `from` at once; if so, the first datagrams it later
    /// sends to `from` are kept.
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
                // Only a copy that makes the role send counts: a request whose answer is not
                // ready yet may be retransmitted many times before it is.
                if !a.sent.is_empty() {
                    a.reanswered += 1;
                }
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
        // What it sent to others (a summons, a forward) is not the requester's answer.
        let deferred = !sent.iter().any(|t| t.destination == from);
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

    /// A datagram sent later: the deferred answer of the latest accepted datagram from its
    /// destination that had none when it was handled.
    pub(crate) fn sent_later(&mut self, transmit: &Transmit) {
        if let Some(a) = self
            .answers
            .values_mut()
            .filter(|a| {
                a.deferred
                    && a.from == transmit.destination
                    && a.sent.iter().filter(|t| t.destination == a.from).count() < MAX_DEFERRED
            })
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
    fn retransmits_back_off_up_to_the_cap_and_stop_when_answered_or_out_of_tries() {
        let mut r = Retransmits::default();
        r.set_policy(RetransmitPolicy {
            initial: Duration::from_millis(500),
            steady: 1,
            max_interval: Duration::from_secs(2),
            max_retransmit: 5,
        });
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
        // Waits of 1 s, then 2 s (the cap) again and again.
        let mut due = Vec::new();
        while let Some(next) = r.next_timeout() {
            due.push(next.0);
            r.on_timeout(next, &mut out);
        }
        assert_eq!(due, [1500, 3500, 5500, 7500]);
        // 5 retransmissions in all for the unanswered one, none after.
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn the_default_retransmits_every_half_second_then_backs_off() {
        let p = RetransmitPolicy::default();
        let waits: Vec<u64> = (0..=p.max_retransmit)
            .map(|n| u64::try_from(p.interval(n).as_millis()).unwrap())
            .collect();
        assert_eq!(
            waits,
            [
                500, 500, 500, 500, 500, 500, 500, 500, 1000, 2000, 4000, 4000
            ]
        );
        assert_eq!(p.span(), Duration::from_millis(15_000));
        // Doubling from the first wait: 0.5, 1, 2, 4, 8 s.
        let doubling = RetransmitPolicy {
            steady: 1,
            max_interval: Duration::MAX,
            max_retransmit: 4,
            ..p
        };
        assert_eq!(doubling.span(), Duration::from_millis(15_500));
        assert_eq!(RetransmitPolicy::never().span(), Duration::from_secs(1));
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
        // Copies that come before the answer get nothing, and do not use up the answers.
        for _ in 0..2 * MAX_REANSWERS {
            assert_eq!(c.lookup(Millis(3), &d2).unwrap(), vec![]);
        }
        c.sent_later(&t(9, 3));
        c.sent_later(&t(7, 4));
        assert_eq!(c.lookup(Millis(4), &d2).unwrap(), vec![t(9, 3)]);

        // What was sent to others at once (a summons, a forward) is not the requester's
        // answer: the first datagram later sent to the requester is.
        let d3 = AnswerCache::digest(addr(6), b"key request");
        c.remember(Millis(5), d3, addr(6), vec![t(5, 5), t(4, 6)]);
        c.sent_later(&t(6, 7));
        assert_eq!(
            c.lookup(Millis(6), &d3).unwrap(),
            vec![t(5, 5), t(4, 6), t(6, 7)]
        );

        // A datagram replayed over and over is answered a bounded number of times.
        let again = (0..2 * MAX_REANSWERS)
            .filter(|_| c.lookup(Millis(5), &d1).is_some_and(|t| !t.is_empty()))
            .count();
        assert_eq!(again, usize::try_from(MAX_REANSWERS).unwrap() - 1);
        assert_eq!(c.lookup(Millis(6), &d1), Some(Vec::new()));
        // Expired entries are gone.
        assert!(c.lookup(Millis(100_000), &d1).is_none());
    }
}
