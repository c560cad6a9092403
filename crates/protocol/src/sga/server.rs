//! The SGA server: registers devices, relays the cipher negotiation, verifies both devices in
//! the key exchange and returns N^Rs to each, and stores and forwards their messages.
//!
//! Durable state (registrations, stored messages) changes only through [`StoreOp`] events that
//! the daemon writes to its store before it sends anything: a message is acknowledged only once
//! it is durable, and a restarted server built from the store forwards what it held.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::{Element, Group, GroupId};
use m2msec_crypto::pke::PkeSecretKey;
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_wire::cbor::{self, Bytes, SecretBytes};
use m2msec_wire::sga::{
    AliasBytes, Deliver, Delivered, DeviceRecord, Forward, Invite, InviteAccepted,
    InviteAcceptedBody, InviteBody, KeyResult, KeyResultBody, KeyShareBody, KeyShareInvite,
    Message, Negotiate, NegotiateBody, NegotiateResponse, NegotiateResponseBody, Poll, Refused,
    RegisterRequest, RegisterResponse, RegistrationBody, Stored, StoredMessage,
};
use zeroize::Zeroizing;

use super::pseudonym::{AliasTable, unresolved};
use super::server_store::{
    DEVICES_TABLE, MESSAGES_TABLE, ServerState, StoreOp, message_key, message_prefix,
    recipient_prefix,
};
use super::{
    Aad, DeviceKey, Error, Mac, Outbox, RefusalCode, SessionId, Sga, Timeouts, admit_fresh,
    check_device_mac, count_group, device_mac, key_share_invite_mac, open, recipient_aad,
    recipient_key, result_check, seal, share_check, temp_key_mask, xor,
};
use crate::replay::ReplayCache;
use crate::{Millis, ProtocolRole};

/// How many invitation nonces the gateway remembers inside the clock window; beyond that it
/// refuses invitations (NotReady) rather than grow, until entries expire.
const INVITATIONS_REMEMBERED: usize = 65_536;

/// The server's configuration.
#[derive(Debug)]
pub struct ServerConfig {
    /// ID_G.
    pub identity: String,
    /// PR, the private key of E_PK^G and F_G.
    pub pke_key: PkeSecretKey,
    /// The suites it offers (C^G).
    pub suites: Vec<AeadSuite>,
    /// The groups it accepts.
    pub groups: Vec<GroupId>,
    /// Waits.
    pub timeouts: Timeouts,
    /// Misbehaviour injected for adversarial tests; `None` in any real deployment.
    pub fault_for_testing_only: Option<ServerFault>,
}

/// How a test server misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFault {
    /// Sends d_i a value of its own choosing instead of N_j^Rs (with the check of the genuine
    /// value): d_i must detect it through f_K.
    SwapElement,
}

/// What the server reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Durable state changes: write them before sending.
    Persist(StoreOp),
    /// A device registered.
    Registered {
        /// ID_d.
        device: String,
    },
    /// Two devices completed a key exchange.
    Exchanged {
        /// The exchange.
        session: SessionId,
        /// d_i.
        initiator: String,
        /// d_j.
        responder: String,
    },
    /// A refused request (the requester was told, where it could be reached).
    Refusal {
        /// Where the request came from.
        remote: SocketAddr,
        /// The device concerned.
        device: String,
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

#[derive(Debug)]
struct Registered {
    key: DeviceKey,
    suites: Vec<AeadSuite>,
    initial_suite: AeadSuite,
    addr: Option<SocketAddr>,
    /// The timestamp of the last Poll taken: a later one only, so a replayed Poll cannot move
    /// `addr`.
    last_poll: u64,
}

#[derive(Debug)]
struct Exchange {
    initiator: String,
    responder: String,
    suite: AeadSuite,
    temp_i: AeadKey,
    temp_j: Option<(AeadKey, Zeroizing<Vec<u8>>)>,
    /// Each device's verified N and K_s.
    share_i: Option<(Element, Element)>,
    share_j: Option<(Element, Element)>,
    group: Option<GroupId>,
    deadline: Millis,
}

/// A message held for its recipient.
#[derive(Debug)]
struct Held {
    message: StoredMessage,
    next_send: Millis,
}

/// The SGA server.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    devices: BTreeMap<String, Registered>,
    exchanges: BTreeMap<SessionId, Exchange>,
    /// Invitation nonces seen inside the clock window.
    seen: ReplayCache<[u8; 16]>,
    /// Held messages by store key (recipient, session, sender, id: delivery order).
    held: BTreeMap<Vec<u8>, Held>,
    /// Every registered device's current pseudonyms.
    aliases: AliasTable,
    out: Outbox<ServerEvent>,
}

