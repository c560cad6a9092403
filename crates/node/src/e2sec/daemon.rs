//! The three E2SEC daemons: a config file in, a role on a UDP socket out.
//!
//! The EPC serves warrant requests until stopped. A device or server daemon asks the EPC for a
//! warrant at start — again every quarter second until one arrives, and again once three quarters of
//! its validity have passed, so that it never holds an expired one while running — answers the
//! authentications its peers start, and runs the ones it is told to (`connect` in its config
//! or `--connect`), one after the other; once those are done it exits. Nothing of E2SEC must
//! survive a restart (a warrant is simply fetched again), so these daemons have no store.

use std::path::Path;

use m2msec_crypto::group::OpTally;
use m2msec_protocol::Millis;
use m2msec_protocol::e2sec::{Epc, Error as E2secError, Party, PartyAgent, PartyEvent, Role};
use tokio::sync::mpsc;

use super::config;
use crate::error::{Error, Result};
use crate::harness::daemon::{Daemon, Exit, Reporter, RoleArgs, RunLog, Runs, after_run};
use crate::runtime::driver::{self, Context, Flow, Handler, Logs, Shutdown, log_event};

/// What an E2SEC party of a demo tells the orchestrator.
#[derive(Debug)]
pub enum Report {
    /// The party established SK.
    Established {
        /// Its result.
        summary: Summary,
        /// The party's group operations since its warrant was stored.
        tally: OpTally,
    },
    /// The party refused a datagram.
    Rejected(E2secError),
}

/// An established SK, without the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The other end.
    pub peer: String,
    /// SK's fingerprint (safe to print and compare).
    pub fingerprint: [u8; 8],
    /// Whether this party initiated.
    pub initiator: bool,
}

/// The result of one authentication a party initiated.
pub type Outcome = crate::harness::daemon::Outcome<Summary, String, E2secError>;

/// Which authentications a party daemon initiates.
#[derive(Clone, Debug, Default)]
pub struct Connects {
    /// Peers, in order.
    pub peers: Vec<String>,
    /// Authentications per peer (`count`), how far apart, and tries for each.
    pub runs: Runs,
}

/// A device or server daemon's handler: keeps a warrant and runs the authentications of
/// [`Connects`] (each peer in turn, `count` times) as a [`RunLog`], as its [`PartyAgent`]
/// decides; acts, logs and reports.
pub struct PartyHandler {
    agent: PartyAgent,
    runs: RunLog<Outcome>,
    in_flight: Option<String>,
    report: Reporter<Report>,
}

impl PartyHandler {
    /// A handler for a party whose first warrant request was sent at `now`.
    #[must_use]
    pub fn new(
        connects: &Connects,
        now: Millis,
        report: Option<mpsc::UnboundedSender<Report>>,
    ) -> Self {
        let peers = u32::try_from(connects.peers.len()).unwrap_or(u32::MAX);
        let runs = Runs {
            count: connects.runs.count.max(1).saturating_mul(peers),
            ..connects.runs
        };
        Self {
            agent: PartyAgent::new(connects.peers.clone(), now),
            runs: RunLog::waiting(runs),
            in_flight: None,
            report: Reporter::new(report),
        }
    }

    /// The demo's expired-warrant run ([`PartyAgent::held_past_warrant`]).
    #[must_use]
    pub fn held_past_warrant(mut self) -> Self {
        self.agent = self.agent.held_past_warrant();
        self
    }

    /// The initiated authentications' results.
    #[must_use]
    pub fn into_outcomes(self) -> Vec<Outcome> {
        self.runs.into_outcomes()
    }

    /// Starts the due run: an authentication with the next peer in turn.
    fn start(&mut self, cx: &mut Context<'_, Party>) -> Flow {
        self.runs.start();
        let Some(peer) = self
            .agent
            .peer_of_run(self.runs.started())
            .map(str::to_owned)
        else {
            return Flow::Continue;
        };
        match cx.endpoint.connect(cx.now, cx.rng, &peer) {
            Ok(()) => {
                tracing::info!(%peer, "e2sec authentication started");
                self.in_flight = Some(peer);
                Flow::Continue
            }
            Err(error) => {
                tracing::error!(%peer, %error, "cannot start the authentication");
                let outcome = Outcome::Failed { id: peer, error };
                after_run(self.runs.established(cx.now, outcome))
            }
        }
    }

    /// The authentication with `peer` ended, if it is the one under way.
    fn ended(&mut self, now: Millis, peer: &str, outcome: Outcome) -> Flow {
        if self.in_flight.as_deref() != Some(peer) {
            return Flow::Continue;
        }
        self.in_flight = None;
        after_run(self.runs.ended(now, outcome))
    }
}

impl Handler<Party> for PartyHandler {
    type Error = Error;

