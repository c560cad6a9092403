//! Deterministic annotated traces of E2SEC (paper 003): both parties' warrant requests and the
//! EPC's grants, each grant opened with its holder's pre-shared key, then the mutual
//! authentication the MTC server starts with the MTC device, and SK at both ends. With a fixed
//! seed the output is byte-for-byte stable (committed under `vectors/e2sec/`, re-derived by a
//! test), so another implementation can check its messages against it.

use core::fmt::Write as _;

use m2msec_crypto::aead::AeadKey;
use m2msec_crypto::rng::SeededRng;
use m2msec_wire::cbor::{self, hex};
use m2msec_wire::e2sec::{Message, WarrantBody};

use super::sim::{Configs, DEVICE, EPC, PORT, SERVER, Spec, World, addresses};
use super::{Error, LABEL, PartyEvent, SessionKey};
use crate::{GroupOps, annotate};

/// Renders the trace of `spec` with randomness from `seed`: warrants for both parties, then
/// one authentication the server initiates.
///
/// # Errors
/// If the deployment cannot be generated or the run does not establish SK at both ends.
pub fn render(spec: &Spec, seed: u64) -> Result<String, Error> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let addrs = addresses();
    let configs = Configs::generate(spec, &addrs, &mut rng)?;
    let psks: [(&str, AeadKey); 2] = [
        (DEVICE, configs.device.epc_psk.clone()),
        (SERVER, configs.server.epc_psk.clone()),
    ];
    let public = [
        ("v_EPC", configs.epc.secret_key.public_key()?),
        ("v_D", configs.device.secret_key.public_key()?),
        ("v_S", configs.server.secret_key.public_key()?),
    ];
    let mut w = World::new(configs, addrs)?;
    let start = w.net.now;
    w.fetch_warrants(&mut rng)?;
    w.server.connect(w.net.now, &mut rng, DEVICE)?;
    w.run(&mut rng, &mut |d| vec![d.clone()]);
    let (Some(at_d), Some(at_s)) = (established(&w.events.device), established(&w.events.server))
    else {
        return Err(Error::Config(format!(
            "the traced run did not establish SK: {:?}",
            w.events.server
        )));
    };

    let mut out = String::new();
    let o = &mut out;
    // Writing into a String cannot fail; the results are ignored throughout.
    let _ = writeln!(o, "# m2msec E2SEC trace, seed {seed}");
    let _ = writeln!(
        o,
        "# group {}, signature variant {:?}; CBOR messages on UDP port {PORT}",
        spec.group.name(),
        spec.variant
    );
    let _ = writeln!(
        o,
        "# roles: EPC={EPC} D=device {DEVICE} S=server {SERVER}; times from the start of the run"
    );
    let _ = writeln!(
        o,
        "\n## pre-shared keys (the stand-in for EPS-AKA between each holder and the EPC)"
    );
    for (holder, key) in &psks {
        let _ = writeln!(o, "{holder} = {}", hex(key.as_bytes()));
    }
    let _ = writeln!(o, "\n## public keys");
    for (name, key) in &public {
        let _ = writeln!(o, "{name} = {}", hex(key));
    }

    let role = |a: &std::net::SocketAddr| match w.addrs.iter().position(|x| x == a) {
        Some(0) => "EPC".to_owned(),
        Some(1) => "D".to_owned(),
        Some(2) => "S".to_owned(),
        _ => a.to_string(),
    };
    let _ = writeln!(o, "\n## messages");
    for (n, m) in annotate::messages(&w.net.log, |b| Message::decode(b).ok()).enumerate() {
        let (d, msg) = (m.datagram, &m.message);
        let (from, to) = (role(&d.from), role(&d.to));
        annotate::heading(
            o,
            n + 1,
            d.at.0 - start.0,
            (&from, &to),
            (msg.name(), msg.fields()),
            &m,
        );
        if let Message::WarrantGrant(g) = msg {
            let key = psks.iter().find(|(h, _)| *h == g.holder).map(|(_, k)| k);
            let aad = [LABEL, b"warrant", g.holder.as_bytes()].concat();
            let body = key.and_then(|k| k.open_with_nonce_prefix(&aad, &g.sealed.0).ok());
            if let Some(plain) = body {
                let fields = cbor::from_slice::<WarrantBody>(&plain)
                    .map(|b| b.fields())
                    .unwrap_or_default();
                annotate::opened(o, &plain, &fields);
            }
        }
    }

    let _ = writeln!(o, "\n## result");
    let _ = writeln!(o, "SK at D = {}", hex(at_d.expose_for_testing_only()));
    let _ = writeln!(o, "SK at S = {}", hex(at_s.expose_for_testing_only()));
    let _ = writeln!(o, "SK fingerprint = {}", hex(&at_s.fingerprint()));
    // The paper's counts (Tables V, VI), warrant verification included; membership checks
    // are not counted.
    for (role, party) in [("device", &w.device), ("server", &w.server)] {
        let ops = GroupOps::from(&party.tally());
        let _ = writeln!(
            o,
            "{role} group operations: T_E {}, T_M {}, T_H {}, T_A {}",
            ops.te, ops.tm, ops.th, ops.ta
        );
    }
    Ok(out)
}

fn established(events: &[PartyEvent]) -> Option<&SessionKey> {
    events.iter().find_map(|e| match e {
        PartyEvent::Established { key, .. } => Some(key),
        _ => None,
    })
}
