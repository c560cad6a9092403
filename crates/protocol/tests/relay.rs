//! The relay end to end (source → forwarder → sink), honest and under attack: epochs confine
//! sinks, the proxy holds no key, forged, tampered and replayed messages are refused, reordering
//! and loss are survived, rotation and resumption never reuse a key index or message id.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre;
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_protocol::Millis;
use m2msec_protocol::relay::{
    Body, Delivered, Error, Forwarded, Forwarder, SectionKey, SinkConfig, SkipReason, Source,
    SourceConfig, SourceSeed, StreamPosition, TrustedSource,
};
use m2msec_protocol::relay::{EpochRekey, Sink};
use m2msec_wire::cbor::{Bytes, SecretBytes};
use m2msec_wire::relay::{Flags, RelayMessage};

const SOURCE_URL: &str = "coap://192.0.2.1:5683/gw";
const SINK1: &str = "coap://192.0.2.10:5683/sink";
const SINK2: &str = "udp://192.0.2.11:9000";
/// 2023-11-14T22:13:20Z, in epoch 472 222 of one hour.
const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

struct Party {
    secret: pre::SecretKey,
    public: pre::PublicKey,
}

fn party(rng: &mut SeededRng) -> Party {
    let secret = pre::SecretKey::generate(rng);
    let public = secret.public_key();
    Party { secret, public }
}

struct World {
    rng: SeededRng,
    source: Source,
    owner: m2msec_crypto::sig::VerifyingKey,
    owner_pem: zeroize::Zeroizing<String>,
    seed: [u8; 32],
    sink1: Party,
    sink2: Party,
}

fn config() -> SourceConfig {
    SourceConfig::new(SOURCE_URL, 7)
}

fn world(config: SourceConfig, seed: u64) -> World {
    let mut rng = SeededRng::from_seed_u64(seed);
    let owner_key = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    let owner = owner_key.verifying_key();
    let owner_pem = owner_key.to_pem().unwrap();
    let seed_bytes = [seed.to_le_bytes()[0]; 32];
    let source = Source::new(
        config,
        SourceSeed::new(seed_bytes),
        owner_key,
        None,
        &mut rng,
    )
    .unwrap();
    let sink1 = party(&mut rng);
    let sink2 = party(&mut rng);
    World {
        rng,
        source,
        owner,
        owner_pem,
        seed: seed_bytes,
        sink1,
        sink2,
    }
}

impl World {
    fn trusted(&self) -> Vec<TrustedSource> {
        vec![TrustedSource {
            url: SOURCE_URL.into(),
            owner: self.owner.clone(),
        }]
    }

    /// The epoch of `T0`.
    fn epoch0(&self) -> u32 {
        self.source.epoch_at(Millis(T0)).unwrap()
    }

    fn sink1(&self) -> Sink {
        self.sink1_with(SinkConfig::default())
    }

    fn sink1_with(&self, config: SinkConfig) -> Sink {
        Sink::new(self.sink1.secret.clone(), self.trusted(), config)
    }

    fn rekeys1(&mut self, epochs: std::ops::RangeInclusive<u32>) -> Vec<EpochRekey> {
        self.source.rekeys_for(&self.sink1.public, epochs).unwrap()
    }

    /// A forwarder towards sink 1, granted `epochs`.
    fn forwarder1(&mut self, epochs: std::ops::RangeInclusive<u32>) -> Forwarder {
        Forwarder::new(SINK1.into(), self.rekeys1(epochs)).unwrap()
    }

    fn seal(&mut self, now: u64, data: &[u8]) -> Vec<RelayMessage> {
        self.source.seal(Millis(now), data, &mut self.rng).unwrap()
    }

    /// Seals `"{prefix}{i}"` at `T0 + i` for `i` in `0..n`.
    fn seal_numbered(&mut self, prefix: &str, n: u64) -> Vec<RelayMessage> {
        (0..n)
            .flat_map(|i| self.seal(T0 + i, format!("{prefix}{i}").as_bytes()))
            .collect()
    }
}

fn send(f: &mut Forwarder, m: &RelayMessage) -> RelayMessage {
    match f.transform(m) {
        Forwarded::Send(out) => out,
        Forwarded::Skip(reason) => panic!("skipped: {reason}"),
    }
}

fn send_all(f: &mut Forwarder, stored: &[RelayMessage]) -> Vec<RelayMessage> {
    stored.iter().map(|m| send(f, m)).collect()
}

fn skip(f: &mut Forwarder, m: &RelayMessage) -> SkipReason {
    match f.transform(m) {
        Forwarded::Send(out) => panic!("sent {:?}", out.header),
        Forwarded::Skip(reason) => reason,
    }
}

fn texts(d: &[Delivered]) -> Vec<String> {
    d.iter()
        .map(|d| String::from_utf8(d.plaintext.to_vec()).unwrap())
        .collect()
}

fn is_management(m: &RelayMessage) -> bool {
    m.header.flags.contains(Flags::MANAGEMENT)
}

