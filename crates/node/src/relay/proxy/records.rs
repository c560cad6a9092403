//! What the proxy keeps in its store: the engine's records
//! (`m2msec_protocol::relay::proxy::records`, where the tables are described), with this crate's
//! errors and the log of records skipped at start.

use serde::Serialize;

use m2msec_protocol::relay::proxy::records as engine;
pub(crate) use m2msec_protocol::relay::proxy::records::*;
use m2msec_store::Store;

use crate::error::{Error, Result};
use crate::hex;

/// Reads the proxy's records, logging those skipped because they do not decode.
///
/// # Errors
///
/// [`Error::Store`] if the store cannot be read.
pub(crate) fn load(store: &dyn Store) -> Result<Loaded> {
    let loaded = engine::load(store)?;
    for (table, key) in &loaded.skipped {
        tracing::warn!(table, key = %hex(key), "record skipped: does not decode");
    }
    Ok(loaded)
}

/// JSON of a record (the types serialise infallibly: strings, numbers, lists).
pub(crate) fn json<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    engine::json(record).map_err(|e| Error::Control(format!("relay proxy record: {e}")))
}
