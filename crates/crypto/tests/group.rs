//! Prime-order groups: published parameters and vectors (`vectors/crypto/group-*.txt`), group laws,
//! encodings, Schnorr and DSA-style signatures as integration examples, and total decoders.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{NonZero, U2048, Uint};
use m2msec_crypto::Error;
use m2msec_crypto::group::{Element, Group, GroupId, OpTally, Scalar};
use m2msec_crypto::rng::SeededRng;
use proptest::prelude::*;

type U = Uint<{ U2048::LIMBS }>;

fn big(bytes: &[u8]) -> U {
    let mut buf = [0u8; 256];
    buf[256 - bytes.len()..].copy_from_slice(bytes);
    U::from_be_slice(&buf)
}

fn pow(base: &U, exp: &U, modulus: &U) -> U {
    DynResidue::new(base, DynResidueParams::new(modulus))
        .pow(exp)
        .retrieve()
}

fn padded(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(bytes);
    out
}

const FF: [(GroupId, &str, usize, usize); 3] = [
    (GroupId::Modp2048, "modp2048", 2048, 2047),
    (GroupId::Dsa1024_160, "dsa1024_160", 1024, 160),
    (GroupId::Dsa2048_256, "dsa2048_256", 2048, 256),
];

/// RFC 3526 §3 and RFC 5114 §2.1 / §2.3: the compiled constants are the published ones, and each
/// (p, q, g) is sound.
#[test]
fn finite_field_parameters_match_the_rfcs_and_are_sound() {
    let cases = common::load("group-params-rfc3526-rfc5114.txt");
    assert_eq!(cases.len(), 3);
    for (id, name, p_bits, q_bits) in FF {
        let case = cases.iter().find(|c| c.name == name).unwrap();
        let group = Group::new(id);
        let (p_bytes, g_bytes) = (case.hex("p"), case.hex("g"));
        assert_eq!(group.modulus_be_bytes().unwrap(), p_bytes, "{name} p");
        assert_eq!(
            group.generator().to_bytes(),
            padded(&g_bytes, id.element_len()),
            "{name} g"
        );
        let (p, g) = (big(&p_bytes), big(&g_bytes));
        let p_minus_1 = p.wrapping_sub(&U::ONE);
        let q = if id == GroupId::Modp2048 {
            // Subgroup of quadratic residues of the safe prime p.
            p_minus_1.shr_vartime(1)
        } else {
            big(&case.hex("q"))
        };
        assert_eq!(big(&group.order_be_bytes()), q, "{name} q");
        assert_eq!(p.bits(), p_bits, "{name}");
        assert_eq!(q.bits(), q_bits, "{name}");

        // Fermat tests of p and q (a transcription error would fail them).
        for a in [2u8, 3, 5, 7] {
            let a = U::from_u8(a);
            assert_eq!(pow(&a, &p_minus_1, &p), U::ONE, "{name}: p composite?");
            assert_eq!(
                pow(&a, &q.wrapping_sub(&U::ONE), &q),
                U::ONE,
                "{name}: q composite?"
            );
        }
        // q | p − 1.
        let q_nz = Option::<NonZero<U>>::from(NonZero::new(q)).unwrap();
        assert_eq!(
            p_minus_1.rem(&q_nz),
            U::ZERO,
            "{name}: q does not divide p-1"
        );
        // g ∈ [2, p−1] has order q.
        assert!(g > U::ONE && g < p);
        assert_eq!(pow(&g, &q, &p), U::ONE, "{name}: g^q != 1");

        // The decoder agrees: g is a member, 0, 1, p−1 (order 2) and p are not accepted.
        let len = id.element_len();
        assert!(group.element_from_bytes(&padded(&g_bytes, len)).is_ok());
        let mut p_minus_1_bytes = p_bytes.clone();
        *p_minus_1_bytes.last_mut().unwrap() -= 1;
        for bad in [
            vec![0u8; len],
            padded(&[1], len),
            p_minus_1_bytes,
            p_bytes.clone(),
            vec![0xff; len],
        ] {
            assert!(
                matches!(group.element_from_bytes(&bad), Err(Error::Decode { .. })),
                "{name}"
            );
        }
    }
}

