//! One-time signatures: Lamport over SHA-256 and LM-OTS (RFC 8554 section 4).
//!
//! A one-time key that signs two different messages leaks enough of itself for forgeries, so the
//! types make a second signature impossible to write: [`OtsSecretKey::sign`] takes the key by value,
//! and the key is neither `Clone` nor `Copy`. (Serializing it with [`OtsSecretKey::to_bytes`] and
//! decoding twice is still possible; the key-transport layer and the `store` crate's used-index
//! record are what prevent that, as DESIGN.md says.)
//!
//! ```compile_fail
//! use m2msec_crypto::ots::{OtsScheme, OtsSecretKey};
//! let mut rng = m2msec_crypto::rng::SeededRng::from_seed_u64(1);
//! let sk = OtsSecretKey::generate(OtsScheme::LmotsSha256N32W4, &mut rng);
//! let first = sk.sign(b"one");
//! let second = sk.sign(b"two"); // error[E0382]: use of moved value: `sk`
//! ```
//!
//! No maintained crate offers these: `hbs-lms` exposes only the full HSS/LMS stack, and no crate
//! implements Lamport over SHA-256. Both are therefore written here by hand, directly from the
//! specifications quoted beside the code.
//!
//! # Schemes
//! | scheme                       | id | public key     | signature      | RFC 8554 type |
//! |------------------------------|----|----------------|----------------|---------------|
//! | Lamport (SHA-256)            | 1  | 1 + 16 384     | 1 + 8 192      | —             |
//! | LMOTS_SHA256_N32_W4 (default compact) | 2 | 1 + 56 | 1 + 2 180      | 3             |
//! | LMOTS_SHA256_N32_W1          | 3  | 1 + 56         | 1 + 8 516      | 1             |
//! | LMOTS_SHA256_N32_W2          | 4  | 1 + 56         | 1 + 4 292      | 2             |
//! | LMOTS_SHA256_N32_W8          | 5  | 1 + 56         | 1 + 1 124      | 4             |
//!
//! # Encodings (every one starts with the scheme id byte)
//! - secret key: `id || SEED(32)` for Lamport, `id || I(16) || u32(q) || SEED(32)` for LM-OTS;
//! - public key: `id || (y[0][0] || y[0][1] || ... || y[255][1])` for Lamport (the 512 hashes, the
//!   paper's LK), `id || u32str(type) || I || u32str(q) || K` for LM-OTS (RFC 8554 section 4.3);
//! - signature: `id || x[0][b0] || ... || x[255][b255]` for Lamport, `id || u32str(type) || C ||
//!   y[0] || ... || y[p-1]` for LM-OTS (RFC 8554 section 4.5).
//!
//! # Key files
//! No standard encoding exists for these keys, so their PEM files use labels of our own around the
//! byte encodings above: [`OTS_PRIVATE_KEY_LABEL`] ("M2MSEC OTS PRIVATE KEY") and
//! [`OTS_PUBLIC_KEY_LABEL`] ("M2MSEC OTS PUBLIC KEY").
//!
//! # Secret keys from a seed
//! Both schemes derive their secret values from a 32-byte SEED, so a key travels as 33 or 53 bytes
//! instead of 16 KiB: LM-OTS as RFC 8554 Appendix A recommends
//! (`x_q[i] = H(I || u32str(q) || u16str(i) || u8str(0xff) || SEED)`), Lamport as
//! `x[i][b] = SHA-256 over the length-prefixed fields ("m2msec/lamport/sk", SEED, u16(i), u8(b))`.
//! The LM-OTS randomizer C, which RFC 8554 wants unpredictable, is derived from SEED the way the
//! reference implementation (hash-sigs) does: `C = H(I || u32str(q) || u16str(0xFFFD) || u8str(0xff)
//! || SEED)`; since a key signs once, C never repeats.

use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::hash::{Sha256, sha256, sha256_length_prefixed};
use crate::rng::{CryptoRng, random_array};
use crate::suite::wire_ids;
use crate::{Error, Result};

