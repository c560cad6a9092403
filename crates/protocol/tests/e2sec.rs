//! E2SEC end to end: warrants, mutual authentication and SK for every variant and group, and
//! the attacks the paper's analysis names.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::Millis;
use m2msec_protocol::e2sec::sim::{DEVICE, SERVER, Spec, World};
use m2msec_protocol::e2sec::{DEFAULT_REPLAY_WINDOW, EpcEvent, Error, PartyEvent, Variant};
use m2msec_protocol::reliable::ANSWER_LIFETIME;
use m2msec_wire::cbor::Bytes;
use m2msec_wire::e2sec::Message;

mod common;
use common::e2sec::{epc_rejections, failure, issued, rejections, stored};

fn world(spec: &Spec, seed: u64) -> (World, SeededRng) {
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = World::generate(spec, &mut rng).unwrap();
    w.fetch_warrants(&mut rng).unwrap();
    for events in [&w.events.device, &w.events.server] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, PartyEvent::WarrantStored { .. })),
            "{events:?}"
        );
    }
    (w, rng)
}

fn key(events: &[PartyEvent]) -> Option<[u8; 32]> {
    events.iter().find_map(|e| match e {
        PartyEvent::Established { key, .. } => Some(*key.expose_for_testing_only()),
        _ => None,
    })
}

#[test]
fn every_variant_and_group_agrees_on_sk_from_either_side() {
    for group in [
        GroupId::Ristretto255,
        GroupId::Dsa1024_160,
        GroupId::Dsa2048_256,
    ] {
        for variant in Variant::ALL {
            for server_initiates in [true, false] {
                let spec = Spec {
                    group,
                    variant,
                    ..Spec::default()
                };
                let (mut w, mut rng) = world(&spec, 1);
                let now = w.net.now;
                if server_initiates {
                    w.server.connect(now, &mut rng, DEVICE).unwrap();
                } else {
                    w.device.connect(now, &mut rng, SERVER).unwrap();
                }
                w.run(&mut rng, &mut |d| vec![d.clone()]);
                let (d, s) = (key(&w.events.device), key(&w.events.server));
                assert!(d.is_some(), "{group:?}/{variant:?}: {:?}", w.events.device);
                assert_eq!(d, s, "{group:?}/{variant:?}");
            }
        }
    }
}

#[test]
fn an_expired_warrant_is_refused() {
    let spec = Spec {
        validity: Duration::from_secs(60),
        ..Spec::default()
    };
    let (mut w, mut rng) = world(&spec, 2);
    w.advance(Duration::from_secs(120), &mut rng);
    // The server's own warrant has expired too: it cannot even start.
    assert_eq!(
        w.server.connect(w.net.now, &mut rng, DEVICE).unwrap_err(),
        Error::NoWarrant
    );
    // A fresh warrant for the server, the device's stays expired.
    w.server.request_warrant(w.net.now, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    // The device refuses nothing (the server's warrant is valid) but cannot answer without its
    // own valid warrant: the server hears a refusal.
    assert!(key(&w.events.server).is_none());
    assert!(matches!(failure(&w.events.server), Some(Error::Refused(_))));
    // Device fetches a fresh warrant; now the server's is the one that expires.
    let (mut w, mut rng) = world(&spec, 3);
    w.advance(Duration::from_secs(120), &mut rng);
    w.device.request_warrant(w.net.now, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    // Replay the server's old (expired) credential by forging an AuthInit is covered below;
    // here the device initiates and the server, holding an expired warrant, refuses.
    let now = w.net.now;
    w.device.connect(now, &mut rng, SERVER).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(key(&w.events.device).is_none());
}

#[test]
fn a_stale_credential_in_a_message_is_refused_as_expired() {
    let spec = Spec {
        validity: Duration::from_secs(60),
        ..Spec::default()
    };
    let (mut w, mut rng) = world(&spec, 4);
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    // The AuthInit is held back past the warrant's end, then delivered.
    let mut held = Vec::new();
    w.run(&mut rng, &mut |d| {
        if matches!(Message::decode(&d.payload), Ok(Message::AuthInit(_))) {
            held.push(d.clone());
            vec![]
        } else {
            vec![d.clone()]
        }
    });
    w.advance(Duration::from_secs(120), &mut rng);
    for d in held {
        w.net.inject(d);
    }
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(
        rejections(&w.events.device)
            .iter()
            .any(|e| matches!(e, Error::WarrantExpired { .. }))
    );
}

#[test]
fn a_device_presenting_the_servers_warrant_is_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 5);
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    // Capture the server's credential from its AuthInit, then make the device present it.
    let mut server_cred = None;
    w.run(&mut rng, &mut |d| {
        if let Ok(Message::AuthInit(m)) = Message::decode(&d.payload) {
            server_cred.get_or_insert(m.credential);
        }
        vec![d.clone()]
    });
    let server_cred = server_cred.unwrap();
    let mut w2_rng = SeededRng::from_seed_u64(6);
    let (mut w2, _) = world(&Spec::default(), 5);
    let now = w2.net.now;
    w2.device.connect(now, &mut w2_rng, SERVER).unwrap();
    w2.run(&mut w2_rng, &mut |d| {
        let mut d = d.clone();
        if let Ok(Message::AuthInit(mut m)) = Message::decode(&d.payload) {
            m.credential = server_cred.clone();
            d.payload = Message::AuthInit(m).to_bytes();
        }
        vec![d]
    });
    let errs = rejections(&w2.events.server);
    assert!(
        errs.iter()
            .any(|e| matches!(e, Error::WrongHolder | Error::WrongRole)),
        "{errs:?}"
    );
    assert!(key(&w2.events.server).is_none());
}

