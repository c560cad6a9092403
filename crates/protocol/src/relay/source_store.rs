//! What a source keeps in its store: the stream position, the storage the proxy created for it
//! and the forwards it made ([`SOURCE_TABLE`]), around the protocol's [`Source`].
//!
//! The position is written **before** the messages sealed from it leave
//! ([`StoredSource::seal_batch`] persists once per batch, then returns the batch): a source
//! killed at any moment and run again continues after the last position written, so it never
//! reuses a key index or a message id — at worst ids of a batch that never left are skipped.
//! Time is passed in; the shell sends what it returns.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use m2msec_crypto::pre;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::SigningKey;
use m2msec_store::{Store, WriteOp};
use m2msec_wire::cbor::Bytes;
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::{self, SinkGrant};
use serde::{Deserialize, Serialize};

use super::{Source, SourceConfig, SourceSeed, StreamPosition};
use crate::{Millis, OpCounts};

/// The source's table: [`KEY_POSITION`], [`KEY_STORAGE`], [`KEY_FIRST_EPOCH`], and one
/// `forward/{id}` entry per forward it created.
pub const SOURCE_TABLE: &str = "relay_source";
/// Key of the stream position ([`StreamPosition::to_bytes`]).
pub const KEY_POSITION: &[u8] = b"position";
/// Key of the storage record (JSON [`StorageRecord`]).
pub const KEY_STORAGE: &[u8] = b"storage";
/// Key of the epoch of the stream's first message (u32 big endian): where a grant starts by
/// default.
pub const KEY_FIRST_EPOCH: &[u8] = b"first_epoch";
const FORWARD_PREFIX: &str = "forward/";

/// Why a stored source failed. The messages read as the node's own errors do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source refused: a payload it cannot seal, a clock beyond the last epoch, an
    /// unusable config or a stored position of another stream.
    #[error("relay: {0}")]
    Relay(#[from] super::Error),
    /// A grant the source cannot make (more epochs than one grant carries): the caller's
    /// request, not the source's fault.
    #[error("invalid option: {0}")]
    Grant(super::Error),
    /// The store failed; nothing that depended on the write may be sent.
    #[error("store: {0}")]
    Store(#[from] m2msec_store::Error),
    /// A record in the store does not decode, or one does not encode.
    #[error("stored {what}: {error}")]
    Record {
        /// Which record.
        what: &'static str,
        /// Why.
        error: String,
    },
}

/// The storage a proxy created for this source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageRecord {
    /// The proxy's CoAP address.
    pub proxy: SocketAddr,
    /// The storage's id (its resource is `storage/{id}`).
    pub storage_id: u32,
    /// The proxy's plain-UDP ingestion port for this storage, if one was opened.
    pub udp_port: Option<u16>,
}

/// A forward this source created.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForwardRecord {
    /// The forward's id (its resources are `forward/{id}/monitor` and `forward/{id}/control`).
    pub forward_id: u32,
    /// The storage it forwards.
    pub storage_id: u32,
    /// The sinks granted, with the first and last epoch of each grant.
    pub sinks: Vec<(String, u32, u32)>,
}

/// What a stored source is made of: its stream, keys, and what it asks the proxy for.
#[derive(Debug)]
pub struct SourceParams {
    /// The stream: the source's URL, stream id, data AEAD, rotation and epoch length.
    pub config: SourceConfig,
    /// The seed of the source's epoch keys.
    pub seed: SourceSeed,
    /// The owner key: signs section keys and the proxy API calls only the owner may make.
    pub owner: SigningKey,
    /// Bytes asked for at `store` (0: the proxy's default).
    pub capacity: u64,
    /// Whether `store` asks for a plain-UDP ingestion port too.
    pub udp: bool,
}

/// A [`Source`] over its store.
pub struct StoredSource {
    source: Source,
    store: Arc<dyn Store>,
    capacity: u64,
    udp: bool,
    /// Whether [`KEY_FIRST_EPOCH`] is in the store: looked up once when opened and set with
    /// the first batch, so that later batches need not read it again.
    first_epoch_recorded: bool,
}

