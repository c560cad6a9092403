//! The durable state of the m2msec daemons, behind one small trait.
//!
//! DESIGN.md: long-lived state that must survive a restart — one-time key indices already
//! used, replay caches, trust records, key-stream positions, stored messages — lives here, not
//! in ad-hoc files. The protocol cores stay pure: they emit events saying what to persist, and
//! the daemon writes it through a [`Store`] *before* it sends anything that depends on it. That
//! ordering is what makes "a one-time key signs once" and "a replayed MIKEY message is refused"
//! hold across a crash or a reboot (losing replay windows on reboot is the most common complaint
//! against OSCORE stacks).
//!
//! # The interface
//!
//! [`Store`] is a synchronous, namespaced key-value store with two kinds of tables:
//!
//! - **maps** ([`Store::put`], [`Store::get`], [`Store::remove`], [`Store::scan`]) with opaque
//!   byte keys and values, scanned in byte-wise key order, and [`Store::insert_if_absent`], the
//!   atomic test-and-set on which single use is enforced: of any number of concurrent callers
//!   for one key, exactly one sees `true`;
//! - **queues** ([`Store::queue_push`], [`Store::queue_range`], [`Store::queue_remove`]):
//!   append-only logs with store-assigned, strictly increasing sequence numbers, for the relay's
//!   and the SGA server's store-and-forward paths;
//! - two **batched writes** for hot paths, each one transaction and one fsync however many items
//!   it carries (group commit): [`Store::queue_push_unique`] appends whatever is new among a
//!   batch of messages, deduplicated by a key of the caller's choosing, and
//!   [`Store::write_batch`] applies any mix of puts and removals atomically (the relay proxy's
//!   forwarding cursors, the removal of a forwarded prefix of a queue and the pruning of its
//!   dedup keys), and [`Store::queue_stats`] reports a queue's length and byte total, kept
//!   exact across crashes, for capacity accounting.
//!
//! Records are bytes: each protocol crate owns its record formats (and their versioning), so
//! this crate knows nothing of them. Every write is durable when it returns `Ok`.
//!
//! Table names are validated by every call (see [`validate_table_name`]): 1 to
//! [`MAX_TABLE_NAME_LEN`] characters from `[a-z0-9_.-]`. Map tables and queue tables live in
//! separate namespaces, so a map and a queue may share a name.
//!
//! # Backends
//!
//! - [`RedbStore`]: the default, an embedded [redb](https://www.redb.org) database file. One
//!   write transaction per call, committed with immediate durability (fsync) and two-phase
//!   commit; a process killed at any point reopens with every acknowledged write present.
//! - [`MemoryStore`]: a `BTreeMap` behind a mutex, for tests and the simulator, where
//!   "durable" means "until the value is dropped".
//!
//! A distributed backend (NATS JetStream key-value buckets and streams, for when one machine is
//! not enough) is planned as an additional, off-by-default cargo feature; the trait is kept
//! small and synchronous so that such a backend can implement it without changing callers.
//!
//! # Example
//!
//! ```
//! use m2msec_store::{MemoryStore, Store};
//!
//! # fn main() -> Result<(), m2msec_store::Error> {
//! let store = MemoryStore::new();
//! // A MIKEY responder remembers (initiator id, timestamp, RAND) before answering.
//! assert!(store.insert_if_absent("mikey-replay", b"alice|ts|rand", b"")?);
//! // The same message a second time is a replay.
//! assert!(!store.insert_if_absent("mikey-replay", b"alice|ts|rand", b"")?);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod memory;
pub mod private;
mod redb_store;
mod table;

use std::sync::Arc;

pub use error::{Error, Result};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;
pub use table::{MAX_TABLE_NAME_LEN, validate_table_name};

/// What [`Store::queue_push_unique`] did with one item of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushOutcome {
    /// The dedup key was new: the value was appended under this sequence number.
    Stored(u64),
    /// The dedup key was already recorded (by an earlier call, or by an earlier item of the same
    /// batch): nothing was appended. The number is the sequence number recorded for the key —
    /// that of the first copy, which may since have been removed from the queue.
    Duplicate(u64),
}

impl PushOutcome {
    /// The sequence number of the stored copy, whichever way it got there.
    #[must_use]
    pub fn seq(self) -> u64 {
        match self {
            Self::Stored(seq) | Self::Duplicate(seq) => seq,
        }
    }
}

