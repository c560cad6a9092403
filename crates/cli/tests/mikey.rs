//! MIKEY through the built `m2msec` binary: provisioned daemons as real processes, a restarted
//! responder refusing a replayed I_MESSAGE, the demo's captures read by Wireshark's own MIKEY
//! dissector (tshark), the trace against the committed vectors, the bench figures, and clear
//! errors for bad files.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use m2msec_crypto::rng::OsRng;
use m2msec_node::mikey::config::load_initiator;
use m2msec_protocol::Endpoint;
use m2msec_protocol::mikey::Initiator;

mod common;
use common::*;

fn provision_mikey(dir: &Path, port: u16) {
    let listing = provision(
        dir,
        &["--protocol", "mikey", "--mikey-port", &port.to_string()],
    );
    for expected in [
        "m2msec run mikey-responder --config",
        "m2msec run mikey-third-party --config",
        "m2msec run mikey-initiator --config",
        "mikey-psk-initiator-tp-5.key",
        "mikey-responder-pke.key",
    ] {
        assert!(listing.contains(expected), "{expected}: {listing}");
    }
}

#[test]
fn provision_then_daemon_processes_establish_keys_in_distributed_mode() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path();
    provision_mikey(d, free_port());
    let mut daemons = Daemons(Vec::new());
    start(
        &mut daemons,
        "mikey-responder",
        &d.join("mikey-responder.toml"),
    );
    start_numbered(&mut daemons, "mikey-third-party", d, 5);
    let started = Instant::now();
    let initiator = run_client("mikey-initiator", &d.join("mikey-initiator.toml"), 2, 100);
    let log = text(&initiator.stderr);
    assert!(initiator.status.success(), "initiator failed:\n{log}");
    assert_eq!(log.matches("mikey key established").count(), 2, "{log}");
    assert!(
        log.contains("mode=\"distributed\"") || log.contains("mode=distributed"),
        "{log}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(d.join("state/mikey-responder.redb").exists());
    assert!(d.join("state/mikey-tp-1.redb").exists());
    assert_owner_only(d);
}

