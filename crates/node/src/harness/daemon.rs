//! What every daemon of `m2msec run` does alike: bind its role to the configured address, say
//! so in the log, serve until stopped; when a daemon that runs key establishments starts the
//! next one, and how it reports its end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use m2msec_crypto::rng::{CryptoRng, OsRng};
use m2msec_protocol::runs::AfterRun;
pub use m2msec_protocol::runs::{Outcome, RunLog, Runs};
use m2msec_protocol::{Endpoint, Logged, Millis};
use m2msec_store::Store;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::runtime::driver::{self, Context, Driver, Flow, Handler, Shutdown};

/// Where a daemon listens and what the path to its peers carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Largest IP packet the path to the peers carries (config `path_mtu`).
    pub path_mtu: u16,
}

/// A loaded daemon config: where to listen, the store, the role's config.
#[derive(Debug)]
pub struct Setup<C> {
    /// Where to listen, and what the path carries.
    pub link: Link,
    /// The state database, resolved; none where the role keeps no state or only in memory.
    pub state: Option<PathBuf>,
    /// The role's config.
    pub config: C,
}

/// A daemon role as `m2msec run` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleInfo {
    /// Its name on the command line ("collab-proxy", …).
    pub name: &'static str,
    /// One line of `--help`.
    pub about: &'static str,
}

/// What `m2msec run ROLE` passes to a role besides its config file.
#[derive(Clone, Debug)]
pub struct RoleArgs {
    /// The role's config file.
    pub config: PathBuf,
    /// Peers to authenticate with (E2SEC parties; default: the config's `connect` list).
    pub connect: Vec<String>,
    /// Key establishments to run (clients, initiators, an E2SEC initiating party).
    pub count: u32,
    /// Pause between the end of one run and the start of the next.
    pub interval: Duration,
    /// Tries per key establishment before it counts as failed.
    pub attempts: u32,
}

impl RoleArgs {
    /// The key establishments asked for (at least one run, one try each).
    #[must_use]
    pub fn runs(&self) -> Runs {
        Runs {
            count: self.count.max(1),
            attempts: self.attempts.max(1),
            interval: self.interval,
        }
    }
}

/// How a daemon ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It served until it was stopped.
    Served,
    /// It ran key establishments: `established` of the `runs` that ran, `asked` were asked for.
    Ran {
        /// Runs that ended with a key.
        established: usize,
        /// Runs that ended.
        runs: usize,
        /// Runs asked for.
        asked: usize,
    },
}

impl Exit {
    /// The end of a daemon that ran `outcomes`, `asked` having been asked for; logs
    /// "`what` done".
    #[must_use]
    pub fn ran<S, Id, E>(outcomes: &[Outcome<S, Id, E>], asked: u32, what: &str) -> Self {
        let established = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Established(_)))
            .count();
        let runs = outcomes.len();
        tracing::info!(established, runs, "{what} done");
        Self::Ran {
            established,
            runs,
            asked: usize::try_from(asked).unwrap_or(usize::MAX),
        }
    }

    /// Whether `m2msec run` exits with status 0: it served, or every run asked for ran and
    /// established a key.
    #[must_use]
    pub fn success(self) -> bool {
        match self {
            Self::Served => true,
            Self::Ran {
                established,
                runs,
                asked,
            } => established == runs && runs == asked,
        }
    }
}

/// One role bound to its configured address, with the operating system's RNG.
pub struct Daemon<E> {
    role: &'static str,
    identity: String,
    driver: Driver<E>,
}

impl<E: Endpoint> Daemon<E> {
    /// Binds `endpoint`, the daemon `role` ("collab-proxy", …) of `identity`, to the link's
    /// address; it sends no datagram larger than the link's path carries.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn bind(
        role: &'static str,
        identity: impl Into<String>,
        link: Link,
        mut endpoint: E,
    ) -> Result<Self> {
        endpoint.set_path_mtu(link.path_mtu);
        let identity = identity.into();
        let socket = driver::bind(link.listen).await?;
        let driver = Driver::new(identity.clone(), socket, endpoint, Box::new(OsRng))?;
        Ok(Self {
            role,
            identity,
            driver,
        })
    }

    /// Serves until `handler` says stop or `shutdown` fires, after logging "serving" (the line
    /// scripts wait for).
    ///
    /// # Errors
    ///
    /// The handler's first error.
    pub async fn serve<H: Handler<E, Error = Error>>(
        self,
        mut handler: H,
        shutdown: Shutdown,
    ) -> Result<()> {
        self.log("serving");
        self.driver.run(&mut handler, shutdown).await.map(drop)
    }

    /// As [`Self::serve`] for a daemon that runs sessions and then exits: `first` starts the
    /// first on the role, "started" is logged; returns the handler (its outcomes).
    ///
    /// # Errors
    ///
    /// `first`'s error, the handler's first error.
    pub async fn start<H: Handler<E, Error = Error>, T, X: Into<Error>>(
        mut self,
        first: impl FnOnce(&mut E, Millis, &mut dyn CryptoRng) -> std::result::Result<T, X>,
        mut handler: H,
        shutdown: Shutdown,
    ) -> Result<H> {
        let (endpoint, rng) = self.driver.endpoint_mut();
        first(endpoint, driver::wall_clock(), rng).map_err(Into::into)?;
        self.log("started");
        self.driver.run(&mut handler, shutdown).await?;
        Ok(handler)
    }

    /// Logs "serving" and hands the bound role over, for a handler that drives it itself (one
    /// that takes commands, through [`Driver::run_with`]).
    #[must_use]
    pub fn serving(self) -> Driver<E> {
        self.log("serving");
        self.driver
    }

    fn log(&self, what: &'static str) {
        tracing::info!(
            role = self.role,
            identity = %self.identity,
            listen = %self.driver.local_addr(),
            "{what}"
        );
    }
}

