//! Client A: the constrained device. It only seals, opens, hashes and splits; every public-key
//! operation of the exchange is done by the proxies, and [`Client::op_counts`] shows it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::split::{self, SharingScheme};
use m2msec_wire::cbor::SecretBytes;
use m2msec_wire::collab::{
    AnswerRelay, ClientFinished, ClientHello, FinishedBody, Fragment, FragmentBody, KeyRequest,
    KeyRequestBody, Message, ProxyList, ProxyListBody, ReconstructionParams, RelayBody,
    ServerFinished, TrustedHello,
};
use zeroize::Zeroizing;

use super::{
    AbortReason, Binding, Collab, Error, Established, FinishedKeys, KeyedPeer, Outbox, PeerAddr,
    SECRET_LEN, SessionId, SessionKey, Timeouts, TrustBook, TrustRecord, answer_key, random,
    share_commitment,
};
use crate::{Millis, ProtocolRole};

/// A proxy the client may choose, with the key it shares with it.
#[derive(Clone, Debug)]
pub struct ProxyEntry {
    /// Identity.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// kAPi.
    pub key: AeadKey,
    /// Declared capability level, compared with [`ClientConfig::min_capability`].
    pub capability: u8,
}

/// The client's configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// A's identity.
    pub identity: String,
    /// T and kAT.
    pub trusted: KeyedPeer,
    /// B.
    pub server: PeerAddr,
    /// Proxies to choose from.
    pub proxies: Vec<ProxyEntry>,
    /// Proxies per session (n).
    pub n: u8,
    /// Shares needed to rebuild x (k).
    pub k: u8,
    /// How x is split.
    pub sharing: SharingScheme,
    /// One-time signatures T makes for the proxies.
    pub ots: OtsScheme,
    /// AEAD suite of the keys derived from x and MK.
    pub aead: AeadSuite,
    /// Identical relays of y needed before A accepts it (capped at k).
    pub answer_quorum: u8,
    /// Proxies below this capability level are never chosen.
    pub min_capability: u8,
    /// Waits.
    pub timeouts: Timeouts,
}

impl ClientConfig {
    /// A configuration with the defaults: 3-of-5 Reed-Solomon, Lamport keys, AES-128-CCM-8,
    /// quorum 2.
    #[must_use]
    pub fn new(
        identity: &str,
        trusted: KeyedPeer,
        server: PeerAddr,
        proxies: Vec<ProxyEntry>,
    ) -> Self {
        Self {
            identity: identity.to_owned(),
            trusted,
            server,
            proxies,
            n: 5,
            k: 3,
            sharing: SharingScheme::ReedSolomon,
            ots: OtsScheme::Lamport,
            aead: AeadSuite::Aes128Ccm8,
            answer_quorum: 2,
            min_capability: 0,
            timeouts: Timeouts::default(),
        }
    }
}

/// What the client reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// MK is established.
    Established(Established),
    /// The session failed; no key exists.
    Failed {
        /// The session.
        session: SessionId,
        /// Why.
        error: Error,
    },
    /// Trust records changed: persist them.
    TrustUpdated(Vec<TrustRecord>),
    /// A datagram was refused and ignored.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: Error,
    },
}

impl ClientEvent {
    /// The keys the client established, if this reports them.
    #[must_use]
    pub fn established(&self) -> Option<&Established> {
        match self {
            Self::Established(est) => Some(est),
            _ => None,
        }
    }
}

/// Client A.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    trust: TrustBook,
    session: Option<Box<Session>>,
    out: Outbox<ClientEvent>,
}

/// One chosen proxy, by share index: fixed for the session's life.
#[derive(Debug)]
struct Chosen {
    name: String,
    addr: SocketAddr,
    key: AeadKey,
    capability: u8,
}

/// T's ticket for a proxy it listed: (ID_i, NP_i).
#[derive(Clone, Copy, Debug)]
struct Ticket {
    key_id: [u8; 32],
    proxy_nonce: [u8; 16],
}

/// The proxies T listed, by share index, and what each relayed as B's answer (the first
/// relay of each counts).
#[derive(Debug)]
struct Relays {
    tickets: BTreeMap<usize, Ticket>,
    relayed: BTreeMap<usize, Vec<u8>>,
}

impl Relays {
    /// Every listed proxy has relayed something.
    fn all_in(&self) -> bool {
        self.tickets.keys().all(|i| self.relayed.contains_key(i))
    }
}

