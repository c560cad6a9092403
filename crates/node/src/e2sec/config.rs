//! The TOML config files of the three E2SEC daemons, and how they become role configs.
//!
//! Every field is documented in `examples/e2sec-*.toml`. Key paths are relative to the config
//! file's directory. Secret and public keys are `M2MSEC E2SEC SECRET KEY` / `… PUBLIC KEY`
//! files (see [`crate::runtime::keyfile`]), whose first byte names the group: every key of a deployment
//! must be in the same group, and a party's `group` line, when present, must name it too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_crypto::group::GroupId;
use m2msec_protocol::e2sec::{
    DEFAULT_REPLAY_WINDOW, EpcConfig, PartyConfig, PeerEntry, PublicKey, Role, SecretKey,
    Subscriber, Variant,
};
use serde::{Deserialize, Serialize};

use super::group_name;
use crate::error::{Error, Result};
use crate::harness::daemon::{Link, Setup};
use crate::runtime::config::{
    at_least_1, check_identity, config_names, field_error, load_toml, non_empty, path_mtu, resolve,
    with_link_fields,
};
use crate::runtime::keyfile;

config_names! {
    /// Signature variants in config files.
    pub enum VariantName for Variant {
        /// The paper's ElGamal-type proxy signature.
        "elgamal" => Elgamal = ElGamal,
        /// Schnorr over the same proxy key.
        "schnorr" => Schnorr = Schnorr,
        /// DSA over the same proxy key.
        "dsa" => Dsa = Dsa,
    }

    /// Groups in config files.
    pub enum GroupFile for GroupId {
        /// RFC 5114 §2.1, 1024-bit p, 160-bit q (legacy: the paper's cost table).
        "ffdh1024" => Ffdh1024 = Dsa1024_160,
        /// RFC 5114 §2.3, 2048-bit p, 256-bit q.
        "ffdh2048" => Ffdh2048 = Dsa2048_256,
        /// Ristretto255.
        "ristretto" => Ristretto = Ristretto255,
    }

    /// Roles of warrants in config files.
    pub enum RoleName for Role {
        /// An MTC device.
        "device" => Device = Device,
        /// An MTC server.
        "server" => Server = Server,
    }
}

/// A device or server the EPC issues warrants to.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberFile {
    /// Its identity (ID_MTCD or ID_MTCS).
    pub id: String,
    /// `device` or `server`: the role its warrants grant.
    pub role: RoleName,
    /// The key shared with it (PEM "M2MSEC SYMMETRIC KEY"), standing in for EPS-AKA.
    pub psk: PathBuf,
}

/// `e2sec-epc` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EpcFile {
    /// ID_EPC.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// Largest IP packet the path to the subscribers carries, in bytes (default 1280; at least
    /// 576): a larger answer is sent in fragments that fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_mtu: Option<u16>,
    /// x_EPC (PEM "M2MSEC E2SEC SECRET KEY"); its group is the deployment's.
    pub secret_key: PathBuf,
    /// How long a warrant is valid, in seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_s: Option<u64>,
    /// How far a warrant request's timestamp may lie from the EPC's clock, in milliseconds, and
    /// how long it is remembered against replay (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_window_ms: Option<u64>,
    /// The devices and servers served.
    pub subscribers: Vec<SubscriberFile>,
}

/// The EPC as a party knows it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EpcPeerFile {
    /// ID_EPC (warrants must name it as issuer).
    pub identity: String,
    /// The EPC's UDP address.
    pub addr: SocketAddr,
    /// v_EPC (PEM "M2MSEC E2SEC PUBLIC KEY").
    pub public_key: PathBuf,
    /// The key shared with the EPC (PEM "M2MSEC SYMMETRIC KEY").
    pub psk: PathBuf,
}

/// A peer a party authenticates with.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// Its identity.
    pub id: String,
    /// `device` or `server`.
    pub role: RoleName,
    /// Its UDP address.
    pub addr: SocketAddr,
}

with_link_fields! {
/// `e2sec-device` and `e2sec-server` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartyFile {
    /// ID_MTCD or ID_MTCS.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// x (PEM "M2MSEC E2SEC SECRET KEY").
    pub secret_key: PathBuf,
    /// The group, checked against every key file (`ffdh1024`, `ffdh2048`, `ristretto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupFile>,
    /// The signature variant used and accepted (`elgamal`, `schnorr`, `dsa`; default elgamal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantName>,
    /// How long an exchange may wait for the peer, in milliseconds (default 20000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}
after {
    /// Peers to authenticate with once a warrant is held (then the daemon exits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect: Vec<String>,
    /// The EPC.
    pub epc: EpcPeerFile,
    /// The peers.
    pub peers: Vec<PeerFile>,
}
}

