//! `m2msec bench`'s table of completion against loss (issue 19), measured by
//! [`m2msec_protocol::trial::table`] on the in-memory network with a one-way delay, as figures
//! and as text.

use std::fmt::Write as _;

use m2msec_protocol::trial::LATENCY;
pub use m2msec_protocol::trial::table::{GOAL_FACTOR, LOSS_RATES, PROTOCOLS, Row, Table, measure};

use crate::harness::figure::Figure;

/// Figures `PROTOCOL.loss.PCT.completed` (%), `….virtual_time` (s, mean of the completed runs,
/// against the lossless time), `….p95_time` (s), `….ratio` (mean time / lossless time),
/// `….within_10x` (%) and `….datagrams` (mean sent per run) for `protocol`, `runs` trials per
/// loss rate, seeds from `seed` on.
#[must_use]
pub fn figures(protocol: &str, runs: u32, seed: u64) -> Vec<Figure> {
    figures_of(&measure(protocol, runs, seed))
}

/// The figures of a measured table (see [`figures`]).
#[must_use]
pub fn figures_of(table: &Table) -> Vec<Figure> {
    let mut out = Vec::new();
    for r in &table.rows {
        let name = |what: &str| format!("{}.loss.{:02}.{what}", table.protocol, r.loss_percent());
        out.push(Figure::plain(name("completed"), "%", r.completed));
        out.push(Figure::against(
            name("virtual_time"),
            "s",
            r.mean,
            table.lossless,
        ));
        out.push(Figure::plain(name("p95_time"), "s", r.p95));
        out.push(Figure::plain(name("ratio"), "x", table.ratio(r)));
        out.push(Figure::plain(
            name(&format!("within_{GOAL_FACTOR}x")),
            "%",
            r.within_goal,
        ));
        out.push(Figure::plain(name("datagrams"), "msgs", r.datagrams));
    }
    out
}

/// The table as text, one line per loss rate.
#[must_use]
pub fn render(table: &Table) -> String {
    let runs = table.rows.first().map_or(0, |r| r.runs);
    let mut s = format!(
        "{} against loss in each direction: {runs} runs per rate, in memory, {} ms one way; \
         lossless {:.3} s\n",
        table.protocol,
        LATENCY.as_millis(),
        table.lossless
    );
    let _ = writeln!(
        s,
        "  {:>5}  {:>9}  {:>9}  {:>8}  {:>14}  {:>11}  {:>9}",
        "loss",
        "completed",
        "mean (s)",
        "p95 (s)",
        "mean/lossless",
        format!("within {GOAL_FACTOR}x"),
        "datagrams"
    );
    for r in &table.rows {
        let _ = writeln!(
            s,
            "  {:>3} %  {:>7.1} %  {:>9.3}  {:>8.3}  {:>14.1}  {:>9.1} %  {:>9.1}",
            r.loss_percent(),
            r.completed,
            r.mean,
            r.p95,
            table.ratio(r),
            r.within_goal,
            r.datagrams
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_and_the_text_have_every_rate_and_its_goal_column() {
        let table = measure("e2sec", 3, 1);
        let figures = figures_of(&table);
        assert_eq!(figures.len(), 6 * LOSS_RATES.len());
        for name in [
            "e2sec.loss.00.completed",
            "e2sec.loss.05.virtual_time",
            "e2sec.loss.30.within_10x",
            "e2sec.loss.30.ratio",
        ] {
            assert!(figures.iter().any(|f| f.name == name), "{name}");
        }
        let text = render(&table);
        assert!(text.contains("within 10x") && text.lines().count() == 2 + LOSS_RATES.len());
    }
}
