//! Every protocol on a bad link (issue 19): the in-memory network loses 10 % of datagrams,
//! duplicates 2 % and lets up to 3 later datagrams overtake each one, independently in each
//! direction, and every key establishment and every SGA message still completes, because the
//! roles retransmit what waits for an answer and answer copies from what they sent
//! (`m2msec_protocol::reliable`). Each case runs over many seeds, so many loss patterns.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::link::LinkFaults;

/// The bad link of the goal.
const LOSSY: LinkFaults = LinkFaults {
    loss: 0.10,
    duplicate: 0.02,
    reorder: 3,
};

/// Seeds per protocol: each a different pattern of losses.
const RUNS: u64 = 25;

#[test]
fn collab_establishes_every_key_at_10_percent_loss() {
    use m2msec_protocol::collab::sim::{Spec, World};
    use m2msec_protocol::collab::{ClientEvent, ServerEvent};
    let mut lost = 0;
    for seed in 0..RUNS {
        let mut rng = SeededRng::from_seed_u64(seed);
        let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
        w.net.set_faults(LOSSY, seed);
        w.run_honest(&mut rng).unwrap();
        let client = w.events.client.iter().find_map(|e| match e {
            ClientEvent::Established(e) => Some(e.key.fingerprint()),
            _ => None,
        });
        let server = w.events.server.iter().find_map(|e| match e {
            ServerEvent::Established(e) => Some(e.key.fingerprint()),
            _ => None,
        });
        assert!(
            client.is_some() && client == server,
            "seed {seed}: {:?}",
            w.events.client
        );
        lost += w.net.fault_counts().lost;
    }
    assert!(lost > 0, "the link lost nothing");
}

#[test]
fn mikey_establishes_every_key_at_10_percent_loss_in_every_mode() {
    use m2msec_protocol::mikey::sim::{Spec, World};
    use m2msec_protocol::mikey::{InitiatorEvent, ModeName, ResponderEvent};
    for mode in [ModeName::Psk, ModeName::Pk, ModeName::Distributed] {
        for seed in 0..RUNS {
            let mut rng = SeededRng::from_seed_u64(seed);
            let spec = Spec {
                mode,
                ..Spec::default()
            };
            let mut w = World::generate(&spec, &mut rng).unwrap();
            w.net.set_faults(LOSSY, seed);
            w.run_honest(&mut rng).unwrap();
            let initiator = w.events.initiator.iter().find_map(|e| match e {
                InitiatorEvent::Established(e) => Some(e.keys.fingerprint()),
                _ => None,
            });
            let responder = w.events.responder.iter().find_map(|e| match e {
                ResponderEvent::Established(e) => Some(e.keys.fingerprint()),
                _ => None,
            });
            assert!(
                initiator.is_some() && initiator == responder,
                "{mode:?} seed {seed}: {:?}",
                w.events.initiator
            );
        }
    }
}

#[test]
fn sga_establishes_every_key_and_delivers_every_message_once_at_10_percent_loss() {
    use m2msec_protocol::sga::DeviceEvent;
    use m2msec_protocol::sga::sim::{Spec, World};
    let texts: Vec<String> = (0..5).map(|i| format!("reading {i}")).collect();
    for seed in 0..RUNS {
        let mut rng = SeededRng::from_seed_u64(seed);
        let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
        w.net.set_faults(LOSSY, seed);
        let now = w.net.now;
        for d in &mut w.devices {
            d.register(now, &mut rng).unwrap();
        }
        w.run_honest(&mut rng);
        let now = w.net.now;
        w.devices[0]
            .invite(now, &mut rng, "device-j", AeadSuite::Aes128Ccm8)
            .unwrap();
        w.run_honest(&mut rng);
        let established = |device: usize| {
            w.events.devices[device].iter().find_map(|e| match e {
                DeviceEvent::Established { session, key, .. } => {
                    Some((*session, key.fingerprint()))
                }
                _ => None,
            })
        };
        let (session, _) =
            established(0).unwrap_or_else(|| panic!("seed {seed}: {:?}", w.events.devices[0]));
        assert_eq!(established(0), established(1), "seed {seed}");
        let now = w.net.now;
        for t in &texts {
            w.devices[0]
                .send(now, &mut rng, session, t.as_bytes())
                .unwrap();
        }
        w.run_honest(&mut rng);
        let received: Vec<String> = w.events.devices[1]
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Received { plaintext, .. } => {
                    Some(String::from_utf8_lossy(plaintext).into_owned())
                }
                _ => None,
            })
            .collect();
        assert_eq!(received, texts, "seed {seed}: exactly once, in order");
    }
}

#[test]
fn e2sec_establishes_every_key_at_10_percent_loss() {
    use m2msec_protocol::e2sec::PartyEvent;
    use m2msec_protocol::e2sec::sim::{DEVICE, Spec, World};
    for seed in 0..RUNS {
        let mut rng = SeededRng::from_seed_u64(seed);
        let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
        w.net.set_faults(LOSSY, seed);
        w.fetch_warrants(&mut rng).unwrap();
        let now = w.net.now;
        w.server.connect(now, &mut rng, DEVICE).unwrap();
        w.run(&mut rng, &mut |d| vec![d.clone()]);
        let key = |events: &[PartyEvent]| {
            events.iter().find_map(|e| match e {
                PartyEvent::Established { key, .. } => Some(*key.expose_for_testing_only()),
                _ => None,
            })
        };
        assert!(
            key(&w.events.device).is_some() && key(&w.events.device) == key(&w.events.server),
            "seed {seed}: {:?} / {:?}",
            w.events.device,
            w.events.server
        );
    }
}
