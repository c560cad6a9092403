//! The pairing backend behind [`super`]: a small trait, and its BLS12-381 implementation over
//! `blstrs` (which wraps the `blst` C library).
//!
//! The scheme only ever needs the operations listed in [`PairingBackend`], so another pairing crate
//! (or another curve) can be swapped in by implementing the trait; the wire formats carry the
//! backend's [`PairingBackend::ID`].

use blstrs::{Compress as _, G1Affine, G1Projective, G2Affine, G2Projective, Gt};
use ff::{Field as _, PrimeField as _};
use group::{Curve as _, Group as _, prime::PrimeCurveAffine as _};
use zeroize::{DefaultIsZeroes, Zeroize, Zeroizing};

use crate::rng::CryptoRng;

/// A type-3 pairing `e: G1 × G2 → GT` of prime order `q`, with its encodings.
///
/// Groups are written multiplicatively in the documentation of [`super`]; here `g1_mul(p, s)` is
/// `p^s`, `gt_mul(x, y)` is `x·y` and so on. Implementations must:
/// - make every operation that takes a [`PairingBackend::Scalar`] as constant-time as the
///   underlying library allows (scalars are secret keys and ephemeral exponents);
/// - make every decoder total: any byte string gives `Some(valid element)` or `None`, never a
///   panic; decoders accept only canonical encodings of non-identity elements of the prime-order
///   subgroup, and scalars only in `[1, q)`.
pub trait PairingBackend: Clone + core::fmt::Debug + 'static {
    /// Backend identifier on the wire (second byte of every encoding).
    const ID: u8;
    /// Human-readable name.
    const NAME: &'static str;
    /// Encoded length of a scalar.
    const SCALAR_LEN: usize;
    /// Encoded length of a `G1` element.
    const G1_LEN: usize;
    /// Encoded length of a `G2` element.
    const G2_LEN: usize;
    /// Encoded length of a `GT` element.
    const GT_LEN: usize;

    /// An element of `Z_q`; zeroized on drop by its owners.
    type Scalar: Clone + Zeroize;
    /// An element of `G1`.
    type G1: Clone + PartialEq + Eq;
    /// An element of `G2`.
    type G2: Clone + PartialEq + Eq;
    /// An element of `GT`.
    type Gt: Clone + PartialEq + Eq;

    /// A uniformly random non-zero scalar.
    fn random_scalar(rng: &mut dyn CryptoRng) -> Self::Scalar;
    /// `a·b mod q`.
    fn scalar_mul(a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar;
    /// `a^{-1} mod q`, `None` for zero.
    fn scalar_invert(a: &Self::Scalar) -> Option<Self::Scalar>;

    /// `g1^s` for the fixed generator `g1`.
    fn g1_base_mul(s: &Self::Scalar) -> Self::G1;
    /// `p^s` in `G1`.
    fn g1_mul(p: &Self::G1, s: &Self::Scalar) -> Self::G1;
    /// The fixed generator `g2`.
    fn g2_generator() -> Self::G2;
    /// `p^s` in `G2`.
    fn g2_mul(p: &Self::G2, s: &Self::Scalar) -> Self::G2;
    /// `Z = e(g1, g2)`.
    fn gt_generator() -> Self::Gt;
    /// `x^s` in `GT`, hardened against timing as far as the backend can (see the implementation).
    fn gt_pow(x: &Self::Gt, s: &Self::Scalar) -> Self::Gt;
    /// `x·y` in `GT`.
    fn gt_mul(x: &Self::Gt, y: &Self::Gt) -> Self::Gt;
    /// `x / y` in `GT`.
    fn gt_div(x: &Self::Gt, y: &Self::Gt) -> Self::Gt;
    /// A uniformly random element of `GT`.
    fn gt_random(rng: &mut dyn CryptoRng) -> Self::Gt;
    /// `e(p, q)`.
    fn pairing(p: &Self::G1, q: &Self::G2) -> Self::Gt;

    /// Canonical encoding of a scalar ([`PairingBackend::SCALAR_LEN`] bytes).
    fn scalar_to_bytes(s: &Self::Scalar) -> Zeroizing<Vec<u8>>;
    /// Inverse of `scalar_to_bytes`; `None` unless canonical and non-zero.
    fn scalar_from_bytes(b: &[u8]) -> Option<Self::Scalar>;
    /// Canonical encoding of a `G1` element ([`PairingBackend::G1_LEN`] bytes).
    fn g1_to_bytes(p: &Self::G1) -> Vec<u8>;
    /// Inverse of `g1_to_bytes`; `None` unless a valid non-identity subgroup element.
    fn g1_from_bytes(b: &[u8]) -> Option<Self::G1>;
    /// Canonical encoding of a `G2` element ([`PairingBackend::G2_LEN`] bytes).
    fn g2_to_bytes(p: &Self::G2) -> Vec<u8>;
    /// Inverse of `g2_to_bytes`; `None` unless a valid non-identity subgroup element.
    fn g2_from_bytes(b: &[u8]) -> Option<Self::G2>;
    /// Canonical encoding of a `GT` element ([`PairingBackend::GT_LEN`] bytes).
    fn gt_to_bytes(x: &Self::Gt) -> Vec<u8>;
    /// Inverse of `gt_to_bytes`; `None` unless a valid non-identity element of `GT`.
    fn gt_from_bytes(b: &[u8]) -> Option<Self::Gt>;
}