#[test]
fn source_forwarder_sink_delivers_everything_in_order() {
    let mut cfg = config();
    cfg.rotate_messages = 40;
    let mut w = world(cfg, 1);
    let epoch = w.epoch0();
    assert_eq!(epoch, 472_222);
    let stored = w.seal_numbered("reading ", 100);
    // 3 sections of 40, 40, 20: 3 management + 100 data messages.
    assert_eq!(stored.len(), 103);
    assert_eq!(stored.iter().filter(|m| is_management(m)).count(), 3);
    // Every message survives its byte form (what the proxy stores).
    for m in &stored {
        assert_eq!(&RelayMessage::decode(&m.encode().unwrap()).unwrap(), m);
        assert!(m.header.sink.is_empty());
    }

    let mut fwd = w.forwarder1(epoch..=epoch);
    let mut sink = w.sink1();
    let mut delivered = Vec::new();
    for m in &stored {
        let out = send(&mut fwd, m);
        assert_eq!(out.header.sink, SINK1);
        assert_eq!(
            out.header.flags.contains(Flags::REENCRYPTED),
            is_management(m)
        );
        delivered.extend(sink.receive(Millis(T0 + 200), &out).unwrap());
    }
    let expected: Vec<String> = (0..100).map(|i| format!("reading {i}")).collect();
    assert_eq!(texts(&delivered), expected);
    assert!(delivered.iter().all(|d| d.epoch == epoch && !d.individual));
    let indices: Vec<u16> = delivered.iter().map(|d| d.key_index).collect();
    assert_eq!(indices[0], 0);
    assert_eq!(indices[40], 1);
    assert_eq!(indices[99], 2);

    // Costs: the source did 3 × (AFGH + signature) + one epoch key, 100 AEAD; the proxy 3
    // re-encryptions; the sink 3 × (AFGH + signature) and 100 AEAD.
    let s = w.source.op_counts();
    assert_eq!(s.symmetric, 100);
    assert_eq!(s.asymmetric, 3 * 2 + 1 + 1); // + the rekey
    assert_eq!(fwd.op_counts().asymmetric, 3);
    assert_eq!(sink.op_counts().asymmetric, 6);
    assert_eq!(sink.op_counts().symmetric, 100);
    assert_eq!(sink.stats().delivered, 100);
}

#[test]
fn message_ids_increment_per_stream_from_a_random_start() {
    let mut cfg = config();
    cfg.rotate_messages = 3;
    let mut w = world(cfg, 2);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.extend(w.seal(T0 + i, b"x").iter().map(|m| m.header.message_id));
    }
    for pair in ids.windows(2) {
        assert_eq!(pair[1], pair[0].wrapping_add(1));
    }
    let other = world(config(), 3).source.position().next_message_id();
    assert_ne!(ids[0], other, "random start per source");
}

#[test]
fn sink_window_confines_to_granted_epochs() {
    // Epochs of one second; a stream over five epochs, one section per epoch.
    let mut cfg = config();
    cfg.epoch_length = Duration::from_secs(1);
    cfg.rotate_after = Duration::from_secs(10);
    let mut w = world(cfg, 4);
    let e0 = w.epoch0();
    let mut stored = Vec::new();
    for e in 0..5u64 {
        for i in 0..3u64 {
            stored.extend(w.seal(T0 + e * 1000 + i * 100, format!("e{e} m{i}").as_bytes()));
        }
    }
    let bodies: Vec<u32> = stored
        .iter()
        .filter(|m| is_management(m))
        .map(|m| Body::from_bytes(&m.body).unwrap().epoch)
        .collect();
    assert_eq!(bodies, (e0..e0 + 5).collect::<Vec<_>>());

    // Sink 1 is granted epochs e0+1 ..= e0+2 only.
    let mut fwd = w.forwarder1(e0 + 1..=e0 + 2);
    let mut sink = w.sink1();
    let mut delivered = Vec::new();
    let mut skipped = Vec::new();
    for m in &stored {
        match fwd.transform(m) {
            Forwarded::Send(out) => {
                delivered.extend(sink.receive(Millis(T0 + 9000), &out).unwrap())
            }
            Forwarded::Skip(r) => skipped.push(r),
        }
    }
    assert_eq!(
        texts(&delivered),
        ["e1 m0", "e1 m1", "e1 m2", "e2 m0", "e2 m1", "e2 m2"]
    );
    assert_eq!(skipped.len(), 3 * 4);
    assert!(skipped.contains(&SkipReason::NoRekey { epoch: e0 }));
    assert!(skipped.contains(&SkipReason::NoRekey { epoch: e0 + 4 }));
    assert!(skipped.contains(&SkipReason::UnknownSection {
        stream_id: 7,
        key_index: 0
    }));

    // Even handed the messages of other epochs, the sink cannot open them.
    let outside: Vec<&RelayMessage> = stored
        .iter()
        .filter(|m| is_management(m))
        .filter(|m| {
            let e = Body::from_bytes(&m.body).unwrap().epoch;
            e == e0 || e == e0 + 3
        })
        .collect();
    for m in &outside {
        // As stored (second-level): only the source can open it.
        assert!(matches!(
            sink.receive(Millis(T0 + 9000), m),
            Err(Error::Malformed(_))
        ));
        // Re-encrypted by a proxy with a key of a granted epoch, relabelled to that epoch.
        let mut relabelled = (*m).clone();
        let mut body = Body::from_bytes(&m.body).unwrap();
        body.epoch = e0 + 1;
        relabelled.body = body.to_bytes();
        let out = send(&mut fwd, &relabelled);
        assert_eq!(
            sink.receive(Millis(T0 + 9000), &out),
            Err(Error::Authentication)
        );
        // With the granted key under its own epoch label.
        let rk = pre::ReKey::from_bytes(&w.rekeys1(e0 + 1..=e0 + 1)[0].rekey.0).unwrap();
        let c2 = pre::SecondLevel::from_bytes(&Body::from_bytes(&m.body).unwrap().afgh.0).unwrap();
        let mut forced = (*m).clone();
        forced.header.flags = forced.header.flags.with(Flags::REENCRYPTED);
        forced.body = Body {
            epoch: Body::from_bytes(&m.body).unwrap().epoch,
            afgh: Bytes(pre::reencrypt(&rk, &c2).to_bytes()),
        }
        .to_bytes();
        assert_eq!(
            sink.receive(Millis(T0 + 9000), &forced),
            Err(Error::Authentication)
        );
    }
    // Their data waits for a key that never comes, and is never delivered.
    let data_e0 = stored.iter().find(|m| !is_management(m)).unwrap();
    assert_eq!(sink.receive(Millis(T0 + 9000), data_e0).unwrap(), vec![]);
    assert_eq!(sink.buffered(), 1);
}

