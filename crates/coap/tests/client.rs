//! The client engine with no socket: a scripted server answers its datagrams, time is virtual.

use core::net::SocketAddr;
use core::time::Duration;

use m2msec_coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use m2msec_coap::{
    BlockOpt, Client, Config, Error, Event, MessageIds, RequestId, new_request, observe_value,
    piggybacked_response, set_uint_option, slice_block2,
};
use m2msec_crypto::rng::{SeededRng, random_array};
use m2msec_protocol::Millis;

fn server() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 5683))
}

fn client(config: Config, rng: &mut SeededRng) -> Client {
    Client::new(config, rng).expect("valid config")
}

/// Everything the client sent, decoded, with where it went.
fn sent(c: &mut Client) -> Vec<(SocketAddr, Packet)> {
    core::iter::from_fn(|| c.poll_transmit())
        .map(|t| {
            let p = Packet::from_bytes(&t.payload).expect("the client sends CoAP");
            (t.destination, p)
        })
        .collect()
}

fn one_sent(c: &mut Client) -> Packet {
    let mut all = sent(c);
    assert_eq!(all.len(), 1, "{all:?}");
    let (to, p) = all.remove(0);
    assert_eq!(to, server());
    p
}

fn events(c: &mut Client) -> Vec<Event> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

fn deliver(c: &mut Client, now: Millis, p: &Packet, rng: &mut SeededRng) {
    c.handle_datagram(now, server(), &p.to_bytes().expect("encodable"), rng);
}

/// An empty ACK or RST (RFC 7252 §4.1: code 0.00, no token).
fn empty(kind: MessageType, mid: u16) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(kind);
    p.header.code = MessageClass::Empty;
    p.header.message_id = mid;
    p
}

fn get(path: &str) -> Packet {
    new_request(RequestType::Get, path, true).expect("valid path")
}

fn response_of(events: Vec<Event>, id: RequestId) -> Packet {
    match events.as_slice() {
        [Event::Response { request, response }] if *request == id => response.clone(),
        other => panic!("expected the response to {id:?}, got {other:?}"),
    }
}

#[test]
fn retransmissions_follow_rfc7252_section_4_2() {
    // Over many draws, the first timeout lies in [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR]
    // and then doubles, and the exchange fails after MAX_RETRANSMIT retransmissions.
    let mut seen = Vec::new();
    for seed in 0..50 {
        let mut rng = SeededRng::from_seed_u64(seed);
        let mut c = client(Config::default(), &mut rng);
        let t0 = Millis(1_000_000);
        let id = c.request(t0, server(), get("x"), &mut rng).expect("valid");
        let first = one_sent(&mut c);
        assert_eq!(first.header.get_type(), MessageType::Confirmable);
        let mut deadline = c.poll_timeout().expect("a CON waits for its ACK");
        let initial = deadline.0 - t0.0;
        assert!(
            (2_000..=3_000).contains(&initial),
            "initial timeout {initial} ms"
        );
        seen.push(initial);
        let mut wait = initial;
        for _ in 0..4 {
            c.handle_timeout(Millis(deadline.0 - 1), &mut rng);
            assert!(sent(&mut c).is_empty(), "nothing before the deadline");
            c.handle_timeout(deadline, &mut rng);
            let again = one_sent(&mut c);
            assert_eq!(
                again.header.message_id, first.header.message_id,
                "same message"
            );
            assert_eq!(again.get_token(), first.get_token());
            wait *= 2;
            let next = c.poll_timeout().expect("still waiting");
            // Milliseconds: the doubled exact timeout, truncated.
            let gap = next.0 - deadline.0;
            assert!((wait..=wait + 16).contains(&gap), "{gap} ms after {wait}");
            deadline = next;
        }
        c.handle_timeout(deadline, &mut rng);
        assert!(sent(&mut c).is_empty());
        match events(&mut c).as_slice() {
            [
                Event::Failed {
                    request,
                    error:
                        Error::Timeout {
                            transmissions: 5, ..
                        },
                },
            ] => assert_eq!(*request, id),
            other => panic!("{other:?}"),
        }
        // RFC 7252 §4.8.2: all of it within MAX_TRANSMIT_WAIT.
        assert!(deadline.0 - t0.0 <= 93_000);
        assert_eq!(c.poll_timeout(), None);
    }
    seen.sort_unstable();
    assert!(seen[seen.len() - 1] - seen[0] > 200, "randomised: {seen:?}");
}