/// BLS12-381 through `blstrs` 0.7 (over `blst`): `G1` points are 48 bytes compressed, `G2` points 96
/// bytes compressed (the ZCash encoding), `GT` elements 288 bytes (blstrs' torus compression, six
/// little-endian `Fp` limbs), scalars 32 bytes little-endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blstrs;

/// A BLS12-381 scalar (`blstrs::Scalar`) that [`Zeroize`] can wipe.
#[derive(Clone, Copy, Default)]
pub struct BlsScalar(pub(super) blstrs::Scalar);

impl DefaultIsZeroes for BlsScalar {}

impl core::fmt::Debug for BlsScalar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BlsScalar(..)")
    }
}

/// The BLS12-381 group order `q`, big-endian.
const ORDER_BE: [u8; 32] = [
    0x73, 0xed, 0xa7, 0x53, 0x29, 0x9d, 0x7d, 0x48, 0x33, 0x39, 0xd8, 0x08, 0x09, 0xa1, 0xd8, 0x05,
    0x53, 0xbd, 0xa4, 0x02, 0xff, 0xfe, 0x5b, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
];

const GT_COMPRESSED_LEN: usize = 288;

impl PairingBackend for Blstrs {
    const ID: u8 = 1;
    const NAME: &'static str = "BLS12-381 (blstrs)";
    const SCALAR_LEN: usize = 32;
    const G1_LEN: usize = 48;
    const G2_LEN: usize = 96;
    const GT_LEN: usize = GT_COMPRESSED_LEN;

    type Scalar = BlsScalar;
    type G1 = G1Affine;
    type G2 = G2Affine;
    type Gt = Gt;

    fn random_scalar(rng: &mut dyn CryptoRng) -> BlsScalar {
        loop {
            let s = blstrs::Scalar::random(&mut *rng);
            if !bool::from(s.is_zero()) {
                return BlsScalar(s);
            }
        }
    }

    fn scalar_mul(a: &BlsScalar, b: &BlsScalar) -> BlsScalar {
        BlsScalar(a.0 * b.0)
    }

    fn scalar_invert(a: &BlsScalar) -> Option<BlsScalar> {
        Option::from(a.0.invert()).map(BlsScalar)
    }

    fn g1_base_mul(s: &BlsScalar) -> G1Affine {
        (G1Projective::generator() * s.0).to_affine()
    }

    fn g1_mul(p: &G1Affine, s: &BlsScalar) -> G1Affine {
        (G1Projective::from(p) * s.0).to_affine()
    }

    fn g2_generator() -> G2Affine {
        G2Affine::from(G2Projective::generator())
    }

    fn g2_mul(p: &G2Affine, s: &BlsScalar) -> G2Affine {
        (G2Projective::from(p) * s.0).to_affine()
    }

    fn gt_generator() -> Gt {
        Gt::generator()
    }

    /// Fixed-window (4-bit) exponentiation with exponent blinding.
    ///
    /// blstrs' own `Gt * Scalar` is a textbook double-and-add that branches on every exponent bit,
    /// and blstrs exports no constant-time selection on `GT`. So we (1) blind the exponent:
    /// `s' = s + k·q` with a 64-bit `k` derived from `s` and `x` (no RNG is at hand in decryption),
    /// which leaves `x^{s'} = x^s` but changes the digits from one base to the next, and (2) run a
    /// fixed sequence of 320 squarings and 80 multiplications, one per 4-bit window, by a table
    /// entry (the entry for digit 0 is the identity, multiplied in like any other). The remaining
    /// leak is the secret-indexed table access (16 × 576 bytes, within L1); written by hand because
    /// no maintained crate offers a hardened `GT` exponentiation for blstrs.
    fn gt_pow(x: &Gt, s: &BlsScalar) -> Gt {
        let exponent = blinded_exponent(x, s);
        let mut table = [Gt::identity(); 16];
        for i in 1..16 {
            table[i] = table[i - 1] + x;
        }
        let mut acc = Gt::identity();
        for byte in exponent.iter() {
            for nibble in [byte >> 4, byte & 0x0f] {
                for _ in 0..4 {
                    acc = acc.double();
                }
                acc += &table[usize::from(nibble)];
            }
        }
        acc
    }

