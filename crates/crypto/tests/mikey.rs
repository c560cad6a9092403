//! Tests of `m2msec_crypto::mikey` (RFC 3830's cryptography).
//!
//! Known answers: RFC 2202 (HMAC-SHA-1), RFC 3711 Appendix B.2 (AES-CM keystream), RFC 3394
//! section 4.1 (AES-KW), from data files under `vectors/crypto/mikey-*` (sources cited there).
//!
//! RFC 3830 publishes no test vector for its PRF or key derivation, and none was found in an
//! open-source MIKEY implementation either. So the PRF is cross-checked against an independent
//! reference written here from the RFC's §4.1.2 text: its own HMAC-SHA-1, built by hand per RFC 2104
//! from the `sha1` crate's bare digest (not from the `hmac` crate that the module uses), itself checked
//! against RFC 2202; its P function computes all the A_i first and concatenates, rather than
//! streaming. The derivation's label bytes are spelled out literally from the RFC's tables.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::OnceLock;

use m2msec_crypto::Error;
use m2msec_crypto::mikey::{
    self, EnvelopeScheme, KemacEncryption, KemacMac, MessageKey, MessageKeys, SignScheme, TgkKey,
};
use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use proptest::prelude::*;
use sha1::Digest as _;

// ----------------------------------------------------------------------------------------------
// Independent reference: HMAC-SHA-1 (RFC 2104) and the PRF (RFC 3830 §4.1.2)
// ----------------------------------------------------------------------------------------------

/// HMAC-SHA-1 by hand: H((K ^ opad) || H((K ^ ipad) || text)), K hashed first if longer than 64.
fn ref_hmac_sha1(key: &[u8], text: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1::Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha1::Sha1::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(text);
    let inner = inner.finalize();
    let mut outer = sha1::Sha1::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// P(s, label, m) of §4.1.2: A_0 = label, A_i = HMAC(s, A_(i-1)); output HMAC(s, A_i || label).
fn ref_p(s: &[u8], label: &[u8], m: usize) -> Vec<u8> {
    let mut a: Vec<Vec<u8>> = vec![label.to_vec()];
    for i in 1..=m {
        let next = ref_hmac_sha1(s, &a[i - 1]).to_vec();
        a.push(next);
    }
    let mut out = Vec::new();
    for a_i in &a[1..] {
        let mut input = a_i.clone();
        input.extend_from_slice(label);
        out.extend_from_slice(&ref_hmac_sha1(s, &input));
    }
    out
}

/// PRF(inkey, label) truncated to `outkey_len` bytes, with n and m computed as the RFC states them
/// (in bits: n = ceil(inkey_len / 256), m = ceil(outkey_len / 160)).
fn ref_prf(inkey: &[u8], label: &[u8], outkey_len: usize) -> Vec<u8> {
    let n = (inkey.len() * 8).div_ceil(256);
    let m = (outkey_len * 8).div_ceil(160);
    let mut acc = vec![0u8; m * 20];
    for i in 0..n {
        let s_i = &inkey[i * 32..((i + 1) * 32).min(inkey.len())];
        for (x, y) in acc.iter_mut().zip(ref_p(s_i, label, m)) {
            *x ^= y;
        }
    }
    acc.truncate(outkey_len);
    acc
}

fn our_prf(inkey: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    mikey::prf(inkey, label, &mut out).unwrap();
    out
}

// ----------------------------------------------------------------------------------------------
// Known answers
// ----------------------------------------------------------------------------------------------

/// RFC 2202 section 3: both our HMAC-SHA-1-160 and the test's reference HMAC.
#[test]
fn rfc2202_hmac_sha1() {
    let cases = common::load("mikey-rfc2202-hmac-sha1.txt");
    assert_eq!(cases.len(), 7);
    for case in cases {
        let (key, data, mac) = (case.hex("key"), case.bytes("data"), case.hex("mac"));
        assert_eq!(
            mikey::hmac_sha1_160(&key, &[&data]).to_vec(),
            mac,
            "{}",
            case.name
        );
        assert_eq!(
            ref_hmac_sha1(&key, &data).to_vec(),
            mac,
            "ref {}",
            case.name
        );
        let (a, b) = data.split_at(data.len() / 3);
        mikey::verify_hmac_sha1_160(&key, &[a, b], &mac).unwrap();
        // Truncated (e.g. the RFC's 96-bit form) and tampered tags are refused.
        assert_eq!(
            mikey::verify_hmac_sha1_160(&key, &[&data], &mac[..12]),
            Err(Error::Authentication)
        );
        let mut bad = mac.clone();
        bad[19] ^= 1;
        assert_eq!(
            mikey::verify_hmac_sha1_160(&key, &[&data], &bad),
            Err(Error::Authentication)
        );
    }
}

/// RFC 3711 Appendix B.2: the AES-CM keystream, first and last three blocks of 65282.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let cases = common::load("mikey-rfc3711-aes-cm.txt");
    assert_eq!(cases.len(), 1);
    let case = &cases[0];
    let key: [u8; 16] = case.hex("key").try_into().unwrap();
    let iv: [u8; 16] = case.hex("iv").try_into().unwrap();
    let mut stream = vec![0u8; case.usize("keystream_len")];
    mikey::aes_cm_128(&key, &iv, &mut stream);
    assert_eq!(stream[..48], case.hex("first_blocks")[..]);
    assert_eq!(stream[stream.len() - 48..], case.hex("last_blocks")[..]);
    // Its own inverse.
    mikey::aes_cm_128(&key, &iv, &mut stream);
    assert!(stream.iter().all(|&b| b == 0));
}

