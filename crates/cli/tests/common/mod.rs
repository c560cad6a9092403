//! Helpers every test of the `m2msec` binary shares.
// Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

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

/// Runs `m2msec provision DIR ARGS`, which must succeed; its listing of what it wrote.
pub(crate) fn provision(dir: &Path, args: &[&str]) -> String {
    let dir = dir.to_string_lossy();
    let mut all = vec!["provision", &*dir];
    all.extend_from_slice(args);
    let out = m2msec(&all);
    assert!(out.status.success(), "provision: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The JSON answer of a command that must have succeeded.
pub(crate) fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// The JSON lines of a command that must have succeeded (`bench --json`, `demo --json`).
pub(crate) fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The bench figure called `name`.
pub(crate) fn figure<'a>(figures: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    figures
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {figures:?}"))
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

/// Starts `m2msec run ROLE --config CONFIG` and waits until it logs that it serves; returns its
/// index in `daemons`.
pub(crate) fn start(daemons: &mut Daemons, role: &str, config: &Path) -> usize {
    start_logged(daemons, role, config).0
}

/// As [`start`], also returning the daemon's log lines, which grow as it writes them.
pub(crate) fn start_logged(daemons: &mut Daemons, role: &str, config: &Path) -> (usize, Log) {
    let mut child = Command::new(BIN)
        .args(["run", role, "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {role}: {e}"));
    let stderr = child.stderr.take();
    daemons.0.push(child);
    let log = Log::default();
    let (tx, rx) = mpsc::channel();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        let Some(stderr) = stderr else { return };
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("serving") {
                let _ = tx.send(());
            }
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{role} ({}) did not start", config.display()));
    (daemons.0.len() - 1, log)
}

/// A daemon's log lines, as [`start_logged`] collects them.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// Stops daemon `index` as an operator does, with SIGTERM, and waits for it to exit.
pub(crate) fn terminate(daemons: &mut Daemons, index: usize) {
    let child = &mut daemons.0[index];
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(killed.success(), "kill -TERM failed");
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(status.success(), "the daemon stopped with {status}");
}

/// Starts the helpers `ROLE-1` … `ROLE-n` of a provisioned deployment in `dir`, as [`start`] does.
pub(crate) fn start_numbered(daemons: &mut Daemons, role: &str, dir: &Path, n: usize) {
    for i in 1..=n {
        start(daemons, role, &dir.join(format!("{role}-{i}.toml")));
    }
}

/// Runs the client role `role` with `config` to completion: `count` sessions `interval_ms`
/// apart, logging at info level.
pub(crate) fn run_client(role: &str, config: &Path, count: u32, interval_ms: u32) -> Output {
    Command::new(BIN)
        .args(["run", role, "--count", &count.to_string()])
        .args(["--interval", &interval_ms.to_string(), "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("{role}: {e}"))
}

/// A UDP port free on loopback now (the roles bind 127.0.0.x addresses nothing else uses).
pub(crate) fn free_port() -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    sock.local_addr().map(|a| a.port()).unwrap_or(47_400)
}

/// Asserts what issue 18 asks of a deployment after its daemons ran: no file under `dir` that
/// group or others may change, and none they may read but configs (`.toml`), public keys
/// (`.pub`) and certificates (`.cert`); every directory m2msec created owner-only.
pub(crate) fn assert_owner_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            let mode = meta.permissions().mode() & 0o777;
            let public = path
                .extension()
                .is_some_and(|e| e == "toml" || e == "pub" || e == "cert");
            let forbidden = if meta.is_dir() || !public {
                0o077
            } else {
                0o022
            };
            assert_eq!(mode & forbidden, 0, "{} has mode {mode:o}", path.display());
            checked += 1;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(checked > 0, "nothing under {}", dir.display());
}

/// Makes `file` readable by everyone, runs `m2msec run ROLE --config CONFIG`, which must refuse
/// to start naming the file and the `chmod` that fixes it, and restores the mode.
pub(crate) fn assert_exposed_file_refused(role: &str, config: &Path, file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |mode| {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    };
    set(0o644);
    let out = m2msec(&["run", role, "--config", &config.to_string_lossy()]);
    set(0o600);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{role} started on {}",
        file.display()
    );
    let e = text(&out.stderr);
    assert!(
        e.contains(&format!("chmod 600 {}", file.display())) && e.contains("mode 0644"),
        "{e}"
    );
}
