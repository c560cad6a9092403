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
    AbortReason, Binding, Error, Established, FinishedKeys, KeyedPeer, Outbox, PeerAddr,
    SECRET_LEN, SessionId, SessionKey, Timeouts, TrustBook, TrustRecord, answer_key, random,
    share_commitment,
};
use crate::{Millis, Role};

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

/// Client A.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    trust: TrustBook,
    session: Option<Box<Session>>,
    out: Outbox<ClientEvent>,
}

/// One chosen proxy, by share index.
#[derive(Debug)]
struct Chosen {
    name: String,
    addr: SocketAddr,
    key: AeadKey,
    capability: u8,
    /// (ID_i, NPi) once T has listed the proxy.
    ticket: Option<([u8; 32], [u8; 16])>,
    /// What the proxy relayed as B's answer.
    relay: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    deadline: Millis,
    client_nonce: [u8; 16],
    x: Zeroizing<Vec<u8>>,
    shares: Vec<(split::Share, [u8; 16])>,
    params: ReconstructionParams,
    chosen: Vec<Chosen>,
    phase: Phase,
}

// Named after what each state waits for, as rustls names its states.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Phase {
    AwaitHellos {
        server_nonce: Option<[u8; 16]>,
        trusted_nonce: Option<[u8; 16]>,
    },
    AwaitProxyList {
        binding: Binding,
    },
    AwaitAnswers {
        binding: Binding,
        /// Relayed byte strings that failed to open: never tried twice.
        refuted: Vec<Vec<u8>>,
        /// y's sealed form once accepted, with MK and the end of the grace period.
        accepted: Option<(Vec<u8>, SessionKey, Millis)>,
    },
    AwaitServerFinished {
        binding: Binding,
        key: SessionKey,
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
                ticket: None,
                relay: None,
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
            x,
            shares: blinded,
            params,
            chosen,
            phase: Phase::AwaitHellos {
                server_nonce: None,
                trusted_nonce: None,
            },
        }));
        Ok(id)
    }
}

impl Role for Client {
    type Message = Message;
    type Event = ClientEvent;
    type Error = Error;
    type Wire = m2msec_wire::collab::Message;

    fn decode(datagram: &[u8]) -> Result<Self::Message, Error> {
        Ok(Message::decode(datagram)?)
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        ClientEvent::Rejected { remote, error }
    }

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let Some(session) = self.session.as_deref_mut() else {
            return Err(Error::UnknownSession);
        };
        let cfg = &self.config;
        let out = &mut self.out;
        let outcome = match (&mut session.phase, msg) {
            (Phase::AwaitHellos { server_nonce, .. }, Message::ServerHello(m))
                if m.session == session.id.0 && remote == cfg.server.addr =>
            {
                if m.server != cfg.server.name {
                    return Err(Error::UnknownPeer(m.server));
                }
                *server_nonce = Some(m.server_nonce);
                Step::Continue
            }
            (Phase::AwaitHellos { trusted_nonce, .. }, Message::TrustedHelloReply(m))
                if m.session == session.id.0 && remote == cfg.trusted.addr =>
            {
                *trusted_nonce = Some(m.trusted_nonce);
                Step::Continue
            }
            (Phase::AwaitProxyList { binding }, Message::ProxyList(m))
                if m.session == session.id.0 =>
            {
                let body: ProxyListBody =
                    out.open(&cfg.trusted.key, ProxyList::TYPE, &session.id, &m.sealed.0)?;
                if body.client_nonce != session.client_nonce {
                    return Err(Error::NonceMismatch);
                }
                let binding = binding.clone();
                match accept_tickets(session, &body) {
                    // T vouched for fewer than k proxies: the session cannot succeed.
                    Err(e @ Error::NotEnoughProxies { .. }) => Step::Fail(e),
                    Err(e) => return Err(e),
                    Ok(()) => {
                        send_fragments(now, session, cfg, out, rng);
                        session.phase = Phase::AwaitAnswers {
                            binding,
                            refuted: Vec::new(),
                            accepted: None,
                        };
                        Step::Continue
                    }
                }
            }
            (Phase::AwaitAnswers { .. }, Message::AnswerRelay(m)) if m.session == session.id.0 => {
                let idx = session
                    .chosen
                    .iter()
                    .position(|c| c.name == m.proxy)
                    .ok_or_else(|| Error::UnknownPeer(m.proxy.clone()))?;
                let chosen = &session.chosen[idx];
                let Some((_, proxy_nonce)) = chosen.ticket else {
                    return Err(Error::UnexpectedMessage("AnswerRelay"));
                };
                let body: RelayBody =
                    out.open(&chosen.key, AnswerRelay::TYPE, &session.id, &m.sealed.0)?;
                if body.proxy_nonce != proxy_nonce {
                    return Err(Error::NonceMismatch);
                }
                if chosen.relay.is_none() {
                    session.chosen[idx].relay = Some(body.wrapped_secret.0);
                }
                Step::Continue
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
                Step::Done(body.proxies)
            }
            (_, Message::Abort(m)) if m.session == session.id.0 && remote == cfg.server.addr => {
                Step::Fail(Error::Aborted(AbortReason::from_code(m.reason)))
            }
            (_, other) => return Err(Error::UnexpectedMessage(other.name())),
        };
        self.advance(now, outcome, rng);
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
                Phase::AwaitAnswers { .. } => "waiting for y through the proxies",
                Phase::AwaitServerFinished { .. } => "waiting for B's Finished",
            };
            self.finish(now, Err(Error::Timeout(phase)));
        } else {
            self.advance(now, Step::Continue, rng);
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        let session = self.session.as_deref()?;
        let grace = match &session.phase {
            Phase::AwaitAnswers {
                accepted: Some((_, _, end)),
                ..
            } => Some(*end),
            _ => None,
        };
        Some(grace.map_or(session.deadline, |g| g.min(session.deadline)))
    }

    fn outbox(&self) -> &Outbox<ClientEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<ClientEvent> {
        &mut self.out
    }
}

