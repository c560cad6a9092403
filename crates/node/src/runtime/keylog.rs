//! The key log file: `M2MSEC_KEYLOG=FILE` on any `m2msec` command appends every secret of the
//! run to FILE, one `LABEL HEX` line each (labels with `_` for spaces), in the manner of TLS's
//! `SSLKEYLOGFILE`. The file is created owner-only ([`crate::private`]) and refused if others may
//! read it. Meant for checking a run by hand and for the tests that prove no secret reaches a
//! log; never set it on a deployment you care about.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use m2msec_crypto::keylog::{self, KeyLog};

use crate::error::Result;
use crate::private;

/// The environment variable that names the key log file.
pub const ENV: &str = "M2MSEC_KEYLOG";

/// A [`KeyLog`] that appends to a file.
#[derive(Debug)]
pub struct KeyLogFile {
    file: Mutex<File>,
}

impl KeyLogFile {
    /// Opens (appends to) `path`, owner-only.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Private`] naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            file: Mutex::new(private::open(path, private::Write::Append)?),
        })
    }
}

impl KeyLog for KeyLogFile {
    fn log(&self, label: &'static str, secret: &[u8]) {
        // `hex` fills a string of the right capacity, so wrapping it wipes the only copy.
        let hex = zeroize::Zeroizing::new(crate::hex(secret));
        let mut line = zeroize::Zeroizing::new(String::with_capacity(label.len() + 2 + hex.len()));
        line.extend(label.chars().map(|c| if c == ' ' { '_' } else { c }));
        line.push(' ');
        line.push_str(&hex);
        line.push('\n');
        if let Ok(mut f) = self.file.lock() {
            // A key log is a debugging aid: a failed write must not stop the protocol.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Installs the key log file named by [`ENV`], if set; returns its path.
///
/// # Errors
///
/// [`crate::Error::Private`] if the file cannot be opened owner-only.
pub fn install_from_env() -> Result<Option<PathBuf>> {
    let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    keylog::install(Box::new(KeyLogFile::open(&path)?));
    Ok(Some(path))
}
