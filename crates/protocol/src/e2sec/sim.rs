//! An E2SEC deployment in memory: the EPC, an MTC device and an MTC server on the shared
//! [`crate::network`], with fresh keys.

use core::net::SocketAddr;
use core::time::Duration;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::GroupId;
use m2msec_crypto::rng::CryptoRng;

use super::{
    DEFAULT_REPLAY_WINDOW, Epc, EpcConfig, EpcEvent, Error, Party, PartyConfig, PartyEvent,
    PeerEntry, Role, SecretKey, Subscriber, Variant,
};
use crate::network::{self, Deployment, Network, Node};
use crate::{Endpoint, Millis};

pub use crate::network::{Datagram, Meter};

/// Identity of the EPC.
pub const EPC: &str = "epc.operator.example";
/// Identity of the MTC device.
pub const DEVICE: &str = "mtcd-0001";
/// Identity of the MTC server.
pub const SERVER: &str = "mtcs.example";
/// Virtual time at which a run starts.
pub const EPOCH: Millis = Millis(1_700_000_000_000);
/// Port of every role.
pub const PORT: u16 = 5700;
/// Role indices for a [`Meter`].
pub const EPC_ROLE: usize = 0;
/// The device.
pub const DEVICE_ROLE: usize = 1;
/// The server.
pub const SERVER_ROLE: usize = 2;

/// What to deploy.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The group.
    pub group: GroupId,
    /// The signature variant.
    pub variant: Variant,
    /// Warrant validity.
    pub validity: Duration,
    /// How long a party waits.
    pub timeout: Duration,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            group: GroupId::Ristretto255,
            variant: Variant::ElGamal,
            validity: Duration::from_secs(3600),
            timeout: Duration::from_secs(20),
        }
    }
}

/// Every event each role reported.
#[derive(Debug, Default)]
pub struct Events {
    /// The EPC's.
    pub epc: Vec<EpcEvent>,
    /// The device's.
    pub device: Vec<PartyEvent>,
    /// The server's.
    pub server: Vec<PartyEvent>,
}

/// An E2SEC deployment running in memory.
#[derive(Debug)]
pub struct World {
    /// The EPC.
    pub epc: Epc,
    /// The MTC device.
    pub device: Party,
    /// The MTC server.
    pub server: Party,
    /// EPC, device, server.
    pub addrs: Vec<SocketAddr>,
    /// The wires and the clock.
    pub net: Network,
    /// Every event so far.
    pub events: Events,
}

/// The three configurations of a deployment, with fresh keys.
#[derive(Debug)]
pub struct Configs {
    /// The EPC.
    pub epc: EpcConfig,
    /// The device.
    pub device: PartyConfig,
    /// The server.
    pub server: PartyConfig,
}

impl Configs {
    /// Fresh keys for `spec` at `addrs` (EPC, device, server).
    ///
    /// # Errors
    /// If a key cannot be made.
    pub fn generate(
        spec: &Spec,
        addrs: &[SocketAddr; 3],
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        let x_epc = SecretKey::generate(spec.group, rng);
        let epc_key = x_epc.public_key()?;
        let psk_d = AeadKey::generate(AeadSuite::ChaCha20Poly1305, rng);
        let psk_s = AeadKey::generate(AeadSuite::ChaCha20Poly1305, rng);
        let party =
            |id: &str, role: Role, psk: AeadKey, peer: PeerEntry, rng: &mut dyn CryptoRng| {
                PartyConfig {
                    identity: id.into(),
                    role,
                    secret_key: SecretKey::generate(spec.group, rng),
                    epc: EPC.into(),
                    epc_addr: addrs[EPC_ROLE],
                    epc_key: epc_key.clone(),
                    epc_psk: psk,
                    peers: vec![peer],
                    variant: spec.variant,
                    retransmit: crate::RetransmitPolicy::default(),
                    timeout: spec.timeout,
                }
            };
        let device = party(
            DEVICE,
            Role::Device,
            psk_d.clone(),
            PeerEntry {
                id: SERVER.into(),
                role: Role::Server,
                addr: addrs[SERVER_ROLE],
            },
            rng,
        );
        let server = party(
            SERVER,
            Role::Server,
            psk_s.clone(),
            PeerEntry {
                id: DEVICE.into(),
                role: Role::Device,
                addr: addrs[DEVICE_ROLE],
            },
            rng,
        );
        Ok(Self {
            epc: EpcConfig {
                identity: EPC.into(),
                secret_key: x_epc,
                subscribers: vec![
                    Subscriber {
                        id: DEVICE.into(),
                        role: Role::Device,
                        key: psk_d,
                    },
                    Subscriber {
                        id: SERVER.into(),
                        role: Role::Server,
                        key: psk_s,
                    },
                ],
                validity: spec.validity,
                replay_window: DEFAULT_REPLAY_WINDOW,
            },
            device,
            server,
        })
    }
}