#[test]
fn the_proxy_never_holds_a_key_and_cannot_forge_one() {
    let mut w = world(config(), 5);
    let epoch = w.epoch0();
    let stored = w.seal(T0, b"secret reading");
    let rekeys = w.rekeys1(epoch..=epoch);
    let mut fwd = Forwarder::new(SINK1.into(), rekeys.clone()).unwrap();
    // What the proxy holds prints nothing secret and contains no section key.
    let debug = format!("{fwd:?}");
    assert!(debug.contains("epochs"), "{debug}");
    let management = send(&mut fwd, &stored[0]);
    // The proxy cannot open the stored management message with what it holds: its rekey is not
    // a secret key, and the first-level form is for the sink.
    let c1 =
        pre::FirstLevel::from_bytes(&Body::from_bytes(&management.body).unwrap().afgh.0).unwrap();
    let stranger = party(&mut w.rng);
    assert!(pre::open_first(&stranger.secret, &c1, &management.header.aad()).is_err());
    // A re-encryption key is no secret key.
    assert!(pre::SecretKey::from_bytes(&rekeys[0].rekey.0).is_err());

    // The proxy encrypts a key of its own choosing to the source's epoch public key (which it
    // may know), signed with its own key, re-encrypts it and sends it with data under that key.
    let public = w.source.epoch_public_key(epoch).unwrap();
    let proxy_key = SigningKey::generate(SigSuite::Ed25519, &mut w.rng).unwrap();
    let mut forged_header = stored[0].header.clone();
    forged_header.key_index = 1;
    forged_header.message_id = forged_header.message_id.wrapping_add(100);
    let aad = forged_header.aad();
    let mut sk = SectionKey {
        stream_id: 7,
        key_index: 1,
        suite: AeadSuite::ChaCha20Poly1305.id(),
        key: SecretBytes::new(vec![0x11; 32]),
        not_before_ms: T0 + 1,
        not_after_ms: T0 + 60_000,
        signature: Bytes::default(),
    };
    sk.signature = Bytes(proxy_key.sign(&mut w.rng, &sk.signed_input(&aad, epoch)));
    // A management message carrying `sk`, sealed to the epoch public key as the source would.
    let seal_section = |sk: &SectionKey, rng: &mut SeededRng| RelayMessage {
        header: forged_header.clone(),
        body: Body {
            epoch,
            afgh: Bytes(
                pre::seal(
                    &public,
                    rng,
                    AeadSuite::ChaCha20Poly1305,
                    &aad,
                    &sk.to_bytes(),
                )
                .unwrap()
                .to_bytes(),
            ),
        }
        .to_bytes(),
    };
    let forged = seal_section(&sk, &mut w.rng);
    // The proxy re-encrypts it like any other (it cannot see the signature)...
    let forged_out = send(&mut fwd, &forged);
    let mut sink = w.sink1();
    assert_eq!(sink.receive(Millis(T0), &management).unwrap(), vec![]);
    // ...and the sink refuses it.
    assert_eq!(
        sink.receive(Millis(T0), &forged_out),
        Err(Error::BadSignature)
    );
    // Unsigned (empty signature) too.
    sk.signature = Bytes::default();
    let unsigned = seal_section(&sk, &mut w.rng);
    let unsigned_out = send(&mut fwd, &unsigned);
    assert_eq!(
        sink.receive(Millis(T0), &unsigned_out),
        Err(Error::BadSignature)
    );
    // Data under the proxy's key waits for a section that never comes.
    let key = m2msec_crypto::aead::AeadKey::new(AeadSuite::ChaCha20Poly1305, &[0x11; 32]).unwrap();
    let mut data_header = forged_header;
    data_header.flags = Flags::STREAM;
    data_header.message_id = data_header.message_id.wrapping_add(1);
    let forged_data = RelayMessage {
        body: key.seal_random_nonce(&mut w.rng, &data_header.aad(), b"fake"),
        header: data_header,
    };
    assert_eq!(sink.receive(Millis(T0), &forged_data).unwrap(), vec![]);
    // The genuine data still arrives.
    let data = send(&mut fwd, &stored[1]);
    assert_eq!(
        texts(&sink.receive(Millis(T0), &data).unwrap()),
        ["secret reading"]
    );
    assert_eq!(sink.stats().delivered, 1);
}

