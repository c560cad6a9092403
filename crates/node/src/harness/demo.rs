//! What every protocol's `m2msec demo` run does alike: its options, the roles' RNGs, the shared
//! tap, the serving roles and their stop, the sockets of a standard address layout.

use std::future::Future;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use m2msec_crypto::rng::{CryptoRng, OsRng, random_array};
use m2msec_protocol::link::LinkFaults;
use m2msec_protocol::{Endpoint, OpCounts};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};
use crate::runtime::driver::{self, Driver, Handler, Shutdown, ShutdownSender, shutdown_channel};
use crate::runtime::tap::{WireTotals, Wiretap};

/// The options every demo run takes besides its protocol's own.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed for every key and every role's RNG; absent: the operating system's RNG.
    pub seed: Option<u64>,
    /// Write every datagram of the run to this pcap file.
    pub pcap: Option<PathBuf>,
    /// Overall limit: the run is abandoned (and reported failed) after this long.
    pub timeout: Duration,
    /// The link between the roles: loss, duplication and reordering (default: perfect).
    pub faults: LinkFaults,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            seed: None,
            pcap: None,
            timeout: Duration::from_secs(30),
            faults: LinkFaults::default(),
        }
    }
}

impl RunOptions {
    /// The capture file as the report names it.
    #[must_use]
    pub fn pcap_name(&self) -> Option<String> {
        self.pcap.as_ref().map(|p| p.display().to_string())
    }
}

/// The options of a demo run of a protocol whose deployment's shape is a `P` (its `Params`).
#[derive(Clone, Debug, Default)]
pub struct Options<P> {
    /// Shape of the deployment.
    pub params: P,
    /// Seed, capture, time limit and link of the run.
    pub run: RunOptions,
}

/// A demo deployment under way: the tap every role sends through, the signal that stops them,
/// and the roles that serve until then.
pub struct Deployment {
    /// Counts, captures and (with link faults) damages every datagram of the run.
    pub tap: Wiretap,
    /// Handed to every role of the run.
    pub shutdown: Shutdown,
    stop: ShutdownSender,
    serving: JoinSet<Result<()>>,
    seed: Option<u64>,
    domain: u64,
    timeout: Duration,
}

impl Deployment {
    /// A deployment for `opts`; `domain` keeps the protocol's seeded RNG streams apart from
    /// the other protocols', `aliases` maps bound addresses to those the pcap shows.
    ///
    /// # Errors
    ///
    /// The pcap file cannot be created.
    pub fn new(
        opts: &RunOptions,
        domain: u64,
        aliases: Vec<(SocketAddr, SocketAddr)>,
    ) -> Result<Self> {
        let tap = Wiretap::for_demo(opts.pcap.as_deref(), opts.faults, opts.seed)?
            .with_pcap_aliases(aliases);
        let (stop, shutdown) = shutdown_channel();
        Ok(Self {
            tap,
            shutdown,
            stop,
            serving: JoinSet::new(),
            seed: opts.seed,
            domain,
            timeout: opts.timeout,
        })
    }

    /// The RNG of role number `role` (seeded runs repeat).
    #[must_use]
    pub fn rng(&self, role: u64) -> Box<dyn CryptoRng + Send> {
        driver::role_rng(self.seed, self.domain + role)
    }

    /// `endpoint` on `socket`, sending through the run's tap, with the RNG of role `role`.
    ///
    /// # Errors
    ///
    /// The socket's address cannot be read.
    pub fn driver<E: Endpoint>(
        &self,
        name: impl Into<String>,
        socket: UdpSocket,
        endpoint: E,
        role: u64,
    ) -> Result<Driver<E>> {
        Ok(Driver::new(name, socket, endpoint, self.rng(role))?.with_tap(self.tap.clone()))
    }