/// Loopback addresses: EPC on 127.0.0.2, device on .4, server on .3.
#[must_use]
pub fn addresses() -> [SocketAddr; 3] {
    [2, 4, 3].map(|h| SocketAddr::from(([127, 0, 0, h], PORT)))
}

impl World {
    /// Builds the roles.
    ///
    /// # Errors
    /// If a configuration is refused.
    pub fn new(configs: Configs, addrs: [SocketAddr; 3]) -> Result<Self, Error> {
        Ok(Self {
            epc: Epc::new(configs.epc)?,
            device: Party::new(configs.device)?,
            server: Party::new(configs.server)?,
            addrs: addrs.to_vec(),
            net: Network::new(EPOCH),
            events: Events::default(),
        })
    }

    /// A deployment of `spec` with fresh keys.
    ///
    /// # Errors
    /// If keys cannot be generated.
    pub fn generate(spec: &Spec, rng: &mut dyn CryptoRng) -> Result<Self, Error> {
        let addrs = addresses();
        Self::new(Configs::generate(spec, &addrs, rng)?, addrs)
    }

    /// Both parties ask the EPC for warrants.
    ///
    /// # Errors
    /// If a request cannot be built.
    pub fn fetch_warrants(&mut self, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        let now = self.net.now;
        self.device.request_warrant(now, rng)?;
        self.server.request_warrant(now, rng)?;
        self.run(rng, &mut |d| vec![d.clone()]);
        Ok(())
    }

    /// Runs until both parties are idle.
    pub fn run(
        &mut self,
        rng: &mut dyn CryptoRng,
        adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
    ) {
        network::run(self, rng, adversary, &mut |_, call| call());
    }

    /// Runs through a meter.
    pub fn run_metered(&mut self, rng: &mut dyn CryptoRng, meter: Meter<'_>) {
        network::run(self, rng, &mut |d| vec![d.clone()], meter);
    }

    /// One authentication the server initiates with the device, every call into a role (the
    /// server's `connect` too) through `meter`, the events dropped after; whether the server
    /// established SK.
    ///
    /// # Errors
    /// If the server cannot start it.
    pub fn authenticate_metered(
        &mut self,
        rng: &mut dyn CryptoRng,
        meter: Meter<'_>,
    ) -> Result<bool, Error> {
        let seen = self.events.server.len();
        let now = self.net.now;
        let mut started = Ok(());
        meter(SERVER_ROLE, &mut || {
            started = self.server.connect(now, rng, DEVICE);
        });
        started?;
        self.run_metered(rng, meter);
        let ok = self.events.server[seen..]
            .iter()
            .any(|e| matches!(e, PartyEvent::Established { .. }));
        self.events = Events::default();
        Ok(ok)
    }

    /// Lets `by` of virtual time pass.
    pub fn advance(&mut self, by: Duration, rng: &mut dyn CryptoRng) {
        network::advance(self, by, rng);
    }
}

impl Deployment for World {
    fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    fn nodes(&mut self) -> Vec<(SocketAddr, &mut dyn Node)> {
        vec![
            (self.addrs[EPC_ROLE], &mut self.epc),
            (self.addrs[DEVICE_ROLE], &mut self.device),
            (self.addrs[SERVER_ROLE], &mut self.server),
        ]
    }

    fn collect_events(&mut self) {
        self.events
            .epc
            .extend(core::iter::from_fn(|| self.epc.poll_event()));
        self.events
            .device
            .extend(core::iter::from_fn(|| self.device.poll_event()));
        self.events
            .server
            .extend(core::iter::from_fn(|| self.server.poll_event()));
    }

    fn finished(&self) -> bool {
        self.device.poll_timeout().is_none() && self.server.poll_timeout().is_none()
    }
}
