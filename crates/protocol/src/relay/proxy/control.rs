//! The API calls that change what the proxy holds: `POST /store`, `DELETE /storage/{id}`,
//! `POST /forward` and `POST /forward/{id}/control` (paper 004 §IV-B), with owner authorisation
//! ([`authz`](super::authz)).
//!
//! One call at a time: the replay check of an owner's signature, the durable write and the
//! change in memory of one call cannot interleave with another's; the others wait in order (up
//! to `Limits::max_control_calls`, then 5.03). Creation and changes are written first (with the
//! signature's replay-cache entry, in the same transaction) and applied in memory once the
//! shell reports the commit; a deletion is applied in memory first — so that nothing more is
//! stored or forwarded for it — and written after.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use m2msec_crypto::sig::VerifyingKey;
use m2msec_store::QueueStats;
use m2msec_wire::cbor::Bytes;
use m2msec_wire::relay::api::{
    Body, CONTENT_FORMAT_CBOR, Control, EpochRekey, ForwardRequest, ForwardResponse, Signed,
    SinkGrant, Start, StoreRequest, StoreResponse, path,
};
use m2msec_wire::relay::coap::coap_lite::{CoapOption, ResponseType};
use m2msec_wire::relay::{MAX_URL_LEN, parse_sink_url};

use super::api::{Action, Event, Handled, PumpSpec, Request, Response, Ticket};
use super::authz::{self, Refused};
use super::records::{
    self, COUNTERS_TABLE, CURSORS_TABLE, CursorRecord, FORWARDS_TABLE, ForwardRecord, META_TABLE,
    NEXT_FORWARD, NEXT_STORAGE, RekeyRecord, SIGNED_TABLE, STORAGES_TABLE, SinkRecord,
    StorageCounters, StorageRecord, cursor_key, dedup_table, id_key, queue_table, to_hex, unhex,
};
use super::retention::Op;
use super::routing::Proxy;
use super::state::{ForwardState, Handles, MonitorId, SinkState, StorageState};
use crate::Millis;
use crate::relay::Forwarder;

/// The control calls waiting, and the one under way.
#[derive(Debug)]
pub(super) struct Calls<R> {
    waiting: VecDeque<(R, Call)>,
    current: Option<(Ticket, R, Step)>,
    next_ticket: u64,
}

impl<R> Default for Calls<R> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            current: None,
            next_ticket: 0,
        }
    }
}

/// A control call, parsed.
#[derive(Debug)]
enum Call {
    Store(StoreRequest, VerifyingKey),
    Delete(u32, Signed),
    Forward(ForwardRequest, Signed),
    Control(u32, Control, Signed),
}

/// Where the call under way stands.
#[derive(Debug)]
enum Step {
    /// Waiting for a plain-UDP socket for this storage.
    Binding(StoreRequest, VerifyingKey),
    /// Waiting for the commit, then this.
    Committing(Then),
}

/// What a committed call does in memory, and answers.
#[derive(Debug)]
enum Then {
    StorageCreated(StorageRecord, VerifyingKey),
    StorageDeleted(u32),
    ForwardCreated(ForwardRecord, u64),
    ForwardChanged {
        record: ForwardRecord,
        removed: Vec<String>,
        restarted: Vec<String>,
        control: &'static str,
    },
}

fn bad(diagnostic: &str) -> Response {
    Response::error(ResponseType::BadRequest, diagnostic)
}

fn content(code: ResponseType, payload: Vec<u8>) -> Response {
    let mut r = Response::content(payload, CONTENT_FORMAT_CBOR);
    r.code = code;
    r
}

