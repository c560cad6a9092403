//! An in-memory [`Store`] for tests and the simulator.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{
    Error, PushOutcome, QueueStats, Result, Store, WriteOp, decode_dedup_value, validate_table_name,
};

/// A [`Store`] kept in memory: `BTreeMap`s behind one mutex.
///
/// Same semantics as [`RedbStore`](crate::RedbStore) except that nothing survives the value
/// being dropped, which is what the simulator wants (millions of sessions, no disk) and what
/// unit tests of the daemons want (no temporary files). Cloning is not offered: share it with an
/// `Arc` so that every holder sees the same state.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    maps: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    queues: BTreeMap<String, Queue>,
    /// The reverse index of each dedup table: sequence number -> dedup key.
    dedup_index: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// The sequence number the next push gets; kept apart from `entries` so that numbers are
    /// not reused after the newest entry is removed.
    next: u64,
    entries: BTreeMap<u64, Vec<u8>>,
    /// Total length of the values in `entries`.
    bytes: u64,
}

impl Queue {
    fn insert(&mut self, seq: u64, value: Vec<u8>) {
        self.bytes = self.bytes.saturating_add(len_u64(&value));
        if let Some(old) = self.entries.insert(seq, value) {
            self.bytes = self.bytes.saturating_sub(len_u64(&old));
        }
    }

    fn remove(&mut self, seq: u64) -> bool {
        let Some(old) = self.entries.remove(&seq) else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(len_u64(&old));
        true
    }

