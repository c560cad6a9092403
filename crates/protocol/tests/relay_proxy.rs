//! The relay proxy's engine state in memory, through the paper's scenario (paper 004 §IV): a
//! source stores while no sink is known, its owner designates sink 1 after some messages (it
//! gets everything from the start), sink 2 is added later (from the section in progress), and
//! each sink gets each message of its window exactly once. Retention, back-pressure, dedup of
//! retransmissions, owner authorisation (replayed, tampered and foreign requests refused) and a
//! restart from the store. No socket, no tokio: a `MemoryStore` and the engine's `Core`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use m2msec_crypto::pre;
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_protocol::Millis;
use m2msec_protocol::relay::proxy::authz::{self, Refused};
use m2msec_protocol::relay::proxy::records::{
    self, CURSORS_TABLE, CursorRecord, FORWARDS_TABLE, ForwardRecord, SIGNED_TABLE, SinkRecord,
    StorageCounters, StorageRecord, cursor_key, dedup_table, id_key, queue_table,
};
use m2msec_protocol::relay::proxy::retention::{
    self, Checkpoints, Op, dedup_key, management_stream,
};
use m2msec_protocol::relay::proxy::state::{ForwardState, SinkState, StorageState};
use m2msec_protocol::relay::proxy::{Core, Refusal, Written};
use m2msec_protocol::relay::{
    Forwarded, Forwarder, Sink, SinkConfig, Source, SourceConfig, SourceSeed, TrustedSource,
};
use m2msec_store::{MemoryStore, PushOutcome, Store};
use m2msec_wire::cbor::Bytes;
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::{Signed, signed_input};

const SOURCE_URL: &str = "coap://192.0.2.1:5683/gw";
const SINK1: &str = "coap://192.0.2.10:5683/sink";
const SINK2: &str = "udp://192.0.2.11:9000";
const T0: u64 = 1_700_000_000_000;
const SKEW_MS: u64 = 30_000;
/// Messages in flight per sink, as node's pumps (`deliver`'s window).
const WINDOW: usize = 16;
const STORAGE: u32 = 1;
const FORWARD: u32 = 1;

/// The proxy's engine over a store: what node's tasks do around `Core`, done inline.
struct Proxy {
    core: Core,
    store: MemoryStore,
    checkpoints: Checkpoints,
    /// One per sink, as node's pumps keep them.
    forwarders: BTreeMap<String, Forwarder>,
}

impl Proxy {
    fn new(owner: &SigningKey, capacity: u64) -> Self {
        let mut core = Core::new(capacity, 60, T0 / 1000);
        let record = StorageRecord {
            id: STORAGE,
            owner_key: records::to_hex(&owner.verifying_key().to_bytes()),
            source: SOURCE_URL.into(),
            capacity,
            udp: false,
            udp_port: None,
        };
        let store = MemoryStore::new();
        retention::apply(
            &store,
            &[Op::Put(
                records::STORAGES_TABLE,
                id_key(STORAGE).to_vec(),
                records::json(&record).unwrap(),
            )],
        )
        .unwrap();
        core.storages.insert(
            STORAGE,
            StorageState {
                record,
                owner: owner.verifying_key(),
                stats: Default::default(),
                pending_bytes: 0,
                counters: StorageCounters::default(),
                counters_dirty: false,
                forwards: Default::default(),
                handles: (),
            },
        );
        Self {
            core,
            store,
            checkpoints: Checkpoints::default(),
            forwarders: BTreeMap::new(),
        }
    }

