//! What the collab daemons keep in their stores, without I/O: the server's used one-time keys
//! ([`USED_OTS_TABLE`]) and the client's trust in each proxy ([`TRUST_TABLE`]). The shell
//! writes each record before it sends what depends on it, and logs what these functions
//! return.

use m2msec_store::{Result, Store};

use super::{Error, TrustRecord};
use crate::Millis;

/// Store table of the one-time key ids the server has accepted (key: the 32-byte id, value:
/// when, ms big endian), so that after a restart a second signature with the same one-time key
/// is still rejected.
pub const USED_OTS_TABLE: &str = "collab-used-ots";
/// Store table of the client's trust records (key: proxy name, value:
/// [`TrustRecord::to_bytes`]), so that proxy selection survives restarts.
pub const TRUST_TABLE: &str = "collab-trust";

/// The trust records of a store, and the entries that did not decode.
#[derive(Debug, Default)]
pub struct LoadedTrust {
    /// The records that decoded.
    pub records: Vec<TrustRecord>,
    /// The proxy name (lossy UTF-8) of each entry skipped (a newer format, a damaged entry),
    /// and why: that proxy starts from neutral trust.
    pub skipped: Vec<(String, Error)>,
}

/// The trust records kept in `store`.
///
/// # Errors
///
/// The store cannot be read; an entry that does not decode is [`LoadedTrust::skipped`].
pub fn load_trust(store: &dyn Store) -> Result<LoadedTrust> {
    let mut loaded = LoadedTrust::default();
    for (key, value) in store.scan(TRUST_TABLE)? {
        match TrustRecord::from_bytes(&value) {
            Ok(r) => loaded.records.push(r),
            Err(e) => loaded
                .skipped
                .push((String::from_utf8_lossy(&key).into_owned(), e)),
        }
    }
    Ok(loaded)
}

/// Writes the client's trust in `record.proxy`, replacing what the store held.
///
/// # Errors
///
/// The store cannot be written.
pub fn save_trust(store: &dyn Store, record: &TrustRecord) -> Result<()> {
    store.put(TRUST_TABLE, record.proxy.as_bytes(), &record.to_bytes())
}

/// The one-time key ids recorded in `store` (entries whose key is not 32 bytes are ignored).
///
/// # Errors
///
/// The store cannot be read.
pub fn load_used_one_time_keys(store: &dyn Store) -> Result<Vec<[u8; 32]>> {
    Ok(store
        .scan(USED_OTS_TABLE)?
        .into_iter()
        .filter_map(|(k, _)| <[u8; 32]>::try_from(k.as_slice()).ok())
        .collect())
}

/// Records that the server accepted one-time key `id` at `now`; `false` if it was already
/// recorded (the first record is kept).
///
/// # Errors
///
/// The store cannot be written.
pub fn record_one_time_key(store: &dyn Store, id: &[u8; 32], now: Millis) -> Result<bool> {
    store.insert_if_absent(USED_OTS_TABLE, id, &now.0.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use m2msec_store::MemoryStore;

    use super::*;

    fn record(proxy: &str, successes: u32) -> TrustRecord {
        TrustRecord {
            proxy: proxy.into(),
            successes,
            failures: 1,
            score: 0.25,
            last_seen: Millis(7),
            capability: 2,
        }
    }

    #[test]
    fn trust_round_trips_and_damaged_entries_are_skipped() {
        let store = MemoryStore::new();
        save_trust(&store, &record("p1", 3)).unwrap_or_else(|e| panic!("{e}"));
        save_trust(&store, &record("p1", 4)).unwrap_or_else(|e| panic!("{e}"));
        save_trust(&store, &record("p2", 1)).unwrap_or_else(|e| panic!("{e}"));
        store
            .put(TRUST_TABLE, b"p3", b"\xff")
            .unwrap_or_else(|e| panic!("{e}"));
        let loaded = load_trust(&store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.records, vec![record("p1", 4), record("p2", 1)]);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].0, "p3");
    }

    #[test]
    fn a_one_time_key_is_recorded_once() {
        let store = MemoryStore::new();
        assert!(record_one_time_key(&store, &[1; 32], Millis(5)).unwrap_or_else(|e| panic!("{e}")));
        assert!(
            !record_one_time_key(&store, &[1; 32], Millis(6)).unwrap_or_else(|e| panic!("{e}"))
        );
        store
            .put(USED_OTS_TABLE, b"short", b"")
            .unwrap_or_else(|e| panic!("{e}"));
        let used = load_used_one_time_keys(&store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(used, vec![[1; 32]]);
        let stored = store
            .get(USED_OTS_TABLE, &[1; 32])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored, Some(5u64.to_be_bytes().to_vec()));
    }
}
