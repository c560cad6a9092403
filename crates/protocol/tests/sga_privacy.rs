//! SGA identity privacy (paper 002 §2, "anonymity of identity"; `docs/sga.md`): a passive
//! observer of a whole run learns no device identity, pseudonyms rotate, and an active one
//! cannot replay or rewrite a message that carries a pseudonym.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::pke::PkeSuite;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::sga::sim::{Datagram, Spec, World};
use m2msec_protocol::sga::{ALIAS_EPOCH, DeviceEvent, Error, SessionId};
use m2msec_wire::sga::{AliasBytes, Message};

mod common;
use common::sga::{received, rejections, server_rejections};

/// The largest datagram the run may send: IPv6's minimum MTU less the IPv6 and UDP headers.
const MAX_DATAGRAM: usize = 1232;

fn attacker() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 66], 4444))
}

/// A whole run: both register, d_i invites d_j, they agree on a key, d_i sends while d_j is
/// away, the server restarts from its store, d_j polls and receives. Returns the session.
fn whole_run(w: &mut World, rng: &mut SeededRng) -> SessionId {
    w.register_all(rng).unwrap();
    let now = w.net.now;
    w.devices[0]
        .invite(now, rng, "device-j", AeadSuite::Aes128Ccm8)
        .unwrap();
    w.run_honest(rng);
    let session = w.events.devices[1]
        .iter()
        .find_map(|e| match e {
            DeviceEvent::Established { session, .. } => Some(*session),
            _ => None,
        })
        .expect("d_j holds a key");
    let j = w.addrs[2];
    let now = w.net.now;
    for text in ["m0", "m1"] {
        w.devices[0]
            .send(now, rng, session, text.as_bytes())
            .unwrap();
    }
    w.run(rng, &mut |d| {
        if d.to == j { vec![] } else { vec![d.clone()] }
    });
    w.restart_server().unwrap();
    w.advance(Duration::from_secs(1), rng);
    let now = w.net.now;
    w.devices[1].poll(now);
    w.run_honest(rng);
    assert_eq!(
        received(w, 1),
        [(0, b"m0".to_vec()), (1, b"m1".to_vec())],
        "{:?}",
        w.events.devices[1]
    );
    session
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The datagrams of `w`'s log that decode to a message `pick` selects.
fn captured(w: &World, pick: impl Fn(&Message) -> bool) -> Vec<Datagram> {
    w.net
        .log
        .iter()
        .filter(|d| Message::decode(&d.payload).is_ok_and(|m| pick(&m)))
        .cloned()
        .collect()
}

fn alias_of(d: &Datagram) -> AliasBytes {
    *Message::decode(&d.payload).unwrap().alias().unwrap()
}

fn inject_from_attacker(w: &mut World, rng: &mut SeededRng, d: &Datagram) {
    w.net.inject(Datagram {
        at: w.net.now,
        from: attacker(),
        ..d.clone()
    });
    w.run_honest(rng);
}

#[test]
fn a_whole_run_on_the_wire_names_no_device_and_fits_the_ipv6_minimum() {
    for (group, pke) in [
        (GroupId::Ristretto255, PkeSuite::X25519Ecies),
        (GroupId::Modp2048, PkeSuite::X25519Ecies),
        (GroupId::Modp2048, PkeSuite::RsaOaep2048),
    ] {
        let spec = Spec {
            group,
            pke,
            ..Spec::default()
        };
        let mut rng = SeededRng::from_seed_u64(160);
        let mut w = World::generate(&spec, &mut rng).unwrap();
        whole_run(&mut w, &mut rng);
        let kinds: std::collections::BTreeSet<&str> = w
            .net
            .log
            .iter()
            .map(|d| Message::decode(&d.payload).unwrap().name())
            .collect();
        for kind in [
            "RegisterRequest",
            "RegisterResponse",
            "Invite",
            "Negotiate",
            "NegotiateResponse",
            "InviteAccepted",
            "KeyShare",
            "KeyShareInvite",
            "KeyResult",
            "Deliver",
            "Stored",
            "Forward",
            "Delivered",
            "Poll",
        ] {
            assert!(kinds.contains(kind), "{group:?}: no {kind} in {kinds:?}");
        }
        for d in &w.net.log {
            for name in ["device-i", "device-j"] {
                assert!(
                    !contains(&d.payload, name.as_bytes()),
                    "{group:?}/{pke:?}: {name} in clear in {}",
                    Message::decode(&d.payload).unwrap().name()
                );
            }
            assert!(
                d.payload.len() <= MAX_DATAGRAM,
                "{group:?}/{pke:?}: a {} of {} bytes",
                Message::decode(&d.payload).unwrap().name(),
                d.payload.len()
            );
        }
    }
}

#[test]
fn pseudonyms_rotate_every_epoch_and_are_not_shared_between_devices() {
    let mut rng = SeededRng::from_seed_u64(161);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    whole_run(&mut w, &mut rng);
    let polls = |w: &World| captured(w, |m| matches!(m, Message::Poll(_)));
    let now = w.net.now;
    w.devices[0].poll(now);
    w.run_honest(&mut rng);
    let first = alias_of(polls(&w).last().unwrap());
    let j_alias = alias_of(&polls(&w)[0]);
    assert_ne!(first, j_alias, "two devices, one pseudonym");
    w.advance(ALIAS_EPOCH, &mut rng);
    let now = w.net.now;
    w.devices[0].poll(now);
    w.run_honest(&mut rng);
    let second = alias_of(polls(&w).last().unwrap());
    assert_ne!(first, second, "the pseudonym did not rotate");
    // The server still knows d_i by its new pseudonym: a message reaches it.
    assert!(server_rejections(&w).is_empty(), "{:?}", w.events.server);
}

#[test]
fn a_replayed_poll_is_refused_and_does_not_move_where_the_server_forwards() {
    let mut rng = SeededRng::from_seed_u64(162);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    let session = whole_run(&mut w, &mut rng);
    let poll = captured(&w, |m| matches!(m, Message::Poll(_)))
        .pop()
        .unwrap();
    // Within the clock window, from the attacker's address: refused.
    inject_from_attacker(&mut w, &mut rng, &poll);
    assert_eq!(server_rejections(&w), [&Error::Replayed]);
    // d_j is still where it was: the next message reaches it.
    let now = w.net.now;
    w.devices[0].send(now, &mut rng, session, b"m2").unwrap();
    w.run_honest(&mut rng);
    assert_eq!(received(&w, 1).len(), 3);
    assert!(
        !w.net.log.iter().any(|d| d.to == attacker()
            && matches!(Message::decode(&d.payload), Ok(Message::Forward(_)))),
        "a message was forwarded to the attacker"
    );
    // Two epochs later its pseudonym names nobody any more.
    w.advance(ALIAS_EPOCH * 2, &mut rng);
    inject_from_attacker(&mut w, &mut rng, &poll);
    assert!(
        matches!(server_rejections(&w).last(), Some(Error::UnknownDevice(n)) if n.starts_with("pseudonym ")),
        "{:?}",
        server_rejections(&w)
    );
}

#[test]
fn a_replayed_invite_is_refused() {
    let mut rng = SeededRng::from_seed_u64(163);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    whole_run(&mut w, &mut rng);
    let invite = captured(&w, |m| matches!(m, Message::Invite(_)))
        .pop()
        .unwrap();
    inject_from_attacker(&mut w, &mut rng, &invite);
    assert_eq!(server_rejections(&w), [&Error::Replayed]);
    assert!(rejections(&w, 1).is_empty(), "d_j was not invited again");
}

#[test]
fn a_rewritten_pseudonym_is_refused() {
    let mut rng = SeededRng::from_seed_u64(164);
    let mut w = World::generate(&Spec::default(), &mut rng).unwrap();
    let session = whole_run(&mut w, &mut rng);
    let now = w.net.now;
    w.devices[0].poll(now);
    w.run_honest(&mut rng);
    let polls = captured(&w, |m| matches!(m, Message::Poll(_)));
    let (j_alias, i_alias) = (alias_of(&polls[0]), alias_of(polls.last().unwrap()));
    let refused_before = server_rejections(&w).len();

    // A Deliver from d_i claiming to be from d_j: d_j's key does not open the recipient.
    let now = w.net.now;
    w.devices[0].send(now, &mut rng, session, b"m2").unwrap();
    let mut rewritten = 0;
    w.run(&mut rng, &mut |d| {
        let mut d = d.clone();
        if let Ok(Message::Deliver(mut m)) = Message::decode(&d.payload) {
            if rewritten < 2 {
                rewritten += 1;
                m.from = j_alias;
                d.payload = Message::Deliver(m).to_bytes();
            }
        }
        vec![d]
    });
    let refused = &server_rejections(&w)[refused_before..];
    assert_eq!(refused, [&Error::Authentication, &Error::Authentication]);
    // The genuine retry got through.
    assert_eq!(received(&w, 1).len(), 3);

    // A Poll whose pseudonym is flipped names nobody; one given d_j's fails d_j's MAC.
    let poll = polls.last().unwrap();
    for (alias, expected) in [
        (
            {
                let mut a = i_alias;
                a[0] ^= 1;
                a
            },
            "unknown",
        ),
        (j_alias, "authentication"),
    ] {
        let Ok(Message::Poll(mut m)) = Message::decode(&poll.payload) else {
            unreachable!("a Poll")
        };
        m.device = alias;
        m.timestamp += 1;
        let mut d = poll.clone();
        d.payload = Message::Poll(m).to_bytes();
        inject_from_attacker(&mut w, &mut rng, &d);
        let last = server_rejections(&w).last().copied().cloned();
        match expected {
            "unknown" => assert!(matches!(last, Some(Error::UnknownDevice(_))), "{last:?}"),
            _ => assert_eq!(last, Some(Error::Authentication)),
        }
    }
}
