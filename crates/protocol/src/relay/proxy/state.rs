//! The proxy's in-memory state: storages with their exact byte accounting, forwards with each
//! sink's position, counters, and which monitors changed.
//!
//! Plain data and decisions, no I/O: a shell (node's tokio proxy) keeps it behind one lock and
//! attaches its own handles (tasks, wake-ups) through [`Handles`]. The store is the truth for what is stored ([`QueueStats`], read back
//! after every write by the one task that writes queues); `Core` mirrors it and adds what is in
//! flight: bytes admitted to the ingest queue but not yet written (`pending_bytes`), so that
//! admission can never let a storage or the proxy exceed its capacity.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use m2msec_crypto::sig::VerifyingKey;
use m2msec_store::{PushOutcome, QueueStats, Store};
use m2msec_wire::relay::api::{ForwardMonitor, Info, SinkProgress, StorageMonitor, path};

use super::metrics::{Metrics, Slot};
use super::records::{
    CursorRecord, ForwardRecord, StorageCounters, StorageRecord, dedup_table, queue_table,
};
use super::retention::management_stream;

/// What a shell attaches to each storage, forward and sink (its tasks and wake-ups), so the
/// state stays free of any runtime. `()` attaches nothing.
pub trait Handles {
    /// Per storage (node: the plain-UDP ingestion task, the pumps' wake-up). The engine makes
    /// the default; the shell fills it in.
    type Storage: Debug + Default;
    /// Per forward (node: the pumps' wake-up on resume and shutdown).
    type Forward: Debug + Default;
    /// Per sink (node: its pump).
    type Sink: Debug + Default;
    /// Where a late answer goes (node: the CoAP request's addressing), given back with it.
    type Reply: Debug;
}

impl Handles for () {
    type Storage = ();
    type Forward = ();
    type Sink = ();
    type Reply = ();
}

/// An observable resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MonitorId {
    /// `storage/{id}/monitor`.
    Storage(u32),
    /// `forward/{id}/monitor`.
    Forward(u32),
}

impl MonitorId {
    /// The resource's path, the observers' key.
    pub fn path(self) -> String {
        match self {
            Self::Storage(id) => path::storage_monitor(id),
            Self::Forward(id) => path::forward_monitor(id),
        }
    }
}

/// Why a message was not admitted to the ingest queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such storage.
    UnknownStorage,
    /// The message names another source than the storage's (paper 004 §IV: a storage holds one
    /// source's stream).
    WrongSource,
    /// The message does not fit the storage's capacity or the proxy's.
    Full,
}

/// One storage.
#[derive(Debug)]
pub struct StorageState<H: Handles = ()> {
    /// As persisted.
    pub record: StorageRecord,
    /// The owner's key, decoded from the record.
    pub owner: VerifyingKey,
    /// What the store holds (exact, refreshed after every queue write).
    pub stats: QueueStats,
    /// Bytes admitted and not yet written.
    pub pending_bytes: u64,
    /// Counters and sections, as persisted at housekeeping.
    pub counters: StorageCounters,
    /// The counters changed since they were last written.
    pub counters_dirty: bool,
    /// The forwards reading this storage.
    pub forwards: BTreeSet<u32>,
    /// The shell's.
    pub handles: H::Storage,
}

impl<H: Handles> StorageState<H> {
    /// Its `storage/{id}/monitor` representation.
    #[must_use]
    pub fn monitor(&self) -> StorageMonitor {
        StorageMonitor {
            storage_id: self.record.id,
            stored_messages: self.stats.len,
            stored_bytes: self.stats.bytes,
            received: self.counters.received,
            duplicates: self.counters.duplicates,
            rejected_full: self.counters.rejected_full,
            last_seq: self.stats.next_seq.checked_sub(1),
        }
    }
}

/// One sink of a forward.
#[derive(Debug)]
pub struct SinkState<H: Handles = ()> {
    /// Position and counters, as the pump last advanced them.
    pub pos: CursorRecord,
    /// `pos` changed since it was last written.
    pub dirty: bool,
    /// The shell's (node: the pump delivering to it).
    pub handles: H::Sink,
    /// Bumped when the pump is replaced (new keys): a replaced pump that still runs for a
    /// moment sees it and stops without touching the position.
    pub generation: u64,
}

