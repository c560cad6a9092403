//! An SGA deployment in memory: the server and any number of devices on the shared
//! [`crate::network`], with a [`MemoryStore`] the server's [`StoreOp`](super::StoreOp)s are applied to, so
//! that a test can kill the server and build a new one from what it had made durable, as the
//! daemon does ([`ServerState::load`]).

use core::net::SocketAddr;
use core::time::Duration;
use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::group::GroupId;
use m2msec_crypto::pke::{PkePublicKey, PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_store::MemoryStore;
use zeroize::Zeroizing;

use super::{
    Device, DeviceConfig, DeviceEvent, DeviceKey, Error, LIGHTWEIGHT_SUITES, Server, ServerConfig,
    ServerEvent, ServerFault, ServerState, Timeouts,
};
use crate::network::{self, Deployment, Network, Node};
use crate::{Endpoint, Millis};

pub use crate::network::{Datagram, Meter};

/// Identity of the server in generated deployments.
pub const GATEWAY: &str = "sga-gateway";
/// Port of every role.
pub const PORT: u16 = 5684;
/// Virtual time at which a run starts.
pub const EPOCH: Millis = Millis(1_700_000_000_000);
/// Role index of the server for a [`Meter`]; device i is at `i + 1`.
pub const SERVER_ROLE: usize = 0;

/// A device to deploy.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    /// ID_d.
    pub name: String,
    /// Its suites.
    pub suites: Vec<AeadSuite>,
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The devices.
    pub devices: Vec<DeviceSpec>,
    /// The group of key exchanges.
    pub group: GroupId,
    /// The server's encryption suite (E_PK^G and F_G).
    pub pke: PkeSuite,
    /// The suites the server offers.
    pub server_suites: Vec<AeadSuite>,
    /// Server misbehaviour for tests.
    pub fault: Option<ServerFault>,
    /// Waits.
    pub timeouts: Timeouts,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            devices: ["device-i", "device-j"]
                .map(|n| DeviceSpec {
                    name: n.into(),
                    suites: LIGHTWEIGHT_SUITES.to_vec(),
                })
                .to_vec(),
            group: GroupId::Ristretto255,
            pke: PkeSuite::X25519Ecies,
            server_suites: LIGHTWEIGHT_SUITES.to_vec(),
            fault: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// Every event each role reported.
#[derive(Debug, Default)]
pub struct Events {
    /// The server's (its `Persist` ops are applied to [`World::store`] as well).
    pub server: Vec<ServerEvent>,
    /// Each device's, by index.
    pub devices: Vec<Vec<DeviceEvent>>,
}

/// An SGA deployment running in memory.
#[derive(Debug)]
pub struct World {
    /// The gateway.
    pub server: Server,
    /// The devices.
    pub devices: Vec<Device>,
    /// Where each role listens: the server, then the devices.
    pub addrs: Vec<SocketAddr>,
    /// The wires and the clock.
    pub net: Network,
    /// Every event so far.
    pub events: Events,
    /// What the server made durable.
    pub store: MemoryStore,
    server_key: Zeroizing<String>,
    spec: Spec,
}

impl World {
    /// A deployment of `spec` with fresh keys on 127.0.0.x.
    ///
    /// # Errors
    /// If keys cannot be generated or a configuration is refused.
    pub fn generate(spec: &Spec, rng: &mut dyn CryptoRng) -> Result<Self, Error> {
        let server_key = PkeSecretKey::generate(spec.pke, rng)?;
        let public = server_key.public_key();
        let pem = server_key.to_pem()?;
        let mut addrs = vec![SocketAddr::from(([127, 0, 0, 2], PORT))];
        let mut devices = Vec::new();
        for (i, d) in spec.devices.iter().enumerate() {
            let addr = SocketAddr::from((
                [
                    127,
                    0,
                    0,
                    10u8.saturating_add(u8::try_from(i).unwrap_or(200)),
                ],
                PORT,
            ));
            addrs.push(addr);
            let config = device_config(spec, d, addrs[SERVER_ROLE], &public, rng)?;
            devices.push(Device::new(config)?);
        }
        let n = devices.len();
        Ok(Self {
            server: Server::new(server_config(spec, &pem)?, ServerState::default())?,
            devices,
            addrs,
            net: Network::new(EPOCH),
            events: Events {
                devices: (0..n).map(|_| Vec::new()).collect(),
                ..Events::default()
            },
            store: MemoryStore::new(),
            server_key: pem,
            spec: spec.clone(),
        })
    }

    /// The server's private key (PEM), which opens what the devices encrypt to it (the trace).
    pub(super) fn server_key_pem(&self) -> &str {
        &self.server_key
    }

    /// Kills the server (everything in memory is lost) and starts a new one from the store.
    ///
    /// # Errors
    /// If the stored state does not decode.
    pub fn restart_server(&mut self) -> Result<(), Error> {
        // A MemoryStore cannot fail to read.
        let state = ServerState::load(&self.store).unwrap_or_default();
        self.server = Server::new(server_config(&self.spec, &self.server_key)?, state)?;
        Ok(())
    }

    /// Runs until every device and the server are idle, or the network's horizon.
    pub fn run(
        &mut self,
        rng: &mut dyn CryptoRng,
        adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
    ) {
        network::run(self, rng, adversary, &mut |_, call| call());
    }

    /// [`World::run`] with an honest network.
    pub fn run_honest(&mut self, rng: &mut dyn CryptoRng) {
        self.run(rng, &mut |d| vec![d.clone()]);
    }

    /// [`World::run`] through a meter.
    pub fn run_metered(&mut self, rng: &mut dyn CryptoRng, meter: Meter<'_>) {
        network::run(self, rng, &mut |d| vec![d.clone()], meter);
    }

    /// Registers every device and runs until idle.
    ///
    /// # Errors
    /// If a registration cannot be encrypted to the server.
    pub fn register_all(&mut self, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        let now = self.net.now;
        for d in &mut self.devices {
            d.register(now, rng)?;
        }
        self.run_honest(rng);
        Ok(())
    }

    /// The first device invites the second over `suite` (the events so far forgotten) and the
    /// world runs until idle through `meter`: whether both devices then hold a session key.
    ///
    /// # Errors
    /// [`Error::Config`] with fewer than two devices; if the invitation cannot be started.
    pub fn exchange(
        &mut self,
        rng: &mut dyn CryptoRng,
        suite: AeadSuite,
        meter: Meter<'_>,
    ) -> Result<bool, Error> {
        let Some(peer) = self.devices.get(1).map(|d| d.identity().to_owned()) else {
            return Err(Error::Config("an exchange needs two devices".into()));
        };
        self.events.devices.iter_mut().for_each(Vec::clear);
        self.events.server.clear();
        self.devices[0].invite(self.net.now, rng, &peer, suite)?;
        self.run_metered(rng, meter);
        let established = |e: &DeviceEvent| matches!(e, DeviceEvent::Established { .. });
        Ok(self
            .events
            .devices
            .iter()
            .all(|e| e.iter().any(established)))
    }

    /// Lets `by` of virtual time pass.
    pub fn advance(&mut self, by: Duration, rng: &mut dyn CryptoRng) {
        network::advance(self, by, rng);
    }
}

/// The config of device `d` of `spec`, with a fresh device key, for the server at `server`
/// whose public key is `server_key`.
///
/// # Errors
/// If the device key is refused.
pub fn device_config(
    spec: &Spec,
    d: &DeviceSpec,
    server: SocketAddr,
    server_key: &PkePublicKey,
    rng: &mut dyn CryptoRng,
) -> Result<DeviceConfig, Error> {
    Ok(DeviceConfig {
        identity: d.name.clone(),
        device_key: DeviceKey::new(&random_array::<32>(rng))?,
        initial_suite: d.suites.first().copied().unwrap_or(AeadSuite::Aes128Ccm8),
        suites: d.suites.clone(),
        group: spec.group,
        gateway: GATEWAY.into(),
        server,
        server_key: server_key.clone(),
        timeouts: spec.timeouts,
    })
}

/// The config of the server of `spec`, its key the PEM `pem`.
///
/// # Errors
/// If the key does not decode.
pub fn server_config(spec: &Spec, pem: &str) -> Result<ServerConfig, Error> {
    Ok(ServerConfig {
        identity: GATEWAY.into(),
        pke_key: PkeSecretKey::from_pem(pem)?,
        suites: spec.server_suites.clone(),
        groups: vec![GroupId::Modp2048, GroupId::Ristretto255],
        timeouts: spec.timeouts,
        fault_for_testing_only: spec.fault,
    })
}

impl Deployment for World {
    fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    fn nodes(&mut self) -> Vec<(SocketAddr, &mut dyn Node)> {
        let mut nodes: Vec<(SocketAddr, &mut dyn Node)> =
            vec![(self.addrs[SERVER_ROLE], &mut self.server)];
        for (addr, d) in self.addrs[1..].iter().zip(&mut self.devices) {
            nodes.push((*addr, d));
        }
        nodes
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.server.poll_event() {
            if let ServerEvent::Persist(op) = &e {
                // A MemoryStore cannot fail to write.
                let _ = op.apply(&self.store);
            }
            self.events.server.push(e);
        }
        for (events, d) in self.events.devices.iter_mut().zip(&mut self.devices) {
            events.extend(core::iter::from_fn(|| d.poll_event()));
        }
    }

    fn finished(&self) -> bool {
        self.devices.iter().all(|d| d.poll_timeout().is_none())
            && self.server.poll_timeout().is_none()
    }
}