fn check_group(file: &Path, key: &Path, expected: GroupId, found: GroupId) -> Result<()> {
    if expected != found {
        return Err(Error::key(
            resolve(file, key),
            format!(
                "key of group {} ({}), but the deployment's group is {} ({})",
                group_name(found),
                found.name(),
                group_name(expected),
                expected.name()
            ),
        ));
    }
    Ok(())
}

/// Loads an `e2sec-epc` config file and its key files.
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_epc(file: &Path) -> Result<Setup<EpcConfig>> {
    let f: EpcFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, None)?;
    non_empty(file, "subscribers", &f.subscribers, "device or server")?;
    let zero = [
        ("validity_s", f.validity_s == Some(0)),
        ("replay_window_ms", f.replay_window_ms == Some(0)),
    ];
    at_least_1(file, &zero)?;
    let secret_key = keyfile::load(&resolve(file, &f.secret_key))?;
    let subscribers = f
        .subscribers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            check_identity(file, &format!("subscribers[{i}].id"), &s.id, None)?;
            Ok(Subscriber {
                id: s.id.clone(),
                role: s.role.into(),
                key: keyfile::load(&resolve(file, &s.psk))?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Setup {
        link: Link {
            listen: f.listen,
            path_mtu: path_mtu(file, f.path_mtu)?,
        },
        config: EpcConfig {
            identity: f.identity,
            secret_key,
            subscribers,
            validity: Duration::from_secs(f.validity_s.unwrap_or(3600)),
            replay_window: f
                .replay_window_ms
                .map_or(DEFAULT_REPLAY_WINDOW, Duration::from_millis),
        },
        state: None,
    })
}

/// Loads an `e2sec-device` (`role` Device) or `e2sec-server` config file and its key files,
/// with the peers of its `connect` line.
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_party(file: &Path, role: Role) -> Result<(Setup<PartyConfig>, Vec<String>)> {
    let f: PartyFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, None)?;
    check_identity(file, "epc.identity", &f.epc.identity, None)?;
    non_empty(file, "peers", &f.peers, "peer")?;
    let (other, names) = match role {
        Role::Device => (Role::Server, ("device", "server")),
        Role::Server => (Role::Device, ("server", "device")),
    };
    for (i, p) in f.peers.iter().enumerate() {
        check_identity(file, &format!("peers[{i}].id"), &p.id, None)?;
        if Role::from(p.role) != other {
            let (me, them) = names;
            let what = format!("a {me} authenticates with {them}s only");
            return Err(field_error(file, &format!("peers[{i}].role"), what));
        }
    }
    for (i, c) in f.connect.iter().enumerate() {
        if !f.peers.iter().any(|p| &p.id == c) {
            let what = format!("{c:?} is not one of `peers`");
            return Err(field_error(file, &format!("connect[{i}]"), what));
        }
    }
    let secret_key: SecretKey = keyfile::load(&resolve(file, &f.secret_key))?;
    let group = f.group.map_or(secret_key.group(), GroupId::from);
    check_group(file, &f.secret_key, group, secret_key.group())?;
    let epc_key: PublicKey = keyfile::load(&resolve(file, &f.epc.public_key))?;
    check_group(file, &f.epc.public_key, group, epc_key.group)?;
    let epc_psk = keyfile::load(&resolve(file, &f.epc.psk))?;
    let retransmit = f.retransmit_policy();
    let setup = Setup {
        link: f.link(file, f.listen)?,
        state: None,
        config: PartyConfig {
            identity: f.identity,
            role,
            secret_key,
            epc: f.epc.identity,
            epc_addr: f.epc.addr,
            epc_key: epc_key.element,
            epc_psk,
            peers: f
                .peers
                .iter()
                .map(|p| PeerEntry {
                    id: p.id.clone(),
                    role: p.role.into(),
                    addr: p.addr,
                })
                .collect(),
            variant: f.variant.unwrap_or(VariantName::Elgamal).into(),
            timeout: Duration::from_millis(f.timeout_ms.unwrap_or(20_000).max(1)),
            retransmit,
        },
    };
    Ok((setup, f.connect))
}
