//! What a sink keeps in its store and how it answers: the durable seen set (a message the proxy
//! delivers again after a crash is written once), the section keys it accepted (a restarted
//! sink installs them again, since the proxy does not repeat what was acknowledged) and the
//! CoAP code of each verdict. [`StoredSink`] is the sink over its store; the shell writes the
//! output between [`StoredSink::receive`] and [`StoredSink::commit`].

use core::time::Duration;
use std::collections::HashMap;
use std::sync::Arc;

use m2msec_store::{Store, WriteOp};
use m2msec_wire::relay::coap as wire_coap;
use m2msec_wire::relay::coap::coap_lite::{MessageClass, Packet, RequestType, ResponseType};
use m2msec_wire::relay::{Flags, Header, RelayMessage};

use super::{Delivered, Error, Sink};
use crate::{Millis, OpCounts};

/// The sink's table of delivered messages (the durable seen set): key
/// [`seen_key`]`(source, stream, message id)`, empty value.
pub const SEEN_TABLE: &str = "relay_sink_seen";
/// The sink's own state table: [`KEY_OUTPUT_LEN`].
pub const SINK_TABLE: &str = "relay_sink";
/// The management messages the sink accepted (as forwarded, re-encrypted to it), by source,
/// stream and key index. They are first-level ciphertexts that only the sink's key opens.
pub const SECTIONS_TABLE: &str = "relay_sink_sections";
/// Key of the output file's length after the last committed batch (u64 big endian).
pub const KEY_OUTPUT_LEN: &[u8] = b"output_len";

/// How long a data message that waits for its section key is answered "later" (5.03) before it
/// is answered "never" (4.04), so that a proxy retries it while its key may still come but does
/// not retry forever a message whose section the sink refused.
pub const PENDING_GRACE: Duration = Duration::from_secs(30);

/// Pending data messages remembered at most (for the 5.03-then-4.04 rule).
const MAX_PENDING: usize = 65_536;

/// Why the sink over its store could not judge or commit a batch: then nothing of the batch
/// may be acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] m2msec_store::Error),
    /// A record in the store is not what the sink wrote, or an accepted section key does not
    /// encode to be recorded.
    #[error("{what}: {error}")]
    Record {
        /// What the sink was doing with which record.
        what: &'static str,
        /// Why.
        error: String,
    },
    /// An earlier error left the sink ahead of its store (messages judged, not recorded):
    /// it judges nothing more until it is opened again.
    #[error("the sink stopped after an earlier store error")]
    Poisoned,
}

/// The sink store's results.
pub type Result<T, E = StoreError> = core::result::Result<T, E>;

