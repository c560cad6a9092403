//! One run of each protocol on a bad link, in memory: what the loss tests assert and what
//! `m2msec bench` tabulates against the loss rate (issue 19).
//!
//! Each trial builds a fresh deployment from `seed`, makes its network as bad as `faults` says
//! ([`crate::network::Network::set_faults`]), runs one key establishment (and, for SGA, a few
//! messages) and says whether it completed as the protocol promises and how long it took in
//! virtual time. The in-memory network has no latency: a lossless run takes no time, and the
//! time of a lossy one is what retransmissions cost.

use core::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::SeededRng;

use crate::link::LinkFaults;

/// What one trial showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trial {
    /// Both ends hold the same key (SGA: and every message arrived once, in order).
    pub completed: bool,
    /// Virtual time from the start to the end of the run.
    pub took: Duration,
}

fn took(start: crate::Millis, end: crate::Millis) -> Duration {
    Duration::from_millis(end.0.saturating_sub(start.0))
}

/// A collab key establishment (the default deployment: 5 proxies, 3 needed).
#[must_use]
pub fn collab(faults: LinkFaults, seed: u64) -> Trial {
    use crate::collab::sim::{Spec, World};
    use crate::collab::{ClientEvent, ServerEvent};
    let mut rng = SeededRng::from_seed_u64(seed);
    let Ok(mut w) = World::generate(&Spec::default(), &mut rng) else {
        return failed();
    };
    w.net.set_faults(faults, seed);
    let start = w.net.now;
    if w.run_honest(&mut rng).is_err() {
        return failed();
    }
    let client = w.events.client.iter().find_map(|e| match e {
        ClientEvent::Established(e) => Some(e.key.fingerprint()),
        _ => None,
    });
    let server = w.events.server.iter().find_map(|e| match e {
        ServerEvent::Established(e) => Some(e.key.fingerprint()),
        _ => None,
    });
    Trial {
        completed: client.is_some() && client == server,
        took: took(start, w.net.now),
    }
}

/// MIKEY exchanges in `mode`, one per seed of `seeds`, all on one deployment (its RSA keys
/// take far longer to generate than an exchange takes to run): each on a network made bad by
/// `faults` with that seed.
#[must_use]
pub fn mikey(
    mode: crate::mikey::ModeName,
    faults: LinkFaults,
    seeds: core::ops::Range<u64>,
) -> Vec<Trial> {
    use crate::mikey::sim::{Spec, World};
    use crate::mikey::{InitiatorEvent, ResponderEvent};
    let mut rng = SeededRng::from_seed_u64(seeds.start);
    let spec = Spec {
        mode,
        ..Spec::default()
    };
    let Ok(mut w) = World::generate(&spec, &mut rng) else {
        return seeds.map(|_| failed()).collect();
    };
    seeds
        .map(|seed| {
            w.net.set_faults(faults, seed);
            let (i0, r0) = (w.events.initiator.len(), w.events.responder.len());
            let start = w.net.now;
            if w.run_honest(&mut rng).is_err() {
                return failed();
            }
            let initiator = w.events.initiator[i0..].iter().find_map(|e| match e {
                InitiatorEvent::Established(e) => Some(e.keys.fingerprint()),
                _ => None,
            });
            let responder = w.events.responder[r0..].iter().find_map(|e| match e {
                ResponderEvent::Established(e) => Some(e.keys.fingerprint()),
                _ => None,
            });
            Trial {
                completed: initiator.is_some() && initiator == responder,
                took: took(start, w.net.now),
            }
        })
        .collect()
}

/// SGA: both devices register, device-i invites device-j, then sends `messages` messages;
/// completed when both hold the same key and device-j received every message once, in order.
#[must_use]
pub fn sga(faults: LinkFaults, seed: u64, messages: usize) -> Trial {
    use crate::sga::DeviceEvent;
    use crate::sga::sim::{Spec, World};
    let mut rng = SeededRng::from_seed_u64(seed);
    let Ok(mut w) = World::generate(&Spec::default(), &mut rng) else {
        return failed();
    };
    w.net.set_faults(faults, seed);
    let start = w.net.now;
    for d in &mut w.devices {
        if d.register(start, &mut rng).is_err() {
            return failed();
        }
    }
    w.run_honest(&mut rng);
    let now = w.net.now;
    if w.devices[0]
        .invite(now, &mut rng, "device-j", AeadSuite::Aes128Ccm8)
        .is_err()
    {
        return failed();
    }
    w.run_honest(&mut rng);
    let established = |w: &World, device: usize| {
        w.events.devices[device].iter().find_map(|e| match e {
            DeviceEvent::Established { session, key, .. } => Some((*session, key.fingerprint())),
            _ => None,
        })
    };
    let Some((session, _)) = established(&w, 0) else {
        return Trial {
            completed: false,
            took: took(start, w.net.now),
        };
    };
    let keys_match = established(&w, 0) == established(&w, 1);
    let texts: Vec<Vec<u8>> = (0..messages)
        .map(|i| format!("reading {i}").into_bytes())
        .collect();
    let now = w.net.now;
    for t in &texts {
        if w.devices[0].send(now, &mut rng, session, t).is_err() {
            return failed();
        }
    }
    w.run_honest(&mut rng);
    let received: Vec<&[u8]> = w.events.devices[1]
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Received { plaintext, .. } => Some(&plaintext[..]),
            _ => None,
        })
        .collect();
    Trial {
        completed: keys_match && received == texts.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        took: took(start, w.net.now),
    }
}

/// E2SEC: both parties fetch a warrant, then the server authenticates the device.
#[must_use]
pub fn e2sec(faults: LinkFaults, seed: u64) -> Trial {
    use crate::e2sec::PartyEvent;
    use crate::e2sec::sim::{DEVICE, Spec, World};
    let mut rng = SeededRng::from_seed_u64(seed);
    let Ok(mut w) = World::generate(&Spec::default(), &mut rng) else {
        return failed();
    };
    w.net.set_faults(faults, seed);
    let start = w.net.now;
    if w.fetch_warrants(&mut rng).is_err() {
        return failed();
    }
    let now = w.net.now;
    if w.server.connect(now, &mut rng, DEVICE).is_err() {
        return Trial {
            completed: false,
            took: took(start, w.net.now),
        };
    }
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let key = |events: &[PartyEvent]| {
        events.iter().find_map(|e| match e {
            PartyEvent::Established { key, .. } => Some(key.fingerprint()),
            _ => None,
        })
    };
    let device = key(&w.events.device);
    Trial {
        completed: device.is_some() && device == key(&w.events.server),
        took: took(start, w.net.now),
    }
}

fn failed() -> Trial {
    Trial {
        completed: false,
        took: Duration::ZERO,
    }
}