    /// Admission and one group commit of `msgs` (node's `ingest` then `writer::commit`): every
    /// message is acknowledged (stored or recognised) or refused as full.
    fn ingest(&mut self, msgs: &[RelayMessage]) -> Result<Vec<PushOutcome>, Refusal> {
        let pairs: Vec<([u8; 9], Vec<u8>)> = msgs
            .iter()
            .map(|m| (dedup_key(&m.header), m.encode().unwrap()))
            .collect();
        let mut admitted = 0;
        for (_, v) in &pairs {
            let len = v.len() as u64;
            if let Err(e) = self.core.offer(STORAGE, &msgs[0].header.source, len) {
                self.core.release(STORAGE, admitted);
                if e == Refusal::Full {
                    self.core.count_refused(STORAGE, T0 / 1000);
                }
                return Err(e);
            }
            admitted += len;
        }
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], v.as_slice())).collect();
        let table = queue_table(STORAGE);
        let outcomes = self
            .store
            .queue_push_unique(&table, &dedup_table(STORAGE), &refs)
            .unwrap();
        let mut written = Written {
            admitted,
            stats: self.store.queue_stats(&table).unwrap(),
            ..Written::default()
        };
        for (outcome, (k, v)) in outcomes.iter().zip(&pairs) {
            match outcome {
                PushOutcome::Stored(seq) => {
                    written.stored += 1;
                    written.stored_bytes += v.len() as u64;
                    if let Some(stream) = management_stream(k) {
                        written.sections.push((stream, *seq));
                    }
                }
                PushOutcome::Duplicate(_) => written.duplicates += 1,
            }
        }
        self.core.on_written(STORAGE, written, T0 / 1000);
        Ok(outcomes)
    }

    /// `POST /forward` or a sink added by `control`, after the owner's signature is checked and
    /// its replay-cache entry written in the same transaction as the record.
    fn designate(
        &mut self,
        signed: &Signed,
        now_ms: u64,
        url: &str,
        start: u64,
        forwarder: Forwarder,
    ) -> Result<(), Refused> {
        let owner = self.core.storages[&STORAGE].owner.clone();
        authz::check("forward", signed, &owner, now_ms, SKEW_MS)?;
        let replay = authz::replay_key(signed);
        if self.store.get(SIGNED_TABLE, &replay).unwrap().is_some() {
            return Err(Refused::Unauthorized("replayed"));
        }
        let sink = SinkRecord {
            url: url.into(),
            rekeys: Vec::new(),
            start,
        };
        let f = self
            .core
            .forwards
            .entry(FORWARD)
            .or_insert_with(|| ForwardState {
                record: ForwardRecord {
                    id: FORWARD,
                    storage_id: STORAGE,
                    rate: 0,
                    paused: false,
                    sinks: Vec::new(),
                },
                sinks: BTreeMap::new(),
                handles: (),
            });
        f.record.sinks.push(sink);
        f.sinks.insert(
            url.into(),
            SinkState {
                pos: CursorRecord {
                    cursor: start,
                    ..CursorRecord::default()
                },
                dirty: true,
                handles: (),
                generation: 0,
            },
        );
        let record = records::json(&f.record).unwrap();
        self.core
            .storages
            .get_mut(&STORAGE)
            .unwrap()
            .forwards
            .insert(FORWARD);
        self.forwarders.insert(url.into(), forwarder);
        let until = (now_ms + 2 * SKEW_MS).to_be_bytes().to_vec();
        retention::apply(
            &self.store,
            &[
                Op::Put(SIGNED_TABLE, replay.to_vec(), until),
                Op::Put(FORWARDS_TABLE, id_key(FORWARD).to_vec(), record),
            ],
        )
        .unwrap();
        Ok(())
    }

    /// One round of sink `url`'s pump: up to a window of stored messages from its position,
    /// re-encrypted for it (node's `forward` + `deliver`, without the network).
    fn pump(&mut self, url: &str) -> Vec<RelayMessage> {
        let fwd = self.forwarders.get_mut(url).unwrap();
        let sink = self
            .core
            .forwards
            .get_mut(&FORWARD)
            .unwrap()
            .sinks
            .get_mut(url)
            .unwrap();
        let batch = self
            .store
            .queue_range(&queue_table(STORAGE), sink.pos.cursor, WINDOW)
            .unwrap();
        let mut out = Vec::new();
        for (seq, bytes) in batch {
            let m = RelayMessage::decode(&bytes).unwrap();
            match fwd.transform(&m) {
                Forwarded::Send(sent) => {
                    sink.pos.delivered += 1;
                    if sent
                        .header
                        .flags
                        .contains(m2msec_wire::relay::Flags::REENCRYPTED)
                    {
                        sink.pos.reencrypted += 1;
                    }
                    out.push(sent);
                }
                Forwarded::Skip(_) => sink.pos.skipped += 1,
            }
            sink.pos.cursor = seq + 1;
            sink.pos.snapshot = fwd.snapshot();
            sink.dirty = true;
        }
        out
    }

    /// A housekeeping round at monotonic `now`, committed.
    fn housekeep(&mut self, now: Millis, grace: Duration) -> Vec<Op> {
        let hk = self
            .core
            .housekeeping(now, &mut self.checkpoints, grace)
            .unwrap();
        retention::apply(&self.store, &hk.ops).unwrap();
        for id in hk.emptied {
            let stats = self.store.queue_stats(&queue_table(id)).unwrap();
            self.core.storages.get_mut(&id).unwrap().stats = stats;
        }
        hk.ops
    }
}

struct World {
    rng: SeededRng,
    source: Source,
    owner: SigningKey,
    sink1: pre::SecretKey,
    sink2: pre::SecretKey,
}

fn world() -> World {
    let mut rng = SeededRng::from_seed_u64(12);
    let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    let source_key = SigningKey::from_pem(&owner.to_pem().unwrap()).unwrap();
    let mut cfg = SourceConfig::new(SOURCE_URL, 7);
    cfg.rotate_messages = 5;
    let source = Source::new(cfg, SourceSeed::new([3; 32]), source_key, None, &mut rng).unwrap();
    let sink1 = pre::SecretKey::generate(&mut rng);
    let sink2 = pre::SecretKey::generate(&mut rng);
    World {
        rng,
        source,
        owner,
        sink1,
        sink2,
    }
}

impl World {
    /// Seals `"m{i}"` for `i` in `range`.
    fn seal(&mut self, range: std::ops::Range<u64>) -> Vec<RelayMessage> {
        range
            .flat_map(|i| {
                self.source
                    .seal(Millis(T0 + i), format!("m{i}").as_bytes(), &mut self.rng)
                    .unwrap()
            })
            .collect()
    }

    fn sign(&mut self, path: &str, ts: u64, payload: &[u8]) -> Signed {
        Signed {
            payload: Bytes(payload.to_vec()),
            timestamp_ms: ts,
            signature: Bytes(
                self.owner
                    .sign(&mut self.rng, &signed_input(path, ts, payload)),
            ),
            key: Bytes(self.owner.verifying_key().to_bytes()),
        }
    }

    fn grant(&mut self, sink: &pre::SecretKey, url: &str) -> Forwarder {
        let epoch = self.source.epoch_at(Millis(T0)).unwrap();
        let rekeys = self
            .source
            .rekeys_for(&sink.public_key(), epoch..=epoch)
            .unwrap();
        Forwarder::new(url.into(), rekeys).unwrap()
    }

    fn sink(&self, secret: &pre::SecretKey) -> Sink {
        Sink::new(
            secret.clone(),
            vec![TrustedSource {
                url: SOURCE_URL.into(),
                owner: self.owner.verifying_key(),
            }],
            SinkConfig::default(),
        )
    }
}

