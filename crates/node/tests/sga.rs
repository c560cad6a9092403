//! SGA in the node: the demo over real UDP on loopback for both groups and every suite, the
//! gateway killed and restarted between sending and delivery, the example and provisioned
//! configs, and clear errors for bad configs and key files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_crypto::pke::PkeSuite;
use m2msec_crypto::rng::SeededRng;
use m2msec_node::harness::demo::RunOptions;
use m2msec_node::harness::report::{Detail, NoProgress, RunReport};
use m2msec_node::runtime::config::load_toml;
use m2msec_node::sga::config::{
    DeviceFile, GroupName, ServerFile, SuiteName, control_socket, load_device, load_server,
};
use m2msec_node::sga::demo::{DemoOptions, run};
use m2msec_node::sga::provision::{ProvisionOptions, provision};

mod runtime;

fn demo(opts: &DemoOptions) -> RunReport {
    runtime::demo(run(opts, &NoProgress))
}

fn delivered(r: &RunReport, group: GroupName, suite: SuiteName, messages: u32) {
    assert!(r.ok, "{r:?}");
    assert!(r.session_key_match, "{r:?}");
    assert_eq!(r.protocol, "sga");
    let Detail::Sga(d) = &r.detail else {
        panic!("not an SGA report: {r:?}")
    };
    assert_eq!(d.group, group.name());
    assert_eq!(r.suite, suite.name());
    assert_eq!(d.sent, messages);
    assert_eq!(d.stored, messages);
    assert_eq!(d.delivered, messages);
    assert!(r.error.is_none(), "{r:?}");
    assert!(r.messages > 0 && r.bytes > 0);
    // The device encrypts to the server and exponentiates (B1: N = g^R, K_s = N^r; B7: K).
    assert!(r.device_ops.asymmetric >= 4, "{:?}", r.device_ops);
    assert!(r.device_ops.symmetric >= u64::from(messages));
}

#[test]
fn demo_delivers_for_both_groups_and_every_suite() {
    for group in [GroupName::Ristretto255, GroupName::Modp2048] {
        for suite in SuiteName::ALL {
            let opts = DemoOptions {
                group,
                suite,
                messages: 3,
                run: RunOptions {
                    seed: Some(5),
                    timeout: Duration::from_secs(60),
                    ..RunOptions::default()
                },
                ..DemoOptions::default()
            };
            delivered(&demo(&opts), group, suite, 3);
        }
    }
}

#[test]
fn demo_restarting_the_gateway_still_delivers_everything_once_in_order() {
    for pke in [PkeSuite::X25519Ecies, PkeSuite::RsaOaep2048] {
        let opts = DemoOptions {
            messages: 5,
            restart_gateway: true,
            pke,
            ..DemoOptions::default()
        };
        let r = demo(&opts);
        delivered(&r, GroupName::Ristretto255, SuiteName::Aes128Ccm8, 5);
        let Detail::Sga(d) = &r.detail else {
            panic!("not an SGA report: {r:?}")
        };
        assert_eq!(d.restarted_gateway, Some(true));
    }
}

#[test]
fn demo_writes_a_pcap_of_every_datagram() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let pcap = dir.path().join("sga.pcap");
    let r = demo(&DemoOptions {
        run: RunOptions {
            pcap: Some(pcap.clone()),
            ..DemoOptions::default().run
        },
        ..DemoOptions::default()
    });
    assert!(r.ok, "{r:?}");
    let bytes = std::fs::read(&pcap).unwrap_or_default();
    // Global header (24 bytes), then per datagram a 16-byte record header, 28 bytes of IPv4 and
    // UDP headers and the payload.
    let n = usize::try_from(r.messages).unwrap_or(0);
    let payload = usize::try_from(r.bytes).unwrap_or(0);
    assert_eq!(bytes.len(), 24 + n * (16 + 28) + payload);
}

