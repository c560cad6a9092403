//! Property tests: every decoder and every verifier is total — arbitrary bytes give an error, never
//! a panic.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::OnceLock;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::merkle::MerklePath;
use m2msec_crypto::ots::{OtsPublicKey, OtsScheme, OtsSecretKey, OtsSignature};
use m2msec_crypto::pke::{PkePublicKey, PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey, VerifyingKey};
use m2msec_crypto::split::{self, Share, SharingScheme};
use m2msec_crypto::{Zeroizing, ots, pke, sig};
use proptest::prelude::*;

struct Keys {
    pke: Vec<PkeSecretKey>,
    sig: Vec<VerifyingKey>,
    ots: Vec<OtsPublicKey>,
}

/// RSA key generation is slow: make every key once.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = SeededRng::from_seed_u64(99);
        Keys {
            pke: PkeSuite::ALL
                .iter()
                .map(|&s| PkeSecretKey::generate(s, &mut rng).unwrap())
                .collect(),
            sig: SigSuite::ALL
                .iter()
                .map(|&s| SigningKey::generate(s, &mut rng).unwrap().verifying_key())
                .collect(),
            ots: OtsScheme::ALL
                .iter()
                .map(|&s| OtsSecretKey::generate(s, &mut rng).public_key())
                .collect(),
        }
    })
}

/// Arbitrary bytes, biased towards starting with a valid identifier byte and towards the lengths the
/// decoders expect, so that the parsers get past their first checks.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let lens = prop_oneof![
        0usize..80,
        Just(OtsScheme::LmotsSha256N32W4.signature_len()),
        Just(OtsScheme::Lamport.signature_len()),
        Just(OtsScheme::Lamport.public_key_len()),
        Just(OtsScheme::LmotsSha256N32W8.signature_len()),
        250usize..400,
    ];
    (0u8..7, lens).prop_flat_map(|(id, len)| {
        proptest::collection::vec(any::<u8>(), len).prop_map(move |mut v| {
            if let Some(first) = v.first_mut() {
                if id < 6 {
                    *first = id;
                }
            }
            v
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ots_decoders_are_total(data in bytes()) {
        let _ = OtsPublicKey::from_bytes(&data);
        let _ = OtsSecretKey::from_bytes(&data);
        if let Ok(sig) = OtsSignature::from_bytes(&data) {
            prop_assert_eq!(sig.to_bytes(), data.clone());
            for pk in &keys().ots {
                prop_assert!(pk.verify(b"msg", &sig).is_err());
            }
            let _ = sig.lmots_candidate_public_key(&[0; 16], 0, b"msg");
        }
    }

    #[test]
    fn ots_lmots_signature_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 2180)) {
        // A well-framed W4 signature with arbitrary content: verification fails cleanly.
        let mut data = vec![OtsScheme::LmotsSha256N32W4.id(), 0, 0, 0, 3];
        data.extend_from_slice(&body[..2176]);
        let sig = OtsSignature::from_bytes(&data).unwrap();
        prop_assert!(keys().ots[1].verify(b"m", &sig).is_err());
    }

    #[test]
    fn key_and_path_decoders_are_total(data in bytes()) {
        let _ = MerklePath::from_bytes(&data);
        let _ = PkePublicKey::from_bytes(&data);
        let _ = VerifyingKey::from_bytes(&data);
        if let Some(&id) = data.first() {
            let _ = AeadSuite::try_from(id);
            let _ = OtsScheme::try_from(id);
            let _ = PkeSuite::try_from(id);
            let _ = SigSuite::try_from(id);
            let _ = SharingScheme::try_from(id);
        }
    }

    #[test]
    fn merkle_paths_from_bytes_never_panic_on_verify(data in bytes(), count in any::<u32>()) {
        if let Ok(path) = MerklePath::from_bytes(&data) {
            prop_assert!(path.verify(&[0; 32], count, &[1; 32]).is_err());
        }
    }

    #[test]
    fn decryption_and_verification_are_total(data in bytes()) {
        for sk in &keys().pke {
            prop_assert!(sk.decrypt(b"", &data).is_err());
        }
        for vk in &keys().sig {
            prop_assert!(vk.verify(b"", &data).is_err());
        }
        for suite in AeadSuite::ALL {
            let key = AeadKey::new(suite, &vec![1u8; suite.key_len()]).unwrap();
            prop_assert!(key.open_with_nonce_prefix(b"", &data).is_err());
            let _ = key.open(&data, b"", &data);
        }
    }

    #[test]
    fn pem_readers_are_total(text in ".{0,200}", body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = PkeSecretKey::from_pem(&text);
        let _ = PkePublicKey::from_pem(&text);
        let _ = SigningKey::from_pem(&text);
        let _ = VerifyingKey::from_pem(&text);
        let _ = OtsSecretKey::from_pem(&text);
        let _ = OtsPublicKey::from_pem(&text);
        // Well-formed PEM around arbitrary DER / bodies.
        for label in ["PRIVATE KEY", "PUBLIC KEY", ots::OTS_PRIVATE_KEY_LABEL, ots::OTS_PUBLIC_KEY_LABEL] {
            let pem = pem_wrap(label, &body);
            let _ = PkeSecretKey::from_pem(&pem);
            let _ = PkePublicKey::from_pem(&pem);
            let _ = SigningKey::from_pem(&pem);
            let _ = VerifyingKey::from_pem(&pem);
            let _ = OtsSecretKey::from_pem(&pem);
            let _ = OtsPublicKey::from_pem(&pem);
        }
    }

    #[test]
    fn combine_is_total(
        scheme in prop_oneof![Just(SharingScheme::ReedSolomon), Just(SharingScheme::Shamir)],
        secret_len in 0usize..40,
        k in any::<u8>(),
        n in any::<u8>(),
        shares in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24)), 0..8),
    ) {
        let shares: Vec<Share> = shares
            .into_iter()
            .map(|(index, data)| Share { index, data: Zeroizing::new(data) })
            .collect();
        let _ = split::combine(scheme, secret_len, k, n, &shares);
    }

    #[test]
    fn split_combine_roundtrip(
        scheme in prop_oneof![Just(SharingScheme::ReedSolomon), Just(SharingScheme::Shamir)],
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        k in 1u8..6,
        extra in 0u8..5,
        seed in any::<u64>(),
    ) {
        let n = k + extra;
        let mut rng = SeededRng::from_seed_u64(seed);
        let mut shares = split::split(scheme, &secret, k, n, &mut rng).unwrap();
        // Drop the first `extra` shares: the last k must suffice.
        shares.drain(..usize::from(extra));
        let got = split::combine(scheme, secret.len(), k, n, &shares).unwrap();
        prop_assert_eq!(&got[..], &secret[..]);
    }
}

fn pem_wrap(label: &str, body: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in body.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(B64[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn suites_are_reexported() {
    // Keep the module paths the protocol crate uses in one place.
    let _ = (pke::ECIES_INFO, sig::SigSuite::Ed25519);
}