#[test]
fn piggybacked_and_separate_responses() {
    let mut rng = SeededRng::from_seed_u64(1);
    let mut c = client(Config::default(), &mut rng);
    let t = Millis(0);
    // Piggy-backed: the ACK carries the response; an ACK with another token does not count.
    let id = c.request(t, server(), get("a"), &mut rng).expect("valid");
    let req = one_sent(&mut c);
    let mut wrong = piggybacked_response(&req, ResponseType::Content);
    wrong.set_token(b"other".to_vec());
    deliver(&mut c, t, &wrong, &mut rng);
    assert!(events(&mut c).is_empty());
    let mut ack = piggybacked_response(&req, ResponseType::Content);
    ack.payload = b"hello".to_vec();
    deliver(&mut c, t, &ack, &mut rng);
    assert_eq!(response_of(events(&mut c), id).payload, b"hello");

    // Separate: an empty ACK stops retransmission, the CON response is acknowledged, and a
    // copy of it (our ACK lost) is acknowledged again without a second outcome.
    let id = c.request(t, server(), get("b"), &mut rng).expect("valid");
    let req = one_sent(&mut c);
    let empty = empty(MessageType::Acknowledgement, req.header.message_id);
    deliver(&mut c, t, &empty, &mut rng);
    let waiting = c.poll_timeout().expect("waits for the separate response");
    assert_eq!(waiting, t.after(Config::default().response_timeout));
    let mut ids = MessageIds::starting_at(0x4000);
    let separate = m2msec_coap::separate_response(&req, ResponseType::Content, &mut ids, true);
    deliver(&mut c, t, &separate, &mut rng);
    let ack = one_sent(&mut c);
    assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(ack.header.message_id, 0x4000);
    assert_eq!(ack.header.code, MessageClass::Empty);
    response_of(events(&mut c), id);
    deliver(&mut c, t.after(Duration::from_secs(1)), &separate, &mut rng);
    let again = one_sent(&mut c);
    assert_eq!(
        (again.header.get_type(), again.header.message_id),
        (MessageType::Acknowledgement, 0x4000)
    );
    assert!(
        events(&mut c).is_empty(),
        "a duplicate is not a second response"
    );
}

#[test]
fn no_response_after_an_empty_ack_fails() {
    let mut rng = SeededRng::from_seed_u64(2);
    let config = Config {
        response_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut c = client(config, &mut rng);
    let id = c
        .request(Millis(0), server(), get("x"), &mut rng)
        .expect("valid");
    let req = one_sent(&mut c);
    let empty = empty(MessageType::Acknowledgement, req.header.message_id);
    deliver(&mut c, Millis(10), &empty, &mut rng);
    assert_eq!(c.poll_timeout(), Some(Millis(5_010)));
    c.handle_timeout(Millis(5_010), &mut rng);
    assert!(
        sent(&mut c).is_empty(),
        "an acknowledged request is not retransmitted"
    );
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Failed { request, error: Error::NoResponse { .. } }] if *request == id
    ));
}

#[test]
fn a_reset_ends_the_exchange_and_strangers_get_one() {
    let mut rng = SeededRng::from_seed_u64(3);
    let mut c = client(Config::default(), &mut rng);
    let id = c
        .request(Millis(0), server(), get("x"), &mut rng)
        .expect("valid");
    let req = one_sent(&mut c);
    let rst = empty(MessageType::Reset, req.header.message_id);
    deliver(&mut c, Millis(1), &rst, &mut rng);
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Failed { request, error: Error::Reset { .. } }] if *request == id
    ));
    assert_eq!(c.poll_timeout(), None, "no retransmission after a Reset");

    // A CON response nobody waits for, and a CON request (a client serves nothing): Reset.
    let mut ids = MessageIds::starting_at(9);
    let stray = m2msec_coap::separate_response(&req, ResponseType::Content, &mut ids, true);
    deliver(&mut c, Millis(2), &stray, &mut rng);
    let r = one_sent(&mut c);
    assert_eq!(
        (r.header.get_type(), r.header.message_id),
        (MessageType::Reset, 9)
    );
    let mut ping = get("ping");
    ping.header.message_id = 77;
    deliver(&mut c, Millis(2), &ping, &mut rng);
    assert_eq!(one_sent(&mut c).header.get_type(), MessageType::Reset);
    // A NON request is ignored (RFC 7252 §4.3), and so is what is not CoAP.
    ping.header.set_type(MessageType::NonConfirmable);
    deliver(&mut c, Millis(2), &ping, &mut rng);
    c.handle_datagram(Millis(2), server(), &[0xff, 0, 1], &mut rng);
    assert!(sent(&mut c).is_empty());
}

