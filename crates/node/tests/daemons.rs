//! The four daemons from provisioned config files, in one process over real UDP on 127.0.0.x:
//! keys are established, and what must survive a restart is in the stores afterwards.

use std::path::Path;
use std::time::Duration;

use m2msec_crypto::rng::SeededRng;
use m2msec_node::collab::daemon::{
    self, ClientRuns, Outcome, TRUST_TABLE, USED_OTS_TABLE, run_client, run_proxy, run_server,
    run_trusted,
};
use m2msec_node::collab::deployment::Params;
use m2msec_node::collab::provision::{ProvisionOptions, provision};
use m2msec_node::runtime::driver::shutdown_channel;
use m2msec_store::{RedbStore, Store};

mod runtime;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_or(47_401, |a| a.port())
}

async fn deployment(dir: &Path) -> Vec<Outcome> {
    let (stop, shutdown) = shutdown_channel();
    let mut tasks = tokio::task::JoinSet::new();
    let config = |name: &str| dir.join(format!("{name}.toml"));
    {
        let (c, s) = (config("collab-trusted"), shutdown.clone());
        tasks.spawn(async move { run_trusted(&c, s).await });
    }
    {
        let (c, s) = (config("collab-server"), shutdown.clone());
        tasks.spawn(async move { run_server(&c, s).await });
    }
    for i in 1..=5 {
        let (c, s) = (config(&format!("collab-proxy-{i}")), shutdown.clone());
        tasks.spawn(async move { run_proxy(&c, s).await });
    }
    // Let every daemon bind before the client's first datagram.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let runs = ClientRuns {
        attempts: 1,
        count: 2,
        interval: Duration::from_millis(50),
    };
    let outcomes = tokio::time::timeout(
        Duration::from_secs(30),
        run_client(&config("collab-client"), runs, shutdown.clone()),
    )
    .await
    .unwrap_or_else(|_| panic!("client did not finish"))
    .unwrap_or_else(|e| panic!("client: {e}"));
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

#[test]
fn provisioned_daemons_establish_keys_and_persist_state() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = ProvisionOptions {
        params: Params::default(),
        port: free_port(),
        force: false,
    };
    provision(dir.path(), &opts, &mut SeededRng::from_seed_u64(9))
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime::runtime();

    let outcomes = rt.block_on(deployment(dir.path()));
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert!(
            matches!(o, Outcome::Established(s) if s.participants.len() == 5),
            "{o:?}"
        );
    }

    let client_state =
        RedbStore::open(dir.path().join("state/client.redb")).unwrap_or_else(|e| panic!("{e}"));
    let trust = daemon::load_trust(&client_state).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trust.len(), 5);
    assert!(trust.iter().all(|r| r.successes == 2), "{trust:?}");
    assert_eq!(
        client_state.scan(TRUST_TABLE).map(|t| t.len()).unwrap_or(0),
        5
    );
    drop(client_state);

    let server_state =
        RedbStore::open(dir.path().join("state/server.redb")).unwrap_or_else(|e| panic!("{e}"));
    let used = server_state.scan(USED_OTS_TABLE).unwrap_or_default();
    assert_eq!(used.len(), 10, "one one-time key per proxy per session");
    drop(server_state);

    // Restarted daemons load that state and keep working.
    let outcomes = rt.block_on(deployment(dir.path()));
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Established(_)))
    );
}
