//! Command-line flags more than one protocol reads: the helpers' shape (n, k, sharing, suite),
//! misbehaving helpers, the group. Each protocol's own flags live in its plug; the registry puts
//! them together for each command.

use clap::{Args, ValueEnum};
use m2msec_crypto::split::SharingScheme;

pub use crate::runtime::config::{AeadName, OtsName};

crate::runtime::config::config_names! {
    /// Secret sharing on the command line.
    pub enum SharingArg for SharingScheme {
        /// Reed-Solomon erasure coding.
        "rs" => Rs = ReedSolomon,
        /// Shamir sharing (fewer than k colluding proxies learn nothing).
        "shamir" => Shamir = Shamir,
    }
}

/// Public-key suite on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SuiteArg {
    /// X25519 ECIES and Ed25519.
    Modern,
    /// RSA-OAEP-2048 and RSA-PSS-2048.
    Classic,
}

impl SuiteArg {
    /// The public-key encryption of the suite.
    #[must_use]
    pub fn pke(self) -> m2msec_crypto::pke::PkeSuite {
        match self {
            Self::Modern => m2msec_crypto::pke::PkeSuite::X25519Ecies,
            Self::Classic => m2msec_crypto::pke::PkeSuite::RsaOaep2048,
        }
    }
}

/// Refuses helpers (collab proxies, MIKEY third parties: `n` of them, counted by the flag
/// `--{helpers}`) whose threshold or misbehaving ones do not fit together; `faults` lists the
/// values of `--fault`.
///
/// # Errors
///
/// [`crate::Error::Usage`] naming the flag that is wrong.
pub fn check_helpers(
    helpers: &str,
    [n, threshold, faulty]: [u8; 3],
    fault: bool,
    faults: &str,
) -> crate::Result<()> {
    let usage = |e: String| Err(crate::Error::Usage(e));
    if n == 0 {
        return usage(format!("--{helpers} must be at least 1"));
    }
    if threshold == 0 || threshold > n {
        return usage(format!(
            "--threshold must be between 1 and --{helpers} ({n}), is {threshold}"
        ));
    }
    if faulty > n {
        return usage(format!(
            "--faulty ({faulty}) is more than --{helpers} ({n})"
        ));
    }
    if faulty > 0 && !fault {
        return usage(format!("--faulty needs --fault {faults}"));
    }
    Ok(())
}

/// The fault of each of `n` helpers whose last `faulty` misbehave as `fault`.
#[must_use]
pub fn helper_faults<F: Copy>(n: u8, faulty: u8, fault: Option<F>) -> Vec<Option<F>> {
    let honest = usize::from(n.saturating_sub(faulty));
    let of = |i| if i < honest { None } else { fault };
    (0..usize::from(n)).map(of).collect()
}

/// The numbers (from 1) of the last `faulty` of `n` helpers: the misbehaving ones.
#[must_use]
pub fn faulty_helpers(n: u8, faulty: u8) -> std::ops::RangeInclusive<usize> {
    usize::from(n.saturating_sub(faulty)) + 1..=usize::from(n)
}

/// Helper misbehaviour on the command line (collab proxies, MIKEY third parties).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FaultArg {
    /// Never answers (collab proxy) / forwards nothing (MIKEY third party).
    Silent,
    /// Collab: forges the fragment it passes to the server (MIKEY: as `alter`).
    Forge,
    /// Collab only: corrupts the answer it passes to the client.
    Corrupt,
    /// MIKEY: forwards an altered TGK part, correctly signed (collab: as `forge`).
    Alter,
}

/// The shape of a deployment with helpers (collab's, and MIKEY's `--threshold` and
/// `--sharing`; SGA's server key follows `--suite`).
#[derive(Clone, Debug, Args)]
pub struct ShapeArgs {
    /// Number of proxies (n).
    #[arg(long, default_value_t = 5)]
    pub proxies: u8,
    /// Fragments needed to rebuild the secret (k).
    #[arg(long, default_value_t = 3)]
    pub threshold: u8,
    /// Secret sharing scheme.
    #[arg(long, value_enum, default_value_t = SharingArg::Rs)]
    pub sharing: SharingArg,
    /// Public-key suite: modern = X25519 ECIES + Ed25519, classic = RSA-OAEP-2048 + RSA-PSS-2048.
    #[arg(long, value_enum, default_value_t = SuiteArg::Modern)]
    pub suite: SuiteArg,
    /// AEAD of the pre-shared keys and of the session's derived keys.
    #[arg(long, value_enum, default_value_t = AeadName::Aes128Ccm8)]
    pub aead: AeadName,
    /// One-time signature scheme of the proxies' keys.
    #[arg(long, value_enum, default_value_t = OtsName::Lamport)]
    pub ots: OtsName,
}

/// Misbehaving helpers (demo and trace only).
#[derive(Clone, Debug, Args)]
pub struct FaultArgs {
    /// How many helpers misbehave (the last ones: proxy-n or tpn, then n-1, …).
    #[arg(long, default_value_t = 0)]
    pub faulty: u8,
    /// How they misbehave.
    #[arg(long, value_enum, requires = "faulty")]
    pub fault: Option<FaultArg>,
}

impl FaultArgs {
    /// How many misbehave and how (silent unless said), or none.
    #[must_use]
    pub fn chosen(&self) -> Option<(u8, FaultArg)> {
        (self.faulty > 0).then(|| (self.faulty, self.fault.unwrap_or(FaultArg::Silent)))
    }
}

/// Groups on the command line: SGA's key exchange (ristretto, modp2048) and E2SEC's
/// (ristretto, ffdh1024, ffdh2048).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GroupArg {
    /// Ristretto255 (RFC 9496).
    #[value(name = "ristretto", alias = "ristretto255")]
    Ristretto,
    /// SGA: the 2048-bit MODP group of RFC 3526 (the SGA paper's setting).
    #[value(name = "modp2048", alias = "modp")]
    Modp2048,
    /// E2SEC: RFC 5114 §2.1, 1024-bit p, 160-bit q (legacy; the E2SEC paper's cost table).
    #[value(name = "ffdh1024", alias = "dsa1024")]
    Ffdh1024,
    /// E2SEC: RFC 5114 §2.3, 2048-bit p, 256-bit q.
    #[value(name = "ffdh2048", alias = "dsa2048")]
    Ffdh2048,
}

/// The group of a demo (SGA's and E2SEC's).
#[derive(Clone, Debug, Args)]
pub struct GroupArgs {
    /// SGA and E2SEC: the group (SGA: ristretto, modp2048; E2SEC: ristretto, ffdh1024, ffdh2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    pub group: GroupArg,
}

impl GroupArgs {
    /// Refuses, before any protocol runs, a group the protocol does not run over: `pick` is
    /// the protocol's own reading of the flag (SGA's and E2SEC's `plug::group`).
    ///
    /// # Errors
    ///
    /// `pick`'s [`crate::Error::Usage`].
    pub fn check<G>(&self, pick: fn(GroupArg) -> crate::Result<G>) -> crate::Result<()> {
        pick(self.group).map(|_| ())
    }
}
