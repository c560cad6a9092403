//! Observers of the monitors (RFC 7641), with their confirmable notifications.
//!
//! - An observer is (endpoint, monitor): registering again from the same endpoint replaces the
//!   entry and its token (§4.1). A GET with Observe = 1, or a plain GET with the observer's
//!   token, deregisters (§3.6); so does an RST to a notification, a notification that stays
//!   unacknowledged after [`MAX_RETRANSMIT`] retransmissions (§4.5), and an error
//!   notification (the monitored storage or forward was deleted: 4.04, §4.2).
//! - Notifications are non-confirmable, except at least every [`CON_EVERY`]th one and at least
//!   every `notify_con_interval_s`, so a client that went away without saying so is found and
//!   dropped (§4.5). While a confirmable notification is outstanding a newer one takes its place
//!   and inherits its retransmission state (§4.5.2).
//! - Observe numbers are 24-bit and increase by one per notification of an observer.
//! - Their number is bounded (`max_observers`): past it a GET is answered without Observe, which
//!   tells the client it was not registered (§4.1).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet};

use m2msec_wire::relay::coap::coap_lite::ResponseType;

use super::coap_msg::Response;
use super::state::MonitorId;
use crate::relay::coap::{DEFAULT_SZX, MessageIds, slice_block2};

/// A notification is confirmable at least this often (counted per observer).
pub(crate) const CON_EVERY: u32 = 16;
/// Retransmissions of a confirmable notification before the observer is dropped (RFC 7252).
pub(crate) const MAX_RETRANSMIT: u32 = 4;
/// Initial retransmission timeout of a confirmable notification (RFC 7252 ACK_TIMEOUT).
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Message ids of recent non-confirmable notifications remembered, to match an RST to them.
const RECENT_NON: usize = 4096;

/// Observe values are 24 bits (RFC 7641 §4.4).
const OBSERVE_MASK: u32 = 0x00FF_FFFF;

#[derive(Debug)]
struct Outstanding {
    message_id: u16,
    bytes: Vec<u8>,
    retransmits: u32,
    timeout: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct Observer {
    peer: SocketAddr,
    token: Vec<u8>,
    monitor: MonitorId,
    json: bool,
    observe: u32,
    since_con: u32,
    last_con: Instant,
    outstanding: Option<Outstanding>,
}

/// What registering did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// Registered (or re-registered): answer with this Observe value.
    Yes(u32),
    /// The table is full: answer without Observe.
    Full,
}

/// A datagram the observers want sent.
pub(crate) type Outgoing = (SocketAddr, Vec<u8>);

/// Every observer of every monitor.
#[derive(Debug)]
pub(crate) struct Observers {
    list: Vec<Observer>,
    max: usize,
    con_interval: Duration,
    recent_non: VecDeque<(SocketAddr, u16)>,
}

