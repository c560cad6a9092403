//! The source: one stream's key stream, its management and data messages, individually
//! protected messages, and the re-encryption keys that authorise sinks.

use core::ops::RangeInclusive;
use core::time::Duration;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::pre;
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_crypto::sig::SigningKey;
use m2msec_wire::cbor::{self, Bytes, SecretBytes};
use m2msec_wire::relay::api::EpochRekey;
use m2msec_wire::relay::management::{Body, Individual, SectionKey};
use m2msec_wire::relay::{Flags, Header, MAX_URL_LEN, RelayMessage};

use super::sink::{Delivered, Sink, SinkConfig};
use super::{Error, MAX_REKEYS, SourceSeed, epoch_of, length_ms};
use crate::{Millis, OpCounts};

/// Default rotation by count: a new section key after this many data messages.
pub const DEFAULT_ROTATE_MESSAGES: u32 = 1000;

/// Default rotation by time: a new section key after this long.
pub const DEFAULT_ROTATE_AFTER: Duration = Duration::from_secs(60);

/// How a source seals its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// The source's callback URL, in every header (1 to 255 bytes); sinks trust it by this name.
    pub source_url: String,
    /// The stream's id.
    pub stream_id: u16,
    /// The AEAD of data messages (and of the AFGH payload of management messages).
    pub suite: AeadSuite,
    /// Rotation by count: data messages per section, at least 1.
    pub rotate_messages: u32,
    /// Rotation by time: longest life of a section key, at least 1 ms.
    pub rotate_after: Duration,
    /// Length of an epoch (the source's AFGH key pair changes with it), at least 1 ms.
    pub epoch_length: Duration,
}

impl SourceConfig {
    /// A config with the defaults: ChaCha20-Poly1305, rotation every 1000 messages or 60 s,
    /// one-hour epochs.
    #[must_use]
    pub fn new(source_url: impl Into<String>, stream_id: u16) -> Self {
        Self {
            source_url: source_url.into(),
            stream_id,
            suite: AeadSuite::ChaCha20Poly1305,
            rotate_messages: DEFAULT_ROTATE_MESSAGES,
            rotate_after: DEFAULT_ROTATE_AFTER,
            epoch_length: super::DEFAULT_EPOCH_LENGTH,
        }
    }
}

/// Where a stream stands: what a restarted source needs so that it never reuses a key index or
/// a message id. Persist [`Source::position`] after every seal, before sending what it returned.
///
/// Holds no key: a resumed source starts a new section (a new key, the next key index, a new
/// management message) rather than storing section keys at rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    stream_id: u16,
    next_key_index: u16,
    next_message_id: u32,
    section_floor_ms: u64,
    clock_ms: u64,
}

impl StreamPosition {
    const VERSION: u64 = 1;
    const FIELDS: usize = 6;

    /// The stream.
    #[must_use]
    pub fn stream_id(&self) -> u16 {
        self.stream_id
    }

    /// The key index the next section will use.
    #[must_use]
    pub fn next_key_index(&self) -> u16 {
        self.next_key_index
    }

    /// The message id the next stream message will carry.
    #[must_use]
    pub fn next_message_id(&self) -> u32 {
        self.next_message_id
    }

    /// Deterministic CBOR: `[1, stream_id, next_key_index, next_message_id, section_floor_ms,
    /// clock_ms]`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = cbor::Writer::new();
        w.array(Self::FIELDS);
        w.uint(Self::VERSION);
        w.uint(u64::from(self.stream_id));
        w.uint(u64::from(self.next_key_index));
        w.uint(u64::from(self.next_message_id));
        w.uint(self.section_floor_ms);
        w.uint(self.clock_ms);
        w.into_bytes()
    }

    /// Inverse of [`StreamPosition::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Decode`] on anything but a version-1 position in its one encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = cbor::Reader::new(bytes);
        r.array_of("StreamPosition", Self::FIELDS)?;
        let version = r.uint()?;
        if version != Self::VERSION {
            return Err(m2msec_wire::Error::UnsupportedVersion(version).into());
        }
        let range = |_| m2msec_wire::Error::IntegerRange;
        let position = Self {
            stream_id: u16::try_from(r.uint()?).map_err(range)?,
            next_key_index: u16::try_from(r.uint()?).map_err(range)?,
            next_message_id: u32::try_from(r.uint()?).map_err(range)?,
            section_floor_ms: r.uint()?,
            clock_ms: r.uint()?,
        };
        r.finish()?;
        if position.to_bytes() != bytes {
            return Err(m2msec_wire::Error::NonCanonical.into());
        }
        Ok(position)
    }
}

