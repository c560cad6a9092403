//! k-of-n splitting of a secret: Reed-Solomon erasure coding and Shamir sharing.
//!
//! | scheme        | id | share size          | what k − 1 colluders learn          | cost          |
//! |---------------|----|---------------------|-------------------------------------|---------------|
//! | Reed-Solomon  | 1  | ⌈len / k⌉ (even)    | up to k − 1 fragments of the secret | SIMD, fast    |
//! | Shamir        | 2  | len                 | nothing (information-theoretic)     | O(k·n·len)    |
//!
//! Reed-Solomon is the paper's choice: the secret is cut into k fragments and n − k recovery
//! fragments are added, so any k of the n shares rebuild it. It hides nothing from the holders of
//! fragments — the paper admits it — and that is why Shamir is offered too. Neither scheme detects a
//! corrupted share: in the collab protocol every fragment is signed with a one-time key, so a forged
//! share fails its signature and becomes an erasure.
//!
//! Share indices run from 0 to n − 1 (Shamir evaluates its polynomials at x = index + 1).

use zeroize::{Zeroize, Zeroizing};

use crate::rng::CryptoRng;
use crate::suite::wire_ids;
use crate::{Error, Result};

wire_ids! {
    /// A secret-splitting scheme with its wire identifier.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SharingScheme {
        /// Reed-Solomon erasure coding (`reed-solomon-simd`, GF(2^16) Leopard codes).
        ReedSolomon = 1,
        /// Shamir secret sharing over GF(2^8), byte by byte.
        Shamir = 2,
    }
}

impl SharingScheme {
    /// Length of each share for a secret of `secret_len` bytes split with threshold `k` (k ≥ 1).
    pub fn share_len(self, secret_len: usize, k: u8) -> usize {
        match self {
            Self::ReedSolomon => rs_shard_len(secret_len, k),
            Self::Shamir => secret_len,
        }
    }
}

/// One share of a split secret. Its data is zeroized on drop; `Debug` shows only the index and
/// length, and equality compares the data in constant time.
#[derive(Clone)]
pub struct Share {
    /// Index of the share, 0..n.
    pub index: u8,
    /// The share's bytes.
    pub data: Zeroizing<Vec<u8>>,
}

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && crate::ct::eq(&self.data, &other.data)
    }
}

impl Eq for Share {}

