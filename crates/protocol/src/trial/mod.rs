//! One run of each protocol on a bad link, in memory: what the loss tests assert and what
//! `m2msec bench` tabulates against the loss rate (issue 19).
//!
//! Each trial builds a fresh deployment from `seed`, puts it on a [`Link`] (a one-way delay,
//! and faults drawn from `seed`: [`crate::network::Network::set_faults`]), runs one key
//! establishment (and, for SGA, a few messages) and says whether it completed as the protocol
//! promises, how long that took in virtual time, and, if it did not, the error a role
//! reported. The same trial on a link without faults gives the lossless time that the issue's
//! goal ("within 10× the lossless time") is measured against.

use core::net::SocketAddr;
use core::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::{CryptoRng, SeededRng};

use crate::Millis;
use crate::link::LinkFaults;
use crate::network::{self, Deployment, Network, Node};

pub mod table;

/// One-way delay of the trials' link: a constrained low-rate link, a datagram of a few
/// hundred bytes crossing two or three 6LoWPAN hops (3–4 frames per hop, each about 4 ms on
/// air at 250 kbit/s plus channel access and link-layer acknowledgement), or an LTE-M device
/// in connected mode. It is what the default retransmission wait (500 ms) is sized for: the
/// slowest answer of a lossless exchange (four one-way trips) comes before it.
pub const LATENCY: Duration = Duration::from_millis(100);

/// The link a trial runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Loss, duplication and reordering.
    pub faults: LinkFaults,
}

impl Link {
    /// The trials' link ([`LATENCY`]) losing `loss` of the datagrams in each direction.
    #[must_use]
    pub fn lossy(loss: f64) -> Self {
        Self {
            latency: LATENCY,
            faults: LinkFaults {
                loss,
                ..LinkFaults::default()
            },
        }
    }

    /// The same delay without faults: the lossless baseline.
    #[must_use]
    pub fn lossless(self) -> Self {
        Self {
            faults: LinkFaults::default(),
            ..self
        }
    }

    fn apply(&self, net: &mut Network, seed: u64) {
        net.set_latency(self.latency);
        net.set_faults(self.faults, seed);
    }
}

/// What one trial showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trial {
    /// Both ends hold the same key (SGA: and every message arrived once, in order).
    pub completed: bool,
    /// Virtual time from the start until it completed, or until the run ended if it did not.
    pub took: Duration,
    /// What a role reported when the run did not complete (the first failure), if anything.
    pub error: Option<String>,
    /// Datagrams the roles sent until then (retransmissions and answers to copies included,
    /// lost ones too): what the link's losses cost in traffic.
    pub sent: usize,
}

/// Where a trial began: the time, and how many datagrams the network had carried.
#[derive(Clone, Copy)]
struct Start {
    at: Millis,
    logged: usize,
}

impl Start {
    fn of(net: &Network) -> Self {
        Self {
            at: net.now,
            logged: net.log.len(),
        }
    }

    fn ended(self, completed: bool, end: Millis, net: &Network, error: Option<String>) -> Trial {
        Trial {
            completed,
            took: Duration::from_millis(end.0.saturating_sub(self.at.0)),
            error: if completed { None } else { error },
            sent: net.log.len().saturating_sub(self.logged),
        }
    }
}

/// A deployment run until `done` holds, remembering when it first did: a trial's time is
/// when the keys are in place, not when the last retransmission timer has run out.
struct Watch<'a, W, F> {
    world: &'a mut W,
    done: F,
    at: Option<Millis>,
}

impl<W: Deployment, F: Fn(&W) -> bool> Deployment for Watch<'_, W, F> {
    fn network(&mut self) -> &mut Network {
        self.world.network()
    }
    fn nodes(&mut self) -> Vec<(SocketAddr, &mut dyn Node)> {
        self.world.nodes()
    }
    fn collect_events(&mut self) {
        self.world.collect_events();
        if self.at.is_none() && (self.done)(self.world) {
            self.at = Some(self.world.network().now);
        }
    }
    fn finished(&self) -> bool {
        self.at.is_some() || self.world.finished()
    }
}

/// Runs `world` on an honest network until `done` holds (then returns when) or the run ends
/// without it (a role gave up at a deadline, or [`network::HORIZON`] passed).
fn run_until<W: Deployment>(
    world: &mut W,
    rng: &mut dyn CryptoRng,
    done: impl Fn(&W) -> bool,
) -> Option<Millis> {
    let mut watch = Watch {
        world,
        done,
        at: None,
    };
    network::run(&mut watch, rng, &mut |d| vec![d.clone()], &mut |_, call| {
        call()
    });
    watch.at
}

/// The first failure among `events`, as its error says it.
fn first_failure<E>(events: &[E], failure: impl Fn(&E) -> Option<String>) -> Option<String> {
    events.iter().find_map(failure)
}