    fn remove_below(&mut self, below: u64) {
        let kept = self.entries.split_off(&below);
        let gone = std::mem::replace(&mut self.entries, kept);
        let freed = gone
            .values()
            .map(|v| len_u64(v))
            .fold(0, u64::saturating_add);
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

fn len_u64(value: &[u8]) -> u64 {
    u64::try_from(value.len()).unwrap_or(u64::MAX)
}

impl MemoryStore {
    /// Creates an empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding it. Every critical
        // section below either is a single map operation that leaves the maps consistent
        // whether or not it completed, or plans every change (and every possible error) before
        // it makes the first one, so the data is still valid and we carry on instead of panicking.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        validate_table_name(table)?;
        self.lock()
            .maps
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        validate_table_name(table)?;
        Ok(self
            .lock()
            .maps
            .get(table)
            .and_then(|map| map.get(key))
            .cloned())
    }

    fn remove(&self, table: &str, key: &[u8]) -> Result<bool> {
        validate_table_name(table)?;
        Ok(self
            .lock()
            .maps
            .get_mut(table)
            .is_some_and(|map| map.remove(key).is_some()))
    }

    fn insert_if_absent(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool> {
        validate_table_name(table)?;
        let mut inner = self.lock();
        let map = inner.maps.entry(table.to_owned()).or_default();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.to_vec(), value.to_vec());
        Ok(true)
    }

    fn scan(&self, table: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        validate_table_name(table)?;
        Ok(self.lock().maps.get(table).map_or_else(Vec::new, |map| {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }))
    }

    fn queue_push(&self, table: &str, value: &[u8]) -> Result<u64> {
        validate_table_name(table)?;
        let mut inner = self.lock();
        let queue = inner.queues.entry(table.to_owned()).or_default();
        let seq = queue.next;
        queue.next = seq.checked_add(1).ok_or_else(|| Error::QueueExhausted {
            table: table.to_owned(),
        })?;
        queue.insert(seq, value.to_vec());
        Ok(seq)
    }

    fn queue_range(&self, table: &str, from_seq: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        validate_table_name(table)?;
        Ok(self
            .lock()
            .queues
            .get(table)
            .map_or_else(Vec::new, |queue| {
                queue
                    .entries
                    .range(from_seq..)
                    .take(max)
                    .map(|(seq, v)| (*seq, v.clone()))
                    .collect()
            }))
    }

    fn queue_remove(&self, table: &str, seq: u64) -> Result<bool> {
        validate_table_name(table)?;
        Ok(self
            .lock()
            .queues
            .get_mut(table)
            .is_some_and(|queue| queue.remove(seq)))
    }

    fn queue_push_unique(
        &self,
        table: &str,
        dedup_table: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<PushOutcome>> {
        validate_table_name(table)?;
        validate_table_name(dedup_table)?;
        let mut inner = self.lock();
        let Inner {
            maps,
            queues,
            dedup_index,
        } = &mut *inner;
        // Plan first, so that an error leaves the store untouched (all or nothing, like the
        // one transaction of the file-backed store).
        let mut next = queues.get(table).map_or(0, |q| q.next);
        let dedup = maps.get(dedup_table);
        let mut new_keys: HashMap<&[u8], u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for &(key, _) in items {
            let earlier = match dedup.and_then(|m| m.get(key)) {
                Some(v) => Some(decode_dedup_value(dedup_table, v)?),
                None => new_keys.get(key).copied(),
            };
            if let Some(seq) = earlier {
                outcomes.push(PushOutcome::Duplicate(seq));
                continue;
            }
            let seq = next;
            next = seq.checked_add(1).ok_or_else(|| Error::QueueExhausted {
                table: table.to_owned(),
            })?;
            new_keys.insert(key, seq);
            outcomes.push(PushOutcome::Stored(seq));
        }
        if new_keys.is_empty() {
            return Ok(outcomes);
        }
        let queue = queues.entry(table.to_owned()).or_default();
        queue.next = next;
        let dedup = maps.entry(dedup_table.to_owned()).or_default();
        let index = dedup_index.entry(dedup_table.to_owned()).or_default();
        for (&(key, value), outcome) in items.iter().zip(&outcomes) {
            if let PushOutcome::Stored(seq) = *outcome {
                queue.insert(seq, value.to_vec());
                dedup.insert(key.to_vec(), seq.to_be_bytes().to_vec());
                index.insert(seq, key.to_vec());
            }
        }
        Ok(outcomes)
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<()> {
        for op in ops {
            validate_table_name(op.table())?;
        }
        let mut inner = self.lock();
        for op in ops {
            match *op {
                WriteOp::Put { table, key, value } => {
                    inner
                        .maps
                        .entry(table.to_owned())
                        .or_default()
                        .insert(key.to_vec(), value.to_vec());
                }
                WriteOp::Remove { table, key } => {
                    if let Some(map) = inner.maps.get_mut(table) {
                        map.remove(key);
                    }
                }
                WriteOp::QueueRemove { table, seq } => {
                    if let Some(queue) = inner.queues.get_mut(table) {
                        queue.remove(seq);
                    }
                }
                WriteOp::QueueRemoveBelow { table, seq } => {
                    if let Some(queue) = inner.queues.get_mut(table) {
                        queue.remove_below(seq);
                    }
                }
                WriteOp::DedupForgetBelow { dedup_table, seq } => {
                    let Inner {
                        maps, dedup_index, ..
                    } = &mut *inner;
                    let Some(index) = dedup_index.get_mut(dedup_table) else {
                        continue;
                    };
                    let kept = index.split_off(&seq);
                    let forgotten = std::mem::replace(index, kept);
                    if let Some(map) = maps.get_mut(dedup_table) {
                        for (seq, key) in forgotten {
                            // Only the mapping to this number: the key may have been stored
                            // again since under a newer one.
                            if map.get(&key).is_some_and(|v| *v == seq.to_be_bytes()) {
                                map.remove(&key);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn queue_stats(&self, table: &str) -> Result<QueueStats> {
        validate_table_name(table)?;
        Ok(self
            .lock()
            .queues
            .get(table)
            .map_or_else(QueueStats::default, |q| QueueStats {
                len: u64::try_from(q.entries.len()).unwrap_or(u64::MAX),
                bytes: q.bytes,
                first_seq: q.entries.keys().next().copied(),
                next_seq: q.next,
            }))
    }
}