/// x, its blinded shares, and the parameters T is told: needed until the fragments are sent.
#[derive(Debug)]
struct Split {
    x: Zeroizing<Vec<u8>>,
    shares: Vec<(split::Share, [u8; 16])>,
    params: ReconstructionParams,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    deadline: Millis,
    client_nonce: [u8; 16],
    chosen: Vec<Chosen>,
    phase: Phase,
}

/// The hellos of B and T, which may come in either order.
#[derive(Debug)]
enum Hellos {
    Neither,
    Server([u8; 16]),
    Trusted([u8; 16]),
}

// Named after what each state waits for, as rustls names its states.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Phase {
    /// The hellos went to B and T.
    AwaitHellos { split: Split, hellos: Hellos },
    /// The key request went to T.
    AwaitProxyList { binding: Binding, split: Split },
    /// The fragments went to the listed proxies; y comes back through them.
    AwaitAnswers {
        binding: Binding,
        x: Zeroizing<Vec<u8>>,
        relays: Relays,
        /// Relayed byte strings that failed to open: never tried twice.
        refuted: Vec<Vec<u8>>,
    },
    /// y accepted as `wrapped` (MK derived): the other listed proxies may still relay until
    /// `grace_end`, so that they are judged on what they relayed.
    AwaitLateRelays {
        binding: Binding,
        relays: Relays,
        wrapped: Vec<u8>,
        key: SessionKey,
        grace_end: Millis,
    },
    /// ClientFinished went to B.
    AwaitServerFinished {
        binding: Binding,
        key: SessionKey,
        relays: Relays,
    },
}

impl Client {
    /// A client with the trust records loaded from its store.
    ///
    /// # Errors
    /// [`Error::Config`] when k, n or the quorum are out of range.
    pub fn new(config: ClientConfig, trust: Vec<TrustRecord>) -> Result<Self, Error> {
        if config.k == 0 || config.k > config.n {
            return Err(Error::Config(format!(
                "threshold k={} must be between 1 and n={}",
                config.k, config.n
            )));
        }
        if config.answer_quorum == 0 {
            return Err(Error::Config("answer quorum must be at least 1".into()));
        }
        let mut role = Self {
            config,
            trust: TrustBook::new(trust),
            session: None,
            out: Outbox::default(),
        };
        role.out
            .set_retransmit_policy(role.config.timeouts.retransmit);
        Ok(role)
    }

    /// The trust records as they stand.
    #[must_use]
    pub fn trust(&self) -> &TrustBook {
        &self.trust
    }

