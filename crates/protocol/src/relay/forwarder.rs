//! The proxy's side, per sink: re-encrypts management and individual messages with the
//! re-encryption key of their epoch, passes on the data of the sections it re-encrypted.

use std::collections::{BTreeMap, HashMap, VecDeque};

use m2msec_crypto::pre;
use m2msec_wire::cbor::{self, Bytes};
use m2msec_wire::relay::api::EpochRekey;
use m2msec_wire::relay::management::Body;
use m2msec_wire::relay::{Flags, MAX_URL_LEN, RelayMessage};

use super::Error;
use crate::OpCounts;

/// Most sections a forwarder remembers; the oldest is forgotten first (its late data is then
/// skipped as [`SkipReason::UnknownSection`]).
pub const MAX_FORWARD_SECTIONS: usize = 65_536;

/// What to do with one stored message for this sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// Send this message to the sink: the sink URL is set and, for a management or individual
    /// message, the body is re-encrypted and REENCRYPTED is set.
    Send(RelayMessage),
    /// Do not send it to this sink.
    Skip(SkipReason),
}

/// Why a message is not forwarded to a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The sink holds no re-encryption key for this epoch: it is outside its time window.
    NoRekey {
        /// The message's epoch.
        epoch: u32,
    },
    /// A data message of a section whose management message this forwarder did not
    /// re-encrypt (outside the window, not yet seen, or forgotten).
    UnknownSection {
        /// The stream.
        stream_id: u16,
        /// The section's key index.
        key_index: u16,
    },
    /// The message was re-encrypted already; the proxy stores only what sources send.
    AlreadyReencrypted,
    /// The message is not well formed (what is wrong is named).
    Malformed(&'static str),
}

impl core::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRekey { epoch } => write!(f, "no re-encryption key for epoch {epoch}"),
            Self::UnknownSection {
                stream_id,
                key_index,
            } => write!(
                f,
                "section {key_index} of stream {stream_id} was not re-encrypted for this sink"
            ),
            Self::AlreadyReencrypted => f.write_str("already re-encrypted"),
            Self::Malformed(what) => write!(f, "malformed: {what}"),
        }
    }
}

/// (source, stream id, key index).
type SectionRef = (String, u16, u16);

/// The proxy's forwarding to one sink (§IV): holds the sink's re-encryption keys, one per
/// authorised epoch, and nothing secret.
///
/// [`Forwarder::transform`] each stored message in storage order: a management message of an
/// epoch with a key is re-encrypted (eq. (3)) and remembered as a section; data messages of
/// remembered sections are passed on; everything else is skipped with its reason. The proxy
/// cannot check the owner's signature (it is inside the ciphertext), so a forged management
/// message is re-encrypted too — and refused by the sink.
#[derive(Clone)]
pub struct Forwarder {
    sink_url: String,
    rekeys: BTreeMap<u32, pre::ReKey>,
    sections: HashMap<SectionRef, u32>,
    order: VecDeque<SectionRef>,
    ops: OpCounts,
}

