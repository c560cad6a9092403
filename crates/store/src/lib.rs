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
//!   and the SGA server's store-and-forward paths.
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
mod redb_store;
mod table;

use std::sync::Arc;

pub use error::{Error, Result};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;
pub use table::{MAX_TABLE_NAME_LEN, validate_table_name};

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
        }
    )*};
}

forward_store!(&S, Box<S>, Arc<S>);
