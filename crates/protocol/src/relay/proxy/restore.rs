//! A restart: what was read back ([`Loaded`]) put into the engine, and what the shell must do
//! about it (log the records skipped, bind the plain-UDP ports again, remove the positions of
//! sinks no forward knows).

use m2msec_wire::cbor::hex;

use super::authz::owner_key;
use super::records::{self, CURSORS_TABLE, Loaded, STORAGES_TABLE, cursor_key, id_key, unhex};
use super::retention::Op;
use super::routing::Proxy;
use super::state::Handles;

/// What the shell does after [`Proxy::restore`].
#[derive(Debug, Default)]
pub struct Restored {
    /// What was read back but not restored, for the shell's log.
    pub warnings: Vec<String>,
    /// Storages taking plain UDP: (id, port last bound) for the shell to bind again (the same
    /// port if it is free, so sources keep working; else a new one, [`Proxy::udp_moved`]).
    pub udp: Vec<(u32, Option<u16>)>,
    /// The removal of positions of sinks no restored forward has.
    pub orphans: Vec<Op>,
}

impl<H: Handles> Proxy<H> {
    /// Puts what a restart read back into the engine: storages whose owner key decodes, with
    /// what their queues hold; forwards whose storage was
    /// restored, at their positions, their pumps asked for ([`Event::StartPump`]).
    ///
    /// [`Event::StartPump`]: super::Event::StartPump
    pub fn restore(&mut self, loaded: Loaded) -> Restored {
        let mut out = Restored::default();
        for (table, key) in &loaded.skipped {
            out.warnings.push(format!(
                "{table} record {} skipped: does not decode",
                hex(key)
            ));
        }
        self.core.next_storage = loaded.next_storage;
        self.core.next_forward = loaded.next_forward;
        for (record, counters, stats) in loaded.storages {
            let Some(owner) = unhex(&record.owner_key).and_then(|b| owner_key(&b)) else {
                out.warnings.push(format!(
                    "storage {} skipped: owner key does not decode",
                    record.id
                ));
                continue;
            };
            if record.udp {
                out.udp.push((record.id, record.udp_port));
            }
            self.install_storage(record, owner, counters, stats);
        }
        for record in loaded.forwards {
            if !self.core.storages.contains_key(&record.storage_id) {
                out.warnings.push(format!(
                    "forward {} skipped: its storage is gone",
                    record.id
                ));
                continue;
            }
            let cursors: Vec<_> = loaded
                .cursors
                .iter()
                .filter(|((f, _), _)| *f == record.id)
                .map(|((_, url), c)| (url.clone(), c.clone()))
                .collect();
            self.install_forward(record, &cursors);
        }
        for ((fid, url), _) in &loaded.cursors {
            let known = self
                .core
                .forwards
                .get(fid)
                .is_some_and(|f| f.sinks.contains_key(url));
            if !known {
                out.orphans
                    .push(Op::Remove(CURSORS_TABLE, cursor_key(*fid, url)));
            }
        }
        out
    }

    /// Storage `id`'s plain-UDP port was not free after a restart and is now `port`: its record
    /// changed, and the write that records it (`None` when the storage is unknown).
    ///
    /// # Errors
    ///
    /// `serde_json`'s, which it never produces for a record.
    pub fn udp_moved(&mut self, id: u32, port: u16) -> serde_json::Result<Option<Op>> {
        let Some(s) = self.core.storages.get_mut(&id) else {
            return Ok(None);
        };
        s.record.udp_port = Some(port);
        let json = records::json(&s.record)?;
        Ok(Some(Op::Put(STORAGES_TABLE, id_key(id).to_vec(), json)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use std::sync::Arc;

    use m2msec_crypto::rng::OsRng;
    use m2msec_crypto::sig::{SigSuite, SigningKey};
    use m2msec_store::MemoryStore;

    use super::*;
    use crate::Millis;
    use crate::relay::proxy::Limits;
    use crate::relay::proxy::records::{CursorRecord, ForwardRecord, StorageRecord, to_hex};

    fn proxy() -> Proxy<()> {
        let limits = Limits::for_tests();
        Proxy::new(limits, Arc::new(MemoryStore::new()), Millis(0))
    }

    fn storage(id: u32, owner_key: String, udp_port: Option<u16>) -> StorageRecord {
        StorageRecord {
            id,
            owner_key,
            source: format!("coap://127.0.0.1/s{id}"),
            capacity: 100,
            udp: udp_port.is_some(),
            udp_port,
        }
    }

    #[test]
    fn restore_keeps_what_decodes_and_lists_what_the_shell_must_do() {
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap();
        let key = to_hex(&owner.verifying_key().to_bytes());
        let forward = |id, storage_id| ForwardRecord {
            id,
            storage_id,
            sinks: Vec::new(),
            rate: 0,
            paused: false,
        };
        let loaded = Loaded {
            next_storage: 9,
            next_forward: 7,
            storages: vec![
                (
                    storage(1, key.clone(), Some(5683)),
                    Default::default(),
                    Default::default(),
                ),
                (
                    storage(2, "zz".into(), None),
                    Default::default(),
                    Default::default(),
                ),
            ],
            forwards: vec![forward(3, 1), forward(4, 2)],
            cursors: vec![((3, "coap://127.0.0.1/gone".into()), CursorRecord::default())],
            skipped: vec![(STORAGES_TABLE, vec![0xab])],
        };
        let mut p = proxy();
        let restored = p.restore(loaded);
        assert_eq!(restored.udp, vec![(1, Some(5683))]);
        assert_eq!(
            restored.warnings,
            [
                "relay-proxy.storages record ab skipped: does not decode",
                "storage 2 skipped: owner key does not decode",
                "forward 4 skipped: its storage is gone",
            ]
        );
        assert_eq!(
            restored.orphans,
            [Op::Remove(
                CURSORS_TABLE,
                cursor_key(3, "coap://127.0.0.1/gone")
            )]
        );
        assert_eq!(p.core.storages.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(p.core.forwards.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!((p.core.next_storage, p.core.next_forward), (9, 7));
        let Some(Op::Put(table, k, json)) = p.udp_moved(1, 6000).unwrap() else {
            panic!("a known storage's record is written");
        };
        assert_eq!((table, k), (STORAGES_TABLE, id_key(1).to_vec()));
        let written: StorageRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(written, storage(1, key, Some(6000)));
        assert!(p.udp_moved(2, 6000).unwrap().is_none());
    }
}