/// One write of a [`Store::write_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// [`Store::put`]: sets `key` in map `table` to `value`.
    Put {
        /// The map.
        table: &'a str,
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// [`Store::remove`]: deletes `key` from map `table` (absent is not an error).
    Remove {
        /// The map.
        table: &'a str,
        /// The key.
        key: &'a [u8],
    },
    /// [`Store::queue_remove`]: removes entry `seq` of queue `table` (absent is not an error).
    QueueRemove {
        /// The queue.
        table: &'a str,
        /// The entry's sequence number.
        seq: u64,
    },
    /// Removes every entry of queue `table` whose sequence number is below `seq`: a consumer
    /// that is done with a prefix of the queue drops it in one step.
    QueueRemoveBelow {
        /// The queue.
        table: &'a str,
        /// The first sequence number kept.
        seq: u64,
    },
    /// Forgets the dedup keys that [`Store::queue_push_unique`] recorded in `dedup_table` for
    /// sequence numbers below `seq` (the store keeps an index by sequence number, so this costs
    /// what it removes, not a scan). A key that was stored again under a newer number since is
    /// kept.
    DedupForgetBelow {
        /// The dedup map.
        dedup_table: &'a str,
        /// The first sequence number whose key is kept.
        seq: u64,
    },
}

impl WriteOp<'_> {
    /// The table this write touches.
    #[must_use]
    pub fn table(&self) -> &str {
        match self {
            Self::Put { table, .. }
            | Self::Remove { table, .. }
            | Self::QueueRemove { table, .. }
            | Self::QueueRemoveBelow { table, .. }
            | Self::DedupForgetBelow {
                dedup_table: table, ..
            } => table,
        }
    }
}

/// The state of one queue, as [`Store::queue_stats`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries held.
    pub len: u64,
    /// Total size of the values held, in bytes (what capacity limits are checked against).
    pub bytes: u64,
    /// Sequence number of the oldest entry held, if any.
    pub first_seq: Option<u64>,
    /// The sequence number the next push will get (0 for a queue never written).
    pub next_seq: u64,
}

/// The value a dedup table of [`Store::queue_push_unique`] holds for a key: the sequence
/// number, 8 bytes big endian.
///
/// # Errors
///
/// [`Error::CorruptRecord`] if `value` is not 8 bytes (the table was written by something
/// else than `queue_push_unique`).
pub fn decode_dedup_value(dedup_table: &str, value: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::CorruptRecord {
            table: dedup_table.to_owned(),
            reason: "a dedup entry is not an 8-byte sequence number",
        })
}

/// A durable, namespaced key-value store with atomic test-and-set and append-only queues.
///
/// Implementations are shared between threads (`Send + Sync`) and every method takes `&self`;
/// each call is atomic on its own. The trait is dyn-compatible, so a daemon can hold an
/// `Arc<dyn Store>` chosen from its config.
pub trait Store: Send + Sync {
    /// Sets `key` in map `table` to `value`, replacing any previous value.
    ///
    /// The write is durable when this returns `Ok`: a crash after that point does not lose it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the write could
    /// not be made durable (in which case it may or may not have happened).
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()>;

    /// Returns the value of `key` in map `table`, or `None` if it is not set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the read failed.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Deletes `key` from map `table`; returns whether it was present.
    ///
    /// Durable when it returns, like [`Store::put`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the deletion could
    /// not be made durable.
    fn remove(&self, table: &str, key: &[u8]) -> Result<bool>;

