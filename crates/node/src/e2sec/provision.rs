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
use crate::harness::provision::{Options, Provisioned, Writer};

/// The keys of a provisioned E2SEC deployment.
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    /// The group of every key.
    pub group: GroupId,
    /// The proxy-signature variant of both parties.
    pub variant: Variant,
}

/// Options of `provision` for E2SEC.
pub type ProvisionOptions = Options<Keys>;

impl Default for ProvisionOptions {
    fn default() -> Self {
        let keys = Keys {
            group: GroupId::Ristretto255,
            variant: Variant::ElGamal,
        };
        Self {
            params: keys,
            port: super::PORT,
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
    let group_file = GroupFile::of(opts.params.group)
        .ok_or_else(|| Error::Usage("E2SEC runs over ffdh1024, ffdh2048 or ristretto".into()))?;
    let mut w = Writer::start(dir, "e2sec-epc", "an E2SEC deployment", opts.force, false)?;
    let addrs = addresses().map(|a| SocketAddr::new(a.ip(), opts.port));
    let mut key_pair = |name: &str, w: &mut Writer| -> Result<(PathBuf, PathBuf)> {
        let key = SecretKey::generate(opts.params.group, rng);
        w.key_pair(&format!("{name}.key"), &key, &key.public()?)
    };
    let (epc_secret, epc_public) = key_pair("e2sec-epc", &mut w)?;
    let (device_secret, _) = key_pair("e2sec-device", &mut w)?;
    let (server_secret, _) = key_pair("e2sec-server", &mut w)?;
    let mut psk = |name: &str, w: &mut Writer| -> Result<PathBuf> {
        let key = AeadKey::generate(AeadSuite::ChaCha20Poly1305, rng);
        w.secret(name, &key)
    };
    let psk_device = psk("e2sec-psk-device.key", &mut w)?;
    let psk_server = psk("e2sec-psk-server.key", &mut w)?;
    // Each party: its identity, its address's index and its role's name.
    let device = (DEVICE, DEVICE_ROLE, RoleName::Device);
    let server = (SERVER, SERVER_ROLE, RoleName::Server);
    let subscriber = |(id, _, role): (&str, usize, RoleName), psk: &PathBuf| SubscriberFile {
        id: id.into(),
        role,
        psk: psk.clone(),
    };
    w.config(
        "e2sec-epc",
        &EpcFile {
            identity: EPC.into(),
            listen: addrs[EPC_ROLE],
            path_mtu: None,
            secret_key: epc_secret,
            validity_s: Some(3600),
            replay_window_ms: None,
            subscribers: vec![
                subscriber(device, &psk_device),
                subscriber(server, &psk_server),
            ],
        },
    )?;
    let party = |(identity, at, _), (peer, peer_at, role), secret_key, psk, connect| PartyFile {
        identity: String::from(identity),
        listen: addrs[at],
        secret_key,
        group: Some(group_file),
        variant: VariantName::of(opts.params.variant),
        timeout_ms: None,
        first_retransmit_ms: None,
        steady_retransmits: None,
        max_retransmit_interval_ms: None,
        max_retransmit: None,
        path_mtu: None,
        connect,
        epc: EpcPeerFile {
            identity: EPC.into(),
            addr: addrs[EPC_ROLE],
            public_key: epc_public.clone(),
            psk,
        },
        peers: vec![PeerFile {
            id: String::from(peer),
            role,
            addr: addrs[peer_at],
        }],
    };
    let device_file = party(device, server, device_secret, psk_device, Vec::new());
    w.config("e2sec-device", &device_file)?;
    let connect = vec![DEVICE.into()];
    let server_file = party(server, device, server_secret, psk_server, connect);
    w.config("e2sec-server", &server_file)?;
    Ok(w.finish())
}
