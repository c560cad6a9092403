//! The source in the node: the protocol's [`StoredSource`] (the source and what it keeps in its
//! store) opened from a config, with where its proxy is and how to talk to it, as the
//! `m2msec relay` commands and the demo use it.

use std::net::SocketAddr;
use std::sync::Arc;

use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::relay::source_store::{self, SourceParams};
pub use m2msec_protocol::relay::source_store::{ForwardRecord, StorageRecord, StoredSource};
use m2msec_store::Store;

use super::config::SourceSetup;
use crate::error::{Error, Result};
use crate::runtime::coap::Transmission;
use crate::runtime::driver::open_store;

impl From<source_store::Error> for Error {
    fn from(e: source_store::Error) -> Self {
        match e {
            source_store::Error::Relay(e) => Self::Relay(e),
            source_store::Error::Grant(e) => Self::Usage(e.to_string()),
            source_store::Error::Store(e) => Self::Store(e),
            e => Self::Control(e.to_string()),
        }
    }
}

/// A [`StoredSource`] with its proxy's address and CoAP settings; it derefs to the stored
/// source for sealing, grants, signatures and records.
#[derive(Debug)]
pub struct SourceNode {
    stored: StoredSource,
    proxy: SocketAddr,
    coap: Transmission,
}

impl SourceNode {
    /// The source of `setup`, resumed from the position in its store (created if missing).
    ///
    /// # Errors
    ///
    /// Store errors; [`Error::Config`] for a stored position that does not decode;
    /// [`Error::Relay`] for a position of another stream or an unusable config.
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
        let params = SourceParams {
            config: setup.config,
            seed: setup.seed,
            owner: setup.owner,
            capacity: setup.capacity,
            udp: setup.udp,
        };
        let stored = StoredSource::open(params, store, rng).map_err(|e| match e {
            source_store::Error::Record { .. } => Error::config(&setup.state, e.to_string()),
            e => e.into(),
        })?;
        Ok(Self {
            stored,
            proxy: setup.proxy,
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
}

impl core::ops::Deref for SourceNode {
    type Target = StoredSource;

    fn deref(&self) -> &StoredSource {
        &self.stored
    }
}

impl core::ops::DerefMut for SourceNode {
    fn deref_mut(&mut self) -> &mut StoredSource {
        &mut self.stored
    }
}
