//! The behaviour every `Store` backend must have, written once and run against each.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)] // tests: a failed unwrap is a failed test

use std::sync::{Arc, Barrier};
use std::thread;

use m2msec_store::{Error, PushOutcome, QueueStats, Store, WriteOp};

/// Runs the whole conformance suite against a fresh, empty store.
pub fn conformance<S: Store>(store: &S) {
    maps(store);
    insert_if_absent(store);
    tables_are_independent(store);
    scan_is_in_key_order(store);
    queues(store);
    push_unique(store);
    write_batch(store);
    queue_stats_and_pruning(store);
    table_names_are_checked(store);
    works_through_dyn(store);
}

fn maps<S: Store>(s: &S) {
    assert_eq!(s.get("m", b"k").unwrap(), None);
    s.put("m", b"k", b"v1").unwrap();
    assert_eq!(s.get("m", b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    s.put("m", b"k", b"v2").unwrap();
    assert_eq!(s.get("m", b"k").unwrap().as_deref(), Some(&b"v2"[..]));
    // Empty keys and values are ordinary values, distinct from "absent".
    s.put("m", b"", b"").unwrap();
    assert_eq!(s.get("m", b"").unwrap(), Some(Vec::new()));
    assert!(s.remove("m", b"k").unwrap());
    assert!(!s.remove("m", b"k").unwrap());
    assert_eq!(s.get("m", b"k").unwrap(), None);
    assert!(s.remove("m", b"").unwrap());
    // Removing from a table never written is not an error.
    assert!(!s.remove("never-written", b"k").unwrap());
    assert_eq!(s.scan("never-written").unwrap(), Vec::new());
    // Large values round-trip.
    let big = vec![0xA5; 1 << 20];
    s.put("m", b"big", &big).unwrap();
    assert_eq!(s.get("m", b"big").unwrap(), Some(big));
    assert!(s.remove("m", b"big").unwrap());
}

fn insert_if_absent<S: Store>(s: &S) {
    assert!(s.insert_if_absent("otk", b"key-7", b"first").unwrap());
    assert!(!s.insert_if_absent("otk", b"key-7", b"second").unwrap());
    // The loser never overwrites the winner.
    assert_eq!(
        s.get("otk", b"key-7").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    // After removal the key can be claimed again (a replay window sliding past an entry).
    assert!(s.remove("otk", b"key-7").unwrap());
    assert!(s.insert_if_absent("otk", b"key-7", b"third").unwrap());
    // put over an existing key makes insert_if_absent fail too.
    s.put("otk", b"key-8", b"x").unwrap();
    assert!(!s.insert_if_absent("otk", b"key-8", b"y").unwrap());
}

fn tables_are_independent<S: Store>(s: &S) {
    s.put("a", b"k", b"in-a").unwrap();
    s.put("b", b"k", b"in-b").unwrap();
    assert_eq!(s.get("a", b"k").unwrap().as_deref(), Some(&b"in-a"[..]));
    assert_eq!(s.get("b", b"k").unwrap().as_deref(), Some(&b"in-b"[..]));
    assert!(s.remove("a", b"k").unwrap());
    assert_eq!(s.get("b", b"k").unwrap().as_deref(), Some(&b"in-b"[..]));
    // A queue and a map may share a name without seeing each other.
    let seq = s.queue_push("b", b"queued").unwrap();
    assert_eq!(
        s.scan("b").unwrap(),
        vec![(b"k".to_vec(), b"in-b".to_vec())]
    );
    assert_eq!(
        s.queue_range("b", 0, 10).unwrap(),
        vec![(seq, b"queued".to_vec())]
    );
}

fn scan_is_in_key_order<S: Store>(s: &S) {
    let keys: [&[u8]; 6] = [b"b", b"a", b"\xff", b"", b"ab", b"\x00"];
    for (i, k) in keys.iter().enumerate() {
        s.put("ordered", k, &[u8::try_from(i).unwrap()]).unwrap();
    }
    let got: Vec<Vec<u8>> = s
        .scan("ordered")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let want: Vec<Vec<u8>> = [&b""[..], b"\x00", b"a", b"ab", b"b", b"\xff"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    assert_eq!(got, want);
    assert_eq!(s.scan("ordered").unwrap()[2], (b"a".to_vec(), vec![1]));
}

fn queues<S: Store>(s: &S) {
    assert_eq!(s.queue_range("q", 0, 10).unwrap(), Vec::new());
    assert!(!s.queue_remove("q", 0).unwrap());
    let seqs: Vec<u64> = (0..5u8).map(|i| s.queue_push("q", &[i]).unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        s.queue_range("q", 0, 2).unwrap(),
        vec![(0, vec![0]), (1, vec![1])]
    );
    assert_eq!(
        s.queue_range("q", 3, 100).unwrap(),
        vec![(3, vec![3]), (4, vec![4])]
    );
    assert_eq!(s.queue_range("q", 0, 0).unwrap(), Vec::new());
    assert_eq!(s.queue_range("q", 99, 10).unwrap(), Vec::new());
    assert!(s.queue_remove("q", 1).unwrap());
    assert!(!s.queue_remove("q", 1).unwrap());
    assert_eq!(
        s.queue_range("q", 0, 3).unwrap(),
        vec![(0, vec![0]), (2, vec![2]), (3, vec![3])]
    );
    // Removing the newest entry must not let its number be handed out again: a consumer that
    // acknowledged seq 4 must never see a different message under seq 4.
    assert!(s.queue_remove("q", 4).unwrap());
    assert_eq!(s.queue_push("q", b"next").unwrap(), 5);
    // Queues are independent.
    assert_eq!(s.queue_push("other-q", b"x").unwrap(), 0);
    assert_eq!(
        s.queue_range("q", 5, 10).unwrap(),
        vec![(5, b"next".to_vec())]
    );
}

fn push_unique<S: Store>(s: &S) {
    use PushOutcome::{Duplicate, Stored};
    // An empty batch does nothing.
    assert_eq!(s.queue_push_unique("u", "u-seen", &[]).unwrap(), vec![]);
    let out = s
        .queue_push_unique(
            "u",
            "u-seen",
            &[(b"a", b"first a"), (b"b", b"b"), (b"a", b"second a")],
        )
        .unwrap();
    // A key repeated inside the batch is a duplicate of its first copy.
    assert_eq!(out, vec![Stored(0), Stored(1), Duplicate(0)]);
    assert_eq!(out[2].seq(), 0);
    assert_eq!(
        s.queue_range("u", 0, 10).unwrap(),
        vec![(0, b"first a".to_vec()), (1, b"b".to_vec())]
    );
    // The dedup table is an ordinary map of key -> sequence number (8 bytes BE).
    assert_eq!(
        s.get("u-seen", b"b").unwrap(),
        Some(1u64.to_be_bytes().to_vec())
    );
    // A later batch: a retransmission of "b" is recognised, a new key is appended.
    let out = s
        .queue_push_unique("u", "u-seen", &[(b"b", b"b again"), (b"c", b"c")])
        .unwrap();
    assert_eq!(out, vec![Duplicate(1), Stored(2)]);
    // An all-duplicate batch stores nothing, and sequence numbers do not move.
    assert_eq!(
        s.queue_push_unique("u", "u-seen", &[(b"c", b"c")]).unwrap(),
        vec![Duplicate(2)]
    );
    // Dedup keys outlive their queue entry: a copy arriving after delivery is still refused.
    assert!(s.queue_remove("u", 0).unwrap());
    assert_eq!(
        s.queue_push_unique("u", "u-seen", &[(b"a", b"late a")])
            .unwrap(),
        vec![Duplicate(0)]
    );
    // Once the caller prunes the key, it can be stored again, under a fresh number.
    assert!(s.remove("u-seen", b"a").unwrap());
    assert_eq!(
        s.queue_push_unique("u", "u-seen", &[(b"a", b"new a")])
            .unwrap(),
        vec![Stored(3)]
    );
    // queue_push and queue_push_unique share one sequence.
    assert_eq!(s.queue_push("u", b"plain").unwrap(), 4);
    assert_eq!(
        s.queue_push_unique("u", "u-seen", &[(b"d", b"d")]).unwrap(),
        vec![Stored(5)]
    );
    // A dedup table holding something else than sequence numbers is reported, and the batch
    // is rolled back as a whole.
    s.put("u-bad", b"x", b"not a seq").unwrap();
    let err = s
        .queue_push_unique("u", "u-bad", &[(b"new", b"v"), (b"x", b"v")])
        .unwrap_err();
    assert!(matches!(err, Error::CorruptRecord { .. }), "{err:?}");
    assert_eq!(s.get("u-bad", b"new").unwrap(), None);
    assert_eq!(s.queue_range("u", 6, 10).unwrap(), vec![]);
    assert_eq!(
        s.queue_push_unique("u", "u-seen", &[(b"e", b"e")]).unwrap(),
        vec![Stored(6)]
    );
}

fn write_batch<S: Store>(s: &S) {
    s.write_batch(&[]).unwrap();
    for i in 0..4u8 {
        s.queue_push("wb-q", &[i]).unwrap();
    }
    s.put("wb", b"gone", b"x").unwrap();
    s.write_batch(&[
        WriteOp::Put {
            table: "wb",
            key: b"cursor",
            value: b"1",
        },
        WriteOp::QueueRemove {
            table: "wb-q",
            seq: 0,
        },
        WriteOp::QueueRemove {
            table: "wb-q",
            seq: 1,
        },
        // Absent entries are not errors.
        WriteOp::QueueRemove {
            table: "wb-q",
            seq: 99,
        },
        WriteOp::Remove {
            table: "wb",
            key: b"gone",
        },
        WriteOp::Remove {
            table: "wb",
            key: b"never",
        },
        // Later ops see earlier ones: the last put wins.
        WriteOp::Put {
            table: "wb",
            key: b"cursor",
            value: b"2",
        },
        WriteOp::Put {
            table: "wb-other",
            key: b"k",
            value: b"v",
        },
    ])
    .unwrap();
    assert_eq!(
        s.scan("wb").unwrap(),
        vec![(b"cursor".to_vec(), b"2".to_vec())]
    );
    assert_eq!(s.get("wb-other", b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        s.queue_range("wb-q", 0, 10).unwrap(),
        vec![(2, vec![2]), (3, vec![3])]
    );
    // A bad table name anywhere in the batch: nothing is written.
    let err = s
        .write_batch(&[
            WriteOp::Put {
                table: "wb",
                key: b"cursor",
                value: b"3",
            },
            WriteOp::Remove {
                table: "Bad",
                key: b"k",
            },
        ])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTableName { .. }), "{err:?}");
    assert_eq!(s.get("wb", b"cursor").unwrap(), Some(b"2".to_vec()));
}

fn queue_stats_and_pruning<S: Store>(s: &S) {
    assert_eq!(s.queue_stats("st").unwrap(), QueueStats::default());
    let items: Vec<([u8; 1], Vec<u8>)> = (0..6u8)
        .map(|i| ([i], vec![i; 10 + usize::from(i)]))
        .collect();
    let refs: Vec<(&[u8], &[u8])> = items.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    s.queue_push_unique("st", "st-seen", &refs).unwrap();
    s.queue_push("st", b"1234").unwrap();
    let total: u64 = (10..16).sum::<u64>() + 4;
    assert_eq!(
        s.queue_stats("st").unwrap(),
        QueueStats {
            len: 7,
            bytes: total,
            first_seq: Some(0),
            next_seq: 7
        }
    );
    // Duplicates add nothing.
    s.queue_push_unique("st", "st-seen", &refs[..2]).unwrap();
    assert_eq!(s.queue_stats("st").unwrap().bytes, total);
    assert!(s.queue_remove("st", 1).unwrap());
    assert_eq!(s.queue_stats("st").unwrap().bytes, total - 11);
    // A prefix goes in one op, with the dedup keys of the first two numbers.
    s.write_batch(&[
        WriteOp::QueueRemoveBelow {
            table: "st",
            seq: 4,
        },
        WriteOp::DedupForgetBelow {
            dedup_table: "st-seen",
            seq: 2,
        },
    ])
    .unwrap();
    assert_eq!(
        s.queue_stats("st").unwrap(),
        QueueStats {
            len: 3,
            bytes: 14 + 15 + 4,
            first_seq: Some(4),
            next_seq: 7
        }
    );
    // Keys 0 and 1 are forgotten (they may be stored again); 2 and 3 are still known although
    // their entries are gone.
    let again = s.queue_push_unique("st", "st-seen", &refs[..4]).unwrap();
    assert_eq!(
        again,
        vec![
            PushOutcome::Stored(7),
            PushOutcome::Stored(8),
            PushOutcome::Duplicate(2),
            PushOutcome::Duplicate(3)
        ]
    );
    // Forgetting below 8 must not forget key 0, which now maps to 7... until 8.
    s.write_batch(&[WriteOp::DedupForgetBelow {
        dedup_table: "st-seen",
        seq: 7,
    }])
    .unwrap();
    assert_eq!(
        s.queue_push_unique("st", "st-seen", &refs[..3]).unwrap(),
        vec![
            PushOutcome::Duplicate(7),
            PushOutcome::Duplicate(8),
            PushOutcome::Stored(9)
        ]
    );
    // Everything removed: no first entry, numbers keep going.
    s.write_batch(&[WriteOp::QueueRemoveBelow {
        table: "st",
        seq: u64::MAX,
    }])
    .unwrap();
    assert_eq!(
        s.queue_stats("st").unwrap(),
        QueueStats {
            len: 0,
            bytes: 0,
            first_seq: None,
            next_seq: 10
        }
    );
}

fn table_names_are_checked<S: Store>(s: &S) {
    for bad in ["", "Bad", "a b", "kv:x", "a/b", &"x".repeat(65)] {
        let invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidTableName { .. }));
        assert!(invalid(s.put(bad, b"k", b"v")), "put {bad:?}");
        assert!(invalid(s.get(bad, b"k").map(drop)), "get {bad:?}");
        assert!(invalid(s.remove(bad, b"k").map(drop)), "remove {bad:?}");
        assert!(invalid(s.insert_if_absent(bad, b"k", b"v").map(drop)));
        assert!(invalid(s.scan(bad).map(drop)), "scan {bad:?}");
        assert!(invalid(s.queue_push(bad, b"v").map(drop)));
        assert!(invalid(s.queue_range(bad, 0, 1).map(drop)));
        assert!(invalid(s.queue_remove(bad, 0).map(drop)));
        assert!(invalid(s.queue_push_unique(bad, "ok", &[]).map(drop)));
        assert!(invalid(s.queue_push_unique("ok", bad, &[]).map(drop)));
        assert!(invalid(
            s.write_batch(&[WriteOp::QueueRemove { table: bad, seq: 0 }])
        ));
    }
    let msg = s.put("Bad", b"k", b"v").unwrap_err().to_string();
    assert!(msg.contains("\"Bad\"") && msg.contains("a-z"), "{msg}");
}

fn works_through_dyn<S: Store>(s: &S) {
    let d: &dyn Store = s;
    d.put("dyn", b"k", b"v").unwrap();
    assert_eq!(s.get("dyn", b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Runs `f(store, id)` on `threads` threads released at once; their results, by id.
fn race<S, T, F>(store: &Arc<S>, threads: usize, f: F) -> Vec<T>
where
    S: Store + 'static,
    T: Send + 'static,
    F: Fn(&S, usize) -> T + Send + Sync + 'static,
{
    let barrier = Arc::new(Barrier::new(threads));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let (store, barrier, f) = (Arc::clone(store), Arc::clone(&barrier), Arc::clone(&f));
            thread::spawn(move || {
                barrier.wait();
                f(&store, id)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Many threads race `insert_if_absent` on the same keys; exactly one wins each key, and the
/// stored value is the winner's.
pub fn insert_if_absent_is_atomic<S: Store + 'static>(store: Arc<S>) {
    const THREADS: usize = 16;
    const KEYS: usize = 20;
    let won = race(&store, THREADS, |store, id| {
        (0..KEYS)
            .filter(|k| {
                store
                    .insert_if_absent("race", &k.to_be_bytes(), &id.to_be_bytes())
                    .unwrap()
            })
            .collect::<Vec<usize>>()
    });
    let mut winners = vec![Vec::new(); KEYS];
    for (id, keys) in won.into_iter().enumerate() {
        for k in keys {
            winners[k].push(id);
        }
    }
    for (k, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "key {k} won by {w:?}");
        let stored = store.get("race", &k.to_be_bytes()).unwrap().unwrap();
        assert_eq!(stored, w[0].to_be_bytes());
    }
}

/// Many threads push overlapping batches of the same dedup keys at once; every key ends up in
/// the queue exactly once, and every thread's outcome for a key names that one copy.
pub fn queue_push_unique_is_atomic<S: Store + 'static>(store: Arc<S>) {
    const THREADS: usize = 8;
    const KEYS: u32 = 40;
    let results: Vec<_> = race(&store, THREADS, |store, id| {
        let mut seen = Vec::new();
        // Batches of 5 keys, each thread starting at a different offset.
        for chunk in 0..KEYS / 5 {
            let keys: Vec<[u8; 4]> = (0..5)
                .map(|i| ((chunk * 5 + i + u32::try_from(id).unwrap() * 5) % KEYS).to_be_bytes())
                .collect();
            let items: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &k[..])).collect();
            let out = store
                .queue_push_unique("race-q", "race-seen", &items)
                .unwrap();
            seen.extend(keys.iter().zip(out).map(|(k, o)| (*k, o)));
        }
        seen
    })
    .into_iter()
    .flatten()
    .collect();
    let queue = store.queue_range("race-q", 0, usize::MAX).unwrap();
    assert_eq!(queue.len(), usize::try_from(KEYS).unwrap());
    let mut values: Vec<Vec<u8>> = queue.iter().map(|(_, v)| v.clone()).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), queue.len(), "a key stored twice");
    let stored: Vec<_> = results
        .iter()
        .filter(|(_, o)| matches!(o, PushOutcome::Stored(_)))
        .collect();
    assert_eq!(stored.len(), queue.len());
    for (key, outcome) in &results {
        let (_, v) = queue.iter().find(|(seq, _)| *seq == outcome.seq()).unwrap();
        assert_eq!(v, key, "outcome names another copy");
    }
}