/// The key of a delivered message in [`SEEN_TABLE`]: the source URL's length (one byte), the
/// URL, the stream id and the message id (big endian). An individual message uses its 64-bit
/// id with the flag byte 0xff in place of the stream id.
#[must_use]
pub fn seen_key(d: &Delivered) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + d.source.len() + 11);
    k.push(u8::try_from(d.source.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(d.source.as_bytes());
    if d.individual {
        k.push(0xff);
        k.extend_from_slice(&d.individual_id().to_be_bytes());
    } else {
        k.push(0);
        k.extend_from_slice(&d.stream_id.to_be_bytes());
        k.extend_from_slice(&d.message_id.to_be_bytes());
    }
    k
}

/// The key of a section in [`SECTIONS_TABLE`]: the source URL's length, the URL, the stream
/// id and the key index.
fn section_key(h: &Header) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + h.source.len() + 4);
    k.push(u8::try_from(h.source.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(h.source.as_bytes());
    k.extend_from_slice(&h.stream_id.to_be_bytes());
    k.extend_from_slice(&h.key_index.to_be_bytes());
    k
}

/// What became of one received message.
#[derive(Debug)]
pub enum Verdict {
    /// Opened: the messages it delivered (a management message may release buffered data) are
    /// written to the output and recorded as seen.
    Delivered(usize),
    /// Delivered before (the protocol's or the durable seen set): acknowledge, write nothing.
    Duplicate,
    /// Data waiting for its section key: not acknowledged yet (a CoAP sink answers 5.03 so that
    /// the proxy repeats it; the repetition is a duplicate once the key arrived).
    Pending,
    /// Refused for good.
    Rejected(Error),
}

impl Verdict {
    /// The CoAP response code of this verdict for a message that has been pending since
    /// `pending_for` (for [`Verdict::Pending`]).
    #[must_use]
    pub fn response_code(&self, pending_for: Duration) -> ResponseType {
        match self {
            Self::Delivered(_) | Self::Duplicate => ResponseType::Changed,
            Self::Pending if pending_for < PENDING_GRACE => ResponseType::ServiceUnavailable,
            Self::Pending => ResponseType::NotFound,
            Self::Rejected(e) => match e {
                Error::UnknownSource(_) | Error::OutsideValidity => ResponseType::Forbidden,
                Error::Authentication | Error::BadSignature | Error::HeaderMismatch => {
                    ResponseType::Unauthorized
                }
                Error::BufferFull | Error::SectionFull => ResponseType::ServiceUnavailable,
                _ => ResponseType::BadRequest,
            },
        }
    }
}

/// Installs again the section keys `store` holds into `sink` (at `now`), and forgets those it
/// no longer accepts: returns how many were installed and why the others were forgotten.
///
/// # Errors
///
/// Store errors.
pub fn reinstall(
    sink: &mut Sink,
    store: &dyn Store,
    now: Millis,
) -> m2msec_store::Result<(usize, Vec<Error>)> {
    let mut installed = 0;
    let (mut stale, mut why) = (Vec::new(), Vec::new());
    for (key, bytes) in store.scan(SECTIONS_TABLE)? {
        match RelayMessage::decode(&bytes)
            .map_err(Error::from)
            .and_then(|m| sink.receive(now, &m))
        {
            Ok(_) => installed += 1,
            Err(e) => {
                why.push(e);
                stale.push(key);
            }
        }
    }
    if !stale.is_empty() {
        let ops: Vec<WriteOp<'_>> = stale
            .iter()
            .map(|key| WriteOp::Remove {
                table: SECTIONS_TABLE,
                key,
            })
            .collect();
        store.write_batch(&ops)?;
    }
    Ok((installed, why))
}

/// What a batch of messages that arrived together did.
#[derive(Debug, Default)]
pub struct Batch {
    /// One verdict per message, in order.
    pub verdicts: Vec<Verdict>,
    /// The deliveries new to the seen set, with their [`seen_key`]s.
    pub fresh: Vec<(Vec<u8>, Delivered)>,
    /// Deliveries that were duplicates (of the protocol's or of the durable seen set).
    pub duplicates: u64,
    /// The accepted management messages, by [`section_key`].
    sections: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    /// Passes `messages` to `sink` at `now` and judges each against the seen set in `store`.
    ///
    /// # Errors
    ///
    /// Store errors, and an accepted section key that does not encode: then nothing of the
    /// batch may be acknowledged.
    pub fn receive<'m>(
        sink: &mut Sink,
        store: &dyn Store,
        now: Millis,
        messages: impl IntoIterator<Item = &'m RelayMessage>,
    ) -> Result<Self> {
        let mut batch = Self::default();
        for msg in messages {
            let management = msg.header.flags.contains(Flags::MANAGEMENT);
            let received = sink.receive(now, msg);
            if received.is_ok() && management {
                // A section key that cannot be recorded fails the batch: none is acknowledged.
                let bytes = msg.encode().map_err(|e| StoreError::Record {
                    what: "recording a section key",
                    error: e.to_string(),
                })?;
                batch.sections.push((section_key(&msg.header), bytes));
            }
            let verdict = match received {
                Ok(delivered) if delivered.is_empty() && management => Verdict::Delivered(0),
                Ok(delivered) if delivered.is_empty() => Verdict::Pending,
                Ok(delivered) => {
                    let mut n = 0;
                    for d in delivered {
                        let key = seen_key(&d);
                        if batch.fresh.iter().any(|(k, _)| *k == key)
                            || store.get(SEEN_TABLE, &key)?.is_some()
                        {
                            batch.duplicates += 1;
                        } else {
                            batch.fresh.push((key, d));
                            n += 1;
                        }
                    }
                    if n == 0 {
                        Verdict::Duplicate
                    } else {
                        Verdict::Delivered(n)
                    }
                }
                Err(Error::Replay) => {
                    batch.duplicates += 1;
                    Verdict::Duplicate
                }
                Err(e) => Verdict::Rejected(e),
            };
            batch.verdicts.push(verdict);
        }
        Ok(batch)
    }

    /// Whether the batch has nothing to commit.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.sections.is_empty()
    }

    /// The writes that commit the batch in one transaction: its deliveries into the seen set,
    /// the output file's length after them (none for standard output), its section keys.
    #[must_use]
    pub fn commit_ops<'a>(&'a self, output_len: Option<&'a [u8; 8]>) -> Vec<WriteOp<'a>> {
        let seen = self.fresh.iter().map(|(key, _)| WriteOp::Put {
            table: SEEN_TABLE,
            key,
            value: &[],
        });
        let len = output_len.map(|len| WriteOp::Put {
            table: SINK_TABLE,
            key: KEY_OUTPUT_LEN,
            value: len,
        });
        let sections = self.sections.iter().map(|(key, value)| WriteOp::Put {
            table: SECTIONS_TABLE,
            key,
            value,
        });
        seen.chain(len).chain(sections).collect()
    }
}