#[test]
fn nstart_holds_back_the_second_request() {
    let mut rng = SeededRng::from_seed_u64(4);
    let mut c = client(Config::default(), &mut rng);
    let a = c
        .request(Millis(0), server(), get("a"), &mut rng)
        .expect("valid");
    let b = c
        .request(Millis(0), server(), get("b"), &mut rng)
        .expect("valid");
    let first = one_sent(&mut c);
    assert!(sent(&mut c).is_empty(), "NSTART 1: one at a time");
    deliver(
        &mut c,
        Millis(5),
        &piggybacked_response(&first, ResponseType::Content),
        &mut rng,
    );
    response_of(events(&mut c), a);
    let second = one_sent(&mut c);
    deliver(
        &mut c,
        Millis(6),
        &piggybacked_response(&second, ResponseType::Content),
        &mut rng,
    );
    response_of(events(&mut c), b);
    // A request abandoned while waiting its turn never goes out.
    let x = c
        .request(Millis(7), server(), get("x"), &mut rng)
        .expect("valid");
    let y = c
        .request(Millis(7), server(), get("y"), &mut rng)
        .expect("valid");
    let _ = one_sent(&mut c);
    c.cancel(Millis(8), y, &mut rng);
    c.cancel(Millis(8), x, &mut rng);
    assert!(sent(&mut c).is_empty());
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_send_error_fails_only_the_request_whose_datagram_it_was() {
    let mut rng = SeededRng::from_seed_u64(5);
    let config = Config {
        nstart: 2,
        ..Config::default()
    };
    let mut c = client(config, &mut rng);
    let [a, b, later] = ["a", "b", "c"].map(|path| {
        c.request(Millis(0), server(), get(path), &mut rng)
            .expect("valid")
    });
    let transmits: Vec<_> = core::iter::from_fn(|| c.poll_transmit()).collect();
    assert_eq!(transmits.len(), 2, "NSTART 2");
    let io = || Error::Io(std::io::Error::other("no route"));
    // An empty ACK this client sent, or a datagram to another peer, fails nothing.
    let mut ack = transmits[0].clone();
    ack.payload = empty(MessageType::Acknowledgement, 1)
        .to_bytes()
        .expect("encodable");
    c.fail_transmit(Millis(1), &ack, io(), &mut rng);
    let mut elsewhere = transmits[0].clone();
    elsewhere.destination = SocketAddr::from(([192, 0, 2, 9], 5683));
    c.fail_transmit(Millis(1), &elsewhere, io(), &mut rng);
    assert!(events(&mut c).is_empty());
    // The first request's datagram was not sent: it fails, and the request waiting for a slot
    // goes out.
    c.fail_transmit(Millis(1), &transmits[0], io(), &mut rng);
    match events(&mut c).as_slice() {
        [
            Event::Failed {
                request,
                error: Error::Io(_),
            },
        ] => assert_eq!(*request, a),
        other => panic!("{other:?}"),
    }
    let third = one_sent(&mut c);
    // The second request, to the same peer, still completes, and so does the one after it.
    let second = Packet::from_bytes(&transmits[1].payload).expect("CoAP");
    deliver(
        &mut c,
        Millis(2),
        &piggybacked_response(&second, ResponseType::Content),
        &mut rng,
    );
    response_of(events(&mut c), b);
    deliver(
        &mut c,
        Millis(3),
        &piggybacked_response(&third, ResponseType::Content),
        &mut rng,
    );
    response_of(events(&mut c), later);
}

/// A server holding a `size`-byte representation, serving it in 16-byte blocks.
fn block2_answer(req: &Packet, body: &[u8]) -> Packet {
    let mut r = piggybacked_response(req, ResponseType::Content);
    r.payload = body.to_vec();
    slice_block2(req, &mut r, 0);
    r
}

#[test]
fn block2_download_is_reassembled() {
    let mut rng = SeededRng::from_seed_u64(5);
    let mut c = client(Config::default(), &mut rng);
    let body: Vec<u8> = (0..=255u8).cycle().take(70).collect();
    let id = c
        .request(Millis(0), server(), get("big"), &mut rng)
        .expect("valid");
    let mut tokens = Vec::new();
    let mut blocks = 0;
    loop {
        let req = one_sent(&mut c);
        tokens.push(req.get_token().to_vec());
        deliver(&mut c, Millis(1), &block2_answer(&req, &body), &mut rng);
        blocks += 1;
        let evs = events(&mut c);
        if !evs.is_empty() {
            let whole = response_of(evs, id);
            assert_eq!(whole.payload, body);
            assert!(
                whole
                    .get_option(CoapOption::Block2)
                    .is_none_or(|l| l.is_empty())
            );
            break;
        }
        assert!(blocks < 10);
    }
    assert_eq!(blocks, 5, "70 bytes in 16-byte blocks");
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 5, "a fresh token per block");
}

