//! The API calls that change what the proxy holds: `POST /store`, `DELETE /storage/{id}`,
//! `POST /forward` and `POST /forward/{id}/control`.
//!
//! Each runs in its own task, one at a time (`Shared::control`), so the replay check of an
//! owner's signature, the durable write and the change in memory cannot interleave with another
//! call. Creation and changes are written first (with the signature's replay-cache entry, in the
//! same transaction) and applied in memory after; a deletion is applied in memory first — so
//! that nothing more is stored or forwarded for it — and written after.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use m2msec_crypto::sig::VerifyingKey;
use m2msec_protocol::relay::Forwarder;
use m2msec_store::QueueStats;
use m2msec_wire::cbor::Bytes;
use m2msec_wire::relay::api::{
    Body, CONTENT_FORMAT_CBOR, Control, EpochRekey, ForwardRequest, ForwardResponse, Signed,
    SinkGrant, Start, StoreRequest, StoreResponse, path,
};
use m2msec_wire::relay::coap::coap_lite::CoapOption;
use m2msec_wire::relay::{MAX_URL_LEN, parse_sink_url};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::authz::{self, Refused};
use m2msec_wire::relay::coap::coap_lite::ResponseType;

use super::coap_msg::Response;
use super::forward::{self, PumpSpec};
use super::records::{
    self, COUNTERS_TABLE, CURSORS_TABLE, CursorRecord, FORWARDS_TABLE, ForwardRecord, META_TABLE,
    NEXT_FORWARD, NEXT_STORAGE, RekeyRecord, SIGNED_TABLE, STORAGES_TABLE, SinkRecord,
    StorageCounters, StorageRecord, cursor_key, dedup_table, id_key, queue_table, to_hex, unhex,
};
use super::state::{ForwardState, ForwardTasks, MonitorId, SinkState, StorageState, StorageTasks};
use super::writer::{Op, blocking};
use super::{ProxyConfig, Shared, ingest};
use crate::runtime::driver::wall_clock;

type Reply = Result<Response, Response>;

/// The writes that create record `id` in `table` and move the id counter `next_key` past it;
/// 5.03 when the ids are exhausted.
fn new_record(
    config: &ProxyConfig,
    table: &'static str,
    next_key: &[u8],
    id: u32,
    record: &impl serde::Serialize,
) -> Result<[Op; 2], Response> {
    let json =
        records::json(record).map_err(|_| Response::code(ResponseType::InternalServerError))?;
    let next = id
        .checked_add(1)
        .ok_or_else(|| Response::unavailable(config.max_age_when_full_s, "ids exhausted"))?;
    Ok([
        Op::Put(table, id_key(id).to_vec(), json),
        Op::Put(META_TABLE, next_key.to_vec(), next.to_be_bytes().to_vec()),
    ])
}

fn bad(diagnostic: &str) -> Response {
    Response::error(ResponseType::BadRequest, diagnostic)
}

fn content(code: ResponseType, payload: Vec<u8>) -> Response {
    let mut r = Response::content(payload, CONTENT_FORMAT_CBOR);
    r.code = code;
    r
}

/// The grant's re-encryption keys as records, and the other way.
fn rekey_records(rekeys: &[EpochRekey]) -> Vec<RekeyRecord> {
    rekeys
        .iter()
        .map(|r| RekeyRecord {
            epoch: r.epoch,
            rekey: to_hex(&r.rekey.0),
        })
        .collect()
}

pub(crate) fn rekeys_of(records: &[RekeyRecord]) -> Vec<EpochRekey> {
    records
        .iter()
        .filter_map(|r| {
            Some(EpochRekey {
                epoch: r.epoch,
                rekey: Bytes(unhex(&r.rekey)?),
            })
        })
        .collect()
}

