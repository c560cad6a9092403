//! The bodies of the secure proxy's RESTful API (paper 004 §IV, Fig. 6), as deterministic CBOR.
//!
//! Every body is a CBOR array of its fields in the order declared here (Content-Format 60,
//! `application/cbor`); [`Start`] and [`Control`] are small tagged arrays. Decoders are total
//! and accept only the one deterministic encoding, so the bytes an owner signs ([`Signed`]) have
//! exactly one meaning. Requests that change what the proxy does with a storage (forward, control,
//! delete) are wrapped in [`Signed`] by the storage's owner key.

use crate::cbor::{self, Bytes, Cbor, Reader, Writer};
use crate::cbor_struct;
use crate::{Error, Result};

/// Content-Format of every API body: `application/cbor` (RFC 7252 §12.3 registry).
pub const CONTENT_FORMAT_CBOR: u16 = 60;
/// Content-Format of `/.well-known/core`: `application/link-format` (RFC 6690).
pub const CONTENT_FORMAT_LINK_FORMAT: u16 = 40;

/// Window of `GET /load` and `GET /throughput` when the request names none (`?window=S`).
pub const DEFAULT_WINDOW_S: u32 = 60;

/// Domain separation of the owner's signature over an API request.
pub const SIGNATURE_CONTEXT: &str = "m2msec relay api v1";

/// Resource paths (Uri-Path segments joined by `/`), shared so that proxy and clients agree.
pub mod path {
    /// RFC 6690 resource discovery.
    pub const WELL_KNOWN_CORE: &str = ".well-known/core";
    /// `GET`: [`Info`](super::Info).
    pub const INFO: &str = "info";
    /// `GET ?window=S`: [`Load`](super::Load).
    pub const LOAD: &str = "load";
    /// `GET ?window=S`: [`Throughput`](super::Throughput).
    pub const THROUGHPUT: &str = "throughput";
    /// `POST` [`StoreRequest`](super::StoreRequest): reserves a storage.
    pub const STORE: &str = "store";
    /// Prefix of `storage/{id}` (POST relay messages, DELETE) and `storage/{id}/monitor`.
    pub const STORAGE: &str = "storage";
    /// `POST` signed [`ForwardRequest`](super::ForwardRequest); prefix of `forward/{id}/…`.
    pub const FORWARD: &str = "forward";
    /// Last segment of the observable monitors.
    pub const MONITOR: &str = "monitor";
    /// Last segment of `forward/{id}/control`.
    pub const CONTROL: &str = "control";

    /// `storage/{id}`: where a source POSTs its relay messages.
    #[must_use]
    pub fn storage(id: u32) -> String {
        format!("{STORAGE}/{id}")
    }

    /// `storage/{id}/monitor`.
    #[must_use]
    pub fn storage_monitor(id: u32) -> String {
        format!("{STORAGE}/{id}/{MONITOR}")
    }

    /// `forward/{id}/monitor`.
    #[must_use]
    pub fn forward_monitor(id: u32) -> String {
        format!("{FORWARD}/{id}/{MONITOR}")
    }

    /// `forward/{id}/control`.
    #[must_use]
    pub fn forward_control(id: u32) -> String {
        format!("{FORWARD}/{id}/{CONTROL}")
    }
}

/// The encoding and total decoding every API body shares.
pub trait Body: Cbor {
    /// The body's deterministic CBOR.
    #[must_use]
    fn to_bytes(&self) -> Vec<u8> {
        cbor::to_vec(self)
    }

    /// Decodes a body, refusing anything but its one deterministic encoding.
    ///
    /// # Errors
    /// Whatever is wrong with the bytes; never panics.
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        cbor::from_slice(bytes)
    }
}

