//! A deterministic annotated trace of one collab run: every datagram in order with its sender,
//! receiver, message type, named fields and hex, then the keys the run derived.
//!
//! Same seed, same parameters → the same bytes, on any machine: the roles run in memory
//! ([`super::memory`]) with `SeededRng` streams and a fixed clock. Secrets inside sealed fields
//! stay sealed (the wire crate redacts them); the pre-shared keys and the session key are shown
//! at the end because the trace is for checking implementations, and every key in it comes
//! from a public seed.

use std::fmt::Write as _;

use m2msec_wire::collab::Message;

use super::deployment::{DeploymentKeys, Params, Topology};
use super::memory::{MemoryDeployment, PORT};
use crate::error::Result;
use crate::hex;

/// Bytes of hex per line in a trace.
const HEX_LINE: usize = 32;

/// Runs one in-memory collab session with `seed` and returns its annotated trace.
///
/// # Errors
///
/// Parameter, key generation and role construction errors; a failed session is part of the
/// trace, not an error.
pub fn trace(params: &Params, seed: u64) -> Result<String> {
    let mut deployment = MemoryDeployment::new(params, seed)?.recording();
    let result = deployment.run_session()?;
    let topology = deployment.topology.clone();
    let mut out = String::new();
    let _ = writeln!(out, "# m2msec collab trace");
    let _ = writeln!(
        out,
        "# seed {seed}, suite {}, {} proxies, threshold {}, sharing {:?}, faulty {} ({:?})",
        params.suite.name(),
        params.proxies,
        params.threshold,
        params.sharing,
        params.faulty,
        params.fault,
    );
    let _ = writeln!(
        out,
        "# clock starts at {} ms since the UNIX epoch and only moves on timeouts",
        super::memory::START.0
    );
    let _ = writeln!(out, "# addresses:");
    let _ = writeln!(out, "#   client  {}", topology.client);
    let _ = writeln!(out, "#   trusted {}", topology.trusted);
    let _ = writeln!(out, "#   server  {}", topology.server);
    for (i, p) in topology.proxies.iter().enumerate() {
        let _ = writeln!(out, "#   {:<7} {p}", super::deployment::proxy_name(i + 1));
    }
    let _ = writeln!(out);
    let name = |t: &Topology, a| t.name_of(a).unwrap_or_else(|| a.to_string());
    for (i, d) in deployment.log.iter().enumerate() {
        let _ = write!(
            out,
            "## {:>3}  {} -> {}  t={} ms  {} bytes  ",
            i + 1,
            name(&topology, d.from),
            name(&topology, d.to),
            d.at.0 - super::memory::START.0,
            d.payload.len()
        );
        match Message::decode(&d.payload) {
            Ok(m) => {
                let _ = writeln!(out, "{}", m.name());
                for (field, value) in m.fields() {
                    let _ = writeln!(out, "     {field}: {value}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "(does not decode: {e})");
            }
        }
        for chunk in d.payload.chunks(HEX_LINE) {
            let _ = writeln!(out, "     | {}", hex(chunk));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "# result");
    let _ = writeln!(out, "#   session {}", result.session);
    match &result.client {
        Ok(e) => {
            let _ = writeln!(out, "#   client: established with {}", e.peer);
            let _ = writeln!(out, "#   participants: {}", e.participants.join(", "));
            let _ = writeln!(
                out,
                "#   session key MK (client): {}",
                hex(e.key.expose_for_testing_only())
            );
            let _ = writeln!(
                out,
                "#   key fingerprint (client): {}",
                hex(&e.key.fingerprint())
            );
        }
        Err(err) => {
            let _ = writeln!(out, "#   client: failed: {err}");
        }
    }
    match &result.server {
        Some(e) => {
            let _ = writeln!(
                out,
                "#   session key MK (server): {}",
                hex(e.key.expose_for_testing_only())
            );
        }
        None => {
            let _ = writeln!(out, "#   server: no key");
        }
    }
    let _ = writeln!(out, "#   keys match: {}", result.keys_match());
    let _ = writeln!(
        out,
        "#   datagrams: {}, bytes: {}",
        deployment.log.len(),
        deployment
            .log
            .iter()
            .map(|d| d.payload.len())
            .sum::<usize>()
    );
    let ops = deployment.client_ops();
    let _ = writeln!(
        out,
        "#   client operations: symmetric {}, hash {}, redundancy {}, asymmetric {}",
        ops.symmetric, ops.hash, ops.redundancy, ops.asymmetric
    );
    // The pre-shared keys, re-derived from the seed the same way the deployment drew them.
    let mut rng = m2msec_crypto::rng::SeededRng::from_seed_u64(seed);
    let keys = DeploymentKeys::generate(params.suite, params.aead, params.proxies, &mut rng)?;
    let _ = writeln!(out, "# pre-shared keys ({:?})", params.aead);
    let _ = writeln!(out, "#   kAT  {}", hex(keys.client_trusted.as_bytes()));
    for (i, (ap, pt)) in keys
        .client_proxy
        .iter()
        .zip(&keys.proxy_trusted)
        .enumerate()
    {
        let _ = writeln!(out, "#   kAP{}  {}", i + 1, hex(ap.as_bytes()));
        let _ = writeln!(out, "#   kP{}T  {}", i + 1, hex(pt.as_bytes()));
    }
    let _ = PORT;
    Ok(out)
}