/// Checks grants: parseable sink URLs, usable re-encryption keys, no URL twice, not too many.
fn check_grants(shared: &Shared, grants: &[SinkGrant]) -> Result<(), Response> {
    if grants.len() > usize::try_from(shared.config.max_sinks_per_forward).unwrap_or(usize::MAX) {
        return Err(bad("too many sinks"));
    }
    let mut seen = BTreeSet::new();
    for g in grants {
        parse_sink_url(&g.url).map_err(|e| bad(&format!("sink {:?}: {e}", g.url)))?;
        if !seen.insert(g.url.as_str()) {
            return Err(bad("a sink URL appears twice"));
        }
        Forwarder::new(g.url.clone(), g.rekeys.clone())
            .map_err(|e| bad(&format!("sink {:?}: {e}", g.url)))?;
    }
    Ok(())
}

/// Verifies an owner-signed call on storage `storage_id` and returns the replay-cache entry to
/// write with the change.
async fn authorize(
    shared: &Shared,
    resource: &str,
    signed: &Signed,
    storage_id: u32,
) -> Result<Op, Response> {
    let owner: VerifyingKey = {
        let core = shared.core();
        let Some(s) = core.storages.get(&storage_id) else {
            return Err(Response::error(ResponseType::NotFound, "no such storage"));
        };
        s.owner.clone()
    };
    let skew_ms = u64::from(shared.config.signed_max_skew_s) * 1000;
    let now = wall_clock().0;
    match authz::check(resource, signed, &owner, now, skew_ms) {
        Ok(()) => {}
        Err(Refused::Unauthorized(why)) => {
            return Err(Response::error(ResponseType::Unauthorized, why));
        }
        Err(Refused::Forbidden) => {
            return Err(Response::error(
                ResponseType::Forbidden,
                "signed by a key that does not own this storage",
            ));
        }
    }
    let key = authz::replay_key(signed);
    let store = Arc::clone(&shared.store);
    let seen = blocking(move || store.get(SIGNED_TABLE, &key))
        .await
        .map_err(|_| Response::error(ResponseType::InternalServerError, "store failed"))?;
    if seen.is_some() {
        return Err(Response::error(
            ResponseType::Unauthorized,
            "replayed request",
        ));
    }
    // Remembered until its timestamp is out of the window for good.
    let until = signed
        .timestamp_ms
        .saturating_add(skew_ms)
        .saturating_add(1000);
    Ok(Op::Put(
        SIGNED_TABLE,
        key.to_vec(),
        until.to_be_bytes().to_vec(),
    ))
}

fn signed_of(payload: &[u8]) -> Result<Signed, Response> {
    Signed::from_bytes(payload).map_err(|_| {
        Response::error(
            ResponseType::Unauthorized,
            "no owner signature (api::Signed)",
        )
    })
}

/// `POST /store`.
pub(crate) async fn create_storage(shared: Arc<Shared>, payload: Vec<u8>) -> Response {
    store_inner(&shared, &payload).await.unwrap_or_else(|e| e)
}