/// A collab key establishment (the default deployment: 5 proxies, 3 needed).
#[must_use]
pub fn collab(link: &Link, seed: u64) -> Trial {
    use crate::collab::sim::{Spec, World};
    use crate::collab::{ClientEvent, ServerEvent};
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = match World::generate(&Spec::default(), &mut rng) {
        Ok(w) => w,
        Err(e) => return not_started(&e),
    };
    link.apply(&mut w.net, seed);
    let start = Start::of(&w.net);
    if let Err(e) = w.client.connect(start.at, &mut rng) {
        return not_started(&e);
    }
    let keys = |w: &World| {
        let client = w.events.client.iter().find_map(|e| match e {
            ClientEvent::Established(e) => Some(e.key.fingerprint()),
            _ => None,
        });
        let server = w.events.server.iter().find_map(|e| match e {
            ServerEvent::Established(e) => Some(e.key.fingerprint()),
            _ => None,
        });
        (client, server)
    };
    let at = run_until(&mut w, &mut rng, |w| {
        let (c, s) = keys(w);
        c.is_some() && s.is_some()
    });
    let (client, server) = keys(&w);
    let error = first_failure(&w.events.client, |e| match e {
        ClientEvent::Failed { error, .. } => Some(error.to_string()),
        _ => None,
    })
    .or_else(|| {
        first_failure(&w.events.server, |e| match e {
            ServerEvent::Failed { error, .. } => Some(error.to_string()),
            _ => None,
        })
    });
    start.ended(
        client.is_some() && client == server,
        at.unwrap_or(w.net.now),
        &w.net,
        error,
    )
}

/// MIKEY exchanges in `mode`, one per seed of `seeds`, on one deployment ([`Mikey`]).
#[must_use]
pub fn mikey(
    mode: crate::mikey::ModeName,
    link: &Link,
    seeds: core::ops::Range<u64>,
) -> Vec<Trial> {
    match Mikey::new(mode, seeds.start) {
        Ok(mut m) => seeds.map(|seed| m.run(link, seed)).collect(),
        Err(e) => seeds.map(|_| not_started(&e)).collect(),
    }
}

/// A MIKEY deployment that runs one exchange per trial: its RSA keys take far longer to
/// generate than an exchange takes to run, so trials share it.
#[derive(Debug)]
pub struct Mikey {
    world: crate::mikey::sim::World,
    rng: SeededRng,
}

impl Mikey {
    /// A deployment in `mode`, its keys drawn from `seed`.
    ///
    /// # Errors
    /// If the keys cannot be generated.
    pub fn new(mode: crate::mikey::ModeName, seed: u64) -> Result<Self, crate::mikey::Error> {
        let mut rng = SeededRng::from_seed_u64(seed);
        let spec = crate::mikey::sim::Spec {
            mode,
            ..crate::mikey::sim::Spec::default()
        };
        let world = crate::mikey::sim::World::generate(&spec, &mut rng)?;
        Ok(Self { world, rng })
    }

