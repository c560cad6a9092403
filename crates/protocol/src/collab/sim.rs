//! A whole collab deployment in memory: the four roles wired by a queue of datagrams, with
//! virtual time and a hook through which an adversary sees, drops, alters or injects traffic.
//!
//! The same role types as in the daemons run here (quinn-proto's in-memory `Pair` is the model),
//! which is what lets the tests, the annotated traces and the benchmarks exercise the real code.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_crypto::split::SharingScheme;

use super::{
    Certificate, Client, ClientConfig, ClientEvent, Error, KeyedPeer, PeerAddr, Proxy, ProxyConfig,
    ProxyEntry, ProxyEvent, ProxyFault, Server, ServerConfig, ServerEvent, Timeouts, Trusted,
    TrustedConfig, TrustedEvent,
};
use crate::{Endpoint, Millis};

/// The public-key suites of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// X25519 ECIES and Ed25519.
    Modern,
    /// RSA-OAEP-2048 and RSA-PSS-2048, as in the paper's setting.
    Classic,
}

impl Suite {
    /// The encryption and signature suites.
    #[must_use]
    pub fn parts(self) -> (PkeSuite, SigSuite) {
        match self {
            Self::Modern => (PkeSuite::X25519Ecies, SigSuite::Ed25519),
            Self::Classic => (PkeSuite::RsaOaep2048, SigSuite::RsaPss2048),
        }
    }
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Proxies (n).
    pub proxies: u8,
    /// Threshold (k).
    pub threshold: u8,
    /// Sharing scheme.
    pub sharing: SharingScheme,
    /// One-time signature scheme.
    pub ots: OtsScheme,
    /// Public-key suites.
    pub suite: Suite,
    /// AEAD suite.
    pub aead: AeadSuite,
    /// Misbehaviour of each proxy, by index (missing entries are honest).
    pub faults: Vec<Option<ProxyFault>>,
    /// Waits.
    pub timeouts: Timeouts,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            proxies: 5,
            threshold: 3,
            sharing: SharingScheme::ReedSolomon,
            ots: OtsScheme::Lamport,
            suite: Suite::Modern,
            aead: AeadSuite::Aes128Ccm8,
            faults: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Loopback-style addresses of the simulated roles: 127.0.0.x, one per role.
#[must_use]
pub fn address(host: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, host), port))
}

/// The configurations of every role of a deployment, with fresh keys.
#[derive(Debug)]
pub struct Configs {
    /// A.
    pub client: ClientConfig,
    /// P1…Pn.
    pub proxies: Vec<ProxyConfig>,
    /// T.
    pub trusted: TrustedConfig,
    /// B.
    pub server: ServerConfig,
}

impl Configs {
    /// Generates every key of a deployment (CA, T, B, pre-shared keys) and the role configs,
    /// addressing the roles with `addr(role_index)`: 0 = A, 1 = T, 2 = B, 3.. = proxies.
    ///
    /// # Errors
    /// If a key cannot be generated or the CA cannot sign.
    pub fn generate(
        spec: &Spec,
        addr: &dyn Fn(usize) -> SocketAddr,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        let (pke_suite, sig_suite) = spec.suite.parts();
        let ca = SigningKey::generate(sig_suite, rng)?;
        let t_key = SigningKey::generate(sig_suite, rng)?;
        let b_pke = PkeSecretKey::generate(pke_suite, rng)?;
        let b_sig = SigningKey::generate(sig_suite, rng)?;
        let cert = Certificate::issue(
            &ca,
            "server",
            &b_pke.public_key(),
            &b_sig.verifying_key(),
            rng,
        )?;
        let psk = |rng: &mut dyn CryptoRng| AeadKey::generate(spec.aead, rng);
        let k_at = psk(rng);
        let (a_addr, t_addr, b_addr) = (addr(0), addr(1), addr(2));
        let mut entries = Vec::new();
        let mut proxies = Vec::new();
        let mut t_proxies = Vec::new();
        for i in 0..usize::from(spec.proxies) {
            let name = format!("proxy-{}", i + 1);
            let p_addr = addr(3 + i);
            let k_api = psk(rng);
            let k_pit = psk(rng);
            entries.push(ProxyEntry {
                name: name.clone(),
                addr: p_addr,
                key: k_api.clone(),
                capability: 1,
            });
            t_proxies.push(KeyedPeer {
                name: name.clone(),
                addr: p_addr,
                key: k_pit.clone(),
            });
            proxies.push(ProxyConfig {
                identity: name,
                trusted: KeyedPeer {
                    name: "trusted".into(),
                    addr: t_addr,
                    key: k_pit,
                },
                clients: vec![KeyedPeer {
                    name: "client".into(),
                    addr: a_addr,
                    key: k_api,
                }],
                ca: ca.verifying_key(),
                timeouts: spec.timeouts,
                fault_for_testing_only: spec.faults.get(i).copied().flatten(),
            });
        }
        let mut client = ClientConfig::new(
            "client",
            KeyedPeer {
                name: "trusted".into(),
                addr: t_addr,
                key: k_at.clone(),
            },
            PeerAddr {
                name: "server".into(),
                addr: b_addr,
            },
            entries,
        );
        client.n = spec.proxies;
        client.k = spec.threshold;
        client.sharing = spec.sharing;
        client.ots = spec.ots;
        client.aead = spec.aead;
        client.timeouts = spec.timeouts;
        let trusted_key = t_key.verifying_key();
        let trusted = TrustedConfig {
            identity: "trusted".into(),
            signing_key: t_key,
            clients: vec![KeyedPeer {
                name: "client".into(),
                addr: a_addr,
                key: k_at,
            }],
            proxies: t_proxies,
            timeouts: spec.timeouts,
        };
        let server = ServerConfig {
            identity: "server".into(),
            pke_key: b_pke,
            signing_key: b_sig,
            certificate: cert,
            trusted_key,
            timeouts: spec.timeouts,
        };
        Ok(Self {
            client,
            proxies,
            trusted,
            server,
        })
    }
}