/// The section being sealed.
struct Section {
    key: AeadKey,
    key_index: u16,
    epoch: u32,
    not_after_ms: u64,
    used: u32,
}

/// The source's AFGH key pair of one epoch (cached: deriving it costs a pairing).
struct EpochKey {
    epoch: u32,
    public: pre::PublicKey,
}

/// The source of one stream (§III-C): rotates the section key, announces each key in a signed
/// management message sealed with AFGH to its own key of the epoch, seals data with the key.
///
/// **Message ids** start at a random value and increase by one (wrapping) with every stream
/// message, management messages included. So they are unique within the stream for 2^32
/// messages, and the proxy and the sink can deduplicate by (source, stream, message id): a
/// retransmission carries the same id, a new message never does. The random start keeps ids
/// apart when a source is re-provisioned without its [`StreamPosition`].
///
/// **Time** is made monotone: the source uses the latest `now` it was given, and each section
/// starts at least 1 ms after the previous one, so a section's signed `not_before_ms` is strictly
/// increasing along the stream (sinks order sections by it).
pub struct Source {
    config: SourceConfig,
    epoch_len_ms: u64,
    rotate_after_ms: u64,
    seed: SourceSeed,
    owner: SigningKey,
    next_message_id: u32,
    next_key_index: u16,
    section_floor_ms: u64,
    clock_ms: u64,
    section: Option<Section>,
    epoch_key: Option<EpochKey>,
    ops: OpCounts,
}

