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
use m2msec_protocol::sga::DeviceKey;

use super::config::{DeviceFile, GatewayFile, GroupName, ServerFile, SuiteName, TimeoutsFile};
use crate::error::Result;
use crate::harness::provision::{Provisioned, Writer};
use zeroize::Zeroizing;

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
    let mut w = Writer::start(dir, "sga-server", "an SGA deployment", opts.force, true)?;
    let server_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), opts.port));
    let server_key = PkeSecretKey::generate(opts.pke, rng)?;
    let (pke_key, public_key) =
        w.key_pair("sga-server-pke.key", &server_key, &server_key.public_key())?;
    w.config(
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
    )?;
    let mut configs = Vec::new();
    for (i, name) in DEVICES.into_iter().enumerate() {
        let key = DeviceKey::new(&*Zeroizing::new(random_array::<32>(rng)))?;
        let device_key = w.secret(&format!("sga-{name}.key"), &key)?;
        let host = Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(i).unwrap_or(0));
        let file = DeviceFile {
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
                public_key: public_key.clone(),
            },
            timeouts: TimeoutsFile::default(),
        };
        let role = format!("sga-device ({name})");
        configs.push(w.instance(&format!("sga-{name}"), &role, "sga-device", &file)?);
    }
    let (i, j) = (configs[0].display(), configs[1].display());
    let mut out = w.finish();
    out.commands.extend([
        format!("m2msec sga invite --config {i} device-j"),
        format!("m2msec sga send --config {i} --to device-j \"hello\""),
        format!("m2msec sga inbox --config {j}"),
    ]);
    Ok(out)
}
