//! The TOML config files of the relay's sink daemon and of the source's client commands, and the
//! relay's key files.
//!
//! Every field is documented in `examples/relay-sink.toml` and `examples/relay-source.toml`.
//! Paths are relative to the config file's directory.
//!
//! Key files (PEM):
//! - a sink's AFGH key pair: `M2MSEC AFGH SECRET KEY` and, in FILE.pub, `M2MSEC AFGH PUBLIC KEY`
//!   (the encodings of `m2msec_crypto::pre`; `m2msec keygen --kind relay-afgh`);
//! - the source's seed: `M2MSEC RELAY SOURCE SEED`, 32 random bytes from which the source's
//!   AFGH key pair of every epoch is derived (`m2msec keygen --kind relay-source`);
//! - the source's owner key: an Ed25519 signing key (PKCS#8, `m2msec keygen --kind ed25519`),
//!   which signs section keys and the proxy API calls only the storage's owner may make; sinks
//!   name its FILE.pub.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre;
use m2msec_crypto::sig::{SigSuite, SigningKey, VerifyingKey};
use m2msec_protocol::relay::{SinkConfig, SourceConfig, SourceSeed, TrustedSource};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::coap::Transmission;
use crate::runtime::config::{
    at_least_1, config_names, field_error, load_toml, non_empty, resolve,
};
use crate::runtime::keyfile;

/// The protocol's name in commands and reports.
pub const PROTOCOL: &str = "relay";

/// The roles `m2msec run` knows for the relay.
pub const ROLES: &[crate::harness::daemon::RoleInfo] = &[
    crate::harness::daemon::RoleInfo {
        name: "relay-proxy",
        about: "The relay's secure store-and-forward proxy: stores what sources send, \
                re-encrypts section keys to the sinks their owners designate",
    },
    crate::harness::daemon::RoleInfo {
        name: "relay-sink",
        about: "A relay data sink: opens what the proxy forwards and writes it out",
    },
];

/// What the protocol is, in one line of `--help`.
pub const ABOUT: &str = "The secure store-and-forward relay: key streams, AFGH proxy \
                         re-encryption, a CoAP proxy that stores what it cannot read until a \
                         sink is designated (paper 004)";

/// CoAP's default port (RFC 7252 §6.1): the proxy's, and each sink's on its own address.
pub const COAP_PORT: u16 = 5683;

config_names! {
    /// The data AEAD suites in config files.
    pub enum SuiteName for AeadSuite {
        /// AES-128-CCM with an 8-byte tag.
        "aes-128-ccm8" => Aes128Ccm8 = Aes128Ccm8,
        /// AES-128-GCM.
        "aes-128-gcm" => Aes128Gcm = Aes128Gcm,
        /// ChaCha20-Poly1305.
        "chacha20-poly1305" => ChaCha20Poly1305 = ChaCha20Poly1305,
        /// Ascon-AEAD128.
        "ascon-128" => Ascon128 = Ascon128,
    }
}

/// How a sink writes delivered data into its output's JSON lines.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataEncoding {
    /// Standard base64 with padding (RFC 4648 §4).
    #[default]
    Base64,
    /// Lower-case hex.
    Hex,
}

/// A source whose streams a sink accepts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedSourceFile {
    /// The source's URL, as in the header of every message it sends.
    pub url: String,
    /// The source's owner key (PEM "PUBLIC KEY", Ed25519), which signs its section keys.
    pub owner_key: PathBuf,
}

fn default_sink_path() -> String {
    "sink".into()
}

fn default_output() -> String {
    "-".into()
}

/// `relay-sink` config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFile {
    /// CoAP address to serve (the proxy POSTs forwarded messages to it); optional if `udp` is set.
    pub coap: Option<SocketAddr>,
    /// Uri-Path of the CoAP resource that takes messages (the path of the sink's CoAP URL).
    #[serde(default = "default_sink_path")]
    pub path: String,
    /// UDP address for binary-header datagrams; optional if `coap` is set.
    pub udp: Option<SocketAddr>,
    /// The sink's AFGH secret key (PEM "M2MSEC AFGH SECRET KEY").
    pub secret_key: PathBuf,
    /// Database (redb) of the durable seen set.
    pub state: PathBuf,
    /// Where delivered messages go, one JSON object per line: a file (appended to), or "-" for
    /// standard output.
    #[serde(default = "default_output")]
    pub output: String,
    /// How the data is written in the output.
    #[serde(default)]
    pub encoding: DataEncoding,
    /// Most data messages held while their section key has not arrived.
    pub buffer: Option<usize>,
    /// The sources whose streams this sink accepts.
    pub sources: Vec<TrustedSourceFile>,
}

impl SinkFile {
    /// The URLs a source grants to the proxy for this sink: `coap://ADDR/PATH` and `udp://ADDR`.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        if let Some(a) = self.coap {
            urls.push(format!("coap://{a}/{}", self.path));
        }
        if let Some(a) = self.udp {
            urls.push(format!("udp://{a}"));
        }
        urls
    }
}