/// RFC 9496 Appendix A.1 (multiples of the generator) and A.2 (invalid encodings).
#[test]
fn ristretto255_matches_rfc9496_vectors() {
    let cases = common::load("group-ristretto255-rfc9496.txt");
    let group = Group::new(GroupId::Ristretto255);
    let mut multiples = 0;
    let mut invalid = 0;
    for case in &cases {
        let encoding = case.hex("encoding");
        if let Some(n) = case.name.strip_prefix("multiple_") {
            let n: u64 = n.parse().unwrap();
            let k = group.scalar_from_u64(n);
            let by_table = group.exp_generator(&k).unwrap();
            let by_ladder = group.exp(&group.generator(), &k).unwrap();
            assert_eq!(by_table.to_bytes(), encoding, "{}", case.name);
            assert_eq!(by_ladder, by_table);
            if n == 0 {
                assert_eq!(group.identity().to_bytes(), encoding);
                assert!(group.element_from_bytes(&encoding).is_err());
            } else {
                assert_eq!(group.element_from_bytes(&encoding).unwrap(), by_table);
            }
            multiples += 1;
        } else {
            assert!(case.name.starts_with("invalid_"));
            assert!(
                matches!(
                    group.element_from_bytes(&encoding),
                    Err(Error::Decode { .. })
                ),
                "{} decoded",
                case.name
            );
            invalid += 1;
        }
    }
    assert_eq!((multiples, invalid), (16, 29));
}

fn random_pair(group: &Group, rng: &mut SeededRng) -> (Scalar, Element) {
    let k = group.random_scalar(rng);
    let e = group.exp_generator(&k).unwrap();
    (k, e)
}

#[test]
fn group_laws_hold_in_every_group() {
    let mut rng = SeededRng::from_seed_u64(11);
    for id in GroupId::ALL {
        let g = Group::new(id);
        let (a, ga) = random_pair(&g, &mut rng);
        let (b, gb) = random_pair(&g, &mut rng);
        // (g^a)^b = (g^b)^a = g^(ab)
        let gab = g.exp(&ga, &b).unwrap();
        assert_eq!(gab, g.exp(&gb, &a).unwrap(), "{id:?}");
        assert_eq!(
            gab,
            g.exp_generator(&g.scalar_mul(&a, &b).unwrap()).unwrap()
        );
        // g^a · g^b = g^(a+b); g^a / g^b = g^(a−b)
        let sum = g.scalar_add(&a, &b).unwrap();
        assert_eq!(g.mul(&ga, &gb).unwrap(), g.exp_generator(&sum).unwrap());
        let diff = g.scalar_sub(&a, &b).unwrap();
        let gb_inv = g.element_invert(&gb).unwrap();
        assert_eq!(
            g.mul(&ga, &gb_inv).unwrap(),
            g.exp_generator(&diff).unwrap()
        );
        // inverses and neutral elements
        assert!(g.mul(&gb, &gb_inv).unwrap().is_identity());
        assert_eq!(g.mul(&ga, &g.identity()).unwrap(), ga);
        let zero = g.scalar_from_u64(0);
        let one = g.scalar_from_u64(1);
        assert!(g.exp(&ga, &zero).unwrap().is_identity());
        assert_eq!(g.exp(&ga, &one).unwrap(), ga);
        assert_eq!(
            g.scalar_mul(&a, &g.scalar_invert(&a).unwrap()).unwrap(),
            one
        );
        assert!(
            g.scalar_add(&a, &g.scalar_neg(&a).unwrap())
                .unwrap()
                .is_zero()
        );
        assert_eq!(
            g.scalar_invert(&zero),
            Err(Error::InvalidParameter("inverse of a zero scalar"))
        );
        // exponents live mod q: q − 1 = −1
        let minus_one = g.scalar_neg(&one).unwrap();
        assert_eq!(
            g.exp(&ga, &minus_one).unwrap(),
            g.element_invert(&ga).unwrap()
        );
        // distributivity: (g^a)^(b+c) = (g^a)^b · (g^a)^c
        let c = g.random_scalar(&mut rng);
        let lhs = g.exp(&ga, &g.scalar_add(&b, &c).unwrap()).unwrap();
        let rhs = g
            .mul(&g.exp(&ga, &b).unwrap(), &g.exp(&ga, &c).unwrap())
            .unwrap();
        assert_eq!(lhs, rhs);
        // encodings round trip
        assert_eq!(g.element_from_bytes(&ga.to_bytes()).unwrap(), ga);
        assert_eq!(g.scalar_from_bytes(&a.to_bytes()).unwrap(), a);
        assert_eq!(ga.to_bytes().len(), id.element_len());
        assert_eq!(a.to_bytes().len(), id.scalar_len());
    }
}

