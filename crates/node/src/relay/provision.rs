//! `m2msec provision DIR --protocol relay`: the source's seed and owner key, two sinks' AFGH key
//! pairs, and one config per role.
//!
//! Layout (paths in configs are relative to DIR, so the directory can be moved):
//! ```text
//! DIR/relay-proxy.toml  relay-sink-1.toml  relay-sink-2.toml  relay-source.toml
//! DIR/keys/relay-source.seed                 the source's seed (its AFGH key of every epoch)
//! DIR/keys/relay-source-owner.key (.pub)     the source's Ed25519 owner key
//! DIR/keys/relay-sink-N.key (.pub)           sink N's AFGH key pair
//! DIR/state/relay-*.redb                     the proxy's storages; each sink's seen set; the
//!                                            source's stream position and storage id
//! DIR/out/relay-sink-N.jsonl                 what sink N delivers
//! ```
//! Addresses: the proxy on 127.0.0.40, sink-1 on 127.0.0.41, sink-2 on 127.0.0.42, all CoAP on
//! one port (5683 unless told otherwise), the sinks' plain-UDP listeners on another (5690); the
//! source's URL names 127.0.0.43 (an identity: the commands do not listen).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use m2msec_crypto::pre;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_protocol::relay::SourceSeed;

use super::config::{COAP_PORT, DataEncoding, SinkFile, SourceFile, SuiteName, TrustedSourceFile};
use super::proxy::ProxyConfig;
use crate::error::{Error, Result};
use crate::harness::provision::{Provisioned, Writer};
use crate::runtime::coap::Transmission;

/// The sinks of a provisioned deployment.
pub const SINKS: [&str; 2] = ["sink-1", "sink-2"];

/// The proxy's address in a provisioned deployment.
pub const PROXY_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 40);

/// The source's host in a provisioned deployment (in its URL).
pub const SOURCE_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 43);

/// Default UDP port of the sinks' plain-UDP listeners.
pub const SINK_UDP_PORT: u16 = 5690;

/// Options of `provision` for the relay.
#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// CoAP port of the proxy and the sinks.
    pub port: u16,
    /// Plain-UDP port of the sinks.
    pub udp_port: u16,
    /// Replace existing files.
    pub force: bool,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            port: COAP_PORT,
            udp_port: SINK_UDP_PORT,
            force: false,
        }
    }
}

/// The URL of the source of a deployment whose CoAP port is `port`.
#[must_use]
pub fn source_url(port: u16) -> String {
    format!("coap://{}/source", SocketAddr::from((SOURCE_HOST, port)))
}

/// Writes the key material and configs of a local relay deployment (a proxy, two sinks, a
/// source) into `dir`.
///
/// # Errors
///
/// [`Error::Usage`] if `dir` already holds a relay deployment and `force` is not set; I/O
/// errors naming the file; key encoding errors.
pub fn provision(
    dir: &Path,
    opts: &ProvisionOptions,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    if opts.port == opts.udp_port {
        return Err(Error::Usage(
            "the relay's CoAP and UDP ports must differ (each sink listens on both)".into(),
        ));
    }
    let mut w = Writer::start(dir, "relay-source", "a relay deployment", opts.force, true)?;
    let seed = SourceSeed::generate(rng);
    let seed_path = w.secret("relay-source.seed", &seed)?;
    let owner = SigningKey::generate(SigSuite::Ed25519, rng)?;
    let (owner_path, owner_pub) =
        w.key_pair("relay-source-owner.key", &owner, &owner.verifying_key())?;

    let proxy = SocketAddr::from((PROXY_HOST, opts.port));
    w.config(
        "relay-proxy",
        &ProxyConfig {
            listen: proxy,
            state: Some(PathBuf::from("state/relay-proxy.redb")),
            // Storages' plain-UDP ports on the proxy's own address, where sources send.
            udp_bind: PROXY_HOST.into(),
            ..ProxyConfig::default()
        },
    )?;
    let source = source_url(opts.port);
    let mut grants = Vec::new();
    for (i, name) in SINKS.into_iter().enumerate() {
        let key = pre::SecretKey::generate(rng);
        let (key_path, pub_path) =
            w.key_pair(&format!("relay-{name}.key"), &key, &key.public_key())?;
        let host = Ipv4Addr::new(127, 0, 0, 41 + u8::try_from(i).unwrap_or(0));
        let file = SinkFile {
            coap: Some(SocketAddr::from((host, opts.port))),
            path: "sink".into(),
            udp: Some(SocketAddr::from((host, opts.udp_port))),
            secret_key: key_path,
            state: PathBuf::from(format!("state/relay-{name}.redb")),
            output: format!("out/relay-{name}.jsonl"),
            encoding: DataEncoding::Base64,
            buffer: None,
            sources: vec![TrustedSourceFile {
                url: source.clone(),
                owner_key: owner_pub.clone(),
            }],
        };
        let url = file.urls().into_iter().next().unwrap_or_default();
        let role = format!("relay-sink ({name})");
        w.instance(&format!("relay-{name}"), &role, "relay-sink", &file)?;
        grants.push((url, dir.join(pub_path)));
    }

    let source_file = SourceFile {
        url: source,
        proxy,
        stream_id: 1,
        suite: SuiteName::ChaCha20Poly1305,
        rotate_messages: 1000,
        rotate_after_s: 60,
        epoch_length_s: 3600,
        seed: seed_path,
        owner_key: owner_path,
        state: PathBuf::from("state/relay-source.redb"),
        capacity: 0,
        udp: true,
        coap: Transmission::default(),
    };
    // The source is driven by the `m2msec relay` commands rather than run.
    let uses = "m2msec relay store|send|forward|pause|resume|status";
    let source_toml = w.tool_config("relay-source", &source_file, uses)?;
    let src = source_toml.display();
    w.command(format!("m2msec relay store --config {src}"));
    w.command(format!(
        "m2msec relay send --config {src} --count 100 --size 64"
    ));
    for (url, key) in &grants {
        w.command(format!(
            "m2msec relay forward --config {src} --sink {url} --sink-key {}",
            key.display()
        ));
    }
    w.command(format!("m2msec relay status --config {src}"));
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::rng::SeededRng;

    use super::super::config::{load_sink, load_source};
    use super::*;

    #[test]
    fn provisioned_configs_load() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut rng = SeededRng::from_seed_u64(6);
        let out = provision(dir.path(), &ProvisionOptions::default(), &mut rng)?;
        assert!(out.files.iter().all(|f| f.exists()));
        let proxy = ProxyConfig::from_file(&dir.path().join("relay-proxy.toml"))?;
        assert_eq!(proxy.listen, SocketAddr::from((PROXY_HOST, COAP_PORT)));
        let source = load_source(&dir.path().join("relay-source.toml"))?;
        assert_eq!(source.proxy, SocketAddr::from((PROXY_HOST, COAP_PORT)));
        for name in SINKS {
            let sink = load_sink(&dir.path().join(format!("relay-{name}.toml")))?;
            assert_eq!(sink.sources[0].url, source.config.source_url);
            assert_eq!(
                sink.sources[0].owner.to_bytes(),
                source.owner.verifying_key().to_bytes()
            );
        }
        let again = provision(dir.path(), &ProvisionOptions::default(), &mut rng).err();
        assert!(again.is_some_and(|e| e.to_string().contains("--force")));
        Ok(())
    }
}
