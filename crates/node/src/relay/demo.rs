//! `m2msec demo --protocol relay`: the paper's scenario (§III-D, Fig. 3 and 4) on loopback, every
//! role a tokio task on its own socket, over real CoAP.
//!
//! 1. The source creates a storage on the proxy (owner key registered) and streams to it while
//!    **no sink is known**: the proxy stores sections it cannot read.
//! 2. **Sink 1 is designated later**: the source computes re-encryption keys for the stream's
//!    epochs and asks the proxy to forward the storage from the beginning: sink 1 receives
//!    everything, backlog included.
//! 3. The source streams on; **sink 2 is added mid-stream** (control `AddSink`, `Start::Now`,
//!    re-encryption keys from the current epoch): it receives from the section in progress on
//!    (or, when sink 1 had already taken that section's key and the proxy removed it, from the
//!    next section: on a lossy link the timing decides).
//! 4. The source streams on; both sinks receive.
//!
//! The run is ok when sink 1 delivered exactly what was sent and sink 2 exactly what was sent
//! from its first section on, each message once (`session_key_match`: every
//! sink's plaintexts equal the source's for its window).
//!
//! The proxy keeps its storage in redb in a temporary directory (acknowledged only once
//! durable); each sink keeps its seen set there too. Rotation is short (a new section key every
//! `rotate_messages` messages) so that several sections appear.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_crypto::pre;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_protocol::relay::source_store::{SourceParams, StorageRecord, StoredSource};
use m2msec_protocol::relay::window::{Received, Sent};
use m2msec_protocol::relay::{SourceConfig, SourceSeed, TrustedSource};
use m2msec_store::{MemoryStore, RedbStore};
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::{Control, Start};

use super::client::{self, ProxyClient, SendHooks, SendOptions};
use super::proxy::{Proxy, ProxyConfig};
use super::report::SinkOutcome;
use super::sink::{LocalSink, spawn_local};
use crate::error::{Error, Result};
use crate::harness::demo::{Deployment, RunOptions, joined, millis};
use crate::harness::report::{Detail, Helpers, Progress, RunReport};
use crate::runtime::coap::{self, Transmission};
use crate::runtime::driver::{Shutdown, wall_clock};
use crate::runtime::tap::{WireTotals, Wiretap};

/// The source's URL in the demo.
pub const SOURCE_URL: &str = "coap://127.0.0.1/demo-source";

/// CoAP's first wait for an acknowledgement in the demo. Loopback's round trip is far below a
/// millisecond, and RFC 7252 §4.8.1 lets an endpoint shorten ACK_TIMEOUT where the round trip
/// is known: with the RFC's 2 s (the daemons' default, for real links), each datagram a
/// `--loss` run drops would hold a section up for seconds in a run that takes half a second.
pub const LOOPBACK: Transmission = Transmission {
    ack_timeout_ms: 200,
    max_retransmit: coap::MAX_RETRANSMIT,
};

/// Options of one relay demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Messages streamed in each of the three phases (before sink 1, before sink 2, after).
    pub phases: [u32; 3],
    /// Plaintext bytes per message.
    pub size: usize,
    /// A new section key after this many data messages.
    pub rotate_messages: u32,
    /// Seed, capture (source, proxy and sinks), time limit (default 60 s) and link of the run.
    pub run: RunOptions,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            phases: [60, 40, 60],
            size: 48,
            rotate_messages: 20,
            run: RunOptions {
                timeout: Duration::from_secs(60),
                ..RunOptions::default()
            },
        }
    }
}

/// Seeded RNG streams of this demo's roles ("REL" and the role's number).
const RNG_DOMAIN: u64 = 0x5245_4c00;

/// The plaintext of message `k`.
#[must_use]
pub fn message(k: u32, size: usize) -> Vec<u8> {
    let mut m = format!("reading {k:05}: {} mV", 3000 + k % 700).into_bytes();
    m.resize(size.max(m.len()), b'.');
    m
}

/// One sink of the demo: its task and its deliveries.
struct DemoSink {
    sink: LocalSink,
    received: Received,
}

impl DemoSink {
    async fn start(
        dir: &std::path::Path,
        name: &str,
        key: pre::SecretKey,
        owner: m2msec_crypto::sig::VerifyingKey,
        tap: &Wiretap,
        shutdown: Shutdown,
    ) -> Result<Self> {
        let store = Arc::new(RedbStore::open(dir.join(format!("{name}.redb")))?);
        let trusted = TrustedSource {
            url: SOURCE_URL.into(),
            owner,
        };
        let output = dir.join(format!("{name}.jsonl"));
        let tap = Some(tap.clone());
        let sink = spawn_local(key, trusted, store, output, true, tap, shutdown).await?;
        Ok(Self {
            sink,
            received: Received::default(),
        })
    }

