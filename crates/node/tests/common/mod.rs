//! Helpers shared by the node's integration tests: libcoap's command-line tools, when
//! installed, as the independent implementation the relay's CoAP is checked against.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The first of `names` found on `PATH`.
pub(crate) fn tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs libcoap's client `bin` with `args` and returns what it printed; fails the test unless
/// it succeeds. `-B 10` bounds how long it waits, so a broken exchange fails instead of hanging.
pub(crate) async fn run_libcoap(bin: &Path, args: &[&str]) -> Vec<u8> {
    let mut command = std::process::Command::new(bin);
    command.args(["-B", "10"]).args(args).stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
