//! `m2msec keygen`: one key file, and its public part next to it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use m2msec_crypto::aead::AeadKey;
use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::OsRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_node::runtime::keyfile;
use m2msec_protocol::e2sec;
use m2msec_protocol::mikey::Psk;
use m2msec_protocol::relay::SourceSeed;
use m2msec_protocol::sga::DeviceKey;

use m2msec_node::harness::flags::{AeadName, GroupArg};

/// Kinds of key.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Ed25519 signing key (PKCS#8), public key in FILE.pub (SPKI).
    Ed25519,
    /// X25519 decryption key for ECIES (PKCS#8), public key in FILE.pub.
    X25519,
    /// RSA-2048 signing key for RSA-PSS (PKCS#8), public key in FILE.pub.
    RsaSign,
    /// RSA-2048 decryption key for RSA-OAEP (PKCS#8), public key in FILE.pub.
    RsaPke,
    /// Pre-shared symmetric key (PEM "M2MSEC SYMMETRIC KEY": suite id byte, then the key).
    Symmetric,
    /// MIKEY pre-shared key, 32 random bytes (PEM "M2MSEC MIKEY PSK").
    MikeyPsk,
    /// SGA device key k_d, 32 random bytes (PEM "M2MSEC SGA DEVICE KEY").
    SgaDevice,
    /// E2SEC secret key x of `--group` (PEM "M2MSEC E2SEC SECRET KEY": group id byte, then the
    /// scalar), public key g^x in FILE.pub (PEM "M2MSEC E2SEC PUBLIC KEY": group id byte, then
    /// the element).
    E2sec,
    /// Relay sink's AFGH key pair (PEM "M2MSEC AFGH SECRET KEY"), public key in FILE.pub (PEM
    /// "M2MSEC AFGH PUBLIC KEY"): sources compute re-encryption keys to it.
    RelayAfgh,
    /// Relay source's seed, 32 random bytes (PEM "M2MSEC RELAY SOURCE SEED") from which the
    /// source's AFGH key of every epoch is derived. Its owner key is an `ed25519` key.
    RelaySource,
}

/// `m2msec keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// What kind of key.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The secret key file; the public part goes to FILE.pub.
    #[arg(long)]
    out: PathBuf,
    /// Symmetric keys only: the AEAD the key is for.
    #[arg(long, value_enum, default_value_t = AeadName::Aes128Ccm8)]
    aead: AeadName,
    /// E2SEC keys only: the group (ristretto, ffdh1024, ffdh2048).
    #[arg(long, value_enum, default_value_t = GroupArg::Ristretto)]
    group: GroupArg,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// 32 random bytes: a MIKEY pre-shared key's or an SGA device key's.
fn random_key(rng: &mut OsRng) -> zeroize::Zeroizing<[u8; 32]> {
    zeroize::Zeroizing::new(m2msec_crypto::rng::random_array(rng))
}

fn public_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

pub(crate) fn keygen(args: &KeygenArgs) -> Result<ExitCode> {
    let public = public_path(&args.out);
    let has_public = !matches!(
        args.kind,
        Kind::Symmetric | Kind::MikeyPsk | Kind::SgaDevice | Kind::RelaySource
    );
    for p in [Some(&args.out), has_public.then_some(&public)]
        .into_iter()
        .flatten()
    {
        if p.exists() && !args.force {
            bail!("{} exists (use --force to overwrite it)", p.display());
        }
    }
    let mut rng = OsRng;
    let (secret, public_pem) = match args.kind {
        Kind::Ed25519 | Kind::RsaSign => {
            let suite = if args.kind == Kind::Ed25519 {
                SigSuite::Ed25519
            } else {
                SigSuite::RsaPss2048
            };
            let key = SigningKey::generate(suite, &mut rng)?;
            (key.to_pem()?, Some(key.verifying_key().to_pem()?))
        }
        Kind::X25519 | Kind::RsaPke => {
            let suite = if args.kind == Kind::X25519 {
                PkeSuite::X25519Ecies
            } else {
                PkeSuite::RsaOaep2048
            };
            let key = PkeSecretKey::generate(suite, &mut rng)?;
            (key.to_pem()?, Some(key.public_key().to_pem()?))
        }
        Kind::Symmetric => (
            keyfile::pem(&AeadKey::generate(args.aead.into(), &mut rng))?,
            None,
        ),
        Kind::MikeyPsk => (keyfile::pem(&Psk::new(&*random_key(&mut rng))?)?, None),
        Kind::SgaDevice => (
            keyfile::pem(&DeviceKey::new(&*random_key(&mut rng))?)?,
            None,
        ),
        Kind::E2sec => {
            let group = m2msec_node::e2sec::plug::group(args.group)?;
            let key = e2sec::SecretKey::generate(group, &mut rng);
            let public = keyfile::pem(&key.public()?)?;
            (keyfile::pem(&key)?, Some(public.to_string()))
        }
        Kind::RelayAfgh => {
            let key = m2msec_crypto::pre::SecretKey::generate(&mut rng);
            (key.to_pem()?, Some(key.public_key().to_pem()?))
        }
        Kind::RelaySource => (keyfile::pem(&SourceSeed::generate(&mut rng))?, None),
    };
    keyfile::write_secret(&args.out, &secret)?;
    println!("wrote {}", args.out.display());
    if let Some(p) = public_pem {
        keyfile::write_public(&public, &p)?;
        println!("wrote {}", public.display());
    }
    Ok(ExitCode::SUCCESS)
}
