//! `m2msec demo` for collab: the whole deployment on 127.0.0.1, each role a tokio task with its
//! own UDP socket, keys generated in memory, one key establishment, one [`RunReport`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::collab::{Client, Proxy, ProxyFault, Server, Trusted};
use m2msec_protocol::{Endpoint, OpCounts};
use m2msec_store::MemoryStore;
use tokio::sync::mpsc;

use super::daemon::{
    ClientHandler, ClientRuns, Outcome, ProxyHandler, Report, ServerHandler, Summary,
    TrustedHandler, start_session,
};
use super::deployment::{DeploymentKeys, Params, Topology};
use m2msec_protocol::link::LinkFaults;

use crate::driver::{self, Driver, shutdown_channel};
use crate::error::{Error, Result};
use crate::hex;
use crate::report::{Progress, RunReport};
use crate::tap::Wiretap;

/// Options of one collab demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Shape of the deployment.
    pub params: Params,
    /// Seed for every key and every role's RNG; absent: the operating system's RNG.
    pub seed: Option<u64>,
    /// Write every datagram of the run to this pcap file.
    pub pcap: Option<PathBuf>,
    /// Overall limit: the run is abandoned (and reported failed) after this long.
    pub timeout: Duration,
    /// The link between the roles: loss, duplication and reordering (default: perfect).
    pub faults: LinkFaults,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            params: Params::default(),
            seed: None,
            pcap: None,
            timeout: Duration::from_secs(30),
            faults: LinkFaults::default(),
        }
    }
}

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

fn rng_for(seed: Option<u64>, role: u64) -> Box<dyn CryptoRng + Send> {
    crate::driver::role_rng(seed, 1 + role)
}

async fn bind_loopback() -> Result<tokio::net::UdpSocket> {
    driver::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}

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

    progress.stage(&format!("generating {} keys", params.suite.name()));
    let mut key_rng = rng_for(opts.seed, 100);
    let keys = DeploymentKeys::generate(params.suite, params.aead, params.proxies, &mut *key_rng)?;
    let configs = keys.into_configs(&params.spec(), &topology)?;

    let tap = Wiretap::for_demo(opts.pcap.as_deref(), opts.faults, opts.seed)?;
    let (stop, shutdown) = shutdown_channel();
    let (report_tx, mut reports) = mpsc::unbounded_channel();

    progress.stage("starting trusted entity, server and proxies");
    let mut serving = tokio::task::JoinSet::new();
    {
        let d = Driver::new(
            "trusted",
            trusted_socket,
            Trusted::new(configs.trusted)?,
            rng_for(opts.seed, 2),
        )?
        .with_tap(tap.clone());
        let sd = shutdown.clone();
        serving.spawn(async move { d.run(&mut TrustedHandler, sd).await.map(|_| ()) });
    }
    {
        let server = Server::new(configs.server, Vec::<[u8; 32]>::new())?;
        let d = Driver::new("server", server_socket, server, rng_for(opts.seed, 3))?
            .with_tap(tap.clone());
        let sd = shutdown.clone();
        let mut h = ServerHandler::new(Arc::new(MemoryStore::new()), Some(report_tx.clone()));
        serving.spawn(async move { d.run(&mut h, sd).await.map(|_| ()) });
    }
    for (i, (config, socket)) in configs.proxies.into_iter().zip(proxy_sockets).enumerate() {
        let name = config.identity.clone();
        let d = Driver::new(
            name,
            socket,
            Proxy::new(config)?,
            rng_for(opts.seed, 10 + i as u64),
        )?
        .with_tap(tap.clone());
        let sd = shutdown.clone();
        serving.spawn(async move { d.run(&mut ProxyHandler, sd).await.map(|_| ()) });
    }

    progress.stage("key establishment");
    let mut client_driver = Driver::new(
        "client",
        client_socket,
        Client::new(configs.client, Vec::new())?,
        rng_for(opts.seed, 1),
    )?
    .with_tap(tap.clone());
    let start = Instant::now();
    {
        let (client, rng) = client_driver.endpoint_mut();
        start_session(client, driver::wall_clock(), rng)?;
    }
    let client_shutdown = shutdown.clone();
    let client_report = report_tx.clone();
    drop(report_tx);
    let client_task = tokio::spawn(async move {
        let mut h = ClientHandler::new(
            Arc::new(MemoryStore::new()),
            ClientRuns::default(),
            Some(client_report),
        );
        let client = client_driver.run(&mut h, client_shutdown).await?;
        Ok::<(OpCounts, Vec<Outcome>), Error>((client.op_counts(), h.into_outcomes()))
    });

    let client_result = tokio::time::timeout(opts.timeout, client_task).await;
    let (device_ops, outcome, error) = match client_result {
        Ok(Ok(Ok((ops, mut outcomes)))) => match outcomes.pop() {
            Some(Outcome::Established(s)) => (ops, Some(s), None),
            Some(Outcome::Failed { error, .. }) => (ops, None, Some(error.to_string())),
            None => (
                ops,
                None,
                Some("the client stopped without a result".into()),
            ),
        },
        Ok(Ok(Err(e))) => (OpCounts::default(), None, Some(e.to_string())),
        Ok(Err(join)) => (
            OpCounts::default(),
            None,
            Some(format!("client task: {join}")),
        ),
        Err(_) => (
            OpCounts::default(),
            None,
            Some(Error::Timeout(opts.timeout).to_string()),
        ),
    };

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
    stop.shutdown();
    while let Ok(Some(joined)) =
        tokio::time::timeout(Duration::from_secs(2), serving.join_next()).await
    {
        if let Ok(Err(e)) = joined {
            tracing::warn!(error = %e, "a role stopped with an error");
        }
    }
    serving.abort_all();
    tap.flush()?;

    let wire = tap.totals();
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
        protocol: "collab",
        ok,
        session_key_match,
        messages: wire.messages,
        bytes: wire.bytes,
        device_ops: device_ops.into(),
        wall_ms: start.elapsed().as_secs_f64() * 1000.0,
        participants: outcome
            .as_ref()
            .map(|o| o.participants.clone())
            .unwrap_or_default(),
        error,
        expected_ok,
        as_expected: ok == expected_ok,
        session: outcome.as_ref().map(|o| o.session.to_string()),
        key_fingerprint: outcome.as_ref().map(|o| hex(&o.fingerprint)),
        suite: params.suite.name(),
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
        mode: None,
        verified: None,
        seed: opts.seed,
        pcap: opts.pcap.as_ref().map(|p| p.display().to_string()),
        group: None,
        pke: None,
        sent: None,
        stored: None,
        delivered: None,
        restarted_gateway: None,
        variant: None,
    })
}
