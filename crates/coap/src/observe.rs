//! Observe (RFC 7641): a server's list of observers and their notifications, and the
//! freshness rule a client orders notifications by.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use m2msec_protocol::Millis;
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, ResponseType,
};

use crate::block::slice_block2;
use crate::message::MessageIds;
use crate::options::{observe_value, set_uint_option, uint_option};
use crate::params::{ACK_TIMEOUT, MAX_RETRANSMIT};
use crate::time::elapsed;

/// RFC 7641 §3.4: a notification this much newer is fresh whatever its sequence number.
pub(crate) const OBSERVE_FRESHNESS: Duration = Duration::from_secs(128);
/// Observe sequence numbers are 24 bits (RFC 7641 §2).
pub(crate) const OBSERVE_MASK: u32 = 0x00ff_ffff;

/// An observer's identity: its endpoint and the registration's token (RFC 7641 §4.1).
type Key = (SocketAddr, Vec<u8>);

/// RFC 7641 §3.4: whether notification `v2` arriving at `t2` is newer than `v1` at `t1`.
pub(crate) fn fresher(v1: u32, t1: Millis, v2: u32, t2: Millis) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF)
        || (v1 > v2 && v1 - v2 > HALF)
        || elapsed(t1, t2) > OBSERVE_FRESHNESS
}

/// A notification is confirmable at least this often, counted per observer (RFC 7641 §4.5).
pub const CON_EVERY: u32 = 16;
/// Message ids of an observer's latest notifications kept, to match a Reset to one of them.
const RECENT_NOTIFICATIONS: usize = 4;

/// A confirmable notification waiting for its ACK.
struct Outstanding {
    packet: Packet,
    retransmits: u32,
    timeout: Duration,
    deadline: Millis,
}

/// One entry of the list of observers: the resource, and what its notifications need.
struct Observer {
    path: String,
    /// The registration's Accept option: the notifications are rendered for it.
    accept: Option<u16>,
    /// The Observe value of the last notification (or of the registration's response).
    observe: u32,
    /// Notifications since the last confirmable one, and when that one went out.
    since_con: u32,
    last_con: Millis,
    /// Message ids of the latest notifications, newest last: a Reset to one of them ends the
    /// registration (RFC 7641 §3.6).
    recent: VecDeque<u16>,
    outstanding: Option<Outstanding>,
}

/// The observers of a server's resources (RFC 7641 §4): registration, deregistration, the
/// notifications to send when a resource changes, and their retransmission.
///
/// - An entry is keyed by the client's endpoint and token (§4.1): a registration with the same
///   pair replaces the entry. A GET with Observe = 1, or without Observe, with the token of an
///   observation ends it, as does a Reset to one of its notifications (§3.6) and a final
///   response ([`Observers::end`], §4.2).
/// - Notifications are NON, except at least every [`CON_EVERY`]th one and at least every
///   `con_interval`, so an observer that went away without a word is found (§4.5). A CON
///   notification is retransmitted by [`Observers::poll`] after [`ACK_TIMEOUT`], doubling, and
///   the observer dropped when [`MAX_RETRANSMIT`] retransmissions stay unacknowledged
///   ([`Observers::on_ack`] clears it). While one is outstanding every newer notification is
///   CON and takes its place, keeping its retransmission counter and timeout (§4.5.2).
/// - Each observer gets the representation in the content format it asked for with Accept
///   (the caller renders it, once per format); Observe numbers are per observer, 24-bit and
///   increase by one per notification (§4.4).
/// - At most `max` observers are kept: past it a registration is not made and the GET is
///   answered without Observe, which tells the client so (§4.1).
pub struct Observers {
    entries: HashMap<Key, Observer>,
    max: usize,
    con_interval: Duration,
}

impl core::fmt::Debug for Observers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observers")
            .field("count", &self.entries.len())
            .field("max", &self.max)
            .field("con_interval", &self.con_interval)
            .finish_non_exhaustive()
    }
}

