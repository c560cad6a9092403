//! The three MIKEY daemons: a config file in, a role on a UDP socket out.
//!
//! What the handlers persist before the driver sends anything: the responder and every third
//! party record each message they accept into their replay cache (table [`REPLAY_TABLE`], its
//! format and expiry in [`m2msec_protocol::mikey::replay_store`]); at start the cache is loaded
//! and the entries already out of the window are deleted.

use std::path::Path;

use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::mikey::replay_store::{self, ReplayEntries, record_replay};
use m2msec_protocol::mikey::{
    Established, Initiator, InitiatorEvent, ModeName, Responder, ResponderEvent, ThirdParty,
    ThirdPartyEvent,
};
use m2msec_protocol::{Endpoint, Millis};
use m2msec_store::Store;

use super::config;
use crate::error::{Error, Result};
use crate::harness::daemon::{Daemon, Exit, Persisting, RoleArgs, SessionRuns, Sessions, Setup};
use crate::hex;
use crate::runtime::driver::open_store;
use crate::runtime::driver::{self, Context, Flow, Handler, Shutdown, log_event};

pub use replay_store::REPLAY_TABLE;

/// What the MIKEY responder of a demo tells the orchestrator.
#[derive(Debug)]
pub enum Report {
    /// The responder established a TGK.
    ResponderEstablished(Summary),
    /// The responder judged a third party's part against the TGK it rebuilt.
    Part {
        /// The crypto session bundle.
        csb_id: u32,
        /// The third party.
        third_party: String,
        /// Whether the part fits the TGK's commitment (else the responder refused it).
        fits: bool,
    },
}

/// An established exchange, without the keys themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The crypto session bundle.
    pub csb_id: u32,
    /// The other end.
    pub peer: String,
    /// Which mode carried the TGK.
    pub mode: ModeName,
    /// Fingerprint of the TEK and salt (safe to print and compare).
    pub fingerprint: [u8; 8],
    /// Whether the other end proved it holds the TGK.
    pub verified: bool,
}

/// The initiator's and the responder's alike.
impl From<&Established> for Summary {
    fn from(e: &Established) -> Self {
        Self {
            csb_id: e.csb_id,
            peer: e.peer.clone(),
            mode: e.mode,
            fingerprint: e.keys.fingerprint(),
            verified: e.verified,
        }
    }
}

/// The replay cache kept in `store`, without the entries that expired by `now` (those are
/// deleted from the store).
///
/// # Errors
///
/// [`m2msec_store::Error`] (as [`crate::Error::Store`]) if the store cannot be read or written.
/// Entries that do not decode are deleted with a warning.
pub fn load_replay_cache(store: &dyn Store, now: Millis) -> Result<ReplayEntries> {
    let loaded = replay_store::load_replay_cache(store, now)?;
    for key in &loaded.malformed {
        tracing::warn!(key = %hex(key), "malformed replay-cache entry deleted");
    }
    let (kept, expired) = (loaded.kept, loaded.expired);
    tracing::info!(replay_cache = kept.len(), expired, "replay cache loaded");
    Ok(kept)
}

/// How many exchanges the initiator daemon runs, and how far apart.
pub type InitiatorRuns = crate::harness::daemon::Runs;

/// The result of one exchange of the initiator.
pub type Outcome = crate::harness::daemon::Outcome<Summary, u32, m2msec_protocol::mikey::Error>;

/// Starts one exchange on the initiator, logging it.
///
/// # Errors
///
/// [`crate::Error::Mikey`] if the initiator cannot start one.
pub fn start_exchange(
    initiator: &mut Initiator,
    now: Millis,
    rng: &mut dyn CryptoRng,
) -> Result<u32> {
    let csb_id = initiator.connect(now, rng)?;
    tracing::info!(csb_id = %format_args!("{csb_id:#010x}"), "mikey exchange started");
    Ok(csb_id)
}

/// The initiator daemon's handler: counts exchanges, starts the next one.
pub type InitiatorHandler = SessionRuns<Initiator>;

impl Sessions for Initiator {
    type Summary = Summary;
    type Id = u32;
    type Error = m2msec_protocol::mikey::Error;
    type Keeps = ();

    fn start_run(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<()> {
        start_exchange(self, now, rng).map(drop)
    }

    fn ended((): &mut (), event: InitiatorEvent) -> Result<Option<Outcome>> {
        Ok(match event {
            InitiatorEvent::Established(e) => Some(Outcome::Established(Summary::from(&e))),
            InitiatorEvent::Failed { csb_id, error } => Some(Outcome::Failed { id: csb_id, error }),
            _ => None,
        })
    }
}

/// The responder daemon's handler: persists its replay cache before anything is sent.
pub type ResponderHandler = Persisting<Report>;

impl Handler<Responder> for ResponderHandler {
    type Error = Error;