/// A [`Sink`] over its store: the durable seen set, the section keys it accepted and the
/// output length committed with them, and what it delivered and dropped as a duplicate.
///
/// [`StoredSink::receive`] judges what arrived together; the shell writes the batch's fresh
/// deliveries to its output and makes them durable, then [`StoredSink::commit`]s the seen set
/// and the output's new length in one transaction, and only then acknowledges. A sink killed
/// between the two steps cuts its output back to [`Reopened::output_len`] when it starts again,
/// and the proxy, which had no acknowledgement, delivers those messages again: each appears in
/// the output once.
///
/// After an error, or a batch to commit that was never committed (the shell failed to write
/// its output), it judges nothing more ([`StoreError::Poisoned`]): its protocol sink has taken
/// messages its store did not record, and a copy of one would be judged a duplicate and
/// acknowledged although it was never written.
pub struct StoredSink {
    sink: Sink,
    store: Arc<dyn Store>,
    delivered: u64,
    duplicates: u64,
    poisoned: bool,
    /// A batch with something to commit was handed out and not committed yet.
    uncommitted: bool,
}

/// What a sink found in its store when it opened.
#[derive(Debug)]
pub struct Reopened {
    /// The output's length after the last committed batch (none before the first, or for
    /// standard output).
    pub output_len: Option<u64>,
    /// Section keys installed again.
    pub installed: usize,
    /// Why the stored section keys no longer accepted were forgotten.
    pub forgotten: Vec<Error>,
}

impl StoredSink {
    /// `sink` over `store`, with the section keys accepted before a restart installed again
    /// (at `now`).
    ///
    /// # Errors
    ///
    /// Store errors, and a stored output length that is not 8 bytes.
    pub fn open(mut sink: Sink, store: Arc<dyn Store>, now: Millis) -> Result<(Self, Reopened)> {
        // A length that does not decode is corruption: read as none, the output's tail that
        // was never acknowledged would be kept and then written a second time.
        let output_len = store
            .get(SINK_TABLE, KEY_OUTPUT_LEN)?
            .map(|v| {
                super::fixed_record(&v).map_err(|error| StoreError::Record {
                    what: "reading the sink's output length",
                    error,
                })
            })
            .transpose()?
            .map(u64::from_be_bytes);
        let (installed, forgotten) = reinstall(&mut sink, &*store, now)?;
        let stored = Self {
            sink,
            store,
            delivered: 0,
            duplicates: 0,
            poisoned: false,
            uncommitted: false,
        };
        let reopened = Reopened {
            output_len,
            installed,
            forgotten,
        };
        Ok((stored, reopened))
    }

