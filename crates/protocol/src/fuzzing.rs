//! Arbitrary datagrams into live roles in the middle of a session: what the role targets under
//! `fuzz/` and the tests that replay their corpus share, written once for every protocol's
//! [`Deployment`].
//!
//! An input is one datagram. Its first byte picks the role that receives it (modulo the number
//! of roles) and who seems to send it (another multiple of it: one of the roles, or a stranger);
//! the rest is the payload. A deployment is brought mid-session by replaying, into a fresh copy
//! built from the same seed, the first datagrams of an honest run, so that every role is waiting
//! for something when the fuzzer's datagrams arrive.

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::{CryptoRng, SeededRng};

use crate::network::{Datagram, Deployment};
use crate::{e2sec, mikey, sga};

/// Where a datagram from none of the roles seems to come from.
pub const STRANGER: SocketAddr = SocketAddr::new(
    core::net::IpAddr::V4(core::net::Ipv4Addr::new(127, 0, 0, 99)),
    9,
);

/// Hands the datagram `input` encodes (see the module's doc) to its role, then drops what the
/// role sends and moves its events into the deployment's record.
pub fn deliver<D: Deployment>(d: &mut D, input: &[u8], rng: &mut dyn CryptoRng) {
    let Some((&pick, payload)) = input.split_first() else {
        return;
    };
    let now = d.network().now;
    let mut nodes = d.nodes();
    let n = nodes.len();
    if n == 0 {
        return;
    }
    let pick = usize::from(pick);
    let from = nodes.get(pick / n % (n + 1)).map_or(STRANGER, |(a, _)| *a);
    let (_, node) = &mut nodes[pick % n];
    node.datagram(now, from, payload, rng);
    while node.transmit().is_some() {}
    d.collect_events();
}

/// One input of a role fuzz target: the deployment `make` builds on the first input (kept in
/// `slot` for the rest, as building it costs keys) is fed `input`; `forget` then drops the
/// events it recorded, so that memory stays bounded over millions of inputs.
pub fn fuzz_one<D: Deployment>(
    slot: &Mutex<Option<Live<D>>>,
    make: impl FnOnce() -> Live<D>,
    forget: impl FnOnce(&mut D),
    input: &[u8],
) {
    // A panic under the lock is the crash being reported; the state is still usable.
    let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let live = guard.get_or_insert_with(make);
    deliver(&mut live.world, input, &mut live.rng);
    forget(&mut live.world);
}

/// The inputs that deliver each datagram of `log` as it was sent, in order (a datagram to an
/// address no role has is left out).
#[must_use]
pub fn inputs<D: Deployment>(d: &mut D, log: &[Datagram]) -> Vec<Vec<u8>> {
    let addrs: Vec<SocketAddr> = d.nodes().iter().map(|(a, _)| *a).collect();
    let n = addrs.len();
    log.iter()
        .filter_map(|dg| {
            let to = addrs.iter().position(|a| *a == dg.to)?;
            let from = addrs.iter().position(|a| *a == dg.from).unwrap_or(n);
            let pick = u8::try_from(from * n + to).ok()?;
            Some([&[pick], dg.payload.as_slice()].concat())
        })
        .collect()
}

/// A deployment mid-session: datagrams of an honest exchange were delivered (at once, with no
/// timer firing) until the one a protocol's cut picks, which is held back with all after it.
#[derive(Debug)]
pub struct Live<D> {
    /// The roles, each waiting for the rest of the exchange.
    pub world: D,
    /// The RNG the roles draw from from now on.
    pub rng: SeededRng,
    /// Every datagram sent so far, in order: the deployment's own log, then the exchange's.
    pub log: Vec<Datagram>,
    /// Sent but not delivered, in order of arrival.
    held: VecDeque<Datagram>,
}

impl<D: Deployment> Live<D> {
    /// Delivers datagrams in order of arrival until `stop` picks one (it is held back, with
    /// all after it) or none is left; returns how many were delivered.
    fn pump(&mut self, mut stop: impl FnMut(&mut D, &Datagram) -> bool) -> usize {
        let mut delivered = 0;
        loop {
            let now = self.world.network().now;
            for (addr, node) in self.world.nodes() {
                while let Some(t) = node.transmit() {
                    let d = Datagram {
                        at: now,
                        from: addr,
                        to: t.destination,
                        payload: t.payload,
                    };
                    self.log.push(d.clone());
                    self.held.push_back(d);
                }
            }
            self.world.collect_events();
            let Some(next) = self.held.front() else {
                return delivered;
            };
            if stop(&mut self.world, next) {
                return delivered;
            }
            let Some(d) = self.held.pop_front() else {
                return delivered;
            };
            for (addr, node) in self.world.nodes() {
                if addr == d.to {
                    node.datagram(now, d.from, &d.payload, &mut self.rng);
                }
            }
            delivered += 1;
        }
    }

