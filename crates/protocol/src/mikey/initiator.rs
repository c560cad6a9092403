//! Initiator I: the constrained device. In the distributed mode it only splits, encrypts, MACs
//! and derives keys; the public-key work is the third parties'.

use core::net::SocketAddr;

use m2msec_crypto::mikey::MessageKeys;
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_crypto::sig::SigningKey;
use m2msec_crypto::split::{self, SharingScheme};
use m2msec_wire::mikey::{DataType, SrtpCs};
use zeroize::Zeroizing;

use super::{
    Datagram, DistributedParams, Error, Established, Mikey, ModeName, Offer, Outbox, PkPeer,
    Policy, PskPeer, RAND_LEN, Received, TGK_LEN, TrafficKeys, check_verification, header,
    millis_of_ntp, ntp_of, tgk_commitment, tgk_key_data, tgk_verification_keys,
};
use crate::{Millis, OpCounts, ProtocolRole};

/// How the initiator sends its TGK.
// One value per initiator: boxing the RSA key of the public-key mode buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Mode {
    /// RFC 3830 pre-shared-key mode, straight to the responder.
    Psk {
        /// R and the key shared with it.
        responder: PskPeer,
    },
    /// RFC 3830 public-key mode, straight to the responder (the baseline the distributed mode
    /// saves the device from).
    Pk {
        /// R, with its RSA encryption key.
        responder: PkPeer,
        /// I's RSA signature key.
        signing_key: SigningKey,
    },
    /// The distributed hybrid mode over third parties.
    Distributed {
        /// R's identity (the third parties know its address and keys).
        responder: String,
        /// The third parties and the keys shared with each.
        third_parties: Vec<PskPeer>,
        /// Parts needed to rebuild the TGK.
        k: u8,
        /// How the TGK is split.
        sharing: SharingScheme,
    },
}

/// Which mode a [`Mode`] is, without its peers and keys (for logs and reports).
impl From<&Mode> for ModeName {
    fn from(mode: &Mode) -> Self {
        match mode {
            Mode::Psk { .. } => Self::Psk,
            Mode::Pk { .. } => Self::Pk,
            Mode::Distributed { .. } => Self::Distributed,
        }
    }
}

/// The initiator's configuration.
#[derive(Debug)]
pub struct InitiatorConfig {
    /// I's identity (NAI).
    pub identity: String,
    /// How the TGK travels.
    pub mode: Mode,
    /// Shared choices.
    pub policy: Policy,
}

/// What the initiator reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitiatorEvent {
    /// The TGK is in place; `verified` says whether the responder proved it.
    Established(Established),
    /// A third party confirmed it received its part (its verification message checked).
    ThirdPartyConfirmed {
        /// The third party.
        third_party: String,
    },
    /// The exchange failed.
    Failed {
        /// The crypto session bundle.
        csb_id: u32,
        /// Why.
        error: Error,
    },
    /// A datagram was refused and ignored.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: Error,
    },
}

impl InitiatorEvent {
    /// The keys the initiator established, if this reports them.
    #[must_use]
    pub fn established(&self) -> Option<&Established> {
        match self {
            Self::Established(est) => Some(est),
            _ => None,
        }
    }
}

/// Initiator I.
#[derive(Debug)]
pub struct Initiator {
    config: InitiatorConfig,
    exchange: Option<Box<Exchange>>,
    out: Outbox<InitiatorEvent>,
}

#[derive(Debug)]
struct Exchange {
    csb_id: u32,
    cs_map: Vec<SrtpCs>,
    rand: [u8; RAND_LEN],
    ts: u64,
    deadline: Millis,
    peer: String,
    /// Keys that check the responder's verification.
    verify_keys: MessageKeys,
    route: Route,
    keys: TrafficKeys,
}

/// Whose verifications the exchange awaits.
#[derive(Debug)]
enum Route {
    /// Pre-shared-key or public-key mode: the responder's, from its address.
    Direct {
        mode: ModeName,
        responder: SocketAddr,
    },
    /// Distributed mode: each third party's (address, identity, keys) until it confirms, and
    /// the responder's from its own address, which I need not know.
    Distributed {
        third_parties: Vec<(SocketAddr, String, MessageKeys)>,
    },
}

impl Route {
    fn mode(&self) -> ModeName {
        match self {
            Self::Direct { mode, .. } => *mode,
            Self::Distributed { .. } => ModeName::Distributed,
        }
    }
}

