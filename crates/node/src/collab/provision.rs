//! `m2msec provision DIR` for collab: every key and one config per role of a local deployment.
//!
//! Layout (paths in configs are relative to DIR, so the directory can be moved):
//! ```text
//! DIR/collab-trusted.toml  collab-server.toml  collab-client.toml  collab-proxy-1.toml …
//! DIR/keys/ca.key ca.pub                    the CA (signs the server's certificate)
//! DIR/keys/trusted.key trusted.pub          T's signing key; B knows trusted.pub
//! DIR/keys/server-pke.key server-sig.key server.cert
//! DIR/keys/psk-client-trusted.key           kAT
//! DIR/keys/psk-client-proxy-N.key           kAPi
//! DIR/keys/psk-proxy-N-trusted.key          kPiT
//! DIR/state/                                redb databases of the client and the server
//! ```

use std::path::{Path, PathBuf};

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::split::SharingScheme;

use super::config::{
    AeadName, ClientFile, ClientParamsFile, KeyedPeerFile, OtsName, PeerFile, ProxyFile,
    ProxyFileConfig, ServerFile, SharingName, TimeoutsFile, TrustedFile,
};
use super::deployment::{CLIENT, DeploymentKeys, Params, SERVER, TRUSTED, Topology, proxy_name};
use crate::error::Result;
use crate::harness::provision::{
    Options, Provisioned, deployment_dirs, refuse_existing, role_config, write_toml,
};
use crate::runtime::keyfile;

/// Options of `provision` for collab.
pub type ProvisionOptions = Options<Params>;

/// Writes the key material and configs of a whole local collab deployment into `dir`.
///
/// # Errors
///
/// [`crate::Error::Usage`] if `dir` already holds a deployment and `force` is not set; I/O errors
/// naming the file; key generation errors.
pub fn provision(
    dir: &Path,
    opts: &ProvisionOptions,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    let params = &opts.params;
    params.check()?;
    refuse_existing(dir, "collab-client", "a deployment", opts.force)?;
    let keys_dir = deployment_dirs(dir)?;
    let mut out = Provisioned::default();
    let keys = DeploymentKeys::generate(params.suite, params.aead, params.proxies, rng)?;
    let topology = Topology::loopback(opts.port, params.proxies);

    let secret = |name: &str, pem: &str, out: &mut Provisioned| out.secret(&keys_dir, name, pem);
    let ca_key = secret("ca.key", &keys.ca.to_pem()?, &mut out)?;
    let _ = ca_key;
    let trusted_key = secret("trusted.key", &keys.trusted.to_pem()?, &mut out)?;
    let server_pke = secret("server-pke.key", &keys.server_pke.to_pem()?, &mut out)?;
    let server_sig = secret("server-sig.key", &keys.server_sig.to_pem()?, &mut out)?;
    let k_at = secret(
        "psk-client-trusted.key",
        &keyfile::symmetric_key_pem(&keys.client_trusted)?,
        &mut out,
    )?;
    let mut k_ap = Vec::new();
    let mut k_pt = Vec::new();
    for i in 0..usize::from(params.proxies) {
        let n = i + 1;
        k_ap.push(secret(
            &format!("psk-client-proxy-{n}.key"),
            &keyfile::symmetric_key_pem(&keys.client_proxy[i])?,
            &mut out,
        )?);
        k_pt.push(secret(
            &format!("psk-proxy-{n}-trusted.key"),
            &keyfile::symmetric_key_pem(&keys.proxy_trusted[i])?,
            &mut out,
        )?);
    }
    let public = |name: &str, pem: &str, out: &mut Provisioned| out.public(&keys_dir, name, pem);
    let ca_pub = public("ca.pub", &keys.ca.verifying_key().to_pem()?, &mut out)?;
    let trusted_pub = public(
        "trusted.pub",
        &keys.trusted.verifying_key().to_pem()?,
        &mut out,
    )?;
    let certificate = public(
        "server.cert",
        &keyfile::certificate_pem(&keys.certificate)?,
        &mut out,
    )?;

    let trusted_file = TrustedFile {
        identity: TRUSTED.into(),
        listen: topology.trusted,
        signing_key: trusted_key,
        clients: vec![KeyedPeerFile {
            name: CLIENT.into(),
            addr: topology.client,
            key: k_at.clone(),
        }],
        proxies: (0..usize::from(params.proxies))
            .map(|i| KeyedPeerFile {
                name: proxy_name(i + 1),
                addr: topology.proxies[i],
                key: k_pt[i].clone(),
            })
            .collect(),
        timeouts: TimeoutsFile::default(),
    };
    write_toml(
        &role_config(dir, "collab-trusted"),
        "collab-trusted",
        &trusted_file,
        &mut out,
    )?;

    let server_file = ServerFile {
        identity: SERVER.into(),
        listen: topology.server,
        state: Some(PathBuf::from("state/server.redb")),
        pke_key: server_pke,
        signing_key: server_sig,
        certificate,
        trusted_key: trusted_pub,
        timeouts: TimeoutsFile::default(),
    };
    write_toml(
        &role_config(dir, "collab-server"),
        "collab-server",
        &server_file,
        &mut out,
    )?;

    for i in 0..usize::from(params.proxies) {
        let name = proxy_name(i + 1);
        let file = ProxyFileConfig {
            identity: name.clone(),
            listen: topology.proxies[i],
            trusted: KeyedPeerFile {
                name: TRUSTED.into(),
                addr: topology.trusted,
                key: k_pt[i].clone(),
            },
            clients: vec![KeyedPeerFile {
                name: CLIENT.into(),
                addr: topology.client,
                key: k_ap[i].clone(),
            }],
            ca: ca_pub.clone(),
            timeouts: TimeoutsFile::default(),
        };
        let path = dir.join(format!("collab-{name}.toml"));
        write_toml(&path, "collab-proxy", &file, &mut out)?;
    }

    let client_file = ClientFile {
        identity: CLIENT.into(),
        listen: topology.client,
        state: Some(PathBuf::from("state/client.redb")),
        trusted: KeyedPeerFile {
            name: TRUSTED.into(),
            addr: topology.trusted,
            key: k_at,
        },
        server: PeerFile {
            name: SERVER.into(),
            addr: topology.server,
        },
        proxies: (0..usize::from(params.proxies))
            .map(|i| ProxyFile {
                name: proxy_name(i + 1),
                addr: topology.proxies[i],
                key: k_ap[i].clone(),
                capability: 1,
            })
            .collect(),
        params: ClientParamsFile {
            n: Some(params.proxies),
            k: Some(params.threshold),
            sharing: Some(match params.sharing {
                SharingScheme::Shamir => SharingName::Shamir,
                _ => SharingName::ReedSolomon,
            }),
            ots: Some(match params.ots {
                OtsScheme::LmotsSha256N32W4 => OtsName::Lmots,
                _ => OtsName::Lamport,
            }),
            aead: Some(match params.aead {
                AeadSuite::Aes128Gcm => AeadName::Aes128Gcm,
                AeadSuite::ChaCha20Poly1305 => AeadName::ChaCha20Poly1305,
                _ => AeadName::Aes128Ccm8,
            }),
            answer_quorum: None,
            min_capability: None,
        },
        timeouts: TimeoutsFile::default(),
    };
    write_toml(
        &role_config(dir, "collab-client"),
        "collab-client",
        &client_file,
        &mut out,
    )?;
    Ok(out)
}