impl Client {
    /// Moves the session on after a message or a timer.
    fn advance(&mut self, now: Millis, step: Step, rng: &mut dyn CryptoRng) {
        let step = match step {
            Step::Continue => self.progress(now, rng),
            other => other,
        };
        match step {
            Step::Continue => {}
            Step::Done(participants) => self.finish(now, Ok(participants)),
            Step::Fail(error) => self.finish(now, Err(error)),
        }
    }

    /// Takes whatever step the session's state now allows.
    fn progress(&mut self, now: Millis, rng: &mut dyn CryptoRng) -> Step {
        let Some(session) = self.session.as_deref_mut() else {
            return Step::Continue;
        };
        let cfg = &self.config;
        let out = &mut self.out;
        match &mut session.phase {
            Phase::AwaitHellos {
                server_nonce: Some(nb),
                trusted_nonce: Some(nt),
            } => {
                let binding = Binding {
                    client: cfg.identity.clone(),
                    server: cfg.server.name.clone(),
                    client_nonce: session.client_nonce,
                    server_nonce: *nb,
                };
                let body = KeyRequestBody {
                    server: cfg.server.name.clone(),
                    server_addr: cfg.server.addr.to_string(),
                    proxies: session.chosen.iter().map(|c| c.name.clone()).collect(),
                    trusted_nonce: *nt,
                    params: session.params.clone(),
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
                session.phase = Phase::AwaitProxyList { binding };
                Step::Continue
            }
            Phase::AwaitAnswers {
                binding,
                refuted,
                accepted,
            } => {
                if accepted.is_none() {
                    match try_accept(
                        session.id,
                        &session.x,
                        &session.chosen,
                        cfg,
                        binding,
                        refuted,
                        out,
                    ) {
                        Some((wrapped, key)) => {
                            *accepted = Some((wrapped, key, now.after(cfg.timeouts.answer_grace)));
                        }
                        None => return Step::Continue,
                    }
                }
                let all_in = session
                    .chosen
                    .iter()
                    .all(|c| c.ticket.is_none() || c.relay.is_some());
                match accepted {
                    Some((_, _, grace_end)) if all_in || now >= *grace_end => {}
                    _ => return Step::Continue,
                }
                let Some((wrapped, key, _)) = accepted.take() else {
                    return Step::Continue;
                };
                let faithful: Vec<[u8; 32]> = session
                    .chosen
                    .iter()
                    .filter(|c| c.relay.as_deref() == Some(&wrapped[..]))
                    .filter_map(|c| c.ticket.map(|(id, _)| id))
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
                    Err(e) => return Step::Fail(e),
                }
                session.phase = Phase::AwaitServerFinished {
                    binding: binding.clone(),
                    key,
                };
                Step::Continue
            }
            _ => Step::Continue,
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
                let Phase::AwaitServerFinished { binding, key, .. } = session.phase else {
                    return;
                };
                let mut participants = Vec::new();
                for c in &session.chosen {
                    let took_part = c.ticket.is_some_and(|(id, _)| ids.contains(&id));
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
                for c in session.chosen.iter().filter(|c| c.relay.is_none()) {
                    updated.push(self.trust.judge(now, &c.name, c.capability, false));
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

enum Step {
    Continue,
    Done(Vec<[u8; 32]>),
    Fail(Error),
}

/// Records T's (Pi, IDi, NPi) triples against the chosen proxies.
fn accept_tickets(session: &mut Session, body: &ProxyListBody) -> Result<(), Error> {
    for t in &body.tickets {
        let chosen = session
            .chosen
            .get_mut(usize::from(t.leaf_index))
            .filter(|c| c.name == t.proxy)
            .ok_or(Error::InvalidParameters(
                "ticket for a proxy A did not choose",
            ))?;
        chosen.ticket = Some((t.key_id, t.proxy_nonce));
    }
    let listed = session.chosen.iter().filter(|c| c.ticket.is_some()).count();
    let needed = usize::from(session.params.threshold);
    if listed < needed {
        return Err(Error::NotEnoughProxies {
            available: listed,
            needed,
        });
    }
    Ok(())
}

/// Sends { NPi, xi }_kAPi to every listed proxy.
fn send_fragments(
    now: Millis,
    session: &Session,
    cfg: &ClientConfig,
    out: &mut Outbox<ClientEvent>,
    rng: &mut dyn CryptoRng,
) {
    for (chosen, (share, blinding)) in session.chosen.iter().zip(&session.shares) {
        let Some((_, proxy_nonce)) = chosen.ticket else {
            continue;
        };
        let body = FragmentBody {
            proxy_nonce,
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

/// Looks for `answer_quorum` identical relays that open under the x-derived key.
fn try_accept(
    id: SessionId,
    x: &[u8],
    chosen: &[Chosen],
    cfg: &ClientConfig,
    binding: &Binding,
    refuted: &mut Vec<Vec<u8>>,
    out: &mut Outbox<ClientEvent>,
) -> Option<(Vec<u8>, SessionKey)> {
    let quorum = usize::from(cfg.answer_quorum.min(cfg.k));
    let mut tally: BTreeMap<&[u8], usize> = BTreeMap::new();
    for relay in chosen.iter().filter_map(|c| c.relay.as_deref()) {
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
                let key = binding.master_key(&mut out.ops, x, &y);
                return Some((wrapped.to_vec(), key));
            }
            None => refuted.push(wrapped.to_vec()),
        }
    }
    None
}