    /// Starts a key establishment with B: picks the proxies, splits a fresh x and sends the two
    /// hellos.
    ///
    /// # Errors
    /// [`Error::Busy`] while a session runs; [`Error::NotEnoughProxies`] when fewer than k
    /// configured proxies pass the capability bar.
    pub fn connect(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Result<SessionId, Error> {
        if self.session.is_some() {
            return Err(Error::Busy);
        }
        let cfg = &self.config;
        let candidates: Vec<(String, u8)> = cfg
            .proxies
            .iter()
            .map(|p| (p.name.clone(), p.capability))
            .collect();
        let picked = self
            .trust
            .select(now, &candidates, cfg.min_capability, usize::from(cfg.n));
        if picked.len() < usize::from(cfg.k) {
            return Err(Error::NotEnoughProxies {
                available: picked.len(),
                needed: usize::from(cfg.k),
            });
        }
        let n = u8::try_from(picked.len()).map_err(|_| Error::Config("too many proxies".into()))?;
        let chosen: Vec<Chosen> = picked
            .iter()
            .filter_map(|name| cfg.proxies.iter().find(|p| &p.name == name))
            .map(|p| Chosen {
                name: p.name.clone(),
                addr: p.addr,
                key: p.key.clone(),
                capability: p.capability,
            })
            .collect();

        let id = SessionId(random(rng));
        let client_nonce = random(rng);
        let x = Zeroizing::new(random::<SECRET_LEN>(rng).to_vec());
        m2msec_crypto::keylog::log("collab x", &x);
        self.out.ops.redundancy += 1;
        let shares = split::split(cfg.sharing, &x, cfg.k, n, rng)?;
        let mut commitments = Vec::with_capacity(shares.len());
        let mut blinded = Vec::with_capacity(shares.len());
        for share in shares {
            let blinding: [u8; 16] = random(rng);
            commitments.push(share_commitment(
                &mut self.out.ops,
                &id,
                share.index,
                &blinding,
                &share.data,
            ));
            blinded.push((share, blinding));
        }
        let params = ReconstructionParams {
            sharing: cfg.sharing.id(),
            threshold: cfg.k,
            shares: n,
            secret_len: u16::try_from(SECRET_LEN).unwrap_or(u16::MAX),
            one_time_scheme: cfg.ots.id(),
            commitments,
        };
        self.out.send_reliable(
            now,
            cfg.server.addr,
            ClientHello {
                session: id.0,
                client: cfg.identity.clone(),
                client_nonce,
                aead: cfg.aead.id(),
            },
        );
        self.out.send_reliable(
            now,
            cfg.trusted.addr,
            TrustedHello {
                session: id.0,
                client: cfg.identity.clone(),
                client_nonce,
            },
        );
        self.session = Some(Box::new(Session {
            id,
            deadline: now.after(cfg.timeouts.session),
            client_nonce,
            chosen,
            phase: Phase::AwaitHellos {
                split: Split {
                    x,
                    shares: blinded,
                    params,
                },
                hellos: Hellos::Neither,
            },
        }));
        Ok(id)
    }
}

/// What an accepted message brings to the session.
enum Input {
    ServerHello([u8; 16]),
    TrustedHello([u8; 16]),
    Tickets(BTreeMap<usize, Ticket>),
    Relay(usize, Vec<u8>),
    Finished(Vec<[u8; 32]>),
    Fail(Error),
}

impl Client {
    /// Moves the session on with what a message brought: each state is consumed and the next
    /// one built from it.
    fn apply(&mut self, now: Millis, input: Input, rng: &mut dyn CryptoRng) {
        let input = match input {
            Input::Finished(ids) => return self.finish(now, Ok(ids)),
            Input::Fail(error) => return self.finish(now, Err(error)),
            other => other,
        };
        let Some(session) = self.session.take() else {
            return;
        };
        let Session {
            id,
            deadline,
            client_nonce,
            chosen,
            phase,
        } = *session;
        let ids = Ids {
            id,
            client_nonce,
            chosen: &chosen,
        };
        let cfg = &self.config;
        let out = &mut self.out;
        let phase = match (phase, input) {
            (Phase::AwaitHellos { split, hellos }, Input::ServerHello(nb)) => match hellos {
                Hellos::Trusted(nt) => key_request(now, &ids, cfg, out, rng, split, nb, nt),
                Hellos::Neither | Hellos::Server(_) => Phase::AwaitHellos {
                    split,
                    hellos: Hellos::Server(nb),
                },
            },
            (Phase::AwaitHellos { split, hellos }, Input::TrustedHello(nt)) => match hellos {
                Hellos::Server(nb) => key_request(now, &ids, cfg, out, rng, split, nb, nt),
                Hellos::Neither | Hellos::Trusted(_) => Phase::AwaitHellos {
                    split,
                    hellos: Hellos::Trusted(nt),
                },
            },
            (Phase::AwaitProxyList { binding, split }, Input::Tickets(tickets)) => {
                send_fragments(now, &ids, &tickets, &split, cfg, out, rng);
                Phase::AwaitAnswers {
                    binding,
                    x: split.x,
                    relays: Relays {
                        tickets,
                        relayed: BTreeMap::new(),
                    },
                    refuted: Vec::new(),
                }
            }
            (
                mut phase @ (Phase::AwaitAnswers { .. } | Phase::AwaitLateRelays { .. }),
                Input::Relay(idx, wrapped),
            ) => {
                if let Phase::AwaitAnswers { relays, .. } | Phase::AwaitLateRelays { relays, .. } =
                    &mut phase
                {
                    relays.relayed.entry(idx).or_insert(wrapped);
                }
                phase
            }
            // `handle` builds each input from the state it fits.
            (phase, _) => phase,
        };
        self.session = Some(Box::new(Session {
            id,
            deadline,
            client_nonce,
            chosen,
            phase,
        }));
        self.progress(now, rng);
    }

