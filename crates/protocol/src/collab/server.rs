//! Server B: checks each proxy's authorisation (Merkle path to the root T signed), its one-time
//! signature and the share against A's commitment; rebuilds x from any k valid shares, returns
//! y sealed under x through every honest proxy, and confirms MK with A.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::merkle::MerklePath;
use m2msec_crypto::ots::{OtsPublicKey, OtsSignature};
use m2msec_crypto::pke::PkeSecretKey;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigningKey, VerifyingKey};
use m2msec_crypto::split::{self, Share, SharingScheme};
use m2msec_wire::cbor::{self, Bytes};
use m2msec_wire::collab::{
    Abort, Answer, AnswerSigned, CertResponse, ClientFinished, FinishedBody, FragmentPayload,
    FragmentSigned, Grant, Message, SealedFragment, ServerFinished, ServerHello, SignedGrant,
};
use zeroize::Zeroizing;

use super::trusted::check_params;
use super::{
    AbortReason, Binding, Certificate, Collab, Error, Established, FinishedKeys, Outbox, SessionId,
    SessionKey, Timeouts, admit_session, answer_key, random, share_commitment, signed_bytes,
};
use crate::{Millis, OpCounts, ProtocolRole};

/// Most sessions B serves at once.
const MAX_SESSIONS: usize = 16384;

/// B's configuration.
#[derive(Debug)]
pub struct ServerConfig {
    /// B's identity (must be the certificate's subject).
    pub identity: String,
    /// B's decryption key (its public half is in the certificate).
    pub pke_key: PkeSecretKey,
    /// B's signature key (its public half is in the certificate).
    pub signing_key: SigningKey,
    /// B's certificate, signed by the CA the proxies trust.
    pub certificate: Certificate,
    /// T's public key.
    pub trusted_key: VerifyingKey,
    /// Waits.
    pub timeouts: Timeouts,
}

/// What B reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// MK is established and confirmed by A.
    Established(Established),
    /// The session failed; no key exists.
    Failed {
        /// The session.
        session: SessionId,
        /// Why.
        error: Error,
    },
    /// A one-time key has signed: persist its id before sending anything, so that it stays
    /// refused after a restart.
    OneTimeKeyUsed([u8; 32]),
    /// A datagram was refused and ignored.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: Error,
    },
}

impl ServerEvent {
    /// The keys the server established, if this reports them.
    #[must_use]
    pub fn established(&self) -> Option<&Established> {
        match self {
            Self::Established(est) => Some(est),
            _ => None,
        }
    }
}

/// Server B.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    sessions: BTreeMap<SessionId, Session>,
    /// Ids of one-time keys that have signed, here or before a restart.
    used_keys: BTreeSet<[u8; 32]>,
    out: Outbox<ServerEvent>,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    client_addr: SocketAddr,
    binding: Binding,
    aead: AeadSuite,
    /// Until when shares are awaited.
    collect_deadline: Millis,
    /// When the session is forgotten (it stays after completion to refuse duplicates).
    deadline: Millis,
    grant: Option<Grant>,
    slots: BTreeMap<[u8; 32], Slot>,
    answered: Option<Answered>,
    done: bool,
}

#[derive(Debug)]
struct Slot {
    name: String,
    addr: SocketAddr,
    public_key: OtsPublicKey,
    leaf_index: u8,
    /// NPiB.
    proxy_nonce: [u8; 16],
    /// NBPi.
    server_nonce: [u8; 16],
    state: SlotState,
}

#[derive(Debug)]
enum SlotState {
    Pending,
    /// Signed, decrypted and matching its commitment.
    Valid(Share),
    /// Valid, and B's answer went to the proxy (the share is no longer kept).
    Answered,
    /// Signed but not A's share.
    Invalid,
}

impl SlotState {
    fn is_valid(&self) -> bool {
        matches!(self, Self::Valid(_) | Self::Answered)
    }
}

#[derive(Debug)]
struct Answered {
    wrapped: Vec<u8>,
    key: SessionKey,
}

impl Server {
    /// B, refusing the one-time keys that `used_one_time_keys` lists (as loaded from its store).
    ///
    /// # Errors
    /// [`Error::Config`] when the certificate names someone else.
    pub fn new(
        config: ServerConfig,
        used_one_time_keys: impl IntoIterator<Item = [u8; 32]>,
    ) -> Result<Self, Error> {
        if config.certificate.subject() != config.identity {
            return Err(Error::Config(format!(
                "certificate is for {:?}, not {:?}",
                config.certificate.subject(),
                config.identity
            )));
        }
        Ok(Self {
            config,
            sessions: BTreeMap::new(),
            used_keys: used_one_time_keys.into_iter().collect(),
            out: Outbox::default(),
        })
    }
}