impl core::fmt::Debug for Share {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Share")
            .field("index", &self.index)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// Splits `secret` into `n` shares, any `k` of which rebuild it.
///
/// The secret's length is not inside the shares (Reed-Solomon pads): it travels beside them as a
/// protocol parameter and is given back to [`combine`].
///
/// # Errors
/// [`Error::InvalidParameter`] if the secret is empty, k = 0, n = 0 or k > n.
pub fn split(
    scheme: SharingScheme,
    secret: &[u8],
    k: u8,
    n: u8,
    rng: &mut dyn CryptoRng,
) -> Result<Vec<Share>> {
    check_params(secret.len(), k, n)?;
    let shares = match scheme {
        SharingScheme::ReedSolomon => rs_split(secret, k, n)?,
        SharingScheme::Shamir => shamir_split(secret, k, n, rng),
    };
    for share in &shares {
        crate::keylog::log("share", &share.data);
    }
    Ok(shares)
}

/// Rebuilds a secret of `secret_len` bytes from any `k` distinct shares of `n` (extra shares are
/// ignored).
///
/// # Errors
/// [`Error::InvalidParameter`] for bad k/n/length parameters, a share index ≥ n, a repeated index
/// or a share of the wrong length; [`Error::NotEnoughShares`] if fewer than k shares are given.
pub fn combine(
    scheme: SharingScheme,
    secret_len: usize,
    k: u8,
    n: u8,
    shares: &[Share],
) -> Result<Zeroizing<Vec<u8>>> {
    check_params(secret_len, k, n)?;
    let mut seen = [false; 256];
    for share in shares {
        if share.index >= n {
            return Err(Error::InvalidParameter("share index out of range"));
        }
        if core::mem::replace(&mut seen[usize::from(share.index)], true) {
            return Err(Error::InvalidParameter("duplicate share index"));
        }
        if share.data.len() != scheme.share_len(secret_len, k) {
            return Err(Error::InvalidParameter("share length"));
        }
    }
    if shares.len() < usize::from(k) {
        return Err(Error::NotEnoughShares {
            have: shares.len(),
            need: usize::from(k),
        });
    }
    let chosen = &shares[..usize::from(k)];
    match scheme {
        SharingScheme::ReedSolomon => rs_combine(secret_len, k, n, chosen),
        SharingScheme::Shamir => Ok(shamir_combine(secret_len, chosen)),
    }
}

fn check_params(secret_len: usize, k: u8, n: u8) -> Result<()> {
    if secret_len == 0 {
        return Err(Error::InvalidParameter("empty secret"));
    }
    if k == 0 || n == 0 {
        return Err(Error::InvalidParameter("k and n must be at least 1"));
    }
    if k > n {
        return Err(Error::InvalidParameter("k > n"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reed-Solomon via reed-solomon-simd.

/// Shard length: ⌈len / k⌉ rounded up to even, because reed-solomon-simd works on 16-bit symbols.
fn rs_shard_len(secret_len: usize, k: u8) -> usize {
    let per = secret_len.div_ceil(usize::from(k.max(1)));
    (per + (per % 2)).max(2)
}

fn rs_split(secret: &[u8], k: u8, n: u8) -> Result<Vec<Share>> {
    let shard_len = rs_shard_len(secret.len(), k);
    let mut padded = Zeroizing::new(vec![0u8; shard_len * usize::from(k)]);
    padded[..secret.len()].copy_from_slice(secret);
    let originals: Vec<&[u8]> = padded.chunks_exact(shard_len).collect();
    let mut shares: Vec<Share> = originals
        .iter()
        .zip(0u8..)
        .map(|(data, index)| Share {
            index,
            data: Zeroizing::new(data.to_vec()),
        })
        .collect();
    let recovery_count = usize::from(n - k);
    if recovery_count > 0 {
        let recovery = reed_solomon_simd::encode(usize::from(k), recovery_count, &originals)
            .map_err(|_| Error::InvalidParameter("Reed-Solomon parameters"))?;
        shares.extend(recovery.into_iter().zip(k..n).map(|(data, index)| Share {
            index,
            data: Zeroizing::new(data),
        }));
    }
    Ok(shares)
}

fn rs_combine(secret_len: usize, k: u8, n: u8, shares: &[Share]) -> Result<Zeroizing<Vec<u8>>> {
    let shard_len = rs_shard_len(secret_len, k);
    let mut originals: Vec<Option<&[u8]>> = vec![None; usize::from(k)];
    let mut recovery = Vec::new();
    for share in shares {
        match originals.get_mut(usize::from(share.index)) {
            Some(slot) => *slot = Some(&share.data[..]),
            None => recovery.push((usize::from(share.index - k), &share.data[..])),
        }
    }
    let restored = if recovery.is_empty() {
        Default::default()
    } else {
        let present = originals
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)));
        reed_solomon_simd::decode(usize::from(k), usize::from(n - k), present, recovery)
            .map_err(|_| Error::InvalidParameter("Reed-Solomon shares"))?
    };
    let mut out = Zeroizing::new(Vec::with_capacity(shard_len * usize::from(k)));
    for (i, slot) in originals.iter().enumerate() {
        let shard = match slot {
            Some(data) => *data,
            None => restored
                .get(&i)
                .map(Vec::as_slice)
                .ok_or(Error::NotEnoughShares {
                    have: shares.len(),
                    need: usize::from(k),
                })?,
        };
        out.extend_from_slice(shard);
    }
    let mut restored = restored;
    restored.values_mut().for_each(Zeroize::zeroize);
    out.truncate(secret_len);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Shamir over GF(2^8).
//
// Written by hand: `vsss-rs` 6 (the release with byte-oriented GF(256) sharing) is on the
// `rand_core` 0.10 generation, and its 5.x line pulls `elliptic-curve` and prime-field machinery
// for what is forty lines here. The field arithmetic below is table-free and branch-free on secret
// data (no lookup tables indexed by secrets, no secret-dependent branches), so share values and
// coefficients never reach an address or a branch. Field: GF(2^8) with the AES polynomial
// x^8 + x^4 + x^3 + x + 1.

fn shamir_split(secret: &[u8], k: u8, n: u8, rng: &mut dyn CryptoRng) -> Vec<Share> {
    let degree = usize::from(k - 1);
    let mut coeffs = Zeroizing::new(vec![0u8; degree]);
    let mut shares: Vec<Share> = (0..n)
        .map(|index| Share {
            index,
            data: Zeroizing::new(Vec::with_capacity(secret.len())),
        })
        .collect();
    for &s in secret {
        rng.fill_bytes(&mut coeffs);
        for share in &mut shares {
            let x = share.index + 1;
            // Horner: f(x) = s + c1·x + ... + c_{k-1}·x^{k-1}.
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = gf_mul(y, x) ^ c;
            }
            share.data.push(gf_mul(y, x) ^ s);
        }
    }
    shares
}

fn shamir_combine(secret_len: usize, shares: &[Share]) -> Zeroizing<Vec<u8>> {
    // Lagrange basis at 0: l_j = Π_{m ≠ j} x_m / (x_m − x_j); subtraction is XOR in GF(2^8). The
    // x are public and distinct (checked by `combine`), so every denominator is non-zero.
    let xs: Vec<u8> = shares.iter().map(|s| s.index + 1).collect();
    let basis: Vec<u8> = xs
        .iter()
        .enumerate()
        .map(|(j, &xj)| {
            let (mut num, mut den) = (1u8, 1u8);
            for (m, &xm) in xs.iter().enumerate() {
                if m != j {
                    num = gf_mul(num, xm);
                    den = gf_mul(den, xm ^ xj);
                }
            }
            gf_mul(num, gf_inv(den))
        })
        .collect();
    let mut out = Zeroizing::new(vec![0u8; secret_len]);
    for (share, &l) in shares.iter().zip(&basis) {
        for (o, &y) in out.iter_mut().zip(share.data.iter()) {
            *o ^= gf_mul(y, l);
        }
    }
    out
}

/// Multiplication in GF(2^8) mod x^8 + x^4 + x^3 + x + 1, in constant time: eight rounds of
/// shift-and-add with masks instead of branches.
fn gf_mul(a: u8, b: u8) -> u8 {
    let (mut a, mut b, mut p) = (a, b, 0u8);
    for _ in 0..8 {
        p ^= a & (b & 1).wrapping_neg();
        let carry = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    p
}

/// Inverse in GF(2^8) as a^254 (Fermat), constant time; maps 0 to 0.
fn gf_inv(a: u8) -> u8 {
    // a^254 = a^(2+4+8+16+32+64+128).
    let mut result = 1u8;
    let mut power = a;
    for _ in 1..8 {
        power = gf_mul(power, power);
        result = gf_mul(result, power);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn gf_arith() {
        // FIPS 197 section 4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
        assert_eq!(gf_mul(0x57, 0x83), 0xc1);
        assert_eq!(gf_mul(0x57, 0x13), 0xfe);
        for a in 1..=255u8 {
            assert_eq!(gf_mul(a, gf_inv(a)), 1, "{a}");
        }
        assert_eq!(gf_inv(0), 0);
    }

    #[test]
    fn every_k_subset_rebuilds() {
        let mut rng = SeededRng::from_seed_u64(5);
        for scheme in SharingScheme::ALL {
            for (k, n) in [(1u8, 1u8), (1, 3), (2, 3), (3, 3), (3, 5), (4, 7)] {
                for len in [1usize, 2, 5, 32, 33] {
                    let secret: Vec<u8> =
                        (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
                    let shares = split(scheme, &secret, k, n, &mut rng).unwrap();
                    assert_eq!(shares.len(), usize::from(n));
                    // All n rotations of a k-window, plus reversed order.
                    for start in 0..usize::from(n) {
                        let mut subset: Vec<Share> = (0..usize::from(k))
                            .map(|o| shares[(start + o) % usize::from(n)].clone())
                            .collect();
                        let got = combine(scheme, len, k, n, &subset).unwrap();
                        assert_eq!(&got[..], &secret[..], "{scheme:?} k={k} n={n} len={len}");
                        subset.reverse();
                        let got = combine(scheme, len, k, n, &subset).unwrap();
                        assert_eq!(&got[..], &secret[..]);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_inputs_rejected() {
        let mut rng = SeededRng::from_seed_u64(6);
        for scheme in SharingScheme::ALL {
            assert!(split(scheme, b"", 1, 1, &mut rng).is_err());
            assert!(split(scheme, b"x", 0, 1, &mut rng).is_err());
            assert!(split(scheme, b"x", 3, 2, &mut rng).is_err());
            let shares = split(scheme, b"secret", 2, 4, &mut rng).unwrap();
            assert_eq!(
                combine(scheme, 6, 2, 4, &shares[..1]),
                Err(Error::NotEnoughShares { have: 1, need: 2 })
            );
            let dup = [shares[1].clone(), shares[1].clone()];
            assert!(matches!(
                combine(scheme, 6, 2, 4, &dup),
                Err(Error::InvalidParameter(_))
            ));
            let mut out_of_range = shares[2].clone();
            out_of_range.index = 4;
            let s = [shares[0].clone(), out_of_range];
            assert!(matches!(
                combine(scheme, 6, 2, 4, &s),
                Err(Error::InvalidParameter(_))
            ));
            let mut short = shares[2].clone();
            short.data.pop();
            let s = [shares[0].clone(), short];
            assert!(matches!(
                combine(scheme, 6, 2, 4, &s),
                Err(Error::InvalidParameter(_))
            ));
            assert!(!format!("{:?}", shares[0]).contains("data:"));
        }
    }

    #[test]
    fn shamir_single_share_is_uniform_looking() {
        // With k = 2, one share of a constant secret must vary with the randomness.
        let mut rng = SeededRng::from_seed_u64(9);
        let a = split(SharingScheme::Shamir, &[0u8; 16], 2, 2, &mut rng).unwrap();
        let b = split(SharingScheme::Shamir, &[0u8; 16], 2, 2, &mut rng).unwrap();
        assert_ne!(a[0].data, b[0].data);
        assert_ne!(&a[0].data[..], &[0u8; 16]);
    }
}