impl Observers {
    pub(crate) fn new(max: usize, con_interval: Duration) -> Self {
        Self {
            list: Vec::new(),
            max,
            con_interval,
            recent_non: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether `monitor` has observers.
    #[cfg(test)]
    pub(crate) fn watched(&self, monitor: MonitorId) -> bool {
        self.list.iter().any(|o| o.monitor == monitor)
    }

    /// A GET with Observe = 0.
    pub(crate) fn register(
        &mut self,
        peer: SocketAddr,
        token: &[u8],
        monitor: MonitorId,
        json: bool,
        now: Instant,
    ) -> Registered {
        if let Some(o) = self
            .list
            .iter_mut()
            .find(|o| o.peer == peer && o.monitor == monitor)
        {
            o.token = token.to_vec();
            o.json = json;
            o.observe = (o.observe + 1) & OBSERVE_MASK;
            return Registered::Yes(o.observe);
        }
        if self.list.len() >= self.max {
            return Registered::Full;
        }
        let observe = 2;
        self.list.push(Observer {
            peer,
            token: token.to_vec(),
            monitor,
            json,
            observe,
            since_con: 0,
            last_con: now,
            outstanding: None,
        });
        Registered::Yes(observe)
    }

    /// A GET with Observe = 1, or without Observe, from `peer` with `token`: ends that
    /// observation if there is one.
    pub(crate) fn deregister(&mut self, peer: SocketAddr, token: &[u8]) {
        self.list.retain(|o| !(o.peer == peer && o.token == token));
    }

    /// An empty ACK from `peer`: a confirmable notification arrived.
    pub(crate) fn on_ack(&mut self, peer: SocketAddr, message_id: u16) {
        for o in &mut self.list {
            if o.peer == peer
                && o.outstanding
                    .as_ref()
                    .is_some_and(|out| out.message_id == message_id)
            {
                o.outstanding = None;
            }
        }
    }

    /// An RST from `peer`: the client no longer wants the notification (RFC 7641 §3.6).
    pub(crate) fn on_reset(&mut self, peer: SocketAddr, message_id: u16) {
        let recent = self.recent_non.contains(&(peer, message_id));
        self.list.retain(|o| {
            let outstanding = o
                .outstanding
                .as_ref()
                .is_some_and(|out| out.message_id == message_id);
            !(o.peer == peer && (outstanding || recent))
        });
    }

    /// Notifies every observer of `monitor` of its new representation — `None` when the
    /// monitor is gone, which ends the observations with 4.04. `body(json)` renders it;
    /// Notifications are cut to their first block (RFC 7959 §3.4) when they do not fit one.
    pub(crate) fn notify(
        &mut self,
        monitor: MonitorId,
        body: Option<&dyn Fn(bool) -> Vec<u8>>,
        now: Instant,
        ids: &mut MessageIds,
        out: &mut Vec<Outgoing>,
    ) {
        let con_interval = self.con_interval;
        let mut recent = Vec::new();
        for o in self.list.iter_mut().filter(|o| o.monitor == monitor) {
            o.observe = (o.observe + 1) & OBSERVE_MASK;
            let response = match body {
                Some(render) => {
                    let format = if o.json {
                        super::coap_msg::CONTENT_FORMAT_JSON
                    } else {
                        m2msec_wire::relay::api::CONTENT_FORMAT_CBOR
                    };
                    Response::content(render(o.json), format)
                        .with_uint(CoapOption::Observe, o.observe)
                }
                None => Response::error(ResponseType::NotFound, "monitor deleted"),
            };
            o.since_con += 1;
            let confirmable = o.since_con >= CON_EVERY
                || now.saturating_duration_since(o.last_con) >= con_interval
                || o.outstanding.is_some();
            let message_id = ids.next_id();
            let mut p = Packet::new();
            p.header.set_type(if confirmable {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            });
            p.header.message_id = message_id;
            p.header.code = MessageClass::Response(response.code);
            p.set_token(o.token.clone());
            response.apply(&mut p);
            slice_block2(&Packet::new(), &mut p, DEFAULT_SZX);
            let Some(bytes) = super::coap_msg::encode(&p) else {
                continue;
            };
            if confirmable {
                o.since_con = 0;
                o.last_con = now;
                // A newer notification replaces the outstanding one, keeping its
                // retransmission state (RFC 7641 §4.5.2).
                let (retransmits, timeout) = o
                    .outstanding
                    .as_ref()
                    .map_or((0, ACK_TIMEOUT), |out| (out.retransmits, out.timeout));
                o.outstanding = Some(Outstanding {
                    message_id,
                    bytes: bytes.clone(),
                    retransmits,
                    timeout,
                    deadline: now + timeout,
                });
            } else {
                recent.push((o.peer, message_id));
            }
            out.push((o.peer, bytes));
        }
        for r in recent {
            if self.recent_non.len() >= RECENT_NON {
                self.recent_non.pop_front();
            }
            self.recent_non.push_back(r);
        }
        if body.is_none() {
            self.list.retain(|o| o.monitor != monitor);
        }
    }

    /// Retransmits confirmable notifications that are due; drops observers that never
    /// acknowledged.
    pub(crate) fn retransmit(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        self.list.retain_mut(|o| {
            let Some(pending) = o.outstanding.as_mut() else {
                return true;
            };
            if now < pending.deadline {
                return true;
            }
            if pending.retransmits >= MAX_RETRANSMIT {
                tracing::debug!(peer = %o.peer, monitor = ?o.monitor, "observer dropped: notification never acknowledged");
                return false;
            }
            pending.retransmits += 1;
            pending.timeout = pending.timeout.saturating_mul(2);
            pending.deadline = now + pending.timeout;
            out.push((o.peer, pending.bytes.clone()));
            true
        });
    }

    /// How many observe `monitor`.
    #[cfg(test)]
    pub(crate) fn count_of(&self, monitor: MonitorId) -> usize {
        self.list.iter().filter(|o| o.monitor == monitor).count()
    }

    /// The monitors someone observes.
    pub(crate) fn monitors(&self) -> Vec<MonitorId> {
        let mut m: Vec<MonitorId> = self.list.iter().map(|o| o.monitor).collect();
        m.sort_unstable();
        m.dedup();
        m
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn register_notify_ack_reset_and_timeouts() {
        let now = Instant::now();
        let mut obs = Observers::new(2, Duration::from_secs(30));
        let m = MonitorId::Storage(1);
        assert_eq!(
            obs.register(peer(1), b"t1", m, false, now),
            Registered::Yes(2)
        );
        // The same endpoint again replaces its entry.
        assert_eq!(
            obs.register(peer(1), b"t2", m, false, now),
            Registered::Yes(3)
        );
        assert_eq!(obs.count_of(m), 1);
        assert_eq!(
            obs.register(peer(2), b"x", MonitorId::Forward(1), true, now),
            Registered::Yes(2)
        );
        assert_eq!(obs.register(peer(3), b"y", m, false, now), Registered::Full);

        let mut next = MessageIds::starting_at(100);
        let body = |json: bool| if json { b"{}".to_vec() } else { vec![0x80] };
        let mut out = Vec::new();
        // Notifications are NON until the 16th, which is CON.
        for i in 1..=CON_EVERY {
            out.clear();
            obs.notify(m, Some(&body), now, &mut next, &mut out);
            let p = Packet::from_bytes(&out[0].1).unwrap();
            assert_eq!(p.get_token(), b"t2");
            let expect = if i == CON_EVERY {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            };
            assert_eq!(p.header.get_type(), expect, "notification {i}");
            assert_eq!(crate::relay::coap::observe_value(&p), Some(3 + i));
        }
        let con = Packet::from_bytes(&out[0].1).unwrap().header.message_id;
        // Unacknowledged: retransmitted with doubling timeouts, then dropped.
        let mut t = now;
        for _ in 0..MAX_RETRANSMIT {
            t += Duration::from_secs(60);
            out.clear();
            obs.retransmit(t, &mut out);
            assert_eq!(out.len(), 1);
        }
        t += Duration::from_secs(600);
        out.clear();
        obs.retransmit(t, &mut out);
        assert!(out.is_empty());
        assert_eq!(obs.count_of(m), 0);

        // An ACK clears the outstanding notification; an RST to a NON ends the observation.
        obs.register(peer(1), b"t3", m, false, now);
        for _ in 0..CON_EVERY {
            out.clear();
            obs.notify(m, Some(&body), now, &mut next, &mut out);
        }
        let con2 = Packet::from_bytes(&out[0].1).unwrap().header.message_id;
        assert_ne!(con, con2);
        obs.on_ack(peer(1), con2);
        out.clear();
        obs.retransmit(now + Duration::from_secs(60), &mut out);
        assert!(out.is_empty());
        out.clear();
        obs.notify(m, Some(&body), now, &mut next, &mut out);
        let non = Packet::from_bytes(&out[0].1).unwrap().header.message_id;
        obs.on_reset(peer(9), non); // another endpoint: nothing
        assert_eq!(obs.count_of(m), 1);
        obs.on_reset(peer(1), non);
        assert_eq!(obs.count_of(m), 0);

        // A deleted monitor ends its observations with 4.04.
        out.clear();
        obs.notify(MonitorId::Forward(1), None, now, &mut next, &mut out);
        let p = Packet::from_bytes(&out[0].1).unwrap();
        assert_eq!(
            p.header.code,
            MessageClass::Response(ResponseType::NotFound)
        );
        assert_eq!(obs.len(), 0);
        assert!(obs.monitors().is_empty());
    }

    #[test]
    fn deregistration() {
        let now = Instant::now();
        let mut obs = Observers::new(8, Duration::from_secs(30));
        obs.register(peer(1), b"a", MonitorId::Storage(1), false, now);
        obs.register(peer(1), b"b", MonitorId::Storage(2), false, now);
        obs.deregister(peer(1), b"a");
        assert!(!obs.watched(MonitorId::Storage(1)));
        assert!(obs.watched(MonitorId::Storage(2)));
    }
}