/// Where a sink writes what it delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// A loaded sink config.
#[derive(Debug)]
pub struct SinkSetup {
    /// CoAP address to bind.
    pub coap: Option<SocketAddr>,
    /// The CoAP resource path (without a leading `/`).
    pub path: String,
    /// UDP address to bind.
    pub udp: Option<SocketAddr>,
    /// The sink's AFGH secret key.
    pub secret: pre::SecretKey,
    /// The trusted sources: URL and owner key.
    pub sources: Vec<TrustedSource>,
    /// The store, resolved.
    pub state: PathBuf,
    /// The output.
    pub output: Output,
    /// The data's encoding in the output.
    pub encoding: DataEncoding,
    /// The protocol sink's limits (`buffer`: most data messages waiting for their key).
    pub config: SinkConfig,
}

/// Loads a `relay-sink` config file and its key files.
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_sink(file: &Path) -> Result<SinkSetup> {
    let f: SinkFile = load_toml(file)?;
    if f.coap.is_none() && f.udp.is_none() {
        return Err(Error::config(
            file,
            "fields `coap` and `udp`: at least one listening address is needed",
        ));
    }
    let path = f.path.trim_matches('/').to_owned();
    if path.is_empty() {
        return Err(field_error(file, "path", "must not be empty"));
    }
    non_empty(file, "sources", &f.sources, "trusted source")?;
    at_least_1(file, &[("buffer", f.buffer == Some(0))])?;
    let mut sources = Vec::with_capacity(f.sources.len());
    for (i, s) in f.sources.iter().enumerate() {
        check_url(file, &format!("sources[{i}].url"), &s.url)?;
        let owner = load_owner_public(&resolve(file, &s.owner_key))?;
        sources.push(TrustedSource {
            url: s.url.clone(),
            owner,
        });
    }
    let output = match f.output.as_str() {
        "" => return Err(field_error(file, "output", "must not be empty")),
        "-" => Output::Stdout,
        p => Output::File(resolve(file, Path::new(p))),
    };
    Ok(SinkSetup {
        coap: f.coap,
        path,
        udp: f.udp,
        secret: keyfile::load(&resolve(file, &f.secret_key))?,
        sources,
        state: resolve(file, &f.state),
        output,
        encoding: f.encoding,
        config: SinkConfig {
            buffer_messages: f.buffer.unwrap_or(SinkConfig::default().buffer_messages),
            ..SinkConfig::default()
        },
    })
}

fn default_suite() -> SuiteName {
    SuiteName::ChaCha20Poly1305
}

fn default_stream_id() -> u16 {
    1
}

fn default_rotate_messages() -> u32 {
    1000
}

fn default_rotate_after_s() -> u64 {
    60
}

fn default_epoch_length_s() -> u64 {
    3600
}

fn default_true() -> bool {
    true
}

/// The source's config file, read by `m2msec relay store|send|forward|pause|resume|status`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// The source's URL (its callback URL), in the header of every message it sends.
    pub url: String,
    /// The relay proxy's CoAP address.
    pub proxy: SocketAddr,
    /// The stream id of this source's stream.
    #[serde(default = "default_stream_id")]
    pub stream_id: u16,
    /// The AEAD of data messages.
    #[serde(default = "default_suite")]
    pub suite: SuiteName,
    /// A new section key after this many data messages.
    #[serde(default = "default_rotate_messages")]
    pub rotate_messages: u32,
    /// A new section key after this many seconds.
    #[serde(default = "default_rotate_after_s")]
    pub rotate_after_s: u64,
    /// Length of an epoch in seconds: the source's AFGH key changes at each epoch, and a sink is
    /// granted whole epochs.
    #[serde(default = "default_epoch_length_s")]
    pub epoch_length_s: u64,
    /// The source's seed (PEM "M2MSEC RELAY SOURCE SEED").
    pub seed: PathBuf,
    /// The owner key (PEM "PRIVATE KEY", Ed25519).
    pub owner_key: PathBuf,
    /// Database (redb) of the stream position and the storage the proxy created.
    pub state: PathBuf,
    /// Bytes asked for at `store` (0: the proxy's default).
    #[serde(default)]
    pub capacity: u64,
    /// Whether `store` asks the proxy for a plain-UDP ingestion port too.
    #[serde(default = "default_true")]
    pub udp: bool,
    /// CoAP transmission parameters of the source's requests to the proxy.
    #[serde(default)]
    pub coap: Transmission,
}

