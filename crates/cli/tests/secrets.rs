//! Issue 18, "secrets never in logs or errors": every demo runs at the most verbose log level
//! (`-vv`, every target at TRACE) with `M2MSEC_KEYLOG` set, so that the run itself lists every
//! secret it made — long-term and session keys, shares, section keys, group exponents, KDF
//! outputs and plaintexts. None of them may appear in what the command printed: the log on
//! standard error, the report on standard output, and the error messages of runs that fail on
//! purpose (helpers that stay silent or alter their parts, an expired warrant).
//!
//! A secret is looked for as hex (either case), as base64 and as Rust's `Debug` of a byte
//! slice; a plaintext also as text.

use std::collections::BTreeSet;
use std::process::Command;

mod common;
use common::{BIN, text};

/// One secret of the key log.
struct Secret {
    label: String,
    bytes: Vec<u8>,
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `m2msec -vv demo ARGS --json` with a key log; returns the secrets and everything printed.
fn run(args: &[&str]) -> (Vec<Secret>, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keylog = dir.path().join("keys.log");
    let out = Command::new(BIN)
        .args(["-vv", "demo", "--json"])
        .args(args)
        .env_remove("RUST_LOG")
        .env("M2MSEC_KEYLOG", &keylog)
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "demo {args:?} failed:\n{printed}");
    // Not every protocol logs at TRACE (the relay's CoAP shell logs nothing per datagram);
    // that the log is there at all is what is checked.
    assert!(printed.contains(" INFO "), "no log: {printed}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keylog)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key log is owner-only");
    }
    let secrets = std::fs::read_to_string(&keylog)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|line| {
            let (label, hex) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            Secret {
                label: label.to_owned(),
                bytes,
            }
        })
        .collect();
    (secrets, printed)
}

/// Runs the demo and checks that none of its secrets was printed; `expected` are labels the key
/// log must hold (so that the check is not vacuous).
fn assert_no_secret_printed(args: &[&str], expected: &[&str]) {
    let (secrets, printed) = run(args);
    let labels: BTreeSet<&str> = secrets.iter().map(|s| s.label.as_str()).collect();
    for label in expected {
        assert!(labels.contains(label), "{args:?}: no {label} in {labels:?}");
    }
    let lower = printed.to_lowercase();
    let mut checked = 0;
    for s in &secrets {
        // Shorter values (a 2-byte share of a tiny secret) would match by chance.
        if s.bytes.len() < 8 {
            continue;
        }
        checked += 1;
        let mut needles = vec![base64(&s.bytes), format!("{:?}", s.bytes)];
        if let (true, Ok(t)) = (s.label == "plaintext", std::str::from_utf8(&s.bytes)) {
            needles.push(t.to_owned());
        }
        assert!(
            !lower.contains(&hex(&s.bytes)),
            "{args:?}: {} {} printed as hex",
            s.label,
            hex(&s.bytes)
        );
        for needle in needles {
            assert!(
                !printed.contains(&needle),
                "{args:?}: {} printed as {needle}",
                s.label
            );
        }
    }
    assert!(
        checked >= expected.len(),
        "{args:?}: only {checked} secrets"
    );
}

#[test]
fn collab_prints_no_secret() {
    assert_no_secret_printed(
        &["--protocol", "collab"],
        &["collab_x", "collab_y", "collab_MK", "share", "aead_key"],
    );
    assert_no_secret_printed(
        &[
            "--protocol",
            "collab",
            "--faulty",
            "2",
            "--fault",
            "forge",
            "--sharing",
            "shamir",
        ],
        &["collab_MK", "share"],
    );
    // More silent proxies than the threshold tolerates: the run fails with its error.
    assert_no_secret_printed(
        &[
            "--protocol",
            "collab",
            "--faulty",
            "3",
            "--fault",
            "silent",
            "--timeout",
            "5",
        ],
        &["collab_x", "share"],
    );
}

#[test]
fn mikey_prints_no_secret() {
    for mode in ["psk", "pk", "distributed"] {
        assert_no_secret_printed(
            &["--protocol", "mikey", "--mode", mode],
            &["mikey_TGK", "mikey_prf_output"],
        );
    }
    // Third parties that alter their parts beyond the threshold: a failed exchange.
    assert_no_secret_printed(
        &["--protocol", "mikey", "--faulty", "3", "--fault", "alter"],
        &["share", "mikey_TGK"],
    );
}

#[test]
fn sga_prints_no_secret() {
    assert_no_secret_printed(
        &["--protocol", "sga", "--restart-gateway"],
        &["sga_K", "sga_device_key", "plaintext", "group_scalar"],
    );
}

#[test]
fn e2sec_prints_no_secret() {
    assert_no_secret_printed(
        &["--protocol", "e2sec"],
        &["e2sec_SK", "e2sec_g^ab", "group_scalar"],
    );
    assert_no_secret_printed(
        &["--protocol", "e2sec", "--expired-warrant"],
        &["group_scalar"],
    );
}

#[test]
fn relay_prints_no_secret() {
    assert_no_secret_printed(
        &["--protocol", "relay"],
        &[
            "relay_section_key",
            "plaintext",
            "afgh_secret_a1",
            "relay_source_seed",
        ],
    );
}
