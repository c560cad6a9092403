//! The relay's CoAP transport end to end: the client against a small server built from the
//! server helpers (dedup cache, Block1 reassembly, Block2 slicing, observers), losses and
//! retransmissions included, and both against libcoap (`coap-client-notls`,
//! `coap-server-notls`) when installed.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use m2msec_node::runtime::coap::{
    Assembled, Block1Assembler, CoapClient, Config, DEFAULT_SZX, Dedup, DedupCache, Error,
    MessageIds, Observers, is_success, monotonic_now, observe_value, parse_datagram, response,
    response_code, separate_response, set_uint_option, slice_block2,
};
use m2msec_wire::relay::coap::coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use m2msec_wire::relay::coap::{self as mapping, Target};
use m2msec_wire::relay::{Flags, Header, RelayMessage};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod common;

const BIG: usize = 5000;

fn big_body() -> Vec<u8> {
    (0..BIG).map(|i| (i * 7 % 251) as u8).collect()
}

fn checksum(bytes: &[u8]) -> String {
    format!(
        "{}:{}",
        bytes.len(),
        bytes.iter().map(|b| u64::from(*b)).sum::<u64>()
    )
}

fn fast() -> Config {
    Config {
        ack_timeout: Duration::from_millis(40),
        response_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

#[derive(Default)]
struct Stats {
    /// Datagrams received per request path (copies included).
    copies: HashMap<String, u32>,
    /// Times a handler ran per path.
    handled: HashMap<String, u32>,
    /// Retransmitted CONs answered from the dedup cache.
    replays: u32,
    /// Block1 blocks seen.
    blocks: u32,
    /// Resets received.
    resets: u32,
    /// Observers of `obs` now.
    observers: usize,
    /// Relay messages received.
    relay: Vec<RelayMessage>,
}

struct TestServer {
    addr: SocketAddr,
    stats: Arc<Mutex<Stats>>,
    notify: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (notify, rx) = mpsc::channel(8);
        let task = tokio::spawn(serve(socket, Arc::clone(&stats), rx));
        Self {
            addr,
            stats,
            notify,
            task,
        }
    }

    fn handled(&self, path: &str) -> u32 {
        self.stats
            .lock()
            .unwrap()
            .handled
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn copies(&self, path: &str) -> u32 {
        self.stats
            .lock()
            .unwrap()
            .copies
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&Stats) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond(&self.stats.lock().unwrap()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(socket: UdpSocket, stats: Arc<Mutex<Stats>>, mut notify: mpsc::Receiver<Vec<u8>>) {
    let mut ids = MessageIds::random(&mut m2msec_crypto::rng::OsRng);
    let mut dedup = DedupCache::default();
    let mut asm = Block1Assembler::new(64 * 1024, 16, Duration::from_secs(30), DEFAULT_SZX);
    let mut observers = Observers::new(8, Duration::from_secs(60));
    let mut state = String::from("0");
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => r.unwrap(),
            Some(payload) = notify.recv() => {
                let notifications = observers.notify("obs", monotonic_now(), &mut ids, DEFAULT_SZX, |_| {
                    (payload.clone(), Some(0))
                });
                for (to, p) in notifications {
                    socket.send_to(&p.to_bytes_with_limit(4096).unwrap(), to).await.unwrap();
                }
                state = String::from_utf8_lossy(&payload).into_owned();
                stats.lock().unwrap().observers = observers.count("obs");
                continue;
            }
        };
        let Some(req) = parse_datagram(&buf[..n]) else {
            continue;
        };
        match req.header.get_type() {
            MessageType::Reset => {
                observers.on_reset(peer, req.header.message_id);
                let mut s = stats.lock().unwrap();
                s.resets += 1;
                s.observers = observers.count("obs");
                continue;
            }
            MessageType::Acknowledgement => {
                observers.on_ack(peer, req.header.message_id);
                continue;
            }
            _ => {}
        }
        if !matches!(req.header.code, MessageClass::Request(_)) {
            continue;
        }
        let path = mapping::uri_path(&req);
        let first_copy = {
            let mut s = stats.lock().unwrap();
            let c = s.copies.entry(path.clone()).or_default();
            *c += 1;
            *c
        };
        // "lossy" loses the first two copies of its one request on the way in.
        if path == "lossy" && first_copy <= 2 {
            continue;
        }
        if path == "silent" {
            continue;
        }
        if path == "reset" {
            let rst = mapping::reset(&req);
            socket
                .send_to(&rst.to_bytes().unwrap(), peer)
                .await
                .unwrap();
            continue;
        }
        match dedup.check(peer, &req, monotonic_now()) {
            Dedup::Replay(bytes) => {
                stats.lock().unwrap().replays += 1;
                socket.send_to(&bytes, peer).await.unwrap();
                continue;
            }
            Dedup::InProgress => continue,
            Dedup::New => {}
        }
        let original = req.clone();
        if req.get_option(CoapOption::Block1).is_some() {
            stats.lock().unwrap().blocks += 1;
        }
        let whole = match asm.accept(peer, req, monotonic_now(), &mut ids) {
            Assembled::Respond(p) => {
                let bytes = p.to_bytes_with_limit(4096).unwrap();
                socket.send_to(&bytes, peer).await.unwrap();
                dedup.complete(peer, &original, &bytes);
                continue;
            }
            Assembled::Complete(whole) => whole,
        };
        *stats
            .lock()
            .unwrap()
            .handled
            .entry(path.clone())
            .or_default() += 1;
        let mut resp = match path.as_str() {
            "echo" | "lossy" => {
                let mut r = response(&whole, ResponseType::Changed, &mut ids);
                r.payload = whole.payload.clone();
                r
            }
            "upload" => {
                let mut r = response(&whole, ResponseType::Changed, &mut ids);
                r.payload = checksum(&whole.payload).into_bytes();
                r
            }
            "lost-response" => {
                let r = response(&whole, ResponseType::Changed, &mut ids);
                let bytes = r.to_bytes().unwrap();
                // Processed and cached, but this first response is lost.
                dedup.complete(peer, &original, &bytes);
                continue;
            }
            "big" => {
                let mut r = response(&whole, ResponseType::Content, &mut ids);
                r.payload = big_body();
                slice_block2(&whole, &mut r, DEFAULT_SZX);
                r
            }
            "slow" => {
                let ack = mapping::empty_ack(&whole);
                socket
                    .send_to(&ack.to_bytes().unwrap(), peer)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut r = separate_response(&whole, ResponseType::Changed, &mut ids, true);
                r.payload = b"done".to_vec();
                socket.send_to(&r.to_bytes().unwrap(), peer).await.unwrap();
                continue;
            }
            "obs" => {
                let mut r = response(&whole, ResponseType::Content, &mut ids);
                if let Some(seq) = observers.on_get(peer, &whole, "obs", monotonic_now()) {
                    set_uint_option(&mut r, CoapOption::Observe, seq);
                }
                stats.lock().unwrap().observers = observers.count("obs");
                r.payload = state.clone().into_bytes();
                slice_block2(&whole, &mut r, DEFAULT_SZX);
                r
            }
            "storage/1" | "" => match mapping::from_request(&whole) {
                Ok(msg) => {
                    stats.lock().unwrap().relay.push(msg);
                    response(&whole, ResponseType::Changed, &mut ids)
                }
                Err(_) => response(&whole, ResponseType::BadRequest, &mut ids),
            },
            _ => response(&whole, ResponseType::NotFound, &mut ids),
        };
        if resp.header.get_type() == MessageType::NonConfirmable && path == "echo" {
            resp.payload.extend_from_slice(b"/non");
        }
        let bytes = resp.to_bytes_with_limit(4096).unwrap();
        socket.send_to(&bytes, peer).await.unwrap();
        dedup.complete(peer, &original, &bytes);
    }
}

async fn client(config: Config) -> CoapClient {
    CoapClient::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

#[tokio::test]
async fn piggybacked_con_and_non_requests() {
    let server = TestServer::start().await;
    let c = client(fast()).await;
    let r = c
        .post(server.addr, "echo", b"hello".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(response_code(&r), Some(ResponseType::Changed));
    assert_eq!(r.payload, b"hello");

    let mut non =
        m2msec_node::runtime::coap::new_request(RequestType::Post, "echo", false).unwrap();
    non.payload = b"x".to_vec();
    let r = c.request(server.addr, non).await.unwrap();
    assert_eq!(r.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(r.payload, b"x/non");

    let r = c.get(server.addr, "nowhere").await.unwrap();
    assert_eq!(response_code(&r), Some(ResponseType::NotFound));
    assert!(!is_success(&r));
}

#[tokio::test]
async fn lost_requests_are_retransmitted_with_backoff() {
    let server = TestServer::start().await;
    let c = client(fast()).await;
    let start = Instant::now();
    let r = c
        .post(server.addr, "lossy", b"again".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(r.payload, b"again");
    assert_eq!(server.copies("lossy"), 3);
    assert_eq!(server.handled("lossy"), 1);
    // Two timeouts, the second twice the first: at least 40 + 80 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(120),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_lost_response_is_replayed_not_reprocessed() {
    let server = TestServer::start().await;
    let c = client(fast()).await;
    let r = c
        .post(server.addr, "lost-response", vec![1], None)
        .await
        .unwrap();
    assert_eq!(response_code(&r), Some(ResponseType::Changed));
    assert_eq!(server.handled("lost-response"), 1, "processed once");
    assert!(server.copies("lost-response") >= 2);
    assert!(server.stats.lock().unwrap().replays >= 1);
}

#[tokio::test]
async fn silence_times_out_after_max_retransmit() {
    let server = TestServer::start().await;
    let c = client(Config {
        ack_timeout: Duration::from_millis(20),
        max_retransmit: 2,
        ..fast()
    })
    .await;
    let start = Instant::now();
    match c.post(server.addr, "silent", vec![], None).await {
        Err(Error::Timeout {
            peer,
            transmissions,
        }) => {
            assert_eq!(peer, server.addr);
            assert_eq!(transmissions, 3);
        }
        other => panic!("{other:?}"),
    }
    // 20 + 40 + 80 ms at least.
    assert!(start.elapsed() >= Duration::from_millis(140));
    assert_eq!(server.copies("silent"), 3);
}

#[tokio::test]
async fn separate_responses_and_resets() {
    let server = TestServer::start().await;
    let c = client(fast()).await;
    let r = c.post(server.addr, "slow", vec![], None).await.unwrap();
    assert_eq!(r.header.get_type(), MessageType::Confirmable);
    assert_eq!(r.payload, b"done");
    assert!(matches!(
        c.get(server.addr, "reset").await,
        Err(Error::Reset { .. })
    ));
}

#[tokio::test]
async fn block1_upload_and_block2_download() {
    let server = TestServer::start().await;
    let c = client(fast()).await;
    let body = big_body();
    let r = c
        .post(server.addr, "upload", body.clone(), None)
        .await
        .unwrap();
    assert_eq!(response_code(&r), Some(ResponseType::Changed));
    assert_eq!(String::from_utf8(r.payload).unwrap(), checksum(&body));
    assert_eq!(
        server.stats.lock().unwrap().blocks,
        5,
        "5000 bytes in 1024-byte blocks"
    );
    assert_eq!(server.handled("upload"), 1);

    let r = c.get(server.addr, "big").await.unwrap();
    assert_eq!(r.payload, body);
    assert!(
        r.get_option(CoapOption::Block2)
            .is_none_or(|l| l.is_empty())
    );

    // Smaller blocks on both sides.
    let small = client(Config {
        block_szx: 2,
        ..fast()
    })
    .await;
    let r = small.get(server.addr, "big").await.unwrap();
    assert_eq!(r.payload, body);
    let r = small
        .post(server.addr, "upload", body.clone(), None)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(r.payload).unwrap(), checksum(&body));
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_locally() {
    let server = TestServer::start().await;
    let c = client(Config {
        max_body: 1000,
        ..fast()
    })
    .await;
    assert!(matches!(
        c.post(server.addr, "upload", vec![0; 1001], None).await,
        Err(Error::TooLarge {
            size: 1001,
            max: 1000
        })
    ));
    assert!(matches!(
        c.get(server.addr, "big").await,
        Err(Error::TooLarge { .. })
    ));
}

#[tokio::test]
async fn observe_notifies_in_order_until_dropped_or_cancelled() {
    let server = TestServer::start().await;
    let c = client(fast()).await;
    let mut obs = c.observe(server.addr, "obs").await.unwrap();
    let first = obs.next().await.unwrap().unwrap();
    assert_eq!(first.payload, b"0");
    assert!(observe_value(&first).is_some());
    server.wait_for("one observer", |s| s.observers == 1).await;

    for v in ["1", "2"] {
        server.notify.send(v.as_bytes().to_vec()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), obs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(n.payload, v.as_bytes());
    }

    // A notification larger than a block: the client fetches the rest with Block2.
    let large: Vec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
    server.notify.send(large.clone()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), obs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.payload, large);

    // Dropped: the next notification is answered with a Reset and the observer removed.
    drop(obs);
    server.notify.send(b"3".to_vec()).await.unwrap();
    server
        .wait_for("the Reset of the dropped observer", |s| {
            s.observers == 0 && s.resets >= 1
        })
        .await;

    // Explicit cancellation: GET with Observe = 1.
    let obs = c.observe(server.addr, "obs").await.unwrap();
    server
        .wait_for("a new observer", |s| s.observers == 1)
        .await;
    obs.cancel().await.unwrap();
    server
        .wait_for("deregistration", |s| s.observers == 0)
        .await;
}

#[tokio::test]
async fn relay_messages_over_coap() {
    let server = TestServer::start().await;
    let c = client(Config {
        nstart: 8,
        ..fast()
    })
    .await;
    let msg = |i: u32| RelayMessage {
        header: Header {
            flags: Flags::STREAM,
            message_id: 0x1000 + i,
            stream_id: 3,
            key_index: 4,
            source: "coap://127.0.0.1:9/src".into(),
            sink: String::new(),
        },
        body: vec![i as u8; 40],
    };
    // Concurrent CON POSTs, token = relay message id each.
    let sends = (0..8).map(|i| {
        let c = c.clone();
        let m = msg(i);
        let to = server.addr;
        tokio::spawn(async move { c.post_relay(to, &m, &Target::Path("storage/1"), true).await })
    });
    for s in sends {
        let r = s.await.unwrap().unwrap();
        assert_eq!(response_code(&r), Some(ResponseType::Changed));
    }
    // The forward-proxy form carries the sink in Proxy-Uri.
    let r = c
        .post_relay(
            server.addr,
            &msg(99),
            &Target::ProxyUri("coap://127.0.0.1:7/sink"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(response_code(&r), Some(ResponseType::Changed));
    // A relay message above one block goes Block1 with the relay token kept.
    let mut large = msg(100);
    large.body = big_body();
    let r = c
        .post_relay(server.addr, &large, &Target::Path("storage/1"), true)
        .await
        .unwrap();
    assert_eq!(response_code(&r), Some(ResponseType::Changed));

    let got = server.stats.lock().unwrap().relay.clone();
    assert_eq!(got.len(), 10);
    for i in 0..8 {
        let m = got
            .iter()
            .find(|g| g.header.message_id == 0x1000 + i)
            .unwrap();
        assert_eq!(m, &msg(i));
    }
    let proxied = got
        .iter()
        .find(|g| g.header.message_id == 0x1000 + 99)
        .unwrap();
    assert_eq!(proxied.header.sink, "coap://127.0.0.1:7/sink");
    assert_eq!(proxied.header.aad(), msg(99).header.aad());
    let big = got
        .iter()
        .find(|g| g.header.message_id == 0x1000 + 100)
        .unwrap();
    assert_eq!(big, &large);
}

#[tokio::test]
async fn same_token_twice_is_refused() {
    let server = TestServer::start().await;
    let c = client(Config {
        nstart: 4,
        ..fast()
    })
    .await;
    let mut a = m2msec_node::runtime::coap::new_request(RequestType::Post, "slow", true).unwrap();
    a.set_token(vec![1, 2, 3, 4]);
    let b = a.clone();
    let c2 = c.clone();
    let to = server.addr;
    let first = tokio::spawn(async move { c2.request(to, a).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(
        c.request(server.addr, b).await,
        Err(Error::TokenInUse { .. })
    ));
    assert!(first.await.unwrap().is_ok());
}

// ---------------------------------------------------------------------------------------------
// libcoap interop (skipped when the tools are not installed)

async fn libcoap_client(args: &[&str]) -> Option<Vec<u8>> {
    let Some(bin) = common::tool(&["coap-client-notls"]) else {
        eprintln!("coap-client-notls not installed: interop check skipped");
        return None;
    };
    Some(common::run_libcoap(&bin, args).await)
}

#[tokio::test]
async fn libcoap_client_against_the_server_helpers() {
    let server = TestServer::start().await;
    let base = format!("coap://{}", server.addr);
    // Plain CON POST, piggy-backed answer.
    let Some(out) = libcoap_client(&["-m", "post", "-e", "hello", &format!("{base}/echo")]).await
    else {
        return;
    };
    assert_eq!(out.trim_ascii(), b"hello");
    // Block1 upload in 64-byte blocks (libcoap changes the token per block).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    let body: Vec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &body).unwrap();
    let out = libcoap_client(&[
        "-m",
        "post",
        "-b",
        "64",
        "-f",
        file.to_str().unwrap(),
        &format!("{base}/upload"),
    ])
    .await
    .unwrap();
    assert_eq!(out.trim_ascii(), checksum(&body).as_bytes());
    assert!(server.stats.lock().unwrap().blocks >= 3000 / 64);
    // Block2 download in the client's smaller block size.
    let out = libcoap_client(&["-m", "get", "-b", "128", &format!("{base}/big")])
        .await
        .unwrap();
    let expected = big_body();
    assert_eq!(out.strip_suffix(b"\n").unwrap_or(&out), &expected[..]);
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn libcoap_server(extra: &[&str]) -> Option<(Child, SocketAddr)> {
    let Some(bin) = common::tool(&["coap-server-notls"]) else {
        eprintln!("coap-server-notls not installed: interop check skipped");
        return None;
    };
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Child(
        std::process::Command::new(bin)
            .args(["-A", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probe = client(fast()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if probe.get(addr, "").await.is_ok() {
            return Some((child, addr));
        }
        assert!(Instant::now() < deadline, "coap-server-notls did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn client_against_libcoap_server() {
    // The server drops its 1st and 2nd datagram: our client must retransmit.
    let Some((_server, addr)) = libcoap_server(&["-l", "1,2"]).await else {
        return;
    };
    let c = client(fast()).await;
    let r = c.get(addr, "").await.unwrap();
    assert_eq!(response_code(&r), Some(ResponseType::Content));
    assert!(String::from_utf8_lossy(&r.payload).contains("libcoap"));

    // Block1 PUT then Block2 GET of a 3000-byte body.
    let body: Vec<u8> = (0..3000).map(|i| b'A' + (i % 26) as u8).collect();
    let mut put =
        m2msec_node::runtime::coap::new_request(RequestType::Put, "example_data", true).unwrap();
    put.payload = body.clone();
    let r = c.request(addr, put).await.unwrap();
    assert!(is_success(&r), "{:?}", response_code(&r));
    let small = client(Config {
        block_szx: 4,
        ..fast()
    })
    .await;
    let r = small.get(addr, "example_data").await.unwrap();
    assert_eq!(r.payload, body);

    // Observe /time: libcoap notifies every second with CON messages we must ACK.
    let mut obs = c.observe(addr, "time").await.unwrap();
    let first = obs.next().await.unwrap().unwrap();
    assert!(observe_value(&first).is_some());
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(5), obs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(response_code(&n), Some(ResponseType::Content));
    }
    obs.cancel().await.unwrap();
}

/// Not a test of the transport: the byte layout of a piggy-backed answer, checked once.
#[test]
fn piggybacked_answer_layout() {
    let mut req = Packet::new();
    req.header.set_type(MessageType::Confirmable);
    req.header.code = MessageClass::Request(RequestType::Post);
    req.header.message_id = 0x0102;
    req.set_token(vec![0xaa, 0xbb]);
    let mut ids = MessageIds::starting_at(0);
    let r = response(&req, ResponseType::Changed, &mut ids);
    assert_eq!(r.to_bytes().unwrap(), [0x62, 0x44, 0x01, 0x02, 0xaa, 0xbb]);
}