    /// Runs `driver` with `handler` until the deployment stops.
    pub fn serve<E, H>(&mut self, driver: Driver<E>, mut handler: H)
    where
        E: Endpoint + Send + 'static,
        E::Event: Send,
        H: Handler<E, Error = Error> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.serving
            .spawn(async move { driver.run(&mut handler, shutdown).await.map(|_| ()) });
    }

    /// Runs `task` until the deployment stops (a role that is not a [`Driver`]).
    pub fn spawn(&mut self, task: impl Future<Output = Result<()>> + Send + 'static) {
        self.serving.spawn(task);
    }

    /// Tells every role to stop (for runs that collect their roles' results themselves before
    /// [`Self::finish`]).
    pub fn stop(&self) {
        self.stop.shutdown();
    }

    /// Stops every role, gives each two seconds to end, writes the capture out and returns
    /// what went on the wire.
    ///
    /// # Errors
    ///
    /// The pcap file cannot be written.
    pub async fn finish(mut self) -> Result<WireTotals> {
        self.stop.shutdown();
        while let Ok(Some(joined)) =
            tokio::time::timeout(Duration::from_secs(2), self.serving.join_next()).await
        {
            if let Ok(Err(e)) = joined {
                tracing::warn!(error = %e, "a role stopped with an error");
            }
        }
        self.serving.abort_all();
        self.tap.flush()?;
        Ok(self.tap.totals())
    }

    /// As [`Self::finish`], after taking what the roles report into `seen` until it is
    /// settled or `within` has passed (no wait without `within`), and what arrived meanwhile.
    ///
    /// # Errors
    ///
    /// The pcap file cannot be written.
    pub async fn finish_gathering<R>(
        self,
        mut reports: Reports<R>,
        within: Option<Duration>,
        seen: &mut impl Gather<R>,
    ) -> Result<WireTotals> {
        reports.to = None;
        if let Some(within) = within {
            let deadline = tokio::time::Instant::now() + within;
            while !seen.settled() {
                match tokio::time::timeout_at(deadline, reports.from.recv()).await {
                    Ok(Some(r)) => seen.take(r),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let wire = self.finish().await?;
        while let Ok(r) = reports.from.try_recv() {
            seen.take(r);
        }
        Ok(wire)
    }

    /// Runs a demo's own `script` of steps under the run's time limit: why it failed, as the
    /// report says it, or `None`.
    pub async fn script(&self, script: impl Future<Output = Result<()>>) -> Option<String> {
        match tokio::time::timeout(self.timeout, script).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(Error::Timeout(self.timeout).to_string()),
        }
    }

    /// Runs the constrained device of the run (`who`: "client", "initiator") on `driver` with
    /// `handler`, in a task of its own and under the run's time limit; `last` reads the
    /// handler's last run (`Ok` its summary, `Err` why it failed; `None` when it stopped
    /// without one). Returns the device's operation counts and the summary or what went wrong.
    pub async fn device<E, H, S>(
        &self,
        who: &str,
        driver: Driver<E>,
        mut handler: H,
        last: impl FnOnce(H) -> Option<std::result::Result<S, String>> + Send + 'static,
    ) -> (OpCounts, std::result::Result<S, String>)
    where
        E: Endpoint + Send + 'static,
        E::Event: Send,
        H: Handler<E, Error = Error> + Send + 'static,
        S: Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let task = tokio::spawn(async move {
            let endpoint = driver.run(&mut handler, shutdown).await?;
            Ok::<_, Error>((endpoint.op_counts(), last(handler)))
        });
        let failed = |e: String| (OpCounts::default(), Err(e));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(Ok((ops, Some(last))))) => (ops, last),
            Ok(Ok(Ok((ops, None)))) => (ops, Err(format!("the {who} stopped without a result"))),
            Ok(Ok(Err(e))) => failed(e.to_string()),
            Ok(Err(join)) => failed(format!("{who} task: {join}")),
            Err(_) => failed(Error::Timeout(self.timeout).to_string()),
        }
    }
}

/// Milliseconds from `start` to `end` (to now without one): a report's `wall_ms`.
#[must_use]
pub fn millis(start: Instant, end: Option<Instant>) -> f64 {
    end.unwrap_or_else(Instant::now)
        .duration_since(start)
        .as_secs_f64()
        * 1000.0
}

/// Waits up to `within` for the role `task` (`what`: "sink", "server") to end and returns what
/// it returned; if it failed, `error` (unless it says why already) says so. A task that does
/// not end in time is left to the deployment's end.
pub async fn joined<T>(
    task: JoinHandle<Result<T>>,
    within: Duration,
    what: &str,
    error: &mut Option<String>,
) -> Option<T> {
    match tokio::time::timeout(within, task).await {
        Ok(Ok(Ok(value))) => Some(value),
        Ok(Ok(Err(e))) => {
            error.get_or_insert_with(|| format!("{what} task: {e}"));
            None
        }
        Ok(Err(_)) | Err(_) => None,
    }
}