impl core::fmt::Debug for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Source")
            .field("config", &self.config)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl Source {
    /// A source for `config`'s stream. `resume` is the position persisted before a restart:
    /// the source continues after it with a new section. Without it, message ids start at a
    /// random value drawn from `rng` and key indices at 0.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty or over-long URL, zero rotation limits or epoch length, or a
    /// position of another stream.
    pub fn new(
        config: SourceConfig,
        seed: SourceSeed,
        owner: SigningKey,
        resume: Option<StreamPosition>,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        if config.source_url.is_empty() || config.source_url.len() > MAX_URL_LEN {
            return Err(Error::Config(format!(
                "the source URL must have 1 to {MAX_URL_LEN} bytes"
            )));
        }
        if config.rotate_messages == 0 {
            return Err(Error::Config("rotate_messages must be at least 1".into()));
        }
        let epoch_len_ms = length_ms("epoch_length", config.epoch_length)?;
        let rotate_after_ms = length_ms("rotate_after", config.rotate_after)?;
        let (next_message_id, next_key_index, section_floor_ms, clock_ms) = match resume {
            Some(p) if p.stream_id != config.stream_id => {
                return Err(Error::Config(format!(
                    "the stored position is of stream {}, not {}",
                    p.stream_id, config.stream_id
                )));
            }
            Some(p) => (
                p.next_message_id,
                p.next_key_index,
                p.section_floor_ms,
                p.clock_ms,
            ),
            None => (u32::from_be_bytes(random_array(rng)), 0, 0, 0),
        };
        Ok(Self {
            config,
            epoch_len_ms,
            rotate_after_ms,
            seed,
            owner,
            next_message_id,
            next_key_index,
            section_floor_ms,
            clock_ms,
            section: None,
            epoch_key: None,
            ops: OpCounts::default(),
        })
    }

    /// The stream's config.
    #[must_use]
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The owner key, for the proxy API calls only the owner may make.
    pub(super) fn owner(&self) -> &SigningKey {
        &self.owner
    }

    /// Seals one data message: returns the management message of a new section first when a
    /// rotation is due (by count, by time, at an epoch change, or the first seal after
    /// [`Source::new`]), then the data message. Send them in this order, after persisting
    /// [`Source::position`].
    ///
    /// On error nothing changed: no key index or message id was used.
    ///
    /// # Errors
    /// [`Error::ClockOutOfRange`]; [`Error::Crypto`] when `plaintext` exceeds the suite's limit
    /// (65 535 bytes for CCM-8).
    pub fn seal(
        &mut self,
        now: Millis,
        plaintext: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<RelayMessage>, Error> {
        m2msec_crypto::keylog::log("plaintext", plaintext);
        let mut t = now.0.max(self.clock_ms);
        let epoch = epoch_of(t, self.epoch_len_ms)?;
        // The current section, unless a rotation is due (by count, by time, at an epoch change);
        // `None` before the first seal.
        let current = self.section.take().filter(|s| {
            s.used < self.config.rotate_messages && t <= s.not_after_ms && epoch == s.epoch
        });
        let mut message_id = self.next_message_id;
        let mut out = Vec::with_capacity(2);
        let (mut section, opened) = match current {
            Some(section) => (section, false),
            None => {
                t = t.max(self.section_floor_ms);
                let epoch = epoch_of(t, self.epoch_len_ms)?;
                let (section, management) = self.open_section(t, epoch, message_id, rng)?;
                out.push(management);
                message_id = message_id.wrapping_add(1);
                (section, true)
            }
        };
        let header = self.header(Flags::STREAM, message_id, section.key_index, String::new());
        let body = match section
            .key
            .try_seal_random_nonce(rng, &header.aad(), plaintext)
        {
            Ok(body) => body,
            Err(e) => {
                // Nothing changed: a section still current stays; a new one was never used.
                if !opened {
                    self.section = Some(section);
                }
                return Err(e.into());
            }
        };
        out.push(RelayMessage { header, body });
        self.ops.symmetric += 1;

        // Commit.
        if opened {
            self.next_key_index = section.key_index.wrapping_add(1);
            self.section_floor_ms = t.saturating_add(1);
        }
        section.used += 1;
        self.section = Some(section);
        self.next_message_id = message_id.wrapping_add(1);
        self.clock_ms = t;
        Ok(out)
    }

    /// Seals one individually protected message (§III-B): the data and the owner's signature,
    /// sealed with AFGH to the source's key of the current epoch, under a header whose bytes
    /// 2..10 are a random 64-bit id. It uses no stream state.
    ///
    /// # Errors
    /// [`Error::ClockOutOfRange`]; [`Error::Crypto`] when `plaintext` exceeds the suite's limit.
    pub fn seal_individual(
        &mut self,
        now: Millis,
        plaintext: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<RelayMessage, Error> {
        m2msec_crypto::keylog::log("plaintext", plaintext);
        let t = now.0.max(self.clock_ms);
        let epoch = epoch_of(t, self.epoch_len_ms)?;
        let header = Header::individual(
            u64::from_be_bytes(random_array(rng)),
            self.config.source_url.clone(),
            String::new(),
        );
        let aad = header.aad();
        let mut individual = Individual {
            data: SecretBytes::new(plaintext.to_vec()),
            signature: Bytes::default(),
        };
        individual.signature = Bytes(self.owner.sign(rng, &individual.signed_input(&aad, epoch)));
        let public = self.epoch_public_key(epoch)?;
        let sealed = pre::seal(
            &public,
            rng,
            self.config.suite,
            &aad,
            &individual.to_bytes(),
        )?;
        self.ops.asymmetric += 2;
        self.clock_ms = t;
        let body = Body {
            epoch,
            afgh: Bytes(sealed.to_bytes()),
        };
        Ok(RelayMessage {
            header,
            body: body.to_bytes(),
        })
    }

    /// The epoch `now` falls in: `⌊now_ms / epoch_length_ms⌋`.
    ///
    /// # Errors
    /// [`Error::ClockOutOfRange`] beyond epoch `u32::MAX`.
    pub fn epoch_at(&self, now: Millis) -> Result<u32, Error> {
        epoch_of(now.0, self.epoch_len_ms)
    }

    /// The epochs that overlap the time window `[from, until]`, for [`Source::rekeys_for`].
    ///
    /// # Errors
    /// [`Error::ClockOutOfRange`]; [`Error::Config`] if `until` is before `from`.
    pub fn epochs_between(
        &self,
        from: Millis,
        until: Millis,
    ) -> Result<RangeInclusive<u32>, Error> {
        if until < from {
            return Err(Error::Config("the window ends before it starts".into()));
        }
        Ok(self.epoch_at(from)?..=self.epoch_at(until)?)
    }

    /// The re-encryption keys (eq. (2)) that let the proxy re-encrypt, for the holder of
    /// `sink`, the management messages of exactly these epochs: what a `SinkGrant` carries.
    ///
    /// # Errors
    /// [`Error::TooManyEpochs`] beyond [`MAX_REKEYS`] epochs (split the window into grants).
    pub fn rekeys_for(
        &mut self,
        sink: &pre::PublicKey,
        epochs: RangeInclusive<u32>,
    ) -> Result<Vec<EpochRekey>, Error> {
        let count = if epochs.is_empty() {
            0
        } else {
            u64::from(*epochs.end()) - u64::from(*epochs.start()) + 1
        };
        if count > MAX_REKEYS as u64 {
            return Err(Error::TooManyEpochs {
                requested: count,
                max: MAX_REKEYS,
            });
        }
        // `count` ≤ MAX_REKEYS, so it fits.
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(MAX_REKEYS));
        for epoch in epochs {
            let secret = self.seed.epoch_key(epoch)?;
            out.push(EpochRekey {
                epoch,
                rekey: Bytes(secret.rekey_to(sink).to_bytes()),
            });
            self.ops.hash += 1;
            self.ops.asymmetric += 1;
        }
        Ok(out)
    }

    /// The source's AFGH public key of `epoch` (cached for the current epoch). Nobody needs it
    /// to use the relay — the source encrypts to itself — but tools and tests may.
    ///
    /// # Errors
    /// None in practice (see [`SourceSeed::epoch_key`]).
    pub fn epoch_public_key(&mut self, epoch: u32) -> Result<pre::PublicKey, Error> {
        if let Some(k) = self.epoch_key.as_ref().filter(|k| k.epoch == epoch) {
            return Ok(k.public.clone());
        }
        let public = self.seed.epoch_key(epoch)?.public_key();
        self.ops.hash += 1;
        self.ops.asymmetric += 1;
        self.epoch_key = Some(EpochKey {
            epoch,
            public: public.clone(),
        });
        Ok(public)
    }

    /// Where the stream stands; persist it after every seal, before sending.
    #[must_use]
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            stream_id: self.config.stream_id,
            next_key_index: self.next_key_index,
            next_message_id: self.next_message_id,
            section_floor_ms: self.section_floor_ms,
            clock_ms: self.clock_ms,
        }
    }

    /// A [`Sink`] that reads this source's own stored messages back — as the proxy stored them,
    /// second-level, opened with the epoch keys from the seed (AFGH lets the delegator open its
    /// own ciphertexts) — with the same checks as any sink: owner signature, validity, replay.
    #[must_use]
    pub fn own_reader(&self, config: SinkConfig) -> Sink {
        Sink::own(
            self.config.source_url.clone(),
            self.owner.verifying_key(),
            self.seed.clone(),
            config,
        )
    }

    /// Reads back stored messages of this source, in storage order: one result per message, as
    /// [`Sink::receive`] gives it (a management message yields the data buffered for it).
    #[must_use]
    pub fn open_own(
        &self,
        now: Millis,
        messages: &[RelayMessage],
    ) -> Vec<Result<Vec<Delivered>, Error>> {
        let mut reader = self.own_reader(SinkConfig::default());
        messages.iter().map(|m| reader.receive(now, m)).collect()
    }

    /// Cryptographic operations so far (AFGH encryption, signatures and key derivations count
    /// as asymmetric, AEAD as symmetric, HKDF as hash).
    #[must_use]
    pub fn op_counts(&self) -> OpCounts {
        self.ops
    }

    fn header(&self, flags: Flags, message_id: u32, key_index: u16, sink: String) -> Header {
        Header {
            flags,
            message_id,
            stream_id: self.config.stream_id,
            key_index,
            source: self.config.source_url.clone(),
            sink,
        }
    }

    /// A new section starting at `t` in `epoch`, and its management message. Changes nothing
    /// but the epoch key cache and the op counts.
    fn open_section(
        &mut self,
        t: u64,
        epoch: u32,
        message_id: u32,
        rng: &mut dyn CryptoRng,
    ) -> Result<(Section, RelayMessage), Error> {
        let key_index = self.next_key_index;
        let suite = self.config.suite;
        // Sections never straddle epochs: the key's validity ends with the epoch at the latest.
        let epoch_end = (u64::from(epoch) + 1).saturating_mul(self.epoch_len_ms);
        let not_after_ms = t
            .saturating_add(self.rotate_after_ms - 1)
            .min(epoch_end.saturating_sub(1));
        let key = AeadKey::generate(suite, rng);
        m2msec_crypto::keylog::log("relay section key", key.as_bytes());
        let header = self.header(
            Flags::STREAM.with(Flags::MANAGEMENT),
            message_id,
            key_index,
            String::new(),
        );
        let aad = header.aad();
        let mut section_key = SectionKey {
            stream_id: self.config.stream_id,
            key_index,
            suite: suite.id(),
            key: SecretBytes::new(key.as_bytes().to_vec()),
            not_before_ms: t,
            not_after_ms,
            signature: Bytes::default(),
        };
        section_key.signature = Bytes(self.owner.sign(rng, &section_key.signed_input(&aad, epoch)));
        let public = self.epoch_public_key(epoch)?;
        let sealed = pre::seal(&public, rng, suite, &aad, &section_key.to_bytes())?;
        self.ops.asymmetric += 2;
        let body = Body {
            epoch,
            afgh: Bytes(sealed.to_bytes()),
        };
        Ok((
            Section {
                key,
                key_index,
                epoch,
                not_after_ms,
                used: 0,
            },
            RelayMessage {
                header,
                body: body.to_bytes(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_round_trip_and_refusals() {
        let p = StreamPosition {
            stream_id: 9,
            next_key_index: 65535,
            next_message_id: u32::MAX,
            section_floor_ms: 1_700_000_000_001,
            clock_ms: 1_700_000_000_000,
        };
        let bytes = p.to_bytes();
        assert_eq!(StreamPosition::from_bytes(&bytes), Ok(p));
        let mut v2 = bytes.clone();
        v2[1] = 2;
        assert_eq!(
            StreamPosition::from_bytes(&v2),
            Err(Error::Decode(m2msec_wire::Error::UnsupportedVersion(2)))
        );
        assert!(StreamPosition::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(StreamPosition::from_bytes(&trailing).is_err());
        // stream id 65536
        let big = [0x86, 0x01, 0x1a, 0x00, 0x01, 0x00, 0x00, 0, 0, 0, 0];
        assert_eq!(
            StreamPosition::from_bytes(&big),
            Err(Error::Decode(m2msec_wire::Error::IntegerRange))
        );
    }
}