impl Initiator {
    /// An initiator.
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable mode (no third parties, k out of range, a responder
    /// without an encryption key, a signing key that is not RSA).
    pub fn new(config: InitiatorConfig) -> Result<Self, Error> {
        match &config.mode {
            Mode::Distributed {
                third_parties, k, ..
            } => {
                if third_parties.is_empty() || *k == 0 || usize::from(*k) > third_parties.len() {
                    return Err(Error::Config(format!(
                        "k={k} must be between 1 and the number of third parties ({})",
                        third_parties.len()
                    )));
                }
                if third_parties.len() > 255 {
                    return Err(Error::Config("at most 255 third parties".into()));
                }
            }
            Mode::Pk { responder, .. } if responder.encryption_key.is_none() => {
                return Err(Error::Config(
                    "public-key mode needs the responder's encryption key".into(),
                ));
            }
            _ => {}
        }
        let mut role = Self {
            config,
            exchange: None,
            out: Outbox::default(),
        };
        role.out
            .set_retransmit_policy(role.config.policy.retransmit);
        Ok(role)
    }

    /// Starts an exchange: a fresh TGK, CSB ID and RAND, sent as the mode says. Returns the CSB ID.
    ///
    /// # Errors
    /// [`Error::Busy`] while an exchange runs; errors of key derivation or encoding.
    pub fn connect(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<u32, Error> {
        if self.exchange.is_some() {
            return Err(Error::Busy);
        }
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let tgk = Zeroizing::new(random_array::<TGK_LEN>(rng));
        let csb_id = u32::from_be_bytes(random_array(rng));
        let rand: [u8; RAND_LEN] = random_array(rng);
        let cs_map = vec![SrtpCs {
            policy_no: 0,
            ssrc: u32::from_be_bytes(random_array(rng)),
            roc: 0,
        }];
        let ts = ntp_of(now);
        let v = cfg.policy.verification;
        let keys = TrafficKeys::derive(ops, &tgk[..], csb_id, &rand)?;
        let mut sends = Vec::new();
        let (peer, verify_keys, route) = match &cfg.mode {
            Mode::Psk { responder } => {
                let offer = Offer {
                    header: header(DataType::PreShared, v, csb_id, cs_map.clone()),
                    ts,
                    rand: &rand,
                    id_i: &cfg.identity,
                    id_r: &responder.id,
                    key: tgk_key_data(tgk.to_vec()),
                    extension: None,
                };
                sends.push((
                    responder.addr,
                    offer.psk_message(ops, &cfg.policy, &responder.psk)?,
                ));
                ops.hash += 3;
                let verify = MessageKeys::derive(responder.psk.as_bytes(), csb_id, &rand)?;
                let route = Route::Direct {
                    mode: ModeName::Psk,
                    responder: responder.addr,
                };
                (responder.id.clone(), verify, route)
            }
            Mode::Pk {
                responder,
                signing_key,
            } => {
                let recipient = responder
                    .encryption_key
                    .as_ref()
                    .ok_or_else(|| Error::Config("no responder encryption key".into()))?;
                let offer = Offer {
                    header: header(DataType::PublicKey, v, csb_id, cs_map.clone()),
                    ts,
                    rand: &rand,
                    id_i: &cfg.identity,
                    id_r: &responder.id,
                    key: tgk_key_data(tgk.to_vec()),
                    extension: None,
                };
                let (bytes, verify) =
                    offer.pk_message(ops, &cfg.policy, rng, recipient, signing_key)?;
                sends.push((responder.addr, bytes));
                let route = Route::Direct {
                    mode: ModeName::Pk,
                    responder: responder.addr,
                };
                (responder.id.clone(), verify, route)
            }
            Mode::Distributed {
                responder,
                third_parties,
                k,
                sharing,
            } => {
                let n = u8::try_from(third_parties.len())
                    .map_err(|_| Error::Config("at most 255 third parties".into()))?;
                ops.redundancy += 1;
                let parts = split::split(*sharing, &tgk[..], *k, n, rng)?;
                let commitment = tgk_commitment(ops, csb_id, &tgk[..]);
                let mut tp_keys = Vec::with_capacity(parts.len());
                for (tp, part) in third_parties.iter().zip(parts) {
                    let params = DistributedParams {
                        index: part.index,
                        k: *k,
                        n,
                        sharing: sharing.id(),
                        tgk_len: u16::try_from(TGK_LEN).unwrap_or(u16::MAX),
                        commitment,
                        initiator: cfg.identity.clone(),
                        reply_to: String::new(),
                        initiator_ts: ts,
                    };
                    let offer = Offer {
                        header: header(DataType::PreShared, v, csb_id, cs_map.clone()),
                        ts,
                        rand: &rand,
                        id_i: &cfg.identity,
                        id_r: responder,
                        key: tgk_key_data(part.data.to_vec()),
                        extension: Some(params.to_ext()),
                    };
                    sends.push((tp.addr, offer.psk_message(ops, &cfg.policy, &tp.psk)?));
                    ops.hash += 3;
                    let keys = MessageKeys::derive(tp.psk.as_bytes(), csb_id, &rand)?;
                    tp_keys.push((tp.addr, tp.id.clone(), keys));
                }
                let verify = tgk_verification_keys(ops, &tgk[..], csb_id, &rand)?;
                let route = Route::Distributed {
                    third_parties: tp_keys,
                };
                (responder.clone(), verify, route)
            }
        };
        for (addr, bytes) in sends {
            if v {
                // Retransmitted until the exchange ends: the verification comes from R, not
                // from a third party the message went to, and a copy makes a third party
                // send again what it forwarded (and so R its verification).
                self.out.send_until_cleared(now, addr, bytes);
            } else {
                self.out.send(addr, bytes);
            }
        }
        let exchange = Exchange {
            csb_id,
            cs_map,
            rand,
            ts,
            deadline: now.after(cfg.policy.session),
            peer,
            verify_keys,
            route,
            keys,
        };
        if v {
            self.exchange = Some(Box::new(exchange));
        } else {
            // Nobody will answer: the key is in place, unverified.
            self.out.event(InitiatorEvent::Established(Established {
                csb_id,
                peer: exchange.peer.clone(),
                mode: exchange.route.mode(),
                keys: exchange.keys,
                verified: false,
            }));
        }
        Ok(csb_id)
    }
}

impl Initiator {
    fn fail(&mut self, error: Error) {
        if let Some(x) = self.exchange.take() {
            self.out.retransmits.clear();
            self.out.event(InitiatorEvent::Failed {
                csb_id: x.csb_id,
                error,
            });
        }
    }

    /// Operation counts so far (also through [`crate::Endpoint::op_counts`]).
    #[must_use]
    pub fn ops(&self) -> OpCounts {
        self.out.ops
    }

    /// The exchange's CSB ID, RAND and cs map, for traces.
    #[must_use]
    pub fn current(&self) -> Option<(u32, [u8; RAND_LEN], Vec<SrtpCs>)> {
        self.exchange
            .as_ref()
            .map(|x| (x.csb_id, x.rand, x.cs_map.clone()))
    }
}

impl ProtocolRole for Initiator {
    type Protocol = Mikey;
    type Event = InitiatorEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        d: Datagram,
        _rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let (msg, bytes) = (d.msg, d.bytes);
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let Some(x) = self.exchange.as_deref_mut() else {
            return Err(Error::UnexpectedMessage("MIKEY (no exchange running)"));
        };
        if msg.header.csb_id != x.csb_id {
            return Err(Error::UnexpectedMessage("MIKEY for another CSB ID"));
        }
        let r = Received::read(&msg)?;
        let from_responder = match &x.route {
            Route::Direct { responder, .. } => *responder == remote,
            Route::Distributed { .. } => true,
        };
        let tp = match &mut x.route {
            Route::Distributed { third_parties } => third_parties
                .iter()
                .position(|(a, _, _)| *a == remote)
                .map(|i| (third_parties, i)),
            Route::Direct { .. } => None,
        };
        match msg.header.data_type {
            DataType::Error => {
                let code = r
                    .error
                    .ok_or(Error::Malformed("error message without ERR"))?;
                if let Some((third_parties, i)) = tp {
                    // One third party refused its part: the others may still carry enough, so
                    // the exchange goes on and the refusal is reported as this datagram's.
                    third_parties.remove(i);
                    return Err(Error::PeerError(code));
                }
                if matches!(x.route, Route::Direct { responder, .. } if responder == remote) {
                    self.fail(Error::PeerError(code));
                    return Ok(());
                }
                Err(Error::UnexpectedMessage("error message from a stranger"))
            }
            DataType::PskVerify if tp.is_some() => {
                let Some((third_parties, i)) = tp else {
                    return Ok(());
                };
                let (_, name, keys) = &third_parties[i];
                check_verification(ops, keys, &bytes, &r, &cfg.identity, x.ts)?;
                check_fresh(now, cfg.policy, r.ts)?;
                let third_party = name.clone();
                third_parties.remove(i);
                self.out
                    .event(InitiatorEvent::ThirdPartyConfirmed { third_party });
                Ok(())
            }
            DataType::PskVerify | DataType::PkVerify if from_responder => {
                if r.id_r.as_deref() != Some(x.peer.as_str()) {
                    return Err(Error::UnknownIdentity(r.id_r.unwrap_or_default()));
                }
                check_verification(ops, &x.verify_keys, &bytes, &r, &cfg.identity, x.ts)?;
                check_fresh(now, cfg.policy, r.ts)?;
                let Some(x) = self.exchange.take() else {
                    return Ok(());
                };
                self.out.retransmits.clear();
                self.out.event(InitiatorEvent::Established(Established {
                    csb_id: x.csb_id,
                    peer: x.peer.clone(),
                    mode: x.route.mode(),
                    keys: x.keys.clone(),
                    verified: true,
                }));
                Ok(())
            }
            _ => Err(Error::UnexpectedMessage("MIKEY message of this data type")),
        }
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        if self.exchange.as_ref().is_some_and(|x| now >= x.deadline) {
            self.fail(Error::Timeout("waiting for the responder's verification"));
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.exchange.as_ref().map(|x| x.deadline)
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        InitiatorEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<InitiatorEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<InitiatorEvent> {
        &mut self.out
    }
}

/// A verification message must be fresh too (§5.4).
fn check_fresh(now: Millis, policy: Policy, ts: u64) -> Result<(), Error> {
    let skew = u64::try_from(policy.clock_skew.as_millis()).unwrap_or(u64::MAX);
    if millis_of_ntp(ts).0.abs_diff(now.0) > skew {
        return Err(Error::TimestampOutsideWindow);
    }
    Ok(())
}
