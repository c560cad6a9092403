//! A whole collab deployment in memory: the four roles wired by a queue of datagrams, with
//! virtual time and a hook through which an adversary sees, drops, alters or injects traffic.
//!
//! The same role types as in the daemons run here (quinn-proto's in-memory `Pair` is the model),
//! which is what lets the tests, the annotated traces and the benchmarks exercise the real code.

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
use crate::network::{self, Deployment, Network, Node};
use crate::{Endpoint, Millis};

pub use crate::network::{Datagram, Meter};

/// Identity of the client in a generated deployment.
pub const CLIENT: &str = "client";
/// Identity of the trusted entity.
pub const TRUSTED: &str = "trusted";
/// Identity of the server (subject of its certificate).
pub const SERVER: &str = "server";

/// Identity of proxy `i` (1-based), as in the paper's P1..Pn.
#[must_use]
pub fn proxy_name(i: usize) -> String {
    format!("proxy-{i}")
}

/// A loopback address 127.0.0.`host`:`port`.
#[must_use]
pub fn address(host: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, host), port))
}

/// The public-key suites of a deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// X25519 ECIES to the server, Ed25519 signatures (CA, T, B).
    #[default]
    Modern,
    /// The paper's era: RSA-OAEP-2048 to the server, RSA-PSS-2048 signatures.
    Classic,
}

impl Suite {
    /// The encryption suite to the server.
    #[must_use]
    pub fn pke(self) -> PkeSuite {
        match self {
            Self::Modern => PkeSuite::X25519Ecies,
            Self::Classic => PkeSuite::RsaOaep2048,
        }
    }

    /// The signature suite of the CA, T and B.
    #[must_use]
    pub fn sig(self) -> SigSuite {
        match self {
            Self::Modern => SigSuite::Ed25519,
            Self::Classic => SigSuite::RsaPss2048,
        }
    }

    /// Its name on the command line and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Classic => "classic",
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

/// Where every role listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// A.
    pub client: SocketAddr,
    /// T.
    pub trusted: SocketAddr,
    /// B.
    pub server: SocketAddr,
    /// The proxies, proxy-1 first.
    pub proxies: Vec<SocketAddr>,
}

impl Topology {
    /// One loopback address per role on a common port: T on 127.0.0.2, B on 127.0.0.3, A on
    /// 127.0.0.4 and proxy i on 127.0.0.(10+i) — as `m2msec provision` writes them.
    #[must_use]
    pub fn loopback(port: u16, proxies: u8) -> Self {
        Self {
            client: address(4, port),
            trusted: address(2, port),
            server: address(3, port),
            proxies: (1..=proxies)
                .map(|i| address(10u8.saturating_add(i), port))
                .collect(),
        }
    }

    /// The identity listening on `addr`, if any.
    #[must_use]
    pub fn name_of(&self, addr: SocketAddr) -> Option<String> {
        if addr == self.client {
            Some(CLIENT.into())
        } else if addr == self.trusted {
            Some(TRUSTED.into())
        } else if addr == self.server {
            Some(SERVER.into())
        } else {
            self.proxies
                .iter()
                .position(|p| *p == addr)
                .map(|i| proxy_name(i + 1))
        }
    }
}

/// Every key of a deployment: what `m2msec provision` writes to files and the demo keeps in
/// memory.
pub struct Keys {
    /// The public-key suites.
    pub suite: Suite,
    /// The CA that signs B's certificate (proxies trust its public key).
    pub ca: SigningKey,
    /// T's signing key (signs the grants; B knows its public key).
    pub trusted: SigningKey,
    /// B's decryption key.
    pub server_pke: PkeSecretKey,
    /// B's signing key.
    pub server_sig: SigningKey,
    /// B's certificate, issued by the CA.
    pub certificate: Certificate,
    /// kAT.
    pub client_trusted: AeadKey,
    /// kAPi, proxy-1 first.
    pub client_proxy: Vec<AeadKey>,
    /// kPiT, proxy-1 first.
    pub proxy_trusted: Vec<AeadKey>,
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Generates every key of a deployment of `proxies` proxies.
    ///
    /// # Errors
    /// If a key cannot be made or the CA cannot sign.
    pub fn generate(
        suite: Suite,
        aead: AeadSuite,
        proxies: u8,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        let ca = SigningKey::generate(suite.sig(), rng)?;
        let trusted = SigningKey::generate(suite.sig(), rng)?;
        let server_pke = PkeSecretKey::generate(suite.pke(), rng)?;
        let server_sig = SigningKey::generate(suite.sig(), rng)?;
        let certificate = Certificate::issue(
            &ca,
            SERVER,
            &server_pke.public_key(),
            &server_sig.verifying_key(),
            rng,
        )?;
        Ok(Self {
            suite,
            ca,
            trusted,
            server_pke,
            server_sig,
            certificate,
            client_trusted: AeadKey::generate(aead, rng),
            client_proxy: (0..proxies).map(|_| AeadKey::generate(aead, rng)).collect(),
            proxy_trusted: (0..proxies).map(|_| AeadKey::generate(aead, rng)).collect(),
        })
    }

