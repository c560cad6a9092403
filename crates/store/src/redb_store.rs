//! The default [`Store`]: one embedded redb database file.

use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableError, WriteTransaction,
};

use crate::{
    Error, PushOutcome, QueueStats, Result, Store, WriteOp, decode_dedup_value, validate_table_name,
};

/// Internal prefix of map tables: `kv:NAME`. User names cannot contain `:`, so no user table
/// can collide with a queue or with the store's own metadata.
const MAP_PREFIX: &str = "kv:";
/// Internal prefix of queue tables: `q:NAME`, keyed by sequence number.
const QUEUE_PREFIX: &str = "q:";
/// The next sequence number of each queue, by queue name. Kept apart from the queue itself so
/// that numbers are never reused after the newest entry was removed, even across a reopen.
const QUEUE_NEXT: TableDefinition<'static, &str, u64> = TableDefinition::new("m2msec:queue-next");
/// The total size in bytes of the values each queue holds, by queue name, updated in the
/// transaction of every push and removal so that capacity accounting survives a crash exactly.
/// A queue written before totals were kept gets its total computed once, on its next write.
const QUEUE_BYTES: TableDefinition<'static, &str, u64> = TableDefinition::new("m2msec:queue-bytes");
/// Internal prefix of the reverse index of a dedup table: `dq:NAME`, sequence number -> dedup
/// key, so that [`WriteOp::DedupForgetBelow`] finds the keys to forget without a scan.
const DEDUP_INDEX_PREFIX: &str = "dq:";

type MapTable<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;
type QueueTable<'a> = TableDefinition<'a, u64, &'static [u8]>;

/// A [`Store`] in one redb database file.
///
/// Every call is one redb write (or read) transaction. Writes commit with redb's default
/// immediate durability — the file is fsynced before the call returns — and with two-phase
/// commit and quick repair turned on: two-phase commit closes redb's documented window in which
/// a crash during fsync with attacker-influenced data (replay-cache entries are exactly that)
/// could leave a commit half applied, and quick repair makes the reopen after a crash fast even
/// when the message store is large. Transactions that change nothing (a replay detected by
/// [`Store::insert_if_absent`], removing an absent key) are aborted rather than committed, so
/// they cost no fsync — a flood of replays does not turn into a flood of disk flushes.
///
/// The batched writes ([`Store::queue_push_unique`], [`Store::write_batch`]) are one
/// transaction each, whatever their size: the group commit that lets the relay proxy acknowledge
/// a burst of messages for the price of one fsync.
///
/// One file can be open by one `RedbStore` at a time (redb locks it); share the store between
/// threads with an `Arc`.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    /// Opens the database at `path`, creating it — and any missing parent directory — if it
    /// does not exist.
    ///
    /// If the previous process using the file crashed, redb repairs it here, rolling back to the
    /// last committed transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Private`] if the file exists and group or others may access it, or it or a
    /// parent directory cannot be created; [`Error::AlreadyOpen`] if
    /// another store (in this process or another) holds the file; [`Error::Open`] if the file
    /// is not a redb database of a supported format or cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // The file (and its missing directories) are created owner-only, and an existing file
        // that others may read is refused: the database holds keys and messages.
        let file = crate::private::open(&path, crate::private::Write::InPlace)?;
        let backend = redb::backends::FileBackend::new(file).map_err(|e| Error::Open {
            path: path.clone(),
            source: Box::new(e),
        })?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => Error::AlreadyOpen { path: path.clone() },
                other => Error::Open {
                    path: path.clone(),
                    source: Box::new(other),
                },
            })?;
        Ok(Self { db, path })
    }

    /// The database file this store was opened at.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> Result<WriteTransaction> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| backend("begin write transaction", e))?;
        // Quick repair implies two-phase commit (see the type's documentation for why both).
        txn.set_two_phase_commit(true);
        txn.set_quick_repair(true);
        Ok(txn)
    }

    fn read(&self) -> Result<ReadTransaction> {
        self.db
            .begin_read()
            .map_err(|e| backend("begin read transaction", e))
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn backend(operation: &'static str, e: impl Into<redb::Error>) -> Error {
    Error::Backend {
        operation,
        source: Box::new(e.into()),
    }
}

fn commit(txn: WriteTransaction) -> Result<()> {
    txn.commit().map_err(|e| backend("commit", e))
}

fn abort(txn: WriteTransaction) -> Result<()> {
    txn.abort().map_err(|e| backend("abort", e))
}

/// Commits `txn` if `body` succeeded and changed something, aborts it otherwise (an error
/// rolls the whole transaction back; nothing changed costs no fsync).
fn finish<T>(txn: WriteTransaction, body: Result<(T, bool)>) -> Result<T> {
    match body {
        Ok((value, true)) => commit(txn).map(|()| value),
        Ok((value, false)) => abort(txn).map(|()| value),
        Err(e) => {
            // The body's error is the one worth reporting; a failed abort adds nothing.
            let _ = txn.abort();
            Err(e)
        }
    }
}

fn map_name(table: &str) -> Result<String> {
    validate_table_name(table)?;
    Ok(format!("{MAP_PREFIX}{table}"))
}

fn queue_name(table: &str) -> Result<String> {
    validate_table_name(table)?;
    Ok(format!("{QUEUE_PREFIX}{table}"))
}

fn dedup_index_name(dedup_table: &str) -> Result<String> {
    validate_table_name(dedup_table)?;
    Ok(format!("{DEDUP_INDEX_PREFIX}{dedup_table}"))
}

type Table<'t, K, V> = redb::Table<'t, K, V>;

/// A queue opened in a write transaction with its byte total, which every change keeps in step.
struct QueueMut<'t> {
    name: &'t str,
    entries: Table<'t, u64, &'static [u8]>,
    totals: Table<'t, &'static str, u64>,
    bytes: u64,
}