/// RFC 3394 section 4.1.
#[test]
fn rfc3394_aes_kw_128() {
    let cases = common::load("mikey-rfc3394-aes-kw.txt");
    let case = &cases[0];
    let kek: [u8; 16] = case.hex("kek").try_into().unwrap();
    let wrapped = mikey::aes_kw_128_wrap(&kek, &case.hex("key_data")).unwrap();
    assert_eq!(wrapped, case.hex("wrapped"));
    assert_eq!(
        &mikey::aes_kw_128_unwrap(&kek, &wrapped).unwrap()[..],
        &case.hex("key_data")[..]
    );
    let mut bad = wrapped.clone();
    bad[5] ^= 0x40;
    assert_eq!(
        mikey::aes_kw_128_unwrap(&kek, &bad),
        Err(Error::Authentication)
    );
    let mut other = kek;
    other[0] ^= 1;
    assert_eq!(
        mikey::aes_kw_128_unwrap(&other, &wrapped),
        Err(Error::Authentication)
    );
    assert_eq!(
        mikey::aes_kw_128_unwrap(&kek, &wrapped[..16]),
        Err(Error::Authentication)
    );
    assert!(mikey::aes_kw_128_wrap(&kek, &[0u8; 8]).is_err());
    assert!(mikey::aes_kw_128_wrap(&kek, &[0u8; 17]).is_err());
}

// ----------------------------------------------------------------------------------------------
// PRF and key derivation
// ----------------------------------------------------------------------------------------------

/// The PRF against the independent reference, across the chunking edges of inkey (256-bit chunks)
/// and outkey (160-bit blocks).
#[test]
fn prf_matches_independent_reference() {
    let label = mikey::label(0x2AD0_1C64, 3, 0xDEAD_BEEF, &[0x5A; 16]);
    for inkey_len in [1usize, 16, 20, 31, 32, 33, 48, 63, 64, 65, 100] {
        let inkey: Vec<u8> = (0..=255u8)
            .cycle()
            .map(|b| b.wrapping_mul(7).wrapping_add(1))
            .take(inkey_len)
            .collect();
        for out_len in [0usize, 1, 14, 16, 19, 20, 21, 30, 40, 41, 64, 100] {
            assert_eq!(
                our_prf(&inkey, &label, out_len),
                ref_prf(&inkey, &label, out_len),
                "inkey {inkey_len} out {out_len}"
            );
        }
    }
}