/// One datagram in flight or delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// When it was sent (virtual time).
    pub at: Millis,
    /// Sender.
    pub from: SocketAddr,
    /// Recipient.
    pub to: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
}

/// Every event each role reported.
#[derive(Debug, Default)]
pub struct Events {
    /// A's events.
    pub client: Vec<ClientEvent>,
    /// Each proxy's events, by index.
    pub proxies: Vec<Vec<ProxyEvent>>,
    /// T's events.
    pub trusted: Vec<TrustedEvent>,
    /// B's events.
    pub server: Vec<ServerEvent>,
}

/// A deployment running in memory.
#[derive(Debug)]
pub struct World {
    /// A.
    pub client: Client,
    /// P1…Pn.
    pub proxies: Vec<Proxy>,
    /// T.
    pub trusted: Trusted,
    /// B.
    pub server: Server,
    /// Where each role listens: A, T, B, then the proxies.
    pub addrs: Vec<SocketAddr>,
    /// Virtual time.
    pub now: Millis,
    /// Every datagram handed to the network, in order, before the adversary saw it.
    pub log: Vec<Datagram>,
    /// Every event so far.
    pub events: Events,
    queue: VecDeque<Datagram>,
}

/// Virtual time at which a run starts (an arbitrary, fixed instant so traces are stable).
pub const EPOCH: Millis = Millis(1_700_000_000_000);

/// Longest a run may take in virtual time before [`World::run`] stops.
pub const HORIZON: Duration = Duration::from_secs(120);

impl World {
    /// Builds the roles from `configs`.
    ///
    /// # Errors
    /// If a configuration is refused.
    pub fn new(configs: Configs) -> Result<Self, Error> {
        let mut addrs = vec![configs.client.trusted.addr, configs.client.server.addr];
        let client_addr = configs.trusted.clients[0].addr;
        addrs.insert(0, client_addr);
        addrs.extend(configs.client.proxies.iter().map(|p| p.addr));
        let n = configs.proxies.len();
        Ok(Self {
            client: Client::new(configs.client, Vec::new())?,
            proxies: configs
                .proxies
                .into_iter()
                .map(Proxy::new)
                .collect::<Result<_, _>>()?,
            trusted: Trusted::new(configs.trusted)?,
            server: Server::new(configs.server, [])?,
            addrs,
            now: EPOCH,
            log: Vec::new(),
            events: Events {
                proxies: (0..n).map(|_| Vec::new()).collect(),
                ..Events::default()
            },
            queue: VecDeque::new(),
        })
    }

    /// A deployment of `spec` with fresh keys on 127.0.0.x addresses.
    ///
    /// # Errors
    /// If keys cannot be generated.
    pub fn generate(spec: &Spec, rng: &mut dyn CryptoRng) -> Result<Self, Error> {
        let addr = |i: usize| address(u8::try_from(i + 1).unwrap_or(u8::MAX), 4000);
        Self::new(Configs::generate(spec, &addr, rng)?)
    }