#[test]
fn initiator_exits_nonzero_when_its_exchange_fails() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path();
    provision_mikey(d, free_port());
    // Nobody listens: the exchange times out (a short session keeps the test quick).
    let config = d.join("mikey-initiator.toml");
    let text_config = std::fs::read_to_string(&config).unwrap_or_default();
    std::fs::write(&config, format!("{text_config}\nsession_ms = 300\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(BIN)
        .args(["run", "mikey-initiator", "--config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("initiator: {e}"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
}

/// Sends `message` from `socket` to `to` and returns the MIKEY data type of the answer.
fn answer_type(socket: &UdpSocket, to: SocketAddr, message: &[u8]) -> u8 {
    socket
        .send_to(message, to)
        .unwrap_or_else(|e| panic!("send: {e}"));
    let mut buf = [0u8; 2048];
    let (len, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer from the responder: {e}"));
    assert_eq!(from, to);
    assert!(len > 2 && buf[0] == 1, "an RFC 3830 message (version 1)");
    buf[1]
}

/// RFC 3830 §6.1 data types.
const PSK_VERIFICATION: u8 = 1;
const ERROR_MESSAGE: u8 = 6;

#[test]
fn restarted_responder_refuses_a_replayed_i_message() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path();
    provision_mikey(d, free_port());
    let original = std::fs::read_to_string(d.join("mikey-initiator.toml")).unwrap_or_default();
    let psk_config = d.join("mikey-initiator-psk.toml");
    std::fs::write(
        &psk_config,
        original.replace("mode = \"distributed\"", "mode = \"psk\""),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The test plays the initiator: one pre-shared-key I_MESSAGE, captured.
    let setup = load_initiator(&psk_config).unwrap_or_else(|e| panic!("{e}"));
    let mut initiator = Initiator::new(setup.config).unwrap_or_else(|e| panic!("{e}"));
    initiator
        .connect(m2msec_node::runtime::driver::wall_clock(), &mut OsRng)
        .unwrap_or_else(|e| panic!("{e}"));
    let i_message = initiator
        .poll_transmit()
        .unwrap_or_else(|| panic!("no I_MESSAGE"));
    let socket = UdpSocket::bind(setup.link.listen).unwrap_or_else(|e| panic!("bind: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e}"));

    let responder_config = d.join("mikey-responder.toml");
    let mut daemons = Daemons(Vec::new());
    let r = start(&mut daemons, "mikey-responder", &responder_config);
    assert_eq!(
        answer_type(&socket, i_message.destination, &i_message.payload),
        PSK_VERIFICATION,
        "the first copy is accepted"
    );

    // A crash right after the answer: the cache entry was durable before it was sent.
    let _ = daemons.0[r].kill();
    let _ = daemons.0[r].wait();
    start(&mut daemons, "mikey-responder", &responder_config);
    assert_eq!(
        answer_type(&socket, i_message.destination, &i_message.payload),
        ERROR_MESSAGE,
        "the replay is refused with an RFC 3830 error message after the restart"
    );

    // Without its state the same message would have passed: the persisted cache refused it.
    for c in &mut daemons.0 {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::fs::remove_file(d.join("state/mikey-responder.redb")).unwrap_or_else(|e| panic!("{e}"));
    start(&mut daemons, "mikey-responder", &responder_config);
    assert_eq!(
        answer_type(&socket, i_message.destination, &i_message.payload),
        PSK_VERIFICATION
    );
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark is required for the MIKEY interoperability check (apt-get install tshark; .ci/run installs it): {e}")
        });
    assert!(
        out.status.success(),
        "tshark {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The malformed-packet and error-severity filters do flag a broken MIKEY datagram, so that
/// their empty output on our captures means something.
fn check_filters_catch_a_malformed_message(dir: &Path) {
    let file = dir.join("malformed.pcap");
    let mut w = m2msec_wire::pcap::PcapWriter::new(Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], 2269));
    // A common header announcing a payload that is not there.
    w.write_datagram(
        std::time::SystemTime::now(),
        at(4),
        at(3),
        &[1, 0, 5, 1, 0x12, 0x34, 0x56, 0x78, 1, 0, 0],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, w.into_inner()).unwrap_or_else(|e| panic!("{e}"));
    let f = file.to_string_lossy();
    assert!(!tshark(&["-r", &f, "-Y", "_ws.malformed"]).trim().is_empty());
    assert!(
        !tshark(&["-r", &f, "-Y", "_ws.expert.severity == error"])
            .trim()
            .is_empty()
    );
}

fn demo_capture(dir: &Path, mode: &str) -> (PathBuf, serde_json::Value) {
    let pcap = dir.join(format!("{mode}.pcap"));
    let out = m2msec(&[
        "demo",
        "--protocol",
        "mikey",
        "--mode",
        mode,
        "--json",
        "--pcap",
        &pcap.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{mode}: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["session_key_match"], true, "{v}");
    assert_eq!(v["mode"], mode);
    (pcap, v)
}

#[test]
fn wireshark_decodes_every_demo_message_as_mikey() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    check_filters_catch_a_malformed_message(dir.path());
    for mode in ["psk", "pk", "distributed"] {
        let (pcap, v) = demo_capture(dir.path(), mode);
        let f = pcap.to_string_lossy();
        let malformed = tshark(&["-r", &f, "-Y", "_ws.malformed"]);
        assert!(
            malformed.trim().is_empty(),
            "{mode}: malformed packets:\n{malformed}"
        );
        let errors = tshark(&["-r", &f, "-Y", "_ws.expert.severity == error"]);
        assert!(errors.trim().is_empty(), "{mode}: expert errors:\n{errors}");

        let fields = tshark(&[
            "-r",
            &f,
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "mikey.type",
            "-e",
            "mikey.csb_id",
        ]);
        let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('|').collect()).collect();
        assert_eq!(
            Some(rows.len() as u64),
            v["messages"].as_u64(),
            "{mode}: one MIKEY message per datagram:\n{fields}"
        );
        let csb_ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[3]).collect();
        assert_eq!(csb_ids.len(), 1, "{mode}: one CSB ID:\n{fields}");
        assert_eq!(
            csb_ids.first().copied(),
            v["session"].as_str(),
            "{mode}: the demo's CSB ID"
        );
        assert!(
            rows.iter().all(|r| r[0] == "2269" && r[1] == "2269"),
            "{mode}: UDP 2269 on both ends:\n{fields}"
        );
        let count = |t: &str| rows.iter().filter(|r| r[2] == t).count();
        // RFC 3830 §6.1: 0 Initiator's PSK, 1 Verification PSK, 2 Initiator's PK,
        // 3 Verification PK.
        match mode {
            "psk" => assert_eq!((count("0"), count("1"), rows.len()), (1, 1, 2), "{fields}"),
            "pk" => assert_eq!((count("2"), count("3"), rows.len()), (1, 1, 2), "{fields}"),
            _ => {
                assert_eq!(
                    count("0"),
                    5,
                    "a PSK I_MESSAGE to each third party:\n{fields}"
                );
                assert!(
                    (3..=5).contains(&count("2")),
                    "parts forwarded to R:\n{fields}"
                );
                assert!(count("1") >= 1, "R's verification to I:\n{fields}");
                assert_eq!(
                    count("0") + count("1") + count("2") + count("3"),
                    rows.len(),
                    "only the four data types:\n{fields}"
                );
            }
        }
    }
}

#[test]
fn trace_reproduces_the_committed_mikey_vectors() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors/mikey");
    for mode in ["psk", "pk", "distributed"] {
        let file = vectors.join(format!("{mode}-seed-1.txt"));
        let expected =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let out = m2msec(&["trace", "mikey", "--mode", mode, "--seed", "1"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout) == expected,
            "`m2msec trace mikey --mode {mode} --seed 1` differs from {}",
            file.display()
        );
    }
}

