//! Deterministic annotated traces of SGA (paper 002): both devices' registrations, the cipher
//! negotiation (A1–A5), the key exchange (B1–B7) and one message d_i sends d_j through the
//! server, every sealed body opened with the key its receiver uses, then the session key at
//! both devices. With a fixed seed the output is byte-for-byte stable (committed under
//! `vectors/sga/`, re-derived by a test), so another implementation can check its messages
//! against it.

use core::fmt::Write as _;
use core::net::SocketAddr;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::{Element, Group, GroupId};
use m2msec_crypto::pke::PkeSecretKey;
use m2msec_crypto::rng::SeededRng;
use m2msec_wire::cbor::{self, Cbor, hex};
use m2msec_wire::sga::{
    AliasBytes, InviteAcceptedBody, InviteBody, KeyResultBody, KeyShareBody, Message,
    NegotiateBody, NegotiateResponseBody, RegistrationBody, VERSION,
};
use zeroize::Zeroizing;

use super::pseudonym::{alias, epoch_of};
use super::sim::{EPOCH, PORT, Spec, World};
use super::{
    ALIAS_EPOCH, Aad, DeviceEvent, DeviceKey, Error, LABEL, Mac, SessionId, SessionKey,
    check_device_mac, key_share_invite_mac, message_aad, recipient_aad, recipient_key,
    result_check, share_check, temp_key_mask, xor,
};
use crate::{Endpoint, OpCounts, annotate};

/// What d_i sends d_j in the trace.
const TEXT: &[u8] = b"hello d_j, from d_i";

/// Short names of the roles, by their index in [`World::addrs`].
const ROLES: [&str; 3] = ["S", "d_i", "d_j"];

/// The devices' long-term keys, as the paper names them.
const KD: [&str; 2] = ["k_di", "k_dj"];

/// Renders the trace of `spec` (two devices) with randomness from `seed`: registration of both
/// devices, d_i's invitation of d_j and the key exchange over the first suite of d_i, then one
/// message from d_i to d_j and a Poll from d_j.
///
/// # Errors
/// If the deployment cannot be generated or the run does not go through.
pub fn render(spec: &Spec, seed: u64) -> Result<String, Error> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let mut w = World::generate(spec, &mut rng)?;
    if w.devices.len() != 2 {
        return Err(Error::Config("a trace has two devices".into()));
    }
    let pr_g = PkeSecretKey::from_pem(w.server_key_pem())?;
    let names: Vec<String> = w.devices.iter().map(|d| d.identity().to_owned()).collect();
    let keys: Vec<(DeviceKey, AeadSuite)> = w
        .devices
        .iter()
        .map(|d| (d.device_key().0.clone(), d.device_key().1))
        .collect();
    let suite = w.devices[0].suites()[0];
    let start = w.net.now;

    w.register_all(&mut rng)?;
    w.exchange(&mut rng, suite, &mut |_, call| call())?;
    let (Some((session, at_i)), Some((_, at_j))) = (
        established(&w.events.devices[0]),
        established(&w.events.devices[1]),
    ) else {
        return Err(Error::Config(format!(
            "the traced run did not establish a key: {:?}",
            w.events.devices
        )));
    };
    let now = w.net.now;
    w.devices[0].send(now, &mut rng, session, TEXT)?;
    w.run_honest(&mut rng);
    let now = w.net.now;
    w.devices[1].poll(now);
    w.run_honest(&mut rng);
    let received = w.events.devices[1].iter().any(
        |e| matches!(e, DeviceEvent::Received { plaintext, .. } if plaintext.as_slice() == TEXT),
    );
    if !received {
        return Err(Error::Config(format!(
            "the traced message did not arrive: {:?}",
            w.events.devices[1]
        )));
    }

    let mut out = String::new();
    let o = &mut out;
    // Writing into a String cannot fail; the results are ignored throughout.
    let _ = writeln!(o, "# m2msec SGA trace, seed {seed}");
    let _ = writeln!(
        o,
        "# group {}, server encryption {:?}, suite {suite:?}; CBOR messages (wire version \
         {VERSION}) on UDP port {PORT}",
        spec.group.name(),
        spec.pke,
    );
    let _ = writeln!(
        o,
        "# roles: S=server d_i={:?} (invites) d_j={:?}; times from the start of the run, \
         UNIX time {} ms",
        names[0], names[1], EPOCH.0
    );
    let _ = writeln!(o, "\n## keys");
    let _ = writeln!(o, "PR_G, the server's private key (E_PK^G and F_G):");
    for line in pr_g.to_pem()?.lines() {
        let _ = writeln!(o, "  {line}");
    }
    let _ = writeln!(o, "PK_G = {}", hex(&pr_g.public_key().to_bytes()));
    for (name, (key, initial)) in KD.iter().zip(&keys) {
        let _ = writeln!(
            o,
            "{name} = {} (initial suite {initial:?})",
            hex(key.as_bytes())
        );
    }
    let _ = writeln!(
        o,
        "pseudonyms rotate every {} s: epoch = UNIX time / {} s",
        ALIAS_EPOCH.as_secs(),
        ALIAS_EPOCH.as_secs()
    );

    conventions(o);

    let index = |a: &SocketAddr| w.addrs.iter().position(|x| x == a);
    let role = |a: &SocketAddr| index(a).map_or_else(|| a.to_string(), |i| ROLES[i].to_owned());
    let mut opener = Opener {
        pr_g: &pr_g,
        keys: &keys,
        names: &names,
        session_keys: [&at_i, &at_j],
        temp: [None, None],
        k_s: [None, None],
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
        // The device a message concerns: its sender, or the receiver of the server's.
        let device = index(&d.from)
            .filter(|&i| i > 0)
            .or_else(|| index(&d.to))
            .and_then(|i| i.checked_sub(1));
        if let (Some(i), Some(a)) = (device, msg.alias()) {
            pseudonym(o, i, &keys[i].0, d.at.0, a);
        }
        if let Some(i) = device {
            opener.mac(o, i, msg);
            opener.open(o, i, msg);
        }
    }

    let _ = writeln!(o, "\n## result");
    let _ = writeln!(o, "session = {session}");
    for (r, key) in ROLES[1..].iter().zip([&at_i, &at_j]) {
        let _ = writeln!(
            o,
            "session key (B7, from K) at {r} = {} ({:?})",
            hex(key.key.as_bytes()),
            key.suite()
        );
    }
    let _ = writeln!(o, "session key fingerprint = {}", hex(&at_i.fingerprint()));
    let _ = writeln!(
        o,
        "(K = g^(Ri·Rs·Rj) itself is kept by no role: each device derives the session key from it \
         in B7 and forgets it)"
    );
    let _ = writeln!(
        o,
        "{} received message 0 from {}: {:?}",
        names[1],
        names[0],
        String::from_utf8_lossy(TEXT)
    );
    annotate::operations(o, "S", w.server.op_counts());
    for (r, d) in ROLES[1..].iter().zip(&w.devices) {
        annotate::operations(o, r, d.op_counts());
    }
    Ok(out)
}

