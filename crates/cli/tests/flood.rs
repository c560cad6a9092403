//! Issue 16 item 7, logs under attack: junk datagrams from a few source sockets at a daemon of
//! each protocol cost a handful of log lines (one per peer and reason per interval), and the
//! summaries the daemon writes, the last as it stops, count every one.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Junk datagrams per daemon.
const JUNK: u64 = 5_000;

/// A bound on the lines a flood may cost: peers × reasons, far below one per datagram.
const MAX_LINES: usize = 100;

/// The line that summarises what was not logged.
const SUMMARY: &str = "more of the same not logged";

/// The `i`th junk datagram: random bytes, or the start of a message of one of the formats
/// (a CBOR array, an RFC 3830 header) cut short.
fn junk(i: u64, state: &mut u64) -> Vec<u8> {
    match i % 4 {
        0 => (0..48)
            .map(|_| {
                // xorshift64: the test needs junk, not randomness.
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                state.to_le_bytes()[0]
            })
            .collect(),
        1 => vec![0x84, 0x01, 0x58, 0x20, 0xaa],
        2 => vec![0x01, 0x00, 0x01, 0x00],
        _ => vec![0xff],
    }
}

/// The value of `name=` in `line`, as a number.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Sends junk from `marker`, a peer new to the daemon at `listen`, until `log` has the line of its
/// refusal (logged, as every new peer's first is): once it is, the daemon has read everything
/// sent before. Returns how many it sent (one, unless the kernel dropped some).
fn sync(log: &Log, marker: &UdpSocket, listen: SocketAddr) -> u64 {
    let needle = format!(
        "remote={}",
        marker.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        marker
            .send_to(&[0xff], listen)
            .unwrap_or_else(|e| panic!("send: {e}"));
        sent += 1;
        for _ in 0..100 {
            if log
                .lock()
                .is_ok_and(|l| l.iter().any(|l| l.contains(&needle)))
            {
                return sent;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(Instant::now() < deadline, "{needle} not logged");
    }
}

/// Datagrams the kernel dropped for the UDP socket bound on `addr` because its receive buffer
/// was full (`/proc/net/udp`'s last column): they never reached the daemon, so it cannot count
/// them. Pacing keeps this at 0 on an idle machine; a loaded one may drop a few.
fn kernel_drops(addr: SocketAddr) -> u64 {
    let SocketAddr::V4(addr) = addr else { return 0 };
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = fields.get(1)?.split_once(':')?;
            // The address as the kernel's native-endian u32 of its network-order bytes.
            let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
            let bound = std::net::Ipv4Addr::from(ip) == *addr.ip()
                && u16::from_str_radix(port, 16).ok()? == addr.port();
            bound.then(|| fields.last()?.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// Floods the daemon `role` provisioned in `dir` as `config`, stops it, and checks its log.
fn flood(dir: &Path, protocol: &str, port_flag: &str, role: &str, config: &str) {
    let dir = dir.join(protocol);
    provision(
        &dir,
        &["--protocol", protocol, port_flag, &free_port().to_string()],
    );
    let config = dir.join(config);
    let toml = std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{e}"));
    let listen: SocketAddr = toml
        .lines()
        .find_map(|l| l.strip_prefix("listen = "))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {toml}"));
    let mut daemons = Daemons(Vec::new());
    let (index, log) = start_logged(&mut daemons, role, &config);

    let bind = || UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let senders = [bind(), bind(), bind()];
    let mut state = 0x9e37_79b9_7f4a_7c15;
    for i in 0..JUNK {
        let socket = &senders[usize::try_from(i % 3).unwrap_or(0)];
        socket
            .send_to(&junk(i, &mut state), listen)
            .unwrap_or_else(|e| panic!("send: {e}"));
        // Paced so that loopback's receive buffer rarely overflows (what it drops is
        // subtracted below: the daemon counts what it receives).
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let marker = bind();
    let sent = JUNK + sync(&log, &marker, listen);
    let received = sent.saturating_sub(kernel_drops(listen));
    terminate(&mut daemons, index);

    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" remote=127.0.0.1:"))
        .collect();
    let summaries: Vec<&String> = lines.iter().filter(|l| l.contains(SUMMARY)).collect();
    assert!(
        refused.len() + summaries.len() < MAX_LINES,
        "{role}: {} lines for {JUNK} junk datagrams:\n{}",
        refused.len() + summaries.len(),
        lines.join("\n")
    );
    // Each sender's first refusal of each reason is logged.
    for sender in senders.iter().chain([&marker]) {
        let addr = sender.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let needle = format!("remote={addr} ");
        assert!(
            refused.iter().any(|l| l.contains(&needle)),
            "{addr} never logged"
        );
    }
    // The last summary (the one at the stop, unless the flood outlasted an interval) counts
    // every datagram the daemon received, and each was logged or summarised.
    let last = summaries
        .last()
        .unwrap_or_else(|| panic!("{role}: no summary:\n{}", lines.join("\n")));
    assert_eq!(field(last, "total"), Some(received), "{role}: {last}");
    assert!(last.contains("rejected datagram"), "{last}");
    let suppressed: u64 = summaries
        .iter()
        .filter_map(|l| field(l, "suppressed"))
        .sum();
    assert_eq!(
        suppressed + refused.len() as u64,
        received,
        "{role}: refusals neither logged nor summarised:\n{}",
        lines.join("\n")
    );
}

#[test]
fn a_junk_flood_costs_a_few_log_lines_and_every_datagram_is_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path();
    flood(d, "collab", "--port", "collab-server", "collab-server.toml");
    flood(
        d,
        "mikey",
        "--mikey-port",
        "mikey-responder",
        "mikey-responder.toml",
    );
    flood(d, "sga", "--sga-port", "sga-server", "sga-server.toml");
    flood(d, "e2sec", "--e2sec-port", "e2sec-epc", "e2sec-epc.toml");
}
