//! AFGH proxy re-encryption (Ateniese, Fu, Green, Hohenberger 2006, "third attempt") on BLS12-381,
//! used as a KEM whose key encrypts the payload with an AEAD — the relay's cryptography
//! (paper `004`, equations (1)–(4); `DESIGN.md`, "relay").
//!
//! No permissively licensed AFGH crate exists, so the scheme is written here by hand; the pairing
//! comes from `blstrs` (over `blst`) behind our own [`PairingBackend`] trait, so another backend can
//! be swapped in ([`Blstrs`] is the only one today). The types are generic (`SecretKeyOf<B>`, ...);
//! [`SecretKey`], [`PublicKey`], [`ReKey`], [`SecondLevel`] and [`FirstLevel`] name them on
//! [`Blstrs`], and the functions [`seal`], [`reencrypt`], [`open_first`], [`open_second`] take either.
//!
//! # The scheme, as implemented
//! The paper uses a symmetric pairing `e: G × G → G_T`; BLS12-381 has an asymmetric one,
//! `e: G1 × G2 → GT`. We put ciphertexts in `G1`, re-encryption keys and the delegation half of
//! public keys in `G2`, and messages in `GT` (written multiplicatively):
//!
//! - Parameters: the standard generators `g1 ∈ G1`, `g2 ∈ G2`, and `Z = e(g1, g2) ∈ GT`.
//! - Keys of user `i`: `sk_i = (a1, a2)`, both uniform in `[1, q)`;
//!   `pk_i = (Z^{a1} ∈ GT, g2^{a2} ∈ G2)`. Anyone encrypts to `i` with `Z^{a1}`; `g2^{a2}` is
//!   what a delegator needs to let the proxy re-encrypt *to* `i`.
//! - (1) Second-level encryption of `m ∈ GT` to `i`: `r` uniform in `[1, q)`,
//!   `C2 = (α, β) = (g1^r ∈ G1, m·(Z^{a1})^r ∈ GT)`.
//! - (2) Re-encryption key from `i` to `j` (`sk_j = (b1, b2)`), made by `i` from `pk_j`:
//!   `rk_{i→j} = (g2^{b2})^{a1} = g2^{a1·b2} ∈ G2`.
//! - (3) Re-encryption by the proxy: `C1 = (α', β) = (e(α, rk_{i→j}), β) = (Z^{r·a1·b2}, m·Z^{a1·r})`,
//!   the paper's `[Z^{b2·r'}, m·Z^{r'}]` with `r' = a1·r`.
//! - (4) First-level decryption by `j`: `m = β / α'^{1/b2}`.
//! - The source opens its own second-level ciphertexts: `m = β / e(α^{a1}, g2) = β / Z^{a1·r}`.
//!
//! As a KEM: `m` is a uniformly random element of `GT`, and the payload key is
//! `HKDF-SHA-256(salt = "", ikm = enc(m), info = "m2msec pre v1 kem" ‖ backend id ‖ AEAD suite id)`.
//! The payload is the AEAD of the plaintext (with the caller's associated data) under that key and
//! the all-zero nonce: every key seals exactly one message, so no nonce travels. Re-encryption
//! leaves the payload untouched, so the proxy's work per message is one pairing.
//!
//! # What a re-encryption key does not give
//! - **Not the reverse direction.** `rk_{i→j} = g2^{a1·b2}` while `rk_{j→i} = g2^{b1·a2}`: the
//!   exponents share nothing, and deriving one from the other with the public keys is a
//!   co-CDH-type problem (unlike BBS, where the reverse key is the inverse). Applied to a
//!   ciphertext for `j` (`α = g1^r`, `β = m·Z^{b1·r}`), `rk_{i→j}` yields `Z^{r·a1·b2}`, which
//!   unblinds nothing: `j` recovers `β / Z^{a1·r} ≠ m` and the AEAD fails.
//! - **Not decryption.** The proxy sees `α = g1^r`, `β`, `rk = g2^{a1·b2}`, and the public keys.
//!   The blinding factor is `Z^{a1·r}`; what the proxy can compute is `e(α, rk) = Z^{a1·b2·r}`,
//!   `e(α, g2) = Z^r`, and powers of public values, none of which is `Z^{a1·r}` without `b2` (or
//!   `a1`) — computing it is the Decisional/Computational Bilinear Diffie-Hellman-type problem
//!   AFGH reduce to. The tests check the natural attempts fail.
//! - **Caveat (inherent to AFGH).** A proxy colluding with `j` gets `rk^{1/b2} = g2^{a1}`, which
//!   opens every second-level ciphertext of `i` (they could have re-encrypted them anyway); it
//!   does not reveal `a1` itself, nor open ciphertexts in the first-level form.
//! - The scheme is CPA-secure, not CCA-secure, and ciphertexts are not authenticated to a sender:
//!   anyone with `pk_i` can produce a valid ciphertext for `i`. The relay authenticates the source
//!   with its signature key; the AEAD tag here only catches tampering with a ciphertext.
//!
//! # Encodings
//! Every type has a total `from_bytes` and a `to_bytes`. The first byte names the type and format
//! version, the second the backend ([`PairingBackend::ID`], 1 = BLS12-381 via blstrs):
//!
//! | type          | kind | layout after `kind ‖ backend`                    | BLS12-381 size |
//! |---------------|------|--------------------------------------------------|----------------|
//! | [`SecretKey`] | 0x11 | `a1 ‖ a2` (scalars)                              | 66             |
//! | [`PublicKey`] | 0x12 | `Z^{a1}` (GT) ‖ `g2^{a2}` (G2)                   | 386            |
//! | [`ReKey`]     | 0x13 | `g2^{a1·b2}` (G2)                                | 98             |
//! | [`SecondLevel`] | 0x14 | AEAD suite id ‖ `α` (G1) ‖ `β` (GT) ‖ payload  | 339 + payload  |
//! | [`FirstLevel`]  | 0x15 | AEAD suite id ‖ `α'` (GT) ‖ `β` (GT) ‖ payload | 579 + payload  |
//!
//! Payload = AEAD ciphertext ‖ tag. Keys also have PEM forms, labels [`SECRET_KEY_PEM_LABEL`],
//! [`PUBLIC_KEY_PEM_LABEL`] and [`REKEY_PEM_LABEL`], whose body is the `to_bytes` encoding.

