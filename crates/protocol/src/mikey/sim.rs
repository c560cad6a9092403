//! A whole MIKEY deployment in memory: initiator, third parties and responder on the shared
//! [`crate::network`], with fresh keys. Tests, annotated traces, the demo's key
//! generation and the benchmarks build on it.

use core::net::SocketAddr;
use core::time::Duration;

use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_crypto::split::SharingScheme;

use super::{
    Error, Initiator, InitiatorConfig, InitiatorEvent, Mode, ModeName, PORT, PkPeer, Policy, Psk,
    PskPeer, Responder, ResponderConfig, ResponderEvent, ThirdParty, ThirdPartyConfig,
    ThirdPartyEvent, ThirdPartyFault,
};
use crate::network::{self, Deployment, Network, Node};
use crate::{Endpoint, Millis};

pub use crate::network::{Datagram, Meter};

/// Identity of the initiator in generated deployments.
pub const INITIATOR: &str = "initiator@m2msec.example";
/// Identity of the responder.
pub const RESPONDER: &str = "responder@m2msec.example";

/// Identity of third party `i` (1-based).
#[must_use]
pub fn third_party_name(i: usize) -> String {
    format!("tp{i}@m2msec.example")
}

/// Virtual time at which a run starts (fixed, so traces are stable).
pub const EPOCH: Millis = Millis(1_700_000_000_000);

/// Role index of I for a [`Meter`] and in [`World::addrs`].
pub const INITIATOR_ROLE: usize = 0;
/// Role index of R.
pub const RESPONDER_ROLE: usize = 1;
/// Role index of TP1; TPi is at `FIRST_THIRD_PARTY_ROLE + i - 1`.
pub const FIRST_THIRD_PARTY_ROLE: usize = 2;

/// What to deploy.
#[derive(Clone, Debug)]
pub struct Spec {
    /// How the initiator sends its TGK.
    pub mode: ModeName,
    /// Third parties (n) in the distributed mode.
    pub third_parties: u8,
    /// Parts needed (k).
    pub threshold: u8,
    /// How the TGK is split.
    pub sharing: SharingScheme,
    /// Misbehaviour of each third party, by index.
    pub faults: Vec<Option<ThirdPartyFault>>,
    /// Shared choices.
    pub policy: Policy,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            mode: ModeName::Distributed,
            third_parties: 5,
            threshold: 3,
            sharing: SharingScheme::ReedSolomon,
            faults: Vec::new(),
            policy: Policy::default(),
        }
    }
}

/// Loopback addresses: I on 127.0.0.4, R on 127.0.0.3, TPi on 127.0.0.(20+i), all on the
/// MIKEY port.
#[must_use]
pub fn addresses(third_parties: u8) -> Vec<SocketAddr> {
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], PORT));
    let mut v = vec![at(4), at(3)];
    v.extend((1..=third_parties).map(|i| at(20u8.saturating_add(i))));
    v
}

/// The configurations of every role, with fresh keys.
#[derive(Debug)]
pub struct Configs {
    /// I.
    pub initiator: InitiatorConfig,
    /// R.
    pub responder: ResponderConfig,
    /// TP1…TPn (none outside the distributed mode).
    pub third_parties: Vec<ThirdPartyConfig>,
}

impl Configs {
    /// Generates every key (RSA-2048 for R, the third parties and, in public-key mode, I; a
    /// 32-byte PSK per pair) and the role configs at `addrs` (I, R, then the third parties).
    ///
    /// # Errors
    /// If a key cannot be generated or `addrs` is short.
    pub fn generate(
        spec: &Spec,
        addrs: &[SocketAddr],
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        let n = if spec.mode == ModeName::Distributed {
            usize::from(spec.third_parties)
        } else {
            0
        };
        if addrs.len() < 2 + n {
            return Err(Error::Config("one address per role needed".into()));
        }
        let psk = |rng: &mut dyn CryptoRng| Psk::new(&m2msec_crypto::rng::random_array::<32>(rng));
        let r_key = PkeSecretKey::generate(PkeSuite::RsaOaep2048, rng)?;
        let r_public = PkPeer {
            id: RESPONDER.into(),
            addr: addrs[RESPONDER_ROLE],
            encryption_key: Some(r_key.public_key()),
            verifying_key: None,
        };
        let mut responder = ResponderConfig {
            identity: RESPONDER.into(),
            decryption_key: r_key,
            psk_initiators: Vec::new(),
            pk_initiators: Vec::new(),
            policy: spec.policy,
        };
        let mut third_parties = Vec::new();
        let mode = match spec.mode {
            ModeName::Psk => {
                let key = psk(rng)?;
                responder.psk_initiators.push(PskPeer {
                    id: INITIATOR.into(),
                    addr: addrs[INITIATOR_ROLE],
                    psk: key.clone(),
                });
                Mode::Psk {
                    responder: PskPeer {
                        id: RESPONDER.into(),
                        addr: addrs[RESPONDER_ROLE],
                        psk: key,
                    },
                }
            }
            ModeName::Pk => {
                let signing_key = SigningKey::generate(SigSuite::RsaPss2048, rng)?;
                responder.pk_initiators.push(PkPeer {
                    id: INITIATOR.into(),
                    addr: addrs[INITIATOR_ROLE],
                    encryption_key: None,
                    verifying_key: Some(signing_key.verifying_key()),
                });
                Mode::Pk {
                    responder: r_public,
                    signing_key,
                }
            }
            ModeName::Distributed => {
                let mut tps = Vec::with_capacity(n);
                for i in 0..n {
                    let id = third_party_name(i + 1);
                    let addr = addrs[FIRST_THIRD_PARTY_ROLE + i];
                    let key = psk(rng)?;
                    let signing_key = SigningKey::generate(SigSuite::RsaPss2048, rng)?;
                    responder.pk_initiators.push(PkPeer {
                        id: id.clone(),
                        addr,
                        encryption_key: None,
                        verifying_key: Some(signing_key.verifying_key()),
                    });
                    third_parties.push(ThirdPartyConfig {
                        identity: id.clone(),
                        signing_key,
                        initiators: vec![PskPeer {
                            id: INITIATOR.into(),
                            addr: addrs[INITIATOR_ROLE],
                            psk: key.clone(),
                        }],
                        responders: vec![r_public.clone()],
                        policy: spec.policy,
                        fault_for_testing_only: spec.faults.get(i).copied().flatten(),
                    });
                    tps.push(PskPeer { id, addr, psk: key });
                }
                Mode::Distributed {
                    responder: RESPONDER.into(),
                    third_parties: tps,
                    k: spec.threshold,
                    sharing: spec.sharing,
                }
            }
        };
        Ok(Self {
            initiator: InitiatorConfig {
                identity: INITIATOR.into(),
                mode,
                policy: spec.policy,
            },
            responder,
            third_parties,
        })
    }
}

