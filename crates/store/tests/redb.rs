//! `RedbStore` against the shared conformance suite, plus what only a file-backed store must
//! do: survive a close, a reopen and a SIGKILL.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use m2msec_store::private::PrivateError;
use m2msec_store::{Error, RedbStore, Store};

fn temp_store() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("store.redb")).unwrap();
    (dir, store)
}

#[test]
fn conformance() {
    let (_dir, store) = temp_store();
    common::conformance(&store);
}

#[test]
fn insert_if_absent_is_atomic() {
    let (_dir, store) = temp_store();
    common::insert_if_absent_is_atomic(Arc::new(store));
}

#[test]
fn queue_push_unique_is_atomic() {
    let (_dir, store) = temp_store();
    common::queue_push_unique_is_atomic(Arc::new(store));
}

#[test]
fn persists_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.put("trust", b"proxy-1", b"record").unwrap();
        assert!(s.insert_if_absent("otk-used", b"7", b"").unwrap());
        for i in 0..3u8 {
            s.queue_push("outbox", &[i]).unwrap();
        }
        // Remove the newest entry: its number must stay used after the reopen.
        assert!(s.queue_remove("outbox", 2).unwrap());
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.path(), path);
    assert_eq!(
        s.get("trust", b"proxy-1").unwrap().as_deref(),
        Some(&b"record"[..])
    );
    // A one-time key used before the restart stays used after it.
    assert!(!s.insert_if_absent("otk-used", b"7", b"").unwrap());
    assert_eq!(
        s.queue_range("outbox", 0, 10).unwrap(),
        vec![(0, vec![0]), (1, vec![1])]
    );
    assert_eq!(s.queue_push("outbox", b"after").unwrap(), 3);
}

#[test]
fn queue_totals_persist_and_are_counted_for_old_queues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.queue_push("q", b"12345").unwrap();
        s.queue_push_unique("q", "q-seen", &[(b"k", b"123")])
            .unwrap();
    }
    {
        let s = RedbStore::open(&path).unwrap();
        let st = s.queue_stats("q").unwrap();
        assert_eq!(
            (st.len, st.bytes, st.first_seq, st.next_seq),
            (2, 8, Some(0), 2)
        );
    }
    // A queue written by a version of the crate that kept no totals: written here with redb
    // directly, in the same layout.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut q = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("q:old"))
                .unwrap();
            q.insert(0, &b"abc"[..]).unwrap();
            q.insert(1, &b"defgh"[..]).unwrap();
            let mut next = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("m2msec:queue-next"))
                .unwrap();
            next.insert("old", 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    let st = s.queue_stats("old").unwrap();
    assert_eq!((st.len, st.bytes, st.next_seq), (2, 8, 2));
    // The first write counts the old entries once and keeps the total from then on.
    assert!(s.queue_remove("old", 0).unwrap());
    assert_eq!(s.queue_stats("old").unwrap().bytes, 5);
    assert_eq!(s.queue_push("old", b"ij").unwrap(), 2);
    assert_eq!(s.queue_stats("old").unwrap().bytes, 7);
}

#[test]
fn open_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/m2msec/relay.redb");
    let s = RedbStore::open(&path).unwrap();
    s.put("t", b"k", b"v").unwrap();
    assert!(path.is_file());
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::AlreadyOpen { .. }), "{err:?}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    // Written owner-only, so that the refusal is about the contents, not the mode.
    let mut file =
        m2msec_store::private::open(&path, m2msec_store::private::Write::Truncate).unwrap();
    std::io::Write::write_all(&mut file, &[0x42; 8192]).unwrap();
    drop(file);
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.redb"), "{err}");
}

#[test]
fn a_parent_that_is_a_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let err = RedbStore::open(blocker.join("store.redb")).unwrap_err();
    assert!(
        matches!(err, Error::Private(PrivateError::Io { .. })),
        "{err:?}"
    );
}

/// A new database is owner-only whatever the umask; one that others may read is refused with
/// the `chmod` that fixes it, and opens again once fixed.
#[cfg(unix)]
#[test]
fn the_database_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/store.redb");
    drop(RedbStore::open(&path).unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(err, Error::Private(PrivateError::Exposed(_))),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(RedbStore::open(&path).unwrap());
}

/// Crash consistency: a child process writes records through `RedbStore`, printing an
/// acknowledgement after each call returns, and is SIGKILLed mid-stream; after reopening,
/// every acknowledged record is present. Repeated over several rounds on one file, so that
/// later rounds open a file that was itself left by a killed process.
///
/// A SIGKILL loses nothing the kernel already holds, so this checks redb's transactional
/// recovery (no torn or lost commits, a file that reopens), not fsync against power loss.
#[cfg(unix)]
mod crash {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    use super::*;

    const DB_ENV: &str = "M2MSEC_STORE_CRASH_CHILD_DB";
    const START_ENV: &str = "M2MSEC_STORE_CRASH_CHILD_START";
    /// The child stops by itself after this many records, so a parent that fails to kill it
    /// cannot hang the test run.
    const CHILD_LIMIT: u64 = 20_000;
    const SIGKILL: i32 = 9;
    /// Items per group-committed batch.
    const BATCH: u64 = 8;