wire_ids! {
    /// A one-time signature scheme with its wire identifier.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OtsScheme {
        /// Lamport over SHA-256: the paper's choice; large keys, cheapest signing.
        Lamport = 1,
        /// LM-OTS, SHA-256, n = 32, w = 4 (RFC 8554 type 3): the compact default.
        LmotsSha256N32W4 = 2,
        /// LM-OTS, SHA-256, n = 32, w = 1 (RFC 8554 type 1).
        LmotsSha256N32W1 = 3,
        /// LM-OTS, SHA-256, n = 32, w = 2 (RFC 8554 type 2).
        LmotsSha256N32W2 = 4,
        /// LM-OTS, SHA-256, n = 32, w = 8 (RFC 8554 type 4): smallest signatures, slowest.
        LmotsSha256N32W8 = 5,
    }
}

impl OtsScheme {
    /// A human-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Lamport => "Lamport-SHA256",
            Self::LmotsSha256N32W4 => "LMOTS_SHA256_N32_W4",
            Self::LmotsSha256N32W1 => "LMOTS_SHA256_N32_W1",
            Self::LmotsSha256N32W2 => "LMOTS_SHA256_N32_W2",
            Self::LmotsSha256N32W8 => "LMOTS_SHA256_N32_W8",
        }
    }

    /// The RFC 8554 LM-OTS type code, or `None` for Lamport.
    pub const fn lmots_typecode(self) -> Option<u32> {
        match self.lmots() {
            Some(p) => Some(p.typecode),
            None => None,
        }
    }

    /// The scheme of an RFC 8554 LM-OTS type code.
    ///
    /// # Errors
    /// [`Error::Decode`] for a type code this crate does not implement.
    pub fn from_lmots_typecode(typecode: u32) -> Result<Self> {
        match typecode {
            1 => Ok(Self::LmotsSha256N32W1),
            2 => Ok(Self::LmotsSha256N32W2),
            3 => Ok(Self::LmotsSha256N32W4),
            4 => Ok(Self::LmotsSha256N32W8),
            _ => Err(Error::Decode {
                what: "LM-OTS type code",
            }),
        }
    }

    /// Length of an encoded public key, id byte included.
    pub const fn public_key_len(self) -> usize {
        match self.lmots() {
            None => 1 + LAMPORT_BITS * 2 * N,
            Some(_) => 1 + 4 + 16 + 4 + N,
        }
    }

    /// Length of an encoded signature, id byte included.
    pub const fn signature_len(self) -> usize {
        match self.lmots() {
            None => 1 + LAMPORT_BITS * N,
            Some(p) => 1 + 4 + N + (p.p as usize) * N,
        }
    }

    const fn lmots(self) -> Option<LmotsParams> {
        // RFC 8554 section 4.1, Table 1: (w, p, ls) for n = 32.
        match self {
            Self::Lamport => None,
            Self::LmotsSha256N32W1 => Some(LmotsParams {
                w: 1,
                p: 265,
                ls: 7,
                typecode: 1,
            }),
            Self::LmotsSha256N32W2 => Some(LmotsParams {
                w: 2,
                p: 133,
                ls: 6,
                typecode: 2,
            }),
            Self::LmotsSha256N32W4 => Some(LmotsParams {
                w: 4,
                p: 67,
                ls: 4,
                typecode: 3,
            }),
            Self::LmotsSha256N32W8 => Some(LmotsParams {
                w: 8,
                p: 34,
                ls: 0,
                typecode: 4,
            }),
        }
    }
}

/// PEM label of a one-time secret key file; the body is [`OtsSecretKey::to_bytes`].
pub const OTS_PRIVATE_KEY_LABEL: &str = "M2MSEC OTS PRIVATE KEY";
/// PEM label of a one-time public key file; the body is [`OtsPublicKey::to_bytes`].
pub const OTS_PUBLIC_KEY_LABEL: &str = "M2MSEC OTS PUBLIC KEY";

/// Hash output length n (SHA-256).
const N: usize = 32;
/// Lamport signs the 256 bits of SHA-256(msg).
const LAMPORT_BITS: usize = 256;
/// RFC 8554 section 4.3: domain separator of the public-key hash.
const D_PBLC: [u8; 2] = [0x80, 0x80];
/// RFC 8554 section 4.5: domain separator of the message hash.
const D_MESG: [u8; 2] = [0x81, 0x81];

#[derive(Debug, Clone, Copy)]
struct LmotsParams {
    /// Winternitz parameter (bits per digit).
    w: u8,
    /// Number of n-byte chains.
    p: u16,
    /// Left shift of the checksum.
    ls: u8,
    /// RFC 8554 type code.
    typecode: u32,
}