    /// One exchange on `link`, its faults drawn from `seed`.
    pub fn run(&mut self, link: &Link, seed: u64) -> Trial {
        use crate::mikey::sim::World;
        use crate::mikey::{InitiatorEvent, ResponderEvent};
        let (w, rng) = (&mut self.world, &mut self.rng);
        link.apply(&mut w.net, seed);
        let (i0, r0) = (w.events.initiator.len(), w.events.responder.len());
        let start = Start::of(&w.net);
        if let Err(e) = w.initiator.connect(start.at, rng) {
            return not_started(&e);
        }
        let keys = |w: &World| {
            let initiator = w.events.initiator[i0..].iter().find_map(|e| match e {
                InitiatorEvent::Established(e) => Some(e.keys.fingerprint()),
                _ => None,
            });
            let responder = w.events.responder[r0..].iter().find_map(|e| match e {
                ResponderEvent::Established(e) => Some(e.keys.fingerprint()),
                _ => None,
            });
            (initiator, responder)
        };
        let at = run_until(w, rng, |w| {
            let (i, r) = keys(w);
            i.is_some() && r.is_some()
        });
        // The next exchange starts on a quiet network, as a fresh deployment's would.
        network::run(w, rng, &mut |d| vec![d.clone()], &mut |_, call| call());
        let (initiator, responder) = keys(w);
        let error = first_failure(&w.events.initiator[i0..], |e| match e {
            InitiatorEvent::Failed { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .or_else(|| {
            first_failure(&w.events.responder[r0..], |e| match e {
                ResponderEvent::Failed { error, .. } => Some(error.to_string()),
                _ => None,
            })
        });
        start.ended(
            initiator.is_some() && initiator == responder,
            at.unwrap_or(w.net.now),
            &w.net,
            error,
        )
    }
}

/// SGA: both devices register, device-i invites device-j, then sends `messages` messages;
/// completed when both hold the same key and device-j received every message once, in order.
/// Each step starts as soon as the one before it is done.
#[must_use]
pub fn sga(link: &Link, seed: u64, messages: usize) -> Trial {
    use crate::sga::DeviceEvent;
    use crate::sga::sim::{Spec, World};
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = match World::generate(&Spec::default(), &mut rng) {
        Ok(w) => w,
        Err(e) => return not_started(&e),
    };
    link.apply(&mut w.net, seed);
    let start = Start::of(&w.net);
    let failure = |w: &World| {
        w.events.devices.iter().find_map(|events| {
            first_failure(events, |e| match e {
                DeviceEvent::Failed { what, error } => Some(format!("{what}: {error}")),
                _ => None,
            })
        })
    };
    let ended = |w: &World| start.ended(false, w.net.now, &w.net, failure(w));
    for d in &mut w.devices {
        if let Err(e) = d.register(start.at, &mut rng) {
            return not_started(&e);
        }
    }
    let registered = run_until(&mut w, &mut rng, |w| {
        w.events
            .devices
            .iter()
            .all(|events| events.iter().any(|e| matches!(e, DeviceEvent::Registered)))
    });
    if registered.is_none() {
        return ended(&w);
    }
    let now = w.net.now;
    if let Err(e) = w.devices[0].invite(now, &mut rng, "device-j", AeadSuite::Aes128Ccm8) {
        return not_started(&e);
    }
    let established = |w: &World, device: usize| {
        w.events.devices[device].iter().find_map(|e| match e {
            DeviceEvent::Established { session, key, .. } => Some((*session, key.fingerprint())),
            _ => None,
        })
    };
    let both = run_until(&mut w, &mut rng, |w| {
        established(w, 0).is_some() && established(w, 1).is_some()
    });
    let (Some(_), Some((session, key))) = (both, established(&w, 0)) else {
        return ended(&w);
    };
    if established(&w, 1) != Some((session, key)) {
        return ended(&w);
    }
    let texts: Vec<Vec<u8>> = (0..messages)
        .map(|i| format!("reading {i}").into_bytes())
        .collect();
    let now = w.net.now;
    for t in &texts {
        if let Err(e) = w.devices[0].send(now, &mut rng, session, t) {
            return not_started(&e);
        }
    }
    let received = |w: &World| -> Vec<Vec<u8>> {
        w.events.devices[1]
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Received { plaintext, .. } => Some(plaintext.to_vec()),
                _ => None,
            })
            .collect()
    };
    let delivered = run_until(&mut w, &mut rng, |w| received(w).len() >= messages);
    // Whatever is still on its way arrives before the count is checked (a copy would show).
    network::run(
        &mut w,
        &mut rng,
        &mut |d| vec![d.clone()],
        &mut |_, call| call(),
    );
    start.ended(
        received(&w) == texts,
        delivered.unwrap_or(w.net.now),
        &w.net,
        failure(&w),
    )
}

/// E2SEC: both parties fetch a warrant, then the server authenticates the device.
#[must_use]
pub fn e2sec(link: &Link, seed: u64) -> Trial {
    use crate::e2sec::PartyEvent;
    use crate::e2sec::sim::{DEVICE, Spec, World};
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = match World::generate(&Spec::default(), &mut rng) {
        Ok(w) => w,
        Err(e) => return not_started(&e),
    };
    link.apply(&mut w.net, seed);
    let start = Start::of(&w.net);
    let failure = |w: &World| {
        [&w.events.server, &w.events.device]
            .into_iter()
            .find_map(|events| {
                first_failure(events, |e| match e {
                    PartyEvent::Failed { error, .. } | PartyEvent::WarrantFailed { error } => {
                        Some(error.to_string())
                    }
                    _ => None,
                })
            })
    };
    if let Err(e) = w
        .device
        .request_warrant(start.at, &mut rng)
        .and_then(|()| w.server.request_warrant(start.at, &mut rng))
    {
        return not_started(&e);
    }
    let stored = |events: &[PartyEvent]| {
        events
            .iter()
            .any(|e| matches!(e, PartyEvent::WarrantStored { .. }))
    };
    let warrants = run_until(&mut w, &mut rng, |w| {
        stored(&w.events.device) && stored(&w.events.server)
    });
    if warrants.is_none() {
        return start.ended(false, w.net.now, &w.net, failure(&w));
    }
    let now = w.net.now;
    if let Err(e) = w.server.connect(now, &mut rng, DEVICE) {
        return start.ended(false, now, &w.net, Some(e.to_string()));
    }
    let key = |events: &[PartyEvent]| {
        events.iter().find_map(|e| match e {
            PartyEvent::Established { key, .. } => Some(key.fingerprint()),
            _ => None,
        })
    };
    let at = run_until(&mut w, &mut rng, |w| {
        key(&w.events.device).is_some() && key(&w.events.server).is_some()
    });
    let device = key(&w.events.device);
    start.ended(
        device.is_some() && device == key(&w.events.server),
        at.unwrap_or(w.net.now),
        &w.net,
        failure(&w),
    )
}

/// A trial whose deployment or first step failed before anything was sent.
fn not_started(error: &impl core::fmt::Display) -> Trial {
    Trial {
        completed: false,
        took: Duration::ZERO,
        error: Some(error.to_string()),
        sent: 0,
    }
}
