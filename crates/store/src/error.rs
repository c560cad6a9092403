//! The crate's one error type.

use std::path::PathBuf;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// Grouped by whose fault it is: the caller (a bad table name), the environment (the database
/// file cannot be created, is exposed to other users, or is held by another process), or the backend (I/O or corruption
/// while reading or committing). After a backend error on a write, the write may or may not
/// have happened; callers enforcing single use must assume it did.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table name broke the naming rules (local misuse, never input from the network).
    #[error("invalid table name {name:?}: {reason}")]
    InvalidTableName {
        /// The rejected name (possibly truncated for display).
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// The database file cannot be created owner-only, or exists and group or others may
    /// access it (the error names the file and the `chmod` that fixes it).
    #[error(transparent)]
    Private(#[from] crate::private::PrivateError),

    /// The database file is already open, in this process or another one.
    ///
    /// Two daemons sharing one file would defeat single-use checks, so this is refused rather
    /// than waited for.
    #[error("database {} is already open by another store", path.display())]
    AlreadyOpen {
        /// The database file.
        path: PathBuf,
    },

    /// The database file could not be opened (not a database, newer or older format, I/O).
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A backend operation failed (I/O error, corruption, commit failure).
    #[error("store backend failed during {operation}: {source}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// The backend's error; boxed so that the public type does not depend on one backend.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A record the store itself maintains has an impossible value (a dedup entry that is not a
    /// sequence number): the table was written by something else.
    #[error("table {table:?}: {reason}")]
    CorruptRecord {
        /// The table.
        table: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// A queue has handed out every sequence number a `u64` can hold.
    #[error("queue {table:?} has no sequence numbers left")]
    QueueExhausted {
        /// The queue.
        table: String,
    },
}