    /// Queues a datagram as if `from` had sent it (an adversary's injection).
    pub fn inject(&mut self, datagram: Datagram) {
        self.queue.push_back(datagram);
    }

    /// Runs until the client's session has ended and the network is quiet, or [`HORIZON`]
    /// passes. Every datagram goes through `adversary`, which returns what to deliver instead
    /// (nothing to drop it, an altered copy to tamper, several to duplicate).
    pub fn run(
        &mut self,
        rng: &mut dyn CryptoRng,
        adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
    ) {
        let horizon = self.now.after(HORIZON);
        loop {
            self.collect(adversary);
            if let Some(d) = self.queue.pop_front() {
                self.deliver(&d, rng);
                continue;
            }
            let client_done = self.client.poll_timeout().is_none();
            let server_done = self.server_sessions_over();
            if client_done && server_done {
                return;
            }
            let Some(next) = self.next_timer() else {
                return;
            };
            if next > horizon {
                return;
            }
            self.now = self.now.max(next);
            self.fire_timers(rng);
        }
    }

    /// Lets `d` of virtual time pass, firing every timer that falls due.
    pub fn advance(&mut self, d: Duration, rng: &mut dyn CryptoRng) {
        let end = self.now.after(d);
        while let Some(next) = self.next_timer().filter(|t| *t <= end) {
            self.now = self.now.max(next);
            self.fire_timers(rng);
            self.collect(&mut |d| vec![d.clone()]);
        }
        self.now = end;
    }

    fn fire_timers(&mut self, rng: &mut dyn CryptoRng) {
        let now = self.now;
        self.client.handle_timeout(now, rng);
        self.trusted.handle_timeout(now, rng);
        self.server.handle_timeout(now, rng);
        for p in &mut self.proxies {
            p.handle_timeout(now, rng);
        }
    }

    /// Starts a session on the client and runs it with an honest network.
    ///
    /// # Errors
    /// If the client refuses to start.
    pub fn run_honest(&mut self, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        self.client.connect(self.now, rng)?;
        self.run(rng, &mut |d| vec![d.clone()]);
        Ok(())
    }

    fn server_sessions_over(&self) -> bool {
        self.events
            .server
            .iter()
            .any(|e| matches!(e, ServerEvent::Established(_) | ServerEvent::Failed { .. }))
            || self.server.poll_timeout().is_none()
    }

    fn next_timer(&self) -> Option<Millis> {
        [
            self.client.poll_timeout(),
            self.trusted.poll_timeout(),
            self.server.poll_timeout(),
        ]
        .into_iter()
        .chain(self.proxies.iter().map(Endpoint::poll_timeout))
        .flatten()
        .min()
    }

    fn deliver(&mut self, d: &Datagram, rng: &mut dyn CryptoRng) {
        let now = self.now;
        let Some(role) = self.addrs.iter().position(|a| *a == d.to) else {
            return;
        };
        match role {
            0 => self.client.handle_datagram(now, d.from, &d.payload, rng),
            1 => self.trusted.handle_datagram(now, d.from, &d.payload, rng),
            2 => self.server.handle_datagram(now, d.from, &d.payload, rng),
            i => {
                if let Some(p) = self.proxies.get_mut(i - 3) {
                    p.handle_datagram(now, d.from, &d.payload, rng);
                }
            }
        }
    }

    /// Moves every role's transmits through the adversary into the queue, and its events into
    /// [`World::events`].
    fn collect(&mut self, adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>) {
        let now = self.now;
        let mut sent = Vec::new();
        let addrs = self.addrs.clone();
        while let Some(t) = self.client.poll_transmit() {
            sent.push((addrs[0], t));
        }
        while let Some(t) = self.trusted.poll_transmit() {
            sent.push((addrs[1], t));
        }
        while let Some(t) = self.server.poll_transmit() {
            sent.push((addrs[2], t));
        }
        for (i, p) in self.proxies.iter_mut().enumerate() {
            while let Some(t) = p.poll_transmit() {
                sent.push((addrs[3 + i], t));
            }
        }
        for (from, t) in sent {
            let d = Datagram {
                at: now,
                from,
                to: t.destination,
                payload: t.payload,
            };
            self.queue.extend(adversary(&d));
            self.log.push(d);
        }
        while let Some(e) = self.client.poll_event() {
            self.events.client.push(e);
        }
        while let Some(e) = self.trusted.poll_event() {
            self.events.trusted.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.events.server.push(e);
        }
        for (i, p) in self.proxies.iter_mut().enumerate() {
            while let Some(e) = p.poll_event() {
                self.events.proxies[i].push(e);
            }
        }
    }
}