    fn record(i: u64) -> Vec<u8> {
        format!("record {i} ").repeat(20).into_bytes()
    }

    /// The child's half: does nothing unless the parent test started this binary with
    /// `DB_ENV` set.
    #[test]
    fn crash_child() {
        let Some(path) = std::env::var_os(DB_ENV) else {
            return;
        };
        let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
        let store = RedbStore::open(path).unwrap();
        // Written directly, not through print!, so libtest's output capture cannot hold it back.
        let mut out = std::io::stdout().lock();
        for i in start..start + CHILD_LIMIT {
            store
                .put("crash-map", &i.to_be_bytes(), &record(i))
                .unwrap();
            assert!(
                store
                    .insert_if_absent("crash-once", &i.to_be_bytes(), b"")
                    .unwrap()
            );
            store.queue_push("crash-queue", &record(i)).unwrap();
            // A group commit: this round's batch plus the previous one again, as a client that
            // lost the acknowledgement would retransmit it.
            let keys: Vec<[u8; 8]> = (i.saturating_sub(1) * BATCH..(i + 1) * BATCH)
                .map(u64::to_be_bytes)
                .collect();
            let values: Vec<Vec<u8>> = keys
                .iter()
                .map(|k| record(u64::from_be_bytes(*k)))
                .collect();
            let items: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (&k[..], &v[..]))
                .collect();
            store
                .queue_push_unique("crash-batch", "crash-batch-seen", &items)
                .unwrap();
            writeln!(out, "ack {i}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn acknowledged_writes_survive_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.redb");
        let mut start = 0u64;
        let mut acked_total = 0u64;
        // The records each round's child acknowledged. Between two rounds lies the record the
        // kill interrupted: its map entry may be written (the next round starts after it) while
        // its other writes are not, and it was never acknowledged, so it is not checked.
        let mut acked: Vec<core::ops::RangeInclusive<u64>> = Vec::new();
        for round in 0..3u64 {
            let kill_after = 40 + round * 25;
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "crash::crash_child",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(DB_ENV, &path)
                .env(START_ENV, start.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let mut last_ack = None;
            let mut acks = 0;
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let Some(i) = line.strip_prefix("ack ") else {
                    continue; // libtest's own chatter
                };
                last_ack = Some(i.parse::<u64>().unwrap());
                acks += 1;
                if acks == kill_after {
                    // The child is busy with its next record: the kill lands mid-write.
                    child.kill().unwrap(); // SIGKILL on Unix
                    break;
                }
            }
            let status = child.wait().unwrap();
            assert_eq!(
                status.signal(),
                Some(SIGKILL),
                "child ended on its own: {status:?}"
            );
            let last_ack = last_ack.unwrap();
            acked_total += acks;
            acked.push(start..=last_ack);

            let s = RedbStore::open(&path).unwrap();
            for i in acked.iter().cloned().flatten() {
                assert_eq!(
                    s.get("crash-map", &i.to_be_bytes()).unwrap(),
                    Some(record(i)),
                    "round {round}: acknowledged record {i} lost"
                );
                assert!(
                    !s.insert_if_absent("crash-once", &i.to_be_bytes(), b"")
                        .unwrap(),
                    "round {round}: acknowledged single-use mark {i} lost"
                );
            }
            let queued: Vec<Vec<u8>> = s
                .queue_range("crash-queue", 0, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            for i in acked.iter().cloned().flatten() {
                assert!(
                    queued.contains(&record(i)),
                    "round {round}: queued {i} lost"
                );
            }
            // Group commits: every acknowledged batch item is stored exactly once (the
            // retransmitted half of each batch never made a second copy), and every batch is
            // all or nothing.
            let batched = s.queue_range("crash-batch", 0, usize::MAX).unwrap();
            let mut items: Vec<u64> = batched
                .iter()
                .map(|(_, v)| {
                    (0..(last_ack + 2) * BATCH)
                        .find(|k| record(*k) == *v)
                        .unwrap()
                })
                .collect();
            let len = items.len();
            items.sort_unstable();
            items.dedup();
            assert_eq!(items.len(), len, "round {round}: a batch item stored twice");
            // Record i's group commit holds batches i - 1 and i.
            let acked_items = acked
                .iter()
                .flat_map(|r| r.start().saturating_sub(1) * BATCH..(r.end() + 1) * BATCH);
            for k in acked_items {
                assert!(
                    items.binary_search(&k).is_ok(),
                    "round {round}: acknowledged batch item {k} lost"
                );
            }
            assert_eq!(
                len % usize::try_from(BATCH).unwrap(),
                0,
                "round {round}: torn batch"
            );
            // The next child carries on after whatever got written, acknowledged or not.
            let map = s.scan("crash-map").unwrap();
            let (last_key, _) = map.last().unwrap();
            start = u64::from_be_bytes(last_key.as_slice().try_into().unwrap()) + 1;
            assert!(start > last_ack);
        }
        assert!(acked_total >= 40 + 65 + 90);
    }
}
