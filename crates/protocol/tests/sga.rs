//! SGA end to end: registration, negotiation, key exchange and durable delivery, honest and
//! under attack.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::reliable::ANSWER_LIFETIME;
use m2msec_protocol::sga::sim::{Datagram, DeviceSpec, Spec, World};
use m2msec_protocol::sga::{
    DEVICES_TABLE, DeviceEvent, Error, MESSAGES_TABLE, RefusalCode, ServerFault, SessionId,
};
use m2msec_store::Store as _;
use m2msec_wire::sga::Message;

mod common;
use common::sga::{failure, received, rejections, server_rejections};

fn world(spec: &Spec, seed: u64) -> (World, SeededRng) {
    let mut rng = SeededRng::from_seed_u64(seed);
    let w = World::generate(spec, &mut rng).unwrap();
    (w, rng)
}

fn register_all(w: &mut World, rng: &mut SeededRng) {
    w.register_all(rng).unwrap();
    for (i, events) in w.events.devices.iter().enumerate() {
        assert!(
            events.iter().any(|e| matches!(e, DeviceEvent::Registered)),
            "device {i}: {events:?}"
        );
    }
}

fn established(w: &World, device: usize) -> Option<(SessionId, [u8; 8], AeadSuite)> {
    w.events.devices[device].iter().find_map(|e| match e {
        DeviceEvent::Established { session, key, .. } => {
            Some((*session, key.fingerprint(), key.suite()))
        }
        _ => None,
    })
}

/// Registers both, negotiates `suite`, exchanges keys.
fn connect(w: &mut World, rng: &mut SeededRng, suite: AeadSuite) -> SessionId {
    register_all(w, rng);
    let now = w.net.now;
    w.devices[0].invite(now, rng, "device-j", suite).unwrap();
    w.run_honest(rng);
    let (s_i, fp_i, suite_i) =
        established(w, 0).unwrap_or_else(|| panic!("{:?}", w.events.devices[0]));
    let (s_j, fp_j, suite_j) =
        established(w, 1).unwrap_or_else(|| panic!("{:?}", w.events.devices[1]));
    assert_eq!((s_i, fp_i, suite_i), (s_j, fp_j, suite_j));
    assert_eq!(suite_i, suite);
    s_i
}

fn send(w: &mut World, rng: &mut SeededRng, session: SessionId, texts: &[&str]) {
    let now = w.net.now;
    for t in texts {
        w.devices[0].send(now, rng, session, t.as_bytes()).unwrap();
    }
}

/// d_i invites d_j (AES-128-CCM-8).
fn invite_j(w: &mut World, rng: &mut SeededRng) {
    let now = w.net.now;
    w.devices[0]
        .invite(now, rng, "device-j", AeadSuite::Aes128Ccm8)
        .unwrap();
}

/// Runs the world to rest with `tamper` applied on the wire to every message it decodes; a
/// message is re-encoded only when `tamper` says it changed it.
fn run_tampered(w: &mut World, rng: &mut SeededRng, tamper: impl Fn(&mut Message) -> bool) {
    w.run(rng, &mut |d| {
        let mut d = d.clone();
        if let Ok(mut m) = Message::decode(&d.payload)
            && tamper(&mut m)
        {
            d.payload = m.to_bytes();
        }
        vec![d]
    });
}

#[test]
fn both_groups_and_every_suite_agree_and_deliver() {
    for group in [GroupId::Ristretto255, GroupId::Modp2048] {
        for suite in [
            AeadSuite::Aes128Ccm8,
            AeadSuite::ChaCha20Poly1305,
            AeadSuite::Ascon128,
        ] {
            let spec = Spec {
                group,
                ..Spec::default()
            };
            let (mut w, mut rng) = world(&spec, 1);
            let session = connect(&mut w, &mut rng, suite);
            send(
                &mut w,
                &mut rng,
                session,
                &["temperature 21.5", "humidity 40", "door open"],
            );
            w.run_honest(&mut rng);
            let got = received(&w, 1);
            assert_eq!(
                got,
                [
                    (0, b"temperature 21.5".to_vec()),
                    (1, b"humidity 40".to_vec()),
                    (2, b"door open".to_vec())
                ],
                "{group:?}/{suite:?}"
            );
            // The server relayed ciphertexts it cannot read.
            for d in &w.net.log {
                assert!(!d.payload.windows(9).any(|win| win == b"door open"));
            }
            assert_eq!(w.server.held(), 0);
        }
    }
}

