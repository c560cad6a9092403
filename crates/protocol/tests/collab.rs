//! End-to-end and adversarial runs of the collab protocol over the in-memory network.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

mod common;

use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::collab::sim::{
    Configs, Datagram, PORT, Spec, Suite, Topology, World, address,
};
use m2msec_protocol::collab::{
    ClientEvent, Error, ProxyFault, Server, ServerEvent, Timeouts, TrustRecord,
};
use m2msec_protocol::{Endpoint, Millis};
use m2msec_wire::cbor::Bytes;
use m2msec_wire::collab::Message;

/// The default deployment with short waits (B's fragment deadline inside A's session), so
/// that failures end quickly in virtual time.
fn spec() -> Spec {
    Spec {
        timeouts: Timeouts {
            session: Duration::from_secs(5),
            fragments: Duration::from_secs(3),
            ..Timeouts::default()
        },
        ..Spec::default()
    }
}

fn world(spec: &Spec, seed: u64) -> (World, SeededRng) {
    let mut rng = SeededRng::from_seed_u64(seed);
    let w = World::generate(spec, &mut rng).unwrap();
    (w, rng)
}

fn with_faults(faults: &[(usize, ProxyFault)]) -> Spec {
    let mut s = spec();
    s.faults = common::faults_at(s.proxies, faults);
    s
}

/// (client key, server key, participants) of an established session.
fn established(w: &World) -> ([u8; 32], [u8; 32], Vec<String>) {
    let client = common::first(
        &w.events.client,
        "client did not establish",
        ClientEvent::established,
    );
    let server = common::first(
        &w.events.server,
        "server did not establish",
        ServerEvent::established,
    );
    assert_eq!(client.session, server.session);
    assert_eq!(client.participants, server.participants);
    (
        *client.key.expose_for_testing_only(),
        *server.key.expose_for_testing_only(),
        client.participants.clone(),
    )
}

fn client_error(w: &World) -> &Error {
    common::first(&w.events.client, "client did not fail", |e| match e {
        ClientEvent::Failed { error, .. } => Some(error),
        _ => None,
    })
}

fn server_error(w: &World) -> &Error {
    common::first(&w.events.server, "server did not fail", |e| match e {
        ServerEvent::Failed { error, .. } => Some(error),
        _ => None,
    })
}

fn server_rejections(w: &World) -> Vec<&Error> {
    common::picked(&w.events.server, |e| match e {
        ServerEvent::Rejected { error, .. } => Some(error),
        _ => None,
    })
}

fn trust_of(w: &World, proxy: &str) -> TrustRecord {
    w.client.trust().record(proxy).cloned().expect("record")
}

fn names(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("proxy-{i}")).collect()
}

/// Rewrites every message of one type with `f`, as an attacker on the path who puts fragments
/// together first.
fn rewrite(mut f: impl FnMut(&mut Message) -> bool) -> impl FnMut(&Datagram) -> Vec<Datagram> {
    m2msec_protocol::fragment::on_messages(move |d: &Datagram| {
        let mut d = d.clone();
        if let Ok(mut m) = Message::decode(&d.payload) {
            if f(&mut m) {
                d.payload = m.to_bytes();
            }
        }
        vec![d]
    })
}

#[test]
fn honest_run_agrees_on_a_key_without_client_public_key_operations() {
    for (sharing, ots) in [
        (SharingScheme::ReedSolomon, OtsScheme::Lamport),
        (SharingScheme::Shamir, OtsScheme::Lamport),
        (SharingScheme::ReedSolomon, OtsScheme::LmotsSha256N32W4),
        (SharingScheme::Shamir, OtsScheme::LmotsSha256N32W4),
    ] {
        let s = Spec {
            sharing,
            ots,
            ..spec()
        };
        let (mut w, mut rng) = world(&s, 1);
        w.run_honest(&mut rng).unwrap();
        let (a, b, participants) = established(&w);
        assert_eq!(a, b, "{sharing:?}/{ots:?}");
        assert_eq!(participants, names(1..=5));
        let ops = w.client.op_counts();
        assert_eq!(
            ops.asymmetric, 0,
            "the client must do no public-key operation"
        );
        assert!(ops.symmetric > 0 && ops.redundancy == 1);
        assert!(w.server.op_counts().asymmetric > 0);
        for i in 1..=5 {
            assert_eq!(trust_of(&w, &format!("proxy-{i}")).successes, 1);
        }
    }
}

#[test]
fn classic_rsa_suite_agrees_on_a_key() {
    let s = Spec {
        suite: Suite::Classic,
        ..spec()
    };
    let (mut w, mut rng) = world(&s, 2);
    w.run_honest(&mut rng).unwrap();
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
    assert_eq!(w.client.op_counts().asymmetric, 0);
}

