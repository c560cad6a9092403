//! The forward engine: one pump per sink of each forward, the tokio side of it. What a pump
//! decides — where it stands, what each stored message becomes for the sink, how its position
//! advances, which deliveries may be under way (`Window`), its pacing and back-off — is the
//! engine's (`m2msec_protocol::relay::proxy::pump`); here are the store reads, the sends, and
//! the sleeps.
//!
//! A pump reads its storage's queue from the sink's position (`queue_range`), gives each
//! message to its [`Forwarder`] (which re-encrypts management and individual messages to the
//! sink and passes the data of the sections it re-encrypted), and delivers the result — a CoAP
//! confirmable POST to a `coap://` sink, a datagram to a `udp://` one — at the forward's rate,
//! up to `pump::WINDOW` at once so that a lost datagram delays one message, not the stream.
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

use futures_util::stream::{FuturesUnordered, StreamExt};
use m2msec_protocol::relay::Forwarder;
use m2msec_protocol::relay::proxy::PumpSpec;
use m2msec_protocol::relay::proxy::pump::{
    self, Backoff, IDLE_RECHECK, Pace, Place, Prepared, READ_BATCH, Skipped, Standing, Stop,
    Window, forwarder_at,
};
use m2msec_wire::relay::{RelayMessage, parse_sink_url};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Shared;
use super::deliver::{Outcome, Transport};
use super::records::queue_table;
use super::writer::{blocking, now_s};
use crate::runtime::log_limit::LogLimit;

/// Starts the pump of `spec`.
pub(crate) fn spawn(shared: &Arc<Shared>, spec: PumpSpec) -> AbortHandle {
    let shared = Arc::clone(shared);
    tokio::spawn(async move { pump(shared, spec).await }).abort_handle()
}

/// The engine's pacing on tokio's clock.
#[derive(Debug)]
struct Pacer {
    pace: Pace,
    origin: Instant,
}

impl Pacer {
    /// When the next message may go.
    fn slot(&mut self) -> Instant {
        self.origin + self.pace.take(self.origin.elapsed())
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
    let mut pace = Pacer {
        pace: Pace::new(spec.rate),
        origin: Instant::now(),
    };
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
        let standing = shared.core().standing(&spec);
        let cursor = match standing {
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
            Ok(()) => {}
            Err(Stop::Interrupted) => {
                let snapshot = shared.core().recorded_snapshot(&spec);
                if let Ok(f) = forwarder_at(&spec, &snapshot) {
                    forwarder = f;
                }
            }
            Err(Stop::Gone) => return,
        }
    }
}

/// A finished delivery: how it ended, and the message for `record`.
type Done = (Result<(), Stop>, Prepared);

/// `Ok` while the pump of `spec` is to run.
fn running(shared: &Shared, spec: &PumpSpec) -> Result<(), Stop> {
    shared.core().standing(spec).running()
}

/// Delivers `batch`; the engine's [`Window`] says what may be under way at once and when
/// the sink's position may advance (storage order, a management message alone).
async fn deliver_batch(
    shared: &Arc<Shared>,
    spec: &PumpSpec,
    forwarder: &mut Forwarder,
    transport: &Transport,
    pace: &mut Pacer,
    log: &Mutex<LogLimit>,
    batch: Vec<(u64, Vec<u8>)>,
) -> Result<(), Stop> {
    let mut window = Window::default();
    let mut sends = FuturesUnordered::new();
    for (seq, value) in batch {
        running(shared, spec)?;
        let item = pump::prepare(forwarder, seq, &value);
        match &item.skipped {
            Some(Skipped::Undecodable(e)) => warn(
                log,
                transport.addr(),
                &format!("stored message {seq} does not decode: {e}"),
            ),
            Some(Skipped::Forwarder(reason)) => {
                tracing::debug!(sink = %spec.url, seq, %reason, "skipped");
            }
            None => {}
        }
        while !window.may_send(&item) {
            settle(shared, spec, &mut window, &mut sends).await?;
        }
        // Only a slot still to come is waited for: a timer, even one already due, rounds up
        // to tokio's next millisecond tick, which at no rate limit capped a pump at about one
        // message per millisecond.
        let slot = item.out.is_some().then(|| pace.slot());
        if let Some(slot) = slot.filter(|at| *at > Instant::now()) {
            // The deliveries under way go on while the forward's rate holds this one back.
            let wait = tokio::time::sleep_until(slot);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    step = settle(shared, spec, &mut window, &mut sends), if !window.is_empty() => step?,
                }
            }
        }
        let place = window.push(&item);
        sends.push(async move {
            let step = match &item.out {
                Some(out) => deliver(shared, spec, transport, log, out).await,
                None => Ok(()),
            };
            (place, (step, item))
        });
        while window.must_drain() {
            settle(shared, spec, &mut window, &mut sends).await?;
        }
    }
    while !window.is_empty() {
        settle(shared, spec, &mut window, &mut sends).await?;
    }
    Ok(())
}

/// Waits until the oldest delivery is settled (it and every earlier one done) and records it.
async fn settle<F>(
    shared: &Shared,
    spec: &PumpSpec,
    window: &mut Window<Done>,
    sends: &mut FuturesUnordered<F>,
) -> Result<(), Stop>
where
    F: std::future::Future<Output = (Place, Done)>,
{
    loop {
        if let Some((step, item)) = window.pop_settled() {
            step?;
            return record(shared, spec, &item);
        }
        match sends.next().await {
            Some((place, done)) => window.complete(place, done),
            None => return Ok(()),
        }
    }
}

/// Moves the sink's position past `item`, delivered or skipped (`Core::record_delivery`).
fn record(shared: &Shared, spec: &PumpSpec, item: &Prepared) -> Result<(), Stop> {
    if shared.core().record_delivery(spec, item, now_s()) {
        Ok(())
    } else {
        Err(Stop::Gone)
    }
}

fn warn(log: &Mutex<LogLimit>, addr: std::net::SocketAddr, detail: &str) {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .warn(addr, &detail);
}

/// Delivers `out` until the sink has it, or the pump stops.
async fn deliver(
    shared: &Arc<Shared>,
    spec: &PumpSpec,
    transport: &Transport,
    log: &Mutex<LogLimit>,
    out: &RelayMessage,
) -> Result<(), Stop> {
    let mut stop = shared.stop.clone();
    let mut backoff = Backoff::default();
    loop {
        let pause = match transport.send(out).await {
            Outcome::Accepted => return Ok(()),
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
                return Ok(());
            }
            Outcome::Failed(e) => {
                let pause = backoff.next_pause();
                warn(
                    log,
                    transport.addr(),
                    &format!("sink {} unreachable ({e}): retrying in {pause:?}", spec.url),
                );
                pause
            }
        };
        tokio::select! {
            _ = stop.changed() => return Err(Stop::Gone),
            () = tokio::time::sleep(pause) => {}
        }
        running(shared, spec)?;
    }
}
