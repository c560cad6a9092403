//! What a demo run reports, the same shape for every protocol (DESIGN.md, "Interfaces the
//! project keeps stable": one JSON object per protocol run).

use core::fmt;

use m2msec_protocol::{GroupOps, OpCounts};
use serde::Serialize;

use crate::harness::demo::RunOptions;
pub use crate::protocols::Detail;
use crate::runtime::tap::WireTotals;

/// The result of one protocol run of `m2msec demo`: what every protocol reports, then the
/// protocol's own [`Detail`], serialised beside the common fields as one flat JSON object.
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
    /// The seed, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The capture file, if one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<String>,
    /// The helpers between the two ends.
    #[serde(flatten)]
    pub helpers: Helpers,
    /// What only this protocol reports; it also writes the run's human summary.
    #[serde(flatten)]
    pub detail: Detail,
}

/// The helpers of a run (collab proxies, MIKEY third parties, the relay proxy) and how many of
/// them misbehaved; every report carries these keys, zero where a protocol has no helpers.
#[derive(Clone, Debug, Serialize)]
pub struct Helpers {
    /// The helpers that took part: for collab as the server listed them; for MIKEY the third
    /// parties that forwarded a part the responder did not reject (empty when no key was
    /// established); for the relay the sinks.
    pub participants: Vec<String>,
    /// Number of helpers (collab proxies, MIKEY third parties).
    pub proxies: u8,
    /// Helpers needed.
    pub threshold: u8,
    /// Secret sharing ("rs" or "shamir"; "none" where nothing is split).
    pub sharing: &'static str,
    /// Misbehaving helpers.
    pub faulty: u8,
    /// How they misbehave (for E2SEC, the expired warrant the demo was asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// Their names.
    pub faulty_proxies: Vec<String>,
}

impl Default for Helpers {
    fn default() -> Self {
        Self {
            participants: Vec::new(),
            proxies: 0,
            threshold: 0,
            sharing: "none",
            faulty: 0,
            fault: None,
            faulty_proxies: Vec::new(),
        }
    }
}

impl Helpers {
    /// The sharing scheme as a summary names it.
    #[must_use]
    pub fn sharing_name(&self) -> &'static str {
        if self.sharing == "shamir" {
            "Shamir"
        } else {
            "Reed-Solomon"
        }
    }

    /// The helpers' lines of a summary: those that took part (under `label`) and those that
    /// misbehaved and how (`note` after them), each if there are any.
    ///
    /// # Errors
    ///
    /// Only the formatter's.
    pub fn write(&self, f: &mut fmt::Formatter<'_>, label: &str, note: &str) -> fmt::Result {
        if !self.participants.is_empty() {
            line(f, label, self.participants.join(", "))?;
        }
        if self.faulty == 0 {
            return Ok(());
        }
        let (names, fault) = (self.faulty_proxies.join(", "), self.fault.unwrap_or("?"));
        line(f, "faulty", format_args!("{names} ({fault}){note}"))
    }
}

/// A protocol's own part of a [`RunReport`]: it writes the human summary of the run, so that
/// `m2msec demo` prints each protocol's lines without knowing which protocol it ran.
pub trait Summary {
    /// The summary of `run`, one line per fact, each ending in a newline.
    ///
    /// # Errors
    ///
    /// Only the formatter's.
    fn summary(&self, run: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.detail.summary(self, f)
    }
}

/// One labelled line of a summary, the labels aligned.
///
/// # Errors
///
/// Only the formatter's.
pub fn line(f: &mut fmt::Formatter<'_>, label: &str, value: impl fmt::Display) -> fmt::Result {
    writeln!(f, "  {label:<17}{value}")
}

impl RunReport {
    /// The report of a `protocol` run with `opts` that put `wire` on the wire in `wall_ms`:
    /// failed, expected to succeed, without helpers, for the protocol to fill in the rest.
    #[must_use]
    pub fn new(
        protocol: &'static str,
        opts: &RunOptions,
        wire: WireTotals,
        wall_ms: f64,
        detail: Detail,
    ) -> Self {
        Self {
            protocol,
            ok: false,
            session_key_match: false,
            messages: wire.messages,
            bytes: wire.bytes,
            device_ops: DeviceOps::default(),
            wall_ms,
            error: None,
            expected_ok: true,
            as_expected: false,
            session: None,
            key_fingerprint: None,
            suite: "",
            seed: opts.seed,
            pcap: opts.pcap_name(),
            helpers: Helpers::default(),
            detail,
        }
    }