    /// Delivers what was held back and everything it leads to: the exchange ends as an honest
    /// run's would.
    pub fn finish(&mut self) {
        self.pump(|_, _| false);
    }

    /// [`Live::log`] as inputs to [`deliver`].
    #[must_use]
    pub fn inputs(&mut self) -> Vec<Vec<u8>> {
        inputs(&mut self.world, &self.log)
    }
}

/// `start` builds a deployment from an RNG seeded with `seed` and starts an exchange on it,
/// whose datagrams are delivered until `stop` picks one.
fn live<D: Deployment, E>(
    seed: u64,
    start: impl FnOnce(&mut dyn CryptoRng) -> Result<D, E>,
    stop: impl FnMut(&mut D, &Datagram) -> bool,
) -> Result<Live<D>, E> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut world = start(&mut rng)?;
    let log = world.network().log.clone();
    let mut live = Live {
        world,
        rng,
        log,
        held: VecDeque::new(),
    };
    live.pump(stop);
    Ok(live)
}

/// A stop that holds back the exchange's datagram number `n` (from 0).
fn after<D>(n: usize) -> impl FnMut(&mut D, &Datagram) -> bool {
    let mut seen = 0;
    move |_, _| {
        seen += 1;
        seen > n
    }
}

/// MIKEY's distributed mode (2 third parties, k = 2: the fewest RSA keys to make): I has sent its parts and waits for R's
/// verification; R holds one part of the two it needs.
///
/// # Errors
/// If keys cannot be generated or the exchange cannot start.
pub fn mikey(seed: u64) -> Result<Live<mikey::sim::World>, mikey::Error> {
    let spec = mikey::sim::Spec {
        third_parties: 2,
        threshold: 2,
        ..mikey::sim::Spec::default()
    };
    live(
        seed,
        |rng| {
            let mut w = mikey::sim::World::generate(&spec, rng)?;
            w.initiator.connect(w.net.now, rng)?;
            Ok(w)
        },
        {
            // Up to the second part for R: R then holds the first.
            let mut to_r = 0;
            move |w: &mut mikey::sim::World, d: &Datagram| {
                to_r += usize::from(d.to == w.addrs[mikey::sim::RESPONDER_ROLE]);
                to_r > 1
            }
        },
    )
}

/// SGA with two registered devices: the first has invited the second; the server has passed
/// the invitation on and waits for the second's answer.
///
/// # Errors
/// If keys cannot be generated or a registration or the invitation cannot start.
pub fn sga(seed: u64) -> Result<Live<sga::sim::World>, sga::Error> {
    live(
        seed,
        |rng| {
            let mut w = sga::sim::World::generate(&sga::sim::Spec::default(), rng)?;
            w.register_all(rng)?;
            let peer = w.devices[1].identity().to_owned();
            w.devices[0].invite(w.net.now, rng, &peer, AeadSuite::Aes128Ccm8)?;
            Ok(w)
        },
        after(2),
    )
}

/// E2SEC with both parties' warrants fetched: the server has started an authentication with
/// the device, which has answered; the server has not yet read the answer.
///
/// # Errors
/// If keys cannot be generated or the authentication cannot start.
pub fn e2sec(seed: u64) -> Result<Live<e2sec::sim::World>, e2sec::Error> {
    live(
        seed,
        |rng| {
            let mut w = e2sec::sim::World::generate(&e2sec::sim::Spec::default(), rng)?;
            w.fetch_warrants(rng)?;
            w.server.connect(w.net.now, rng, e2sec::sim::DEVICE)?;
            Ok(w)
        },
        after(1),
    )
}

/// Whether some role of `d` waits for something (has a deadline): that a deployment is
/// really mid-session.
pub fn waiting<D: Deployment>(d: &mut D) -> bool {
    d.nodes().iter().any(|(_, n)| n.deadline().is_some())
}
