//! MIKEY end to end: the RFC 3830 modes and the distributed mode, honest and under attack.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

mod common;

use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::Endpoint;
use m2msec_protocol::mikey::sim::{Configs, Datagram, Spec, World, addresses};
use m2msec_protocol::mikey::{
    Error, InitiatorEvent, ModeName, Psk, ResponderEvent, ThirdPartyEvent, ThirdPartyFault,
};
use m2msec_wire::mikey::{DataType, ErrorCode, Message, Payload};

fn world(spec: &Spec, seed: u64) -> (World, SeededRng) {
    let mut rng = SeededRng::from_seed_u64(seed);
    let w = World::generate(spec, &mut rng).unwrap();
    (w, rng)
}

fn mode(mode: ModeName) -> Spec {
    Spec {
        mode,
        ..Spec::default()
    }
}

fn faulty(faults: &[(usize, ThirdPartyFault)]) -> Spec {
    let mut s = Spec::default();
    s.faults = common::faults_at(s.third_parties, faults);
    s
}

/// (initiator TEK, responder TEK, initiator verified).
fn established(w: &World) -> (Vec<u8>, Vec<u8>, bool) {
    let i = common::first(
        &w.events.initiator,
        "initiator did not establish",
        InitiatorEvent::established,
    );
    let r = common::first(
        &w.events.responder,
        "responder did not establish",
        ResponderEvent::established,
    );
    assert_eq!(i.csb_id, r.csb_id);
    assert_eq!(i.mode, r.mode);
    let (tek_i, salt_i) = i.keys.expose_for_testing_only();
    let (tek_r, salt_r) = r.keys.expose_for_testing_only();
    assert_eq!(salt_i, salt_r);
    (tek_i.to_vec(), tek_r.to_vec(), i.verified)
}

fn initiator_error(w: &World) -> &Error {
    common::first(&w.events.initiator, "initiator did not fail", |e| match e {
        InitiatorEvent::Failed { error, .. } => Some(error),
        _ => None,
    })
}

fn responder_rejections(w: &World) -> Vec<&Error> {
    common::picked(&w.events.responder, |e| match e {
        ResponderEvent::Rejected { error, .. } => Some(error),
        _ => None,
    })
}

fn is_type(d: &Datagram, t: DataType) -> bool {
    Message::decode(&d.payload).is_ok_and(|m| m.header.data_type == t)
}

#[test]
fn pre_shared_key_mode_agrees_on_the_tek() {
    let (mut w, mut rng) = world(&mode(ModeName::Psk), 1);
    w.run_honest(&mut rng).unwrap();
    let (a, b, verified) = established(&w);
    assert_eq!(a, b);
    assert!(verified);
    assert_eq!(w.initiator.op_counts().asymmetric, 0);
}

#[test]
fn public_key_mode_agrees_on_the_tek() {
    let (mut w, mut rng) = world(&mode(ModeName::Pk), 2);
    w.run_honest(&mut rng).unwrap();
    let (a, b, verified) = established(&w);
    assert_eq!(a, b);
    assert!(verified);
    // Envelope-key encryption and the signature: the cost the distributed mode removes.
    assert_eq!(w.initiator.op_counts().asymmetric, 2);
}

#[test]
fn distributed_mode_agrees_without_initiator_public_key_operations() {
    for sharing in [SharingScheme::ReedSolomon, SharingScheme::Shamir] {
        let spec = Spec {
            sharing,
            ..Spec::default()
        };
        let (mut w, mut rng) = world(&spec, 3);
        w.run_honest(&mut rng).unwrap();
        let (a, b, verified) = established(&w);
        assert_eq!(a, b);
        assert!(verified, "R proved the TGK to I");
        assert_eq!(w.initiator.op_counts().asymmetric, 0);
        let confirmations = w
            .events
            .initiator
            .iter()
            .filter(|e| matches!(e, InitiatorEvent::ThirdPartyConfirmed { .. }))
            .count();
        assert_eq!(confirmations, 5);
        for events in &w.events.third_parties {
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, ThirdPartyEvent::Confirmed { .. }))
            );
        }
    }
}

#[test]
fn without_verification_both_ends_still_agree() {
    for m in [ModeName::Psk, ModeName::Pk, ModeName::Distributed] {
        let mut spec = mode(m);
        spec.policy.verification = false;
        let (mut w, mut rng) = world(&spec, 4);
        w.run_honest(&mut rng).unwrap();
        let (a, b, verified) = established(&w);
        assert_eq!(a, b);
        assert!(!verified);
    }
}