    /// Sets `key` to `value` only if `key` is absent; returns `true` if this call inserted it.
    ///
    /// Atomic and durable: of any number of callers racing on one key, in one process or across
    /// restarts, exactly one ever sees `true` (until the key is removed). This is how "a
    /// one-time key is used once" and replay caches are enforced. An existing value is never
    /// changed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the insertion could
    /// not be made durable — the caller must then treat the key as *possibly* used.
    fn insert_if_absent(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool>;

    /// Returns every entry of map `table`, in byte-wise key order (empty if the table was never
    /// written).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the read failed.
    fn scan(&self, table: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Appends `value` to queue `table` and returns its sequence number.
    ///
    /// Sequence numbers start at 0 and strictly increase per queue; one is never reused, even
    /// after its entry was removed or the store was reopened. Durable when it returns.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; [`Error::QueueExhausted`] if the queue
    /// has run out of sequence numbers (after 2^64 - 1 pushes); a backend error if the append could not be made
    /// durable.
    fn queue_push(&self, table: &str, value: &[u8]) -> Result<u64>;

    /// Returns up to `max` entries of queue `table` whose sequence number is `from_seq` or
    /// later, in sequence order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the read failed.
    fn queue_range(&self, table: &str, from_seq: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>>;

    /// Removes entry `seq` from queue `table` (typically once it was delivered); returns
    /// whether it was present. Durable when it returns.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the removal could
    /// not be made durable.
    fn queue_remove(&self, table: &str, seq: u64) -> Result<bool>;

    /// Appends each value of `items` whose dedup key is new, in order, all in **one**
    /// transaction made durable once for the whole batch (group commit); returns, per item and
    /// in the same order, [`PushOutcome::Stored`] with its sequence number or
    /// [`PushOutcome::Duplicate`] with the sequence number of the first copy.
    ///
    /// `items` are `(dedup key, value)` pairs. The dedup key is recorded in map `dedup_table`
    /// (value: the sequence number, 8 bytes big endian, see [`decode_dedup_value`]) in the same
    /// transaction as the append, so the two can never disagree: after a crash at any moment
    /// either both the entry and its key are there or neither is, and a retransmission of an
    /// acknowledged message is recognised as a duplicate instead of being stored twice. Of two
    /// items of one batch with the same key the first is stored and the second is a duplicate
    /// of it.
    ///
    /// Dedup keys are *not* removed with queue entries (a retransmission arriving after the
    /// first copy was delivered and removed must still be recognised): the caller forgets them
    /// once its retransmission window has passed, by sequence number with
    /// [`WriteOp::DedupForgetBelow`] (or one by one with [`Store::remove`]). A dedup table
    /// belongs to one queue. A batch in which every item is a duplicate writes nothing and costs
    /// no fsync.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; [`Error::QueueExhausted`] if the queue
    /// runs out of sequence numbers; [`Error::CorruptRecord`] if `dedup_table` holds a value that
    /// is not a sequence number; a backend error if the batch could not be made durable, in which
    /// case none of it may be assumed stored (nor assumed absent). On any error the whole batch is
    /// rolled back.
    fn queue_push_unique(
        &self,
        table: &str,
        dedup_table: &str,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<PushOutcome>>;

    /// Applies every write of `ops`, in order, atomically: after a crash either all of them
    /// happened or none did. One transaction and one fsync for the whole batch.
    ///
    /// An empty batch writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name in any op (checked before anything is
    /// written); a backend error if the batch could not be made durable (it may or may not have
    /// happened, but never in part).
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<()>;

    /// The number of entries and bytes queue `table` holds, its oldest sequence number and
    /// the next one; all zero for a queue never written.
    ///
    /// The byte total is kept by every write in the same transaction as the change itself, so
    /// it is exact after a crash and costs no scan (a queue written by an older version of this
    /// crate is counted once).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTableName`] for a bad table name; a backend error if the read failed.
    fn queue_stats(&self, table: &str) -> Result<QueueStats>;
}

/// Forwards every method to the referenced store, so that generic code can take a `&S`, an
/// `Arc<S>`, a `Box<dyn Store>` or an `Arc<dyn Store>` alike.
macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: Store + ?Sized> Store for $ty {
            fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
                (**self).put(table, key, value)
            }
            fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
                (**self).get(table, key)
            }
            fn remove(&self, table: &str, key: &[u8]) -> Result<bool> {
                (**self).remove(table, key)
            }
            fn insert_if_absent(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool> {
                (**self).insert_if_absent(table, key, value)
            }
            fn scan(&self, table: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
                (**self).scan(table)
            }
            fn queue_push(&self, table: &str, value: &[u8]) -> Result<u64> {
                (**self).queue_push(table, value)
            }
            fn queue_range(
                &self,
                table: &str,
                from_seq: u64,
                max: usize,
            ) -> Result<Vec<(u64, Vec<u8>)>> {
                (**self).queue_range(table, from_seq, max)
            }
            fn queue_remove(&self, table: &str, seq: u64) -> Result<bool> {
                (**self).queue_remove(table, seq)
            }
            fn queue_push_unique(
                &self,
                table: &str,
                dedup_table: &str,
                items: &[(&[u8], &[u8])],
            ) -> Result<Vec<PushOutcome>> {
                (**self).queue_push_unique(table, dedup_table, items)
            }
            fn write_batch(&self, ops: &[WriteOp<'_>]) -> Result<()> {
                (**self).write_batch(ops)
            }
            fn queue_stats(&self, table: &str) -> Result<QueueStats> {
                (**self).queue_stats(table)
            }
        }
    )*};
}

forward_store!(&S, Box<S>, Arc<S>);
