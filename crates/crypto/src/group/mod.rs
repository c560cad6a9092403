//! Prime-order groups for the discrete-logarithm protocols (sga's K = g^(Ri·Rs·Rj), e2sec's
//! Schnorr / ElGamal / DSA-style proxy signatures), selected at run time by a wire identifier.
//!
//! | group            | id | element (bytes)   | scalar (bytes) | q bits | source                          |
//! |------------------|----|-------------------|----------------|--------|---------------------------------|
//! | MODP-2048        | 1  | 256, big-endian   | 256, big-endian | 2047  | RFC 3526 §3 (group 14), g = 2, q = (p−1)/2 |
//! | DSA-1024/160     | 2  | 128, big-endian   | 20, big-endian | 160    | RFC 5114 §2.1 — **legacy**, only to reproduce the e2sec paper's cost table |
//! | DSA-2048/256     | 3  | 256, big-endian   | 32, big-endian | 256    | RFC 5114 §2.3                    |
//! | Ristretto255     | 4  | 32 (RFC 9496 §4.3.2) | 32, little-endian | 252 | RFC 9496 via `curve25519-dalek` 4 |
//!
//! For MODP-2048 we work in the subgroup of quadratic residues, of prime order q = (p−1)/2 (p is a
//! safe prime and p ≡ 7 mod 8, so g = 2 is a residue and generates it). The parameters are fixed
//! constants below; `vectors/crypto/group-*.txt` carry the same values with their source, and
//! `tests/group.rs` checks the two agree and that g^q = 1, q | p − 1.
//!
//! # Shape
//! A [`Group`] is a small handle on one of these groups ([`Group::new`] from a [`GroupId`], which
//! comes from a config file or the wire). Its [`Element`]s and [`Scalar`]s remember their group;
//! handing an operation a value of another group is [`Error::InvalidParameter`] ("group mismatch").
//! Inside, one private trait (`FfOps`) covers the three finite-field groups, written once over
//! `crypto-bigint`'s Montgomery arithmetic; Ristretto255 is `curve25519-dalek`.
//!
//! # Encodings (all decoders are total)
//! - finite-field elements: fixed-length big-endian integers in \[2, p − 1\] with x^q = 1 (one
//!   exponentiation per decode, counted as a membership check);
//! - finite-field scalars: fixed-length big-endian integers < q;
//! - Ristretto255 elements: the canonical 32-byte encoding; scalars: canonical 32-byte little-endian
//!   (< ℓ), as in RFC 9496 and `curve25519-dalek`.
//!
//! [`Group::element_from_bytes`] is the decoder for values received from a peer and rejects the
//! identity as well (a DH share or commitment equal to 1 is never honest), so the identity, though it
//! has an encoding, does not round-trip through it. Scalars may be zero.
//!
//! # Counting operations
//! The papers report costs as counts of T_E (exponentiations), T_M (multiplications), T_H (hashes)
//! and T_A (other arithmetic). Every [`Group`] keeps an [`OpTally`] that its operations increment;
//! [`Group::tally`] reads it and [`Group::take_tally`] reads and resets it, so each role of a
//! protocol keeps its own `Group` and reports its own counts. The mapping is in [`OpTally`].
//!
//! # Constant time
//! Exponentiation, group multiplication and scalar arithmetic are constant-time in the secret values:
//! `crypto-bigint`'s Montgomery `DynResidue` with `pow_bounded_exp` over the public bit length of q
//! (every exponent is reduced mod q first), inversion mod q as a^(q−2); `curve25519-dalek`'s scalar
//! multiplication and scalar inversion. Not constant-time, all on public data or with no secret
//! dependence: decoding and its range / membership checks, rejection sampling in
//! [`Group::random_scalar`] (the number of retries is independent of the value returned), and
//! comparisons of elements.

use core::cell::Cell;
use core::fmt;
use std::sync::OnceLock;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Limb, NonZero, RandomMod, U1024, U2048, Uint, Zero as _};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::Identity as _;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, ZeroizeOnDrop, Zeroizing};

use crate::hash::debug_public;
use crate::rng::CryptoRng;
use crate::{Error, Result};