/// How the names used below are built (`protocol/src/sga/mod.rs`).
fn conventions(o: &mut String) {
    let label = String::from_utf8_lossy(LABEL);
    let _ = writeln!(o, "\n## conventions");
    for line in [
        format!(
            "labelled(p, f1, …) = {label:?} ‖ p ‖ for each field: its length (u32, big-endian) ‖ the field"
        ),
        format!(
            "HKDF(k, p) = HKDF-SHA-256 with salt {label:?}, key k, info {label:?} ‖ p, as long as the key it makes"
        ),
        "sealed under a symmetric key: nonce ‖ AEAD ciphertext ‖ tag".to_owned(),
        "numbers in labelled(…) are u64 big-endian (epoch, timestamp, message_id) or one byte \
         (status, group, suite id)"
            .to_owned(),
        "mac = HMAC-SHA-256 under HKDF(k_d, \"mac\") (32 bytes) over labelled(purpose, fields)"
            .to_owned(),
        "f_Ks(…) = HMAC-SHA-256 keyed with the encoding of K_s over labelled(purpose, fields)"
            .to_owned(),
        "session key = HKDF-SHA-256 with salt session, key the encoding of K, info \
         labelled(\"session key\", ID_di, ID_dj, suite id); fingerprint = the first 8 bytes of \
         HMAC-SHA-256 under the session key over \"m2msec sga fingerprint\""
            .to_owned(),
    ] {
        let _ = writeln!(o, "{line}");
    }
}

/// The session and key a device's events report established.
fn established(events: &[DeviceEvent]) -> Option<(SessionId, SessionKey)> {
    events.iter().find_map(|e| match e {
        DeviceEvent::Established { session, key, .. } => Some((*session, key.clone())),
        _ => None,
    })
}

