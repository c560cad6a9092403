//! The one task that writes the store's queues: group commits of incoming messages,
//! housekeeping (forwarding cursors, retention, dedup pruning) and the control plane's writes.
//!
//! **Group commit.** Messages admitted by the CoAP server and the UDP ingestion sockets wait in
//! a bounded channel (`ingest_queue`). The writer takes what is there — waiting at most
//! `group_commit_wait_us` for more, up to `group_commit_max` — writes each storage's share with
//! one `Store::queue_push_unique` (one transaction, one fsync), and only then answers the CoAP
//! requests: a 2.04 leaves the proxy after its message is durable, never before. A crash before
//! the commit loses only unacknowledged messages, which their sources retransmit; a crash after
//! it but before the answers leaves stored messages whose retransmissions are recognised by
//! their dedup key and acknowledged without a second copy.
//!
//! The batch's shares, one per storage, what each one's write did (stored, recognised,
//! sections started) and the answer it earns are the engine's (`commit::Share`,
//! `Written::push`, `Core::committed`).
//!
//! **One writer.** Queue writes and the byte totals read back after them (`queue_stats`) happen
//! here only, in order, so the in-memory accounting mirrors the store exactly; control-plane
//! changes are sent here too ([`Command`]), so a storage deleted or a sink removed is
//! never written again by a housekeeping round that started before.
//!
//! **Housekeeping** (every [`HOUSEKEEP_INTERVAL`], one `write_batch`): what to write is the
//! engine's decision (`Core::housekeeping` in `m2msec_protocol::relay::proxy::retention`: the
//! sinks' positions that moved, the storages' counters, retention, and the pruning of dedup keys
//! of messages removed more than `dedup_grace_s` ago); this task adds the expired entries of the
//! replay cache of signed requests, commits, and reads the shrunk queues' totals back.

use std::sync::Arc;
use std::time::Duration;

use m2msec_protocol::relay::proxy::commit::Share;
use m2msec_protocol::relay::proxy::retention::{Checkpoints, Housekeeping, expired_signed};
pub(crate) use m2msec_protocol::relay::proxy::retention::{Op, apply};
use m2msec_protocol::relay::proxy::{Admitted, Response, Ticket};
use m2msec_store::QueueStats;
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::records::queue_table;
use super::state::Written;
use crate::error::{Error, Result};
use crate::runtime::coap::{ReplyTo, monotonic_now};
use crate::runtime::driver::wall_clock;

/// How often positions are written and delivered messages removed.
pub(crate) const HOUSEKEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A message on its way to the store, and where its CoAP acknowledgement goes (none for plain
/// UDP).
pub(crate) type Ingest = (Admitted, Option<ReplyTo>);

/// A control call's writes, applied in one transaction; the result goes to the server
/// ([`Deferred::Committed`]).
pub(crate) type Command = (Ticket, Vec<Op>);

/// What comes back to the CoAP server's task from elsewhere.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A message's answer, once its group commit is done (or failed).
    Answer { reply: ReplyTo, response: Response },
    /// A control call's writes were committed (or the answer to give).
    Committed(Ticket, std::result::Result<(), Response>),
    /// A control call's plain-UDP socket was bound.
    Bound(Ticket, std::io::Result<tokio::net::UdpSocket>),
}

/// The writer task; returns when `stop` fires (after committing what was queued), or with an
/// error when the store fails (nothing depending on the failed write was acknowledged).
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut ingest: mpsc::Receiver<Ingest>,
    mut commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let result = serve(&shared, &mut ingest, &mut commands, stop).await;
    if result.is_err() {
        // The writer is gone: a control call still queued gets its answer all the same.
        commands.close();
        while let Ok((ticket, _)) = commands.try_recv() {
            let _ = shared
                .deferred
                .send(Deferred::Committed(ticket, Err(super::control::stopping())));
        }
    }
    result
}

async fn serve(
    shared: &Arc<Shared>,
    ingest: &mut mpsc::Receiver<Ingest>,
    commands: &mut mpsc::Receiver<Command>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let shared = Arc::clone(shared);
    let mut checkpoints = shared.core().startup_checkpoints(monotonic_now());
    let mut tick = tokio::time::interval(HOUSEKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = process_cpu_us();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tick.tick() => {
                let used = process_cpu_us();
                shared.core().count_cpu(wall_clock().0 / 1000, used.saturating_sub(cpu));
                cpu = used;
                housekeep(&shared, &mut checkpoints).await?;
            }
            Some(cmd) = commands.recv() => run_command(&shared, cmd).await,
            Some(first) = ingest.recv() => {
                let batch = collect(&shared, first, ingest).await;
                commit(&shared, batch).await?;
            }
        }
    }
    // Stopping: answer what was admitted, then write the final positions.
    let rest: Vec<Ingest> = std::iter::from_fn(|| ingest.try_recv().ok()).collect();
    if !rest.is_empty() {
        commit(&shared, rest).await?;
    }
    while let Ok(cmd) = commands.try_recv() {
        run_command(&shared, cmd).await;
    }
    housekeep(&shared, &mut checkpoints).await
}