impl Server {
    /// paper 000 §III-B.2: a proxy's share x_i, encrypted to B and signed with its one-time
    /// key; checked against A's commitment before it counts.
    fn handle_fragment(
        &mut self,
        id: SessionId,
        m: SealedFragment,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let out = &mut self.out;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Err(Error::UnknownSession);
        };
        let slot = session
            .slots
            .get_mut(&m.key_id)
            .ok_or(Error::UnexpectedMessage(
                "SealedFragment without CertRequest",
            ))?;
        if self.used_keys.contains(&m.key_id) || !matches!(slot.state, SlotState::Pending) {
            return Err(Error::OneTimeKeyReused);
        }
        let signed = FragmentSigned {
            session: id.0,
            key_id: m.key_id,
            encrypted_share: m.encrypted_share,
            server_nonce: slot.server_nonce,
        };
        let signature = OtsSignature::from_bytes(&m.signature.0)?;
        out.ops.asymmetric += 1;
        // A bad signature is an outsider's forgery: refuse it and leave the slot to its owner.
        slot.public_key
            .verify(&signed_bytes(b"fragment", &signed), &signature)?;
        self.used_keys.insert(m.key_id);
        out.event(ServerEvent::OneTimeKeyUsed(m.key_id));

        out.ops.asymmetric += 1;
        let grant = session.grant.as_ref().ok_or(Error::GrantMismatch)?;
        let share = self
            .config
            .pke_key
            .decrypt(&id.0, &signed.encrypted_share.0)
            .ok()
            .and_then(|plain| cbor::from_slice::<FragmentPayload>(&plain).ok())
            .filter(|p| p.share_index == slot.leaf_index)
            .filter(|p| {
                let expected = grant.params.commitments.get(usize::from(p.share_index));
                let actual = share_commitment(
                    &mut out.ops,
                    &id,
                    p.share_index,
                    p.blinding.expose(),
                    p.share.expose(),
                );
                expected.is_some_and(|e| m2msec_crypto::ct::eq(e, &actual))
            });
        let Some(payload) = share else {
            // The proxy signed something that is not A's share: an erasure, and no answer.
            slot.state = SlotState::Invalid;
            return self
                .check_progress(id, rng)
                .and(Err(Error::CommitmentMismatch));
        };
        slot.state = SlotState::Valid(Share {
            index: payload.share_index,
            data: Zeroizing::new(payload.share.expose().to_vec()),
        });
        self.check_progress(id, rng)
    }

    /// Rebuilds x once k shares are valid, answers every valid proxy, or gives up once too many
    /// shares are invalid (paper 000 §III-B.2: any k of the n parts suffice, so silent or
    /// lying proxies up to n − k cost nothing; y goes back sealed and MACed under x, signed by B).
    fn check_progress(&mut self, id: SessionId, rng: &mut dyn CryptoRng) -> Result<(), Error> {
        let out = &mut self.out;
        let cfg = &self.config;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Ok(());
        };
        let Some(grant) = session.grant.as_ref() else {
            return Ok(());
        };
        let k = usize::from(grant.params.threshold);
        let n = usize::from(grant.params.shares);
        let valid: Vec<Share> = session
            .slots
            .values()
            .filter_map(|s| match &s.state {
                SlotState::Valid(share) => Some(share.clone()),
                _ => None,
            })
            .collect();
        let invalid = session
            .slots
            .values()
            .filter(|s| matches!(s.state, SlotState::Invalid))
            .count();
        if session.answered.is_none() {
            if valid.len() < k {
                if invalid > n - k {
                    let error = Error::NotEnoughFragments {
                        valid: valid.len(),
                        needed: k,
                    };
                    fail(out, session, id, error);
                }
                return Ok(());
            }
            let scheme = SharingScheme::try_from(grant.params.sharing)?;
            out.ops.redundancy += 1;
            let x = split::combine(
                scheme,
                usize::from(grant.params.secret_len),
                grant.params.threshold,
                grant.params.shares,
                &valid[..k],
            )?;
            let y: Zeroizing<[u8; 32]> = Zeroizing::new(random(rng));
            let wrap = answer_key(&mut out.ops, session.aead, &id, &x, &session.binding)?;
            out.ops.symmetric += 1;
            let wrapped = wrap.seal_random_nonce(rng, &id.0, &y[..]);
            // paper 000 eq. (1): MK = H(A | B | NA | NB | x | y).
            let key = session.binding.master_key(&mut out.ops, &x, &y[..]);
            session.answered = Some(Answered { wrapped, key });
        }
        // Answer every valid proxy not answered yet (late ones included).
        let Some(answered) = session.answered.as_ref() else {
            return Ok(());
        };
        for (key_id, slot) in &mut session.slots {
            if let SlotState::Valid(_) = &slot.state {
                let signed = AnswerSigned {
                    session: id.0,
                    key_id: *key_id,
                    wrapped_secret: Bytes(answered.wrapped.clone()),
                    proxy_nonce: slot.proxy_nonce,
                };
                out.ops.asymmetric += 1;
                let signature = cfg.signing_key.sign(rng, &signed_bytes(b"answer", &signed));
                out.send(
                    slot.addr,
                    Answer {
                        session: id.0,
                        key_id: *key_id,
                        wrapped_secret: signed.wrapped_secret,
                        signature: Bytes(signature),
                    },
                );
                slot.state = SlotState::Answered;
            }
        }
        Ok(())
    }
}