fn signed_of(payload: &[u8]) -> Result<Signed, Response> {
    Signed::from_bytes(payload).map_err(|_| {
        Response::error(
            ResponseType::Unauthorized,
            "no owner signature (api::Signed)",
        )
    })
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

fn rekeys_of(records: &[RekeyRecord]) -> Vec<EpochRekey> {
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

fn control_name(c: &Control) -> &'static str {
    match c {
        Control::Pause => "pause",
        Control::Resume => "resume",
        Control::SetSinks(_) => "set sinks",
        Control::AddSink(..) => "add sink",
        Control::RemoveSink(_) => "remove sink",
        Control::SetRate(_) => "set rate",
    }
}

impl<H: Handles> Proxy<H> {
    /// `POST /store`.
    pub(super) fn store_call(&mut self, req: Request<H::Reply>, now: Millis) -> Handled {
        self.call(req.reply, now, || {
            let store = StoreRequest::from_bytes(&req.payload)
                .map_err(|e| bad(&format!("StoreRequest: {e}")))?;
            let owner = authz::owner_key(&store.owner_key.0)
                .ok_or_else(|| bad("owner_key is not an Ed25519 verifying key"))?;
            if store.source.len() > MAX_URL_LEN {
                return Err(bad("source URL longer than 255 bytes"));
            }
            Ok(Call::Store(store, owner))
        })
    }

    /// `DELETE /storage/{id}`.
    pub(super) fn delete_call(&mut self, id: u32, req: Request<H::Reply>, now: Millis) -> Handled {
        self.call(req.reply, now, || {
            Ok(Call::Delete(id, signed_of(&req.payload)?))
        })
    }

    /// `POST /forward`.
    pub(super) fn forward_call(&mut self, req: Request<H::Reply>, now: Millis) -> Handled {
        self.call(req.reply, now, || {
            let signed = signed_of(&req.payload)?;
            let forward = ForwardRequest::from_bytes(&signed.payload.0)
                .map_err(|e| bad(&format!("ForwardRequest: {e}")))?;
            Ok(Call::Forward(forward, signed))
        })
    }

    /// `POST /forward/{id}/control`.
    pub(super) fn control_call(&mut self, id: u32, req: Request<H::Reply>, now: Millis) -> Handled {
        self.call(req.reply, now, || {
            let signed = signed_of(&req.payload)?;
            let control = Control::from_bytes(&signed.payload.0)
                .map_err(|e| bad(&format!("Control: {e}")))?;
            Ok(Call::Control(id, control, signed))
        })
    }

    /// Queues a call (5.03 when too many wait), parsed by `parse` (refused at once if it does
    /// not parse), and starts it if none is under way.
    fn call(
        &mut self,
        reply: H::Reply,
        now: Millis,
        parse: impl FnOnce() -> Result<Call, Response>,
    ) -> Handled {
        let load = self.calls.waiting.len() + usize::from(self.calls.current.is_some());
        if load >= self.limits.max_control_calls {
            return Handled::Respond(Response::unavailable(
                self.limits.max_age_when_busy_s,
                "busy: too many calls in progress",
            ));
        }
        match parse() {
            Ok(call) => {
                self.calls.waiting.push_back((reply, call));
                self.advance(now);
                Handled::Later
            }
            Err(r) => Handled::Respond(r),
        }
    }

    /// Starts waiting calls until one needs the shell.
    fn advance(&mut self, now: Millis) {
        while self.calls.current.is_none() {
            let Some((reply, call)) = self.calls.waiting.pop_front() else {
                return;
            };
            let ticket = Ticket(self.calls.next_ticket);
            self.calls.next_ticket = self.calls.next_ticket.wrapping_add(1);
            let started = match call {
                Call::Store(req, owner) => self.start_store(ticket, req, owner),
                Call::Delete(id, signed) => self.start_delete(ticket, id, &signed, now),
                Call::Forward(req, signed) => self.start_forward(ticket, req, &signed, now),
                Call::Control(id, control, signed) => {
                    self.start_control(ticket, id, &control, &signed, now)
                }
            };
            match started {
                Ok(step) => self.calls.current = Some((ticket, reply, step)),
                Err(r) => self.actions.push_back(Action::Respond(reply, r)),
            }
        }
    }

    /// The shell applied (or failed to apply: `Err`, the answer to give) the writes of
    /// [`Action::Commit`] `ticket`: the call is applied in memory and answered, and the next
    /// one starts.
    pub fn on_committed(&mut self, ticket: Ticket, result: Result<(), Response>, now: Millis) {
        let Some((t, reply, Step::Committing(then))) =
            self.calls.current.take_if(|c| c.0 == ticket)
        else {
            return;
        };
        let response = match result {
            Ok(()) => self.apply(t, then),
            Err(r) => r,
        };
        self.actions.push_back(Action::Respond(reply, response));
        self.advance(now);
    }

    /// The shell bound the plain-UDP socket of [`Action::BindUdp`] `ticket` (its port, if it
    /// can tell), or could not.
    pub fn on_udp_bound(
        &mut self,
        ticket: Ticket,
        result: Result<Option<u16>, String>,
        now: Millis,
    ) {
        let Some((t, reply, Step::Binding(req, owner))) =
            self.calls.current.take_if(|c| c.0 == ticket)
        else {
            return;
        };
        match result.map_err(|e| {
            Response::error(ResponseType::InternalServerError, &format!("UDP port: {e}"))
        }) {
            Ok(port) => match self.commit_storage(t, &req, owner, port) {
                Ok(step) => self.calls.current = Some((t, reply, step)),
                Err(r) => self.actions.push_back(Action::Respond(reply, r)),
            },
            Err(r) => self.actions.push_back(Action::Respond(reply, r)),
        }
        self.advance(now);
    }

    fn start_store(
        &mut self,
        ticket: Ticket,
        req: StoreRequest,
        owner: VerifyingKey,
    ) -> Result<Step, Response> {
        let max = usize::try_from(self.limits.max_storages).unwrap_or(usize::MAX);
        if self.core.storages.len() >= max {
            return Err(Response::unavailable(
                self.limits.max_age_when_full_s,
                "no more storages",
            ));
        }
        if req.udp {
            self.actions.push_back(Action::BindUdp { ticket });
            return Ok(Step::Binding(req, owner));
        }
        self.commit_storage(ticket, &req, owner, None)
    }

    fn commit_storage(
        &mut self,
        ticket: Ticket,
        req: &StoreRequest,
        owner: VerifyingKey,
        udp_port: Option<u16>,
    ) -> Result<Step, Response> {
        let id = self.core.next_storage;
        let capacity = match req.capacity {
            0 => self.limits.capacity_bytes,
            c => c.min(self.limits.capacity_bytes),
        };
        let record = StorageRecord {
            id,
            owner_key: to_hex(&owner.to_bytes()),
            source: req.source.clone(),
            capacity,
            udp: req.udp,
            udp_port,
        };
        let ops = self.new_record(STORAGES_TABLE, NEXT_STORAGE, id, &record)?;
        self.actions.push_back(Action::Commit { ticket, ops });
        Ok(Step::Committing(Then::StorageCreated(record, owner)))
    }

    /// The writes that create record `id` in `table` and move the id counter `next_key` past
    /// it; 5.03 when the ids are exhausted.
    fn new_record(
        &self,
        table: &'static str,
        next_key: &[u8],
        id: u32,
        record: &impl serde::Serialize,
    ) -> Result<Vec<Op>, Response> {
        let json =
            records::json(record).map_err(|_| Response::code(ResponseType::InternalServerError))?;
        let next = id.checked_add(1).ok_or_else(|| {
            Response::unavailable(self.limits.max_age_when_full_s, "ids exhausted")
        })?;
        Ok(vec![
            Op::Put(table, id_key(id).to_vec(), json),
            Op::Put(META_TABLE, next_key.to_vec(), next.to_be_bytes().to_vec()),
        ])
    }

    /// Verifies an owner-signed call on storage `storage_id` and returns the replay-cache entry
    /// to write with the change.
    fn authorize(
        &self,
        resource: &str,
        signed: &Signed,
        storage_id: u32,
        now: Millis,
    ) -> Result<Op, Response> {
        let Some(s) = self.core.storages.get(&storage_id) else {
            return Err(Response::error(ResponseType::NotFound, "no such storage"));
        };
        let skew_ms = u64::from(self.limits.signed_max_skew_s) * 1000;
        match authz::check(resource, signed, &s.owner, now.0, skew_ms) {
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
        let seen = self
            .store
            .get(SIGNED_TABLE, &key)
            .map_err(|_| Response::store_failed())?;
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

    /// Checks grants: parseable sink URLs, usable re-encryption keys, no URL twice, not too
    /// many.
    fn check_grants(&self, grants: &[SinkGrant]) -> Result<(), Response> {
        let max = usize::try_from(self.limits.max_sinks_per_forward).unwrap_or(usize::MAX);
        if grants.len() > max {
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

    /// Where a new sink of storage `id` starts: the oldest message held, or the section in
    /// progress of each stream (`Core::now_position`).
    fn start_position(&self, id: u32, start: Start) -> u64 {
        match start {
            Start::Beginning => self
                .core
                .storages
                .get(&id)
                .map_or(0, |s| s.stats.first_seq.unwrap_or(s.stats.next_seq)),
            Start::Now => self.core.now_position(id),
        }
    }

    fn start_delete(
        &mut self,
        ticket: Ticket,
        id: u32,
        signed: &Signed,
        now: Millis,
    ) -> Result<Step, Response> {
        let replay = self.authorize(&path::storage(id), signed, id, now)?;
        if !signed.payload.0.is_empty() {
            return Err(bad("a deletion signs an empty payload"));
        }
        let mut ops = vec![replay];
        let core = &mut self.core;
        let Some(s) = core.storages.remove(&id) else {
            return Err(Response::error(ResponseType::NotFound, "no such storage"));
        };
        if core.by_source.get(&s.record.source) == Some(&id) {
            core.by_source.remove(&s.record.source);
        }
        let mut forwards = Vec::new();
        let mut sinks = Vec::new();
        for fid in &s.forwards {
            if let Some(f) = core.forwards.remove(fid) {
                for (url, sink) in f.sinks {
                    sinks.push(sink.handles);
                    ops.push(Op::Remove(CURSORS_TABLE, cursor_key(*fid, &url)));
                }
                forwards.push(f.handles);
            }
            ops.push(Op::Remove(FORWARDS_TABLE, id_key(*fid).to_vec()));
            core.dirty.insert(MonitorId::Forward(*fid));
        }
        core.dirty.insert(MonitorId::Storage(id));
        self.events.push_back(Event::StorageRemoved {
            id,
            storage: s.handles,
            forwards,
            sinks,
        });
        ops.push(Op::Remove(STORAGES_TABLE, id_key(id).to_vec()));
        ops.push(Op::Remove(COUNTERS_TABLE, id_key(id).to_vec()));
        ops.push(Op::QueueRemoveBelow(queue_table(id), u64::MAX));
        ops.push(Op::DedupForgetBelow(dedup_table(id), u64::MAX));
        self.actions.push_back(Action::Commit { ticket, ops });
        Ok(Step::Committing(Then::StorageDeleted(id)))
    }

    fn start_forward(
        &mut self,
        ticket: Ticket,
        req: ForwardRequest,
        signed: &Signed,
        now: Millis,
    ) -> Result<Step, Response> {
        let replay = self.authorize(path::FORWARD, signed, req.storage_id, now)?;
        self.check_grants(&req.sinks)?;
        let max = usize::try_from(self.limits.max_forwards).unwrap_or(usize::MAX);
        if self.core.forwards.len() >= max {
            return Err(Response::unavailable(
                self.limits.max_age_when_full_s,
                "no more forwards",
            ));
        }
        if !self.core.storages.contains_key(&req.storage_id) {
            return Err(Response::error(ResponseType::NotFound, "no such storage"));
        }
        let id = self.core.next_forward;
        let start = self.start_position(req.storage_id, req.start);
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
        let mut ops = vec![replay];
        ops.extend(self.new_record(FORWARDS_TABLE, NEXT_FORWARD, id, &record)?);
        self.actions.push_back(Action::Commit { ticket, ops });
        Ok(Step::Committing(Then::ForwardCreated(record, start)))
    }

    fn start_control(
        &mut self,
        ticket: Ticket,
        id: u32,
        control: &Control,
        signed: &Signed,
        now: Millis,
    ) -> Result<Step, Response> {
        let (mut record, positions) = {
            let f = self
                .core
                .forwards
                .get(&id)
                .ok_or_else(|| Response::error(ResponseType::NotFound, "no such forward"))?;
            let positions: Vec<u64> = f.sinks.values().map(|s| s.pos.cursor).collect();
            (f.record.clone(), positions)
        };
        let replay = self.authorize(&path::forward_control(id), signed, record.storage_id, now)?;
        let mut ops = vec![replay];
        let mut removed: Vec<String> = Vec::new();
        let mut restarted: Vec<String> = Vec::new();
        match control {
            Control::Pause => record.paused = true,
            Control::Resume => record.paused = false,
            Control::SetSinks(grants) => {
                self.check_grants(grants)?;
                // A new URL takes over where the forward's slowest sink is: redirecting a
                // forward hands the new sink what the old ones had not yet received.
                let low =
                    positions.iter().copied().min().unwrap_or_else(|| {
                        self.start_position(record.storage_id, Start::Beginning)
                    });
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
                self.check_grants(core::slice::from_ref(grant))?;
                let max = usize::try_from(self.limits.max_sinks_per_forward).unwrap_or(usize::MAX);
                if record.sinks.len() >= max {
                    return Err(bad("too many sinks"));
                }
                record.sinks.push(SinkRecord {
                    url: grant.url.clone(),
                    rekeys: rekey_records(&grant.rekeys),
                    start: self.start_position(record.storage_id, *start),
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
            // Each pump paces itself: they start again at the new rate, where they were.
            Control::SetRate(rate) => {
                record.rate = *rate;
                restarted.extend(record.sinks.iter().map(|s| s.url.clone()));
            }
        }
        for url in &removed {
            ops.push(Op::Remove(CURSORS_TABLE, cursor_key(id, url)));
        }
        ops.push(Op::Put(
            FORWARDS_TABLE,
            id_key(id).to_vec(),
            records::json(&record)
                .map_err(|_| Response::code(ResponseType::InternalServerError))?,
        ));
        self.actions.push_back(Action::Commit { ticket, ops });
        Ok(Step::Committing(Then::ForwardChanged {
            record,
            removed,
            restarted,
            control: control_name(control),
        }))
    }

    /// Applies a committed call in memory and makes its answer.
    fn apply(&mut self, ticket: Ticket, then: Then) -> Response {
        match then {
            Then::StorageCreated(record, owner) => {
                let id = record.id;
                let (source, capacity, udp_port) =
                    (record.source.clone(), record.capacity, record.udp_port);
                let stats = self.store.queue_stats(&queue_table(id)).unwrap_or_default();
                self.install_storage(record, owner, StorageCounters::default(), stats);
                self.events.push_back(Event::StorageCreated {
                    ticket,
                    id,
                    source,
                    capacity,
                    udp_port,
                });
                let body = StoreResponse {
                    storage_id: id,
                    udp_port,
                };
                content(ResponseType::Created, body.to_bytes())
                    .with(CoapOption::LocationPath, path::STORAGE.as_bytes().to_vec())
                    .with(CoapOption::LocationPath, id.to_string().into_bytes())
            }
            Then::StorageDeleted(id) => {
                self.events.push_back(Event::StorageDeleted { id });
                Response::code(ResponseType::Deleted)
            }
            Then::ForwardCreated(record, start) => {
                let (id, storage, sinks, rate) = (
                    record.id,
                    record.storage_id,
                    record.sinks.len(),
                    record.rate,
                );
                self.install_forward(record, &[]);
                self.events.push_back(Event::ForwardCreated {
                    id,
                    storage,
                    sinks,
                    rate,
                    start,
                });
                content(
                    ResponseType::Created,
                    ForwardResponse { forward_id: id }.to_bytes(),
                )
                .with(CoapOption::LocationPath, path::FORWARD.as_bytes().to_vec())
                .with(CoapOption::LocationPath, id.to_string().into_bytes())
            }
            Then::ForwardChanged {
                record,
                removed,
                restarted,
                control,
            } => {
                let id = record.id;
                self.apply_control(record, &removed, &restarted);
                self.events.push_back(Event::ForwardChanged { id, control });
                Response::code(ResponseType::Changed)
            }
        }
    }

    /// Puts a storage into the engine (created, or read back at a restart); the shell attaches
    /// its tasks.
    pub fn install_storage(
        &mut self,
        record: StorageRecord,
        owner: VerifyingKey,
        counters: StorageCounters,
        stats: QueueStats,
    ) {
        let id = record.id;
        let core = &mut self.core;
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
                handles: H::Storage::default(),
            },
        );
    }

    /// Puts a forward into the engine (positions from `cursors`, else each sink's start) and
    /// asks for its pumps ([`Event::StartPump`]).
    pub fn install_forward(&mut self, record: ForwardRecord, cursors: &[(String, CursorRecord)]) {
        let id = record.id;
        let mut sinks = BTreeMap::new();
        for s in &record.sinks {
            let pos = cursors
                .iter()
                .find(|(u, _)| *u == s.url)
                .map(|(_, c)| c.clone())
                .unwrap_or(CursorRecord {
                    cursor: s.start,
                    ..CursorRecord::default()
                });
            self.events.push_back(Event::StartPump(PumpSpec {
                forward_id: id,
                storage_id: record.storage_id,
                url: s.url.clone(),
                rekeys: rekeys_of(&s.rekeys),
                snapshot: pos.snapshot.clone(),
                rate: record.rate,
                generation: 0,
            }));
            sinks.insert(
                s.url.clone(),
                SinkState {
                    pos,
                    dirty: false,
                    handles: H::Sink::default(),
                    generation: 0,
                },
            );
        }
        let core = &mut self.core;
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
                handles: H::Forward::default(),
            },
        );
    }

    /// Applies a written control change in memory: stops removed sinks' pumps, restarts those
    /// whose keys changed (keeping their sections that the new keys still grant), starts new
    /// ones.
    fn apply_control(&mut self, record: ForwardRecord, removed: &[String], restarted: &[String]) {
        let id = record.id;
        let Some(f) = self.core.forwards.get_mut(&id) else {
            return;
        };
        for url in removed {
            if let Some(s) = f.sinks.remove(url) {
                self.events.push_back(Event::StopPump(s.handles));
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
                        handles: H::Sink::default(),
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
                self.events.push_back(Event::StartPump(PumpSpec {
                    forward_id: id,
                    storage_id: record.storage_id,
                    url: s.url.clone(),
                    rekeys: rekeys_of(&s.rekeys),
                    snapshot: sink.pos.snapshot.clone(),
                    rate: record.rate,
                    generation: sink.generation,
                }));
            }
        }
        f.record = record;
        self.core.dirty.insert(MonitorId::Forward(id));
    }
}