    fn drain(&mut self) {
        while let Ok(d) = self.sink.events.try_recv() {
            self.received.add(&d);
        }
    }
}

/// What the source has streamed so far.
#[derive(Default)]
struct Streamed {
    /// Bytes per message.
    size: usize,
    /// Data messages and sections sent.
    sent: Sent,
    /// The number of the next message.
    next: u32,
}

impl Streamed {
    /// Seals and sends the next `n` messages, recording each data message's id and key index.
    async fn more(
        &mut self,
        n: u32,
        source: &mut StoredSource,
        client: &ProxyClient,
        storage: &StorageRecord,
        rng: &mut dyn CryptoRng,
    ) -> Result<()> {
        let payloads: Vec<Vec<u8>> = (self.next..self.next + n)
            .map(|k| message(k, self.size))
            .collect();
        self.next += n;
        let mut queue = payloads.clone().into_iter();
        let sent = &mut self.sent;
        let mut sealed = |m: &RelayMessage| sent.sealed(m, &mut queue);
        client::send_stream(
            source,
            client,
            storage,
            payloads,
            SendOptions::default(),
            rng,
            &mut SendHooks {
                sealed: &mut sealed,
                acked: &mut |_| {},
            },
        )
        .await?;
        Ok(())
    }
}

/// Waits until every sink delivered what it expects from its first section on (or `limit`
/// passes), then a little longer so that a duplicate would show.
async fn settle(sinks: &mut [DemoSink], firsts: &[Option<u16>], sent: &Sent, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        for s in sinks.iter_mut() {
            s.drain();
        }
        let reached = sinks
            .iter()
            .zip(firsts)
            .all(|(s, &first)| s.received.reached(sent, first));
        if reached || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for s in sinks.iter_mut() {
        s.drain();
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs the relay demo over CoAP on loopback. `wall_ms` runs from the storage's creation to
/// the last delivery (key generation excluded).
///
/// # Errors
///
/// Set-up errors only (sockets, keys, stores); a run that fails is a report with `ok: false`
/// and its `error`.
#[allow(clippy::too_many_lines)] // one linear script: set-up, the four steps, the report
pub async fn run(opts: &DemoOptions, progress: &dyn Progress) -> Result<RunReport> {
    if opts.phases.contains(&0) || opts.rotate_messages == 0 {
        return Err(Error::Usage(
            "every phase needs at least one message, and rotation at least one".into(),
        ));
    }
    let run = Deployment::new(&opts.run, RNG_DOMAIN, Vec::new())?;
    let tap = &run.tap;
    progress.stage("generating keys");
    let mut key_rng = run.rng(100);
    let owner = SigningKey::generate(SigSuite::Ed25519, &mut *key_rng)?;
    let owner_pub = owner.verifying_key();
    let seed = SourceSeed::generate(&mut *key_rng);
    let [k1, k2] = [
        pre::SecretKey::generate(&mut *key_rng),
        pre::SecretKey::generate(&mut *key_rng),
    ];
    let public = [k1.public_key(), k2.public_key()];
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;

    let shutdown = run.shutdown.clone();
    progress.stage("starting the proxy and the sinks");
    let proxy = Proxy::bind_tapped(
        ProxyConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            state: Some(dir.path().join("relay-proxy.redb")),
            coap: LOOPBACK,
            ..ProxyConfig::default()
        },
        Some(tap.clone()),
    )
    .await?;
    let proxy_addr = proxy.local_addr();
    let proxy_task = tokio::spawn(proxy.run(shutdown.clone()));
    let mut sinks = Vec::new();
    for (name, key) in ["sink-1", "sink-2"].into_iter().zip([k1, k2]) {
        let owner = owner_pub.clone();
        sinks.push(DemoSink::start(dir.path(), name, key, owner, tap, shutdown.clone()).await?);
    }
    let mut source_rng = run.rng(1);
    let params = SourceParams {
        config: SourceConfig {
            rotate_messages: opts.rotate_messages,
            rotate_after: Duration::from_secs(3600),
            ..SourceConfig::new(SOURCE_URL, 1)
        },
        seed,
        owner,
        capacity: 0,
        udp: false,
    };
    let mut source = StoredSource::open(params, Arc::new(MemoryStore::new()), &mut *source_rng)?;
    let config = LOOPBACK.apply(client::streaming_config());
    let client = ProxyClient::connect(proxy_addr, config, Some(tap.clone())).await?;

    let start = Instant::now();
    let mut streamed = Streamed {
        size: opts.size,
        ..Streamed::default()
    };
    let mut storage_id = 0;
    let mut designated = [(0u32, 0u16); 2];
    let mut done = None;
    let [n1, n2, n3] = opts.phases;
    let script = async {
        progress.stage("creating the storage");
        let storage = client.store(&source).await?;
        storage_id = storage.storage_id;

        progress.stage(&format!("streaming {n1} messages, no sink known yet"));
        streamed
            .more(n1, &mut source, &client, &storage, &mut *source_rng)
            .await?;

        progress.stage("designating sink 1: forward from the beginning");
        let now = wall_clock();
        let epoch = source.epoch_at(now)?;
        let first = source.first_epoch()?.unwrap_or(epoch);
        let grant = source.grant(
            &sinks[0].sink.url,
            &public[0],
            first..=epoch.saturating_add(1),
        )?;
        designated[0] = (count(streamed.sent.data.len()), 0);
        let forward = client
            .forward(
                &source,
                storage_id,
                vec![grant],
                0,
                Start::Beginning,
                &mut *source_rng,
            )
            .await?;

        progress.stage(&format!("streaming {n2} more messages"));
        streamed
            .more(n2, &mut source, &client, &storage, &mut *source_rng)
            .await?;

        progress.stage("adding sink 2 mid-stream");
        let epoch = source.epoch_at(wall_clock())?;
        let grant = source.grant(
            &sinks[1].sink.url,
            &public[1],
            epoch..=epoch.saturating_add(1),
        )?;
        // The proxy starts a sink added with Start::Now at the section in progress.
        let in_progress = source.position().next_key_index().wrapping_sub(1);
        designated[1] = (count(streamed.sent.data.len()), in_progress);
        client
            .control(
                &source,
                forward.forward_id,
                &Control::AddSink(grant, Start::Now),
                &mut *source_rng,
            )
            .await?;

        progress.stage(&format!("streaming {n3} more messages to both sinks"));
        streamed
            .more(n3, &mut source, &client, &storage, &mut *source_rng)
            .await?;

        progress.stage("waiting for the sinks");
        let firsts = [None, Some(designated[1].1)];
        settle(&mut sinks, &firsts, &streamed.sent, opts.run.timeout).await;
        done = Some(Instant::now());
        Ok::<(), Error>(())
    };
    let mut error = run.script(script).await;
    let wall_ms = millis(start, done);
    for s in &mut sinks {
        s.drain();
    }
    let load = client.load(3600).await.ok();
    // The one forward of the run.
    let reencrypted = client
        .forward_monitor(1)
        .await
        .map_or(0, |m| m.sinks.iter().map(|s| s.reencrypted).sum::<u64>());

    let mut outcomes = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let received = &s.received;
        let from = received.first_section(&streamed.sent, (i == 1).then_some(designated[1].1));
        let (expected, exact) = received.matches(&streamed.sent, from);
        outcomes.push(SinkOutcome {
            url: s.sink.url.clone(),
            designated_after: designated[i].0,
            first_key_index: from,
            expected,
            delivered: count(received.count()),
            matches: exact,
        });
    }
    run.stop();
    let mut sink_asymmetric = 0u64;
    let within = Duration::from_secs(5);
    for s in sinks {
        if let Some(node) = joined(s.sink.task, within, "sink", &mut error).await {
            sink_asymmetric += node.op_counts().asymmetric;
        }
    }
    joined(proxy_task, within, "proxy", &mut error).await;
    run.finish().await?;
    let all_match = outcomes.iter().all(|o| o.matches);
    if error.is_none() && !all_match {
        error = Some(
            outcomes
                .iter()
                .filter(|o| !o.matches)
                .map(|o| {
                    format!(
                        "{} delivered {} of {} expected",
                        o.url, o.delivered, o.expected
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    let wire = load.map_or_else(WireTotals::default, |l| WireTotals {
        messages: l.messages_in + l.messages_out,
        bytes: l.bytes_in + l.bytes_out,
    });
    let total = count(streamed.sent.data.len());
    let participants = outcomes.iter().map(|o| o.url.clone()).collect();
    let detail = Detail::Relay(super::report::Detail {
        group: "bls12-381",
        pke: "afgh",
        sent: total,
        stored: total,
        delivered: outcomes.iter().map(|o| o.delivered).sum(),
        storage_id,
        sections: streamed.sent.sections,
        stored_before_sink: designated[0].0,
        rotate_messages: opts.rotate_messages,
        reencrypted,
        sink_asymmetric_ops: sink_asymmetric,
        sinks: outcomes,
    });
    Ok(RunReport {
        device_ops: source.op_counts().into(),
        session: Some(format!("storage {storage_id}")),
        suite: "chacha20-poly1305",
        helpers: Helpers {
            participants,
            proxies: 1,
            threshold: 1,
            ..Helpers::default()
        },
        ..RunReport::new(super::PROTOCOL, &opts.run, wire, wall_ms, detail)
            .judged(all_match, error, true)
    })
}
