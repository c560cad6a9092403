//! A party (MTCD or MTCS): fetches its warrant, then authenticates a peer and agrees on SK.

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;

use m2msec_crypto::aead::AeadKey;
use m2msec_crypto::group::{Element, Group, OpTally, Scalar};
use m2msec_crypto::hash;
use m2msec_crypto::kdf;
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_wire::cbor::{self, Bytes};
use m2msec_wire::e2sec::{
    AuthInit, AuthReply, Confirm, Credential, Message, Refuse, Warrant, WarrantBody, WarrantGrant,
    WarrantRefused, WarrantRequest,
};
use zeroize::Zeroizing;

use crate::{Millis, ProtocolRole};

use super::*;

/// A peer a party may authenticate with.
#[derive(Clone, Debug)]
pub struct PeerEntry {
    /// Identity.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// UDP address.
    pub addr: SocketAddr,
}

/// A party's configuration (MTCD or MTCS).
#[derive(Debug)]
pub struct PartyConfig {
    /// ID.
    pub identity: String,
    /// Device or server.
    pub role: Role,
    /// x (its group is the deployment's).
    pub secret_key: SecretKey,
    /// ID_EPC.
    pub epc: String,
    /// The EPC's address.
    pub epc_addr: SocketAddr,
    /// v_EPC.
    pub epc_key: Vec<u8>,
    /// The key shared with the EPC (EPS-AKA stand-in).
    pub epc_psk: AeadKey,
    /// Peers.
    pub peers: Vec<PeerEntry>,
    /// The signature variant this party uses and accepts.
    pub variant: Variant,
    /// How long it waits.
    pub timeout: Duration,
    /// How its requests (warrant request, AuthInit, AuthReply) are retransmitted until
    /// answered (see [`crate::reliable`]).
    pub retransmit: crate::RetransmitPolicy,
}

/// What a party reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum PartyEvent {
    /// A warrant passed equation (2)/(4) and is stored.
    WarrantStored {
        /// End of its validity.
        valid_until: u64,
    },
    /// SK is agreed and confirmed.
    Established {
        /// The peer.
        peer: String,
        /// SK.
        key: SessionKey,
        /// Whether this party initiated.
        initiator: bool,
    },
    /// An exchange failed.
    Failed {
        /// The peer, if known.
        peer: String,
        /// Why.
        error: Error,
    },
    /// No warrant came for the last request within the party's timeout (the request was
    /// retransmitted until then); a new request starts again.
    WarrantFailed {
        /// Why.
        error: Error,
    },
    /// A datagram was refused.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: Error,
    },
}

/// A verified warrant: (σ, m, K) and e.
#[derive(Clone)]
struct Held {
    sigma: Scalar,
    warrant: Warrant,
    k: Vec<u8>,
    e: Scalar,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Held(valid until {})", self.warrant.valid_until)
    }
}

/// Where the party stands with its warrant (paper 003 §3.3 for a device, §3.4 for a server).
#[derive(Debug)]
enum WarrantState {
    /// Never asked for one.
    None,
    /// A request is out; only a grant that returns `nonce` is taken. A warrant held from
    /// before stays usable meanwhile.
    AwaitGrant {
        nonce: [u8; 16],
        /// The request's timestamp (our clock), to say how far off it was if refused.
        sent: Millis,
        /// When the request is given up.
        deadline: Millis,
        held: Option<Held>,
    },
    /// A verified warrant, and no request out.
    Held(Held),
}

impl WarrantState {
    /// The warrant in hand, whether or not a new one is asked for.
    fn held(&self) -> Option<&Held> {
        match self {
            Self::None => None,
            Self::AwaitGrant { held, .. } => held.as_ref(),
            Self::Held(held) => Some(held),
        }
    }

    /// Takes the warrant in hand, leaving [`WarrantState::None`].
    fn take_held(&mut self) -> Option<Held> {
        match core::mem::replace(self, Self::None) {
            Self::None => None,
            Self::AwaitGrant { held, .. } => held,
            Self::Held(held) => Some(held),
        }
    }

    /// Drops the request under way, keeping the warrant in hand.
    fn give_up(&mut self) {
        if let Some(held) = self.take_held() {
            *self = Self::Held(held);
        }
    }
}

#[derive(Debug)]
enum Pending {
    /// Sent AuthInit; awaiting AuthReply.
    Initiated {
        peer: String,
        secret: Scalar,
        share: Element,
        init_bytes: Vec<u8>,
        deadline: Millis,
    },
    /// Sent AuthReply; awaiting Confirm.
    Replied {
        peer: String,
        key: SessionKey,
        transcript: [u8; 32],
        deadline: Millis,
    },
}

