//! What the proxy writes besides messages, and when it may forget: dedup keys, owned store
//! writes, and the housekeeping round's decisions (positions, counters, retention, dedup pruning).
//!
//! **Retention.** A message is removed once every sink of every forward of its storage has
//! passed it ([`Core::retention_watermark`]); a storage without a forward, or with a forward
//! without sinks, keeps everything until it is full or deleted (paper 004 §IV: the proxy stores
//! until a sink is known).
//!
//! **Dedup grace.** Dedup keys outlive their message by `dedup_grace` so that a retransmission
//! arriving after delivery (the source missed the 2.04 and the proxy meanwhile forwarded and
//! removed the message) is still acknowledged instead of stored again (RFC 7252 §4.5: a CoAP
//! retransmission may come after the exchange ended for the server).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use m2msec_store::{QueueStats, Store, WriteOp};
use m2msec_wire::relay::{Flags, Header};

use super::records::{
    self, COUNTERS_TABLE, CURSORS_TABLE, cursor_key, dedup_table, id_key, queue_table,
};
use super::state::{Core, Handles, MonitorId};
use crate::Millis;

/// Dedup checkpoints closer together than this are merged (bounds their number).
pub const CHECKPOINT_SPACING: Duration = Duration::from_secs(1);
/// How often the replay cache of signed requests is pruned ([`expired_signed`]).
pub const SIGNED_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// An owned store write, for a shell to apply in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `WriteOp::Put`.
    Put(&'static str, Vec<u8>, Vec<u8>),
    /// `WriteOp::Remove`.
    Remove(&'static str, Vec<u8>),
    /// `WriteOp::QueueRemoveBelow`.
    QueueRemoveBelow(String, u64),
    /// `WriteOp::DedupForgetBelow`.
    DedupForgetBelow(String, u64),
}

impl Op {
    /// The borrowed form the store takes.
    #[must_use]
    pub fn as_write_op(&self) -> WriteOp<'_> {
        match self {
            Self::Put(table, key, value) => WriteOp::Put { table, key, value },
            Self::Remove(table, key) => WriteOp::Remove { table, key },
            Self::QueueRemoveBelow(table, seq) => WriteOp::QueueRemoveBelow { table, seq: *seq },
            Self::DedupForgetBelow(table, seq) => WriteOp::DedupForgetBelow {
                dedup_table: table,
                seq: *seq,
            },
        }
    }
}

/// Applies `ops` in one transaction.
///
/// # Errors
///
/// The store's.
pub fn apply(store: &dyn Store, ops: &[Op]) -> m2msec_store::Result<()> {
    let ops: Vec<WriteOp<'_>> = ops.iter().map(Op::as_write_op).collect();
    store.write_batch(&ops)
}

/// The removals of the entries of the replay cache of signed requests
/// ([`records::SIGNED_TABLE`], each valued until when it is kept, ms since the epoch, u64 BE)
/// that expired before `now_ms`.
///
/// # Errors
///
/// The store's.
pub fn expired_signed(store: &dyn Store, now_ms: u64) -> m2msec_store::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (key, value) in store.scan(records::SIGNED_TABLE)? {
        let until = <[u8; 8]>::try_from(value.as_slice()).map_or(0, u64::from_be_bytes);
        if until < now_ms {
            ops.push(Op::Remove(records::SIGNED_TABLE, key));
        }
    }
    Ok(ops)
}

/// The dedup key of a message: its flags without REENCRYPTED and header bytes 2..10 — message
/// id, stream id and key index of a stream message, the 64-bit random id of an individual one
/// (paper 004 §III-D, the header). Scoped to one storage (one dedup table each), whose messages
/// all come from its source.
#[must_use]
pub fn dedup_key(header: &Header) -> [u8; 9] {
    let flags = header.flags.without(Flags::REENCRYPTED).bits();
    let [m0, m1, m2, m3] = header.message_id.to_be_bytes();
    let [s0, s1] = header.stream_id.to_be_bytes();
    let [k0, k1] = header.key_index.to_be_bytes();
    [flags, m0, m1, m2, m3, s0, s1, k0, k1]
}

/// The stream id of a management message, from its dedup key (flags, message id, stream id,
/// key index); `None` for other messages.
#[must_use]
pub fn management_stream(key: &[u8; 9]) -> Option<u16> {
    let management = Flags::STREAM.with(Flags::MANAGEMENT).bits();
    (key[0] & management == management).then(|| u16::from_be_bytes([key[5], key[6]]))
}

