//! The `relay-sink` daemon: takes what the proxy forwards (CoAP POSTs and binary-header UDP
//! datagrams), opens it with the protocol's [`Sink`](m2msec_protocol::relay::Sink), and writes
//! every delivered message to its output as one JSON line.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::{DataEncoding, Output};
use crate::error::{Error, Result};

/// One delivered message as the sink writes it: one JSON object per line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OutputLine {
    /// The source's URL.
    pub source: String,
    /// The stream id.
    pub stream: u16,
    /// The key index of the message's section.
    pub key_index: u16,
    /// The message id.
    pub message_id: u32,
    /// The epoch of the section.
    pub epoch: u32,
    /// The data, in the sink's encoding.
    pub data: String,
}

/// Writes delivered messages to a file (appended to, synced before the sink acknowledges) or
/// to standard output.
pub struct OutputWriter {
    target: Target,
    encoding: DataEncoding,
}

enum Target {
    Stdout,
    File { path: PathBuf, file: File },
}

impl OutputWriter {
    /// Opens `output` for appending (creating it and its directory).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file.
    pub fn open(output: &Output, encoding: DataEncoding) -> Result<Self> {
        let target = match output {
            Output::Stdout => Target::Stdout,
            Output::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                Target::File {
                    path: path.clone(),
                    file,
                }
            }
        };
        Ok(Self { target, encoding })
    }

    /// The line of one delivered message.
    #[must_use]
    pub fn line(
        &self,
        source: &str,
        stream: u16,
        key_index: u16,
        message_id: u32,
        epoch: u32,
        data: &[u8],
    ) -> OutputLine {
        OutputLine {
            source: source.to_owned(),
            stream,
            key_index,
            message_id,
            epoch,
            data: match self.encoding {
                DataEncoding::Base64 => base64(data),
                DataEncoding::Hex => crate::hex(data),
            },
        }
    }

    /// Writes `lines` and makes them durable (a file is synced; standard output flushed).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file.
    pub fn write(&mut self, lines: &[OutputLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for l in lines {
            // Serialising a struct of strings and integers cannot fail.
            text.push_str(&serde_json::to_string(l).unwrap_or_default());
            text.push('\n');
        }
        match &mut self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io("standard output", e))
            }
            Target::File { path, file } => file
                .write_all(text.as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io(&*path, e)),
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4).
#[must_use]
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` if `text` is not that.
#[must_use]
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (k, chunk) in bytes.chunks(4).enumerate() {
        let last = k + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            let v = if k < 4 - pad { value(c)? } else { 0 };
            n = (n << 6) | v;
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}

/// Counts rejected messages and logs them at most `per_second` times a second, then a summary
/// of how many were not logged: a flood of bad datagrams cannot flood the log.
pub struct RejectLog {
    rejected: u64,
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
    per_second: u32,
}

impl RejectLog {
    /// A log of at most `per_second` lines a second.
    #[must_use]
    pub fn new(per_second: u32) -> Self {
        Self {
            rejected: 0,
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
            per_second,
        }
    }

    /// Every rejection so far.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Counts one rejection from `from` for `why`, and logs it unless the rate is exceeded.
    pub fn reject(&mut self, from: &dyn core::fmt::Display, why: &dyn core::fmt::Display) {
        self.rejected += 1;
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(
                    suppressed = self.suppressed,
                    total = self.rejected,
                    "more messages rejected (not logged one by one)"
                );
            }
            self.window_start = now;
            self.in_window = 0;
            self.suppressed = 0;
        }
        if self.in_window < self.per_second {
            self.in_window += 1;
            tracing::warn!(%from, reason = %why, total = self.rejected, "message rejected");
        } else {
            self.suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 §10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64_decode("Zg="), None);
        assert_eq!(base64_decode("Zg==Zg=="), None);
        assert_eq!(base64_decode("Z!=="), None);
    }

    #[test]
    fn output_lines_are_appended() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("out/sink.jsonl");
        for _ in 0..2 {
            let mut w = OutputWriter::open(&Output::File(path.clone()), DataEncoding::Hex)?;
            let line = w.line("coap://s/", 1, 2, 3, 4, b"\x01\xff");
            w.write(&[line])?;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let lines: Vec<OutputLine> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<core::result::Result<_, _>>()
            .map_err(|e| Error::Usage(e.to_string()))?;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].data, "01ff");
        assert_eq!(lines[1].message_id, 3);
        Ok(())
    }
}