    /// The report with the run's verdict: ok exactly when nothing went wrong (no `error`), as
    /// expected when that is what `expected_ok` says.
    #[must_use]
    pub fn judged(self, session_key_match: bool, error: Option<String>, expected_ok: bool) -> Self {
        let ok = error.is_none();
        Self {
            ok,
            session_key_match,
            error,
            expected_ok,
            as_expected: ok == expected_ok,
            ..self
        }
    }

    /// "key established in … ms" or `failed`.
    #[must_use]
    pub fn head(&self, established: &str, failed: &str) -> String {
        if self.ok {
            format!("{established} in {:.1} ms", self.wall_ms)
        } else {
            failed.to_owned()
        }
    }

    /// The session line, if there is a session, and the key fingerprint line, if there is a
    /// fingerprint (under their `labels`): `agree` when both ends hold the same key, `differs`
    /// when they do not, then `extra` inside the parentheses.
    ///
    /// # Errors
    ///
    /// Only the formatter's.
    pub fn write_keys(
        &self,
        f: &mut fmt::Formatter<'_>,
        [session, label]: [&str; 2],
        [agree, differs]: [&str; 2],
        extra: &str,
    ) -> fmt::Result {
        if let Some(s) = &self.session {
            line(f, session, s)?;
        }
        match &self.key_fingerprint {
            Some(fp) => {
                let agreement = if self.session_key_match {
                    agree
                } else {
                    differs
                };
                line(f, label, format_args!("{fp} ({agreement}{extra})"))
            }
            None => Ok(()),
        }
    }

    /// The lines every summary but the relay's (its wire is the proxy's messages) ends with: the error, if any; the datagrams and bytes on the
    /// wire (`note` after them); the device's operations under `device`; the capture file; the
    /// verdict ([`Self::write_outcome`]).
    ///
    /// # Errors
    ///
    /// Only the formatter's.
    pub fn write_tail(
        &self,
        f: &mut fmt::Formatter<'_>,
        note: &str,
        device: &str,
        failed: [&str; 2],
    ) -> fmt::Result {
        self.write_error(f)?;
        let (messages, bytes) = (self.messages, self.bytes);
        line(
            f,
            "wire",
            format_args!("{messages} datagrams, {bytes} bytes{note}"),
        )?;
        let o = &self.device_ops;
        write!(
            f,
            "  {device:<17}symmetric {}, hash {}, redundancy {}, asymmetric {}",
            o.symmetric, o.hash, o.redundancy, o.asymmetric
        )?;
        match o.group {
            Some(g) => writeln!(
                f,
                "  (T_E {}, T_M {}, T_H {}, T_A {})",
                g.te, g.tm, g.th, g.ta
            )?,
            None => writeln!(f)?,
        }
        if let Some(p) = &self.pcap {
            line(f, "capture", p)?;
        }
        self.write_outcome(f, failed)
    }

    /// The error line, if the run failed.
    ///
    /// # Errors
    ///
    /// Only the formatter's.
    pub fn write_error(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(e) => line(f, "error", e),
            None => Ok(()),
        }
    }

    /// The verdict line; `failed` says why a run meant to fail did, and what it says when
    /// such a run failed otherwise.
    ///
    /// # Errors
    ///
    /// Only the formatter's.
    pub fn write_outcome(&self, f: &mut fmt::Formatter<'_>, failed: [&str; 2]) -> fmt::Result {
        let verdict = match (self.ok, self.expected_ok, self.as_expected) {
            (true, true, _) => "as expected",
            (false, false, true) => failed[0],
            (false, false, false) => failed[1],
            (false, true, _) => "UNEXPECTED FAILURE",
            (true, false, _) => "UNEXPECTED SUCCESS",
        };
        line(f, "outcome", verdict)
    }
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

/// Where a run reports its progress (a progress bar, a log, nothing).
pub trait Progress: Sync {
    /// A new stage has begun.
    fn stage(&self, what: &str);

    /// The run ended: "done: `what`" if `ok`, else "done: failed".
    fn done(&self, ok: bool, what: &str) {
        self.stage(&if ok {
            format!("done: {what}")
        } else {
            "done: failed".to_owned()
        });
    }
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _what: &str) {}
}