/// One forward.
#[derive(Debug)]
pub struct ForwardState<H: Handles = ()> {
    /// As persisted (sinks' `start` are their initial positions).
    pub record: ForwardRecord,
    /// By URL.
    pub sinks: BTreeMap<String, SinkState<H>>,
    /// The shell's.
    pub handles: H::Forward,
}

/// Everything the proxy tracks in memory.
#[derive(Debug)]
pub struct Core<H: Handles = ()> {
    /// Bytes the proxy may hold over all storages.
    pub capacity: u64,
    /// By id.
    pub storages: BTreeMap<u32, StorageState<H>>,
    /// By id.
    pub forwards: BTreeMap<u32, ForwardState<H>>,
    /// Source URL → storage, for the forward-proxy form (Proxy-Uri + Relay-Source).
    pub by_source: HashMap<String, u32>,
    /// The next storage id (ids are never reused).
    pub next_storage: u32,
    /// The next forward id.
    pub next_forward: u32,
    /// The load counters.
    pub metrics: Metrics,
    /// Monitors whose representation changed since their observers were last notified.
    pub dirty: BTreeSet<MonitorId>,
}

impl<H: Handles> Core<H> {
    /// An empty proxy of `capacity` bytes, load windows up to `max_window_s`.
    #[must_use]
    pub fn new(capacity: u64, max_window_s: u32, now_s: u64) -> Self {
        Self {
            capacity,
            storages: BTreeMap::new(),
            forwards: BTreeMap::new(),
            by_source: HashMap::new(),
            next_storage: 1,
            next_forward: 1,
            metrics: Metrics::new(max_window_s, now_s),
            dirty: BTreeSet::new(),
        }
    }