#[test]
fn registrations_are_durable_and_duplicates_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 2);
    register_all(&mut w, &mut rng);
    assert_eq!(w.store.scan(DEVICES_TABLE).unwrap().len(), 2);
    assert!(w.store.scan(MESSAGES_TABLE).unwrap().is_empty());
    // The same identity registers again.
    let now = w.net.now;
    w.devices[1].register(now, &mut rng).unwrap();
    w.run_honest(&mut rng);
    assert!(matches!(
        failure(&w, 1),
        Some(Error::Refused(RefusalCode::AlreadyRegistered))
    ));
    // Registrations survive a restart.
    w.restart_server().unwrap();
    let session = {
        // A restarted server knows the devices but not where they are until they poll.
        let now = w.net.now;
        w.devices[1].poll(now);
        w.devices[0].poll(now);
        w.run_honest(&mut rng);
        let now = w.net.now;
        w.devices[0]
            .invite(now, &mut rng, "device-j", AeadSuite::ChaCha20Poly1305)
            .unwrap();
        w.run_honest(&mut rng);
        established(&w, 0).expect("exchange after restart").0
    };
    assert_eq!(established(&w, 1).map(|e| e.0), Some(session));
}

#[test]
fn unknown_suites_are_refused_at_registration_and_negotiation() {
    let mut spec = Spec {
        server_suites: vec![AeadSuite::Aes128Ccm8, AeadSuite::ChaCha20Poly1305],
        ..Spec::default()
    };
    spec.devices[0].suites = vec![AeadSuite::Aes128Ccm8, AeadSuite::Ascon128];
    spec.devices[1].suites = vec![AeadSuite::ChaCha20Poly1305];
    let (mut w, mut rng) = world(&spec, 3);
    let now = w.net.now;
    w.devices[0].register(now, &mut rng).unwrap();
    w.devices[1].register(now, &mut rng).unwrap();
    w.run_honest(&mut rng);
    assert!(matches!(
        failure(&w, 0),
        Some(Error::Refused(RefusalCode::UnsupportedSuite))
    ));

    // A suite outside the intersection of two registered devices.
    let mut spec = Spec::default();
    spec.devices[0].suites = vec![AeadSuite::Aes128Ccm8, AeadSuite::Ascon128];
    spec.devices[1].suites = vec![AeadSuite::ChaCha20Poly1305, AeadSuite::Aes128Ccm8];
    let (mut w, mut rng) = world(&spec, 4);
    register_all(&mut w, &mut rng);
    let now = w.net.now;
    w.devices[0]
        .invite(now, &mut rng, "device-j", AeadSuite::Ascon128)
        .unwrap();
    w.run_honest(&mut rng);
    assert!(matches!(
        failure(&w, 0),
        Some(Error::Refused(RefusalCode::UnsupportedSuite))
    ));
    assert!(established(&w, 1).is_none());
}

#[test]
fn an_unregistered_device_is_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 5);
    let now = w.net.now;
    w.devices[1].register(now, &mut rng).unwrap();
    w.run_honest(&mut rng);
    invite_j(&mut w, &mut rng);
    w.run_honest(&mut rng);
    assert!(matches!(
        failure(&w, 0),
        Some(Error::Refused(RefusalCode::UnknownDevice))
    ));
}

#[test]
fn a_wrong_device_key_is_refused() {
    // device-i registers, then a device with another key claims its identity.
    let (mut w, mut rng) = world(&Spec::default(), 6);
    register_all(&mut w, &mut rng);
    let (mut other, _) = world(&Spec::default(), 60);
    std::mem::swap(&mut w.devices[0], &mut other.devices[0]);
    invite_j(&mut w, &mut rng);
    w.run_honest(&mut rng);
    // Its pseudonym is derived under its own key, so it names no registered device (wire
    // version 2 carries no identity to claim): refused before anything is opened.
    assert!(
        server_rejections(&w)
            .iter()
            .any(|e| matches!(e, Error::UnknownDevice(p) if p.starts_with("pseudonym "))),
        "{:?}",
        server_rejections(&w)
    );
    assert!(matches!(
        failure(&w, 0),
        Some(Error::Timeout(_) | Error::Refused(_))
    ));
    assert!(established(&w, 1).is_none());
    assert_eq!(negotiate_responses(&w), 0, "d_j was invited");
}

