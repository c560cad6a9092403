//! The sink's output: one JSON line per delivered message, appended to a file (synced before
//! the sink acknowledges, cut back to the last committed batch after a crash) or written to
//! standard output.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

use base64ct::{Base64, Encoding as _};
use m2msec_protocol::relay::Delivered;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::private;
use crate::relay::config::{DataEncoding, Output};

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
    /// An individually protected message (§III-B): `stream`, `key_index` and `message_id` are
    /// then bytes of its random 64-bit id. Absent (false) for stream messages.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub individual: bool,
}

/// Writes delivered messages to a file (appended to, synced before the sink acknowledges) or
/// to standard output.
pub struct OutputWriter {
    target: Target,
    encoding: DataEncoding,
}

enum Target {
    Stdout,
    File { path: PathBuf, file: File, len: u64 },
}

impl OutputWriter {
    /// Opens `output` for appending (creating it `0600` and its directory `0700`).
    ///
    /// # Errors
    ///
    /// [`Error::Private`] naming the file (with the `chmod` that fixes an exposed one).
    pub fn open(output: &Output, encoding: DataEncoding) -> Result<Self> {
        let target = match output {
            Output::Stdout => Target::Stdout,
            Output::File(path) => {
                // Decrypted data: owner-only, like the state it comes from.
                let file = private::open(path, private::Write::Append)?;
                let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                Target::File {
                    path: path.clone(),
                    file,
                    len,
                }
            }
        };
        Ok(Self { target, encoding })
    }

    /// The line of one delivered message.
    #[must_use]
    pub fn line(&self, d: &Delivered) -> OutputLine {
        OutputLine {
            source: d.source.clone(),
            stream: d.stream_id,
            key_index: d.key_index,
            message_id: d.message_id,
            epoch: d.epoch,
            data: match self.encoding {
                DataEncoding::Base64 => Base64::encode_string(&d.plaintext),
                DataEncoding::Hex => crate::hex(&d.plaintext),
            },
            individual: d.individual,
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
            Target::File { path, file, len } => {
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(|e| Error::io(&*path, e))?;
                *len += text.len() as u64;
                Ok(())
            }
        }
    }

    /// The output file's length (`None` for standard output).
    #[must_use]
    pub fn file_len(&self) -> Option<u64> {
        match &self.target {
            Target::Stdout => None,
            Target::File { len, .. } => Some(*len),
        }
    }

    /// Cuts what a sink killed mid-batch wrote beyond `committed` (the length recorded with the
    /// seen set): those messages were not acknowledged, and the proxy delivers them again.
    ///
    /// A file shorter than `committed` was rotated or truncated by someone else: it is kept as
    /// it is and written on from its end.
    pub(super) fn reconcile(&mut self, committed: Option<u64>) -> Result<()> {
        let (Target::File { path, file, len }, Some(committed)) = (&mut self.target, committed)
        else {
            return Ok(());
        };
        if *len > committed {
            tracing::warn!(
                output = %path.display(),
                from = *len,
                to = committed,
                "output cut back to its last committed length (a batch was written but not acknowledged)"
            );
            file.set_len(committed)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&*path, e))?;
            *len = committed;
        }
        Ok(())
    }
}
