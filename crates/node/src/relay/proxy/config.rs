//! The proxy's TOML config file (`m2msec run relay-proxy --config FILE`).
//!
//! Every field is documented in `examples/relay-proxy.toml`; every field has a default, so an
//! empty file is a working proxy on 127.0.0.1:5683 keeping its messages in memory only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::coap::Transmission;
use crate::runtime::config::{load_toml, resolve};

/// CoAP's port (RFC 7252 §6.1), the proxy's default.
pub const DEFAULT_PORT: u16 = 5683;

/// The relay proxy's configuration.
///
/// Built from a file with [`ProxyConfig::from_file`], or in code (the demo, the tests) from
/// [`ProxyConfig::default`] with fields changed. Bounds that keep memory finite under a flood
/// (the ingest queue, the number of storages, forwards and observers, the block-wise assembly
/// slots) are all here, so the proxy's peak memory is a function of its config, not of its
/// peers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// CoAP address (UDP) of the API and of message ingestion.
    pub listen: SocketAddr,
    /// The database (redb) of storages, forwards, cursors and stored messages; relative to the
    /// config file. `None`: in memory, lost at exit (tests and demos only).
    pub state: Option<PathBuf>,
    /// Bytes of stored messages the proxy holds at most, over all storages (`info.capacity`).
    pub capacity_bytes: u64,
    /// Largest message (header and body, as stored) accepted, after block-wise reassembly.
    pub max_message_bytes: u32,
    /// Window of `load` and `throughput` when the request names none, in seconds.
    pub load_window_s: u32,
    /// Longest window `load` and `throughput` can be asked for, in seconds (the proxy keeps
    /// one counter slot per second of it).
    pub max_load_window_s: u32,
    /// Max-Age of a 5.03 answer when a storage or the proxy is full, in seconds: when the
    /// source should try again.
    pub max_age_when_full_s: u32,
    /// Max-Age of a 5.03 answer when the ingest queue is momentarily full (a burst), in seconds.
    pub max_age_when_busy_s: u32,
    /// Messages waiting to be made durable, at most; a message arriving when the queue is full
    /// is answered 5.03 at once instead of being held in memory.
    pub ingest_queue: u32,
    /// Messages committed in one store transaction at most (group commit).
    pub group_commit_max: u32,
    /// How long the writer waits for more messages before committing what it has, in
    /// microseconds (0: commit whatever is queued at once).
    pub group_commit_wait_us: u32,
    /// Address the plain-UDP ingestion sockets are bound on (port chosen by the system, one per
    /// storage created with `udp = true`).
    pub udp_bind: IpAddr,
    /// Storages at most.
    pub max_storages: u32,
    /// Forwards at most.
    pub max_forwards: u32,
    /// Sinks per forward at most.
    pub max_sinks_per_forward: u32,
    /// Observers (RFC 7641) at most, over all monitors.
    pub max_observers: u32,
    /// Block-wise (RFC 7959) uploads being reassembled at once, at most.
    pub max_block_transfers: u32,
    /// How far the timestamp of an owner-signed request may be from the proxy's clock, in
    /// seconds; signatures are remembered this long to refuse replays.
    pub signed_max_skew_s: u32,
    /// How long the dedup key of a message is kept after the message was forwarded and removed,
    /// in seconds: a retransmission arriving within it is still recognised (CoAP's
    /// EXCHANGE_LIFETIME is 247 s).
    pub dedup_grace_s: u32,
    /// Shortest time between two notifications of one monitor, in milliseconds.
    pub notify_interval_ms: u32,
    /// A notification is sent confirmable at least this often, in seconds (and at least every
    /// 16th one), so that observers that went away are found and dropped.
    pub notify_con_interval_s: u32,
    /// CoAP transmission parameters of the proxy's own requests (its forwards to the sinks).
    pub coap: Transmission,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            state: None,
            capacity_bytes: 256 * 1024 * 1024,
            max_message_bytes: 64 * 1024,
            load_window_s: 60,
            max_load_window_s: 3600,
            max_age_when_full_s: 5,
            max_age_when_busy_s: 1,
            ingest_queue: 4096,
            group_commit_max: 512,
            group_commit_wait_us: 500,
            udp_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_storages: 1024,
            max_forwards: 1024,
            max_sinks_per_forward: 16,
            max_observers: 256,
            max_block_transfers: 64,
            signed_max_skew_s: 300,
            dedup_grace_s: 300,
            notify_interval_ms: 200,
            notify_con_interval_s: 30,
            coap: Transmission::default(),
        }
    }
}