    /// Takes whatever step the session's state now allows without a message: accepting y once
    /// enough relays agree, and sending ClientFinished once every listed proxy relayed or the
    /// grace period ended.
    fn progress(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        let Some(session) = self.session.take() else {
            return;
        };
        let mut session = *session;
        let cfg = &self.config;
        let out = &mut self.out;
        let mut failed = None;
        session.phase = match session.phase {
            Phase::AwaitAnswers {
                binding,
                x,
                relays,
                mut refuted,
            } => match try_accept(session.id, &x, &relays, cfg, &binding, &mut refuted, out) {
                Some((wrapped, key)) => Phase::AwaitLateRelays {
                    binding,
                    relays,
                    wrapped,
                    key,
                    grace_end: now.after(cfg.timeouts.answer_grace),
                },
                None => Phase::AwaitAnswers {
                    binding,
                    x,
                    relays,
                    refuted,
                },
            },
            other => other,
        };
        session.phase = match session.phase {
            Phase::AwaitLateRelays {
                binding,
                relays,
                wrapped,
                key,
                grace_end,
            } if relays.all_in() || now >= grace_end => {
                let faithful: Vec<[u8; 32]> = relays
                    .tickets
                    .iter()
                    .filter(|(i, _)| relays.relayed.get(*i) == Some(&wrapped))
                    .map(|(_, t)| t.key_id)
                    .collect();
                match FinishedKeys::derive(&mut out.ops, cfg.aead, &session.id, &key) {
                    Ok(keys) => {
                        let sealed = out.seal(
                            &keys.client,
                            rng,
                            ClientFinished::TYPE,
                            &session.id,
                            &FinishedBody { proxies: faithful },
                        );
                        out.send_reliable(
                            now,
                            cfg.server.addr,
                            ClientFinished {
                                session: session.id.0,
                                sealed,
                            },
                        );
                    }
                    Err(e) => failed = Some(e),
                }
                Phase::AwaitServerFinished {
                    binding,
                    key,
                    relays,
                }
            }
            other => other,
        };
        self.session = Some(Box::new(session));
        if let Some(error) = failed {
            self.finish(now, Err(error));
        }
    }

