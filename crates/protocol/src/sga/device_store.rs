//! What a device daemon keeps beside its [`Device`], without I/O: whether it registered and
//! its inbox (over the [`Store`] trait), its sessions (in memory: the `Device` cannot export
//! their keys), and the commands whose answers wait for an event of the device.
//! [`DeviceRecords`] holds them; [`DeviceAgent`] decides around them — what each control
//! [`Request`] does, what each [`DeviceEvent`] answers, when the server is polled — and the
//! daemon's shell sends the answers and logs the [`Noted`] it hands back.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::CryptoRng;
use m2msec_store::{Result, Store};
use m2msec_wire::cbor::hex;
use serde::{Deserialize, Serialize};

use super::{Device, DeviceEvent, Error as SgaError, RefusalCode, SessionId};
use crate::Millis;

/// Device store table of its own state (key `registered`: the identity it registered as).
pub const DEVICE_TABLE: &str = "sga_device";
/// Device store queue of received messages (JSON [`InboxEntry`] values, in order of arrival).
pub const INBOX_QUEUE: &str = "sga_inbox";

/// How long a `send` command waits for the server's acknowledgement.
pub const SEND_WAIT: Duration = Duration::from_secs(10);

/// The lightweight suites by the names config files, control requests and reports give them.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum SuiteName {
    /// AES-128-CCM with an 8-byte tag.
    #[serde(rename = "aes-128-ccm8")]
    Aes128Ccm8,
    /// ChaCha20-Poly1305.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// Ascon-AEAD128.
    #[serde(rename = "ascon-128")]
    Ascon128,
}

impl SuiteName {
    /// Every suite, in the order the server offers them by default.
    pub const ALL: [Self; 3] = [Self::Aes128Ccm8, Self::ChaCha20Poly1305, Self::Ascon128];

    /// The name in config files, control requests and reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes128Ccm8 => "aes-128-ccm8",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Ascon128 => "ascon-128",
        }
    }

    /// The name of `suite`, if it is a lightweight one.
    #[must_use]
    pub const fn of(suite: AeadSuite) -> Option<Self> {
        match suite {
            AeadSuite::Aes128Ccm8 => Some(Self::Aes128Ccm8),
            AeadSuite::ChaCha20Poly1305 => Some(Self::ChaCha20Poly1305),
            AeadSuite::Ascon128 => Some(Self::Ascon128),
            _ => None,
        }
    }

    /// The suite of `name` (see [`SuiteName::name`]; `ccm`, `chacha` and `ascon` too).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "aes-128-ccm8" | "ccm" => Some(Self::Aes128Ccm8),
            "chacha20-poly1305" | "chacha" => Some(Self::ChaCha20Poly1305),
            "ascon-128" | "ascon" => Some(Self::Ascon128),
            _ => None,
        }
    }
}

impl From<SuiteName> for AeadSuite {
    fn from(name: SuiteName) -> Self {
        match name {
            SuiteName::Aes128Ccm8 => Self::Aes128Ccm8,
            SuiteName::ChaCha20Poly1305 => Self::ChaCha20Poly1305,
            SuiteName::Ascon128 => Self::Ascon128,
        }
    }
}

/// A command to a device daemon (a JSON line on its control channel).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Register with the server (if not registered yet) and answer once registered.
    Register,
    /// Invite `peer` (negotiation and key exchange); answers once a session key is in place.
    Invite {
        /// The other device's identity.
        peer: String,
        /// The suite to negotiate (default: the device's first suite).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suite: Option<SuiteName>,
    },
    /// Send `text` to `to` under the latest session with it; answers once the server holds it
    /// durably.
    Send {
        /// The recipient.
        to: String,
        /// The message.
        text: String,
    },
    /// Every message received so far, in the order of arrival.
    Inbox,
    /// The device's registration and sessions.
    Status,
}

impl Request {
    /// The operation's name, for logs: a request's fields (peers, plaintext) stay out of them.
    #[must_use]
    pub const fn op(&self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Invite { .. } => "invite",
            Self::Send { .. } => "send",
            Self::Inbox => "inbox",
            Self::Status => "status",
        }
    }
}

