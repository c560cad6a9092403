//! The TOML config files of the three MIKEY daemons, and how they become role configs.
//!
//! Every field is documented in `examples/mikey-*.toml`. Key paths are relative to the config
//! file's directory. Public-key mode is RSA-2048 only, as RFC 3830 mandates: a key file of
//! another algorithm is refused with an error naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use m2msec_crypto::mikey::{EnvelopeScheme, KemacEncryption, SignScheme};
use m2msec_crypto::pke::{PkePublicKey, PkeSecretKey, PkeSuite};
use m2msec_crypto::sig::{SigSuite, SigningKey, VerifyingKey};
use m2msec_protocol::mikey::{
    InitiatorConfig, Mode, ModeName, PkPeer, Policy, PskPeer, ResponderConfig, ThirdPartyConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::harness::daemon::Setup;
use crate::runtime::config::{
    SharingName, check_identity, config_names, field_error, load_toml, millis, non_empty, overlay,
    resolve, with_link_fields,
};
use crate::runtime::keyfile;

config_names! {
    /// The exchange modes in config files and on the command line.
    pub enum ModeFile for ModeName {
        /// RFC 3830 pre-shared-key mode, straight to the responder.
        "psk" => Psk = Psk,
        /// RFC 3830 public-key mode (RSA), straight to the responder.
        "pk" => Pk = Pk,
        /// The distributed mode: the TGK split k-of-n over third parties (paper 001).
        "distributed" => Distributed = Distributed,
    }

    /// KEMAC encryption names in config files.
    pub enum KemacEncryptionName for KemacEncryption {
        /// AES-CM-128 (RFC 3830 §4.2.3, mandatory).
        "aes-cm-128" => AesCm128 = AesCm128,
        /// AES key wrap with a 128-bit key (RFC 3394).
        "aes-kw-128" => AesKw128 = AesKw128,
        /// No encryption ("very restricted usage", §6.2).
        "null" => Null = Null,
    }

    /// Envelope-key encryption names in config files.
    pub enum EnvelopeName for EnvelopeScheme {
        /// RSAES-PKCS1-v1_5, RFC 3830's mandatory scheme.
        "rsa-pkcs1v15" => RsaPkcs1v15 = RsaPkcs1v15,
        /// RSAES-OAEP with SHA-256 (both ends must be m2msec).
        "rsa-oaep-sha256" => RsaOaepSha256 = RsaOaepSha256,
    }

    /// SIGN payload scheme names in config files.
    pub enum SignatureName for SignScheme {
        /// RSASSA-PKCS1-v1_5 with SHA-1 (RFC 3830's mandatory scheme).
        "pkcs1v15-sha1" => Pkcs1v15Sha1 = Pkcs1v15Sha1,
        /// RSASSA-PSS with SHA-1.
        "pss-sha1" => PssSha1 = PssSha1,
        /// RSASSA-PKCS1-v1_5 with SHA-256.
        "pkcs1v15-sha256" => Pkcs1v15Sha256 = Pkcs1v15Sha256,
        /// RSASSA-PSS with SHA-256.
        "pss-sha256" => PssSha256 = PssSha256,
    }
}

with_link_fields! {
/// Choices every role shares; absent values take the protocol's defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Largest accepted difference between a message's timestamp and the local clock (§5.4).
    pub clock_skew_ms: Option<u64>,
    /// How long an initiator waits for verification, a responder for the parts of a TGK.
    pub session_ms: Option<u64>,
    /// Whether the initiator asks for verification messages (the V flag).
    pub verification: Option<bool>,
    /// KEMAC encryption: `aes-cm-128`, `aes-kw-128` or `null`.
    pub kemac_encryption: Option<KemacEncryptionName>,
    /// Envelope-key encryption: `rsa-pkcs1v15` or `rsa-oaep-sha256`.
    pub envelope: Option<EnvelopeName>,
    /// SIGN scheme: `pkcs1v15-sha1`, `pss-sha1`, `pkcs1v15-sha256` or `pss-sha256`.
    pub signature: Option<SignatureName>,
}
}

