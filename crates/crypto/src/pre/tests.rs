//! Algebra-level checks of the scheme (the integration tests in `tests/pre.rs` use the public API).

use super::*;
use crate::rng::SeededRng;

type B = Blstrs;

fn keys(seed: u64) -> (SecretKey, PublicKey) {
    let sk = SecretKey::generate(&mut SeededRng::from_seed_u64(seed));
    let pk = sk.public_key();
    (sk, pk)
}

/// The KEM element a ciphertext hides, recovered with the intended key, for comparison.
fn kem_of_second(sk: &SecretKey, c: &SecondLevel) -> <B as PairingBackend>::Gt {
    B::gt_div(
        &c.beta,
        &B::pairing(&B::g1_mul(&c.alpha, &sk.a1), &B::g2_generator()),
    )
}

#[test]
fn equations_hold() {
    let mut rng = SeededRng::from_seed_u64(1);
    let (ski, pki) = keys(10);
    let (skj, pkj) = keys(11);
    let z = B::gt_generator();
    // Z = e(g1, g2); pk = (Z^{a1}, g2^{a2}).
    assert!(z == B::pairing(&B::g1_base_mul(&scalar(1)), &B::g2_generator()));
    assert!(pki.z_a1 == B::gt_pow(&z, &ski.a1));
    assert!(pkj.g2_a2 == B::g2_mul(&B::g2_generator(), &skj.a2));
    // (2) rk = g2^{a1 b2}.
    let rk = ski.rekey_to(&pkj);
    assert!(rk.rk == B::g2_mul(&B::g2_generator(), &B::scalar_mul(&ski.a1, &skj.a2)));
    // (1) with a known m and r.
    let m = B::gt_random(&mut rng);
    let r = B::random_scalar(&mut rng);
    let alpha = B::g1_base_mul(&r);
    let beta = B::gt_mul(&m, &B::gt_pow(&pki.z_a1, &r));
    // (3) α' = e(α, rk) = Z^{r a1 b2}.
    let alpha1 = B::pairing(&alpha, &rk.rk);
    let e = B::scalar_mul(&B::scalar_mul(&r, &ski.a1), &skj.a2);
    assert!(alpha1 == B::gt_pow(&z, &e));
    // (4) m = β / α'^{1/b2}.
    let inv = B::scalar_invert(&skj.a2).expect("non-zero");
    assert!(B::gt_div(&beta, &B::gt_pow(&alpha1, &inv)) == m);
    // Owner: m = β / e(α^{a1}, g2).
    let c = SecondLevelOf::<B> {
        suite: AeadSuite::Aes128Gcm,
        alpha,
        beta,
        payload: Vec::new(),
    };
    assert!(kem_of_second(&ski, &c) == m);
}

fn scalar(v: u8) -> BlsScalar {
    let mut b = [0u8; 32];
    b[0] = v;
    B::scalar_from_bytes(&b).expect("small scalar")
}

#[test]
fn gt_pow_matches_blstrs_and_edge_exponents() {
    let mut rng = SeededRng::from_seed_u64(2);
    let x = B::gt_random(&mut rng);
    for _ in 0..4 {
        let s = B::random_scalar(&mut rng);
        assert!(B::gt_pow(&x, &s) == x * s.0);
    }
    assert!(B::gt_pow(&x, &scalar(1)) == x);
    // q - 1: x^{q-1} = x^{-1}.
    let minus_one = BlsScalar(-blstrs::Scalar::from(1u64));
    assert!(B::gt_mul(&B::gt_pow(&x, &minus_one), &x) == <blstrs::Gt as group::Group>::identity());
}