#[test]
fn block2_restarts_when_the_representation_changes() {
    let mut rng = SeededRng::from_seed_u64(6);
    let mut c = client(Config::default(), &mut rng);
    let old = vec![1u8; 40];
    let new = vec![2u8; 40];
    let id = c
        .request(Millis(0), server(), get("big"), &mut rng)
        .expect("valid");
    let req = one_sent(&mut c);
    deliver(&mut c, Millis(1), &block2_answer(&req, &old), &mut rng);
    // Block 1 comes from the new representation (another ETag): the client starts again.
    let req = one_sent(&mut c);
    deliver(&mut c, Millis(2), &block2_answer(&req, &new), &mut rng);
    let restart = one_sent(&mut c);
    assert_eq!(
        BlockOpt::of(&restart, CoapOption::Block2),
        Ok(Some(BlockOpt {
            num: 0,
            more: false,
            szx: 0
        }))
    );
    let mut next = restart;
    loop {
        deliver(&mut c, Millis(3), &block2_answer(&next, &new), &mut rng);
        let evs = events(&mut c);
        if !evs.is_empty() {
            assert_eq!(response_of(evs, id).payload, new);
            break;
        }
        next = one_sent(&mut c);
    }
}

#[test]
fn block1_upload_goes_block_by_block() {
    let mut rng = SeededRng::from_seed_u64(7);
    let config = Config {
        block_szx: 0,
        ..Config::default()
    };
    let mut c = client(config, &mut rng);
    let mut asm = m2msec_coap::Block1Assembler::new(1024, 4, Duration::from_secs(60), 0);
    let mut ids = MessageIds::starting_at(1);
    let mut post = new_request(RequestType::Post, "up", true).expect("valid");
    post.payload = (0..50u8).collect();
    let id = c
        .request(Millis(0), server(), post.clone(), &mut rng)
        .expect("valid");
    for _ in 0..4 {
        let block = one_sent(&mut c);
        match asm.accept(server(), block, Millis(1), &mut ids) {
            m2msec_coap::Assembled::Respond(r) => deliver(&mut c, Millis(1), &r, &mut rng),
            m2msec_coap::Assembled::Complete(whole) => {
                assert_eq!(whole.payload, post.payload);
                let r = m2msec_coap::response(&whole, ResponseType::Changed, &mut ids);
                deliver(&mut c, Millis(1), &r, &mut rng);
            }
        }
    }
    let done = response_of(events(&mut c), id);
    assert_eq!(
        done.header.code,
        MessageClass::Response(ResponseType::Changed)
    );
}

fn notification(token: &[u8], mid: u16, observe: Option<u32>, payload: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::NonConfirmable);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    if let Some(o) = observe {
        set_uint_option(&mut p, CoapOption::Observe, o);
    }
    p.payload = payload.to_vec();
    p
}