    /// Bytes stored over all storages plus bytes admitted and not yet written.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.storages
            .values()
            .map(|s| s.stats.bytes.saturating_add(s.pending_bytes))
            .fold(0, u64::saturating_add)
    }

    /// The `info` resource.
    #[must_use]
    pub fn info(&self) -> Info {
        Info {
            capacity: self.capacity,
            free: self.capacity.saturating_sub(self.used()),
            storages: u32::try_from(self.storages.len()).unwrap_or(u32::MAX),
            forwards: u32::try_from(self.forwards.len()).unwrap_or(u32::MAX),
        }
    }

    /// Reserves `len` bytes in storage `id` for a message on its way to the store
    /// (back-pressure: what does not fit is refused, never dropped silently).
    ///
    /// # Errors
    ///
    /// [`Refusal`]: no such storage, or it does not fit.
    pub fn admit(&mut self, id: u32, len: u64) -> Result<(), Refusal> {
        let used = self.used();
        let capacity = self.capacity;
        let Some(s) = self.storages.get_mut(&id) else {
            return Err(Refusal::UnknownStorage);
        };
        let storage_used = s.stats.bytes.saturating_add(s.pending_bytes);
        let fits = storage_used.saturating_add(len) <= s.record.capacity
            && used.saturating_add(len) <= capacity;
        if !fits {
            return Err(Refusal::Full);
        }
        s.pending_bytes = s.pending_bytes.saturating_add(len);
        Ok(())
    }

    /// Admission of a message of `len` bytes from `source` into storage `id`: the storage's
    /// source only, within its capacity and the proxy's.
    ///
    /// # Errors
    ///
    /// [`Refusal`]: no such storage, another source, or it does not fit.
    pub fn offer(&mut self, id: u32, source: &str, len: u64) -> Result<(), Refusal> {
        match self.storages.get(&id) {
            None => Err(Refusal::UnknownStorage),
            Some(s) if s.record.source != source => Err(Refusal::WrongSource),
            Some(_) => self.admit(id, len),
        }
    }

    /// Counts a retransmission of a stored message, acknowledged without being admitted.
    pub fn count_duplicate(&mut self, id: u32) {
        if let Some(s) = self.storages.get_mut(&id) {
            s.counters.received = s.counters.received.saturating_add(1);
            s.counters.duplicates = s.counters.duplicates.saturating_add(1);
            s.counters_dirty = true;
            self.dirty.insert(MonitorId::Storage(id));
        }
    }

    /// Counts a message refused for lack of space, in the storage or in the ingest queue
    /// (monitor `rejected_full`, load `rejected_full`).
    pub fn count_refused(&mut self, id: u32, now_s: u64) {
        if let Some(s) = self.storages.get_mut(&id) {
            s.counters.rejected_full = s.counters.rejected_full.saturating_add(1);
            s.counters.received = s.counters.received.saturating_add(1);
            s.counters_dirty = true;
            self.dirty.insert(MonitorId::Storage(id));
        }
        self.metrics.record(
            now_s,
            Slot {
                rejected_full: 1,
                ..Default::default()
            },
        );
    }

    /// Counts `cpu_us` microseconds of CPU time the proxy's process used up to `now_s` (the
    /// shell measures it; the load and the forwarding capacity are read from it).
    pub fn count_cpu(&mut self, now_s: u64, cpu_us: u64) {
        let used = Slot {
            cpu_us,
            ..Default::default()
        };
        self.metrics.record(now_s, used);
    }

    /// Returns an admitted reservation (the write failed, or the storage went away).
    pub fn release(&mut self, id: u32, len: u64) {
        if let Some(s) = self.storages.get_mut(&id) {
            s.pending_bytes = s.pending_bytes.saturating_sub(len);
        }
    }

    /// Records a written batch of storage `id`: `stored` new messages of `stored_bytes`,
    /// `duplicates` copies recognised, `admitted` reserved bytes released, and what the store
    /// now holds. The shell wakes the storage's pumps when `stored > 0`.
    pub fn on_written(&mut self, id: u32, written: Written, now_s: u64) {
        let Some(s) = self.storages.get_mut(&id) else {
            return;
        };
        s.pending_bytes = s.pending_bytes.saturating_sub(written.admitted);
        s.stats = written.stats;
        let count = written.stored.saturating_add(written.duplicates);
        s.counters.received = s.counters.received.saturating_add(count);
        s.counters.duplicates = s.counters.duplicates.saturating_add(written.duplicates);
        for (stream, seq) in written.sections {
            s.counters.sections.insert(stream, seq);
        }
        s.counters_dirty = true;
        for f in &s.forwards {
            self.dirty.insert(MonitorId::Forward(*f));
        }
        self.dirty.insert(MonitorId::Storage(id));
        self.metrics.record(
            now_s,
            Slot {
                messages_in: written.stored,
                bytes_in: written.stored_bytes,
                ..Default::default()
            },
        );
    }

    /// `storage/{id}/monitor`.
    #[must_use]
    pub fn storage_monitor(&self, id: u32) -> Option<StorageMonitor> {
        self.storages.get(&id).map(StorageState::monitor)
    }

    /// `forward/{id}/monitor`.
    #[must_use]
    pub fn forward_monitor(&self, id: u32) -> Option<ForwardMonitor> {
        let f = self.forwards.get(&id)?;
        let next = self
            .storages
            .get(&f.record.storage_id)
            .map_or(0, |s| s.stats.next_seq);
        Some(ForwardMonitor {
            forward_id: id,
            storage_id: f.record.storage_id,
            paused: f.record.paused,
            // In the order of the record (the order the owner gave).
            sinks: f
                .record
                .sinks
                .iter()
                .filter_map(|r| {
                    let s = f.sinks.get(&r.url)?;
                    Some(SinkProgress {
                        url: r.url.clone(),
                        delivered: s.pos.delivered,
                        reencrypted: s.pos.reencrypted,
                        skipped: s.pos.skipped,
                        pending: next.saturating_sub(s.pos.cursor),
                    })
                })
                .collect(),
        })
    }

    /// Where a sink added with `Start::Now` begins in storage `id`: at the current section of
    /// every stream (its newest management message still stored), else at the next message.
    #[must_use]
    pub fn now_position(&self, id: u32) -> u64 {
        let Some(s) = self.storages.get(&id) else {
            return 0;
        };
        let first = s.stats.first_seq.unwrap_or(s.stats.next_seq);
        s.counters
            .sections
            .values()
            .map(|seq| (*seq).max(first))
            .min()
            .unwrap_or(s.stats.next_seq)
            .min(s.stats.next_seq)
    }

    /// Below which the messages of storage `id` may be removed: the lowest position of any
    /// sink of any of its forwards. `None` (keep everything) when the storage has no forward,
    /// or a forward without sinks. A section's key is not kept back for a sink added later:
    /// a pin on each stream's newest key would hold everything after it while that stream is
    /// silent, and anyone can send a management message for a stream id nobody uses.
    #[must_use]
    pub fn retention_watermark(&self, id: u32) -> Option<u64> {
        let s = self.storages.get(&id)?;
        if s.forwards.is_empty() {
            return None;
        }
        let mut low: Option<u64> = None;
        for f in &s.forwards {
            let f = self.forwards.get(f)?;
            if f.sinks.is_empty() {
                return None;
            }
            for sink in f.sinks.values() {
                low = Some(low.map_or(sink.pos.cursor, |l| l.min(sink.pos.cursor)));
            }
        }
        low
    }
}

