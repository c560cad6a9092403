//! Trusted entity T: on A's request it makes one one-time key pair per chosen proxy, binds their
//! ids into a Merkle tree, signs the root with RP, A and B, and hands each proxy its key
//! (paper 000 §III-B.1 and Fig. 1: T takes the key generation off the proxies, and one signature
//! over the Merkle root spares B one verification per proxy).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use m2msec_crypto::merkle::MerkleTree;
use m2msec_crypto::ots::{OtsScheme, OtsSecretKey};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::SigningKey;
use m2msec_crypto::split::SharingScheme;
use m2msec_wire::cbor::{Bytes, SecretBytes};
use m2msec_wire::collab::{
    Grant, KeyMaterial, KeyMaterialBody, KeyRequest, KeyRequestBody, Message, ProxyList,
    ProxyListBody, ProxySummon, ProxyTicket, ReconstructionParams, SignedGrant, TrustedHelloReply,
};

use super::{
    Collab, Error, KeyedPeer, Outbox, SECRET_LEN, SessionId, Timeouts, admit_session, random,
    signed_bytes,
};
use crate::{Millis, ProtocolRole};

/// Most sessions T serves at once.
const MAX_SESSIONS: usize = 4096;

/// T's configuration.
#[derive(Debug)]
pub struct TrustedConfig {
    /// T's identity.
    pub identity: String,
    /// T's signature key (B holds the public key).
    pub signing_key: SigningKey,
    /// Clients, with kAT.
    pub clients: Vec<KeyedPeer>,
    /// Proxies, with kPiT.
    pub proxies: Vec<KeyedPeer>,
    /// Waits.
    pub timeouts: Timeouts,
}

/// What T reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrustedEvent {
    /// Key material went to these proxies and the list to A.
    Provisioned {
        /// The session.
        session: SessionId,
        /// Proxies that answered and received keys.
        proxies: Vec<String>,
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

/// Trusted entity T.
#[derive(Debug)]
pub struct Trusted {
    config: TrustedConfig,
    sessions: BTreeMap<SessionId, Session>,
    out: Outbox<TrustedEvent>,
}

#[derive(Debug)]
struct Session {
    client: usize,
    deadline: Millis,
    client_nonce: [u8; 16],
    /// NT.
    nonce: [u8; 16],
    phase: Phase,
}

// One value per live session; the states are few and short-lived, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Phase {
    AwaitRequest,
    AwaitProxies {
        hello_deadline: Millis,
        server_addr: String,
        grant: SignedGrant,
        tree: MerkleTree,
        pending: Vec<Pending>,
    },
    Done,
}

#[derive(Debug)]
struct Pending {
    /// Index into the configured proxies.
    proxy: usize,
    key: OtsSecretKey,
    key_id: [u8; 32],
    /// NPi once the proxy said hello.
    nonce: Option<[u8; 16]>,
}

