//! Deterministic annotated traces of MIKEY exchanges in each mode: every datagram in hex with
//! the header and every payload named, the opened contents of each KEMAC, and the keys both
//! ends derived. RFC 3830 ships no example messages; these are meant as the examples other
//! implementations check against (committed under `vectors/mikey/`, re-derived by a test).

use core::fmt::Write as _;

use m2msec_crypto::mikey::{self as mk, MessageKeys};
use m2msec_crypto::rng::SeededRng;
use m2msec_wire::cbor::hex;
use m2msec_wire::mikey::{DataType, KemacPlaintext, Message, Payload, Timestamp};

use crate::annotate::{self, wrap_hex};

use super::sim::{Configs, Spec, World, addresses};
use super::{DistributedParams, Error, InitiatorEvent, Mode, ModeName, ResponderEvent};

/// Renders the trace of one honest exchange of `spec` with randomness from `seed`.
///
/// # Errors
/// If the deployment cannot be generated or the exchange does not establish a key.
pub fn render(spec: &Spec, seed: u64) -> Result<String, Error> {
    let n = if spec.mode == ModeName::Distributed {
        spec.third_parties
    } else {
        0
    };
    let addrs = addresses(n);
    // The same seed gives the same keys twice: one set runs the exchange, the other opens
    // the messages for the annotations.
    let keys = Configs::generate(spec, &addrs, &mut SeededRng::from_seed_u64(seed))?;
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = World::new(Configs::generate(spec, &addrs, &mut rng)?, addrs.clone())?;
    let start = w.net.now;
    w.run_honest(&mut rng)?;

    let at_i = w
        .events
        .initiator
        .iter()
        .find_map(InitiatorEvent::established);
    let at_r = w
        .events
        .responder
        .iter()
        .find_map(ResponderEvent::established);
    let (Some(at_i), Some(at_r)) = (at_i, at_r) else {
        return Err(Error::Config(format!(
            "the traced exchange did not establish a key: {:?}",
            w.events.initiator
        )));
    };

    let mut out = String::new();
    let o = &mut out;
    // Writing into a String cannot fail; the results are ignored throughout.
    let _ = writeln!(
        o,
        "# m2msec MIKEY trace, {} mode, seed {seed}",
        spec.mode.name()
    );
    let _ = writeln!(
        o,
        "# RFC 3830 messages on UDP port {}; n={} k={} sharing={:?}; KEMAC {:?}, SIGN {:?}, envelope {:?}",
        super::PORT,
        n,
        spec.threshold,
        spec.sharing,
        spec.policy.kemac_encryption,
        spec.policy.signature,
        spec.policy.envelope
    );
    let _ = writeln!(o, "# roles: I=initiator R=responder TP1..TPn=third parties");
    let _ = writeln!(o, "\n## pre-shared keys");
    let psks: Vec<(String, Vec<u8>)> = match &keys.initiator.mode {
        Mode::Psk { responder } => vec![("I-R".into(), responder.psk.as_bytes().to_vec())],
        Mode::Distributed { third_parties, .. } => third_parties
            .iter()
            .enumerate()
            .map(|(i, tp)| (format!("I-TP{}", i + 1), tp.psk.as_bytes().to_vec()))
            .collect(),
        Mode::Pk { .. } => Vec::new(),
    };
    for (name, psk) in &psks {
        let _ = writeln!(o, "PSK {name} = {}", hex(psk));
    }
    if psks.is_empty() {
        let _ = writeln!(o, "(none: public-key mode)");
    }

    let role = |a: &std::net::SocketAddr| match addrs.iter().position(|x| x == a) {
        Some(0) => "I".to_owned(),
        Some(1) => "R".to_owned(),
        Some(i) => format!("TP{}", i - 1),
        None => a.to_string(),
    };
    let _ = writeln!(o, "\n## messages");
    for (i, m) in annotate::messages(&w.net.log, |b| Message::decode(b).ok()).enumerate() {
        let (d, msg) = (m.datagram, &m.message);
        let h = &msg.header;
        let (from, to) = (role(&d.from), role(&d.to));
        let ends = (from.as_str(), to.as_str());
        let name = format!("{:?}", h.data_type);
        annotate::heading(o, i + 1, d.at.0 - start.0, ends, (&name, Vec::new()), &m);
        let _ = writeln!(
            o,
            "  HDR: version 1, data type {:?}, V {}, PRF {:?}, CSB ID {:#010x}, CS map SRTP-ID {:?}",
            h.data_type, h.v, h.prf, h.csb_id, h.cs_map
        );
        let mut rand = Vec::new();
        let mut ts = 0;
        for p in &msg.payloads {
            let _ = writeln!(o, "  {}: {}", p.name(), describe(p));
            match p {
                Payload::Rand(r) => rand.clone_from(&r.data),
                Payload::T(Timestamp::NtpUtc(t) | Timestamp::Ntp(t)) => ts = *t,
                _ => {}
            }
        }
        // Open the KEMAC with the key its receiver holds.
        let inkey: Option<Vec<u8>> = match h.data_type {
            DataType::PreShared => {
                let index = addrs.iter().position(|a| *a == d.to).unwrap_or(0);
                let name = if index == 1 {
                    "I-R".to_owned()
                } else {
                    format!("I-TP{}", index.saturating_sub(1))
                };
                psks.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, k)| k.clone())
            }
            DataType::PublicKey => msg.payloads.iter().find_map(|p| match p {
                Payload::Pke(pke) => mk::decrypt_envelope_key(
                    &keys.responder.decryption_key,
                    spec.policy.envelope,
                    &pke.data,
                )
                .ok()
                .map(|k| k.to_vec()),
                _ => None,
            }),
            _ => None,
        };
        if let Some(inkey) = inkey {
            if h.data_type == DataType::PublicKey {
                let _ = writeln!(
                    o,
                    "  envelope key (PKE opened with R's key) = {}",
                    hex(&inkey)
                );
            }
            open_kemac(o, msg, &inkey, h.csb_id, &rand, ts, h.data_type);
        }
    }

    let _ = writeln!(o, "\n## result");
    let (tek_i, salt_i) = at_i.keys.expose_for_testing_only();
    let (tek_r, salt_r) = at_r.keys.expose_for_testing_only();
    let _ = writeln!(o, "CSB ID = {:#010x}", at_i.csb_id);
    let _ = writeln!(o, "TEK (cs_id 1) at I = {}", hex(tek_i));
    let _ = writeln!(o, "TEK (cs_id 1) at R = {}", hex(tek_r));
    let _ = writeln!(o, "salt at I = {}", hex(salt_i));
    let _ = writeln!(o, "salt at R = {}", hex(salt_r));
    let _ = writeln!(o, "fingerprint = {}", hex(&at_i.keys.fingerprint()));
    let _ = writeln!(o, "verified by R = {}", at_i.verified);
    annotate::operations(o, "initiator", w.initiator.ops());
    Ok(out)
}