impl Observers {
    /// A list of at most `max` observers, each sent a confirmable notification at least every
    /// `con_interval` (and every [`CON_EVERY`]th).
    #[must_use]
    pub fn new(max: usize, con_interval: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            max,
            con_interval,
        }
    }

    /// Handles the Observe option of a GET of the observable resource `path` (the server's name
    /// for it). Returns the Observe value to put in the response when `peer` is (still)
    /// registered; `None` when the request registers nothing: Observe = 1 or no Observe, which
    /// end an observation with the request's token, or a full list.
    pub fn on_get(
        &mut self,
        peer: SocketAddr,
        req: &Packet,
        path: &str,
        now: Millis,
    ) -> Option<u32> {
        let key = (peer, req.get_token().to_vec());
        if observe_value(req) != Some(0) {
            self.entries.remove(&key);
            return None;
        }
        let accept = uint_option(req, CoapOption::Accept).and_then(|a| u16::try_from(a).ok());
        if let Some(o) = self.entries.get_mut(&key) {
            o.path = path.to_owned();
            o.accept = accept;
            o.observe = (o.observe + 1) & OBSERVE_MASK;
            return Some(o.observe);
        }
        if self.entries.len() >= self.max {
            return None;
        }
        let observe = 2;
        self.entries.insert(
            key,
            Observer {
                path: path.to_owned(),
                accept,
                observe,
                since_con: 0,
                last_con: now,
                recent: VecDeque::with_capacity(RECENT_NOTIFICATIONS),
                outstanding: None,
            },
        );
        Some(observe)
    }

    /// An empty ACK from `peer` with message id `mid`: the outstanding notification it answers
    /// arrived.
    pub fn on_ack(&mut self, peer: SocketAddr, mid: u16) {
        for ((p, _), o) in &mut self.entries {
            if *p == peer
                && o.outstanding
                    .as_ref()
                    .is_some_and(|out| out.packet.header.message_id == mid)
            {
                o.outstanding = None;
            }
        }
    }

    /// A Reset from `peer` with message id `mid`: if it answers one of an observer's latest
    /// notifications, that observer is gone (RFC 7641 §3.6).
    pub fn on_reset(&mut self, peer: SocketAddr, mid: u16) {
        self.entries
            .retain(|(p, _), o| !(*p == peer && o.recent.contains(&mid)));
    }

    /// Removes one registration.
    pub fn remove(&mut self, peer: SocketAddr, token: &[u8]) {
        self.entries.remove(&(peer, token.to_vec()));
    }

    /// Observers of `path`.
    #[must_use]
    pub fn count(&self, path: &str) -> usize {
        self.entries.values().filter(|o| o.path == path).count()
    }

    /// The notifications of a new representation of `path` (2.05 Content), one per observer.
    /// `render(accept)` gives the representation and its Content-Format for an observer that
    /// registered with that Accept option; it is called once per distinct Accept. A
    /// representation above one block of `16 << max_szx` bytes is sent as block 0 and the
    /// observers fetch the rest (RFC 7959 §3.4).
    pub fn notify(
        &mut self,
        path: &str,
        now: Millis,
        ids: &mut MessageIds,
        max_szx: u8,
        mut render: impl FnMut(Option<u16>) -> (Vec<u8>, Option<u16>),
    ) -> Vec<(SocketAddr, Packet)> {
        let mut rendered: Vec<(Option<u16>, Vec<u8>, Option<u16>)> = Vec::new();
        let mut out = Vec::new();
        for ((peer, token), o) in &mut self.entries {
            if o.path != path {
                continue;
            }
            let index = match rendered.iter().position(|(a, ..)| *a == o.accept) {
                Some(i) => i,
                None => {
                    let (payload, format) = render(o.accept);
                    rendered.push((o.accept, payload, format));
                    rendered.len() - 1
                }
            };
            let (_, payload, format) = &rendered[index];
            // RFC 7641 §4.4: per-observer sequence numbers, 24 bits, increasing.
            o.observe = (o.observe + 1) & OBSERVE_MASK;
            o.since_con += 1;
            // RFC 7641 §4.5: CON at least every CON_EVERY notifications and every con_interval.
            let confirmable = o.since_con >= CON_EVERY
                || elapsed(o.last_con, now) >= self.con_interval
                || o.outstanding.is_some();
            let mut p = Packet::new();
            p.header.set_type(if confirmable {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            });
            p.header.code = MessageClass::Response(ResponseType::Content);
            p.header.message_id = ids.next_id();
            p.set_token(token.clone());
            set_uint_option(&mut p, CoapOption::Observe, o.observe);
            if let Some(cf) = format {
                set_uint_option(&mut p, CoapOption::ContentFormat, u32::from(*cf));
            }
            p.payload.clone_from(payload);
            slice_block2(&Packet::new(), &mut p, max_szx);
            if o.recent.len() >= RECENT_NOTIFICATIONS {
                o.recent.pop_front();
            }
            o.recent.push_back(p.header.message_id);
            if confirmable {
                o.since_con = 0;
                o.last_con = now;
                // A newer notification replaces the outstanding one and keeps its
                // retransmission state (RFC 7641 §4.5.2).
                let (retransmits, timeout) = o
                    .outstanding
                    .as_ref()
                    .map_or((0, ACK_TIMEOUT), |out| (out.retransmits, out.timeout));
                o.outstanding = Some(Outstanding {
                    packet: p.clone(),
                    retransmits,
                    timeout,
                    deadline: now.after(timeout),
                });
            }
            out.push((*peer, p));
        }
        out
    }

    /// Retransmissions of the confirmable notifications whose ACK is overdue. An observer whose
    /// notification stays unacknowledged after [`MAX_RETRANSMIT`] retransmissions is dropped.
    pub fn poll(&mut self, now: Millis) -> Vec<(SocketAddr, Packet)> {
        let mut out = Vec::new();
        self.entries.retain(|(peer, _), o| {
            let Some(pending) = o.outstanding.as_mut() else {
                return true;
            };
            if now < pending.deadline {
                return true;
            }
            if pending.retransmits >= MAX_RETRANSMIT {
                return false;
            }
            pending.retransmits += 1;
            pending.timeout = pending.timeout.saturating_mul(2);
            pending.deadline = now.after(pending.timeout);
            out.push((*peer, pending.packet.clone()));
            true
        });
        out
    }

    /// Ends every observation of `path` with a final `code` response (e.g. 4.04 when the
    /// resource is deleted, RFC 7641 §3.2) carrying `diagnostic`, and forgets them.
    pub fn end(
        &mut self,
        path: &str,
        code: ResponseType,
        diagnostic: &str,
        ids: &mut MessageIds,
    ) -> Vec<(SocketAddr, Packet)> {
        let mut out = Vec::new();
        self.entries.retain(|(peer, token), o| {
            if o.path != path {
                return true;
            }
            let mut p = Packet::new();
            p.header.set_type(MessageType::NonConfirmable);
            p.header.code = MessageClass::Response(code);
            p.header.message_id = ids.next_id();
            p.set_token(token.clone());
            p.payload = diagnostic.as_bytes().to_vec();
            out.push((*peer, p));
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::peer;
    use crate::options::{content_format, new_request, response_code};
    use m2msec_wire::relay::coap::coap_lite::RequestType;

    #[test]
    fn freshness_follows_rfc7641() {
        let t = Millis(1_000);
        assert!(fresher(1, t, 2, t));
        assert!(!fresher(2, t, 1, t));
        assert!(!fresher(5, t, 5, t));
        assert!(fresher(OBSERVE_MASK, t, 3, t), "wrap-around");
        assert!(
            fresher(9, t, 1, t.after(Duration::from_secs(129))),
            "stale by time"
        );
    }

    fn observe_get(token: &[u8], observe: u32, accept: Option<u16>) -> Packet {
        let mut get = new_request(RequestType::Get, "storage/1/monitor", true).expect("valid");
        get.set_token(token.to_vec());
        set_uint_option(&mut get, CoapOption::Observe, observe);
        if let Some(a) = accept {
            set_uint_option(&mut get, CoapOption::Accept, a.into());
        }
        get
    }

    /// Renders "state" as CBOR (60) unless JSON (50) is asked for.
    fn state(accept: Option<u16>) -> (Vec<u8>, Option<u16>) {
        match accept {
            Some(50) => (b"{\"state\":1}".to_vec(), Some(50)),
            _ => (b"state".to_vec(), Some(60)),
        }
    }

    const MONITOR: &str = "storage/1/monitor";

    #[test]
    fn observers_register_notify_and_leave() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(500);
        let mut obs = Observers::new(2, Duration::from_secs(60));
        let mut get = observe_get(b"ob", 0, None);
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), Some(2));
        assert_eq!(obs.count(MONITOR), 1);
        let sent = obs.notify(MONITOR, t, &mut ids, 6, state);
        assert_eq!(sent.len(), 1);
        let (to, n) = &sent[0];
        assert_eq!(*to, peer());
        assert_eq!(n.get_token(), b"ob");
        assert_eq!(n.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(observe_value(n), Some(3));
        assert_eq!(content_format(n), Some(60));
        assert_eq!(n.payload, b"state");
        assert!(obs.notify("other", t, &mut ids, 6, state).is_empty());
        // A Reset from another endpoint changes nothing; the observer's own ends it.
        obs.on_reset(SocketAddr::from(([127, 0, 0, 1], 9)), n.header.message_id);
        assert_eq!(obs.count(MONITOR), 1);
        obs.on_reset(peer(), n.header.message_id);
        assert_eq!(obs.count(MONITOR), 0);
        // Register again (the same endpoint and token replace the entry), then deregister with
        // Observe = 1.
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), Some(2));
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), Some(3));
        assert_eq!(obs.count(MONITOR), 1);
        set_uint_option(&mut get, CoapOption::Observe, 1);
        assert_eq!(obs.on_get(peer(), &get, MONITOR, t), None);
        assert_eq!(obs.count(MONITOR), 0);
        // A plain GET with an observation's token ends it too.
        assert!(
            obs.on_get(peer(), &observe_get(b"p", 0, None), MONITOR, t)
                .is_some()
        );
        let mut plain = new_request(RequestType::Get, MONITOR, true).expect("valid");
        plain.set_token(b"p".to_vec());
        assert_eq!(obs.on_get(peer(), &plain, MONITOR, t), None);
        assert_eq!(obs.count(MONITOR), 0);
        // Full: a third registration is refused, the two kept.
        assert!(
            obs.on_get(peer(), &observe_get(b"1", 0, None), MONITOR, t)
                .is_some()
        );
        assert!(
            obs.on_get(peer(), &observe_get(b"2", 0, None), MONITOR, t)
                .is_some()
        );
        assert_eq!(
            obs.on_get(peer(), &observe_get(b"3", 0, None), MONITOR, t),
            None
        );
        assert_eq!(obs.count(MONITOR), 2);
        // A deleted resource ends its observations with a final 4.04.
        let last = obs.end(MONITOR, ResponseType::NotFound, "deleted", &mut ids);
        assert_eq!(last.len(), 2);
        assert!(last.iter().all(|(_, p)| {
            response_code(p) == Some(ResponseType::NotFound)
                && observe_value(p).is_none()
                && p.payload == b"deleted"
        }));
        assert_eq!(obs.count(MONITOR), 0);
    }

    #[test]
    fn observers_get_their_accepted_format() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(60));
        obs.on_get(peer(), &observe_get(b"c", 0, Some(60)), MONITOR, t);
        obs.on_get(peer(), &observe_get(b"j", 0, Some(50)), MONITOR, t);
        obs.on_get(peer(), &observe_get(b"d", 0, None), MONITOR, t);
        let mut renders = Vec::new();
        let sent = obs.notify(MONITOR, t, &mut ids, 6, |accept| {
            renders.push(accept);
            state(accept)
        });
        renders.sort_unstable();
        assert_eq!(renders, [None, Some(50), Some(60)], "once per Accept");
        for (_, p) in &sent {
            let json = p.get_token() == b"j";
            assert_eq!(content_format(p), Some(if json { 50 } else { 60 }));
            assert_eq!(p.payload.starts_with(b"{"), json);
        }
        assert_eq!(sent.len(), 3);
    }

    #[test]
    fn every_16th_notification_is_confirmable_and_retransmitted() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(3600));
        obs.on_get(peer(), &observe_get(b"o", 0, None), MONITOR, t);
        let mut con = None;
        for i in 1..=CON_EVERY {
            let sent = obs.notify(MONITOR, t, &mut ids, 6, state);
            let p = &sent[0].1;
            let expect = if i == CON_EVERY {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            };
            assert_eq!(p.header.get_type(), expect, "notification {i}");
            assert_eq!(observe_value(p), Some(2 + i));
            con = Some(p.clone());
        }
        let con = con.expect("sent");
        // Nothing is due before ACK_TIMEOUT; then the same message, at doubling intervals.
        assert!(
            obs.poll(t.after(ACK_TIMEOUT - Duration::from_millis(1)))
                .is_empty()
        );
        let mut now = t;
        let mut timeout = ACK_TIMEOUT;
        for _ in 0..MAX_RETRANSMIT {
            now = now.after(timeout);
            let again = obs.poll(now);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].1.header.message_id, con.header.message_id);
            assert_eq!(again[0].1.payload, con.payload);
            timeout *= 2;
            assert!(
                obs.poll(now.after(timeout - Duration::from_millis(1)))
                    .is_empty()
            );
        }
        // Never acknowledged: the observer is dropped.
        assert!(obs.poll(now.after(timeout)).is_empty());
        assert_eq!(obs.count(MONITOR), 0);
    }

    #[test]
    fn an_ack_clears_the_outstanding_notification() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(30));
        obs.on_get(peer(), &observe_get(b"o", 0, None), MONITOR, t);
        // The first notification after con_interval is CON.
        let later = t.after(Duration::from_secs(30));
        let sent = obs.notify(MONITOR, later, &mut ids, 6, state);
        let p = &sent[0].1;
        assert_eq!(p.header.get_type(), MessageType::Confirmable);
        // An ACK from elsewhere, or for another message, does not count.
        obs.on_ack(SocketAddr::from(([127, 0, 0, 1], 9)), p.header.message_id);
        obs.on_ack(peer(), p.header.message_id.wrapping_add(1));
        assert_eq!(obs.poll(later.after(ACK_TIMEOUT)).len(), 1);
        obs.on_ack(peer(), p.header.message_id);
        assert!(obs.poll(later.after(Duration::from_secs(600))).is_empty());
        assert_eq!(obs.count(MONITOR), 1);
        // Acknowledged: the next one is NON again.
        let sent = obs.notify(MONITOR, later, &mut ids, 6, state);
        assert_eq!(sent[0].1.header.get_type(), MessageType::NonConfirmable);
    }

    #[test]
    fn a_newer_notification_takes_the_outstanding_ones_place() {
        let t = Millis(1_000);
        let mut ids = MessageIds::starting_at(1);
        let mut obs = Observers::new(8, Duration::from_secs(30));
        obs.on_get(peer(), &observe_get(b"o", 0, None), MONITOR, t);
        let t1 = t.after(Duration::from_secs(30));
        let first = obs.notify(MONITOR, t1, &mut ids, 6, state)[0].1.clone();
        assert_eq!(first.header.get_type(), MessageType::Confirmable);
        // Retransmitted once: timeout now 4 s, one retransmission counted.
        let t2 = t1.after(ACK_TIMEOUT);
        assert_eq!(obs.poll(t2).len(), 1);
        // A newer notification while it is outstanding: CON too, and the only one retransmitted,
        // with the timeout and counter it inherits.
        let newer = obs.notify(MONITOR, t2, &mut ids, 6, |_| (b"new".to_vec(), Some(60)))[0]
            .1
            .clone();
        assert_eq!(newer.header.get_type(), MessageType::Confirmable);
        assert_ne!(newer.header.message_id, first.header.message_id);
        assert!(
            obs.poll(t2.after(2 * ACK_TIMEOUT - Duration::from_millis(1)))
                .is_empty()
        );
        let again = obs.poll(t2.after(2 * ACK_TIMEOUT));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.header.message_id, newer.header.message_id);
        assert_eq!(again[0].1.payload, b"new");
        // The old message id's ACK clears nothing; counted from the first notification, the
        // observer is dropped after MAX_RETRANSMIT retransmissions in all (two so far).
        obs.on_ack(peer(), first.header.message_id);
        let mut now = t2.after(2 * ACK_TIMEOUT);
        for _ in 2..MAX_RETRANSMIT {
            now = now.after(Duration::from_secs(600));
            assert_eq!(obs.poll(now).len(), 1);
        }
        now = now.after(Duration::from_secs(600));
        assert!(obs.poll(now).is_empty());
        assert_eq!(obs.count(MONITOR), 0);
    }
}