impl PolicyFile {
    /// The policy these values describe.
    #[must_use]
    pub fn build(&self) -> Policy {
        let retransmit = self.retransmit_policy();
        overlay!(Policy { retransmit, ..Policy::default() }, {
            self.clock_skew_ms => clock_skew (millis),
            self.session_ms => session (millis),
            self.verification => verification,
            self.kemac_encryption => kemac_encryption,
            self.envelope => envelope,
            self.signature => signature,
        })
    }
}

/// A peer with which this daemon shares a MIKEY pre-shared key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PskPeerFile {
    /// The peer's identity (NAI, as in its ID payloads).
    pub name: String,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// File of the pre-shared key (PEM "M2MSEC MIKEY PSK" or "M2MSEC SYMMETRIC KEY").
    pub psk: PathBuf,
}

/// A peer known by its RSA public keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PkPeerFile {
    /// The peer's identity.
    pub name: String,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its RSA encryption key (PEM "PUBLIC KEY"), if this daemon sends it I_MESSAGEs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<PathBuf>,
    /// Its RSA signature key (PEM "PUBLIC KEY"), if it sends this daemon I_MESSAGEs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_key: Option<PathBuf>,
}

/// The responder as the initiator knows it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitiatorResponderFile {
    /// R's identity.
    pub name: String,
    /// R's UDP address (pre-shared-key and public-key modes send to it).
    pub addr: SocketAddr,
    /// Pre-shared-key mode: the key shared with R.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk: Option<PathBuf>,
    /// Public-key mode: R's RSA encryption key (PEM "PUBLIC KEY").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<PathBuf>,
}

/// Parameters of the distributed mode.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistributedFile {
    /// Parts needed to rebuild the TGK (k); default 3 or n if fewer.
    pub k: Option<u8>,
    /// `reed-solomon` or `shamir`.
    pub sharing: Option<SharingName>,
}

/// `mikey-initiator` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitiatorFile {
    /// This initiator's identity (NAI).
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// How the TGK travels: `psk`, `pk` or `distributed`.
    pub mode: ModeFile,
    /// Public-key mode: I's RSA signing key (PEM "PRIVATE KEY").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// The responder.
    pub responder: InitiatorResponderFile,
    /// Distributed mode: the third parties, with the keys shared with each.
    #[serde(default)]
    pub third_parties: Vec<PskPeerFile>,
    /// Distributed mode: k and the sharing scheme.
    #[serde(default)]
    pub distributed: DistributedFile,
    /// Shared choices.
    #[serde(default)]
    pub policy: PolicyFile,
}

/// `mikey-third-party` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThirdPartyFile {
    /// This third party's identity (it signs as this IDi).
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// Database (redb) of the replay cache; absent: memory only.
    pub state: Option<PathBuf>,
    /// TPi's RSA signing key (PEM "PRIVATE KEY").
    pub signing_key: PathBuf,
    /// Initiators served, with the keys shared with each.
    pub initiators: Vec<PskPeerFile>,
    /// Responders parts are forwarded to, with their RSA encryption keys.
    pub responders: Vec<PkPeerFile>,
    /// Shared choices.
    #[serde(default)]
    pub policy: PolicyFile,
}

/// `mikey-responder` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderFile {
    /// This responder's identity.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// Database (redb) of the replay cache; absent: memory only.
    pub state: Option<PathBuf>,
    /// R's RSA decryption key (PEM "PRIVATE KEY") for envelope keys.
    pub decryption_key: PathBuf,
    /// Initiators of pre-shared-key mode, with the keys shared with each.
    #[serde(default)]
    pub psk_initiators: Vec<PskPeerFile>,
    /// Signers of public-key I_MESSAGEs (initiators in public-key mode, third parties), with
    /// their RSA signature keys.
    #[serde(default)]
    pub pk_initiators: Vec<PkPeerFile>,
    /// Shared choices.
    #[serde(default)]
    pub policy: PolicyFile,
}

/// Why an identity may not pass 255 bytes.
const ID_LIMIT: Option<&str> = Some("at most 255 bytes (it travels in ID payloads)");