/// The channel on which the roles of a demo report (`R`) to it.
pub struct Reports<R> {
    to: Option<mpsc::UnboundedSender<R>>,
    from: mpsc::UnboundedReceiver<R>,
}

impl<R> Reports<R> {
    /// A new channel.
    #[must_use]
    pub fn new() -> Self {
        let (to, from) = mpsc::unbounded_channel();
        Self { to: Some(to), from }
    }

    /// Where a role reports.
    #[must_use]
    pub fn to(&self) -> Option<mpsc::UnboundedSender<R>> {
        self.to.clone()
    }
}

impl<R> Default for Reports<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a demo keeps of its roles' reports ([`Deployment::finish_gathering`]).
pub trait Gather<R> {
    /// Takes one report.
    fn take(&mut self, report: R);

    /// Whether the run waits for no more reports.
    fn settled(&self) -> bool;
}

/// Sockets bound for every role of a standard layout, the addresses they are bound to, and the
/// pcap aliases from those to the standard ones.
pub struct Bound {
    /// One socket per address of the layout, in its order.
    pub sockets: Vec<UdpSocket>,
    /// Where they are bound.
    pub addrs: Vec<SocketAddr>,
    /// Bound address → standard address, for the pcap (empty when the standard layout bound).
    pub aliases: Vec<(SocketAddr, SocketAddr)>,
}

/// Binds every role of `standard` (each role on its own loopback address and the protocol's
/// port). If one of them is taken and `move_network` is set, the same layout is tried on a
/// random 127.a.b.0/24; where extra loopback addresses do not exist (not Linux), or nothing
/// binds, the roles fall back to ephemeral ports on 127.0.0.1 and the pcap still shows the
/// standard layout, so that Wireshark decodes the protocol without hints.
///
/// # Errors
///
/// Not even an ephemeral port of 127.0.0.1 binds.
pub async fn bind_layout(standard: &[SocketAddr], move_network: bool) -> Result<Bound> {
    let mut layout = standard.to_vec();
    for _ in 0..16 {
        match bind_all(&layout).await {
            Ok(sockets) => {
                return Ok(Bound {
                    sockets,
                    addrs: layout,
                    aliases: Vec::new(),
                });
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse && move_network => {
                let [a, b]: [u8; 2] = random_array(&mut OsRng);
                layout = standard
                    .iter()
                    .map(|s| {
                        let last = match s.ip() {
                            std::net::IpAddr::V4(v4) => v4.octets()[3],
                            std::net::IpAddr::V6(_) => 1,
                        };
                        SocketAddr::from((Ipv4Addr::new(127, a.max(1), b, last), s.port()))
                    })
                    .collect();
            }
            Err(e) => {
                tracing::debug!(error = %e, "standard layout unavailable; using ephemeral ports");
                break;
            }
        }
    }
    let mut bound = Bound::ephemeral(standard.len()).await?;
    bound.aliases = bound.addrs.iter().copied().zip(standard.to_vec()).collect();
    Ok(bound)
}

impl Bound {
    /// `n` sockets on ephemeral ports of 127.0.0.1, with no pcap aliases.
    ///
    /// # Errors
    ///
    /// [`Error::Socket`] if one cannot be bound.
    pub async fn ephemeral(n: usize) -> Result<Self> {
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..n {
            let s = driver::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            addrs.push(s.local_addr().map_err(Error::Socket)?);
            sockets.push(s);
        }
        Ok(Self {
            sockets,
            addrs,
            aliases: Vec::new(),
        })
    }

    /// The first `N` sockets, in the layout's order (those left stay in `sockets`).
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if fewer are bound.
    pub fn take<const N: usize>(&mut self) -> Result<[UdpSocket; N]> {
        if self.sockets.len() < N {
            return Err(Error::Usage("no socket for a role".into()));
        }
        let rest = self.sockets.split_off(N);
        let first = std::mem::replace(&mut self.sockets, rest);
        first
            .try_into()
            .map_err(|_| Error::Usage("no socket for a role".into()))
    }
}

async fn bind_all(addrs: &[SocketAddr]) -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(addrs.len());
    for a in addrs {
        sockets.push(UdpSocket::bind(a).await?);
    }
    Ok(sockets)
}
