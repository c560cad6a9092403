//! The key log: every secret a run makes, handed to whoever asked for them, like TLS's
//! `SSLKEYLOGFILE` (rustls' `KeyLog`).
//!
//! It exists for two readers. A user who wants to check a run by hand (decrypt a capture, compare
//! a key with another implementation) sets `M2MSEC_KEYLOG=FILE` on the `m2msec` command. And the
//! tests: knowing every key, share, section key and plaintext of a demo run, they check that
//! none of them reaches a log line or an error message.
//!
//! Secrets are born in many places (an AEAD key from a file or a KDF, the shares of a split, a
//! protocol's session key, a decrypted message), deep inside roles that are built without any
//! I/O. Threading a logger through every role's config would touch every constructor for a
//! facility that is off in production; instead, as `tracing` and `log` do, one process-wide sink
//! is installed once by the program's entry point, and the places that make a secret call
//! [`log`], which is one atomic load when nothing is installed.

use std::sync::OnceLock;

/// Receives the secrets of a run. Implementations must be cheap and never fail loudly: they run
/// inside cryptographic code paths.
pub trait KeyLog: Send + Sync {
    /// `label` says what the secret is ("aead key", "share", "collab MK", "plaintext", …).
    fn log(&self, label: &'static str, secret: &[u8]);
}

static KEY_LOG: OnceLock<Box<dyn KeyLog>> = OnceLock::new();

/// Installs the process's key log. Returns `false` (and drops `log`) if one was installed
/// already: a key log cannot be replaced, so that no secret goes to a sink nobody asked for.
pub fn install(log: Box<dyn KeyLog>) -> bool {
    KEY_LOG.set(log).is_ok()
}

/// Whether a key log is installed (for callers that would compute something only to log it).
#[must_use]
pub fn enabled() -> bool {
    KEY_LOG.get().is_some()
}

/// Hands `secret` to the installed key log, if any.
pub fn log(label: &'static str, secret: &[u8]) {
    if let Some(sink) = KEY_LOG.get() {
        sink.log(label, secret);
    }
}
