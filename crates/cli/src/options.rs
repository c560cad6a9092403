//! Command-line options shared by `demo`, `trace`, `bench` and `provision`.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::split::SharingScheme;
use m2msec_node::collab::deployment::{Params, Suite};
use m2msec_node::mikey::deployment::Params as MikeyParams;
use m2msec_node::sga::config::{GroupName, SuiteName};
use m2msec_protocol::collab::ProxyFault;
use m2msec_protocol::e2sec::Variant;
use m2msec_protocol::mikey::{ModeName, ThirdPartyFault};

/// Secret sharing on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum SharingArg {
    /// Reed-Solomon erasure coding.
    Rs,
    /// Shamir sharing (fewer than k colluding proxies learn nothing).
    Shamir,
}

/// Public-key suite on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum SuiteArg {
    /// X25519 ECIES and Ed25519.
    Modern,
    /// RSA-OAEP-2048 and RSA-PSS-2048.
    Classic,
}

impl From<SuiteArg> for Suite {
    fn from(s: SuiteArg) -> Self {
        match s {
            SuiteArg::Modern => Self::Modern,
            SuiteArg::Classic => Self::Classic,
        }
    }
}

/// Helper misbehaviour on the command line (collab proxies, MIKEY third parties).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum FaultArg {
    /// Never answers (collab proxy) / forwards nothing (MIKEY third party).
    Silent,
    /// Collab: forges the fragment it passes to the server (MIKEY: as `alter`).
    Forge,
    /// Collab only: corrupts the answer it passes to the client.
    Corrupt,
    /// MIKEY: forwards an altered TGK part, correctly signed (collab: as `forge`).
    Alter,
}

impl From<FaultArg> for ProxyFault {
    fn from(f: FaultArg) -> Self {
        match f {
            FaultArg::Silent => Self::Silent,
            FaultArg::Forge | FaultArg::Alter => Self::ForgeFragment,
            FaultArg::Corrupt => Self::CorruptAnswer,
        }
    }
}

/// AEAD of pre-shared keys on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum AeadArg {
    /// AES-128-CCM with an 8-byte tag.
    #[value(name = "aes-128-ccm8")]
    Aes128Ccm8,
    /// AES-128-GCM.
    #[value(name = "aes-128-gcm")]
    Aes128Gcm,
    /// ChaCha20-Poly1305.
    #[value(name = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl From<AeadArg> for AeadSuite {
    fn from(a: AeadArg) -> Self {
        match a {
            AeadArg::Aes128Ccm8 => Self::Aes128Ccm8,
            AeadArg::Aes128Gcm => Self::Aes128Gcm,
            AeadArg::ChaCha20Poly1305 => Self::ChaCha20Poly1305,
        }
    }
}

/// The shape of a collab deployment.
#[derive(Clone, Debug, Args)]
pub(crate) struct ShapeArgs {
    /// Number of proxies (n).
    #[arg(long, default_value_t = 5)]
    pub(crate) proxies: u8,
    /// Fragments needed to rebuild the secret (k).
    #[arg(long, default_value_t = 3)]
    pub(crate) threshold: u8,
    /// Secret sharing scheme.
    #[arg(long, value_enum, default_value_t = SharingArg::Rs)]
    pub(crate) sharing: SharingArg,
    /// Public-key suite: modern = X25519 ECIES + Ed25519, classic = RSA-OAEP-2048 + RSA-PSS-2048.
    #[arg(long, value_enum, default_value_t = SuiteArg::Modern)]
    pub(crate) suite: SuiteArg,
    /// AEAD of the pre-shared keys and of the session's derived keys.
    #[arg(long, value_enum, default_value_t = AeadArg::Aes128Ccm8)]
    pub(crate) aead: AeadArg,
    /// One-time signature scheme of the proxies' keys.
    #[arg(long, value_enum, default_value_t = OtsArg::Lamport)]
    pub(crate) ots: OtsArg,
}

/// One-time signatures on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum OtsArg {
    /// Lamport over SHA-256 (the paper's choice).
    Lamport,
    /// LM-OTS SHA-256 n=32 w=4 (RFC 8554).
    Lmots,
}