/// An MTC device or MTC server.
#[derive(Debug)]
pub struct Party {
    config: PartyConfig,
    group: Group,
    warrant: WarrantState,
    exchanges: BTreeMap<[u8; 16], Pending>,
    out: Outbox<PartyEvent>,
}

impl Party {
    /// A party.
    ///
    /// # Errors
    /// [`Error::Config`] if the EPC key is not an element of the party's group.
    pub fn new(config: PartyConfig) -> Result<Self, Error> {
        let group = Group::new(config.secret_key.group);
        group
            .element_from_bytes(&config.epc_key)
            .map_err(|_| Error::Config("the EPC key is not in the party's group".into()))?;
        group.take_tally();
        let mut role = Self {
            config,
            group,
            warrant: WarrantState::None,
            exchanges: BTreeMap::new(),
            out: Outbox::default(),
        };
        role.out.set_retransmit_policy(role.config.retransmit);
        Ok(role)
    }

    /// Operation counts of this party's group arithmetic (T_E, T_M, T_H, T_A).
    #[must_use]
    pub fn tally(&self) -> OpTally {
        self.group.tally()
    }

    /// Resets the operation counts and returns them.
    pub fn take_tally(&self) -> OpTally {
        self.group.take_tally()
    }

    /// Asks the EPC for a warrant over the pre-shared-key channel. `now` is our clock (ms since
    /// the UNIX epoch): the EPC refuses the request unless it is within its replay window.
    ///
    /// # Errors
    /// If the public key cannot be computed.
    pub fn request_warrant(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        let cfg = &self.config;
        let nonce: [u8; 16] = random_array(rng);
        let key = cfg.secret_key.public_key()?;
        let mac = kdf::hmac_sha256(
            cfg.epc_psk.as_bytes(),
            &[
                LABEL,
                b"warrant request",
                cfg.identity.as_bytes(),
                &nonce,
                &now.0.to_be_bytes(),
                &key,
            ],
        );
        self.out.send_reliable(
            now,
            cfg.epc_addr,
            WarrantRequest {
                holder: cfg.identity.clone(),
                nonce,
                timestamp_ms: now.0,
                holder_key: Bytes(key),
                mac,
            },
        );
        // A request already out is replaced: only the new nonce is taken from now on.
        self.warrant = WarrantState::AwaitGrant {
            nonce,
            sent: now,
            deadline: now.after(cfg.timeout),
            held: self.warrant.take_held(),
        };
        Ok(())
    }

    /// Starts an authentication with `peer` (message (1) or (3) of §3.5, whichever side
    /// initiates).
    ///
    /// # Errors
    /// [`Error::NoWarrant`] without a valid warrant; [`Error::UnknownPeer`].
    pub fn connect(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        peer: &str,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let entry = cfg
            .peers
            .iter()
            .find(|p| p.id == peer)
            .ok_or_else(|| Error::UnknownPeer(peer.into()))?;
        let held = self.valid_warrant(now)?.clone();
        let g = &self.group;
        let a = g.random_scalar(rng);
        let share = g.exp_generator(&a)?;
        let message = [cfg.identity.as_bytes(), peer.as_bytes(), &share.to_bytes()];
        let key = self.proxy_key(&held)?;
        let sig = proxy_sig::sign(cfg.variant, g, &key, &message, rng)?;
        let exchange: [u8; 16] = random_array(rng);
        let init = AuthInit {
            exchange,
            from: cfg.identity.clone(),
            to: peer.to_owned(),
            share: Bytes(share.to_bytes()),
            variant: cfg.variant as u8,
            r: Bytes(sig.r),
            s: Bytes(sig.s),
            credential: Credential {
                warrant: held.warrant,
                commitment: Bytes(held.k),
            },
        };
        let init_bytes = Message::from(init.clone()).to_bytes();
        self.out.send_reliable(now, entry.addr, init);
        self.exchanges.insert(
            exchange,
            Pending::Initiated {
                peer: peer.to_owned(),
                secret: a,
                share,
                init_bytes,
                deadline: now.after(cfg.timeout),
            },
        );
        Ok(())
    }

    fn valid_warrant(&self, now: Millis) -> Result<&Held, Error> {
        let h = self.warrant.held().ok_or(Error::NoWarrant)?;
        if now.0 < h.warrant.valid_from || now.0 > h.warrant.valid_until {
            return Err(Error::NoWarrant);
        }
        Ok(h)
    }

    /// σ' = σ + x·e.
    fn proxy_key(&self, held: &Held) -> Result<Scalar, Error> {
        let g = &self.group;
        proxy_sig::alternative_key(g, &held.sigma, &self.config.secret_key.scalar(g)?, &held.e)
    }