async fn store_inner(shared: &Arc<Shared>, payload: &[u8]) -> Reply {
    let req = StoreRequest::from_bytes(payload).map_err(|e| bad(&format!("StoreRequest: {e}")))?;
    let owner = authz::owner_key(&req.owner_key.0)
        .ok_or_else(|| bad("owner_key is not an Ed25519 verifying key"))?;
    if req.source.len() > MAX_URL_LEN {
        return Err(bad("source URL longer than 255 bytes"));
    }
    let config = &shared.config;
    let _serial = shared.control.lock().await;
    let (id, count) = {
        let core = shared.core();
        (core.next_storage, core.storages.len())
    };
    if count >= usize::try_from(config.max_storages).unwrap_or(usize::MAX) {
        return Err(Response::unavailable(
            config.max_age_when_full_s,
            "no more storages",
        ));
    }
    let capacity = match req.capacity {
        0 => config.capacity_bytes,
        c => c.min(config.capacity_bytes),
    };
    let socket = if req.udp {
        let s = UdpSocket::bind(SocketAddr::new(config.udp_bind, 0))
            .await
            .map_err(|e| {
                Response::error(ResponseType::InternalServerError, &format!("UDP port: {e}"))
            })?;
        Some(s)
    } else {
        None
    };
    let udp_port = socket
        .as_ref()
        .and_then(|s| s.local_addr().ok())
        .map(|a| a.port());
    let record = StorageRecord {
        id,
        owner_key: to_hex(&owner.to_bytes()),
        source: req.source.clone(),
        capacity,
        udp: req.udp,
        udp_port,
    };
    let [put, next] = new_record(config, STORAGES_TABLE, NEXT_STORAGE, id, &record)?;
    shared.write(vec![put, next]).await?;
    let store = Arc::clone(&shared.store);
    let stats = blocking(move || store.queue_stats(&queue_table(id)))
        .await
        .unwrap_or_default();
    install_storage(
        shared,
        record,
        owner,
        StorageCounters::default(),
        stats,
        socket,
    );
    tracing::info!(storage = id, source = %req.source, capacity, ?udp_port, "storage created");
    let body = StoreResponse {
        storage_id: id,
        udp_port,
    };
    Ok(content(ResponseType::Created, body.to_bytes())
        .with(CoapOption::LocationPath, path::STORAGE.as_bytes().to_vec())
        .with(CoapOption::LocationPath, id.to_string().into_bytes()))
}

/// Puts a storage into `Core` and starts its UDP ingestion.
pub(crate) fn install_storage(
    shared: &Arc<Shared>,
    record: StorageRecord,
    owner: VerifyingKey,
    counters: StorageCounters,
    stats: QueueStats,
    socket: Option<UdpSocket>,
) {
    let id = record.id;
    let udp_task = socket.map(|s| {
        let shared = Arc::clone(shared);
        tokio::spawn(ingest::udp_ingest(shared, id, s)).abort_handle()
    });
    let mut core = shared.core();
    core.by_source.insert(record.source.clone(), id);
    core.next_storage = core.next_storage.max(id.saturating_add(1));
    core.storages.insert(
        id,
        StorageState {
            record,
            owner,
            stats,
            pending_bytes: 0,
            counters,
            counters_dirty: false,
            forwards: BTreeSet::new(),
            handles: StorageTasks {
                arrived: Arc::new(Notify::new()),
                udp_task,
            },
        },
    );
}

/// `DELETE /storage/{id}`.
pub(crate) async fn delete_storage(shared: Arc<Shared>, id: u32, payload: Vec<u8>) -> Response {
    delete_inner(&shared, id, &payload)
        .await
        .unwrap_or_else(|e| e)
}

async fn delete_inner(shared: &Arc<Shared>, id: u32, payload: &[u8]) -> Reply {
    let signed = signed_of(payload)?;
    let _serial = shared.control.lock().await;
    let replay = authorize(shared, &path::storage(id), &signed, id).await?;
    if !signed.payload.0.is_empty() {
        return Err(bad("a deletion signs an empty payload"));
    }
    let mut ops = vec![replay];
    {
        let mut core = shared.core();
        let Some(s) = core.storages.remove(&id) else {
            return Err(Response::error(ResponseType::NotFound, "no such storage"));
        };
        if let Some(t) = &s.handles.udp_task {
            t.abort();
        }
        if core.by_source.get(&s.record.source) == Some(&id) {
            core.by_source.remove(&s.record.source);
        }
        for fid in &s.forwards {
            if let Some(f) = core.forwards.remove(fid) {
                for (url, sink) in &f.sinks {
                    if let Some(t) = &sink.handles {
                        t.abort();
                    }
                    ops.push(Op::Remove(CURSORS_TABLE, cursor_key(*fid, url)));
                }
                f.handles.control.notify_waiters();
            }
            ops.push(Op::Remove(FORWARDS_TABLE, id_key(*fid).to_vec()));
            core.dirty.insert(MonitorId::Forward(*fid));
        }
        core.dirty.insert(MonitorId::Storage(id));
    }
    ops.push(Op::Remove(STORAGES_TABLE, id_key(id).to_vec()));
    ops.push(Op::Remove(COUNTERS_TABLE, id_key(id).to_vec()));
    ops.push(Op::QueueRemoveBelow(queue_table(id), u64::MAX));
    ops.push(Op::DedupForgetBelow(dedup_table(id), u64::MAX));
    shared.write(ops).await?;
    tracing::info!(storage = id, "storage deleted");
    Ok(Response::code(ResponseType::Deleted))
}

