//! The four collab daemons: a config file in, a role on a UDP socket out.
//!
//! What each handler persists before the driver sends anything (the records are
//! [`m2msec_protocol::collab::records`]): the server every one-time key it accepts (table
//! [`USED_OTS_TABLE`]), the client its trust in each proxy (table [`TRUST_TABLE`]).

use std::path::Path;
use std::sync::Arc;

use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::Millis;
use m2msec_protocol::collab::{
    Client, ClientEvent, Established, Proxy, Server, ServerEvent, SessionId, TrustRecord, Trusted,
    records,
};
use m2msec_store::Store;

use super::config;
use crate::error::{Error, Result};
use crate::harness::daemon::{Daemon, Exit, Persisting, RoleArgs, SessionRuns, Sessions};
use crate::hex;
use crate::runtime::driver::{Context, Flow, Handler, Logs, Shutdown, log_event, open_store};

pub use records::{TRUST_TABLE, USED_OTS_TABLE, load_used_one_time_keys};

/// An established session, without the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The session.
    pub session: SessionId,
    /// The peer's identity.
    pub peer: String,
    /// Fingerprint of the session key (safe to print and compare).
    pub fingerprint: [u8; 8],
    /// The proxies that took part, as the server listed them.
    pub participants: Vec<String>,
}

/// The client's and the server's alike.
impl From<&Established> for Summary {
    fn from(e: &Established) -> Self {
        Self {
            session: e.session,
            peer: e.peer.clone(),
            fingerprint: e.key.fingerprint(),
            participants: e.participants.clone(),
        }
    }
}

/// Trust records kept in `store`.
///
/// # Errors
///
/// [`Error::Store`] if the store cannot be read. Records that do not decode are skipped with
/// a warning (a newer format, a damaged entry): the proxy then starts from neutral trust.
pub fn load_trust(store: &dyn Store) -> Result<Vec<TrustRecord>> {
    let loaded = records::load_trust(store)?;
    for (proxy, error) in &loaded.skipped {
        tracing::warn!(%proxy, %error, "trust record skipped");
    }
    Ok(loaded.records)
}

/// How many key establishments the client daemon runs, and how far apart.
pub type ClientRuns = crate::harness::daemon::Runs;

/// The result of one client run.
pub type Outcome =
    crate::harness::daemon::Outcome<Summary, SessionId, m2msec_protocol::collab::Error>;

/// The client daemon's handler: persists trust, counts runs, starts the next one.
pub type ClientHandler = SessionRuns<Client>;

/// Starts one client session, logging it.
///
/// # Errors
///
/// [`Error::Collab`] if the client cannot start one (no usable proxies…).
pub fn start_session(
    client: &mut Client,
    now: Millis,
    rng: &mut dyn m2msec_crypto::rng::CryptoRng,
) -> Result<SessionId> {
    let session = client.connect(now, rng)?;
    tracing::info!(%session, "collab key establishment started");
    Ok(session)
}

impl Sessions for Client {
    type Summary = Summary;
    type Id = SessionId;
    type Error = m2msec_protocol::collab::Error;
    /// The store of the trust records.
    type Keeps = Arc<dyn Store>;

    fn start_run(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<()> {
        start_session(self, now, rng).map(drop)
    }

    fn ended(store: &mut Arc<dyn Store>, event: ClientEvent) -> Result<Option<Outcome>> {
        Ok(match event {
            ClientEvent::Established(e) => Some(Outcome::Established(Summary::from(&e))),
            ClientEvent::Failed { session, error } => Some(Outcome::Failed { id: session, error }),
            ClientEvent::TrustUpdated(updated) => {
                for r in &updated {
                    records::save_trust(&**store, r)?;
                }
                None
            }
            _ => None,
        })
    }
}

/// The server daemon's handler: persists used one-time keys before anything is sent, reports
/// each key it establishes to a demo.
pub type ServerHandler = Persisting<Summary>;

impl Handler<Server> for ServerHandler {
    type Error = Error;

    fn on_event(&mut self, cx: &mut Context<'_, Server>, event: ServerEvent) -> Result<Flow> {
        log_event(&event);
        match event {
            ServerEvent::OneTimeKeyUsed(id) => {
                // Durable before the answer that depends on it leaves (see the driver).
                let first = records::record_one_time_key(&*self.store, &id, cx.now)?;
                if !first {
                    tracing::warn!(id = %hex(&id), "one-time key was already recorded as used");
                }
            }
            ServerEvent::Established(e) => self.report.send(Summary::from(&e)),
            _ => {}
        }
        Ok(Flow::Continue)
    }
}

/// Runs the client daemon of `config_file`: `runs.count` key establishments, then returns
/// their outcomes (also on `shutdown`).
///
/// # Errors
///
/// Config, key file, store and bind errors; a run that fails is an [`Outcome::Failed`], not
/// an error.
pub async fn run_client(
    config_file: &Path,
    runs: ClientRuns,
    shutdown: Shutdown,
) -> Result<Vec<Outcome>> {
    let setup = config::load_client(config_file)?;
    let store = open_store(setup.state.as_deref())?;
    let trust = load_trust(&*store)?;
    let identity = setup.config.identity.clone();
    let client = Client::new(setup.config, trust)?;
    let daemon = Daemon::bind("collab-client", identity, setup.link, client).await?;
    let handler = ClientHandler::new(runs, store);
    let handler = daemon.start(Client::start_run, handler, shutdown).await?;
    Ok(handler.into_outcomes())
}

/// Runs the proxy daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file and bind errors.
pub async fn run_proxy(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_proxy(config_file)?;
    let identity = setup.config.identity.clone();
    let proxy = Proxy::new(setup.config)?;
    let daemon = Daemon::bind("collab-proxy", identity, setup.link, proxy).await?;
    daemon.serve(Logs, shutdown).await
}

/// Runs the trusted entity daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file and bind errors.
pub async fn run_trusted(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_trusted(config_file)?;
    let identity = setup.config.identity.clone();
    let trusted = Trusted::new(setup.config)?;
    let daemon = Daemon::bind("collab-trusted", identity, setup.link, trusted).await?;
    daemon.serve(Logs, shutdown).await
}

/// Runs the server daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file, store and bind errors; a store error while serving stops the daemon
/// (nothing that depended on the failed write was sent).
pub async fn run_server(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_server(config_file)?;
    let store = open_store(setup.state.as_deref())?;
    let used = load_used_one_time_keys(&*store)?;
    let identity = setup.config.identity.clone();
    tracing::info!(used_one_time_keys = used.len(), "state loaded");
    let server = Server::new(setup.config, used)?;
    let daemon = Daemon::bind("collab-server", identity, setup.link, server).await?;
    daemon
        .serve(ServerHandler::new(store, None), shutdown)
        .await
}

/// Runs the collab daemon `role` as `m2msec run` asks.
///
/// # Errors
///
/// As the role's runner; [`Error::Usage`] for a role that is not collab's.
pub async fn run_role(role: &str, args: &RoleArgs, shutdown: Shutdown) -> Result<Exit> {
    let config = args.config.as_path();
    match role {
        "collab-client" => {
            let outcomes = run_client(config, args.runs(), shutdown).await?;
            return Ok(Exit::ran(&outcomes, args.runs().count, "client"));
        }
        "collab-proxy" => run_proxy(config, shutdown).await,
        "collab-trusted" => run_trusted(config, shutdown).await,
        "collab-server" => run_server(config, shutdown).await,
        other => Err(Error::Usage(format!("{other}: not a collab role"))),
    }
    .map(|()| Exit::Served)
}
