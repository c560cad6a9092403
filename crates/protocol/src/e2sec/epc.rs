//! The EPC: issues warrants to subscribers that prove their pre-shared key.

use core::net::SocketAddr;
use core::time::Duration;

use m2msec_crypto::aead::AeadKey;
use m2msec_crypto::group::{Group, OpTally};
use m2msec_crypto::hash;
use m2msec_crypto::kdf;
use m2msec_crypto::rng::CryptoRng;
use m2msec_wire::cbor::{self, Bytes, SecretBytes};
use m2msec_wire::e2sec::{Message, Warrant, WarrantBody, WarrantGrant, WarrantRefused};

use crate::replay::{Refusal, ReplayCache};
use crate::{Millis, ProtocolRole};

use super::*;

/// A holder known to the EPC, with the pre-shared key standing in for EPS-AKA.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// Identity.
    pub id: String,
    /// Role its warrant grants.
    pub role: Role,
    /// Pre-shared key (the EPS-AKA stand-in).
    pub key: AeadKey,
}

/// The EPC's configuration.
#[derive(Debug)]
pub struct EpcConfig {
    /// ID_EPC.
    pub identity: String,
    /// x_EPC.
    pub secret_key: SecretKey,
    /// The devices and servers it serves.
    pub subscribers: Vec<Subscriber>,
    /// How long a warrant is valid.
    pub validity: Duration,
    /// How far a warrant request's timestamp may lie from our clock, and how long it is
    /// remembered against replay (usually [`DEFAULT_REPLAY_WINDOW`]).
    pub replay_window: Duration,
}

/// What the EPC reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum EpcEvent {
    /// A warrant was issued.
    Issued {
        /// Its holder.
        holder: String,
        /// End of its validity (ms since the UNIX epoch).
        valid_until: u64,
    },
    /// A datagram was refused.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: Error,
    },
}

/// The EPC: issues warrants (equations (1) and (3)).
#[derive(Debug)]
pub struct Epc {
    config: EpcConfig,
    group: Group,
    /// Warrant requests admitted inside the replay window.
    replay: ReplayCache,
    out: Outbox<EpcEvent>,
}

impl Epc {
    /// The EPC.
    ///
    /// # Errors
    /// [`Error::Config`] without subscribers or with a zero replay window.
    pub fn new(config: EpcConfig) -> Result<Self, Error> {
        if config.subscribers.is_empty() {
            return Err(Error::Config("the EPC needs subscribers".into()));
        }
        if config.replay_window.is_zero() {
            return Err(Error::Config("the replay window must not be zero".into()));
        }
        Ok(Self {
            group: Group::new(config.secret_key.group),
            config,
            replay: ReplayCache::with_capacity(REPLAY_CACHE_CAPACITY),
            out: Outbox::default(),
        })
    }

    /// The EPC's public key v_EPC.
    ///
    /// # Errors
    /// Never for a valid key.
    pub fn public_key(&self) -> Result<Vec<u8>, Error> {
        self.config.secret_key.public_key()
    }

    /// Operation counts of the EPC's group arithmetic.
    #[must_use]
    pub fn tally(&self) -> OpTally {
        self.group.tally()
    }
}

impl ProtocolRole for Epc {
    type Protocol = E2sec;
    type Event = EpcEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let Message::WarrantRequest(m) = msg else {
            return Err(Error::UnexpectedMessage(msg.name()));
        };
        let cfg = &self.config;
        let sub = cfg
            .subscribers
            .iter()
            .find(|s| s.id == m.holder)
            .ok_or_else(|| Error::UnknownPeer(m.holder.clone()))?;
        kdf::verify_hmac_sha256(
            sub.key.as_bytes(),
            &[
                LABEL,
                b"warrant request",
                m.holder.as_bytes(),
                &m.nonce,
                &m.timestamp_ms.to_be_bytes(),
                &m.holder_key.0,
            ],
            &m.mac,
        )
        .map_err(|_| Error::Authentication)?;
        let g = &self.group;
        g.element_from_bytes(&m.holder_key.0)?;
        // Only now, with the request authenticated and usable, may it take a cache entry.
        let key = hash::sha256_length_prefixed(&[
            LABEL,
            b"warrant request replay",
            m.holder.as_bytes(),
            &m.nonce,
        ]);
        if let Err(r) = self
            .replay
            .admit(now, cfg.replay_window, Millis(m.timestamp_ms), key)
        {
            let error = match r {
                Refusal::OutsideWindow => Error::StaleRequest {
                    sent: m.timestamp_ms,
                    now: now.0,
                },
                Refusal::Replayed => Error::Replayed,
                Refusal::Full => Error::ReplayCacheFull,
            };
            // An authenticated request refused for its clock or for lack of room is told why,
            // under the key it shares with us: a holder whose clock is off learns it. A replay
            // is not answered (its holder never sends one).
            if !matches!(error, Error::Replayed) {
                let code = error.code();
                let (nonce, time, code_byte) = (m.nonce, now.0.to_be_bytes(), [code]);
                let input = refusal_input(&m.holder, &nonce, &code_byte, &time);
                let mac = kdf::hmac_sha256(sub.key.as_bytes(), &input);
                let refused = WarrantRefused {
                    holder: m.holder,
                    nonce,
                    code,
                    epc_time_ms: now.0,
                    mac,
                };
                self.out.send(remote, refused);
            }
            return Err(error);
        }
        let warrant = Warrant {
            issuer: cfg.identity.clone(),
            holder: m.holder.clone(),
            role: sub.role.code(),
            holder_key: m.holder_key.clone(),
            group: g.id().id(),
            valid_from: now.0,
            valid_until: now.after(cfg.validity).0,
        };
        // (1)/(3): e = h(m ‖ K), σ = e·x_EPC + k.
        let k = g.random_scalar(rng);
        let big_k = g.exp_generator(&k)?;
        let e = proxy_sig::warrant_hash(g, &cbor::to_vec(&warrant), &big_k);
        let sigma = proxy_sig::issue(g, &e, &cfg.secret_key.scalar(g)?, &k)?;
        let body = WarrantBody {
            sigma: SecretBytes::new(sigma.to_bytes().to_vec()),
            warrant,
            commitment: Bytes(big_k.to_bytes()),
            nonce: m.nonce,
        };
        let sealed = sub.key.seal_random_nonce(
            rng,
            &[LABEL, b"warrant", m.holder.as_bytes()].concat(),
            &cbor::to_vec(&body),
        );
        let valid_until = body.warrant.valid_until;
        self.out.send(
            remote,
            WarrantGrant {
                holder: m.holder,
                sealed: Bytes(sealed),
            },
        );
        self.out.event(EpcEvent::Issued {
            holder: sub.id.clone(),
            valid_until,
        });
        Ok(())
    }

    fn on_timeout(&mut self, _now: Millis, _rng: &mut dyn CryptoRng) {}

    fn next_timeout(&self) -> Option<Millis> {
        None
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        EpcEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<EpcEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<EpcEvent> {
        &mut self.out
    }
}