type DalekScalar = curve25519_dalek::scalar::Scalar;

mod ff;

use crate::suite::wire_ids;
use ff::ff;

wire_ids! {
    /// A prime-order group with its wire identifier.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum GroupId {
        /// The 2048-bit MODP group of RFC 3526 (IKE group 14), subgroup of quadratic residues.
        Modp2048 = 1,
        /// RFC 5114 §2.1, 1024-bit p with a 160-bit prime-order subgroup. **Legacy** (about 80-bit
        /// security): only to reproduce the e2sec paper's 1024-bit cost table.
        Dsa1024_160 = 2,
        /// RFC 5114 §2.3, 2048-bit p with a 256-bit prime-order subgroup.
        Dsa2048_256 = 3,
        /// Ristretto255 (RFC 9496) over Curve25519.
        Ristretto255 = 4,
    }
}

impl GroupId {
    /// A human-readable name, for logs and benchmark labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Modp2048 => "MODP-2048",
            Self::Dsa1024_160 => "DSA-1024/160",
            Self::Dsa2048_256 => "DSA-2048/256",
            Self::Ristretto255 => "Ristretto255",
        }
    }

    /// Length of an encoded element in bytes.
    pub const fn element_len(self) -> usize {
        match self {
            Self::Modp2048 | Self::Dsa2048_256 => 256,
            Self::Dsa1024_160 => 128,
            Self::Ristretto255 => 32,
        }
    }

    /// Length of an encoded scalar in bytes.
    pub const fn scalar_len(self) -> usize {
        match self {
            Self::Modp2048 => 256,
            Self::Dsa1024_160 => 20,
            Self::Dsa2048_256 | Self::Ristretto255 => 32,
        }
    }

    /// Whether the group is below today's security level (kept only to reproduce published costs).
    pub const fn is_legacy(self) -> bool {
        matches!(self, Self::Dsa1024_160)
    }
}

/// Counts of group operations, in the papers' cost categories.
///
/// | field   | paper | incremented by                                                              |
/// |---------|-------|-----------------------------------------------------------------------------|
/// | `exp`   | T_E   | [`Group::exp`], [`Group::exp_generator`]                                      |
/// | `mul`   | T_M   | [`Group::mul`] (the group operation) and [`Group::scalar_mul`] (mod q) — the e2sec paper counts σ' = σ + x·e as T_M + T_A |
/// | `hash`  | T_H   | [`Group::hash_to_scalar`]                                                     |
/// | `arith` | T_A   | [`Group::scalar_add`], [`Group::scalar_sub`], [`Group::scalar_neg`], [`Group::element_to_scalar`] |
/// | `inv`   | —     | [`Group::scalar_invert`], [`Group::element_invert`] (no column in the papers; report it beside them) |
/// | `check` | —     | membership tests in [`Group::element_from_bytes`] (one exponentiation each in the finite-field groups) |
///
/// Decoding scalars, encoding, drawing random scalars and reading the generator are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OpTally {
    /// Exponentiations (T_E).
    pub exp: u64,
    /// Multiplications: group operations and scalar multiplications (T_M).
    pub mul: u64,
    /// Hashes to a scalar (T_H).
    pub hash: u64,
    /// Other scalar arithmetic: additions, subtractions, negations, element-to-scalar (T_A).
    pub arith: u64,
    /// Inversions of scalars or elements.
    pub inv: u64,
    /// Membership checks of decoded elements.
    pub check: u64,
}

impl core::ops::Add for OpTally {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        Self {
            exp: self.exp + rhs.exp,
            mul: self.mul + rhs.mul,
            hash: self.hash + rhs.hash,
            arith: self.arith + rhs.arith,
            inv: self.inv + rhs.inv,
            check: self.check + rhs.check,
        }
    }
}

impl core::ops::AddAssign for OpTally {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl core::ops::Sub for OpTally {
    type Output = Self;