#[test]
fn a_swapped_share_is_detected() {
    // A man in the middle replaces g^a with its own value.
    let (mut w, mut rng) = world(&Spec::default(), 7);
    let mut mitm_rng = SeededRng::from_seed_u64(70);
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    w.run(&mut rng, &mut |d| {
        let mut d = d.clone();
        if let Ok(Message::AuthInit(mut m)) = Message::decode(&d.payload) {
            let g = m2msec_crypto::group::Group::new(GroupId::Ristretto255);
            m.share = Bytes(
                g.exp_generator(&g.random_scalar(&mut mitm_rng))
                    .unwrap()
                    .to_bytes(),
            );
            d.payload = Message::AuthInit(m).to_bytes();
        }
        vec![d]
    });
    assert!(rejections(&w.events.device).contains(&&Error::Authentication));
    assert!(key(&w.events.device).is_none() && key(&w.events.server).is_none());
}

#[test]
fn a_signature_over_another_message_is_refused() {
    // The device's reply signed over g^ab is re-targeted to another exchange's share.
    let (mut w, mut rng) = world(&Spec::default(), 8);
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    w.run(&mut rng, &mut |d| {
        let mut d = d.clone();
        if let Ok(Message::AuthReply(mut m)) = Message::decode(&d.payload) {
            m.s.0[0] ^= 1;
            d.payload = Message::AuthReply(m).to_bytes();
        }
        vec![d]
    });
    let errs = rejections(&w.events.server);
    assert!(
        errs.iter()
            .any(|e| matches!(e, Error::Authentication | Error::Crypto(_))),
        "{errs:?}"
    );
    assert!(key(&w.events.server).is_none());
    assert!(
        matches!(failure(&w.events.device), Some(Error::Timeout(_))),
        "the device never gets its confirmation"
    );
}