#[test]
fn proxy_natural_attempts_do_not_give_the_kem_element() {
    let mut rng = SeededRng::from_seed_u64(3);
    let (ski, pki) = keys(20);
    let (skj, pkj) = keys(21);
    let rk = ski.rekey_to(&pkj);
    let c = seal(&pki, &mut rng, AeadSuite::ChaCha20Poly1305, b"", b"k").expect("seal");
    let m = kem_of_second(&ski, &c);
    let g2 = B::g2_generator();
    let e_rk = B::pairing(&c.alpha, &rk.rk);
    let e_g2 = B::pairing(&c.alpha, &g2);
    let candidates = [
        c.beta,
        B::gt_div(&c.beta, &e_rk),
        B::gt_mul(&c.beta, &e_rk),
        B::gt_div(&c.beta, &e_g2),
        B::gt_div(&c.beta, &pki.z_a1),
        B::gt_div(&c.beta, &B::pairing(&c.alpha, &pkj.g2_a2)),
        B::gt_div(&c.beta, &B::pairing(&B::g1_base_mul(&scalar(1)), &rk.rk)),
        B::gt_div(&c.beta, &B::gt_mul(&e_g2, &pki.z_a1)),
    ];
    for (i, cand) in candidates.iter().enumerate() {
        assert!(*cand != m, "candidate {i} recovered m");
        // Nor does its key open the payload.
        assert_eq!(
            open_payload::<B>(cand, c.suite, b"", &c.payload),
            Err(Error::Authentication)
        );
    }
    // The delegatee's key halves used the wrong way do not help either.
    let wrong = B::gt_div(&c.beta, &B::pairing(&B::g1_mul(&c.alpha, &skj.a1), &g2));
    assert!(wrong != m);
    // Collusion caveat documented in the module: rk^{1/b2} = g2^{a1} opens i's second level.
    let g2_a1 = B::g2_mul(&rk.rk, &B::scalar_invert(&skj.a2).expect("non-zero"));
    assert!(B::gt_div(&c.beta, &B::pairing(&c.alpha, &g2_a1)) == m);
}

#[test]
fn rekey_is_not_its_reverse_nor_derivable_by_inversion() {
    let (ski, _pki) = keys(30);
    let (skj, pkj) = keys(31);
    let pki = ski.public_key();
    let rk_ij = ski.rekey_to(&pkj);
    let rk_ji = skj.rekey_to(&pki);
    assert!(rk_ij != rk_ji);
    // BBS-style inversion of the exponent gives g2^{1/(a1 b2)}, not g2^{b1 a2}.
    let exponent_inv = B::scalar_invert(&B::scalar_mul(&ski.a1, &skj.a2)).expect("non-zero");
    assert!(B::g2_mul(&B::g2_generator(), &exponent_inv) != rk_ji.rk);
    // Reverse use: a ciphertext for j, re-encrypted with rk_{i→j}, opens for nobody.
    let mut rng = SeededRng::from_seed_u64(4);
    let c = seal(&pkj, &mut rng, AeadSuite::Aes128Gcm, b"a", b"for j").expect("seal");
    let c1 = reencrypt(&rk_ij, &c);
    assert_eq!(open_first(&skj, &c1, b"a"), Err(Error::Authentication));
    assert_eq!(open_first(&ski, &c1, b"a"), Err(Error::Authentication));
    let m = kem_of_second(&skj, &c);
    let inv = B::scalar_invert(&skj.a2).expect("non-zero");
    assert!(B::gt_div(&c1.beta, &B::gt_pow(&c1.alpha, &inv)) != m);
}

#[test]
fn blinded_exponent_is_s_plus_kq() {
    let mut rng = SeededRng::from_seed_u64(5);
    let x = B::gt_random(&mut rng);
    let s = B::random_scalar(&mut rng);
    let e = backend::tests_support_blinded(&x, &s);
    // Reduce the 320-bit big-endian exponent mod q with blstrs scalars: Σ byte·256^i.
    let mut acc = blstrs::Scalar::from(0u64);
    for byte in e.iter() {
        acc = acc * blstrs::Scalar::from(256u64) + blstrs::Scalar::from(u64::from(*byte));
    }
    assert!(acc == s.0);
    assert!(e[..8] != [0u8; 8], "blinding adds ~64 bits");
}

