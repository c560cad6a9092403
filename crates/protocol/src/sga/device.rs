//! A smart device: registers once, invites or is invited, runs its half of the key exchange
//! and sends and receives messages through the server. One type plays d_i and d_j.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::{Element, Group, GroupId, Scalar};
use m2msec_crypto::pke::PkePublicKey;
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_wire::cbor::{self, Bytes, SecretBytes};
use m2msec_wire::sga::{
    Deliver, Delivered, Forward, Invite, InviteAcceptedBody, InviteBody, KeyResultBody, KeyShare,
    KeyShareBody, Message, NegotiateBody, NegotiateResponse, NegotiateResponseBody, Poll,
    RegisterRequest, RegistrationBody,
};
use zeroize::Zeroizing;

use super::pseudonym::{alias, epoch_of};
use super::{
    Aad, DeviceKey, Error, Mac, Outbox, RefusalCode, SessionId, SessionKey, Sga, Timeouts,
    admit_fresh, check_device_mac, count_group, device_mac, key_share_invite_mac, message_aad,
    open, recipient_aad, recipient_key, result_check, seal, session_key, share_check,
    temp_key_mask, xor,
};
use crate::replay::ReplayCache;
use crate::{Millis, ProtocolRole};

/// A device's configuration.
#[derive(Debug)]
pub struct DeviceConfig {
    /// ID_d.
    pub identity: String,
    /// k_d.
    pub device_key: DeviceKey,
    /// The suites it supports (CidSet), in order of preference.
    pub suites: Vec<AeadSuite>,
    /// The suite of its registration proof and of what the server sends it under k_d.
    pub initial_suite: AeadSuite,
    /// The group of its key exchanges when it invites.
    pub group: GroupId,
    /// ID_G.
    pub gateway: String,
    /// The server's address.
    pub server: SocketAddr,
    /// The server's public encryption key (E_PK^G, and F_G).
    pub server_key: PkePublicKey,
    /// Waits.
    pub timeouts: Timeouts,
}

