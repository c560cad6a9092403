//! The relay proxy daemon end to end, over real UDP on loopback: its API (discovery, info, load,
//! throughput, store, message POSTs in both forms, monitors and their observers, forward and
//! control with owner authorisation, DELETE), block-wise transfers, back-pressure, plain-UDP
//! ingestion, forwarding to sinks that decrypt what they get (the protocol's `Source` and
//! `Sink`), libcoap's client against it, and durability across a SIGKILL of a proxy process.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m2msec_crypto::pre;
use m2msec_crypto::rng::OsRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_node::relay::proxy::{Proxy, ProxyConfig};
use m2msec_node::runtime::coap::{
    CoapClient, Config, MessageIds, new_request, parse_datagram, response, response_code,
    uint_option,
};
use m2msec_node::runtime::driver::{ShutdownSender, shutdown_channel, wall_clock};
use m2msec_protocol::relay::{Sink, SinkConfig, Source, SourceConfig, SourceSeed, TrustedSource};
use m2msec_wire::cbor::Bytes;
use m2msec_wire::relay::api::{
    Body, Control, EpochRekey, ForwardMonitor, ForwardRequest, ForwardResponse, Info, Load, Signed,
    SinkGrant, Start, StorageMonitor, StoreRequest, StoreResponse, Throughput, signed_input,
};
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, Packet, RequestType, ResponseType,
};
use m2msec_wire::relay::coap::{self as mapping, Target};
use m2msec_wire::relay::{Flags, Header, RelayMessage};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod common;

const SOURCE: &str = "coap://127.0.0.1:9/source";

// ---------------------------------------------------------------------------------------------
// Helpers

struct TestProxy {
    addr: SocketAddr,
    stop: ShutdownSender,
    task: tokio::task::JoinHandle<m2msec_node::Result<()>>,
}

impl TestProxy {
    async fn start(config: ProxyConfig) -> Self {
        let proxy = Proxy::bind(config).await.unwrap();
        let addr = proxy.local_addr();
        let (stop, shutdown) = shutdown_channel();
        let task = tokio::spawn(proxy.run(shutdown));
        Self { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.shutdown();
        self.task.await.unwrap().unwrap();
    }
}

fn config() -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        notify_interval_ms: 50,
        ..ProxyConfig::default()
    }
}

async fn client() -> CoapClient {
    CoapClient::bind(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            ack_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(5),
            ..Config::default()
        },
    )
    .await
    .unwrap()
}

fn owner() -> SigningKey {
    SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap()
}

/// The 32 raw bytes of an Ed25519 verifying key (what `StoreRequest.owner_key` and
/// `Signed.key` carry).
fn raw_key(k: &SigningKey) -> Vec<u8> {
    k.verifying_key().to_bytes()[1..].to_vec()
}

fn code(p: &Packet) -> ResponseType {
    response_code(p).unwrap()
}

async fn store(
    c: &CoapClient,
    proxy: SocketAddr,
    owner: &SigningKey,
    source: &str,
    capacity: u64,
    udp: bool,
) -> StoreResponse {
    let req = StoreRequest {
        owner_key: Bytes(raw_key(owner)),
        source: source.into(),
        capacity,
        udp,
    };
    let p = c
        .post(proxy, "store", req.to_bytes(), Some(60))
        .await
        .unwrap();
    assert_eq!(
        code(&p),
        ResponseType::Created,
        "{}",
        String::from_utf8_lossy(&p.payload)
    );
    let resp = StoreResponse::from_bytes(&p.payload).unwrap();
    let location: Vec<String> = p
        .get_option(CoapOption::LocationPath)
        .unwrap()
        .iter()
        .map(|v| String::from_utf8(v.clone()).unwrap())
        .collect();
    assert_eq!(
        location,
        vec!["storage".to_owned(), resp.storage_id.to_string()]
    );
    resp
}

fn signed_at(key: &SigningKey, path: &str, ts: u64, payload: Vec<u8>) -> Vec<u8> {
    let signature = key.sign(&mut OsRng, &signed_input(path, ts, &payload));
    Signed {
        payload: Bytes(payload),
        timestamp_ms: ts,
        signature: Bytes(signature),
        key: Bytes(raw_key(key)),
    }
    .to_bytes()
}

fn signed(key: &SigningKey, path: &str, payload: Vec<u8>) -> Vec<u8> {
    signed_at(key, path, wall_clock().0, payload)
}

/// POSTs `payload` to `path` in an envelope signed by `key`, as an owner's client does.
async fn signed_post(
    c: &CoapClient,
    proxy: SocketAddr,
    key: &SigningKey,
    path: &str,
    payload: Vec<u8>,
) -> Packet {
    c.post(proxy, path, signed(key, path, payload), Some(60))
        .await
        .unwrap()
}

/// A forward of a storage from its beginning.
fn forward_request(storage_id: u32, sinks: Vec<SinkGrant>, rate: u32) -> ForwardRequest {
    ForwardRequest {
        storage_id,
        sinks,
        rate,
        start: Start::Beginning,
    }
}

/// A stream data message with an opaque body (the proxy never looks inside).
fn message(source: &str, id: u32, body_len: usize) -> RelayMessage {
    RelayMessage {
        header: Header {
            flags: Flags::STREAM,
            message_id: id,
            stream_id: 1,
            key_index: 0,
            source: source.into(),
            sink: String::new(),
        },
        body: vec![0xA5; body_len],
    }
}