#[test]
fn a_tampered_key_share_is_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 7);
    register_all(&mut w, &mut rng);
    invite_j(&mut w, &mut rng);
    run_tampered(&mut w, &mut rng, |m| {
        let Message::KeyShare(m) = m else {
            return false;
        };
        let last = m.sealed.0.len() - 20;
        m.sealed.0[last] ^= 1; // inside N_i's encoding under the temporary key
        true
    });
    assert!(server_rejections(&w).contains(&&Error::Authentication));
    assert!(established(&w, 0).is_none() && established(&w, 1).is_none());
}

#[test]
fn duplicated_invitations_and_key_shares_are_handled_once() {
    let (mut w, mut rng) = world(&Spec::default(), 8);
    register_all(&mut w, &mut rng);
    invite_j(&mut w, &mut rng);
    w.run(&mut rng, &mut |d| match Message::decode(&d.payload) {
        Ok(Message::Invite(_) | Message::KeyShare(_)) => vec![d.clone(), d.clone()],
        _ => vec![d.clone()],
    });
    // Each copy is a retransmission as far as the server can tell: answered again with what
    // it sent for the first, never handled again (the replay cache never sees it), even the
    // copy of d_j's share that arrives after the exchange completed.
    assert!(
        server_rejections(&w).is_empty(),
        "{:?}",
        server_rejections(&w)
    );
    assert!(established(&w, 0).is_some());
    assert_eq!(established(&w, 0), established(&w, 1));
}

/// The A2 (Negotiate) the server sent d_j during `connect`, as it went on the wire.
fn captured_negotiate(w: &World) -> Datagram {
    let negotiates: Vec<&Datagram> = w
        .net
        .log
        .iter()
        .filter(|d| matches!(Message::decode(&d.payload), Ok(Message::Negotiate(_))))
        .collect();
    assert_eq!(negotiates.len(), 1, "{negotiates:?}");
    negotiates[0].clone()
}

/// Delivers `d` again now, from the server's address (a spoofed UDP source passes d_j's
/// source check), and runs the world to rest.
fn replay(w: &mut World, rng: &mut SeededRng, d: &Datagram) {
    w.net.inject(Datagram {
        at: w.net.now,
        ..d.clone()
    });
    w.run_honest(rng);
}

fn negotiate_responses(w: &World) -> usize {
    w.net
        .log
        .iter()
        .filter(|d| {
            matches!(
                Message::decode(&d.payload),
                Ok(Message::NegotiateResponse(_))
            )
        })
        .count()
}

/// d_j is free: it can invite d_i, and the two agree on a second session.
fn assert_free(w: &mut World, rng: &mut SeededRng, first: SessionId) {
    let now = w.net.now;
    w.devices[1]
        .invite(now, rng, "device-i", AeadSuite::ChaCha20Poly1305)
        .expect("d_j is not held in an exchange");
    w.run_honest(rng);
    let second = |device: usize| {
        w.events.devices[device]
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Established { session, .. } if *session != first => Some(*session),
                _ => None,
            })
            .next()
    };
    assert!(second(0).is_some() && second(0) == second(1));
}

#[test]
fn a_copy_of_a_negotiate_is_answered_again_and_the_device_stays_free() {
    let (mut w, mut rng) = world(&Spec::default(), 12);
    let session = connect(&mut w, &mut rng, AeadSuite::Aes128Ccm8);
    let a2 = captured_negotiate(&w);
    let answers = negotiate_responses(&w);
    w.advance(Duration::from_secs(1), &mut rng);
    // The same bytes soon after: a retransmission as far as d_j can tell, answered with the
    // A3 it sent (the server, whose exchange is over, takes that copy as one too).
    replay(&mut w, &mut rng, &a2);
    assert!(rejections(&w, 1).is_empty());
    assert_eq!(negotiate_responses(&w), answers + 1, "the same A3 again");
    assert!(server_rejections(&w).is_empty());
    assert_free(&mut w, &mut rng, session);
}

#[test]
fn a_negotiate_older_than_the_clock_window_is_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 13);
    let session = connect(&mut w, &mut rng, AeadSuite::Ascon128);
    let a2 = captured_negotiate(&w);
    let skew = Spec::default().timeouts.clock_skew;
    // The caches have forgotten the session and its answer by now; the timestamp alone
    // refuses it.
    w.advance(
        skew.max(ANSWER_LIFETIME) + Duration::from_millis(1),
        &mut rng,
    );
    replay(&mut w, &mut rng, &a2);
    assert_eq!(rejections(&w, 1), [&Error::Replayed]);
    assert_free(&mut w, &mut rng, session);
}