#[test]
fn zero_messages_is_a_usage_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let e = rt
        .block_on(run(
            &DemoOptions {
                messages: 0,
                ..DemoOptions::default()
            },
            &NoProgress,
        ))
        .err();
    assert!(e.is_some_and(|e| e.to_string().contains("--messages")));
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn example_configs_parse() {
    let s: ServerFile =
        load_toml(&examples().join("sga-server.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.suites, SuiteName::ALL);
    let d: DeviceFile =
        load_toml(&examples().join("sga-device.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.gateway.identity, s.identity);
    assert_eq!(d.gateway.addr, s.listen);
    assert_eq!(
        control_socket(&examples().join("sga-device.toml")).unwrap_or_else(|e| panic!("{e}")),
        examples().join("state/sga-device-i.sock")
    );
}

fn provisioned() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    provision(
        dir.path(),
        &ProvisionOptions::default(),
        &mut SeededRng::from_seed_u64(3),
    )
    .unwrap_or_else(|e| panic!("provision: {e}"));
    dir
}

#[test]
fn provisioned_configs_load_and_a_second_provision_needs_force() {
    let dir = provisioned();
    let d = dir.path();
    let server = load_server(&d.join("sga-server.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.config.identity, "sga-gateway");
    assert_eq!(server.state, d.join("state/sga-server.redb"));
    for name in ["device-i", "device-j"] {
        let dev =
            load_device(&d.join(format!("sga-{name}.toml"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dev.config.identity, name);
        assert_eq!(dev.config.server, server.link.listen);
        assert_eq!(dev.control, d.join(format!("state/sga-{name}.sock")));
    }
    let again = provision(
        d,
        &ProvisionOptions::default(),
        &mut SeededRng::from_seed_u64(4),
    );
    assert!(again.is_err_and(|e| e.to_string().contains("--force")));
}

/// Rewrites `file` with `from` replaced by `to`, and returns the error loading it gives.
fn error_after(file: &Path, from: &str, to: &str, device: bool) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    assert!(text.contains(from), "{from} not in {}", file.display());
    let edited = file.with_file_name(format!(
        "edited-{}",
        file.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    std::fs::write(&edited, text.replace(from, to)).unwrap_or_else(|e| panic!("{e}"));
    let e = if device {
        load_device(&edited).err().map(|e| e.to_string())
    } else {
        load_server(&edited).err().map(|e| e.to_string())
    };
    e.unwrap_or_else(|| panic!("{from} → {to}: accepted"))
}

#[test]
fn config_and_key_errors_name_the_file_and_the_problem() {
    let dir = provisioned();
    let d = dir.path();
    let dev = d.join("sga-device-i.toml");
    let srv = d.join("sga-server.toml");

    // Each edit of the device's config, and what the error must say.
    let device: [(&str, &str, &[&str]); 7] = [
        // A config from before the control channel became a Unix socket says what changed.
        (
            "control = \"state/sga-device-i.sock\"",
            "control = \"127.0.0.10:5685\"",
            &["field `control`", "Unix socket"],
        ),
        (
            "suites = [\"aes-128-ccm8\", \"chacha20-poly1305\", \"ascon-128\"]",
            "suites = [\"chacha20-poly1305\"]",
            &["field `initial_suite`", "aes-128-ccm8"],
        ),
        (
            "poll_ms = 2000",
            "poll_ms = 2000\ncolour = \"blue\"",
            &["unknown field", "colour"],
        ),
        (
            "group = \"ristretto255\"",
            "group = \"p256\"",
            &["p256", "group"],
        ),
        (
            "keys/sga-device-i.key",
            "keys/missing.key",
            &["missing.key", "no such file"],
        ),
        // A device key where the server's public key belongs: wrong PEM label.
        (
            "keys/sga-server-pke.key.pub",
            "keys/sga-device-j.key",
            &["sga-device-j.key", "expected \"PUBLIC KEY\""],
        ),
        // The server's private key where the device key belongs.
        (
            "keys/sga-device-i.key",
            "keys/sga-server-pke.key",
            &["expected \"M2MSEC SGA DEVICE KEY\""],
        ),
    ];
    for (from, to, expected) in device {
        assert_refused(&dev, from, to, true, expected);
    }
    // The same for the server's.
    let server: [(&str, &str, &[&str]); 3] = [
        (
            "state = \"state/sga-server.redb\"\n",
            "",
            &["missing field `state`"],
        ),
        (
            "groups = [\"ristretto255\", \"modp2048\"]",
            "groups = []",
            &["field `groups`"],
        ),
        (
            "keys/sga-server-pke.key",
            "keys/sga-device-i.key",
            &["expected \"PRIVATE KEY\""],
        ),
    ];
    for (from, to, expected) in server {
        assert_refused(&srv, from, to, false, expected);
    }
}

/// Asserts that `file` with `from` replaced by `to` is refused with an error that says every
/// one of `expected`.
fn assert_refused(file: &Path, from: &str, to: &str, device: bool, expected: &[&str]) {
    let e = error_after(file, from, to, device);
    assert!(expected.iter().all(|x| e.contains(x)), "{e}");
}