#[test]
fn lost_parts_up_to_n_minus_k_are_tolerated() {
    let spec = faulty(&[(0, ThirdPartyFault::Silent), (3, ThirdPartyFault::Silent)]);
    let (mut w, mut rng) = world(&spec, 5);
    w.run_honest(&mut rng).unwrap();
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
}

#[test]
fn dropped_parts_beyond_n_minus_k_fail_cleanly() {
    let (mut w, mut rng) = world(&Spec::default(), 6);
    let start = w.net.now;
    w.initiator.connect(start, &mut rng).unwrap();
    // The network loses three of the five parts on their way to R, every copy of them (the
    // initiator's retransmissions make third parties forward them again).
    let mut cut: Vec<std::net::SocketAddr> = Vec::new();
    w.run(&mut rng, &mut |d| {
        if is_type(d, DataType::PublicKey) && (cut.contains(&d.from) || cut.len() < 3) {
            if !cut.contains(&d.from) {
                cut.push(d.from);
            }
            vec![]
        } else {
            vec![d.clone()]
        }
    });
    assert!(matches!(initiator_error(&w), Error::Timeout(_)));
    w.advance(Duration::from_secs(10), &mut rng);
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(w.events.responder.iter().any(|e| matches!(
        e,
        ResponderEvent::Failed {
            error: Error::NotEnoughParts {
                valid: 2,
                needed: 3
            },
            ..
        }
    )));
    assert!(
        !w.events
            .responder
            .iter()
            .any(|e| matches!(e, ResponderEvent::Established(_)))
    );
}

#[test]
fn an_altered_part_is_detected_and_excluded() {
    for sharing in [SharingScheme::ReedSolomon, SharingScheme::Shamir] {
        let mut spec = faulty(&[
            (1, ThirdPartyFault::AlterPart),
            (4, ThirdPartyFault::AlterPart),
        ]);
        spec.sharing = sharing;
        let (mut w, mut rng) = world(&spec, 7);
        w.run_honest(&mut rng).unwrap();
        let (a, b, verified) = established(&w);
        assert_eq!(a, b, "{sharing:?}");
        assert!(verified);
        let mut liars: Vec<&str> = w
            .events
            .responder
            .iter()
            .filter_map(|e| match e {
                ResponderEvent::PartRejected { third_party, .. } => Some(third_party.as_str()),
                _ => None,
            })
            .collect();
        liars.sort_unstable();
        assert_eq!(
            liars,
            ["tp2@m2msec.example", "tp5@m2msec.example"],
            "{sharing:?}"
        );
    }
}

#[test]
fn too_many_altered_parts_never_yield_a_wrong_key() {
    let spec = faulty(&[
        (0, ThirdPartyFault::AlterPart),
        (1, ThirdPartyFault::AlterPart),
        (2, ThirdPartyFault::AlterPart),
    ]);
    let (mut w, mut rng) = world(&spec, 8);
    w.run_honest(&mut rng).unwrap();
    assert!(
        !w.events
            .responder
            .iter()
            .any(|e| matches!(e, ResponderEvent::Established(_)))
    );
    assert!(w.events.responder.iter().any(|e| matches!(
        e,
        ResponderEvent::Failed {
            error: Error::NotEnoughParts { .. },
            ..
        }
    )));
    assert!(matches!(initiator_error(&w), Error::Timeout(_)));
}

#[test]
fn replayed_i_messages_are_refused() {
    let (mut w, mut rng) = world(&mode(ModeName::Psk), 9);
    w.run_honest(&mut rng).unwrap();
    established(&w);
    let i_message = w
        .net
        .log
        .iter()
        .find(|d| is_type(d, DataType::PreShared))
        .cloned()
        .unwrap();
    // A copy from I's address soon after is a retransmission as far as R can tell: answered
    // again with what R sent for it, not handled again.
    let sent_before = w.net.log.len();
    w.net.inject(i_message.clone());
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(responder_rejections(&w).is_empty());
    let answered_again: Vec<_> = w.net.log[sent_before..]
        .iter()
        .filter(|d| d.from == i_message.to)
        .collect();
    assert!(!answered_again.is_empty());
    assert!(answered_again.iter().all(|again| {
        w.net.log[..sent_before]
            .iter()
            .any(|d| d.payload == again.payload)
    }));
    // The same bytes from another address, inside the window: a replay.
    let mut elsewhere = i_message.clone();
    elsewhere
        .from
        .set_port(elsewhere.from.port().wrapping_add(1));
    w.net.inject(elsewhere);
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(responder_rejections(&w).contains(&&Error::Replayed));
    // Outside the window: refused on its timestamp, and R says so with an RFC 3830 error.
    w.advance(Duration::from_secs(120), &mut rng);
    w.net.inject(i_message);
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    assert!(responder_rejections(&w).contains(&&Error::TimestampOutsideWindow));
    let errors: Vec<ErrorCode> = w
        .net
        .log
        .iter()
        .filter_map(|d| Message::decode(&d.payload).ok())
        .filter(|m| m.header.data_type == DataType::Error)
        .flat_map(|m| m.payloads)
        .filter_map(|p| match p {
            Payload::Err(e) => Some(e.code),
            _ => None,
        })
        .collect();
    assert_eq!(errors, [ErrorCode::AuthFailure, ErrorCode::InvalidTs]);
    let count = w
        .events
        .responder
        .iter()
        .filter(|e| matches!(e, ResponderEvent::Established(_)))
        .count();
    assert_eq!(count, 1);
}