#[test]
fn forged_and_replayed_warrants_are_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 9);
    // A forged warrant: the validity period is stretched without the EPC's signature.
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    w.run(&mut rng, &mut |d| {
        let mut d = d.clone();
        if let Ok(Message::AuthInit(mut m)) = Message::decode(&d.payload) {
            m.credential.warrant.valid_until += 86_400_000;
            d.payload = Message::AuthInit(m).to_bytes();
        }
        vec![d]
    });
    assert!(rejections(&w.events.device).contains(&&Error::Authentication));
    // A replayed warrant grant: the holder's nonce no longer matches.
    let grant = w
        .net
        .log
        .iter()
        .find(|d| matches!(Message::decode(&d.payload), Ok(Message::WarrantGrant(_))))
        .cloned()
        .unwrap();
    // Past the time a copy is answered from what was sent, so that it is judged afresh.
    w.advance(ANSWER_LIFETIME, &mut rng);
    let before = rejections(&w.events.device).len() + rejections(&w.events.server).len();
    w.net.inject(grant);
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let after = rejections(&w.events.device).len() + rejections(&w.events.server).len();
    assert_eq!(after, before + 1);
}

#[test]
fn a_replayed_auth_init_yields_no_key() {
    let (mut w, mut rng) = world(&Spec::default(), 12);
    let now = w.net.now;
    w.server.connect(now, &mut rng, DEVICE).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(key(&w.events.device).is_some());
    let init = w
        .net
        .log
        .iter()
        .find(|d| matches!(Message::decode(&d.payload), Ok(Message::AuthInit(_))))
        .cloned()
        .unwrap();
    // Replayed later (past the time a copy is answered from what was sent): the device
    // answers, but nobody can confirm without a.
    w.advance(ANSWER_LIFETIME, &mut rng);
    let established_before = w
        .events
        .device
        .iter()
        .filter(|e| matches!(e, PartyEvent::Established { .. }))
        .count();
    w.net.inject(init.clone());
    w.run(&mut rng, &mut |d| {
        if d.to == init.from {
            vec![]
        } else {
            vec![d.clone()]
        }
    });
    w.advance(Duration::from_secs(10), &mut rng);
    let established_after = w
        .events
        .device
        .iter()
        .filter(|e| matches!(e, PartyEvent::Established { .. }))
        .count();
    assert_eq!(established_before, established_after);
    assert!(matches!(failure(&w.events.device), Some(Error::Timeout(_))));
}

