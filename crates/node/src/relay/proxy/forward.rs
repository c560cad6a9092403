//! The forward engine: one pump per sink of each forward.
//!
//! A pump reads its storage's queue from the sink's position (`queue_range`), gives each
//! message to its [`Forwarder`] (which re-encrypts management and individual messages to the
//! sink and passes the data of the sections it re-encrypted), and delivers the result — a CoAP
//! confirmable POST to a `coap://` sink, a datagram to a `udp://` one — at the forward's rate,
//! up to [`WINDOW`] at once so that a lost datagram delays one message, not the stream.
//! The position advances, in storage order, only once the sink has the message (a 2.xx; a
//! 4.xx, by which the sink says it will never take it, is logged and passed) or the forwarder
//! skipped it (outside the sink's epochs). When the sink is down the same message is retried with exponential back-off,
//! for as long as it takes: nothing is ever skipped for lack of an answer.
//!
//! Positions live in `Core` and are written by the writer's housekeeping every 100 ms, with the
//! forwarder's sections (`Forwarder::snapshot`) when they changed. After a crash a sink may thus
//! receive again what it acknowledged in the last moments before it; the sink's durable seen set
//! drops those copies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use m2msec_protocol::relay::proxy::PumpSpec;
use m2msec_protocol::relay::{Forwarded, Forwarder};
use m2msec_wire::relay::{Flags, RelayMessage, parse_sink_url};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Shared;
use super::deliver::{Outcome, Transport};
use super::ingest::LogLimit;
use super::metrics::Slot;
use super::records::queue_table;
use super::state::MonitorId;
use super::writer::{blocking, now_s};

/// Messages read from the store at a time.
const READ_BATCH: usize = 64;
/// First pause after a failed delivery; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Deliveries under way at once to one sink. RFC 7252 §4.7 lets an endpoint raise NSTART
/// (default 1) when it knows the path; the proxy–sink path is the proxy's own, and with one
/// message at a time every lost datagram would stall the whole stream for a CoAP
/// retransmission timeout (2–3 s) instead of delaying one message.
pub(crate) const WINDOW: usize = 16;
/// Longest pause between two attempts at one message.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A pump with nothing to do looks again at least this often.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Starts the pump of `spec`.
pub(crate) fn spawn(shared: &Arc<Shared>, spec: PumpSpec) -> AbortHandle {
    let shared = Arc::clone(shared);
    tokio::spawn(async move { pump(shared, spec).await }).abort_handle()
}

/// The forward's rate as pacing: at most one message per `1/rate` seconds.
#[derive(Debug)]
struct Pace {
    interval: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(rate: u32) -> Self {
        Self {
            interval: (rate > 0).then(|| Duration::from_secs(1) / rate),
            next: Instant::now(),
        }
    }

    async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + interval;
    }
}

/// Where the pump stands, read from `Core`.
enum Standing {
    /// The forward or the sink is gone (deleted, removed): the pump ends.
    Gone,
    Paused,
    /// Deliver from `cursor`; the storage's next sequence number is `next`.
    Run {
        cursor: u64,
        next: u64,
    },
}

fn standing(shared: &Shared, spec: &PumpSpec) -> Standing {
    let core = shared.core();
    let Some(f) = core.forwards.get(&spec.forward_id) else {
        return Standing::Gone;
    };
    let Some(sink) = f
        .sinks
        .get(&spec.url)
        .filter(|s| s.generation == spec.generation)
    else {
        return Standing::Gone;
    };
    if f.record.paused {
        return Standing::Paused;
    }
    let next = core
        .storages
        .get(&spec.storage_id)
        .map_or(0, |s| s.stats.next_seq);
    Standing::Run {
        cursor: sink.pos.cursor,
        next,
    }
}

