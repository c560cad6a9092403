//! The TOML config files of the two SGA daemons, and how they become role configs.
//!
//! Every field is documented in `examples/sga-server.toml` and `examples/sga-device.toml`.
//! Paths are relative to the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_crypto::group::GroupId;
use m2msec_protocol::sga::{DeviceConfig, LIGHTWEIGHT_SUITES, ServerConfig, Timeouts};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::harness::daemon::Link;
use crate::runtime::config::{
    check_identity, config_names, field_error, load_toml, millis, millis_at_least_1, non_empty,
    overlay, resolve, with_link_fields,
};
use crate::runtime::keyfile;

/// The lightweight AEAD suites in config files, named as the control channel names them.
pub use m2msec_protocol::sga::SuiteName;

config_names! {
    /// The key-exchange groups in config files and on the command line.
    pub enum GroupName for GroupId {
        /// Ristretto255 (RFC 9496).
        "ristretto255" => Ristretto255 = Ristretto255,
        /// The 2048-bit MODP group of RFC 3526 (the paper's setting).
        "modp2048" => Modp2048 = Modp2048,
    }
}

with_link_fields! {
/// Waits, in milliseconds; absent values take the protocol's defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// How long a device waits for an answer, and the server keeps an unfinished exchange.
    pub exchange_ms: Option<u64>,
    /// How often unacknowledged messages are sent again.
    pub retransmit_ms: Option<u64>,
    /// Largest accepted difference between a timestamp and the local clock.
    pub clock_skew_ms: Option<u64>,
}
}

impl TimeoutsFile {
    /// The timeouts these values describe.
    #[must_use]
    pub fn build(&self) -> Timeouts {
        let requests = self.retransmit_policy();
        overlay!(Timeouts { requests, ..Timeouts::default() }, {
            self.exchange_ms => exchange (millis),
            self.retransmit_ms => retransmit (millis_at_least_1),
            self.clock_skew_ms => clock_skew (millis),
        })
    }
}

fn default_suites() -> Vec<SuiteName> {
    SuiteName::ALL.to_vec()
}

fn default_groups() -> Vec<GroupName> {
    vec![GroupName::Ristretto255, GroupName::Modp2048]
}

/// `sga-server` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// ID_G, the gateway's identity (devices name it in their requests).
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// The server's decryption key (PEM "PRIVATE KEY": X25519, or RSA-2048 for the classic suite).
    pub pke_key: PathBuf,
    /// Database (redb) of registrations and held messages.
    pub state: PathBuf,
    /// Suites offered (C^G).
    #[serde(default = "default_suites")]
    pub suites: Vec<SuiteName>,
    /// Groups accepted for key exchanges.
    #[serde(default = "default_groups")]
    pub groups: Vec<GroupName>,
    /// Waits.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

/// The gateway as a device knows it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// ID_G.
    pub identity: String,
    /// The server's UDP address.
    pub addr: SocketAddr,
    /// The server's public encryption key (PEM "PUBLIC KEY").
    pub public_key: PathBuf,
}

fn default_poll_ms() -> u64 {
    2000
}

/// `sga-device` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    /// ID_d, the device's identity.
    pub identity: String,
    /// Local UDP address to bind.
    pub listen: SocketAddr,
    /// The Unix socket of the `m2msec sga` commands (default: the state file with the
    /// extension `.sock`); only the daemon's user may use it (see [`super::control`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<PathBuf>,
    /// The device key k_d (PEM "M2MSEC SGA DEVICE KEY").
    pub device_key: PathBuf,
    /// Supported suites, in order of preference.
    #[serde(default = "default_suites")]
    pub suites: Vec<SuiteName>,
    /// The suite of the registration proof and of what the server seals for this device.
    pub initial_suite: Option<SuiteName>,
    /// The group of key exchanges this device starts.
    #[serde(default = "default_group")]
    pub group: GroupName,
    /// Database (redb) of the registration state and the inbox.
    pub state: PathBuf,
    /// How often the device tells the server where it is, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// The gateway.
    pub gateway: GatewayFile,
    /// Waits.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

fn default_group() -> GroupName {
    GroupName::Ristretto255
}

/// Why an identity may not pass 255 bytes.
const ID_LIMIT: Option<&str> = Some("at most 255 bytes");

