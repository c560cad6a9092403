//! AFGH proxy re-encryption through the public API: round trips, unidirectionality, tampering,
//! encodings and total decoders.
#![allow(clippy::unwrap_used)]

use m2msec_crypto::Error;
use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre::{
    self, FirstLevel, PUBLIC_KEY_PEM_LABEL, PublicKey, REKEY_PEM_LABEL, ReKey,
    SECRET_KEY_PEM_LABEL, SecondLevel, SecretKey,
};
use m2msec_crypto::rng::SeededRng;
use proptest::prelude::*;

fn keypair(seed: u64) -> (SecretKey, PublicKey) {
    let sk: SecretKey = SecretKey::generate(&mut SeededRng::from_seed_u64(seed));
    let pk = sk.public_key();
    (sk, pk)
}

#[test]
fn owner_opens_second_level_and_delegatee_opens_first_level() {
    let mut rng = SeededRng::from_seed_u64(1);
    let (ska, pka) = keypair(100);
    let (skb, pkb) = keypair(101);
    let rk = ska.rekey_to(&pkb);
    for suite in AeadSuite::ALL {
        for len in [0usize, 1, 37, 1000] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7).to_le_bytes()[0]).collect();
            let c2 = pre::seal(&pka, &mut rng, suite, b"stream 7 key 3", &msg).unwrap();
            assert_eq!(
                &*pre::open_second(&ska, &c2, b"stream 7 key 3").unwrap(),
                &msg
            );
            let c1 = pre::reencrypt(&rk, &c2);
            assert_eq!(c1.payload(), c2.payload(), "payload untouched");
            assert_eq!(
                &*pre::open_first(&skb, &c1, b"stream 7 key 3").unwrap(),
                &msg
            );
            // Through the wire.
            let c1 = FirstLevel::from_bytes(&c1.to_bytes()).unwrap();
            let c2b = SecondLevel::from_bytes(&c2.to_bytes()).unwrap();
            assert_eq!(c2b, c2);
            assert_eq!(
                &*pre::open_first(&skb, &c1, b"stream 7 key 3").unwrap(),
                &msg
            );
            assert_eq!(c2.to_bytes().len(), 3 + 48 + 288 + len + suite.tag_len());
            assert_eq!(c1.to_bytes().len(), 3 + 288 + 288 + len + suite.tag_len());
        }
    }
}

#[test]
fn several_sinks_and_the_source_after_reencryption() {
    let mut rng = SeededRng::from_seed_u64(2);
    let (ska, pka) = keypair(200);
    let (skb, pkb) = keypair(201);
    let (skc, pkc) = keypair(202);
    let c2 = pre::seal(
        &pka,
        &mut rng,
        AeadSuite::Aes128Ccm8,
        b"",
        b"key stream k_5",
    )
    .unwrap();
    let to_b = pre::reencrypt(&ska.rekey_to(&pkb), &c2);
    let to_c = pre::reencrypt(&ska.rekey_to(&pkc), &c2);
    assert_eq!(
        &*pre::open_first(&skb, &to_b, b"").unwrap(),
        b"key stream k_5"
    );
    assert_eq!(
        &*pre::open_first(&skc, &to_c, b"").unwrap(),
        b"key stream k_5"
    );
    // Each sink opens only its own re-encryption.
    assert_eq!(
        pre::open_first(&skc, &to_b, b""),
        Err(Error::Authentication)
    );
    assert_eq!(
        pre::open_first(&skb, &to_c, b""),
        Err(Error::Authentication)
    );
    // The source still opens its ciphertext, but not the re-encrypted forms.
    assert_eq!(
        &*pre::open_second(&ska, &c2, b"").unwrap(),
        b"key stream k_5"
    );
    assert_eq!(
        pre::open_first(&ska, &to_b, b""),
        Err(Error::Authentication)
    );
    // Nobody else opens the second level.
    assert_eq!(pre::open_second(&skb, &c2, b""), Err(Error::Authentication));
}

