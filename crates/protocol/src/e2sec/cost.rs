//! The paper's cost model and its Tables V and VI ([`CostTable`]): one authentication costs
//! te·T_E + tm·T_M + th·T_H + ta·T_A, the counts taken from a run ([`GroupOps`]) or from the
//! paper ([`paper_ops`]), the times measured by whoever fills the table (no clock here).

use core::time::Duration;

use m2msec_crypto::group::GroupId;

use super::Variant;
use crate::GroupOps;

/// Time of each primitive, in microseconds (the paper's Table V).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Primitives {
    /// T_E, one exponentiation of an arbitrary element.
    pub te: f64,
    /// T_M, one multiplication of group elements.
    pub tm: f64,
    /// T_H, one hash to a scalar.
    pub th: f64,
    /// T_A, one scalar addition.
    pub ta: f64,
}

impl Primitives {
    /// te·T_E + tm·T_M + th·T_H + ta·T_A, in microseconds.
    #[must_use]
    pub fn estimate(&self, ops: &GroupOps) -> f64 {
        ops.priced([self.te, self.tm, self.th, self.ta])
    }
}

/// The paper's operation counts of one authentication (Table VI and §5.2), the same on both
/// sides; E-ElGamal's includes the precomputed alternative proxy key (T_M + T_A).
#[must_use]
pub fn paper_ops(variant: Variant) -> GroupOps {
    let (te, tm, th, ta) = match variant {
        Variant::ElGamal => (5, 7, 2, 2),
        Variant::Schnorr => (4, 3, 2, 1),
        Variant::Dsa => (6, 5, 2, 1),
    };
    GroupOps { te, tm, th, ta }
}

/// One side's row of Table VI.
#[derive(Clone, Copy, Debug)]
pub struct SideCost {
    /// Operations per authentication.
    pub ops: GroupOps,
    /// Mean measured time inside the side's calls, per authentication.
    pub measured: Duration,
}

/// The device's and the server's rows for one variant over one group.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// MTCD.
    pub device: SideCost,
    /// MTCS.
    pub server: SideCost,
}

/// One group's part of the table: the group, its primitives and, per variant, the cell.
pub type GroupRow = (GroupId, Primitives, Vec<(Variant, Cell)>);

/// The whole cost table.
#[derive(Clone, Debug)]
pub struct CostTable {
    /// Per group: its primitives and, per variant, the cell.
    pub groups: Vec<GroupRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_prices_each_column() {
        let p = Primitives {
            te: 100.0,
            tm: 10.0,
            th: 1.0,
            ta: 0.5,
        };
        // E-Schnorr: 4·T_E + 3·T_M + 2·T_H + T_A.
        assert!((p.estimate(&paper_ops(Variant::Schnorr)) - 432.5).abs() < 1e-9);
    }
}