/// A loaded server config.
#[derive(Debug)]
pub struct ServerSetup {
    /// Where to listen, and what the path carries.
    pub link: Link,
    /// The store, resolved.
    pub state: PathBuf,
    /// The role's config.
    pub config: ServerConfig,
}

/// Loads an `sga-server` config file and its key file.
///
/// # Errors
///
/// [`crate::Error::Config`] or [`crate::Error::KeyFile`] naming the file and what is wrong.
pub fn load_server(file: &Path) -> Result<ServerSetup> {
    let f: ServerFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, ID_LIMIT)?;
    non_empty(file, "suites", &f.suites, "suite")?;
    non_empty(file, "groups", &f.groups, "group")?;
    let pke_key = keyfile::load(&resolve(file, &f.pke_key))?;
    Ok(ServerSetup {
        link: f.timeouts.link(file, f.listen)?,
        state: resolve(file, &f.state),
        config: ServerConfig {
            identity: f.identity,
            pke_key,
            suites: f.suites.iter().map(|s| (*s).into()).collect(),
            groups: f.groups.iter().map(|g| (*g).into()).collect(),
            timeouts: f.timeouts.build(),
            fault_for_testing_only: None,
        },
    })
}

/// A loaded device config.
#[derive(Debug)]
pub struct DeviceSetup {
    /// Where to listen, and what the path carries.
    pub link: Link,
    /// The control socket, resolved.
    pub control: PathBuf,
    /// The store, resolved.
    pub state: PathBuf,
    /// How often to poll the server.
    pub poll: Duration,
    /// The role's config.
    pub config: DeviceConfig,
}

/// Reads only the control socket of an `sga-device` config (what the `m2msec sga` commands
/// need), without the key files.
///
/// # Errors
///
/// [`crate::Error::Config`] naming the file and what is wrong.
pub fn control_socket(file: &Path) -> Result<PathBuf> {
    let f: DeviceFile = load_toml(file)?;
    control_path(file, &f)
}

/// The control socket a device config names, or its default beside the state file.
fn control_path(file: &Path, f: &DeviceFile) -> Result<PathBuf> {
    match &f.control {
        None => Ok(super::control::default_socket(&resolve(file, &f.state))),
        Some(p) if p.to_str().is_some_and(|s| s.parse::<SocketAddr>().is_ok()) => Err(field_error(
            file,
            "control",
            format!(
                "{} is a UDP address; the control channel is now an owner-only Unix socket: remove the field (the default is the state file with `.sock`) or give a path",
                p.display()
            ),
        )),
        Some(p) => Ok(resolve(file, p)),
    }
}

/// Loads an `sga-device` config file and its key files.
///
/// # Errors
///
/// [`crate::Error::Config`] or [`crate::Error::KeyFile`] naming the file and what is wrong.
pub fn load_device(file: &Path) -> Result<DeviceSetup> {
    let f: DeviceFile = load_toml(file)?;
    check_identity(file, "identity", &f.identity, ID_LIMIT)?;
    check_identity(file, "gateway.identity", &f.gateway.identity, ID_LIMIT)?;
    let control = control_path(file, &f)?;
    non_empty(file, "suites", &f.suites, "suite")?;
    let initial = f.initial_suite.unwrap_or(f.suites[0]);
    if !f.suites.contains(&initial) {
        let what = format!("\"{}\" is not among `suites`", initial.name());
        return Err(field_error(file, "initial_suite", what));
    }
    let device_key = keyfile::load(&resolve(file, &f.device_key))?;
    let server_key = keyfile::load(&resolve(file, &f.gateway.public_key))?;
    debug_assert!(LIGHTWEIGHT_SUITES.len() == SuiteName::ALL.len());
    Ok(DeviceSetup {
        link: f.timeouts.link(file, f.listen)?,
        control,
        state: resolve(file, &f.state),
        poll: Duration::from_millis(f.poll_ms.max(100)),
        config: DeviceConfig {
            identity: f.identity,
            device_key,
            suites: f.suites.iter().map(|s| (*s).into()).collect(),
            initial_suite: initial.into(),
            group: f.group.into(),
            gateway: f.gateway.identity,
            server: f.gateway.addr,
            server_key,
            timeouts: f.timeouts.build(),
        },
    })
}
