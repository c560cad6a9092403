//! `m2msec provision DIR` for SGA: the server's key, two devices' keys and one config per
//! daemon.
//!
//! Layout (paths in configs are relative to DIR, so the directory can be moved):
//! ```text
//! DIR/sga-server.toml  sga-device-i.toml  sga-device-j.toml
//! DIR/keys/sga-server-pke.key (.pub)   the server's X25519 (or RSA-2048) decryption key
//! DIR/keys/sga-device-i.key            device-i's device key k_d
//! DIR/keys/sga-device-j.key            device-j's
//! DIR/state/sga-*.redb                 the server's registrations and held messages; each
//!                                      device's registration flag and inbox
//! DIR/state/sga-device-*.sock          each device daemon's control socket (while it runs)
//! ```
//! Addresses: the server on 127.0.0.2, device-i on 127.0.0.10, device-j on 127.0.0.11, all on
//! one port (5684 unless told otherwise).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::{CryptoRng, random_array};

use super::config::{DeviceFile, GatewayFile, GroupName, ServerFile, SuiteName, TimeoutsFile};
use crate::error::Result;
use crate::harness::provision::{
    Provisioned, deployment_dirs, refuse_existing, role_config, write_daemon_config,
};
use crate::runtime::keyfile::sga_device_key_pem;

/// The devices of a provisioned deployment.
pub const DEVICES: [&str; 2] = ["device-i", "device-j"];
/// The gateway's identity in a provisioned deployment.
pub const GATEWAY: &str = "sga-gateway";

/// Options of `provision` for SGA.
#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// UDP port of the server and the devices.
    pub port: u16,
    /// The server's public-key encryption.
    pub pke: PkeSuite,
    /// The group the devices' key exchanges use.
    pub group: GroupName,
    /// Replace existing files.
    pub force: bool,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            port: super::PORT,
            pke: PkeSuite::X25519Ecies,
            group: GroupName::Ristretto255,
            force: false,
        }
    }
}

/// Writes the key material and configs of a local SGA deployment (a server, two devices)
/// into `dir`.
///
/// # Errors
///
/// [`crate::Error::Usage`] if `dir` already holds an SGA deployment and `force` is not set; I/O
/// errors naming the file; key generation errors.
pub fn provision(
    dir: &Path,
    opts: &ProvisionOptions,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    let server_toml = role_config(dir, "sga-server");
    refuse_existing(dir, "sga-server", "an SGA deployment", opts.force)?;
    let keys_dir = deployment_dirs(dir)?;
    let mut out = Provisioned::default();
    let server_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), opts.port));

    let server_key = PkeSecretKey::generate(opts.pke, rng)?;
    let pke_key = out.secret(&keys_dir, "sga-server-pke.key", &server_key.to_pem()?)?;
    out.public(
        &keys_dir,
        "sga-server-pke.key.pub",
        &server_key.public_key().to_pem()?,
    )?;

    write_daemon_config(
        &server_toml,
        "sga-server",
        "sga-server",
        &ServerFile {
            identity: GATEWAY.into(),
            listen: server_addr,
            pke_key,
            state: PathBuf::from("state/sga-server.redb"),
            suites: SuiteName::ALL.to_vec(),
            groups: vec![GroupName::Ristretto255, GroupName::Modp2048],
            timeouts: TimeoutsFile::default(),
        },
        &mut out,
    )?;

    for (i, name) in DEVICES.into_iter().enumerate() {
        let device_key = out.secret(
            &keys_dir,
            &format!("sga-{name}.key"),
            &sga_device_key_pem(&random_array::<32>(rng))?,
        )?;
        let host = Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(i).unwrap_or(0));
        let config = dir.join(format!("sga-{name}.toml"));
        write_daemon_config(
            &config,
            &format!("sga-device ({name})"),
            "sga-device",
            &DeviceFile {
                identity: name.into(),
                listen: SocketAddr::from((host, opts.port)),
                control: Some(PathBuf::from(format!("state/sga-{name}.sock"))),
                device_key,
                suites: SuiteName::ALL.to_vec(),
                initial_suite: Some(SuiteName::Aes128Ccm8),
                group: opts.group,
                state: PathBuf::from(format!("state/sga-{name}.redb")),
                poll_ms: 2000,
                gateway: GatewayFile {
                    identity: GATEWAY.into(),
                    addr: server_addr,
                    public_key: PathBuf::from("keys/sga-server-pke.key.pub"),
                },
                timeouts: TimeoutsFile::default(),
            },
            &mut out,
        )?;
    }
    let i = dir.join("sga-device-i.toml");
    let j = dir.join("sga-device-j.toml");
    out.commands.push(format!(
        "m2msec sga invite --config {} device-j",
        i.display()
    ));
    out.commands.push(format!(
        "m2msec sga send --config {} --to device-j \"hello\"",
        i.display()
    ));
    out.commands
        .push(format!("m2msec sga inbox --config {}", j.display()));
    Ok(out)
}