    fn on_event(
        &mut self,
        _cx: &mut Context<'_, Responder>,
        event: ResponderEvent,
    ) -> Result<Flow> {
        log_event(&event);
        let fits = matches!(event, ResponderEvent::PartAccepted { .. });
        match event {
            ResponderEvent::ReplayRecorded { digest, until } => {
                // Durable before the verification that depends on it leaves (see the driver).
                record_replay(&*self.store, &digest, until)?;
            }
            ResponderEvent::Established(e) => {
                let summary = Summary::from(&e);
                self.report.send(Report::ResponderEstablished(summary));
            }
            ResponderEvent::PartAccepted {
                csb_id,
                third_party,
                ..
            }
            | ResponderEvent::PartRejected {
                csb_id,
                third_party,
                ..
            } => {
                self.report.send(Report::Part {
                    csb_id,
                    third_party,
                    fits,
                });
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }
}

/// A third party daemon's handler: persists its replay cache before anything is sent.
pub type ThirdPartyHandler = Persisting<Report>;

impl Handler<ThirdParty> for ThirdPartyHandler {
    type Error = Error;

    fn on_event(
        &mut self,
        _cx: &mut Context<'_, ThirdParty>,
        event: ThirdPartyEvent,
    ) -> Result<Flow> {
        log_event(&event);
        if let ThirdPartyEvent::ReplayRecorded { digest, until } = event {
            // Durable before the forwarded part and the verification leave.
            record_replay(&*self.store, &digest, until)?;
        }
        Ok(Flow::Continue)
    }
}

/// Runs the initiator daemon of `config_file`: `runs.count` exchanges, then returns their
/// outcomes (also on `shutdown`).
///
/// # Errors
///
/// Config, key file and bind errors; an exchange that fails is an [`Outcome::Failed`], not an
/// error.
pub async fn run_initiator(
    config_file: &Path,
    runs: InitiatorRuns,
    shutdown: Shutdown,
) -> Result<Vec<Outcome>> {
    let setup = config::load_initiator(config_file)?;
    let identity = setup.config.identity.clone();
    let mode = ModeName::from(&setup.config.mode);
    tracing::info!(mode = mode.name(), "initiator mode");
    let initiator = Initiator::new(setup.config)?;
    let daemon = Daemon::bind("mikey-initiator", identity, setup.link, initiator).await?;
    let handler = InitiatorHandler::new(runs, ());
    let handler = daemon
        .start(Initiator::start_run, handler, shutdown)
        .await?;
    Ok(handler.into_outcomes())
}

/// Serves the daemon `role` of `identity` until `shutdown`: `new` builds it from the config of
/// `setup` and the replay cache of its store.
async fn serve_replaying<C, E>(
    role: &'static str,
    identity: String,
    setup: Setup<C>,
    new: impl FnOnce(C, ReplayEntries) -> std::result::Result<E, m2msec_protocol::mikey::Error>,
    shutdown: Shutdown,
) -> Result<()>
where
    E: Endpoint,
    Persisting<Report>: Handler<E, Error = Error>,
{
    if setup.state.is_none() {
        tracing::warn!("no `state` database: the replay cache is lost on restart");
    }
    let store = open_store(setup.state.as_deref())?;
    let cache = load_replay_cache(&*store, driver::wall_clock())?;
    let daemon = Daemon::bind(role, identity, setup.link, new(setup.config, cache)?).await?;
    daemon.serve(Persisting::new(store, None), shutdown).await
}

/// Runs a third party daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file, store and bind errors; a store error while serving stops the daemon
/// (nothing that depended on the failed write was sent).
pub async fn run_third_party(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_third_party(config_file)?;
    let identity = setup.config.identity.clone();
    let new = |config, cache| ThirdParty::new(config, cache);
    serve_replaying("mikey-third-party", identity, setup, new, shutdown).await
}

/// Runs the responder daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file, store and bind errors; a store error while serving stops the daemon.
pub async fn run_responder(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_responder(config_file)?;
    let identity = setup.config.identity.clone();
    let new = |config, cache| Responder::new(config, cache);
    serve_replaying("mikey-responder", identity, setup, new, shutdown).await
}

/// Runs the MIKEY daemon `role` as `m2msec run` asks.
///
/// # Errors
///
/// As the role's runner; [`Error::Usage`] for a role that is not MIKEY's.
pub async fn run_role(role: &str, args: &RoleArgs, shutdown: Shutdown) -> Result<Exit> {
    let config = args.config.as_path();
    match role {
        "mikey-initiator" => {
            let outcomes = run_initiator(config, args.runs(), shutdown).await?;
            return Ok(Exit::ran(&outcomes, args.runs().count, "initiator"));
        }
        "mikey-third-party" => run_third_party(config, shutdown).await,
        "mikey-responder" => run_responder(config, shutdown).await,
        other => Err(Error::Usage(format!("{other}: not a MIKEY role"))),
    }
    .map(|()| Exit::Served)
}
