//! What the proxy keeps in its store, and how it reads it back after a restart.
//!
//! | table                    | key                  | value                                   |
//! |--------------------------|----------------------|-----------------------------------------|
//! | `relay-proxy.meta`       | `next-storage`, `next-forward` | u32 BE: ids are never reused  |
//! | `relay-proxy.storages`   | storage id (u32 BE)  | JSON [`StorageRecord`]                  |
//! | `relay-proxy.counters`   | storage id (u32 BE)  | JSON [`StorageCounters`]                |
//! | `relay-proxy.forwards`   | forward id (u32 BE)  | JSON [`ForwardRecord`]                  |
//! | `relay-proxy.cursors`    | forward id ‖ sink URL| binary [`CursorRecord`]                 |
//! | `relay-proxy.signed`     | SHA-256(signature)   | u64 BE: until when it is remembered (ms)|
//! | `relay-proxy.q.{id}`     | queue                | the stored messages (binary header form)|
//! | `relay-proxy.d.{id}`     | dedup key            | the queue's dedup map (store-managed)   |
//!
//! The messages and their dedup keys are written by `Store::queue_push_unique` in one
//! transaction, so the store itself guarantees that an acknowledged message is there exactly
//! once; everything else here is metadata written when it changes.

use serde::{Deserialize, Serialize};

use m2msec_store::{QueueStats, Result, Store};

/// Ids handed out so far.
pub const META_TABLE: &str = "relay-proxy.meta";
/// Storage records.
pub const STORAGES_TABLE: &str = "relay-proxy.storages";
/// Storage counters (written at housekeeping: may lag a crash by a moment).
pub const COUNTERS_TABLE: &str = "relay-proxy.counters";
/// Forward records.
pub const FORWARDS_TABLE: &str = "relay-proxy.forwards";
/// Forwarding positions.
pub const CURSORS_TABLE: &str = "relay-proxy.cursors";
/// Owner signatures already accepted (replay cache).
pub const SIGNED_TABLE: &str = "relay-proxy.signed";

/// Key of the next storage id in [`META_TABLE`].
pub const NEXT_STORAGE: &[u8] = b"next-storage";
/// Key of the next forward id in [`META_TABLE`].
pub const NEXT_FORWARD: &[u8] = b"next-forward";

/// The queue of storage `id`.
pub fn queue_table(id: u32) -> String {
    format!("relay-proxy.q.{id}")
}

/// The dedup map of storage `id`.
pub fn dedup_table(id: u32) -> String {
    format!("relay-proxy.d.{id}")
}

/// A storage, as created by `POST /store`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageRecord {
    /// Its id.
    pub id: u32,
    /// The owner's verifying key, `sig::VerifyingKey::to_bytes` form, hex.
    pub owner_key: String,
    /// The source URL.
    pub source: String,
    /// Bytes it may hold.
    pub capacity: u64,
    /// Whether it takes plain-UDP datagrams.
    pub udp: bool,
    /// The port last bound for them (kept across restarts when the port is still free).
    pub udp_port: Option<u16>,
}

/// A storage's counters since creation, and where each stream's current section starts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageCounters {
    /// Messages received (stored or duplicate).
    pub received: u64,
    /// Retransmitted copies recognised.
    pub duplicates: u64,
    /// Messages refused because something was full.
    pub rejected_full: u64,
    /// Per stream id, the sequence number of its newest management message: where a sink added
    /// with `Start::Now` begins, so it receives the section in progress rather than waiting
    /// for the next one (a data message is useless to a sink without its section's key).
    #[serde(default)]
    pub sections: std::collections::BTreeMap<u16, u64>,
}

/// One epoch's re-encryption key, as granted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RekeyRecord {
    /// The epoch.
    pub epoch: u32,
    /// `pre::ReKey::to_bytes`, hex.
    pub rekey: String,
}

/// A sink of a forward.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkRecord {
    /// Its URL.
    pub url: String,
    /// Its grant.
    pub rekeys: Vec<RekeyRecord>,
    /// Where it started (its cursor until one is written).
    pub start: u64,
}

