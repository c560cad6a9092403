//! Deterministic annotated traces of the relay's key stream (paper 004): each message in the
//! paper's binary header as the source sends it to the proxy (data sealed under its section's
//! key, each section key under the source's AFGH key of the epoch), then as the proxy forwards
//! it to a sink it was granted (section keys re-encrypted to the sink, the sink URL set), with
//! every section key opened by the sink's key and every data message by its section key. With a
//! fixed seed the output is byte-for-byte stable (committed under `vectors/relay/`, re-derived
//! by a test). The proxy's CoAP API around these messages is RFC 7252 and 7959 and is not
//! traced here.

use core::fmt::Write as _;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre;
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_wire::cbor::{self, hex};
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::management::{Body, SectionKey};

use super::{
    Delivered, Error, Forwarded, Forwarder, Sink, SinkConfig, Source, SourceConfig, SourceSeed,
    TrustedSource,
};
use crate::{Millis, annotate};

/// The source's callback URL in the trace.
pub const SOURCE: &str = "coap://source.example/stream";
/// The sink's URL in the trace.
pub const SINK: &str = "udp://198.51.100.7:5683";
/// When the trace's messages are sealed (ms since the UNIX epoch).
const NOW: Millis = Millis(1_700_000_000_000);

/// What to trace.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Data messages the source seals.
    pub messages: u32,
    /// A new section key after this many data messages.
    pub rotate: u32,
    /// The data AEAD.
    pub suite: AeadSuite,
    /// Bytes of each data message.
    pub size: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            messages: 4,
            rotate: 2,
            suite: AeadSuite::ChaCha20Poly1305,
            size: 16,
        }
    }
}

/// Renders the trace of `spec` with randomness from `seed`.
///
/// # Errors
/// If the source, the forwarder or the sink refuses what the trace gives it.
pub fn render(spec: &Spec, seed: u64) -> Result<String, Error> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng)?;
    let owner_public = owner.verifying_key();
    let source_seed = SourceSeed::generate(&mut rng);
    let seed_bytes = *source_seed.expose();
    let mut config = SourceConfig::new(SOURCE, 1);
    config.rotate_messages = spec.rotate.max(1);
    config.suite = spec.suite;
    let mut source = Source::new(config, source_seed, owner, None, &mut rng)?;
    let epoch = source.epoch_at(NOW)?;
    let sink_key = pre::SecretKey::generate(&mut rng);
    let rekeys = source.rekeys_for(&sink_key.public_key(), epoch..=epoch)?;
    let mut forwarder = Forwarder::new(SINK.into(), rekeys)?;
    let trusted = TrustedSource {
        url: SOURCE.into(),
        owner: owner_public.clone(),
    };
    let sink_secret = pre::SecretKey::from_bytes(&sink_key.to_bytes())?;
    let mut sink = Sink::new(sink_secret, vec![trusted], SinkConfig::default());

    let mut out = String::new();
    let o = &mut out;
    // Writing into a String cannot fail; the results are ignored throughout.
    let _ = writeln!(o, "# m2msec relay trace, seed {seed}");
    let _ = writeln!(
        o,
        "# {} data messages of {} bytes, a new section key every {}, data AEAD {:?}, epoch {epoch}",
        spec.messages, spec.size, spec.rotate, spec.suite
    );
    let _ = writeln!(
        o,
        "# roles: S=source {SOURCE} P=proxy K=sink {SINK}; the paper's binary header"
    );
    let _ = writeln!(o, "\n## keys");
    let _ = writeln!(o, "source seed = {}", hex(&seed_bytes));
    let _ = writeln!(
        o,
        "owner key (Ed25519, public) = {}",
        hex(&owner_public.to_bytes())
    );
    annotate::wrap_hex(o, "sink AFGH secret key", &sink_key.to_bytes());
    annotate::wrap_hex(o, "sink AFGH public key", &sink_key.public_key().to_bytes());

    let _ = writeln!(o, "\n## messages");
    let mut n = 0;
    for k in 0..spec.messages {
        let data: Vec<u8> = (0..spec.size)
            .map(|i| u8::try_from((usize::try_from(k).unwrap_or(0) + i) % 256).unwrap_or(0))
            .collect();
        for m in source.seal(NOW, &data, &mut rng)? {
            n += 1;
            message(o, n, ("S", "P"), &m)?;
            match forwarder.transform(&m) {
                Forwarded::Send(f) => {
                    n += 1;
                    message(o, n, ("P", "K"), &f)?;
                    opened(o, &sink_key, &f);
                    for d in sink.receive(NOW, &f)? {
                        delivered(o, &d);
                    }
                }
                Forwarded::Skip(why) => {
                    let _ = writeln!(o, "  not forwarded: {why:?}");
                }
            }
        }
    }

    let _ = writeln!(o, "\n## result");
    annotate::operations(o, "source", source.op_counts());
    annotate::operations(o, "proxy (re-encryption)", forwarder.op_counts());
    annotate::operations(o, "sink", sink.op_counts());
    Ok(out)
}

/// Writes a relay message: its heading, bytes and header fields, and its body's.
fn message(o: &mut String, n: usize, ends: (&str, &str), m: &RelayMessage) -> Result<(), Error> {
    let bytes = m.encode()?;
    let h = &m.header;
    let kind = if h.flags.contains(m2msec_wire::relay::Flags::MANAGEMENT) {
        "SectionKey"
    } else {
        "Data"
    };
    annotate::heading_of(o, (n, 0), ends, kind, &bytes, 1);
    let _ = writeln!(
        o,
        "  header: {:?}, message id {:#010x}, stream {}, key index {}, source {:?}, sink {:?}",
        h.flags, h.message_id, h.stream_id, h.key_index, h.source, h.sink
    );
    match Body::from_bytes(&m.body) {
        Ok(body) if kind == "SectionKey" => {
            for (name, value) in body.fields() {
                let _ = writeln!(o, "  {name}: {}", annotate::shorten(&value));
            }
        }
        _ => {
            let _ = writeln!(o, "  body: nonce and ciphertext, {} bytes", m.body.len());
        }
    }
    Ok(())
}

/// Writes what the sink's key opens of a re-encrypted section key.
fn opened(o: &mut String, sink_key: &pre::SecretKey, m: &RelayMessage) {
    let Ok(body) = Body::from_bytes(&m.body) else {
        return;
    };
    let Ok(first) = pre::FirstLevel::from_bytes(&body.afgh.0) else {
        return;
    };
    let Ok(plain) = pre::open_first(sink_key, &first, &m.header.aad()) else {
        return;
    };
    let fields = cbor::from_slice::<SectionKey>(&plain)
        .map(|k| k.fields())
        .unwrap_or_default();
    annotate::opened(o, &plain, &fields);
}

/// Writes a message the sink delivered.
fn delivered(o: &mut String, d: &Delivered) {
    let _ = writeln!(
        o,
        "  delivered by the sink: message id {:#010x}, key index {}",
        d.message_id, d.key_index
    );
    annotate::wrap_hex(o, "  data", &d.plaintext);
}
