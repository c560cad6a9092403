//! Proxy Pi: signs and encrypts one share of x to B on A's behalf with a one-time key from T,
//! then checks B's signed answer and relays it to A (paper 000 §III-B.1–2, Figs. 1–2).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use m2msec_crypto::ots::{OtsSecretKey, OtsSignature};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::VerifyingKey;
use m2msec_wire::cbor::{self, Bytes, SecretBytes};
use m2msec_wire::collab::{
    AnswerRelay, AnswerSigned, CertRequest, Fragment, FragmentBody, FragmentPayload,
    FragmentSigned, KeyMaterial, KeyMaterialBody, Message, ProxyHello, RelayBody, SealedFragment,
};

use super::cert::CertifiedKeys;
use super::{
    Certificate, Collab, Error, KeyedPeer, Outbox, SessionId, Timeouts, admit_session, random,
    signed_bytes,
};
use crate::{Millis, ProtocolRole};

/// Most sessions a proxy serves at once; summons beyond it are refused (they cost T nothing,
/// so they must not cost the proxy unbounded memory).
const MAX_SESSIONS: usize = 4096;

/// Ways a proxy can misbehave, for demonstrations and adversarial tests of the protocol: the
/// honest code path is the same, with one step replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyFault {
    /// Takes its key material, then never forwards its share nor relays y.
    Silent,
    /// Signs and sends a random share instead of A's (its one-time key is genuine).
    ForgeFragment,
    /// Relays a corrupted copy of B's answer to A.
    CorruptAnswer,
}

/// The proxy's configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Pi's identity.
    pub identity: String,
    /// T and kPiT.
    pub trusted: KeyedPeer,
    /// Clients this proxy assists, with kAPi.
    pub clients: Vec<KeyedPeer>,
    /// The CA that certifies servers.
    pub ca: VerifyingKey,
    /// Waits.
    pub timeouts: Timeouts,
    /// Misbehaviour injected for demonstrations and tests; `None` in any real deployment.
    pub fault_for_testing_only: Option<ProxyFault>,
}

/// What the proxy reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyEvent {
    /// B's answer was checked and relayed to A: the proxy's part is done.
    Relayed {
        /// The session.
        session: SessionId,
    },
    /// The session failed here.
    Failed {
        /// The session.
        session: SessionId,
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

/// Proxy Pi.
#[derive(Debug)]
pub struct Proxy {
    config: ProxyConfig,
    sessions: BTreeMap<SessionId, Session>,
    out: Outbox<ProxyEvent>,
}

#[derive(Debug)]
struct Session {
    client: usize,
    deadline: Millis,
    /// NPi, sent to T and echoed by T and A.
    nonce: [u8; 16],
    phase: Phase,
}

// One value per live session; the states are few and short-lived, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Phase {
    AwaitKeyMaterial,
    /// Waiting for both B's certificate and A's share, in either order.
    Collecting(Box<Collecting>),
    AwaitAnswer {
        key_id: [u8; 32],
        server: SocketAddr,
        server_key: VerifyingKey,
        /// NPiB.
        server_side_nonce: [u8; 16],
    },
    Done,
}

#[derive(Debug)]
struct Collecting {
    key: OtsSecretKey,
    key_id: [u8; 32],
    leaf_index: u8,
    server: SocketAddr,
    server_name: String,
    /// NPiB, sent to B.
    server_side_nonce: [u8; 16],
    certified: Option<(CertifiedKeys, [u8; 16])>,
    fragment: Option<FragmentBody>,
}

impl Proxy {
    /// A proxy.
    ///
    /// # Errors
    /// [`Error::Config`] when no client is configured.
    pub fn new(config: ProxyConfig) -> Result<Self, Error> {
        if config.clients.is_empty() {
            return Err(Error::Config("a proxy needs at least one client".into()));
        }
        let mut role = Self {
            config,
            sessions: BTreeMap::new(),
            out: Outbox::default(),
        };
        role.out
            .set_retransmit_policy(role.config.timeouts.retransmit);
        Ok(role)
    }
}