/// A forward, as created by `POST /forward` and changed by its control resource.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForwardRecord {
    /// Its id.
    pub id: u32,
    /// The storage it forwards from.
    pub storage_id: u32,
    /// Messages per second per sink, 0 = unlimited.
    pub rate: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// Its sinks.
    pub sinks: Vec<SinkRecord>,
}

/// One sink's position: the next sequence number to deliver, its counters, and the sections its
/// forwarder re-encrypted (`Forwarder::snapshot`), so that a restart keeps passing their data.
///
/// Binary: version (1) ‖ cursor ‖ delivered ‖ reencrypted ‖ skipped (u64 BE each) ‖ snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CursorRecord {
    /// The next sequence number to deliver.
    pub cursor: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Management messages re-encrypted for the sink.
    pub reencrypted: u64,
    /// Messages passed over (outside the sink's epochs).
    pub skipped: u64,
    /// `Forwarder::snapshot`.
    pub snapshot: Vec<u8>,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_FIXED: usize = 1 + 4 * 8;

impl CursorRecord {
    /// The binary form above.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CURSOR_FIXED + self.snapshot.len());
        out.push(CURSOR_VERSION);
        for v in [self.cursor, self.delivered, self.reencrypted, self.skipped] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.snapshot);
        out
    }

    /// Parses the binary form; `None` for another version or a short record.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != CURSOR_VERSION || bytes.len() < CURSOR_FIXED {
            return None;
        }
        let word = |i: usize| -> Option<u64> {
            let b: [u8; 8] = rest.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_be_bytes(b))
        };
        Some(Self {
            cursor: word(0)?,
            delivered: word(1)?,
            reencrypted: word(2)?,
            skipped: word(3)?,
            snapshot: rest.get(32..)?.to_vec(),
        })
    }
}

/// The key of a sink's cursor.
pub fn cursor_key(forward_id: u32, url: &str) -> Vec<u8> {
    let mut k = forward_id.to_be_bytes().to_vec();
    k.extend_from_slice(url.as_bytes());
    k
}

/// Decodes lower-case or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = core::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Hex, for records.
pub use m2msec_wire::cbor::hex as to_hex;

/// A u32 id as a store key.
pub fn id_key(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The next storage id to hand out.
    pub next_storage: u32,
    /// The next forward id to hand out.
    pub next_forward: u32,
    /// Storages, their counters, and what their queues hold.
    pub storages: Vec<(StorageRecord, StorageCounters, QueueStats)>,
    /// Forwards.
    pub forwards: Vec<ForwardRecord>,
    /// (forward id, sink URL) → its position.
    pub cursors: Vec<((u32, String), CursorRecord)>,
    /// (table, key) of the records that did not decode, for the shell to log.
    pub skipped: Vec<(&'static str, Vec<u8>)>,
}

/// Reads the proxy's records, and what each storage's queue holds. A record that does not
/// decode is skipped and listed in [`Loaded::skipped`] (it can only come from a damaged or
/// foreign file), so one bad entry does not keep the proxy down.
///
/// # Errors
///
/// The store's, if it cannot be read.
pub fn load(store: &dyn Store) -> Result<Loaded> {
    let mut loaded = Loaded {
        next_storage: read_u32(store, NEXT_STORAGE)?.unwrap_or(1),
        next_forward: read_u32(store, NEXT_FORWARD)?.unwrap_or(1),
        ..Loaded::default()
    };
    let counters: Vec<(Vec<u8>, Vec<u8>)> = store.scan(COUNTERS_TABLE)?;
    for (key, value) in store.scan(STORAGES_TABLE)? {
        match serde_json::from_slice::<StorageRecord>(&value) {
            Ok(record) if key == id_key(record.id) => {
                let c = counters
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, v)| serde_json::from_slice(v).ok())
                    .unwrap_or_default();
                loaded.next_storage = loaded.next_storage.max(record.id.saturating_add(1));
                let stats = store.queue_stats(&queue_table(record.id))?;
                loaded.storages.push((record, c, stats));
            }
            _ => loaded.skipped.push((STORAGES_TABLE, key)),
        }
    }
    for (key, value) in store.scan(FORWARDS_TABLE)? {
        match serde_json::from_slice::<ForwardRecord>(&value) {
            Ok(record) if key == id_key(record.id) => {
                loaded.next_forward = loaded.next_forward.max(record.id.saturating_add(1));
                loaded.forwards.push(record);
            }
            _ => loaded.skipped.push((FORWARDS_TABLE, key)),
        }
    }
    for (key, value) in store.scan(CURSORS_TABLE)? {
        let parsed = key.split_first_chunk::<4>().and_then(|(id, url)| {
            Some((
                u32::from_be_bytes(*id),
                String::from_utf8(url.to_vec()).ok()?,
            ))
        });
        match (parsed, CursorRecord::from_bytes(&value)) {
            (Some(k), Some(c)) => loaded.cursors.push((k, c)),
            _ => loaded.skipped.push((CURSORS_TABLE, key)),
        }
    }
    Ok(loaded)
}