/// Splitting matters: a 64-byte inkey is s_1 XOR s_2, and the second chunk changes the output.
#[test]
fn prf_xors_the_chunks() {
    let inkey: Vec<u8> = (0u8..64).collect();
    let p1 = ref_p(&inkey[..32], b"L", 2);
    let p2 = ref_p(&inkey[32..], b"L", 2);
    let xored: Vec<u8> = p1.iter().zip(&p2).map(|(a, b)| a ^ b).take(40).collect();
    assert_eq!(our_prf(&inkey, b"L", 40), xored);
    assert_ne!(our_prf(&inkey, b"L", 40), our_prf(&inkey[..32], b"L", 40));
    // A longer output extends a shorter one (P is a stream).
    assert_eq!(
        our_prf(&inkey, b"L", 40)[..16],
        our_prf(&inkey, b"L", 16)[..]
    );
}

/// The §4.1.3 label, spelled out byte by byte: constant || cs_id || csb_id || RAND.
#[test]
fn tgk_derivation_uses_the_rfc_label() {
    let tgk = [0x11u8; 16];
    let rand = [
        0xA0u8, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE,
        0xAF,
    ];
    let cases: [(TgkKey, [u8; 4]); 4] = [
        (TgkKey::Tek, [0x2A, 0xD0, 0x1C, 0x64]),
        (TgkKey::Salt, [0x39, 0xA2, 0xC1, 0x4B]),
        (TgkKey::Encryption, [0x15, 0x79, 0x8C, 0xEF]),
        (TgkKey::Authentication, [0x1B, 0x5C, 0x79, 0x73]),
    ];
    for (key, constant) in cases {
        let mut label = constant.to_vec();
        label.push(0x02); // cs_id
        label.extend_from_slice(&[0x01, 0x02, 0x03, 0x04]); // csb_id
        label.extend_from_slice(&rand);
        let derived = mikey::derive_tgk_key(&tgk, key, 0x02, 0x0102_0304, &rand, 30).unwrap();
        assert_eq!(&derived[..], &ref_prf(&tgk, &label, 30)[..], "{key:?}");
    }
    // Each input matters.
    let base = mikey::derive_tgk_key(&tgk, TgkKey::Tek, 1, 7, &rand, 16).unwrap();
    assert_ne!(
        base,
        mikey::derive_tgk_key(&tgk, TgkKey::Tek, 2, 7, &rand, 16).unwrap()
    );
    assert_ne!(
        base,
        mikey::derive_tgk_key(&tgk, TgkKey::Tek, 1, 8, &rand, 16).unwrap()
    );
    assert_ne!(
        base,
        mikey::derive_tgk_key(&tgk, TgkKey::Tek, 1, 7, &rand[1..], 16).unwrap()
    );
    assert_ne!(
        base,
        mikey::derive_tgk_key(&tgk, TgkKey::Salt, 1, 7, &rand, 16).unwrap()
    );
}

/// The §4.1.4 label: constant || 0xFF || csb_id || RAND.
#[test]
fn message_key_derivation_uses_the_rfc_label() {
    let psk = b"a pre-shared key of some length..";
    let rand = [0x42u8; 16];
    let cases: [(MessageKey, [u8; 4]); 3] = [
        (MessageKey::Encryption, [0x15, 0x05, 0x33, 0xE1]),
        (MessageKey::Authentication, [0x2D, 0x22, 0xAC, 0x75]),
        (MessageKey::Salt, [0x29, 0xB8, 0x89, 0x16]),
    ];
    let keys = MessageKeys::derive(psk, 0xCAFE_F00D, &rand).unwrap();
    for (key, constant) in cases {
        let mut label = constant.to_vec();
        label.push(0xFF);
        label.extend_from_slice(&[0xCA, 0xFE, 0xF0, 0x0D]);
        label.extend_from_slice(&rand);
        let len = match key {
            MessageKey::Encryption => 16,
            MessageKey::Authentication => 20,
            MessageKey::Salt => 14,
        };
        let expected = ref_prf(psk, &label, len);
        let derived = mikey::derive_message_key(psk, key, 0xCAFE_F00D, &rand, len).unwrap();
        assert_eq!(&derived[..], &expected[..], "{key:?}");
        let from_struct: &[u8] = match key {
            MessageKey::Encryption => keys.encryption_key(),
            MessageKey::Authentication => keys.authentication_key(),
            MessageKey::Salt => keys.salt_key(),
        };
        assert_eq!(from_struct, &expected[..], "MessageKeys {key:?}");
    }
    assert_eq!(keys.csb_id(), 0xCAFE_F00D);
    assert!(MessageKeys::derive(&[], 1, &rand).is_err());
    assert!(mikey::derive_tgk_key(&[], TgkKey::Tek, 0, 1, &rand, 16).is_err());
}