/// Where a new sink of storage `id` starts: the oldest message held, or the section in
/// progress of each stream (`Core::now_position`).
fn start_position(shared: &Shared, id: u32, start: Start) -> u64 {
    let core = shared.core();
    match start {
        Start::Beginning => core
            .storages
            .get(&id)
            .map_or(0, |s| s.stats.first_seq.unwrap_or(s.stats.next_seq)),
        Start::Now => core.now_position(id),
    }
}

/// `POST /forward`.
pub(crate) async fn create_forward(shared: Arc<Shared>, payload: Vec<u8>) -> Response {
    forward_inner(&shared, &payload).await.unwrap_or_else(|e| e)
}

async fn forward_inner(shared: &Arc<Shared>, payload: &[u8]) -> Reply {
    let signed = signed_of(payload)?;
    let req = ForwardRequest::from_bytes(&signed.payload.0)
        .map_err(|e| bad(&format!("ForwardRequest: {e}")))?;
    let _serial = shared.control.lock().await;
    let replay = authorize(shared, path::FORWARD, &signed, req.storage_id).await?;
    check_grants(shared, &req.sinks)?;
    let config = &shared.config;
    let id = {
        let core = shared.core();
        if core.forwards.len() >= usize::try_from(config.max_forwards).unwrap_or(usize::MAX) {
            return Err(Response::unavailable(
                config.max_age_when_full_s,
                "no more forwards",
            ));
        }
        if !core.storages.contains_key(&req.storage_id) {
            return Err(Response::error(ResponseType::NotFound, "no such storage"));
        }
        core.next_forward
    };
    let start = start_position(shared, req.storage_id, req.start);
    let record = ForwardRecord {
        id,
        storage_id: req.storage_id,
        rate: req.rate,
        paused: false,
        sinks: req
            .sinks
            .iter()
            .map(|g| SinkRecord {
                url: g.url.clone(),
                rekeys: rekey_records(&g.rekeys),
                start,
            })
            .collect(),
    };
    let [put, next] = new_record(config, FORWARDS_TABLE, NEXT_FORWARD, id, &record)?;
    shared.write(vec![replay, put, next]).await?;
    install_forward(shared, record, &[]);
    tracing::info!(
        forward = id,
        storage = req.storage_id,
        sinks = req.sinks.len(),
        rate = req.rate,
        start,
        "forward created"
    );
    Ok(content(
        ResponseType::Created,
        ForwardResponse { forward_id: id }.to_bytes(),
    )
    .with(CoapOption::LocationPath, path::FORWARD.as_bytes().to_vec())
    .with(CoapOption::LocationPath, id.to_string().into_bytes()))
}