impl LmotsParams {
    /// Largest digit value, 2^w - 1.
    fn max_digit(self) -> u8 {
        // w <= 8, so the result fits in a u8 (w = 8 gives 255).
        u8::try_from((1u16 << self.w) - 1).unwrap_or(u8::MAX)
    }
}

/// A one-time secret key. Zeroized on drop, not `Clone`; `Debug` shows the scheme only.
pub struct OtsSecretKey {
    scheme: OtsScheme,
    /// LM-OTS key identifier I (unused by Lamport).
    i: [u8; 16],
    /// LM-OTS leaf index q (unused by Lamport).
    q: u32,
    seed: Zeroizing<[u8; 32]>,
}

impl ZeroizeOnDrop for OtsSecretKey {}

impl core::fmt::Debug for OtsSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OtsSecretKey")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl OtsSecretKey {
    /// A fresh key; LM-OTS keys get a random I and q = 0.
    pub fn generate(scheme: OtsScheme, rng: &mut dyn CryptoRng) -> Self {
        let i = if scheme == OtsScheme::Lamport {
            [0u8; 16]
        } else {
            random_array(rng)
        };
        Self {
            scheme,
            i,
            q: 0,
            seed: Zeroizing::new(random_array(rng)),
        }
    }

    /// A fresh LM-OTS key with the caller's key identifier `i` and leaf index `q`, as inside an
    /// RFC 8554 LMS tree.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `scheme` is not an LM-OTS scheme.
    pub fn generate_lmots(
        scheme: OtsScheme,
        i: [u8; 16],
        q: u32,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self> {
        if scheme.lmots().is_none() {
            return Err(Error::InvalidParameter("not an LM-OTS scheme"));
        }
        Ok(Self {
            scheme,
            i,
            q,
            seed: Zeroizing::new(random_array(rng)),
        })
    }

    /// The scheme of this key.
    pub fn scheme(&self) -> OtsScheme {
        self.scheme
    }

    /// The matching public key (recomputed each call: 512 hashes for Lamport, p·(2^w − 1) + 1 for
    /// LM-OTS).
    pub fn public_key(&self) -> OtsPublicKey {
        match self.scheme.lmots() {
            None => {
                let mut y = Vec::with_capacity(2 * LAMPORT_BITS);
                for bit in 0..LAMPORT_BITS {
                    for b in 0..2u8 {
                        y.push(sha256(&*self.lamport_secret(bit, b)));
                    }
                }
                OtsPublicKey(PublicInner::Lamport(y))
            }
            Some(params) => {
                // RFC 8554 Algorithm 1: y[i] = chain of 2^w - 1 hashes from x[i]; K = H(I || u32str(q)
                // || u16str(D_PBLC) || y[0] || ... || y[p-1]).
                let mut k = self.lmots_prefix_hasher();
                k.update(&D_PBLC);
                for chain in 0..params.p {
                    let x = self.lmots_secret(chain);
                    k.update(&lmots_chain(
                        &self.i,
                        self.q,
                        chain,
                        *x,
                        0,
                        params.max_digit(),
                    ));
                }
                OtsPublicKey(PublicInner::Lmots {
                    scheme: self.scheme,
                    i: self.i,
                    q: self.q,
                    k: k.finalize(),
                })
            }
        }
    }

    /// Signs `msg`, consuming the key: a one-time key signs once.
    pub fn sign(self, msg: &[u8]) -> OtsSignature {
        match self.scheme.lmots() {
            None => {
                // Lamport: reveal x[i][b_i] for each bit b_i of SHA-256(msg), most significant first.
                let digest = sha256(msg);
                let revealed = (0..LAMPORT_BITS)
                    .map(|bit| *self.lamport_secret(bit, bit_of(&digest, bit)))
                    .collect();
                OtsSignature(SignatureInner::Lamport(revealed))
            }
            Some(params) => {
                // RFC 8554 Algorithm 3.
                let c = {
                    let mut h = self.lmots_prefix_hasher();
                    h.update(&0xFFFDu16.to_be_bytes());
                    h.update(&[0xff]);
                    h.update(&*self.seed);
                    h.finalize()
                };
                let digits = lmots_digits(params, &self.i, self.q, &c, msg);
                let y = (0..params.p)
                    .zip(digits)
                    .map(|(chain, a)| {
                        let x = self.lmots_secret(chain);
                        lmots_chain(&self.i, self.q, chain, *x, 0, a)
                    })
                    .collect();
                OtsSignature(SignatureInner::Lmots {
                    scheme: self.scheme,
                    c,
                    y,
                })
            }
        }
    }

    /// The key's encoding (see the module docs), for transport under an AEAD.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(1 + 16 + 4 + 32));
        out.push(self.scheme.id());
        if self.scheme.lmots().is_some() {
            out.extend_from_slice(&self.i);
            out.extend_from_slice(&self.q.to_be_bytes());
        }
        out.extend_from_slice(&*self.seed);
        out
    }

    /// Decodes [`OtsSecretKey::to_bytes`]'s encoding.
    ///
    /// # Errors
    /// [`Error::UnknownSuite`] for an unknown scheme byte, [`Error::Decode`] for a wrong length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: Error = Error::Decode {
            what: "one-time secret key",
        };
        let (&id, rest) = bytes.split_first().ok_or(WHAT)?;
        let scheme = OtsScheme::try_from(id)?;
        let (i, q, seed) = if scheme.lmots().is_some() {
            let (i, rest) = split_array::<16>(rest).ok_or(WHAT)?;
            let (q, rest) = split_array::<4>(rest).ok_or(WHAT)?;
            (i, u32::from_be_bytes(q), rest)
        } else {
            ([0u8; 16], 0, rest)
        };
        let seed: [u8; 32] = seed.try_into().map_err(|_| WHAT)?;
        Ok(Self {
            scheme,
            i,
            q,
            seed: Zeroizing::new(seed),
        })
    }

    /// The key as a PEM document labelled [`OTS_PRIVATE_KEY_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails.
    pub fn to_pem(&self) -> Result<Zeroizing<String>> {
        crate::pem::encode(OTS_PRIVATE_KEY_LABEL, &self.to_bytes())
    }

    /// Reads a PEM document labelled [`OTS_PRIVATE_KEY_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] for a malformed document or another label; the errors of
    /// [`OtsSecretKey::from_bytes`] for a malformed body.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_bytes(&crate::pem::decode(pem, OTS_PRIVATE_KEY_LABEL)?)
    }

    fn lamport_secret(&self, bit: usize, b: u8) -> Zeroizing<[u8; 32]> {
        let index = u16::try_from(bit).unwrap_or(u16::MAX).to_be_bytes();
        Zeroizing::new(sha256_length_prefixed(&[
            b"m2msec/lamport/sk",
            &*self.seed,
            &index,
            &[b],
        ]))
    }

    /// RFC 8554 Appendix A: x_q[i] = H(I || u32str(q) || u16str(i) || u8str(0xff) || SEED).
    fn lmots_secret(&self, chain: u16) -> Zeroizing<[u8; 32]> {
        let mut h = self.lmots_prefix_hasher();
        h.update(&chain.to_be_bytes());
        h.update(&[0xff]);
        h.update(&*self.seed);
        Zeroizing::new(h.finalize())
    }

    fn lmots_prefix_hasher(&self) -> Sha256 {
        lmots_prefix(&self.i, self.q)
    }
}