#[test]
fn derive_is_deterministic_separated_and_usable() {
    let seed = [7u8; 32];
    let a = SecretKey::derive(&seed, b"epoch 1").expect("derive");
    let again = SecretKey::derive(&seed, b"epoch 1").expect("derive");
    assert_eq!(*a.to_bytes(), *again.to_bytes());
    // Other info, other ikm: other keys; the two halves differ.
    let b = SecretKey::derive(&seed, b"epoch 2").expect("derive");
    let c = SecretKey::derive(&[8u8; 32], b"epoch 1").expect("derive");
    assert_ne!(*a.to_bytes(), *b.to_bytes());
    assert_ne!(*a.to_bytes(), *c.to_bytes());
    assert_ne!(
        B::scalar_to_bytes(&a.a1).as_slice(),
        B::scalar_to_bytes(&a.a2).as_slice()
    );
    // Info is not ambiguous with the candidate counter's encoding.
    let d = SecretKey::derive(&seed, b"epoch 1\x01\x00").expect("derive");
    assert_ne!(*a.to_bytes(), *d.to_bytes());
    // Round-trips through the canonical encoding (scalars in [1, q)) and works in the scheme.
    assert_eq!(
        *SecretKey::from_bytes(&a.to_bytes())
            .expect("decode")
            .to_bytes(),
        *a.to_bytes()
    );
    let (skj, pkj) = keys(12);
    let mut rng = SeededRng::from_seed_u64(3);
    let c2 = seal(
        &a.public_key(),
        &mut rng,
        AeadSuite::ChaCha20Poly1305,
        b"ad",
        b"m",
    )
    .expect("seal");
    assert_eq!(open_second(&a, &c2, b"ad").expect("own").as_slice(), b"m");
    let c1 = reencrypt(&a.rekey_to(&pkj), &c2);
    assert_eq!(open_first(&skj, &c1, b"ad").expect("sink").as_slice(), b"m");
    // Too little keying material is refused.
    assert!(matches!(
        SecretKey::derive(&[0u8; 15], b"x"),
        Err(Error::InvalidParameter(_))
    ));
}

/// Known-answer values computed independently (Python's `hmac`/`hashlib`, HKDF per RFC 5869 and
/// the rejection rule of [`SecretKey::derive`]): ikm = 32 zero bytes, info = the relay's
/// `"m2msec relay epoch key" ‖ epoch (u32 BE)`. Epoch 0 takes the first candidate for both
/// scalars; epoch 9 rejects one candidate for `a1` and seven for `a2`.
#[test]
fn derive_known_answers() {
    let cases: [(u32, &str, &str); 2] = [
        (
            0,
            "ade46cb221f78fc6473fdca06f0261e1c2273cb74f1092d1c3d051fcd46eb573",
            "e92d833be4ea2a4728c563e5b64e263cfd011214296624334a9db75f64f30304",
        ),
        (
            9,
            "35706a41ff1395c8c2a9fde8cc08680f5c5bb56477c4880add889dd6ca65644d",
            "8a8362ba942fe0bc716622315359e5f0e9392d624cbebd0117f2b4eba5a97838",
        ),
    ];
    for (epoch, a1, a2) in cases {
        let mut info = b"m2msec relay epoch key".to_vec();
        info.extend_from_slice(&epoch.to_be_bytes());
        let sk = SecretKey::derive(&[0u8; 32], &info).expect("derive");
        assert_eq!(
            hex::encode(B::scalar_to_bytes(&sk.a1).as_slice()),
            a1,
            "epoch {epoch}"
        );
        assert_eq!(
            hex::encode(B::scalar_to_bytes(&sk.a2).as_slice()),
            a2,
            "epoch {epoch}"
        );
    }
}