#[test]
fn two_silent_proxies_are_tolerated_and_lose_trust() {
    let s = with_faults(&[(0, ProxyFault::Silent), (3, ProxyFault::Silent)]);
    let (mut w, mut rng) = world(&s, 3);
    w.run_honest(&mut rng).unwrap();
    let (a, b, participants) = established(&w);
    assert_eq!(a, b);
    assert_eq!(participants, ["proxy-2", "proxy-3", "proxy-5"]);
    assert_eq!(trust_of(&w, "proxy-1").failures, 1);
    assert_eq!(trust_of(&w, "proxy-4").failures, 1);
    assert!(trust_of(&w, "proxy-1").score < trust_of(&w, "proxy-2").score);
}

#[test]
fn forged_fragments_become_erasures() {
    let s = with_faults(&[
        (1, ProxyFault::ForgeFragment),
        (4, ProxyFault::ForgeFragment),
    ]);
    let (mut w, mut rng) = world(&s, 4);
    w.run_honest(&mut rng).unwrap();
    let (a, b, participants) = established(&w);
    assert_eq!(a, b);
    assert_eq!(participants, ["proxy-1", "proxy-3", "proxy-4"]);
    assert!(
        server_rejections(&w)
            .iter()
            .filter(|e| ***e == Error::CommitmentMismatch)
            .count()
            == 2
    );
    assert_eq!(trust_of(&w, "proxy-2").failures, 1);
}

#[test]
fn corrupted_answers_are_outvoted_and_the_liars_are_not_listed() {
    for sharing in [SharingScheme::ReedSolomon, SharingScheme::Shamir] {
        let mut s = with_faults(&[
            (0, ProxyFault::CorruptAnswer),
            (2, ProxyFault::CorruptAnswer),
        ]);
        s.sharing = sharing;
        let (mut w, mut rng) = world(&s, 5);
        w.run_honest(&mut rng).unwrap();
        let (a, b, participants) = established(&w);
        assert_eq!(a, b);
        assert_eq!(participants, ["proxy-2", "proxy-4", "proxy-5"]);
        assert_eq!(trust_of(&w, "proxy-1").failures, 1);
        assert_eq!(trust_of(&w, "proxy-3").failures, 1);
    }
}

#[test]
fn more_than_n_minus_k_silent_proxies_fail_cleanly_everywhere() {
    let s = with_faults(&[
        (0, ProxyFault::Silent),
        (1, ProxyFault::Silent),
        (2, ProxyFault::Silent),
    ]);
    let (mut w, mut rng) = world(&s, 6);
    let start = w.net.now;
    w.run_honest(&mut rng).unwrap();
    assert!(matches!(
        server_error(&w),
        Error::NotEnoughFragments {
            valid: 2,
            needed: 3
        }
    ));
    // B gives up at its fragment deadline and tells A why, before A's own wait ends.
    assert!(matches!(
        client_error(&w),
        Error::Aborted(m2msec_protocol::collab::AbortReason::NotEnoughFragments)
    ));
    assert!(
        !w.events
            .client
            .iter()
            .any(|e| matches!(e, ClientEvent::Established(_)))
    );
    // Ended by the session timeout, not by the simulation's horizon.
    assert!(
        w.net.now.0 - start.0 <= 6_000,
        "took {} ms",
        w.net.now.0 - start.0
    );
}

#[test]
fn more_than_n_minus_k_forgers_fail_fast() {
    let s = with_faults(&[
        (0, ProxyFault::ForgeFragment),
        (1, ProxyFault::ForgeFragment),
        (2, ProxyFault::ForgeFragment),
    ]);
    let (mut w, mut rng) = world(&s, 7);
    let start = w.net.now;
    w.run_honest(&mut rng).unwrap();
    assert!(matches!(server_error(&w), Error::NotEnoughFragments { .. }));
    assert!(matches!(
        client_error(&w),
        Error::Aborted(m2msec_protocol::collab::AbortReason::NotEnoughFragments)
    ));
    assert!(
        w.net.now.0 - start.0 < 1_000,
        "B gives up as soon as k is out of reach"
    );
}

#[test]
fn tampered_one_time_signature_is_rejected() {
    let (mut w, mut rng) = world(&spec(), 8);
    let mut tampered = 0;
    w.client.connect(w.net.now, &mut rng).unwrap();
    w.run(
        &mut rng,
        &mut rewrite(|m| match m {
            Message::SealedFragment(f) if tampered == 0 => {
                tampered += 1;
                let last = f.signature.0.len() - 1;
                f.signature.0[last] ^= 1;
                true
            }
            _ => false,
        }),
    );
    assert!(server_rejections(&w).contains(&&Error::Authentication));
    // The forgery cost the real proxy nothing but its slot: four valid shares remain.
    let (a, b, participants) = established(&w);
    assert_eq!(a, b);
    assert_eq!(participants.len(), 4);
}