    /// Judges `messages` that arrived together at `now` ([`Batch::receive`]).
    ///
    /// # Errors
    ///
    /// As [`Batch::receive`]: then nothing of the batch may be acknowledged, and the sink is
    /// poisoned; [`StoreError::Poisoned`] after an earlier error, or when the last batch with
    /// something to commit was not committed (which poisons it too).
    pub fn receive<'m>(
        &mut self,
        now: Millis,
        messages: impl IntoIterator<Item = &'m RelayMessage>,
    ) -> Result<Batch> {
        self.poisoned |= self.uncommitted;
        self.unpoisoned()?;
        let batch = Batch::receive(&mut self.sink, &*self.store, now, messages);
        let batch = self.poison_on_error(batch)?;
        self.duplicates += batch.duplicates;
        self.uncommitted = !batch.is_empty();
        Ok(batch)
    }

    /// Commits `batch` once its deliveries are durable in the output, whose length is now
    /// `output_len` (none for standard output).
    ///
    /// # Errors
    ///
    /// Store errors: then nothing of the batch may be acknowledged, and the sink is poisoned;
    /// [`StoreError::Poisoned`] after an earlier error.
    pub fn commit(&mut self, batch: &Batch, output_len: Option<u64>) -> Result<()> {
        self.unpoisoned()?;
        let len = output_len.map(u64::to_be_bytes);
        let written = self.store.write_batch(&batch.commit_ops(len.as_ref()));
        self.poison_on_error(written.map_err(StoreError::from))?;
        self.uncommitted = false;
        self.delivered += batch.fresh.len() as u64;
        Ok(())
    }

    fn unpoisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    fn poison_on_error<T>(&mut self, r: Result<T>) -> Result<T> {
        self.poisoned |= r.is_err();
        r
    }

    /// The protocol sink's cryptographic operations.
    #[must_use]
    pub fn op_counts(&self) -> OpCounts {
        self.sink.op_counts()
    }

    /// Messages delivered and committed so far.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Deliveries dropped as duplicates so far.
    #[must_use]
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// The data messages waiting for their section key, by source, stream and message id, with
/// when each was first answered "later".
#[derive(Debug, Default)]
pub struct Pending(HashMap<(String, u16, u32), Millis>);

impl Pending {
    /// The CoAP code of the message with `header` judged `verdict` at `now`: 5.03 while it has
    /// been pending for less than [`PENDING_GRACE`], then 4.04.
    pub fn response_code(
        &mut self,
        header: &Header,
        verdict: &Verdict,
        now: Millis,
    ) -> ResponseType {
        let key = (header.source.clone(), header.stream_id, header.message_id);
        let pending_for = if matches!(verdict, Verdict::Pending) {
            if self.0.len() >= MAX_PENDING {
                self.0.clear();
            }
            let since = *self.0.entry(key).or_insert(now);
            Duration::from_millis(now.0.saturating_sub(since.0))
        } else {
            self.0.remove(&key);
            Duration::ZERO
        };
        verdict.response_code(pending_for)
    }
}

/// A CoAP request a sink does not take as a relay message.
#[derive(Debug)]
pub enum Refused {
    /// A method other than POST (4.05).
    NotPost,
    /// A POST to another resource (4.04).
    OtherPath,
    /// A body that is not a relay message (4.00), and why (for the sink's log).
    NotRelayMessage(m2msec_wire::Error),
}

impl Refused {
    /// The code the sink answers with.
    #[must_use]
    pub fn code(&self) -> ResponseType {
        match self {
            Self::NotPost => ResponseType::MethodNotAllowed,
            Self::OtherPath => ResponseType::NotFound,
            Self::NotRelayMessage(_) => ResponseType::BadRequest,
        }
    }
}

