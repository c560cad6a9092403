//! The figures of `m2msec bench` for SGA: per key exchange (negotiation A1–A5 and exchange
//! B1–B7), the time inside the inviting device's calls, the invited device's and the server's,
//! and their operation counts, for each group (MODP-2048, the paper's setting, and
//! Ristretto255).
//!
//! The deployment (keys, registrations) is generated once per group; then many exchanges run on
//! it in memory (`sga::sim::World::run_metered`).

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::Endpoint;
use m2msec_protocol::sga::sim::{SERVER_ROLE, Spec, World};

use super::config::GroupName;
use crate::error::{Error, Result};
use crate::harness::figure::{Figure, Metered, OPS_FIGURES, metered_runs, micros};

/// What one group costs per key exchange: the time inside the calls of the inviting device
/// (d_i), the invited device (d_j) and the server, and their operations in that order.
pub type ExchangeCost = Metered<3, 3>;

/// Runs `exchanges` key exchanges over `group` (after registration and one warm-up) and
/// measures them.
///
/// # Errors
///
/// Set-up errors, or [`Error::Usage`] if an exchange fails (a benchmark of failures means
/// nothing).
pub fn measure(group: GroupId, exchanges: u32, seed: u64) -> Result<ExchangeCost> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let spec = Spec {
        group,
        ..Spec::default()
    };
    let mut world = World::generate(&spec, &mut rng)?;
    world.register_all(&mut rng)?;
    let ops = |w: &World| {
        let [i, j] = [0, 1].map(|d| {
            w.devices
                .get(d)
                .map(Endpoint::op_counts)
                .unwrap_or_default()
        });
        [i, j, w.server.op_counts()]
    };
    metered_runs(
        &mut world,
        exchanges,
        [1, 2, SERVER_ROLE],
        ops,
        |w, meter| {
            if w.exchange(&mut rng, AeadSuite::Aes128Ccm8, meter)? {
                Ok(())
            } else {
                let events = &w.events.devices;
                Err(Error::Usage(format!(
                    "benchmark exchange failed: {events:?}"
                )))
            }
        },
    )
}

/// The SGA figures for both groups, `exchanges` key exchanges each.
///
/// # Errors
///
/// As [`measure`].
pub fn figures(exchanges: u32, seed: u64) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for (i, group) in [GroupName::Modp2048, GroupName::Ristretto255]
        .into_iter()
        .enumerate()
    {
        let cost = measure(group.into(), exchanges, seed ^ i as u64)?;
        let p = format!("sga.{}", group.name());
        for (role, time, ops) in [
            ("device", cost.busy[0], cost.ops[0]),
            ("peer_device", cost.busy[1], cost.ops[1]),
            ("server", cost.busy[2], cost.ops[2]),
        ] {
            out.push(Figure::plain(
                format!("{p}.{role}.time_per_exchange"),
                "us",
                micros(time),
            ));
            for (k, name) in OPS_FIGURES {
                out.push(Figure::plain(
                    format!("{p}.{role}.{name}_ops_per_exchange"),
                    "ops",
                    ops[k],
                ));
            }
        }
    }
    Ok(out)
}