// ----------------------------------------------------------------------------------------------
// KEMAC
// ----------------------------------------------------------------------------------------------

/// A stand-in for the KEMAC's Key data sub-payloads (a multiple of 8 for AES-KW).
const KEY_DATA: &[u8] = b"\x00\x02\x00\x10TGK-TGK-TGK-TGK!pad-pad-pad!";

#[test]
fn kemac_round_trips_and_aes_cm_uses_the_rfc_iv() {
    let keys = MessageKeys::derive(b"psk", 0x0102_0304, &[9u8; 16]).unwrap();
    let t = 0xE3F0_0000_0000_0001u64;
    for alg in KemacEncryption::ALL {
        let c = keys.encrypt(alg, t, KEY_DATA).unwrap();
        assert_eq!(&keys.decrypt(alg, t, &c).unwrap()[..], KEY_DATA, "{alg:?}");
        match alg {
            KemacEncryption::Null => assert_eq!(c, KEY_DATA),
            KemacEncryption::AesCm128 => {
                assert_eq!(c.len(), KEY_DATA.len());
                // IV = (S XOR (0x0000 || CSB ID || T)) || 0x0000, built here by hand.
                let s = keys.salt_key();
                let mut iv = [0u8; 16];
                iv[..14].copy_from_slice(s);
                for (i, b) in [1u8, 2, 3, 4].iter().enumerate() {
                    iv[2 + i] ^= b;
                }
                for (i, b) in t.to_be_bytes().iter().enumerate() {
                    iv[6 + i] ^= b;
                }
                assert_eq!(keys.kemac_iv(t), iv);
                let mut manual = KEY_DATA.to_vec();
                mikey::aes_cm_128(keys.encryption_key(), &iv, &mut manual);
                assert_eq!(c, manual);
                // Another timestamp, another keystream.
                assert_ne!(keys.encrypt(alg, t + 1, KEY_DATA).unwrap(), c);
            }
            KemacEncryption::AesKw128 => assert_eq!(c.len(), KEY_DATA.len() + 8),
        }
        assert_eq!(KemacEncryption::try_from(alg.id()).unwrap(), alg);
    }
    assert_eq!(KemacEncryption::try_from(3), Err(Error::UnknownSuite(3)));
    assert_eq!(KemacMac::try_from(2), Err(Error::UnknownSuite(2)));
}

