//! Third party TPi: receives part i of the TGK from I in pre-shared-key mode and forwards it to
//! R in public-key mode, signed by itself (paper 001, I_TPi → TPi_R).

use core::net::SocketAddr;
use std::collections::BTreeMap;

use m2msec_crypto::mikey::MessageKeys;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::SigningKey;
use m2msec_wire::mikey::DataType;

use super::{
    Datagram, Error, Mikey, Offer, Outbox, PkPeer, Policy, PskPeer, Received, ReplayCache,
    answer_refusal, check_verification, header, ntp_of, open_psk, tgk_key_data,
    verification_message,
};
use crate::{Millis, ProtocolRole};

/// Ways a third party can misbehave, for demonstrations and adversarial tests: the honest path
/// with one step replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThirdPartyFault {
    /// Accepts its part and forwards nothing.
    Silent,
    /// Forwards an altered part, correctly signed with its own key.
    AlterPart,
}

/// The third party's configuration.
#[derive(Debug)]
pub struct ThirdPartyConfig {
    /// TPi's identity (NAI), the IDi of its public-key messages.
    pub identity: String,
    /// TPi's RSA signature key (R holds the public key).
    pub signing_key: SigningKey,
    /// Initiators it serves, with the keys it shares with each.
    pub initiators: Vec<PskPeer>,
    /// Responders it forwards to, with their RSA encryption keys.
    pub responders: Vec<PkPeer>,
    /// Shared choices.
    pub policy: Policy,
    /// Misbehaviour injected for demonstrations and tests; `None` in any real deployment.
    pub fault_for_testing_only: Option<ThirdPartyFault>,
}

/// What the third party reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ThirdPartyEvent {
    /// A part went on to the responder.
    Forwarded {
        /// The original initiator.
        initiator: String,
        /// The crypto session bundle.
        csb_id: u32,
        /// The responder.
        responder: String,
    },
    /// The responder confirmed receipt (its verification message checked).
    Confirmed {
        /// The crypto session bundle.
        csb_id: u32,
    },
    /// A message was accepted into the replay cache: persist it so a restart keeps refusing
    /// replays (§5.4).
    ReplayRecorded {
        /// Digest of the accepted message.
        digest: [u8; 32],
        /// When it leaves the timestamp window.
        until: Millis,
    },
    /// The exchange failed here.
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

/// Third party TPi.
#[derive(Debug)]
pub struct ThirdParty {
    config: ThirdPartyConfig,
    replay: ReplayCache,
    /// Forwarded parts awaiting R's verification, by CSB ID.
    pending: BTreeMap<u32, Pending>,
    out: Outbox<ThirdPartyEvent>,
}

#[derive(Debug)]
struct Pending {
    responder: SocketAddr,
    keys: MessageKeys,
    ts: u64,
    deadline: Millis,
}

impl ThirdParty {
    /// A third party that refuses the messages of its restored replay cache.
    ///
    /// # Errors
    /// [`Error::Config`] when no initiator or responder is configured.
    pub fn new(
        config: ThirdPartyConfig,
        replay_cache: impl IntoIterator<Item = ([u8; 32], Millis)>,
    ) -> Result<Self, Error> {
        if config.initiators.is_empty() || config.responders.is_empty() {
            return Err(Error::Config(
                "a third party needs initiators and responders".into(),
            ));
        }
        let mut replay = ReplayCache::default();
        replay.restore(replay_cache);
        Ok(Self {
            config,
            replay,
            pending: BTreeMap::new(),
            out: Outbox::default(),
        })
    }
}