    /// Saturating difference, for "operations since the last snapshot".
    fn sub(self, rhs: Self) -> Self {
        Self {
            exp: self.exp.saturating_sub(rhs.exp),
            mul: self.mul.saturating_sub(rhs.mul),
            hash: self.hash.saturating_sub(rhs.hash),
            arith: self.arith.saturating_sub(rhs.arith),
            inv: self.inv.saturating_sub(rhs.inv),
            check: self.check.saturating_sub(rhs.check),
        }
    }
}

impl fmt::Display for OpTally {
    /// The paper's notation, e.g. `4TE+3TM+2TH+1TA`, then inversions and checks if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}TE+{}TM+{}TH+{}TA",
            self.exp, self.mul, self.hash, self.arith
        )?;
        if self.inv != 0 {
            write!(f, " +{} inv", self.inv)?;
        }
        if self.check != 0 {
            write!(f, " +{} check", self.check)?;
        }
        Ok(())
    }
}

/// A group element: a public value. `Debug` shows the group and a short fingerprint.
#[derive(Clone)]
pub struct Element {
    group: GroupId,
    repr: ElementRepr,
}

#[derive(Clone)]
enum ElementRepr {
    /// Canonical big-endian bytes, `element_len` long.
    Ff(Vec<u8>),
    Ristretto(RistrettoPoint),
}

impl Element {
    /// The group this element belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The canonical encoding (`self.group().element_len()` bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.repr {
            ElementRepr::Ff(bytes) => bytes.clone(),
            ElementRepr::Ristretto(point) => point.compress().to_bytes().to_vec(),
        }
    }

    /// Whether this is the neutral element.
    pub fn is_identity(&self) -> bool {
        match &self.repr {
            ElementRepr::Ff(bytes) => {
                bytes.last() == Some(&1) && bytes.iter().rev().skip(1).all(|&b| b == 0)
            }
            ElementRepr::Ristretto(point) => *point == RistrettoPoint::identity(),
        }
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group
            && match (&self.repr, &other.repr) {
                (ElementRepr::Ff(a), ElementRepr::Ff(b)) => a == b,
                (ElementRepr::Ristretto(a), ElementRepr::Ristretto(b)) => a == b,
                _ => false,
            }
    }
}

impl Eq for Element {}

impl core::hash::Hash for Element {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.group.hash(state);
        self.to_bytes().hash(state);
    }
}

impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_public(f, "Element", ("group", &self.group), &self.to_bytes())
    }
}

/// A scalar modulo the group order q. Often secret (a private key, a nonce): zeroized on drop,
/// compared in constant time, and `Debug` shows only the group.
#[derive(Clone)]
pub struct Scalar {
    group: GroupId,
    repr: ScalarRepr,
}

#[derive(Clone)]
enum ScalarRepr {
    /// Canonical big-endian bytes, `scalar_len` long.
    Ff(Zeroizing<Vec<u8>>),
    Ristretto(Zeroizing<DalekScalar>),
}

impl ZeroizeOnDrop for Scalar {}

impl Scalar {
    /// The group this scalar belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The canonical encoding (`self.group().scalar_len()` bytes). Secret if the scalar is.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        match &self.repr {
            ScalarRepr::Ff(bytes) => bytes.clone(),
            ScalarRepr::Ristretto(s) => Zeroizing::new(s.to_bytes().to_vec()),
        }
    }

    /// Whether the scalar is zero (constant time in the value).
    pub fn is_zero(&self) -> bool {
        match &self.repr {
            ScalarRepr::Ff(bytes) => bool::from(bytes.ct_eq(&vec![0u8; bytes.len()])),
            ScalarRepr::Ristretto(s) => bool::from(s.ct_eq(&DalekScalar::ZERO)),
        }
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group && crate::ct::eq(&self.to_bytes(), &other.to_bytes())
    }
}

impl Eq for Scalar {}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scalar")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// A handle on one prime-order group, with the counters of the operations done through it.
///
/// Cheap to create (the parameters are shared statics). Not `Sync` (the counters are a `Cell`):
/// give each role or thread its own. `Clone` gives a handle on the same group with a zero tally.
pub struct Group {
    id: GroupId,
    tally: Cell<OpTally>,
}

impl Clone for Group {
    fn clone(&self) -> Self {
        Self::new(self.id)
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.id)
            .field("tally", &self.tally.get())
            .finish()
    }
}

