//! `m2msec trace collab`: the protocol crate's deterministic annotated trace
//! (`m2msec_protocol::collab::trace`, the generator of the committed `vectors/collab/`), for
//! the deployment shape given on the command line.

use m2msec_protocol::collab::trace::render;

use super::deployment::Params;
use crate::error::Result;

/// Runs one in-memory collab session with `seed` and returns its annotated trace: every
/// datagram in order with sender, receiver, named fields, the plaintext of sealed bodies and
/// hex, then the keys both ends derived. Same seed and shape, same bytes.
///
/// # Errors
///
/// Parameter and key generation errors, or a run that does not establish a key.
pub fn trace(params: &Params, seed: u64) -> Result<String> {
    params.check()?;
    Ok(render(&params.spec(), seed)?)
}