impl ThirdParty {
    /// I_TPi → (TPi_I) → TPi_R.
    fn relay(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        bytes: &[u8],
        r: &Received,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let mut params = r
            .distributed
            .clone()
            .ok_or(Error::Malformed("no distributed-mode extension"))?;
        let id_i = r.id_i.as_deref().ok_or(Error::Malformed("no IDi"))?;
        let initiator = cfg
            .initiators
            .iter()
            .find(|p| p.id == id_i)
            .ok_or_else(|| Error::UnknownIdentity(id_i.to_owned()))?;
        let (mut part, digest) = open_psk(
            ops,
            &mut self.replay,
            now,
            &cfg.policy,
            bytes,
            r,
            &initiator.psk,
        )?;
        self.out.event(ThirdPartyEvent::ReplayRecorded {
            digest,
            until: super::millis_of_ntp(r.ts).after(cfg.policy.clock_skew),
        });
        if params.initiator != id_i {
            return Err(Error::Malformed("extension names another initiator"));
        }
        let ops = &mut self.out.ops;
        if r.header.v {
            ops.hash += 3;
            let keys = MessageKeys::derive(initiator.psk.as_bytes(), r.header.csb_id, &r.rand)?;
            let id_r = cfg.identity.as_str();
            let answer = verification_message(
                ops,
                &keys,
                DataType::PskVerify,
                r.header.csb_id,
                r.header.cs_map.clone(),
                now,
                id_i,
                id_r,
                r.ts,
            )?;
            self.out.send(remote, answer);
        }
        match cfg.fault_for_testing_only {
            Some(ThirdPartyFault::Silent) => return Ok(()),
            Some(ThirdPartyFault::AlterPart) => {
                if let Some(b) = part.first_mut() {
                    *b ^= 0x5a;
                }
            }
            None => {}
        }
        let id_r = r.id_r.as_deref().ok_or(Error::Malformed("no IDr"))?;
        let responder = cfg
            .responders
            .iter()
            .find(|p| p.id == id_r)
            .ok_or_else(|| Error::UnknownIdentity(id_r.to_owned()))?;
        let recipient = responder
            .encryption_key
            .as_ref()
            .ok_or_else(|| Error::Config(format!("no encryption key for {id_r}")))?;
        params.reply_to = remote.to_string();
        let ts = ntp_of(now);
        let v = cfg.policy.verification;
        let offer = Offer {
            header: header(
                DataType::PublicKey,
                v,
                r.header.csb_id,
                r.header.cs_map.clone(),
            ),
            ts,
            rand: &r.rand,
            id_i: &cfg.identity,
            id_r,
            key: tgk_key_data(part.to_vec()),
            extension: Some(params.to_ext()),
        };
        let ops = &mut self.out.ops;
        let (message, keys) =
            offer.pk_message(ops, &cfg.policy, rng, recipient, &cfg.signing_key)?;
        if v {
            // It waits for R's verification: retransmitted until R answers.
            self.out.send_reliable(now, responder.addr, message);
        } else {
            self.out.send(responder.addr, message);
        }
        if v {
            self.pending.insert(
                r.header.csb_id,
                Pending {
                    responder: responder.addr,
                    keys,
                    ts,
                    deadline: now.after(cfg.policy.session),
                },
            );
        }
        self.out.event(ThirdPartyEvent::Forwarded {
            initiator: id_i.to_owned(),
            csb_id: r.header.csb_id,
            responder: id_r.to_owned(),
        });
        Ok(())
    }
}

impl ProtocolRole for ThirdParty {
    type Protocol = Mikey;
    type Event = ThirdPartyEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        d: Datagram,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let r = Received::read(&d.msg)?;
        match d.msg.header.data_type {
            DataType::PreShared => {
                let result = self.relay(now, remote, &d.bytes, &r, rng);
                answer_refusal(&mut self.out, remote, &r, now, result)
            }
            DataType::PkVerify => {
                let csb_id = r.header.csb_id;
                let p = self
                    .pending
                    .get(&csb_id)
                    .filter(|p| p.responder == remote)
                    .ok_or(Error::UnexpectedMessage(
                        "verification for no forwarded part",
                    ))?;
                check_verification(
                    &mut self.out.ops,
                    &p.keys,
                    &d.bytes,
                    &r,
                    &self.config.identity,
                    p.ts,
                )?;
                self.pending.remove(&csb_id);
                self.out.event(ThirdPartyEvent::Confirmed { csb_id });
                Ok(())
            }
            DataType::Error => {
                let csb_id = r.header.csb_id;
                if self
                    .pending
                    .get(&csb_id)
                    .is_some_and(|p| p.responder == remote)
                {
                    self.pending.remove(&csb_id);
                    let code = r
                        .error
                        .ok_or(Error::Malformed("error message without ERR"))?;
                    self.out.event(ThirdPartyEvent::Failed {
                        csb_id,
                        error: Error::PeerError(code),
                    });
                    return Ok(());
                }
                Err(Error::UnexpectedMessage("error message"))
            }
            _ => Err(Error::UnexpectedMessage("MIKEY message of this data type")),
        }
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for csb_id in expired {
            self.pending.remove(&csb_id);
            self.out.event(ThirdPartyEvent::Failed {
                csb_id,
                error: Error::Timeout("waiting for the responder's verification"),
            });
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.pending.values().map(|p| p.deadline).min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        ThirdPartyEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<ThirdPartyEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<ThirdPartyEvent> {
        &mut self.out
    }
}
