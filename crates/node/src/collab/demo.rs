//! `m2msec demo` for collab: the whole deployment on 127.0.0.1, each role a tokio task with its
//! own UDP socket, keys generated in memory, one key establishment, one [`RunReport`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_protocol::collab::{Client, Proxy, ProxyFault, Server, Trusted};
use m2msec_store::MemoryStore;
use tokio::sync::mpsc;

use super::daemon::{
    ClientHandler, ClientRuns, Outcome, Report, ServerHandler, Summary, start_session,
};
use super::deployment::{DeploymentKeys, Params, Topology};

use crate::error::{Error, Result};
use crate::harness::demo::{Deployment, Options, bind_loopback, run_device};
use crate::harness::report::{Detail, Helpers, Progress, RunReport};
use crate::hex;
use crate::runtime::driver::{self, Logs};

/// Options of one collab demo run.
pub type DemoOptions = Options<Params>;

/// The name of a fault on the command line and in reports.
#[must_use]
pub fn fault_name(f: ProxyFault) -> &'static str {
    match f {
        ProxyFault::Silent => "silent",
        ProxyFault::ForgeFragment => "forge",
        ProxyFault::CorruptAnswer => "corrupt",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// Seeded RNG streams of this demo's roles: 1 + the role's number.
const RNG_DOMAIN: u64 = 1;

/// Runs one collab key establishment over real UDP on 127.0.0.1.
///
/// # Errors
///
/// Set-up errors only (bad options, sockets, keys, pcap file); a run that fails — expectedly
/// or not — is a [`RunReport`] with `ok: false` and its `error`.
pub async fn run(opts: &DemoOptions, progress: &dyn Progress) -> Result<RunReport> {
    let params = &opts.params;
    params.check()?;

    progress.stage("binding sockets");
    let client_socket = bind_loopback().await?;
    let trusted_socket = bind_loopback().await?;
    let server_socket = bind_loopback().await?;
    let mut proxy_sockets = Vec::new();
    for _ in 0..params.proxies {
        proxy_sockets.push(bind_loopback().await?);
    }
    let addr = |s: &tokio::net::UdpSocket| s.local_addr().map_err(Error::Socket);
    let topology = Topology {
        client: addr(&client_socket)?,
        trusted: addr(&trusted_socket)?,
        server: addr(&server_socket)?,
        proxies: proxy_sockets.iter().map(addr).collect::<Result<_>>()?,
    };

    let mut run = Deployment::new(&opts.run, RNG_DOMAIN, Vec::new())?;
    progress.stage(&format!("generating {} keys", params.suite.name()));
    let keys = DeploymentKeys::generate(
        params.suite,
        params.aead,
        params.proxies,
        &mut *run.rng(100),
    )?;
    let configs = keys.into_configs(&params.spec(), &topology)?;
    let (report_tx, mut reports) = mpsc::unbounded_channel();

    progress.stage("starting trusted entity, server and proxies");
    let trusted = run.driver("trusted", trusted_socket, Trusted::new(configs.trusted)?, 2)?;
    run.serve(trusted, Logs);
    let server = Server::new(configs.server, Vec::<[u8; 32]>::new())?;
    let server = run.driver("server", server_socket, server, 3)?;
    run.serve(
        server,
        ServerHandler::new(Arc::new(MemoryStore::new()), Some(report_tx.clone())),
    );
    for (i, (config, socket)) in configs.proxies.into_iter().zip(proxy_sockets).enumerate() {
        let name = config.identity.clone();
        let proxy = run.driver(name, socket, Proxy::new(config)?, 10 + i as u64)?;
        run.serve(proxy, Logs);
    }

    progress.stage("key establishment");
    let client = Client::new(configs.client, Vec::new())?;
    let mut client_driver = run.driver("client", client_socket, client, 1)?;
    let start = Instant::now();
    {
        let (client, rng) = client_driver.endpoint_mut();
        start_session(client, driver::wall_clock(), rng)?;
    }
    let handler = ClientHandler::new(
        Arc::new(MemoryStore::new()),
        ClientRuns::default(),
        Some(report_tx),
    );
    let (device_ops, outcome, error) = run_device(
        "client",
        client_driver,
        handler,
        run.shutdown.clone(),
        opts.run.timeout,
        |h: ClientHandler| h.into_outcomes().pop().map(Outcome::into_result),
    )
    .await;

    // The server established before it sent its last message; give its report a moment to
    // arrive through the channel if it has not yet.
    let mut server_summaries: Vec<Summary> = Vec::new();
    if let Some(client) = &outcome {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !server_summaries.iter().any(|s| s.session == client.session) {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(Report::ServerEstablished(s))) => server_summaries.push(s),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    let wire = run.finish().await?;
    let session_key_match = outcome.as_ref().is_some_and(|c| {
        server_summaries
            .iter()
            .any(|s| s.session == c.session && s.fingerprint == c.fingerprint)
    });
    let ok = outcome.is_some() && session_key_match;
    let error = match (&outcome, error) {
        (_, Some(e)) => Some(e),
        (Some(_), None) if !session_key_match => Some("client and server keys differ".into()),
        _ => None,
    };
    progress.stage(if ok {
        "done: key established"
    } else {
        "done: failed"
    });
    let expected_ok = params.expect_success();
    Ok(RunReport {
        protocol: super::PROTOCOL,
        ok,
        session_key_match,
        messages: wire.messages,
        bytes: wire.bytes,
        device_ops: device_ops.into(),
        wall_ms: start.elapsed().as_secs_f64() * 1000.0,
        error,
        expected_ok,
        as_expected: ok == expected_ok,
        session: outcome.as_ref().map(|o| o.session.to_string()),
        key_fingerprint: outcome.as_ref().map(|o| hex(&o.fingerprint)),
        suite: params.suite.name(),
        seed: opts.run.seed,
        pcap: opts.run.pcap_name(),
        helpers: Helpers {
            participants: outcome
                .as_ref()
                .map(|o| o.participants.clone())
                .unwrap_or_default(),
            proxies: params.proxies,
            threshold: params.threshold,
            sharing: match params.sharing {
                m2msec_crypto::split::SharingScheme::Shamir => "shamir",
                _ => "rs",
            },
            faulty: params.faulty,
            fault: params.fault.filter(|_| params.faulty > 0).map(fault_name),
            faulty_proxies: if params.fault.is_some() {
                params.faulty_names()
            } else {
                Vec::new()
            },
        },
        detail: Detail::Collab(super::report::Detail {}),
    })
}
