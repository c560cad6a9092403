//! What a device daemon keeps beside its [`Device`](super::Device), without I/O: whether it
//! registered and its inbox (over the [`Store`] trait), its sessions (in memory: the `Device`
//! cannot export their keys), and the commands whose answers wait for an event of the device.
//! [`DeviceRecords`] holds them; [`DeviceAgent`](super::DeviceAgent) decides around them. The
//! JSON types of a device daemon's control channel ([`Request`], [`Response`]) and the suites'
//! names ([`SuiteName`]) are here too.

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::Arc;

use m2msec_crypto::aead::AeadSuite;
use m2msec_store::{Result, Store};
use serde::{Deserialize, Serialize};

use super::SessionId;
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

/// `message` (a [`Request`] or a [`Response`]) as one line of the control channel, the framing
/// of both directions: its JSON object and a newline.
///
/// # Errors
///
/// What serde refuses to encode.
pub fn control_line(message: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(message)?;
    bytes.push(b'\n');
    Ok(bytes)
}

impl Request {
    /// The request a control line carries.
    ///
    /// # Errors
    ///
    /// The answer that refuses a malformed line: serde's message, which says what was malformed
    /// and may quote a value of the line (an unknown variant's name); it goes back only to the
    /// local user who sent the line.
    pub fn from_line(line: &[u8]) -> core::result::Result<Self, Response> {
        serde_json::from_slice(line).map_err(|e| Response::Error {
            error: format!("malformed request: {e}"),
        })
    }
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

#[cfg(test)]
mod tests {
    use m2msec_store::MemoryStore;

    use super::*;

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

    /// One JSON object a line, both ways; a truncated request is answered without its text.
    #[test]
    fn control_lines_frame_requests_and_refuse_malformed_ones() {
        let send = Request::Send {
            to: "device-j".into(),
            text: "secret text".into(),
        };
        let line = control_line(&send).unwrap_or_default();
        assert_eq!(
            line,
            b"{\"op\":\"send\",\"to\":\"device-j\",\"text\":\"secret text\"}\n"
        );
        assert_eq!(Request::from_line(&line), Ok(send));
        let bad = br#"{"op":"send","to":"device-j","text":"secret text","x":1"#;
        let Err(Response::Error { error }) = Request::from_line(bad) else {
            panic!("a malformed request is refused with an error answer");
        };
        assert!(error.starts_with("malformed request: "), "{error}");
        assert!(!error.contains("secret"), "{error}");
        let unknown = Request::from_line(br#"{"op":"reboot"}"#);
        assert!(matches!(unknown, Err(Response::Error { .. })));
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
