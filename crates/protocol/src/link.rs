//! A bad link, on purpose: seeded loss, duplication and reordering of datagrams.
//!
//! The protocols must work on the links their devices live on (802.15.4 loses 1–20 % of
//! frames). [`LinkFaults`] says how bad a link is; [`Impairment`] draws, for each datagram a
//! sender hands to the link, what becomes of it ([`Fate`]); [`PerSender`] keeps one for each
//! sender of a daemon's link. They decide and nothing else, so that the in-memory network
//! ([`crate::network`]) and the daemons' UDP send paths apply the same model each in its own
//! way: the network holds a datagram back behind later ones, a daemon delays it.

use core::net::SocketAddr;

use m2msec_crypto::rng::{SeededRng, random_array};

/// How a link mistreats datagrams. The default is a perfect link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a datagram is lost, in `[0, 1)`.
    pub loss: f64,
    /// Probability that a datagram that is not lost arrives twice, in `[0, 1)`.
    pub duplicate: f64,
    /// Up to this many later datagrams may overtake a datagram (0: order kept; at most
    /// [`MAX_REORDER`]).
    pub reorder: u16,
}

impl LinkFaults {
    /// Whether the link delivers everything once, in order.
    #[must_use]
    pub fn is_perfect(&self) -> bool {
        self.loss <= 0.0 && self.duplicate <= 0.0 && self.reorder == 0
    }

    /// Checks the probabilities.
    ///
    /// # Errors
    ///
    /// What is out of range, naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be a probability in [0, 1), is {p}"));
            }
        }
        if self.reorder > MAX_REORDER {
            return Err(format!(
                "reorder must be at most {MAX_REORDER}, is {}",
                self.reorder
            ));
        }
        Ok(())
    }
}

/// The largest reordering window [`LinkFaults::check`] accepts.
pub const MAX_REORDER: u16 = 16;

/// What becomes of one datagram: each copy that arrives, with how many later datagrams may
/// overtake it. Empty when it is lost.
pub type Fate = Vec<u16>;

/// Counts of what an [`Impairment`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Datagrams handed to the link.
    pub offered: u64,
    /// Lost.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Copies held back behind later datagrams.
    pub reordered: u64,
}

impl core::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, other: Self) {
        self.offered += other.offered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
    }
}

/// Draws the fate of each datagram of one sender (or one network) from a seeded stream, so
/// that a run with the same seed and the same traffic meets the same faults.
#[derive(Debug)]
pub struct Impairment {
    faults: LinkFaults,
    rng: SeededRng,
    counts: FaultCounts,
}

impl Impairment {
    /// A link with `faults`, its draws seeded by `seed`.
    #[must_use]
    pub fn new(faults: LinkFaults, seed: u64) -> Self {
        Self {
            faults,
            rng: SeededRng::from_seed_u64(seed),
            counts: FaultCounts::default(),
        }
    }

    /// The faults it applies.
    #[must_use]
    pub fn faults(&self) -> LinkFaults {
        self.faults
    }

    /// What it did so far.
    #[must_use]
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// The fate of the next datagram.
    pub fn fate(&mut self) -> Fate {
        self.counts.offered += 1;
        if self.chance(self.faults.loss) {
            self.counts.lost += 1;
            return Vec::new();
        }
        let copies = if self.chance(self.faults.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let hold = if self.faults.reorder == 0 {
                    0
                } else {
                    // Uniform in 0..=reorder; the modulo bias is far below what a test sees.
                    let n = u64::from(self.faults.reorder) + 1;
                    u16::try_from(self.next_u64() % n).unwrap_or(0)
                };
                if hold > 0 {
                    self.counts.reordered += 1;
                }
                hold
            })
            .collect()
    }

    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(random_array(&mut self.rng))
    }

    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let draw = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        draw < p
    }
}

/// A bad link between many senders, as the daemons' UDP send paths meet it: each sender draws
/// the fates of its datagrams from an [`Impairment`] of its own, seeded from the link's seed and
/// its address at its first datagram, so that one role's traffic does not shift the faults
/// another meets.
#[derive(Debug)]
pub struct PerSender {
    faults: LinkFaults,
    seed: u64,
    senders: Vec<(SocketAddr, Impairment)>,
}

impl PerSender {
    /// A link with `faults` whose senders' draws are seeded from `seed`.
    #[must_use]
    pub fn new(faults: LinkFaults, seed: u64) -> Self {
        Self {
            faults,
            seed,
            senders: Vec::new(),
        }
    }

    /// The fate of the next datagram `from` sends.
    pub fn fate(&mut self, from: SocketAddr) -> Fate {
        if let Some((_, link)) = self.senders.iter_mut().find(|(a, _)| *a == from) {
            return link.fate();
        }
        let stream = from
            .to_string()
            .bytes()
            .fold(self.seed, |h, b| h.rotate_left(5) ^ u64::from(b));
        let mut link = Impairment::new(self.faults, stream);
        let fate = link.fate();
        self.senders.push((from, link));
        fate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_link_delivers_everything_once_in_order() {
        let mut link = Impairment::new(LinkFaults::default(), 1);
        assert!(LinkFaults::default().is_perfect());
        for _ in 0..1000 {
            assert_eq!(link.fate(), vec![0]);
        }
    }

    #[test]
    fn rates_are_near_what_was_asked_and_repeat_with_the_seed() {
        let faults = LinkFaults {
            loss: 0.1,
            duplicate: 0.05,
            reorder: 3,
        };
        let draws = |seed| {
            let mut link = Impairment::new(faults, seed);
            let fates: Vec<Fate> = (0..20_000).map(|_| link.fate()).collect();
            (fates, link.counts())
        };
        let (a, counts) = draws(7);
        assert_eq!(a, draws(7).0);
        assert_ne!(a, draws(8).0);
        assert_eq!(counts.offered, 20_000);
        assert!((1_700..2_300).contains(&counts.lost), "{counts:?}");
        assert!((700..1_100).contains(&counts.duplicated), "{counts:?}");
        assert!(a.iter().flatten().all(|h| *h <= 3));
        assert!(counts.reordered > 10_000, "{counts:?}");
    }

    #[test]
    fn probabilities_are_checked() {
        let bad = LinkFaults {
            loss: 1.0,
            ..LinkFaults::default()
        };
        assert!(bad.check().is_err_and(|e| e.contains("loss")));
        let wide = LinkFaults {
            reorder: MAX_REORDER + 1,
            ..LinkFaults::default()
        };
        assert!(wide.check().is_err_and(|e| e.contains("reorder")));
    }

    #[test]
    fn each_sender_draws_its_own_stream() {
        let faults = LinkFaults {
            loss: 0.3,
            duplicate: 0.1,
            reorder: 2,
        };
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 2], 7400)),
            SocketAddr::from(([127, 0, 0, 3], 7400)),
        );
        let alone: Vec<Fate> = {
            let mut link = PerSender::new(faults, 9);
            (0..200).map(|_| link.fate(a)).collect()
        };
        // Another sender's datagrams in between do not change what `a` meets.
        let mut link = PerSender::new(faults, 9);
        let mixed: Vec<Fate> = (0..200)
            .map(|_| {
                let _ = link.fate(b);
                link.fate(a)
            })
            .collect();
        assert_eq!(alone, mixed);
        let theirs: Vec<Fate> = (0..200).map(|_| link.fate(b)).collect();
        assert_ne!(alone, theirs, "each sender has a stream of its own");
        let mut reseeded = PerSender::new(faults, 10);
        let other: Vec<Fate> = (0..200).map(|_| reseeded.fate(a)).collect();
        assert_ne!(alone, other);
    }
}