#[test]
fn wrong_merkle_path_is_rejected() {
    let (mut w, mut rng) = world(&spec(), 9);
    w.client.connect(w.net.now, &mut rng).unwrap();
    w.run(
        &mut rng,
        &mut rewrite(|m| match m {
            Message::CertRequest(c) if c.proxy == "proxy-2" => {
                c.path[0][0] ^= 1;
                true
            }
            _ => false,
        }),
    );
    assert!(server_rejections(&w).contains(&&Error::BadMerklePath));
    let (_, _, participants) = established(&w);
    assert!(!participants.contains(&"proxy-2".to_owned()));
}

#[test]
fn root_not_signed_by_t_is_rejected() {
    let (mut w, mut rng) = world(&spec(), 10);
    let mut forger_rng = SeededRng::from_seed_u64(99);
    let impostor = SigningKey::generate(SigSuite::Ed25519, &mut forger_rng).unwrap();
    w.client.connect(w.net.now, &mut rng).unwrap();
    w.run(
        &mut rng,
        &mut rewrite(|m| match m {
            // An attacker substitutes its own tree root and signs the grant with its own key.
            Message::CertRequest(c) => {
                c.grant.grant.root[0] ^= 1;
                let mut msg = b"m2msec collab v1 grant".to_vec();
                msg.extend(m2msec_wire::cbor::to_vec(&c.grant.grant));
                c.grant.signature = Bytes(impostor.sign(&mut forger_rng, &msg));
                true
            }
            _ => false,
        }),
    );
    assert!(server_rejections(&w).contains(&&Error::Authentication));
    assert!(matches!(
        server_error(&w),
        Error::NotEnoughFragments { valid: 0, .. }
    ));
    assert!(matches!(
        client_error(&w),
        Error::Aborted(_) | Error::Timeout(_)
    ));
}

#[test]
fn a_one_time_key_signs_once() {
    let (mut w, mut rng) = world(&spec(), 11);
    w.client.connect(w.net.now, &mut rng).unwrap();
    // Every signed fragment is delivered twice.
    w.run(&mut rng, &mut |d| {
        let twice = matches!(Message::decode(&d.payload), Ok(Message::SealedFragment(_)));
        if twice {
            vec![d.clone(), d.clone()]
        } else {
            vec![d.clone()]
        }
    });
    // Each copy is a retransmission as far as the server can tell: answered again from what it
    // sent, never handled again, so each one-time key is used once and nothing is refused.
    let used = w
        .events
        .server
        .iter()
        .filter(|e| matches!(e, ServerEvent::OneTimeKeyUsed(_)))
        .count();
    assert_eq!(used, 5);
    assert!(
        server_rejections(&w).is_empty(),
        "{:?}",
        server_rejections(&w)
    );
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
}