impl Server {
    /// A server holding the registrations and messages `state` loaded from its store.
    ///
    /// # Errors
    /// [`Error::Config`] without suites or groups; [`Error::Decode`] for a corrupt record.
    pub fn new(config: ServerConfig, state: ServerState) -> Result<Self, Error> {
        if config.suites.is_empty() || config.groups.is_empty() {
            return Err(Error::Config("the server needs suites and groups".into()));
        }
        let mut registered = BTreeMap::new();
        for bytes in state.devices {
            let r: DeviceRecord = cbor::from_slice(&bytes)?;
            registered.insert(
                r.device.clone(),
                Registered {
                    key: DeviceKey::new(r.device_key.expose())?,
                    suites: suites_of(&r.suites),
                    initial_suite: AeadSuite::try_from(r.initial_suite)?,
                    addr: None,
                    last_poll: 0,
                },
            );
        }
        let mut held = BTreeMap::new();
        for (key, value) in state.messages {
            held.insert(
                key,
                Held {
                    message: cbor::from_slice(&value)?,
                    next_send: Millis(0),
                },
            );
        }
        // A request is retransmitted under the pseudonym it was first sent with, for up to the
        // exchange timeout: that one must still resolve.
        let t = config.timeouts;
        let aliases = AliasTable::new(t.clock_skew.max(t.exchange));
        let mut role = Self {
            config,
            devices: registered,
            exchanges: BTreeMap::new(),
            seen: ReplayCache::with_capacity(INVITATIONS_REMEMBERED),
            held,
            aliases,
            out: Outbox::default(),
        };
        role.out
            .set_retransmit_policy(role.config.timeouts.requests);
        Ok(role)
    }

    /// Messages held for delivery.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl Server {
    /// The registered device a pseudonym names now.
    fn resolve(&self, a: &AliasBytes) -> Result<String, Error> {
        self.aliases.resolve(a)
    }

    /// Who a message concerns, for the refusal event (never sent).
    fn subject(&self, msg: &Message) -> String {
        let exchange = |session| self.exchanges.get(&SessionId(session));
        match msg {
            Message::NegotiateResponse(m) => exchange(m.session).map(|x| x.responder.clone()),
            // As key_share() reads it: d_i's share first, then d_j's.
            Message::KeyShare(m) => exchange(m.session).map(|x| {
                if x.share_i.is_none() {
                    x.initiator.clone()
                } else {
                    x.responder.clone()
                }
            }),
            other => other
                .alias()
                .map(|a| self.resolve(a).unwrap_or_else(|_| unresolved(a))),
        }
        .unwrap_or_default()
    }