/// Per storage: (when, queue position) of removals, to forget dedup keys a grace period later;
/// and when the replay cache of signed requests was last pruned. Times are a monotonic
/// [`Millis`].
#[derive(Debug, Default)]
pub struct Checkpoints(HashMap<u32, VecDeque<(Millis, u64)>>, Millis);

impl Checkpoints {
    /// Records that storage `id` removed its messages below `below` at `now`.
    pub fn push(&mut self, id: u32, now: Millis, below: u64) {
        let q = self.0.entry(id).or_default();
        if let Some(last) = q.back_mut()
            && elapsed(last.0, now) < CHECKPOINT_SPACING
        {
            // Merging moves the time forward too: a key is kept at least the grace period.
            *last = (now, last.1.max(below));
            return;
        }
        q.push_back((now, below));
    }

    /// The highest position whose removal is older than `grace`, per storage.
    pub fn matured(&mut self, now: Millis, grace: Duration) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for (id, q) in &mut self.0 {
            let mut below = None;
            while let Some(&(t, seq)) = q.front() {
                if elapsed(t, now) < grace {
                    break;
                }
                below = Some(seq);
                q.pop_front();
            }
            if let Some(seq) = below {
                out.push((*id, seq));
            }
        }
        self.0.retain(|_, q| !q.is_empty());
        out
    }

    /// Whether nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn elapsed(from: Millis, to: Millis) -> Duration {
    Duration::from_millis(to.0.saturating_sub(from.0))
}

/// One housekeeping round's writes: what a shell commits in one `write_batch`.
#[derive(Debug, Default)]
pub struct Housekeeping {
    /// The writes, in order.
    pub ops: Vec<Op>,
    /// Storages whose queue shrank: their `QueueStats` are read back after the commit.
    pub emptied: Vec<u32>,
    /// The shell adds the removal of the expired signed requests ([`expired_signed`]): the
    /// last pruning is [`SIGNED_PRUNE_INTERVAL`] ago.
    pub prune_signed: bool,
}

impl<H: Handles> Core<H> {
    /// Takes what housekeeping must write at `now` (monotonic): the sinks' positions that moved,
    /// the storages' counters that changed, the removal of every message all sinks have passed
    /// (recorded in `checkpoints`), and the dedup keys whose grace period is over. Clears the
    /// dirty marks it wrote; a shell whose commit fails stops (nothing acknowledged depends on
    /// it), so they need not be set back.
    ///
    /// # Errors
    ///
    /// `serde_json`'s for the counters, which it never produces.
    pub fn housekeeping(
        &mut self,
        now: Millis,
        checkpoints: &mut Checkpoints,
        dedup_grace: Duration,
    ) -> serde_json::Result<Housekeeping> {
        let mut out = Housekeeping::default();
        for (fid, f) in &mut self.forwards {
            for (url, sink) in &mut f.sinks {
                if sink.dirty {
                    sink.dirty = false;
                    out.ops.push(Op::Put(
                        CURSORS_TABLE,
                        cursor_key(*fid, url),
                        sink.pos.to_bytes(),
                    ));
                }
            }
        }
        let ids: Vec<u32> = self.storages.keys().copied().collect();
        for id in ids {
            let watermark = self.retention_watermark(id);
            let Some(s) = self.storages.get_mut(&id) else {
                continue;
            };
            if s.counters_dirty {
                s.counters_dirty = false;
                out.ops.push(Op::Put(
                    COUNTERS_TABLE,
                    id_key(id).to_vec(),
                    records::json(&s.counters)?,
                ));
            }
            if let (Some(w), Some(first)) = (watermark, s.stats.first_seq)
                && first < w
            {
                out.ops.push(Op::QueueRemoveBelow(queue_table(id), w));
                checkpoints.push(id, now, w);
                out.emptied.push(id);
            }
        }
        for (id, below) in checkpoints.matured(now, dedup_grace) {
            out.ops.push(Op::DedupForgetBelow(dedup_table(id), below));
        }
        out.prune_signed = elapsed(checkpoints.1, now) >= SIGNED_PRUNE_INTERVAL;
        if out.prune_signed {
            checkpoints.1 = now;
        }
        Ok(out)
    }

