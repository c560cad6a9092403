//! What `m2msec bench` measures, one figure at a time, for every protocol: a value, and where
//! it compares, the baseline measured in the same run and the ratio.

use std::time::{Duration, Instant};

use m2msec_protocol::OpCounts;
use m2msec_protocol::network::Meter;
use serde::Serialize;

use crate::error::Result;

/// One measured figure: a JSON line of `m2msec bench --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figure {
    /// What is measured.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    /// The measurement.
    pub value: f64,
    /// What it compares against, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `value / baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

impl Figure {
    /// A figure without a baseline.
    #[must_use]
    pub fn plain(name: String, unit: &'static str, value: f64) -> Self {
        Self {
            name,
            unit,
            value,
            baseline: None,
            ratio: None,
        }
    }

    /// A figure compared with `baseline` (the ratio is absent when the baseline is zero).
    #[must_use]
    pub fn against(name: String, unit: &'static str, value: f64, baseline: f64) -> Self {
        let ratio = if baseline == 0.0 {
            None
        } else {
            Some(value / baseline)
        };
        Self {
            name,
            unit,
            value,
            baseline: Some(baseline),
            ratio,
        }
    }
}

/// The operation counts a device's figures name, in the order they are listed: each with its
/// index in [`OpCounts::per_run`](m2msec_protocol::OpCounts::per_run) (redundancy only where a
/// protocol splits a secret).
pub const OPS_FIGURES: [(usize, &str); 3] = [(3, "asymmetric"), (0, "symmetric"), (1, "hash")];

/// `d` in microseconds, the unit of the benches' time figures.
#[must_use]
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// How many per second, each taking `d` (a zero `d` counts as a nanosecond).
#[must_use]
pub fn per_sec(d: Duration) -> f64 {
    1.0 / d.as_secs_f64().max(1e-9)
}

/// The meter of a metered in-memory run (`World::run_metered` and the like): the time spent in
/// each call of role `roles[i]` adds to `busy[i]`; the network's and the other roles' count
/// nowhere, so a figure is the cost of one role's own work.
pub fn busy_meter<const N: usize>(
    busy: &mut [Duration; N],
    roles: [usize; N],
) -> impl FnMut(usize, &mut dyn FnMut()) + '_ {
    move |role, call| {
        let start = Instant::now();
        call();
        if let Some(i) = roles.iter().position(|r| *r == role) {
            busy[i] += start.elapsed();
        }
    }
}

/// What [`metered_runs`] measured, each a mean per run: the time inside the calls of each
/// metered role, the wall-clock time of a whole run (every role) and each counted role's
/// operations (symmetric, hash, redundancy, asymmetric).
#[derive(Clone, Copy, Debug)]
pub struct Metered<const N: usize, const M: usize> {
    /// Time inside the calls of `roles[i]`.
    pub busy: [Duration; N],
    /// Wall-clock time of a whole in-memory run.
    pub total: Duration,
    /// Operations of the `i`-th role `ops` counts.
    pub ops: [[f64; 4]; M],
}

/// The loop of the collab, MIKEY and SGA in-memory benches (E2SEC's cost table measures
/// each cell its own way): `run` once to warm up (caches, lazy tables; excluded from
/// every figure), then `runs` times (at least once) with a meter that adds the time inside
/// each call of role `roles[i]` to `busy[i]`; `ops` reads the counted roles' operations
/// before and after.
///
/// # Errors
///
/// What `run` returned: set-up errors, or a run that failed (a benchmark of failures means
/// nothing).
pub fn metered_runs<W, const N: usize, const M: usize>(
    world: &mut W,
    runs: u32,
    roles: [usize; N],
    ops: impl Fn(&W) -> [OpCounts; M],
    mut run: impl FnMut(&mut W, Meter<'_>) -> Result<()>,
) -> Result<Metered<N, M>> {
    let runs = runs.max(1);
    run(world, &mut |_, call| call())?;
    let before = ops(world);
    let mut busy = [Duration::ZERO; N];
    let start = Instant::now();
    for _ in 0..runs {
        run(world, &mut busy_meter(&mut busy, roles))?;
    }
    let total = start.elapsed() / runs;
    let after = ops(world);
    Ok(Metered {
        busy: busy.map(|b| b / runs),
        total,
        ops: core::array::from_fn(|i| (after[i] - before[i]).per_run(runs)),
    })
}
