//! A whole collab deployment in memory: the four roles wired by a datagram queue, no sockets,
//! time and randomness chosen by the caller.
//!
//! This is what `m2msec trace` (a deterministic annotated run), `m2msec bench` (costs without
//! the network) and the criterion bench drive; it is also the quickest end-to-end test.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::collab::{
    Client, ClientEvent, Established, Proxy, ProxyEvent, Server, ServerEvent, SessionId, Trusted,
    TrustedEvent,
};
use m2msec_protocol::{Endpoint, Millis, OpCounts};

use super::deployment::{Configs, DeploymentKeys, Params, Topology};
use crate::error::{Error, Result};

/// The time a memory deployment starts at: 2023-11-14T22:13:20Z, fixed for reproducible traces.
pub const START: Millis = Millis(1_700_000_000_000);

/// Port every role of a memory deployment listens on (addresses as `provision` writes them).
pub const PORT: u16 = 7400;

/// One datagram delivered in a memory run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// Payload.
    pub payload: Vec<u8>,
    /// Time it was delivered.
    pub at: Millis,
}

/// An event of any role of the deployment.
#[derive(Debug)]
pub enum AnyEvent {
    /// Of the client.
    Client(ClientEvent),
    /// Of the trusted entity.
    Trusted(TrustedEvent),
    /// Of the server.
    Server(ServerEvent),
    /// Of proxy `.0` (0-based).
    Proxy(usize, ProxyEvent),
}

/// How one session of a memory run ended.
#[derive(Debug)]
pub struct SessionResult {
    /// The session.
    pub session: SessionId,
    /// The client's result.
    pub client: core::result::Result<Established, m2msec_protocol::collab::Error>,
    /// The server's established session with the same id, if it has one.
    pub server: Option<Established>,
}

impl SessionResult {
    /// Whether both ends hold the same key (compared by fingerprint).
    #[must_use]
    pub fn keys_match(&self) -> bool {
        match (&self.client, &self.server) {
            (Ok(c), Some(s)) => c.key.fingerprint() == s.key.fingerprint(),
            _ => false,
        }
    }
}

struct Timed<E> {
    role: E,
    rng: SeededRng,
    busy: Duration,
}

impl<E: Endpoint> Timed<E> {
    fn new(role: E, seed: u64) -> Self {
        Self {
            role,
            rng: SeededRng::from_seed_u64(seed),
            busy: Duration::ZERO,
        }
    }

    fn datagram(&mut self, now: Millis, from: SocketAddr, payload: &[u8]) {
        let t = Instant::now();
        self.role.handle_datagram(now, from, payload, &mut self.rng);
        self.busy += t.elapsed();
    }

    fn timeout(&mut self, now: Millis) {
        if self.role.poll_timeout().is_some_and(|t| t <= now) {
            let t = Instant::now();
            self.role.handle_timeout(now, &mut self.rng);
            self.busy += t.elapsed();
        }
    }
}

/// The four roles of a collab deployment, connected in memory.
pub struct MemoryDeployment {
    /// Where each role "listens".
    pub topology: Topology,
    client: Timed<Client>,
    trusted: Timed<Trusted>,
    server: Timed<Server>,
    proxies: Vec<Timed<Proxy>>,
    now: Millis,
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every datagram delivered so far (when recording).
    pub log: Vec<Delivery>,
    record: bool,
    /// Every event so far, in order (when recording).
    pub events: Vec<AnyEvent>,
    server_sessions: Vec<Established>,
}

/// The seed of role `i` derived from the deployment's seed (distinct streams per role).
fn role_seed(seed: u64, i: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i.wrapping_add(1))
}

impl MemoryDeployment {
    /// A deployment with keys drawn from `seed` (so a seed fixes every byte of a run).
    ///
    /// # Errors
    ///
    /// Parameter, key generation and role construction errors.
    pub fn new(params: &Params, seed: u64) -> Result<Self> {
        params.check()?;
        let mut rng = SeededRng::from_seed_u64(seed);
        let keys = DeploymentKeys::generate(params.suite, params.aead, params.proxies, &mut rng)?;
        let topology = Topology::loopback(PORT, params.proxies);
        let configs = keys.into_configs(params, &topology)?;
        Self::from_configs(configs, topology, seed)
    }

    /// A deployment of already built configs.
    ///
    /// # Errors
    ///
    /// Role construction errors.
    pub fn from_configs(configs: Configs, topology: Topology, seed: u64) -> Result<Self> {
        let Configs {
            client,
            trusted,
            server,
            proxies,
        } = configs;
        let proxies = proxies
            .into_iter()
            .enumerate()
            .map(|(i, c)| Ok(Timed::new(Proxy::new(c)?, role_seed(seed, 10 + i as u64))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            topology,
            client: Timed::new(Client::new(client, Vec::new())?, role_seed(seed, 1)),
            trusted: Timed::new(Trusted::new(trusted)?, role_seed(seed, 2)),
            server: Timed::new(
                Server::new(server, Vec::<[u8; 32]>::new())?,
                role_seed(seed, 3),
            ),
            proxies,
            now: START,
            queue: VecDeque::new(),
            log: Vec::new(),
            record: false,
            events: Vec::new(),
            server_sessions: Vec::new(),
        })
    }