/// Misbehaving helpers (demo and trace only).
#[derive(Clone, Debug, Args)]
pub(crate) struct FaultArgs {
    /// How many helpers misbehave (the last ones: proxy-n or tpn, then n-1, …).
    #[arg(long, default_value_t = 0)]
    pub(crate) faulty: u8,
    /// How they misbehave.
    #[arg(long, value_enum, requires = "faulty")]
    pub(crate) fault: Option<FaultArg>,
}

impl ShapeArgs {
    pub(crate) fn params(&self, faults: Option<&FaultArgs>) -> Params {
        let (faulty, fault) = match faults {
            Some(f) if f.faulty > 0 => (f.faulty, Some(f.fault.unwrap_or(FaultArg::Silent).into())),
            _ => (0, None),
        };
        Params {
            proxies: self.proxies,
            threshold: self.threshold,
            sharing: match self.sharing {
                SharingArg::Rs => SharingScheme::ReedSolomon,
                SharingArg::Shamir => SharingScheme::Shamir,
            },
            suite: self.suite.into(),
            aead: self.aead.into(),
            ots: match self.ots {
                OtsArg::Lamport => OtsScheme::Lamport,
                OtsArg::Lmots => OtsScheme::LmotsSha256N32W4,
            },
            faulty,
            fault,
            ..Params::default()
        }
    }
}

/// MIKEY exchange modes on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ModeArg {
    /// RFC 3830 pre-shared-key mode, straight to the responder.
    Psk,
    /// RFC 3830 public-key mode (RSA), straight to the responder.
    Pk,
    /// The distributed mode: the TGK split k-of-n over third parties (paper 001).
    Distributed,
}

impl From<ModeArg> for ModeName {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Psk => Self::Psk,
            ModeArg::Pk => Self::Pk,
            ModeArg::Distributed => Self::Distributed,
        }
    }
}

/// The shape of a MIKEY deployment (with `--threshold` and `--sharing` of [`ShapeArgs`]).
#[derive(Clone, Debug, Args)]
pub(crate) struct MikeyArgs {
    /// MIKEY: how the initiator sends its TGK.
    #[arg(long, value_enum, default_value_t = ModeArg::Distributed)]
    pub(crate) mode: ModeArg,
    /// MIKEY distributed mode: number of third parties (n); `--threshold` is k.
    #[arg(long, default_value_t = 5)]
    pub(crate) third_parties: u8,
}

impl MikeyArgs {
    /// The MIKEY deployment of these options.
    pub(crate) fn params(
        &self,
        shape: &ShapeArgs,
        faults: Option<&FaultArgs>,
    ) -> Result<MikeyParams> {
        let (faulty, fault) = match faults {
            Some(f) if f.faulty > 0 => {
                let fault = match f.fault.unwrap_or(FaultArg::Silent) {
                    FaultArg::Silent => ThirdPartyFault::Silent,
                    FaultArg::Alter | FaultArg::Forge => ThirdPartyFault::AlterPart,
                    FaultArg::Corrupt => {
                        bail!(
                            "--fault corrupt is a collab fault; MIKEY third parties are silent or alter"
                        )
                    }
                };
                (f.faulty, Some(fault))
            }
            _ => (0, None),
        };
        Ok(MikeyParams {
            mode: self.mode.into(),
            third_parties: self.third_parties,
            threshold: shape.threshold,
            sharing: match shape.sharing {
                SharingArg::Rs => SharingScheme::ReedSolomon,
                SharingArg::Shamir => SharingScheme::Shamir,
            },
            faulty,
            fault,
            ..MikeyParams::default()
        })
    }
}

/// Groups on the command line: SGA's key exchange (ristretto, modp2048) and E2SEC's
/// (ristretto, ffdh1024, ffdh2048).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum GroupArg {
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

impl GroupArg {
    /// The SGA group.
    pub(crate) fn sga(self) -> Result<GroupName> {
        match self {
            Self::Ristretto => Ok(GroupName::Ristretto255),
            Self::Modp2048 => Ok(GroupName::Modp2048),
            Self::Ffdh1024 | Self::Ffdh2048 => {
                bail!("--group ffdh1024|ffdh2048 is for E2SEC; SGA runs over ristretto or modp2048")
            }
        }
    }

