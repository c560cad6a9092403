//! The source in the node: the protocol's [`Source`] with its durable state, as the
//! `m2msec relay` commands and the demo use it.
//!
//! The source's store ([`SOURCE_TABLE`]) keeps the stream position, the storage the proxy
//! created for it and the forwards it made. The position is written **before** the messages
//! sealed from it leave ([`SourceNode::seal_batch`] persists once per batch, then returns the
//! batch): a source killed at any moment and run again continues after the last position
//! written, so it never reuses a key index or a message id — at worst ids of a batch that never
//! left are skipped.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use m2msec_crypto::pre;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::SigningKey;
use m2msec_protocol::relay::{Source, StreamPosition};
use m2msec_protocol::{Millis, OpCounts};
use m2msec_store::{Store, WriteOp};
use m2msec_wire::cbor::Bytes;
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::{self, SinkGrant};
use serde::{Deserialize, Serialize};

use super::config::SourceSetup;
use crate::error::{Error, Result};
use crate::runtime::coap::Transmission;
use crate::runtime::driver::open_store;

/// The source's table: [`KEY_POSITION`], [`KEY_STORAGE`], and one `forward/{id}` entry per
/// forward it created.
pub const SOURCE_TABLE: &str = "relay_source";
/// Key of the stream position ([`StreamPosition::to_bytes`]).
pub const KEY_POSITION: &[u8] = b"position";
/// Key of the storage record (JSON [`StorageRecord`]).
pub const KEY_STORAGE: &[u8] = b"storage";
/// Key of the epoch of the stream's first message (u32 big endian): where a grant starts by
/// default.
pub const KEY_FIRST_EPOCH: &[u8] = b"first_epoch";
const FORWARD_PREFIX: &str = "forward/";

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

/// A source with its store.
pub struct SourceNode {
    source: Source,
    signer: SigningKey,
    store: Arc<dyn Store>,
    proxy: SocketAddr,
    capacity: u64,
    udp: bool,
    coap: Transmission,
}

impl core::fmt::Debug for SourceNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SourceNode")
            .field("source", &self.source)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl SourceNode {
    /// The source of `setup`, resumed from the position in its store (created if missing).
    ///
    /// # Errors
    ///
    /// Store errors; [`Error::Control`] for a position of another stream or an unusable config.
    pub fn open(setup: SourceSetup, rng: &mut dyn CryptoRng) -> Result<Self> {
        let store = open_store(Some(&setup.state))?;
        Self::with_store(setup, store, rng)
    }

    /// The source of `setup` over `store` (the demo gives an in-memory one).
    ///
    /// # Errors
    ///
    /// As [`SourceNode::open`].
    pub fn with_store(
        setup: SourceSetup,
        store: Arc<dyn Store>,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self> {
        let resume = match store.get(SOURCE_TABLE, KEY_POSITION)? {
            Some(bytes) => Some(StreamPosition::from_bytes(&bytes).map_err(|e| {
                Error::config(&setup.state, format!("stored stream position: {e}"))
            })?),
            None => None,
        };
        let signer = SigningKey::from_pem(&setup.owner.to_pem()?)?;
        let source = Source::new(setup.config, setup.seed, setup.owner, resume, rng)?;
        Ok(Self {
            source,
            signer,
            store,
            proxy: setup.proxy,
            capacity: setup.capacity,
            udp: setup.udp,
            coap: setup.coap,
        })
    }

    /// The proxy's CoAP address from the config.
    #[must_use]
    pub fn proxy(&self) -> SocketAddr {
        self.proxy
    }

    /// The CoAP client settings for talking to the proxy: the config's transmission
    /// parameters on [`super::client::streaming_config`].
    #[must_use]
    pub fn client_config(&self) -> crate::runtime::coap::Config {
        self.coap.apply(super::client::streaming_config())
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
    /// [`Error::Control`] for a clock beyond the last epoch.
    pub fn epoch_at(&self, now: Millis) -> Result<u32> {
        Ok(self.source.epoch_at(now)?)
    }

    /// The `store` request of this source: its owner key, URL, capacity, and whether a UDP port
    /// is wanted.
    #[must_use]
    pub fn store_request(&self) -> api::StoreRequest {
        api::StoreRequest {
            owner_key: Bytes(self.signer.verifying_key().to_bytes()),
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
    /// [`Error::Control`] for a payload the suite cannot seal; [`Error::Store`] if the position
    /// could not be made durable (then nothing may be sent: the caller drops the batch, and the
    /// next run starts a new section).
    pub fn seal_batch(
        &mut self,
        now: Millis,
        payloads: &[Vec<u8>],
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<RelayMessage>> {
        let mut out = Vec::with_capacity(payloads.len() + 1);
        for p in payloads {
            out.extend(self.source.seal(now, p, rng)?);
        }
        let position = self.source.position().to_bytes();
        let mut ops = vec![WriteOp::Put {
            table: SOURCE_TABLE,
            key: KEY_POSITION,
            value: &position,
        }];
        let first = self.epoch_at(now)?.to_be_bytes();
        if self.first_epoch()?.is_none() {
            ops.push(WriteOp::Put {
                table: SOURCE_TABLE,
                key: KEY_FIRST_EPOCH,
                value: &first,
            });
        }
        self.store.write_batch(&ops)?;
        Ok(out)
    }

    /// The grant of `sink_url` for `epochs`: one re-encryption key per epoch to `sink_key`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for more epochs than a grant carries.
    pub fn grant(
        &mut self,
        sink_url: &str,
        sink_key: &pre::PublicKey,
        epochs: RangeInclusive<u32>,
    ) -> Result<SinkGrant> {
        let rekeys = self
            .source
            .rekeys_for(sink_key, epochs)
            .map_err(|e| Error::Usage(e.to_string()))?;
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
        let signature = self
            .signer
            .sign(rng, &api::signed_input(path, now.0, &payload));
        api::Signed {
            payload: Bytes(payload),
            timestamp_ms: now.0,
            signature: Bytes(signature),
            key: Bytes(self.signer.verifying_key().to_bytes()),
        }
    }

    /// The epoch of the stream's first message, if it sent any.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn first_epoch(&self) -> Result<Option<u32>> {
        Ok(self
            .store
            .get(SOURCE_TABLE, KEY_FIRST_EPOCH)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(u32::from_be_bytes))
    }

    /// The storage recorded by `store`, if any.
    ///
    /// # Errors
    ///
    /// Store errors, or a record that does not decode.
    pub fn storage(&self) -> Result<Option<StorageRecord>> {
        match self.store.get(SOURCE_TABLE, KEY_STORAGE)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Control(format!("stored storage record: {e}"))),
            None => Ok(None),
        }
    }

    /// Records the storage the proxy created.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub fn save_storage(&self, record: &StorageRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Control(e.to_string()))?;
        self.store.put(SOURCE_TABLE, KEY_STORAGE, &bytes)?;
        Ok(())
    }

    /// Records a forward.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub fn save_forward(&self, record: &ForwardRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Control(e.to_string()))?;
        let key = format!("{FORWARD_PREFIX}{:010}", record.forward_id);
        self.store.put(SOURCE_TABLE, key.as_bytes(), &bytes)?;
        Ok(())
    }

    /// The forwards recorded, by id.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn forwards(&self) -> Result<Vec<ForwardRecord>> {
        Ok(self
            .store
            .scan(SOURCE_TABLE)?
            .into_iter()
            .filter(|(k, _)| k.starts_with(FORWARD_PREFIX.as_bytes()))
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }
}