#[test]
fn replays_from_an_earlier_session_are_rejected() {
    let (mut w, mut rng) = world(&spec(), 12);
    w.run_honest(&mut rng).unwrap();
    established(&w);
    let first_session = w.net.log.clone();
    let used: Vec<[u8; 32]> = w
        .events
        .server
        .iter()
        .filter_map(|e| match e {
            ServerEvent::OneTimeKeyUsed(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(used.len(), 5);

    // Long after (beyond the time a retransmission is answered from what was sent), the whole
    // first session is replayed at every role.
    w.advance(Duration::from_secs(180), &mut rng);
    let now = w.net.now;
    for d in &first_session {
        w.net.inject(Datagram {
            at: now,
            ..d.clone()
        });
    }
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let established_count = w
        .events
        .server
        .iter()
        .filter(|e| matches!(e, ServerEvent::Established(_)))
        .count();
    assert_eq!(established_count, 1, "a replay must not establish a key");
    assert!(server_rejections(&w).contains(&&Error::OneTimeKeyReused));

    // A restarted server that loaded the used keys from its store refuses them too.
    let mut rng2 = SeededRng::from_seed_u64(12);
    let topology = Topology::loopback(PORT, 5);
    let configs = Configs::generate(&spec(), &topology, &mut rng2).unwrap();
    let mut server = Server::new(configs.server, used).unwrap();
    let mut refused = 0;
    for d in first_session.iter().filter(|d| d.to == topology.server) {
        server.handle_datagram(Millis(d.at.0 + 60_000), d.from, &d.payload, &mut rng2);
    }
    while let Some(e) = server.poll_event() {
        if matches!(
            e,
            ServerEvent::Rejected {
                error: Error::OneTimeKeyReused,
                ..
            }
        ) {
            refused += 1;
        }
        assert!(!matches!(e, ServerEvent::Established(_)));
    }
    assert!(refused >= 5, "refused {refused}");
}

#[test]
fn tampered_sealed_messages_are_ignored_and_the_session_times_out() {
    let (mut w, mut rng) = world(&spec(), 13);
    w.client.connect(w.net.now, &mut rng).unwrap();
    w.run(
        &mut rng,
        &mut rewrite(|m| match m {
            Message::KeyRequest(k) => {
                k.sealed.0[20] ^= 0x80;
                true
            }
            _ => false,
        }),
    );
    assert!(w.events.trusted.iter().any(|e| matches!(
        e,
        m2msec_protocol::collab::TrustedEvent::Rejected {
            error: Error::Authentication,
            ..
        }
    )));
    // No proxy ever reaches B, which gives up and tells A.
    assert!(matches!(
        client_error(&w),
        Error::Aborted(m2msec_protocol::collab::AbortReason::NotEnoughFragments)
    ));
    assert!(matches!(
        server_error(&w),
        Error::NotEnoughFragments { valid: 0, .. }
    ));
}

#[test]
fn dropped_final_message_ends_in_a_typed_timeout() {
    let (mut w, mut rng) = world(&spec(), 14);
    w.client.connect(w.net.now, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| match Message::decode(&d.payload) {
        Ok(Message::ServerFinished(_)) => vec![],
        _ => vec![d.clone()],
    });
    assert!(matches!(client_error(&w), Error::Timeout(_)));
    assert!(
        w.events
            .server
            .iter()
            .any(|e| matches!(e, ServerEvent::Established(_)))
    );
}

#[test]
fn dropping_the_client_confirmation_leaves_no_key_at_the_server() {
    let (mut w, mut rng) = world(&spec(), 15);
    w.client.connect(w.net.now, &mut rng).unwrap();
    w.run(&mut rng, &mut |d| match Message::decode(&d.payload) {
        Ok(Message::ClientFinished(_)) => vec![],
        _ => vec![d.clone()],
    });
    assert!(matches!(server_error(&w), Error::Timeout(_)));
    assert!(
        !w.events
            .server
            .iter()
            .any(|e| matches!(e, ServerEvent::Established(_)))
    );
}

#[test]
fn reordered_fragments_and_hellos_still_establish() {
    let (mut w, mut rng) = world(&spec(), 16);
    w.client.connect(w.net.now, &mut rng).unwrap();
    let mut held: Vec<Datagram> = Vec::new();
    // Fragments are held back and released after the next datagram, so they overtake nothing
    // and are overtaken by B's certificates; hellos are delivered in reverse.
    w.run(&mut rng, &mut |d| match Message::decode(&d.payload) {
        Ok(Message::Fragment(_) | Message::ClientHello(_)) => {
            held.push(d.clone());
            vec![]
        }
        _ => {
            let mut out = vec![d.clone()];
            out.append(&mut held);
            out
        }
    });
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
}

#[test]
fn garbage_datagrams_are_rejected_without_disturbing_the_session() {
    let (mut w, mut rng) = world(&spec(), 17);
    w.client.connect(w.net.now, &mut rng).unwrap();
    let targets = w.addrs.clone();
    let from = address(200, 9);
    for (i, to) in targets.iter().enumerate() {
        for junk in [
            vec![],
            vec![0xff; 3],
            vec![0x83, 0x01, 0x01, 0x40],
            vec![u8::try_from(i).unwrap(); 100],
        ] {
            w.net.inject(Datagram {
                at: w.net.now,
                from,
                to: *to,
                payload: junk,
            });
        }
    }
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let (a, b, _) = established(&w);
    assert_eq!(a, b);
    assert!(w.events.server.iter().any(|e| matches!(
        e,
        ServerEvent::Rejected {
            error: Error::Decode(_),
            ..
        }
    )));
}

#[test]
fn trust_steers_the_next_selection_away_from_bad_proxies() {
    let mut s = with_faults(&[(0, ProxyFault::Silent), (1, ProxyFault::ForgeFragment)]);
    s.proxies = 7;
    s.faults.resize(7, None);
    let mut rng = SeededRng::from_seed_u64(18);
    let topology = Topology::loopback(PORT, s.proxies);
    let mut configs = Configs::generate(&s, &topology, &mut rng).unwrap();
    configs.client.n = 5;
    let mut w = World::new(configs).unwrap();
    w.run_honest(&mut rng).unwrap();
    let (_, _, first) = established(&w);
    assert_eq!(first, names(3..=5));

    w.advance(Duration::from_secs(30), &mut rng);
    w.run_honest(&mut rng).unwrap();
    let second = w
        .events
        .client
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Established(est) => Some(est.participants.clone()),
            _ => None,
        })
        .nth(1)
        .expect("second session");
    assert_eq!(
        second,
        names(3..=7),
        "the two faulty proxies are not chosen again"
    );
}