impl core::fmt::Debug for StoredSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredSource")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl StoredSource {
    /// The source of `params` over `store`, resumed from the position stored there (if any).
    ///
    /// # Errors
    ///
    /// Store errors; [`Error::Record`] for a stored position that does not decode;
    /// [`Error::Relay`] for a position of another stream or an unusable config.
    pub fn open(
        params: SourceParams,
        store: Arc<dyn Store>,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        let resume = match store.get(SOURCE_TABLE, KEY_POSITION)? {
            Some(bytes) => Some(
                StreamPosition::from_bytes(&bytes).map_err(|e| Error::Record {
                    what: "stream position",
                    error: e.to_string(),
                })?,
            ),
            None => None,
        };
        let SourceParams {
            config,
            seed,
            owner,
            capacity,
            udp,
        } = params;
        Ok(Self {
            source: Source::new(config, seed, owner, resume, rng)?,
            // Decoded, not only looked up: a record that does not decode refuses the open.
            first_epoch_recorded: read_first_epoch(&*store)?.is_some(),
            store,
            capacity,
            udp,
        })
    }

    /// The source's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.source.config().source_url
    }

    /// Where the stream stands.
    #[must_use]
    pub fn position(&self) -> StreamPosition {
        self.source.position()
    }

    /// The source's cryptographic operations so far.
    #[must_use]
    pub fn op_counts(&self) -> OpCounts {
        self.source.op_counts()
    }

    /// The epoch of `now`.
    ///
    /// # Errors
    ///
    /// [`Error::Relay`] for a clock beyond the last epoch.
    pub fn epoch_at(&self, now: Millis) -> Result<u32, Error> {
        Ok(self.source.epoch_at(now)?)
    }

    /// The `store` request of this source: its owner key, URL, capacity, and whether a UDP port
    /// is wanted.
    #[must_use]
    pub fn store_request(&self) -> api::StoreRequest {
        api::StoreRequest {
            owner_key: Bytes(self.source.owner().verifying_key().to_bytes()),
            source: self.url().to_owned(),
            capacity: self.capacity,
            udp: self.udp,
        }
    }

    /// Seals every payload (a management message precedes each new section), then persists the
    /// position once, and only then returns the messages to send, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Relay`] for a payload the suite cannot seal; [`Error::Store`] if the position
    /// could not be made durable (then nothing may be sent: the caller drops the batch, and the
    /// next run starts a new section).
    pub fn seal_batch(
        &mut self,
        now: Millis,
        payloads: &[Vec<u8>],
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<RelayMessage>, Error> {
        let mut out = Vec::with_capacity(payloads.len() + 1);
        for p in payloads {
            out.extend(self.source.seal(now, p, rng)?);
        }
        let position = self.source.position().to_bytes();
        self.write_noting_first_epoch(
            now,
            &[WriteOp::Put {
                table: SOURCE_TABLE,
                key: KEY_POSITION,
                value: &position,
            }],
        )?;
        Ok(out)
    }

    /// Writes `ops` in one batch with, the first time anything is sealed, the stream's first
    /// epoch (that of `now`), which grants from the first epoch start at.
    fn write_noting_first_epoch(&mut self, now: Millis, ops: &[WriteOp<'_>]) -> Result<(), Error> {
        let first = self.epoch_at(now)?.to_be_bytes();
        let mut all: Vec<WriteOp<'_>> = ops.to_vec();
        if !self.first_epoch_recorded {
            all.push(WriteOp::Put {
                table: SOURCE_TABLE,
                key: KEY_FIRST_EPOCH,
                value: &first,
            });
        }
        if !all.is_empty() {
            self.store.write_batch(&all)?;
        }
        self.first_epoch_recorded = true;
        Ok(())
    }

    /// Seals one individually protected message (§III-B, `Source::seal_individual`): no stream
    /// position moves, but its epoch counts as the stream's first if nothing came before, so
    /// that a grant from the first epoch covers it.
    ///
    /// # Errors
    ///
    /// As `Source::seal_individual`; [`Error::Store`] if the first epoch could not be recorded.
    pub fn seal_individual(
        &mut self,
        now: Millis,
        plaintext: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<RelayMessage, Error> {
        let msg = self.source.seal_individual(now, plaintext, rng)?;
        self.write_noting_first_epoch(now, &[])?;
        Ok(msg)
    }

    /// The grant of `sink_url` for `epochs`: one re-encryption key per epoch to `sink_key`.
    ///
    /// # Errors
    ///
    /// [`Error::Grant`] for more epochs than a grant carries.
    pub fn grant(
        &mut self,
        sink_url: &str,
        sink_key: &pre::PublicKey,
        epochs: RangeInclusive<u32>,
    ) -> Result<SinkGrant, Error> {
        let rekeys = self
            .source
            .rekeys_for(sink_key, epochs)
            .map_err(Error::Grant)?;
        Ok(SinkGrant {
            url: sink_url.to_owned(),
            rekeys,
        })
    }

    /// `payload` signed by the owner key for the resource `path` at `now`, as the proxy wants
    /// it for `forward`, `forward/{id}/control` and `DELETE storage/{id}`.
    #[must_use]
    pub fn sign(
        &self,
        path: &str,
        payload: Vec<u8>,
        now: Millis,
        rng: &mut dyn CryptoRng,
    ) -> api::Signed {
        let owner = self.source.owner();
        let signature = owner.sign(rng, &api::signed_input(path, now.0, &payload));
        api::Signed {
            payload: Bytes(payload),
            timestamp_ms: now.0,
            signature: Bytes(signature),
            key: Bytes(owner.verifying_key().to_bytes()),
        }
    }

    /// The epoch of the stream's first message, if it sent any.
    ///
    /// # Errors
    ///
    /// Store errors, or a stored value that is not 4 bytes.
    pub fn first_epoch(&self) -> Result<Option<u32>, Error> {
        read_first_epoch(&*self.store)
    }

    /// The storage recorded, if any.
    ///
    /// # Errors
    ///
    /// Store errors, or a record that does not decode.
    pub fn storage(&self) -> Result<Option<StorageRecord>, Error> {
        match self.store.get(SOURCE_TABLE, KEY_STORAGE)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| record_error("storage record", &e)),
            None => Ok(None),
        }
    }

    /// Records the storage the proxy created.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub fn save_storage(&self, record: &StorageRecord) -> Result<(), Error> {
        let bytes = serde_json::to_vec(record).map_err(|e| record_error("storage record", &e))?;
        self.store.put(SOURCE_TABLE, KEY_STORAGE, &bytes)?;
        Ok(())
    }

    /// Records a forward.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub fn save_forward(&self, record: &ForwardRecord) -> Result<(), Error> {
        let bytes = serde_json::to_vec(record).map_err(|e| record_error("forward record", &e))?;
        let key = format!("{FORWARD_PREFIX}{:010}", record.forward_id);
        self.store.put(SOURCE_TABLE, key.as_bytes(), &bytes)?;
        Ok(())
    }

    /// The forwards recorded, by id.
    ///
    /// # Errors
    ///
    /// Store errors, or a record that does not decode.
    pub fn forwards(&self) -> Result<Vec<ForwardRecord>, Error> {
        self.store
            .scan(SOURCE_TABLE)?
            .into_iter()
            .filter(|(k, _)| k.starts_with(FORWARD_PREFIX.as_bytes()))
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| record_error("forward record", &e))
            })
            .collect()
    }
}