    /// The four roles' configs for `spec` at `topology`, consuming the keys.
    ///
    /// # Errors
    /// [`Error::Config`] if the topology or the keys do not have one entry per proxy.
    pub fn into_configs(self, spec: &Spec, topology: &Topology) -> Result<Configs, Error> {
        let n = usize::from(spec.proxies);
        if topology.proxies.len() != n
            || self.client_proxy.len() != n
            || self.proxy_trusted.len() != n
        {
            return Err(Error::Config("one address and key per proxy needed".into()));
        }
        let mut entries = Vec::with_capacity(n);
        let mut proxies = Vec::with_capacity(n);
        let mut t_proxies = Vec::with_capacity(n);
        let keys = self.client_proxy.into_iter().zip(self.proxy_trusted);
        for (i, (addr, (k_api, k_pit))) in topology.proxies.iter().zip(keys).enumerate() {
            let name = proxy_name(i + 1);
            entries.push(ProxyEntry {
                name: name.clone(),
                addr: *addr,
                key: k_api.clone(),
                capability: 1,
            });
            t_proxies.push(KeyedPeer {
                name: name.clone(),
                addr: *addr,
                key: k_pit.clone(),
            });
            proxies.push(ProxyConfig {
                identity: name,
                trusted: KeyedPeer {
                    name: TRUSTED.into(),
                    addr: topology.trusted,
                    key: k_pit,
                },
                clients: vec![KeyedPeer {
                    name: CLIENT.into(),
                    addr: topology.client,
                    key: k_api,
                }],
                ca: self.ca.verifying_key(),
                timeouts: spec.timeouts,
                fault_for_testing_only: spec.faults.get(i).copied().flatten(),
            });
        }
        let mut client = ClientConfig::new(
            CLIENT,
            KeyedPeer {
                name: TRUSTED.into(),
                addr: topology.trusted,
                key: self.client_trusted.clone(),
            },
            PeerAddr {
                name: SERVER.into(),
                addr: topology.server,
            },
            entries,
        );
        client.n = spec.proxies;
        client.k = spec.threshold;
        client.sharing = spec.sharing;
        client.ots = spec.ots;
        client.aead = spec.aead;
        client.timeouts = spec.timeouts;
        let trusted_key = self.trusted.verifying_key();
        let trusted = TrustedConfig {
            identity: TRUSTED.into(),
            signing_key: self.trusted,
            clients: vec![KeyedPeer {
                name: CLIENT.into(),
                addr: topology.client,
                key: self.client_trusted,
            }],
            proxies: t_proxies,
            timeouts: spec.timeouts,
        };
        let server = ServerConfig {
            identity: SERVER.into(),
            pke_key: self.server_pke,
            signing_key: self.server_sig,
            certificate: self.certificate,
            trusted_key,
            timeouts: spec.timeouts,
        };
        Ok(Configs {
            client,
            proxies,
            trusted,
            server,
        })
    }
}

/// The configurations of every role of a deployment.
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
    /// Fresh keys and the role configs of `spec` at `topology`.
    ///
    /// # Errors
    /// If a key cannot be generated or the CA cannot sign.
    pub fn generate(
        spec: &Spec,
        topology: &Topology,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        Keys::generate(spec.suite, spec.aead, spec.proxies, rng)?.into_configs(spec, topology)
    }
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

/// Role index of A for a [`Meter`] and in [`World::addrs`].
pub const CLIENT_ROLE: usize = 0;
/// Role index of T.
pub const TRUSTED_ROLE: usize = 1;
/// Role index of B.
pub const SERVER_ROLE: usize = 2;
/// Role index of proxy-1; proxy i is at `FIRST_PROXY_ROLE + i - 1`.
pub const FIRST_PROXY_ROLE: usize = 3;

/// Port of every role in generated deployments.
pub const PORT: u16 = 4000;

