//! `m2msec trace collab`: the protocol crate's deterministic annotated trace
//! (`m2msec_protocol::collab::trace`, the generator of the committed `vectors/collab/`), for
//! the deployment shape given on the command line.

use m2msec_protocol::collab::sim::{self, Spec};
use m2msec_protocol::collab::trace::render;

use super::deployment::{Params, Suite};
use crate::error::Result;

/// The protocol crate's description of a deployment shaped by `params`.
#[must_use]
pub fn spec(params: &Params) -> Spec {
    let mut faults = vec![None; usize::from(params.proxies)];
    let first_faulty = usize::from(params.proxies.saturating_sub(params.faulty));
    for f in faults.iter_mut().skip(first_faulty) {
        *f = params.fault;
    }
    Spec {
        proxies: params.proxies,
        threshold: params.threshold,
        sharing: params.sharing,
        suite: match params.suite {
            Suite::Modern => sim::Suite::Modern,
            Suite::Classic => sim::Suite::Classic,
        },
        aead: params.aead,
        ots: params.ots,
        faults,
        timeouts: params.timeouts,
    }
}

/// Runs one in-memory collab session with `seed` and returns its annotated trace: every
/// datagram in order with sender, receiver, named fields, the plaintext of sealed bodies and
/// hex, then the keys both ends derived. Same seed and shape, same bytes.
///
/// # Errors
///
/// Parameter and key generation errors, or a run that does not establish a key.
pub fn trace(params: &Params, seed: u64) -> Result<String> {
    params.check()?;
    Ok(render(&spec(params), seed)?)
}