fn record_error(what: &'static str, e: &serde_json::Error) -> Error {
    Error::Record {
        what,
        error: e.to_string(),
    }
}

/// The first epoch recorded in `store`, if any.
fn read_first_epoch(store: &dyn Store) -> Result<Option<u32>, Error> {
    Ok(store
        .get(SOURCE_TABLE, KEY_FIRST_EPOCH)?
        .map(|v| {
            super::fixed_record(&v).map_err(|error| Error::Record {
                what: "first epoch",
                error,
            })
        })
        .transpose()?
        .map(u32::from_be_bytes))
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::rng::SeededRng;
    use m2msec_crypto::sig::SigSuite;
    use m2msec_store::MemoryStore;

    use super::*;

    fn params(rng: &mut SeededRng) -> Result<SourceParams, Box<dyn std::error::Error>> {
        Ok(SourceParams {
            config: SourceConfig::new("coap://127.0.0.9/source", 1),
            seed: SourceSeed::new([7; 32]),
            owner: SigningKey::generate(SigSuite::Ed25519, rng)?,
            capacity: 0,
            udp: true,
        })
    }

    /// A source opened again over its store continues after the position written with its
    /// last batch, and finds its storage, forwards and first epoch there.
    #[test]
    fn a_reopened_source_continues_after_its_last_batch() -> Result<(), Box<dyn std::error::Error>>
    {
        let mut rng = SeededRng::from_seed_u64(5);
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let now = Millis(1_700_000_000_000);
        let mut source = StoredSource::open(params(&mut rng)?, store.clone(), &mut rng)?;
        assert_eq!(source.first_epoch()?, None);
        let sent = source.seal_batch(now, &[vec![1], vec![2]], &mut rng)?;
        assert_eq!(
            sent.len(),
            3,
            "a management message, then two data messages"
        );
        let last = sent.last().map(|m| m.header.message_id);
        let storage = StorageRecord {
            proxy: SocketAddr::from(([127, 0, 0, 1], 5683)),
            storage_id: 4,
            udp_port: None,
        };
        source.save_storage(&storage)?;
        let forward = ForwardRecord {
            forward_id: 2,
            storage_id: 4,
            sinks: vec![("udp://127.0.0.1:9".into(), 1, 2)],
        };
        source.save_forward(&forward)?;
        assert!(source.store_request().udp);

        let mut again = StoredSource::open(params(&mut rng)?, store, &mut rng)?;
        assert_eq!(again.position(), source.position());
        assert_eq!(again.first_epoch()?, Some(source.epoch_at(now)?));
        assert_eq!(again.storage()?, Some(storage));
        assert_eq!(again.forwards()?, vec![forward]);
        let next = again.seal_batch(now, &[vec![3]], &mut rng)?;
        assert_eq!(
            next.first().map(|m| m.header.message_id),
            last.map(|id| id.wrapping_add(1)),
            "no message id used twice"
        );
        assert_ne!(
            next.first().map(|m| m.header.key_index),
            sent.first().map(|m| m.header.key_index),
            "a new section after the restart"
        );
        Ok(())
    }

    /// Bytes in the store that are not what the source wrote are refused with a typed error
    /// naming the record, never skipped or taken for something else.
    #[test]
    fn records_that_do_not_decode_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let mut rng = SeededRng::from_seed_u64(6);
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let source = StoredSource::open(params(&mut rng)?, store.clone(), &mut rng)?;
        let refused = |r: Result<(), Error>, what: &str| matches!(r, Err(Error::Record { what: w, .. }) if w == what);
        store.put(SOURCE_TABLE, KEY_STORAGE, b"\xff not json")?;
        assert!(refused(source.storage().map(drop), "storage record"));
        store.put(
            SOURCE_TABLE,
            b"forward/0000000001",
            b"{\"forward_id\": \"x\"}",
        )?;
        assert!(refused(source.forwards().map(drop), "forward record"));
        store.put(SOURCE_TABLE, KEY_FIRST_EPOCH, &[1, 2, 3])?;
        assert!(refused(source.first_epoch().map(drop), "first epoch"));
        let reopened = StoredSource::open(params(&mut rng)?, store.clone(), &mut rng);
        assert!(
            refused(reopened.map(drop), "first epoch"),
            "refused at the open"
        );
        store.put(SOURCE_TABLE, KEY_POSITION, b"\x00\x01")?;
        let reopened = StoredSource::open(params(&mut rng)?, store, &mut rng);
        assert!(matches!(reopened, Err(Error::Record { .. })));
        Ok(())
    }
}