mod backend;

pub use backend::{BlsScalar, Blstrs, PairingBackend};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::{AeadKey, AeadSuite};
use crate::rng::CryptoRng;
use crate::{Error, Result};

/// PEM label of an AFGH secret key.
pub const SECRET_KEY_PEM_LABEL: &str = "M2MSEC AFGH SECRET KEY";
/// PEM label of an AFGH public key.
pub const PUBLIC_KEY_PEM_LABEL: &str = "M2MSEC AFGH PUBLIC KEY";
/// PEM label of an AFGH re-encryption key.
pub const REKEY_PEM_LABEL: &str = "M2MSEC AFGH REENCRYPTION KEY";

/// A secret key on the default backend.
pub type SecretKey = SecretKeyOf<Blstrs>;
/// A public key on the default backend.
pub type PublicKey = PublicKeyOf<Blstrs>;
/// A re-encryption key on the default backend.
pub type ReKey = ReKeyOf<Blstrs>;
/// A second-level ciphertext on the default backend.
pub type SecondLevel = SecondLevelOf<Blstrs>;
/// A first-level ciphertext on the default backend.
pub type FirstLevel = FirstLevelOf<Blstrs>;

const KIND_SECRET_KEY: u8 = 0x11;
const KIND_PUBLIC_KEY: u8 = 0x12;
const KIND_REKEY: u8 = 0x13;
const KIND_SECOND_LEVEL: u8 = 0x14;
const KIND_FIRST_LEVEL: u8 = 0x15;