async fn pump(shared: Arc<Shared>, spec: PumpSpec) {
    let mut stop = shared.stop.clone();
    let log = Mutex::new(LogLimit::new("forwarding"));
    let Ok(url) = parse_sink_url(&spec.url) else {
        tracing::warn!(sink = %spec.url, "sink URL does not parse: not forwarding");
        return;
    };
    let mut forwarder = match forwarder_at(&spec, &spec.snapshot) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(sink = %spec.url, error = %e, "sink's grant refused: not forwarding");
            return;
        }
    };
    let (arrived, control) = {
        let core = shared.core();
        let Some(s) = core.storages.get(&spec.storage_id) else {
            return;
        };
        let Some(f) = core.forwards.get(&spec.forward_id) else {
            return;
        };
        (
            Arc::clone(&s.handles.arrived),
            Arc::clone(&f.handles.control),
        )
    };
    let transport = loop {
        match Transport::open(&url, shared.config.coap, shared.tap.as_ref()).await {
            Ok(t) => break t,
            Err(e) => {
                warn(
                    &log,
                    url.addr(),
                    &format!("cannot open a socket to the sink: {e}"),
                );
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(IDLE_RECHECK) => {}
                }
            }
        }
    };
    let mut pace = Pace::new(spec.rate);
    let table = queue_table(spec.storage_id);
    tracing::info!(forward = spec.forward_id, sink = %spec.url, epochs = ?forwarder.epochs(), "forwarding");
    loop {
        if *stop.borrow() {
            return;
        }
        // Registered before the state is read, so a wake-up in between is not lost.
        let arrived_wait = arrived.notified();
        let control_wait = control.notified();
        tokio::pin!(arrived_wait, control_wait);
        arrived_wait.as_mut().enable();
        control_wait.as_mut().enable();
        let cursor = match standing(&shared, &spec) {
            Standing::Gone => return,
            Standing::Paused => {
                tokio::select! {
                    () = &mut control_wait => {}
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(IDLE_RECHECK) => {}
                }
                continue;
            }
            Standing::Run { cursor, next } if cursor >= next => {
                tokio::select! {
                    () = &mut arrived_wait => {}
                    () = &mut control_wait => {}
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(IDLE_RECHECK) => {}
                }
                continue;
            }
            Standing::Run { cursor, .. } => cursor,
        };
        let store = Arc::clone(&shared.store);
        let t = table.clone();
        let batch = match blocking(move || store.queue_range(&t, cursor, READ_BATCH)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the storage failed");
                tokio::time::sleep(IDLE_RECHECK).await;
                continue;
            }
        };
        if batch.is_empty() {
            // The rest was removed with its storage: the next look finds the forward gone.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        match deliver_batch(
            &shared,
            &spec,
            &mut forwarder,
            &transport,
            &mut pace,
            &log,
            batch,
        )
        .await
        {
            Step::Next => {}
            Step::Interrupted => {
                // The forwarder may have seen messages past the position (those under way
                // were dropped): back to what was recorded with the position, as a restart.
                let snapshot = {
                    let core = shared.core();
                    core.forwards
                        .get(&spec.forward_id)
                        .and_then(|f| f.sinks.get(&spec.url))
                        .map(|s| s.pos.snapshot.clone())
                        .unwrap_or_default()
                };
                if let Ok(f) = forwarder_at(&spec, &snapshot) {
                    forwarder = f;
                }
            }
            Step::Gone => return,
        }
    }
}

/// The sink's forwarder with the sections of `snapshot` (`Forwarder::snapshot`; empty: none).
fn forwarder_at(
    spec: &PumpSpec,
    snapshot: &[u8],
) -> Result<Forwarder, m2msec_protocol::relay::Error> {
    if snapshot.is_empty() {
        Forwarder::new(spec.url.clone(), spec.rekeys.clone())
    } else {
        Forwarder::restore(spec.url.clone(), spec.rekeys.clone(), snapshot)
            .or_else(|_| Forwarder::new(spec.url.clone(), spec.rekeys.clone()))
    }
}

enum Step {
    Next,
    Interrupted,
    Gone,
}

/// One stored message, made ready for the sink in storage order.
struct Prepared {
    seq: u64,
    /// What goes to the sink, if anything (`None`: skipped).
    out: Option<RelayMessage>,
    reencrypted: bool,
    management: bool,
    /// The forwarder's sections after this message, recorded with the position once it is
    /// delivered (a later message's may already be ahead).
    snapshot: Option<Vec<u8>>,
}

fn prepare(
    spec: &PumpSpec,
    forwarder: &mut Forwarder,
    log: &Mutex<LogLimit>,
    addr: std::net::SocketAddr,
    seq: u64,
    value: &[u8],
) -> Prepared {
    let skipped = Prepared {
        seq,
        out: None,
        reencrypted: false,
        management: false,
        snapshot: None,
    };
    match RelayMessage::decode(value) {
        Err(e) => {
            warn(
                log,
                addr,
                &format!("stored message {seq} does not decode: {e}"),
            );
            skipped
        }
        Ok(msg) => match forwarder.transform(&msg) {
            Forwarded::Skip(reason) => {
                tracing::debug!(sink = %spec.url, seq, %reason, "skipped");
                skipped
            }
            Forwarded::Send(out) => {
                let reencrypted = out.header.flags.contains(Flags::REENCRYPTED);
                let management = msg.header.flags.contains(Flags::MANAGEMENT);
                Prepared {
                    seq,
                    snapshot: (reencrypted && management).then(|| forwarder.snapshot()),
                    out: Some(out),
                    reencrypted,
                    management,
                }
            }
        },
    }
}