/// Says whose pseudonym `a` is, recomputed from k_d for the epoch of `at`.
fn pseudonym(o: &mut String, i: usize, key: &DeviceKey, at: u64, a: &AliasBytes) {
    let (role, kd) = (ROLES[i + 1], KD[i]);
    let epoch = epoch_of(crate::Millis(at));
    let whose = if alias(&mut OpCounts::default(), key, epoch) == *a {
        format!("{role}'s pseudonym")
    } else {
        format!("DOES NOT match {role}'s pseudonym")
    };
    let _ = writeln!(
        o,
        "  ({whose} for epoch {epoch}: the first 16 bytes of HMAC-SHA-256 under HKDF({kd}, \
         \"alias\") (32 bytes) over labelled(\"alias\", epoch))"
    );
}

/// Opens the sealed parts of each message with the keys their receivers use, learning the
/// temporary keys k_t^i and k_t^j from A1 and A3 as the server does.
struct Opener<'a> {
    pr_g: &'a PkeSecretKey,
    keys: &'a [(DeviceKey, AeadSuite)],
    names: &'a [String],
    session_keys: [&'a SessionKey; 2],
    /// k_t^i and k_t^j, once known.
    temp: [Option<AeadKey>; 2],
    /// K_s of d_i and d_j, once their shares are opened.
    k_s: [Option<(GroupId, Element)>; 2],
}

