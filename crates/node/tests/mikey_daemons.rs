//! The MIKEY daemons from provisioned config files, in one process over real UDP on 127.0.0.x:
//! exchanges succeed in every mode, the replay caches are in the stores afterwards, and the
//! example and provisioned configs load while bad ones are refused with clear errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_crypto::rng::SeededRng;
use m2msec_node::mikey::config::{
    InitiatorFile, ResponderFile, ThirdPartyFile, load_initiator, load_responder, load_third_party,
};
use m2msec_node::mikey::daemon::{
    InitiatorRuns, Outcome, REPLAY_TABLE, load_replay_cache, run_initiator, run_responder,
    run_third_party,
};
use m2msec_node::mikey::provision::{ProvisionOptions, provision};
use m2msec_node::runtime::config::load_toml;
use m2msec_node::runtime::driver::shutdown_channel;
use m2msec_protocol::Millis;
use m2msec_protocol::mikey::ModeName;
use m2msec_store::{RedbStore, Store};

mod runtime;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_or(47_402, |a| a.port())
}

fn provisioned(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = ProvisionOptions {
        port,
        ..ProvisionOptions::default()
    };
    let out = provision(dir.path(), &opts, &mut SeededRng::from_seed_u64(11))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.commands.len(), 7, "R, five third parties, I");
    assert!(out.commands[6].starts_with("m2msec run mikey-initiator --config"));
    dir
}

fn set_mode(dir: &Path, mode: &str) -> PathBuf {
    let file = dir.join("mikey-initiator.toml");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let changed = text.replace("mode = \"distributed\"", &format!("mode = \"{mode}\""));
    assert_ne!(text, changed);
    let out = dir.join(format!("mikey-initiator-{mode}.toml"));
    std::fs::write(&out, changed).unwrap_or_else(|e| panic!("{e}"));
    out
}

async fn deployment(dir: &Path, initiator: &Path, count: u32) -> Vec<Outcome> {
    let (stop, shutdown) = shutdown_channel();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (c, s) = (dir.join("mikey-responder.toml"), shutdown.clone());
        tasks.spawn(async move { run_responder(&c, s).await });
    }
    for i in 1..=5 {
        let (c, s) = (
            dir.join(format!("mikey-third-party-{i}.toml")),
            shutdown.clone(),
        );
        tasks.spawn(async move { run_third_party(&c, s).await });
    }
    // Let every daemon bind before the initiator's first datagram.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = InitiatorRuns {
        attempts: 1,
        count,
        interval: Duration::from_millis(50),
    };
    let outcomes = tokio::time::timeout(
        Duration::from_secs(30),
        run_initiator(initiator, runs, shutdown.clone()),
    )
    .await
    .unwrap_or_else(|_| panic!("initiator did not finish"))
    .unwrap_or_else(|e| panic!("initiator: {e}"));
    stop.shutdown();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("daemon: {e}"),
            Err(e) => panic!("daemon task: {e}"),
        }
    }
    outcomes
}

fn replay_entries(path: &Path) -> usize {
    let store = RedbStore::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    store.scan(REPLAY_TABLE).map(|t| t.len()).unwrap_or(0)
}

#[test]
fn provisioned_daemons_run_every_mode_and_persist_replay_caches() {
    let dir = provisioned(free_port());
    let d = dir.path();
    let rt = runtime::runtime();

    let outcomes = rt.block_on(deployment(d, &d.join("mikey-initiator.toml"), 2));
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert!(
            matches!(o, Outcome::Established(s) if s.mode == ModeName::Distributed && s.verified),
            "{o:?}"
        );
    }
    // One entry per forwarded part R processed: at least k per exchange (the daemons stop once
    // I has its key, so a late part may not have been read).
    let r_entries = replay_entries(&d.join("state/mikey-responder.redb"));
    assert!((6..=10).contains(&r_entries), "{r_entries}");
    for i in 1..=5 {
        let n = replay_entries(&d.join(format!("state/mikey-tp-{i}.redb")));
        assert!(n <= 2, "one entry per initiator message");
    }
    let tp_entries: usize = (1..=5)
        .map(|i| replay_entries(&d.join(format!("state/mikey-tp-{i}.redb"))))
        .sum();
    assert!(tp_entries >= r_entries, "{tp_entries} < {r_entries}");

    // Restarted daemons load their caches and serve the other two modes from the same files.
    for mode in ["psk", "pk"] {
        let initiator = set_mode(d, mode);
        let outcomes = rt.block_on(deployment(d, &initiator, 1));
        assert!(
            matches!(&outcomes[..], [Outcome::Established(s)] if s.mode.name() == mode),
            "{mode}: {outcomes:?}"
        );
    }
    assert_eq!(
        replay_entries(&d.join("state/mikey-responder.redb")),
        r_entries + 2,
        "one entry per psk or pk I_MESSAGE"
    );
}