/// A one-time public key (the paper's LK_i).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OtsPublicKey(PublicInner);

#[derive(Clone, PartialEq, Eq, Hash)]
enum PublicInner {
    /// y[2·i + b] = H(x[i][b]), 512 entries.
    Lamport(Vec<[u8; 32]>),
    Lmots {
        scheme: OtsScheme,
        i: [u8; 16],
        q: u32,
        k: [u8; 32],
    },
}

impl core::fmt::Debug for OtsPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OtsPublicKey")
            .field("scheme", &self.scheme())
            .field("id", &crate::hash::Fingerprint::of(&self.id()))
            .finish()
    }
}

impl OtsPublicKey {
    /// The scheme of this key.
    pub fn scheme(&self) -> OtsScheme {
        match &self.0 {
            PublicInner::Lamport(_) => OtsScheme::Lamport,
            PublicInner::Lmots { scheme, .. } => *scheme,
        }
    }

    /// The key's encoding (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.scheme().public_key_len());
        out.push(self.scheme().id());
        match &self.0 {
            PublicInner::Lamport(y) => y.iter().for_each(|h| out.extend_from_slice(h)),
            PublicInner::Lmots { scheme, i, q, k } => {
                out.extend_from_slice(&scheme.lmots_typecode().unwrap_or(0).to_be_bytes());
                out.extend_from_slice(i);
                out.extend_from_slice(&q.to_be_bytes());
                out.extend_from_slice(k);
            }
        }
        out
    }

    /// Decodes [`OtsPublicKey::to_bytes`]'s encoding.
    ///
    /// # Errors
    /// [`Error::UnknownSuite`] for an unknown scheme byte, [`Error::Decode`] for a wrong length or an
    /// LM-OTS type code that disagrees with the scheme byte.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: Error = Error::Decode {
            what: "one-time public key",
        };
        let (scheme, rest) = read_head(bytes, OtsScheme::public_key_len, WHAT)?;
        if scheme.lmots().is_none() {
            return Ok(Self(PublicInner::Lamport(hashes(rest))));
        }
        let (i, rest) = split_array::<16>(rest).ok_or(WHAT)?;
        let (q, rest) = split_array::<4>(rest).ok_or(WHAT)?;
        let (k, _) = split_array::<32>(rest).ok_or(WHAT)?;
        Ok(Self(PublicInner::Lmots {
            scheme,
            i,
            q: u32::from_be_bytes(q),
            k,
        }))
    }

    /// The key as a PEM document labelled [`OTS_PUBLIC_KEY_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails.
    pub fn to_pem(&self) -> Result<String> {
        crate::pem::encode(OTS_PUBLIC_KEY_LABEL, &self.to_bytes()).map(|s| s.to_string())
    }

    /// Reads a PEM document labelled [`OTS_PUBLIC_KEY_LABEL`].
    ///
    /// # Errors
    /// [`Error::Pem`] for a malformed document or another label; the errors of
    /// [`OtsPublicKey::from_bytes`] for a malformed body.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_bytes(&crate::pem::decode(pem, OTS_PUBLIC_KEY_LABEL)?)
    }

    /// SHA-256 of [`OtsPublicKey::to_bytes`]: the paper's ID_i = H(LK_i), the Merkle leaf.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.to_bytes())
    }

    /// Verifies `sig` on `msg`.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the signature is not valid for this key and message, including
    /// a signature of another scheme.
    pub fn verify(&self, msg: &[u8], sig: &OtsSignature) -> Result<()> {
        let ok = match (&self.0, &sig.0) {
            (PublicInner::Lamport(y), SignatureInner::Lamport(revealed)) => {
                let digest = sha256(msg);
                let mut ok = subtle::Choice::from(1u8);
                for (bit, x) in revealed.iter().enumerate() {
                    let b = usize::from(bit_of(&digest, bit));
                    let expected = y.get(2 * bit + b).ok_or(Error::Authentication)?;
                    ok &= subtle::ConstantTimeEq::ct_eq(&sha256(x)[..], &expected[..]);
                }
                bool::from(ok) && revealed.len() == LAMPORT_BITS
            }
            (PublicInner::Lmots { scheme, i, q, k }, SignatureInner::Lmots { scheme: s, .. })
                if scheme == s =>
            {
                let candidate = sig.lmots_candidate_public_key(i, *q, msg)?;
                crate::ct::eq(&candidate, k)
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Authentication)
        }
    }
}