impl Opener<'_> {
    /// Checks the MAC of a message device `i` sent or received, with the key its receiver uses.
    fn mac(&self, o: &mut String, i: usize, msg: &Message) {
        let name = self.names[i].as_str();
        let (mac, tag, fields): (Mac<'_>, &[u8], &str) = match msg {
            Message::RegisterResponse(m) => (
                Mac::RegisterResponse(name, m.status),
                &m.mac.0,
                "ID_d, status as one byte",
            ),
            Message::Invite(m) => (Mac::Invite(&m.sealed.0), &m.mac, "sealed"),
            Message::NegotiateResponse(m) => (
                Mac::NegotiateResponse(SessionId(m.session), &m.sealed.0),
                &m.mac,
                "session, sealed",
            ),
            Message::Delivered(m) => (
                Mac::Delivered(SessionId(m.session), name, m.message_id),
                &m.mac,
                "session, ID_dj, message_id",
            ),
            Message::Poll(m) => (Mac::Poll(name, m.timestamp), &m.mac, "ID_d, timestamp"),
            Message::KeyShareInvite(m) => {
                let expected = self.temp[1].as_ref().map(|k| {
                    let ops = &mut OpCounts::default();
                    key_share_invite_mac(ops, k.as_bytes(), SessionId(m.session), name, m.group)
                });
                let ok = expected.is_some_and(|e| e == m.mac);
                let how = "HMAC-SHA-256 under HKDF(k_t^j, \"key share invite\") (32 bytes) over \
                           labelled(\"key share invite\", session, ID_dj, group as one byte)";
                verdict(o, &format!("mac = {how}"), ok);
                return;
            }
            _ => return,
        };
        let ok = check_device_mac(&mut OpCounts::default(), &self.keys[i].0, mac, tag).is_ok();
        let purpose = String::from_utf8_lossy(mac.purpose());
        let how = format!(
            "under HKDF({}, \"mac\") over labelled({purpose:?}, {fields})",
            KD[i]
        );
        verdict(o, &format!("mac {how}"), ok);
    }

    /// Writes what device `i` (0 = d_i, 1 = d_j) sent or received in `msg`, opened.
    fn open(&mut self, o: &mut String, i: usize, msg: &Message) {
        let (k_d, initial) = (&self.keys[i].0, self.keys[i].1);
        let id_i = self.names[0].as_str();
        match msg {
            Message::RegisterRequest(m) => {
                self.to_server(o, "sealed_key", Aad::Register, &m.sealed_key.0, |p| {
                    fields(p, RegistrationBody::fields)
                });
                let proof = Aad::RegisterProof
                    .key_from(k_d, initial)
                    .ok()
                    .and_then(|k| {
                        k.open_with_nonce_prefix(&Aad::RegisterProof.bytes(), &m.proof.0)
                            .ok()
                    });
                show(
                    o,
                    &format!(
                        "proof, opened under HKDF({}, \"register proof\"), {}",
                        KD[i],
                        bound(Aad::RegisterProof)
                    ),
                    proof,
                    text("ID_d"),
                );
            }
            Message::Invite(m) => {
                let body = self.to_server(o, "sealed", Aad::Invite(id_i), &m.sealed.0, |p| {
                    fields(p, InviteBody::fields)
                });
                if let Some(body) = body.and_then(|p| cbor::from_slice::<InviteBody>(&p).ok()) {
                    let len = AeadSuite::try_from(body.suite).map_or(0, AeadSuite::key_len);
                    let k_t = xor(body.masked_temp_key.expose(), &temp_key_mask(k_d, len));
                    self.learn(
                        o,
                        0,
                        body.suite,
                        &k_t,
                        "masked_temp_key ⊕ HKDF(k_di, \"temp key mask\")",
                    );
                }
            }
            Message::Negotiate(m) => {
                let aad = Aad::Negotiate(SessionId(m.session));
                let plain = aad
                    .key_from(k_d, initial)
                    .ok()
                    .and_then(|k| k.open_with_nonce_prefix(&aad.bytes(), &m.sealed.0).ok());
                show(
                    o,
                    &format!(
                        "sealed, opened under HKDF(k_dj, \"negotiate\"), {}",
                        bound(aad)
                    ),
                    plain,
                    |p| fields(p, NegotiateBody::fields),
                );
            }
            Message::NegotiateResponse(m) => {
                let aad = Aad::NegotiateResponse(SessionId(m.session));
                let body = self.to_server(o, "sealed", aad, &m.sealed.0, |p| {
                    fields(p, NegotiateResponseBody::fields)
                });
                let body = body.and_then(|p| cbor::from_slice::<NegotiateResponseBody>(&p).ok());
                if let (Some(body), Some(k_t_i)) = (body, &self.temp[0]) {
                    let k_t = xor(body.masked_temp_key.expose(), k_t_i.as_bytes());
                    self.learn(o, 1, body.suite, &k_t, "masked_temp_key ⊕ k_t^i");
                }
            }
            Message::InviteAccepted(m) => {
                let aad = Aad::InviteAccepted;
                self.under_temp(o, i, aad, &m.sealed.0, InviteAcceptedBody::fields);
            }
            Message::KeyShare(m) => {
                let session = SessionId(m.session);
                let body = self.under_temp(o, i, Aad::KeyShare, &m.sealed.0, KeyShareBody::fields);
                let Some(body) = body else { return };
                let aad = Aad::Element(session);
                let element = self.temp_suite(i).and_then(|s| {
                    aad.key_from(k_d, s)
                        .ok()?
                        .open_with_nonce_prefix(&aad.bytes(), &body.sealed_element.0)
                        .ok()
                });
                let what = format!(
                    "sealed_element, opened under HKDF({}, \"element\"), {}",
                    KD[i],
                    bound(aad)
                );
                show(o, &what, element, |p| {
                    let same = p == body.element.0.as_slice();
                    let n = if same {
                        "equals element"
                    } else {
                        "differs from element"
                    };
                    vec![("N", n.into())]
                });
                let r = self.to_server(
                    o,
                    "trapdoor (r)",
                    Aad::Trapdoor(session),
                    &body.trapdoor.0,
                    |_| Vec::new(),
                );
                let group = GroupId::try_from(body.group).ok();
                let k_s = group.zip(r).and_then(|(g, r)| k_s(g, &body.element.0, &r));
                if let Some(k_s) = &k_s {
                    annotate::wrap_hex(o, "K_s = element^r", &k_s.to_bytes());
                    let ok =
                        share_check(&mut OpCounts::default(), k_s, &body.element.0) == body.check;
                    verdict(o, "check = f_Ks(element)", ok);
                }
                self.k_s[i] = group.zip(k_s);
            }
            Message::KeyResult(m) => {
                let body =
                    self.under_temp(o, i, Aad::KeyResult, &m.sealed.0, KeyResultBody::fields);
                if let (Some(body), Some((group, k_s))) = (body, &self.k_s[i]) {
                    let ids = (self.names[0].as_str(), self.names[1].as_str());
                    let ok = Group::new(*group)
                        .element_from_bytes(&body.element.0)
                        .is_ok_and(|e| {
                            result_check(&mut OpCounts::default(), k_s, ids, &e) == body.check
                        });
                    verdict(o, "check = f_Ks(ID_di, ID_dj, K_s, element)", ok);
                }
            }
            Message::Deliver(m) => {
                let session = SessionId(m.session);
                let aad = recipient_aad(session, m.message_id, &m.ciphertext.0);
                let to = recipient_key(k_d, initial)
                    .ok()
                    .and_then(|k| k.open_with_nonce_prefix(&aad, &m.recipient.0).ok());
                show(
                    o,
                    "recipient, opened under HKDF(k_di, \"deliver\"), associated data \
                     labelled(\"recipient\", session, message_id, ciphertext)",
                    to,
                    text("ID_dj"),
                );
                self.message(o, i, session, m.message_id, &m.ciphertext.0);
            }
            Message::Forward(m) => {
                self.message(o, i, SessionId(m.session), m.message_id, &m.ciphertext.0);
            }
            _ => {}
        }
    }

    /// Opens message `id` of d_i to d_j with the session key at device `i`.
    fn message(&self, o: &mut String, i: usize, session: SessionId, id: u64, ciphertext: &[u8]) {
        let aad = message_aad(session, &self.names[0], &self.names[1], id);
        let plain = self.session_keys[i]
            .key
            .open_with_nonce_prefix(&aad, ciphertext)
            .ok();
        let what = "ciphertext, opened under the session key, associated data \
                    labelled(\"message\", session, ID_di, ID_dj, message_id)";
        show(o, what, plain, text("text"));
    }

    /// Decrypts a part encrypted to S with PR_G; its plaintext, if it opened.
    fn to_server(
        &self,
        o: &mut String,
        part: &str,
        aad: Aad<'_>,
        sealed: &[u8],
        fields: impl Fn(&[u8]) -> Vec<(&'static str, String)>,
    ) -> Option<Zeroizing<Vec<u8>>> {
        let plain = self.pr_g.decrypt(&aad.bytes(), sealed).ok();
        show(
            o,
            &format!("{part}, decrypted with PR_G, {}", bound(aad)),
            plain.clone(),
            fields,
        );
        plain
    }

    /// Opens and writes a body sealed under device `i`'s temporary key; the body, if it opened.
    fn under_temp<T: Cbor>(
        &self,
        o: &mut String,
        i: usize,
        aad: Aad<'_>,
        sealed: &[u8],
        named: fn(&T) -> Vec<(&'static str, String)>,
    ) -> Option<T> {
        let plain = self.temp[i]
            .as_ref()
            .and_then(|k| k.open_with_nonce_prefix(&aad.bytes(), sealed).ok());
        let body = plain.as_ref().and_then(|p| cbor::from_slice::<T>(p).ok());
        let what = format!("sealed, opened under {}, {}", temp_name(i), bound(aad));
        show(o, &what, plain, |p| fields(p, named));
        body
    }

    fn temp_suite(&self, i: usize) -> Option<AeadSuite> {
        self.temp[i].as_ref().map(AeadKey::suite)
    }

    /// Records device `i`'s temporary key, recovered as `how`.
    fn learn(&mut self, o: &mut String, i: usize, suite: u8, k_t: &[u8], how: &str) {
        let key = AeadSuite::try_from(suite)
            .ok()
            .and_then(|s| AeadKey::new(s, k_t).ok());
        let _ = writeln!(o, "  {} = {how} = {}", temp_name(i), hex(k_t));
        self.temp[i] = key;
    }
}

/// The associated data `aad` stands for, as the trace's conventions write it.
fn bound(aad: Aad<'_>) -> String {
    let fields = match aad {
        Aad::Invite(_) => ", ID_di",
        Aad::Negotiate(_) | Aad::NegotiateResponse(_) | Aad::Element(_) | Aad::Trapdoor(_) => {
            ", session"
        }
        _ => "",
    };
    let purpose = String::from_utf8_lossy(aad.purpose());
    format!("associated data labelled({purpose:?}{fields})")
}

/// Writes whether `what` holds.
fn verdict(o: &mut String, what: &str, ok: bool) {
    let _ = writeln!(
        o,
        "  {what}: {}",
        if ok { "holds" } else { "DOES NOT HOLD" }
    );
}

fn temp_name(i: usize) -> &'static str {
    ["k_t^i", "k_t^j"][i.min(1)]
}