    /// Checks a peer's credential and returns its verification key v' (equations (8)/(13)).
    fn check_credential(
        &self,
        now: Millis,
        peer: &str,
        cred: &Credential,
    ) -> Result<Element, Error> {
        let cfg = &self.config;
        let g = &self.group;
        let w = &cred.warrant;
        if w.issuer != cfg.epc {
            return Err(Error::WrongIssuer(w.issuer.clone()));
        }
        if w.holder != peer || w.group != g.id().id() {
            return Err(Error::WrongHolder);
        }
        let expected_role = match cfg.role {
            Role::Device => Role::Server,
            Role::Server => Role::Device,
        };
        if w.role != expected_role.code() {
            return Err(Error::WrongRole);
        }
        if now.0 < w.valid_from || now.0 > w.valid_until {
            return Err(Error::WarrantExpired {
                from: w.valid_from,
                until: w.valid_until,
                now: now.0,
            });
        }
        let k = g.element_from_bytes(&cred.commitment.0)?;
        let v = g.element_from_bytes(&w.holder_key.0)?;
        let v_epc = g.element_from_bytes(&cfg.epc_key)?;
        let e = proxy_sig::warrant_hash(g, &cbor::to_vec(w), &k);
        proxy_sig::verification_key(g, &v_epc, &v, &e, &k)
    }
}

impl Party {
    /// The EPC refused our request under our key: the request is given up, and why is
    /// reported (for a timestamp outside its window, both clocks, so the offset shows).
    fn on_warrant_refused(&mut self, m: &WarrantRefused) -> Result<(), Error> {
        let cfg = &self.config;
        let WarrantState::AwaitGrant { nonce, sent, .. } = self.warrant else {
            return Err(Error::UnexpectedMessage("WarrantRefused"));
        };
        if m.nonce != nonce || m.holder != cfg.identity {
            return Err(Error::Authentication);
        }
        let (time, code) = (m.epc_time_ms.to_be_bytes(), [m.code]);
        let input = refusal_input(&m.holder, &m.nonce, &code, &time);
        kdf::verify_hmac_sha256(cfg.epc_psk.as_bytes(), &input, &m.mac)
            .map_err(|_| Error::Authentication)?;
        self.warrant.give_up();
        let error = match m.code {
            REFUSED_STALE => Error::StaleRequest {
                sent: sent.0,
                now: m.epc_time_ms,
            },
            REFUSED_FULL => Error::ReplayCacheFull,
            code => Error::Refused(code),
        };
        self.out.event(PartyEvent::WarrantFailed { error });
        Ok(())
    }

    /// Equation (2)/(4): g^σ = v_EPC^e · K, and the warrant is ours.
    fn on_grant(&mut self, m: &WarrantGrant) -> Result<(), Error> {
        let cfg = &self.config;
        let WarrantState::AwaitGrant { nonce, .. } = self.warrant else {
            return Err(Error::UnexpectedMessage("WarrantGrant"));
        };
        let plain = cfg.epc_psk.open_with_nonce_prefix(
            &[LABEL, b"warrant", cfg.identity.as_bytes()].concat(),
            &m.sealed.0,
        )?;
        let body: WarrantBody = cbor::from_slice(&plain)?;
        if body.nonce != nonce {
            return Err(Error::Authentication);
        }
        let g = &self.group;
        let w = &body.warrant;
        if w.issuer != cfg.epc {
            return Err(Error::WrongIssuer(w.issuer.clone()));
        }
        if w.holder != cfg.identity
            || w.holder_key.0 != cfg.secret_key.public_key()?
            || w.group != g.id().id()
        {
            return Err(Error::WrongHolder);
        }
        if w.role != cfg.role.code() {
            return Err(Error::WrongRole);
        }
        let sigma = g.scalar_from_bytes(body.sigma.expose())?;
        let k = g.element_from_bytes(&body.commitment.0)?;
        let e = proxy_sig::warrant_hash(g, &cbor::to_vec(w), &k);
        proxy_sig::check_warrant(g, &sigma, &g.element_from_bytes(&cfg.epc_key)?, &e, &k)?;
        let valid_until = w.valid_until;
        self.warrant = WarrantState::Held(Held {
            sigma,
            warrant: body.warrant.clone(),
            k: body.commitment.0.clone(),
            e,
        });
        self.out.event(PartyEvent::WarrantStored { valid_until });
        Ok(())
    }