    /// Ends the session, reports it and updates trust.
    fn finish(&mut self, now: Millis, result: Result<Vec<[u8; 32]>, Error>) {
        let Some(session) = self.session.take() else {
            return;
        };
        // Whatever still waited for an answer belongs to this, the client's one session.
        self.out.retransmits.clear();
        let mut updated = Vec::new();
        match result {
            Ok(ids) => {
                let Phase::AwaitServerFinished {
                    binding,
                    key,
                    relays,
                } = session.phase
                else {
                    return;
                };
                let mut participants = Vec::new();
                for (i, c) in session.chosen.iter().enumerate() {
                    let took_part = relays
                        .tickets
                        .get(&i)
                        .is_some_and(|t| ids.contains(&t.key_id));
                    if took_part {
                        participants.push(c.name.clone());
                    }
                    updated.push(self.trust.judge(now, &c.name, c.capability, took_part));
                }
                self.out.event(ClientEvent::Established(Established {
                    session: session.id,
                    peer: binding.server,
                    key,
                    participants,
                }));
            }
            Err(error) => {
                // Without y nobody can tell an honest relay from a lying one; only the proxies
                // that never delivered anything are blamed.
                let relayed = match &session.phase {
                    Phase::AwaitAnswers { relays, .. }
                    | Phase::AwaitLateRelays { relays, .. }
                    | Phase::AwaitServerFinished { relays, .. } => Some(&relays.relayed),
                    Phase::AwaitHellos { .. } | Phase::AwaitProxyList { .. } => None,
                };
                for (i, c) in session.chosen.iter().enumerate() {
                    if relayed.is_none_or(|r| !r.contains_key(&i)) {
                        updated.push(self.trust.judge(now, &c.name, c.capability, false));
                    }
                }
                self.out.event(ClientEvent::Failed {
                    session: session.id,
                    error,
                });
            }
        }
        if !updated.is_empty() {
            self.out.event(ClientEvent::TrustUpdated(updated));
        }
    }
}

impl ProtocolRole for Client {
    type Protocol = Collab;
    type Event = ClientEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let Some(session) = self.session.as_deref() else {
            return Err(Error::UnknownSession);
        };
        let cfg = &self.config;
        let out = &mut self.out;
        // What the message brings, checked against the state; nothing changes on an error.
        let input = match (&session.phase, msg) {
            (Phase::AwaitHellos { .. }, Message::ServerHello(m))
                if m.session == session.id.0 && remote == cfg.server.addr =>
            {
                if m.server != cfg.server.name {
                    return Err(Error::UnknownPeer(m.server));
                }
                Input::ServerHello(m.server_nonce)
            }
            (Phase::AwaitHellos { .. }, Message::TrustedHelloReply(m))
                if m.session == session.id.0 && remote == cfg.trusted.addr =>
            {
                Input::TrustedHello(m.trusted_nonce)
            }
            (Phase::AwaitProxyList { split, .. }, Message::ProxyList(m))
                if m.session == session.id.0 =>
            {
                let body: ProxyListBody =
                    out.open(&cfg.trusted.key, ProxyList::TYPE, &session.id, &m.sealed.0)?;
                if body.client_nonce != session.client_nonce {
                    return Err(Error::NonceMismatch);
                }
                match accept_tickets(&session.chosen, &split.params, &body) {
                    // T vouched for fewer than k proxies: the session cannot succeed.
                    Err(e @ Error::NotEnoughProxies { .. }) => Input::Fail(e),
                    Err(e) => return Err(e),
                    Ok(tickets) => Input::Tickets(tickets),
                }
            }
            (
                Phase::AwaitAnswers { relays, .. } | Phase::AwaitLateRelays { relays, .. },
                Message::AnswerRelay(m),
            ) if m.session == session.id.0 => {
                let idx = session
                    .chosen
                    .iter()
                    .position(|c| c.name == m.proxy)
                    .ok_or_else(|| Error::UnknownPeer(m.proxy.clone()))?;
                let Some(ticket) = relays.tickets.get(&idx) else {
                    return Err(Error::UnexpectedMessage("AnswerRelay"));
                };
                let body: RelayBody = out.open(
                    &session.chosen[idx].key,
                    AnswerRelay::TYPE,
                    &session.id,
                    &m.sealed.0,
                )?;
                if body.proxy_nonce != ticket.proxy_nonce {
                    return Err(Error::NonceMismatch);
                }
                Input::Relay(idx, body.wrapped_secret.0)
            }
            (Phase::AwaitServerFinished { .. }, Message::AnswerRelay(m))
                if m.session == session.id.0 =>
            {
                // Too late to count; the proxy is judged by B's list.
                let _ = m;
                return Err(Error::UnexpectedMessage("late AnswerRelay"));
            }
            (Phase::AwaitServerFinished { key, .. }, Message::ServerFinished(m))
                if m.session == session.id.0 =>
            {
                let keys = FinishedKeys::derive(&mut out.ops, cfg.aead, &session.id, key)?;
                let body: FinishedBody =
                    out.open(&keys.server, ServerFinished::TYPE, &session.id, &m.sealed.0)?;
                Input::Finished(body.proxies)
            }
            (_, Message::Abort(m)) if m.session == session.id.0 && remote == cfg.server.addr => {
                Input::Fail(Error::Aborted(AbortReason::from_code(m.reason)))
            }
            (_, other) => return Err(Error::UnexpectedMessage(other.name())),
        };
        self.apply(now, input, rng);
        Ok(())
    }

    fn on_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        if now >= session.deadline {
            let phase = match session.phase {
                Phase::AwaitHellos { .. } => "waiting for the hellos of B and T",
                Phase::AwaitProxyList { .. } => "waiting for T's proxy list",
                Phase::AwaitAnswers { .. } | Phase::AwaitLateRelays { .. } => {
                    "waiting for y through the proxies"
                }
                Phase::AwaitServerFinished { .. } => "waiting for B's Finished",
            };
            self.finish(now, Err(Error::Timeout(phase)));
        } else {
            self.progress(now, rng);
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        let session = self.session.as_deref()?;
        let grace = match &session.phase {
            Phase::AwaitLateRelays { grace_end, .. } => Some(*grace_end),
            _ => None,
        };
        Some(grace.map_or(session.deadline, |g| g.min(session.deadline)))
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        ClientEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<ClientEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<ClientEvent> {
        &mut self.out
    }
}

/// What the messages of a session carry whatever its state.
struct Ids<'a> {
    id: SessionId,
    client_nonce: [u8; 16],
    chosen: &'a [Chosen],
}