fn notifications(c: &mut Client, id: RequestId) -> Vec<Vec<u8>> {
    events(c)
        .into_iter()
        .map(|e| match e {
            Event::Notification {
                observation,
                notification: Ok(p),
            } if observation == id => p.payload,
            Event::ObservationEnded { observation } if observation == id => b"<end>".to_vec(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn observe_orders_notifications_by_rfc7641_freshness() {
    let mut rng = SeededRng::from_seed_u64(8);
    let mut c = client(Config::default(), &mut rng);
    let id = c
        .observe(Millis(0), server(), "monitor", &mut rng)
        .expect("valid");
    let reg = one_sent(&mut c);
    assert_eq!(observe_value(&reg), Some(0));
    let token = reg.get_token().to_vec();
    assert_eq!(c.observation_token(id), Some(token.as_slice()));
    let mut first = piggybacked_response(&reg, ResponseType::Content);
    set_uint_option(&mut first, CoapOption::Observe, 5);
    deliver(&mut c, Millis(1), &first, &mut rng);
    response_of(events(&mut c), id);

    // 7, then 6 (older: dropped), then 8; a CON one is acknowledged, and a copy of it is
    // acknowledged again but not handed out twice.
    deliver(
        &mut c,
        Millis(2),
        &notification(&token, 10, Some(7), b"7"),
        &mut rng,
    );
    deliver(
        &mut c,
        Millis(3),
        &notification(&token, 11, Some(6), b"6"),
        &mut rng,
    );
    let mut con = notification(&token, 12, Some(8), b"8");
    con.header.set_type(MessageType::Confirmable);
    deliver(&mut c, Millis(4), &con, &mut rng);
    deliver(&mut c, Millis(5), &con, &mut rng);
    let acks = sent(&mut c);
    assert_eq!(acks.len(), 2);
    assert!(
        acks.iter()
            .all(|(_, a)| a.header.get_type() == MessageType::Acknowledgement
                && a.header.message_id == 12)
    );
    assert_eq!(notifications(&mut c, id), [b"7".to_vec(), b"8".to_vec()]);
    // Up to the top of the 24-bit space in two half-steps, then wrapped around: each newer.
    deliver(
        &mut c,
        Millis(6),
        &notification(&token, 13, Some(0x0080_0000), b"mid"),
        &mut rng,
    );
    deliver(
        &mut c,
        Millis(6),
        &notification(&token, 18, Some(0x00ff_ffff), b"max"),
        &mut rng,
    );
    deliver(
        &mut c,
        Millis(7),
        &notification(&token, 14, Some(2), b"wrapped"),
        &mut rng,
    );
    assert_eq!(
        notifications(&mut c, id),
        [b"mid".to_vec(), b"max".to_vec(), b"wrapped".to_vec()]
    );
    // An older number more than 128 s later is fresh again (RFC 7641 §3.4).
    deliver(
        &mut c,
        Millis(7 + 128_001),
        &notification(&token, 15, Some(1), b"late"),
        &mut rng,
    );
    assert_eq!(notifications(&mut c, id), [b"late".to_vec()]);
    // A response without Observe ends it; what follows gets a Reset.
    deliver(
        &mut c,
        Millis(200_000),
        &notification(&token, 16, None, b"final"),
        &mut rng,
    );
    assert_eq!(
        notifications(&mut c, id),
        [b"final".to_vec(), b"<end>".to_vec()]
    );
    deliver(
        &mut c,
        Millis(200_001),
        &notification(&token, 17, Some(9), b"x"),
        &mut rng,
    );
    assert_eq!(one_sent(&mut c).header.get_type(), MessageType::Reset);
    assert!(events(&mut c).is_empty());
}

#[test]
fn a_forgotten_observation_resets_its_next_notification() {
    let mut rng = SeededRng::from_seed_u64(9);
    let mut c = client(Config::default(), &mut rng);
    let id = c
        .observe(Millis(0), server(), "monitor", &mut rng)
        .expect("valid");
    let reg = one_sent(&mut c);
    let mut first = piggybacked_response(&reg, ResponseType::Content);
    set_uint_option(&mut first, CoapOption::Observe, 1);
    deliver(&mut c, Millis(1), &first, &mut rng);
    response_of(events(&mut c), id);
    c.forget_observation(Millis(2), id, &mut rng);
    let mut con = notification(reg.get_token(), 3, Some(2), b"n");
    con.header.set_type(MessageType::Confirmable);
    deliver(&mut c, Millis(3), &con, &mut rng);
    let rst = one_sent(&mut c);
    assert_eq!(
        (rst.header.get_type(), rst.header.message_id),
        (MessageType::Reset, 3)
    );
    assert!(events(&mut c).is_empty());
}

#[test]
fn an_observation_refused_or_not_supported() {
    let mut rng = SeededRng::from_seed_u64(10);
    let mut c = client(Config::default(), &mut rng);
    // 4.04: the registration fails with the status.
    let id = c
        .observe(Millis(0), server(), "gone", &mut rng)
        .expect("valid");
    let reg = one_sent(&mut c);
    deliver(
        &mut c,
        Millis(1),
        &piggybacked_response(&reg, ResponseType::NotFound),
        &mut rng,
    );
    match events(&mut c).as_slice() {
        [
            Event::Failed {
                request,
                error: Error::Status { code, .. },
            },
        ] => {
            assert_eq!(*request, id);
            assert_eq!(code, "4.04");
        }
        other => panic!("{other:?}"),
    }
    // 2.05 without Observe: the response, then the end.
    let id = c
        .observe(Millis(2), server(), "plain", &mut rng)
        .expect("valid");
    let reg = one_sent(&mut c);
    deliver(
        &mut c,
        Millis(3),
        &piggybacked_response(&reg, ResponseType::Content),
        &mut rng,
    );
    let evs = events(&mut c);
    assert!(matches!(evs.as_slice(), [
        Event::Response { request: a, .. },
        Event::ObservationEnded { observation: b },
    ] if *a == id && *b == id));
}

#[test]
fn a_block_wise_notification_is_completed_before_the_next() {
    let mut rng = SeededRng::from_seed_u64(11);
    let mut c = client(Config::default(), &mut rng);
    let id = c
        .observe(Millis(0), server(), "monitor", &mut rng)
        .expect("valid");
    let reg = one_sent(&mut c);
    let token = reg.get_token().to_vec();
    let mut first = piggybacked_response(&reg, ResponseType::Content);
    set_uint_option(&mut first, CoapOption::Observe, 1);
    deliver(&mut c, Millis(1), &first, &mut rng);
    response_of(events(&mut c), id);

    // Notification 2 is block 0 of 40 bytes; notification 3 arrives while it is completed.
    let big = vec![7u8; 40];
    let mut n2 = notification(&token, 20, Some(2), &big);
    slice_block2(&Packet::new(), &mut n2, 0);
    deliver(&mut c, Millis(2), &n2, &mut rng);
    let block1 = one_sent(&mut c);
    assert_eq!(block1.header.code, MessageClass::Request(RequestType::Get));
    assert_ne!(block1.get_token(), token.as_slice());
    deliver(
        &mut c,
        Millis(3),
        &notification(&token, 21, Some(3), b"small"),
        &mut rng,
    );
    assert!(events(&mut c).is_empty(), "in order: 2 first");
    let mut next = block1;
    loop {
        deliver(&mut c, Millis(4), &block2_answer(&next, &big), &mut rng);
        let out = sent(&mut c);
        if out.is_empty() {
            break;
        }
        next = out.into_iter().next().expect("one").1;
    }
    assert_eq!(notifications(&mut c, id), [big, b"small".to_vec()]);
}

#[test]
fn random_datagrams_never_panic() {
    let mut rng = SeededRng::from_seed_u64(12);
    let mut c = client(Config::default(), &mut rng);
    let _ = c
        .request(Millis(0), server(), get("x"), &mut rng)
        .expect("valid");
    let _ = c
        .observe(Millis(0), server(), "o", &mut rng)
        .expect("valid");
    for i in 0..20_000u64 {
        let bytes: [u8; 24] = random_array(&mut rng);
        let len = usize::from(bytes[0] % 24);
        let mut datagram = bytes[..len].to_vec();
        if let Some(first) = datagram.first_mut() {
            *first = (*first & 0x3f) | 0x40; // version 1, so the parser goes further
        }
        c.handle_datagram(Millis(i), server(), &datagram, &mut rng);
        let _ = sent(&mut c);
        let _ = events(&mut c);
    }
}
