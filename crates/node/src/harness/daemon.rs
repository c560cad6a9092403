//! What every daemon of `m2msec run` does alike: bind its role to the configured address, say
//! so in the log, serve until stopped; and how a daemon that runs sessions reports its end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use m2msec_crypto::rng::{CryptoRng, OsRng};
use m2msec_protocol::Endpoint;

use crate::error::Result;
use crate::runtime::driver::{self, Driver, Handler, Shutdown};

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
    /// The end of a daemon that ran `runs` key establishments of which `established`
    /// succeeded, `asked` having been asked for.
    #[must_use]
    pub fn ran(established: usize, runs: usize, asked: u32) -> Self {
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
    /// Binds `endpoint`, the daemon `role` ("collab-proxy", …) of `identity`, to `listen`.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn bind(
        role: &'static str,
        identity: impl Into<String>,
        listen: SocketAddr,
        endpoint: E,
    ) -> Result<Self> {
        let identity = identity.into();
        let socket = driver::bind(listen).await?;
        let driver = Driver::new(identity.clone(), socket, endpoint, Box::new(OsRng))?;
        Ok(Self {
            role,
            identity,
            driver,
        })
    }

    /// The role and its RNG, to start a session before serving.
    pub fn endpoint_mut(&mut self) -> (&mut E, &mut dyn CryptoRng) {
        self.driver.endpoint_mut()
    }

    /// Serves until `handler` says stop or `shutdown` fires, after logging "serving" (the line
    /// scripts wait for).
    ///
    /// # Errors
    ///
    /// The handler's first error.
    pub async fn serve<H: Handler<E>>(self, handler: &mut H, shutdown: Shutdown) -> Result<E> {
        self.log("serving");
        self.driver.run(handler, shutdown).await
    }

    /// As [`Self::serve`] for a daemon that runs sessions and then exits: logs "started".
    ///
    /// # Errors
    ///
    /// The handler's first error.
    pub async fn start<H: Handler<E>>(self, handler: &mut H, shutdown: Shutdown) -> Result<E> {
        self.log("started");
        self.driver.run(handler, shutdown).await
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
