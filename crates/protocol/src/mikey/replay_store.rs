//! The replay cache the responder and every third party keep in their stores, without I/O
//! (table [`REPLAY_TABLE`]): each message they accept is recorded before the answer that
//! depends on it leaves, until the timestamp window alone refuses it (RFC 3830 §5.4). Loading
//! the cache deletes the entries already out of the window, so a restarted responder still
//! refuses a replayed I_MESSAGE while the store does not grow without bound.

use m2msec_store::{Result, Store};

use crate::Millis;

/// Store table of a replay cache (key: the 32-byte message digest, value: the 8-byte big-endian
/// time in UNIX milliseconds after which the timestamp window alone refuses it).
pub const REPLAY_TABLE: &str = "mikey-replay";

/// A replay cache as the roles take it: digests and when each may be forgotten.
pub type ReplayEntries = Vec<([u8; 32], Millis)>;

/// What [`load_replay_cache`] kept and deleted.
#[derive(Debug, Default)]
pub struct LoadedReplays {
    /// The entries still in their window.
    pub kept: ReplayEntries,
    /// How many entries had expired (deleted).
    pub expired: usize,
    /// The keys of the entries that did not decode (deleted).
    pub malformed: Vec<Vec<u8>>,
}

/// The replay cache kept in `store` as of `now`; the entries that expired by `now` and those
/// that do not decode are deleted from the store.
///
/// # Errors
///
/// The store cannot be read or written.
pub fn load_replay_cache(store: &dyn Store, now: Millis) -> Result<LoadedReplays> {
    let mut loaded = LoadedReplays::default();
    for (key, value) in store.scan(REPLAY_TABLE)? {
        let entry = <[u8; 32]>::try_from(key.as_slice())
            .ok()
            .zip(<[u8; 8]>::try_from(value.as_slice()).ok());
        match entry {
            Some((digest, until)) if Millis(u64::from_be_bytes(until)) > now => {
                loaded
                    .kept
                    .push((digest, Millis(u64::from_be_bytes(until))));
                continue;
            }
            Some(_) => loaded.expired += 1,
            None => loaded.malformed.push(key.clone()),
        }
        store.remove(REPLAY_TABLE, &key)?;
    }
    Ok(loaded)
}

/// Records one replay-cache entry: `digest` is refused until `until`.
///
/// # Errors
///
/// The store cannot be written; nothing that depends on the entry may be sent.
pub fn record_replay(store: &dyn Store, digest: &[u8; 32], until: Millis) -> Result<()> {
    store.put(REPLAY_TABLE, digest, &until.0.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use m2msec_store::MemoryStore;

    use super::*;

    #[test]
    fn loading_keeps_live_entries_and_deletes_the_rest() {
        let store = MemoryStore::new();
        record_replay(&store, &[1; 32], Millis(1_000)).unwrap_or_else(|e| panic!("{e}"));
        record_replay(&store, &[2; 32], Millis(3_000)).unwrap_or_else(|e| panic!("{e}"));
        store
            .put(REPLAY_TABLE, b"short", b"x")
            .unwrap_or_else(|e| panic!("{e}"));
        let loaded = load_replay_cache(&store, Millis(2_000)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.kept, vec![([2; 32], Millis(3_000))]);
        assert_eq!(loaded.expired, 1);
        assert_eq!(loaded.malformed, vec![b"short".to_vec()]);
        let left = store.scan(REPLAY_TABLE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            left,
            vec![([2; 32].to_vec(), 3_000u64.to_be_bytes().to_vec())]
        );
    }
}
