//! The table of completion against loss that `m2msec bench` prints (issue 19): for each
//! protocol and each loss rate from 0 to 30 % (in each direction), the share of runs that
//! completed, their virtual time, and the share that completed within 10× the lossless time.
//! Times are virtual: what the link and the retransmissions cost, not what a machine takes. The
//! lossless time is the 0 % row of the same table.

use super::{Link, Trial, not_started};
use crate::mikey::ModeName;

/// The loss rates of the table.
pub const LOSS_RATES: [f64; 7] = [0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30];

/// The protocols the table covers (the relay has no in-memory network yet).
pub const PROTOCOLS: [&str; 4] = ["collab", "mikey", "sga", "e2sec"];

/// The goal of issue 19: complete within this many times the lossless time.
pub const GOAL_FACTOR: u32 = 10;

/// One loss rate of a [`Table`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Runs.
    pub runs: usize,
    /// Share of the runs that completed, in %.
    pub completed: f64,
    /// Mean virtual time of the completed runs, in s.
    pub mean: f64,
    /// 95th percentile of the virtual time of the completed runs, in s.
    pub p95: f64,
    /// Share of the runs that completed within [`GOAL_FACTOR`] × the lossless time, in %.
    pub within_goal: f64,
    /// Mean datagrams sent per run (retransmissions and answers to copies included).
    pub datagrams: f64,
}

/// One protocol's completion against loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The protocol.
    pub protocol: String,
    /// Mean virtual time of the lossless runs (the 0 % row), in s.
    pub lossless: f64,
    /// One row per loss rate, [`LOSS_RATES`] in order.
    pub rows: Vec<Row>,
}

/// Runs `runs` trials of `protocol` per loss rate, seeds from `seed` on.
#[must_use]
pub fn measure(protocol: &str, runs: u32, seed: u64) -> Table {
    let seeds = seed..seed.saturating_add(u64::from(runs.max(1)));
    // One MIKEY deployment for the whole table: its RSA keys take longer than all its runs.
    let mut mikey = (protocol == "mikey").then(|| super::Mikey::new(ModeName::Distributed, seed));
    let mut per_rate = Vec::new();
    for loss in LOSS_RATES {
        let link = Link::lossy(loss);
        let trials: Vec<Trial> = match (protocol, &mut mikey) {
            (_, Some(Ok(m))) => seeds.clone().map(|s| m.run(&link, s)).collect(),
            (_, Some(Err(e))) => seeds.clone().map(|_| not_started(e)).collect(),
            ("collab", None) => seeds.clone().map(|s| super::collab(&link, s)).collect(),
            ("sga", None) => seeds.clone().map(|s| super::sga(&link, s, 3)).collect(),
            ("e2sec", None) => seeds.clone().map(|s| super::e2sec(&link, s)).collect(),
            // Not one of [`PROTOCOLS`]: every run fails to start, saying why.
            _ => {
                let why = format!("no loss trials of {protocol}");
                seeds.clone().map(|_| not_started(&why)).collect()
            }
        };
        per_rate.push((loss, trials));
    }
    let lossless = per_rate
        .first()
        .map_or(0.0, |(_, trials)| mean(&completed_times(trials)));
    let rows = per_rate
        .iter()
        .map(|(loss, trials)| row(*loss, trials, lossless))
        .collect();
    Table {
        protocol: protocol.to_owned(),
        lossless,
        rows,
    }
}

impl Table {
    /// A row's mean time against the lossless time (0 without a lossless time).
    #[must_use]
    pub fn ratio(&self, row: &Row) -> f64 {
        if self.lossless > 0.0 {
            row.mean / self.lossless
        } else {
            0.0
        }
    }
}

impl Row {
    /// The loss rate in whole percent.
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rates in [0, 1)
    pub fn loss_percent(&self) -> u32 {
        (self.loss * 100.0).round() as u32
    }
}

#[allow(clippy::cast_precision_loss)] // counts of datagrams
fn row(loss: f64, trials: &[Trial], lossless: f64) -> Row {
    let mut times = completed_times(trials);
    times.sort_by(f64::total_cmp);
    let budget = lossless * f64::from(GOAL_FACTOR);
    let within = times.iter().filter(|t| **t <= budget).count();
    Row {
        loss,
        runs: trials.len(),
        completed: share(times.len(), trials.len()),
        mean: mean(&times),
        p95: percentile(&times, 95),
        within_goal: share(within, trials.len()),
        datagrams: mean(&trials.iter().map(|t| t.sent as f64).collect::<Vec<_>>()),
    }
}

fn completed_times(trials: &[Trial]) -> Vec<f64> {
    trials
        .iter()
        .filter(|t| t.completed)
        .map(|t| t.took.as_secs_f64())
        .collect()
}

#[allow(clippy::cast_precision_loss)] // counts of runs
fn share(part: usize, all: usize) -> f64 {
    if all == 0 {
        0.0
    } else {
        100.0 * part as f64 / all as f64
    }
}

#[allow(clippy::cast_precision_loss)] // counts of runs
fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], pct: usize) -> f64 {
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::LATENCY;

    #[test]
    fn the_table_has_every_rate() {
        let table = measure("e2sec", 3, 1);
        assert_eq!(table.rows.len(), LOSS_RATES.len());
        // A lossless E2SEC run: warrant request and grant, AuthInit, AuthReply, Confirm.
        assert!((table.lossless - 5.0 * LATENCY.as_secs_f64()).abs() < 1e-9);
        assert!((table.rows[0].completed - 100.0).abs() < 1e-9);
        assert!((table.rows[0].within_goal - 100.0).abs() < 1e-9);
        assert!((table.ratio(&table.rows[0]) - 1.0).abs() < 1e-9);
        let percents: Vec<u32> = table.rows.iter().map(Row::loss_percent).collect();
        assert_eq!(percents, [0, 5, 10, 15, 20, 25, 30]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!((percentile(&v, 95) - 19.0).abs() < 1e-9);
        assert!((percentile(&v[..1], 95) - 1.0).abs() < 1e-9);
        assert!(percentile(&[], 95).abs() < 1e-9);
    }
}
