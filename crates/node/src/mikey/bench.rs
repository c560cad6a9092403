//! The figures of `m2msec bench` for MIKEY.
//!
//! - The initiator's cost per exchange in the distributed mode (time inside the initiator's
//!   calls, and its operation counts) against RFC 3830's plain public-key mode, the cost the
//!   distributed mode saves the constrained device from; pre-shared-key mode for reference.
//! - The responder's exchanges per second in each mode: exchanges divided by the time spent
//!   inside the responder's calls over many in-memory exchanges.
//!
//! Every deployment's RSA keys are generated once; then many exchanges run on it.

use std::time::{Duration, Instant};

use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::Endpoint;
use m2msec_protocol::mikey::sim::{INITIATOR_ROLE, RESPONDER_ROLE, World};
use m2msec_protocol::mikey::{InitiatorEvent, ModeName};

use super::deployment::Params;
use crate::error::{Error, Result};
use crate::harness::figure::{Figure, OPS_FIGURES, busy_meter, micros, per_sec};

/// What one mode costs per exchange.
#[derive(Clone, Copy, Debug)]
pub struct ModeCost {
    /// Mean time inside the initiator's calls.
    pub initiator: Duration,
    /// Mean time inside the responder's calls.
    pub responder: Duration,
    /// Mean wall-clock time of a whole in-memory exchange (every role).
    pub total: Duration,
    /// The initiator's operations per exchange (means, as reals).
    pub ops: [f64; 4],
}

/// Runs `exchanges` honest exchanges of `params` (after one warm-up) and measures them.
///
/// # Errors
///
/// Set-up errors, or [`Error::Usage`] if an exchange fails (a benchmark of failures means
/// nothing).
pub fn measure(params: &Params, exchanges: u32, seed: u64) -> Result<ModeCost> {
    params.check()?;
    let exchanges = exchanges.max(1);
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut world = World::generate(&params.spec(), &mut rng)?;
    let mut exchange = |world: &mut World, busy: &mut [Duration; 2]| -> Result<()> {
        let seen = world.events.initiator.len();
        world.run_honest_metered(
            &mut rng,
            &mut busy_meter(busy, [INITIATOR_ROLE, RESPONDER_ROLE]),
        )?;
        let ok = world.events.initiator[seen..]
            .iter()
            .any(|e| matches!(e, InitiatorEvent::Established(_)));
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "benchmark exchange failed: {:?}",
                world.events.initiator.last()
            )))
        }
    };
    let mut busy = [Duration::ZERO; 2];
    exchange(&mut world, &mut busy)?; // warm-up, excluded
    let ops0 = world.initiator.op_counts();
    let mut busy = [Duration::ZERO; 2];
    let start = Instant::now();
    for _ in 0..exchanges {
        exchange(&mut world, &mut busy)?;
        // Keep the event logs short over long runs.
        world.events.initiator.clear();
        world.events.responder.clear();
        for e in &mut world.events.third_parties {
            e.clear();
        }
    }
    let total = start.elapsed() / exchanges;
    Ok(ModeCost {
        initiator: busy[0] / exchanges,
        responder: busy[1] / exchanges,
        total,
        ops: (world.initiator.op_counts() - ops0).per_run(exchanges),
    })
}

/// The MIKEY figures: the distributed mode (shape of `params`) and pre-shared-key mode against
/// public-key mode, `exchanges` exchanges each.
///
/// # Errors
///
/// As [`measure`].
pub fn figures(params: &Params, exchanges: u32, seed: u64) -> Result<Vec<Figure>> {
    let of = |mode| Params {
        mode,
        faulty: 0,
        fault: None,
        ..params.clone()
    };
    let pk = measure(&of(ModeName::Pk), exchanges, seed)?;
    let distributed = measure(&of(ModeName::Distributed), exchanges, seed ^ 1)?;
    let psk = measure(&of(ModeName::Psk), exchanges, seed ^ 2)?;
    let mut out = Vec::new();
    for (mode, cost) in [(ModeName::Distributed, &distributed), (ModeName::Psk, &psk)] {
        let p = format!("mikey.{}", mode.name());
        out.push(Figure::against(
            format!("{p}.initiator.time_per_exchange"),
            "us",
            micros(cost.initiator),
            micros(pk.initiator),
        ));
        for (k, name) in OPS_FIGURES {
            out.push(Figure::against(
                format!("{p}.initiator.{name}_ops_per_exchange"),
                "ops",
                cost.ops[k],
                pk.ops[k],
            ));
        }
    }
    out.push(Figure::plain(
        "mikey.distributed.initiator.redundancy_ops_per_exchange".into(),
        "ops",
        distributed.ops[2],
    ));
    out.push(Figure::plain(
        "mikey.pk.initiator.time_per_exchange".into(),
        "us",
        micros(pk.initiator),
    ));
    out.push(Figure::plain(
        "mikey.pk.initiator.asymmetric_ops_per_exchange".into(),
        "ops",
        pk.ops[3],
    ));
    for (mode, cost) in [
        (ModeName::Distributed, &distributed),
        (ModeName::Pk, &pk),
        (ModeName::Psk, &psk),
    ] {
        out.push(Figure::plain(
            format!("mikey.{}.responder.exchanges_per_sec", mode.name()),
            "1/s",
            per_sec(cost.responder),
        ));
        out.push(Figure::plain(
            format!("mikey.{}.in_memory.exchanges_per_sec", mode.name()),
            "1/s",
            per_sec(cost.total),
        ));
    }
    Ok(out)
}
