//! E2SEC through the built `m2msec` binary: the demo for every variant and group, the expired
//! warrant's refusal, daemons from `provision` as real processes, the bench's cost table, and
//! clear errors for bad configs and keys.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn demo_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["demo", "--protocol", "e2sec", "--json"];
    args.extend_from_slice(extra);
    let out = m2msec(&args);
    assert!(out.status.success(), "{extra:?}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn demo_agrees_on_sk_for_every_variant_and_group() {
    for variant in ["elgamal", "schnorr", "dsa"] {
        let v = demo_json(&["--variant", variant]);
        assert_eq!(v["protocol"], "e2sec");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["session_key_match"], true, "{v}");
        assert_eq!(v["variant"], variant);
        assert_eq!(v["group"], "ristretto");
        assert_eq!(
            v["messages"], 7,
            "two warrant requests and grants, three AKA messages"
        );
        assert!(
            v["device_ops"]["te"].as_u64().is_some_and(|n| n >= 4),
            "{v}"
        );
        assert!(
            v["device_ops"]["asymmetric"]
                .as_u64()
                .is_some_and(|n| n > 0)
        );
        assert!(v.get("error").is_none(), "{v}");
    }
    for group in ["ffdh1024", "ffdh2048"] {
        let v = demo_json(&["--group", group]);
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["group"], group);
        assert_eq!(v["variant"], "elgamal");
    }
}

#[test]
fn an_expired_warrant_is_refused_with_its_error_and_exit_zero() {
    let v = demo_json(&["--expired-warrant"]);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["expected_ok"], false);
    assert_eq!(v["as_expected"], true);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("refused: warrant not valid now (valid from "),
        "{error}"
    );
    assert!(error.contains("code 2"), "{error}");
    let out = m2msec(&["demo", "--protocol", "e2sec", "--expired-warrant"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("refused as expected"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn group_options_are_checked_per_protocol() {
    let out = m2msec(&["demo", "--protocol", "e2sec", "--group", "modp2048"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("E2SEC runs over ristretto, ffdh1024 or ffdh2048"));
}

fn spawn(role: &str, config: &Path) -> Child {
    Command::new(BIN)
        .args(["run", role, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn provisioned_daemons_establish_sk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A port of its own so that parallel tests and demos do not collide.
    let port = (20_000 + std::process::id() % 20_000).to_string();
    let stdout = provision(
        d,
        &[
            "--protocol",
            "e2sec",
            "--e2sec-port",
            &port,
            "--e2sec-group",
            "ffdh1024",
            "--variant",
            "schnorr",
        ],
    );
    assert!(
        stdout.contains("m2msec run e2sec-server --config"),
        "{stdout}"
    );
    let key = std::fs::read_to_string(d.join("keys/e2sec-epc.key")).unwrap();
    assert!(key.starts_with("-----BEGIN M2MSEC E2SEC SECRET KEY-----"));
    let _daemons = Daemons(vec![
        spawn("e2sec-epc", &d.join("e2sec-epc.toml")),
        spawn("e2sec-device", &d.join("e2sec-device.toml")),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["run", "e2sec-server", "--config"])
        .arg(d.join("e2sec-server.toml"))
        .args(["--count", "2", "--interval", "50"])
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("e2sec SK established").count(), 2, "{log}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_owner_only(d);
}

#[test]
fn bench_json_has_the_cost_table() {
    let figures = json_lines(&m2msec(&[
        "bench",
        "--protocol",
        "e2sec",
        "--json",
        "--sessions",
        "1",
    ]));
    let find = |name: &str| figure(&figures, name);
    for g in ["ffdh1024", "ffdh2048", "ristretto"] {
        assert!(
            find(&format!("e2sec.{g}.t_e_us"))["value"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        for v in ["elgamal", "schnorr", "dsa"] {
            for side in ["device", "server"] {
                let p = format!("e2sec.{g}.{v}.{side}");
                let e = find(&format!("{p}.estimate_us"));
                assert_eq!(e["unit"], "us");
                assert!(e["baseline"].as_f64().unwrap() > 0.0, "measured beside it");
                assert!(e["ratio"].as_f64().is_some());
                assert!(find(&format!("{p}.te"))["value"].as_f64().unwrap() >= 4.0);
                find(&format!("{p}.tm"));
                find(&format!("{p}.th"));
                find(&format!("{p}.ta"));
            }
        }
    }
    let out = m2msec(&["bench", "--protocol", "e2sec", "--sessions", "1"]);
    let table = text(&out.stdout);
    assert!(table.contains("Table V") && table.contains("MTCD") && table.contains("MTCS"));
}

#[test]
fn keygen_and_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("x.key");
    let out = m2msec(&[
        "keygen",
        "--kind",
        "e2sec",
        "--group",
        "ffdh2048",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = std::fs::read_to_string(d.join("x.key.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN M2MSEC E2SEC PUBLIC KEY-----"));

    // A provisioned ristretto deployment, then a device key of another group.
    provision(d, &["--protocol", "e2sec"]);
    std::fs::copy(&key, d.join("keys/e2sec-device.key")).unwrap();
    let out = m2msec(&[
        "run",
        "e2sec-device",
        "--config",
        d.join("e2sec-device.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("keys/e2sec-device.key")
            && err.contains("ffdh2048")
            && err.contains("ristretto"),
        "{err}"
    );

    // A symmetric key where an E2SEC key belongs.
    std::fs::copy(
        d.join("keys/e2sec-psk-device.key"),
        d.join("keys/e2sec-device.key"),
    )
    .unwrap();
    let out = m2msec(&[
        "run",
        "e2sec-device",
        "--config",
        d.join("e2sec-device.toml").to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert!(
        err.contains("expected \"M2MSEC E2SEC SECRET KEY\""),
        "{err}"
    );

    // An unknown field and a connect target that is not a peer.
    let cfg = std::fs::read_to_string(d.join("e2sec-server.toml")).unwrap();
    std::fs::write(d.join("bad.toml"), format!("colour = \"blue\"\n{cfg}")).unwrap();
    let out = m2msec(&[
        "run",
        "e2sec-server",
        "--config",
        d.join("bad.toml").to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("colour"), "{err}");
    std::fs::write(
        d.join("bad.toml"),
        cfg.replace("connect = [\"mtcd-0001\"]", "connect = [\"nobody\"]"),
    )
    .unwrap();
    let out = m2msec(&[
        "run",
        "e2sec-server",
        "--config",
        d.join("bad.toml").to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert!(
        err.contains("connect[0]") && err.contains("nobody"),
        "{err}"
    );
}
