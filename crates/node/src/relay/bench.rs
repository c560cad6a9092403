//! The figures of `m2msec bench` for the relay.
//!
//! - **AFGH** (the paper's Fig. 7 and 8): second-level encryptions (eq. (1)), re-encryptions
//!   (eq. (3)) and first-level decryptions (eq. (4)) per second, of a management message's
//!   plaintext (a signed section key), and re-encryptions against encryptions as the ratio. The
//!   paper found re-encryption 4–8 times faster than encryption with its symmetric pairing; on
//!   BLS12-381 a re-encryption is one pairing and an encryption one exponentiation in GT plus a
//!   G1 multiplication, so it is faster by less (about 1.8 times here): reported as measured.
//! - **Stream throughput** end to end on loopback: a source streams over CoAP into a relay proxy
//!   whose storage is durable (redb; each message acknowledged once committed), which forwards it
//!   to a sink over plain UDP; payload Mbit/s from the first message sealed to the last one
//!   delivered by the sink. Against **raw loopback UDP forwarding** measured in the same run: a
//!   trivial forwarder task (recv, send) between a sender and a receiver on 127.0.0.1, datagrams
//!   of the stream's payload size, paced so that none is lost. The ratio is relay / raw.
//! - **The proxy's peak memory**: when the bench is given the `m2msec` binary, the proxy runs as
//!   a child process (`m2msec run relay-proxy`) and its `VmHWM` (peak resident set, Linux
//!   `/proc/PID/status`) is read after the stream.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre;
use m2msec_crypto::rng::SeededRng;

use crate::error::{Error, Result};
use crate::harness::demo::Bound;
use crate::harness::figure::Figure;

/// Size of the AFGH plaintext measured: about a signed section key in CBOR (stream id, key
/// index, suite, a 32-byte key, validity, a 64-byte Ed25519 signature).
pub const SECTION_KEY_PLAINTEXT: usize = 128;

/// AFGH operations per second.
#[derive(Clone, Copy, Debug)]
pub struct AfghRates {
    /// Second-level encryptions (eq. (1)) per second.
    pub encrypt: f64,
    /// Re-encryptions (eq. (3)) per second.
    pub reencrypt: f64,
    /// First-level decryptions (eq. (4)) per second.
    pub decrypt: f64,
}

/// Repeats `op` for about `budget` (at least 3 times) and returns the rate per second.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    op(); // warm-up
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < budget {
        op();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Measures the AFGH operations, about `budget` each.
///
/// # Errors
///
/// [`Error::Crypto`] if an operation fails (it does not with fresh keys).
pub fn afgh_rates(budget: Duration, seed: u64) -> Result<AfghRates> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let source = pre::SecretKey::generate(&mut rng);
    let sink = pre::SecretKey::generate(&mut rng);
    let rekey = source.rekey_to(&sink.public_key());
    let public = source.public_key();
    let plaintext = [0x5a; SECTION_KEY_PLAINTEXT];
    let suite = AeadSuite::ChaCha20Poly1305;
    let aad = b"relay header";
    let c2 = pre::seal(&public, &mut rng, suite, aad, &plaintext)?;
    let c1 = pre::reencrypt(&rekey, &c2);
    pre::open_first(&sink, &c1, aad)?;
    let mut failed = false;
    let encrypt = rate(budget, || {
        failed |= black_box(pre::seal(&public, &mut rng, suite, aad, &plaintext)).is_err();
    });
    let reencrypt = rate(budget, || {
        black_box(pre::reencrypt(&rekey, black_box(&c2)));
    });
    let decrypt = rate(budget, || {
        failed |= black_box(pre::open_first(&sink, black_box(&c1), aad)).is_err();
    });
    if failed {
        return Err(Error::Usage(
            "an AFGH operation failed during the benchmark".into(),
        ));
    }
    Ok(AfghRates {
        encrypt,
        reencrypt,
        decrypt,
    })
}

/// The AFGH figures: three rates, and re-encryptions per second against encryptions per
/// second (the ratio is how many times faster re-encryption is; the paper: 4 to 8).
#[must_use]
pub fn afgh_figures(r: &AfghRates) -> Vec<Figure> {
    vec![
        Figure::plain("relay.afgh.encrypt_per_s".into(), "op/s", r.encrypt),
        Figure::plain("relay.afgh.reencrypt_per_s".into(), "op/s", r.reencrypt),
        Figure::plain("relay.afgh.decrypt_per_s".into(), "op/s", r.decrypt),
        Figure::against(
            "relay.afgh.reencrypt_vs_encrypt".into(),
            "op/s",
            r.reencrypt,
            r.encrypt,
        ),
    ]
}