impl Trusted {
    /// T.
    ///
    /// # Errors
    /// [`Error::Config`] when no client or proxy is configured.
    pub fn new(config: TrustedConfig) -> Result<Self, Error> {
        if config.clients.is_empty() || config.proxies.is_empty() {
            return Err(Error::Config("T needs clients and proxies".into()));
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

impl Trusted {
    /// Answers A with the (Pi, IDi, NPi) triples once every proxy said hello or the wait ended.
    fn maybe_list(&mut self, id: SessionId, now: Millis, rng: &mut dyn CryptoRng) {
        let cfg = &self.config;
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Phase::AwaitProxies {
            hello_deadline,
            pending,
            ..
        } = &session.phase
        else {
            return;
        };
        if now < *hello_deadline && pending.iter().any(|p| p.nonce.is_none()) {
            return;
        }
        let mut tickets = Vec::new();
        for (leaf, p) in pending.iter().enumerate() {
            let (Some(nonce), Ok(leaf_index)) = (p.nonce, u8::try_from(leaf)) else {
                continue;
            };
            tickets.push(ProxyTicket {
                proxy: cfg.proxies[p.proxy].name.clone(),
                key_id: p.key_id,
                proxy_nonce: nonce,
                leaf_index,
            });
        }
        let proxies = tickets.iter().map(|t| t.proxy.clone()).collect();
        let client = &cfg.clients[session.client];
        let body = ProxyListBody {
            tickets,
            client_nonce: session.client_nonce,
        };
        let sealed = self.out.seal(&client.key, rng, ProxyList::TYPE, &id, &body);
        self.out.send(
            client.addr,
            ProxyList {
                session: id.0,
                sealed,
            },
        );
        // The secret keys are dropped (and zeroized) here: T keeps no signing power.
        session.phase = Phase::Done;
        self.out.event(TrustedEvent::Provisioned {
            session: id,
            proxies,
        });
    }
}

impl ProtocolRole for Trusted {
    type Protocol = Collab;
    type Event = TrustedEvent;

    fn handle(
        &mut self,
        now: Millis,
        _remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let out = &mut self.out;
        if let Message::TrustedHello(m) = &msg {
            let id = SessionId(m.session);
            admit_session(
                &self.sessions,
                id,
                MAX_SESSIONS,
                "TrustedHello beyond capacity",
            )?;
            let client = KeyedPeer::index_of(&cfg.clients, &m.client)?;
            let nonce = random(rng);
            out.send(
                cfg.clients[client].addr,
                TrustedHelloReply {
                    session: id.0,
                    trusted_nonce: nonce,
                },
            );
            self.sessions.insert(
                id,
                Session {
                    client,
                    deadline: now.after(cfg.timeouts.session),
                    client_nonce: m.client_nonce,
                    nonce,
                    phase: Phase::AwaitRequest,
                },
            );
            return Ok(());
        }
        let id = SessionId(msg.session());
        let session = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        let client = &cfg.clients[session.client];
        match (&mut session.phase, msg) {
            (Phase::AwaitRequest, Message::KeyRequest(m)) if m.client == client.name => {
                let body: KeyRequestBody =
                    out.open(&client.key, KeyRequest::TYPE, &id, &m.sealed.0)?;
                if body.trusted_nonce != session.nonce {
                    return Err(Error::NonceMismatch);
                }
                let proxies = resolve_proxies(cfg, &body)?;
                check_params(&body.params, proxies.len())?;
                let scheme = OtsScheme::try_from(body.params.one_time_scheme)?;
                let mut pending = Vec::with_capacity(proxies.len());
                for proxy in proxies {
                    out.ops.asymmetric += 1;
                    let key = OtsSecretKey::generate(scheme, rng);
                    let key_id = key.public_key().id();
                    pending.push(Pending {
                        proxy,
                        key,
                        key_id,
                        nonce: None,
                    });
                }
                let leaves: Vec<[u8; 32]> = pending.iter().map(|p| p.key_id).collect();
                out.ops.hash += leaves.len() as u64;
                let tree = MerkleTree::new(&leaves)?;
                let grant = Grant {
                    session: id.0,
                    params: body.params,
                    client: client.name.clone(),
                    server: body.server,
                    root: tree.root(),
                };
                out.ops.asymmetric += 1;
                let signature = cfg.signing_key.sign(rng, &signed_bytes(b"grant", &grant));
                for p in &pending {
                    out.send_reliable(
                        now,
                        cfg.proxies[p.proxy].addr,
                        ProxySummon {
                            session: id.0,
                            client: client.name.clone(),
                        },
                    );
                }
                session.phase = Phase::AwaitProxies {
                    hello_deadline: now.after(cfg.timeouts.proxy_hello),
                    server_addr: body.server_addr,
                    grant: SignedGrant {
                        grant,
                        signature: Bytes(signature),
                    },
                    tree,
                    pending,
                };
            }
            (
                Phase::AwaitProxies {
                    server_addr,
                    grant,
                    tree,
                    pending,
                    ..
                },
                Message::ProxyHello(m),
            ) => {
                let (leaf, p) = pending
                    .iter_mut()
                    .enumerate()
                    .find(|(_, p)| cfg.proxies[p.proxy].name == m.proxy)
                    .ok_or_else(|| Error::UnknownPeer(m.proxy.clone()))?;
                if p.nonce.is_some() {
                    return Err(Error::UnexpectedMessage("second ProxyHello"));
                }
                p.nonce = Some(m.proxy_nonce);
                let proxy = &cfg.proxies[p.proxy];
                let path = tree
                    .path(leaf)
                    .ok_or(Error::InvalidParameters("leaf outside the tree"))?;
                let leaf_index = u8::try_from(leaf)
                    .map_err(|_| Error::InvalidParameters("more than 255 proxies"))?;
                let body = KeyMaterialBody {
                    one_time_key: SecretBytes::new(p.key.to_bytes().to_vec()),
                    leaf_index,
                    path: path.siblings,
                    proxy_nonce: m.proxy_nonce,
                    server_addr: server_addr.clone(),
                    grant: grant.clone(),
                };
                let sealed = out.seal(&proxy.key, rng, KeyMaterial::TYPE, &id, &body);
                out.send(
                    proxy.addr,
                    KeyMaterial {
                        session: id.0,
                        sealed,
                    },
                );
            }
            (_, other) => return Err(Error::UnexpectedMessage(other.name())),
        }
        self.maybe_list(id, now, rng);
        Ok(())
    }

    fn on_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.maybe_list(id, now, rng);
            if self.sessions.get(&id).is_some_and(|s| now >= s.deadline) {
                if let Some(s) = self.sessions.remove(&id) {
                    if matches!(s.phase, Phase::AwaitRequest) {
                        self.out.event(TrustedEvent::Failed {
                            session: id,
                            error: Error::Timeout("waiting for A's key request"),
                        });
                    }
                }
            }
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.sessions
            .values()
            .map(|s| match &s.phase {
                Phase::AwaitProxies { hello_deadline, .. } => (*hello_deadline).min(s.deadline),
                _ => s.deadline,
            })
            .min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        TrustedEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<TrustedEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<TrustedEvent> {
        &mut self.out
    }
}

/// Maps A's chosen proxy names to configured proxies, refusing unknown names and duplicates.
fn resolve_proxies(cfg: &TrustedConfig, body: &KeyRequestBody) -> Result<Vec<usize>, Error> {
    let mut out = Vec::with_capacity(body.proxies.len());
    for name in &body.proxies {
        let i = cfg
            .proxies
            .iter()
            .position(|p| &p.name == name)
            .ok_or_else(|| Error::UnknownPeer(name.clone()))?;
        if out.contains(&i) {
            return Err(Error::InvalidParameters("proxy chosen twice"));
        }
        out.push(i);
    }
    Ok(out)
}

/// RP must describe a k-of-n split of an x of our size over exactly the chosen proxies.
pub(super) fn check_params(params: &ReconstructionParams, proxies: usize) -> Result<(), Error> {
    SharingScheme::try_from(params.sharing)?;
    OtsScheme::try_from(params.one_time_scheme)?;
    if usize::from(params.shares) != proxies || params.commitments.len() != proxies {
        return Err(Error::InvalidParameters(
            "share count differs from the proxy count",
        ));
    }
    if params.threshold == 0 || params.threshold > params.shares {
        return Err(Error::InvalidParameters("threshold outside 1..=n"));
    }
    if usize::from(params.secret_len) != SECRET_LEN {
        return Err(Error::InvalidParameters("secret length"));
    }
    Ok(())
}