/// A one-time signature.
#[derive(Clone, PartialEq, Eq)]
pub struct OtsSignature(SignatureInner);

#[derive(Clone, PartialEq, Eq)]
enum SignatureInner {
    /// The 256 revealed preimages.
    Lamport(Vec<[u8; 32]>),
    Lmots {
        scheme: OtsScheme,
        c: [u8; 32],
        y: Vec<[u8; 32]>,
    },
}

impl core::fmt::Debug for OtsSignature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OtsSignature")
            .field("scheme", &self.scheme())
            .finish_non_exhaustive()
    }
}

impl OtsSignature {
    /// The scheme that made this signature.
    pub fn scheme(&self) -> OtsScheme {
        match &self.0 {
            SignatureInner::Lamport(_) => OtsScheme::Lamport,
            SignatureInner::Lmots { scheme, .. } => *scheme,
        }
    }

    /// The signature's encoding (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.scheme().signature_len());
        out.push(self.scheme().id());
        match &self.0 {
            SignatureInner::Lamport(x) => x.iter().for_each(|h| out.extend_from_slice(h)),
            SignatureInner::Lmots { scheme, c, y } => {
                out.extend_from_slice(&scheme.lmots_typecode().unwrap_or(0).to_be_bytes());
                out.extend_from_slice(c);
                y.iter().for_each(|h| out.extend_from_slice(h));
            }
        }
        out
    }

    /// Decodes [`OtsSignature::to_bytes`]'s encoding.
    ///
    /// # Errors
    /// [`Error::UnknownSuite`] for an unknown scheme byte, [`Error::Decode`] for a wrong length or an
    /// LM-OTS type code that disagrees with the scheme byte.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: Error = Error::Decode {
            what: "one-time signature",
        };
        let (scheme, rest) = read_head(bytes, OtsScheme::signature_len, WHAT)?;
        if scheme.lmots().is_none() {
            return Ok(Self(SignatureInner::Lamport(hashes(rest))));
        }
        let (c, rest) = split_array::<32>(rest).ok_or(WHAT)?;
        Ok(Self(SignatureInner::Lmots {
            scheme,
            c,
            y: hashes(rest),
        }))
    }

    /// RFC 8554 Algorithm 4b: the candidate public key Kc that this LM-OTS signature yields for
    /// `msg` under key identifier `i` and leaf index `q`.
    ///
    /// A signature is valid exactly when Kc equals the signer's K; inside an LMS tree, Kc is what the
    /// leaf hash is computed from. [`OtsPublicKey::verify`] uses this; it is public so that an
    /// RFC 8554 known-answer test (or an LMS verifier) can use it too.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if this is a Lamport signature.
    pub fn lmots_candidate_public_key(&self, i: &[u8; 16], q: u32, msg: &[u8]) -> Result<[u8; 32]> {
        let SignatureInner::Lmots { scheme, c, y } = &self.0 else {
            return Err(Error::InvalidParameter("not an LM-OTS signature"));
        };
        let params = scheme
            .lmots()
            .ok_or(Error::InvalidParameter("not an LM-OTS signature"))?;
        let digits = lmots_digits(params, i, q, c, msg);
        let mut kc = lmots_prefix(i, q);
        kc.update(&D_PBLC);
        for ((chain, a), yi) in (0..params.p).zip(digits).zip(y) {
            kc.update(&lmots_chain(i, q, chain, *yi, a, params.max_digit()));
        }
        Ok(kc.finalize())
    }
}