/// Virtual time at which a run starts (an arbitrary, fixed instant so traces are stable).
pub const EPOCH: Millis = Millis(1_700_000_000_000);

/// A collab deployment running in memory.
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
    /// The wires, the virtual clock and the log of every datagram.
    pub net: Network,
    /// Every event so far.
    pub events: Events,
    /// Sessions B had ended when the current run started.
    server_ends_at_start: usize,
}

impl World {
    /// Builds the roles from `configs`.
    ///
    /// # Errors
    /// If a configuration is refused.
    pub fn new(configs: Configs) -> Result<Self, Error> {
        let mut addrs = vec![
            configs.trusted.clients[0].addr,
            configs.client.trusted.addr,
            configs.client.server.addr,
        ];
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
            net: Network::new(EPOCH),
            events: Events {
                proxies: (0..n).map(|_| Vec::new()).collect(),
                ..Events::default()
            },
            server_ends_at_start: 0,
        })
    }

    /// A deployment of `spec` with fresh keys on 127.0.0.x addresses.
    ///
    /// # Errors
    /// If keys cannot be generated.
    pub fn generate(spec: &Spec, rng: &mut dyn CryptoRng) -> Result<Self, Error> {
        let topology = Topology::loopback(PORT, spec.proxies);
        Self::new(Configs::generate(spec, &topology, rng)?)
    }

    /// Runs until the client's session has ended and the network is quiet (see
    /// [`network::run`]).
    pub fn run(
        &mut self,
        rng: &mut dyn CryptoRng,
        adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
    ) {
        self.run_metered(rng, adversary, &mut |_, call| call());
    }

    /// [`World::run`] with every call into a role made through `meter`.
    pub fn run_metered(
        &mut self,
        rng: &mut dyn CryptoRng,
        adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
        meter: Meter<'_>,
    ) {
        self.server_ends_at_start = self.server_ends();
        network::run(self, rng, adversary, meter);
    }

    /// Lets `by` of virtual time pass, firing every timer that falls due.
    pub fn advance(&mut self, by: Duration, rng: &mut dyn CryptoRng) {
        network::advance(self, by, rng);
    }

    /// Starts a session on the client and runs it with an honest network.
    ///
    /// # Errors
    /// If the client refuses to start.
    pub fn run_honest(&mut self, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        self.run_honest_metered(rng, &mut |_, call| call())
    }

    /// [`World::run_honest`] through a meter.
    ///
    /// # Errors
    /// If the client refuses to start.
    pub fn run_honest_metered(
        &mut self,
        rng: &mut dyn CryptoRng,
        meter: Meter<'_>,
    ) -> Result<(), Error> {
        let now = self.net.now;
        network::metered(meter, CLIENT_ROLE, || {
            self.client.connect(now, rng).map(|_| ())
        })?;
        self.run_metered(rng, &mut |d| vec![d.clone()], meter);
        Ok(())
    }

    /// Sessions B has ended so far, established or failed.
    fn server_ends(&self) -> usize {
        self.events
            .server
            .iter()
            .filter(|e| matches!(e, ServerEvent::Established(_) | ServerEvent::Failed { .. }))
            .count()
    }
}

impl Deployment for World {
    fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    fn nodes(&mut self) -> Vec<(SocketAddr, &mut dyn Node)> {
        let mut nodes: Vec<(SocketAddr, &mut dyn Node)> = vec![
            (self.addrs[CLIENT_ROLE], &mut self.client),
            (self.addrs[TRUSTED_ROLE], &mut self.trusted),
            (self.addrs[SERVER_ROLE], &mut self.server),
        ];
        for (addr, p) in self.addrs[FIRST_PROXY_ROLE..].iter().zip(&mut self.proxies) {
            nodes.push((*addr, p));
        }
        nodes
    }

    fn collect_events(&mut self) {
        self.events
            .client
            .extend(core::iter::from_fn(|| self.client.poll_event()));
        self.events
            .trusted
            .extend(core::iter::from_fn(|| self.trusted.poll_event()));
        self.events
            .server
            .extend(core::iter::from_fn(|| self.server.poll_event()));
        for (events, p) in self.events.proxies.iter_mut().zip(&mut self.proxies) {
            events.extend(core::iter::from_fn(|| p.poll_event()));
        }
    }

    fn finished(&self) -> bool {
        let client_done = self.client.poll_timeout().is_none();
        let server_done =
            self.server_ends() > self.server_ends_at_start || self.server.poll_timeout().is_none();
        client_done && server_done
    }
}