const KEM_INFO: &[u8] = b"m2msec pre v1 kem";

/// A user's secret key `(a1, a2)`. Zeroized on drop; `Debug` shows nothing secret.
pub struct SecretKeyOf<B: PairingBackend = Blstrs> {
    a1: B::Scalar,
    a2: B::Scalar,
}

impl<B: PairingBackend> Drop for SecretKeyOf<B> {
    fn drop(&mut self) {
        self.a1.zeroize();
        self.a2.zeroize();
    }
}

impl<B: PairingBackend> ZeroizeOnDrop for SecretKeyOf<B> {}

impl<B: PairingBackend> Clone for SecretKeyOf<B> {
    fn clone(&self) -> Self {
        Self {
            a1: self.a1.clone(),
            a2: self.a2.clone(),
        }
    }
}

impl<B: PairingBackend> core::fmt::Debug for SecretKeyOf<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretKey")
            .field("backend", &B::NAME)
            .finish_non_exhaustive()
    }
}

/// A user's public key `(Z^{a1}, g2^{a2})`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeyOf<B: PairingBackend = Blstrs> {
    z_a1: B::Gt,
    g2_a2: B::G2,
}

impl<B: PairingBackend> core::fmt::Debug for PublicKeyOf<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bytes = self.to_bytes();
        let fp = crate::hash::sha256(&bytes);
        f.debug_struct("PublicKey")
            .field("backend", &B::NAME)
            .field("sha256", &HexPrefix(&fp[..8]))
            .finish()
    }
}

/// A re-encryption key `rk_{i→j} = g2^{a1·b2}`: lets a proxy turn second-level ciphertexts for `i`
/// into first-level ciphertexts for `j`, and nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct ReKeyOf<B: PairingBackend = Blstrs> {
    rk: B::G2,
}

impl<B: PairingBackend> core::fmt::Debug for ReKeyOf<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReKey")
            .field("backend", &B::NAME)
            .finish_non_exhaustive()
    }
}

/// A second-level ciphertext `(α = g1^r, β = m·Z^{a1·r})` plus the AEAD payload: what the source
/// sends, what the proxy stores, what the source itself can still open.
#[derive(Clone, PartialEq, Eq)]
pub struct SecondLevelOf<B: PairingBackend = Blstrs> {
    suite: AeadSuite,
    alpha: B::G1,
    beta: B::Gt,
    payload: Vec<u8>,
}

/// A first-level (re-encrypted) ciphertext `(α' = Z^{r·a1·b2}, β)` plus the unchanged AEAD
/// payload: what the proxy delivers to the sink.
#[derive(Clone, PartialEq, Eq)]
pub struct FirstLevelOf<B: PairingBackend = Blstrs> {
    suite: AeadSuite,
    alpha: B::Gt,
    beta: B::Gt,
    payload: Vec<u8>,
}

impl<B: PairingBackend> core::fmt::Debug for SecondLevelOf<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecondLevel")
            .field("backend", &B::NAME)
            .field("suite", &self.suite)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl<B: PairingBackend> core::fmt::Debug for FirstLevelOf<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FirstLevel")
            .field("backend", &B::NAME)
            .field("suite", &self.suite)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

struct HexPrefix<'a>(&'a [u8]);

impl core::fmt::Debug for HexPrefix<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<B: PairingBackend> SecretKeyOf<B> {
    /// A fresh key pair's secret half: `a1`, `a2` uniform in `[1, q)`.
    pub fn generate(rng: &mut dyn CryptoRng) -> Self {
        Self {
            a1: B::random_scalar(rng),
            a2: B::random_scalar(rng),
        }
        .logged()
    }

    /// Hands the scalars to the key log ([`crate::keylog`]) on their way out of a constructor.
    fn logged(self) -> Self {
        if crate::keylog::enabled() {
            crate::keylog::log("afgh secret a1", &B::scalar_to_bytes(&self.a1));
            crate::keylog::log("afgh secret a2", &B::scalar_to_bytes(&self.a2));
        }
        self
    }