/// Payload bits per second of `messages` datagrams of `size` bytes sent from one socket through
/// a trivial forwarder task (recv, then send) to a receiver, all on 127.0.0.1. The sender keeps
/// at most `window` datagrams in flight so that loopback buffers never drop one (the same
/// lossless condition the relay runs under).
///
/// # Errors
///
/// Socket errors; [`Error::Timeout`] if the datagrams do not all arrive within 30 s.
pub async fn raw_udp_forwarding(messages: u32, size: usize, window: u32) -> Result<f64> {
    let [sender, forwarder, receiver] = Bound::ephemeral(3).await?.take()?;
    let forwarder_addr = forwarder.local_addr().map_err(Error::Socket)?;
    let receiver_addr = receiver.local_addr().map_err(Error::Socket)?;
    let received = Arc::new(AtomicU64::new(0));
    let forward = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok(n) = forwarder.recv(&mut buf).await else {
                break;
            };
            if forwarder.send_to(&buf[..n], receiver_addr).await.is_err() {
                break;
            }
        }
    });
    let count = received.clone();
    let receive = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while receiver.recv(&mut buf).await.is_ok() {
            count.fetch_add(1, Ordering::Release);
        }
    });
    let payload = vec![0xa5u8; size];
    let start = Instant::now();
    let run = async {
        for k in 0..u64::from(messages) {
            while k >= received.load(Ordering::Acquire) + u64::from(window.max(1)) {
                tokio::task::yield_now().await;
            }
            sender
                .send_to(&payload, forwarder_addr)
                .await
                .map_err(Error::Socket)?;
        }
        while received.load(Ordering::Acquire) < u64::from(messages) {
            tokio::task::yield_now().await;
        }
        Ok::<(), Error>(())
    };
    let limit = Duration::from_secs(30);
    let outcome = tokio::time::timeout(limit, run).await;
    let elapsed = start.elapsed();
    forward.abort();
    receive.abort();
    outcome.map_err(|_| Error::Timeout(limit))??;
    Ok(f64::from(messages) * size as f64 * 8.0 / elapsed.as_secs_f64())
}

/// What the stream benchmark measured.
#[derive(Clone, Copy, Debug)]
pub struct StreamFigures {
    /// Payload bits per second through the relay, end to end.
    pub relay_bps: f64,
    /// Payload bits per second of raw loopback UDP forwarding.
    pub raw_bps: f64,
    /// Messages the sink delivered (all of them unless the run timed out).
    pub delivered: u32,
    /// Messages sent.
    pub messages: u32,
    /// The proxy's peak resident memory in KiB, when it ran as a child process on Linux.
    pub proxy_peak_kib: Option<u64>,
}

/// Options of [`stream_throughput`].
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Data messages streamed.
    pub messages: u32,
    /// Plaintext bytes per message.
    pub size: usize,
    /// The `m2msec` binary: the proxy then runs as its own process (and its memory is measured);
    /// absent: in this process.
    pub proxy_exe: Option<PathBuf>,
    /// Seed of the keys.
    pub seed: u64,
    /// Longest wait for the sink to deliver everything.
    pub timeout: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            messages: 2000,
            size: 1024,
            proxy_exe: None,
            seed: 1,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A proxy for the benchmark: a child process, or a task.
enum BenchProxy {
    Child(ChildProxy),
    Task(
        tokio::task::JoinHandle<Result<()>>,
        crate::runtime::driver::ShutdownSender,
    ),
}

/// A `m2msec run relay-proxy` child, killed when dropped.
struct ChildProxy(std::process::Child);

impl Drop for ChildProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildProxy {
    /// Starts `exe run relay-proxy --config config` and waits until it serves.
    fn start(exe: &Path, config: &Path) -> Result<Self> {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(exe)
            .args(["run", "relay-proxy", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(exe, e))?;
        let stderr = child.stderr.take();
        let child = Self(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(core::result::Result::ok)
            {
                if line.contains("serving") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| Error::Control("the relay proxy child did not start".into()))?;
        Ok(child)
    }

    /// Peak resident memory (`VmHWM`) in KiB, from `/proc/PID/status`.
    fn peak_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// A loopback UDP port free now.
fn free_port() -> Result<u16> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Socket)?;
    Ok(s.local_addr().map_err(Error::Socket)?.port())
}

/// Streams `opts.messages` messages source → proxy (durable) → UDP sink on loopback, then
/// measures raw UDP forwarding of the same payloads.
///
/// # Errors
///
/// Set-up errors (keys, sockets, the child process), proxy errors while streaming.
#[allow(clippy::too_many_lines)] // one linear script: set-up, stream, measure, tear down
pub async fn stream_throughput(opts: &StreamOptions) -> Result<StreamFigures> {
    use m2msec_crypto::sig::{SigSuite, SigningKey};
    use m2msec_protocol::relay::source_store::{SourceParams, StoredSource};
    use m2msec_protocol::relay::{SourceConfig, SourceSeed, TrustedSource};
    use m2msec_store::MemoryStore;

    use super::client::{self, ProxyClient, SendHooks, SendOptions};
    use super::proxy::{Proxy, ProxyConfig};
    use super::sink::spawn_local;
    use crate::runtime::driver::{shutdown_channel, wall_clock};

    let messages = opts.messages.max(1);
    let mut rng = SeededRng::from_seed_u64(opts.seed);
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let config = ProxyConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
        state: Some(dir.path().join("relay-proxy.redb")),
        ..ProxyConfig::default()
    };
    let (stop, shutdown) = shutdown_channel();
    let proxy = match &opts.proxy_exe {
        Some(exe) => {
            let file = dir.path().join("relay-proxy.toml");
            let text = toml::to_string(&config)
                .map_err(|e| Error::Usage(format!("cannot write the proxy config: {e}")))?;
            crate::runtime::keyfile::write_public(&file, &text)?;
            BenchProxy::Child(ChildProxy::start(exe, &file)?)
        }
        None => {
            let p = Proxy::bind(config.clone()).await?;
            let (proxy_stop, proxy_shutdown) = shutdown_channel();
            BenchProxy::Task(tokio::spawn(p.run(proxy_shutdown)), proxy_stop)
        }
    };