#[test]
fn a_replayed_warrant_request_gets_one_grant() {
    let mut rng = SeededRng::from_seed_u64(13);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    w.device.request_warrant(w.net.now, &mut rng).unwrap();
    // The network delivers the very same request bytes twice.
    w.run(&mut rng, &mut |d| {
        if matches!(Message::decode(&d.payload), Ok(Message::WarrantRequest(_))) {
            vec![d.clone(), d.clone()]
        } else {
            vec![d.clone()]
        }
    });
    // The copy is a retransmission as far as the EPC can tell: it gets the same grant again,
    // byte for byte, and no second warrant is issued.
    let grants = |w: &World| {
        w.net
            .log
            .iter()
            .filter(|d| matches!(Message::decode(&d.payload), Ok(Message::WarrantGrant(_))))
            .map(|d| d.payload.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(issued(&w.events.epc), 1);
    assert!(epc_rejections(&w.events.epc).is_empty());
    let sent = grants(&w);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
    assert_eq!(stored(&w.events.device), 1);

    // Replayed again later, still inside the window: the cache refuses it.
    let request = w
        .net
        .log
        .iter()
        .find(|d| matches!(Message::decode(&d.payload), Ok(Message::WarrantRequest(_))))
        .cloned()
        .unwrap();
    w.advance(DEFAULT_REPLAY_WINDOW / 2, &mut rng);
    w.net.inject(request.clone());
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert_eq!(issued(&w.events.epc), 1);
    assert_eq!(grants(&w).len(), 3);

    // Past the window and the answers kept for copies: its timestamp refuses it.
    w.advance(ANSWER_LIFETIME, &mut rng);
    w.net.inject(request);
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert_eq!(issued(&w.events.epc), 1);
    assert!(matches!(
        epc_rejections(&w.events.epc).last(),
        Some(Error::StaleRequest { .. })
    ));
}

#[test]
fn a_warrant_request_outside_the_window_is_refused_then_a_fresh_one_works() {
    let mut rng = SeededRng::from_seed_u64(14);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    let window = u64::try_from(DEFAULT_REPLAY_WINDOW.as_millis()).unwrap();
    // The device's clock is too far behind, then too far ahead: each request is refused when
    // it arrives. (The device retransmits on its own clock: a copy of the request from the
    // future is timely once the EPC's clock gets there, as the window allows, so only the
    // first verdict on it is checked.)
    for ahead in [false, true] {
        let now = w.net.now;
        let skewed = if ahead {
            Millis(now.0 + window + 1)
        } else {
            Millis(now.0 - window - 1)
        };
        let seen = w.events.epc.len();
        w.device.request_warrant(skewed, &mut rng).unwrap();
        w.run(&mut rng, &mut |d| vec![d.clone()]);
        assert!(matches!(
            epc_rejections(&w.events.epc[seen..]).first(),
            Some(Error::StaleRequest { sent, .. }) if *sent == skewed.0
        ));
    }
    assert!(
        !w.events.epc.iter().any(
            |e| matches!(e, EpcEvent::Issued { valid_until, .. } if *valid_until < w.net.now.0)
        ),
        "nothing issued for the request from the past"
    );
    let issued_before = issued(&w.events.epc);
    let stored_before = stored(&w.events.device);
    let refused = epc_rejections(&w.events.epc).len();
    // Right at the window's edge, and with a correct clock: both are admitted.
    let now = w.net.now;
    w.device
        .request_warrant(Millis(now.0 - window), &mut rng)
        .unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let now = w.net.now;
    w.device.request_warrant(now, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert_eq!(issued(&w.events.epc), issued_before + 2);
    assert_eq!(stored(&w.events.device), stored_before + 2);
    assert_eq!(epc_rejections(&w.events.epc).len(), refused);
}

/// A holder whose clock is off learns it from the EPC: the refusal, under the key they share,
/// names both clocks; the holder stops retransmitting the request. A refusal forged without that
/// key (or for another request) is refused and the request stays under way.
#[test]
fn a_holder_whose_clock_is_off_is_told_so_under_its_key() {
    use m2msec_protocol::e2sec::sim::{DEVICE_ROLE, EPC_ROLE};
    use m2msec_protocol::network::Datagram;
    use m2msec_wire::e2sec::WarrantRefused;

    let mut rng = SeededRng::from_seed_u64(15);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    let (epc, device) = (w.addrs[EPC_ROLE], w.addrs[DEVICE_ROLE]);
    let ten_minutes = 600_000;
    let skewed = Millis(w.net.now.0 - ten_minutes);
    w.device.request_warrant(skewed, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let told = w.events.device.iter().find_map(|e| match e {
        PartyEvent::WarrantFailed {
            error: Error::StaleRequest { sent, now },
        } => Some(now - sent),
        _ => None,
    });
    assert_eq!(told, Some(ten_minutes), "{:?}", w.events.device);
    let requests = w
        .net
        .log
        .iter()
        .filter(|d| matches!(Message::decode(&d.payload), Ok(Message::WarrantRequest(_))))
        .count();
    assert_eq!(requests, 1, "the refusal ends the retransmissions");
    assert_eq!(stored(&w.events.device), 0);

    // A forged refusal of a fresh request: refused, and the grant still comes.
    w.device.request_warrant(w.net.now, &mut rng).unwrap();
    let request = w
        .net
        .log
        .iter()
        .rev()
        .find_map(|d| match Message::decode(&d.payload) {
            Ok(Message::WarrantRequest(r)) => Some(r),
            _ => None,
        })
        .unwrap();
    let forged = WarrantRefused {
        holder: request.holder,
        nonce: request.nonce,
        code: 8,
        epc_time_ms: 0,
        mac: [0; 32],
    };
    w.net.inject(Datagram {
        at: w.net.now,
        from: epc,
        to: device,
        payload: Message::from(forged).to_bytes(),
    });
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(rejections(&w.events.device).contains(&&Error::Authentication));
    assert_eq!(stored(&w.events.device), 1, "{:?}", w.events.device);
}
