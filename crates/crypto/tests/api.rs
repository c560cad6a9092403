//! Round-trip and negative tests of the public API, as the protocol crate uses it.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_crypto::Error;
use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::merkle::{MerklePath, MerkleTree};
use m2msec_crypto::ots::{OtsPublicKey, OtsScheme, OtsSecretKey, OtsSignature};
use m2msec_crypto::pke::{PkePublicKey, PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::{CryptoRng, OsRng, SeededRng};
use m2msec_crypto::sig::{SigSuite, SigningKey, VerifyingKey};
use m2msec_crypto::split::{self, SharingScheme};

fn rng() -> SeededRng {
    SeededRng::from_seed_u64(0x6d32_6d73)
}

#[test]
fn pke_roundtrip_tamper_wrong_key_and_pem() {
    let mut rng = rng();
    for suite in PkeSuite::ALL {
        let sk = PkeSecretKey::generate(suite, &mut rng).unwrap();
        let pk = sk.public_key();
        assert_eq!(pk.suite(), suite);
        for len in [0usize, 1, 32, 1000] {
            let msg = vec![0x5a; len];
            let ct = pk.encrypt(&mut rng, b"aad", &msg).unwrap();
            assert_eq!(ct.len(), len + suite.overhead());
            assert_eq!(ct[0], suite.id());
            assert_eq!(&sk.decrypt(b"aad", &ct).unwrap()[..], &msg[..]);
            assert_eq!(sk.decrypt(b"aae", &ct), Err(Error::Authentication));
            for i in [0, 1, ct.len() / 2, ct.len() - 1] {
                let mut bad = ct.clone();
                bad[i] ^= 0x01;
                assert_eq!(
                    sk.decrypt(b"aad", &bad),
                    Err(Error::Authentication),
                    "{suite:?} byte {i}"
                );
            }
            assert_eq!(
                sk.decrypt(b"aad", &ct[..ct.len() - 1]),
                Err(Error::Authentication)
            );
            assert_eq!(sk.decrypt(b"aad", &[]), Err(Error::Authentication));
        }
        let other = PkeSecretKey::generate(suite, &mut rng).unwrap();
        let ct = pk.encrypt(&mut rng, b"", b"to sk").unwrap();
        assert_eq!(other.decrypt(b"", &ct), Err(Error::Authentication));

        // Encodings and key files.
        assert_eq!(PkePublicKey::from_bytes(&pk.to_bytes()).unwrap(), pk);
        let pem = pk.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PkePublicKey::from_pem(&pem).unwrap(), pk);
        let sk_pem = sk.to_pem().unwrap();
        assert!(sk_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let sk2 = PkeSecretKey::from_pem(&sk_pem).unwrap();
        assert_eq!(sk2.public_key(), pk);
        assert_eq!(&sk2.decrypt(b"", &ct).unwrap()[..], b"to sk");
        assert!(matches!(PkeSecretKey::from_pem(&pem), Err(Error::Pem(_))));
        assert!(matches!(
            PkePublicKey::from_pem(&sk_pem),
            Err(Error::Pem(_))
        ));
        // Debug shows no key material.
        let dbg = format!("{sk:?}");
        assert!(
            dbg.contains("PkeSecretKey") && !dbg.contains("secret"),
            "{dbg}"
        );
    }
}

#[test]
fn x25519_key_file_is_rfc8410() {
    // RFC 8410 section 10.3 example: an X25519 private key and the matching public key.
    let sk_pem = "-----BEGIN PRIVATE KEY-----\n\
                  MC4CAQAwBQYDK2VuBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                  -----END PRIVATE KEY-----\n";
    let sk = PkeSecretKey::from_pem(sk_pem).unwrap();
    assert_eq!(sk.suite(), PkeSuite::X25519Ecies);
    assert_eq!(&*sk.to_pem().unwrap(), sk_pem);
    let pk_pem = sk.public_key().to_pem().unwrap();
    assert_eq!(PkePublicKey::from_pem(&pk_pem).unwrap(), sk.public_key());
}

#[test]
fn low_order_x25519_key_is_refused() {
    let mut rng = rng();
    let mut zero = vec![PkeSuite::X25519Ecies.id()];
    zero.extend_from_slice(&[0u8; 32]);
    let pk = PkePublicKey::from_bytes(&zero).unwrap();
    assert!(matches!(
        pk.encrypt(&mut rng, b"", b"x"),
        Err(Error::InvalidParameter(_))
    ));
}

#[test]
fn signatures_roundtrip_tamper_and_pem() {
    let mut rng = rng();
    for suite in SigSuite::ALL {
        let sk = SigningKey::generate(suite, &mut rng).unwrap();
        let vk = sk.verifying_key();
        assert_eq!(vk.suite(), suite);
        let sig = sk.sign(&mut rng, b"signed root");
        assert_eq!(sig.len(), suite.signature_len());
        vk.verify(b"signed root", &sig).unwrap();
        assert_eq!(vk.verify(b"signed rooT", &sig), Err(Error::Authentication));
        let mut bad = sig.clone();
        bad[3] ^= 4;
        assert_eq!(vk.verify(b"signed root", &bad), Err(Error::Authentication));
        assert_eq!(
            vk.verify(b"signed root", &sig[1..]),
            Err(Error::Authentication)
        );
        assert_eq!(vk.verify(b"signed root", &[]), Err(Error::Authentication));
        let other = SigningKey::generate(suite, &mut rng)
            .unwrap()
            .verifying_key();
        assert_eq!(
            other.verify(b"signed root", &sig),
            Err(Error::Authentication)
        );

        assert_eq!(VerifyingKey::from_bytes(&vk.to_bytes()).unwrap(), vk);
        let pem = vk.to_pem().unwrap();
        assert_eq!(VerifyingKey::from_pem(&pem).unwrap(), vk);
        let sk2 = SigningKey::from_pem(&sk.to_pem().unwrap()).unwrap();
        assert_eq!(sk2.verifying_key(), vk);
        vk.verify(b"m", &sk2.sign(&mut rng, b"m")).unwrap();
        assert!(!format!("{sk:?}").contains("Box"));
    }
    // Ed25519 is deterministic: the RNG is not used.
    let sk = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    assert_eq!(sk.sign(&mut rng, b"x"), sk.sign(&mut OsRng, b"x"));
}

#[test]
fn cross_suite_keys_do_not_mix() {
    let mut rng = rng();
    let ed = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    // An Ed25519 key file is not a PKE key, and an X25519 one is not a signing key.
    assert!(PkeSecretKey::from_pem(&ed.to_pem().unwrap()).is_err());
    let x = PkeSecretKey::generate(PkeSuite::X25519Ecies, &mut rng).unwrap();
    assert!(SigningKey::from_pem(&x.to_pem().unwrap()).is_err());
    assert!(VerifyingKey::from_pem(&x.public_key().to_pem().unwrap()).is_err());
}

#[test]
fn ots_keys_travel_and_sign_once() {
    let mut rng = rng();
    for scheme in OtsScheme::ALL {
        let sk = OtsSecretKey::generate(scheme, &mut rng);
        let pk = sk.public_key();
        // T hands the key to a proxy under an AEAD: bytes and PEM both carry it intact.
        let transport = AeadKey::generate(AeadSuite::Aes128Ccm8, &mut rng);
        let boxed = transport.seal_random_nonce(&mut rng, b"ots", &sk.to_bytes());
        let received =
            OtsSecretKey::from_bytes(&transport.open_with_nonce_prefix(b"ots", &boxed).unwrap())
                .unwrap();
        assert_eq!(received.public_key(), pk);
        let pem = received.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN M2MSEC OTS PRIVATE KEY-----"));
        let received = OtsSecretKey::from_pem(&pem).unwrap();
        let pk_pem = pk.to_pem().unwrap();
        assert!(pk_pem.starts_with("-----BEGIN M2MSEC OTS PUBLIC KEY-----"));
        assert_eq!(OtsPublicKey::from_pem(&pk_pem).unwrap(), pk);
        assert!(OtsSecretKey::from_pem(&pk_pem).is_err());

        let sig = received.sign(b"fragment 3");
        pk.verify(b"fragment 3", &sig).unwrap();
        assert_eq!(pk.verify(b"fragment 4", &sig), Err(Error::Authentication));
        let mut bytes = sig.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = OtsSignature::from_bytes(&bytes).unwrap();
        assert_eq!(
            pk.verify(b"fragment 3", &tampered),
            Err(Error::Authentication)
        );
        // Another key of the same scheme rejects it.
        let other = OtsSecretKey::generate(scheme, &mut rng).public_key();
        assert_eq!(
            other.verify(b"fragment 3", &sig),
            Err(Error::Authentication)
        );
        assert_eq!(pk.id(), m2msec_crypto::hash::sha256(&pk.to_bytes()));
        assert!(!format!("{:?}", OtsSecretKey::generate(scheme, &mut rng)).contains("seed"));
    }
    // A signature of one scheme never verifies under a key of another.
    let lamport = OtsSecretKey::generate(OtsScheme::Lamport, &mut rng);
    let lmots = OtsSecretKey::generate(OtsScheme::LmotsSha256N32W4, &mut rng);
    let lmots_pk = lmots.public_key();
    assert_eq!(
        lmots_pk.verify(b"m", &lamport.sign(b"m")),
        Err(Error::Authentication)
    );
    assert!(OtsSecretKey::generate_lmots(OtsScheme::Lamport, [0; 16], 0, &mut rng).is_err());
}

#[test]
fn lmots_is_deterministic_given_the_key() {
    // With the same key bytes, the signature is the same (C is derived, not drawn).
    let mut rng = rng();
    let sk =
        OtsSecretKey::generate_lmots(OtsScheme::LmotsSha256N32W4, [7; 16], 42, &mut rng).unwrap();
    let copy = OtsSecretKey::from_bytes(&sk.to_bytes()).unwrap();
    assert_eq!(sk.sign(b"m").to_bytes(), copy.sign(b"m").to_bytes());
}

/// The collab flow in miniature: T builds a Merkle tree over one-time key IDs and signs its root;
/// B checks a proxy's path, T's signature and the one-time signature on the fragment, then rebuilds
/// the secret from any k fragments.
#[test]
fn collab_shaped_flow() {
    let mut rng = rng();
    let (k, n) = (3u8, 5u8);
    let t_key = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
    let ots: Vec<OtsSecretKey> = (0..n)
        .map(|_| OtsSecretKey::generate(OtsScheme::LmotsSha256N32W4, &mut rng))
        .collect();
    let pks: Vec<OtsPublicKey> = ots.iter().map(OtsSecretKey::public_key).collect();
    let tree = MerkleTree::new(&pks.iter().map(OtsPublicKey::id).collect::<Vec<_>>()).unwrap();
    let root_sig = t_key.sign(&mut rng, &tree.root());

    for scheme in SharingScheme::ALL {
        let secret = m2msec_crypto::rng::random_array::<32>(&mut rng as &mut dyn CryptoRng);
        let shares = split::split(scheme, &secret, k, n, &mut rng).unwrap();
        let ots_again: Vec<OtsSecretKey> = ots
            .iter()
            .map(|s| OtsSecretKey::from_bytes(&s.to_bytes()).unwrap())
            .collect();
        let mut accepted = Vec::new();
        for ((share, sk), pk) in shares.iter().zip(ots_again).zip(&pks).rev() {
            let path =
                MerklePath::from_bytes(&tree.path(usize::from(share.index)).unwrap().to_bytes())
                    .unwrap();
            let mut msg = vec![share.index];
            msg.extend_from_slice(&share.data);
            let sig = sk.sign(&msg);
            // At B:
            t_key
                .verifying_key()
                .verify(&tree.root(), &root_sig)
                .unwrap();
            path.verify(&pk.id(), tree.leaf_count(), &tree.root())
                .unwrap();
            pk.verify(&msg, &sig).unwrap();
            accepted.push(share.clone());
        }
        let got = split::combine(scheme, 32, k, n, &accepted[..usize::from(k)]).unwrap();
        assert_eq!(&got[..], &secret[..]);
    }
}