    fn on_event(&mut self, cx: &mut Context<'_, Party>, event: PartyEvent) -> Result<Flow> {
        log_event(&event);
        Ok(match event {
            PartyEvent::WarrantStored { valid_until } => {
                // The operation counts of an authentication start here (the warrant check
                // of equation (2)/(4) is not part of it).
                cx.endpoint.take_tally();
                self.agent.stored(cx.now, valid_until);
                if self.in_flight.is_none() && !self.agent.peers().is_empty() {
                    self.runs.resume(cx.now);
                }
                Flow::Continue
            }
            PartyEvent::Established {
                peer,
                key,
                initiator,
            } => {
                let summary = Summary {
                    peer,
                    fingerprint: key.fingerprint(),
                    initiator,
                };
                self.report.send(Report::Established {
                    summary: summary.clone(),
                    tally: cx.endpoint.tally(),
                });
                if !initiator {
                    return Ok(Flow::Continue);
                }
                let peer = summary.peer.clone();
                self.ended(cx.now, &peer, Outcome::Established(summary))
            }
            PartyEvent::Failed { peer, error } => {
                let id = peer.clone();
                self.ended(cx.now, &peer, Outcome::Failed { id, error })
            }
            PartyEvent::Rejected { error, .. } => {
                self.report.send(Report::Rejected(error));
                Flow::Continue
            }
            // A new warrant request follows at `next_fetch`.
            _ => Flow::Continue,
        })
    }

    fn next_wakeup(&self) -> Option<Millis> {
        [self.agent.next_fetch(), self.runs.next_start()]
            .into_iter()
            .flatten()
            .min()
    }

    fn held_until(&self) -> Option<Millis> {
        self.agent.held_until()
    }

    fn on_wakeup(&mut self, cx: &mut Context<'_, Party>) -> Result<Flow> {
        if self.agent.fetch_due(cx.now) {
            tracing::debug!("asking the EPC for a warrant");
            cx.endpoint.request_warrant(cx.now, cx.rng)?;
        }
        if self.runs.next_start().is_some_and(|t| t <= cx.now) {
            if self.agent.may_start(cx.now) {
                let flow = self.start(cx);
                if self.in_flight.is_some()
                    && let Some(held_ms) = self.agent.hold_from(driver::wall_clock())
                {
                    tracing::info!(
                        held_ms,
                        "holding the server's AuthInit past its warrant's end"
                    );
                }
                return Ok(flow);
            }
            // The warrant ran out: the next one starts it (see `WarrantStored`).
            self.runs.defer();
        }
        Ok(Flow::Continue)
    }
}

/// Runs the EPC daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file and bind errors.
pub async fn run_epc(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let setup = config::load_epc(config_file)?;
    let identity = setup.config.identity.clone();
    let epc = Epc::new(setup.config)?;
    let daemon = Daemon::bind("e2sec-epc", identity, setup.link, epc).await?;
    daemon.serve(Logs, shutdown).await
}

/// Runs the device or server daemon (`role`) of `config_file`. With peers to
/// connect to (`connect`, else the config's `connect` line), returns their outcomes once all
/// are done; otherwise serves until `shutdown` and returns none.
///
/// # Errors
///
/// Config, key file and bind errors; an authentication that fails is an [`Outcome::Failed`].
pub async fn run_party(
    config_file: &Path,
    role: Role,
    mut connects: Connects,
    shutdown: Shutdown,
) -> Result<Vec<Outcome>> {
    let name = match role {
        Role::Device => "e2sec-device",
        Role::Server => "e2sec-server",
    };
    let (setup, connect) = config::load_party(config_file, role)?;
    if connects.peers.is_empty() {
        connects.peers = connect;
    }
    let known = |p: &String| setup.config.peers.iter().any(|e| &e.id == p);
    if let Some(p) = connects.peers.iter().find(|p| !known(p)) {
        let file = config_file.display();
        return Err(Error::Usage(format!(
            "--connect {p}: not one of the peers of {file}"
        )));
    }
    let identity = setup.config.identity.clone();
    let variant = setup.config.variant.name();
    let group = setup.config.secret_key.group();
    let party = Party::new(setup.config)?;
    tracing::info!(variant, group = super::group_name(group), "party keys");
    let daemon = Daemon::bind(name, identity, setup.link, party).await?;
    let handler = PartyHandler::new(&connects, driver::wall_clock(), None);
    Ok(daemon
        .start(Party::request_warrant, handler, shutdown)
        .await?
        .into_outcomes())
}

/// Runs the E2SEC daemon `role` as `m2msec run` asks.
///
/// # Errors
///
/// As the role's runner; [`Error::Usage`] for a role that is not E2SEC's.
pub async fn run_role(role: &str, args: &RoleArgs, shutdown: Shutdown) -> Result<Exit> {
    let party = match role {
        "e2sec-epc" => {
            return run_epc(&args.config, shutdown).await.map(|()| Exit::Served);
        }
        "e2sec-device" => Role::Device,
        "e2sec-server" => Role::Server,
        other => return Err(Error::Usage(format!("{other}: not an E2SEC role"))),
    };
    let connects = Connects {
        peers: args.connect.clone(),
        runs: args.runs(),
    };
    let outcomes = run_party(&args.config, party, connects, shutdown).await?;
    if outcomes.is_empty() {
        // Served until stopped; nothing was asked of it.
        return Ok(Exit::Served);
    }
    let asked = u32::try_from(outcomes.len()).unwrap_or(u32::MAX);
    Ok(Exit::ran(&outcomes, asked, "authentications"))
}