async fn run_command(shared: &Arc<Shared>, (ticket, ops): Command) {
    let store = Arc::clone(&shared.store);
    let result = blocking(move || apply(&*store, &ops)).await.map_err(|e| {
        tracing::error!(error = %e, "store write failed");
        Response::store_failed()
    });
    // The server is gone only when the proxy stops; nobody is left to answer then.
    let _ = shared.deferred.send(Deferred::Committed(ticket, result));
}

/// Takes `first` and what else is queued, waiting up to `group_commit_wait_us` for more.
/// Not a sans-IO policy in the engine: its one decision is "below `group_commit_max` and
/// before the deadline"; the rest is the channel's `try_recv` and `timeout_at`.
async fn collect(
    shared: &Shared,
    first: Ingest,
    ingest: &mut mpsc::Receiver<Ingest>,
) -> Vec<Ingest> {
    let max = usize::try_from(shared.config.group_commit_max).unwrap_or(usize::MAX);
    let wait = Duration::from_micros(shared.config.group_commit_wait_us.into());
    let deadline = tokio::time::Instant::now() + wait;
    let mut batch = vec![first];
    while batch.len() < max {
        let next = match ingest.try_recv() {
            Ok(i) => Some(i),
            Err(_) if wait.is_zero() => None,
            Err(_) => tokio::time::timeout_at(deadline, ingest.recv())
                .await
                .ok()
                .flatten(),
        };
        let Some(i) = next else { break };
        batch.push(i);
    }
    batch
}

/// Writes one batch: one transaction per storage (`Share`), then the answers.
async fn commit(shared: &Arc<Shared>, batch: Vec<Ingest>) -> Result<()> {
    for share in Share::group(batch) {
        let (id, admitted) = (share.storage, share.admitted());
        let pushed = if shared.core().storages.contains_key(&id) {
            let (store, items) = (Arc::clone(&shared.store), share.items);
            Some(blocking(move || Written::push(&*store, id, &items)).await)
        } else {
            None
        };
        let mut core = shared.core();
        let done = core.committed(id, admitted, pushed, wall_clock().0 / 1000);
        if let Some(s) = core.storages.get(&id).filter(|_| done.arrived) {
            s.handles.arrived.notify_waiters();
        }
        drop(core);
        for reply in share.replies.into_iter().flatten() {
            // The server is gone only when the proxy stops; nobody is left to answer then.
            let response = done.answer.clone();
            let _ = shared.deferred.send(Deferred::Answer { reply, response });
        }
        if let Some(e) = done.error {
            return Err(Error::Store(e));
        }
    }
    Ok(())
}

/// One housekeeping round (see the module documentation).
async fn housekeep(shared: &Arc<Shared>, checkpoints: &mut Checkpoints) -> Result<()> {
    let grace = Duration::from_secs(shared.config.dedup_grace_s.into());
    let Housekeeping {
        mut ops,
        emptied,
        prune_signed,
    } = shared
        .core()
        .housekeeping(monotonic_now(), checkpoints, grace)
        .map_err(|e| Error::Control(format!("relay proxy record: {e}")))?;
    if ops.is_empty() && !prune_signed {
        return Ok(());
    }
    let (store, now_ms) = (Arc::clone(&shared.store), wall_clock().0);
    let stats = blocking(move || -> m2msec_store::Result<Vec<(u32, QueueStats)>> {
        if prune_signed {
            ops.extend(expired_signed(&*store, now_ms)?);
        }
        apply(&*store, &ops)?;
        emptied
            .into_iter()
            .map(|id| Ok((id, store.queue_stats(&queue_table(id))?)))
            .collect()
    })
    .await
    .map_err(Error::Store)?;
    shared.core().refreshed(stats);
    Ok(())
}

/// Microseconds of CPU time this process has used, all threads (the tokio workers and the
/// blocking pool's commits alike).
fn process_cpu_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_nsec / 1000).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// Runs a store call on the blocking pool (a commit waits for an fsync).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> m2msec_store::Result<T> + Send + 'static,
) -> m2msec_store::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(m2msec_store::Error::Backend {
            operation: "blocking task",
            source: Box::new(e),
        }),
    }
}
