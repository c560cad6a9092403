//! `m2msec provision DIR --protocol e2sec`: every key and one config per role of a local E2SEC
//! deployment (EPC, one device, one server that authenticates the device and exits).
//!
//! Layout (paths in configs are relative to DIR, so the directory can be moved):
//! ```text
//! DIR/e2sec-epc.toml  e2sec-device.toml  e2sec-server.toml
//! DIR/keys/e2sec-epc.key (.pub)       x_EPC and v_EPC (PEM "M2MSEC E2SEC SECRET/PUBLIC KEY")
//! DIR/keys/e2sec-device.key (.pub)    x_MTCD
//! DIR/keys/e2sec-server.key (.pub)    x_MTCS
//! DIR/keys/e2sec-psk-device.key       the device–EPC key standing in for EPS-AKA
//! DIR/keys/e2sec-psk-server.key       the server–EPC key
//! ```
//! Addresses: EPC on 127.0.0.2, device on 127.0.0.4, server on 127.0.0.3, all on one port
//! (5700 unless told otherwise).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::e2sec::sim::{
    DEVICE, DEVICE_ROLE, EPC, EPC_ROLE, SERVER, SERVER_ROLE, addresses,
};
use m2msec_protocol::e2sec::{SecretKey, Variant};

use super::config::{
    EpcFile, EpcPeerFile, GroupFile, PartyFile, PeerFile, RoleName, SubscriberFile, VariantName,
};
use crate::error::{Error, Result};
use crate::harness::provision::{Provisioned, refuse_existing, role_config, write_toml};
use crate::runtime::keyfile;

/// Options of `provision` for E2SEC.
#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// UDP port of every role, each on its own 127.0.0.x address.
    pub port: u16,
    /// The group of every key.
    pub group: GroupId,
    /// The proxy-signature variant of both parties.
    pub variant: Variant,
    /// Replace existing files.
    pub force: bool,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            port: super::PORT,
            group: GroupId::Ristretto255,
            variant: Variant::ElGamal,
            force: false,
        }
    }
}

/// Writes the key material and configs of a local E2SEC deployment into `dir`.
///
/// # Errors
///
/// [`Error::Usage`] if `dir` already holds an E2SEC deployment and `force` is not set, or for a
/// group E2SEC does not use; I/O errors naming the file.
pub fn provision(
    dir: &Path,
    opts: &ProvisionOptions,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    let group_file = GroupFile::of(opts.group)
        .ok_or_else(|| Error::Usage("E2SEC runs over ffdh1024, ffdh2048 or ristretto".into()))?;
    let config = |role: &str| role_config(dir, role);
    refuse_existing(dir, "e2sec-epc", "an E2SEC deployment", opts.force)?;
    let keys_dir = dir.join("keys");
    for d in [dir, &keys_dir] {
        crate::private::create_dir_all(d)?;
    }
    let addrs = addresses().map(|a| SocketAddr::new(a.ip(), opts.port));
    let mut out = Provisioned::default();
    let mut key_pair = |name: &str, out: &mut Provisioned| -> Result<(PathBuf, PathBuf)> {
        let key = SecretKey::generate(opts.group, rng);
        let secret_pem = keyfile::e2sec_secret_key_pem(&key)?;
        let public_pem = keyfile::e2sec_public_key_pem(opts.group, &key.public_key()?)?;
        Ok((
            out.secret(&keys_dir, &format!("{name}.key"), &secret_pem)?,
            out.public(&keys_dir, &format!("{name}.key.pub"), &public_pem)?,
        ))
    };
    let (epc_secret, epc_public) = key_pair("e2sec-epc", &mut out)?;
    let (device_secret, _) = key_pair("e2sec-device", &mut out)?;
    let (server_secret, _) = key_pair("e2sec-server", &mut out)?;
    let mut psk = |name: &str, out: &mut Provisioned| -> Result<PathBuf> {
        let key = AeadKey::generate(AeadSuite::ChaCha20Poly1305, rng);
        out.secret(&keys_dir, name, &keyfile::symmetric_key_pem(&key)?)
    };
    let psk_device = psk("e2sec-psk-device.key", &mut out)?;
    let psk_server = psk("e2sec-psk-server.key", &mut out)?;

    write_toml(
        &config("e2sec-epc"),
        "e2sec-epc",
        &EpcFile {
            identity: EPC.into(),
            listen: addrs[EPC_ROLE],
            secret_key: epc_secret,
            validity_s: Some(3600),
            replay_window_ms: None,
            subscribers: vec![
                SubscriberFile {
                    id: DEVICE.into(),
                    role: RoleName::Device,
                    psk: psk_device.clone(),
                },
                SubscriberFile {
                    id: SERVER.into(),
                    role: RoleName::Server,
                    psk: psk_server.clone(),
                },
            ],
        },
        &mut out,
    )?;
    let party = |identity: &str, listen, secret_key, psk, peer: PeerFile, connect| PartyFile {
        identity: identity.into(),
        listen,
        secret_key,
        group: Some(group_file),
        variant: Some(VariantName::from(opts.variant)),
        timeout_ms: None,
        first_retransmit_ms: None,
        steady_retransmits: None,
        max_retransmit_interval_ms: None,
        max_retransmit: None,
        connect,
        epc: EpcPeerFile {
            identity: EPC.into(),
            addr: addrs[EPC_ROLE],
            public_key: epc_public.clone(),
            psk,
        },
        peers: vec![peer],
    };
    write_toml(
        &config("e2sec-device"),
        "e2sec-device",
        &party(
            DEVICE,
            addrs[DEVICE_ROLE],
            device_secret,
            psk_device,
            PeerFile {
                id: SERVER.into(),
                role: RoleName::Server,
                addr: addrs[SERVER_ROLE],
            },
            Vec::new(),
        ),
        &mut out,
    )?;
    write_toml(
        &config("e2sec-server"),
        "e2sec-server",
        &party(
            SERVER,
            addrs[SERVER_ROLE],
            server_secret,
            psk_server,
            PeerFile {
                id: DEVICE.into(),
                role: RoleName::Device,
                addr: addrs[DEVICE_ROLE],
            },
            vec![DEVICE.into()],
        ),
        &mut out,
    )?;
    Ok(out)
}