/// A session, without its key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The other device.
    pub peer: String,
    /// The session id, hex.
    pub session: String,
    /// The session key's fingerprint, hex.
    pub fingerprint: String,
    /// The negotiated suite.
    pub suite: String,
}

/// A received message, as the inbox keeps it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct InboxEntry {
    /// The sender.
    pub from: String,
    /// The session, hex.
    pub session: String,
    /// The sender's message id (0, 1, … per session).
    pub message_id: u64,
    /// The plaintext (lossy UTF-8).
    pub text: String,
}

/// A device daemon's answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// The device is registered.
    Registered {
        /// Its identity.
        device: String,
    },
    /// A session key is in place.
    Established(SessionInfo),
    /// The server holds the message (durably).
    Stored {
        /// The recipient.
        to: String,
        /// The session, hex.
        session: String,
        /// The message id.
        message_id: u64,
    },
    /// Received messages.
    Inbox {
        /// In the order of arrival.
        messages: Vec<InboxEntry>,
    },
    /// The device's state.
    Status {
        /// Its identity.
        device: String,
        /// Whether it is registered.
        registered: bool,
        /// Its sessions, one per peer (the latest).
        sessions: Vec<SessionInfo>,
        /// Messages sent and not yet acknowledged by the server.
        unacknowledged: usize,
    },
    /// The command failed.
    Error {
        /// Why.
        error: String,
    },
}

/// What a command's answer waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The server's registration answer.
    Registered,
    /// A session key with `peer`.
    Established {
        /// The invited device.
        peer: String,
    },
    /// The server's acknowledgement of a message.
    Stored {
        /// Its session.
        session: SessionId,
        /// Its id.
        message_id: u64,
    },
}

impl Wait {
    /// How long the answer waits.
    #[must_use]
    pub const fn within(&self) -> Duration {
        match self {
            Self::Registered => Duration::from_secs(30),
            Self::Established { .. } => Duration::from_secs(60),
            Self::Stored { .. } => SEND_WAIT,
        }
    }

    /// The error answered when the wait runs out.
    #[must_use]
    pub const fn expired(&self) -> &'static str {
        match self {
            Self::Stored { .. } => {
                "the server has not acknowledged the message yet; the device keeps sending it"
            }
            Self::Registered => "no answer from the server to the registration",
            Self::Established { .. } => "no session key within the wait",
        }
    }
}

/// A device's records over its store, and the answers (each an `R`: a reply channel in the
/// daemon) waiting for its events.
pub struct DeviceRecords<R> {
    store: Arc<dyn Store>,
    registered: bool,
    /// The latest session with each peer.
    sessions: BTreeMap<String, (SessionId, SessionInfo)>,
    waiting: Vec<(Wait, Millis, R)>,
}

impl<R> DeviceRecords<R> {
    /// The records of device `identity` in `store`.
    ///
    /// # Errors
    ///
    /// A store error if the store cannot be read.
    pub fn open(store: Arc<dyn Store>, identity: &str) -> Result<Self> {
        let registered = store
            .get(DEVICE_TABLE, b"registered")?
            .is_some_and(|v| v == identity.as_bytes());
        Ok(Self {
            store,
            registered,
            sessions: BTreeMap::new(),
            waiting: Vec::new(),
        })
    }

    /// Whether the device registered.
    #[must_use]
    pub const fn registered(&self) -> bool {
        self.registered
    }

    /// Records that `identity` registered; returns the answers that waited for it.
    ///
    /// # Errors
    ///
    /// A store error if the record could not be made durable.
    pub fn mark_registered(&mut self, identity: &str) -> Result<Vec<R>> {
        self.store
            .put(DEVICE_TABLE, b"registered", identity.as_bytes())?;
        self.registered = true;
        Ok(self.resolve(|w| matches!(w, Wait::Registered)))
    }

    /// Keeps `session` with `info.peer` (replacing an older one); returns the answers that
    /// waited for it.
    pub fn established(&mut self, session: SessionId, info: SessionInfo) -> Vec<R> {
        let peer = info.peer.clone();
        self.sessions.insert(peer.clone(), (session, info));
        self.resolve(|w| matches!(w, Wait::Established { peer: p } if *p == peer))
    }

