//! The TOML config files of the four collab daemons, and how they become role configs.
//!
//! Every field is documented in `examples/collab-*.toml`. Key paths are relative to the config
//! file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use m2msec_protocol::collab::{
    ClientConfig, KeyedPeer, PeerAddr, ProxyConfig, ProxyEntry, ServerConfig, Timeouts,
    TrustedConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::harness::daemon::Setup;
pub use crate::runtime::config::{AeadName, OtsName};
use crate::runtime::config::{
    SharingName, check_identity, field_error, load_toml, millis, non_empty, overlay, resolve,
    with_link_fields,
};
use crate::runtime::keyfile;

/// A peer known by name and address.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// The peer's identity, as it names itself in the protocol.
    pub name: String,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// A peer with which this daemon shares a symmetric key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedPeerFile {
    /// The peer's identity.
    pub name: String,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// File of the pre-shared key (PEM "M2MSEC SYMMETRIC KEY").
    pub key: PathBuf,
}

/// A proxy the client may use.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// The proxy's identity.
    pub name: String,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// File of the key shared with it, kAPi.
    pub key: PathBuf,
    /// Its declared capability (0-255); proxies below `min_capability` are never chosen.
    #[serde(default)]
    pub capability: u8,
}

with_link_fields! {
/// Timeouts, in milliseconds; absent values take the protocol's defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// Lifetime of a whole session: after it every party gives up with a typed error.
    pub session_ms: Option<u64>,
    /// Trusted entity only: how long it waits for the summoned proxies' hellos.
    pub proxy_hello_ms: Option<u64>,
    /// Client only: how long it keeps listening for relays of y after accepting y.
    pub answer_grace_ms: Option<u64>,
    /// Server only: how long it waits for k valid shares before aborting the session.
    pub fragments_ms: Option<u64>,
}
}

impl TimeoutsFile {
    fn build(&self) -> Timeouts {
        let retransmit = self.retransmit_policy();
        overlay!(Timeouts { retransmit, ..Timeouts::default() }, {
            self.session_ms => session (millis),
            self.proxy_hello_ms => proxy_hello (millis),
            self.answer_grace_ms => answer_grace (millis),
            self.fragments_ms => fragments (millis),
        })
    }
}

/// Protocol parameters of the client; absent values take the protocol's defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientParamsFile {
    /// Proxies used per session.
    pub n: Option<u8>,
    /// Fragments needed to rebuild the secret.
    pub k: Option<u8>,
    /// `reed-solomon` or `shamir`.
    pub sharing: Option<SharingName>,
    /// `lamport` or `lmots`.
    pub ots: Option<OtsName>,
    /// AEAD of the keys derived from x and MK: `aes-128-ccm8`, `aes-128-gcm`, `chacha20-poly1305`.
    pub aead: Option<AeadName>,
    /// Identical answers needed before the client accepts.
    pub answer_quorum: Option<u8>,
    /// Minimum proxy capability.
    pub min_capability: Option<u8>,
}

/// `collab-client` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// This client's identity.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// Database of trust records (redb); absent: kept in memory only.
    pub state: Option<PathBuf>,
    /// The trusted entity T and the key kAT.
    pub trusted: KeyedPeerFile,
    /// The server B to establish a key with.
    pub server: PeerFile,
    /// The candidate proxies with their keys kAPi.
    pub proxies: Vec<ProxyFile>,
    /// Protocol parameters.
    #[serde(default)]
    pub params: ClientParamsFile,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

/// `collab-proxy` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFileConfig {
    /// This proxy's identity.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// The trusted entity T and the key kPiT.
    pub trusted: KeyedPeerFile,
    /// The clients this proxy helps, with the keys kAPi.
    pub clients: Vec<KeyedPeerFile>,
    /// The CA's public key (PEM "PUBLIC KEY") that server certificates must be signed by.
    pub ca: PathBuf,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

/// `collab-trusted` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedFile {
    /// This trusted entity's identity.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// T's signing key (PEM "PRIVATE KEY", Ed25519 or RSA) for the Merkle roots.
    pub signing_key: PathBuf,
    /// The clients T serves, with the keys kAT.
    pub clients: Vec<KeyedPeerFile>,
    /// The proxies T provisions, with the keys kPiT.
    pub proxies: Vec<KeyedPeerFile>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

/// `collab-server` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// This server's identity (the subject of its certificate).
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// Database of used one-time keys (redb); absent: kept in memory only (not for production:
    /// a restart would forget which one-time keys were used).
    pub state: Option<PathBuf>,
    /// The decryption key for fragments (PEM "PRIVATE KEY", X25519 or RSA).
    pub pke_key: PathBuf,
    /// The signing key for answers (PEM "PRIVATE KEY", Ed25519 or RSA).
    pub signing_key: PathBuf,
    /// The certificate issued by the CA (PEM "M2MSEC CERTIFICATE").
    pub certificate: PathBuf,
    /// The trusted entity's public key (PEM "PUBLIC KEY").
    pub trusted_key: PathBuf,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