fn texts(sink: &mut Sink, msgs: &[RelayMessage]) -> Vec<String> {
    msgs.iter()
        .flat_map(|m| sink.receive(Millis(T0 + 1000), m).unwrap())
        .map(|d| String::from_utf8(d.plaintext.to_vec()).unwrap())
        .collect()
}

fn names(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[test]
fn the_papers_scenario_each_sink_gets_its_window_exactly_once() {
    let mut w = world();
    let mut proxy = Proxy::new(&w.owner, 1 << 20);
    let grace = Duration::from_secs(5);

    // No sink known: the proxy stores, and keeps everything (no forward, no retention).
    let first = w.seal(0..12);
    proxy.ingest(&first).unwrap();
    proxy.housekeep(Millis(0), grace);
    let held = proxy.core.storages[&STORAGE].stats;
    assert_eq!(held.len, first.len() as u64);
    assert_eq!(held.first_seq, Some(0));

    // A retransmission (the source missed the 2.04) is acknowledged, not stored again.
    let again = proxy.ingest(&first[3..5]).unwrap();
    assert!(matches!(
        again[..],
        [PushOutcome::Duplicate(3), PushOutcome::Duplicate(4)]
    ));
    let m = proxy.core.storage_monitor(STORAGE).unwrap();
    assert_eq!((m.stored_messages, m.duplicates), (first.len() as u64, 2));

    // The owner designates sink 1: it gets everything from the start.
    let signed = w.sign("forward", T0, b"sink 1");
    let f1 = w.grant(&w.sink1.clone(), SINK1);
    proxy.designate(&signed, T0, SINK1, 0, f1).unwrap();
    let mut sink1 = w.sink(&w.sink1.clone());
    let mut got1 = Vec::new();
    loop {
        let out = proxy.pump(SINK1);
        if out.is_empty() {
            break;
        }
        assert!(out.len() <= WINDOW);
        got1.extend(texts(&mut sink1, &out));
    }
    assert_eq!(got1, names(0..12));

    // More arrives; sink 2 is added in the middle of a section: it starts at the section in
    // progress (its management message), so its first message is that section's first.
    let second = w.seal(12..23);
    proxy.ingest(&second).unwrap();
    let start2 = proxy.core.now_position(STORAGE);
    let section = RelayMessage::decode(
        &proxy
            .store
            .queue_range(&queue_table(STORAGE), start2, 1)
            .unwrap()[0]
            .1,
    )
    .unwrap();
    assert!(
        section
            .header
            .flags
            .contains(m2msec_wire::relay::Flags::MANAGEMENT)
    );
    let signed2 = w.sign("forward", T0 + 5, b"sink 2");
    let f2 = w.grant(&w.sink2.clone(), SINK2);
    proxy
        .designate(&signed2, T0 + 5, SINK2, start2, f2)
        .unwrap();
    let third = w.seal(23..40);
    proxy.ingest(&third).unwrap();

    let mut sink2 = w.sink(&w.sink2.clone());
    let mut got2 = Vec::new();
    for _ in 0..10 {
        got1.extend(texts(&mut sink1, &proxy.pump(SINK1)));
        got2.extend(texts(&mut sink2, &proxy.pump(SINK2)));
    }
    assert_eq!(got1, names(0..40), "sink 1: everything, once, in order");
    // Sections of 5 data messages: 23 is in the section of 20..25.
    assert_eq!(
        got2,
        names(20..40),
        "sink 2: from the section in progress, once"
    );
    assert!(proxy.pump(SINK1).is_empty() && proxy.pump(SINK2).is_empty());

    // Both passed everything: housekeeping writes positions and removes what both passed;
    // the dedup keys stay for the grace period, so a late retransmission is still recognised.
    let ops = proxy.housekeep(Millis(10_000), grace);
    let next = proxy.core.storages[&STORAGE].stats.next_seq;
    assert!(ops.contains(&Op::QueueRemoveBelow(queue_table(STORAGE), next)));
    assert!(ops.contains(&Op::Put(
        CURSORS_TABLE,
        cursor_key(FORWARD, SINK2),
        proxy.core.forwards[&FORWARD].sinks[SINK2].pos.to_bytes()
    )));
    assert_eq!(proxy.core.storages[&STORAGE].stats.len, 0);
    let late = proxy.ingest(&first[..1]).unwrap();
    assert!(matches!(late[..], [PushOutcome::Duplicate(_)]));
    assert_eq!(proxy.core.storages[&STORAGE].stats.len, 0);
    // After the grace, the keys go too (with the counters the late copy changed).
    let ops = proxy.housekeep(Millis(16_000), grace);
    assert_eq!(
        ops.last(),
        Some(&Op::DedupForgetBelow(dedup_table(STORAGE), next))
    );
    assert!(ops.iter().all(|op| matches!(
        op,
        Op::Put(records::COUNTERS_TABLE, ..) | Op::DedupForgetBelow(..)
    )));
    assert!(proxy.housekeep(Millis(30_000), grace).is_empty());

    // The monitor says the same.
    let fm = proxy.core.forward_monitor(FORWARD).unwrap();
    let pending: Vec<u64> = fm.sinks.iter().map(|s| s.pending).collect();
    assert_eq!(pending, vec![0, 0]);

    // A restart reads back the storage, the forward with both sinks, and both positions.
    let loaded = records::load(&proxy.store).unwrap();
    assert_eq!(loaded.storages.len(), 1);
    assert_eq!(
        loaded.forwards,
        vec![proxy.core.forwards[&FORWARD].record.clone()]
    );
    let mut cursors: Vec<(String, u64)> = loaded
        .cursors
        .iter()
        .map(|((_, url), c)| (url.clone(), c.cursor))
        .collect();
    cursors.sort();
    assert_eq!(cursors, vec![(SINK1.into(), next), (SINK2.into(), next)]);
    assert!(loaded.skipped.is_empty());
}

#[test]
fn replayed_tampered_and_foreign_owner_requests_are_refused() {
    let mut w = world();
    let mut proxy = Proxy::new(&w.owner, 1 << 20);
    let signed = w.sign("forward", T0, b"sink 1");
    let f1 = w.grant(&w.sink1.clone(), SINK1);
    proxy.designate(&signed, T0, SINK1, 0, f1).unwrap();

    // The same request again: refused, and nothing changes.
    let f1 = w.grant(&w.sink1.clone(), SINK1);
    assert_eq!(
        proxy.designate(&signed, T0 + 1, SINK1, 0, f1),
        Err(Refused::Unauthorized("replayed"))
    );
    assert_eq!(proxy.core.forwards[&FORWARD].record.sinks.len(), 1);

    // Tampered payload, path, or timestamp: the signature no longer verifies.
    let mut tampered = w.sign("forward", T0 + 2, b"sink 2");
    tampered.payload = Bytes(b"sink 3".to_vec());
    let f2 = w.grant(&w.sink2.clone(), SINK2);
    assert_eq!(
        proxy.designate(&tampered, T0 + 2, SINK2, 0, f2),
        Err(Refused::Unauthorized("invalid signature"))
    );
    let other_path = w.sign("storage/1", T0 + 2, b"sink 2");
    let f2 = w.grant(&w.sink2.clone(), SINK2);
    assert!(proxy.designate(&other_path, T0 + 2, SINK2, 0, f2).is_err());
    // Stale.
    let old = w.sign("forward", T0 - 2 * SKEW_MS, b"sink 2");
    let f2 = w.grant(&w.sink2.clone(), SINK2);
    assert_eq!(
        proxy.designate(&old, T0, SINK2, 0, f2),
        Err(Refused::Unauthorized("stale timestamp"))
    );
    // Validly signed by someone who is not the owner: forbidden.
    let stranger = SigningKey::generate(SigSuite::Ed25519, &mut w.rng).unwrap();
    let input = signed_input("forward", T0, b"sink 2");
    let foreign = Signed {
        payload: Bytes(b"sink 2".to_vec()),
        timestamp_ms: T0,
        signature: Bytes(stranger.sign(&mut w.rng, &input)),
        key: Bytes(stranger.verifying_key().to_bytes()),
    };
    let f2 = w.grant(&w.sink2.clone(), SINK2);
    assert_eq!(
        proxy.designate(&foreign, T0, SINK2, 0, f2),
        Err(Refused::Forbidden)
    );
    assert_eq!(proxy.core.forwards[&FORWARD].record.sinks.len(), 1);

    // A stored message tampered with inside the proxy is refused by the sink.
    // (management, m0, m1 with its last byte flipped)
    let mut msgs = w.seal(0..2);
    assert_eq!(msgs.len(), 3);
    let last = msgs.last_mut().unwrap();
    let n = last.body.len();
    last.body[n - 1] ^= 1;
    proxy.ingest(&msgs).unwrap();
    let out = proxy.pump(SINK1);
    assert_eq!(out.len(), 3);
    let mut sink1 = w.sink(&w.sink1.clone());
    let now = Millis(T0 + 1000);
    assert!(sink1.receive(now, &out[0]).unwrap().is_empty());
    assert_eq!(texts(&mut sink1, &out[1..2]), names(0..1));
    assert!(sink1.receive(now, &out[2]).is_err());
    // And a redelivery of what it already has (a proxy replaying) is refused as a replay.
    assert_eq!(
        sink1.receive(now, &out[1]),
        Err(m2msec_protocol::relay::Error::Replay)
    );
    assert_eq!(sink1.stats().delivered, 1);
}

#[test]
fn back_pressure_refuses_what_does_not_fit_and_counts_it() {
    let mut w = world();
    let msgs = w.seal(0..3);
    let one = msgs[0].encode().unwrap().len() as u64;
    let mut proxy = Proxy::new(&w.owner, one + 1);
    proxy.ingest(&msgs[..1]).unwrap();
    assert_eq!(proxy.ingest(&msgs[1..2]), Err(Refusal::Full));
    let m = proxy.core.storage_monitor(STORAGE).unwrap();
    assert_eq!((m.stored_messages, m.rejected_full), (1, 1));
    assert_eq!(proxy.core.metrics.sum(T0 / 1000, 1).rejected_full, 1);
    // Nothing reserved is left behind by the refusal.
    assert_eq!(proxy.core.info().free, 1);
    // Another source's message is refused whatever the space.
    let mut foreign = msgs[2].clone();
    foreign.header.source = "coap://192.0.2.99/x".into();
    assert_eq!(proxy.ingest(&[foreign]), Err(Refusal::WrongSource));
}

// ---------------------------------------------------------------------------------------------
// The same scenario through the API role (`relay::proxy::Proxy`): requests in, answers, commits
// and events out, the commits applied to a `MemoryStore` as node's writer applies them.

mod api {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use m2msec_crypto::pre;
    use m2msec_crypto::sig::{SigSuite, SigningKey};
    use m2msec_protocol::Millis;
    use m2msec_protocol::relay::proxy::pump::{self, Outcome, Pump, Standing, Step};
    use m2msec_protocol::relay::proxy::records::{dedup_table, queue_table};
    use m2msec_protocol::relay::proxy::retention;
    use m2msec_protocol::relay::proxy::{
        Action, Event, Handled, Handles, Limits, Notification, OptionValue, Proxy, PumpSpec,
        Request, Response, Written, notification_format,
    };
    use m2msec_store::{MemoryStore, Store};
    use m2msec_wire::cbor::Bytes;
    use m2msec_wire::relay::RelayMessage;
    use m2msec_wire::relay::api::{
        Body, Control, ForwardMonitor, ForwardRequest, ForwardResponse, Info, Signed, SinkGrant,
        Start, StorageMonitor, StoreRequest, StoreResponse, signed_input,
    };
    use m2msec_wire::relay::coap::coap_lite::{CoapOption, RequestType, ResponseType};

    use super::{SINK1, SINK2, SKEW_MS, SOURCE_URL, T0, World, names, texts, world};

    /// Replies are numbered; nothing else is attached.
    #[derive(Debug)]
    struct Test;

    impl Handles for Test {
        type Storage = ();
        type Forward = ();
        type Sink = ();
        type Reply = u64;
    }

    fn limits(capacity: u64) -> Limits {
        Limits {
            capacity_bytes: capacity,
            max_message_bytes: 4096,
            load_window_s: 60,
            max_load_window_s: 600,
            max_age_when_full_s: 7,
            max_age_when_busy_s: 2,
            max_storages: 4,
            max_forwards: 4,
            max_sinks_per_forward: 4,
            signed_max_skew_s: 30,
            max_control_calls: 8,
        }
    }

    /// The role, its store, and what node's shell would run for it (a `Pump` per sink).
    struct Shell {
        proxy: Proxy<Test>,
        store: Arc<MemoryStore>,
        next_reply: u64,
        pumps: BTreeMap<String, Pump>,
        specs: BTreeMap<String, PumpSpec>,
        commits: usize,
    }

    impl Shell {
        fn new(capacity: u64) -> Self {
            let store = Arc::new(MemoryStore::new());
            let dyn_store: Arc<dyn Store> = store.clone();
            Self {
                proxy: Proxy::new(limits(capacity), dyn_store, Millis(T0)),
                store,
                next_reply: 0,
                pumps: BTreeMap::new(),
                specs: BTreeMap::new(),
                commits: 0,
            }
        }

        fn request(&mut self, method: RequestType, path: &str, payload: Vec<u8>) -> Request<u64> {
            self.next_reply += 1;
            Request {
                peer: "192.0.2.50:5683".parse().unwrap(),
                method,
                path: path.split('/').map(str::to_owned).collect(),
                query: Vec::new(),
                accept: None,
                proxy_uri: false,
                payload,
                message: None,
                reply: self.next_reply,
            }
        }

        /// One request at `now`, driven to its answer: commits applied, sockets "bound".
        fn call(&mut self, now: u64, req: Request<u64>) -> Response {
            let reply = req.reply;
            match self.proxy.handle_request(Millis(now), req) {
                Handled::Respond(r) => {
                    self.events();
                    return r;
                }
                Handled::Later => {}
                other => panic!("unexpected {other:?}"),
            }
            loop {
                let action = self.proxy.poll_action().expect("an answer comes");
                match action {
                    Action::Commit { ticket, ops } => {
                        retention::apply(&*self.store, &ops).unwrap();
                        self.commits += 1;
                        self.proxy.on_committed(ticket, Ok(()), Millis(now));
                    }
                    Action::BindUdp { ticket } => {
                        self.proxy
                            .on_udp_bound(ticket, Ok(Some(40_000)), Millis(now))
                    }
                    Action::Respond(to, r) => {
                        assert_eq!(to, reply);
                        self.events();
                        return r;
                    }
                }
            }
        }

        fn events(&mut self) {
            while let Some(e) = self.proxy.poll_event() {
                match e {
                    Event::StartPump(spec) => {
                        let p = Pump::new(spec.clone()).unwrap();
                        self.pumps.insert(spec.url.clone(), p);
                        self.specs.insert(spec.url.clone(), spec);
                    }
                    Event::StopPump(()) => {}
                    Event::StorageRemoved { .. } => self.pumps.clear(),
                    _ => {}
                }
            }
        }

        /// A relay message POSTed to storage 1, and (when admitted) one group commit as node's
        /// writer makes it.
        fn post(&mut self, msg: &RelayMessage) -> Response {
            let mut req = self.request(RequestType::Post, "storage/1", Vec::new());
            req.message = Some(Ok(msg.clone()));
            let admitted = match self.proxy.handle_request(Millis(T0), req) {
                Handled::Store(a) => a,
                Handled::Respond(r) => return r,
                other => panic!("unexpected {other:?}"),
            };
            let table = queue_table(admitted.storage);
            let outcomes = self
                .store
                .queue_push_unique(
                    &table,
                    &dedup_table(admitted.storage),
                    &[(&admitted.key[..], &admitted.value[..])],
                )
                .unwrap();
            let written = Written::tally(
                &[(admitted.key, admitted.value.clone())],
                &outcomes,
                self.store.queue_stats(&table).unwrap(),
            );
            self.proxy.on_written(admitted.storage, written, T0 / 1000);
            Response::code(ResponseType::Changed)
        }

        /// Sink `url`'s pump (the engine's `Pump`, as node's shell drives it) until it has
        /// nothing left to do; every delivery succeeds at once here: what it delivers.
        fn pump(&mut self, url: &str) -> Vec<RelayMessage> {
            let storage = self.specs[url].storage_id;
            let pump = self.pumps.get_mut(url).unwrap();
            let mut out = Vec::new();
            loop {
                match pump.poll(&mut self.proxy, Duration::ZERO, Millis(T0)) {
                    Step::Read(cursor) => {
                        let batch = self
                            .store
                            .queue_range(&queue_table(storage), cursor, pump::READ_BATCH)
                            .unwrap();
                        if batch.is_empty() {
                            return out;
                        }
                        pump.on_read(batch);
                    }
                    Step::Send(delivery, pause) => {
                        assert_eq!(pause, Duration::ZERO, "nothing failed");
                        out.push(delivery.message().unwrap().clone());
                        pump.on_done(delivery, Outcome::Accepted);
                    }
                    Step::Skipped { .. } => {}
                    Step::Idle { .. } => return out,
                    Step::Gone => {
                        // Only a forward or sink the engine no longer has ends a pump.
                        let standing = self.proxy.standing(&self.specs[url]);
                        assert_eq!(standing, Standing::Gone, "a pump ended while it stands");
                        return out;
                    }
                    step => panic!("unexpected {step:?}"),
                }
            }
        }

        fn get(&mut self, path: &str) -> Vec<u8> {
            let req = self.request(RequestType::Get, path, Vec::new());
            match self.proxy.handle_request(Millis(T0), req) {
                Handled::Respond(r)
                | Handled::Monitor {
                    response: Some(r), ..
                } => {
                    assert_eq!(r.code, ResponseType::Content, "{path}");
                    r.payload
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn signed(
        w: &mut World,
        key: Option<&SigningKey>,
        path: &str,
        ts: u64,
        body: Vec<u8>,
    ) -> Vec<u8> {
        let key = key.unwrap_or(&w.owner);
        Signed {
            signature: Bytes(key.sign(&mut w.rng, &signed_input(path, ts, &body))),
            payload: Bytes(body),
            timestamp_ms: ts,
            key: Bytes(key.verifying_key().to_bytes()),
        }
        .to_bytes()
    }

    fn grant(w: &mut World, sink: &pre::SecretKey, url: &str) -> SinkGrant {
        let epoch = w.source.epoch_at(Millis(T0)).unwrap();
        SinkGrant {
            url: url.into(),
            rekeys: w
                .source
                .rekeys_for(&sink.public_key(), epoch..=epoch)
                .unwrap(),
        }
    }

    fn diagnostic(r: &Response) -> (ResponseType, String) {
        (r.code, r.text())
    }

    fn uint(r: &Response, option: CoapOption) -> Option<u32> {
        r.options.iter().find_map(|(o, v)| match v {
            OptionValue::Uint(n) if *o == option => Some(*n),
            _ => None,
        })
    }

    fn create_storage(shell: &mut Shell, w: &World, capacity: u64) -> Response {
        let body = StoreRequest {
            owner_key: Bytes(w.owner.verifying_key().to_bytes()),
            source: SOURCE_URL.into(),
            capacity,
            udp: true,
        };
        let req = shell.request(RequestType::Post, "store", body.to_bytes());
        shell.call(T0, req)
    }

    #[test]
    fn the_papers_scenario_through_the_api() {
        let mut w = world();
        let mut shell = Shell::new(1 << 20);

        // `store`: 2.01 with its Location, the UDP port bound for it, committed before.
        let r = create_storage(&mut shell, &w, 0);
        assert_eq!(r.code, ResponseType::Created);
        let created = StoreResponse::from_bytes(&r.payload).unwrap();
        assert_eq!((created.storage_id, created.udp_port), (1, Some(40_000)));
        let location: Vec<&OptionValue> = r
            .options
            .iter()
            .filter(|(o, _)| *o == CoapOption::LocationPath)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            location,
            [
                &OptionValue::Bytes(b"storage".to_vec()),
                &OptionValue::Bytes(b"1".to_vec())
            ]
        );
        assert_eq!(shell.commits, 1);

        // No sink known: messages are stored, a retransmission is acknowledged once stored.
        let first = w.seal(0..12);
        for m in &first {
            assert_eq!(shell.post(m).code, ResponseType::Changed);
        }
        assert_eq!(shell.post(&first[3]).code, ResponseType::Changed);
        // Its observers are notified once of all that, with the latest state (RFC 7641 §4.2);
        // nobody observes the forward monitors.
        let observed = |path: &str| path == "storage/1/monitor";
        match &shell.proxy.notifications(observed)[..] {
            [Notification::Changed { path, repr }] => {
                assert_eq!(path, "storage/1/monitor");
                let m = StorageMonitor::from_bytes(&repr.render(notification_format(None)));
                assert_eq!(m.unwrap().received, first.len() as u64 + 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(shell.proxy.notifications(observed).is_empty());
        let m = StorageMonitor::from_bytes(&shell.get("storage/1/monitor")).unwrap();
        assert_eq!((m.stored_messages, m.duplicates), (first.len() as u64, 1));

        // The owner forwards to sink 1 from the beginning.
        let key = w.sink1.clone();
        let g1 = grant(&mut w, &key, SINK1);
        let body = ForwardRequest {
            storage_id: 1,
            sinks: vec![g1],
            rate: 0,
            start: Start::Beginning,
        };
        let payload = signed(&mut w, None, "forward", T0, body.to_bytes());
        let req = shell.request(RequestType::Post, "forward", payload.clone());
        let r = shell.call(T0, req);
        assert_eq!(r.code, ResponseType::Created);
        assert_eq!(
            ForwardResponse::from_bytes(&r.payload).unwrap().forward_id,
            1
        );
        let mut sink1 = w.sink(&w.sink1.clone());
        let mut got1 = texts(&mut sink1, &shell.pump(SINK1));
        assert_eq!(got1, names(0..12));

        // The same signed request again: refused as a replay, nothing written.
        let commits = shell.commits;
        let req = shell.request(RequestType::Post, "forward", payload);
        assert_eq!(
            diagnostic(&shell.call(T0 + 1, req)),
            (ResponseType::Unauthorized, "replayed request".into())
        );
        assert_eq!(shell.commits, commits);

        // Sink 2 is added from the section in progress, through the forward's control.
        let second = w.seal(12..23);
        for m in &second {
            shell.post(m);
        }
        let key = w.sink2.clone();
        let g2 = grant(&mut w, &key, SINK2);
        let add = Control::AddSink(g2, Start::Now).to_bytes();
        let payload = signed(&mut w, None, "forward/1/control", T0 + 5, add);
        let req = shell.request(RequestType::Post, "forward/1/control", payload);
        assert_eq!(shell.call(T0 + 5, req).code, ResponseType::Changed);
        for m in &w.seal(23..40) {
            shell.post(m);
        }
        let mut sink2 = w.sink(&w.sink2.clone());
        got1.extend(texts(&mut sink1, &shell.pump(SINK1)));
        let got2 = texts(&mut sink2, &shell.pump(SINK2));
        assert_eq!(got1, names(0..40), "sink 1: everything, once, in order");
        assert_eq!(got2, names(20..40), "sink 2: from the section in progress");

        // A new rate: each pump starts again at it where it was, and nothing goes twice.
        let set_rate = Control::SetRate(50).to_bytes();
        let payload = signed(&mut w, None, "forward/1/control", T0 + 5, set_rate);
        let req = shell.request(RequestType::Post, "forward/1/control", payload);
        assert_eq!(shell.call(T0 + 5, req).code, ResponseType::Changed);
        assert!(shell.specs.values().all(|spec| spec.rate == 50));
        assert!(shell.pump(SINK1).is_empty() && shell.pump(SINK2).is_empty());

        // Pause: the forward's monitor says so; a pump finds nothing to do.
        let pause = signed(
            &mut w,
            None,
            "forward/1/control",
            T0 + 6,
            Control::Pause.to_bytes(),
        );
        let req = shell.request(RequestType::Post, "forward/1/control", pause);
        assert_eq!(shell.call(T0 + 6, req).code, ResponseType::Changed);
        let fm = ForwardMonitor::from_bytes(&shell.get("forward/1/monitor")).unwrap();
        assert!(fm.paused);
        assert_eq!(shell.proxy.standing(&shell.specs[SINK1]), Standing::Paused);
        assert!(shell.pump(SINK1).is_empty());
        let delivered: Vec<u64> = fm.sinks.iter().map(|s| s.delivered).collect();
        // Sections of 5: 40 data messages and 8 section keys; 20 and 4 from the section of 20.
        assert_eq!(
            delivered,
            [48, 24],
            "each data message and each section key, once"
        );
        assert_eq!(fm.sinks.len(), 2);
        let info = Info::from_bytes(&shell.get("info")).unwrap();
        assert_eq!((info.storages, info.forwards), (1, 1));

        // Delete: the storage, its forward and its messages go.
        let delete = signed(&mut w, None, "storage/1", T0 + 7, Vec::new());
        let req = shell.request(RequestType::Delete, "storage/1", delete);
        assert_eq!(shell.call(T0 + 7, req).code, ResponseType::Deleted);
        assert!(shell.proxy.storages.is_empty() && shell.proxy.forwards.is_empty());
        assert_eq!(shell.proxy.standing(&shell.specs[SINK1]), Standing::Gone);
        assert!(matches!(
            &shell.proxy.notifications(observed)[..],
            [Notification::Ended {
                code: ResponseType::NotFound,
                ..
            }]
        ));
        assert_eq!(shell.store.queue_stats(&queue_table(1)).unwrap().len, 0);
        let req = shell.request(RequestType::Get, "storage/1/monitor", Vec::new());
        assert!(matches!(
            shell.proxy.handle_request(Millis(T0), req),
            Handled::Monitor { response: None, .. }
        ));
    }

    #[test]
    fn unauthorised_tampered_stale_and_replayed_control_is_refused() {
        let mut w = world();
        let mut shell = Shell::new(1 << 20);
        assert_eq!(
            create_storage(&mut shell, &w, 0).code,
            ResponseType::Created
        );
        let key = w.sink1.clone();
        let g1 = grant(&mut w, &key, SINK1);
        let body = ForwardRequest {
            storage_id: 1,
            sinks: vec![g1.clone()],
            rate: 0,
            start: Start::Beginning,
        }
        .to_bytes();

        // Not signed at all.
        let req = shell.request(RequestType::Post, "forward", body.clone());
        assert_eq!(
            diagnostic(&shell.call(T0, req)),
            (
                ResponseType::Unauthorized,
                "no owner signature (api::Signed)".into()
            )
        );
        // Validly signed by a stranger: 4.03.
        let stranger = SigningKey::generate(SigSuite::Ed25519, &mut w.rng).unwrap();
        let payload = signed(&mut w, Some(&stranger), "forward", T0, body.clone());
        let req = shell.request(RequestType::Post, "forward", payload);
        assert_eq!(shell.call(T0, req).code, ResponseType::Forbidden);
        // Tampered: the grant changed after signing.
        let mut tampered =
            Signed::from_bytes(&signed(&mut w, None, "forward", T0, body.clone())).unwrap();
        tampered.payload = Bytes(
            ForwardRequest {
                storage_id: 1,
                sinks: vec![g1],
                rate: 1,
                start: Start::Beginning,
            }
            .to_bytes(),
        );
        let req = shell.request(RequestType::Post, "forward", tampered.to_bytes());
        assert_eq!(
            diagnostic(&shell.call(T0, req)),
            (ResponseType::Unauthorized, "invalid signature".into())
        );
        // Stale.
        let payload = signed(&mut w, None, "forward", T0 - 2 * SKEW_MS, body.clone());
        let req = shell.request(RequestType::Post, "forward", payload);
        assert_eq!(
            diagnostic(&shell.call(T0, req)),
            (ResponseType::Unauthorized, "stale timestamp".into())
        );
        assert!(shell.proxy.forwards.is_empty());
        assert_eq!(shell.commits, 1, "only the storage was written");

        // The owner's: accepted; its replay on control and delete refused.
        let payload = signed(&mut w, None, "forward", T0, body);
        let req = shell.request(RequestType::Post, "forward", payload);
        assert_eq!(shell.call(T0, req).code, ResponseType::Created);
        let pause = signed(
            &mut w,
            None,
            "forward/1/control",
            T0,
            Control::Pause.to_bytes(),
        );
        let req = shell.request(RequestType::Post, "forward/1/control", pause.clone());
        assert_eq!(shell.call(T0, req).code, ResponseType::Changed);
        let req = shell.request(RequestType::Post, "forward/1/control", pause);
        assert_eq!(
            diagnostic(&shell.call(T0, req)),
            (ResponseType::Unauthorized, "replayed request".into())
        );
        // A control signed for another forward's path does not verify here.
        let other = signed(
            &mut w,
            None,
            "forward/2/control",
            T0,
            Control::Resume.to_bytes(),
        );
        let req = shell.request(RequestType::Post, "forward/1/control", other);
        assert_eq!(shell.call(T0, req).code, ResponseType::Unauthorized);
        assert!(shell.proxy.forwards[&1].record.paused);
        // A stranger may not delete.
        let delete = signed(&mut w, Some(&stranger), "storage/1", T0, Vec::new());
        let req = shell.request(RequestType::Delete, "storage/1", delete);
        assert_eq!(shell.call(T0, req).code, ResponseType::Forbidden);
        assert_eq!(shell.proxy.storages.len(), 1);
    }

    #[test]
    fn a_full_storage_answers_503_with_max_age_and_acknowledges_copies() {
        let mut w = world();
        let msgs = w.seal(0..3);
        let one = msgs[0].encode().unwrap().len() as u64;
        let mut shell = Shell::new(1 << 20);
        assert_eq!(
            create_storage(&mut shell, &w, one + 1).code,
            ResponseType::Created
        );
        assert_eq!(shell.post(&msgs[0]).code, ResponseType::Changed);
        let full = shell.post(&msgs[1]);
        assert_eq!(
            diagnostic(&full),
            (ResponseType::ServiceUnavailable, "storage full".into())
        );
        assert_eq!(uint(&full, CoapOption::MaxAge), Some(7));
        // A copy of what is stored is acknowledged even when full.
        assert_eq!(shell.post(&msgs[0]).code, ResponseType::Changed);
        let m = StorageMonitor::from_bytes(&shell.get("storage/1/monitor")).unwrap();
        assert_eq!(
            (m.stored_messages, m.rejected_full, m.duplicates),
            (1, 1, 1)
        );
        // Another source's message: 4.00, whatever the space.
        let mut foreign = msgs[2].clone();
        foreign.header.source = "coap://192.0.2.99/x".into();
        assert_eq!(shell.post(&foreign).code, ResponseType::BadRequest);
        // Too many storages: 5.03 with Max-Age too.
        for _ in 0..3 {
            assert_eq!(
                create_storage(&mut shell, &w, 0).code,
                ResponseType::Created
            );
        }
        let r = create_storage(&mut shell, &w, 0);
        assert_eq!(
            diagnostic(&r),
            (ResponseType::ServiceUnavailable, "no more storages".into())
        );
        assert_eq!(uint(&r, CoapOption::MaxAge), Some(7));
    }

    #[test]
    fn routes_methods_and_formats() {
        let mut shell = Shell::new(1 << 20);
        let mut req = shell.request(RequestType::Get, "info", Vec::new());
        req.accept = Some(50);
        let Handled::Respond(r) = shell.proxy.handle_request(Millis(T0), req) else {
            panic!("info answers at once");
        };
        assert_eq!(uint(&r, CoapOption::ContentFormat), Some(50));
        assert!(
            r.text().starts_with("{\"capacity\":1048576"),
            "{}",
            r.text()
        );
        let mut req = shell.request(RequestType::Get, "info", Vec::new());
        req.accept = Some(0);
        assert!(matches!(
            shell.proxy.handle_request(Millis(T0), req),
            Handled::Respond(Response {
                code: ResponseType::NotAcceptable,
                ..
            })
        ));
        for (method, path, code) in [
            (RequestType::Delete, "info", ResponseType::MethodNotAllowed),
            (RequestType::Get, "nothing", ResponseType::NotFound),
            (
                RequestType::Get,
                "storage/x/monitor",
                ResponseType::NotFound,
            ),
            (RequestType::Post, "storage/1", ResponseType::BadRequest),
        ] {
            let req = shell.request(method, path, Vec::new());
            match shell.proxy.handle_request(Millis(T0), req) {
                Handled::Respond(r) => assert_eq!(r.code, code, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        let mut req = shell.request(RequestType::Get, "load", Vec::new());
        req.query = vec!["window=0".into()];
        assert!(matches!(
            shell.proxy.handle_request(Millis(T0), req),
            Handled::Respond(Response {
                code: ResponseType::BadRequest,
                ..
            })
        ));
        let req = shell.request(RequestType::Get, ".well-known/core", Vec::new());
        let Handled::Discovery { resources, .. } = shell.proxy.handle_request(Millis(T0), req)
        else {
            panic!("discovery");
        };
        assert_eq!(resources.len(), 5);
    }
}