/// Schnorr signatures, the integration example: (r, s) with r = g^k, e = H(r ‖ y ‖ m),
/// s = k + x·e; valid iff g^s = r · y^e.
#[test]
fn schnorr_signature_round_trip_and_costs() {
    let mut rng = SeededRng::from_seed_u64(12);
    for id in GroupId::ALL {
        let g = Group::new(id);
        let (x, y) = random_pair(&g, &mut rng);
        let sign = |msg: &[u8], rng: &mut SeededRng| {
            let (k, r) = random_pair(&g, rng);
            let e = g.hash_to_scalar(b"schnorr", &[&r.to_bytes(), &y.to_bytes(), msg]);
            let s = g.scalar_add(&k, &g.scalar_mul(&x, &e).unwrap()).unwrap();
            (r.to_bytes(), s.to_bytes().to_vec())
        };
        let verifier = Group::new(id);
        let verify = |msg: &[u8], r: &[u8], s: &[u8]| -> bool {
            let g = &verifier;
            let (Ok(r), Ok(s)) = (g.element_from_bytes(r), g.scalar_from_bytes(s)) else {
                return false;
            };
            let e = g.hash_to_scalar(b"schnorr", &[&r.to_bytes(), &y.to_bytes(), msg]);
            let lhs = g.exp_generator(&s).unwrap();
            let rhs = g.mul(&r, &g.exp(&y, &e).unwrap()).unwrap();
            lhs == rhs
        };
        g.take_tally();
        let (r, s) = sign(b"hello", &mut rng);
        // 1 T_E for r, 1 T_H, 1 T_M (x·e), 1 T_A (k + x·e)
        assert_eq!(g.take_tally().to_string(), "1TE+1TM+1TH+1TA", "{id:?}");
        assert!(verify(b"hello", &r, &s), "{id:?}");
        // 2 T_E, 1 T_M, 1 T_H, plus the membership check of r
        assert_eq!(
            verifier.take_tally(),
            OpTally {
                exp: 2,
                mul: 1,
                hash: 1,
                check: 1,
                ..OpTally::default()
            }
        );
        assert!(!verify(b"hellO", &r, &s));
        let mut bad_s = s.clone();
        *bad_s.last_mut().unwrap() ^= 1;
        assert!(!verify(b"hello", &r, &bad_s));
        assert!(!verify(b"hello", &s, &r));
    }
}

/// DSA-style signatures, as e2sec's E-DSA variant needs: r = (g^k mod p) mod q,
/// s = k^−1 (H(m) + x·r); valid iff ((g^(H(m)/s) · y^(r/s)) mod p) mod q = r.
#[test]
fn dsa_style_signature_round_trip() {
    let mut rng = SeededRng::from_seed_u64(13);
    for id in GroupId::ALL {
        let g = Group::new(id);
        let (x, y) = random_pair(&g, &mut rng);
        let h = g.hash_to_scalar(b"dsa", &[b"message"]);
        let (k, gk) = random_pair(&g, &mut rng);
        let r = g.element_to_scalar(&gk).unwrap();
        let s = g
            .scalar_mul(
                &g.scalar_invert(&k).unwrap(),
                &g.scalar_add(&h, &g.scalar_mul(&x, &r).unwrap()).unwrap(),
            )
            .unwrap();
        let w = g.scalar_invert(&s).unwrap();
        let v = g
            .mul(
                &g.exp_generator(&g.scalar_mul(&h, &w).unwrap()).unwrap(),
                &g.exp(&y, &g.scalar_mul(&r, &w).unwrap()).unwrap(),
            )
            .unwrap();
        assert_eq!(g.element_to_scalar(&v).unwrap(), r, "{id:?}");
        let h2 = g.hash_to_scalar(b"dsa", &[b"messagE"]);
        let v2 = g
            .mul(
                &g.exp_generator(&g.scalar_mul(&h2, &w).unwrap()).unwrap(),
                &g.exp(&y, &g.scalar_mul(&r, &w).unwrap()).unwrap(),
            )
            .unwrap();
        assert_ne!(g.element_to_scalar(&v2).unwrap(), r);
    }
}