    /// A secret key derived deterministically from input keying material, for key pairs that
    /// must be re-created from a stored seed (the relay source's per-epoch keys: one 32-byte seed,
    /// `info` naming the epoch).
    ///
    /// HKDF-SHA-256 (RFC 5869): extract with salt `"m2msec pre v1 derive"` from `ikm`, then each
    /// scalar by rejection sampling: candidate `c = 0, 1, …` expands
    /// `info ‖ which ‖ c` (`which` = 1 for `a1`, 2 for `a2`; `c` one byte) into
    /// [`PairingBackend::SCALAR_LEN`] bytes and is taken if they encode a scalar in `[1, q)`
    /// (for BLS12-381 about 45 % of candidates are). The result is uniform in `[1, q)`, and
    /// distinct `info` give independent keys, as long as HKDF is a PRF.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `ikm` is shorter than 16 bytes, or (probability below
    /// `2^-200`) if all 256 candidates for a scalar are rejected.
    pub fn derive(ikm: &[u8], info: &[u8]) -> Result<Self> {
        const SALT: &[u8] = b"m2msec pre v1 derive";
        if ikm.len() < 16 {
            return Err(Error::InvalidParameter(
                "AFGH key derivation needs 16+ bytes of ikm",
            ));
        }
        let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(SALT), ikm);
        let scalar = |which: u8| -> Result<B::Scalar> {
            let mut candidate = Zeroizing::new(vec![0u8; B::SCALAR_LEN]);
            for c in 0..=u8::MAX {
                prk.expand_multi_info(&[info, &[which, c]], &mut candidate)
                    .map_err(|_| Error::InvalidParameter("AFGH scalar length"))?;
                if let Some(s) = B::scalar_from_bytes(&candidate) {
                    return Ok(s);
                }
            }
            Err(Error::InvalidParameter(
                "AFGH key derivation rejected every candidate",
            ))
        };
        Ok(Self {
            a1: scalar(1)?,
            a2: scalar(2)?,
        }
        .logged())
    }

    /// The public key `(Z^{a1}, g2^{a2})`. `Z^{a1}` is computed as `e(g1^{a1}, g2)`, keeping the
    /// secret exponent in `blst`'s constant-time `G1` multiplication.
    pub fn public_key(&self) -> PublicKeyOf<B> {
        PublicKeyOf {
            z_a1: B::pairing(&B::g1_base_mul(&self.a1), &B::g2_generator()),
            g2_a2: B::g2_mul(&B::g2_generator(), &self.a2),
        }
    }

    /// Equation (2): the re-encryption key `rk_{self→to} = (g2^{b2})^{a1}` from this (delegating)
    /// user to the holder of `to`, who will open the re-encrypted ciphertexts with `b2`.
    pub fn rekey_to(&self, to: &PublicKeyOf<B>) -> ReKeyOf<B> {
        ReKeyOf {
            rk: B::g2_mul(&to.g2_a2, &self.a1),
        }
    }

    /// `kind ‖ backend ‖ a1 ‖ a2`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(2 + 2 * B::SCALAR_LEN));
        out.extend_from_slice(&[KIND_SECRET_KEY, B::ID]);
        out.extend_from_slice(&B::scalar_to_bytes(&self.a1));
        out.extend_from_slice(&B::scalar_to_bytes(&self.a2));
        out
    }

    /// Inverse of [`SecretKey::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Decode`] on a wrong kind, backend or length, or a zero or non-canonical scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "AFGH secret key";
        let body = header::<B>(bytes, KIND_SECRET_KEY, WHAT)?;
        if body.len() != 2 * B::SCALAR_LEN {
            return Err(Error::Decode { what: WHAT });
        }
        let (a1, a2) = body.split_at(B::SCALAR_LEN);
        Ok(Self {
            a1: B::scalar_from_bytes(a1).ok_or(Error::Decode { what: WHAT })?,
            a2: B::scalar_from_bytes(a2).ok_or(Error::Decode { what: WHAT })?,
        }
        .logged())
    }

    /// PEM with label [`SECRET_KEY_PEM_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails (not expected).
    pub fn to_pem(&self) -> Result<Zeroizing<String>> {
        crate::pem::encode(SECRET_KEY_PEM_LABEL, &self.to_bytes())
    }

    /// Reads a PEM secret key.
    ///
    /// # Errors
    /// [`Error::Pem`] on bad PEM or a wrong label, [`Error::Decode`] on bad contents.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_bytes(&crate::pem::decode(pem, SECRET_KEY_PEM_LABEL)?)
    }
}