/// Every event each role reported.
#[derive(Debug, Default)]
pub struct Events {
    /// I's events.
    pub initiator: Vec<InitiatorEvent>,
    /// R's events.
    pub responder: Vec<ResponderEvent>,
    /// Each third party's events, by index.
    pub third_parties: Vec<Vec<ThirdPartyEvent>>,
}

/// A MIKEY deployment running in memory.
#[derive(Debug)]
pub struct World {
    /// I.
    pub initiator: Initiator,
    /// R.
    pub responder: Responder,
    /// TP1…TPn.
    pub third_parties: Vec<ThirdParty>,
    /// Where each role listens: I, R, then the third parties.
    pub addrs: Vec<SocketAddr>,
    /// The wires, the virtual clock and the log.
    pub net: Network,
    /// Every event so far.
    pub events: Events,
}

impl World {
    /// Builds the roles from `configs` at `addrs`.
    ///
    /// # Errors
    /// If a configuration is refused.
    pub fn new(configs: Configs, addrs: Vec<SocketAddr>) -> Result<Self, Error> {
        let n = configs.third_parties.len();
        Ok(Self {
            initiator: Initiator::new(configs.initiator)?,
            responder: Responder::new(configs.responder, [])?,
            third_parties: configs
                .third_parties
                .into_iter()
                .map(|c| ThirdParty::new(c, []))
                .collect::<Result<_, _>>()?,
            addrs,
            net: Network::new(EPOCH),
            events: Events {
                third_parties: (0..n).map(|_| Vec::new()).collect(),
                ..Events::default()
            },
        })
    }

    /// A deployment of `spec` with fresh keys on the loopback addresses of [`addresses`].
    ///
    /// # Errors
    /// If keys cannot be generated.
    pub fn generate(spec: &Spec, rng: &mut dyn CryptoRng) -> Result<Self, Error> {
        let n = if spec.mode == ModeName::Distributed {
            spec.third_parties
        } else {
            0
        };
        let addrs = addresses(n);
        Self::new(Configs::generate(spec, &addrs, rng)?, addrs)
    }

    /// Runs until the initiator's exchange has ended and the network is quiet.
    pub fn run(
        &mut self,
        rng: &mut dyn CryptoRng,
        adversary: &mut dyn FnMut(&Datagram) -> Vec<Datagram>,
    ) {
        network::run(self, rng, adversary, &mut |_, call| call());
    }

    /// Starts an exchange on the initiator and runs it with an honest network.
    ///
    /// # Errors
    /// If the initiator refuses to start.
    pub fn run_honest(&mut self, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        self.run_honest_metered(rng, &mut |_, call| call())
    }

    /// [`World::run_honest`] through a meter.
    ///
    /// # Errors
    /// If the initiator refuses to start.
    pub fn run_honest_metered(
        &mut self,
        rng: &mut dyn CryptoRng,
        meter: Meter<'_>,
    ) -> Result<(), Error> {
        let now = self.net.now;
        network::metered(meter, INITIATOR_ROLE, || {
            self.initiator.connect(now, rng).map(|_| ())
        })?;
        network::run(self, rng, &mut |d| vec![d.clone()], meter);
        Ok(())
    }

    /// Lets `by` of virtual time pass, firing every timer that falls due.
    pub fn advance(&mut self, by: Duration, rng: &mut dyn CryptoRng) {
        network::advance(self, by, rng);
    }
}

impl Deployment for World {
    fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    fn nodes(&mut self) -> Vec<(SocketAddr, &mut dyn Node)> {
        let mut nodes: Vec<(SocketAddr, &mut dyn Node)> = vec![
            (self.addrs[INITIATOR_ROLE], &mut self.initiator),
            (self.addrs[RESPONDER_ROLE], &mut self.responder),
        ];
        for (addr, tp) in self.addrs[FIRST_THIRD_PARTY_ROLE..]
            .iter()
            .zip(&mut self.third_parties)
        {
            nodes.push((*addr, tp));
        }
        nodes
    }

    fn collect_events(&mut self) {
        self.events
            .initiator
            .extend(core::iter::from_fn(|| self.initiator.poll_event()));
        self.events
            .responder
            .extend(core::iter::from_fn(|| self.responder.poll_event()));
        for (events, tp) in self
            .events
            .third_parties
            .iter_mut()
            .zip(&mut self.third_parties)
        {
            events.extend(core::iter::from_fn(|| tp.poll_event()));
        }
    }

    fn finished(&self) -> bool {
        // The initiator's exchange is over; the responder may still hold a finished assembly.
        self.initiator.poll_timeout().is_none()
    }
}