    /// §4.1: decrypt k_d, check the proof and the suites, store, acknowledge.
    fn register(
        &mut self,
        remote: SocketAddr,
        m: &RegisterRequest,
        _rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let ops = &mut self.out.ops;
        ops.asymmetric += 1;
        let plain = self
            .config
            .pke_key
            .decrypt(&Aad::Register.bytes(), &m.sealed_key.0)?;
        let body: RegistrationBody = cbor::from_slice(&plain)?;
        let device = &body.device;
        let key = DeviceKey::new(body.device_key.expose())?;
        let initial = AeadSuite::try_from(body.initial_suite)
            .map_err(|_| Error::UnsupportedSuite(body.initial_suite))?;
        let proof_key = Aad::RegisterProof.key_from(&key, initial)?;
        ops.symmetric += 1;
        let proven = proof_key.open_with_nonce_prefix(&Aad::RegisterProof.bytes(), &m.proof.0)?;
        if proven.as_slice() != device.as_bytes() {
            return Err(Error::Authentication);
        }
        let refuse = |out: &mut Outbox<ServerEvent>, error: Error| {
            let status = RefusalCode::of(&error).code();
            let mac = device_mac(&mut out.ops, &key, Mac::RegisterResponse(device, status));
            out.send(
                remote,
                RegisterResponse {
                    status,
                    mac: Bytes(mac.to_vec()),
                },
            );
            Err(error)
        };
        if self.devices.contains_key(device) {
            return refuse(&mut self.out, Error::AlreadyRegistered(device.clone()));
        }
        let suites = suites_of(&body.suites);
        if suites.len() != body.suites.len()
            || !suites.contains(&initial)
            || !suites.iter().all(|s| self.config.suites.contains(s))
        {
            let unknown = body
                .suites
                .iter()
                .copied()
                .find(|s| {
                    AeadSuite::try_from(*s).map_or(true, |s| !self.config.suites.contains(&s))
                })
                .unwrap_or(body.initial_suite);
            return refuse(&mut self.out, Error::UnsupportedSuite(unknown));
        }
        let record = DeviceRecord {
            device: device.clone(),
            device_key: SecretBytes::new(key.as_bytes().to_vec()),
            suites: body.suites.clone(),
            initial_suite: body.initial_suite,
        };
        self.out.event(ServerEvent::Persist(StoreOp::Put {
            table: DEVICES_TABLE,
            key: device.as_bytes().to_vec(),
            value: cbor::to_vec(&record),
        }));
        let mac = device_mac(&mut self.out.ops, &key, Mac::RegisterResponse(device, 0));
        self.out.send(
            remote,
            RegisterResponse {
                status: 0,
                mac: Bytes(mac.to_vec()),
            },
        );
        self.aliases.insert(&mut self.out.ops, device, &key);
        self.devices.insert(
            device.clone(),
            Registered {
                key,
                suites,
                initial_suite: initial,
                addr: Some(remote),
                last_poll: 0,
            },
        );
        self.out.event(ServerEvent::Registered {
            device: device.clone(),
        });
        Ok(())
    }

    /// A1 → A2.
    fn invite(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        m: &Invite,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let name = self.resolve(&m.from)?;
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let from = self
            .devices
            .get(&name)
            .ok_or_else(|| Error::UnknownDevice(name.clone()))?;
        check_device_mac(ops, &from.key, Mac::Invite(&m.sealed.0), &m.mac)?;
        ops.asymmetric += 1;
        let plain = cfg
            .pke_key
            .decrypt(&Aad::Invite(&name).bytes(), &m.sealed.0)?;
        let body: InviteBody = cbor::from_slice(&plain)?;
        if body.from != name || body.gateway != cfg.identity {
            return Err(Error::Authentication);
        }
        admit_fresh(
            &mut self.seen,
            cfg.timeouts,
            now,
            body.timestamp,
            body.nonce,
        )?;
        let suite =
            AeadSuite::try_from(body.suite).map_err(|_| Error::UnsupportedSuite(body.suite))?;
        let to = self
            .devices
            .get(&body.to)
            .ok_or_else(|| Error::UnknownDevice(body.to.clone()))?;
        // A2: the suite must be in C^i ∩ C^j (and offered by the server).
        if !from.suites.contains(&suite)
            || !to.suites.contains(&suite)
            || !cfg.suites.contains(&suite)
        {
            return Err(Error::UnsupportedSuite(body.suite));
        }
        let to_addr = to.addr.ok_or_else(|| Error::Unreachable(body.to.clone()))?;
        let temp_i = xor(
            body.masked_temp_key.expose(),
            &temp_key_mask(&from.key, suite.key_len()),
        );
        let session = SessionId(random_array(rng));
        let negotiate = NegotiateBody {
            masked_temp_key: SecretBytes::new(
                xor(&temp_i, &temp_key_mask(&to.key, suite.key_len())).to_vec(),
            ),
            from: body.from.clone(),
            gateway: cfg.identity.clone(),
            to: body.to.clone(),
            suite: body.suite,
            timestamp: now.0,
        };
        let key_j = Aad::Negotiate(session).key_from(&to.key, to.initial_suite)?;
        // k_dj outlives the exchange: the session under the seal and the timestamp let d_j
        // refuse a recorded A2 (device.rs on_negotiate()).
        let sealed = seal(ops, &key_j, rng, Aad::Negotiate(session), &negotiate);
        self.out.send_reliable(
            now,
            to_addr,
            Negotiate {
                session: session.0,
                sealed,
            },
        );
        if let Some(d) = self.devices.get_mut(&body.from) {
            d.addr = Some(remote);
        }
        self.exchanges.insert(
            session,
            Exchange {
                initiator: body.from,
                responder: body.to,
                suite,
                temp_i: AeadKey::new(suite, &temp_i)?,
                temp_j: None,
                share_i: None,
                share_j: None,
                group: None,
                deadline: now.after(cfg.timeouts.exchange),
            },
        );
        Ok(())
    }