impl<B: PairingBackend> PublicKeyOf<B> {
    /// `kind ‖ backend ‖ Z^{a1} ‖ g2^{a2}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + B::GT_LEN + B::G2_LEN);
        out.extend_from_slice(&[KIND_PUBLIC_KEY, B::ID]);
        out.extend_from_slice(&B::gt_to_bytes(&self.z_a1));
        out.extend_from_slice(&B::g2_to_bytes(&self.g2_a2));
        out
    }

    /// Inverse of [`PublicKey::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Decode`] on a wrong kind, backend or length, or an invalid or identity element.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "AFGH public key";
        let body = header::<B>(bytes, KIND_PUBLIC_KEY, WHAT)?;
        if body.len() != B::GT_LEN + B::G2_LEN {
            return Err(Error::Decode { what: WHAT });
        }
        let (z, g) = body.split_at(B::GT_LEN);
        Ok(Self {
            z_a1: B::gt_from_bytes(z).ok_or(Error::Decode { what: WHAT })?,
            g2_a2: B::g2_from_bytes(g).ok_or(Error::Decode { what: WHAT })?,
        })
    }

    /// PEM with label [`PUBLIC_KEY_PEM_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails (not expected).
    pub fn to_pem(&self) -> Result<String> {
        crate::pem::encode(PUBLIC_KEY_PEM_LABEL, &self.to_bytes()).map(|s| s.to_string())
    }

    /// Reads a PEM public key.
    ///
    /// # Errors
    /// [`Error::Pem`] on bad PEM or a wrong label, [`Error::Decode`] on bad contents.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_bytes(&crate::pem::decode(pem, PUBLIC_KEY_PEM_LABEL)?)
    }
}

impl<B: PairingBackend> ReKeyOf<B> {
    /// `kind ‖ backend ‖ g2^{a1·b2}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + B::G2_LEN);
        out.extend_from_slice(&[KIND_REKEY, B::ID]);
        out.extend_from_slice(&B::g2_to_bytes(&self.rk));
        out
    }

    /// Inverse of [`ReKey::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Decode`] on a wrong kind, backend or length, or an invalid or identity element.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "AFGH re-encryption key";
        let body = header::<B>(bytes, KIND_REKEY, WHAT)?;
        Ok(Self {
            rk: B::g2_from_bytes(body).ok_or(Error::Decode { what: WHAT })?,
        })
    }

    /// PEM with label [`REKEY_PEM_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails (not expected).
    pub fn to_pem(&self) -> Result<String> {
        crate::pem::encode(REKEY_PEM_LABEL, &self.to_bytes()).map(|s| s.to_string())
    }

    /// Reads a PEM re-encryption key.
    ///
    /// # Errors
    /// [`Error::Pem`] on bad PEM or a wrong label, [`Error::Decode`] on bad contents.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_bytes(&crate::pem::decode(pem, REKEY_PEM_LABEL)?)
    }
}

impl<B: PairingBackend> SecondLevelOf<B> {
    /// The AEAD suite of the payload.
    pub fn suite(&self) -> AeadSuite {
        self.suite
    }