/// Delivers `batch` with up to [`WINDOW`] messages under way at once, and advances the
/// sink's position in storage order: a message's delivery counts only once every earlier
/// one's did, so the position never passes a message the sink does not have. A management
/// message (a section key) goes alone, after everything before it, so the sink never holds
/// data it cannot open yet.
async fn deliver_batch(
    shared: &Arc<Shared>,
    spec: &PumpSpec,
    forwarder: &mut Forwarder,
    transport: &Transport,
    pace: &mut Pace,
    log: &Mutex<LogLimit>,
    batch: Vec<(u64, Vec<u8>)>,
) -> Step {
    let mut in_flight = FuturesOrdered::new();
    for (seq, value) in batch {
        match standing(shared, spec) {
            Standing::Gone => return Step::Gone,
            Standing::Paused => return Step::Interrupted,
            Standing::Run { .. } => {}
        }
        let item = prepare(spec, forwarder, log, transport.addr(), seq, &value);
        let alone = item.management;
        let limit = if alone { 1 } else { WINDOW };
        while in_flight.len() >= limit {
            match settle(shared, spec, &mut in_flight).await {
                Step::Next => {}
                other => return other,
            }
        }
        if item.out.is_some() {
            // The deliveries under way go on while the forward's rate holds this one back.
            let wait = pace.wait();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    step = settle(shared, spec, &mut in_flight), if !in_flight.is_empty() => {
                        match step {
                            Step::Next => {}
                            other => return other,
                        }
                    }
                }
            }
        }
        in_flight.push_back(send(shared, spec, transport, log, item));
        if alone {
            match settle(shared, spec, &mut in_flight).await {
                Step::Next => {}
                other => return other,
            }
        }
    }
    while !in_flight.is_empty() {
        match settle(shared, spec, &mut in_flight).await {
            Step::Next => {}
            other => return other,
        }
    }
    Step::Next
}

/// Waits for the oldest delivery under way and records it.
async fn settle<F>(shared: &Arc<Shared>, spec: &PumpSpec, in_flight: &mut FuturesOrdered<F>) -> Step
where
    F: std::future::Future<Output = (Step, Prepared)>,
{
    match in_flight.next().await {
        Some((Step::Next, item)) => record(shared, spec, &item),
        Some((other, _)) => other,
        None => Step::Next,
    }
}

async fn send(
    shared: &Arc<Shared>,
    spec: &PumpSpec,
    transport: &Transport,
    log: &Mutex<LogLimit>,
    item: Prepared,
) -> (Step, Prepared) {
    let step = match &item.out {
        Some(out) => deliver(shared, spec, transport, log, out).await,
        None => Step::Next,
    };
    (step, item)
}

/// Moves the sink's position past `item`, delivered or skipped.
fn record(shared: &Shared, spec: &PumpSpec, item: &Prepared) -> Step {
    let mut core = shared.core();
    let Some(sink) = core
        .forwards
        .get_mut(&spec.forward_id)
        .and_then(|f| f.sinks.get_mut(&spec.url))
        .filter(|s| s.generation == spec.generation)
    else {
        return Step::Gone;
    };
    sink.pos.cursor = item.seq.saturating_add(1).max(sink.pos.cursor);
    match &item.out {
        Some(_) => sink.pos.delivered = sink.pos.delivered.saturating_add(1),
        None => sink.pos.skipped = sink.pos.skipped.saturating_add(1),
    }
    if item.reencrypted {
        sink.pos.reencrypted = sink.pos.reencrypted.saturating_add(1);
        if let Some(snapshot) = &item.snapshot {
            sink.pos.snapshot.clone_from(snapshot);
        }
    }
    sink.dirty = true;
    core.dirty.insert(MonitorId::Forward(spec.forward_id));
    if let Some(out) = &item.out {
        let len = out.encode().map_or(0, |b| b.len());
        core.metrics.record(
            now_s(),
            Slot {
                messages_out: 1,
                bytes_out: u64::try_from(len).unwrap_or(u64::MAX),
                ..Slot::default()
            },
        );
    }
    Step::Next
}

fn warn(log: &Mutex<LogLimit>, addr: std::net::SocketAddr, detail: &str) {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .warn(addr, &detail);
}

/// Delivers `out` until the sink has it; `Interrupted` when the forward was paused meanwhile,
/// `Gone` when it or the sink was removed or the proxy stops.
async fn deliver(
    shared: &Arc<Shared>,
    spec: &PumpSpec,
    transport: &Transport,
    log: &Mutex<LogLimit>,
    out: &RelayMessage,
) -> Step {
    let mut stop = shared.stop.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match transport.send(out).await {
            Outcome::Accepted => return Step::Next,
            Outcome::Refused(c) => {
                warn(
                    log,
                    transport.addr(),
                    &format!(
                        "sink {} refused message {} ({}): passed",
                        spec.url,
                        out.header.message_id,
                        super::coap_msg::show(c)
                    ),
                );
                return Step::Next;
            }
            Outcome::Failed(e) => {
                warn(
                    log,
                    transport.addr(),
                    &format!(
                        "sink {} unreachable ({e}): retrying in {backoff:?}",
                        spec.url
                    ),
                );
            }
        }
        tokio::select! {
            _ = stop.changed() => return Step::Gone,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match standing(shared, spec) {
            Standing::Gone => return Step::Gone,
            Standing::Paused => return Step::Interrupted,
            Standing::Run { .. } => {}
        }
    }
}