/// The bytes of `items` (dedup key, message in binary form), all reserved at admission.
pub(crate) fn admitted_bytes(items: &[([u8; 9], Vec<u8>)]) -> u64 {
    items
        .iter()
        .map(|(_, v)| u64::try_from(v.len()).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add)
}

/// The result of one group commit for one storage.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// New messages.
    pub stored: u64,
    /// Their bytes.
    pub stored_bytes: u64,
    /// Copies recognised by their dedup key.
    pub duplicates: u64,
    /// Bytes reserved at admission, now released.
    pub admitted: u64,
    /// What the queue holds after the write.
    pub stats: QueueStats,
    /// (stream id, sequence number) of the management messages stored.
    pub sections: Vec<(u16, u64)>,
}

impl Written {
    /// One storage's share of a group commit: pushes `items` (dedup key, message in binary
    /// form) into storage `id`'s queue in one `Store::queue_push_unique`, reads back what the
    /// queue holds, and [`tallies`](Self::tally) it.
    ///
    /// # Errors
    ///
    /// The store's: then nothing of the share may be acknowledged.
    pub fn push(
        store: &dyn Store,
        id: u32,
        items: &[([u8; 9], Vec<u8>)],
    ) -> m2msec_store::Result<Self> {
        let refs: Vec<(&[u8], &[u8])> = items.iter().map(|(k, v)| (&k[..], v.as_slice())).collect();
        let table = queue_table(id);
        let outcomes = store.queue_push_unique(&table, &dedup_table(id), &refs)?;
        let stats = store.queue_stats(&table)?;
        Ok(Self::tally(items, &outcomes, stats))
    }