#[test]
fn rekey_does_not_work_in_the_reverse_direction() {
    let mut rng = SeededRng::from_seed_u64(3);
    let (ska, pka) = keypair(300);
    let (skb, pkb) = keypair(301);
    let rk_ab = ska.rekey_to(&pkb);
    assert_ne!(rk_ab, skb.rekey_to(&pka));
    // A ciphertext for b, pushed through a→b, opens for neither b nor a.
    let for_b = pre::seal(&pkb, &mut rng, AeadSuite::ChaCha20Poly1305, b"", b"b only").unwrap();
    let c1 = pre::reencrypt(&rk_ab, &for_b);
    assert_eq!(pre::open_first(&ska, &c1, b""), Err(Error::Authentication));
    assert_eq!(pre::open_first(&skb, &c1, b""), Err(Error::Authentication));
    // And the proxy's key is not a decryption key: a third party's key cannot turn it into one.
    let (skc, _) = keypair(302);
    assert_eq!(
        pre::open_second(&skc, &for_b, b""),
        Err(Error::Authentication)
    );
}

#[test]
fn tampering_is_caught() {
    let mut rng = SeededRng::from_seed_u64(4);
    let (ska, pka) = keypair(400);
    let (skb, pkb) = keypair(401);
    let c2 = pre::seal(&pka, &mut rng, AeadSuite::Aes128Gcm, b"aad", b"management").unwrap();
    let c1 = pre::reencrypt(&ska.rekey_to(&pkb), &c2);
    assert_eq!(
        pre::open_second(&ska, &c2, b"other"),
        Err(Error::Authentication)
    );
    assert_eq!(
        pre::open_first(&skb, &c1, b"other"),
        Err(Error::Authentication)
    );
    let other = pre::seal(&pka, &mut rng, AeadSuite::Aes128Gcm, b"aad", b"management").unwrap();
    for (bytes, first) in [(c2.to_bytes(), false), (c1.to_bytes(), true)] {
        // Flip one bit in every region: α, β, payload.
        for pos in [3usize, 40, 200, 320, 450, bytes.len() - 5, bytes.len() - 1]
            .into_iter()
            .filter(|p| *p < bytes.len())
        {
            let mut t = bytes.clone();
            t[pos] ^= 0x04;
            let res = if first {
                FirstLevel::from_bytes(&t).and_then(|c| pre::open_first(&skb, &c, b"aad"))
            } else {
                SecondLevel::from_bytes(&t).and_then(|c| pre::open_second(&ska, &c, b"aad"))
            };
            assert!(res.is_err(), "bit flip at {pos} accepted");
        }
    }
    // Swapping the payload of two ciphertexts for the same key fails.
    let mut spliced = c2.to_bytes();
    let n = spliced.len();
    let other_bytes = other.to_bytes();
    spliced[n - 26..].copy_from_slice(&other_bytes[n - 26..]);
    let spliced = SecondLevel::from_bytes(&spliced).unwrap();
    assert_eq!(
        pre::open_second(&ska, &spliced, b"aad"),
        Err(Error::Authentication)
    );
}

#[test]
fn key_encodings_and_pem() {
    let (sk, pk) = keypair(500);
    let (_, pkb) = keypair(501);
    let rk = sk.rekey_to(&pkb);
    assert_eq!(sk.to_bytes().len(), 66);
    assert_eq!(pk.to_bytes().len(), 386);
    assert_eq!(rk.to_bytes().len(), 98);
    let sk2 = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
    assert_eq!(sk2.public_key(), pk);
    assert_eq!(PublicKey::from_bytes(&pk.to_bytes()).unwrap(), pk);
    assert_eq!(ReKey::from_bytes(&rk.to_bytes()).unwrap(), rk);

    let pem = sk.to_pem().unwrap();
    assert!(pem.starts_with(&format!("-----BEGIN {SECRET_KEY_PEM_LABEL}-----\n")));
    assert_eq!(SecretKey::from_pem(&pem).unwrap().public_key(), pk);
    let pem = pk.to_pem().unwrap();
    assert!(pem.starts_with(&format!("-----BEGIN {PUBLIC_KEY_PEM_LABEL}-----\n")));
    assert_eq!(PublicKey::from_pem(&pem).unwrap(), pk);
    assert!(matches!(SecretKey::from_pem(&pem), Err(Error::Pem(_))));
    let pem = rk.to_pem().unwrap();
    assert!(pem.starts_with(&format!("-----BEGIN {REKEY_PEM_LABEL}-----\n")));
    assert_eq!(ReKey::from_pem(&pem).unwrap(), rk);

    // Redacted Debug.
    let dbg = format!("{sk:?}");
    assert!(dbg.starts_with("SecretKey") && !dbg.contains(&hex::encode(&sk.to_bytes()[2..10])));
}