#[test]
fn tampered_messages_are_refused() {
    let mut w = world(config(), 6);
    let epoch = w.epoch0();
    let stored = w.seal(T0, b"m0");
    let mut fwd = w.forwarder1(epoch..=epoch);
    let management = send(&mut fwd, &stored[0]);
    let data = send(&mut fwd, &stored[1]);
    let mut sink = w.sink1();

    // Management: a flipped byte anywhere in the AFGH ciphertext, or any authenticated header
    // field changed.
    let afgh_len = Body::from_bytes(&management.body).unwrap().afgh.0.len();
    for pos in [3, 100, 400, afgh_len - 1] {
        let mut body = Body::from_bytes(&management.body).unwrap();
        body.afgh.0[pos] ^= 0x01;
        let m = RelayMessage {
            header: management.header.clone(),
            body: body.to_bytes(),
        };
        let e = sink.receive(Millis(T0), &m).unwrap_err();
        assert!(
            matches!(e, Error::Authentication | Error::Malformed(_)),
            "{pos}: {e:?}"
        );
    }
    let mut m = management.clone();
    m.header.message_id ^= 1;
    assert_eq!(sink.receive(Millis(T0), &m), Err(Error::Authentication));
    let mut m = management.clone();
    m.header.key_index = 9;
    assert_eq!(sink.receive(Millis(T0), &m), Err(Error::Authentication));
    let mut m = management.clone();
    m.body.push(0);
    assert!(matches!(
        sink.receive(Millis(T0), &m),
        Err(Error::Decode(_))
    ));
    let mut m = management.clone();
    m.header.source = "coap://192.0.2.66/other".into();
    assert!(matches!(
        sink.receive(Millis(T0), &m),
        Err(Error::UnknownSource(_))
    ));
    // Nothing was installed by all that: data still waits.
    assert_eq!(sink.receive(Millis(T0), &data).unwrap(), vec![]);
    // The genuine management message (with a rewritten, unauthenticated sink URL) delivers it.
    let mut genuine = management;
    genuine.header.sink = "coap://192.0.2.99/elsewhere".into();
    assert_eq!(texts(&sink.receive(Millis(T0), &genuine).unwrap()), ["m0"]);

    // Data: body, message id, key index, stream id, flags.
    let more = w.seal(T0 + 1, b"m1");
    let data1 = send(&mut fwd, &more[0]);
    let mut d = data1.clone();
    let last = d.body.len() - 1;
    d.body[last] ^= 0x80;
    assert_eq!(sink.receive(Millis(T0), &d), Err(Error::Authentication));
    let mut d = data1.clone();
    d.header.message_id = d.header.message_id.wrapping_add(1000);
    assert_eq!(sink.receive(Millis(T0), &d), Err(Error::Authentication));
    let mut d = data1.clone();
    d.body.truncate(5);
    assert_eq!(sink.receive(Millis(T0), &d), Err(Error::Authentication));
    let mut d = data1.clone();
    d.header.flags = d.header.flags.with(Flags::REENCRYPTED);
    assert!(matches!(
        sink.receive(Millis(T0), &d),
        Err(Error::Malformed(_))
    ));
    let mut d = data1.clone();
    d.header.flags = Flags::MANAGEMENT;
    assert!(matches!(
        sink.receive(Millis(T0), &d),
        Err(Error::Malformed(_))
    ));
    // And the genuine one passes afterwards: refusals changed nothing.
    assert_eq!(texts(&sink.receive(Millis(T0), &data1).unwrap()), ["m1"]);
}

#[test]
fn replays_are_refused() {
    let mut w = world(config(), 7);
    let epoch = w.epoch0();
    let mut stored = w.seal(T0, b"a");
    stored.extend(w.seal(T0 + 1, b"b"));
    let mut fwd = w.forwarder1(epoch..=epoch);
    let out = send_all(&mut fwd, &stored);
    let mut sink = w.sink1();
    for m in &out {
        sink.receive(Millis(T0), m).unwrap();
    }
    for m in &out {
        assert_eq!(
            sink.receive(Millis(T0), m),
            Err(Error::Replay),
            "{:?}",
            m.header
        );
    }
    // A re-encryption of the same stored management message (a proxy redelivering) too.
    assert_eq!(
        sink.receive(Millis(T0), &send(&mut fwd, &stored[0])),
        Err(Error::Replay)
    );
    assert_eq!(sink.stats().delivered, 2);
}

#[test]
fn data_before_its_key_is_buffered_then_delivered() {
    let mut cfg = config();
    cfg.rotate_messages = 3;
    let mut w = world(cfg, 8);
    let epoch = w.epoch0();
    let stored = w.seal_numbered("d", 6);
    let mut fwd = w.forwarder1(epoch..=epoch);
    let out = send_all(&mut fwd, &stored);
    // out = [M0, d0, d1, d2, M1, d3, d4, d5]; deliver section 1 first, data before management.
    let mut sink = w.sink1();
    let now = Millis(T0 + 10);
    for i in [5, 7, 6] {
        assert_eq!(sink.receive(now, &out[i]).unwrap(), vec![]);
    }
    assert_eq!(sink.buffered(), 3);
    assert_eq!(sink.receive(now, &out[2]).unwrap(), vec![]);
    let released = sink.receive(now, &out[4]).unwrap();
    assert_eq!(texts(&released), ["d3", "d5", "d4"]);
    assert_eq!(sink.buffered(), 1);
    let released = sink.receive(now, &out[0]).unwrap();
    assert_eq!(texts(&released), ["d1"]);
    assert_eq!(texts(&sink.receive(now, &out[1]).unwrap()), ["d0"]);
    assert_eq!(texts(&sink.receive(now, &out[3]).unwrap()), ["d2"]);

    // The buffer is bounded, and waiting data expires.
    let mut small = w.sink1_with(SinkConfig {
        buffer_messages: 2,
        buffer_ttl: Duration::from_secs(1),
        ..SinkConfig::default()
    });
    small.receive(now, &out[1]).unwrap();
    small.receive(now, &out[2]).unwrap();
    assert_eq!(small.receive(now, &out[3]), Err(Error::BufferFull));
    // A second later the buffered data has expired and no longer blocks.
    let later = Millis(now.0 + 1001);
    small.receive(later, &out[3]).unwrap();
    assert_eq!(small.buffered(), 1);
    assert_eq!(small.stats().buffer_dropped, 2);
    assert_eq!(texts(&small.receive(later, &out[0]).unwrap()), ["d2"]);
}

#[test]
fn dropped_messages_do_not_break_later_sections() {
    let mut cfg = config();
    cfg.rotate_messages = 2;
    let mut w = world(cfg, 9);
    let epoch = w.epoch0();
    let stored = w.seal_numbered("d", 6);
    // [M0 d0 d1 M1 d2 d3 M2 d4 d5]: lose d0, all of section 1's management, and d5.
    let mut fwd = w.forwarder1(epoch..=epoch);
    let mut sink = w.sink1();
    let mut delivered = Vec::new();
    for (i, m) in stored.iter().enumerate() {
        let out = fwd.transform(m);
        if [1, 3, 8].contains(&i) {
            continue;
        }
        if let Forwarded::Send(out) = out {
            delivered.extend(sink.receive(Millis(T0 + 10), &out).unwrap());
        }
    }
    assert_eq!(texts(&delivered), ["d1", "d4"]);
    // Section 1's data waits in the buffer for a key that was lost.
    assert_eq!(sink.buffered(), 2);
}

