//! Helpers every test of the `m2msec` binary shares.
// Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::process::{Child, Command, Output};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_m2msec");

/// Runs `m2msec ARGS` to completion (with RUST_LOG cleared, so the output is the command's own).
pub(crate) fn m2msec(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

/// Output bytes as text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Daemons killed when the test ends, however it ends.
pub(crate) struct Daemons(pub(crate) Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
