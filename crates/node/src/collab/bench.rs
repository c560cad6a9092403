//! The figures of `m2msec bench` for collab.
//!
//! - The client's cost of a collab run (time inside the client's calls, and its operation
//!   counts) against the paper's "simple scheme" baseline (section IV): the client itself
//!   encrypts x to B, signs it, verifies B's signature and decrypts y
//!   (`m2msec_protocol::collab::simple_scheme`), timed here with the same public-key suite.
//! - The server's handshakes per second: sessions divided by the time spent inside the
//!   server's calls over many in-memory sessions (network and other roles excluded).

use std::hint::black_box;
use std::time::{Duration, Instant};

use m2msec_crypto::rng::{CryptoRng, SeededRng};

use m2msec_protocol::Endpoint;
use m2msec_protocol::collab::ServerEvent;
use m2msec_protocol::collab::sim::{CLIENT_ROLE, SERVER_ROLE, World};
use m2msec_protocol::collab::simple_scheme::{self, SimpleScheme};

use super::deployment::{Params, Suite};
use crate::error::{Error, Result};
use crate::harness::figure::{Figure, metered_runs, micros, per_sec};

/// Mean time of the client's side of the simple scheme with `suite`, over `iterations`.
///
/// # Errors
///
/// Crypto errors (none expected).
pub fn simple_scheme_client_time(
    suite: Suite,
    iterations: u32,
    rng: &mut dyn CryptoRng,
) -> Result<Duration> {
    let scheme = SimpleScheme::generate(suite, rng)?;
    black_box(scheme.client_side(rng)?); // warm-up, not timed
    let iterations = iterations.max(1);
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(scheme.client_side(rng)?);
    }
    Ok(start.elapsed() / iterations)
}

/// Runs `sessions` in-memory collab sessions with `params` and measures them against the
/// simple scheme.
///
/// # Errors
///
/// Set-up errors, or [`Error::Usage`] if a session fails (a benchmark of failures means
/// nothing).
pub fn figures(params: &Params, sessions: u32, seed: u64) -> Result<Vec<Figure>> {
    params.check()?;
    let sessions = sessions.max(1);
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut world = World::generate(&params.spec(), &mut rng)?;
    // Time spent inside A's and B's calls: the network and the other roles are excluded.
    let roles = [CLIENT_ROLE, SERVER_ROLE];
    let cost = metered_runs(
        &mut world,
        sessions,
        roles,
        |w| [w.client.op_counts()],
        |w, meter| {
            let established = w.events.server.len();
            w.run_honest_metered(&mut rng, meter)?;
            let ok = w.events.server[established..]
                .iter()
                .any(|e| matches!(e, ServerEvent::Established(_)));
            ok.then_some(()).ok_or_else(|| {
                Error::Usage(format!(
                    "benchmark session failed: {:?}",
                    w.events.client.last()
                ))
            })
        },
    )?;
    let [ops] = cost.ops;
    let prefix = format!("collab.{}", params.suite.name());
    let mut rng = SeededRng::from_seed_u64(seed ^ 0x5eed);
    let baseline = simple_scheme_client_time(params.suite, sessions, &mut rng)?;
    let mut figures = vec![
        Figure::against(
            format!("{prefix}.client.time_per_run"),
            "us",
            micros(cost.busy[0]),
            micros(baseline),
        ),
        Figure::against(
            format!("{prefix}.client.asymmetric_ops_per_run"),
            "ops",
            ops[3],
            simple_scheme::ASYMMETRIC_OPS as f64,
        ),
    ];
    for (k, name) in [(0, "symmetric"), (1, "hash"), (2, "redundancy")] {
        let name = format!("{prefix}.client.{name}_ops_per_run");
        figures.push(Figure::plain(name, "ops", ops[k]));
    }
    figures.push(Figure::plain(
        format!("{prefix}.server.handshakes_per_sec"),
        "1/s",
        per_sec(cost.busy[1]),
    ));
    figures.push(Figure::plain(
        format!("{prefix}.in_memory.runs_per_sec"),
        "1/s",
        per_sec(cost.total),
    ));
    Ok(figures)
}
