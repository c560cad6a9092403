//! The BLS12-381 constants behind `pre::Blstrs` against their published values
//! (`vectors/crypto/pre-bls12-381-params.txt`).
#![allow(clippy::unwrap_used)]

mod common;

use m2msec_crypto::pre::{Blstrs, PairingBackend};

#[test]
fn generators_and_order_match_the_published_values() {
    let cases = common::load("pre-bls12-381-params.txt");
    let case = &cases[0];
    let order_be = case.hex("order");
    let mut one = vec![0u8; 32];
    one[0] = 1;
    let one = Blstrs::scalar_from_bytes(&one).unwrap();
    // g1 = g1^1, g2, Z = e(g1, g2).
    let g1 = Blstrs::g1_base_mul(&one);
    assert_eq!(Blstrs::g1_to_bytes(&g1), case.hex("g1"));
    assert_eq!(Blstrs::g2_to_bytes(&Blstrs::g2_generator()), case.hex("g2"));
    assert!(Blstrs::pairing(&g1, &Blstrs::g2_generator()) == Blstrs::gt_generator());
    // Scalars are little-endian in [1, q): q - 1 is accepted, q and 0 are not.
    let mut q_le: Vec<u8> = order_be.iter().rev().copied().collect();
    assert!(Blstrs::scalar_from_bytes(&q_le).is_none());
    q_le[0] -= 1;
    let q_minus_1 = Blstrs::scalar_from_bytes(&q_le).unwrap();
    assert_eq!(&*Blstrs::scalar_to_bytes(&q_minus_1), &q_le[..]);
    assert!(Blstrs::scalar_from_bytes(&[0u8; 32]).is_none());
    // Z^{q-1} = e(g1^{q-1}, g2) = Z^{-1}.
    let z = Blstrs::gt_generator();
    let z_inv = Blstrs::pairing(&Blstrs::g1_base_mul(&q_minus_1), &Blstrs::g2_generator());
    assert!(Blstrs::gt_pow(&z, &q_minus_1) == z_inv);
    assert!(Blstrs::gt_mul(&z_inv, &z) == Blstrs::gt_div(&z, &z));
}