impl<'t> QueueMut<'t> {
    fn open(txn: &'t WriteTransaction, name: &'t str, internal: &str) -> Result<Self> {
        let entries = txn
            .open_table(QueueTable::new(internal))
            .map_err(|e| backend("open table", e))?;
        let totals = txn
            .open_table(QUEUE_BYTES)
            .map_err(|e| backend("open table", e))?;
        let known = totals
            .get(name)
            .map_err(|e| backend("get", e))?
            .map(|v| v.value());
        let bytes = match known {
            Some(bytes) => bytes,
            None => value_bytes(&entries)?,
        };
        Ok(Self {
            name,
            entries,
            totals,
            bytes,
        })
    }

    fn insert(&mut self, seq: u64, value: &[u8]) -> Result<()> {
        self.entries
            .insert(seq, value)
            .map_err(|e| backend("insert", e))?;
        self.bytes = self.bytes.saturating_add(len_u64(value));
        Ok(())
    }

    fn remove(&mut self, seq: u64) -> Result<bool> {
        let old = self.entries.remove(seq).map_err(|e| backend("remove", e))?;
        let Some(old) = old else {
            return Ok(false);
        };
        self.bytes = self.bytes.saturating_sub(len_u64(old.value()));
        Ok(true)
    }

    fn remove_below(&mut self, below: u64) -> Result<()> {
        let mut freed = 0u64;
        self.entries
            .retain_in(..below, |_, v| {
                freed = freed.saturating_add(len_u64(v));
                false
            })
            .map_err(|e| backend("remove", e))?;
        self.bytes = self.bytes.saturating_sub(freed);
        Ok(())
    }

    /// Writes the byte total back (the caller commits).
    fn close(mut self) -> Result<()> {
        let name = self.name;
        self.totals
            .insert(name, self.bytes)
            .map_err(|e| backend("insert", e))?;
        Ok(())
    }
}

/// The bytes a queue written before totals were kept holds: counted once, by a scan.
fn value_bytes(queue: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64> {
    let mut sum = 0u64;
    for entry in queue.iter().map_err(|e| backend("scan", e))? {
        let (_, v) = entry.map_err(|e| backend("scan", e))?;
        sum = sum.saturating_add(len_u64(v.value()));
    }
    Ok(sum)
}

fn len_u64(value: &[u8]) -> u64 {
    u64::try_from(value.len()).unwrap_or(u64::MAX)
}

/// Forgets the keys of `dedup_table` recorded for sequence numbers below `below`.
fn dedup_forget_below(txn: &WriteTransaction, dedup_table: &str, below: u64) -> Result<()> {
    let index_name = dedup_index_name(dedup_table)?;
    let map_name = map_name(dedup_table)?;
    let mut index = txn
        .open_table(QueueTable::new(&index_name))
        .map_err(|e| backend("open table", e))?;
    let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
    index
        .retain_in(..below, |seq, key| {
            keys.push((seq, key.to_vec()));
            false
        })
        .map_err(|e| backend("remove", e))?;
    let mut map = txn
        .open_table(MapTable::new(&map_name))
        .map_err(|e| backend("open table", e))?;
    for (seq, key) in keys {
        // The key may have been pruned by hand and stored again since, under a newer number:
        // only the mapping to this number is forgotten.
        let current = map
            .get(key.as_slice())
            .map_err(|e| backend("get", e))?
            .map(|v| v.value().to_vec());
        if current.is_some_and(|v| v == seq.to_be_bytes()) {
            map.remove(key.as_slice())
                .map_err(|e| backend("remove", e))?;
        }
    }
    Ok(())
}

/// Opens a table for reading; `None` if it was never written (redb creates tables only in write
/// transactions, and reading must not create one).
fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match txn.open_table(def) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(backend("open table", e)),
    }
}