/// Puts a forward into `Core` (positions from `cursors`, else each sink's start) and starts
/// its pumps.
pub(crate) fn install_forward(
    shared: &Arc<Shared>,
    record: ForwardRecord,
    cursors: &[(String, CursorRecord)],
) {
    let id = record.id;
    let mut specs = Vec::new();
    {
        let mut core = shared.core();
        let mut sinks = std::collections::BTreeMap::new();
        for s in &record.sinks {
            let pos = cursors
                .iter()
                .find(|(u, _)| *u == s.url)
                .map(|(_, c)| c.clone())
                .unwrap_or(CursorRecord {
                    cursor: s.start,
                    ..CursorRecord::default()
                });
            specs.push(PumpSpec {
                forward_id: id,
                storage_id: record.storage_id,
                url: s.url.clone(),
                rekeys: rekeys_of(&s.rekeys),
                snapshot: pos.snapshot.clone(),
                rate: record.rate,
                generation: 0,
            });
            sinks.insert(
                s.url.clone(),
                SinkState {
                    pos,
                    dirty: false,
                    handles: None,
                    generation: 0,
                },
            );
        }
        if let Some(st) = core.storages.get_mut(&record.storage_id) {
            st.forwards.insert(id);
        }
        core.next_forward = core.next_forward.max(id.saturating_add(1));
        core.dirty.insert(MonitorId::Forward(id));
        core.forwards.insert(
            id,
            ForwardState {
                record,
                sinks,
                handles: ForwardTasks {
                    control: Arc::new(Notify::new()),
                },
            },
        );
    }
    for spec in specs {
        start_pump(shared, spec);
    }
}

fn start_pump(shared: &Arc<Shared>, spec: PumpSpec) {
    let (fid, url, generation) = (spec.forward_id, spec.url.clone(), spec.generation);
    let handle = forward::spawn(shared, spec);
    let mut core = shared.core();
    match core
        .forwards
        .get_mut(&fid)
        .and_then(|f| f.sinks.get_mut(&url))
        .filter(|s| s.generation == generation)
    {
        Some(sink) => {
            if let Some(old) = sink.handles.replace(handle) {
                old.abort();
            }
        }
        None => handle.abort(),
    }
}

/// `POST /forward/{id}/control`.
pub(crate) async fn control_forward(shared: Arc<Shared>, id: u32, payload: Vec<u8>) -> Response {
    control_inner(&shared, id, &payload)
        .await
        .unwrap_or_else(|e| e)
}

async fn control_inner(shared: &Arc<Shared>, id: u32, payload: &[u8]) -> Reply {
    let signed = signed_of(payload)?;
    let control =
        Control::from_bytes(&signed.payload.0).map_err(|e| bad(&format!("Control: {e}")))?;
    let _serial = shared.control.lock().await;
    let (mut record, positions) = {
        let core = shared.core();
        let f = core
            .forwards
            .get(&id)
            .ok_or_else(|| Response::error(ResponseType::NotFound, "no such forward"))?;
        let positions: Vec<(String, u64)> = f
            .sinks
            .iter()
            .map(|(u, s)| (u.clone(), s.pos.cursor))
            .collect();
        (f.record.clone(), positions)
    };
    let replay = authorize(
        shared,
        &path::forward_control(id),
        &signed,
        record.storage_id,
    )
    .await?;
    let mut ops = vec![replay];
    let mut removed: Vec<String> = Vec::new();
    let mut restarted: Vec<String> = Vec::new();
    match &control {
        Control::Pause => record.paused = true,
        Control::Resume => record.paused = false,
        Control::SetSinks(grants) => {
            check_grants(shared, grants)?;
            // A new URL takes over where the forward's slowest sink is: redirecting a forward
            // hands the new sink what the old ones had not yet received.
            let low = positions
                .iter()
                .map(|(_, c)| *c)
                .min()
                .unwrap_or_else(|| start_position(shared, record.storage_id, Start::Beginning));
            let mut sinks = Vec::new();
            for g in grants {
                let rekeys = rekey_records(&g.rekeys);
                match record.sinks.iter().find(|s| s.url == g.url) {
                    Some(old) => {
                        if old.rekeys != rekeys {
                            restarted.push(g.url.clone());
                        }
                        sinks.push(SinkRecord {
                            rekeys,
                            ..old.clone()
                        });
                    }
                    None => sinks.push(SinkRecord {
                        url: g.url.clone(),
                        rekeys,
                        start: low,
                    }),
                }
            }
            for old in &record.sinks {
                if !grants.iter().any(|g| g.url == old.url) {
                    removed.push(old.url.clone());
                }
            }
            record.sinks = sinks;
        }
        Control::AddSink(grant, start) => {
            if record.sinks.iter().any(|s| s.url == grant.url) {
                return Err(bad("the forward already has this sink"));
            }
            check_grants(shared, core::slice::from_ref(grant))?;
            if record.sinks.len()
                >= usize::try_from(shared.config.max_sinks_per_forward).unwrap_or(usize::MAX)
            {
                return Err(bad("too many sinks"));
            }
            record.sinks.push(SinkRecord {
                url: grant.url.clone(),
                rekeys: rekey_records(&grant.rekeys),
                start: start_position(shared, record.storage_id, *start),
            });
        }
        Control::RemoveSink(url) => {
            if !record.sinks.iter().any(|s| s.url == *url) {
                return Err(Response::error(
                    ResponseType::NotFound,
                    "the forward has no such sink",
                ));
            }
            record.sinks.retain(|s| s.url != *url);
            removed.push(url.clone());
        }
    }
    for url in &removed {
        ops.push(Op::Remove(CURSORS_TABLE, cursor_key(id, url)));
    }
    ops.push(Op::Put(
        FORWARDS_TABLE,
        id_key(id).to_vec(),
        records::json(&record).map_err(|_| Response::code(ResponseType::InternalServerError))?,
    ));
    shared.write(ops).await?;
    apply_control(shared, id, record, &removed, &restarted);
    tracing::info!(forward = id, control = ?control_name(&control), "forward changed");
    Ok(Response::code(ResponseType::Changed))
}