#[test]
fn kemac_mac_rejects_tampering_wrong_key_and_wrong_label() {
    let rand = [7u8; 16];
    let keys = MessageKeys::derive(b"the psk", 77, &rand).unwrap();
    let msg: &[u8] = b"HDR T RAND KEMAC-up-to-the-MAC-field";
    let tag = keys.mac(KemacMac::HmacSha1_160, &[msg]);
    assert_eq!(tag.len(), KemacMac::HmacSha1_160.tag_len());
    assert_eq!(
        tag,
        mikey::hmac_sha1_160(keys.authentication_key(), &[msg]).to_vec()
    );
    keys.verify_mac(KemacMac::HmacSha1_160, &[&msg[..4], &msg[4..]], &tag)
        .unwrap();

    let auth = Err(Error::Authentication);
    let mut bad = tag.clone();
    bad[0] ^= 0x80;
    assert_eq!(keys.verify_mac(KemacMac::HmacSha1_160, &[msg], &bad), auth);
    let mut bad_msg = msg.to_vec();
    bad_msg[3] ^= 1;
    assert_eq!(
        keys.verify_mac(KemacMac::HmacSha1_160, &[&bad_msg], &tag),
        auth
    );
    assert_eq!(keys.verify_mac(KemacMac::HmacSha1_160, &[msg], &[]), auth);
    // Wrong key: another PSK.
    let wrong_key = MessageKeys::derive(b"the psK", 77, &rand).unwrap();
    assert_eq!(
        wrong_key.verify_mac(KemacMac::HmacSha1_160, &[msg], &tag),
        auth
    );
    // Wrong label: another CSB ID or RAND.
    let wrong_csb = MessageKeys::derive(b"the psk", 78, &rand).unwrap();
    assert_eq!(
        wrong_csb.verify_mac(KemacMac::HmacSha1_160, &[msg], &tag),
        auth
    );
    let wrong_rand = MessageKeys::derive(b"the psk", 77, &[8u8; 16]).unwrap();
    assert_eq!(
        wrong_rand.verify_mac(KemacMac::HmacSha1_160, &[msg], &tag),
        auth
    );
    // And the wrong key decrypts AES-CM to garbage (only the MAC can tell).
    let c = keys
        .encrypt(KemacEncryption::AesCm128, 5, KEY_DATA)
        .unwrap();
    assert_ne!(
        &wrong_key.decrypt(KemacEncryption::AesCm128, 5, &c).unwrap()[..],
        KEY_DATA
    );
    assert_eq!(
        wrong_key.decrypt(
            KemacEncryption::AesKw128,
            5,
            &keys
                .encrypt(KemacEncryption::AesKw128, 5, KEY_DATA)
                .unwrap()
        ),
        Err(Error::Authentication)
    );

    // NULL MAC: an empty field, and nothing else.
    assert!(keys.mac(KemacMac::Null, &[msg]).is_empty());
    keys.verify_mac(KemacMac::Null, &[msg], &[]).unwrap();
    assert_eq!(keys.verify_mac(KemacMac::Null, &[msg], &tag), auth);
}

// ----------------------------------------------------------------------------------------------
// Public-key mode
// ----------------------------------------------------------------------------------------------

struct RsaKeys {
    responder: PkeSecretKey,
    other: PkeSecretKey,
    signer: SigningKey,
    other_signer: SigningKey,
}

fn rsa_keys() -> &'static RsaKeys {
    static KEYS: OnceLock<RsaKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = SeededRng::from_seed_u64(3830);
        RsaKeys {
            responder: PkeSecretKey::generate(PkeSuite::RsaOaep2048, &mut rng).unwrap(),
            other: PkeSecretKey::generate(PkeSuite::RsaOaep2048, &mut rng).unwrap(),
            signer: SigningKey::generate(SigSuite::RsaPss2048, &mut rng).unwrap(),
            other_signer: SigningKey::generate(SigSuite::RsaPss2048, &mut rng).unwrap(),
        }
    })
}

