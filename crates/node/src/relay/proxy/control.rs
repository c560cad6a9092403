//! What the shell does for the engine's control calls (`POST /store`, `DELETE /storage/{id}`,
//! `POST /forward`, `POST /forward/{id}/control`, decided in
//! `m2msec_protocol::relay::proxy::control`): commit their writes through the writer, bind
//! plain-UDP sockets, start and stop the tasks of what they create and remove, and log.

use std::net::SocketAddr;
use std::sync::Arc;

use m2msec_protocol::relay::proxy::{PumpSpec, Response, Ticket};
use m2msec_wire::relay::coap::coap_lite::ResponseType;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use super::Shared;
use super::forward;
use super::ingest;
use super::state::Event;
use super::writer::{Deferred, Op};
use crate::runtime::log_limit::LogLimit;

/// Has the writer commit `ops` for call `ticket`; it reports back to the server (which tells
/// the engine).
pub(crate) fn commit(shared: &Shared, ticket: Ticket, ops: Vec<Op>) {
    if shared.writer.try_send((ticket, ops)).is_err() {
        // The engine runs one control call at a time, so the queue has room: the writer is gone,
        // the proxy is stopping.
        let _ = shared
            .deferred
            .send(Deferred::Committed(ticket, Err(stopping())));
    }
}

/// The answer to a control call when the proxy is stopping (its writer gone).
pub(crate) fn stopping() -> Response {
    Response::error(ResponseType::ServiceUnavailable, "stopping")
}

/// Binds a plain-UDP ingestion socket for call `ticket` and reports back to the server.
pub(crate) fn bind_udp(shared: &Arc<Shared>, ticket: Ticket) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let result = UdpSocket::bind(SocketAddr::new(shared.config.udp_bind, 0)).await;
        let _ = shared.deferred.send(Deferred::Bound(ticket, result));
    });
}

/// Acts on the engine's events: tasks started or stopped, wake-ups, logs. `udp` is the socket
/// bound for the storage being created, if any.
pub(crate) fn on_events(
    shared: &Arc<Shared>,
    udp: &mut Option<(Ticket, UdpSocket)>,
    junk: &mut LogLimit,
) {
    let events: Vec<_> = {
        let mut core = shared.core();
        std::iter::from_fn(|| core.poll_event()).collect()
    };
    for event in events {
        on_event(shared, event, udp, junk);
    }
}

fn on_event(
    shared: &Arc<Shared>,
    event: Event,
    udp: &mut Option<(Ticket, UdpSocket)>,
    junk: &mut LogLimit,
) {
    match event {
        Event::Junk { peer, detail } => junk.warn(peer, &detail),
        Event::StorageCreated {
            ticket,
            id,
            source,
            capacity,
            udp_port,
        } => {
            if let Some((_, socket)) = udp.take_if(|(t, _)| *t == ticket) {
                start_udp(shared, id, socket);
            }
            tracing::info!(storage = id, source = %source, capacity, ?udp_port, "storage created");
        }
        Event::StorageRemoved {
            id: _,
            storage,
            forwards,
            sinks,
        } => {
            let tasks = storage.udp_task.iter().chain(sinks.iter().flatten());
            tasks.for_each(AbortHandle::abort);
            for f in forwards {
                f.notify_waiters();
            }
        }
        Event::StorageDeleted { id } => tracing::info!(storage = id, "storage deleted"),
        Event::ForwardCreated {
            id,
            storage,
            sinks,
            rate,
            start,
        } => tracing::info!(forward = id, storage, sinks, rate, start, "forward created"),
        Event::ForwardChanged { id, control } => {
            if let Some(f) = shared.core().forwards.get(&id) {
                f.handles.notify_waiters();
            }
            tracing::info!(forward = id, control = ?control, "forward changed");
        }
        Event::StartPump(spec) => start_pump(shared, spec),
        Event::StopPump(pump) => {
            if let Some(t) = pump {
                t.abort();
            }
        }
    }
}

/// Starts the plain-UDP ingestion of storage `id` on `socket`.
pub(crate) fn start_udp(shared: &Arc<Shared>, id: u32, socket: UdpSocket) {
    let task = tokio::spawn(ingest::udp_ingest(Arc::clone(shared), id, socket)).abort_handle();
    let mut core = shared.core();
    attach(
        core.storages.get_mut(&id).map(|s| &mut s.handles.udp_task),
        task,
    );
}

/// Starts a sink's pump and attaches it, unless the sink is gone or was replaced meanwhile.
fn start_pump(shared: &Arc<Shared>, spec: PumpSpec) {
    let task = forward::spawn(shared, spec.clone());
    let mut core = shared.core();
    attach(core.sink_mut(&spec).map(|s| &mut s.handles), task);
}

/// Puts `task` in `slot`, stopping the one it replaces; stops it when there is no slot (what
/// it served is gone).
fn attach(slot: Option<&mut Option<AbortHandle>>, task: AbortHandle) {
    match slot {
        Some(slot) => {
            if let Some(old) = slot.replace(task) {
                old.abort();
            }
        }
        None => task.abort(),
    }
}
