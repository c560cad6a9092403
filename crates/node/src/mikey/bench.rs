//! The figures of `m2msec bench` for MIKEY.
//!
//! - The initiator's cost per exchange in the distributed mode (time inside the initiator's
//!   calls, and its operation counts) against RFC 3830's plain public-key mode, the cost the
//!   distributed mode saves the constrained device from; pre-shared-key mode for reference.
//! - The responder's exchanges per second in each mode: exchanges divided by the time spent
//!   inside the responder's calls over many in-memory exchanges.
//!
//! Every deployment's RSA keys are generated once; then many exchanges run on it.

use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::Endpoint;
use m2msec_protocol::mikey::sim::{INITIATOR_ROLE, RESPONDER_ROLE, World};
use m2msec_protocol::mikey::{InitiatorEvent, ModeName};

use super::deployment::Params;
use crate::error::{Error, Result};
use crate::harness::figure::{Figure, Metered, OPS_FIGURES, metered_runs, micros, per_sec};

/// What one mode costs per exchange: the time inside the initiator's and the responder's
/// calls, and the initiator's operations.
pub type ModeCost = Metered<2, 1>;

/// Runs `exchanges` honest exchanges of `params` (after one warm-up) and measures them.
///
/// # Errors
///
/// Set-up errors, or [`Error::Usage`] if an exchange fails (a benchmark of failures means
/// nothing).
pub fn measure(params: &Params, exchanges: u32, seed: u64) -> Result<ModeCost> {
    params.check()?;
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut world = World::generate(&params.spec(), &mut rng)?;
    let roles = [INITIATOR_ROLE, RESPONDER_ROLE];
    metered_runs(
        &mut world,
        exchanges,
        roles,
        |w| [w.initiator.op_counts()],
        |w, meter| {
            w.run_honest_metered(&mut rng, meter)?;
            let ok = w
                .events
                .initiator
                .iter()
                .any(|e| matches!(e, InitiatorEvent::Established(_)));
            let failed = (!ok).then(|| {
                let last = w.events.initiator.last();
                Error::Usage(format!("benchmark exchange failed: {last:?}"))
            });
            // Keep the event logs short over long runs.
            w.events.initiator.clear();
            w.events.responder.clear();
            for e in &mut w.events.third_parties {
                e.clear();
            }
            failed.map_or(Ok(()), Err)
        },
    )
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
            micros(cost.busy[0]),
            micros(pk.busy[0]),
        ));
        for (k, name) in OPS_FIGURES {
            out.push(Figure::against(
                format!("{p}.initiator.{name}_ops_per_exchange"),
                "ops",
                cost.ops[0][k],
                pk.ops[0][k],
            ));
        }
    }
    out.push(Figure::plain(
        "mikey.distributed.initiator.redundancy_ops_per_exchange".into(),
        "ops",
        distributed.ops[0][2],
    ));
    out.push(Figure::plain(
        "mikey.pk.initiator.time_per_exchange".into(),
        "us",
        micros(pk.busy[0]),
    ));
    out.push(Figure::plain(
        "mikey.pk.initiator.asymmetric_ops_per_exchange".into(),
        "ops",
        pk.ops[0][3],
    ));
    for (mode, cost) in [
        (ModeName::Distributed, &distributed),
        (ModeName::Pk, &pk),
        (ModeName::Psk, &psk),
    ] {
        out.push(Figure::plain(
            format!("mikey.{}.responder.exchanges_per_sec", mode.name()),
            "1/s",
            per_sec(cost.busy[1]),
        ));
        out.push(Figure::plain(
            format!("mikey.{}.in_memory.exchanges_per_sec", mode.name()),
            "1/s",
            per_sec(cost.total),
        ));
    }
    Ok(out)
}