/// An optional field: a CBOR array of zero or one element.
///
/// An array rather than CBOR `null` so that it needs nothing beyond the crate's deterministic
/// reader and writer; either way the encoding is unique.
impl<T: Cbor> Cbor for Option<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            None => w.array(0),
            Some(v) => {
                w.array(1);
                v.encode(w);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.array()? {
            0 => Ok(None),
            1 => T::decode(r).map(Some),
            found => Err(Error::WrongArity {
                what: "optional value",
                found,
                expected: 1,
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            None => "none".into(),
            Some(v) => v.describe(),
        }
    }
}

cbor_struct! {
    /// `POST /store`: reserve a storage for one source's messages.
    pub struct StoreRequest {
        /// The owner's Ed25519 verifying key (32 bytes): only this key may later forward or
        /// delete the storage.
        pub owner_key: Bytes,
        /// The source's callback URL: the key of the forward-proxy form (Proxy-Uri + Relay-Source).
        pub source: String,
        /// Bytes to reserve; 0 asks for the proxy's default.
        pub capacity: u64,
        /// Whether to open a plain-UDP ingestion port for binary-header datagrams.
        pub udp: bool,
    }
}

cbor_struct! {
    /// The answer to [`StoreRequest`] (2.01 Created, Location-Path `storage/{id}`).
    pub struct StoreResponse {
        /// The new storage's id.
        pub storage_id: u32,
        /// The UDP ingestion port, when one was asked for and opened.
        pub udp_port: Option<u16>,
    }
}

cbor_struct! {
    /// `GET /info`: whether this proxy can take more (the paper's "available storage").
    pub struct Info {
        /// Total storage capacity, bytes.
        pub capacity: u64,
        /// Free storage now, bytes.
        pub free: u64,
        /// Storages reserved.
        pub storages: u32,
        /// Forward operations running.
        pub forwards: u32,
    }
}

cbor_struct! {
    /// `GET /load?window=S`: the proxy's load over the last `window_s` seconds.
    pub struct Load {
        /// The window the counts cover, seconds.
        pub window_s: u32,
        /// Relay messages received.
        pub messages_in: u64,
        /// Bytes of relay messages received.
        pub bytes_in: u64,
        /// Relay messages forwarded.
        pub messages_out: u64,
        /// Bytes forwarded.
        pub bytes_out: u64,
        /// Messages refused because their storage was full.
        pub rejected_full: u64,
        /// Percent of one core the proxy's process used over the window (above 100 when it
        /// used several): the load the paper's API reports.
        pub cpu_percent: u32,
    }
}

cbor_struct! {
    /// `GET /throughput?window=S`: the rate at which this proxy can forward, for choosing one.
    pub struct Throughput {
        /// The window, seconds.
        pub window_s: u32,
        /// Bits per second received over the window.
        pub in_bps: u64,
        /// Bits per second forwarded over the window.
        pub out_bps: u64,
        /// The rate the proxy can forward at: bits it delivered per second of the CPU time it
        /// used (over the window, or its longest window when it forwarded nothing in this
        /// one); 0 before it has forwarded anything.
        pub capacity_bps: u64,
    }
}

cbor_struct! {
    /// `GET /storage/{id}/monitor` (observable): the state of one storage.
    pub struct StorageMonitor {
        /// The storage.
        pub storage_id: u32,
        /// Messages held now.
        pub stored_messages: u64,
        /// Bytes held now.
        pub stored_bytes: u64,
        /// Messages received since creation.
        pub received: u64,
        /// Retransmitted copies recognised and stored once.
        pub duplicates: u64,
        /// Messages refused because the storage was full.
        pub rejected_full: u64,
        /// Sequence number of the newest stored message, if any.
        pub last_seq: Option<u64>,
    }
}

cbor_struct! {
    /// One epoch's AFGH re-encryption key for one sink: the proxy can re-encrypt exactly the
    /// epochs it holds keys for, which is what confines a sink to its time window.
    pub struct EpochRekey {
        /// The epoch.
        pub epoch: u32,
        /// `pre::ReKey::to_bytes`.
        pub rekey: Bytes,
    }
}

cbor_struct! {
    /// A sink and the re-encryption keys that authorise it.
    pub struct SinkGrant {
        /// The sink URL (`coap://…` or `udp://…`).
        pub url: String,
        /// Re-encryption keys, one per authorised epoch (at most 255 per grant).
        pub rekeys: Vec<EpochRekey>,
    }
}

/// Where in a storage a forward (or a newly added sink) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From the oldest stored message: deliver the backlog.
    Beginning,
    /// From the next message to arrive.
    Now,
}