    let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng)?;
    let sink_key = pre::SecretKey::generate(&mut rng);
    let sink_public = sink_key.public_key();
    let url = "coap://127.0.0.1/bench-source";
    let trusted = TrustedSource {
        url: url.into(),
        owner: owner.verifying_key(),
    };
    let mut sink = spawn_local(
        sink_key,
        trusted,
        Arc::new(MemoryStore::new()),
        dir.path().join("sink.jsonl"),
        false,
        None,
        shutdown.clone(),
    )
    .await?;

    let params = SourceParams {
        config: SourceConfig::new(url, 1),
        seed: SourceSeed::generate(&mut rng),
        owner,
        capacity: 0,
        udp: false,
    };
    let mut source = StoredSource::open(params, Arc::new(MemoryStore::new()), &mut rng)?;
    let client = ProxyClient::connect(config.listen, client::streaming_config(), None).await?;
    let storage = client.store(&source).await?;
    let epoch = source.epoch_at(wall_clock())?;
    let grant = source.grant(&sink.url, &sink_public, epoch..=epoch.saturating_add(1))?;
    client
        .forward(
            &source,
            storage.storage_id,
            vec![grant],
            0,
            m2msec_wire::relay::api::Start::Beginning,
            &mut rng,
        )
        .await?;

    let payloads: Vec<Vec<u8>> = (0..messages)
        .map(|k| {
            let mut p = k.to_be_bytes().to_vec();
            p.resize(opts.size.max(4), 0x42);
            p
        })
        .collect();
    let start = Instant::now();
    client::send_stream(
        &mut source,
        &client,
        &storage,
        payloads,
        SendOptions {
            window: 32,
            ..SendOptions::default()
        },
        &mut rng,
        &mut SendHooks {
            sealed: &mut |_| {},
            acked: &mut |_| {},
        },
    )
    .await?;
    let mut delivered = 0u32;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    while delivered < messages {
        match tokio::time::timeout_at(deadline, sink.events.recv()).await {
            Ok(Some(_)) => delivered += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    let proxy_peak_kib = match &proxy {
        BenchProxy::Child(c) => c.peak_kib(),
        BenchProxy::Task(..) => None,
    };
    stop.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.task).await;
    match proxy {
        BenchProxy::Child(c) => drop(c),
        BenchProxy::Task(task, proxy_stop) => {
            proxy_stop.shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
    let relay_bps =
        f64::from(delivered) * opts.size.max(4) as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9);
    let raw_bps = raw_udp_forwarding(messages, opts.size.max(4), 32).await?;
    Ok(StreamFigures {
        relay_bps,
        raw_bps,
        delivered,
        messages,
        proxy_peak_kib,
    })
}

/// The stream figures: relay Mbit/s against raw forwarding, and the proxy's peak memory.
#[must_use]
pub fn stream_figures(s: &StreamFigures) -> Vec<Figure> {
    let mut out = vec![
        Figure::against(
            "relay.stream.mbit_per_s_vs_raw_udp_forwarding".into(),
            "Mbit/s",
            s.relay_bps / 1e6,
            s.raw_bps / 1e6,
        ),
        Figure::plain(
            "relay.stream.delivered".into(),
            "msgs",
            f64::from(s.delivered),
        ),
    ];
    if let Some(kib) = s.proxy_peak_kib {
        out.push(Figure::plain(
            "relay.proxy.peak_memory".into(),
            "MiB",
            kib as f64 / 1024.0,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn afgh_rates_are_positive() -> Result<()> {
        let r = afgh_rates(Duration::from_millis(1), 1)?;
        assert!(r.encrypt > 0.0 && r.reencrypt > 0.0 && r.decrypt > 0.0);
        let f = afgh_figures(&r);
        assert_eq!(f[3].baseline, Some(r.encrypt));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_forwarding_delivers_everything() -> Result<()> {
        let bps = raw_udp_forwarding(200, 100, 16).await?;
        assert!(bps > 0.0);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_through_an_in_process_proxy() -> Result<()> {
        let s = stream_throughput(&StreamOptions {
            messages: 50,
            size: 64,
            ..StreamOptions::default()
        })
        .await?;
        assert_eq!(s.delivered, 50);
        assert!(s.relay_bps > 0.0 && s.raw_bps > 0.0);
        Ok(())
    }
}
