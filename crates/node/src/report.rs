//! What a demo run reports, the same shape for every protocol (DESIGN.md, "Interfaces the
//! project keeps stable": one JSON object per protocol run).

use m2msec_protocol::OpCounts;
use serde::Serialize;

/// The result of one protocol run of `m2msec demo`.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The protocol ("collab", "mikey", …).
    pub protocol: &'static str,
    /// Whether a key was established and both ends hold the same one.
    pub ok: bool,
    /// Whether the client's and the server's key fingerprints are equal.
    pub session_key_match: bool,
    /// Datagrams sent on the wire by all roles.
    pub messages: u64,
    /// UDP payload bytes sent on the wire by all roles.
    pub bytes: u64,
    /// Cryptographic operations of the constrained device.
    pub device_ops: DeviceOps,
    /// Wall-clock time of the key establishment, in milliseconds (key generation excluded).
    pub wall_ms: f64,
    /// The helpers that took part: for collab as the server listed them; for MIKEY the third
    /// parties that forwarded a part the responder did not reject (empty when no key was established).
    pub participants: Vec<String>,
    /// Why the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this run was expected to succeed (false when more helpers misbehave than the
    /// threshold tolerates).
    pub expected_ok: bool,
    /// Whether `ok` is what was expected: the exit status of `m2msec demo` is zero only if
    /// this holds for every run.
    pub as_expected: bool,
    /// The session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's key fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Public-key suite ("modern" or "classic"; MIKEY is RSA-2048, "classic"); for SGA the
    /// negotiated AEAD ("aes-128-ccm8", "chacha20-poly1305" or "ascon-128").
    pub suite: &'static str,
    /// Number of helpers (collab proxies, MIKEY third parties).
    pub proxies: u8,
    /// Helpers needed.
    pub threshold: u8,
    /// Secret sharing ("rs" or "shamir"; "none" where nothing is split).
    pub sharing: &'static str,
    /// Misbehaving helpers.
    pub faulty: u8,
    /// How they misbehave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// Their names.
    pub faulty_proxies: Vec<String>,
    /// How the key travelled, for protocols with modes (MIKEY: "psk", "pk", "distributed").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// Whether the responder proved it holds the key (MIKEY's verification message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The seed, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The capture file, if one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<String>,
    /// The key-exchange group, for protocols that choose one (SGA: "ristretto255", "modp2048").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'static str>,
    /// The gateway's public-key encryption, for SGA ("x25519" or "rsa-oaep-2048").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pke: Option<&'static str>,
    /// The signature variant, for E2SEC ("elgamal", "schnorr", "dsa").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'static str>,
    /// Application messages sent through a store-and-forward server (SGA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<u32>,
    /// How many of them the server acknowledged as durably stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<u32>,
    /// How many the recipient received (each once, in order, when the run is ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u32>,
    /// Whether the server was killed and restarted between sending and delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_gateway: Option<bool>,
}

/// The constrained device's operations: the four counts every protocol reports and, for the
/// protocols whose paper counts group arithmetic (E2SEC), the raw counts T_E, T_M, T_H, T_A,
/// serialised beside them (`te`, `tm`, `th`, `ta`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceOps {
    /// Symmetric, hash, redundancy and asymmetric operations.
    #[serde(flatten)]
    pub counts: OpCounts,
    /// Group arithmetic, where the protocol counts it.
    #[serde(flatten)]
    pub group: Option<GroupOps>,
}

impl core::ops::Deref for DeviceOps {
    type Target = OpCounts;

    fn deref(&self) -> &OpCounts {
        &self.counts
    }
}

impl From<OpCounts> for DeviceOps {
    fn from(counts: OpCounts) -> Self {
        Self {
            counts,
            group: None,
        }
    }
}

/// Group arithmetic as the E2SEC paper counts it (its Tables V and VI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupOps {
    /// Modular exponentiations (T_E).
    pub te: u64,
    /// Multiplications of group elements and of scalars (T_M).
    pub tm: u64,
    /// Hashes to a scalar (T_H).
    pub th: u64,
    /// Other scalar arithmetic: additions, subtractions, reductions (T_A).
    pub ta: u64,
}

/// Where a run reports its progress (a progress bar, a log, nothing).
pub trait Progress: Sync {
    /// A new stage has begun.
    fn stage(&self, what: &str);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _what: &str) {}
}