/// A queue's entry in a counter table (`QUEUE_NEXT`, `QUEUE_BYTES`), `None` when it has none.
fn queue_counter(
    txn: &ReadTransaction,
    def: TableDefinition<'_, &'static str, u64>,
    table: &str,
) -> Result<Option<u64>> {
    match open_read(txn, def)? {
        Some(t) => Ok(t
            .get(table)
            .map_err(|e| backend("get", e))?
            .map(|v| v.value())),
        None => Ok(None),
    }
}

impl Store for RedbStore {
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let name = map_name(table)?;
        let txn = self.write()?;
        {
            let mut t = txn
                .open_table(MapTable::new(&name))
                .map_err(|e| backend("open table", e))?;
            t.insert(key, value).map_err(|e| backend("insert", e))?;
        }
        commit(txn)
    }

    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let name = map_name(table)?;
        let txn = self.read()?;
        let Some(t) = open_read(&txn, MapTable::new(&name))? else {
            return Ok(None);
        };
        let value = t.get(key).map_err(|e| backend("get", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn remove(&self, table: &str, key: &[u8]) -> Result<bool> {
        let name = map_name(table)?;
        let txn = self.write()?;
        let removed = {
            let mut t = txn
                .open_table(MapTable::new(&name))
                .map_err(|e| backend("open table", e))?;
            let old = t.remove(key).map_err(|e| backend("remove", e))?;
            old.is_some()
        };
        if removed {
            commit(txn)?;
        } else {
            abort(txn)?;
        }
        Ok(removed)
    }

    fn insert_if_absent(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool> {
        let name = map_name(table)?;
        // redb allows one write transaction at a time, so the check and the insert below are
        // atomic with respect to every other writer of this database.
        let txn = self.write()?;
        let inserted = {
            let mut t = txn
                .open_table(MapTable::new(&name))
                .map_err(|e| backend("open table", e))?;
            let present = t.get(key).map_err(|e| backend("get", e))?.is_some();
            if !present {
                t.insert(key, value).map_err(|e| backend("insert", e))?;
            }
            !present
        };
        if inserted {
            commit(txn)?;
        } else {
            abort(txn)?;
        }
        Ok(inserted)
    }

    fn scan(&self, table: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = map_name(table)?;
        let txn = self.read()?;
        let Some(t) = open_read(&txn, MapTable::new(&name))? else {
            return Ok(Vec::new());
        };
        t.iter()
            .map_err(|e| backend("scan", e))?
            .map(|entry| {
                let (k, v) = entry.map_err(|e| backend("scan", e))?;
                Ok((k.value().to_vec(), v.value().to_vec()))
            })
            .collect()
    }

    fn queue_push(&self, table: &str, value: &[u8]) -> Result<u64> {
        let name = queue_name(table)?;
        let txn = self.write()?;
        let body = (|| {
            let mut next = txn
                .open_table(QUEUE_NEXT)
                .map_err(|e| backend("open table", e))?;
            let seq = next
                .get(table)
                .map_err(|e| backend("get", e))?
                .map_or(0, |v| v.value());
            let after = seq.checked_add(1).ok_or_else(|| Error::QueueExhausted {
                table: table.to_owned(),
            })?;
            next.insert(table, after)
                .map_err(|e| backend("insert", e))?;
            let mut q = QueueMut::open(&txn, table, &name)?;
            q.insert(seq, value)?;
            q.close()?;
            Ok((seq, true))
        })();
        finish(txn, body)
    }

    fn queue_range(&self, table: &str, from_seq: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let name = queue_name(table)?;
        let txn = self.read()?;
        let Some(q) = open_read(&txn, QueueTable::new(&name))? else {
            return Ok(Vec::new());
        };
        q.range(from_seq..)
            .map_err(|e| backend("range", e))?
            .take(max)
            .map(|entry| {
                let (seq, v) = entry.map_err(|e| backend("range", e))?;
                Ok((seq.value(), v.value().to_vec()))
            })
            .collect()
    }

    fn queue_remove(&self, table: &str, seq: u64) -> Result<bool> {
        let name = queue_name(table)?;
        let txn = self.write()?;
        let body = (|| {
            let mut q = QueueMut::open(&txn, table, &name)?;
            let removed = q.remove(seq)?;
            if removed {
                q.close()?;
            }
            Ok((removed, removed))
        })();
        finish(txn, body)
    }

    fn queue_push_unique(
        &self,
        table: &str,
        dedup_table: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<PushOutcome>> {
        let name = queue_name(table)?;
        let dedup_name = map_name(dedup_table)?;
        let index_name = dedup_index_name(dedup_table)?;
        // One write transaction: redb admits one writer at a time, so the dedup look-ups and the
        // appends below are atomic with respect to every other writer, and the commit at the end
        // is the batch's single fsync.
        let txn = self.write()?;
        let body = (|| {
            let mut next = txn
                .open_table(QUEUE_NEXT)
                .map_err(|e| backend("open table", e))?;
            let mut dedup = txn
                .open_table(MapTable::new(&dedup_name))
                .map_err(|e| backend("open table", e))?;
            let mut index = txn
                .open_table(QueueTable::new(&index_name))
                .map_err(|e| backend("open table", e))?;
            let mut q = QueueMut::open(&txn, table, &name)?;
            let first = next
                .get(table)
                .map_err(|e| backend("get", e))?
                .map_or(0, |v| v.value());
            let mut seq = first;
            let mut outcomes = Vec::with_capacity(items.len());
            for &(key, value) in items {
                // Earlier items of this batch are already in `dedup`, so a key repeated within
                // the batch is caught here too.
                let known = dedup
                    .get(key)
                    .map_err(|e| backend("get", e))?
                    .map(|v| decode_dedup_value(dedup_table, v.value()))
                    .transpose()?;
                if let Some(first_copy) = known {
                    outcomes.push(PushOutcome::Duplicate(first_copy));
                    continue;
                }
                let after = seq.checked_add(1).ok_or_else(|| Error::QueueExhausted {
                    table: table.to_owned(),
                })?;
                q.insert(seq, value)?;
                dedup
                    .insert(key, &seq.to_be_bytes()[..])
                    .map_err(|e| backend("insert", e))?;
                index.insert(seq, key).map_err(|e| backend("insert", e))?;
                outcomes.push(PushOutcome::Stored(seq));
                seq = after;
            }
            let changed = seq != first;
            if changed {
                next.insert(table, seq).map_err(|e| backend("insert", e))?;
                q.close()?;
            }
            Ok((outcomes, changed))
        })();
        finish(txn, body)
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<()> {
        // Every name is checked before the transaction begins, so a bad one writes nothing.
        let names =
            ops.iter()
                .map(|op| match op {
                    WriteOp::QueueRemove { table, .. }
                    | WriteOp::QueueRemoveBelow { table, .. } => queue_name(table),
                    WriteOp::Put { table, .. } | WriteOp::Remove { table, .. } => map_name(table),
                    WriteOp::DedupForgetBelow { dedup_table, .. } => {
                        dedup_index_name(dedup_table)?;
                        map_name(dedup_table)
                    }
                })
                .collect::<Result<Vec<String>>>()?;
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.write()?;
        let body = (|| {
            for (op, name) in ops.iter().zip(&names) {
                // A table is opened per op and closed before the next, since redb refuses to
                // open one table twice at a time; opening an already-created table is cheap.
                match *op {
                    WriteOp::Put { key, value, .. } => {
                        let mut t = txn
                            .open_table(MapTable::new(name))
                            .map_err(|e| backend("open table", e))?;
                        t.insert(key, value).map_err(|e| backend("insert", e))?;
                    }
                    WriteOp::Remove { key, .. } => {
                        let mut t = txn
                            .open_table(MapTable::new(name))
                            .map_err(|e| backend("open table", e))?;
                        t.remove(key).map_err(|e| backend("remove", e))?;
                    }
                    WriteOp::QueueRemove { table, seq } => {
                        let mut q = QueueMut::open(&txn, table, name)?;
                        q.remove(seq)?;
                        q.close()?;
                    }
                    WriteOp::QueueRemoveBelow { table, seq } => {
                        let mut q = QueueMut::open(&txn, table, name)?;
                        q.remove_below(seq)?;
                        q.close()?;
                    }
                    WriteOp::DedupForgetBelow { dedup_table, seq } => {
                        dedup_forget_below(&txn, dedup_table, seq)?;
                    }
                }
            }
            Ok(((), true))
        })();
        finish(txn, body)
    }

    fn queue_stats(&self, table: &str) -> Result<QueueStats> {
        let name = queue_name(table)?;
        let txn = self.read()?;
        let next_seq = queue_counter(&txn, QUEUE_NEXT, table)?.unwrap_or(0);
        let Some(q) = open_read(&txn, QueueTable::new(&name))? else {
            return Ok(QueueStats {
                next_seq,
                ..QueueStats::default()
            });
        };
        let len = q.len().map_err(|e| backend("len", e))?;
        let first_seq = q
            .first()
            .map_err(|e| backend("first", e))?
            .map(|(k, _)| k.value());
        let bytes = match queue_counter(&txn, QUEUE_BYTES, table)? {
            Some(bytes) => bytes,
            None => value_bytes(&q)?,
        };
        Ok(QueueStats {
            len,
            bytes,
            first_seq,
            next_seq,
        })
    }
}
