//! The proxy signature of paper 003 over a prime-order group: the warrant equations (1)–(4),
//! the alternative proxy key (5)/(10), the verification key (8)/(13), and the signature itself in
//! the paper's ElGamal form (6)–(7), (9), or in the Schnorr and DSA forms the paper compares.

use m2msec_crypto::group::{Element, Group, Scalar};
use m2msec_crypto::rng::CryptoRng;

use super::{Error, Variant};

/// e = h(m ‖ K), equations (1) and (3).
pub(super) fn warrant_hash(group: &Group, warrant: &[u8], k: &Element) -> Scalar {
    group.hash_to_scalar(b"m2msec e2sec v1 warrant", &[warrant, &k.to_bytes()])
}

/// σ = e·x_EPC + k mod q (equations (1) and (3)).
pub(super) fn issue(
    group: &Group,
    e: &Scalar,
    x_epc: &Scalar,
    k: &Scalar,
) -> Result<Scalar, Error> {
    Ok(group.scalar_add(&group.scalar_mul(e, x_epc)?, k)?)
}

/// g^σ = v_EPC^e · K (equations (2) and (4)).
pub(super) fn check_warrant(
    group: &Group,
    sigma: &Scalar,
    v_epc: &Element,
    e: &Scalar,
    k: &Element,
) -> Result<(), Error> {
    let lhs = group.exp_generator(sigma)?;
    let rhs = group.mul(&group.exp(v_epc, e)?, k)?;
    if lhs == rhs {
        Ok(())
    } else {
        Err(Error::Authentication)
    }
}

/// σ' = σ + x·e mod q (equations (5) and (10)).
pub(super) fn alternative_key(
    group: &Group,
    sigma: &Scalar,
    x: &Scalar,
    e: &Scalar,
) -> Result<Scalar, Error> {
    Ok(group.scalar_add(sigma, &group.scalar_mul(x, e)?)?)
}

/// v' = (v_EPC · v)^e · K mod p (equations (8) and (13)): the public half of σ'.
pub(super) fn verification_key(
    group: &Group,
    v_epc: &Element,
    v: &Element,
    e: &Scalar,
    k: &Element,
) -> Result<Element, Error> {
    Ok(group.mul(&group.exp(&group.mul(v_epc, v)?, e)?, k)?)
}

/// h(M ‖ r) of equations (7), (9), (12) and (14); `message` is M (and g^ab where the paper binds
/// it).
fn challenge(group: &Group, message: &[&[u8]], r: &[u8]) -> Scalar {
    let mut parts = message.to_vec();
    parts.push(r);
    group.hash_to_scalar(b"m2msec e2sec v1 signature", &parts)
}

/// A signature: `r` (an element, or a scalar for DSA) and `s`, in canonical encodings.
pub(super) struct Signature {
    pub(super) r: Vec<u8>,
    pub(super) s: Vec<u8>,
}

/// Signs `message` with the alternative proxy key σ'.
pub(super) fn sign(
    variant: Variant,
    group: &Group,
    key: &Scalar,
    message: &[&[u8]],
    rng: &mut dyn CryptoRng,
) -> Result<Signature, Error> {
    let l = group.random_scalar(rng);
    let r = group.exp_generator(&l)?;
    match variant {
        Variant::ElGamal => {
            // (6)–(7): r = g^ℓ, s = ℓ⁻¹ (h(M ‖ r) − σ'·r̄), r̄ the scalar image of r.
            let h = challenge(group, message, &r.to_bytes());
            let r_bar = group.element_to_scalar(&r)?;
            let s = group.scalar_mul(
                &group.scalar_invert(&l)?,
                &group.scalar_sub(&h, &group.scalar_mul(key, &r_bar)?)?,
            )?;
            Ok(Signature {
                r: r.to_bytes(),
                s: s.to_bytes().to_vec(),
            })
        }
        Variant::Schnorr => {
            // R = g^ℓ, c = h(M ‖ R), s = ℓ + σ'·c.
            let c = challenge(group, message, &r.to_bytes());
            let s = group.scalar_add(&l, &group.scalar_mul(key, &c)?)?;
            Ok(Signature {
                r: r.to_bytes(),
                s: s.to_bytes().to_vec(),
            })
        }
        Variant::Dsa => {
            // r̄ = (g^ℓ mod p) mod q, s = ℓ⁻¹ (h(M) + σ'·r̄).
            let h = challenge(group, message, &[]);
            let r_bar = group.element_to_scalar(&r)?;
            let s = group.scalar_mul(
                &group.scalar_invert(&l)?,
                &group.scalar_add(&h, &group.scalar_mul(key, &r_bar)?)?,
            )?;
            Ok(Signature {
                r: r_bar.to_bytes().to_vec(),
                s: s.to_bytes().to_vec(),
            })
        }
    }
}

/// Verifies a signature against the verification key v' (equations (9) and (14) for ElGamal).
pub(super) fn verify(
    variant: Variant,
    group: &Group,
    v_prime: &Element,
    message: &[&[u8]],
    sig: &Signature,
) -> Result<(), Error> {
    let s = group.scalar_from_bytes(&sig.s)?;
    let ok = match variant {
        Variant::ElGamal => {
            // v'^r̄ · r^s = g^h(M ‖ r).
            let r = group.element_from_bytes(&sig.r)?;
            let r_bar = group.element_to_scalar(&r)?;
            let h = challenge(group, message, &sig.r);
            let lhs = group.mul(&group.exp(v_prime, &r_bar)?, &group.exp(&r, &s)?)?;
            lhs == group.exp_generator(&h)?
        }
        Variant::Schnorr => {
            // g^s = R · v'^c.
            let r = group.element_from_bytes(&sig.r)?;
            let c = challenge(group, message, &sig.r);
            group.exp_generator(&s)? == group.mul(&r, &group.exp(v_prime, &c)?)?
        }
        Variant::Dsa => {
            // w = s⁻¹, u1 = h·w, u2 = r̄·w, (g^u1 · v'^u2 mod p) mod q = r̄.
            let r_bar = group.scalar_from_bytes(&sig.r)?;
            if s.is_zero() || r_bar.is_zero() {
                return Err(Error::Authentication);
            }
            let h = challenge(group, message, &[]);
            let w = group.scalar_invert(&s)?;
            let u1 = group.scalar_mul(&h, &w)?;
            let u2 = group.scalar_mul(&r_bar, &w)?;
            let point = group.mul(&group.exp_generator(&u1)?, &group.exp(v_prime, &u2)?)?;
            group.element_to_scalar(&point)? == r_bar
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Authentication)
    }
}
