//! Deterministic annotated traces of whole collab runs: every datagram in hex with its fields
//! named, the plaintext of every sealed body, and the keys both ends derived. With a fixed seed
//! the output is byte-for-byte stable, so a committed trace is a test vector for other
//! implementations (as RFC 9529 is for EDHOC).

use core::fmt::Write as _;

use m2msec_crypto::aead::AeadKey;
use m2msec_crypto::rng::SeededRng;
use m2msec_wire::cbor::{self, Cbor, hex};
use m2msec_wire::collab::{
    FinishedBody, FragmentBody, KeyMaterialBody, KeyRequestBody, Message, ProxyListBody, RelayBody,
};

use crate::annotate;

use super::sim::{Configs, PORT, Spec, Topology, World};
use super::{ClientEvent, Error, FinishedKeys, ServerEvent, SessionId, sealing_aad};
use crate::Endpoint;

/// Renders the trace of one honest run of `spec` with randomness from `seed`.
///
/// # Errors
/// If the deployment cannot be generated or the run does not establish a key.
pub fn render(spec: &Spec, seed: u64) -> Result<String, Error> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let topology = Topology::loopback(PORT, spec.proxies);
    let configs = Configs::generate(spec, &topology, &mut rng)?;
    let k_at = configs.client.trusted.key.clone();
    let k_ap: Vec<AeadKey> = configs
        .client
        .proxies
        .iter()
        .map(|p| p.key.clone())
        .collect();
    let k_pt: Vec<AeadKey> = configs
        .proxies
        .iter()
        .map(|p| p.trusted.key.clone())
        .collect();
    let mut w = World::new(configs)?;
    let start = w.net.now;
    w.run_honest(&mut rng)?;

    let client = w.events.client.iter().find_map(ClientEvent::established);
    let server = w.events.server.iter().find_map(ServerEvent::established);
    let (Some(client), Some(server)) = (client, server) else {
        return Err(Error::Config(format!(
            "the traced run did not establish a key: {:?}",
            w.events.client
        )));
    };

    let mut out = String::new();
    let o = &mut out;
    // Writing into a String cannot fail; the results are ignored throughout.
    let _ = writeln!(o, "# m2msec collab trace, seed {seed}");
    let _ = writeln!(
        o,
        "# n={} k={} sharing={:?} one-time={:?} suite={:?} aead={:?}",
        spec.proxies, spec.threshold, spec.sharing, spec.ots, spec.suite, spec.aead
    );
    let _ = writeln!(
        o,
        "# roles: A=client T=trusted B=server P1..Pn=proxies; times from the start of the run"
    );
    let _ = writeln!(o, "\n## pre-shared keys");
    let _ = writeln!(o, "kAT = {}", hex(k_at.as_bytes()));
    for (i, (ap, pt)) in k_ap.iter().zip(&k_pt).enumerate() {
        let _ = writeln!(o, "kAP{} = {}", i + 1, hex(ap.as_bytes()));
        let _ = writeln!(o, "kP{}T = {}", i + 1, hex(pt.as_bytes()));
    }

    let mk = &server.key;
    let session = client.session;
    let finished = FinishedKeys::derive(&mut Default::default(), spec.aead, &session, mk)?;
    let role = |a: &std::net::SocketAddr| match w.addrs.iter().position(|x| x == a) {
        Some(0) => "A".to_owned(),
        Some(1) => "T".to_owned(),
        Some(2) => "B".to_owned(),
        Some(i) => format!("P{}", i - 2),
        None => a.to_string(),
    };
    let _ = writeln!(o, "\n## messages");
    for (n, m) in annotate::messages(&w.net.log, |b| Message::decode(b).ok()).enumerate() {
        let (d, msg) = (m.datagram, &m.message);
        let (from, to) = (role(&d.from), role(&d.to));
        let ends = (from.as_str(), to.as_str());
        annotate::heading(
            o,
            n + 1,
            d.at.0 - start.0,
            ends,
            (msg.name(), msg.fields()),
            &m,
        );
        let proxy_of = |a: &std::net::SocketAddr| {
            w.addrs
                .iter()
                .position(|x| x == a)
                .and_then(|i| i.checked_sub(3))
        };
        let peer = proxy_of(&d.from).or_else(|| proxy_of(&d.to));
        let opened = match msg {
            Message::KeyRequest(m) => open::<KeyRequestBody>(&k_at, 5, &session, &m.sealed.0),
            Message::ProxyList(m) => open::<ProxyListBody>(&k_at, 9, &session, &m.sealed.0),
            Message::KeyMaterial(m) => peer
                .and_then(|p| k_pt.get(p))
                .and_then(|k| open::<KeyMaterialBody>(k, 8, &session, &m.sealed.0)),
            Message::Fragment(m) => peer
                .and_then(|p| k_ap.get(p))
                .and_then(|k| open::<FragmentBody>(k, 12, &session, &m.sealed.0)),
            Message::AnswerRelay(m) => peer
                .and_then(|p| k_ap.get(p))
                .and_then(|k| open::<RelayBody>(k, 15, &session, &m.sealed.0)),
            Message::ClientFinished(m) => {
                open::<FinishedBody>(&finished.client, 16, &session, &m.sealed.0)
            }
            Message::ServerFinished(m) => {
                open::<FinishedBody>(&finished.server, 17, &session, &m.sealed.0)
            }
            _ => None,
        };
        if let Some((plain, fields)) = opened {
            annotate::opened(o, &plain, &fields);
        }
    }

    let _ = writeln!(o, "\n## result");
    let _ = writeln!(o, "session = {session}");
    let _ = writeln!(o, "MK at A = {}", hex(client.key.expose_for_testing_only()));
    let _ = writeln!(o, "MK at B = {}", hex(server.key.expose_for_testing_only()));
    let _ = writeln!(o, "MK fingerprint = {}", hex(&mk.fingerprint()));
    let _ = writeln!(
        o,
        "client finished key = {}",
        hex(finished.client.as_bytes())
    );
    let _ = writeln!(
        o,
        "server finished key = {}",
        hex(finished.server.as_bytes())
    );
    let _ = writeln!(o, "participants = {}", client.participants.join(", "));
    annotate::operations(o, "client", w.client.op_counts());
    annotate::operations(o, "server", w.server.op_counts());
    Ok(out)
}

/// The plaintext of a sealed body and its named fields (secrets redacted there; the plaintext
/// hex shows them).
fn open<T: Cbor + Fields>(
    key: &AeadKey,
    message_type: u8,
    session: &SessionId,
    sealed: &[u8],
) -> Option<(Vec<u8>, NamedFields)> {
    let plain = key
        .open_with_nonce_prefix(&sealing_aad(message_type, session), sealed)
        .ok()?;
    let body: T = cbor::from_slice(&plain).ok()?;
    Some((plain.to_vec(), body.named_fields()))
}

/// Field names and readings, in wire order.
type NamedFields = Vec<(&'static str, String)>;

/// The `fields()` every `cbor_struct!` type has, as a trait so [`open`] can be generic.
trait Fields {
    fn named_fields(&self) -> NamedFields;
}

macro_rules! fields_impl {
    ($($t:ty),*) => {$(
        impl Fields for $t {
            fn named_fields(&self) -> NamedFields {
                self.fields()
            }
        }
    )*};
}
fields_impl!(
    KeyRequestBody,
    ProxyListBody,
    KeyMaterialBody,
    FragmentBody,
    RelayBody,
    FinishedBody
);
