//! `m2msec bench`'s table of completion against loss (issue 19): for each protocol and each
//! loss rate from 0 to 30 %, the share of runs that completed and their mean virtual time, from
//! trials on the in-memory network ([`m2msec_protocol::trial`]). Times are virtual (the network
//! has no latency): what retransmissions cost, not what a machine takes.

use m2msec_protocol::link::LinkFaults;
use m2msec_protocol::mikey::ModeName;
use m2msec_protocol::trial::{self, Trial};

use crate::collab::bench::Figure;

/// The loss rates of the table.
pub const LOSS_RATES: [f64; 5] = [0.0, 0.05, 0.10, 0.20, 0.30];

/// The protocols the table covers (the relay has no in-memory network yet).
pub const PROTOCOLS: [&str; 4] = ["collab", "mikey", "sga", "e2sec"];

/// Figures `PROTOCOL.loss.PCT.completed` (%) and `PROTOCOL.loss.PCT.virtual_time` (s, mean of
/// the completed runs) for `protocol`, `runs` trials per loss rate, seeds from `seed` on.
#[must_use]
pub fn figures(protocol: &str, runs: u32, seed: u64) -> Vec<Figure> {
    let mut out = Vec::new();
    for loss in LOSS_RATES {
        let faults = LinkFaults {
            loss,
            ..LinkFaults::default()
        };
        let seeds = seed..seed.saturating_add(u64::from(runs.max(1)));
        let trials: Vec<Trial> = match protocol {
            "mikey" => trial::mikey(ModeName::Distributed, faults, seeds),
            "collab" => seeds.map(|s| trial::collab(faults, s)).collect(),
            "sga" => seeds.map(|s| trial::sga(faults, s, 3)).collect(),
            _ => seeds.map(|s| trial::e2sec(faults, s)).collect(),
        };
        let done: Vec<&Trial> = trials.iter().filter(|t| t.completed).collect();
        #[allow(clippy::cast_precision_loss)]
        let share = 100.0 * done.len() as f64 / trials.len() as f64;
        #[allow(clippy::cast_precision_loss)]
        let mean = if done.is_empty() {
            0.0
        } else {
            done.iter().map(|t| t.took.as_secs_f64()).sum::<f64>() / done.len() as f64
        };
        let pct = (loss * 100.0).round();
        out.push(Figure::plain(
            format!("{protocol}.loss.{pct:02}.completed"),
            "%",
            share,
        ));
        out.push(Figure::plain(
            format!("{protocol}.loss.{pct:02}.virtual_time"),
            "s",
            mean,
        ));
    }
    out
}