fn read_u32(store: &dyn Store, key: &[u8]) -> Result<Option<u32>> {
    Ok(store
        .get(META_TABLE, key)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map(u32::from_be_bytes))
}

/// JSON of a record (the types above serialise infallibly: strings, numbers, lists).
///
/// # Errors
///
/// `serde_json`'s, which these types never produce.
pub fn json<T: Serialize>(record: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;
    use m2msec_store::MemoryStore;

    #[test]
    fn cursor_round_trip_and_refusals() {
        let c = CursorRecord {
            cursor: 7,
            delivered: 5,
            reencrypted: 1,
            skipped: 2,
            snapshot: vec![1, 2, 3],
        };
        assert_eq!(CursorRecord::from_bytes(&c.to_bytes()), Some(c.clone()));
        let bytes = c.to_bytes();
        for n in 0..CURSOR_FIXED {
            assert_eq!(CursorRecord::from_bytes(&bytes[..n]), None);
        }
        let mut other = bytes;
        other[0] = 2;
        assert_eq!(CursorRecord::from_bytes(&other), None);
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&to_hex(&[0, 0xab, 0xff])), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("ABff"), Some(vec![0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn load_skips_damaged_records() {
        let store = MemoryStore::new();
        let s = StorageRecord {
            id: 3,
            owner_key: "00".into(),
            source: "coap://127.0.0.1/s".into(),
            capacity: 10,
            udp: false,
            udp_port: None,
        };
        store
            .put(STORAGES_TABLE, &id_key(3), &json(&s).unwrap())
            .unwrap();
        store.put(STORAGES_TABLE, &id_key(4), b"{not json").unwrap();
        // A record filed under another id than its own is refused too.
        store
            .put(STORAGES_TABLE, &id_key(5), &json(&s).unwrap())
            .unwrap();
        store
            .put(
                CURSORS_TABLE,
                &cursor_key(1, "udp://127.0.0.1:9"),
                &CursorRecord::default().to_bytes(),
            )
            .unwrap();
        store.put(CURSORS_TABLE, b"x", b"y").unwrap();
        let loaded = load(&store).unwrap();
        assert_eq!(loaded.storages.len(), 1);
        assert_eq!(
            loaded.storages[0].2,
            QueueStats::default(),
            "an empty queue"
        );
        assert_eq!(loaded.next_storage, 4);
        assert_eq!(loaded.next_forward, 1);
        assert_eq!(loaded.cursors.len(), 1);
        assert_eq!(loaded.cursors[0].0, (1, "udp://127.0.0.1:9".to_owned()));
        assert_eq!(
            loaded.skipped,
            vec![
                (STORAGES_TABLE, id_key(4).to_vec()),
                (STORAGES_TABLE, id_key(5).to_vec()),
                (CURSORS_TABLE, b"x".to_vec()),
            ]
        );
    }
}
