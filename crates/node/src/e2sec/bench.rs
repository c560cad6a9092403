//! The cost table of `m2msec bench` for E2SEC, in the shape of the paper's Tables V and VI.
//!
//! For each group (DSA-1024/160 as in the paper, DSA-2048/256, Ristretto255):
//! - Table V: the time of one primitive on this machine — T_E one exponentiation of an
//!   arbitrary element, T_M one multiplication of group elements, T_H one hash to a scalar,
//!   T_A one scalar addition — each the mean of many calls;
//! - Table VI, per variant and per side (MTCD, MTCS): the operations counted during real
//!   in-memory authentications (the server initiates; the device's and server's `OpTally` are
//!   reset before each one, so warrant issuance and checking are not in it), the op-count
//!   estimate te·T_E + tm·T_M + th·T_H + ta·T_A, and beside it the measured time spent inside
//!   that side's calls during the same run. The paper's own counts (E-ElGamal
//!   5T_E+6T_M+2T_H+T_A plus the precomputed T_M+T_A, E-Schnorr 4T_E+3T_M+2T_H+T_A, E-DSA
//!   6T_E+5T_M+2T_H+T_A) are priced with the same primitive times for comparison.
//!
//! The measured time exceeds the estimate most in the DSA groups: every decoded element gets a
//! membership check (an exponentiation by q there), and CBOR, the transcript hashes and the
//! key-confirmation HMAC cost time too; neither the paper's counts nor ours price them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use m2msec_crypto::group::{Group, GroupId, OpTally};
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::GroupOps;
use m2msec_protocol::e2sec::Variant;
use m2msec_protocol::e2sec::cost::{Cell, CostTable, Primitives, SideCost, paper_ops};
use m2msec_protocol::e2sec::sim::{DEVICE_ROLE, SERVER_ROLE, Spec, World};

use super::{GROUPS, group_name};
use crate::error::{Error, Result};
use crate::harness::figure::{Figure, busy_meter, micros};