#[test]
fn envelope_key_round_trip_and_failures() {
    let keys = rsa_keys();
    let mut rng = SeededRng::from_seed_u64(1);
    let env_key = [0xE7u8; 32];
    let to = keys.responder.public_key();
    for scheme in [EnvelopeScheme::RsaPkcs1v15, EnvelopeScheme::RsaOaepSha256] {
        let c = mikey::encrypt_envelope_key(&to, scheme, &mut rng, &env_key).unwrap();
        assert_eq!(c.len(), 256);
        let back = mikey::decrypt_envelope_key(&keys.responder, scheme, &c).unwrap();
        assert_eq!(&back[..], &env_key[..]);

        let auth = Err(Error::Authentication);
        assert_eq!(mikey::decrypt_envelope_key(&keys.other, scheme, &c), auth);
        let mut bad = c.clone();
        bad[100] ^= 4;
        // A flipped bit either breaks the padding or (rarely, for v1.5) yields another key.
        match mikey::decrypt_envelope_key(&keys.responder, scheme, &bad) {
            Ok(k) => assert_ne!(&k[..], &env_key[..]),
            Err(e) => assert_eq!(e, Error::Authentication),
        }
        assert_eq!(
            mikey::decrypt_envelope_key(&keys.responder, scheme, &c[..255]),
            auth
        );
    }
    // The two schemes do not decrypt each other.
    let c =
        mikey::encrypt_envelope_key(&to, EnvelopeScheme::RsaPkcs1v15, &mut rng, &env_key).unwrap();
    assert!(
        mikey::decrypt_envelope_key(&keys.responder, EnvelopeScheme::RsaOaepSha256, &c).is_err()
    );
    // Non-RSA keys and impossible inputs are local errors.
    let x = PkeSecretKey::generate(PkeSuite::X25519Ecies, &mut rng).unwrap();
    assert!(matches!(
        mikey::encrypt_envelope_key(
            &x.public_key(),
            EnvelopeScheme::RsaPkcs1v15,
            &mut rng,
            &env_key
        ),
        Err(Error::InvalidParameter(_))
    ));
    assert_eq!(
        mikey::decrypt_envelope_key(&x, EnvelopeScheme::RsaPkcs1v15, &c),
        Err(Error::Authentication)
    );
    assert!(matches!(
        mikey::encrypt_envelope_key(&to, EnvelopeScheme::RsaPkcs1v15, &mut rng, &[0u8; 246]),
        Err(Error::InvalidParameter(_))
    ));
    assert!(
        mikey::encrypt_envelope_key(&to, EnvelopeScheme::RsaPkcs1v15, &mut rng, &[0u8; 245])
            .is_ok()
    );
    assert!(
        mikey::encrypt_envelope_key(&to, EnvelopeScheme::RsaOaepSha256, &mut rng, &[]).is_err()
    );
}

#[test]
fn sign_verify_all_schemes_and_failures() {
    let keys = rsa_keys();
    let mut rng = SeededRng::from_seed_u64(2);
    let vk = keys.signer.verifying_key();
    let msg = b"HDR T RAND ID CERT KEMAC PKE SIGN-header";
    for scheme in SignScheme::ALL {
        let sig = mikey::sign(&keys.signer, scheme, &mut rng, msg).unwrap();
        assert_eq!(sig.len(), 256);
        mikey::verify(&vk, scheme, msg, &sig).unwrap();

        let auth = Err(Error::Authentication);
        assert_eq!(mikey::verify(&vk, scheme, b"another message", &sig), auth);
        let mut bad = sig.clone();
        bad[17] ^= 1;
        assert_eq!(mikey::verify(&vk, scheme, msg, &bad), auth);
        assert_eq!(mikey::verify(&vk, scheme, msg, &sig[1..]), auth);
        assert_eq!(
            mikey::verify(&keys.other_signer.verifying_key(), scheme, msg, &sig),
            auth
        );
        // No other scheme accepts it (padding and hash both matter).
        for other in SignScheme::ALL.into_iter().filter(|&o| o != scheme) {
            assert_eq!(
                mikey::verify(&vk, other, msg, &sig),
                auth,
                "{scheme:?} as {other:?}"
            );
        }
    }
    assert_eq!(SignScheme::Pkcs1v15Sha1.s_type(), 0);
    assert_eq!(SignScheme::PssSha1.s_type(), 1);
    assert_eq!(SignScheme::Pkcs1v15Sha256.s_type(), 0);
    assert_eq!(SignScheme::PssSha256.s_type(), 1);

    // PKCS#1 v1.5 is deterministic, PSS is salted.
    let a = mikey::sign(&keys.signer, SignScheme::Pkcs1v15Sha1, &mut rng, msg).unwrap();
    let b = mikey::sign(&keys.signer, SignScheme::Pkcs1v15Sha1, &mut rng, msg).unwrap();
    assert_eq!(a, b);
    let a = mikey::sign(&keys.signer, SignScheme::PssSha1, &mut rng, msg).unwrap();
    let b = mikey::sign(&keys.signer, SignScheme::PssSha1, &mut rng, msg).unwrap();
    assert_ne!(a, b);

    let ed = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    assert!(matches!(
        mikey::sign(&ed, SignScheme::Pkcs1v15Sha1, &mut rng, msg),
        Err(Error::InvalidParameter(_))
    ));
    assert_eq!(
        mikey::verify(
            &ed.verifying_key(),
            SignScheme::Pkcs1v15Sha1,
            msg,
            &[0u8; 64]
        ),
        Err(Error::Authentication)
    );
}