/// Writes an opened part, or that it did not open (never in an honest run).
fn show(
    o: &mut String,
    what: &str,
    plain: Option<Zeroizing<Vec<u8>>>,
    fields: impl Fn(&[u8]) -> Vec<(&'static str, String)>,
) {
    match plain {
        Some(p) => annotate::opened_as(o, what, &p, &fields(&p)),
        None => {
            let _ = writeln!(o, "  {what}: DOES NOT OPEN");
        }
    }
}

/// The named fields of a CBOR body.
fn fields<T: Cbor>(
    plain: &[u8],
    named: fn(&T) -> Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    cbor::from_slice::<T>(plain)
        .map(|b| named(&b))
        .unwrap_or_default()
}

/// A plaintext that is text, under `name`.
fn text(name: &'static str) -> impl Fn(&[u8]) -> Vec<(&'static str, String)> {
    move |p| vec![(name, format!("{:?}", String::from_utf8_lossy(p)))]
}

/// K_s = N^r in `group` (the server's recomputation in B2/B4).
fn k_s(group: GroupId, n: &[u8], r: &[u8]) -> Option<Element> {
    let group = Group::new(group);
    let n = group.element_from_bytes(n).ok()?;
    let r = group.scalar_from_bytes(r).ok()?;
    group.exp(&n, &r).ok()
}
