//! A device daemon's decisions beside its [`Device`], without I/O: what each control
//! [`Request`] does, what each [`DeviceEvent`] answers, when the server is polled. The records
//! they read and write are [`DeviceRecords`]; the daemon's shell sends the answers and logs or
//! reports the [`Noted`] it hands back.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::VecDeque;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::rng::CryptoRng;
use m2msec_store::Result;
use m2msec_wire::cbor::hex;

use super::device_store::{
    DeviceRecords, InboxEntry, Request, Response, SessionInfo, SuiteName, Wait,
};
use super::{Device, DeviceEvent, Error as SgaError, RefusalCode, SessionId};
use crate::Millis;

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
    use std::sync::Arc;

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
}