    /// A3 → A4.
    fn negotiated(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        m: &NegotiateResponse,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let session = SessionId(m.session);
        let x = self
            .exchanges
            .get_mut(&session)
            .ok_or(Error::UnknownSession)?;
        if x.temp_j.is_some() {
            return Err(Error::UnexpectedMessage("NegotiateResponse"));
        }
        let j = self
            .devices
            .get(&x.responder)
            .ok_or_else(|| Error::UnknownDevice(x.responder.clone()))?;
        check_device_mac(
            ops,
            &j.key,
            Mac::NegotiateResponse(session, &m.sealed.0),
            &m.mac,
        )?;
        ops.asymmetric += 1;
        let plain = cfg
            .pke_key
            .decrypt(&Aad::NegotiateResponse(session).bytes(), &m.sealed.0)?;
        let body: NegotiateResponseBody = cbor::from_slice(&plain)?;
        if body.from != x.responder || body.to != x.initiator || body.gateway != cfg.identity {
            return Err(Error::Authentication);
        }
        let skew = u64::try_from(cfg.timeouts.clock_skew.as_millis()).unwrap_or(u64::MAX);
        if body.timestamp.abs_diff(now.0) > skew {
            return Err(Error::Replayed);
        }
        // A4: verify (E^j, D^j) = (E^i, D^i) and retrieve k_t^j.
        if body.suite != x.suite.id() {
            return Err(Error::UnsupportedSuite(body.suite));
        }
        let temp_i = x.temp_i.as_bytes().to_vec();
        let temp_j = xor(body.masked_temp_key.expose(), &temp_i);
        let accepted = InviteAcceptedBody {
            masked_temp_key: body.masked_temp_key.clone(),
            gateway: cfg.identity.clone(),
            peer: x.responder.clone(),
            suite: body.suite,
        };
        let sealed = seal(ops, &x.temp_i, rng, Aad::InviteAccepted, &accepted);
        let i_addr = self
            .devices
            .get(&x.initiator)
            .and_then(|d| d.addr)
            .ok_or_else(|| Error::Unreachable(x.initiator.clone()))?;
        self.out.send(
            i_addr,
            InviteAccepted {
                session: session.0,
                sealed,
            },
        );
        x.temp_j = Some((AeadKey::new(x.suite, &temp_j)?, temp_j));
        if let Some(d) = self.devices.get_mut(&x.responder) {
            d.addr = Some(remote);
        }
        Ok(())
    }