/// A loaded source config. `Debug` shows neither the seed nor the owner key.
#[derive(Debug)]
pub struct SourceSetup {
    /// The stream: the source's URL, stream id, data AEAD, rotation and epoch length.
    pub config: SourceConfig,
    /// The proxy's CoAP address.
    pub proxy: SocketAddr,
    /// The seed of the source's epoch keys.
    pub seed: SourceSeed,
    /// The owner key.
    pub owner: SigningKey,
    /// The store, resolved.
    pub state: PathBuf,
    /// Bytes asked for at `store`.
    pub capacity: u64,
    /// Whether `store` asks for a UDP port.
    pub udp: bool,
    /// CoAP transmission parameters towards the proxy.
    pub coap: Transmission,
}

/// Loads a source config file and its key files.
///
/// # Errors
///
/// [`Error::Config`] or [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_source(file: &Path) -> Result<SourceSetup> {
    let f: SourceFile = load_toml(file)?;
    check_url(file, "url", &f.url)?;
    let zero = [
        ("rotate_messages", f.rotate_messages == 0),
        ("rotate_after_s", f.rotate_after_s == 0),
        ("epoch_length_s", f.epoch_length_s == 0),
    ];
    at_least_1(file, &zero)?;
    f.coap.check().map_err(|e| Error::config(file, e))?;
    Ok(SourceSetup {
        config: SourceConfig {
            source_url: f.url,
            stream_id: f.stream_id,
            suite: f.suite.into(),
            rotate_messages: f.rotate_messages,
            rotate_after: Duration::from_secs(f.rotate_after_s),
            epoch_length: Duration::from_secs(f.epoch_length_s),
        },
        proxy: f.proxy,
        seed: keyfile::load(&resolve(file, &f.seed))?,
        owner: load_owner_key(&resolve(file, &f.owner_key))?,
        state: resolve(file, &f.state),
        capacity: f.capacity,
        udp: f.udp,
        coap: f.coap,
    })
}

/// A URL in a header: 1..=255 bytes (the header's length byte).
fn check_url(file: &Path, field: &str, url: &str) -> Result<()> {
    if url.is_empty() || url.len() > 255 {
        return Err(field_error(
            file,
            field,
            "a URL of 1 to 255 bytes is needed",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Key files

/// Why an owner key other than Ed25519 is refused: the proxy registers the 32-byte Ed25519
/// public key.
const OWNER_REFUSAL: &str = "the owner key must be Ed25519, not RSA";

/// Reads the source's owner key: an Ed25519 signing key (PKCS#8).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_owner_key(path: &Path) -> Result<SigningKey> {
    let ed25519 = |k: &SigningKey| k.suite() == SigSuite::Ed25519;
    keyfile::load_accepted(path, ed25519, OWNER_REFUSAL)
}

/// Reads a source's owner public key: Ed25519 (SubjectPublicKeyInfo).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_owner_public(path: &Path) -> Result<VerifyingKey> {
    let ed25519 = |k: &VerifyingKey| k.suite() == SigSuite::Ed25519;
    keyfile::load_accepted(path, ed25519, OWNER_REFUSAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::keyfile::PemKey;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
    }

    #[test]
    fn documented_examples_parse() -> Result<()> {
        let sink: SinkFile = load_toml(&examples().join("relay-sink.toml"))?;
        assert!(!sink.urls().is_empty());
        let source: SourceFile = load_toml(&examples().join("relay-source.toml"))?;
        assert_eq!(source.proxy.port(), COAP_PORT);
        Ok(())
    }

    #[test]
    fn source_setup_debug_hides_the_seed() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut rng = m2msec_crypto::rng::SeededRng::from_seed_u64(9);
        super::super::provision::provision(
            dir.path(),
            &super::super::provision::ProvisionOptions::default(),
            &mut rng,
        )?;
        let setup = load_source(&dir.path().join("relay-source.toml"))?;
        let seed: SourceSeed = keyfile::load(&dir.path().join("keys/relay-source.seed"))?;
        let shown = format!("{setup:?}");
        let seed = seed.expose();
        assert!(!shown.contains(&crate::hex(seed)) && !shown.contains(&format!("{seed:?}")));
        Ok(())
    }

    #[test]
    fn seed_round_trip_and_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("seed.pem");
        keyfile::write_secret(&p, &keyfile::pem(&SourceSeed::new([9; 32]))?)?;
        assert_eq!(*keyfile::load::<SourceSeed>(&p)?.expose(), [9; 32]);
        let short =
            pem_rfc7468::encode_string(SourceSeed::LABEL, pem_rfc7468::LineEnding::LF, &[1; 8])
                .map_err(|e| Error::Usage(e.to_string()))?;
        keyfile::write_secret(&p, &short)?;
        let e = keyfile::load::<SourceSeed>(&p).err();
        assert!(e.is_some_and(|e| e.to_string().contains("has 32 bytes, this one 8")));
        let e = keyfile::load::<pre::SecretKey>(&dir.path().join("missing.key")).err();
        assert!(e.is_some_and(|e| e.to_string().ends_with("no such file")));
        Ok(())
    }
}