/// Where a role of a demo sends what the orchestrator waits for; a daemon has no orchestrator.
#[derive(Debug)]
pub struct Reporter<R>(Option<mpsc::UnboundedSender<R>>);

impl<R> Reporter<R> {
    /// Reports to `to`, if there is one.
    #[must_use]
    pub fn new(to: Option<mpsc::UnboundedSender<R>>) -> Self {
        Self(to)
    }

    /// Sends `report`; an orchestrator that stopped listening is no error of the role's.
    pub fn send(&self, report: R) {
        if let Some(to) = &self.0 {
            let _ = to.send(report);
        }
    }
}

/// The state of a serving role's handler that persists: the store every write goes to before
/// the driver sends, and the demo's reports. Each protocol implements [`Handler`] on it for
/// its role (`Persisting<ItsReport>`, named by an alias).
pub struct Persisting<R = ()> {
    /// The role's store.
    pub store: Arc<dyn Store>,
    /// The demo's reports.
    pub report: Reporter<R>,
}

impl<R> Persisting<R> {
    /// A handler persisting into `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, report: Option<mpsc::UnboundedSender<R>>) -> Self {
        Self {
            store,
            report: Reporter::new(report),
        }
    }
}

/// What the end of a run means for a daemon that runs them: it stops after the last; a run
/// tried again is logged.
#[must_use]
pub fn after_run(after: AfterRun) -> Flow {
    match after {
        AfterRun::Retry { attempt, of } => {
            tracing::info!(attempt, of, "trying the establishment again");
            Flow::Continue
        }
        AfterRun::Next => Flow::Continue,
        AfterRun::Done => Flow::Stop,
    }
}

/// A role that runs key establishments one after another and then ends (the collab client,
/// the MIKEY initiator): how one starts and which of its events ends one. Its daemon's handler
/// is then [`SessionRuns`].
pub trait Sessions: Endpoint<Event: Logged> {
    /// What an established run leaves, keys excluded.
    type Summary;
    /// What names a run in its failure.
    type Id;
    /// Why a run failed.
    type Error;
    /// What the handler keeps beside the runs and hands to [`Self::ended`] (the collab
    /// client's trust store).
    type Keeps;

    /// Starts a run, logging it.
    ///
    /// # Errors
    ///
    /// The role cannot start one (no usable peer…).
    fn start_run(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<()>;

    /// The outcome of the run `event` ends, if it ends one; any other event may be kept in
    /// `keeps` here (each is logged before).
    ///
    /// # Errors
    ///
    /// What keeping it failed with (a store error stops the daemon).
    fn ended(keeps: &mut Self::Keeps, event: Self::Event) -> Result<Option<RunOutcome<Self>>>;
}

/// How one run of the [`Sessions`] role `R` ended.
pub type RunOutcome<R> =
    Outcome<<R as Sessions>::Summary, <R as Sessions>::Id, <R as Sessions>::Error>;

/// The handler of a [`Sessions`] role's daemon: its [`RunLog`], and what it keeps.
pub struct SessionRuns<R: Sessions> {
    runs: RunLog<RunOutcome<R>>,
    keeps: R::Keeps,
}

impl<R: Sessions> SessionRuns<R> {
    /// A handler for `runs`, the first of which must already be started on the role.
    #[must_use]
    pub fn new(runs: Runs, keeps: R::Keeps) -> Self {
        Self {
            runs: RunLog::new(runs),
            keeps,
        }
    }

    /// The runs' results.
    #[must_use]
    pub fn into_outcomes(self) -> Vec<RunOutcome<R>> {
        self.runs.into_outcomes()
    }
}

impl<R: Sessions> Handler<R> for SessionRuns<R> {
    type Error = Error;

    fn on_event(&mut self, cx: &mut Context<'_, R>, event: R::Event) -> Result<Flow> {
        driver::log_event(&event);
        Ok(match R::ended(&mut self.keeps, event)? {
            Some(outcome) => after_run(self.runs.ended(cx.now, outcome)),
            None => Flow::Continue,
        })
    }

    fn next_wakeup(&self) -> Option<Millis> {
        self.runs.next_start()
    }

    fn on_wakeup(&mut self, cx: &mut Context<'_, R>) -> Result<Flow> {
        self.runs.start();
        cx.endpoint.start_run(cx.now, cx.rng)?;
        Ok(Flow::Continue)
    }
}