const HASH_TO_SCALAR_SALT: &[u8] = b"m2msec/group/hash_to_scalar/v1";

impl Group {
    /// A handle on group `id` with a zero tally.
    pub fn new(id: GroupId) -> Self {
        Self {
            id,
            tally: Cell::new(OpTally::default()),
        }
    }

    /// Which group this is.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The operations counted so far.
    pub fn tally(&self) -> OpTally {
        self.tally.get()
    }

    /// The operations counted so far; resets the counters to zero.
    pub fn take_tally(&self) -> OpTally {
        self.tally.replace(OpTally::default())
    }

    /// The fixed generator g (for Ristretto255, the RFC 9496 generator).
    pub fn generator(&self) -> Element {
        match ff(self.id) {
            Some(ff) => self.ff_element(ff.generator()),
            None => self.ristretto_element(curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT),
        }
    }

    /// The neutral element (1, or the Ristretto identity).
    pub fn identity(&self) -> Element {
        match ff(self.id) {
            Some(ff) => self.ff_element(ff.one()),
            None => self.ristretto_element(RistrettoPoint::identity()),
        }
    }

    /// The group order q, big-endian, `scalar_len` bytes.
    pub fn order_be_bytes(&self) -> Vec<u8> {
        match ff(self.id) {
            Some(ff) => ff.order(),
            None => {
                // ℓ = 2^252 + 27742317777372353535851937790883648493 (RFC 9496 §4.1).
                let mut l = [
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde,
                    0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                l.reverse();
                l.to_vec()
            }
        }
    }

    /// The modulus p of a finite-field group, big-endian, `element_len` bytes; `None` for
    /// Ristretto255.
    pub fn modulus_be_bytes(&self) -> Option<Vec<u8>> {
        ff(self.id).map(|ff| ff.modulus())
    }

    /// A uniformly random scalar in \[1, q − 1\].
    pub fn random_scalar(&self, rng: &mut dyn CryptoRng) -> Scalar {
        let scalar = match ff(self.id) {
            Some(ff) => self.ff_scalar(ff.random_scalar(rng)),
            None => {
                let mut rng = rng;
                loop {
                    let s = DalekScalar::random(&mut rng);
                    if s != DalekScalar::ZERO {
                        break self.ristretto_scalar(s);
                    }
                }
            }
        };
        if crate::keylog::enabled() {
            crate::keylog::log("group scalar", &scalar.to_bytes());
        }
        scalar
    }

    /// The scalar n mod q (for tests, small constants and counters).
    pub fn scalar_from_u64(&self, n: u64) -> Scalar {
        match ff(self.id) {
            Some(ff) => self.ff_scalar(ff.scalar_from_u64(n)),
            None => self.ristretto_scalar(DalekScalar::from(n)),
        }
    }

    /// Decodes a canonical scalar: exactly `scalar_len` bytes, value < q (zero is allowed).
    ///
    /// # Errors
    /// [`Error::Decode`] on a wrong length or a value ≥ q.
    pub fn scalar_from_bytes(&self, bytes: &[u8]) -> Result<Scalar> {
        const WHAT: Error = Error::Decode {
            what: "group scalar",
        };
        if bytes.len() != self.id.scalar_len() {
            return Err(WHAT);
        }
        match ff(self.id) {
            Some(ff) => {
                if ff.scalar_in_range(bytes) {
                    Ok(self.ff_scalar(Zeroizing::new(bytes.to_vec())))
                } else {
                    Err(WHAT)
                }
            }
            None => {
                let mut arr = Zeroizing::new([0u8; 32]);
                arr.copy_from_slice(bytes);
                Option::<DalekScalar>::from(DalekScalar::from_canonical_bytes(*arr))
                    .map(|s| self.ristretto_scalar(s))
                    .ok_or(WHAT)
            }
        }
    }

    /// Decodes an element received from a peer: exactly `element_len` bytes, canonical, a member
    /// of the prime-order group, and not the identity. Counts one membership check.
    ///
    /// # Errors
    /// [`Error::Decode`] otherwise.
    pub fn element_from_bytes(&self, bytes: &[u8]) -> Result<Element> {
        const WHAT: Error = Error::Decode {
            what: "group element",
        };
        if bytes.len() != self.id.element_len() {
            return Err(WHAT);
        }
        self.count(|t| t.check += 1);
        let element = match ff(self.id) {
            Some(ff) => {
                if !ff.is_member(bytes) {
                    return Err(WHAT);
                }
                self.ff_element(bytes.to_vec())
            }
            None => {
                let point = CompressedRistretto::from_slice(bytes)
                    .ok()
                    .and_then(|c| c.decompress())
                    .ok_or(WHAT)?;
                self.ristretto_element(point)
            }
        };
        if element.is_identity() {
            return Err(WHAT);
        }
        Ok(element)
    }

    /// base^k. Counts one exponentiation (T_E).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `base` or `k` belongs to another group.
    pub fn exp(&self, base: &Element, k: &Scalar) -> Result<Element> {
        self.same(base.group)?;
        self.same(k.group)?;
        self.count(|t| t.exp += 1);
        match (&base.repr, &k.repr, ff(self.id)) {
            (ElementRepr::Ff(b), ScalarRepr::Ff(k), Some(ff)) => Ok(self.ff_element(ff.exp(b, k))),
            (ElementRepr::Ristretto(b), ScalarRepr::Ristretto(k), None) => {
                Ok(self.ristretto_element(b * **k))
            }
            _ => Err(MISMATCH),
        }
    }

    /// g^k for the fixed generator (Ristretto255 uses a precomputed table). Counts one T_E.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `k` belongs to another group.
    pub fn exp_generator(&self, k: &Scalar) -> Result<Element> {
        self.same(k.group)?;
        match (&k.repr, ff(self.id)) {
            (ScalarRepr::Ff(_), Some(_)) => self.exp(&self.generator(), k),
            (ScalarRepr::Ristretto(k), None) => {
                self.count(|t| t.exp += 1);
                Ok(self.ristretto_element(RistrettoPoint::mul_base(k)))
            }
            _ => Err(MISMATCH),
        }
    }

    /// The group operation a·b (point addition for Ristretto255). Counts one T_M.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an operand belongs to another group.
    pub fn mul(&self, a: &Element, b: &Element) -> Result<Element> {
        self.same(a.group)?;
        self.same(b.group)?;
        self.count(|t| t.mul += 1);
        match (&a.repr, &b.repr, ff(self.id)) {
            (ElementRepr::Ff(a), ElementRepr::Ff(b), Some(ff)) => Ok(self.ff_element(ff.mul(a, b))),
            (ElementRepr::Ristretto(a), ElementRepr::Ristretto(b), None) => {
                Ok(self.ristretto_element(a + b))
            }
            _ => Err(MISMATCH),
        }
    }

    /// The inverse a^−1 (negation for Ristretto255). Counts one inversion.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `a` belongs to another group.
    pub fn element_invert(&self, a: &Element) -> Result<Element> {
        self.same(a.group)?;
        self.count(|t| t.inv += 1);
        match (&a.repr, ff(self.id)) {
            (ElementRepr::Ff(a), Some(ff)) => Ok(self.ff_element(ff.element_invert(a))),
            (ElementRepr::Ristretto(a), None) => Ok(self.ristretto_element(-a)),
            _ => Err(MISMATCH),
        }
    }

    /// a + b mod q. Counts one T_A.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an operand belongs to another group.
    pub fn scalar_add(&self, a: &Scalar, b: &Scalar) -> Result<Scalar> {
        self.scalar_op2(a, b, ScalarOp::Add)
    }

    /// a − b mod q. Counts one T_A.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an operand belongs to another group.
    pub fn scalar_sub(&self, a: &Scalar, b: &Scalar) -> Result<Scalar> {
        self.scalar_op2(a, b, ScalarOp::Sub)
    }

    /// a · b mod q. Counts one T_M.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if an operand belongs to another group.
    pub fn scalar_mul(&self, a: &Scalar, b: &Scalar) -> Result<Scalar> {
        self.scalar_op2(a, b, ScalarOp::Mul)
    }

    /// −a mod q. Counts one T_A.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `a` belongs to another group.
    pub fn scalar_neg(&self, a: &Scalar) -> Result<Scalar> {
        let zero = self.scalar_from_u64(0);
        self.scalar_op2(&zero, a, ScalarOp::Sub)
    }

    /// a^−1 mod q. Counts one inversion.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `a` is zero or belongs to another group.
    pub fn scalar_invert(&self, a: &Scalar) -> Result<Scalar> {
        self.same(a.group)?;
        if a.is_zero() {
            return Err(Error::InvalidParameter("inverse of a zero scalar"));
        }
        self.count(|t| t.inv += 1);
        match (&a.repr, ff(self.id)) {
            (ScalarRepr::Ff(a), Some(ff)) => Ok(self.ff_scalar(ff.scalar_invert(a))),
            (ScalarRepr::Ristretto(a), None) => Ok(self.ristretto_scalar(a.invert())),
            _ => Err(MISMATCH),
        }
    }

    /// Hashes `parts` under `domain` to a scalar, e.g. e = h(m ‖ K) of the e2sec warrant.
    ///
    /// HKDF-SHA-256 (RFC 5869) with salt `"m2msec/group/hash_to_scalar/v1"`, IKM the parts each
    /// prefixed by its length (u32, big-endian), info the group id byte then `domain`, expanded to
    /// `scalar_len + 16` bytes (64 for Ristretto255) and reduced mod q: the bias is below 2^−128.
    /// Counts one T_H.
    pub fn hash_to_scalar(&self, domain: &[u8], parts: &[&[u8]]) -> Scalar {
        self.count(|t| t.hash += 1);
        let mut ikm = Zeroizing::new(Vec::new());
        for part in parts {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            ikm.extend_from_slice(&len.to_be_bytes());
            ikm.extend_from_slice(part);
        }
        let mut info = Vec::with_capacity(1 + domain.len());
        info.push(self.id.id());
        info.extend_from_slice(domain);
        let wide_len = match self.id {
            GroupId::Ristretto255 => 64,
            other => other.scalar_len() + 16,
        };
        let mut wide = Zeroizing::new(vec![0u8; wide_len]);
        // At most 272 bytes, far below HKDF-SHA-256's limit of 8160: the error cannot occur, and
        // the zeros it would leave behind still reduce to a valid scalar.
        let _ = crate::kdf::hkdf_sha256(HASH_TO_SCALAR_SALT, &ikm, &info, &mut wide);
        match ff(self.id) {
            Some(ff) => self.ff_scalar(ff.reduce_wide(&wide)),
            None => {
                let mut arr = Zeroizing::new([0u8; 64]);
                arr.copy_from_slice(&wide);
                self.ristretto_scalar(DalekScalar::from_bytes_mod_order_wide(&arr))
            }
        }
    }

    /// The element's encoding read as an integer and reduced mod q: DSA's r = (g^k mod p) mod q,
    /// also the ElGamal signature's use of r as an exponent. For Ristretto255 the 32-byte encoding
    /// is read little-endian. Counts one T_A.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `e` belongs to another group.
    pub fn element_to_scalar(&self, e: &Element) -> Result<Scalar> {
        self.same(e.group)?;
        self.count(|t| t.arith += 1);
        match (&e.repr, ff(self.id)) {
            (ElementRepr::Ff(bytes), Some(ff)) => Ok(self.ff_scalar(ff.element_to_scalar(bytes))),
            (ElementRepr::Ristretto(point), None) => Ok(self.ristretto_scalar(
                DalekScalar::from_bytes_mod_order(point.compress().to_bytes()),
            )),
            _ => Err(MISMATCH),
        }
    }

    fn scalar_op2(&self, a: &Scalar, b: &Scalar, op: ScalarOp) -> Result<Scalar> {
        self.same(a.group)?;
        self.same(b.group)?;
        match op {
            ScalarOp::Mul => self.count(|t| t.mul += 1),
            ScalarOp::Add | ScalarOp::Sub => self.count(|t| t.arith += 1),
        }
        match (&a.repr, &b.repr, ff(self.id)) {
            (ScalarRepr::Ff(a), ScalarRepr::Ff(b), Some(ff)) => {
                Ok(self.ff_scalar(ff.scalar_op(a, b, op)))
            }
            (ScalarRepr::Ristretto(a), ScalarRepr::Ristretto(b), None) => {
                let (a, b): (&DalekScalar, &DalekScalar) = (a, b);
                Ok(self.ristretto_scalar(match op {
                    ScalarOp::Add => a + b,
                    ScalarOp::Sub => a - b,
                    ScalarOp::Mul => a * b,
                }))
            }
            _ => Err(MISMATCH),
        }
    }

    fn same(&self, other: GroupId) -> Result<()> {
        if other == self.id {
            Ok(())
        } else {
            Err(MISMATCH)
        }
    }

    fn count(&self, f: impl FnOnce(&mut OpTally)) {
        let mut t = self.tally.get();
        f(&mut t);
        self.tally.set(t);
    }

    fn ff_element(&self, bytes: Vec<u8>) -> Element {
        Element {
            group: self.id,
            repr: ElementRepr::Ff(bytes),
        }
    }

    fn ristretto_element(&self, point: RistrettoPoint) -> Element {
        Element {
            group: self.id,
            repr: ElementRepr::Ristretto(point),
        }
    }

    fn ff_scalar(&self, bytes: Zeroizing<Vec<u8>>) -> Scalar {
        Scalar {
            group: self.id,
            repr: ScalarRepr::Ff(bytes),
        }
    }

    fn ristretto_scalar(&self, s: DalekScalar) -> Scalar {
        Scalar {
            group: self.id,
            repr: ScalarRepr::Ristretto(Zeroizing::new(s)),
        }
    }
}

const MISMATCH: Error = Error::InvalidParameter("group mismatch");

#[derive(Clone, Copy)]
enum ScalarOp {
    Add,
    Sub,
    Mul,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::ff::uint_from_be;
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn ids_roundtrip() {
        for id in GroupId::ALL {
            assert_eq!(GroupId::try_from(id.id()).unwrap(), id);
            assert_eq!(Group::new(id).order_be_bytes().len(), id.scalar_len());
        }
        assert_eq!(GroupId::try_from(0), Err(Error::UnknownSuite(0)));
        assert_eq!(GroupId::try_from(5), Err(Error::UnknownSuite(5)));
    }