/// Decrypts a message's KEMAC and shows the key data and the message keys used.
fn open_kemac(
    o: &mut String,
    msg: &Message,
    inkey: &[u8],
    csb_id: u32,
    rand: &[u8],
    ts: u64,
    data_type: DataType,
) {
    let Some(kemac) = msg.payloads.iter().find_map(|p| match p {
        Payload::Kemac(k) => Some(k),
        _ => None,
    }) else {
        return;
    };
    let Ok(keys) = MessageKeys::derive(inkey, csb_id, rand) else {
        return;
    };
    let _ = writeln!(o, "  KEMAC opened:");
    let _ = writeln!(o, "    encr_key = {}", hex(keys.encryption_key()));
    let _ = writeln!(o, "    salt_key = {}", hex(keys.salt_key()));
    let _ = writeln!(o, "    auth_key = {}", hex(keys.authentication_key()));
    let _ = writeln!(o, "    IV = {}", hex(&keys.kemac_iv(ts)));
    let alg = match kemac.encr_alg {
        m2msec_wire::mikey::EncrAlg::Null => mk::KemacEncryption::Null,
        m2msec_wire::mikey::EncrAlg::AesCm128 => mk::KemacEncryption::AesCm128,
        m2msec_wire::mikey::EncrAlg::AesKw128 => mk::KemacEncryption::AesKw128,
    };
    let Ok(plain) = keys.decrypt(alg, ts, &kemac.encr_data) else {
        let _ = writeln!(o, "    (does not decrypt)");
        return;
    };
    wrap_hex(o, "  plaintext", &plain);
    if let Ok(content) = KemacPlaintext::decode(&plain, data_type == DataType::PublicKey) {
        if let Some(id) = &content.id {
            let _ = writeln!(o, "    IDi = {:?}", String::from_utf8_lossy(&id.data));
        }
        for k in &content.keys {
            let _ = writeln!(
                o,
                "    Key data: type {:?}, key {}, validity {:?}",
                k.kind(),
                hex(k.key()),
                k.validity()
            );
        }
    }
}

/// One payload's fields, bytes in hex.
fn describe(p: &Payload) -> String {
    match p {
        Payload::T(t) => match t {
            Timestamp::NtpUtc(v) => format!("NTP-UTC {v:#018x}"),
            Timestamp::Ntp(v) => format!("NTP {v:#018x}"),
            Timestamp::Counter(v) => format!("COUNTER {v}"),
        },
        Payload::Rand(r) => hex(&r.data),
        Payload::Id(id) => format!("{:?} {:?}", id.id_type, String::from_utf8_lossy(&id.data)),
        Payload::Sp(sp) => format!(
            "policy {}, {:?}, {}",
            sp.policy_no,
            sp.prot_type,
            sp.srtp_policy()
                .map_or_else(|_| "unreadable".into(), |s| format!("{s:?}"))
        ),
        Payload::GeneralExt(ext) => match DistributedParams::from_ext(ext) {
            Ok(d) => format!("type {:#04x} (distributed mode): {d:?}", ext.ext_type),
            Err(_) => format!("type {} data {}", ext.ext_type, hex(&ext.data)),
        },
        Payload::Kemac(k) => format!(
            "encr alg {:?}, encr data {}, MAC alg {}, MAC {}",
            k.encr_alg,
            hex(&k.encr_data),
            k.mac.alg_code(),
            hex(k.mac.as_bytes())
        ),
        Payload::Pke(pke) => format!("C {:?}, data {}", pke.cache, hex(&pke.data)),
        Payload::Sign(s) => format!("S type {:?}, signature {}", s.s_type, hex(&s.signature)),
        Payload::V(v) => format!(
            "MAC alg {}, MAC {}",
            v.mac.alg_code(),
            hex(v.mac.as_bytes())
        ),
        Payload::Err(e) => format!("{:?}", e.code),
        other => format!("{other:?}"),
    }
}