async fn post(c: &CoapClient, proxy: SocketAddr, storage: u32, msg: &RelayMessage) -> Packet {
    c.post_relay(
        proxy,
        msg,
        &Target::Path(&format!("storage/{storage}")),
        true,
    )
    .await
    .unwrap()
}

async fn storage_monitor(c: &CoapClient, proxy: SocketAddr, id: u32) -> StorageMonitor {
    let p = c
        .get(proxy, &format!("storage/{id}/monitor"))
        .await
        .unwrap();
    assert_eq!(code(&p), ResponseType::Content);
    StorageMonitor::from_bytes(&p.payload).unwrap()
}

async fn forward_monitor(c: &CoapClient, proxy: SocketAddr, id: u32) -> ForwardMonitor {
    let p = c
        .get(proxy, &format!("forward/{id}/monitor"))
        .await
        .unwrap();
    assert_eq!(code(&p), ResponseType::Content);
    ForwardMonitor::from_bytes(&p.payload).unwrap()
}

/// Polls `check` until it holds or `secs` pass.
async fn eventually<F, Fut>(secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_info_load_and_throughput() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let p = c.get(proxy.addr, ".well-known/core").await.unwrap();
    assert_eq!(uint_option(&p, CoapOption::ContentFormat), Some(40));
    let links = String::from_utf8(p.payload).unwrap();
    for r in [
        "</info>",
        "</load>",
        "</throughput>",
        "</store>",
        "</forward>",
    ] {
        assert!(links.contains(r), "{links}");
    }
    let owner = owner();
    let s = store(&c, proxy.addr, &owner, SOURCE, 0, false).await;
    let links =
        String::from_utf8(c.get(proxy.addr, ".well-known/core").await.unwrap().payload).unwrap();
    assert!(
        links.contains(&format!(
            "</storage/{}/monitor>;rt=\"m2msec.relay.monitor\";ct=60;obs",
            s.storage_id
        )),
        "{links}"
    );
    // RFC 6690 filtering.
    let only = String::from_utf8(
        c.get(proxy.addr, ".well-known/core?rt=m2msec.relay.info")
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(only, "</info>;rt=\"m2msec.relay.info\";ct=60");

    let info = Info::from_bytes(&c.get(proxy.addr, "info").await.unwrap().payload).unwrap();
    assert_eq!(
        (info.capacity, info.free, info.storages, info.forwards),
        (256 << 20, 256 << 20, 1, 0)
    );
    for i in 0..3 {
        assert_eq!(
            code(&post(&c, proxy.addr, s.storage_id, &message(SOURCE, i, 100)).await),
            ResponseType::Changed
        );
    }
    let info = Info::from_bytes(&c.get(proxy.addr, "info").await.unwrap().payload).unwrap();
    assert!(info.free < info.capacity);
    let load =
        Load::from_bytes(&c.get(proxy.addr, "load?window=10").await.unwrap().payload).unwrap();
    assert_eq!(
        (load.window_s, load.messages_in, load.messages_out),
        (10, 3, 0)
    );
    assert!(load.bytes_in >= 300);
    let t =
        Throughput::from_bytes(&c.get(proxy.addr, "throughput").await.unwrap().payload).unwrap();
    assert_eq!(t.window_s, 60);
    assert_eq!(t.in_bps, load.bytes_in * 8 / 60);
    // Bad window, JSON on request, unknown format, unknown resource, wrong method.
    assert_eq!(
        code(&c.get(proxy.addr, "load?window=0").await.unwrap()),
        ResponseType::BadRequest
    );
    let mut req = new_request(RequestType::Get, "info", true).unwrap();
    m2msec_node::runtime::coap::set_uint_option(&mut req, CoapOption::Accept, 50);
    let p = c.request(proxy.addr, req).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(json["storages"], 1);
    let mut req = new_request(RequestType::Get, "info", true).unwrap();
    m2msec_node::runtime::coap::set_uint_option(&mut req, CoapOption::Accept, 0);
    assert_eq!(
        code(&c.request(proxy.addr, req).await.unwrap()),
        ResponseType::NotAcceptable
    );
    assert_eq!(
        code(&c.get(proxy.addr, "nothing/here").await.unwrap()),
        ResponseType::NotFound
    );
    assert_eq!(
        code(&c.post(proxy.addr, "info", vec![], None).await.unwrap()),
        ResponseType::MethodNotAllowed
    );
    assert_eq!(
        code(
            &c.post(proxy.addr, "store", vec![1, 2, 3], Some(60))
                .await
                .unwrap()
        ),
        ResponseType::BadRequest
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_stored_once_and_acknowledged_every_time() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let s = store(&c, proxy.addr, &owner(), SOURCE, 0, false).await;
    let m = message(SOURCE, 42, 64);
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &m).await),
        ResponseType::Changed
    );
    // The same message again (a source that missed the ACK): acknowledged, not stored again.
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &m).await),
        ResponseType::Changed
    );
    // REENCRYPTED and the sink URL are not part of the identity.
    let mut again = m.clone();
    again.header.sink = "udp://127.0.0.1:1".into();
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &again).await),
        ResponseType::Changed
    );
    let mon = storage_monitor(&c, proxy.addr, s.storage_id).await;
    assert_eq!(
        (
            mon.stored_messages,
            mon.received,
            mon.duplicates,
            mon.last_seq
        ),
        (1, 3, 2, Some(0))
    );
    // Another message id is another message.
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &message(SOURCE, 43, 64)).await),
        ResponseType::Changed
    );
    assert_eq!(
        storage_monitor(&c, proxy.addr, s.storage_id)
            .await
            .stored_messages,
        2
    );
    // Refusals: unknown storage, foreign source, malformed request.
    assert_eq!(
        code(&post(&c, proxy.addr, 999, &m).await),
        ResponseType::NotFound
    );
    assert_eq!(
        code(
            &post(
                &c,
                proxy.addr,
                s.storage_id,
                &message("coap://127.0.0.1:9/other", 1, 8)
            )
            .await
        ),
        ResponseType::BadRequest
    );
    let bad = c
        .post(
            proxy.addr,
            &format!("storage/{}", s.storage_id),
            vec![1],
            None,
        )
        .await
        .unwrap();
    assert_eq!(code(&bad), ResponseType::BadRequest);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_storage_answers_503_with_max_age() {
    let proxy = TestProxy::start(ProxyConfig {
        max_age_when_full_s: 7,
        ..config()
    })
    .await;
    let c = client().await;
    let s = store(&c, proxy.addr, &owner(), SOURCE, 1000, false).await;
    let mut stored = Vec::new();
    let mut refused = None;
    for i in 0..30 {
        let m = message(SOURCE, i, 100);
        let p = post(&c, proxy.addr, s.storage_id, &m).await;
        match code(&p) {
            ResponseType::Changed => stored.push(m),
            ResponseType::ServiceUnavailable => {
                refused = Some(p);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let refused = refused.expect("never full");
    assert_eq!(uint_option(&refused, CoapOption::MaxAge), Some(7));
    assert!(!stored.is_empty() && stored.len() < 30);
    let mon = storage_monitor(&c, proxy.addr, s.storage_id).await;
    assert!(mon.stored_bytes <= 1000);
    assert_eq!(mon.rejected_full, 1);
    // A retransmission of a stored message is still acknowledged when full.
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &stored[0]).await),
        ResponseType::Changed
    );
    let load = Load::from_bytes(&c.get(proxy.addr, "load").await.unwrap().payload).unwrap();
    assert_eq!(load.rejected_full, 1);
    // Too large for the proxy at all.
    let big = message(SOURCE, 999, 70_000);
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &big).await),
        ResponseType::RequestEntityTooLarge
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_may_forward_control_or_delete() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let (alice, mallory) = (owner(), owner());
    let s = store(&c, proxy.addr, &alice, SOURCE, 0, false).await;
    let request = forward_request(s.storage_id, vec![], 0).to_bytes();
    let try_forward = |body: Vec<u8>| {
        let c = c.clone();
        let to = proxy.addr;
        async move {
            let p = c.post(to, "forward", body, Some(60)).await.unwrap();
            (code(&p), String::from_utf8_lossy(&p.payload).into_owned())
        }
    };
    // No envelope, a signature for another resource, a stale one, another key's.
    assert_eq!(
        try_forward(request.clone()).await.0,
        ResponseType::Unauthorized
    );
    assert_eq!(
        try_forward(signed(&alice, "storage/1", request.clone()))
            .await
            .0,
        ResponseType::Unauthorized
    );
    let stale = signed_at(&alice, "forward", wall_clock().0 - 301_000, request.clone());
    assert_eq!(
        try_forward(stale).await,
        (ResponseType::Unauthorized, "stale timestamp".into())
    );
    let mut forged = Signed::from_bytes(&signed(&alice, "forward", request.clone())).unwrap();
    forged.signature.0[0] ^= 1;
    assert_eq!(
        try_forward(forged.to_bytes()).await.0,
        ResponseType::Unauthorized
    );
    assert_eq!(
        try_forward(signed(&mallory, "forward", request.clone()))
            .await
            .0,
        ResponseType::Forbidden
    );
    // The owner: created; the same envelope again is a replay.
    let good = signed(&alice, "forward", request.clone());
    let (created, body) = {
        let p = c
            .post(proxy.addr, "forward", good.clone(), Some(60))
            .await
            .unwrap();
        (code(&p), p.payload)
    };
    assert_eq!(created, ResponseType::Created);
    let fid = ForwardResponse::from_bytes(&body).unwrap().forward_id;
    assert_eq!(
        try_forward(good).await,
        (ResponseType::Unauthorized, "replayed request".into())
    );
    // Control and delete follow the same rules.
    let control = format!("forward/{fid}/control");
    let pause = Control::Pause.to_bytes();
    let p = signed_post(&c, proxy.addr, &mallory, &control, pause.clone()).await;
    assert_eq!(code(&p), ResponseType::Forbidden);
    let p = signed_post(&c, proxy.addr, &alice, &control, pause).await;
    assert_eq!(code(&p), ResponseType::Changed);
    assert!(forward_monitor(&c, proxy.addr, fid).await.paused);
    let path = format!("storage/{}", s.storage_id);
    let p = c
        .delete(proxy.addr, &path, signed(&mallory, &path, vec![]), Some(60))
        .await
        .unwrap();
    assert_eq!(code(&p), ResponseType::Forbidden);
    let p = c
        .delete(proxy.addr, &path, signed(&alice, &path, vec![]), Some(60))
        .await
        .unwrap();
    assert_eq!(code(&p), ResponseType::Deleted);
    let p = c.get(proxy.addr, &format!("{path}/monitor")).await.unwrap();
    assert_eq!(code(&p), ResponseType::NotFound);
    let p = c
        .get(proxy.addr, &format!("forward/{fid}/monitor"))
        .await
        .unwrap();
    assert_eq!(code(&p), ResponseType::NotFound);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_notify_their_observers() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let s = store(&c, proxy.addr, &owner(), SOURCE, 0, false).await;
    let mut obs = c
        .observe(proxy.addr, &format!("storage/{}/monitor", s.storage_id))
        .await
        .unwrap();
    let first = obs.next().await.unwrap().unwrap();
    let mut last_observe = m2msec_node::runtime::coap::observe_value(&first).unwrap();
    assert_eq!(
        StorageMonitor::from_bytes(&first.payload)
            .unwrap()
            .stored_messages,
        0
    );
    let poster = {
        let c = c.clone();
        let to = proxy.addr;
        let id = s.storage_id;
        tokio::spawn(async move {
            for i in 0..5 {
                post(&c, to, id, &message(SOURCE, i, 10)).await;
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        })
    };
    let mut seen = 0;
    while seen < 5 {
        let n = tokio::time::timeout(Duration::from_secs(5), obs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let observe = m2msec_node::runtime::coap::observe_value(&n).unwrap();
        assert!(observe > last_observe, "Observe numbers increase");
        last_observe = observe;
        let m = StorageMonitor::from_bytes(&n.payload).unwrap();
        assert!(m.stored_messages >= seen, "monotonic");
        seen = m.stored_messages;
    }
    poster.await.unwrap();
    obs.cancel().await.unwrap();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_post_and_get() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let owner = owner();
    let s = store(&c, proxy.addr, &owner, SOURCE, 0, false).await;
    // A 10 KB message goes up in 1 KB blocks (Block1) and is stored whole.
    let big = message(SOURCE, 7, 10_000);
    assert_eq!(
        code(&post(&c, proxy.addr, s.storage_id, &big).await),
        ResponseType::Changed
    );
    let mon = storage_monitor(&c, proxy.addr, s.storage_id).await;
    assert_eq!(mon.stored_messages, 1);
    assert_eq!(mon.stored_bytes, big.encode().unwrap().len() as u64);
    // Enough storages that discovery outgrows a block: the client follows Block2.
    for i in 0..30 {
        store(
            &c,
            proxy.addr,
            &owner,
            &format!("coap://127.0.0.1:9/s{i}"),
            0,
            false,
        )
        .await;
    }
    let links =
        String::from_utf8(c.get(proxy.addr, ".well-known/core").await.unwrap().payload).unwrap();
    assert!(links.len() > 1024, "{}", links.len());
    assert!(
        links.ends_with("</storage/31/monitor>;rt=\"m2msec.relay.monitor\";ct=60;obs"),
        "{links}"
    );
    // One block by hand: block 1 of 64 bytes.
    let mut req = new_request(RequestType::Get, ".well-known/core", true).unwrap();
    req.add_option(CoapOption::Block2, vec![0x12]); // num 1, more 0, szx 2
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    req.header.message_id = 1;
    req.set_token(vec![9]);
    sock.send_to(&req.to_bytes().unwrap(), proxy.addr)
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).await.unwrap();
    let p = parse_datagram(&buf[..n]).unwrap();
    assert_eq!(p.payload, links.as_bytes()[64..128]);
    assert_eq!(p.get_first_option(CoapOption::Block2), Some(&vec![0x1A])); // num 1, more, szx 2
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_proxy_form_and_plain_udp_ingestion() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let s = store(&c, proxy.addr, &owner(), SOURCE, 0, true).await;
    let port = s.udp_port.expect("a UDP port");
    // Proxy-Uri names the sink; Relay-Source picks the storage.
    for (m, want) in [
        (message(SOURCE, 1, 20), ResponseType::Changed),
        (
            message("coap://127.0.0.1:9/nobody", 1, 20),
            ResponseType::NotFound,
        ),
    ] {
        let to = Target::ProxyUri("coap://127.0.0.1:7/sink");
        let p = c.post_relay(proxy.addr, &m, &to, true).await.unwrap();
        assert_eq!(code(&p), want);
    }
    // Binary-header datagrams on the storage's own port (no answers); junk is dropped.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    sock.send_to(b"junk", to).await.unwrap();
    for i in 10..15 {
        sock.send_to(&message(SOURCE, i, 30).encode().unwrap(), to)
            .await
            .unwrap();
    }
    // A copy of one of them: counted, not stored.
    sock.send_to(&message(SOURCE, 10, 30).encode().unwrap(), to)
        .await
        .unwrap();
    eventually(5, || async {
        let m = storage_monitor(&c, proxy.addr, s.storage_id).await;
        m.stored_messages == 6 && m.duplicates == 1
    })
    .await;
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Forwarding through the protocol's Source and Sink

/// A stream of `owner`'s, one section per `rotate` messages.
fn stream_source(owner: &SigningKey, url: &str, rotate: u32) -> Source {
    Source::new(
        SourceConfig {
            rotate_messages: rotate,
            ..SourceConfig::new(url, 1)
        },
        SourceSeed::generate(&mut OsRng),
        SigningKey::from_pem(&owner.to_pem().unwrap()).unwrap(),
        None,
        &mut OsRng,
    )
    .unwrap()
}

/// A sink trusting `owner`'s source at `url`, and the re-encryption keys `source` grants it
/// for this epoch and the next.
fn sink_for(source: &mut Source, owner: &SigningKey, url: &str) -> (Sink, Vec<EpochRekey>) {
    let key = pre::SecretKey::generate(&mut OsRng);
    let epoch = source.epoch_at(wall_clock()).unwrap();
    let rekeys = source
        .rekeys_for(&key.public_key(), epoch..=epoch + 1)
        .unwrap();
    let trusted = vec![TrustedSource {
        url: url.into(),
        owner: owner.verifying_key(),
    }];
    (Sink::new(key, trusted, SinkConfig::default()), rekeys)
}

/// A CoAP sink: opens what it is POSTed with the protocol's `Sink` and reports the plaintexts.
async fn coap_sink(
    sink: Sink,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Vec<u8>>,
    Arc<Mutex<u32>>,
) {
    coap_sink_at(sink_socket("127.0.0.1:0").await, sink)
}

async fn sink_socket(addr: &str) -> UdpSocket {
    UdpSocket::bind(addr).await.unwrap()
}

fn coap_sink_at(
    socket: UdpSocket,
    mut sink: Sink,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Vec<u8>>,
    Arc<Mutex<u32>>,
) {
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let reencrypted = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&reencrypted);
    tokio::spawn(async move {
        let mut ids = MessageIds::random(&mut OsRng);
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Some(req) = parse_datagram(&buf[..n]) else {
                continue;
            };
            if !matches!(req.header.code, MessageClass::Request(_)) {
                continue;
            }
            let answer = match mapping::from_request(&req) {
                Ok(msg) => {
                    if msg.header.flags.contains(Flags::REENCRYPTED) {
                        *counter.lock().unwrap() += 1;
                    }
                    assert_eq!(msg.header.sink, "", "the sink URL travels as Uri-Path");
                    match sink.receive(wall_clock(), &msg) {
                        Ok(delivered) => {
                            for d in delivered {
                                let _ = tx.send(d.plaintext.to_vec());
                            }
                            ResponseType::Changed
                        }
                        Err(_) => ResponseType::BadRequest,
                    }
                }
                Err(_) => ResponseType::BadRequest,
            };
            let p = response(&req, answer, &mut ids);
            let _ = socket.send_to(&p.to_bytes().unwrap(), peer).await;
        }
    });
    (addr, rx, reencrypted)
}

