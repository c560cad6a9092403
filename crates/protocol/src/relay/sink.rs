//! The sink: opens re-encrypted management messages, checks the owner's signature, installs
//! section keys, opens data, and refuses replays — with bounded memory throughout (paper 004
//! §III-B for individual messages, §III-C and Fig. 2 for streams, Fig. 4 for a sink added later).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use core::time::Duration;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::pre;
use m2msec_crypto::sig::VerifyingKey;
use m2msec_wire::relay::management::{Body, Individual, SectionKey};
use m2msec_wire::relay::{Flags, Header, RelayMessage};
use zeroize::Zeroizing;

use super::{Error, SourceSeed};
use crate::{Millis, OpCounts};

/// A source whose streams a sink accepts: its URL (as in every header) and its owner key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedSource {
    /// The source's URL.
    pub url: String,
    /// The key that signs the source's section keys and individual messages.
    pub owner: VerifyingKey,
}

/// A sink's limits. Every piece of state a peer can make the sink keep is bounded by one of
/// these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// Most data messages held while their section key has not arrived (default 4096).
    pub buffer_messages: usize,
    /// Most body bytes held in that buffer (default 4 MiB).
    pub buffer_bytes: usize,
    /// How long a buffered message waits for its key before it is dropped (default 10 min).
    pub buffer_ttl: Duration,
    /// Most sections whose keys are kept (default 1024); the least recently used is evicted,
    /// and sections of its stream that started no later are refused from then on.
    pub max_sections: usize,
    /// Most disjoint ranges of message ids one section remembers (default 1024); ids arrive
    /// mostly in order, so one range usually covers a whole section.
    pub max_ranges_per_section: usize,
    /// How far in the future a section may start, for clock skew (default 5 min).
    pub max_clock_skew: Duration,
    /// Sections that ended longer ago than this are refused; `None` (the default) accepts any
    /// age, as store-and-forward may deliver long after.
    pub max_age: Option<Duration>,
    /// How many individual message ids are remembered for replay detection (default 65 536).
    pub individual_window: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            buffer_messages: 4096,
            buffer_bytes: 4 << 20,
            buffer_ttl: Duration::from_secs(600),
            max_sections: 1024,
            max_ranges_per_section: 1024,
            max_clock_skew: Duration::from_secs(300),
            max_age: None,
            individual_window: 65_536,
        }
    }
}

/// A message the sink opened and authenticated.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The source's URL.
    pub source: String,
    /// The stream (for an individual message: bytes 6..8 of its random id).
    pub stream_id: u16,
    /// The section's key index (individual: bytes 8..10 of its id).
    pub key_index: u16,
    /// The message id (individual: bytes 2..6 of its id).
    pub message_id: u32,
    /// The epoch of the section (or of the individual message).
    pub epoch: u32,
    /// Whether it was an individually protected message rather than stream data.
    pub individual: bool,
    /// The data.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl Delivered {
    /// The 64-bit id of an individual message (for stream data: message id, stream id and key
    /// index concatenated, as in the header).
    #[must_use]
    pub fn individual_id(&self) -> u64 {
        (u64::from(self.message_id) << 32)
            | (u64::from(self.stream_id) << 16)
            | u64::from(self.key_index)
    }
}

impl core::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Delivered")
            .field("source", &self.source)
            .field("stream_id", &self.stream_id)
            .field("key_index", &self.key_index)
            .field("message_id", &self.message_id)
            .field("epoch", &self.epoch)
            .field("individual", &self.individual)
            .field("len", &self.plaintext.len())
            .finish_non_exhaustive()
    }
}

/// Counters of what the sink did, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Sections installed.
    pub sections_installed: u64,
    /// Sections evicted to stay within [`SinkConfig::max_sections`].
    pub sections_evicted: u64,
    /// Data messages buffered while their key was missing.
    pub buffered: u64,
    /// Buffered messages dropped: expired, or refused when their key arrived (forged, replayed).
    pub buffer_dropped: u64,
}

/// How management and individual messages are opened.
enum Opener {
    /// A sink: first-level ciphertexts, re-encrypted by the proxy, with the sink's key.
    Sink(pre::SecretKey),
    /// The source reading its own storage: second-level ciphertexts with the epoch's key.
    Own {
        seed: SourceSeed,
        cache: Option<(u32, pre::SecretKey)>,
    },
}