impl ProxyConfig {
    /// Reads `file`, resolving `state` against the file's directory, and checks the values.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file and the field: not TOML, an unknown field, a value of
    /// the wrong type or out of range.
    pub fn from_file(file: &Path) -> Result<Self> {
        let mut config: Self = load_toml(file)?;
        config.state = config.state.map(|s| resolve(file, &s));
        config
            .check()
            .map_err(|message| Error::config(file, message))?;
        Ok(config)
    }

    /// What the engine applies of it; `max_control_calls` control calls wait or run at once.
    #[must_use]
    pub fn limits(&self, max_control_calls: usize) -> m2msec_protocol::relay::proxy::Limits {
        m2msec_protocol::relay::proxy::Limits {
            capacity_bytes: self.capacity_bytes,
            max_message_bytes: self.max_message_bytes,
            load_window_s: self.load_window_s,
            max_load_window_s: self.max_load_window_s,
            max_age_when_full_s: self.max_age_when_full_s,
            max_age_when_busy_s: self.max_age_when_busy_s,
            max_storages: self.max_storages,
            max_forwards: self.max_forwards,
            max_sinks_per_forward: self.max_sinks_per_forward,
            signed_max_skew_s: self.signed_max_skew_s,
            max_control_calls,
        }
    }

    /// Checks the values that must be non-zero or consistent; the message names the field.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the field.
    pub fn check(&self) -> core::result::Result<(), String> {
        let positive = [
            ("ingest_queue", self.ingest_queue),
            ("group_commit_max", self.group_commit_max),
            ("notify_con_interval_s", self.notify_con_interval_s),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{field} must be at least 1"));
        }
        // The engine's own limits (`Limits::check`).
        self.limits(1).check()?;
        self.coap.check()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    #[test]
    fn an_empty_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            ProxyConfig::from_file(&file).unwrap(),
            ProxyConfig::default()
        );
        assert_eq!(ProxyConfig::default().listen.port(), DEFAULT_PORT);
    }

    #[test]
    fn the_example_file_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/relay-proxy.toml");
        let config = ProxyConfig::from_file(&file).unwrap();
        assert_eq!(config.listen, "127.0.0.1:5683".parse().unwrap());
        assert!(config.state.unwrap().ends_with("state/relay-proxy.redb"));
        assert_eq!(config.capacity_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn state_is_relative_to_the_file_and_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "state = \"s/p.redb\"\n").unwrap();
        let c = ProxyConfig::from_file(&file).unwrap();
        assert_eq!(c.state.unwrap(), dir.path().join("s/p.redb"));
        std::fs::write(&file, "ingest_queue = 0\n").unwrap();
        let e = ProxyConfig::from_file(&file).unwrap_err().to_string();
        assert!(e.contains("ingest_queue") && e.contains("p.toml"), "{e}");
        std::fs::write(&file, "listen_on = 1\n").unwrap();
        let e = ProxyConfig::from_file(&file).unwrap_err().to_string();
        assert!(e.contains("listen_on"), "{e}");
        std::fs::write(&file, "capacity_bytes = \"lots\"\n").unwrap();
        let e = ProxyConfig::from_file(&file).unwrap_err().to_string();
        assert!(e.contains("capacity_bytes"), "{e}");
    }

    #[test]
    fn coap_transmission_parameters_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "[coap]\nack_timeout_ms = 250\nmax_retransmit = 6\n").unwrap();
        let coap = ProxyConfig::from_file(&file).unwrap().coap;
        assert_eq!((coap.ack_timeout_ms, coap.max_retransmit), (250, 6));
        for (text, field) in [
            ("[coap]\nack_timeout_ms = 5\n", "coap.ack_timeout_ms"),
            ("[coap]\nmax_retransmit = 11\n", "coap.max_retransmit"),
            ("[coap]\nack_timeout = 200\n", "ack_timeout"),
            ("[coap]\nack_timeout_ms = -1\n", "ack_timeout_ms"),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = ProxyConfig::from_file(&file).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("p.toml"), "{text}: {e}");
        }
    }
}
