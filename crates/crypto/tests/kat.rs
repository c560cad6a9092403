//! Known-answer tests against published vectors; the data lives in `vectors/crypto/` (see its
//! README.md for sources and format).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use m2msec_crypto::Error;
use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::hash::Sha256;
use m2msec_crypto::kdf::{hkdf_sha256, hmac_sha256, verify_hmac_sha256};
use m2msec_crypto::ots::{OtsScheme, OtsSignature};

/// RFC 5869 Appendix A, Test Cases 1-3.
#[test]
fn rfc5869_hkdf_sha256() {
    let cases = common::load("rfc5869-hkdf-sha256.txt");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let (ikm, salt, info) = (case.hex("ikm"), case.hex("salt"), case.hex("info"));
        let mut okm = vec![0u8; case.usize("okm_len")];
        hkdf_sha256(&salt, &ikm, &info, &mut okm).unwrap();
        assert_eq!(okm, case.hex("okm"), "{}", case.name);
        // HKDF-Extract(salt, IKM) = HMAC-Hash(salt, IKM) (RFC 5869 section 2.2); an empty salt is
        // HashLen zeros, which HMAC's zero padding makes equal to the empty key.
        assert_eq!(
            hmac_sha256(&salt, &[&ikm]).to_vec(),
            case.hex("prk"),
            "{}",
            case.name
        );
    }
}

/// RFC 4231 section 4, Test Cases 1-7.
#[test]
fn rfc4231_hmac_sha256() {
    let cases = common::load("rfc4231-hmac-sha256.txt");
    assert_eq!(cases.len(), 7);
    for case in cases {
        let (key, data, mac) = (case.hex("key"), case.bytes("data"), case.hex("mac"));
        let full = hmac_sha256(&key, &[&data]);
        assert_eq!(&full[..mac.len()], &mac[..], "{}", case.name);
        if mac.len() == 32 {
            verify_hmac_sha256(&key, &[&data], &mac).unwrap();
            // Split input: the MAC is over the concatenation.
            let (a, b) = data.split_at(data.len() / 2);
            verify_hmac_sha256(&key, &[a, b], &mac).unwrap();
        } else {
            // Truncated tags are not accepted by the verifier: full 32 bytes only.
            assert_eq!(
                verify_hmac_sha256(&key, &[&data], &mac),
                Err(Error::Authentication)
            );
        }
    }
}

/// RFC 3610 section 8, Packet Vectors #1-#3 (AES-128, 8-byte tag, 13-byte nonce).
#[test]
fn rfc3610_aes128_ccm8() {
    let cases = common::load("rfc3610-aes-ccm.txt");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let key = AeadKey::new(AeadSuite::Aes128Ccm8, &case.hex("key")).unwrap();
        let (nonce, aad, payload) = (case.hex("nonce"), case.hex("aad"), case.hex("payload"));
        let sealed = key.seal(&nonce, &aad, &payload).unwrap();
        assert_eq!(sealed, case.hex("sealed"), "{}", case.name);
        assert_eq!(&key.open(&nonce, &aad, &sealed).unwrap()[..], &payload[..]);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 0x80;
        assert_eq!(
            key.open(&nonce, &aad, &tampered),
            Err(Error::Authentication)
        );
    }
}

/// RFC 8554 Appendix F, Test Case 1 (LMOTS_SHA256_N32_W8 at both levels).
#[test]
fn rfc8554_test_case_1_lmots_inside_hss() {
    check_rfc8554_case(
        "rfc8554-test-case-1.txt",
        (5, 10),
        [OtsScheme::LmotsSha256N32W8; 2],
    );
}

/// RFC 8554 Appendix F, Test Case 2 (LMOTS_SHA256_N32_W4, our default compact scheme, at level 0
/// under an H10 tree; LMOTS_SHA256_N32_W8 at level 1).
#[test]
fn rfc8554_test_case_2_lmots_inside_hss() {
    check_rfc8554_case(
        "rfc8554-test-case-2.txt",
        (3, 4),
        [OtsScheme::LmotsSha256N32W4, OtsScheme::LmotsSha256N32W8],
    );
}