#[test]
fn a_negotiate_with_a_rewritten_session_fails_authentication() {
    let (mut w, mut rng) = world(&Spec::default(), 14);
    let session = connect(&mut w, &mut rng, AeadSuite::Aes128Ccm8);
    let mut a2 = captured_negotiate(&w);
    // A fresh session id would slip past the cache, were it not under the seal.
    let Ok(Message::Negotiate(mut m)) = Message::decode(&a2.payload) else {
        unreachable!("captured_negotiate returns a Negotiate")
    };
    m.session[0] ^= 1;
    a2.payload = Message::Negotiate(m).to_bytes();
    w.advance(Duration::from_secs(1), &mut rng);
    replay(&mut w, &mut rng, &a2);
    assert_eq!(rejections(&w, 1), [&Error::Authentication]);
    assert_free(&mut w, &mut rng, session);

    // Rewritten on its way during an exchange: d_j refuses it and d_i gives up.
    let (mut w, mut rng) = world(&Spec::default(), 15);
    register_all(&mut w, &mut rng);
    invite_j(&mut w, &mut rng);
    run_tampered(&mut w, &mut rng, |m| {
        let Message::Negotiate(m) = m else {
            return false;
        };
        m.session[15] ^= 0x80;
        true
    });
    // Every retransmission of it is rewritten and refused alike.
    let refused = rejections(&w, 1);
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|e| **e == Error::Authentication));
    assert!(matches!(failure(&w, 0), Some(Error::Timeout(_))));
    assert!(established(&w, 0).is_none() && established(&w, 1).is_none());
}

#[test]
fn a_swapped_element_is_detected_through_f_k() {
    let spec = Spec {
        fault: Some(ServerFault::SwapElement),
        ..Spec::default()
    };
    let (mut w, mut rng) = world(&spec, 9);
    register_all(&mut w, &mut rng);
    invite_j(&mut w, &mut rng);
    w.run_honest(&mut rng);
    assert!(
        established(&w, 0).is_none(),
        "d_i must refuse the swapped value"
    );
    assert!(w.events.devices[0].iter().any(|e| matches!(
        e,
        DeviceEvent::Rejected {
            error: Error::Authentication,
            ..
        }
    )));
}

#[test]
fn stored_messages_survive_a_server_restart_and_arrive_once_in_order() {
    let (mut w, mut rng) = world(&Spec::default(), 10);
    let session = connect(&mut w, &mut rng, AeadSuite::ChaCha20Poly1305);
    let j = w.addrs[2];
    // d_j is unreachable while d_i sends: the server stores and acknowledges.
    send(&mut w, &mut rng, session, &["m0", "m1", "m2", "m3"]);
    w.run(&mut rng, &mut |d| {
        if d.to == j { vec![] } else { vec![d.clone()] }
    });
    let stored = w.events.devices[0]
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Stored { .. }))
        .count();
    assert_eq!(stored, 4);
    assert!(received(&w, 1).is_empty());
    // The server dies; a new one starts from the store; d_j comes back.
    w.restart_server().unwrap();
    assert_eq!(w.server.held(), 4);
    w.advance(Duration::from_secs(1), &mut rng);
    let now = w.net.now;
    w.devices[1].poll(now);
    // Every forward is duplicated on the way: still delivered once each.
    w.run(&mut rng, &mut |d| vec![d.clone(), d.clone()]);
    let got: Vec<u64> = received(&w, 1).iter().map(|(id, _)| *id).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    assert_eq!(w.server.held(), 0);
    assert!(w.store.scan(MESSAGES_TABLE).unwrap().is_empty());
}

#[test]
fn garbage_is_rejected_without_disturbing_the_server() {
    let (mut w, mut rng) = world(&Spec::default(), 11);
    let server = w.addrs[0];
    for junk in [vec![], vec![0x81, 0x00], vec![0xff; 64]] {
        w.net.inject(m2msec_protocol::sga::sim::Datagram {
            at: w.net.now,
            from: std::net::SocketAddr::from(([127, 0, 0, 99], 1)),
            to: server,
            payload: junk,
        });
    }
    let session = connect(&mut w, &mut rng, AeadSuite::Aes128Ccm8);
    assert!(
        server_rejections(&w)
            .iter()
            .any(|e| matches!(e, Error::Decode(_)))
    );
    let _ = session;
    let _ = DeviceSpec {
        name: String::new(),
        suites: vec![],
    };
}