/// The relay message a CoAP request to a sink posts to its resource `path` (no leading `/`).
///
/// # Errors
///
/// [`Refused`], in this order: not a POST, another path, a body that is not a relay message.
pub fn posted(request: &Packet, path: &str) -> core::result::Result<RelayMessage, Refused> {
    if request.header.code != MessageClass::Request(RequestType::Post) {
        return Err(Refused::NotPost);
    }
    if wire_coap::uri_path(request) != path {
        return Err(Refused::OtherPath);
    }
    wire_coap::from_request(request).map_err(Refused::NotRelayMessage)
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::pre;
    use m2msec_crypto::rng::SeededRng;
    use m2msec_crypto::sig::{SigSuite, SigningKey};
    use m2msec_store::MemoryStore;

    use super::*;
    use crate::relay::{
        Forwarded, Forwarder, SinkConfig, Source, SourceConfig, SourceSeed, TrustedSource,
    };

    #[test]
    fn verdicts_answer_with_their_codes() {
        let code = |v: Verdict| v.response_code(Duration::ZERO);
        assert_eq!(code(Verdict::Delivered(0)), ResponseType::Changed);
        assert_eq!(code(Verdict::Duplicate), ResponseType::Changed);
        assert_eq!(code(Verdict::Pending), ResponseType::ServiceUnavailable);
        assert_eq!(
            Verdict::Pending.response_code(PENDING_GRACE),
            ResponseType::NotFound
        );
        let rejected = |e| code(Verdict::Rejected(e));
        assert_eq!(
            rejected(Error::UnknownSource("x".into())),
            ResponseType::Forbidden
        );
        assert_eq!(rejected(Error::OutsideValidity), ResponseType::Forbidden);
        assert_eq!(rejected(Error::Authentication), ResponseType::Unauthorized);
        assert_eq!(rejected(Error::HeaderMismatch), ResponseType::Unauthorized);
        assert_eq!(
            rejected(Error::BufferFull),
            ResponseType::ServiceUnavailable
        );
        assert_eq!(rejected(Error::Malformed("x")), ResponseType::BadRequest);
    }

    /// A POST to the sink's path is its relay message; anything else is refused with its code.
    #[test]
    fn only_a_post_to_the_sinks_path_is_taken() -> core::result::Result<(), m2msec_wire::Error> {
        use m2msec_wire::relay::coap::Target;
        let msg = RelayMessage {
            header: Header {
                source: "coap://s/".into(),
                message_id: 7,
                ..Header::default()
            },
            body: vec![1, 2, 3],
        };
        let request = wire_coap::to_request(&msg, &Target::Path("sink"), 1, true)?;
        let code = |request: &Packet, path| match posted(request, path) {
            Ok(m) => {
                assert_eq!(m, msg);
                ResponseType::Changed
            }
            Err(r) => r.code(),
        };
        assert_eq!(code(&request, "sink"), ResponseType::Changed);
        assert_eq!(code(&request, "other"), ResponseType::NotFound);
        let mut get = request.clone();
        get.header.code = MessageClass::Request(RequestType::Get);
        assert_eq!(code(&get, "sink"), ResponseType::MethodNotAllowed);
        // Not a relay message: its token is not the 4-byte message id.
        let mut junk = request;
        junk.set_token(vec![1]);
        assert_eq!(code(&junk, "sink"), ResponseType::BadRequest);
        Ok(())
    }

    #[test]
    fn a_pending_message_is_answered_later_then_never() {
        let header = Header {
            source: "coap://s/".into(),
            ..Header::default()
        };
        let mut pending = Pending::default();
        let at = |s: u64| Millis(1000 * s);
        let code = |p: &mut Pending, v, t| p.response_code(&header, &v, t);
        assert_eq!(
            code(&mut pending, Verdict::Pending, at(1)),
            ResponseType::ServiceUnavailable
        );
        assert_eq!(
            code(&mut pending, Verdict::Pending, at(30)),
            ResponseType::ServiceUnavailable
        );
        assert_eq!(
            code(&mut pending, Verdict::Pending, at(31)),
            ResponseType::NotFound
        );
        // Delivered at last: forgotten, so a later wait starts again.
        assert_eq!(
            code(&mut pending, Verdict::Duplicate, at(32)),
            ResponseType::Changed
        );
        assert_eq!(
            code(&mut pending, Verdict::Pending, at(40)),
            ResponseType::ServiceUnavailable
        );
    }

    const NOW: Millis = Millis(1_700_000_000_000);

    type TestResult<T> = core::result::Result<T, Box<dyn std::error::Error>>;
    /// A sink's trusted sources, its key, and a stream forwarded to it.
    type ForwardedStream = (Vec<TrustedSource>, pre::SecretKey, Vec<RelayMessage>);

    /// `messages` data messages of a source (a new section every two), sealed at [`NOW`] and
    /// re-encrypted by a forwarder for a sink: the sink's trusted sources, its key, and the
    /// stream as it receives it.
    fn forwarded_stream(seed: u64, messages: u8) -> TestResult<ForwardedStream> {
        let mut rng = SeededRng::from_seed_u64(seed);
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng)?;
        let url = "coap://127.0.0.9/source";
        let trusted = vec![TrustedSource {
            url: url.into(),
            owner: owner.verifying_key(),
        }];
        let mut config = SourceConfig::new(url, 1);
        config.rotate_messages = 2;
        let seed = SourceSeed::generate(&mut rng);
        let mut source = Source::new(config, seed, owner, None, &mut rng)?;
        let epoch = source.epoch_at(NOW)?;
        let key = pre::SecretKey::generate(&mut rng);
        let rekeys = source.rekeys_for(&key.public_key(), epoch..=epoch)?;
        let mut forwarder = Forwarder::new("udp://127.0.0.1:1".into(), rekeys)?;
        let mut stream = Vec::new();
        for k in 0..messages {
            for m in source.seal(NOW, &[k; 3], &mut rng)? {
                if let Forwarded::Send(m) = forwarder.transform(&m) {
                    stream.push(m);
                }
            }
        }
        Ok((trusted, key, stream))
    }

    /// A stream through a forwarder into a sink over one store: each message is fresh once, a
    /// second sink over the same store installs the section keys again and finds every message
    /// seen.
    #[test]
    fn the_seen_set_and_sections_survive_a_restart()
    -> core::result::Result<(), Box<dyn std::error::Error>> {
        let (trusted, key, stream) = forwarded_stream(3, 5)?;
        let now = NOW;
        let store = MemoryStore::new();
        let key_bytes = key.to_bytes();
        let new_sink = || -> core::result::Result<Sink, m2msec_crypto::Error> {
            let secret = pre::SecretKey::from_bytes(&key_bytes)?;
            Ok(Sink::new(secret, trusted.clone(), SinkConfig::default()))
        };
        let mut sink = new_sink()?;
        let batch = Batch::receive(&mut sink, &store, now, &stream)?;
        assert_eq!(batch.fresh.len(), 5);
        assert!(
            batch
                .verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Delivered(_)))
        );
        let len = 42u64.to_be_bytes();
        store.write_batch(&batch.commit_ops(Some(&len)))?;
        assert_eq!(
            store.get(SINK_TABLE, KEY_OUTPUT_LEN).ok().flatten(),
            Some(len.to_vec())
        );

        let mut restarted = new_sink()?;
        let (installed, forgotten) = reinstall(&mut restarted, &store, now)?;
        assert_eq!((installed, forgotten.len()), (3, 0));
        let again = Batch::receive(&mut restarted, &store, now, &stream)?;
        assert!(again.fresh.is_empty());
        assert!(
            again
                .verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Duplicate | Verdict::Delivered(0)))
        );
        Ok(())
    }

    /// What a restart reads that is not what the sink wrote: a section record that does not
    /// decode is forgotten (and removed), an output length that is not 8 bytes refuses the
    /// open rather than keep an unacknowledged tail that would be written twice.
    #[test]
    fn damaged_records_are_forgotten_or_refused()
    -> core::result::Result<(), Box<dyn std::error::Error>> {
        let mut rng = SeededRng::from_seed_u64(4);
        let mut new_sink = || {
            Sink::new(
                pre::SecretKey::generate(&mut rng),
                Vec::new(),
                SinkConfig::default(),
            )
        };
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        store.put(SECTIONS_TABLE, b"bad", b"\xff\x00 not a relay message")?;
        let (_, reopened) = StoredSink::open(new_sink(), store.clone(), Millis(0))?;
        assert_eq!((reopened.installed, reopened.forgotten.len()), (0, 1));
        assert_eq!(store.get(SECTIONS_TABLE, b"bad")?, None);
        store.put(SINK_TABLE, KEY_OUTPUT_LEN, &[1, 2, 3])?;
        let opened = StoredSink::open(new_sink(), store, Millis(0));
        assert!(opened.is_err_and(|e| e.to_string().contains("3 bytes, not 8")));
        Ok(())
    }

    /// A store whose batch writes fail once told to; everything else is a memory store's.
    #[derive(Default)]
    struct FailingWrites {
        inner: MemoryStore,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Store for FailingWrites {
        fn put(&self, table: &str, key: &[u8], value: &[u8]) -> m2msec_store::Result<()> {
            self.inner.put(table, key, value)
        }
        fn get(&self, table: &str, key: &[u8]) -> m2msec_store::Result<Option<Vec<u8>>> {
            self.inner.get(table, key)
        }
        fn remove(&self, table: &str, key: &[u8]) -> m2msec_store::Result<bool> {
            self.inner.remove(table, key)
        }
        fn insert_if_absent(&self, t: &str, k: &[u8], v: &[u8]) -> m2msec_store::Result<bool> {
            self.inner.insert_if_absent(t, k, v)
        }
        fn scan(&self, table: &str) -> m2msec_store::Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.inner.scan(table)
        }
        fn queue_push(&self, table: &str, value: &[u8]) -> m2msec_store::Result<u64> {
            self.inner.queue_push(table, value)
        }
        fn queue_range(
            &self,
            table: &str,
            from: u64,
            max: usize,
        ) -> m2msec_store::Result<Vec<(u64, Vec<u8>)>> {
            self.inner.queue_range(table, from, max)
        }
        fn queue_remove(&self, table: &str, seq: u64) -> m2msec_store::Result<bool> {
            self.inner.queue_remove(table, seq)
        }
        fn queue_push_unique(
            &self,
            table: &str,
            dedup: &str,
            items: &[(&[u8], &[u8])],
        ) -> m2msec_store::Result<Vec<m2msec_store::PushOutcome>> {
            self.inner.queue_push_unique(table, dedup, items)
        }
        fn write_batch(&self, ops: &[WriteOp<'_>]) -> m2msec_store::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(m2msec_store::Error::Backend {
                    operation: "write_batch",
                    source: "disk full".into(),
                });
            }
            self.inner.write_batch(ops)
        }
        fn queue_stats(&self, table: &str) -> m2msec_store::Result<m2msec_store::QueueStats> {
            self.inner.queue_stats(table)
        }
    }

    /// A commit that fails poisons the sink: it had taken the batch's messages, so a copy of
    /// one would pass as a duplicate and be acknowledged unwritten. It judges nothing more
    /// until opened again, and the store still holds none of the batch.
    #[test]
    fn a_failed_commit_poisons_the_sink() -> core::result::Result<(), Box<dyn std::error::Error>> {
        let (trusted, key, stream) = forwarded_stream(5, 1)?;
        let now = NOW;
        let store = Arc::new(FailingWrites::default());
        let sink = Sink::new(key, trusted, SinkConfig::default());
        let (mut stored, _) = StoredSink::open(sink, store.clone(), now)?;
        let batch = stored.receive(now, &stream)?;
        assert_eq!(batch.fresh.len(), 1);
        store.fail.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            stored.commit(&batch, Some(3)),
            Err(StoreError::Store(_))
        ));
        store
            .fail
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            stored.receive(now, &stream),
            Err(StoreError::Poisoned)
        ));
        assert!(matches!(
            stored.commit(&batch, Some(3)),
            Err(StoreError::Poisoned)
        ));
        assert!(store.scan(SEEN_TABLE)?.is_empty());
        assert_eq!(stored.delivered(), 0);
        Ok(())
    }

    /// A batch the shell never committed (its output write failed) poisons the sink too: a
    /// copy of one of its messages must not be judged a duplicate.
    #[test]
    fn a_batch_left_uncommitted_poisons_the_sink()
    -> core::result::Result<(), Box<dyn std::error::Error>> {
        let (trusted, key, stream) = forwarded_stream(5, 1)?;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sink = Sink::new(key, trusted, SinkConfig::default());
        let (mut stored, _) = StoredSink::open(sink, store.clone(), NOW)?;
        let batch = stored.receive(NOW, &stream)?;
        assert!(!batch.is_empty());
        assert!(matches!(
            stored.receive(NOW, &stream),
            Err(StoreError::Poisoned)
        ));
        assert!(matches!(
            stored.commit(&batch, None),
            Err(StoreError::Poisoned)
        ));
        assert!(store.scan(SEEN_TABLE)?.is_empty());
        Ok(())
    }
}