    /// What one storage's share of a group commit did: `items` (dedup key, message in binary
    /// form), as pushed in one `Store::queue_push_unique`, its `outcomes` in the same order,
    /// and what the queue holds after (`stats`). Every item's bytes were reserved at admission
    /// and are released; a stored management message starts a section of its stream.
    #[must_use]
    pub fn tally(
        items: &[([u8; 9], Vec<u8>)],
        outcomes: &[PushOutcome],
        stats: QueueStats,
    ) -> Self {
        let len = |v: &Vec<u8>| u64::try_from(v.len()).unwrap_or(u64::MAX);
        let mut written = Self {
            admitted: admitted_bytes(items),
            stats,
            ..Self::default()
        };
        for ((key, value), outcome) in items.iter().zip(outcomes) {
            match outcome {
                PushOutcome::Stored(seq) => {
                    written.stored = written.stored.saturating_add(1);
                    written.stored_bytes = written.stored_bytes.saturating_add(len(value));
                    if let Some(stream) = management_stream(key) {
                        written.sections.push((stream, *seq));
                    }
                }
                PushOutcome::Duplicate(_) => {
                    written.duplicates = written.duplicates.saturating_add(1);
                }
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use m2msec_crypto::rng::OsRng;
    use m2msec_crypto::sig::{SigSuite, SigningKey};

    use super::*;

    fn storage(id: u32, capacity: u64) -> StorageState {
        let key = SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap();
        StorageState {
            record: StorageRecord {
                id,
                owner_key: String::new(),
                source: format!("coap://127.0.0.1/{id}"),
                capacity,
                udp: false,
                udp_port: None,
            },
            owner: key.verifying_key(),
            stats: QueueStats::default(),
            pending_bytes: 0,
            counters: StorageCounters::default(),
            counters_dirty: false,
            forwards: BTreeSet::new(),
            handles: (),
        }
    }

    #[test]
    fn admission_respects_storage_and_proxy_capacity() {
        let mut core: Core = Core::new(100, 60, 0);
        core.storages.insert(1, storage(1, 60));
        core.storages.insert(2, storage(2, 1000));
        assert_eq!(core.admit(9, 1), Err(Refusal::UnknownStorage));
        assert_eq!(
            core.offer(9, "coap://127.0.0.1/9", 1),
            Err(Refusal::UnknownStorage)
        );
        assert_eq!(
            core.offer(1, "coap://127.0.0.1/2", 1),
            Err(Refusal::WrongSource)
        );
        assert_eq!(core.offer(1, "coap://127.0.0.1/1", 61), Err(Refusal::Full));
        core.admit(1, 50).unwrap();
        // The storage's own quota.
        assert_eq!(core.admit(1, 11), Err(Refusal::Full));
        core.count_refused(1, 0);
        core.admit(1, 10).unwrap();
        // The proxy's capacity, shared: 60 used of 100.
        core.admit(2, 40).unwrap();
        assert_eq!(core.admit(2, 1), Err(Refusal::Full));
        core.count_refused(2, 0);
        assert_eq!(core.info().free, 0);
        // Writing turns reservations into stored bytes; duplicates give their bytes back.
        core.on_written(
            1,
            Written {
                stored: 1,
                stored_bytes: 50,
                duplicates: 1,
                admitted: 60,
                stats: QueueStats {
                    len: 1,
                    bytes: 50,
                    first_seq: Some(0),
                    next_seq: 1,
                },
                sections: vec![(7, 0)],
            },
            0,
        );
        assert_eq!(core.info().free, 10);
        // A sink starting now starts at the section in progress.
        assert_eq!(core.now_position(1), 0);
        assert_eq!(core.now_position(2), 0);
        let m = core.storage_monitor(1).unwrap();
        assert_eq!(
            (
                m.stored_messages,
                m.stored_bytes,
                m.received,
                m.duplicates,
                m.rejected_full,
                m.last_seq
            ),
            (1, 50, 3, 1, 1, Some(0))
        );
        core.release(2, 40);
        assert_eq!(core.info().free, 50);
        assert_eq!(core.metrics.sum(0, 1).rejected_full, 2);
    }

    #[test]
    fn what_a_shrunk_queue_holds_is_read_back_and_its_monitor_changed() {
        let mut core: Core = Core::new(100, 60, 0);
        core.storages.insert(1, storage(1, 60));
        let stats = QueueStats {
            len: 2,
            bytes: 20,
            first_seq: Some(5),
            next_seq: 7,
        };
        core.refreshed(vec![(1, stats), (9, stats)]);
        assert_eq!(core.storages[&1].stats, stats);
        assert_eq!(
            core.dirty.iter().copied().collect::<Vec<_>>(),
            [MonitorId::Storage(1)],
            "a storage that is gone is passed over"
        );
    }

    #[test]
    fn retention_needs_a_forward_with_sinks() {
        let mut core: Core = Core::new(100, 60, 0);
        core.storages.insert(1, storage(1, 60));
        assert_eq!(core.retention_watermark(1), None);
        let record = ForwardRecord {
            id: 5,
            storage_id: 1,
            rate: 0,
            paused: false,
            sinks: Vec::new(),
        };
        core.forwards.insert(
            5,
            ForwardState {
                record,
                sinks: BTreeMap::new(),
                handles: (),
            },
        );
        core.storages.get_mut(&1).unwrap().forwards.insert(5);
        assert_eq!(core.retention_watermark(1), None);
        for (url, cursor) in [("a", 7), ("b", 3)] {
            core.forwards.get_mut(&5).unwrap().sinks.insert(
                url.into(),
                SinkState {
                    pos: CursorRecord {
                        cursor,
                        ..CursorRecord::default()
                    },
                    dirty: false,
                    handles: (),
                    generation: 0,
                },
            );
        }
        assert_eq!(core.retention_watermark(1), Some(3));
        // A stream's newest key does not hold the storage back.
        let counters = &mut core.storages.get_mut(&1).unwrap().counters;
        counters.sections.insert(1, 2);
        assert_eq!(core.retention_watermark(1), Some(3));
    }
}