fn psk_peer(file: &Path, name: &str, addr: SocketAddr, psk: &Path) -> Result<PskPeer> {
    Ok(PskPeer {
        id: name.into(),
        addr,
        psk: keyfile::load(&resolve(file, psk))?,
    })
}

// RFC 3830's public-key mode knows RSA only: each key file of it is refused unless RSA-2048.

fn rsa_signing_key(file: &Path, key: &Path) -> Result<SigningKey> {
    let refusal = "MIKEY signs with RSA-2048 (RFC 3830); this is not an RSA key (`m2msec keygen --kind rsa-sign`)";
    let rsa = |k: &SigningKey| k.suite() == SigSuite::RsaPss2048;
    keyfile::load_accepted(&resolve(file, key), rsa, refusal)
}

fn rsa_verifying_key(file: &Path, key: &Path) -> Result<VerifyingKey> {
    let refusal = "MIKEY signatures are RSA-2048 (RFC 3830); this is not an RSA public key";
    let rsa = |k: &VerifyingKey| k.suite() == SigSuite::RsaPss2048;
    keyfile::load_accepted(&resolve(file, key), rsa, refusal)
}

fn rsa_encryption_key(file: &Path, key: &Path) -> Result<PkePublicKey> {
    let refusal = "MIKEY envelope keys are RSA-2048 (RFC 3830); this is not an RSA public key";
    let rsa = |k: &PkePublicKey| k.suite() == PkeSuite::RsaOaep2048;
    keyfile::load_accepted(&resolve(file, key), rsa, refusal)
}

fn rsa_decryption_key(file: &Path, key: &Path) -> Result<PkeSecretKey> {
    let refusal = "MIKEY envelope keys are RSA-2048 (RFC 3830); this is not an RSA key (`m2msec keygen --kind rsa-pke`)";
    let rsa = |k: &PkeSecretKey| k.suite() == PkeSuite::RsaOaep2048;
    keyfile::load_accepted(&resolve(file, key), rsa, refusal)
}

fn pk_peer(file: &Path, p: &PkPeerFile) -> Result<PkPeer> {
    Ok(PkPeer {
        id: p.name.clone(),
        addr: p.addr,
        encryption_key: p
            .encryption_key
            .as_ref()
            .map(|k| rsa_encryption_key(file, k))
            .transpose()?,
        verifying_key: p
            .verifying_key
            .as_ref()
            .map(|k| rsa_verifying_key(file, k))
            .transpose()?,
    })
}

fn psk_peers(file: &Path, peers: &[PskPeerFile]) -> Result<Vec<PskPeer>> {
    let peer = |p: &PskPeerFile| psk_peer(file, &p.name, p.addr, &p.psk);
    peers.iter().map(peer).collect()
}

/// The key a list of public-key peers needs each peer to have.
#[derive(Clone, Copy)]
enum Needs {
    /// The responder's RSA public key, to encrypt the envelope key to.
    EncryptionKey,
    /// The signer's RSA public key, to verify its SIGN payload with.
    VerifyingKey,
}

/// The public-key peers of the list `field`, each refused if it lacks the key it `needs`.
fn pk_peers(file: &Path, field: &str, peers: &[PkPeerFile], needs: Needs) -> Result<Vec<PkPeer>> {
    let (key, whose) = match needs {
        Needs::EncryptionKey => ("encryption_key", "responder"),
        Needs::VerifyingKey => ("verifying_key", "signer"),
    };
    let check = |(i, p): (usize, &PkPeerFile)| {
        let has = match needs {
            Needs::EncryptionKey => p.encryption_key.is_some(),
            Needs::VerifyingKey => p.verifying_key.is_some(),
        };
        if !has {
            let what = format!("the {whose}'s RSA public key is needed");
            return Err(field_error(file, &format!("{field}[{i}].{key}"), what));
        }
        pk_peer(file, p)
    };
    peers.iter().enumerate().map(check).collect()
}