fn keyed(file: &Path, p: &KeyedPeerFile) -> Result<KeyedPeer> {
    Ok(KeyedPeer {
        name: p.name.clone(),
        addr: p.addr,
        key: keyfile::load(&resolve(file, &p.key))?,
    })
}

fn keyed_peers(file: &Path, peers: &[KeyedPeerFile]) -> Result<Vec<KeyedPeer>> {
    peers.iter().map(|p| keyed(file, p)).collect()
}

/// Loads a `collab-client` config file and its key files.
///
/// # Errors
///
/// [`crate::Error::Config`] or [`crate::Error::KeyFile`] naming the file and what is wrong.
pub fn load_client(file: &Path) -> Result<Setup<ClientConfig>> {
    let f: ClientFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, None)?;
    non_empty(file, "proxies", &f.proxies, "proxy")?;
    let proxies = f
        .proxies
        .iter()
        .map(|p| {
            Ok(ProxyEntry {
                name: p.name.clone(),
                addr: p.addr,
                key: keyfile::load(&resolve(file, &p.key))?,
                capability: p.capability,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let trusted = keyed(file, &f.trusted)?;
    let server = PeerAddr {
        name: f.server.name.clone(),
        addr: f.server.addr,
    };
    let p = &f.params;
    let mut config = overlay!(ClientConfig::new(&f.identity, trusted, server, proxies), {
        p.n => n,
        p.k => k,
        p.sharing => sharing,
        p.ots => ots,
        p.aead => aead,
        p.answer_quorum => answer_quorum,
        p.min_capability => min_capability,
    });
    let (n, k, listed) = (config.n, config.k, f.proxies.len());
    if k == 0 || k > n {
        let what = format!("must be between 1 and n = {n}, is {k}");
        return Err(field_error(file, "params.k", what));
    }
    if usize::from(n) > listed {
        let what = format!("{n} proxies per session, but only {listed} listed in `proxies`");
        return Err(field_error(file, "params.n", what));
    }
    config.timeouts = f.timeouts.build();
    Ok(Setup {
        link: f.timeouts.link(file, f.listen)?,
        state: f.state.map(|s| resolve(file, &s)),
        config,
    })
}

/// Loads a `collab-proxy` config file and its key files.
///
/// # Errors
///
/// [`crate::Error::Config`] or [`crate::Error::KeyFile`] naming the file and what is wrong.
pub fn load_proxy(file: &Path) -> Result<Setup<ProxyConfig>> {
    let f: ProxyFileConfig = load_toml(file)?;
    check_identity(file, "identity", &f.identity, None)?;
    Ok(Setup {
        link: f.timeouts.link(file, f.listen)?,
        state: None,
        config: ProxyConfig {
            identity: f.identity.clone(),
            clients: keyed_peers(file, &f.clients)?,
            trusted: keyed(file, &f.trusted)?,
            ca: keyfile::load(&resolve(file, &f.ca))?,
            timeouts: f.timeouts.build(),
            fault_for_testing_only: None,
        },
    })
}

/// Loads a `collab-trusted` config file and its key files.
///
/// # Errors
///
/// [`crate::Error::Config`] or [`crate::Error::KeyFile`] naming the file and what is wrong.
pub fn load_trusted(file: &Path) -> Result<Setup<TrustedConfig>> {
    let f: TrustedFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, None)?;
    Ok(Setup {
        link: f.timeouts.link(file, f.listen)?,
        state: None,
        config: TrustedConfig {
            identity: f.identity.clone(),
            signing_key: keyfile::load(&resolve(file, &f.signing_key))?,
            clients: keyed_peers(file, &f.clients)?,
            proxies: keyed_peers(file, &f.proxies)?,
            timeouts: f.timeouts.build(),
        },
    })
}

/// Loads a `collab-server` config file and its key files.
///
/// # Errors
///
/// [`crate::Error::Config`] or [`crate::Error::KeyFile`] naming the file and what is wrong.
pub fn load_server(file: &Path) -> Result<Setup<ServerConfig>> {
    let f: ServerFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, None)?;
    Ok(Setup {
        link: f.timeouts.link(file, f.listen)?,
        state: f.state.map(|s| resolve(file, &s)),
        config: ServerConfig {
            identity: f.identity.clone(),
            pke_key: keyfile::load(&resolve(file, &f.pke_key))?,
            signing_key: keyfile::load(&resolve(file, &f.signing_key))?,
            certificate: keyfile::load(&resolve(file, &f.certificate))?,
            trusted_key: keyfile::load(&resolve(file, &f.trusted_key))?,
            timeouts: f.timeouts.build(),
        },
    })
}