    /// The AEAD payload (ciphertext ‖ tag).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// `kind ‖ backend ‖ suite ‖ α ‖ β ‖ payload`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + B::G1_LEN + B::GT_LEN + self.payload.len());
        out.extend_from_slice(&[KIND_SECOND_LEVEL, B::ID, self.suite.id()]);
        out.extend_from_slice(&B::g1_to_bytes(&self.alpha));
        out.extend_from_slice(&B::gt_to_bytes(&self.beta));
        out.extend_from_slice(&self.payload);
        out
    }

    /// Inverse of [`SecondLevel::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Decode`] on a wrong kind or backend, a short input, an invalid or identity element or
    /// a payload shorter than the suite's tag; [`Error::UnknownSuite`] on an unknown AEAD suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "AFGH second-level ciphertext";
        let body = header::<B>(bytes, KIND_SECOND_LEVEL, WHAT)?;
        let (suite, body) = suite_prefix(body, WHAT)?;
        if body.len() < B::G1_LEN + B::GT_LEN + suite.tag_len() {
            return Err(Error::Decode { what: WHAT });
        }
        let (alpha, rest) = body.split_at(B::G1_LEN);
        let (beta, payload) = rest.split_at(B::GT_LEN);
        Ok(Self {
            suite,
            alpha: B::g1_from_bytes(alpha).ok_or(Error::Decode { what: WHAT })?,
            beta: B::gt_from_bytes(beta).ok_or(Error::Decode { what: WHAT })?,
            payload: payload.to_vec(),
        })
    }
}

impl<B: PairingBackend> FirstLevelOf<B> {
    /// The AEAD suite of the payload.
    pub fn suite(&self) -> AeadSuite {
        self.suite
    }

    /// The AEAD payload (ciphertext ‖ tag), as it was in the second-level ciphertext.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// `kind ‖ backend ‖ suite ‖ α' ‖ β ‖ payload`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + 2 * B::GT_LEN + self.payload.len());
        out.extend_from_slice(&[KIND_FIRST_LEVEL, B::ID, self.suite.id()]);
        out.extend_from_slice(&B::gt_to_bytes(&self.alpha));
        out.extend_from_slice(&B::gt_to_bytes(&self.beta));
        out.extend_from_slice(&self.payload);
        out
    }

    /// Inverse of [`FirstLevel::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Decode`] on a wrong kind or backend, a short input, an invalid or identity element or
    /// a payload shorter than the suite's tag; [`Error::UnknownSuite`] on an unknown AEAD suite.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "AFGH first-level ciphertext";
        let body = header::<B>(bytes, KIND_FIRST_LEVEL, WHAT)?;
        let (suite, body) = suite_prefix(body, WHAT)?;
        if body.len() < 2 * B::GT_LEN + suite.tag_len() {
            return Err(Error::Decode { what: WHAT });
        }
        let (alpha, rest) = body.split_at(B::GT_LEN);
        let (beta, payload) = rest.split_at(B::GT_LEN);
        Ok(Self {
            suite,
            alpha: B::gt_from_bytes(alpha).ok_or(Error::Decode { what: WHAT })?,
            beta: B::gt_from_bytes(beta).ok_or(Error::Decode { what: WHAT })?,
            payload: payload.to_vec(),
        })
    }
}

fn header<'a, B: PairingBackend>(
    bytes: &'a [u8],
    kind: u8,
    what: &'static str,
) -> Result<&'a [u8]> {
    match bytes {
        [k, b, rest @ ..] if *k == kind && *b == B::ID => Ok(rest),
        _ => Err(Error::Decode { what }),
    }
}

fn suite_prefix<'a>(bytes: &'a [u8], what: &'static str) -> Result<(AeadSuite, &'a [u8])> {
    let (id, rest) = bytes.split_first().ok_or(Error::Decode { what })?;
    Ok((AeadSuite::try_from(*id)?, rest))
}

