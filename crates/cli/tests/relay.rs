//! The relay through the built binary, as a user runs it: provisioning, the proxy and two sink
//! daemons as processes, and the source's `m2msec relay` commands against them; the demo.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Daemons, assert_owner_only, figure, free_port, json, json_lines, m2msec, provision, start, text,
};
use serde_json::Value;

/// Provisions a relay deployment in `dir` on free ports; its CoAP and UDP ports.
fn provision_relay(dir: &Path) -> (String, String) {
    let (port, udp_port) = (free_port().to_string(), free_port().to_string());
    provision(
        dir,
        &[
            "--protocol",
            "relay",
            "--relay-port",
            &port,
            "--relay-udp-port",
            &udp_port,
        ],
    );
    (port, udp_port)
}

/// `m2msec relay ARGS --config CONFIG --json`, which must succeed; its JSON answer.
fn relay(config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["relay"];
    all.extend_from_slice(args);
    let config = config.to_string_lossy().into_owned();
    all.extend_from_slice(&["--config", &config, "--json"]);
    json(&m2msec(&all))
}

/// The sink's output lines (JSON objects), once it has at least `n` (or after 20 s).
fn output(path: &Path, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= n || started.elapsed() > Duration::from_secs(20) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids(lines: &[Value]) -> BTreeSet<u64> {
    lines
        .iter()
        .map(|l| l["message_id"].as_u64().unwrap_or(u64::MAX))
        .collect()
}

/// Checks that a `relay send` of `data` messages had every one acknowledged with its section
/// keys, and returns how many keys: one (1000 messages a section), or two when the send crossed
/// an epoch boundary (the source starts a section at each epoch; epochs are an hour long, so a
/// run near the full hour sees two).
fn all_acknowledged(sent: &Value, data: u64) -> u64 {
    assert_eq!(sent["data"], data, "{sent}");
    let keys = sent["management"].as_u64().unwrap_or_default();
    assert!(
        (1..=2).contains(&keys),
        "{data} messages, 1000 per section: {sent}"
    );
    assert_eq!(sent["acknowledged"].as_u64(), Some(data + keys), "{sent}");
    keys
}

#[test]
fn provisioned_proxy_and_sinks_driven_by_relay_commands() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (port, udp_port) = provision_relay(d);
    let source = d.join("relay-source.toml");

    // Sending before a storage exists is a clear error.
    let out = m2msec(&[
        "relay",
        "send",
        "--config",
        &source.to_string_lossy(),
        "--count",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run `m2msec relay store"),
        "{}",
        text(&out.stderr)
    );

    let mut daemons = Daemons(Vec::new());
    start(&mut daemons, "relay-proxy", &d.join("relay-proxy.toml"));
    let sink1 = start(&mut daemons, "relay-sink", &d.join("relay-sink-1.toml"));
    start(&mut daemons, "relay-sink", &d.join("relay-sink-2.toml"));

    let stored = relay(&source, &["store"]);
    assert_eq!(stored["storage_id"], 1, "{stored}");
    assert!(stored["udp_port"].as_u64().is_some(), "{stored}");

    // No sink is known: the proxy stores the stream.
    let sent = relay(&source, &["send", "--count", "30", "--size", "40"]);
    let keys = all_acknowledged(&sent, 30);
    let status = relay(&source, &["status"]);
    assert_eq!(status["storage"]["stored_messages"], 30 + keys, "{status}");

    // Sink 1 is designated later and receives the backlog.
    let sink1_url = format!("coap://127.0.0.41:{port}/sink");
    let key1 = d.join("keys/relay-sink-1.key.pub");
    let f = relay(
        &source,
        &[
            "forward",
            "--sink",
            &sink1_url,
            "--sink-key",
            &key1.to_string_lossy(),
        ],
    );
    assert_eq!(f["forward_id"], 1, "{f}");
    let out1 = d.join("out/relay-sink-1.jsonl");
    let lines = output(&out1, 30);
    assert_eq!(lines.len(), 30);
    // Data messages of a section travel concurrently: the proxy may store them in any order.
    assert!(
        lines
            .iter()
            .any(|l| l["data"] == "bWVzc2FnZSAwMDAwMDAwMCBhYmNkZWZnaGlqa2xtbm9wcXJzdHV2dw=="),
        "base64 of the 40 bytes \"message 00000000 abcdefghijklmnopqrstuvw\": {lines:?}"
    );

    // Sink 1 is killed (SIGKILL) while the stream goes on, and restarted: each message once.
    let _ = daemons.0[sink1].kill();
    let _ = daemons.0[sink1].wait();
    let sent = relay(&source, &["send", "--count", "20", "--size", "40"]);
    all_acknowledged(&sent, 20);
    start(&mut daemons, "relay-sink", &d.join("relay-sink-1.toml"));
    let lines = output(&out1, 50);
    assert_eq!(lines.len(), 50, "{lines:?}");
    assert_eq!(ids(&lines).len(), 50, "each message once");

    // Sink 2 (plain UDP) is added to the running forward; pausing stops both sinks.
    let key2 = d.join("keys/relay-sink-2.key.pub");
    let sink2_url = format!("udp://127.0.0.42:{udp_port}");
    let added = relay(
        &source,
        &[
            "forward",
            "--sink",
            &sink2_url,
            "--sink-key",
            &key2.to_string_lossy(),
            "--add-to",
            "1",
            "--start",
            "now",
        ],
    );
    assert_eq!(added["added"], true, "{added}");
    let paused = relay(&source, &["pause", "--forward", "1"]);
    assert_eq!(paused["state"], "paused");
    let sent = relay(&source, &["send", "--count", "10", "--size", "40", "--udp"]);
    assert_eq!(sent["udp_datagrams"], 10, "{sent}");
    std::thread::sleep(Duration::from_millis(500));
    let out2 = d.join("out/relay-sink-2.jsonl");
    assert_eq!(output(&out1, 0).len(), 50, "paused: nothing forwarded");
    let before_resume = output(&out2, 0).len();
    relay(&source, &["resume", "--forward", "1"]);
    let lines1 = output(&out1, 60);
    assert_eq!(lines1.len(), 60);
    assert_eq!(ids(&lines1).len(), 60, "each message once");
    // Sink 2 gets what was sent after it was added (and, by the proxy's rule for Start::Now,
    // the section in progress when it was added), each once, and nothing sink 1 did not get.
    let last: BTreeSet<u64> = lines1[50..]
        .iter()
        .map(|l| l["message_id"].as_u64().unwrap_or(0))
        .collect();
    let started = Instant::now();
    let mut lines2 = output(&out2, before_resume);
    while !last.is_subset(&ids(&lines2)) && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
        lines2 = output(&out2, 0);
    }
    assert!(last.is_subset(&ids(&lines2)), "{lines2:?}");
    assert_eq!(ids(&lines2).len(), lines2.len(), "each message once");
    assert!(ids(&lines2).is_subset(&ids(&lines1)));

    let status = relay(&source, &["status"]);
    let sinks = status["forwards"][0]["sinks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sinks.len(), 2, "{status}");
    assert_eq!(status["forwards"][0]["paused"], false, "{status}");
    assert!(
        status["load"]["messages_in"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(status["info"]["capacity"].as_u64().is_some_and(|c| c > 0));
    // The paper's load and throughput: the proxy's CPU use, and the rate it forwards at per
    // second of CPU time (it has forwarded by now).
    assert!(status["load"]["cpu_percent"].as_u64().is_some(), "{status}");
    assert!(
        status["throughput"]["capacity_bps"]
            .as_u64()
            .is_some_and(|c| c > 0),
        "{status}"
    );

    // Watching the monitors (RFC 7641): the status, then one line per notification.
    let out = m2msec(&[
        "relay",
        "status",
        "--config",
        &source.to_string_lossy(),
        "--watch",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let watched = text(&out.stdout);
    assert!(
        watched.contains("\"monitor\":\"storage/1/monitor\""),
        "{watched}"
    );
    assert!(
        watched.contains("\"monitor\":\"forward/1/monitor\""),
        "{watched}"
    );

    // A readable status too.
    let out = m2msec(&["relay", "status", "--config", &source.to_string_lossy()]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("forward 1 (storage 1): running"), "{s}");
    assert!(s.contains(&sink1_url), "{s}");

    // The owner changes the forward's rate, sends individually protected messages (§III-B),
    // and removes sink 2: sink 1 gets each message once, marked individual where it is.
    let rated = relay(&source, &["rate", "--forward", "1", "--rate", "200"]);
    assert_eq!(rated["rate"], "200 messages/s per sink", "{rated}");
    let sent = relay(
        &source,
        &["send", "--individual", "--count", "3", "--size", "20"],
    );
    assert_eq!(sent["individual"], 3, "{sent}");
    let lines1 = output(&out1, 63);
    assert_eq!(ids(&lines1).len(), 63, "each message once");
    let individual = lines1.iter().filter(|l| l["individual"] == true).count();
    assert_eq!(individual, 3, "{lines1:?}");
    let removed = relay(
        &source,
        &["remove-sink", "--forward", "1", "--sink", &sink2_url],
    );
    assert_eq!(removed["removed_sink"], sink2_url.as_str(), "{removed}");
    let status = relay(&source, &["status"]);
    let sinks = status["forwards"][0]["sinks"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(sinks, 1, "{status}");
    let unknown = m2msec(&[
        "relay",
        "remove-sink",
        "--config",
        &source.to_string_lossy(),
        "--forward",
        "1",
        "--sink",
        &sink2_url,
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no such sink"),
        "{}",
        text(&unknown.stderr)
    );
    // The sinks' outputs (decrypted data) and every store are the owner's alone.
    assert_owner_only(d);
}

#[test]
fn relay_commands_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    provision_relay(d);
    let source = d.join("relay-source.toml").to_string_lossy().into_owned();
    // A bad sink URL is refused before anything is sent.
    let out = m2msec(&[
        "relay",
        "forward",
        "--config",
        &source,
        "--sink",
        "coap://localhost/sink",
        "--sink-key",
        &d.join("keys/relay-sink-1.key.pub").to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--sink coap://localhost/sink"));
    // A key of the wrong kind is named.
    let out = m2msec(&[
        "relay",
        "forward",
        "--config",
        &source,
        "--sink",
        "coap://127.0.0.41/sink",
        "--sink-key",
        &d.join("keys/relay-source-owner.key.pub").to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    let wrong = "relay-source-owner.key.pub: PEM label is \"PUBLIC KEY\", expected \"M2MSEC AFGH PUBLIC KEY\"";
    assert!(said.contains(wrong), "{said}");
    // No proxy answers: a timeout naming the proxy, not a hang (shortened retransmissions are
    // not available from the command line, so only check that the config error paths are fast).
    let out = m2msec(&[
        "relay",
        "status",
        "--config",
        "/nonexistent/relay-source.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no such file"));
}

#[test]
fn keygen_writes_relay_keys() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let afgh = dir.path().join("sink.key");
    let out = m2msec(&[
        "keygen",
        "--kind",
        "relay-afgh",
        "--out",
        &afgh.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret = std::fs::read_to_string(&afgh).unwrap_or_default();
    let public = std::fs::read_to_string(dir.path().join("sink.key.pub")).unwrap_or_default();
    assert!(secret.starts_with("-----BEGIN M2MSEC AFGH SECRET KEY-----"));
    assert!(public.starts_with("-----BEGIN M2MSEC AFGH PUBLIC KEY-----"));
    let seed = dir.path().join("source.seed");
    let out = m2msec(&[
        "keygen",
        "--kind",
        "relay-source",
        "--out",
        &seed.to_string_lossy(),
    ]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&seed).unwrap_or_default();
    assert!(text.starts_with("-----BEGIN M2MSEC RELAY SOURCE SEED-----"));
    assert!(!dir.path().join("source.seed.pub").exists());
}

#[test]
fn demo_runs_the_papers_scenario() {
    let runs = json_lines(&m2msec(&[
        "demo",
        "--protocol",
        "relay",
        "--json",
        "--seed",
        "5",
    ]));
    let [v] = &runs[..] else {
        panic!("one JSON object: {runs:?}")
    };
    assert_eq!(v["protocol"], "relay");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["session_key_match"], true, "{v}");
    assert_eq!(v["sent"], 160);
    assert_eq!(v["stored_before_sink"], 60);
    // 20 messages per section, and one more section if the run crossed the hour's epoch boundary.
    assert!(
        v["sections"].as_u64().is_some_and(|n| (8..=9).contains(&n)),
        "20 messages per section: {v}"
    );
    assert!(v["messages"].as_u64().is_some_and(|m| m > 0));
    assert!(v["bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(v["wall_ms"].as_f64().is_some());
    // The source signs and seals each section key: one signature and one AFGH encryption each.
    assert!(
        v["device_ops"]["asymmetric"]
            .as_u64()
            .is_some_and(|a| a >= 16),
        "{v}"
    );
    let sinks = v["sinks"].as_array().cloned().unwrap_or_default();
    assert_eq!(sinks.len(), 2);
    assert_eq!(sinks[0]["expected"], 160, "sink 1 gets everything: {v}");
    assert_eq!(sinks[0]["delivered"], 160);
    assert_eq!(sinks[1]["designated_after"], 100);
    assert_eq!(sinks[1]["delivered"], sinks[1]["expected"]);
    assert!(
        sinks[1]["expected"]
            .as_u64()
            .is_some_and(|n| (60..=80).contains(&n)),
        "{v}"
    );
    assert!(sinks.iter().all(|s| s["matches"] == true));
    assert!(v["reencrypted"].as_u64().is_some_and(|n| n >= 8));

    // The readable summary.
    let out = m2msec(&["demo", "--protocol", "relay", "--relay-rotate", "10"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("relay: 160 messages streamed"), "{s}");
    assert!(
        s.contains("16 section keys") || s.contains("17 section keys"),
        "10 messages per section (one more across an epoch boundary): {s}"
    );
    assert!(s.contains("outcome          as expected"), "{s}");
}

#[test]
fn a_full_proxy_answers_5_03_and_send_waits_its_max_age() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (port, _) = provision_relay(d);
    // A proxy that holds about 15 messages and asks to come back after one second.
    let proxy = d.join("relay-proxy.toml");
    let config = std::fs::read_to_string(&proxy)
        .unwrap_or_default()
        .replace("capacity_bytes = 268435456", "capacity_bytes = 2000")
        .replace("max_message_bytes = 65536", "max_message_bytes = 2000")
        .replace("max_age_when_full_s = 5", "max_age_when_full_s = 1");
    std::fs::write(&proxy, config).unwrap_or_else(|e| panic!("{e}"));
    let mut daemons = Daemons(Vec::new());
    start(&mut daemons, "relay-proxy", &proxy);
    start(&mut daemons, "relay-sink", &d.join("relay-sink-1.toml"));
    let source = d.join("relay-source.toml");
    relay(&source, &["store"]);
    // The sink is known from the start: forwarding frees space as it goes.
    let key1 = d.join("keys/relay-sink-1.key.pub");
    relay(
        &source,
        &[
            "forward",
            "--sink",
            &format!("coap://127.0.0.41:{port}/sink"),
            "--sink-key",
            &key1.to_string_lossy(),
            "--window",
            "0",
        ],
    );
    let sent = relay(&source, &["send", "--count", "60", "--size", "40"]);
    all_acknowledged(&sent, 60);
    assert!(
        sent["busy"].as_u64().is_some_and(|b| b > 0),
        "never full? {sent}"
    );
    assert!(
        sent["waited_ms"].as_u64().is_some_and(|w| w >= 1000),
        "{sent}"
    );
    let lines = output(&d.join("out/relay-sink-1.jsonl"), 60);
    assert_eq!(lines.len(), 60);
    assert_eq!(ids(&lines).len(), 60, "each message once");
    let status = relay(&source, &["status"]);
    assert!(
        status["storage"]["rejected_full"]
            .as_u64()
            .is_some_and(|r| r > 0),
        "{status}"
    );
}

#[test]
fn bench_reports_afgh_rates_stream_throughput_and_proxy_memory() {
    let figures = json_lines(&m2msec(&[
        "bench",
        "--protocol",
        "relay",
        "--json",
        "--relay-messages",
        "100",
        "--relay-size",
        "256",
    ]));
    let get = |name: &str| figure(&figures, name);
    for name in [
        "relay.afgh.encrypt_per_s",
        "relay.afgh.reencrypt_per_s",
        "relay.afgh.decrypt_per_s",
    ] {
        assert!(
            get(name)["value"].as_f64().is_some_and(|v| v > 0.0),
            "{figures:?}"
        );
        assert_eq!(get(name)["unit"], "op/s");
    }
    let ratio = get("relay.afgh.reencrypt_vs_encrypt");
    assert_eq!(ratio["baseline"], get("relay.afgh.encrypt_per_s")["value"]);
    assert!(ratio["ratio"].as_f64().is_some_and(|r| r > 0.0));
    let stream = get("relay.stream.mbit_per_s_vs_raw_udp_forwarding");
    assert_eq!(stream["unit"], "Mbit/s");
    assert!(
        stream["value"].as_f64().is_some_and(|v| v > 0.0),
        "{figures:?}"
    );
    assert!(
        stream["baseline"].as_f64().is_some_and(|v| v > 0.0),
        "{figures:?}"
    );
    assert_eq!(get("relay.stream.delivered")["value"], 100.0);
    if cfg!(target_os = "linux") {
        // The proxy ran as its own process; its peak resident memory was read from /proc.
        let mem = get("relay.proxy.peak_memory");
        assert_eq!(mem["unit"], "MiB");
        assert!(
            mem["value"].as_f64().is_some_and(|m| m > 1.0 && m < 1024.0),
            "{figures:?}"
        );
    }
}