impl Cbor for Start {
    fn encode(&self, w: &mut Writer) {
        w.uint(match self {
            Self::Beginning => 0,
            Self::Now => 1,
        });
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.uint()? {
            0 => Ok(Self::Beginning),
            1 => Ok(Self::Now),
            value => Err(Error::UnknownVariant {
                what: "start",
                value,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

cbor_struct! {
    /// `POST /forward` (inside [`Signed`]): deliver a storage's messages to sinks.
    pub struct ForwardRequest {
        /// The storage to forward from.
        pub storage_id: u32,
        /// The sinks and their re-encryption keys.
        pub sinks: Vec<SinkGrant>,
        /// Delivery rate limit, messages per second; 0 = unlimited.
        pub rate: u32,
        /// Backlog or only new messages.
        pub start: Start,
    }
}

cbor_struct! {
    /// The answer to [`ForwardRequest`] (2.01 Created, Location-Path `forward/{id}`).
    pub struct ForwardResponse {
        /// The new forward operation's id.
        pub forward_id: u32,
    }
}

cbor_struct! {
    /// One sink's progress within a forward operation.
    pub struct SinkProgress {
        /// The sink URL.
        pub url: String,
        /// Messages delivered.
        pub delivered: u64,
        /// Of those, management or individual messages re-encrypted.
        pub reencrypted: u64,
        /// Messages skipped: outside the sink's authorised epochs.
        pub skipped: u64,
        /// Messages still to deliver.
        pub pending: u64,
    }
}

cbor_struct! {
    /// `GET /forward/{id}/monitor` (observable): the state of one forward operation.
    pub struct ForwardMonitor {
        /// The forward operation.
        pub forward_id: u32,
        /// Its storage.
        pub storage_id: u32,
        /// Whether delivery is paused.
        pub paused: bool,
        /// Per sink progress.
        pub sinks: Vec<SinkProgress>,
    }
}

/// `POST /forward/{id}/control` (inside [`Signed`]): change a running forward operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop delivering, keep the position.
    Pause,
    /// Continue delivering.
    Resume,
    /// Replace every sink (and its re-encryption keys); positions of kept URLs are kept.
    SetSinks(Vec<SinkGrant>),
    /// Add one sink, starting where [`Start`] says.
    AddSink(SinkGrant, Start),
    /// Remove the sink with this URL.
    RemoveSink(String),
    /// Deliver at most this many messages per second to each sink (0: unlimited), from the
    /// next message on.
    SetRate(u32),
}

impl Control {
    const PAUSE: u64 = 0;
    const RESUME: u64 = 1;
    const SET_SINKS: u64 = 2;
    const ADD_SINK: u64 = 3;
    const REMOVE_SINK: u64 = 4;
    const SET_RATE: u64 = 5;
}

/// `[0]` pause, `[1]` resume, `[2, [grant…]]`, `[3, grant, start]`, `[4, url]`, `[5, rate]`.
impl Cbor for Control {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Pause => {
                w.array(1);
                w.uint(Self::PAUSE);
            }
            Self::Resume => {
                w.array(1);
                w.uint(Self::RESUME);
            }
            Self::SetSinks(sinks) => {
                w.array(2);
                w.uint(Self::SET_SINKS);
                sinks.encode(w);
            }
            Self::AddSink(grant, start) => {
                w.array(3);
                w.uint(Self::ADD_SINK);
                grant.encode(w);
                start.encode(w);
            }
            Self::RemoveSink(url) => {
                w.array(2);
                w.uint(Self::REMOVE_SINK);
                w.text(url);
            }
            Self::SetRate(rate) => {
                w.array(2);
                w.uint(Self::SET_RATE);
                w.uint((*rate).into());
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let len = r.array()?;
        let tag = r.uint()?;
        let expected: u64 = match tag {
            Self::PAUSE | Self::RESUME => 1,
            Self::SET_SINKS | Self::REMOVE_SINK | Self::SET_RATE => 2,
            Self::ADD_SINK => 3,
            value => {
                return Err(Error::UnknownVariant {
                    what: "control",
                    value,
                });
            }
        };
        if len != expected {
            return Err(Error::WrongArity {
                what: "Control",
                found: len,
                expected,
            });
        }
        Ok(match tag {
            Self::PAUSE => Self::Pause,
            Self::RESUME => Self::Resume,
            Self::SET_SINKS => Self::SetSinks(Vec::decode(r)?),
            Self::ADD_SINK => Self::AddSink(SinkGrant::decode(r)?, Start::decode(r)?),
            Self::SET_RATE => {
                Self::SetRate(u32::try_from(r.uint()?).map_err(|_| Error::IntegerRange)?)
            }
            // The only tag left after the match above.
            _ => Self::RemoveSink(String::decode(r)?),
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Pause => "pause".into(),
            Self::Resume => "resume".into(),
            Self::SetSinks(sinks) => format!("set sinks {}", sinks.describe()),
            Self::AddSink(grant, start) => format!("add sink {} from {start:?}", grant.describe()),
            Self::RemoveSink(url) => format!("remove sink {url:?}"),
            Self::SetRate(0) => "set rate unlimited".into(),
            Self::SetRate(rate) => format!("set rate {rate}/s"),
        }
    }
}

cbor_struct! {
    /// An owner-authorised request: the CBOR of the request, when, and the owner's signature.
    pub struct Signed {
        /// The request body's CBOR (empty for `DELETE /storage/{id}`).
        pub payload: Bytes,
        /// When it was signed, ms since the UNIX epoch: the proxy refuses stale requests.
        pub timestamp_ms: u64,
        /// Ed25519 by the storage's owner key over [`signed_input`].
        pub signature: Bytes,
        /// The signer's Ed25519 verifying key (32 bytes, as `StoreRequest::owner_key`): Ed25519
        /// has no key recovery, so without it the proxy could not tell a valid signature by a
        /// key that is not the owner (4.03) from an invalid one (4.01). Not itself signed: an
        /// Ed25519 signature already binds the verifying key (RFC 8032 §5.1.6 hashes A).
        pub key: Bytes,
    }
}

/// What the owner signs: [`SIGNATURE_CONTEXT`] ‖ CBOR `[path, timestamp_ms, payload]`.
///
/// The path (`forward`, `forward/7/control`, `storage/3`) binds the signature to the resource,
/// so a signed control for one forward cannot be replayed against another; the timestamp bounds
/// replays in time.
#[must_use]
pub fn signed_input(path: &str, timestamp_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(3);
    w.text(path);
    w.uint(timestamp_ms);
    w.bytes(payload);
    let body = w.into_bytes();
    let mut out = Vec::with_capacity(SIGNATURE_CONTEXT.len() + body.len());
    out.extend_from_slice(SIGNATURE_CONTEXT.as_bytes());
    out.extend_from_slice(&body);
    out
}

impl Body for StoreRequest {}
impl Body for StoreResponse {}
impl Body for Info {}
impl Body for Load {}
impl Body for Throughput {}
impl Body for StorageMonitor {}
impl Body for ForwardRequest {}
impl Body for ForwardResponse {}
impl Body for ForwardMonitor {}
impl Body for Control {}
impl Body for Signed {}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(url: &str, epochs: core::ops::RangeInclusive<u32>) -> SinkGrant {
        SinkGrant {
            url: url.into(),
            rekeys: epochs
                .map(|epoch| EpochRekey {
                    epoch,
                    rekey: Bytes(vec![epoch.to_le_bytes()[0]; 4]),
                })
                .collect(),
        }
    }

    fn round_trip<T: Body + PartialEq + core::fmt::Debug>(value: &T) -> Vec<u8> {
        let bytes = value.to_bytes();
        assert_eq!(T::from_bytes(&bytes).as_ref(), Ok(value));
        // Any strict prefix is refused, never a panic.
        for n in 0..bytes.len() {
            assert!(T::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(T::from_bytes(&trailing), Err(Error::TrailingBytes(1)));
        bytes
    }

    #[test]
    fn store_layout() {
        let req = StoreRequest {
            owner_key: Bytes(vec![9; 32]),
            source: "coap://[::1]:5690/src".into(),
            capacity: 0,
            udp: true,
        };
        let bytes = round_trip(&req);
        assert_eq!(&bytes[..3], &[0x84, 0x58, 32]);
        assert_eq!(bytes.last(), Some(&0xf5));

        let with_port = StoreResponse {
            storage_id: 7,
            udp_port: Some(40_000),
        };
        assert_eq!(round_trip(&with_port), [0x82, 0x07, 0x81, 0x19, 0x9c, 0x40]);
        let without = StoreResponse {
            storage_id: 7,
            udp_port: None,
        };
        assert_eq!(round_trip(&without), [0x82, 0x07, 0x80]);
        // An optional of two elements, or of the wrong type, is refused.
        assert!(matches!(
            StoreResponse::from_bytes(&[0x82, 0x07, 0x82, 0x01, 0x02]),
            Err(Error::WrongArity { .. })
        ));
        assert_eq!(
            StoreResponse::from_bytes(&[0x82, 0x07, 0x81, 0x1a, 0, 1, 0, 0]),
            Err(Error::IntegerRange)
        );
    }

    #[test]
    fn monitors_and_statistics_round_trip() {
        round_trip(&Info {
            capacity: 1 << 30,
            free: 12_345,
            storages: 3,
            forwards: 1,
        });
        round_trip(&Load {
            window_s: DEFAULT_WINDOW_S,
            messages_in: 1,
            bytes_in: 2,
            messages_out: 3,
            bytes_out: 4,
            rejected_full: 5,
            cpu_percent: 150,
        });
        round_trip(&Throughput {
            window_s: 10,
            in_bps: u64::MAX,
            out_bps: 0,
            capacity_bps: 8_000_000,
        });
        for last_seq in [None, Some(0), Some(u64::MAX)] {
            round_trip(&StorageMonitor {
                storage_id: 1,
                stored_messages: 2,
                stored_bytes: 3,
                received: 4,
                duplicates: 5,
                rejected_full: 6,
                last_seq,
            });
        }
        round_trip(&ForwardMonitor {
            forward_id: 4,
            storage_id: 1,
            paused: true,
            sinks: vec![SinkProgress {
                url: "udp://127.0.0.1:9".into(),
                delivered: 10,
                reencrypted: 1,
                skipped: 2,
                pending: 0,
            }],
        });
    }

    #[test]
    fn forward_round_trip() {
        for start in [Start::Beginning, Start::Now] {
            round_trip(&ForwardRequest {
                storage_id: 2,
                sinks: vec![
                    grant("coap://127.0.0.1/sink", 10..=12),
                    grant("udp://127.0.0.1:9", 0..=0),
                ],
                rate: 0,
                start,
            });
        }
        assert_eq!(
            round_trip(&ForwardResponse { forward_id: 24 }),
            [0x81, 0x18, 24]
        );
        // Start is 0 or 1, nothing else.
        let mut bytes = ForwardRequest {
            storage_id: 2,
            sinks: vec![],
            rate: 0,
            start: Start::Now,
        }
        .to_bytes();
        assert_eq!(bytes.last(), Some(&1));
        if let Some(last) = bytes.last_mut() {
            *last = 2;
        }
        assert_eq!(
            ForwardRequest::from_bytes(&bytes),
            Err(Error::UnknownVariant {
                what: "start",
                value: 2
            })
        );
    }

    #[test]
    fn control_round_trip_and_layout() {
        assert_eq!(round_trip(&Control::Pause), [0x81, 0x00]);
        assert_eq!(round_trip(&Control::Resume), [0x81, 0x01]);
        round_trip(&Control::SetSinks(vec![grant("udp://127.0.0.1:9", 1..=3)]));
        round_trip(&Control::SetSinks(vec![]));
        round_trip(&Control::AddSink(
            grant("coap://[::1]/s", 5..=5),
            Start::Beginning,
        ));
        let remove = round_trip(&Control::RemoveSink("udp://127.0.0.1:9".into()));
        assert_eq!(&remove[..3], &[0x82, 0x04, 0x71]);
        assert_eq!(
            round_trip(&Control::SetRate(500)),
            [0x82, 0x05, 0x19, 0x01, 0xf4]
        );
        round_trip(&Control::SetRate(0));
    }

    #[test]
    fn control_refusals_are_typed() {
        assert_eq!(
            Control::from_bytes(&[0x81, 0x06]),
            Err(Error::UnknownVariant {
                what: "control",
                value: 6
            })
        );
        // A rate beyond u32.
        assert_eq!(
            Control::from_bytes(&[0x82, 0x05, 0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(Error::IntegerRange)
        );
        assert_eq!(
            Control::from_bytes(&[0x82, 0x00, 0x00]),
            Err(Error::WrongArity {
                what: "Control",
                found: 2,
                expected: 1
            })
        );
        assert_eq!(
            Control::from_bytes(&[0x81, 0x04]),
            Err(Error::WrongArity {
                what: "Control",
                found: 1,
                expected: 2
            })
        );
        // A non-minimal tag is not the deterministic encoding.
        assert_eq!(
            Control::from_bytes(&[0x81, 0x18, 0x01]),
            Err(Error::NonCanonical)
        );
        assert!(Control::from_bytes(&[]).is_err());
        assert!(Control::from_bytes(&[0x9f, 0x00, 0xff]).is_err());
    }

    #[test]
    fn signed_and_its_input() {
        let control = Control::Pause.to_bytes();
        let signed = Signed {
            payload: Bytes(control.clone()),
            timestamp_ms: 1_700_000_000_000,
            signature: Bytes(vec![0x5a; 64]),
            key: Bytes(vec![0x11; 32]),
        };
        round_trip(&signed);

        let input = signed_input("forward/7/control", 1_700_000_000_000, &control);
        let mut expected = SIGNATURE_CONTEXT.as_bytes().to_vec();
        expected.extend_from_slice(&[0x83, 0x71]);
        expected.extend_from_slice(b"forward/7/control");
        expected.extend_from_slice(&[0x1b, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]);
        expected.extend_from_slice(&[0x42, 0x81, 0x00]);
        assert_eq!(input, expected);
        // Bound to the resource, the time and the payload.
        assert_ne!(
            signed_input("forward/8/control", 1_700_000_000_000, &control),
            input
        );
        assert_ne!(
            signed_input("forward/7/control", 1_700_000_000_001, &control),
            input
        );
        assert_ne!(
            signed_input("forward/7/control", 1_700_000_000_000, &[]),
            input
        );
    }

    #[test]
    fn decoders_never_panic_on_junk() {
        let junk: [&[u8]; 6] = [
            &[],
            &[0xff],
            &[0x9f],
            &[0x84, 0x40, 0x60, 0x00],
            &[0x81, 0x83, 0x00],
            &[
                0x83, 0x02, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ];
        for bytes in junk {
            let _ = StoreRequest::from_bytes(bytes);
            let _ = StoreResponse::from_bytes(bytes);
            let _ = StorageMonitor::from_bytes(bytes);
            let _ = ForwardRequest::from_bytes(bytes);
            let _ = ForwardMonitor::from_bytes(bytes);
            let _ = Control::from_bytes(bytes);
            let _ = Signed::from_bytes(bytes);
        }
    }
}