#[test]
fn bench_json_has_mikey_figures_against_public_key_mode() {
    let figures = json_lines(&m2msec(&[
        "bench",
        "--json",
        "--protocol",
        "mikey",
        "--sessions",
        "3",
    ]));
    let find = |name: &str| figure(&figures, name);
    let t = find("mikey.distributed.initiator.time_per_exchange");
    assert_eq!(t["unit"], "us");
    assert!(t["baseline"].as_f64().is_some_and(|b| b > 0.0));
    assert!(t["ratio"].as_f64().is_some());
    let a = find("mikey.distributed.initiator.asymmetric_ops_per_exchange");
    assert_eq!(a["value"], 0.0);
    assert_eq!(a["baseline"], 2.0);
    find("mikey.psk.initiator.time_per_exchange");
    assert!(
        find("mikey.distributed.responder.exchanges_per_sec")["value"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );
}

#[test]
fn bad_mikey_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path();
    provision_mikey(d, free_port());
    let config = d.join("mikey-responder.toml");
    let original = std::fs::read_to_string(&config).unwrap_or_default();

    std::fs::write(&config, original.replace("listen", "listen_on")).unwrap_or_default();
    let bad = m2msec(&[
        "run",
        "mikey-responder",
        "--config",
        &config.to_string_lossy(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let e = text(&bad.stderr);
    assert!(
        e.contains("mikey-responder.toml") && e.contains("listen_on"),
        "{e}"
    );

    // A public key where the RSA decryption key belongs.
    std::fs::write(
        &config,
        original.replace(
            "keys/mikey-responder-pke.key\"",
            "keys/mikey-responder-pke.key.pub\"",
        ),
    )
    .unwrap_or_default();
    let bad = m2msec(&[
        "run",
        "mikey-responder",
        "--config",
        &config.to_string_lossy(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let e = text(&bad.stderr);
    assert!(
        e.contains("mikey-responder-pke.key.pub") && e.contains("expected \"PRIVATE KEY\""),
        "{e}"
    );

    // A MIKEY fault that is not one.
    let bad = m2msec(&[
        "demo",
        "--protocol",
        "mikey",
        "--faulty",
        "1",
        "--fault",
        "corrupt",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("silent or alter"),
        "{}",
        text(&bad.stderr)
    );
}
