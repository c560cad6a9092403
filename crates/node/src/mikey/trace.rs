//! `m2msec trace mikey`: the protocol crate's deterministic annotated trace
//! (`m2msec_protocol::mikey::trace`, the generator of the committed `vectors/mikey/`), for the
//! mode and deployment shape given on the command line.

use m2msec_protocol::mikey::trace::render;

use super::deployment::Params;
use crate::error::{Error, Result};

/// Runs one in-memory MIKEY exchange with `seed` and returns its annotated trace: every
/// datagram in hex with its header and payloads named, the opened KEMACs, and the keys both
/// ends derived. Same seed and shape, same bytes.
///
/// # Errors
///
/// Parameter and key generation errors, or an exchange that does not establish a key.
pub fn trace(params: &Params, seed: u64) -> Result<String> {
    params.check()?;
    if params.faulty > 0 {
        return Err(Error::Usage(
            "a trace shows an honest exchange; leave out --faulty".into(),
        ));
    }
    Ok(render(&params.spec(), seed)?)
}