    /// Keeps every datagram and event (for traces).
    #[must_use]
    pub fn recording(mut self) -> Self {
        self.record = true;
        self
    }

    /// The client's operation counters.
    #[must_use]
    pub fn client_ops(&self) -> OpCounts {
        self.client.role.op_counts()
    }

    /// Time spent inside the client's calls so far.
    #[must_use]
    pub fn client_busy(&self) -> Duration {
        self.client.busy
    }

    /// Time spent inside the server's calls so far.
    #[must_use]
    pub fn server_busy(&self) -> Duration {
        self.server.busy
    }

    /// The current (virtual) time.
    #[must_use]
    pub fn now(&self) -> Millis {
        self.now
    }

    fn collect(&mut self) {
        let mut out = Vec::new();
        macro_rules! drain {
            ($timed:expr, $addr:expr, $wrap:expr) => {{
                while let Some(ev) = $timed.role.poll_event() {
                    out.push($wrap(ev));
                }
                while let Some(t) = $timed.role.poll_transmit() {
                    self.queue.push_back(($addr, t.destination, t.payload));
                }
            }};
        }
        drain!(self.client, self.topology.client, AnyEvent::Client);
        drain!(self.trusted, self.topology.trusted, AnyEvent::Trusted);
        drain!(self.server, self.topology.server, AnyEvent::Server);
        for i in 0..self.proxies.len() {
            let addr = self.topology.proxies[i];
            drain!(self.proxies[i], addr, |e| AnyEvent::Proxy(i, e));
        }
        for ev in out {
            if let AnyEvent::Server(ServerEvent::Established(e)) = &ev {
                self.server_sessions.push(e.clone());
            }
            if self.record {
                self.events.push(ev);
            } else if let AnyEvent::Client(_) = ev {
                self.events.push(ev);
            }
        }
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        let now = self.now;
        if to == self.topology.client {
            self.client.datagram(now, from, &payload);
        } else if to == self.topology.trusted {
            self.trusted.datagram(now, from, &payload);
        } else if to == self.topology.server {
            self.server.datagram(now, from, &payload);
        } else if let Some(i) = self.topology.proxies.iter().position(|p| *p == to) {
            self.proxies[i].datagram(now, from, &payload);
        } else {
            tracing::debug!(%to, "datagram to nobody dropped");
        }
        if self.record {
            self.log.push(Delivery {
                from,
                to,
                payload,
                at: now,
            });
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let mut all = vec![
            self.client.role.poll_timeout(),
            self.trusted.role.poll_timeout(),
            self.server.role.poll_timeout(),
        ];
        all.extend(self.proxies.iter().map(|p| p.role.poll_timeout()));
        all.into_iter().flatten().min()
    }

    fn fire_timeouts(&mut self) {
        let now = self.now;
        self.client.timeout(now);
        self.trusted.timeout(now);
        self.server.timeout(now);
        for p in &mut self.proxies {
            p.timeout(now);
        }
    }

    /// Runs one key establishment to its end: every datagram delivered in order, virtual time
    /// advanced only to the next deadline when nothing is in flight.
    ///
    /// # Errors
    ///
    /// [`Error::Collab`] if the client cannot start a session; [`Error::Timeout`] if the run
    /// neither ends nor has a deadline (a protocol bug: the roles must always end).
    pub fn run_session(&mut self) -> Result<SessionResult> {
        let session = {
            let t = Instant::now();
            let s = self.client.role.connect(self.now, &mut self.client.rng);
            self.client.busy += t.elapsed();
            s?
        };
        self.collect();
        let mut guard = 0u32;
        loop {
            while let Some((from, to, payload)) = self.queue.pop_front() {
                self.deliver(from, to, payload);
                self.collect();
                guard += 1;
                if guard > 100_000 {
                    return Err(Error::Timeout(Duration::ZERO));
                }
            }
            if let Some(result) = self.client_result(session) {
                return Ok(result);
            }
            match self.next_deadline() {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.fire_timeouts();
                    self.collect();
                }
                None => return Err(Error::Timeout(Duration::ZERO)),
            }
        }
    }

    fn client_result(&mut self, session: SessionId) -> Option<SessionResult> {
        let pos = self.events.iter().position(|e| {
            matches!(e, AnyEvent::Client(ClientEvent::Established(x)) if x.session == session)
                || matches!(e, AnyEvent::Client(ClientEvent::Failed { session: s, .. }) if *s == session)
        })?;
        let ev = if self.record {
            // Keep the event in the record; hand out what the result needs.
            match &self.events[pos] {
                AnyEvent::Client(ClientEvent::Established(x)) => Ok(x.clone()),
                AnyEvent::Client(ClientEvent::Failed { error, .. }) => Err(error.clone()),
                _ => return None,
            }
        } else {
            match self.events.remove(pos) {
                AnyEvent::Client(ClientEvent::Established(x)) => Ok(x),
                AnyEvent::Client(ClientEvent::Failed { error, .. }) => Err(error),
                _ => return None,
            }
        };
        if !self.record {
            self.events.clear();
        }
        let server = self
            .server_sessions
            .iter()
            .find(|s| s.session == session)
            .cloned();
        self.server_sessions.retain(|s| s.session != session);
        Some(SessionResult {
            session,
            client: ev,
            server,
        })
    }
}
