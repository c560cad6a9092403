//! The forward engine's tokio side: one task per sink of each forward, driving the engine's
//! sans-IO pump (`m2msec_protocol::relay::proxy::pump::Pump`: where it stands, what each stored
//! message becomes, the window of deliveries under way, pacing, back-off, how the position
//! advances). Here are the store reads, the sends (`deliver`), the sleeps and the wake-ups.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use m2msec_protocol::relay::proxy::PumpSpec;
use m2msec_protocol::relay::proxy::pump::{
    Delivery, IDLE_RECHECK, Outcome, Pump, READ_BATCH, Step,
};
use m2msec_wire::relay::parse_sink_url;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Shared;
use super::deliver::Transport;
use super::records::queue_table;
use super::writer::blocking;
use crate::runtime::driver::wall_clock;
use crate::runtime::log_limit::LogLimit;

/// Starts the pump of `spec`.
pub(crate) fn spawn(shared: &Arc<Shared>, spec: PumpSpec) -> AbortHandle {
    let shared = Arc::clone(shared);
    tokio::spawn(async move { pump(shared, spec).await }).abort_handle()
}

async fn pump(shared: Arc<Shared>, spec: PumpSpec) {
    let mut stop = shared.stop.clone();
    let mut log = LogLimit::new("forwarding");
    let Ok(url) = parse_sink_url(&spec.url) else {
        tracing::warn!(sink = %spec.url, "sink URL does not parse: not forwarding");
        return;
    };
    let mut pump = match Pump::new(spec.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(sink = %spec.url, error = %e, "sink's grant refused: not forwarding");
            return;
        }
    };
    let Some((arrived, control)) = shared
        .core()
        .pump_handles(&spec)
        .map(|(s, f)| (Arc::clone(&s.arrived), Arc::clone(f)))
    else {
        return;
    };
    let transport = loop {
        match Transport::open(&url, shared.config.coap, shared.tap.as_ref()).await {
            Ok(t) => break t,
            Err(e) => {
                log.warn(
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
    let table = queue_table(spec.storage_id);
    tracing::info!(forward = spec.forward_id, sink = %spec.url, epochs = ?pump.epochs(), "forwarding");
    let origin = Instant::now();
    let mut sends = FuturesUnordered::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let step = pump.poll(&mut shared.core(), origin.elapsed(), wall_clock());
        match step {
            Step::Gone => return,
            Step::Interrupted => sends.clear(),
            Step::Warn(detail) => log.warn(transport.addr(), &detail),
            Step::Skipped { seq, reason } => {
                tracing::debug!(sink = %spec.url, seq, %reason, "skipped");
            }
            Step::Read(cursor) => {
                let (store, t) = (Arc::clone(&shared.store), table.clone());
                match blocking(move || store.queue_range(&t, cursor, READ_BATCH)).await {
                    // The rest was removed with its storage: the next look finds the forward gone.
                    Ok(batch) if batch.is_empty() => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(batch) => pump.on_read(batch),
                    Err(e) => {
                        tracing::error!(error = %e, "reading the storage failed");
                        tokio::time::sleep(IDLE_RECHECK).await;
                    }
                }
            }
            Step::Idle { .. } => {
                let arrived_wait = arrived.notified();
                let control_wait = control.notified();
                tokio::pin!(arrived_wait, control_wait);
                arrived_wait.as_mut().enable();
                control_wait.as_mut().enable();
                // Looked at again once registered, so a wake-up in between is not lost, and
                // waited for as things stand now (a forward resumed meanwhile wants arrivals).
                let idle = pump.idle(&shared.core());
                if let Some(arrivals) = idle {
                    tokio::select! {
                        () = &mut arrived_wait, if arrivals => {}
                        () = &mut control_wait => {}
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
            }
            Step::Send(delivery, pause) => sends.push(send(&transport, delivery, pause)),
            // The deliveries under way go on while the forward's rate holds the next one back.
            Step::Wait(at) => tokio::select! {
                () = tokio::time::sleep_until(origin + at) => {}
                Some((d, outcome)) = sends.next() => pump.on_done(d, outcome),
                _ = stop.changed() => return,
            },
            Step::Settle => tokio::select! {
                Some((d, outcome)) = sends.next() => pump.on_done(d, outcome),
                // A pause or a removal is seen without waiting for a sink that does not answer.
                () = control.notified() => {}
                _ = stop.changed() => return,
            },
        }
    }
}

/// One delivery attempt, after `pause`.
async fn send(transport: &Transport, delivery: Delivery, pause: Duration) -> (Delivery, Outcome) {
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let outcome = match delivery.message() {
        Some(m) => transport.send(m).await,
        None => Outcome::Accepted,
    };
    (delivery, outcome)
}