impl core::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Forwarder")
            .field("sink_url", &self.sink_url)
            .field("epochs", &self.epochs())
            .field("sections", &self.sections.len())
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder to `sink_url` with the re-encryption keys of a `SinkGrant`.
    ///
    /// # Errors
    /// [`Error::Config`] for an over-long URL or two keys for one epoch; [`Error::Crypto`] for
    /// a malformed re-encryption key.
    pub fn new(sink_url: String, rekeys: Vec<EpochRekey>) -> Result<Self, Error> {
        if sink_url.len() > MAX_URL_LEN {
            return Err(Error::Config(format!(
                "a sink URL has at most {MAX_URL_LEN} bytes"
            )));
        }
        Ok(Self {
            sink_url,
            rekeys: parse_rekeys(rekeys)?,
            sections: HashMap::new(),
            order: VecDeque::new(),
            ops: OpCounts::default(),
        })
    }

    /// The sink this forwarder serves.
    #[must_use]
    pub fn sink_url(&self) -> &str {
        &self.sink_url
    }

    /// The epochs this sink is authorised for, ascending.
    #[must_use]
    pub fn epochs(&self) -> Vec<u32> {
        self.rekeys.keys().copied().collect()
    }

    /// Replaces the re-encryption keys (the owner changed the sink's window). Sections of
    /// epochs no longer granted are forgotten: their remaining data is skipped from now on.
    ///
    /// # Errors
    /// As [`Forwarder::new`]; on error nothing changed.
    pub fn set_rekeys(&mut self, rekeys: Vec<EpochRekey>) -> Result<(), Error> {
        self.rekeys = parse_rekeys(rekeys)?;
        let rekeys = &self.rekeys;
        self.sections.retain(|_, epoch| rekeys.contains_key(epoch));
        let sections = &self.sections;
        self.order.retain(|s| sections.contains_key(s));
        Ok(())
    }

    /// What to send this sink for one stored message. Never panics; never fails: a message it
    /// cannot use is a [`Forwarded::Skip`] with the reason.
    pub fn transform(&mut self, msg: &RelayMessage) -> Forwarded {
        let flags = msg.header.flags;
        if flags.contains(Flags::REENCRYPTED) {
            return Forwarded::Skip(SkipReason::AlreadyReencrypted);
        }
        let stream = flags.contains(Flags::STREAM);
        let management = flags.contains(Flags::MANAGEMENT);
        match (stream, management) {
            (true, false) => self.data(msg),
            (true, true) | (false, false) => self.reencrypt(msg, stream),
            (false, true) => Forwarded::Skip(SkipReason::Malformed("MANAGEMENT without STREAM")),
        }
    }

    /// Cryptographic operations so far (each re-encryption is one asymmetric operation).
    #[must_use]
    pub fn op_counts(&self) -> OpCounts {
        self.ops
    }

    /// The sections remembered, for persisting next to the proxy's position in the storage:
    /// CBOR `[1, [[source, stream id, key index, epoch], …]]`, oldest first. A restarted proxy
    /// that resumes after a management message needs it to keep passing that section's data.
    #[must_use]
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = cbor::Writer::new();
        w.array(2);
        w.uint(SNAPSHOT_VERSION);
        w.array(self.order.len());
        for s in &self.order {
            let epoch = self.sections.get(s).copied().unwrap_or_default();
            w.array(4);
            w.text(&s.0);
            w.uint(u64::from(s.1));
            w.uint(u64::from(s.2));
            w.uint(u64::from(epoch));
        }
        w.into_bytes()
    }

    /// A forwarder as [`Forwarder::new`], remembering the sections of a
    /// [`Forwarder::snapshot`] whose epochs `rekeys` still grant.
    ///
    /// # Errors
    /// As [`Forwarder::new`]; [`Error::Decode`] for a malformed snapshot.
    pub fn restore(
        sink_url: String,
        rekeys: Vec<EpochRekey>,
        snapshot: &[u8],
    ) -> Result<Self, Error> {
        let mut f = Self::new(sink_url, rekeys)?;
        let mut r = cbor::Reader::new(snapshot);
        r.array_of("forwarder snapshot", 2)?;
        let version = r.uint()?;
        if version != SNAPSHOT_VERSION {
            return Err(m2msec_wire::Error::UnsupportedVersion(version).into());
        }
        let n = r.array()?;
        if n > MAX_FORWARD_SECTIONS as u64 {
            return Err(m2msec_wire::Error::TooManyElements(MAX_FORWARD_SECTIONS).into());
        }
        let range = |_| m2msec_wire::Error::IntegerRange;
        for _ in 0..n {
            r.array_of("forwarder section", 4)?;
            let source = r.text()?.to_owned();
            let stream_id = u16::try_from(r.uint()?).map_err(range)?;
            let key_index = u16::try_from(r.uint()?).map_err(range)?;
            let epoch = u32::try_from(r.uint()?).map_err(range)?;
            if f.rekeys.contains_key(&epoch) {
                f.remember((source, stream_id, key_index), epoch);
            }
        }
        r.finish()?;
        Ok(f)
    }

    fn data(&self, msg: &RelayMessage) -> Forwarded {
        let h = &msg.header;
        if self
            .sections
            .contains_key(&(h.source.clone(), h.stream_id, h.key_index))
        {
            let mut out = msg.clone();
            out.header.sink.clone_from(&self.sink_url);
            Forwarded::Send(out)
        } else {
            Forwarded::Skip(SkipReason::UnknownSection {
                stream_id: h.stream_id,
                key_index: h.key_index,
            })
        }
    }

    fn reencrypt(&mut self, msg: &RelayMessage, stream: bool) -> Forwarded {
        let h = &msg.header;
        let section = (h.source.clone(), h.stream_id, h.key_index);
        let Ok(body) = Body::from_bytes(&msg.body) else {
            return Forwarded::Skip(SkipReason::Malformed("management body"));
        };
        let Some(rekey) = self.rekeys.get(&body.epoch) else {
            if stream {
                // A key index may come back after wrapping: forget an older grant of it.
                self.forget(&section);
            }
            return Forwarded::Skip(SkipReason::NoRekey { epoch: body.epoch });
        };
        let Ok(sealed) = pre::SecondLevel::from_bytes(&body.afgh.0) else {
            return Forwarded::Skip(SkipReason::Malformed("second-level AFGH ciphertext"));
        };
        let reencrypted = pre::reencrypt(rekey, &sealed);
        self.ops.asymmetric += 1;
        let body = Body {
            epoch: body.epoch,
            afgh: Bytes(reencrypted.to_bytes()),
        };
        if stream {
            self.remember(section, body.epoch);
        }
        let mut header = h.clone();
        header.flags = header.flags.with(Flags::REENCRYPTED);
        header.sink.clone_from(&self.sink_url);
        Forwarded::Send(RelayMessage {
            header,
            body: body.to_bytes(),
        })
    }

    fn remember(&mut self, section: SectionRef, epoch: u32) {
        if self.sections.insert(section.clone(), epoch).is_none() {
            self.order.push_back(section);
            while self.order.len() > MAX_FORWARD_SECTIONS {
                if let Some(old) = self.order.pop_front() {
                    self.sections.remove(&old);
                }
            }
        }
    }

    fn forget(&mut self, section: &SectionRef) {
        if self.sections.remove(section).is_some() {
            self.order.retain(|s| s != section);
        }
    }
}

const SNAPSHOT_VERSION: u64 = 1;

fn parse_rekeys(rekeys: Vec<EpochRekey>) -> Result<BTreeMap<u32, pre::ReKey>, Error> {
    let mut out = BTreeMap::new();
    for r in rekeys {
        let rekey = pre::ReKey::from_bytes(&r.rekey.0)?;
        if out.insert(r.epoch, rekey).is_some() {
            return Err(Error::Config(format!(
                "two re-encryption keys for epoch {}",
                r.epoch
            )));
        }
    }
    Ok(out)
}
