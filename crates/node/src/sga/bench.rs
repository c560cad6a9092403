//! The figures of `m2msec bench` for SGA: per key exchange (negotiation A1–A5 and exchange
//! B1–B7), the time inside the inviting device's calls, the invited device's and the server's,
//! and their operation counts, for each group (MODP-2048, the paper's setting, and
//! Ristretto255).
//!
//! The deployment (keys, registrations) is generated once per group; then many exchanges run on
//! it in memory (`sga::sim::World::run_metered`).

use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::Endpoint;
use m2msec_protocol::sga::sim::{SERVER_ROLE, Spec, World};

use super::config::GroupName;
use crate::error::{Error, Result};
use crate::harness::figure::{Figure, OPS_FIGURES, busy_meter, micros};

/// What one group costs per key exchange.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeCost {
    /// Mean time inside the inviting device's (d_i) calls.
    pub initiator: Duration,
    /// Mean time inside the invited device's (d_j) calls.
    pub responder: Duration,
    /// Mean time inside the server's calls.
    pub server: Duration,
    /// d_i's operations per exchange (symmetric, hash, redundancy, asymmetric).
    pub initiator_ops: [f64; 4],
    /// d_j's.
    pub responder_ops: [f64; 4],
    /// The server's.
    pub server_ops: [f64; 4],
}

/// Runs `exchanges` key exchanges over `group` (after registration and one warm-up) and
/// measures them.
///
/// # Errors
///
/// Set-up errors, or [`Error::Usage`] if an exchange fails (a benchmark of failures means
/// nothing).
pub fn measure(group: GroupId, exchanges: u32, seed: u64) -> Result<ExchangeCost> {
    let exchanges = exchanges.max(1);
    let mut rng = SeededRng::from_seed_u64(seed);
    let spec = Spec {
        group,
        ..Spec::default()
    };
    let mut world = World::generate(&spec, &mut rng)?;
    world.register_all(&mut rng)?;
    let mut exchange = |world: &mut World, busy: &mut [Duration; 3]| -> Result<()> {
        let meter = &mut busy_meter(busy, [1, 2, SERVER_ROLE]);
        if world.exchange(&mut rng, AeadSuite::Aes128Ccm8, meter)? {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "benchmark exchange failed: {:?}",
                world.events.devices
            )))
        }
    };
    let mut busy = [Duration::ZERO; 3];
    exchange(&mut world, &mut busy)?; // warm-up, excluded
    let before = [
        world.devices[0].op_counts(),
        world.devices[1].op_counts(),
        world.server.op_counts(),
    ];
    let mut busy = [Duration::ZERO; 3];
    for _ in 0..exchanges {
        exchange(&mut world, &mut busy)?;
    }
    Ok(ExchangeCost {
        initiator: busy[0] / exchanges,
        responder: busy[1] / exchanges,
        server: busy[2] / exchanges,
        initiator_ops: (world.devices[0].op_counts() - before[0]).per_run(exchanges),
        responder_ops: (world.devices[1].op_counts() - before[1]).per_run(exchanges),
        server_ops: (world.server.op_counts() - before[2]).per_run(exchanges),
    })
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
            ("device", cost.initiator, cost.initiator_ops),
            ("peer_device", cost.responder, cost.responder_ops),
            ("server", cost.server, cost.server_ops),
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