#[test]
fn forwarder_skips_data_of_sections_it_never_saw() {
    let mut w = world(config(), 10);
    let epoch = w.epoch0();
    let stored = w.seal(T0, b"x");
    let mut fwd = w.forwarder1(epoch..=epoch);
    assert_eq!(
        skip(&mut fwd, &stored[1]),
        SkipReason::UnknownSection {
            stream_id: 7,
            key_index: 0
        }
    );
    send(&mut fwd, &stored[0]);
    send(&mut fwd, &stored[1]);
    // Re-encrypted input, junk bodies and meaningless flags are skipped, never a panic.
    let again = send(&mut fwd, &stored[0]);
    assert_eq!(skip(&mut fwd, &again), SkipReason::AlreadyReencrypted);
    let mut junk = stored[0].clone();
    junk.body = vec![0xff; 10];
    assert!(matches!(skip(&mut fwd, &junk), SkipReason::Malformed(_)));
    let mut junk = stored[0].clone();
    junk.header.flags = Flags::MANAGEMENT;
    assert!(matches!(skip(&mut fwd, &junk), SkipReason::Malformed(_)));
    let mut junk = stored[0].clone();
    let mut body = Body::from_bytes(&junk.body).unwrap();
    body.afgh.0.truncate(40);
    junk.body = body.to_bytes();
    assert!(matches!(skip(&mut fwd, &junk), SkipReason::Malformed(_)));
}

