//! `m2msec provision DIR` for MIKEY: every key and one config per role of a local deployment
//! in which all three modes work (the initiator's `mode` line picks one; it says `distributed`).
//!
//! Layout (paths in configs are relative to DIR, so the directory can be moved):
//! ```text
//! DIR/mikey-responder.toml  mikey-third-party-N.toml …  mikey-initiator.toml
//! DIR/keys/mikey-responder-pke.key (.pub)   R's RSA decryption key (envelope keys)
//! DIR/keys/mikey-initiator-sig.key (.pub)   I's RSA signing key (public-key mode)
//! DIR/keys/mikey-tp-N-sig.key (.pub)        TPi's RSA signing key
//! DIR/keys/mikey-psk-initiator-responder.key the PSK of pre-shared-key mode
//! DIR/keys/mikey-psk-initiator-tp-N.key     the PSK between I and TPi
//! DIR/state/mikey-*.redb                    replay caches of R and the third parties
//! ```
//! Addresses: I on 127.0.0.4, R on 127.0.0.3, TPi on 127.0.0.(20+i), all on one port (the
//! MIKEY port 2269 unless told otherwise).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::mikey::ModeName;

use super::config::{
    DistributedFile, InitiatorFile, InitiatorResponderFile, ModeFile, PkPeerFile, PolicyFile,
    PskPeerFile, ResponderFile, ThirdPartyFile,
};
use super::deployment::{INITIATOR, Params, RESPONDER, addresses, third_party_name};
use crate::collab::config::SharingName;
use crate::error::Result;
use crate::harness::provision::{
    Options, Provisioned, deployment_dirs, refuse_existing, role_config, write_toml,
};
use crate::runtime::keyfile;

/// Options of `provision` for MIKEY: the shape's third parties, threshold and sharing (its
/// mode is not used: the initiator's config says `distributed`).
pub type ProvisionOptions = Options<Params>;

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            params: Params::default(),
            port: super::PORT,
            force: false,
        }
    }
}

