//! `m2msec demo` for collab: the whole deployment on 127.0.0.1, each role a tokio task with its
//! own UDP socket, keys generated in memory, one key establishment, one [`RunReport`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_protocol::collab::{Client, Proxy, ProxyFault, Server, SessionId, Trusted};
use m2msec_store::MemoryStore;

use super::daemon::{ClientHandler, ClientRuns, Outcome, ServerHandler, Summary, start_session};
use super::deployment::{DeploymentKeys, Params, Topology};

use crate::error::Result;
use crate::harness::demo::{Bound, Deployment, Gather, Options, Reports};
use crate::harness::flags::SharingArg;
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
    let mut bound = Bound::ephemeral(3 + usize::from(params.proxies)).await?;
    let [client_socket, trusted_socket, server_socket] = bound.take()?;
    let topology = Topology {
        client: bound.addrs[0],
        trusted: bound.addrs[1],
        server: bound.addrs[2],
        proxies: bound.addrs[3..].to_vec(),
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
    let reports = Reports::new();

    progress.stage("starting trusted entity, server and proxies");
    let trusted = run.driver("trusted", trusted_socket, Trusted::new(configs.trusted)?, 2)?;
    run.serve(trusted, Logs);
    let server = Server::new(configs.server, Vec::<[u8; 32]>::new())?;
    let server = run.driver("server", server_socket, server, 3)?;
    let store = Arc::new(MemoryStore::new());
    run.serve(server, ServerHandler::new(store, reports.to()));
    for (i, (config, socket)) in configs.proxies.into_iter().zip(bound.sockets).enumerate() {
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
    let handler = ClientHandler::new(ClientRuns::default(), Arc::new(MemoryStore::new()));
    let (device_ops, client) = run
        .device("client", client_driver, handler, |h: ClientHandler| {
            h.into_outcomes().pop().map(Outcome::into_result)
        })
        .await;

    // The server established before it sent its last message; give its report a moment to
    // arrive through the channel if it has not yet.
    let mut server = ServerKeys {
        client: client.as_ref().ok().map(|c| c.session),
        seen: Vec::new(),
    };
    let within = client.is_ok().then_some(Duration::from_secs(2));
    let wire = run.finish_gathering(reports, within, &mut server).await?;
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    let session_key_match = client.as_ref().is_ok_and(|c| {
        server
            .seen
            .iter()
            .any(|s| s.session == c.session && s.fingerprint == c.fingerprint)
    });
    let error = match &client {
        Err(e) => Some(e.clone()),
        Ok(_) if !session_key_match => Some("client and server keys differ".into()),
        Ok(_) => None,
    };
    progress.done(error.is_none(), "key established");
    let client = client.ok();
    Ok(RunReport {
        device_ops: device_ops.into(),
        session: client.as_ref().map(|o| o.session.to_string()),
        key_fingerprint: client.as_ref().map(|o| hex(&o.fingerprint)),
        suite: params.suite.name(),
        helpers: Helpers {
            participants: client.map(|o| o.participants).unwrap_or_default(),
            proxies: params.proxies,
            threshold: params.threshold,
            sharing: SharingArg::of(params.sharing).map_or("rs", SharingArg::name),
            faulty: params.faulty,
            fault: params.fault.filter(|_| params.faulty > 0).map(fault_name),
            faulty_proxies: params.faulty_names(),
        },
        ..RunReport::new(
            super::PROTOCOL,
            &opts.run,
            wire,
            wall_ms,
            Detail::Collab(super::report::Detail {}),
        )
        .judged(session_key_match, error, params.expect_success())
    })
}

/// The keys the server reported, until one is the client's session's.
struct ServerKeys {
    client: Option<SessionId>,
    seen: Vec<Summary>,
}

impl Gather<Summary> for ServerKeys {
    fn take(&mut self, report: Summary) {
        self.seen.push(report);
    }

    fn settled(&self) -> bool {
        self.seen.iter().any(|s| Some(s.session) == self.client)
    }
}
