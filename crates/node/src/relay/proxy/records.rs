//! What the proxy keeps in its store: the engine's records
//! (`m2msec_protocol::relay::proxy::records`, where the tables are described), with this crate's
//! errors.

use serde::Serialize;

use m2msec_protocol::relay::proxy::records as engine;
pub(crate) use m2msec_protocol::relay::proxy::records::*;

use crate::error::{Error, Result};

/// JSON of a record (the types serialise infallibly: strings, numbers, lists).
pub(crate) fn json<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    engine::json(record).map_err(|e| Error::Control(format!("relay proxy record: {e}")))
}