#[test]
fn scalar_decoder_rejects_out_of_range_and_wrong_lengths() {
    for id in GroupId::ALL {
        let g = Group::new(id);
        let q = g.order_be_bytes();
        let q_le = {
            let mut v = q.clone();
            v.reverse();
            v
        };
        // q itself (big-endian for the finite-field groups, little-endian for Ristretto255)
        let q_enc = if id == GroupId::Ristretto255 { q_le } else { q };
        assert!(g.scalar_from_bytes(&q_enc).is_err(), "{id:?}");
        assert!(g.scalar_from_bytes(&vec![0xff; id.scalar_len()]).is_err());
        assert!(g.scalar_from_bytes(&vec![0; id.scalar_len() + 1]).is_err());
        assert!(g.scalar_from_bytes(&vec![0; id.scalar_len() - 1]).is_err());
        assert!(g.scalar_from_bytes(&[]).is_err());
        assert!(
            g.scalar_from_bytes(&vec![0; id.scalar_len()])
                .unwrap()
                .is_zero()
        );
        // q − 1 is the largest valid scalar.
        let max = g.scalar_neg(&g.scalar_from_u64(1)).unwrap();
        assert_eq!(g.scalar_from_bytes(&max.to_bytes()).unwrap(), max);
        // wrong-length elements
        assert!(
            g.element_from_bytes(&vec![1; id.element_len() + 1])
                .is_err()
        );
        assert!(g.element_from_bytes(&[]).is_err());
    }
}

#[test]
fn hash_to_scalar_is_deterministic_and_separated() {
    for id in GroupId::ALL {
        let g = Group::new(id);
        let a = g.hash_to_scalar(b"dom", &[b"ab", b"c"]);
        assert_eq!(a, g.hash_to_scalar(b"dom", &[b"ab", b"c"]));
        assert_ne!(a, g.hash_to_scalar(b"dom", &[b"a", b"bc"]));
        assert_ne!(a, g.hash_to_scalar(b"dom2", &[b"ab", b"c"]));
        assert_eq!(g.scalar_from_bytes(&a.to_bytes()).unwrap(), a);
    }
    // The group is part of the input: the same bytes give unrelated scalars.
    let x = Group::new(GroupId::Dsa2048_256).hash_to_scalar(b"d", &[b"m"]);
    let y = Group::new(GroupId::Ristretto255).hash_to_scalar(b"d", &[b"m"]);
    assert_ne!(x.to_bytes(), y.to_bytes());
}

#[test]
fn values_of_another_group_are_refused() {
    let mut rng = SeededRng::from_seed_u64(14);
    let a = Group::new(GroupId::Dsa2048_256);
    let b = Group::new(GroupId::Ristretto255);
    let (ka, ea) = random_pair(&a, &mut rng);
    let (kb, eb) = random_pair(&b, &mut rng);
    let mismatch = Error::InvalidParameter("group mismatch");
    assert_eq!(a.exp(&eb, &ka).unwrap_err(), mismatch);
    assert_eq!(a.exp(&ea, &kb).unwrap_err(), mismatch);
    assert_eq!(a.mul(&ea, &eb).unwrap_err(), mismatch);
    assert_eq!(a.scalar_add(&ka, &kb).unwrap_err(), mismatch);
    assert_eq!(a.element_to_scalar(&eb).unwrap_err(), mismatch);
    assert_eq!(a.exp_generator(&kb).unwrap_err(), mismatch);
    assert_ne!(ea, eb);
}

#[test]
fn secrets_are_redacted_and_ids_are_stable() {
    let mut rng = SeededRng::from_seed_u64(15);
    let g = Group::new(GroupId::Ristretto255);
    let k = g.random_scalar(&mut rng);
    let shown = format!("{k:?}");
    assert!(shown.contains("Ristretto255"));
    assert!(!shown.contains(&format!("{:?}", &k.to_bytes()[..4])));
    assert_eq!(
        GroupId::ALL.map(GroupId::id),
        [1, 2, 3, 4],
        "wire identifiers are fixed"
    );
    assert!(GroupId::Dsa1024_160.is_legacy());
    assert!(!GroupId::Dsa2048_256.is_legacy());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), id in 1u8..=4) {
        let group = Group::new(GroupId::try_from(id).unwrap());
        let _ = group.element_from_bytes(&data);
        let _ = group.scalar_from_bytes(&data);
        let _ = GroupId::try_from(data.first().copied().unwrap_or(0));
    }

    #[test]
    fn decoders_never_panic_on_full_length_input(seed in any::<u64>(), id in 1u8..=4) {
        let id = GroupId::try_from(id).unwrap();
        let group = Group::new(id);
        let mut bytes = vec![0u8; id.element_len().max(id.scalar_len())];
        let mut rng = SeededRng::from_seed_u64(seed);
        rand_core::RngCore::fill_bytes(&mut rng, &mut bytes);
        if let Ok(e) = group.element_from_bytes(&bytes[..id.element_len()]) {
            prop_assert_eq!(e.to_bytes(), bytes[..id.element_len()].to_vec());
        }
        if let Ok(s) = group.scalar_from_bytes(&bytes[..id.scalar_len()]) {
            prop_assert_eq!(s.to_bytes().to_vec(), bytes[..id.scalar_len()].to_vec());
        }
    }
}