    /// The peer of `session` (empty if unknown) and the answers that waited for the
    /// acknowledgement of its `message_id`.
    pub fn stored(&mut self, session: SessionId, message_id: u64) -> (String, Vec<R>) {
        let to = self
            .sessions
            .values()
            .find(|(s, _)| *s == session)
            .map(|(_, i)| i.peer.clone())
            .unwrap_or_default();
        let waiting = self.resolve(
            |w| matches!(w, Wait::Stored { session: s, message_id: m } if *s == session && *m == message_id),
        );
        (to, waiting)
    }

    /// The latest session with `peer`.
    #[must_use]
    pub fn session_with(&self, peer: &str) -> Option<SessionId> {
        self.sessions.get(peer).map(|(s, _)| *s)
    }

    /// Every session, one per peer.
    #[must_use]
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.values().map(|(_, i)| i.clone()).collect()
    }

    /// Appends a received message to the inbox (before its delivery is acknowledged) and
    /// returns its entry.
    ///
    /// # Errors
    ///
    /// A store error if the entry could not be made durable.
    pub fn receive(
        &self,
        session: SessionId,
        from: String,
        message_id: u64,
        plaintext: &[u8],
    ) -> Result<InboxEntry> {
        let entry = InboxEntry {
            from,
            session: session.to_string(),
            message_id,
            text: String::from_utf8_lossy(plaintext).into_owned(),
        };
        // Strings and a number do not fail to encode; were one to, nothing is written and the
        // delivery stays unacknowledged.
        let json = serde_json::to_vec(&entry).map_err(|e| m2msec_store::Error::Backend {
            operation: "encoding an inbox entry",
            source: Box::new(e),
        })?;
        self.store.queue_push(INBOX_QUEUE, &json)?;
        Ok(entry)
    }

    /// Every message received so far, in order of arrival; a malformed entry is skipped and
    /// shown to `skipped` with its sequence number.
    ///
    /// # Errors
    ///
    /// A store error if the store cannot be read.
    pub fn inbox(
        &self,
        mut skipped: impl FnMut(u64, &serde_json::Error),
    ) -> Result<Vec<InboxEntry>> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let batch = self.store.queue_range(INBOX_QUEUE, from, 256)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            for (seq, value) in batch {
                match serde_json::from_slice(&value) {
                    Ok(e) => out.push(e),
                    Err(e) => skipped(seq, &e),
                }
            }
        }
        Ok(out)
    }

    /// Keeps `reply` until the event `wait` names, or until its time ([`Wait::within`]) from
    /// `now` runs out.
    pub fn wait(&mut self, wait: Wait, now: Millis, reply: R) {
        let until = now.after(wait.within());
        self.waiting.push((wait, until, reply));
    }

    /// Takes the answers whose wait `matches`.
    pub fn resolve(&mut self, matches: impl Fn(&Wait) -> bool) -> Vec<R> {
        self.take(|w, _| matches(w))
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Takes the answers whose wait ran out at `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<(Wait, R)> {
        self.take(|_, until| until <= now)
    }

    /// When the first wait runs out.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Millis> {
        self.waiting.iter().map(|(_, t, _)| *t).min()
    }

    fn take(&mut self, pick: impl Fn(&Wait, Millis) -> bool) -> Vec<(Wait, R)> {
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(w, t, _)| pick(w, *t));
        self.waiting = kept;
        done.into_iter().map(|(w, _, r)| (w, r)).collect()
    }
}

/// What a device daemon makes of its device's events and of its own steps, in order: for its
/// log, and for a demo that waits on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Noted {
    /// The device is registered; `known`: the server refused the registration because it knows
    /// the device already, which is taken as registered.
    Registered {
        /// Taken as registered after a refusal.
        known: bool,
    },
    /// A session key is in place.
    Established(SessionInfo),
    /// The server holds a message this device sent (durably).
    Stored {
        /// The recipient (empty if the session is unknown).
        to: String,
        /// Its session.
        session: SessionId,
        /// Its id.
        message_id: u64,
    },
    /// A message arrived (once, in order) and is in the inbox.
    Received {
        /// As the inbox keeps it.
        entry: InboxEntry,
        /// The plaintext's length.
        bytes: usize,
    },
    /// A step failed.
    Failed {
        /// What was under way.
        what: &'static str,
        /// Why.
        error: String,
    },
    /// A datagram was refused and ignored.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: String,
    },
    /// An inbox entry that does not decode was skipped.
    Skipped {
        /// Its sequence number in the inbox.
        seq: u64,
        /// Why.
        error: String,
    },
}

/// A device daemon's decisions beside its [`Device`]: control [`Request`]s become the
/// device's calls, its events answer the requests waiting for them (each answer to its `R`, a
/// reply channel in the daemon), and the server is polled while the device is online and
/// registered, so that it knows where to forward. The shell takes the answers
/// ([`Self::poll_answer`]) and what to log or report ([`Self::poll_note`]) after each call.
pub struct DeviceAgent<R> {
    records: DeviceRecords<R>,
    poll_every: Duration,
    next_poll: Option<Millis>,
    online: bool,
    /// A registration is under way.
    registering: bool,
    answers: VecDeque<(R, Response)>,
    notes: VecDeque<Noted>,
}

impl<R> DeviceAgent<R> {
    /// The agent over `records`, polling the server every `poll_every`.
    #[must_use]
    pub fn new(records: DeviceRecords<R>, poll_every: Duration) -> Self {
        Self {
            records,
            poll_every,
            next_poll: None,
            online: true,
            registering: false,
            answers: VecDeque::new(),
            notes: VecDeque::new(),
        }
    }

    /// Whether the store says the device registered.
    #[must_use]
    pub const fn registered(&self) -> bool {
        self.records.registered()
    }

    /// Starts the device at `now`: polls the server at once if it registered, else registers
    /// it when `register`.
    ///
    /// # Errors
    ///
    /// If the registration cannot be encrypted to the server.
    pub fn start(
        &mut self,
        device: &mut Device,
        now: Millis,
        rng: &mut dyn CryptoRng,
        register: bool,
    ) -> core::result::Result<(), SgaError> {
        if self.registered() {
            self.poll(device, now);
        } else if register {
            device.register(now, rng)?;
            self.registering = true;
        }
        Ok(())
    }

    fn poll(&mut self, device: &mut Device, now: Millis) {
        device.poll(now);
        self.next_poll = Some(now.after(self.poll_every));
    }

    /// Handles `request`: its answer goes to `reply` now, or once the event it waits for has
    /// come (or its wait has run out).
    pub fn request(
        &mut self,
        device: &mut Device,
        now: Millis,
        rng: &mut dyn CryptoRng,
        request: Request,
        reply: R,
    ) {
        match self.answer(device, now, rng, request) {
            Ok(answer) => self.answers.push_back((reply, answer)),
            Err(wait) => self.records.wait(wait, now, reply),
        }
    }

    /// A request's answer, or (`Err`) what the answer waits for.
    fn answer(
        &mut self,
        device: &mut Device,
        now: Millis,
        rng: &mut dyn CryptoRng,
        request: Request,
    ) -> core::result::Result<Response, Wait> {
        let failed = |e: &dyn core::fmt::Display| Response::Error {
            error: e.to_string(),
        };
        Ok(match request {
            Request::Register if self.registered() => Response::Registered {
                device: device.identity().to_owned(),
            },
            Request::Register => {
                if !self.registering {
                    if let Err(e) = device.register(now, rng) {
                        return Ok(failed(&e));
                    }
                    self.registering = true;
                }
                return Err(Wait::Registered);
            }
            Request::Invite { .. } if !self.registered() => Response::Error {
                error: "the device is not registered yet (`m2msec sga register`)".into(),
            },
            Request::Invite { peer, suite } => {
                let suite = suite
                    .map(AeadSuite::from)
                    .or_else(|| device.suites().first().copied())
                    .unwrap_or(AeadSuite::Aes128Ccm8);
                match device.invite(now, rng, &peer, suite) {
                    Ok(()) => return Err(Wait::Established { peer }),
                    Err(e) => failed(&e),
                }
            }
            Request::Send { to, text } => {
                let Some(session) = self.records.session_with(&to) else {
                    return Ok(Response::Error {
                        error: format!(
                            "no session with {to:?}: invite it first (`m2msec sga invite {to}`)"
                        ),
                    });
                };
                match device.send(now, rng, session, text.as_bytes()) {
                    Ok(message_id) => {
                        return Err(Wait::Stored {
                            session,
                            message_id,
                        });
                    }
                    Err(e) => failed(&e),
                }
            }
            Request::Inbox => match self.inbox() {
                Ok(messages) => Response::Inbox { messages },
                Err(e) => failed(&e),
            },
            Request::Status => Response::Status {
                device: device.identity().to_owned(),
                registered: self.registered(),
                sessions: self.records.sessions(),
                unacknowledged: device.unacknowledged(),
            },
        })
    }

    /// Every message received so far, from the store; a malformed entry is skipped and noted.
    ///
    /// # Errors
    ///
    /// A store error if the store cannot be read.
    pub fn inbox(&mut self) -> Result<Vec<InboxEntry>> {
        let notes = &mut self.notes;
        self.records.inbox(|seq, e| {
            notes.push_back(Noted::Skipped {
                seq,
                error: e.to_string(),
            });
        })
    }

    /// Takes the device off the network (its radio sleeps) or, `online`, back on it and polls
    /// the server at once.
    pub fn set_online(&mut self, online: bool, device: &mut Device, now: Millis) {
        self.online = online;
        if online {
            self.poll(device, now);
        }
    }

    /// Whether the device is on the network.
    #[must_use]
    pub const fn online(&self) -> bool {
        self.online
    }

    /// The next poll (online and registered only) or the end of a request's wait.
    #[must_use]
    pub fn next_wakeup(&self) -> Option<Millis> {
        let poll = self.next_poll.filter(|_| self.online && self.registered());
        poll.into_iter().chain(self.records.next_deadline()).min()
    }

    /// Polls the server if that is due at `now`, and answers the requests whose wait ran out.
    pub fn on_wakeup(&mut self, device: &mut Device, now: Millis) {
        if self.online && self.registered() && self.next_poll.is_some_and(|t| t <= now) {
            self.poll(device, now);
        }
        for (wait, reply) in self.records.expire(now) {
            self.registering &= wait != Wait::Registered;
            let error = wait.expired().into();
            self.answers.push_back((reply, Response::Error { error }));
        }
    }

    /// Handles one event of `device` at `now`.
    ///
    /// # Errors
    ///
    /// A store error if the registration or the inbox could not be written: the shell stops
    /// before the delivery that depended on it is acknowledged.
    pub fn on_event(&mut self, device: &Device, now: Millis, event: DeviceEvent) -> Result<()> {
        match event {
            DeviceEvent::Registered => self.mark_registered(device, now, false)?,
            DeviceEvent::Established { session, peer, key } => {
                let suite = key.suite();
                let info = SessionInfo {
                    peer,
                    session: session.to_string(),
                    fingerprint: hex(&key.fingerprint()),
                    suite: SuiteName::of(suite)
                        .map_or(suite.name(), SuiteName::name)
                        .into(),
                };
                let waiting = self.records.established(session, info.clone());
                self.answer_all(waiting, &Response::Established(info.clone()));
                self.notes.push_back(Noted::Established(info));
            }
            DeviceEvent::Stored {
                session,
                message_id,
            } => {
                let (to, waiting) = self.records.stored(session, message_id);
                let answer = Response::Stored {
                    to: to.clone(),
                    session: session.to_string(),
                    message_id,
                };
                self.answer_all(waiting, &answer);
                self.notes.push_back(Noted::Stored {
                    to,
                    session,
                    message_id,
                });
            }
            DeviceEvent::Received {
                session,
                from,
                message_id,
                plaintext,
            } => {
                // In the inbox before the delivery acknowledgement of the same call leaves.
                let entry = self
                    .records
                    .receive(session, from, message_id, &plaintext)?;
                let bytes = plaintext.len();
                self.notes.push_back(Noted::Received { entry, bytes });
            }
            DeviceEvent::Failed { what, error } => self.failed(device, now, what, &error)?,
            DeviceEvent::Rejected { remote, error } => {
                let error = error.to_string();
                self.notes.push_back(Noted::Rejected { remote, error });
            }
        }
        Ok(())
    }

    /// A failed registration answers the requests waiting for it, unless the server knows the
    /// device already (taken as registered); any other failure answers the invitations.
    fn failed(
        &mut self,
        device: &Device,
        now: Millis,
        what: &'static str,
        error: &SgaError,
    ) -> Result<()> {
        self.notes.push_back(Noted::Failed {
            what,
            error: error.to_string(),
        });
        if what != "registering" {
            let waiting = self
                .records
                .resolve(|w| matches!(w, Wait::Established { .. }));
            let error = format!("{what}: {error}");
            self.answer_all(waiting, &Response::Error { error });
            return Ok(());
        }
        self.registering = false;
        if matches!(error, SgaError::Refused(RefusalCode::AlreadyRegistered)) {
            return self.mark_registered(device, now, true);
        }
        let waiting = self.records.resolve(|w| matches!(w, Wait::Registered));
        let error = format!("registration failed: {error}");
        self.answer_all(waiting, &Response::Error { error });
        Ok(())
    }

    fn mark_registered(&mut self, device: &Device, now: Millis, known: bool) -> Result<()> {
        let waiting = self.records.mark_registered(device.identity())?;
        self.registering = false;
        self.next_poll = Some(now.after(self.poll_every));
        let answer = Response::Registered {
            device: device.identity().to_owned(),
        };
        self.answer_all(waiting, &answer);
        self.notes.push_back(Noted::Registered { known });
        Ok(())
    }

    fn answer_all(&mut self, replies: Vec<R>, answer: &Response) {
        let answers = replies.into_iter().map(|r| (r, answer.clone()));
        self.answers.extend(answers);
    }

    /// The next answer to send, with where it goes.
    pub fn poll_answer(&mut self) -> Option<(R, Response)> {
        self.answers.pop_front()
    }

    /// The next thing to log or report.
    pub fn poll_note(&mut self) -> Option<Noted> {
        self.notes.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::rng::SeededRng;
    use m2msec_store::MemoryStore;

    use super::*;
    use crate::sga::sim::{Spec, World};

    type TestResult<T = ()> = core::result::Result<T, Box<dyn std::error::Error>>;

    /// A deployment of two devices in memory, an agent (polling every second) for each, and
    /// the seeded RNG of the run.
    fn deployment() -> TestResult<(World, [DeviceAgent<u8>; 2], SeededRng)> {
        let mut rng = SeededRng::from_seed_u64(5);
        let world = World::generate(&Spec::default(), &mut rng)?;
        let agent = |d: &Device| -> Result<DeviceAgent<u8>> {
            let records = DeviceRecords::open(Arc::new(MemoryStore::new()), d.identity())?;
            Ok(DeviceAgent::new(records, Duration::from_secs(1)))
        };
        let agents = [agent(&world.devices[0])?, agent(&world.devices[1])?];
        Ok((world, agents, rng))
    }

    /// Runs the network until idle and hands each device's events to its agent.
    fn settle(w: &mut World, agents: &mut [DeviceAgent<u8>; 2], rng: &mut SeededRng) -> Result<()> {
        w.run_honest(rng);
        let now = w.net.now;
        for (i, agent) in agents.iter_mut().enumerate() {
            for event in std::mem::take(&mut w.events.devices[i]) {
                agent.on_event(&w.devices[i], now, event)?;
            }
        }
        Ok(())
    }

    fn answers(agent: &mut DeviceAgent<u8>) -> Vec<(u8, Response)> {
        core::iter::from_fn(|| agent.poll_answer()).collect()
    }

    fn notes(agent: &mut DeviceAgent<u8>) -> Vec<Noted> {
        core::iter::from_fn(|| agent.poll_note()).collect()
    }

    /// Two `register` requests start one registration and are both answered once it is done;
    /// the server is polled only from then on.
    #[test]
    fn register_requests_wait_for_the_registration() -> TestResult {
        let (mut w, mut a, mut rng) = deployment()?;
        let now = w.net.now;
        a[0].request(&mut w.devices[0], now, &mut rng, Request::Register, 1);
        a[0].request(&mut w.devices[0], now, &mut rng, Request::Register, 2);
        assert!(answers(&mut a[0]).is_empty());
        assert_eq!(
            a[0].next_wakeup(),
            Some(now.after(Wait::Registered.within()))
        );
        settle(&mut w, &mut a, &mut rng)?;
        let registered = Response::Registered {
            device: "device-i".into(),
        };
        assert_eq!(
            answers(&mut a[0]),
            [(1, registered.clone()), (2, registered.clone())]
        );
        assert_eq!(notes(&mut a[0]), [Noted::Registered { known: false }]);
        assert!(a[0].registered());
        assert_eq!(
            a[0].next_wakeup(),
            Some(w.net.now.after(Duration::from_secs(1)))
        );
        // Registered already: answered at once.
        a[0].request(&mut w.devices[0], now, &mut rng, Request::Register, 3);
        assert_eq!(answers(&mut a[0]), [(3, registered)]);
        Ok(())
    }

    /// A device the server knows already is taken as registered; the failure is still noted.
    #[test]
    fn a_refusal_as_already_registered_counts_as_registered() -> TestResult {
        let (mut w, mut a, mut rng) = deployment()?;
        let now = w.net.now;
        w.devices[0].register(now, &mut rng)?;
        settle(&mut w, &mut a, &mut rng)?;
        // The agent's store is new: it registers again, and the server refuses.
        let records = DeviceRecords::open(Arc::new(MemoryStore::new()), "device-i")?;
        a[0] = DeviceAgent::new(records, Duration::from_secs(1));
        a[0].request(&mut w.devices[0], now, &mut rng, Request::Register, 1);
        settle(&mut w, &mut a, &mut rng)?;
        let noted = notes(&mut a[0]);
        assert!(
            matches!(
                &noted[..],
                [
                    Noted::Failed {
                        what: "registering",
                        ..
                    },
                    Noted::Registered { known: true }
                ]
            ),
            "{noted:?}"
        );
        let registered = Response::Registered {
            device: "device-i".into(),
        };
        assert_eq!(answers(&mut a[0]), [(1, registered)]);
        Ok(())
    }

    /// Invite and send are refused before what they need (a registration, a session); once
    /// there, the invitation is answered with the session both sides hold, a message with the
    /// server's acknowledgement, and the recipient's inbox keeps it.
    #[test]
    fn invite_and_send_answer_once_the_device_did_it() -> TestResult {
        let (mut w, mut a, mut rng) = deployment()?;
        let now = w.net.now;
        let invite = Request::Invite {
            peer: "device-j".into(),
            suite: Some(SuiteName::ChaCha20Poly1305),
        };
        a[0].request(&mut w.devices[0], now, &mut rng, invite.clone(), 1);
        let send = Request::Send {
            to: "device-j".into(),
            text: "hello".into(),
        };
        a[0].request(&mut w.devices[0], now, &mut rng, send.clone(), 2);
        let refused = answers(&mut a[0]);
        assert!(
            matches!(&refused[..], [(1, Response::Error { error: e1 }), (2, Response::Error { error: e2 })]
            if e1.contains("not registered") && e2.contains("invite it first")),
            "{refused:?}"
        );
        for (i, agent) in a.iter_mut().enumerate() {
            agent.start(&mut w.devices[i], now, &mut rng, true)?;
        }
        settle(&mut w, &mut a, &mut rng)?;
        notes(&mut a[1]);
        a[0].request(&mut w.devices[0], w.net.now, &mut rng, invite, 3);
        settle(&mut w, &mut a, &mut rng)?;
        let [(3, Response::Established(info))] = &answers(&mut a[0])[..] else {
            panic!("no session answered");
        };
        assert_eq!(info.suite, "chacha20-poly1305");
        assert_eq!(
            notes(&mut a[1]),
            [Noted::Established(SessionInfo {
                peer: "device-i".into(),
                ..info.clone()
            })]
        );
        a[0].request(&mut w.devices[0], w.net.now, &mut rng, send, 4);
        settle(&mut w, &mut a, &mut rng)?;
        let stored = answers(&mut a[0]);
        assert!(
            matches!(&stored[..], [(4, Response::Stored { to, message_id: 0, .. })] if to == "device-j"),
            "{stored:?}"
        );
        a[1].request(&mut w.devices[1], w.net.now, &mut rng, Request::Inbox, 5);
        let [(5, Response::Inbox { messages })] = &answers(&mut a[1])[..] else {
            panic!("no inbox answered");
        };
        assert_eq!(messages.len(), 1);
        assert_eq!(
            (messages[0].from.as_str(), messages[0].text.as_str()),
            ("device-i", "hello")
        );
        Ok(())
    }

    /// A wait that runs out is answered with its error, and a registration that ran out may be
    /// started again; an offline device is not polled.
    #[test]
    fn an_expired_wait_is_answered_and_an_offline_device_not_polled() -> TestResult {
        let (mut w, mut a, mut rng) = deployment()?;
        let now = w.net.now;
        a[0].request(&mut w.devices[0], now, &mut rng, Request::Register, 1);
        let late = now.after(Wait::Registered.within());
        a[0].on_wakeup(&mut w.devices[0], late);
        let error = Wait::Registered.expired().to_owned();
        assert_eq!(answers(&mut a[0]), [(1, Response::Error { error })]);
        a[0].request(&mut w.devices[0], late, &mut rng, Request::Register, 2);
        settle(&mut w, &mut a, &mut rng)?;
        assert!(matches!(
            &answers(&mut a[0])[..],
            [(2, Response::Registered { .. })]
        ));
        a[0].set_online(false, &mut w.devices[0], w.net.now);
        assert!(!a[0].online());
        assert_eq!(a[0].next_wakeup(), None);
        a[0].set_online(true, &mut w.devices[0], w.net.now);
        assert_eq!(
            a[0].next_wakeup(),
            Some(w.net.now.after(Duration::from_secs(1)))
        );
        Ok(())
    }

    /// The suites' names are those of config files and the control channel.
    #[test]
    fn suite_names_round_trip() {
        for s in SuiteName::ALL {
            assert_eq!(SuiteName::parse(s.name()), Some(s));
            assert_eq!(SuiteName::of(s.into()), Some(s));
            let json = serde_json::to_string(&s).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", s.name()));
        }
        assert_eq!(SuiteName::of(AeadSuite::Aes128Gcm), None);
    }

    #[test]
    fn answers_wait_for_their_event_or_their_time() -> Result<()> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut r = DeviceRecords::<u8>::open(store.clone(), "d")?;
        assert!(!r.registered());
        let now = Millis(0);
        r.wait(Wait::Registered, now, 1);
        r.wait(Wait::Established { peer: "j".into() }, now, 2);
        assert_eq!(r.next_deadline(), Some(now.after(SEND_WAIT * 3)));
        assert_eq!(r.mark_registered("d")?, vec![1]);
        assert!(DeviceRecords::<u8>::open(store, "d")?.registered());
        assert!(r.expire(now.after(Duration::from_secs(59))).is_empty());
        let expired = r.expire(now.after(Duration::from_secs(60)));
        assert_eq!(expired, vec![(Wait::Established { peer: "j".into() }, 2)]);
        Ok(())
    }

    #[test]
    fn the_inbox_keeps_messages_in_order() -> Result<()> {
        let r = DeviceRecords::<()>::open(Arc::new(MemoryStore::new()), "d")?;
        let s = SessionId([7; 16]);
        r.receive(s, "i".into(), 0, b"a")?;
        r.receive(s, "i".into(), 1, b"b")?;
        let mut skipped = 0;
        let inbox = r.inbox(|_, _| skipped += 1)?;
        assert_eq!(skipped, 0);
        let texts: Vec<_> = inbox
            .iter()
            .map(|e| (e.message_id, e.text.as_str()))
            .collect();
        assert_eq!(texts, [(0, "a"), (1, "b")]);
        assert_eq!(inbox[0].session, "07".repeat(16));
        Ok(())
    }

    /// An inbox entry that does not decode is skipped and named by its sequence number; the
    /// entries around it are still read.
    #[test]
    fn a_malformed_inbox_entry_is_skipped_and_named() -> Result<()> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let r = DeviceRecords::<()>::open(store.clone(), "d")?;
        let s = SessionId([7; 16]);
        r.receive(s, "i".into(), 0, b"a")?;
        let bad = store.queue_push(INBOX_QUEUE, b"\xff{ not json")?;
        r.receive(s, "i".into(), 1, b"b")?;
        let mut skipped = Vec::new();
        let inbox = r.inbox(|seq, _| skipped.push(seq))?;
        assert_eq!(skipped, [bad]);
        let ids: Vec<_> = inbox.iter().map(|e| e.message_id).collect();
        assert_eq!(ids, [0, 1]);
        Ok(())
    }
}
