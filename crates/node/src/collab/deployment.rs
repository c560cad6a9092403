//! The key material and role configs of a whole collab deployment: one client, one trusted
//! entity, one server with a CA-issued certificate, n proxies, and every pre-shared key.
//!
//! Used by `m2msec demo` (keys in memory), `m2msec provision` (keys written to files), the
//! in-memory runs behind `trace` and `bench`, and the tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::collab::{
    Certificate, ClientConfig, KeyedPeer, PeerAddr, ProxyConfig, ProxyEntry, ProxyFault,
    ServerConfig, Timeouts, TrustedConfig,
};

use crate::error::{Error, Result};

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

/// The public-key algorithms of a deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// X25519 ECIES to the server, Ed25519 signatures (CA, trusted entity, server).
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

/// Shape of a deployment.
#[derive(Clone, Debug)]
pub struct Params {
    /// Number of proxies (all used per session).
    pub proxies: u8,
    /// Fragments needed to rebuild the secret.
    pub threshold: u8,
    /// Sharing scheme.
    pub sharing: SharingScheme,
    /// Public-key algorithms.
    pub suite: Suite,
    /// AEAD of the pre-shared keys and of the keys derived in a session.
    pub aead: AeadSuite,
    /// One-time signature scheme of the proxies' keys.
    pub ots: OtsScheme,
    /// How many proxies misbehave (the last ones), and how.
    pub faulty: u8,
    /// The misbehaviour of the faulty proxies.
    pub fault: Option<ProxyFault>,
    /// Timeouts of every role.
    pub timeouts: Timeouts,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            proxies: 5,
            threshold: 3,
            sharing: SharingScheme::ReedSolomon,
            suite: Suite::Modern,
            aead: AeadSuite::Aes128Ccm8,
            ots: OtsScheme::Lamport,
            faulty: 0,
            fault: None,
            timeouts: Timeouts::default(),
        }
    }
}

impl Params {
    /// Checks the parameters fit together.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] naming the option that is wrong.
    pub fn check(&self) -> Result<()> {
        if self.proxies == 0 {
            return Err(Error::Usage("--proxies must be at least 1".into()));
        }
        if self.threshold == 0 || self.threshold > self.proxies {
            return Err(Error::Usage(format!(
                "--threshold must be between 1 and --proxies ({}), is {}",
                self.proxies, self.threshold
            )));
        }
        if self.faulty > self.proxies {
            return Err(Error::Usage(format!(
                "--faulty ({}) is more than --proxies ({})",
                self.faulty, self.proxies
            )));
        }
        if self.faulty > 0 && self.fault.is_none() {
            return Err(Error::Usage(
                "--faulty needs --fault silent|forge|corrupt".into(),
            ));
        }
        Ok(())
    }

    /// Whether a run with these parameters is expected to establish a key: at most n − k
    /// proxies misbehave.
    #[must_use]
    pub fn expect_success(&self) -> bool {
        self.faulty == 0 || self.fault.is_none() || self.faulty <= self.proxies - self.threshold
    }

    /// Names of the misbehaving proxies (the last `faulty` ones).
    #[must_use]
    pub fn faulty_names(&self) -> Vec<String> {
        let first = usize::from(self.proxies - self.faulty) + 1;
        (first..=usize::from(self.proxies))
            .map(proxy_name)
            .collect()
    }
}

/// Where every role listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The client's address.
    pub client: SocketAddr,
    /// The trusted entity's address.
    pub trusted: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// The proxies' addresses, proxy-1 first.
    pub proxies: Vec<SocketAddr>,
}

impl Topology {
    /// One loopback address per role on a common port: T on 127.0.0.2, B on 127.0.0.3, the
    /// client on 127.0.0.4 and proxy i on 127.0.0.(10+i) — as `provision` writes them.
    #[must_use]
    pub fn loopback(port: u16, proxies: u8) -> Self {
        let at = |last: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port);
        Self {
            client: at(4),
            trusted: at(2),
            server: at(3),
            proxies: (1..=proxies).map(|i| at(10u8.saturating_add(i))).collect(),
        }
    }

    /// The role name listening on `addr`, if any.
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

