//! An in-memory [`Store`] for tests and the simulator.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Error, Result, Store, validate_table_name};

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
}

#[derive(Debug, Default)]
struct Queue {
    /// The sequence number the next push gets; kept apart from `entries` so that numbers are
    /// not reused after the newest entry is removed.
    next: u64,
    entries: BTreeMap<u64, Vec<u8>>,
}

impl MemoryStore {
    /// Creates an empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding it. Every critical
        // section below is a single map operation that leaves the maps consistent whether or
        // not it completed, so the data is still valid and we carry on instead of panicking.
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
        queue.entries.insert(seq, value.to_vec());
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
            .is_some_and(|queue| queue.entries.remove(&seq).is_some()))
    }
}