    #[test]
    fn dyn_residue_reduces_inputs_above_the_modulus() {
        // `reduce_wide` and `element_to_scalar` rely on this.
        let mut rng = SeededRng::from_seed_u64(3);
        let mut rng: &mut dyn CryptoRng = &mut rng;
        for id in [GroupId::Modp2048, GroupId::Dsa2048_256] {
            let _ = ff(id).unwrap();
            let q = uint_from_be::<{ U2048::LIMBS }>(&Group::new(id).order_be_bytes());
            let params = DynResidueParams::new(&q);
            for _ in 0..8 {
                let x = <Uint<{ U2048::LIMBS }> as crypto_bigint::Random>::random(&mut rng);
                let nz = Option::<NonZero<_>>::from(NonZero::new(q)).unwrap();
                assert_eq!(DynResidue::new(&x, params).retrieve(), x.rem(&nz));
            }
        }
    }

    #[test]
    fn tally_counts_and_resets() {
        let g = Group::new(GroupId::Dsa1024_160);
        let mut rng = SeededRng::from_seed_u64(4);
        let k = g.random_scalar(&mut rng);
        let y = g.exp_generator(&k).unwrap();
        let _ = g.mul(&y, &y).unwrap();
        let e = g.hash_to_scalar(b"d", &[b"m"]);
        let _ = g.scalar_add(&g.scalar_mul(&k, &e).unwrap(), &k).unwrap();
        let t = g.take_tally();
        assert_eq!(
            t,
            OpTally {
                exp: 1,
                mul: 2,
                hash: 1,
                arith: 1,
                inv: 0,
                check: 0
            }
        );
        assert_eq!(t.to_string(), "1TE+2TM+1TH+1TA");
        assert_eq!(g.tally(), OpTally::default());
    }
}