impl Proxy {
    /// Once both B's certificate and A's share are in: [xi]_KB signed with the one-time key.
    fn forward_share(
        &mut self,
        now: Millis,
        id: SessionId,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Ok(());
        };
        let Phase::Collecting(c) = &mut session.phase else {
            return Ok(());
        };
        if c.certified.is_none() || c.fragment.is_none() {
            return Ok(());
        }
        let fault = self.config.fault_for_testing_only;
        if fault == Some(ProxyFault::Silent) {
            session.phase = Phase::Done;
            return Ok(());
        }
        let Phase::Collecting(c) = std::mem::replace(&mut session.phase, Phase::Done) else {
            return Ok(());
        };
        let Collecting {
            key,
            key_id,
            server,
            server_side_nonce,
            certified: Some((keys, server_nonce)),
            fragment: Some(fragment),
            ..
        } = *c
        else {
            return Ok(());
        };
        let share = if fault == Some(ProxyFault::ForgeFragment) {
            let mut forged = fragment.share.expose().to_vec();
            rng.fill_bytes(&mut forged);
            SecretBytes::new(forged)
        } else {
            fragment.share.clone()
        };
        let payload = FragmentPayload {
            share_index: fragment.share_index,
            share,
            blinding: fragment.blinding,
        };
        let out = &mut self.out;
        out.ops.asymmetric += 1;
        let encrypted = keys
            .encryption
            .encrypt(rng, &id.0, &cbor::to_vec(&payload))?;
        let signed = FragmentSigned {
            session: id.0,
            key_id,
            encrypted_share: Bytes(encrypted),
            server_nonce,
        };
        out.ops.asymmetric += 1;
        // `sign` consumes the one-time key: it cannot sign again.
        let signature: OtsSignature = key.sign(&signed_bytes(b"fragment", &signed));
        out.send_reliable(
            now,
            server,
            SealedFragment {
                session: id.0,
                key_id,
                encrypted_share: signed.encrypted_share,
                signature: Bytes(signature.to_bytes()),
            },
        );
        session.phase = Phase::AwaitAnswer {
            key_id,
            server,
            server_key: keys.signature,
            server_side_nonce,
        };
        Ok(())
    }
}