/// The payload key derived from the KEM element `m ∈ GT`.
fn kem_key<B: PairingBackend>(m: &B::Gt, suite: AeadSuite) -> Result<AeadKey> {
    let ikm = Zeroizing::new(B::gt_to_bytes(m));
    let mut info = Vec::with_capacity(KEM_INFO.len() + 2);
    info.extend_from_slice(KEM_INFO);
    info.extend_from_slice(&[B::ID, suite.id()]);
    AeadKey::derive(suite, &ikm, &[], &info)
}

fn zero_nonce(suite: AeadSuite) -> Vec<u8> {
    vec![0u8; suite.nonce_len()]
}

/// Equation (1): second-level encryption of `plaintext` to the holder of `to`, as a KEM
/// (`m` random in `GT`) whose derived key seals `plaintext` and `aad` with `suite`.
///
/// # Errors
/// [`Error::InvalidParameter`] if `plaintext` exceeds the suite's limit (65 535 bytes for CCM-8).
pub fn seal<B: PairingBackend>(
    to: &PublicKeyOf<B>,
    rng: &mut dyn CryptoRng,
    suite: AeadSuite,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SecondLevelOf<B>> {
    let m = B::gt_random(rng);
    let mut r = B::random_scalar(rng);
    let alpha = B::g1_base_mul(&r);
    let beta = B::gt_mul(&m, &B::gt_pow(&to.z_a1, &r));
    r.zeroize();
    let key = kem_key::<B>(&m, suite)?;
    let payload = key.seal(&zero_nonce(suite), aad, plaintext)?;
    Ok(SecondLevelOf {
        suite,
        alpha,
        beta,
        payload,
    })
}

/// Equation (3): the proxy's re-encryption `(α, β) ↦ (e(α, rk), β)`; the payload is untouched.
///
/// Applied with a key that does not start at the ciphertext's recipient, it yields a first-level
/// ciphertext nobody can open ([`open_first`] fails with [`Error::Authentication`]).
pub fn reencrypt<B: PairingBackend>(rk: &ReKeyOf<B>, c: &SecondLevelOf<B>) -> FirstLevelOf<B> {
    FirstLevelOf {
        suite: c.suite,
        alpha: B::pairing(&c.alpha, &rk.rk),
        beta: c.beta.clone(),
        payload: c.payload.clone(),
    }
}

/// Equation (4): the sink opens a re-encrypted ciphertext with `b2`: `m = β / α'^{1/b2}`.
///
/// # Errors
/// [`Error::Authentication`] if it was not re-encrypted to this key, or anything was altered.
pub fn open_first<B: PairingBackend>(
    sk: &SecretKeyOf<B>,
    c: &FirstLevelOf<B>,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let mut inv = B::scalar_invert(&sk.a2).ok_or(Error::Authentication)?;
    let blind = B::gt_pow(&c.alpha, &inv);
    inv.zeroize();
    let m = B::gt_div(&c.beta, &blind);
    open_payload::<B>(&m, c.suite, aad, &c.payload)
}

/// The source opens its own second-level ciphertext with `a1`: `m = β / e(α^{a1}, g2)`.
///
/// # Errors
/// [`Error::Authentication`] if it was not encrypted to this key, or anything was altered.
pub fn open_second<B: PairingBackend>(
    sk: &SecretKeyOf<B>,
    c: &SecondLevelOf<B>,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let blind = B::pairing(&B::g1_mul(&c.alpha, &sk.a1), &B::g2_generator());
    let m = B::gt_div(&c.beta, &blind);
    open_payload::<B>(&m, c.suite, aad, &c.payload)
}

fn open_payload<B: PairingBackend>(
    m: &B::Gt,
    suite: AeadSuite,
    aad: &[u8],
    payload: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let key = kem_key::<B>(m, suite).map_err(|_| Error::Authentication)?;
    key.open(&zero_nonce(suite), aad, payload)
        .map_err(|_| Error::Authentication)
}

#[cfg(test)]
mod tests;