/// The message ids a section has seen, as disjoint inclusive ranges `start → end`.
#[derive(Default)]
struct IdSet {
    ranges: BTreeMap<u32, u32>,
}

impl IdSet {
    fn contains(&self, id: u32) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, end)| id <= *end)
    }

    /// Adds `id`; `Err` when it would need a range beyond `max_ranges`.
    fn insert(&mut self, id: u32, max_ranges: usize) -> Result<(), Error> {
        if self.contains(id) {
            return Ok(());
        }
        let before = id
            .checked_sub(1)
            .and_then(|p| self.ranges.range(..=p).next_back())
            .filter(|(_, end)| id.checked_sub(1) == Some(**end))
            .map(|(start, _)| *start);
        let after = id
            .checked_add(1)
            .and_then(|n| self.ranges.get(&n).map(|end| (n, *end)));
        match (before, after) {
            (Some(start), Some((next, end))) => {
                self.ranges.remove(&next);
                self.ranges.insert(start, end);
            }
            (Some(start), None) => {
                self.ranges.insert(start, id);
            }
            (None, Some((next, end))) => {
                self.ranges.remove(&next);
                self.ranges.insert(id, end);
            }
            (None, None) => {
                if self.ranges.len() >= max_ranges {
                    return Err(Error::SectionFull);
                }
                self.ranges.insert(id, id);
            }
        }
        Ok(())
    }
}

/// An installed section.
struct Section {
    key: AeadKey,
    epoch: u32,
    not_before_ms: u64,
    seen: IdSet,
    last_used: u64,
}

#[derive(Default)]
struct StreamState {
    sections: HashMap<u16, Section>,
    /// The latest `not_before_ms` of a section evicted from this stream: older sections are
    /// refused, so an evicted section cannot be reopened by a replayed management message.
    retired_through_ms: Option<u64>,
}

type StreamKey = (String, u16);

/// The data sink (α2 of the paper): one AFGH key, many trusted sources.
///
/// Feed it every message the proxy forwards with [`Sink::receive`]. Management messages install
/// section keys after the owner's signature checks; data messages are opened with their
/// section's key; data that arrives before its key waits in a bounded buffer and is delivered by
/// the management message that installs it. A message that fails any check changes nothing.
pub struct Sink {
    opener: Opener,
    trusted: HashMap<String, VerifyingKey>,
    config: SinkConfig,
    streams: HashMap<StreamKey, StreamState>,
    section_count: usize,
    buffer: VecDeque<(Millis, RelayMessage)>,
    buffer_bytes: usize,
    individual_seen: HashSet<(String, u64)>,
    individual_order: VecDeque<(String, u64)>,
    tick: u64,
    stats: SinkStats,
    ops: OpCounts,
}

