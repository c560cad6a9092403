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
use m2msec_protocol::mikey::{ModeName, Psk};

use super::config::{
    DistributedFile, InitiatorFile, InitiatorResponderFile, ModeFile, PkPeerFile, PolicyFile,
    PskPeerFile, ResponderFile, ThirdPartyFile,
};
use super::deployment::{INITIATOR, Params, RESPONDER, addresses, third_party_name};
use crate::error::Result;
use crate::harness::provision::{Options, Provisioned, Writer};
use crate::runtime::config::SharingName;

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
    let marker = "mikey-initiator";
    let mut w = Writer::start(dir, marker, "a MIKEY deployment", opts.force, true)?;
    let at = |a: SocketAddr| SocketAddr::new(a.ip(), opts.port);
    let addrs: Vec<SocketAddr> = addresses(params.third_parties)
        .into_iter()
        .map(at)
        .collect();
    let (i_addr, r_addr, tp_addrs) = (addrs[0], addrs[1], &addrs[2..]);
    let psk = |name: &str, rng: &mut dyn CryptoRng, w: &mut Writer| -> Result<PathBuf> {
        let key = Psk::new(&*zeroize::Zeroizing::new(random_array::<32>(rng)))?;
        w.secret(name, &key)
    };

    let r_key = PkeSecretKey::generate(PkeSuite::RsaOaep2048, rng)?;
    let (r_secret, r_public) =
        w.key_pair("mikey-responder-pke.key", &r_key, &r_key.public_key())?;
    let i_key = SigningKey::generate(SigSuite::RsaPss2048, rng)?;
    let (i_secret, i_public) =
        w.key_pair("mikey-initiator-sig.key", &i_key, &i_key.verifying_key())?;
    let psk_ir = psk("mikey-psk-initiator-responder.key", rng, &mut w)?;
    let mut tp_keys = Vec::with_capacity(usize::from(params.third_parties));
    for i in 1..=params.third_parties {
        let k = SigningKey::generate(SigSuite::RsaPss2048, rng)?;
        let name = format!("mikey-tp-{i}-sig.key");
        let (s, p) = w.key_pair(&name, &k, &k.verifying_key())?;
        let shared = psk(&format!("mikey-psk-initiator-tp-{i}.key"), rng, &mut w)?;
        tp_keys.push((s, p, shared));
    }
    let psk_peer = |name: String, addr, psk: &PathBuf| PskPeerFile {
        name,
        addr,
        psk: psk.clone(),
    };
    // A peer known by the RSA key that verifies its signatures, or that envelope keys for it
    // are encrypted to.
    let signer = |name: String, addr, key: &PathBuf| PkPeerFile {
        name,
        addr,
        encryption_key: None,
        verifying_key: Some(key.clone()),
    };
    let recipient = |name: String, addr, key: &PathBuf| PkPeerFile {
        name,
        addr,
        encryption_key: Some(key.clone()),
        verifying_key: None,
    };

    w.config(
        "mikey-responder",
        &ResponderFile {
            identity: RESPONDER.into(),
            listen: r_addr,
            state: Some(PathBuf::from("state/mikey-responder.redb")),
            decryption_key: r_secret,
            psk_initiators: vec![psk_peer(INITIATOR.into(), i_addr, &psk_ir)],
            pk_initiators: std::iter::once(signer(INITIATOR.into(), i_addr, &i_public))
                .chain(
                    tp_keys
                        .iter()
                        .enumerate()
                        .map(|(i, (_, p, _))| signer(third_party_name(i + 1), tp_addrs[i], p)),
                )
                .collect(),
            policy: PolicyFile::default(),
        },
    )?;
    for (i, (s, _, shared)) in tp_keys.iter().enumerate() {
        let file = ThirdPartyFile {
            identity: third_party_name(i + 1),
            listen: tp_addrs[i],
            state: Some(PathBuf::from(format!("state/mikey-tp-{}.redb", i + 1))),
            signing_key: s.clone(),
            initiators: vec![psk_peer(INITIATOR.into(), i_addr, shared)],
            responders: vec![recipient(RESPONDER.into(), r_addr, &r_public)],
            policy: PolicyFile::default(),
        };
        let name = format!("mikey-third-party-{}", i + 1);
        w.instance(&name, "mikey-third-party", "mikey-third-party", &file)?;
    }
    w.config(
        "mikey-initiator",
        &InitiatorFile {
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
                .map(|(i, (_, _, shared))| psk_peer(third_party_name(i + 1), tp_addrs[i], shared))
                .collect(),
            distributed: DistributedFile {
                k: Some(params.threshold),
                sharing: SharingName::of(params.sharing).or(Some(SharingName::ReedSolomon)),
            },
            policy: PolicyFile::default(),
        },
    )?;
    Ok(w.finish())
}