#[test]
fn decoders_reject_wrong_kinds_and_identities() {
    let mut rng = SeededRng::from_seed_u64(6);
    let (sk, pk) = keypair(600);
    let c2 = pre::seal(&pk, &mut rng, AeadSuite::Ascon128, b"", b"x").unwrap();
    // Kind bytes are not interchangeable.
    assert!(PublicKey::from_bytes(&sk.to_bytes()).is_err());
    assert!(FirstLevel::from_bytes(&c2.to_bytes()).is_err());
    // Unknown backend, unknown suite.
    let mut b = c2.to_bytes();
    b[1] = 9;
    assert!(SecondLevel::from_bytes(&b).is_err());
    let mut b = c2.to_bytes();
    b[2] = 99;
    assert_eq!(SecondLevel::from_bytes(&b), Err(Error::UnknownSuite(99)));
    // Zero scalars and the point at infinity.
    let mut b = sk.to_bytes().to_vec();
    b[2..34].fill(0);
    assert!(SecretKey::from_bytes(&b).is_err());
    let mut inf = vec![0x13, 1, 0xc0];
    inf.resize(98, 0);
    assert!(ReKey::from_bytes(&inf).is_err());
    // All-zero GT.
    let mut b = pk.to_bytes();
    b[2..290].fill(0);
    assert!(PublicKey::from_bytes(&b).is_err());
    // Truncation.
    let b = c2.to_bytes();
    for n in 0..b.len() {
        assert!(SecondLevel::from_bytes(&b[..n]).is_err() || n >= 3 + 48 + 288 + 16);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700), kind in 0x11u8..=0x15) {
        let mut b = bytes;
        if b.len() >= 2 {
            b[0] = kind;
            b[1] = 1;
        }
        if b.len() >= 3 {
            b[2] = (b[2] % 5) + 1;
        }
        let _ = SecretKey::from_bytes(&b);
        let _ = PublicKey::from_bytes(&b);
        let _ = ReKey::from_bytes(&b);
        let _ = SecondLevel::from_bytes(&b);
        let _ = FirstLevel::from_bytes(&b);
        let _ = SecretKey::from_pem(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn mutated_ciphertexts_never_panic(pos in 0usize..700, val in any::<u8>()) {
        let mut rng = SeededRng::from_seed_u64(7);
        let (ska, pka) = keypair(700);
        let (skb, pkb) = keypair(701);
        let c2 = pre::seal(&pka, &mut rng, AeadSuite::Aes128Gcm, b"", b"payload").unwrap();
        let c1 = pre::reencrypt(&ska.rekey_to(&pkb), &c2);
        let mut b2 = c2.to_bytes();
        let n = b2.len();
        b2[pos % n] = val;
        if let Ok(c) = SecondLevel::from_bytes(&b2) {
            let _ = pre::open_second(&ska, &c, b"");
        }
        let mut b1 = c1.to_bytes();
        let n = b1.len();
        b1[pos % n] = val;
        if let Ok(c) = FirstLevel::from_bytes(&b1) {
            let _ = pre::open_first(&skb, &c, b"");
        }
    }
}