/// Loads a `mikey-initiator` config file and the key files its mode needs (those of the other
/// modes are not read, so one file can switch modes by its `mode` line).
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_initiator(file: &Path) -> Result<Setup<InitiatorConfig>> {
    let f: InitiatorFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, ID_LIMIT)?;
    let r = &f.responder;
    let mode = match f.mode {
        ModeFile::Psk => {
            let psk = r.psk.as_ref().ok_or_else(|| {
                field_error(
                    file,
                    "responder.psk",
                    "psk mode needs the key shared with R",
                )
            })?;
            Mode::Psk {
                responder: psk_peer(file, &r.name, r.addr, psk)?,
            }
        }
        ModeFile::Pk => {
            let key = r.encryption_key.as_ref().ok_or_else(|| {
                let what = "pk mode needs R's RSA public key";
                field_error(file, "responder.encryption_key", what)
            })?;
            let signing = f.signing_key.as_ref().ok_or_else(|| {
                field_error(file, "signing_key", "pk mode needs I's RSA signing key")
            })?;
            Mode::Pk {
                responder: PkPeer {
                    id: r.name.clone(),
                    addr: r.addr,
                    encryption_key: Some(rsa_encryption_key(file, key)?),
                    verifying_key: None,
                },
                signing_key: rsa_signing_key(file, signing)?,
            }
        }
        ModeFile::Distributed => {
            let n = f.third_parties.len();
            if n == 0 {
                let what = "distributed mode needs at least one third party";
                return Err(field_error(file, "third_parties", what));
            }
            if n > 255 {
                return Err(field_error(
                    file,
                    "third_parties",
                    "at most 255 third parties",
                ));
            }
            let default_k = u8::try_from(n.min(3)).unwrap_or(3);
            let k = f.distributed.k.unwrap_or(default_k);
            if k == 0 || usize::from(k) > n {
                let what = format!("must be between 1 and {n} (the third parties listed), is {k}");
                return Err(field_error(file, "distributed.k", what));
            }
            Mode::Distributed {
                responder: r.name.clone(),
                third_parties: psk_peers(file, &f.third_parties)?,
                k,
                sharing: f
                    .distributed
                    .sharing
                    .unwrap_or(SharingName::ReedSolomon)
                    .into(),
            }
        }
    };
    Ok(Setup {
        link: f.policy.link(file, f.listen)?,
        state: None,
        config: InitiatorConfig {
            identity: f.identity,
            mode,
            policy: f.policy.build(),
        },
    })
}

/// Loads a `mikey-third-party` config file and its key files.
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_third_party(file: &Path) -> Result<Setup<ThirdPartyConfig>> {
    let f: ThirdPartyFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, ID_LIMIT)?;
    non_empty(file, "initiators", &f.initiators, "initiator")?;
    non_empty(file, "responders", &f.responders, "responder")?;
    let responders = pk_peers(file, "responders", &f.responders, Needs::EncryptionKey)?;
    Ok(Setup {
        link: f.policy.link(file, f.listen)?,
        state: f.state.map(|s| resolve(file, &s)),
        config: ThirdPartyConfig {
            identity: f.identity.clone(),
            signing_key: rsa_signing_key(file, &f.signing_key)?,
            initiators: psk_peers(file, &f.initiators)?,
            responders,
            policy: f.policy.build(),
            fault_for_testing_only: None,
        },
    })
}

/// Loads a `mikey-responder` config file and its key files.
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_responder(file: &Path) -> Result<Setup<ResponderConfig>> {
    let f: ResponderFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, ID_LIMIT)?;
    if f.psk_initiators.is_empty() && f.pk_initiators.is_empty() {
        return Err(Error::config(
            file,
            "fields `psk_initiators` and `pk_initiators`: at least one peer is needed",
        ));
    }
    let pk_initiators = pk_peers(file, "pk_initiators", &f.pk_initiators, Needs::VerifyingKey)?;
    Ok(Setup {
        link: f.policy.link(file, f.listen)?,
        state: f.state.map(|s| resolve(file, &s)),
        config: ResponderConfig {
            identity: f.identity.clone(),
            decryption_key: rsa_decryption_key(file, &f.decryption_key)?,
            psk_initiators: psk_peers(file, &f.psk_initiators)?,
            pk_initiators,
            policy: f.policy.build(),
        },
    })
}