    /// B1/B3: open the share, check E_kd(N), recover r from F_G(r), recompute K_s = N^r and
    /// check f_Ks(N). After B1, invite d_j (B2); once both are in, B4–B6.
    ///
    /// The share does not say whose it is: the key it opens under does. d_i's comes first (d_j
    /// is invited to the key exchange only after it), so until then only k_t^i is tried.
    fn key_share(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        session: SessionId,
        sealed: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let ops = &mut self.out.ops;
        let x = self
            .exchanges
            .get_mut(&session)
            .ok_or(Error::UnknownSession)?;
        let opened = match (&x.share_i, &x.temp_j) {
            (None, _) => open(ops, &x.temp_i, Aad::KeyShare, sealed).map(|b| (true, b)),
            (Some(_), Some((temp_j, _))) => open(ops, temp_j, Aad::KeyShare, sealed)
                .map(|b| (false, b))
                // d_i's share again (a retransmission): it was taken already.
                .map_err(
                    |e| match open::<KeyShareBody>(ops, &x.temp_i, Aad::KeyShare, sealed) {
                        Ok(_) => Error::Replayed,
                        Err(_) => e,
                    },
                ),
            (Some(_), None) => Err(Error::UnexpectedMessage("KeyShare before A3")),
        };
        let (initiator, body): (bool, KeyShareBody) = opened?;
        if !initiator && x.share_j.is_some() {
            return Err(Error::Replayed);
        }
        let from = if initiator {
            x.initiator.clone()
        } else {
            x.responder.clone()
        };
        if body.initiator != x.initiator
            || body.responder != x.responder
            || body.gateway != cfg.identity
        {
            return Err(Error::Authentication);
        }
        let group_id =
            GroupId::try_from(body.group).map_err(|_| Error::UnsupportedGroup(body.group))?;
        if !cfg.groups.contains(&group_id) || x.group.is_some_and(|g| g != group_id) {
            return Err(Error::UnsupportedGroup(body.group));
        }
        let group = Group::new(group_id);
        let n = group.element_from_bytes(&body.element.0)?;
        let device = self
            .devices
            .get(&from)
            .ok_or_else(|| Error::UnknownDevice(from.clone()))?;
        let element_key = Aad::Element(session).key_from(&device.key, x.suite)?;
        ops.symmetric += 1;
        let sealed_n = element_key
            .open_with_nonce_prefix(&Aad::Element(session).bytes(), &body.sealed_element.0)?;
        if !m2msec_crypto::ct::eq(&sealed_n, &body.element.0) {
            return Err(Error::Authentication);
        }
        ops.asymmetric += 1;
        let r_bytes = cfg
            .pke_key
            .decrypt(&Aad::Trapdoor(session).bytes(), &body.trapdoor.0)?;
        let r = group.scalar_from_bytes(&r_bytes)?;
        let k_s = group.exp(&n, &r)?;
        count_group(ops, &group);
        let expected = share_check(ops, &k_s, &body.element.0);
        if !m2msec_crypto::ct::eq(&expected, &body.check) {
            return Err(Error::Authentication);
        }
        x.group = Some(group_id);
        if initiator {
            x.share_i = Some((n, k_s));
            // B2: invite d_j, with a MAC under k_t^j.
            let (_, temp_j) = x
                .temp_j
                .as_ref()
                .ok_or(Error::UnexpectedMessage("KeyShare before A3"))?;
            let mac = key_share_invite_mac(ops, temp_j, session, &x.responder, body.group);
            let j_addr = self
                .devices
                .get(&x.responder)
                .and_then(|d| d.addr)
                .ok_or_else(|| Error::Unreachable(x.responder.clone()))?;
            self.out.send_reliable(
                now,
                j_addr,
                KeyShareInvite {
                    session: session.0,
                    group: body.group,
                    mac,
                },
            );
        } else {
            x.share_j = Some((n, k_s));
        }
        if let Some(d) = self.devices.get_mut(&from) {
            d.addr = Some(remote);
        }
        let _ = now;
        self.finish_exchange(session, rng)
    }

