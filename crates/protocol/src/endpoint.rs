//! The interface every role offers to the I/O shell that drives it.

use core::net::SocketAddr;
use core::time::Duration;

use m2msec_crypto::rng::CryptoRng;

/// Milliseconds on a clock chosen by the driver.
///
/// The core never reads a clock: the daemons pass milliseconds since the UNIX epoch (so that
/// durable records such as trust scores carry wall-clock times), the simulator passes virtual
/// time and the tests pass whatever they like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + d`, saturating.
    #[must_use]
    pub fn after(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

/// A datagram the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The bytes, exactly as they go on the wire.
    pub payload: Vec<u8>,
}

/// Cryptographic operations a role performed, counted where they happen so that the cost claims
/// of the papers (the constrained device does no public-key operation) are shown, not claimed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpCounts {
    /// Symmetric encryptions and decryptions (AEAD seal/open).
    pub symmetric: u64,
    /// Hashes and MACs (SHA-256, HMAC, HKDF).
    pub hash: u64,
    /// Secret splitting or reconstruction (Reed-Solomon, Shamir).
    pub redundancy: u64,
    /// Public-key operations: encryption, decryption, signing, verification (one-time
    /// signatures included: they are the asymmetric primitive of the collab protocol).
    pub asymmetric: u64,
}

impl core::ops::AddAssign for OpCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.symmetric += rhs.symmetric;
        self.hash += rhs.hash;
        self.redundancy += rhs.redundancy;
        self.asymmetric += rhs.asymmetric;
    }
}

/// What a role counted between two readings (`later - earlier`; a count never goes back, so
/// the difference saturates at zero rather than wrap).
impl core::ops::Sub for OpCounts {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            symmetric: self.symmetric.saturating_sub(earlier.symmetric),
            hash: self.hash.saturating_sub(earlier.hash),
            redundancy: self.redundancy.saturating_sub(earlier.redundancy),
            asymmetric: self.asymmetric.saturating_sub(earlier.asymmetric),
        }
    }
}

impl OpCounts {
    /// The counts of `runs` runs as the mean of one, in the order symmetric, hash,
    /// redundancy, asymmetric (the benches' figures per run).
    #[must_use]
    pub fn per_run(self, runs: u32) -> [f64; 4] {
        let n = f64::from(runs.max(1));
        [self.symmetric, self.hash, self.redundancy, self.asymmetric].map(|c| c as f64 / n)
    }
}

/// Group arithmetic as the E2SEC paper counts it (its Tables V and VI, paper 003): the
/// device's public-key work in the units its cost model prices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupOps {
    /// Modular exponentiations (T_E).
    pub te: u64,
    /// Multiplications of group elements and of scalars (T_M).
    pub tm: u64,
    /// Hashes to a scalar (T_H).
    pub th: u64,
    /// Other scalar arithmetic: additions, subtractions, reductions (T_A).
    pub ta: u64,
}

/// The paper's counts of a tally: inversions go with T_A, as the paper has no column for
/// them; membership checks are not counted (the paper does not price them).
impl From<&m2msec_crypto::group::OpTally> for GroupOps {
    fn from(t: &m2msec_crypto::group::OpTally) -> Self {
        Self {
            te: t.exp,
            tm: t.mul,
            th: t.hash,
            ta: t.arith + t.inv,
        }
    }
}

impl GroupOps {
    /// The counts with their column names, T_E to T_A.
    #[must_use]
    pub const fn columns(self) -> [(&'static str, u64); 4] {
        [
            ("te", self.te),
            ("tm", self.tm),
            ("th", self.th),
            ("ta", self.ta),
        ]
    }

    /// The counts of `runs` runs as those of one (rounded down).
    #[must_use]
    pub fn per_run(self, runs: u64) -> Self {
        let n = runs.max(1);
        Self {
            te: self.te / n,
            tm: self.tm / n,
            th: self.th / n,
            ta: self.ta / n,
        }
    }

    /// What the counts cost when one of each column costs `prices` (T_E, T_M, T_H, T_A).
    #[must_use]
    pub fn priced(self, prices: [f64; 4]) -> f64 {
        let counts = self.columns().map(|(_, count)| count as f64);
        counts
            .iter()
            .zip(prices)
            .map(|(count, price)| count * price)
            .sum()
    }
}

/// A protocol role as its I/O shell sees it.
///
/// The driver loop is: feed every received datagram to [`Endpoint::handle_datagram`], call
/// [`Endpoint::handle_timeout`] when the deadline from [`Endpoint::poll_timeout`] passes, then
/// drain [`Endpoint::poll_transmit`] and [`Endpoint::poll_event`] — persisting what the events
/// ask to persist *before* sending the transmits.
pub trait Endpoint {
    /// The role's events (completed sessions, failures, state to persist).
    type Event;

    /// Processes one datagram that arrived from `remote`. Bad bytes never panic and never end a
    /// session: they are reported as an event and otherwise ignored.
    fn handle_datagram(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn CryptoRng,
    );

    /// Tells the role that time has reached `now`; expired sessions fail with a typed error.
    fn handle_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng);

    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The earliest time at which [`Endpoint::handle_timeout`] must be called, if any.
    fn poll_timeout(&self) -> Option<Millis>;

    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// Cryptographic operations performed so far by this role.
    fn op_counts(&self) -> OpCounts;

    /// Sends no datagram larger than a path of this MTU carries from now on (bytes of an IP
    /// packet; default [`crate::fragment::DEFAULT_PATH_MTU`]): larger messages leave as
    /// fragments ([`crate::fragment`]).
    fn set_path_mtu(&mut self, path_mtu: u16);
}

#[cfg(test)]
mod tests {
    use super::{GroupOps, OpCounts};

    #[test]
    fn group_ops_as_the_paper_counts_and_prices_them() {
        let tally = m2msec_crypto::group::OpTally {
            exp: 10,
            mul: 14,
            hash: 4,
            arith: 3,
            inv: 1,
            check: 7,
        };
        // Inversions count with T_A; membership checks are not counted.
        let ops = GroupOps::from(&tally);
        assert_eq!(
            ops,
            GroupOps {
                te: 10,
                tm: 14,
                th: 4,
                ta: 4
            }
        );
        let one = ops.per_run(2);
        assert_eq!(
            one,
            GroupOps {
                te: 5,
                tm: 7,
                th: 2,
                ta: 2
            }
        );
        assert_eq!(ops.per_run(0), ops, "no run counts as one");
        let names = one.columns().map(|(name, _)| name);
        assert_eq!(names, ["te", "tm", "th", "ta"]);
        assert!((one.priced([100.0, 1.0, 2.0, 0.5]) - 512.0).abs() < 1e-9);
    }

    #[test]
    fn op_counts_between_readings_and_per_run() {
        let earlier = OpCounts {
            symmetric: 2,
            hash: 10,
            redundancy: 0,
            asymmetric: 1,
        };
        let later = OpCounts {
            symmetric: 8,
            hash: 30,
            redundancy: 4,
            asymmetric: 1,
        };
        let d = later - earlier;
        assert_eq!(d.per_run(2), [3.0, 10.0, 2.0, 0.0]);
        assert_eq!((earlier - later).hash, 0, "saturates, never wraps");
        assert_eq!(d.per_run(0), d.per_run(1), "no division by zero");
    }
}