/// Bit `index` of `digest`, most significant bit of byte 0 first.
fn bit_of(digest: &[u8; 32], index: usize) -> u8 {
    (digest[index / 8] >> (7 - (index % 8))) & 1
}

/// A hasher preloaded with I || u32str(q), the prefix of every LM-OTS hash.
fn lmots_prefix(i: &[u8; 16], q: u32) -> Sha256 {
    let mut h = Sha256::new();
    h.update(i);
    h.update(&q.to_be_bytes());
    h
}

/// Iterates the LM-OTS chain function from step `from` up to (excluding) `to`:
/// tmp = H(I || u32str(q) || u16str(i) || u8str(j) || tmp)  (RFC 8554 Algorithms 1, 3, 4b).
fn lmots_chain(i: &[u8; 16], q: u32, chain: u16, start: [u8; 32], from: u8, to: u8) -> [u8; 32] {
    let prefix = {
        let mut h = lmots_prefix(i, q);
        h.update(&chain.to_be_bytes());
        h
    };
    let mut tmp = Zeroizing::new(start);
    for j in from..to {
        let mut h = prefix.clone();
        h.update(&[j]);
        h.update(&*tmp);
        *tmp = h.finalize();
    }
    *tmp
}

/// The p base-2^w digits a signature's chains stop at: coef(Q || Cksm(Q), i, w) for i in 0..p,
/// with Q = H(I || u32str(q) || u16str(D_MESG) || C || message) (RFC 8554 sections 4.4, 4.5).
fn lmots_digits(
    params: LmotsParams,
    i: &[u8; 16],
    q: u32,
    c: &[u8; 32],
    msg: &[u8],
) -> impl Iterator<Item = u8> {
    let mut h = lmots_prefix(i, q);
    h.update(&D_MESG);
    h.update(c);
    h.update(msg);
    let digest = h.finalize();
    let mut qc = [0u8; N + 2];
    qc[..N].copy_from_slice(&digest);
    qc[N..].copy_from_slice(&checksum(params, &digest).to_be_bytes());
    (0..usize::from(params.p)).map(move |idx| coef(&qc, idx, params.w))
}