impl ProtocolRole for Proxy {
    type Protocol = Collab;
    type Event = ProxyEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let out = &mut self.out;
        if let Message::ProxySummon(m) = &msg {
            let id = SessionId(m.session);
            admit_session(
                &self.sessions,
                id,
                MAX_SESSIONS,
                "ProxySummon beyond capacity",
            )?;
            let client = KeyedPeer::index_of(&cfg.clients, &m.client)?;
            let nonce = random(rng);
            out.send_reliable(
                now,
                cfg.trusted.addr,
                ProxyHello {
                    session: id.0,
                    proxy: cfg.identity.clone(),
                    proxy_nonce: nonce,
                },
            );
            self.sessions.insert(
                id,
                Session {
                    client,
                    deadline: now.after(cfg.timeouts.session),
                    nonce,
                    phase: Phase::AwaitKeyMaterial,
                },
            );
            return Ok(());
        }
        let id = SessionId(msg.session());
        let session = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        let client = &cfg.clients[session.client];
        match (&mut session.phase, msg) {
            (Phase::AwaitKeyMaterial, Message::KeyMaterial(m)) => {
                let body: KeyMaterialBody =
                    out.open(&cfg.trusted.key, KeyMaterial::TYPE, &id, &m.sealed.0)?;
                if body.proxy_nonce != session.nonce {
                    return Err(Error::NonceMismatch);
                }
                let key = OtsSecretKey::from_bytes(body.one_time_key.expose())?;
                let public = key.public_key();
                let key_id = public.id();
                let server: SocketAddr = body
                    .server_addr
                    .parse()
                    .map_err(|_| Error::InvalidParameters("server address"))?;
                let server_side_nonce = random(rng);
                out.send_reliable(
                    now,
                    server,
                    CertRequest {
                        session: id.0,
                        proxy: cfg.identity.clone(),
                        proxy_nonce: server_side_nonce,
                        one_time_public_key: Bytes(public.to_bytes()),
                        leaf_index: body.leaf_index,
                        path: body.path,
                        grant: body.grant.clone(),
                    },
                );
                session.phase = Phase::Collecting(Box::new(Collecting {
                    key,
                    key_id,
                    leaf_index: body.leaf_index,
                    server,
                    server_name: body.grant.grant.server,
                    server_side_nonce,
                    certified: None,
                    fragment: None,
                }));
            }
            (Phase::Collecting(c), Message::CertResponse(m)) if remote == c.server => {
                if m.key_id != c.key_id {
                    return Err(Error::UnexpectedMessage("CertResponse for another key"));
                }
                let cert = Certificate(m.certificate);
                if cert.subject() != c.server_name {
                    return Err(Error::BadCertificate);
                }
                out.ops.asymmetric += 1;
                let keys = cert.verified_keys(&cfg.ca)?;
                c.certified = Some((keys, m.server_nonce));
            }
            (Phase::Collecting(c), Message::Fragment(m)) if m.client == client.name => {
                let body: FragmentBody = out.open(&client.key, Fragment::TYPE, &id, &m.sealed.0)?;
                if body.proxy_nonce != session.nonce {
                    return Err(Error::NonceMismatch);
                }
                if body.share_index != c.leaf_index {
                    return Err(Error::InvalidParameters(
                        "share index is not the proxy's leaf",
                    ));
                }
                c.fragment = Some(body);
            }
            (
                Phase::AwaitAnswer {
                    key_id,
                    server,
                    server_key,
                    server_side_nonce,
                },
                Message::Answer(m),
            ) if remote == *server && m.key_id == *key_id => {
                let signed = AnswerSigned {
                    session: id.0,
                    key_id: *key_id,
                    wrapped_secret: m.wrapped_secret.clone(),
                    proxy_nonce: *server_side_nonce,
                };
                out.ops.asymmetric += 1;
                server_key.verify(&signed_bytes(b"answer", &signed), &m.signature.0)?;
                let mut wrapped = m.wrapped_secret;
                if cfg.fault_for_testing_only == Some(ProxyFault::CorruptAnswer) {
                    if let Some(b) = wrapped.0.last_mut() {
                        *b ^= 0x01;
                    }
                }
                let sealed = out.seal(
                    &client.key,
                    rng,
                    AnswerRelay::TYPE,
                    &id,
                    &RelayBody {
                        proxy_nonce: session.nonce,
                        wrapped_secret: wrapped,
                    },
                );
                out.send(
                    client.addr,
                    AnswerRelay {
                        session: id.0,
                        proxy: cfg.identity.clone(),
                        sealed,
                    },
                );
                session.phase = Phase::Done;
                out.event(ProxyEvent::Relayed { session: id });
                return Ok(());
            }
            (_, other) => return Err(Error::UnexpectedMessage(other.name())),
        }
        self.forward_share(now, id, rng)
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(session) = self.sessions.remove(&id) {
                let waiting = match session.phase {
                    Phase::Done => None,
                    Phase::AwaitKeyMaterial => Some("waiting for T's key material"),
                    Phase::Collecting(c) if c.certified.is_none() => {
                        Some("waiting for B's certificate")
                    }
                    Phase::Collecting(_) => Some("waiting for A's share"),
                    Phase::AwaitAnswer { .. } => Some("waiting for B's answer"),
                };
                if let Some(what) = waiting {
                    self.out.event(ProxyEvent::Failed {
                        session: id,
                        error: Error::Timeout(what),
                    });
                }
            }
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.sessions.values().map(|s| s.deadline).min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        ProxyEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<ProxyEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<ProxyEvent> {
        &mut self.out
    }
}