fn mean_us(iterations: u32, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

/// Times the four primitives of `group` on this machine.
///
/// # Errors
///
/// A group operation failing, which it does not on valid inputs.
pub fn primitives(group: GroupId, seed: u64) -> Result<Primitives> {
    let g = Group::new(group);
    let mut rng = SeededRng::from_seed_u64(seed);
    let a = g.random_scalar(&mut rng);
    let b = g.random_scalar(&mut rng);
    let x = g.exp_generator(&g.random_scalar(&mut rng))?;
    let y = g.exp_generator(&g.random_scalar(&mut rng))?;
    let exps = if group == GroupId::Ristretto255 {
        200
    } else {
        30
    };
    let te = mean_us(exps, || {
        let _ = black_box(g.exp(black_box(&x), black_box(&a)));
    });
    let tm = mean_us(2000, || {
        let _ = black_box(g.mul(black_box(&x), black_box(&y)));
    });
    let th = mean_us(2000, || {
        black_box(g.hash_to_scalar(b"m2msec bench", &[b"message", b"K"]));
    });
    let ta = mean_us(20_000, || {
        let _ = black_box(g.scalar_add(black_box(&a), black_box(&b)));
    });
    Ok(Primitives { te, tm, th, ta })
}

/// Runs `exchanges` authentications of `variant` over `group` (after one warm-up) and reads
/// each side's counts and time.
///
/// # Errors
///
/// Set-up errors, or [`Error::Usage`] if an authentication fails.
pub fn measure(group: GroupId, variant: Variant, exchanges: u32, seed: u64) -> Result<Cell> {
    let exchanges = exchanges.max(1);
    let spec = Spec {
        group,
        variant,
        ..Spec::default()
    };
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = World::generate(&spec, &mut rng)?;
    w.fetch_warrants(&mut rng)?;
    let mut busy = [Duration::ZERO; 2];
    let mut tally = [OpTally::default(); 2];
    // One warm-up, then the `exchanges` counted.
    for run in 0..=exchanges {
        w.device.take_tally();
        w.server.take_tally();
        let ok = w.authenticate_metered(
            &mut rng,
            &mut busy_meter(&mut busy, [DEVICE_ROLE, SERVER_ROLE]),
        )?;
        if !ok {
            return Err(Error::Usage(format!(
                "benchmark authentication failed ({} {})",
                group.name(),
                variant.name()
            )));
        }
        if run == 0 {
            busy = [Duration::ZERO; 2];
        } else {
            tally[0] += w.device.take_tally();
            tally[1] += w.server.take_tally();
        }
    }
    let side = |i: usize| SideCost {
        ops: GroupOps::from(&tally[i]).per_run(u64::from(exchanges)),
        measured: busy[i] / exchanges,
    };
    Ok(Cell {
        device: side(0),
        server: side(1),
    })
}

/// Measures the cost table, `exchanges` authentications per cell.
///
/// # Errors
///
/// As [`measure`].
pub fn cost_table(exchanges: u32, seed: u64) -> Result<CostTable> {
    let mut groups = Vec::new();
    for (i, group) in GROUPS.into_iter().enumerate() {
        let prims = primitives(group, seed)?;
        let mut cells = Vec::new();
        for (j, variant) in Variant::ALL.into_iter().enumerate() {
            cells.push((
                variant,
                measure(group, variant, exchanges, seed ^ (i * 3 + j) as u64)?,
            ));
        }
        groups.push((group, prims, cells));
    }
    Ok(CostTable { groups })
}

/// The table as figures: per group `e2sec.GROUP.t_e_us` … `t_a_us`; per variant and side
/// `e2sec.GROUP.VARIANT.SIDE.{te,tm,th,ta}` (ops per authentication),
/// `….estimate_us` (baseline: the measured time), `….measured_us`, and `….paper_estimate_us`
/// (the paper's counts priced with the same primitives; baseline: our estimate).
#[must_use]
pub fn figures_of(table: &CostTable) -> Vec<Figure> {
    let mut out = Vec::new();
    for (group, p, cells) in &table.groups {
        let g = group_name(*group);
        for (name, v) in [("t_e", p.te), ("t_m", p.tm), ("t_h", p.th), ("t_a", p.ta)] {
            out.push(Figure::plain(format!("e2sec.{g}.{name}_us"), "us", v));
        }
        for (variant, cell) in cells {
            for (side, c) in [("device", &cell.device), ("server", &cell.server)] {
                let prefix = format!("e2sec.{g}.{}.{side}", variant.name());
                for (name, v) in c.ops.columns() {
                    out.push(Figure::plain(format!("{prefix}.{name}"), "ops", v as f64));
                }
                let estimate = p.estimate(&c.ops);
                out.push(Figure::against(
                    format!("{prefix}.estimate_us"),
                    "us",
                    estimate,
                    micros(c.measured),
                ));
                out.push(Figure::plain(
                    format!("{prefix}.measured_us"),
                    "us",
                    micros(c.measured),
                ));
                out.push(Figure::against(
                    format!("{prefix}.paper_estimate_us"),
                    "us",
                    p.estimate(&paper_ops(*variant)),
                    estimate,
                ));
            }
        }
    }
    out
}

/// The table in the shape of the paper's Tables V and VI, as text.
#[must_use]
pub fn render(table: &CostTable) -> String {
    use core::fmt::Write as _;
    let mut s = String::new();
    for (group, p, cells) in &table.groups {
        let _ = writeln!(
            s,
            "e2sec cost table, {} ({}), times in us on this machine",
            group.name(),
            group_name(*group)
        );
        let _ = writeln!(
            s,
            "  Table V  primitives     T_E {:>9.2}   T_M {:>7.3}   T_H {:>7.3}   T_A {:>7.4}",
            p.te, p.tm, p.th, p.ta
        );
        let _ = writeln!(
            s,
            "  Table VI {:<9} {:<5} {:>4} {:>4} {:>4} {:>4} {:>11} {:>11} {:>11}",
            "variant", "side", "T_E", "T_M", "T_H", "T_A", "estimate", "measured", "paper-ops"
        );
        for (variant, cell) in cells {
            for (side, c) in [("MTCD", &cell.device), ("MTCS", &cell.server)] {
                let _ = writeln!(
                    s,
                    "           {:<9} {:<5} {:>4} {:>4} {:>4} {:>4} {:>11.1} {:>11.1} {:>11.1}",
                    variant.name(),
                    side,
                    c.ops.te,
                    c.ops.tm,
                    c.ops.th,
                    c.ops.ta,
                    p.estimate(&c.ops),
                    micros(c.measured),
                    p.estimate(&paper_ops(*variant)),
                );
            }
        }
    }
    s
}