#[test]
fn expired_replay_entries_are_dropped_at_load() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = RedbStore::open(dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}"));
    let put = |d: u8, until: u64| {
        store
            .put(REPLAY_TABLE, &[d; 32], &until.to_be_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    };
    put(1, 1_000);
    put(2, 3_000);
    store
        .put(REPLAY_TABLE, b"short", b"x")
        .unwrap_or_else(|e| panic!("{e}"));
    let kept = load_replay_cache(&store, Millis(2_000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept, vec![([2; 32], Millis(3_000))]);
    assert_eq!(store.scan(REPLAY_TABLE).map(|t| t.len()).unwrap_or(0), 1);
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn every_example_config_parses() -> m2msec_node::Result<()> {
    let i: InitiatorFile = load_toml(&examples().join("mikey-initiator.toml"))?;
    assert_eq!(i.third_parties.len(), 5);
    let _: ThirdPartyFile = load_toml(&examples().join("mikey-third-party.toml"))?;
    let r: ResponderFile = load_toml(&examples().join("mikey-responder.toml"))?;
    assert_eq!(r.pk_initiators.len(), 6);
    Ok(())
}

fn error_of<T: std::fmt::Debug>(r: m2msec_node::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn provisioned_configs_load_and_bad_ones_are_named() -> m2msec_node::Result<()> {
    let dir = provisioned(2269);
    let d = dir.path();
    load_initiator(&d.join("mikey-initiator.toml"))?;
    load_initiator(&set_mode(d, "psk"))?;
    load_initiator(&set_mode(d, "pk"))?;
    load_responder(&d.join("mikey-responder.toml"))?;
    for i in 1..=5 {
        load_third_party(&d.join(format!("mikey-third-party-{i}.toml")))?;
    }
    // A second provision into the same directory is refused without --force.
    assert!(
        provision(
            d,
            &ProvisionOptions::default(),
            &mut SeededRng::from_seed_u64(1)
        )
        .is_err()
    );

    let write = |name: &str, text: &str| {
        std::fs::write(d.join(name), text).unwrap_or_else(|e| panic!("write: {e}"));
        d.join(name)
    };
    let initiator = std::fs::read_to_string(d.join("mikey-initiator.toml")).unwrap_or_default();
    let responder = std::fs::read_to_string(d.join("mikey-responder.toml")).unwrap_or_default();

    let f = write(
        "bad-mode.toml",
        &initiator.replace("\"distributed\"", "\"dh\""),
    );
    let e = error_of(load_initiator(&f));
    assert!(
        e.contains("bad-mode.toml") && e.contains("unknown variant `dh`"),
        "{e}"
    );

    let f = write("extra.toml", &format!("{responder}\nfoo = 1\n"));
    let e = error_of(load_responder(&f));
    assert!(
        e.contains("extra.toml") && e.contains("unknown field `foo`"),
        "{e}"
    );

    let f = write("k.toml", &initiator.replace("k = 3", "k = 6"));
    let e = error_of(load_initiator(&f));
    assert!(
        e.contains("`distributed.k`") && e.contains("between 1 and 5"),
        "{e}"
    );

    // A PSK file that is not one.
    let f = write(
        "psk-label.toml",
        &initiator.replace(
            "keys/mikey-psk-initiator-tp-1.key",
            "keys/mikey-tp-1-sig.key.pub",
        ),
    );
    let e = error_of(load_initiator(&f));
    assert!(
        e.contains("mikey-tp-1-sig.key.pub") && e.contains("expected \"M2MSEC MIKEY PSK\""),
        "{e}"
    );
    // A key of the wrong algorithm for MIKEY's RSA.
    let ed = m2msec_crypto::sig::SigningKey::generate(
        m2msec_crypto::sig::SigSuite::Ed25519,
        &mut SeededRng::from_seed_u64(5),
    )?;
    m2msec_node::runtime::keyfile::write_secret(&d.join("keys/ed.key"), &ed.to_pem()?)
        .unwrap_or_else(|e| panic!("{e}"));
    let tp = std::fs::read_to_string(d.join("mikey-third-party-1.toml")).unwrap_or_default();
    let f = write(
        "tp-ed.toml",
        &tp.replace("keys/mikey-tp-1-sig.key\"", "keys/ed.key\""),
    );
    let e = error_of(load_third_party(&f));
    assert!(e.contains("ed.key") && e.contains("not an RSA key"), "{e}");
    // A missing key file.
    let f = write(
        "missing.toml",
        &responder.replace("keys/mikey-responder-pke.key\"", "keys/nope.key\""),
    );
    let e = error_of(load_responder(&f));
    assert!(e.contains("nope.key") && e.contains("no such file"), "{e}");
    Ok(())
}