/// What a device reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// The server accepted the registration.
    Registered,
    /// A session key is in place with `peer`.
    Established {
        /// The exchange.
        session: SessionId,
        /// The other device.
        peer: String,
        /// The key (its fingerprint and suite are printable).
        key: SessionKey,
    },
    /// The server holds a message this device sent (durably).
    Stored {
        /// The exchange.
        session: SessionId,
        /// The message id.
        message_id: u64,
    },
    /// A message arrived, in order and once.
    Received {
        /// The exchange.
        session: SessionId,
        /// The sender.
        from: String,
        /// Its id.
        message_id: u64,
        /// The plaintext.
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// A step failed.
    Failed {
        /// What was under way.
        what: &'static str,
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

/// A smart device.
#[derive(Debug)]
pub struct Device {
    config: DeviceConfig,
    /// An invitation or key exchange under way, with when the device stops waiting.
    pending: Option<(Pending, Millis)>,
    registering: Option<Millis>,
    /// Established sessions.
    sessions: BTreeMap<SessionId, Session>,
    /// Sent, not yet stored: (session, id) → (when to send again, message).
    unacked: BTreeMap<(SessionId, u64), (Millis, Deliver)>,
    /// The A2s accepted inside the clock window, so that none is accepted twice.
    /// Sessions of the A2s accepted inside the clock window.
    negotiations: ReplayCache<SessionId>,
    /// The timestamp of the last Poll: each is later than the one before, so that the server can
    /// refuse a replayed one (it would move where the server forwards to).
    last_poll: u64,
    out: Outbox<DeviceEvent>,
}

#[derive(Debug)]
enum Pending {
    /// A1 sent (as d_i).
    Invited {
        peer: String,
        suite: AeadSuite,
        temp_key: Zeroizing<Vec<u8>>,
    },
    /// A3 sent (as d_j); the key exchange invitation is awaited.
    Negotiated {
        session: SessionId,
        peer: String,
        suite: AeadSuite,
        temp_key: Zeroizing<Vec<u8>>,
    },
    /// B1 or B3 sent; the server's result is awaited.
    Exchanging(Box<Exchanging>),
}

#[derive(Debug)]
struct Exchanging {
    session: SessionId,
    peer: String,
    initiator: bool,
    suite: AeadSuite,
    temp_key: AeadKey,
    group: Group,
    secret: Scalar,
    k_s: Element,
}

#[derive(Debug)]
struct Session {
    peer: String,
    key: SessionKey,
    next_send: u64,
    /// Next id expected from the peer, and what arrived early.
    next_receive: u64,
    early: BTreeMap<u64, Zeroizing<Vec<u8>>>,
}

impl Device {
    /// A device.
    ///
    /// # Errors
    /// [`Error::Config`] when it supports no suite or the initial suite is not among them.
    pub fn new(config: DeviceConfig) -> Result<Self, Error> {
        if !config.suites.contains(&config.initial_suite) {
            return Err(Error::Config(
                "the initial suite must be among the device's suites".into(),
            ));
        }
        let mut role = Self {
            config,
            pending: None,
            registering: None,
            sessions: BTreeMap::new(),
            unacked: BTreeMap::new(),
            negotiations: ReplayCache::with_capacity(NEGOTIATIONS_REMEMBERED),
            last_poll: 0,
            out: Outbox::default(),
        };
        role.out
            .set_retransmit_policy(role.config.timeouts.requests);
        Ok(role)
    }

    /// The device's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// k_d and the initial suite: what the server opens this device's bodies with (the trace).
    pub(super) fn device_key(&self) -> (&DeviceKey, AeadSuite) {
        (&self.config.device_key, self.config.initial_suite)
    }

    /// The suites it supports, in order of preference (the first is an invitation's default).
    #[must_use]
    pub fn suites(&self) -> &[AeadSuite] {
        &self.config.suites
    }

    /// Registers with the server (§4.1): the identity and k_d encrypted to the server, the
    /// identity sealed under k_d as proof, and the supported suites. Nothing names the device in
    /// clear.
    ///
    /// # Errors
    /// If encryption to the server fails.
    pub fn register(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let body = RegistrationBody {
            device: cfg.identity.clone(),
            device_key: SecretBytes::new(cfg.device_key.as_bytes().to_vec()),
            suites: cfg.suites.iter().map(|s| s.id()).collect(),
            initial_suite: cfg.initial_suite.id(),
        };
        ops.asymmetric += 1;
        let sealed_key =
            cfg.server_key
                .encrypt(rng, &Aad::Register.bytes(), &cbor::to_vec(&body))?;
        let proof_key = Aad::RegisterProof.key_from(&cfg.device_key, cfg.initial_suite)?;
        ops.symmetric += 1;
        let proof =
            proof_key.seal_random_nonce(rng, &Aad::RegisterProof.bytes(), cfg.identity.as_bytes());
        self.out.send_reliable(
            now,
            cfg.server,
            RegisterRequest {
                sealed_key: Bytes(sealed_key),
                proof: Bytes(proof),
            },
        );
        self.registering = Some(now.after(cfg.timeouts.exchange));
        Ok(())
    }

    /// Tells the server where this device is, so it forwards what it holds.
    pub fn poll(&mut self, now: Millis) {
        let cfg = &self.config;
        // Strictly later than the last, even within one millisecond: the server refuses a
        // timestamp it has seen.
        let timestamp = now.0.max(self.last_poll.saturating_add(1));
        self.last_poll = timestamp;
        let mac = device_mac(
            &mut self.out.ops,
            &cfg.device_key,
            Mac::Poll(&cfg.identity, timestamp),
        );
        let device = alias(&mut self.out.ops, &cfg.device_key, epoch_of(now));
        self.out.send(
            cfg.server,
            Poll {
                device,
                timestamp,
                mac,
            },
        );
    }

    /// Invites `peer` (step A1) with `suite`; the key exchange follows by itself.
    ///
    /// # Errors
    /// [`Error::NotReady`] while another invitation runs; [`Error::UnsupportedSuite`] for a suite
    /// the device does not support.
    pub fn invite(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        peer: &str,
        suite: AeadSuite,
    ) -> Result<(), Error> {
        if self.pending.is_some() {
            return Err(Error::NotReady(
                "an invitation or key exchange is under way",
            ));
        }
        let cfg = &self.config;
        if !cfg.suites.contains(&suite) {
            return Err(Error::UnsupportedSuite(suite.id()));
        }
        let ops = &mut self.out.ops;
        let temp_key = Zeroizing::new(
            (0..suite.key_len())
                .map(|_| random_array::<1>(rng)[0])
                .collect::<Vec<u8>>(),
        );
        let body = InviteBody {
            masked_temp_key: SecretBytes::new(
                xor(&temp_key, &temp_key_mask(&cfg.device_key, temp_key.len())).to_vec(),
            ),
            from: cfg.identity.clone(),
            gateway: cfg.gateway.clone(),
            to: peer.to_owned(),
            suite: suite.id(),
            nonce: random_array(rng),
            timestamp: now.0,
        };
        ops.asymmetric += 1;
        let sealed = cfg.server_key.encrypt(
            rng,
            &Aad::Invite(&cfg.identity).bytes(),
            &cbor::to_vec(&body),
        )?;
        let mac = device_mac(ops, &cfg.device_key, Mac::Invite(&sealed));
        let from = alias(ops, &cfg.device_key, epoch_of(now));
        self.out.send_reliable(
            now,
            cfg.server,
            Invite {
                from,
                sealed: Bytes(sealed),
                mac,
            },
        );
        self.pending = Some((
            Pending::Invited {
                peer: peer.to_owned(),
                suite,
                temp_key,
            },
            now.after(cfg.timeouts.exchange),
        ));
        Ok(())
    }

    /// Sends `plaintext` to the peer of `session` through the server (§4.5). Returns its id.
    ///
    /// # Errors
    /// [`Error::UnknownSession`] for a session without a key; [`Error::Crypto`] if the
    /// device's initial suite cannot key.
    pub fn send(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        session: SessionId,
        plaintext: &[u8],
    ) -> Result<u64, Error> {
        let cfg = &self.config;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(Error::UnknownSession)?;
        let id = s.next_send;
        s.next_send += 1;
        let aad = message_aad(session, &cfg.identity, &s.peer, id);
        self.out.ops.symmetric += 1;
        m2msec_crypto::keylog::log("plaintext", plaintext);
        let ciphertext = s.key.key.seal_random_nonce(rng, &aad, plaintext);
        // The recipient's name for the server only, under k_d, tied to this message.
        let to_server = recipient_key(&cfg.device_key, cfg.initial_suite)?;
        self.out.ops.symmetric += 1;
        let recipient = to_server.seal_random_nonce(
            rng,
            &recipient_aad(session, id, &ciphertext),
            s.peer.as_bytes(),
        );
        let m = Deliver {
            session: session.0,
            from: alias(&mut self.out.ops, &cfg.device_key, epoch_of(now)),
            message_id: id,
            recipient: Bytes(recipient),
            ciphertext: Bytes(ciphertext),
        };
        self.out.send(cfg.server, m.clone());
        self.unacked
            .insert((session, id), (now.after(cfg.timeouts.retransmit), m));
        Ok(id)
    }

    /// Messages sent and not yet stored by the server.
    #[must_use]
    pub fn unacknowledged(&self) -> usize {
        self.unacked.len()
    }
}

impl Device {
    fn on_registered(&mut self, m: &m2msec_wire::sga::RegisterResponse) -> Result<(), Error> {
        if self.registering.is_none() {
            return Err(Error::UnexpectedMessage("RegisterResponse"));
        }
        let cfg = &self.config;
        if m.status == 0 {
            check_device_mac(
                &mut self.out.ops,
                &cfg.device_key,
                Mac::RegisterResponse(&cfg.identity, m.status),
                &m.mac.0,
            )?;
            self.registering = None;
            self.out.event(DeviceEvent::Registered);
        } else {
            self.registering = None;
            self.out.event(DeviceEvent::Failed {
                what: "registering",
                error: Error::Refused(RefusalCode::from_code(m.status)),
            });
        }
        Ok(())
    }

    /// Step A2 received (as d_j): learn k_t^i, answer with k_t^i ⊕ k_t^j (A3). A2 is sealed
    /// under the long-term k_dj, so only its session (bound under the seal), the server's
    /// timestamp and the cache of accepted sessions stop a recorded one from holding the device
    /// in an exchange the server no longer knows.
    fn on_negotiate(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        session: SessionId,
        sealed: &[u8],
    ) -> Result<(), Error> {
        if self.pending.is_some() {
            return Err(Error::NotReady(
                "an invitation or key exchange is under way",
            ));
        }
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let aad = Aad::Negotiate(session);
        let key = aad.key_from(&cfg.device_key, cfg.initial_suite)?;
        let body: NegotiateBody = open(ops, &key, aad, sealed)?;
        // Sealed under our own key yet naming another device or gateway: not meant for us.
        if body.to != cfg.identity || body.gateway != cfg.gateway {
            return Err(Error::Authentication);
        }
        let suite = AeadSuite::try_from(body.suite)?;
        if !cfg.suites.contains(&suite) {
            return Err(Error::UnsupportedSuite(body.suite));
        }
        admit_fresh(
            &mut self.negotiations,
            cfg.timeouts,
            now,
            body.timestamp,
            session,
        )?;
        let peer_temp = xor(
            body.masked_temp_key.expose(),
            &temp_key_mask(&cfg.device_key, suite.key_len()),
        );
        let temp_key = Zeroizing::new(
            (0..suite.key_len())
                .map(|_| random_array::<1>(rng)[0])
                .collect::<Vec<u8>>(),
        );
        let answer = NegotiateResponseBody {
            masked_temp_key: SecretBytes::new(xor(&peer_temp, &temp_key).to_vec()),
            gateway: cfg.gateway.clone(),
            from: cfg.identity.clone(),
            to: body.from.clone(),
            suite: body.suite,
            timestamp: now.0,
        };
        ops.asymmetric += 1;
        let sealed = cfg.server_key.encrypt(
            rng,
            &Aad::NegotiateResponse(session).bytes(),
            &cbor::to_vec(&answer),
        )?;
        let mac = device_mac(
            ops,
            &cfg.device_key,
            Mac::NegotiateResponse(session, &sealed),
        );
        self.out.send_reliable(
            now,
            cfg.server,
            NegotiateResponse {
                session: session.0,
                sealed: Bytes(sealed),
                mac,
            },
        );
        self.pending = Some((
            Pending::Negotiated {
                session,
                peer: body.from,
                suite,
                temp_key,
            },
            now.after(cfg.timeouts.exchange),
        ));
        Ok(())
    }

    /// Step A4 received (as d_i): A5, then B1.
    fn on_accepted(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        session: SessionId,
        sealed: &[u8],
    ) -> Result<(), Error> {
        let Some((
            Pending::Invited {
                peer,
                suite,
                temp_key,
            },
            _,
        )) = &self.pending
        else {
            return Err(Error::UnexpectedMessage("InviteAccepted"));
        };
        let (peer, suite) = (peer.clone(), *suite);
        let key = AeadKey::new(suite, temp_key)?;
        let body: InviteAcceptedBody = open(&mut self.out.ops, &key, Aad::InviteAccepted, sealed)?;
        if body.peer != peer || body.suite != suite.id() || body.gateway != self.config.gateway {
            return Err(Error::Authentication);
        }
        // A5: k_t^j = (k_t^i ⊕ k_t^j) ⊕ k_t^i. Device i seals its own messages under k_t^i
        // (the paper's index typo, see docs/sga.md); k_t^j is what d_j uses.
        let _peer_temp = xor(body.masked_temp_key.expose(), temp_key);
        self.start_exchange(now, rng, session, peer, true, suite, key, self.config.group)
    }

    /// Step B2 received (as d_j): B3.
    fn on_key_invite(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        session: SessionId,
        group: u8,
        mac: &[u8; 32],
    ) -> Result<(), Error> {
        let Some((
            Pending::Negotiated {
                session: s,
                peer,
                suite,
                temp_key,
            },
            _,
        )) = &self.pending
        else {
            return Err(Error::UnexpectedMessage("KeyShareInvite"));
        };
        if *s != session {
            return Err(Error::UnknownSession);
        }
        let (peer, suite) = (peer.clone(), *suite);
        let key = AeadKey::new(suite, temp_key)?;
        let expected = key_share_invite_mac(
            &mut self.out.ops,
            temp_key,
            session,
            &self.config.identity,
            group,
        );
        if !m2msec_crypto::ct::eq(&expected, mac) {
            return Err(Error::Authentication);
        }
        let group = GroupId::try_from(group).map_err(|_| Error::UnsupportedGroup(group))?;
        self.start_exchange(now, rng, session, peer, false, suite, key, group)
    }

    /// B1 / B3: N = g^R, K_s = N^r, E_kd(N), F_G(r), f_Ks(N), under the temporary key.
    #[allow(clippy::too_many_arguments)] // the state carried from the negotiation
    fn start_exchange(
        &mut self,
        now: Millis,
        rng: &mut dyn CryptoRng,
        session: SessionId,
        peer: String,
        initiator: bool,
        suite: AeadSuite,
        temp_key: AeadKey,
        group_id: GroupId,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let group = Group::new(group_id);
        let secret = group.random_scalar(rng);
        let r = group.random_scalar(rng);
        let n = group.exp_generator(&secret)?;
        let k_s = group.exp(&n, &r)?;
        count_group(ops, &group);
        let element_key = Aad::Element(session).key_from(&cfg.device_key, suite)?;
        ops.symmetric += 1;
        let sealed_element =
            element_key.seal_random_nonce(rng, &Aad::Element(session).bytes(), &n.to_bytes());
        ops.asymmetric += 1;
        let trapdoor =
            cfg.server_key
                .encrypt(rng, &Aad::Trapdoor(session).bytes(), &r.to_bytes())?;
        let check = share_check(ops, &k_s, &n.to_bytes());
        let (i, j) = if initiator {
            (cfg.identity.clone(), peer.clone())
        } else {
            (peer.clone(), cfg.identity.clone())
        };
        let body = KeyShareBody {
            group: group_id.id(),
            element: Bytes(n.to_bytes()),
            initiator: i,
            responder: j,
            gateway: cfg.gateway.clone(),
            sealed_element: Bytes(sealed_element),
            trapdoor: Bytes(trapdoor),
            check,
        };
        let sealed = seal(ops, &temp_key, rng, Aad::KeyShare, &body);
        self.out.send_reliable(
            now,
            cfg.server,
            KeyShare {
                session: session.0,
                sealed,
            },
        );
        self.pending = Some((
            Pending::Exchanging(Box::new(Exchanging {
                session,
                peer,
                initiator,
                suite,
                temp_key,
                group,
                secret,
                k_s,
            })),
            now.after(cfg.timeouts.exchange),
        ));
        Ok(())
    }

    /// B7: check f_Ks(ID_di, ID_dj, K_s, N_other^Rs) and derive K = (N_other^Rs)^R.
    fn on_result(&mut self, session: SessionId, sealed: &[u8]) -> Result<(), Error> {
        let Some((Pending::Exchanging(x), _)) = &self.pending else {
            return Err(Error::UnexpectedMessage("KeyResult"));
        };
        if x.session != session {
            return Err(Error::UnknownSession);
        }
        let ops = &mut self.out.ops;
        let body: KeyResultBody = open(ops, &x.temp_key, Aad::KeyResult, sealed)?;
        let element = x.group.element_from_bytes(&body.element.0)?;
        let (i, j) = if x.initiator {
            (self.config.identity.as_str(), x.peer.as_str())
        } else {
            (x.peer.as_str(), self.config.identity.as_str())
        };
        let expected = result_check(ops, &x.k_s, (i, j), &element);
        if !m2msec_crypto::ct::eq(&expected, &body.check) {
            // A forged or swapped N^Rs: the session stays as it was.
            return Err(Error::Authentication);
        }
        let k = x.group.exp(&element, &x.secret)?;
        count_group(ops, &x.group);
        let key = session_key(ops, &k, session, i, j, x.suite)?;
        let peer = x.peer.clone();
        self.pending = None;
        self.out.retransmits.clear();
        self.sessions.insert(
            session,
            Session {
                peer: peer.clone(),
                key: key.clone(),
                next_send: 0,
                next_receive: 0,
                early: BTreeMap::new(),
            },
        );
        self.out
            .event(DeviceEvent::Established { session, peer, key });
        Ok(())
    }

    /// A forwarded message: acknowledge it (always, so the server stops sending), deliver it
    /// once and in order. The session names the sender; the AEAD binds both names.
    fn on_forward(&mut self, now: Millis, m: &Forward) -> Result<(), Error> {
        let session = SessionId(m.session);
        let cfg = &self.config;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(Error::UnknownSession)?;
        let fresh = m.message_id >= s.next_receive && !s.early.contains_key(&m.message_id);
        if fresh {
            let aad = message_aad(session, &s.peer, &cfg.identity, m.message_id);
            self.out.ops.symmetric += 1;
            let plain = s.key.key.open_with_nonce_prefix(&aad, &m.ciphertext.0)?;
            s.early.insert(m.message_id, plain);
        }
        let mac = device_mac(
            &mut self.out.ops,
            &cfg.device_key,
            Mac::Delivered(session, &cfg.identity, m.message_id),
        );
        let device = alias(&mut self.out.ops, &cfg.device_key, epoch_of(now));
        self.out.send(
            cfg.server,
            Delivered {
                session: session.0,
                device,
                message_id: m.message_id,
                mac,
            },
        );
        while let Some(plaintext) = s.early.remove(&s.next_receive) {
            self.out.event(DeviceEvent::Received {
                session,
                from: s.peer.clone(),
                message_id: s.next_receive,
                plaintext,
            });
            s.next_receive += 1;
        }
        Ok(())
    }
}

impl ProtocolRole for Device {
    type Protocol = Sga;
    type Event = DeviceEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        if remote != self.config.server {
            return Err(Error::UnexpectedMessage("message not from the server"));
        }
        match msg {
            Message::RegisterResponse(m) => self.on_registered(&m),
            Message::Negotiate(m) => self.on_negotiate(now, rng, SessionId(m.session), &m.sealed.0),
            Message::InviteAccepted(m) => {
                self.on_accepted(now, rng, SessionId(m.session), &m.sealed.0)
            }
            Message::KeyShareInvite(m) => {
                self.on_key_invite(now, rng, SessionId(m.session), m.group, &m.mac)
            }
            Message::KeyResult(m) => self.on_result(SessionId(m.session), &m.sealed.0),
            Message::Refused(m) => {
                let error = Error::Refused(RefusalCode::from_code(m.code));
                if self.registering.take().is_some() {
                    self.out.event(DeviceEvent::Failed {
                        what: "registering",
                        error,
                    });
                } else if self.pending.take().is_some() {
                    self.out.retransmits.clear();
                    self.out.event(DeviceEvent::Failed {
                        what: "negotiating with the peer",
                        error,
                    });
                } else {
                    // Unauthenticated, and for nothing under way: refused, so that it neither
                    // counts as an answer nor is remembered as one (`crate::reliable`).
                    return Err(Error::UnexpectedMessage("Refused with nothing under way"));
                }
                Ok(())
            }
            Message::Stored(m) => {
                let key = (SessionId(m.session), m.message_id);
                if self.unacked.remove(&key).is_none() {
                    // Unauthenticated, and for no message waiting: see `Refused`.
                    return Err(Error::UnexpectedMessage("Stored for no message waiting"));
                }
                self.out.event(DeviceEvent::Stored {
                    session: key.0,
                    message_id: m.message_id,
                });
                Ok(())
            }
            Message::Forward(m) => self.on_forward(now, &m),
            other => Err(Error::UnexpectedMessage(other.name())),
        }
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        if self.registering.is_some_and(|t| now >= t) {
            self.registering = None;
            self.out.event(DeviceEvent::Failed {
                what: "registering",
                error: Error::Timeout("waiting for the server's answer"),
            });
        }
        if self.pending.as_ref().is_some_and(|(_, t)| now >= *t) {
            self.pending = None;
            self.out.retransmits.clear();
            self.out.retransmits.clear();
            self.out.event(DeviceEvent::Failed {
                what: "negotiating with the peer",
                error: Error::Timeout("waiting for the server"),
            });
        }
        let server = self.config.server;
        let every = self.config.timeouts.retransmit;
        let mut current = None;
        for (due, m) in self.unacked.values_mut() {
            if now >= *due {
                *due = now.after(every);
                // Under this epoch's pseudonym: the seal does not cover it, and a retry must
                // still be recognised after the pseudonym rotates.
                m.from = *current.get_or_insert_with(|| {
                    alias(&mut self.out.ops, &self.config.device_key, epoch_of(now))
                });
                self.out.send(server, m.clone());
            }
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        [
            self.registering,
            self.pending.as_ref().map(|(_, t)| *t),
            self.unacked.values().map(|(t, _)| *t).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        DeviceEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<DeviceEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<DeviceEvent> {
        &mut self.out
    }
}

/// How many accepted A2s a device remembers: an A2 stays for up to twice the clock skew, and a
/// server invites a device one exchange at a time, so far fewer arrive in that time. Bounded so
/// that the device's memory is.
const NEGOTIATIONS_REMEMBERED: usize = 128;