    /// What the queues a housekeeping round shrank hold after its commit
    /// ([`Housekeeping::emptied`], read back by the shell); their monitors changed.
    pub fn refreshed(&mut self, stats: Vec<(u32, QueueStats)>) {
        for (id, st) in stats {
            if let Some(s) = self.storages.get_mut(&id) {
                s.stats = st;
                self.dirty.insert(MonitorId::Storage(id));
            }
        }
    }

    /// Checkpoints for a proxy starting at `now`: whatever is below a queue's first entry was
    /// removed at some unknown time, so its dedup keys are kept one more grace period.
    #[must_use]
    pub fn startup_checkpoints(&self, now: Millis) -> Checkpoints {
        let mut c = Checkpoints(HashMap::new(), now);
        for (id, s) in &self.storages {
            c.push(*id, now, s.stats.first_seq.unwrap_or(s.stats.next_seq));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use m2msec_wire::relay::{Flags, Header};

    use super::*;

    /// An entry of the signed-request replay cache goes once its time has passed; a value that
    /// is not 8 bytes (not what the proxy writes) counts as expired rather than kept forever.
    #[test]
    fn expired_signed_requests_are_removed() -> m2msec_store::Result<()> {
        let store = m2msec_store::MemoryStore::new();
        store.put(records::SIGNED_TABLE, b"old", &999u64.to_be_bytes())?;
        store.put(records::SIGNED_TABLE, b"live", &1000u64.to_be_bytes())?;
        store.put(records::SIGNED_TABLE, b"bad", &[1, 2, 3])?;
        let mut removed: Vec<Vec<u8>> = expired_signed(&store, 1000)?
            .into_iter()
            .filter_map(|op| match op {
                Op::Remove(_, key) => Some(key),
                _ => None,
            })
            .collect();
        removed.sort();
        assert_eq!(removed, [b"bad".to_vec(), b"old".to_vec()]);
        Ok(())
    }

    #[test]
    fn dedup_keys_ignore_reencryption_and_the_sink() {
        let h = Header {
            flags: Flags::STREAM.with(Flags::MANAGEMENT),
            message_id: 0x0102_0304,
            stream_id: 5,
            key_index: 6,
            source: "coap://127.0.0.1/s".into(),
            sink: String::new(),
        };
        let mut again = h.clone();
        again.flags = again.flags.with(Flags::REENCRYPTED);
        again.sink = "udp://127.0.0.1:9".into();
        assert_eq!(dedup_key(&h), dedup_key(&again));
        assert_eq!(dedup_key(&h), [3, 1, 2, 3, 4, 0, 5, 0, 6]);
        assert_eq!(management_stream(&dedup_key(&h)), Some(5));
        let mut data = h;
        data.flags = Flags::STREAM;
        assert_ne!(dedup_key(&data), dedup_key(&again));
        assert_eq!(management_stream(&dedup_key(&data)), None);
    }

    #[test]
    fn signed_requests_are_pruned_once_a_minute() {
        let core: Core = Core::new(100, 60, 0);
        let start = Millis(5_000);
        let mut c = core.startup_checkpoints(start);
        let mut round = |ms: u64| {
            let mut core: Core = Core::new(100, 60, 0);
            let round = core.housekeeping(Millis(start.0 + ms), &mut c, Duration::from_secs(300));
            matches!(round, Ok(h) if h.prune_signed)
        };
        assert!(!round(100), "not at startup");
        assert!(!round(59_999));
        assert!(round(60_000));
        assert!(!round(60_100), "the interval starts again");
        assert!(round(120_000));
    }

    #[test]
    fn checkpoints_mature_after_the_grace() {
        let t = Millis(1_000_000);
        let s = |n: u64| Millis(t.0 + n * 1000);
        let mut c = Checkpoints::default();
        c.push(1, t, 10);
        c.push(1, Millis(t.0 + 10), 12); // merged
        c.push(1, s(5), 20);
        assert!(c.matured(s(3), Duration::from_secs(5)).is_empty());
        assert_eq!(c.matured(s(6), Duration::from_secs(5)), vec![(1, 12)]);
        assert_eq!(c.matured(s(11), Duration::from_secs(5)), vec![(1, 20)]);
        assert!(c.0.is_empty());
        assert!(c.is_empty());
    }
}