    /// B4–B6 once both shares are verified: R_s, N_i^Rs and N_j^Rs with their checks.
    fn finish_exchange(
        &mut self,
        session: SessionId,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let ops = &mut self.out.ops;
        let Some(x) = self.exchanges.get(&session) else {
            return Ok(());
        };
        let (Some((n_i, k_is)), Some((n_j, k_js)), Some(group_id)) =
            (&x.share_i, &x.share_j, x.group)
        else {
            return Ok(());
        };
        let group = Group::new(group_id);
        let r_s = group.random_scalar(rng);
        let n_i_rs = group.exp(n_i, &r_s)?;
        let n_j_rs = group.exp(n_j, &r_s)?;
        count_group(ops, &group);
        let ids = (x.initiator.as_str(), x.responder.as_str());
        let sent_to_i = if self.config.fault_for_testing_only == Some(ServerFault::SwapElement) {
            group.exp_generator(&group.random_scalar(rng))?
        } else {
            n_j_rs.clone()
        };
        let to_i = KeyResultBody {
            element: Bytes(sent_to_i.to_bytes()),
            check: result_check(ops, k_is, ids, &n_j_rs),
        };
        let to_j = KeyResultBody {
            element: Bytes(n_i_rs.to_bytes()),
            check: result_check(ops, k_js, ids, &n_i_rs),
        };
        let Some((temp_j, _)) = &x.temp_j else {
            return Ok(());
        };
        let sealed_i = seal(ops, &x.temp_i, rng, Aad::KeyResult, &to_i);
        let sealed_j = seal(ops, temp_j, rng, Aad::KeyResult, &to_j);
        let addr = |name: &str| self.devices.get(name).and_then(|d| d.addr);
        let (Some(a_i), Some(a_j)) = (addr(&x.initiator), addr(&x.responder)) else {
            return Err(Error::Unreachable(x.initiator.clone()));
        };
        self.out.send(
            a_i,
            KeyResult {
                session: session.0,
                sealed: sealed_i,
            },
        );
        self.out.send(
            a_j,
            KeyResult {
                session: session.0,
                sealed: sealed_j,
            },
        );
        let (initiator, responder) = (x.initiator.clone(), x.responder.clone());
        // R_s, r_i and r_j are gone with the exchange: the server keeps nothing that helps
        // compute K.
        self.exchanges.remove(&session);
        self.out.event(ServerEvent::Exchanged {
            session,
            initiator,
            responder,
        });
        Ok(())
    }

    /// §4.5: store (durably, then acknowledge), forward when the recipient is reachable. The
    /// sender is the device whose key opens the recipient's name.
    fn deliver(&mut self, now: Millis, remote: SocketAddr, m: Deliver) -> Result<(), Error> {
        let from = self.resolve(&m.from)?;
        let sender = self
            .devices
            .get(&from)
            .ok_or_else(|| Error::UnknownDevice(from.clone()))?;
        let opener = recipient_key(&sender.key, sender.initial_suite)?;
        self.out.ops.symmetric += 1;
        let aad = recipient_aad(SessionId(m.session), m.message_id, &m.ciphertext.0);
        let to = String::from_utf8(
            opener
                .open_with_nonce_prefix(&aad, &m.recipient.0)?
                .to_vec(),
        )
        .map_err(|_| Error::Authentication)?;
        if !self.devices.contains_key(&to) {
            return Err(Error::UnknownDevice(to));
        }
        let key = message_key(&to, &m.session, &from, m.message_id);
        let stored = StoredMessage {
            from,
            to,
            session: m.session,
            message_id: m.message_id,
            ciphertext: m.ciphertext,
        };
        // A retransmission of a message already held, or already delivered, changes nothing:
        // it is acknowledged again. (A delivered one is gone from `held`; the recipient drops
        // the duplicate by its id.)
        if !self.held.contains_key(&key) {
            self.out.event(ServerEvent::Persist(StoreOp::Put {
                table: MESSAGES_TABLE,
                key: key.clone(),
                value: cbor::to_vec(&stored),
            }));
            self.held.insert(
                key.clone(),
                Held {
                    message: stored,
                    next_send: now,
                },
            );
        }
        self.out.send(
            remote,
            Stored {
                session: m.session,
                message_id: m.message_id,
            },
        );
        self.flush(now, Some(&key));
        Ok(())
    }

    fn delivered(&mut self, _remote: SocketAddr, m: &Delivered) -> Result<(), Error> {
        let name = self.resolve(&m.device)?;
        let device = self
            .devices
            .get(&name)
            .ok_or_else(|| Error::UnknownDevice(name.clone()))?;
        check_device_mac(
            &mut self.out.ops,
            &device.key,
            Mac::Delivered(SessionId(m.session), &name, m.message_id),
            &m.mac,
        )?;
        let prefix = message_prefix(&name, &m.session);
        let found = self
            .held
            .keys()
            .find(|k| k.starts_with(&prefix) && k.ends_with(&m.message_id.to_be_bytes()))
            .cloned();
        if let Some(key) = found {
            self.held.remove(&key);
            self.out.event(ServerEvent::Persist(StoreOp::Remove {
                table: MESSAGES_TABLE,
                key,
            }));
        }
        Ok(())
    }