fn control_name(c: &Control) -> &'static str {
    match c {
        Control::Pause => "pause",
        Control::Resume => "resume",
        Control::SetSinks(_) => "set sinks",
        Control::AddSink(..) => "add sink",
        Control::RemoveSink(_) => "remove sink",
    }
}

/// Applies a written control change in memory: stops removed sinks' pumps, restarts those
/// whose keys changed (keeping their sections that the new keys still grant), starts new ones.
fn apply_control(
    shared: &Arc<Shared>,
    id: u32,
    record: ForwardRecord,
    removed: &[String],
    restarted: &[String],
) {
    let mut specs = Vec::new();
    {
        let mut core = shared.core();
        let Some(f) = core.forwards.get_mut(&id) else {
            return;
        };
        for url in removed {
            if let Some(s) = f.sinks.remove(url)
                && let Some(t) = s.handles
            {
                t.abort();
            }
        }
        for s in &record.sinks {
            let fresh = !f.sinks.contains_key(&s.url);
            if fresh {
                f.sinks.insert(
                    s.url.clone(),
                    SinkState {
                        pos: CursorRecord {
                            cursor: s.start,
                            ..CursorRecord::default()
                        },
                        dirty: true,
                        handles: None,
                        generation: 0,
                    },
                );
            }
            if fresh || restarted.contains(&s.url) {
                let Some(sink) = f.sinks.get_mut(&s.url) else {
                    continue;
                };
                // The old pump, if any, stops at its next look at the generation.
                if !fresh {
                    sink.generation = sink.generation.wrapping_add(1);
                }
                specs.push(PumpSpec {
                    forward_id: id,
                    storage_id: record.storage_id,
                    url: s.url.clone(),
                    rekeys: rekeys_of(&s.rekeys),
                    snapshot: sink.pos.snapshot.clone(),
                    rate: record.rate,
                    generation: sink.generation,
                });
            }
        }
        f.record = record;
        f.handles.control.notify_waiters();
        core.dirty.insert(MonitorId::Forward(id));
    }
    for spec in specs {
        start_pump(shared, spec);
    }
}