/// Writes the key material and configs of a whole local MIKEY deployment into `dir`.
///
/// # Errors
///
/// [`crate::Error::Usage`] if `dir` already holds a MIKEY deployment and `force` is not set; I/O
/// errors naming the file; key generation errors.
pub fn provision(
    dir: &Path,
    opts: &ProvisionOptions,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    let params = Params {
        mode: ModeName::Distributed,
        ..opts.params.clone()
    };
    params.check()?;
    refuse_existing(dir, "mikey-initiator", "a MIKEY deployment", opts.force)?;
    let keys_dir = deployment_dirs(dir)?;
    let n = usize::from(params.third_parties);
    let at = |a: SocketAddr| SocketAddr::new(a.ip(), opts.port);
    let addrs: Vec<SocketAddr> = addresses(params.third_parties)
        .into_iter()
        .map(at)
        .collect();
    let (i_addr, r_addr, tp_addrs) = (addrs[0], addrs[1], &addrs[2..]);

    let mut out = Provisioned::default();
    let secret = |name: &str, pem: &str, out: &mut Provisioned| out.secret(&keys_dir, name, pem);
    let public = |name: &str, pem: &str, out: &mut Provisioned| out.public(&keys_dir, name, pem);
    let psk = |name: &str, rng: &mut dyn CryptoRng, out: &mut Provisioned| -> Result<PathBuf> {
        let key = zeroize::Zeroizing::new(random_array::<32>(rng));
        secret(name, &keyfile::mikey_psk_pem(&key[..])?, out)
    };

    let r_key = PkeSecretKey::generate(PkeSuite::RsaOaep2048, rng)?;
    let r_secret = secret("mikey-responder-pke.key", &r_key.to_pem()?, &mut out)?;
    let r_public = public(
        "mikey-responder-pke.key.pub",
        &r_key.public_key().to_pem()?,
        &mut out,
    )?;
    let i_key = SigningKey::generate(SigSuite::RsaPss2048, rng)?;
    let i_secret = secret("mikey-initiator-sig.key", &i_key.to_pem()?, &mut out)?;
    let i_public = public(
        "mikey-initiator-sig.key.pub",
        &i_key.verifying_key().to_pem()?,
        &mut out,
    )?;
    let psk_ir = psk("mikey-psk-initiator-responder.key", rng, &mut out)?;
    let mut tp_keys = Vec::with_capacity(n);
    for i in 1..=n {
        let k = SigningKey::generate(SigSuite::RsaPss2048, rng)?;
        let s = secret(&format!("mikey-tp-{i}-sig.key"), &k.to_pem()?, &mut out)?;
        let p = public(
            &format!("mikey-tp-{i}-sig.key.pub"),
            &k.verifying_key().to_pem()?,
            &mut out,
        )?;
        let shared = psk(&format!("mikey-psk-initiator-tp-{i}.key"), rng, &mut out)?;
        tp_keys.push((s, p, shared));
    }

    let responder = ResponderFile {
        identity: RESPONDER.into(),
        listen: r_addr,
        state: Some(PathBuf::from("state/mikey-responder.redb")),
        decryption_key: r_secret,
        psk_initiators: vec![PskPeerFile {
            name: INITIATOR.into(),
            addr: i_addr,
            psk: psk_ir.clone(),
        }],
        pk_initiators: std::iter::once(PkPeerFile {
            name: INITIATOR.into(),
            addr: i_addr,
            encryption_key: None,
            verifying_key: Some(i_public),
        })
        .chain(tp_keys.iter().enumerate().map(|(i, (_, p, _))| PkPeerFile {
            name: third_party_name(i + 1),
            addr: tp_addrs[i],
            encryption_key: None,
            verifying_key: Some(p.clone()),
        }))
        .collect(),
        policy: PolicyFile::default(),
    };
    write_toml(
        &role_config(dir, "mikey-responder"),
        "mikey-responder",
        &responder,
        &mut out,
    )?;

    for (i, (s, _, shared)) in tp_keys.iter().enumerate() {
        let file = ThirdPartyFile {
            identity: third_party_name(i + 1),
            listen: tp_addrs[i],
            state: Some(PathBuf::from(format!("state/mikey-tp-{}.redb", i + 1))),
            signing_key: s.clone(),
            initiators: vec![PskPeerFile {
                name: INITIATOR.into(),
                addr: i_addr,
                psk: shared.clone(),
            }],
            responders: vec![PkPeerFile {
                name: RESPONDER.into(),
                addr: r_addr,
                encryption_key: Some(r_public.clone()),
                verifying_key: None,
            }],
            policy: PolicyFile::default(),
        };
        let path = dir.join(format!("mikey-third-party-{}.toml", i + 1));
        write_toml(&path, "mikey-third-party", &file, &mut out)?;
    }

    let initiator = InitiatorFile {
        identity: INITIATOR.into(),
        listen: i_addr,
        mode: ModeFile::Distributed,
        signing_key: Some(i_secret),
        responder: InitiatorResponderFile {
            name: RESPONDER.into(),
            addr: r_addr,
            psk: Some(psk_ir),
            encryption_key: Some(r_public),
        },
        third_parties: tp_keys
            .iter()
            .enumerate()
            .map(|(i, (_, _, shared))| PskPeerFile {
                name: third_party_name(i + 1),
                addr: tp_addrs[i],
                psk: shared.clone(),
            })
            .collect(),
        distributed: DistributedFile {
            k: Some(params.threshold),
            sharing: Some(match params.sharing {
                SharingScheme::Shamir => SharingName::Shamir,
                _ => SharingName::ReedSolomon,
            }),
        },
        policy: PolicyFile::default(),
    };
    write_toml(
        &role_config(dir, "mikey-initiator"),
        "mikey-initiator",
        &initiator,
        &mut out,
    )?;
    Ok(out)
}