    fn polled(&mut self, now: Millis, remote: SocketAddr, m: &Poll) -> Result<(), Error> {
        let name = self.resolve(&m.device)?;
        let cfg = &self.config;
        let device = self
            .devices
            .get_mut(&name)
            .ok_or_else(|| Error::UnknownDevice(name.clone()))?;
        check_device_mac(
            &mut self.out.ops,
            &device.key,
            Mac::Poll(&name, m.timestamp),
            &m.mac,
        )?;
        let skew = u64::try_from(cfg.timeouts.clock_skew.as_millis()).unwrap_or(u64::MAX);
        if m.timestamp.abs_diff(now.0) > skew || m.timestamp <= device.last_poll {
            return Err(Error::Replayed);
        }
        device.last_poll = m.timestamp;
        device.addr = Some(remote);
        let prefix = recipient_prefix(&name);
        for h in self.held.iter_mut().filter(|(k, _)| k.starts_with(&prefix)) {
            h.1.next_send = now;
        }
        self.flush(now, None);
        Ok(())
    }

    /// Sends every held message that is due to a reachable recipient (or just `only`).
    fn flush(&mut self, now: Millis, only: Option<&Vec<u8>>) {
        let every = self.config.timeouts.retransmit;
        for (key, h) in &mut self.held {
            if only.is_some_and(|o| o != key) || now < h.next_send {
                continue;
            }
            let Some(addr) = self.devices.get(&h.message.to).and_then(|d| d.addr) else {
                continue;
            };
            h.next_send = now.after(every);
            let m = &h.message;
            self.out.send(
                addr,
                Forward {
                    session: m.session,
                    message_id: m.message_id,
                    ciphertext: m.ciphertext.clone(),
                },
            );
        }
    }
}

impl ProtocolRole for Server {
    type Protocol = Sga;
    type Event = ServerEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let devices = self.devices.iter().map(|(name, d)| (name, &d.key));
        self.aliases.refresh(&mut self.out.ops, now, devices);
        let device = self.subject(&msg);
        let result = match msg {
            Message::RegisterRequest(m) => return self.register(remote, &m, rng),
            Message::Invite(m) => self.invite(now, remote, &m, rng),
            Message::NegotiateResponse(m) => self.negotiated(now, remote, &m, rng),
            Message::KeyShare(m) => {
                self.key_share(now, remote, SessionId(m.session), &m.sealed.0, rng)
            }
            Message::Deliver(m) => self.deliver(now, remote, m),
            Message::Delivered(m) => self.delivered(remote, &m),
            Message::Poll(m) => self.polled(now, remote, &m),
            other => Err(Error::UnexpectedMessage(other.name())),
        };
        if let Err(e) = &result {
            if matches!(
                e,
                Error::UnsupportedSuite(_)
                    | Error::Unreachable(_)
                    | Error::UnknownDevice(_)
                    | Error::UnsupportedGroup(_)
            ) {
                self.out.send(
                    remote,
                    Refused {
                        session: [0; 16],
                        code: RefusalCode::of(e).code(),
                    },
                );
                self.out.event(ServerEvent::Refusal {
                    remote,
                    device,
                    error: e.clone(),
                });
            }
        }
        result
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        self.exchanges.retain(|_, x| x.deadline > now);
        self.seen.prune(now);
        self.flush(now, None);
    }

    fn next_timeout(&self) -> Option<Millis> {
        let reachable = |h: &Held| {
            self.devices
                .get(&h.message.to)
                .is_some_and(|d| d.addr.is_some())
        };
        [
            self.exchanges.values().map(|x| x.deadline).min(),
            self.held
                .values()
                .filter(|h| reachable(h))
                .map(|h| h.next_send)
                .min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        ServerEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<ServerEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<ServerEvent> {
        &mut self.out
    }
}

fn suites_of(ids: &[u8]) -> Vec<AeadSuite> {
    ids.iter()
        .filter_map(|s| AeadSuite::try_from(*s).ok())
        .collect()
}