/// Both LM-OTS signatures inside the HSS signature, run through our LM-OTS code (Algorithm 4b)
/// and then up their LMS authentication paths (Algorithm 6a), must reach the published roots: the
/// level-0 one the HSS public key's T[1], the level-1 one the level-1 public key's T[1].
fn check_rfc8554_case(file: &str, q: (u32, u32), schemes: [OtsScheme; 2]) {
    let cases = common::load(file);
    let case = &cases[0];
    let public_key = case.hex("public_key");
    let message = case.hex("message");
    let signature = case.hex("signature");

    // HSS public key: u32 L || LMS public key (u32 type || u32 otstype || I || T[1]).
    assert_eq!(be32(&public_key[0..4]), 2, "L = 2 levels");
    let top = LmsPublicKey::parse(&public_key[4..]);
    assert_eq!(top.ots, schemes[0]);

    // HSS signature: u32 Nspk || signed_pub_key[0] = (LMS sig, LMS pub) || LMS sig of the message.
    assert_eq!(be32(&signature[0..4]), 1, "Nspk = 1");
    let (sig0, rest) = LmsSignature::parse(&signature[4..], &top);
    let pub1_bytes = &rest[..56];
    let level1 = LmsPublicKey::parse(pub1_bytes);
    assert_eq!(level1.ots, schemes[1]);
    let (sig1, rest) = LmsSignature::parse(&rest[56..], &level1);
    assert!(rest.is_empty());

    assert_eq!((sig0.q, sig1.q), q);
    assert_eq!(
        top.root,
        lms_root(&top, &sig0, pub1_bytes),
        "level 0 reaches the HSS root"
    );
    assert_eq!(
        level1.root,
        lms_root(&level1, &sig1, &message),
        "level 1 reaches its root"
    );

    // Any change to the signed message or the LM-OTS signature moves the candidate key.
    let mut other = message;
    other[0] ^= 1;
    assert_ne!(level1.root, lms_root(&level1, &sig1, &other));
    let mut bad = sig0;
    bad.ots[40] ^= 1;
    assert_ne!(top.root, lms_root(&top, &bad, pub1_bytes));
}

/// An RFC 8554 LMS public key (section 5.3).
struct LmsPublicKey {
    /// Tree height from the LMS type (Table 2): 5 = H5, 6 = H10.
    height: usize,
    ots: OtsScheme,
    i: [u8; 16],
    root: [u8; 32],
}

impl LmsPublicKey {
    fn parse(b: &[u8]) -> Self {
        let height = match be32(&b[0..4]) {
            5 => 5,
            6 => 10,
            other => panic!("LMS type {other} not in the test cases"),
        };
        let ots = OtsScheme::from_lmots_typecode(be32(&b[4..8])).unwrap();
        Self {
            height,
            ots,
            i: b[8..24].try_into().unwrap(),
            root: b[24..56].try_into().unwrap(),
        }
    }
}

/// An RFC 8554 LMS signature (section 5.4).
#[derive(Clone)]
struct LmsSignature {
    q: u32,
    /// The RFC encoding of the LM-OTS signature: u32 type || C || y[0..p].
    ots: Vec<u8>,
    path: Vec<[u8; 32]>,
}

impl LmsSignature {
    fn parse<'a>(b: &'a [u8], key: &LmsPublicKey) -> (Self, &'a [u8]) {
        let q = be32(&b[0..4]);
        // Our encoding is one scheme byte longer than the RFC's.
        let ots_len = key.ots.signature_len() - 1;
        let ots = b[4..4 + ots_len].to_vec();
        let rest = &b[4 + ots_len..];
        let _lms_type = be32(&rest[0..4]);
        let path_len = 32 * key.height;
        let path = rest[4..4 + path_len]
            .chunks(32)
            .map(|c| c.try_into().unwrap())
            .collect();
        (Self { q, ots, path }, &rest[4 + path_len..])
    }
}

/// RFC 8554 Algorithm 6a: the root candidate Tc from the LM-OTS candidate key Kc and the path.
fn lms_root(key: &LmsPublicKey, sig: &LmsSignature, message: &[u8]) -> [u8; 32] {
    const D_LEAF: [u8; 2] = [0x82, 0x82];
    const D_INTR: [u8; 2] = [0x83, 0x83];
    // Our encoding is the scheme id byte followed by the RFC's LM-OTS signature encoding.
    let mut ours = vec![key.ots.id()];
    ours.extend_from_slice(&sig.ots);
    let ots = OtsSignature::from_bytes(&ours).unwrap();
    assert_eq!(ots.to_bytes(), ours);
    let kc = ots
        .lmots_candidate_public_key(&key.i, sig.q, message)
        .unwrap();

    let mut node_num = (1u32 << key.height) + sig.q;
    let mut tmp = {
        let mut h = Sha256::new();
        h.update(&key.i);
        h.update(&node_num.to_be_bytes());
        h.update(&D_LEAF);
        h.update(&kc);
        h.finalize()
    };
    for sibling in &sig.path {
        let mut h = Sha256::new();
        h.update(&key.i);
        h.update(&(node_num / 2).to_be_bytes());
        h.update(&D_INTR);
        if node_num % 2 == 1 {
            h.update(sibling);
            h.update(&tmp);
        } else {
            h.update(&tmp);
            h.update(sibling);
        }
        tmp = h.finalize();
        node_num /= 2;
    }
    assert_eq!(node_num, 1);
    tmp
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}