impl ProtocolRole for Server {
    type Protocol = Collab;
    type Event = ServerEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        if let Message::ClientHello(m) = &msg {
            let id = SessionId(m.session);
            admit_session(
                &self.sessions,
                id,
                MAX_SESSIONS,
                "ClientHello beyond capacity",
            )?;
            let aead = AeadSuite::try_from(m.aead)?;
            let server_nonce = random(rng);
            self.out.send(
                remote,
                ServerHello {
                    session: id.0,
                    server: self.config.identity.clone(),
                    server_nonce,
                },
            );
            self.sessions.insert(
                id,
                Session {
                    id,
                    client_addr: remote,
                    binding: Binding {
                        client: m.client.clone(),
                        server: self.config.identity.clone(),
                        client_nonce: m.client_nonce,
                        server_nonce,
                    },
                    aead,
                    collect_deadline: now.after(self.config.timeouts.fragments),
                    deadline: now.after(self.config.timeouts.session),
                    grant: None,
                    slots: BTreeMap::new(),
                    answered: None,
                    done: false,
                },
            );
            return Ok(());
        }
        let id = SessionId(msg.session());
        let session = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        if session.done {
            return Err(Error::UnexpectedMessage(msg.name()));
        }
        match msg {
            // paper 000 §III-B.1 and Fig. 2: a proxy presents its one-time public key, its
            // Merkle path and T's signed root; B answers with its certificate and a nonce.
            Message::CertRequest(m) => {
                let cfg = &self.config;
                let out = &mut self.out;
                let public_key = OtsPublicKey::from_bytes(&m.one_time_public_key.0)?;
                let key_id = public_key.id();
                if self.used_keys.contains(&key_id) {
                    return Err(Error::OneTimeKeyReused);
                }
                if let Some(slot) = session.slots.get(&key_id) {
                    // A retransmission: answer it again, idempotently.
                    if slot.proxy_nonce != m.proxy_nonce {
                        return Err(Error::OneTimeKeyReused);
                    }
                    let server_nonce = slot.server_nonce;
                    out.send(remote, cert_response(id, key_id, cfg, server_nonce));
                    return Ok(());
                }
                check_grant(session, cfg, &m.grant, &mut out.ops)?;
                let grant = session.grant.as_ref().ok_or(Error::GrantMismatch)?;
                if public_key.scheme().id() != grant.params.one_time_scheme {
                    return Err(Error::InvalidParameters("one-time scheme differs from RP"));
                }
                if usize::from(m.leaf_index) >= usize::from(grant.params.shares) {
                    return Err(Error::BadMerklePath);
                }
                out.ops.hash += m.path.len() as u64 + 1;
                MerklePath {
                    index: u32::from(m.leaf_index),
                    siblings: m.path,
                }
                .verify(&key_id, u32::from(grant.params.shares), &grant.root)
                .map_err(|_| Error::BadMerklePath)?;
                if session.slots.values().any(|s| s.leaf_index == m.leaf_index) {
                    return Err(Error::InvalidParameters("leaf index presented twice"));
                }
                let server_nonce = random(rng);
                session.slots.insert(
                    key_id,
                    Slot {
                        name: m.proxy,
                        addr: remote,
                        public_key,
                        leaf_index: m.leaf_index,
                        proxy_nonce: m.proxy_nonce,
                        server_nonce,
                        state: SlotState::Pending,
                    },
                );
                out.send(remote, cert_response(id, key_id, cfg, server_nonce));
                Ok(())
            }
            Message::SealedFragment(m) => self.handle_fragment(id, m, rng),
            // paper 000 §III-B.3: the closing exchange under MK; B lists the proxies that
            // took part, so that A can judge the others (its trust model).
            Message::ClientFinished(m) => {
                let out = &mut self.out;
                let answered = session
                    .answered
                    .as_ref()
                    .ok_or(Error::UnexpectedMessage("ClientFinished before the answer"))?;
                let keys = FinishedKeys::derive(&mut out.ops, session.aead, &id, &answered.key)?;
                let body: FinishedBody =
                    out.open(&keys.client, ClientFinished::TYPE, &id, &m.sealed.0)?;
                // Listed in share order, so both ends report the same sequence.
                let mut taking_part: Vec<(&[u8; 32], &Slot)> = session
                    .slots
                    .iter()
                    .filter(|(kid, s)| s.state.is_valid() && body.proxies.contains(kid))
                    .collect();
                taking_part.sort_by_key(|(_, s)| s.leaf_index);
                let names = taking_part.iter().map(|(_, s)| s.name.clone()).collect();
                let participants = taking_part.iter().map(|(kid, _)| **kid).collect();
                let sealed = out.seal(
                    &keys.server,
                    rng,
                    ServerFinished::TYPE,
                    &id,
                    &FinishedBody {
                        proxies: participants,
                    },
                );
                out.send(
                    session.client_addr,
                    ServerFinished {
                        session: id.0,
                        sealed,
                    },
                );
                session.done = true;
                out.event(ServerEvent::Established(Established {
                    session: id,
                    peer: session.binding.client.clone(),
                    key: answered.key.clone(),
                    participants: names,
                }));
                Ok(())
            }
            other => Err(Error::UnexpectedMessage(other.name())),
        }
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        for (id, session) in &mut self.sessions {
            if session.done || session.answered.is_some() || now < session.collect_deadline {
                continue;
            }
            let valid = session
                .slots
                .values()
                .filter(|s| s.state.is_valid())
                .count();
            let needed = session
                .grant
                .as_ref()
                .map_or(0, |g| usize::from(g.params.threshold));
            fail(
                &mut self.out,
                session,
                *id,
                Error::NotEnoughFragments { valid, needed },
            );
        }
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(mut session) = self.sessions.remove(&id) else {
                continue;
            };
            if !session.done {
                let error = Error::Timeout("waiting for A's key confirmation");
                fail(&mut self.out, &mut session, id, error);
            }
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.sessions
            .values()
            .map(|s| {
                if s.done || s.answered.is_some() {
                    s.deadline
                } else {
                    s.collect_deadline.min(s.deadline)
                }
            })
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

/// The grant must carry T's signature and name this session, its client and this server; every
/// proxy of a session must present the same grant. (paper 000 §III-B.1: one signature over the
/// Merkle root authenticates every proxy's one-time key, so B verifies one signature, not n.)
fn check_grant(
    session: &mut Session,
    cfg: &ServerConfig,
    signed: &SignedGrant,
    ops: &mut OpCounts,
) -> Result<(), Error> {
    if let Some(known) = &session.grant {
        return if *known == signed.grant {
            Ok(())
        } else {
            Err(Error::GrantMismatch)
        };
    }
    let g = &signed.grant;
    if g.session != session.id.0 {
        return Err(Error::GrantMismatch);
    }
    if g.client != session.binding.client || g.server != cfg.identity {
        return Err(Error::GrantMismatch);
    }
    check_params(&g.params, usize::from(g.params.shares))?;
    ops.asymmetric += 1;
    cfg.trusted_key
        .verify(&signed_bytes(b"grant", g), &signed.signature.0)?;
    session.grant = Some(g.clone());
    Ok(())
}

fn cert_response(
    id: SessionId,
    key_id: [u8; 32],
    cfg: &ServerConfig,
    server_nonce: [u8; 16],
) -> CertResponse {
    CertResponse {
        session: id.0,
        key_id,
        certificate: cfg.certificate.0.clone(),
        server_nonce,
    }
}

fn fail(out: &mut Outbox<ServerEvent>, session: &mut Session, id: SessionId, error: Error) {
    let reason = match error {
        Error::NotEnoughFragments { .. } => AbortReason::NotEnoughFragments,
        Error::Timeout(_) => AbortReason::NoKeyConfirmation,
        _ => AbortReason::Refused,
    };
    out.send(
        session.client_addr,
        Abort {
            session: id.0,
            reason: reason.code(),
        },
    );
    session.done = true;
    out.event(ServerEvent::Failed { session: id, error });
}