/// Every key of a deployment.
pub struct DeploymentKeys {
    /// The public-key algorithms.
    pub suite: Suite,
    /// The CA that signs the server's certificate (proxies trust its public key).
    pub ca: SigningKey,
    /// T's signing key (signs the Merkle roots; the server knows its public key).
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

impl core::fmt::Debug for DeploymentKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeploymentKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// A copy of a symmetric key for the other end of a pre-shared key.
///
/// # Errors
///
/// Never for a valid key (re-importing its own bytes).
pub fn dup_key(key: &AeadKey) -> Result<AeadKey> {
    Ok(AeadKey::new(key.suite(), key.as_bytes())?)
}

/// The roles' configs of a deployment.
#[derive(Debug)]
pub struct Configs {
    /// The client's.
    pub client: ClientConfig,
    /// The trusted entity's.
    pub trusted: TrustedConfig,
    /// The server's.
    pub server: ServerConfig,
    /// The proxies', proxy-1 first.
    pub proxies: Vec<ProxyConfig>,
}

impl DeploymentKeys {
    /// Generates every key of a deployment of `proxies` proxies.
    ///
    /// # Errors
    ///
    /// A crypto error if a key cannot be made.
    pub fn generate(
        suite: Suite,
        aead: AeadSuite,
        proxies: u8,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self> {
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
        let client_trusted = AeadKey::generate(aead, rng);
        let client_proxy = (0..proxies).map(|_| AeadKey::generate(aead, rng)).collect();
        let proxy_trusted = (0..proxies).map(|_| AeadKey::generate(aead, rng)).collect();
        Ok(Self {
            suite,
            ca,
            trusted,
            server_pke,
            server_sig,
            certificate,
            client_trusted,
            client_proxy,
            proxy_trusted,
        })
    }

    /// The four roles' configs for `params` at `topology`, consuming the keys.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the topology does not have one address per proxy.
    pub fn into_configs(self, params: &Params, topology: &Topology) -> Result<Configs> {
        let n = usize::from(params.proxies);
        if topology.proxies.len() != n || self.client_proxy.len() != n {
            return Err(Error::Usage("one address and key per proxy needed".into()));
        }
        let faulty = params.faulty_names();
        let mut client_entries = Vec::with_capacity(n);
        let mut proxies = Vec::with_capacity(n);
        let mut trusted_proxies = Vec::with_capacity(n);
        for i in 0..n {
            let name = proxy_name(i + 1);
            let addr = topology.proxies[i];
            client_entries.push(ProxyEntry {
                name: name.clone(),
                addr,
                key: dup_key(&self.client_proxy[i])?,
                capability: 1,
            });
            trusted_proxies.push(KeyedPeer {
                name: name.clone(),
                addr,
                key: dup_key(&self.proxy_trusted[i])?,
            });
            proxies.push(ProxyConfig {
                identity: name.clone(),
                trusted: KeyedPeer {
                    name: TRUSTED.into(),
                    addr: topology.trusted,
                    key: dup_key(&self.proxy_trusted[i])?,
                },
                clients: vec![KeyedPeer {
                    name: CLIENT.into(),
                    addr: topology.client,
                    key: dup_key(&self.client_proxy[i])?,
                }],
                ca: self.ca.verifying_key(),
                timeouts: params.timeouts,
                fault_for_testing_only: if faulty.contains(&name) {
                    params.fault
                } else {
                    None
                },
            });
        }
        let mut client = ClientConfig::new(
            CLIENT,
            KeyedPeer {
                name: TRUSTED.into(),
                addr: topology.trusted,
                key: dup_key(&self.client_trusted)?,
            },
            PeerAddr {
                name: SERVER.into(),
                addr: topology.server,
            },
            client_entries,
        );
        client.n = params.proxies;
        client.k = params.threshold;
        client.sharing = params.sharing;
        client.aead = params.aead;
        client.ots = params.ots;
        client.timeouts = params.timeouts;
        let trusted_key = self.trusted.verifying_key();
        let trusted = TrustedConfig {
            identity: TRUSTED.into(),
            signing_key: self.trusted,
            clients: vec![KeyedPeer {
                name: CLIENT.into(),
                addr: topology.client,
                key: dup_key(&self.client_trusted)?,
            }],
            proxies: trusted_proxies,
            timeouts: params.timeouts,
        };
        let server = ServerConfig {
            identity: SERVER.into(),
            trusted_key,
            pke_key: self.server_pke,
            signing_key: self.server_sig,
            certificate: self.certificate,
            timeouts: params.timeouts,
        };
        Ok(Configs {
            client,
            trusted,
            server,
            proxies,
        })
    }
}