    fn gt_mul(x: &Gt, y: &Gt) -> Gt {
        x + y
    }

    fn gt_div(x: &Gt, y: &Gt) -> Gt {
        x - y
    }

    fn gt_random(rng: &mut dyn CryptoRng) -> Gt {
        Gt::random(&mut *rng)
    }

    fn pairing(p: &G1Affine, q: &G2Affine) -> Gt {
        blstrs::pairing(p, q)
    }

    fn scalar_to_bytes(s: &BlsScalar) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.0.to_bytes_le().to_vec())
    }

    fn scalar_from_bytes(b: &[u8]) -> Option<BlsScalar> {
        let b: &[u8; 32] = b.try_into().ok()?;
        let s: blstrs::Scalar = Option::from(blstrs::Scalar::from_bytes_le(b))?;
        (!bool::from(s.is_zero())).then_some(BlsScalar(s))
    }

    fn g1_to_bytes(p: &G1Affine) -> Vec<u8> {
        p.to_compressed().to_vec()
    }

    fn g1_from_bytes(b: &[u8]) -> Option<G1Affine> {
        let b: &[u8; 48] = b.try_into().ok()?;
        // `from_compressed` checks the encoding, the curve equation and the subgroup.
        let p: G1Affine = Option::from(G1Affine::from_compressed(b))?;
        (!bool::from(p.is_identity())).then_some(p)
    }

    fn g2_to_bytes(p: &G2Affine) -> Vec<u8> {
        p.to_compressed().to_vec()
    }

    fn g2_from_bytes(b: &[u8]) -> Option<G2Affine> {
        let b: &[u8; 96] = b.try_into().ok()?;
        let p: G2Affine = Option::from(G2Affine::from_compressed(b))?;
        (!bool::from(p.is_identity())).then_some(p)
    }

    /// The identity has no torus compression (blstrs would panic on it); we write it as 288 zero
    /// bytes, which [`Blstrs::gt_from_bytes`] rejects like every identity. The scheme never
    /// serializes the identity: all exponents are non-zero and `GT` has prime order.
    fn gt_to_bytes(x: &Gt) -> Vec<u8> {
        let mut out = Vec::with_capacity(GT_COMPRESSED_LEN);
        if bool::from(x.is_identity()) || x.write_compressed(&mut out).is_err() {
            return vec![0u8; GT_COMPRESSED_LEN];
        }
        out
    }

    fn gt_from_bytes(b: &[u8]) -> Option<Gt> {
        if b.len() != GT_COMPRESSED_LEN {
            return None;
        }
        // `read_compressed` checks every limb is canonical and the result is in the order-q subgroup
        // (`blst_fp12_in_group`); it cannot panic: the only inversion is of `b + (-1)·w`, never 0.
        let x = Gt::read_compressed(b).ok()?;
        // Canonical: only one encoding per element.
        (!bool::from(x.is_identity()) && Self::gt_to_bytes(&x) == b).then_some(x)
    }
}

/// `s + k·q` as 40 big-endian bytes (at most 255 + 64 bits), `k` = 64 bits of
/// SHA-256("m2msec pre gt blinding" ‖ s ‖ x).
fn blinded_exponent(x: &Gt, s: &BlsScalar) -> Zeroizing<[u8; 40]> {
    let scalar = Zeroizing::new(s.0.to_repr());
    let mut h = crate::hash::Sha256::new();
    h.update(b"m2msec pre gt blinding");
    h.update(scalar.as_ref());
    h.update(&Blstrs::gt_to_bytes(x));
    let digest = h.finalize();
    // k·q + s computed byte-wise (schoolbook, little-endian limbs of 8 bits, no secret branches).
    let mut k = [0u8; 8];
    k.copy_from_slice(&digest[..8]);
    let mut out = Zeroizing::new([0u32; 40]);
    for (i, qb) in ORDER_BE.iter().rev().enumerate() {
        for (j, kb) in k.iter().enumerate() {
            out[i + j] += u32::from(*qb) * u32::from(*kb);
        }
    }
    let s_le = scalar.as_ref(); // blstrs' repr is little-endian
    for (i, sb) in s_le.iter().enumerate() {
        out[i] += u32::from(*sb);
    }
    let mut carry = 0u32;
    let mut be = Zeroizing::new([0u8; 40]);
    for (limb, byte) in out.iter().zip(be.iter_mut().rev()) {
        let v = limb + carry;
        *byte = v.to_le_bytes()[0];
        carry = v >> 8;
    }
    be
}

#[cfg(test)]
pub(super) fn tests_support_blinded(x: &Gt, s: &BlsScalar) -> Zeroizing<[u8; 40]> {
    blinded_exponent(x, s)
}
