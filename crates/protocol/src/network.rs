//! The in-memory network every protocol's simulation runs on: a queue of datagrams between
//! roles, virtual time, an adversary who sees every datagram, and a meter around every call
//! into a role (quinn-proto's test `Pair` is the model). Each protocol's `sim` module builds its
//! roles and implements [`Deployment`]; [`run`] does the rest.
//!
//! By default a datagram arrives the moment it is sent, so a run's virtual time is only what
//! its timers cost. [`Network::set_latency`] gives every datagram the same one-way delay, so
//! that a run on a lossy link can be compared with the same run on a perfect one (issue 19).

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::VecDeque;

use m2msec_crypto::rng::CryptoRng;

use crate::link::{FaultCounts, Impairment, LinkFaults};
use crate::{Endpoint, Millis, Transmit};

/// One datagram in flight or delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// When it was sent (virtual time).
    pub at: Millis,
    /// Sender.
    pub from: SocketAddr,
    /// Recipient.
    pub to: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
}

/// Wraps each call into a role: `meter(role, call)` must run `call` once. Role indices are
/// positions in [`Deployment::nodes`]. Benchmarks pass a meter that times the call, which keeps
/// clocks out of this crate.
pub type Meter<'a> = &'a mut dyn FnMut(usize, &mut dyn FnMut());

/// Calls `call` through `meter` as role `role`, and returns what it returned (`Ok` if the meter
/// did not call it): how a deployment starts its first session, metered like everything else.
///
/// # Errors
/// What `call` returned.
pub fn metered<E>(
    meter: Meter<'_>,
    role: usize,
    mut call: impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    let mut result = Ok(());
    meter(role, &mut || result = call());
    result
}

/// Longest a run may take in virtual time before [`run`] stops.
pub const HORIZON: Duration = Duration::from_secs(120);

/// The object-safe part of [`Endpoint`] that the network drives.
pub trait Node {
    /// See [`Endpoint::handle_datagram`].
    fn datagram(&mut self, now: Millis, from: SocketAddr, bytes: &[u8], rng: &mut dyn CryptoRng);
    /// See [`Endpoint::handle_timeout`].
    fn timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng);
    /// See [`Endpoint::poll_transmit`].
    fn transmit(&mut self) -> Option<Transmit>;
    /// See [`Endpoint::poll_timeout`].
    fn deadline(&self) -> Option<Millis>;
}

impl<E: Endpoint> Node for E {
    fn datagram(&mut self, now: Millis, from: SocketAddr, bytes: &[u8], rng: &mut dyn CryptoRng) {
        self.handle_datagram(now, from, bytes, rng);
    }
    fn timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        self.handle_timeout(now, rng);
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn deadline(&self) -> Option<Millis> {
        self.poll_timeout()
    }
}

/// The wires between the roles.
#[derive(Debug)]
pub struct Network {
    /// Virtual time.
    pub now: Millis,
    /// Every datagram handed to the network, in order, before the adversary saw it.
    pub log: Vec<Datagram>,
    /// Datagrams in flight with when each arrives, in order of arrival.
    queue: VecDeque<(Millis, Datagram)>,
    /// One-way delay of every datagram.
    latency: Duration,
    /// A bad link between all roles, if one was set, and the datagrams it holds back behind
    /// later ones (with how many more must pass them).
    link: Option<(Impairment, Vec<(Datagram, u16)>)>,
}

impl Network {
    /// An idle network at `now`.
    #[must_use]
    pub fn new(now: Millis) -> Self {
        Self {
            now,
            log: Vec::new(),
            queue: VecDeque::new(),
            latency: Duration::ZERO,
            link: None,
        }
    }

    /// Makes every datagram arrive `latency` after it is sent (zero by default). The delay is
    /// the same for all, so it keeps their order; reordering is [`Network::set_faults`]'.
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// The one-way delay of every datagram.
    #[must_use]
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Queues `dg` to arrive at `due`, or with the datagram ahead of it if that one is due
    /// later (so that the queue stays in order of arrival).
    fn enqueue(&mut self, due: Millis, dg: Datagram) {
        let due = self.queue.back().map_or(due, |(last, _)| due.max(*last));
        self.queue.push_back((due, dg));
    }

    /// The next datagram that has arrived by now.
    fn arrived(&mut self) -> Option<Datagram> {
        if self.queue.front().is_some_and(|(due, _)| *due <= self.now) {
            return self.queue.pop_front().map(|(_, dg)| dg);
        }
        None
    }

    /// Makes every wire lose, duplicate and reorder datagrams as `faults` says, drawn from
    /// `seed` (after the adversary: the attacker sees what was sent).
    pub fn set_faults(&mut self, faults: LinkFaults, seed: u64) {
        self.link = (!faults.is_perfect()).then(|| (Impairment::new(faults, seed), Vec::new()));
    }

    /// What the bad link did so far (zero without one).
    #[must_use]
    pub fn fault_counts(&self) -> FaultCounts {
        self.link
            .as_ref()
            .map(|(i, _)| i.counts())
            .unwrap_or_default()
    }