/// Both hellos are in: sends { B, proxies, NT, RP }_kAT to T.
#[allow(clippy::too_many_arguments)]
fn key_request(
    now: Millis,
    session: &Ids<'_>,
    cfg: &ClientConfig,
    out: &mut Outbox<ClientEvent>,
    rng: &mut dyn CryptoRng,
    split: Split,
    server_nonce: [u8; 16],
    trusted_nonce: [u8; 16],
) -> Phase {
    let binding = Binding {
        client: cfg.identity.clone(),
        server: cfg.server.name.clone(),
        client_nonce: session.client_nonce,
        server_nonce,
    };
    let body = KeyRequestBody {
        server: cfg.server.name.clone(),
        server_addr: cfg.server.addr.to_string(),
        proxies: session.chosen.iter().map(|c| c.name.clone()).collect(),
        trusted_nonce,
        params: split.params.clone(),
    };
    let sealed = out.seal(&cfg.trusted.key, rng, KeyRequest::TYPE, &session.id, &body);
    out.send_reliable(
        now,
        cfg.trusted.addr,
        KeyRequest {
            session: session.id.0,
            client: cfg.identity.clone(),
            sealed,
        },
    );
    Phase::AwaitProxyList { binding, split }
}

/// Matches T's (Pi, IDi, NPi) triples to the chosen proxies.
fn accept_tickets(
    chosen: &[Chosen],
    params: &ReconstructionParams,
    body: &ProxyListBody,
) -> Result<BTreeMap<usize, Ticket>, Error> {
    let mut tickets = BTreeMap::new();
    for t in &body.tickets {
        let index = usize::from(t.leaf_index);
        chosen
            .get(index)
            .filter(|c| c.name == t.proxy)
            .ok_or(Error::InvalidParameters(
                "ticket for a proxy A did not choose",
            ))?;
        tickets.insert(
            index,
            Ticket {
                key_id: t.key_id,
                proxy_nonce: t.proxy_nonce,
            },
        );
    }
    let needed = usize::from(params.threshold);
    if tickets.len() < needed {
        return Err(Error::NotEnoughProxies {
            available: tickets.len(),
            needed,
        });
    }
    Ok(tickets)
}

/// Sends { NPi, xi }_kAPi to every listed proxy.
fn send_fragments(
    now: Millis,
    session: &Ids<'_>,
    tickets: &BTreeMap<usize, Ticket>,
    split: &Split,
    cfg: &ClientConfig,
    out: &mut Outbox<ClientEvent>,
    rng: &mut dyn CryptoRng,
) {
    for (i, (chosen, (share, blinding))) in session.chosen.iter().zip(&split.shares).enumerate() {
        let Some(ticket) = tickets.get(&i) else {
            continue;
        };
        let body = FragmentBody {
            proxy_nonce: ticket.proxy_nonce,
            share_index: share.index,
            share: SecretBytes::new(share.data.to_vec()),
            blinding: SecretBytes::new(blinding.to_vec()),
        };
        let sealed = out.seal(&chosen.key, rng, Fragment::TYPE, &session.id, &body);
        out.send_reliable(
            now,
            chosen.addr,
            Fragment {
                session: session.id.0,
                client: cfg.identity.clone(),
                sealed,
            },
        );
    }
}

/// Looks for `answer_quorum` identical relays that open under the x-derived key: A trusts y
/// only as several proxies relayed it (paper 000, "Secret Key Exchange").
fn try_accept(
    id: SessionId,
    x: &[u8],
    relays: &Relays,
    cfg: &ClientConfig,
    binding: &Binding,
    refuted: &mut Vec<Vec<u8>>,
    out: &mut Outbox<ClientEvent>,
) -> Option<(Vec<u8>, SessionKey)> {
    let quorum = usize::from(cfg.answer_quorum.min(cfg.k));
    let mut tally: BTreeMap<&[u8], usize> = BTreeMap::new();
    for relay in relays.relayed.values() {
        *tally.entry(relay).or_default() += 1;
    }
    for (wrapped, count) in tally {
        if count < quorum || refuted.iter().any(|r| r.as_slice() == wrapped) {
            continue;
        }
        let opened = answer_key(&mut out.ops, cfg.aead, &id, x, binding)
            .ok()
            .and_then(|k| {
                out.ops.symmetric += 1;
                k.open_with_nonce_prefix(&id.0, wrapped).ok()
            });
        match opened {
            Some(y) => {
                // paper 000 eq. (1)
                let key = binding.master_key(&mut out.ops, x, &y);
                return Some((wrapped.to_vec(), key));
            }
            None => refuted.push(wrapped.to_vec()),
        }
    }
    None
}
