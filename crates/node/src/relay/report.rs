//! What a relay demo run says: the storage, its sections and each sink's window.

use core::fmt;

use serde::Serialize;

use crate::harness::report::{RunReport, Summary, line};

/// The relay's own part of a [`RunReport`].
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    /// The pairing group of the proxy re-encryption.
    pub group: &'static str,
    /// The proxy re-encryption scheme.
    pub pke: &'static str,
    /// Data messages the source sent.
    pub sent: u32,
    /// Data messages the proxy acknowledged as stored.
    pub stored: u32,
    /// Data messages delivered, over both sinks.
    pub delivered: u32,
    /// The storage the proxy created.
    pub storage_id: u32,
    /// Sections (section keys, one management message each) the source sealed.
    pub sections: u32,
    /// Data messages the proxy held before any sink was known.
    pub stored_before_sink: u32,
    /// Data messages per section.
    pub rotate_messages: u32,
    /// Management messages the proxy re-encrypted (AFGH eq. (3)), over both sinks.
    pub reencrypted: u64,
    /// Asymmetric operations of both sinks (AFGH first-level decryptions, signature checks).
    pub sink_asymmetric_ops: u64,
    /// Each sink's outcome.
    pub sinks: Vec<SinkOutcome>,
}

/// What one sink received.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SinkOutcome {
    /// The sink's URL.
    pub url: String,
    /// Data messages the source had sent when the sink was designated.
    pub designated_after: u32,
    /// The key index of the first section it may read.
    pub first_key_index: u16,
    /// Messages it should deliver: every message of its window.
    pub expected: u32,
    /// Messages it delivered.
    pub delivered: u32,
    /// Whether it delivered exactly the expected plaintexts, each once.
    pub matches: bool,
}

impl Summary for Detail {
    fn summary(&self, r: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let established = format!(
            "{} messages streamed through the proxy, every sink got exactly its window,",
            self.sent
        );
        writeln!(
            f,
            "{}: {}  (AFGH on BLS12-381, {}, {} messages per section)",
            r.protocol,
            r.head(&established, "failed"),
            r.suite,
            self.rotate_messages
        )?;
        writeln!(
            f,
            "  storage {}        {} messages stored while no sink was known",
            self.storage_id, self.stored_before_sink
        )?;
        line(
            f,
            "sections",
            format_args!(
                "{} section keys, each signed by the source and sealed to its epoch key",
                self.sections
            ),
        )?;
        for (i, s) in self.sinks.iter().enumerate() {
            let when = if i == 0 {
                format!(
                    "designated after {} messages, forwarded from the beginning",
                    s.designated_after
                )
            } else {
                format!(
                    "added after {} messages, from section {} on (the one in progress, or the next if its key was gone)",
                    s.designated_after, s.first_key_index
                )
            };
            let verdict = if s.matches {
                "each once, as sent"
            } else {
                "NOT WHAT WAS SENT"
            };
            writeln!(
                f,
                "  sink {}           {}: {when}: {} of {} delivered, {verdict}",
                i + 1,
                s.url,
                s.delivered,
                s.expected
            )?;
        }
        line(
            f,
            "proxy",
            format_args!(
                "{} management messages re-encrypted (AFGH eq. 3); it holds no key that opens them",
                self.reencrypted
            ),
        )?;
        r.write_error(f)?;
        line(
            f,
            "wire",
            format_args!(
                "{} relay messages in and out of the proxy, {} bytes",
                r.messages, r.bytes
            ),
        )?;
        let o = &r.device_ops;
        line(
            f,
            "source ops",
            format_args!(
                "symmetric {}, hash {}, asymmetric {}  (sinks: asymmetric {})",
                o.symmetric, o.hash, o.asymmetric, self.sink_asymmetric_ops
            ),
        )?;
        r.write_outcome(f, ["failed as expected"; 2])
    }
}