/// RFC 8554 section 3.1.3: coef(S, i, w) = (2^w - 1) AND (byte(S, floor(i * w / 8)) >>
/// (8 - (w * (i % (8 / w)) + w))).
fn coef(s: &[u8], i: usize, w: u8) -> u8 {
    let w = usize::from(w);
    let digits_per_byte = 8 / w;
    let byte = s.get(i * w / 8).copied().unwrap_or(0);
    let shift = 8 - (w * (i % digits_per_byte) + w);
    let mask = u8::try_from((1u16 << w) - 1).unwrap_or(u8::MAX);
    (byte >> shift) & mask
}

/// Reads what every encoding of a one-time public key or signature starts with: the scheme
/// byte, checked against the whole length (`len_of` the scheme), and for LM-OTS the RFC 8554
/// type code, which must agree with it. Returns the scheme and what follows: the hashes for
/// Lamport, the rest after the type code for LM-OTS.
fn read_head(
    bytes: &[u8],
    len_of: fn(OtsScheme) -> usize,
    what: Error,
) -> Result<(OtsScheme, &[u8])> {
    let (&id, rest) = bytes.split_first().ok_or(what.clone())?;
    let scheme = OtsScheme::try_from(id)?;
    if bytes.len() != len_of(scheme) {
        return Err(what);
    }
    if scheme.lmots().is_none() {
        return Ok((scheme, rest));
    }
    let (typecode, rest) = split_array::<4>(rest).ok_or(what.clone())?;
    if OtsScheme::from_lmots_typecode(u32::from_be_bytes(typecode)) != Ok(scheme) {
        return Err(what);
    }
    Ok((scheme, rest))
}

/// RFC 8554 section 4.4: Cksm(S) = (sum of (2^w - 1 - coef(S, i, w)) over the n·8/w digits of S)
/// << ls.
fn checksum(params: LmotsParams, s: &[u8; N]) -> u16 {
    let digits = N * 8 / usize::from(params.w);
    let max = u16::from(params.max_digit());
    let sum: u16 = (0..digits)
        .map(|i| max - u16::from(coef(s, i, params.w)))
        .sum();
    sum << params.ls
}

fn split_array<const L: usize>(bytes: &[u8]) -> Option<([u8; L], &[u8])> {
    let (head, tail) = bytes.split_at_checked(L)?;
    Some((head.try_into().ok()?, tail))
}

/// Cuts `bytes` (a multiple of 32 long, checked by the callers) into 32-byte hashes.
fn hashes(bytes: &[u8]) -> Vec<[u8; 32]> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut h = [0u8; N];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn sign_verify_every_scheme() {
        let mut rng = SeededRng::from_seed_u64(3);
        for scheme in OtsScheme::ALL {
            let sk = OtsSecretKey::generate(scheme, &mut rng);
            let pk = sk.public_key();
            assert_eq!(pk.to_bytes().len(), scheme.public_key_len());
            let sig = sk.sign(b"message");
            assert_eq!(sig.to_bytes().len(), scheme.signature_len(), "{scheme:?}");
            pk.verify(b"message", &sig).unwrap();
            assert_eq!(pk.verify(b"massage", &sig), Err(Error::Authentication));
            let pk2 = OtsPublicKey::from_bytes(&pk.to_bytes()).unwrap();
            assert_eq!(pk2, pk);
            let sig2 = OtsSignature::from_bytes(&sig.to_bytes()).unwrap();
            pk2.verify(b"message", &sig2).unwrap();
        }
    }

    #[test]
    fn checksum_extremes() {
        let p = OtsScheme::LmotsSha256N32W1.lmots().unwrap();
        assert_eq!(checksum(p, &[0u8; 32]), 256 << 7);
        let p = OtsScheme::LmotsSha256N32W8.lmots().unwrap();
        assert_eq!(checksum(p, &[0u8; 32]), 32 * 255);
        assert_eq!(checksum(p, &[0xffu8; 32]), 0);
    }

    #[test]
    fn coef_matches_rfc_example() {
        // RFC 8554 section 3.1.3: S = 0x1234, coef(S, 7, 1) = 0, coef(S, 0, 4) = 1.
        let s = [0x12u8, 0x34];
        assert_eq!(coef(&s, 7, 1), 0);
        assert_eq!(coef(&s, 0, 4), 1);
        assert_eq!(coef(&s, 3, 4), 4);
        assert_eq!(coef(&s, 1, 8), 0x34);
    }
}