    /// Puts `dg` on the wire: into the queue, or through the bad link.
    fn carry(&mut self, dg: Datagram) {
        let due = self.now.after(self.latency);
        let Some((link, held)) = &mut self.link else {
            self.enqueue(due, dg);
            return;
        };
        let mut late = Vec::new();
        for hold in link.fate() {
            if hold > 0 {
                held.push((dg.clone(), hold));
                continue;
            }
            late.push(dg.clone());
            // It overtook every datagram held back; those it was the last to pass arrive
            // right after it.
            let mut i = 0;
            while i < held.len() {
                held[i].1 -= 1;
                if held[i].1 == 0 {
                    late.push(held.remove(i).0);
                } else {
                    i += 1;
                }
            }
        }
        for dg in late {
            self.enqueue(due, dg);
        }
    }

    /// Releases whatever the bad link still holds back (nothing more will overtake it): each
    /// arrives one latency after it was sent, or now if that has passed.
    fn release_held(&mut self) -> bool {
        let Some((_, held)) = &mut self.link else {
            return false;
        };
        let released: Vec<Datagram> = held.drain(..).map(|(d, _)| d).collect();
        for dg in &released {
            let due = dg.at.after(self.latency).max(self.now);
            self.enqueue(due, dg.clone());
        }
        !released.is_empty()
    }

    /// Queues a datagram as if its sender had just sent it (an adversary's injection).
    pub fn inject(&mut self, datagram: Datagram) {
        let due = self.now.after(self.latency);
        self.enqueue(due, datagram);
    }
}

/// A protocol's set of roles on a [`Network`].
pub trait Deployment {
    /// The network.
    fn network(&mut self) -> &mut Network;
    /// Every role with its address, in a fixed order (the meter's role indices).
    fn nodes(&mut self) -> Vec<(SocketAddr, &mut dyn Node)>;
    /// Moves every role's events into the deployment's typed record.
    fn collect_events(&mut self);
    /// Whether the exchange under way has ended (the run then stops once the network is
    /// quiet).
    fn finished(&self) -> bool;
}

/// Runs `d` until it is finished and the network is quiet, or until [`HORIZON`] passes.
/// Every datagram goes through `adversary`, which returns what to deliver instead (nothing to
/// drop it, an altered copy to tamper, several to duplicate).
pub fn run<D: Deployment>(
    d: &mut D,
    rng: &mut dyn CryptoRng,
    adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
    meter: Meter<'_>,
) {
    let horizon = d.network().now.after(HORIZON);
    loop {
        collect(d, adversary);
        if let Some(dg) = d.network().arrived() {
            let now = d.network().now;
            for (i, (addr, node)) in d.nodes().into_iter().enumerate() {
                if addr == dg.to {
                    meter(i, &mut || node.datagram(now, dg.from, &dg.payload, rng));
                }
            }
            continue;
        }
        let in_flight = d.network().queue.front().map(|(due, _)| *due);
        if in_flight.is_none() {
            if d.network().release_held() {
                continue;
            }
            if d.finished() {
                return;
            }
        }
        let timer = d.nodes().iter().filter_map(|(_, n)| n.deadline()).min();
        let Some(next) = [in_flight, timer].into_iter().flatten().min() else {
            return;
        };
        if next > horizon {
            return;
        }
        let now = d.network().now.max(next);
        d.network().now = now;
        // A datagram that arrives when a timer fires is handled first.
        if in_flight.is_none_or(|due| due > now) {
            fire_timers(d, rng, meter);
        }
    }
}

/// Lets `by` of virtual time pass, firing every timer that falls due.
pub fn advance<D: Deployment>(d: &mut D, by: Duration, rng: &mut dyn CryptoRng) {
    let end = d.network().now.after(by);
    while let Some(next) = d
        .nodes()
        .iter()
        .filter_map(|(_, n)| n.deadline())
        .min()
        .filter(|t| *t <= end)
    {
        let now = d.network().now.max(next);
        d.network().now = now;
        fire_timers(d, rng, &mut |_, call| call());
        collect(d, &mut |dg| vec![dg.clone()]);
    }
    d.network().now = end;
}

fn fire_timers<D: Deployment>(d: &mut D, rng: &mut dyn CryptoRng, meter: Meter<'_>) {
    let now = d.network().now;
    for (i, (_, node)) in d.nodes().into_iter().enumerate() {
        if node.deadline().is_some_and(|t| t <= now) {
            meter(i, &mut || node.timeout(now, rng));
        }
    }
}

/// Moves every role's transmits through the adversary into the queue, and its events into
/// the deployment's record.
fn collect<D: Deployment>(d: &mut D, adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>) {
    let now = d.network().now;
    let mut sent = Vec::new();
    for (addr, node) in d.nodes() {
        while let Some(t) = node.transmit() {
            sent.push(Datagram {
                at: now,
                from: addr,
                to: t.destination,
                payload: t.payload,
            });
        }
    }
    let net = d.network();
    for dg in sent {
        for delivered in adversary(&dg) {
            net.carry(delivered);
        }
        net.log.push(dg);
    }
    d.collect_events();
}