/// A UDP sink: binary-header datagrams, opened with the protocol's `Sink`.
async fn udp_sink(mut sink: Sink) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(msg) = RelayMessage::decode(&buf[..n]) else {
                continue;
            };
            if let Ok(delivered) = sink.receive(wall_clock(), &msg) {
                for d in delivered {
                    let _ = tx.send(d.plaintext.to_vec());
                }
            }
        }
    });
    (addr, rx)
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>, want: &[Vec<u8>]) {
    let mut got = Vec::new();
    while got.len() < want.len() {
        let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("got {} of {}", got.len(), want.len()))
            .unwrap();
        got.push(p);
    }
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_reencrypts_to_sinks_pauses_resumes_and_frees_storage() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let alice = owner();
    let source_url = "coap://127.0.0.1:9/gateway";
    let s = store(&c, proxy.addr, &alice, source_url, 0, false).await;
    let mut source = stream_source(&alice, source_url, 4);
    let send = |source: &mut Source, from: usize, to: usize| {
        let mut msgs = Vec::new();
        let mut plain = Vec::new();
        for i in from..to {
            let text = format!("reading {i}").into_bytes();
            msgs.extend(source.seal(wall_clock(), &text, &mut OsRng).unwrap());
            plain.push(text);
        }
        (msgs, plain)
    };
    // Stored while no sink is known.
    let (msgs, mut plain1) = send(&mut source, 0, 10);
    for m in &msgs {
        assert_eq!(
            code(&post(&c, proxy.addr, s.storage_id, m).await),
            ResponseType::Changed
        );
    }
    // A sink is designated: the backlog is re-encrypted to it.
    let (sink1, rekeys1) = sink_for(&mut source, &alice, source_url);
    let (sink1, mut rx1, reencrypted) = coap_sink(sink1).await;
    let grant = SinkGrant {
        url: format!("coap://{sink1}/sink"),
        rekeys: rekeys1,
    };
    let req = forward_request(s.storage_id, vec![grant], 0);
    let p = signed_post(&c, proxy.addr, &alice, "forward", req.to_bytes()).await;
    assert_eq!(
        code(&p),
        ResponseType::Created,
        "{}",
        String::from_utf8_lossy(&p.payload)
    );
    let fid = ForwardResponse::from_bytes(&p.payload).unwrap().forward_id;
    expect(&mut rx1, &plain1).await;
    assert_eq!(
        *reencrypted.lock().unwrap(),
        3,
        "three sections of four, management only"
    );
    // Delivered by every sink: removed from the storage.
    eventually(5, || async {
        storage_monitor(&c, proxy.addr, s.storage_id)
            .await
            .stored_messages
            == 0
    })
    .await;
    let f = forward_monitor(&c, proxy.addr, fid).await;
    assert_eq!(
        (
            f.sinks[0].delivered,
            f.sinks[0].reencrypted,
            f.sinks[0].skipped,
            f.sinks[0].pending
        ),
        (msgs.len() as u64, 3, 0, 0)
    );

    // Paused: stored, not forwarded; resumed: forwarded.
    let control = format!("forward/{fid}/control");
    let p = signed_post(&c, proxy.addr, &alice, &control, Control::Pause.to_bytes()).await;
    assert_eq!(code(&p), ResponseType::Changed);
    let (msgs, plain2) = send(&mut source, 10, 13);
    for m in &msgs {
        post(&c, proxy.addr, s.storage_id, m).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(rx1.try_recv().is_err(), "nothing while paused");
    let f = forward_monitor(&c, proxy.addr, fid).await;
    assert!(f.paused && f.sinks[0].pending == msgs.len() as u64);
    assert_eq!(
        storage_monitor(&c, proxy.addr, s.storage_id)
            .await
            .stored_messages,
        msgs.len() as u64
    );
    let p = signed_post(&c, proxy.addr, &alice, &control, Control::Resume.to_bytes()).await;
    assert_eq!(code(&p), ResponseType::Changed);
    expect(&mut rx1, &plain2).await;
    plain1.extend(plain2);

    // A second sink, over plain UDP, added mid-stream from now: it gets the section in
    // progress and what follows, and the first sink keeps going.
    let (sink2, rekeys2) = sink_for(&mut source, &alice, source_url);
    let (sink2, mut rx2) = udp_sink(sink2).await;
    let add = Control::AddSink(
        SinkGrant {
            url: format!("udp://{sink2}"),
            rekeys: rekeys2,
        },
        Start::Now,
    );
    let p = signed_post(&c, proxy.addr, &alice, &control, add.to_bytes()).await;
    assert_eq!(
        code(&p),
        ResponseType::Changed,
        "{}",
        String::from_utf8_lossy(&p.payload)
    );
    let (msgs, plain3) = send(&mut source, 13, 20);
    for m in &msgs {
        post(&c, proxy.addr, s.storage_id, m).await;
    }
    expect(&mut rx1, &plain3).await;
    // 13..16 close the section of 12..16, whose management message sink 2 starts at.
    let mut want2 = vec![b"reading 12".to_vec()];
    want2.extend(plain3.clone());
    expect(&mut rx2, &want2).await;
    let f = forward_monitor(&c, proxy.addr, fid).await;
    assert_eq!(f.sinks.len(), 2);
    assert!(f.sinks[1].url.starts_with("udp://"));

    // Removing a sink stops it; the other carries on.
    let remove = Control::RemoveSink(format!("coap://{sink1}/sink"));
    let p = signed_post(&c, proxy.addr, &alice, &control, remove.to_bytes()).await;
    assert_eq!(code(&p), ResponseType::Changed);
    let (msgs, plain4) = send(&mut source, 20, 22);
    for m in &msgs {
        post(&c, proxy.addr, s.storage_id, m).await;
    }
    expect(&mut rx2, &plain4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx1.try_recv().is_err());
    assert_eq!(forward_monitor(&c, proxy.addr, fid).await.sinks.len(), 1);
    let load = Load::from_bytes(&c.get(proxy.addr, "load").await.unwrap().payload).unwrap();
    assert!(load.messages_out > 0 && load.bytes_out > 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_gets_everything_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(ProxyConfig {
        state: Some(dir.path().join("proxy.redb")),
        ..config()
    })
    .await;
    let c = client().await;
    let alice = owner();
    let s = store(&c, proxy.addr, &alice, SOURCE, 0, false).await;
    let mut source = stream_source(&alice, SOURCE, 4);
    let mut plain = Vec::new();
    for i in 0..6 {
        let text = format!("while down {i}").into_bytes();
        for m in source.seal(wall_clock(), &text, &mut OsRng).unwrap() {
            assert_eq!(
                code(&post(&c, proxy.addr, s.storage_id, &m).await),
                ResponseType::Changed
            );
        }
        plain.push(text);
    }
    // A port nobody listens on yet: the sink is down.
    let port = sink_socket("127.0.0.1:0")
        .await
        .local_addr()
        .unwrap()
        .port();
    let (sink, rekeys) = sink_for(&mut source, &alice, SOURCE);
    let grant = SinkGrant {
        url: format!("coap://127.0.0.1:{port}/sink"),
        rekeys,
    };
    let req = forward_request(s.storage_id, vec![grant], 0);
    let p = signed_post(&c, proxy.addr, &alice, "forward", req.to_bytes()).await;
    assert_eq!(code(&p), ResponseType::Created);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let f = forward_monitor(&c, proxy.addr, 1).await;
    assert_eq!(
        (f.sinks[0].delivered, f.sinks[0].skipped, f.sinks[0].pending),
        (0, 0, 8)
    );
    assert_eq!(
        storage_monitor(&c, proxy.addr, s.storage_id)
            .await
            .stored_messages,
        8
    );
    // The sink comes up on that port: the retransmissions reach it, nothing was skipped.
    let socket = sink_socket(&format!("127.0.0.1:{port}")).await;
    let (_, mut rx, _) = coap_sink_at(socket, sink);
    expect(&mut rx, &plain).await;
    eventually(5, || async {
        storage_monitor(&c, proxy.addr, s.storage_id)
            .await
            .stored_messages
            == 0
    })
    .await;
    proxy.stop().await;
}

/// Seals `texts` and POSTs the messages in order; returns the plaintexts.
async fn send_stream(
    c: &CoapClient,
    proxy: SocketAddr,
    storage: u32,
    source: &mut Source,
    texts: std::ops::Range<u32>,
) -> Vec<Vec<u8>> {
    let mut plain = Vec::new();
    for i in texts {
        let text = format!("m{i}").into_bytes();
        for m in source.seal(wall_clock(), &text, &mut OsRng).unwrap() {
            assert_eq!(
                code(&post(c, proxy, storage, &m).await),
                ResponseType::Changed
            );
        }
        plain.push(text);
    }
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_resume_where_they_were_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("proxy.redb");
    let with_state = || ProxyConfig {
        state: Some(state.clone()),
        ..config()
    };
    let proxy = TestProxy::start(with_state()).await;
    let c = client().await;
    let alice = owner();
    let s = store(&c, proxy.addr, &alice, SOURCE, 0, false).await;
    let mut source = stream_source(&alice, SOURCE, 3);
    let (sink, rekeys) = sink_for(&mut source, &alice, SOURCE);
    let (sink, mut rx) = udp_sink(sink).await;
    let grant = SinkGrant {
        url: format!("udp://{sink}"),
        rekeys,
    };
    let req = forward_request(s.storage_id, vec![grant], 0);
    let p = signed_post(&c, proxy.addr, &alice, "forward", req.to_bytes()).await;
    assert_eq!(code(&p), ResponseType::Created);
    let first = send_stream(&c, proxy.addr, s.storage_id, &mut source, 0..5).await;
    expect(&mut rx, &first).await;
    // The sink may hold a message a moment before the proxy has counted it delivered.
    eventually(5, || async {
        forward_monitor(&c, proxy.addr, 1).await.sinks[0].pending == 0
    })
    .await;
    let before = forward_monitor(&c, proxy.addr, 1).await;
    proxy.stop().await;

    // Same state, new process life: storage, forward, position and sections are back.
    let proxy = TestProxy::start(with_state()).await;
    let after = forward_monitor(&c, proxy.addr, 1).await;
    assert_eq!(after.sinks[0].delivered, before.sinks[0].delivered);
    assert_eq!(after.sinks[0].pending, 0);
    // The section in progress (m3, m4 of a three-message section) continues: its data still
    // passes after the restart, and nothing is sent twice.
    let rest = send_stream(&c, proxy.addr, s.storage_id, &mut source, 5..9).await;
    expect(&mut rx, &rest).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "nothing delivered twice");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_rate_paces_delivery() {
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let alice = owner();
    let s = store(&c, proxy.addr, &alice, SOURCE, 0, false).await;
    let mut source = stream_source(&alice, SOURCE, 100);
    let plain = send_stream(&c, proxy.addr, s.storage_id, &mut source, 0..9).await;
    let (sink, rekeys) = sink_for(&mut source, &alice, SOURCE);
    let (sink, mut rx) = udp_sink(sink).await;
    let grant = SinkGrant {
        url: format!("udp://{sink}"),
        rekeys,
    };
    let req = forward_request(s.storage_id, vec![grant], 20);
    let started = std::time::Instant::now();
    let p = signed_post(&c, proxy.addr, &alice, "forward", req.to_bytes()).await;
    assert_eq!(code(&p), ResponseType::Created);
    expect(&mut rx, &plain).await;
    // Ten messages (a management message and nine data) at 20 per second: at least 450 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_at_once_when_the_ingest_queue_is_full() {
    // A tiny queue and a writer that waits for more before committing: a burst overflows it.
    let proxy = TestProxy::start(ProxyConfig {
        ingest_queue: 4,
        group_commit_max: 4,
        group_commit_wait_us: 50_000,
        max_age_when_busy_s: 1,
        ..config()
    })
    .await;
    let c = client().await;
    let s = store(&c, proxy.addr, &owner(), SOURCE, 0, false).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let burst = 200u16;
    for i in 0..burst {
        let req = mapping::to_request(
            &message(SOURCE, u32::from(i), 50),
            &Target::Path(&format!("storage/{}", s.storage_id)),
            i,
            false,
        )
        .unwrap();
        sock.send_to(&req.to_bytes().unwrap(), proxy.addr)
            .await
            .unwrap();
    }
    let (mut changed, mut busy) = (0u32, 0u32);
    let mut buf = [0u8; 2048];
    while changed + busy < u32::from(burst) {
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await
        else {
            break;
        };
        let p = parse_datagram(&buf[..n]).unwrap();
        match code(&p) {
            ResponseType::Changed => changed += 1,
            ResponseType::ServiceUnavailable => {
                assert_eq!(uint_option(&p, CoapOption::MaxAge), Some(1));
                busy += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(changed + busy, u32::from(burst), "every message answered");
    assert!(busy > 0 && changed > 0, "changed {changed}, busy {busy}");
    let m = storage_monitor(&c, proxy.addr, s.storage_id).await;
    assert_eq!(
        (m.stored_messages, m.rejected_full),
        (u64::from(changed), u64::from(busy))
    );
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// libcoap

/// What libcoap's client printed, as text.
async fn libcoap(bin: &std::path::Path, args: &[&str]) -> String {
    String::from_utf8(common::run_libcoap(bin, args).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_client_discovers_reads_and_observes() {
    let Some(bin) = common::tool(&["coap-client-notls", "coap-client"]) else {
        eprintln!("neither coap-client-notls nor coap-client installed: interop test skipped");
        return;
    };
    let proxy = TestProxy::start(config()).await;
    let c = client().await;
    let s = store(&c, proxy.addr, &owner(), SOURCE, 0, false).await;
    let base = format!("coap://{}", proxy.addr);
    let links = libcoap(&bin, &[&format!("{base}/.well-known/core")]).await;
    for r in [
        "</info>",
        "</load>",
        "</throughput>",
        "</store>",
        "</forward>",
        "</storage/1/monitor>",
    ] {
        assert!(links.contains(r), "{links}");
    }
    assert!(links.contains("obs"), "{links}");
    let info = libcoap(&bin, &["-A", "50", &format!("{base}/info")]).await;
    let info: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(info["capacity"], 256 << 20);
    assert_eq!(info["storages"], 1);
    let load = libcoap(&bin, &["-A", "50", &format!("{base}/load?window=30")]).await;
    let load: serde_json::Value = serde_json::from_str(load.trim()).unwrap();
    assert_eq!(load["window_s"], 30);
    // Observe the storage's monitor for 3 s while messages arrive.
    let poster = {
        let c = c.clone();
        let to = proxy.addr;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for i in 0..5 {
                post(&c, to, s.storage_id, &message(SOURCE, i, 10)).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let monitor = format!("{base}/storage/{}/monitor", s.storage_id);
    let out = libcoap(&bin, &["-s", "3", "-A", "50", "-w", &monitor]).await;
    poster.await.unwrap();
    let counts: Vec<u64> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["stored_messages"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        counts.len() >= 3,
        "initial response and notifications: {out}"
    );
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(*counts.last().unwrap() >= 3, "{counts:?}");
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Durability: a proxy process SIGKILLed mid-flood

const CHILD_STATE: &str = "M2MSEC_RELAY_PROXY_CHILD_STATE";

/// The child's half: a proxy on the state file the parent names, printing its address. Does
/// nothing unless started by the parent below.
#[test]
fn proxy_child() {
    let Some(state) = std::env::var_os(CHILD_STATE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let proxy = Proxy::bind(ProxyConfig {
            state: Some(state.into()),
            ..config()
        })
        .await
        .unwrap();
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {}", proxy.local_addr()).unwrap();
        out.flush().unwrap();
        drop(out);
        // Until killed (or 60 s, so a parent that fails to kill cannot hang the run).
        let (_stop, shutdown) = shutdown_channel();
        let _ = tokio::time::timeout(Duration::from_secs(60), proxy.run(shutdown)).await;
    });
}

struct ChildProxy(std::process::Child, SocketAddr);

impl ChildProxy {
    fn start(state: &std::path::Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["proxy_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_STATE, state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().unwrap().unwrap();
            // libtest prints "test proxy_child ... " first, on the same line.
            if let Some((_, a)) = line.split_once("listening ") {
                break a.trim().parse().unwrap();
            }
        };
        Self(child, addr)
    }

    fn kill(mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.0.kill().unwrap(); // SIGKILL
        let status = self.0.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}

/// What the queue of storage 1 holds, read from the database the (dead) proxy left.
fn stored_ids(state: &std::path::Path) -> Vec<u32> {
    use m2msec_store::{RedbStore, Store};
    let store = RedbStore::open(state).unwrap();
    store
        .queue_range("relay-proxy.q.1", 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, v)| RelayMessage::decode(&v).unwrap().header.message_id)
        .collect()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("proxy.redb");
    let child = ChildProxy::start(&state);
    let c = CoapClient::bind(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            ack_timeout: Duration::from_millis(300),
            max_retransmit: 2,
            response_timeout: Duration::from_secs(2),
            nstart: 32,
            ..Config::default()
        },
    )
    .await
    .unwrap();
    let alice = owner();
    let s = store(&c, child.1, &alice, SOURCE, 0, false).await;
    assert_eq!(s.storage_id, 1);
    // Flood: 8 senders, each its own range of message ids; every 2.04 is recorded.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut senders = Vec::new();
    for t in 0..8u32 {
        let c = c.clone();
        let acked = Arc::clone(&acked);
        let to = child.1;
        senders.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                let id = t * 1_000_000 + i;
                match c
                    .post_relay(
                        to,
                        &message(SOURCE, id, 200),
                        &Target::Path("storage/1"),
                        true,
                    )
                    .await
                {
                    Ok(p) if response_code(&p) == Some(ResponseType::Changed) => {
                        acked.lock().unwrap().insert(id);
                    }
                    Ok(_) => {} // 5.03 under load: not acknowledged, not counted
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill it mid-flood.
    eventually(20, || async { acked.lock().unwrap().len() >= 2000 }).await;
    child.kill();
    for s in senders {
        s.await.unwrap();
    }
    let acked: BTreeSet<u32> = acked.lock().unwrap().clone();
    let ids = stored_ids(&state);
    let unique: BTreeSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message stored twice");
    eprintln!(
        "acknowledged {}, stored {} (the rest was in flight at the kill)",
        acked.len(),
        unique.len()
    );
    let lost: Vec<&u32> = acked.difference(&unique).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Restarted on the same file: every acknowledged message is retransmitted (as sources that
    // missed an ACK would) and acknowledged without a second copy; new ones are stored.
    let child = ChildProxy::start(&state);
    let before = storage_monitor(&c, child.1, 1).await.stored_messages;
    assert_eq!(before, ids.len() as u64);
    let resend: Vec<u32> = acked.iter().copied().step_by(7).collect();
    for id in &resend {
        let p = post(&c, child.1, 1, &message(SOURCE, *id, 200)).await;
        assert_eq!(code(&p), ResponseType::Changed);
    }
    for id in 0..10 {
        post(&c, child.1, 1, &message(SOURCE, 900_000_000 + id, 200)).await;
    }
    let after = storage_monitor(&c, child.1, 1).await;
    assert_eq!(after.stored_messages, before + 10);
    assert!(after.duplicates >= resend.len() as u64);
    child.kill();
}