    /// As responder: verify (8)–(9), answer with our signature over M ‖ g^ab (10)–(12).
    fn on_init(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        m: AuthInit,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        if m.to != cfg.identity {
            return Err(Error::WrongHolder);
        }
        if self.exchanges.contains_key(&m.exchange) {
            return Err(Error::UnexpectedMessage("repeated AuthInit"));
        }
        let entry = cfg
            .peers
            .iter()
            .find(|p| p.id == m.from)
            .ok_or_else(|| Error::UnknownPeer(m.from.clone()))?;
        if entry.addr != remote {
            return Err(Error::UnknownPeer(m.from.clone()));
        }
        let variant = Variant::from_code(m.variant)?;
        if variant != cfg.variant {
            return Err(Error::UnsupportedVariant(m.variant));
        }
        let v_prime = self.check_credential(now, &m.from, &m.credential)?;
        let g = &self.group;
        let message = [m.from.as_bytes(), m.to.as_bytes(), &m.share.0[..]];
        proxy_sig::verify(
            variant,
            g,
            &v_prime,
            &message,
            &proxy_sig::Signature {
                r: m.r.0.clone(),
                s: m.s.0.clone(),
            },
        )?;
        let their_share = g.element_from_bytes(&m.share.0)?;
        let held = self.valid_warrant(now)?.clone();
        let b = g.random_scalar(rng);
        let share = g.exp_generator(&b)?;
        let shared = g.exp(&their_share, &b)?;
        let reply_message = [
            cfg.identity.as_bytes(),
            m.from.as_bytes(),
            &share.to_bytes(),
            &shared.to_bytes(),
        ];
        let key = self.proxy_key(&held)?;
        let sig = proxy_sig::sign(variant, g, &key, &reply_message, rng)?;
        let reply = AuthReply {
            exchange: m.exchange,
            from: cfg.identity.clone(),
            to: m.from.clone(),
            share: Bytes(share.to_bytes()),
            variant: m.variant,
            r: Bytes(sig.r),
            s: Bytes(sig.s),
            credential: Credential {
                warrant: held.warrant,
                commitment: Bytes(held.k),
            },
        };
        let transcript = transcript(
            &Message::from(m.clone()).to_bytes(),
            &Message::from(reply.clone()).to_bytes(),
        );
        let sk = self.session_key(&shared, &share, &their_share, &m.from);
        self.out.send_reliable(now, remote, reply);
        self.exchanges.insert(
            m.exchange,
            Pending::Replied {
                peer: m.from,
                key: sk,
                transcript,
                deadline: now.after(cfg.timeout),
            },
        );
        Ok(())
    }

    /// As initiator: verify (13)–(14) over M ‖ g^ab, derive SK (15), confirm.
    fn on_reply(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        m: AuthReply,
        _rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let Some(Pending::Initiated {
            peer,
            secret,
            share,
            init_bytes,
            ..
        }) = self.exchanges.get(&m.exchange)
        else {
            return Err(Error::UnexpectedMessage("AuthReply"));
        };
        let cfg = &self.config;
        if m.from != *peer || m.to != cfg.identity {
            return Err(Error::WrongHolder);
        }
        if cfg
            .peers
            .iter()
            .find(|p| p.id == m.from)
            .is_none_or(|p| p.addr != remote)
        {
            return Err(Error::UnknownPeer(m.from.clone()));
        }
        let variant = Variant::from_code(m.variant)?;
        if variant != cfg.variant {
            return Err(Error::UnsupportedVariant(m.variant));
        }
        let v_prime = self.check_credential(now, &m.from, &m.credential)?;
        let g = &self.group;
        let their_share = g.element_from_bytes(&m.share.0)?;
        let shared = g.exp(&their_share, secret)?;
        let message = [
            m.from.as_bytes(),
            m.to.as_bytes(),
            &m.share.0[..],
            &shared.to_bytes(),
        ];
        proxy_sig::verify(
            variant,
            g,
            &v_prime,
            &message,
            &proxy_sig::Signature {
                r: m.r.0.clone(),
                s: m.s.0.clone(),
            },
        )?;
        let transcript = transcript(init_bytes, &Message::from(m.clone()).to_bytes());
        let peer = peer.clone();
        let sk = self.session_key(&shared, share, &their_share, &peer);
        let mac = confirm_mac(&sk, &transcript);
        self.out.send(
            remote,
            Confirm {
                exchange: m.exchange,
                mac,
            },
        );
        self.exchanges.remove(&m.exchange);
        self.out.event(PartyEvent::Established {
            peer,
            key: sk,
            initiator: true,
        });
        Ok(())
    }