#[test]
fn rotation_by_count_time_and_epoch() {
    let mut cfg = config();
    cfg.rotate_messages = 5;
    cfg.rotate_after = Duration::from_secs(60);
    let mut w = world(cfg, 11);
    let sections = |msgs: &[RelayMessage]| -> Vec<(u16, u32)> {
        msgs.iter()
            .filter(|m| is_management(m))
            .map(|m| (m.header.key_index, Body::from_bytes(&m.body).unwrap().epoch))
            .collect()
    };
    let epoch = w.epoch0();
    // By count: the sixth message opens section 1.
    let mut out = Vec::new();
    for i in 0..6 {
        out.extend(w.seal(T0 + i, b"c"));
    }
    assert_eq!(sections(&out), [(0, epoch), (1, epoch)]);
    // By time: 60 s after section 1 started (at T0 + 5) its key is no longer used.
    assert!(sections(&w.seal(T0 + 5 + 59_999, b"t")).is_empty());
    assert_eq!(sections(&w.seal(T0 + 5 + 60_000, b"t")), [(2, epoch)]);
    // By epoch: the first message of the next epoch opens a section of that epoch.
    let next = (u64::from(epoch) + 1) * HOUR;
    assert!(sections(&w.seal(next - 1, b"e")).len() == 1); // section 2 expired: section 3
    assert_eq!(sections(&w.seal(next, b"e")), [(4, epoch + 1)]);

    // The signed validity ends with the epoch (read back by the source itself; another source's
    // reader, with another seed, cannot open it).
    let mut cfg = config();
    cfg.rotate_messages = 1000;
    let mut w2 = world(cfg, 12);
    let first = w2.seal(next - 10, b"v");
    let mut reader = w.source.own_reader(SinkConfig::default());
    assert_eq!(
        reader.receive(Millis(next), &first[0]),
        Err(Error::Authentication)
    );
    let mut reader2 = w2.source.own_reader(SinkConfig::default());
    assert_eq!(
        texts(&reader2.receive(Millis(next), &first[0]).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        texts(&reader2.receive(Millis(next), &first[1]).unwrap()),
        ["v"]
    );
    // Section key validity ends with its epoch: a section started 10 ms before the epoch's end
    // is valid for 10 ms, and the next seal in the new epoch rotates.
    let sk = section_key_of(&w2, &first[0]);
    assert_eq!((sk.not_before_ms, sk.not_after_ms), (next - 10, next - 1));
}

/// Opens a stored (second-level) management message with the source's epoch key, as the source
/// itself may.
fn section_key_of(w: &World, m: &RelayMessage) -> SectionKey {
    let body = Body::from_bytes(&m.body).unwrap();
    let secret = SourceSeed::new(w.seed).epoch_key(body.epoch).unwrap();
    let c2 = pre::SecondLevel::from_bytes(&body.afgh.0).unwrap();
    let plain = pre::open_second(&secret, &c2, &m.header.aad()).unwrap();
    SectionKey::from_bytes(&plain).unwrap()
}

#[test]
fn resuming_never_reuses_a_key_index_or_message_id() {
    let mut cfg = config();
    cfg.rotate_messages = 4;
    let mut rng = SeededRng::from_seed_u64(13);
    let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    let owner_bytes = owner.to_pem().unwrap();
    let seed = [13; 32];
    let mut source =
        Source::new(cfg.clone(), SourceSeed::new(seed), owner, None, &mut rng).unwrap();
    let mut first = Vec::new();
    let mut saved = source.position().to_bytes();
    for i in 0..6 {
        first.extend(source.seal(Millis(T0 + i), b"before", &mut rng).unwrap());
        saved = source.position().to_bytes();
    }
    // The device reboots: a new Source from the persisted position (and the same keys).
    let position = StreamPosition::from_bytes(&saved).unwrap();
    assert_eq!(position.next_key_index(), 2);
    let owner = SigningKey::from_pem(&owner_bytes).unwrap();
    let owner_public = owner.verifying_key();
    // The clock even went back a little.
    let mut resumed = Source::new(
        cfg.clone(),
        SourceSeed::new(seed),
        owner,
        Some(position),
        &mut rng,
    )
    .unwrap();
    let mut second = Vec::new();
    for _ in 0..6 {
        second.extend(resumed.seal(Millis(T0 - 1000), b"after", &mut rng).unwrap());
    }
    // A new section right away, with the next key index; ids continue.
    assert!(is_management(&second[0]));
    assert_eq!(second[0].header.key_index, 2);
    assert_eq!(
        second[0].header.message_id,
        first.last().unwrap().header.message_id.wrapping_add(1)
    );
    let ids: std::collections::HashSet<u32> = first
        .iter()
        .chain(&second)
        .map(|m| m.header.message_id)
        .collect();
    assert_eq!(ids.len(), first.len() + second.len());
    let mut indices: Vec<u16> = first
        .iter()
        .chain(&second)
        .filter(|m| is_management(m))
        .map(|m| m.header.key_index)
        .collect();
    indices.dedup();
    assert_eq!(indices, [0, 1, 2, 3]);

    // A sink reads both lives of the stream as one.
    let sink_party = party(&mut rng);
    let epoch = resumed.epoch_at(Millis(T0)).unwrap();
    let rekeys = resumed
        .rekeys_for(&sink_party.public, epoch..=epoch)
        .unwrap();
    let mut fwd = Forwarder::new(SINK1.into(), rekeys).unwrap();
    let mut sink = Sink::new(
        sink_party.secret,
        vec![TrustedSource {
            url: SOURCE_URL.into(),
            owner: owner_public,
        }],
        SinkConfig::default(),
    );
    let mut delivered = Vec::new();
    for m in first.iter().chain(&second) {
        delivered.extend(sink.receive(Millis(T0 + 10), &send(&mut fwd, m)).unwrap());
    }
    assert_eq!(delivered.len(), 12);

    // A position of another stream is refused.
    let mut other = cfg;
    other.stream_id = 8;
    let p = StreamPosition::from_bytes(&saved).unwrap();
    let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    assert!(matches!(
        Source::new(other, SourceSeed::new(seed), owner, Some(p), &mut rng),
        Err(Error::Config(_))
    ));
}

#[test]
fn key_index_wraps_and_the_new_section_replaces_the_old() {
    let mut cfg = config();
    cfg.rotate_messages = 1;
    let mut w = world(cfg.clone(), 14);
    let epoch = w.epoch0();
    let mut fwd = w.forwarder1(epoch..=epoch);
    let mut sink = w.sink1();
    // Sections 0 and 1.
    let mut before = Vec::new();
    for i in 0..2 {
        before.extend(w.seal(T0 + i, format!("b{i}").as_bytes()));
    }
    let mut delivered = Vec::new();
    for m in &before {
        delivered.extend(sink.receive(Millis(T0), &send(&mut fwd, m)).unwrap());
    }
    // Much later the stream reaches key index 65535: a position as a long-running source
    // would have persisted it ([1, 7, 2, id, floor, clock], the third item is one byte 0x02).
    let mut bytes = w.source.position().to_bytes();
    assert_eq!(bytes[3], 0x02);
    bytes.splice(3..4, [0x19, 0xff, 0xff]);
    let p = StreamPosition::from_bytes(&bytes).unwrap();
    assert_eq!(p.next_key_index(), 65535);
    let owner = SigningKey::from_pem(&w.owner_pem).unwrap();
    let mut wrapped_source =
        Source::new(cfg, SourceSeed::new(w.seed), owner, Some(p), &mut w.rng).unwrap();
    let mut wrapped = Vec::new();
    for i in 0..3 {
        let data = format!("w{i}");
        wrapped.extend(
            wrapped_source
                .seal(Millis(T0 + 10 + i), data.as_bytes(), &mut w.rng)
                .unwrap(),
        );
    }
    let indices: Vec<u16> = wrapped
        .iter()
        .filter(|m| is_management(m))
        .map(|m| m.header.key_index)
        .collect();
    assert_eq!(indices, [65535, 0, 1]);
    for m in &wrapped {
        delivered.extend(sink.receive(Millis(T0 + 20), &send(&mut fwd, m)).unwrap());
    }
    assert_eq!(texts(&delivered), ["b0", "b1", "w0", "w1", "w2"]);
    // The sections 0 and 1 of before the wrap cannot come back.
    assert_eq!(
        sink.receive(Millis(T0 + 20), &send(&mut fwd, &before[0])),
        Err(Error::Replay)
    );
    assert_eq!(
        sink.receive(Millis(T0 + 20), &send(&mut fwd, &before[2])),
        Err(Error::Replay)
    );
}

#[test]
fn a_rekey_for_one_sink_serves_no_other() {
    let mut w = world(config(), 15);
    let epoch = w.epoch0();
    let stored = w.seal(T0, b"for sink 1 only");
    let rekeys1 = w.rekeys1(epoch..=epoch);
    // The proxy points sink 1's keys at sink 2.
    let mut wrong = Forwarder::new(SINK2.into(), rekeys1.clone()).unwrap();
    let mut sink2 = Sink::new(w.sink2.secret.clone(), w.trusted(), SinkConfig::default());
    assert_eq!(
        sink2.receive(Millis(T0), &send(&mut wrong, &stored[0])),
        Err(Error::Authentication)
    );
    assert_eq!(
        sink2
            .receive(Millis(T0), &send(&mut wrong, &stored[1]))
            .unwrap(),
        vec![]
    );
    // With its own keys, sink 2 reads it.
    let rekeys2 = w.source.rekeys_for(&w.sink2.public, epoch..=epoch).unwrap();
    assert_ne!(rekeys1, rekeys2);
    let mut right = Forwarder::new(SINK2.into(), rekeys2).unwrap();
    let mut sink2 = Sink::new(w.sink2.secret.clone(), w.trusted(), SinkConfig::default());
    sink2
        .receive(Millis(T0), &send(&mut right, &stored[0]))
        .unwrap();
    assert_eq!(
        texts(
            &sink2
                .receive(Millis(T0), &send(&mut right, &stored[1]))
                .unwrap()
        ),
        ["for sink 1 only"]
    );
}

#[test]
fn individual_messages_end_to_end() {
    let mut w = world(config(), 16);
    let epoch = w.epoch0();
    let m = w
        .source
        .seal_individual(Millis(T0), b"alarm", &mut w.rng)
        .unwrap();
    assert_eq!(m.header.flags, Flags::empty());
    let mut fwd = w.forwarder1(epoch..=epoch);
    let out = send(&mut fwd, &m);
    assert!(out.header.flags.contains(Flags::REENCRYPTED));
    let mut sink = w.sink1();
    let d = sink.receive(Millis(T0), &out).unwrap();
    assert_eq!(texts(&d), ["alarm"]);
    assert!(d[0].individual);
    assert_eq!(d[0].individual_id(), m.header.individual_id());
    assert_eq!(sink.receive(Millis(T0), &out), Err(Error::Replay));
    // A changed id breaks the AFGH payload's authentication.
    let mut moved = out.clone();
    moved.header.key_index ^= 1;
    assert_eq!(sink.receive(Millis(T0), &moved), Err(Error::Authentication));
    // Outside the window: skipped.
    let later = w
        .source
        .seal_individual(Millis(T0 + HOUR), b"late", &mut w.rng)
        .unwrap();
    assert_eq!(
        skip(&mut fwd, &later),
        SkipReason::NoRekey { epoch: epoch + 1 }
    );
}

#[test]
fn the_source_reads_its_own_stored_messages() {
    let mut cfg = config();
    cfg.rotate_messages = 2;
    let mut w = world(cfg, 17);
    let mut stored = Vec::new();
    for i in 0..5u64 {
        stored.extend(w.seal(T0 + i * HOUR / 2, format!("r{i}").as_bytes()));
    }
    stored.push(
        w.source
            .seal_individual(Millis(T0), b"one-off", &mut w.rng)
            .unwrap(),
    );
    let results = w.source.open_own(Millis(T0 + 3 * HOUR), &stored);
    let delivered: Vec<Delivered> = results.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(texts(&delivered), ["r0", "r1", "r2", "r3", "r4", "one-off"]);
    // The own reader refuses what the proxy re-encrypted (that is for a sink).
    let epoch = w.epoch0();
    let mut fwd = w.forwarder1(epoch..=epoch);
    let out = send(&mut fwd, &stored[0]);
    let mut reader = w.source.own_reader(SinkConfig::default());
    assert!(matches!(
        reader.receive(Millis(T0), &out),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn validity_window_and_trust() {
    let mut w = world(config(), 18);
    let epoch = w.epoch0();
    let stored = w.seal(T0, b"x");
    let mut fwd = w.forwarder1(epoch..=epoch);
    let management = send(&mut fwd, &stored[0]);
    // A section from the future (the source's clock is 10 min ahead of the sink's).
    let mut sink = w.sink1();
    assert_eq!(
        sink.receive(Millis(T0 - 600_000), &management),
        Err(Error::OutsideValidity)
    );
    // Too old for a sink that accepts one day of backlog.
    let mut strict = w.sink1_with(SinkConfig {
        max_age: Some(Duration::from_secs(86_400)),
        ..SinkConfig::default()
    });
    assert_eq!(
        strict.receive(Millis(T0 + 2 * 86_400_000), &management),
        Err(Error::OutsideValidity)
    );
    // The default accepts old sections (store and forward).
    assert_eq!(
        sink.receive(Millis(T0 + 30 * 86_400_000), &management)
            .unwrap(),
        vec![]
    );
    // The right URL with another owner key: the signature fails.
    let impostor = SigningKey::generate(SigSuite::Ed25519, &mut w.rng).unwrap();
    let mut fooled = Sink::new(
        w.sink1.secret.clone(),
        vec![TrustedSource {
            url: SOURCE_URL.into(),
            owner: impostor.verifying_key(),
        }],
        SinkConfig::default(),
    );
    assert_eq!(
        fooled.receive(Millis(T0), &management),
        Err(Error::BadSignature)
    );
}

#[test]
fn evicted_sections_cannot_be_reopened() {
    let mut cfg = config();
    cfg.rotate_messages = 1;
    let mut w = world(cfg, 19);
    let epoch = w.epoch0();
    let stored = w.seal_numbered("s", 4);
    let mut fwd = w.forwarder1(epoch..=epoch);
    let out = send_all(&mut fwd, &stored);
    let mut sink = w.sink1_with(SinkConfig {
        max_sections: 2,
        ..SinkConfig::default()
    });
    for m in &out {
        sink.receive(Millis(T0), m).unwrap();
    }
    assert_eq!(sink.stats().sections_evicted, 2);
    // Replaying section 0 (management, then data) delivers nothing.
    assert_eq!(sink.receive(Millis(T0), &out[0]), Err(Error::Replay));
    assert_eq!(sink.receive(Millis(T0), &out[1]).unwrap(), vec![]);
    assert_eq!(sink.stats().delivered, 4);
}

#[test]
fn forwarder_state_survives_a_restart_and_follows_the_grant() {
    let mut w = world(config(), 20);
    let epoch = w.epoch0();
    let mut stored = w.seal(T0, b"a");
    stored.extend(w.seal(T0 + 1, b"b"));
    let rekeys = w.rekeys1(epoch..=epoch);
    let mut fwd = Forwarder::new(SINK1.into(), rekeys.clone()).unwrap();
    send(&mut fwd, &stored[0]);
    let snapshot = fwd.snapshot();
    // The proxy restarts after forwarding the management message.
    let mut restored = Forwarder::restore(SINK1.into(), rekeys.clone(), &snapshot).unwrap();
    send(&mut restored, &stored[1]);
    assert_eq!(restored.snapshot(), snapshot);
    // Without the snapshot the section's data would be skipped.
    let mut fresh = Forwarder::new(SINK1.into(), rekeys.clone()).unwrap();
    assert!(matches!(
        skip(&mut fresh, &stored[1]),
        SkipReason::UnknownSection { .. }
    ));
    // Bad snapshots are typed errors.
    assert!(Forwarder::restore(SINK1.into(), rekeys, &snapshot[..snapshot.len() - 1]).is_err());
    // The owner withdraws the epoch: the section's remaining data is skipped.
    restored.set_rekeys(vec![]).unwrap();
    assert!(matches!(
        skip(&mut restored, &stored[2]),
        SkipReason::UnknownSection { .. }
    ));
    assert_eq!(restored.epochs(), Vec::<u32>::new());
}

#[test]
fn grants_and_configs_are_checked() {
    let mut w = world(config(), 21);
    let epoch = w.epoch0();
    assert!(matches!(
        w.source.rekeys_for(&w.sink1.public, 0..=255),
        Err(Error::TooManyEpochs { requested: 256, .. })
    ));
    assert_eq!(
        w.source.rekeys_for(&w.sink1.public, 0..=254).unwrap().len(),
        255
    );
    #[allow(clippy::reversed_empty_ranges)]
    let empty = w.source.rekeys_for(&w.sink1.public, 5..=4).unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        w.source
            .epochs_between(Millis(T0), Millis(T0 + 2 * HOUR))
            .unwrap(),
        epoch..=epoch + 2
    );
    let mut twice = w.rekeys1(epoch..=epoch);
    twice.extend(w.rekeys1(epoch..=epoch));
    assert!(matches!(
        Forwarder::new(SINK1.into(), twice),
        Err(Error::Config(_))
    ));
    let bad = vec![EpochRekey {
        epoch,
        rekey: Bytes(vec![0x13, 1, 2, 3]),
    }];
    assert!(matches!(
        Forwarder::new(SINK1.into(), bad),
        Err(Error::Crypto(_))
    ));
    assert!(Forwarder::new("x".repeat(256), vec![]).is_err());
    let mut rng = SeededRng::from_seed_u64(1);
    for broken in [
        SourceConfig {
            rotate_messages: 0,
            ..config()
        },
        SourceConfig {
            rotate_after: Duration::ZERO,
            ..config()
        },
        SourceConfig {
            epoch_length: Duration::ZERO,
            ..config()
        },
        SourceConfig::new("", 1),
        SourceConfig::new("u".repeat(256), 1),
    ] {
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
        assert!(matches!(
            Source::new(broken, SourceSeed::new([1; 32]), owner, None, &mut rng),
            Err(Error::Config(_))
        ));
    }
    // An over-long plaintext for CCM-8 is refused and uses up nothing.
    let mut cfg = config();
    cfg.suite = AeadSuite::Aes128Ccm8;
    let mut w = world(cfg, 22);
    let before = w.source.position();
    assert!(matches!(
        w.source.seal(Millis(T0), &vec![0; 70_000], &mut w.rng),
        Err(Error::Crypto(_))
    ));
    assert_eq!(w.source.position(), before);
    assert_eq!(w.seal(T0, b"ok")[0].header.key_index, 0);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Arbitrary mutations of genuine messages: the forwarder and the sink answer, never panic.
        #[test]
        fn forwarder_and_sink_total(
            which in 0usize..3,
            flips in proptest::collection::vec((0usize..2000, 0u8..=255), 0..4),
            flags in 0u8..8,
            cut in proptest::option::of(0usize..2000),
        ) {
            let mut w = world(config(), 23);
            let epoch = w.epoch0();
            let mut stored = w.seal(T0, b"payload");
            stored.push(w.source.seal_individual(Millis(T0), b"one", &mut w.rng).unwrap());
            let mut fwd = w.forwarder1(epoch..=epoch);
            let mut m = stored[which].clone();
            for (pos, x) in &flips {
                if !m.body.is_empty() {
                    let p = pos % m.body.len();
                    m.body[p] ^= x;
                }
            }
            if let Some(c) = cut {
                m.body.truncate(c);
            }
            m.header.flags = Flags::from_bits(flags).unwrap();
            let mut sink = w.sink1();
            let _ = sink.receive(Millis(T0), &stored[0]);
            let _ = sink.receive(Millis(T0), &m);
            if let Forwarded::Send(out) = fwd.transform(&m) {
                let _ = sink.receive(Millis(T0), &out);
            }
        }
    }
}

#[test]
fn a_refused_seal_changes_nothing() {
    let mut cfg = config();
    cfg.suite = AeadSuite::Aes128Ccm8; // CCM-8 seals at most 65 535 bytes
    let mut w = world(cfg, 41);
    let first = w.source.seal(Millis(T0), b"one", &mut w.rng).unwrap();
    assert_eq!(
        first.len(),
        2,
        "a management message opens the first section"
    );
    let before = w.source.position().to_bytes();
    // Over the suite's plaintext limit, within the open section: refused.
    let huge = vec![0u8; 70_000];
    assert!(w.source.seal(Millis(T0 + 1), &huge, &mut w.rng).is_err());
    assert_eq!(w.source.position().to_bytes(), before);
    // The section is still current: no new management message, the next message id.
    let next = w.source.seal(Millis(T0 + 2), b"two", &mut w.rng).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].header.message_id,
        first[1].header.message_id.wrapping_add(1)
    );
    assert_eq!(next[0].header.key_index, first[1].header.key_index);
}
