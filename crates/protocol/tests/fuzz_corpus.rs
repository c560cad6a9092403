//! The fuzz targets' live deployments (`m2msec_protocol::fuzzing`) and their committed corpus
//! under `fuzz/corpus/`: each deployment is really mid-session, the honest run's remaining
//! datagrams finish it, and every corpus input (seeds and the regression inputs of crashes the
//! fuzzer found) leaves every role standing. `cargo test -p m2msec-protocol --test fuzz_corpus
//! -- --ignored` writes the seeds anew (after a wire format changes).

use std::path::PathBuf;

use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::fuzzing::{self, Live};
use m2msec_protocol::network::{Datagram, Deployment};
use m2msec_protocol::{collab, e2sec, mikey, sga};
use m2msec_wire::cbor::{Bytes, SecretBytes};
use m2msec_wire::fragment::Fragment;
use m2msec_wire::relay::management::{Body, SectionKey};
use m2msec_wire::relay::{Flags, Header, RelayMessage};

/// Seed of every live deployment (the fuzz targets use the same).
const SEED: u64 = 1;
/// Most bytes of seeds written per target: the corpus stays small.
const SEED_BUDGET: usize = 8 * 1024;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Every committed input of `target`, by name.
fn committed(target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(corpus(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = dir
        .filter_map(Result::ok)
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("corpus file readable");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Delivers the rest of the honest run and says whether `done` holds then, and not before.
fn finishes<D: Deployment>(mut live: Live<D>, done: impl Fn(&D) -> bool) {
    assert!(fuzzing::waiting(&mut live.world), "a role waits");
    assert!(!done(&live.world), "not finished before the rest arrives");
    live.finish();
    assert!(done(&live.world), "the rest of the honest run finishes it");
}

#[test]
fn mikey_is_live_mid_session() {
    let live = fuzzing::mikey(SEED).expect("deployment");
    finishes(live, |w| {
        let established =
            |e: &mikey::InitiatorEvent| matches!(e, mikey::InitiatorEvent::Established(_));
        w.events.initiator.iter().any(established)
    });
}

#[test]
fn sga_is_live_mid_session() {
    let live = fuzzing::sga(SEED).expect("deployment");
    finishes(live, |w| {
        let established = |e: &sga::DeviceEvent| matches!(e, sga::DeviceEvent::Established { .. });
        w.events.devices.iter().all(|d| d.iter().any(established))
    });
}

#[test]
fn e2sec_is_live_mid_session() {
    let live = fuzzing::e2sec(SEED).expect("deployment");
    finishes(live, |w| {
        let established =
            |e: &e2sec::PartyEvent| matches!(e, e2sec::PartyEvent::Established { .. });
        w.events.server.iter().any(established) && w.events.device.iter().any(established)
    });
}

/// Feeds every committed input of `target` to one live deployment, as the fuzz target does.
fn replay<D: Deployment>(target: &str, mut live: Live<D>) {
    let files = committed(target);
    assert!(!files.is_empty(), "{target} has a committed corpus");
    for (_, input) in &files {
        fuzzing::deliver(&mut live.world, input, &mut live.rng);
    }
}

#[test]
fn committed_role_corpora_leave_every_role_standing() {
    replay("mikey_roles", fuzzing::mikey(SEED).expect("deployment"));
    replay("sga_roles", fuzzing::sga(SEED).expect("deployment"));
    replay("e2sec_roles", fuzzing::e2sec(SEED).expect("deployment"));
}

/// Writes `seeds` as `seed-NN` files of `target` (replacing earlier seeds, keeping every other
/// input), at most [`SEED_BUDGET`] bytes of them.
fn write_seeds(target: &str, seeds: impl IntoIterator<Item = Vec<u8>>) {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (name, _) in committed(target) {
        if name.starts_with("seed-") {
            std::fs::remove_file(dir.join(name)).expect("old seed removed");
        }
    }
    let mut total = 0;
    let mut kept = 0;
    for seed in seeds {
        if seed.is_empty() || total + seed.len() > SEED_BUDGET {
            continue;
        }
        total += seed.len();
        std::fs::write(dir.join(format!("seed-{kept:02}")), &seed).expect("seed written");
        kept += 1;
    }
    assert!(kept > 0, "{target}: at least one seed");
}

/// The inputs of a whole honest exchange: `live` finished.
fn honest<D: Deployment>(mut live: Live<D>) -> Vec<Vec<u8>> {
    live.finish();
    live.inputs()
}

fn payloads(log: &[Datagram]) -> impl Iterator<Item = Vec<u8>> + '_ {
    log.iter().map(|d| d.payload.clone())
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*: run by hand after a wire format changes"]
fn write_fuzz_seeds() {
    let mikey = honest(fuzzing::mikey(SEED).expect("deployment"));
    write_seeds("mikey_roles", mikey.clone());
    let sga = honest(fuzzing::sga(SEED).expect("deployment"));
    write_seeds("sga_roles", sga.clone());
    let e2sec = honest(fuzzing::e2sec(SEED).expect("deployment"));
    write_seeds("e2sec_roles", e2sec.clone());
    // The decoders' seeds: the whole messages of honest runs (a role's input less its first
    // byte).
    let messages = |live: &Vec<Vec<u8>>| live.iter().map(|i| i[1..].to_vec()).collect::<Vec<_>>();
    write_seeds("mikey_message", messages(&mikey));
    write_seeds("sga_message", messages(&sga));
    write_seeds("e2sec_message", messages(&e2sec));

    let mut rng = SeededRng::from_seed_u64(SEED);
    let mut w =
        collab::sim::World::generate(&collab::sim::Spec::default(), &mut rng).expect("deployment");
    w.client.connect(w.net.now, &mut rng).expect("connect");
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let to_server = w.addrs[collab::sim::SERVER_ROLE];
    let log = &w.net.log;
    write_seeds("collab_message", payloads(log));
    write_seeds(
        "collab_server",
        payloads(
            &log.iter()
                .filter(|d| d.to == to_server)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .collect::<Vec<_>>(),
    );
    write_seeds(
        "fragments",
        payloads(log).filter_map(|m| fragments_input(&m)).take(4),
    );
    write_relay_seeds();
}

/// The relay has no simulated deployment: its seeds are built here, a data and a management
/// message, sink URLs, a management body and a section key.
fn write_relay_seeds() {
    let body = Body {
        epoch: 3,
        afgh: Bytes(vec![0x5a; 48]),
    }
    .to_bytes();
    let key = SectionKey {
        stream_id: 7,
        key_index: 1,
        suite: 2,
        key: SecretBytes::new(vec![0x11; 32]),
        not_before_ms: 1_700_000_000_000,
        not_after_ms: 1_700_000_060_000,
        signature: Bytes(vec![0x22; 64]),
    }
    .to_bytes()
    .to_vec();
    let message = |flags: Flags, body: Vec<u8>| {
        RelayMessage {
            header: Header {
                flags,
                message_id: 0x0102_0304,
                stream_id: 7,
                key_index: 1,
                source: "coap://127.0.0.1:5683/source".into(),
                sink: "udp://127.0.0.1:9000".into(),
            },
            body,
        }
        .encode()
        .expect("short URLs")
    };
    write_seeds(
        "relay_message",
        [
            message(Flags::STREAM, vec![0x33; 40]),
            message(Flags::STREAM.with(Flags::MANAGEMENT), body.clone()),
            b"udp://127.0.0.1:9000".to_vec(),
            b"coap://[::1]:5683/sink".to_vec(),
        ],
    );
    write_seeds("relay_management", [body, key]);
}

/// `message` in two fragments from one sender, as the `fragments` target reads them (each
/// datagram behind a length byte whose low bit is its sender), if it fits.
fn fragments_input(message: &[u8]) -> Option<Vec<u8>> {
    // Both datagrams of even length (one sender): a message of even length, cut in the middle
    // at an even offset.
    if message.len() % 2 == 1 || message.len() > 400 {
        return None;
    }
    let (a, b) = message.split_at(message.len() / 2 / 2 * 2);
    let mut input = Vec::new();
    for (index, chunk) in [a, b].into_iter().enumerate() {
        let datagram = Fragment {
            id: [7; 8],
            index: u8::try_from(index).ok()?,
            count: 2,
            chunk,
        }
        .to_bytes();
        input.push(u8::try_from(datagram.len()).ok()?);
        input.extend_from_slice(&datagram);
    }
    Some(input)
}