    fn on_confirm(&mut self, m: &Confirm) -> Result<(), Error> {
        let Some(Pending::Replied {
            key, transcript, ..
        }) = self.exchanges.get(&m.exchange)
        else {
            return Err(Error::UnexpectedMessage("Confirm"));
        };
        if !m2msec_crypto::ct::eq(&confirm_mac(key, transcript), &m.mac) {
            return Err(Error::Authentication);
        }
        if let Some(Pending::Replied { peer, key, .. }) = self.exchanges.remove(&m.exchange) {
            self.out.event(PartyEvent::Established {
                peer,
                key,
                initiator: false,
            });
        }
        Ok(())
    }

    /// SK = h(g^ab ‖ g^a ‖ g^b ‖ ID_D ‖ ID_S) (15), with the device's share as g^a.
    fn session_key(
        &self,
        shared: &Element,
        mine: &Element,
        theirs: &Element,
        peer: &str,
    ) -> SessionKey {
        let cfg = &self.config;
        let (g_d, g_s, id_d, id_s) = match cfg.role {
            Role::Device => (mine, theirs, cfg.identity.as_str(), peer),
            Role::Server => (theirs, mine, peer, cfg.identity.as_str()),
        };
        let shared = Zeroizing::new(shared.to_bytes());
        m2msec_crypto::keylog::log("e2sec g^ab", &shared);
        let key = SessionKey(hash::sha256_length_prefixed(&[
            &shared,
            &g_s.to_bytes(),
            &g_d.to_bytes(),
            id_d.as_bytes(),
            id_s.as_bytes(),
        ]));
        m2msec_crypto::keylog::log("e2sec SK", &key.0);
        key
    }
}

impl ProtocolRole for Party {
    type Protocol = E2sec;
    type Event = PartyEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        match msg {
            Message::WarrantGrant(m) => self.on_grant(&m),
            Message::WarrantRefused(m) => self.on_warrant_refused(&m),
            Message::AuthInit(m) => {
                let exchange = m.exchange;
                let result = self.on_init(now, remote, m, rng);
                if let Err(e) = &result {
                    self.out.send(
                        remote,
                        Refuse {
                            exchange,
                            code: e.code(),
                        },
                    );
                }
                result
            }
            Message::AuthReply(m) => self.on_reply(now, remote, m, rng),
            Message::Confirm(m) => self.on_confirm(&m),
            Message::Refuse(m) => match self.exchanges.remove(&m.exchange) {
                Some(Pending::Initiated { peer, .. } | Pending::Replied { peer, .. }) => {
                    self.out.event(PartyEvent::Failed {
                        peer,
                        error: Error::Refused(m.code),
                    });
                    Ok(())
                }
                None => Err(Error::UnexpectedMessage("Refuse")),
            },
            other => Err(Error::UnexpectedMessage(other.name())),
        }
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        if matches!(self.warrant, WarrantState::AwaitGrant { deadline, .. } if now >= deadline) {
            self.warrant.give_up();
            self.out.event(PartyEvent::WarrantFailed {
                error: Error::Timeout("waiting for a warrant"),
            });
        }
        let expired: Vec<[u8; 16]> = self
            .exchanges
            .iter()
            .filter(|(_, p)| match p {
                Pending::Initiated { deadline, .. } | Pending::Replied { deadline, .. } => {
                    now >= *deadline
                }
            })
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(Pending::Initiated { peer, .. } | Pending::Replied { peer, .. }) =
                self.exchanges.remove(&k)
            {
                self.out.event(PartyEvent::Failed {
                    peer,
                    error: Error::Timeout("waiting for the peer"),
                });
            }
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.exchanges
            .values()
            .map(|p| match p {
                Pending::Initiated { deadline, .. } | Pending::Replied { deadline, .. } => {
                    *deadline
                }
            })
            .chain(match self.warrant {
                WarrantState::AwaitGrant { deadline, .. } => Some(deadline),
                WarrantState::None | WarrantState::Held(_) => None,
            })
            .min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        PartyEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<PartyEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<PartyEvent> {
        &mut self.out
    }
}

fn transcript(init: &[u8], reply: &[u8]) -> [u8; 32] {
    hash::sha256_length_prefixed(&[LABEL, b"transcript", init, reply])
}

/// The key-confirmation MAC (our addition): HMAC under a key derived from SK.
fn confirm_mac(sk: &SessionKey, transcript: &[u8; 32]) -> [u8; 32] {
    let mut k = Zeroizing::new([0u8; 32]);
    // HKDF-SHA-256 of 32 bytes cannot fail.
    let _ = kdf::hkdf_sha256(LABEL, &sk.0, b"key confirmation", &mut k[..]);
    kdf::hmac_sha256(&k[..], &[transcript])
}