impl core::fmt::Debug for Sink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sink")
            .field("trusted", &self.trusted.keys().collect::<Vec<_>>())
            .field("sections", &self.section_count)
            .field("buffered", &self.buffer.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// A sink holding `secret` (its AFGH key; the proxy holds re-encryption keys *to* its public
    /// key), accepting the streams of the `trusted` sources.
    #[must_use]
    pub fn new(secret: pre::SecretKey, trusted: Vec<TrustedSource>, config: SinkConfig) -> Self {
        Self::with_opener(Opener::Sink(secret), trusted, config)
    }

    /// The source's reader of its own storage (see `Source::own_reader`).
    pub(super) fn own(
        url: String,
        owner: VerifyingKey,
        seed: SourceSeed,
        config: SinkConfig,
    ) -> Self {
        Self::with_opener(
            Opener::Own { seed, cache: None },
            vec![TrustedSource { url, owner }],
            config,
        )
    }

    fn with_opener(opener: Opener, trusted: Vec<TrustedSource>, config: SinkConfig) -> Self {
        Self {
            opener,
            trusted: trusted.into_iter().map(|t| (t.url, t.owner)).collect(),
            config,
            streams: HashMap::new(),
            section_count: 0,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            individual_seen: HashSet::new(),
            individual_order: VecDeque::new(),
            tick: 0,
            stats: SinkStats::default(),
            ops: OpCounts::default(),
        }
    }

    /// Processes one forwarded message.
    ///
    /// Returns what it delivers: nothing for buffered data, one message for data or an
    /// individual message, and for a management message the data that was waiting for its key
    /// (buffered data that then fails its checks is dropped and counted in
    /// [`SinkStats::buffer_dropped`]).
    ///
    /// # Errors
    /// [`Error::UnknownSource`], [`Error::Malformed`], [`Error::Decode`],
    /// [`Error::Authentication`] (tampering, or re-encrypted for another sink or outside the
    /// epochs granted), [`Error::BadSignature`], [`Error::HeaderMismatch`],
    /// [`Error::OutsideValidity`], [`Error::Replay`], [`Error::BufferFull`],
    /// [`Error::SectionFull`]. A refused message changes nothing (buffered data past
    /// [`SinkConfig::buffer_ttl`] is dropped on every call, refused or not).
    pub fn receive(&mut self, now: Millis, msg: &RelayMessage) -> Result<Vec<Delivered>, Error> {
        self.tick += 1;
        self.expire_buffer(now);
        let Some(owner) = self.trusted.get(&msg.header.source).cloned() else {
            return Err(Error::UnknownSource(msg.header.source.clone()));
        };
        let flags = msg.header.flags;
        match (
            flags.contains(Flags::STREAM),
            flags.contains(Flags::MANAGEMENT),
        ) {
            (true, true) => self.management(now, msg, &owner),
            (true, false) => {
                if flags.contains(Flags::REENCRYPTED) {
                    return Err(Error::Malformed("a data message is never re-encrypted"));
                }
                self.data(now, msg, true)
            }
            (false, false) => self.individual(msg, &owner).map(|d| vec![d]),
            (false, true) => Err(Error::Malformed("MANAGEMENT flag without STREAM")),
        }
    }

    /// What the sink did so far.
    #[must_use]
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// Data messages waiting for their section key.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Cryptographic operations so far (AFGH decryptions and signature checks count as
    /// asymmetric, AEAD as symmetric).
    #[must_use]
    pub fn op_counts(&self) -> OpCounts {
        self.ops
    }

    /// Opens the AFGH part of a management or individual body (paper 004 §III-A): a first-level
    /// ciphertext the proxy re-encrypted for this sink, or a second-level one for the source's
    /// own reader.
    fn open_afgh(&mut self, header: &Header, body: &Body) -> Result<Zeroizing<Vec<u8>>, Error> {
        let aad = header.aad();
        let reencrypted = header.flags.contains(Flags::REENCRYPTED);
        let opened = match &mut self.opener {
            Opener::Sink(secret) => {
                if !reencrypted {
                    return Err(Error::Malformed(
                        "not re-encrypted: only the source can open it",
                    ));
                }
                let c = pre::FirstLevel::from_bytes(&body.afgh.0)
                    .map_err(|_| Error::Malformed("first-level AFGH ciphertext"))?;
                pre::open_first(secret, &c, &aad)
            }
            Opener::Own { seed, cache } => {
                if reencrypted {
                    return Err(Error::Malformed("re-encrypted: only its sink can open it"));
                }
                let c = pre::SecondLevel::from_bytes(&body.afgh.0)
                    .map_err(|_| Error::Malformed("second-level AFGH ciphertext"))?;
                let secret = match cache {
                    Some((epoch, secret)) if *epoch == body.epoch => secret,
                    _ => {
                        self.ops.hash += 1;
                        &cache.insert((body.epoch, seed.epoch_key(body.epoch)?)).1
                    }
                };
                pre::open_second(secret, &c, &aad)
            }
        };
        self.ops.asymmetric += 1;
        opened.map_err(|_| Error::Authentication)
    }

    /// A management message (paper 004 §III-C): the section key, signed by the owner, installed
    /// once the signature and validity check out.
    fn management(
        &mut self,
        now: Millis,
        msg: &RelayMessage,
        owner: &VerifyingKey,
    ) -> Result<Vec<Delivered>, Error> {
        let header = &msg.header;
        let body = Body::from_bytes(&msg.body)?;
        let plaintext = self.open_afgh(header, &body)?;
        let section_key = SectionKey::from_bytes(&plaintext)
            .map_err(|_| Error::Malformed("section key plaintext"))?;
        self.ops.asymmetric += 1;
        owner
            .verify(
                &section_key.signed_input(&header.aad(), body.epoch),
                &section_key.signature.0,
            )
            .map_err(|_| Error::BadSignature)?;
        if section_key.stream_id != header.stream_id || section_key.key_index != header.key_index {
            return Err(Error::HeaderMismatch);
        }
        let suite = AeadSuite::try_from(section_key.suite)
            .map_err(|_| Error::Malformed("unknown AEAD suite"))?;
        let key = AeadKey::new(suite, section_key.key.expose())
            .map_err(|_| Error::Malformed("section key length"))?;
        self.check_validity(now, &section_key)?;

        let stream_key = (header.source.clone(), header.stream_id);
        if let Some(stream) = self.streams.get(&stream_key) {
            // The same section again, or an older use of a key index that has since wrapped.
            let installed = stream
                .sections
                .get(&header.key_index)
                .is_some_and(|s| section_key.not_before_ms <= s.not_before_ms);
            let retired = stream
                .retired_through_ms
                .is_some_and(|r| section_key.not_before_ms <= r);
            if installed || retired {
                return Err(Error::Replay);
            }
        }
        let mut seen = IdSet::default();
        seen.insert(header.message_id, self.config.max_ranges_per_section)?;
        let stream = self.streams.entry(stream_key.clone()).or_default();
        let replaced = stream.sections.insert(
            header.key_index,
            Section {
                key,
                epoch: body.epoch,
                not_before_ms: section_key.not_before_ms,
                seen,
                last_used: self.tick,
            },
        );
        if replaced.is_none() {
            self.section_count += 1;
        }
        self.stats.sections_installed += 1;
        self.evict(&stream_key, header.key_index);
        Ok(self.release(now, &stream_key, header.key_index))
    }

    fn check_validity(&self, now: Millis, section_key: &SectionKey) -> Result<(), Error> {
        let skew = u64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if section_key.not_before_ms > section_key.not_after_ms
            || section_key.not_before_ms > now.0.saturating_add(skew)
        {
            return Err(Error::OutsideValidity);
        }
        if let Some(age) = self.config.max_age {
            let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            if section_key.not_after_ms.saturating_add(age) < now.0 {
                return Err(Error::OutsideValidity);
            }
        }
        Ok(())
    }

    /// Evicts least recently used sections beyond the limit, never the one just installed.
    fn evict(&mut self, keep_stream: &StreamKey, keep_index: u16) {
        while self.section_count > self.config.max_sections.max(1) {
            let victim = self
                .streams
                .iter()
                .flat_map(|(sk, st)| st.sections.iter().map(move |(i, s)| (sk, *i, s.last_used)))
                .filter(|(sk, i, _)| !(*sk == keep_stream && *i == keep_index))
                .min_by_key(|(_, _, used)| *used)
                .map(|(sk, i, _)| (sk.clone(), i));
            let Some((sk, index)) = victim else { return };
            if let Some(stream) = self.streams.get_mut(&sk) {
                if let Some(section) = stream.sections.remove(&index) {
                    stream.retired_through_ms = Some(
                        stream
                            .retired_through_ms
                            .map_or(section.not_before_ms, |r| r.max(section.not_before_ms)),
                    );
                    self.section_count -= 1;
                    self.stats.sections_evicted += 1;
                }
            }
        }
    }

    /// Delivers the buffered data of a section that was just installed.
    fn release(&mut self, now: Millis, stream: &StreamKey, key_index: u16) -> Vec<Delivered> {
        let mut waiting = Vec::new();
        let mut kept = VecDeque::with_capacity(self.buffer.len());
        for (at, m) in self.buffer.drain(..) {
            if m.header.source == stream.0
                && m.header.stream_id == stream.1
                && m.header.key_index == key_index
            {
                self.buffer_bytes = self.buffer_bytes.saturating_sub(m.body.len());
                waiting.push(m);
            } else {
                kept.push_back((at, m));
            }
        }
        self.buffer = kept;
        let mut out = Vec::with_capacity(waiting.len());
        for m in &waiting {
            match self.data(now, m, false) {
                Ok(mut d) => out.append(&mut d),
                Err(_) => self.stats.buffer_dropped += 1,
            }
        }
        out
    }

    fn expire_buffer(&mut self, now: Millis) {
        while let Some((at, m)) = self.buffer.front() {
            if at.after(self.config.buffer_ttl) >= now {
                break;
            }
            self.buffer_bytes = self.buffer_bytes.saturating_sub(m.body.len());
            self.buffer.pop_front();
            self.stats.buffer_dropped += 1;
        }
    }

    fn data(
        &mut self,
        now: Millis,
        msg: &RelayMessage,
        may_buffer: bool,
    ) -> Result<Vec<Delivered>, Error> {
        let header = &msg.header;
        let max_ranges = self.config.max_ranges_per_section;
        let section = self
            .streams
            .get_mut(&(header.source.clone(), header.stream_id))
            .and_then(|s| s.sections.get_mut(&header.key_index));
        let Some(section) = section else {
            if !may_buffer {
                return Err(Error::Malformed("section missing"));
            }
            return self.buffer_data(now, msg).map(|()| Vec::new());
        };
        if section.seen.contains(header.message_id) {
            return Err(Error::Replay);
        }
        self.ops.symmetric += 1;
        let plaintext = section
            .key
            .open_with_nonce_prefix(&header.aad(), &msg.body)
            .map_err(|_| Error::Authentication)?;
        section.seen.insert(header.message_id, max_ranges)?;
        section.last_used = self.tick;
        self.stats.delivered += 1;
        Ok(vec![Delivered {
            source: header.source.clone(),
            stream_id: header.stream_id,
            key_index: header.key_index,
            message_id: header.message_id,
            epoch: section.epoch,
            individual: false,
            plaintext,
        }])
    }

    fn buffer_data(&mut self, now: Millis, msg: &RelayMessage) -> Result<(), Error> {
        if self.buffer.len() >= self.config.buffer_messages
            || self.buffer_bytes.saturating_add(msg.body.len()) > self.config.buffer_bytes
        {
            return Err(Error::BufferFull);
        }
        self.buffer_bytes += msg.body.len();
        self.buffer.push_back((now, msg.clone()));
        self.stats.buffered += 1;
        Ok(())
    }

    /// An individually protected message (paper 004 §III-B): data and owner signature in one
    /// AFGH ciphertext.
    fn individual(&mut self, msg: &RelayMessage, owner: &VerifyingKey) -> Result<Delivered, Error> {
        let header = &msg.header;
        let id = (header.source.clone(), header.individual_id());
        if self.individual_seen.contains(&id) {
            return Err(Error::Replay);
        }
        let body = Body::from_bytes(&msg.body)?;
        let plaintext = self.open_afgh(header, &body)?;
        let individual = Individual::from_bytes(&plaintext)
            .map_err(|_| Error::Malformed("individual message plaintext"))?;
        self.ops.asymmetric += 1;
        owner
            .verify(
                &individual.signed_input(&header.aad(), body.epoch),
                &individual.signature.0,
            )
            .map_err(|_| Error::BadSignature)?;
        if self.config.individual_window > 0 {
            while self.individual_order.len() >= self.config.individual_window {
                if let Some(old) = self.individual_order.pop_front() {
                    self.individual_seen.remove(&old);
                }
            }
            self.individual_seen.insert(id.clone());
            self.individual_order.push_back(id);
        }
        self.stats.delivered += 1;
        Ok(Delivered {
            source: header.source.clone(),
            stream_id: header.stream_id,
            key_index: header.key_index,
            message_id: header.message_id,
            epoch: body.epoch,
            individual: true,
            plaintext: Zeroizing::new(individual.data.expose().to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_merges_ranges() {
        let mut s = IdSet::default();
        for id in [5, 7, 6, 9, u32::MAX, 0, 8] {
            s.insert(id, 10).expect("room");
        }
        // 0, 5..=9, MAX: three ranges (no merge across the wrap).
        assert_eq!(s.ranges.len(), 3);
        for id in [0, 5, 6, 7, 8, 9, u32::MAX] {
            assert!(s.contains(id), "{id}");
        }
        for id in [1, 4, 10, u32::MAX - 1] {
            assert!(!s.contains(id), "{id}");
        }
        let mut t = IdSet::default();
        t.insert(1, 2).expect("room");
        t.insert(3, 2).expect("room");
        assert_eq!(t.insert(5, 2), Err(Error::SectionFull));
        t.insert(2, 2).expect("merges");
        assert_eq!(t.ranges.len(), 1);
        t.insert(5, 2).expect("room again");
        t.insert(5, 2).expect("present: no-op");
    }
}