#[test]
fn a_forged_third_party_signature_is_refused() {
    let (mut w, mut rng) = world(&Spec::default(), 10);
    w.initiator.connect(w.net.now, &mut rng).unwrap();
    let mut forged = 0;
    w.run(&mut rng, &mut |d| {
        let mut d = d.clone();
        if is_type(&d, DataType::PublicKey) && forged == 0 {
            forged += 1;
            let last = d.payload.len() - 1;
            d.payload[last] ^= 1; // the signature is the last field
        }
        vec![d]
    });
    assert!(responder_rejections(&w).contains(&&Error::Authentication));
    let (a, b, _) = established(&w);
    assert_eq!(a, b, "four genuine parts remain");
}

#[test]
fn a_wrong_pre_shared_key_is_refused_with_an_error_message() {
    // PSK mode: R holds another key; it refuses and answers with ERR "Auth failure".
    let spec = mode(ModeName::Psk);
    let mut rng = SeededRng::from_seed_u64(11);
    let addrs = addresses(0);
    let mut configs = Configs::generate(&spec, &addrs, &mut rng).unwrap();
    configs.responder.psk_initiators[0].psk = Psk::new(&[7; 32]).unwrap();
    let mut w = World::new(configs, addrs).unwrap();
    w.run_honest(&mut rng).unwrap();
    assert!(responder_rejections(&w).contains(&&Error::Authentication));
    assert_eq!(
        initiator_error(&w),
        &Error::PeerError(ErrorCode::AuthFailure)
    );

    // Distributed mode: one third party holds another key; the others carry the exchange.
    let spec = Spec::default();
    let addrs = addresses(5);
    let mut configs = Configs::generate(&spec, &addrs, &mut rng).unwrap();
    configs.third_parties[2].initiators[0].psk = Psk::new(&[7; 32]).unwrap();
    let mut w = World::new(configs, addrs).unwrap();
    w.run_honest(&mut rng).unwrap();
    assert!(w.events.third_parties[2].iter().any(|e| matches!(
        e,
        ThirdPartyEvent::Rejected {
            error: Error::Authentication,
            ..
        }
    )));
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
}

#[test]
fn a_tampered_kemac_is_refused() {
    let (mut w, mut rng) = world(&mode(ModeName::Psk), 12);
    w.initiator.connect(w.net.now, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| {
        let mut d = d.clone();
        if is_type(&d, DataType::PreShared) {
            let n = d.payload.len();
            d.payload[n - 30] ^= 0x10; // inside the KEMAC's encrypted data
        }
        vec![d]
    });
    assert!(responder_rejections(&w).contains(&&Error::Authentication));
    assert!(matches!(
        initiator_error(&w),
        Error::PeerError(ErrorCode::AuthFailure)
    ));
}

#[test]
fn a_dropped_verification_ends_in_a_typed_timeout() {
    let (mut w, mut rng) = world(&Spec::default(), 13);
    w.initiator.connect(w.net.now, &mut rng).unwrap();
    let responder = w.addrs[1];
    w.run(&mut rng, &mut |d| {
        if d.from == responder && is_type(d, DataType::PskVerify) {
            vec![]
        } else {
            vec![d.clone()]
        }
    });
    assert!(matches!(initiator_error(&w), Error::Timeout(_)));
}

#[test]
fn garbage_is_rejected_without_disturbing_the_exchange() {
    let (mut w, mut rng) = world(&Spec::default(), 14);
    w.initiator.connect(w.net.now, &mut rng).unwrap();
    let from = std::net::SocketAddr::from(([127, 0, 0, 99], 9));
    for to in w.addrs.clone() {
        for junk in [vec![], vec![1, 0, 0], vec![0xff; 40]] {
            w.net.inject(Datagram {
                at: w.net.now,
                from,
                to,
                payload: junk,
            });
        }
    }
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
    assert!(
        responder_rejections(&w)
            .iter()
            .any(|e| matches!(e, Error::Decode(_)))
    );
}