    /// The E2SEC group.
    pub(crate) fn e2sec(self) -> Result<GroupId> {
        match self {
            Self::Ristretto => Ok(GroupId::Ristretto255),
            Self::Ffdh1024 => Ok(GroupId::Dsa1024_160),
            Self::Ffdh2048 => Ok(GroupId::Dsa2048_256),
            Self::Modp2048 => {
                bail!(
                    "--group modp2048 is for SGA; E2SEC runs over ristretto, ffdh1024 or ffdh2048"
                )
            }
        }
    }
}

/// E2SEC proxy-signature variants on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum VariantArg {
    /// The paper's ElGamal-type proxy signature.
    Elgamal,
    /// Schnorr over the same proxy key.
    Schnorr,
    /// DSA over the same proxy key.
    Dsa,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Elgamal => Self::ElGamal,
            VariantArg::Schnorr => Self::Schnorr,
            VariantArg::Dsa => Self::Dsa,
        }
    }
}

/// The E2SEC demo's options (the group is `--group`).
#[derive(Clone, Debug, Args)]
pub(crate) struct E2secArgs {
    /// E2SEC: the proxy-signature variant of both parties.
    #[arg(long, value_enum, default_value_t = VariantArg::Elgamal)]
    pub(crate) variant: VariantArg,
    /// E2SEC: let the server's warrant (valid for one second) expire while its AuthInit is on
    /// the way; the device's refusal is the expected outcome.
    #[arg(long)]
    pub(crate) expired_warrant: bool,
}

/// SGA lightweight suites on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum SgaSuiteArg {
    /// AES-128-CCM with an 8-byte tag.
    #[value(name = "ccm", alias = "aes-128-ccm8")]
    Ccm,
    /// ChaCha20-Poly1305.
    #[value(name = "chacha", alias = "chacha20-poly1305")]
    Chacha,
    /// Ascon-AEAD128.
    #[value(name = "ascon", alias = "ascon-128")]
    Ascon,
}

impl From<SgaSuiteArg> for SuiteName {
    fn from(s: SgaSuiteArg) -> Self {
        match s {
            SgaSuiteArg::Ccm => Self::Aes128Ccm8,
            SgaSuiteArg::Chacha => Self::ChaCha20Poly1305,
            SgaSuiteArg::Ascon => Self::Ascon128,
        }
    }
}

/// The SGA demo's options (the server's public-key encryption follows `--suite`: modern =
/// X25519, classic = RSA-OAEP-2048).
#[derive(Clone, Debug, Args)]
pub(crate) struct SgaArgs {
    /// SGA and E2SEC: the group (SGA: ristretto, modp2048; E2SEC: ristretto, ffdh1024, ffdh2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    pub(crate) group: GroupArg,
    /// SGA: the lightweight suite the devices negotiate.
    #[arg(long, value_enum, default_value_t = SgaSuiteArg::Ccm)]
    pub(crate) sga_suite: SgaSuiteArg,
    /// SGA: messages device-i sends device-j through the server.
    #[arg(long, default_value_t = 3)]
    pub(crate) messages: u32,
    /// SGA: kill the server (abort its task) after the messages were acknowledged and start a
    /// new one from its store before device-j fetches them.
    #[arg(long)]
    pub(crate) restart_gateway: bool,
}

/// The relay demo's options.
#[derive(Clone, Debug, Args)]
pub(crate) struct RelayDemoArgs {
    /// Relay: data messages per section (a new section key after this many).
    #[arg(long, default_value_t = 20)]
    pub(crate) relay_rotate: u32,
    /// Relay: plaintext bytes per message.
    #[arg(long, default_value_t = 48)]
    pub(crate) relay_size: usize,
    /// Relay: messages streamed before sink 1 is designated, before sink 2 is added, and after.
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [60u32, 40, 60])]
    pub(crate) relay_phases: Vec<u32>,
}

impl RelayDemoArgs {
    /// The three phases.
    pub(crate) fn phases(&self) -> [u32; 3] {
        let p = |i: usize| self.relay_phases.get(i).copied().unwrap_or(0);
        [p(0), p(1), p(2)]
    }
}