/// The RSA/PKCS#1/1.5 SHA-1 signature checked without the `rsa` crate's verifier: s^e mod n must be
/// EMSA-PKCS1-v1_5(SHA-1(msg)) = 00 01 FF..FF 00 || DigestInfo prefix (RFC 8017 section 9.2 note 1)
/// || hash, built here by hand.
#[test]
fn pkcs1v15_sha1_signature_has_the_rfc8017_encoding() {
    use rsa::traits::PublicKeyParts as _;
    let keys = rsa_keys();
    let mut rng = SeededRng::from_seed_u64(4);
    let msg = b"a MIKEY message";
    let sig = mikey::sign(&keys.signer, SignScheme::Pkcs1v15Sha1, &mut rng, msg).unwrap();
    let spki = &keys.signer.verifying_key().to_bytes()[1..];
    let pk = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(spki).unwrap();
    let m = rsa::BigUint::from_bytes_be(&sig).modpow(pk.e(), pk.n());
    let mut em = vec![0u8; 256 - m.to_bytes_be().len()];
    em.extend_from_slice(&m.to_bytes_be());

    let prefix = [
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
    ];
    let t_len = prefix.len() + 20;
    let mut expected = vec![0x00, 0x01];
    expected.extend(std::iter::repeat_n(0xFF, 256 - 3 - t_len));
    expected.push(0x00);
    expected.extend_from_slice(&prefix);
    expected.extend_from_slice(&sha1::Sha1::digest(msg));
    assert_eq!(em, expected);
}

// ----------------------------------------------------------------------------------------------
// Nothing panics on arbitrary input
// ----------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prf_equals_reference(
        inkey in proptest::collection::vec(any::<u8>(), 1..100),
        label in proptest::collection::vec(any::<u8>(), 0..60),
        len in 0usize..90,
    ) {
        prop_assert_eq!(our_prf(&inkey, &label, len), ref_prf(&inkey, &label, len));
    }

    #[test]
    fn kemac_decrypt_and_verify_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        tag in proptest::collection::vec(any::<u8>(), 0..40),
        t in any::<u64>(),
        enc in 0u8..=255,
        mac in 0u8..=255,
    ) {
        let keys = MessageKeys::derive(b"k", 1, b"r").unwrap();
        if let Ok(alg) = KemacEncryption::try_from(enc) {
            let _ = keys.decrypt(alg, t, &data);
        }
        if let Ok(alg) = KemacMac::try_from(mac) {
            prop_assert!(keys.verify_mac(alg, &[&data], &tag).is_err() || tag.is_empty());
        }
        let _ = mikey::aes_kw_128_unwrap(&[3u8; 16], &data);
        let _ = mikey::verify_hmac_sha1_160(&data, &[&tag], &data);
    }

    #[test]
    fn rsa_decrypt_and_verify_never_panic(
        len in prop_oneof![Just(256usize), 0usize..300],
        seed in any::<u64>(),
    ) {
        use rand_core::RngCore as _;
        let keys = rsa_keys();
        let mut bytes = vec![0u8; len];
        SeededRng::from_seed_u64(seed).fill_bytes(&mut bytes);
        for scheme in [EnvelopeScheme::RsaPkcs1v15, EnvelopeScheme::RsaOaepSha256] {
            let _ = mikey::decrypt_envelope_key(&keys.responder, scheme, &bytes);
        }
        let vk = keys.signer.verifying_key();
        for scheme in SignScheme::ALL {
            prop_assert!(mikey::verify(&vk, scheme, b"m", &bytes).is_err());
        }
    }
}
