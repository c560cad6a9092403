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

use m2msec_crypto::rng::CryptoRng;

use super::config::{
    AeadName, ClientFile, ClientParamsFile, KeyedPeerFile, OtsName, PeerFile, ProxyFile,
    ProxyFileConfig, ServerFile, TimeoutsFile, TrustedFile,
};
use super::deployment::{CLIENT, DeploymentKeys, Params, SERVER, TRUSTED, Topology, proxy_name};
use crate::error::Result;
use crate::harness::provision::{Options, Provisioned, Writer};
use crate::runtime::config::SharingName;

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
    let mut w = Writer::start(dir, "collab-client", "a deployment", opts.force, true)?;
    let keys = DeploymentKeys::generate(params.suite, params.aead, params.proxies, rng)?;
    let topology = Topology::loopback(opts.port, params.proxies);

    w.secret("ca.key", &keys.ca)?;
    let trusted_key = w.secret("trusted.key", &keys.trusted)?;
    let server_pke = w.secret("server-pke.key", &keys.server_pke)?;
    let server_sig = w.secret("server-sig.key", &keys.server_sig)?;
    let k_at = w.secret("psk-client-trusted.key", &keys.client_trusted)?;
    let mut k_ap = Vec::new();
    let mut k_pt = Vec::new();
    for i in 0..usize::from(params.proxies) {
        let n = i + 1;
        let (ap, pt) = (&keys.client_proxy[i], &keys.proxy_trusted[i]);
        k_ap.push(w.secret(&format!("psk-client-proxy-{n}.key"), ap)?);
        k_pt.push(w.secret(&format!("psk-proxy-{n}-trusted.key"), pt)?);
    }
    let ca_pub = w.public("ca.pub", &keys.ca.verifying_key())?;
    let trusted_pub = w.public("trusted.pub", &keys.trusted.verifying_key())?;
    let certificate = w.public("server.cert", &keys.certificate)?;
    let keyed = |name: &str, addr, key: &PathBuf| KeyedPeerFile {
        name: name.into(),
        addr,
        key: key.clone(),
    };

    let proxies = 0..usize::from(params.proxies);
    w.config(
        "collab-trusted",
        &TrustedFile {
            identity: TRUSTED.into(),
            listen: topology.trusted,
            signing_key: trusted_key,
            clients: vec![keyed(CLIENT, topology.client, &k_at)],
            proxies: proxies
                .clone()
                .map(|i| keyed(&proxy_name(i + 1), topology.proxies[i], &k_pt[i]))
                .collect(),
            timeouts: TimeoutsFile::default(),
        },
    )?;
    w.config(
        "collab-server",
        &ServerFile {
            identity: SERVER.into(),
            listen: topology.server,
            state: Some(PathBuf::from("state/server.redb")),
            pke_key: server_pke,
            signing_key: server_sig,
            certificate,
            trusted_key: trusted_pub,
            timeouts: TimeoutsFile::default(),
        },
    )?;
    for i in proxies.clone() {
        let name = proxy_name(i + 1);
        let file = ProxyFileConfig {
            identity: name.clone(),
            listen: topology.proxies[i],
            trusted: keyed(TRUSTED, topology.trusted, &k_pt[i]),
            clients: vec![keyed(CLIENT, topology.client, &k_ap[i])],
            ca: ca_pub.clone(),
            timeouts: TimeoutsFile::default(),
        };
        w.instance(
            &format!("collab-{name}"),
            "collab-proxy",
            "collab-proxy",
            &file,
        )?;
    }
    w.config(
        "collab-client",
        &ClientFile {
            identity: CLIENT.into(),
            listen: topology.client,
            state: Some(PathBuf::from("state/client.redb")),
            trusted: keyed(TRUSTED, topology.trusted, &k_at),
            server: PeerFile {
                name: SERVER.into(),
                addr: topology.server,
            },
            proxies: proxies
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
                sharing: SharingName::of(params.sharing).or(Some(SharingName::ReedSolomon)),
                ots: OtsName::of(params.ots).or(Some(OtsName::Lamport)),
                aead: AeadName::of(params.aead).or(Some(AeadName::Aes128Ccm8)),
                answer_quorum: None,
                min_capability: None,
            },
            timeouts: TimeoutsFile::default(),
        },
    )?;
    Ok(w.finish())
}
