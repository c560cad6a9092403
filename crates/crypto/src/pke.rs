//! Public-key encryption to a server: ECIES over X25519 (default) and RSA-OAEP-2048 (classic).
//!
//! Both suites are hybrid (KEM/DEM), so plaintexts of any length work and `aad` is authenticated:
//!
//! - **X25519-ECIES** (id 1): an ephemeral X25519 key pair per message; the shared secret and both
//!   public keys go through HKDF-SHA-256 (`salt` = [`ECIES_SALT`], `ikm` = eph_pk || recipient_pk ||
//!   shared, `info` = [`ECIES_INFO`]) into a ChaCha20-Poly1305 key, used once with the all-zero nonce.
//!   Binding both public keys into the KDF is what ECIES-KEM (ISO 18033-2) and HPKE (RFC 9180) do.
//!   Ciphertext: `0x01 || eph_pk(32) || ChaCha20-Poly1305(pt, aad) (len + 16)`. Overhead 49 bytes.
//! - **RSA-OAEP-2048** (id 2, the papers' classic choice): a fresh 32-byte ChaCha20-Poly1305 key is
//!   wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) and the payload sealed under it with
//!   the all-zero nonce. Ciphertext: `0x02 || OAEP(key) (256) || ChaCha20-Poly1305(pt, aad)`.
//!   **Security warning:** the `rsa` crate is subject to RUSTSEC-2023-0071 (Marvin timing attack on
//!   private-key operations); see the crate docs. We decrypt with RSA blinding, whose blinding factor
//!   comes from a per-key secret and the ciphertext (so decryption needs no RNG), but timing
//!   differences are not fully removed. Opt in only where that is acceptable.
//!
//! Every failure to decrypt is [`Error::Authentication`], whatever the reason.

use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::aead::{AeadKey, AeadSuite};
use crate::hash::debug_public;
use crate::pem::RSA_BYTES;
use crate::rng::{CryptoRng, SeededRng};
use crate::suite::wire_ids;
use crate::{Error, Result, pem};

/// HKDF salt of X25519-ECIES.
pub const ECIES_SALT: &[u8] = b"m2msec pke v1";
/// HKDF info of X25519-ECIES.
pub const ECIES_INFO: &[u8] = b"m2msec/pke/x25519-ecies/chacha20poly1305";

const DEM: AeadSuite = AeadSuite::ChaCha20Poly1305;
const DEM_NONCE: [u8; 12] = [0u8; 12];

wire_ids! {
    /// A public-key encryption suite with its wire identifier.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum PkeSuite {
        /// ECIES over X25519 with HKDF-SHA-256 and ChaCha20-Poly1305: the default.
        X25519Ecies = 1,
        /// RSA-OAEP-SHA-256 with a 2048-bit modulus wrapping a ChaCha20-Poly1305 key: classic, opt-in
        /// (RUSTSEC-2023-0071, see the module docs).
        RsaOaep2048 = 2,
    }
}

impl PkeSuite {
    /// Bytes a ciphertext adds to its plaintext.
    pub const fn overhead(self) -> usize {
        match self {
            Self::X25519Ecies => 1 + 32 + 16,
            Self::RsaOaep2048 => 1 + RSA_BYTES + 16,
        }
    }
}

/// A decryption key. Zeroized on drop; `Debug` shows the suite only.
pub struct PkeSecretKey(SecretInner);

enum SecretInner {
    X25519 {
        secret: x25519_dalek::StaticSecret,
        public: x25519_dalek::PublicKey,
    },
    Rsa {
        key: Box<rsa::RsaPrivateKey>,
        /// Secret seed of the deterministic blinding RNG (derived from the private exponent).
        blinding: Zeroizing<[u8; 32]>,
    },
}

impl ZeroizeOnDrop for PkeSecretKey {}

impl core::fmt::Debug for PkeSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PkeSecretKey")
            .field("suite", &self.suite())
            .finish_non_exhaustive()
    }
}

impl PkeSecretKey {
    /// A fresh key pair.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if RSA key generation fails (it does not with a working RNG).
    pub fn generate(suite: PkeSuite, rng: &mut dyn CryptoRng) -> Result<Self> {
        match suite {
            PkeSuite::X25519Ecies => Ok(Self::from_x25519(
                x25519_dalek::StaticSecret::random_from_rng(&mut *rng),
            )),
            PkeSuite::RsaOaep2048 => {
                let mut rng = rng;
                let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BYTES * 8)
                    .map_err(|_| Error::InvalidParameter("RSA key generation failed"))?;
                Ok(Self::from_rsa(key))
            }
        }
    }

    fn from_x25519(secret: x25519_dalek::StaticSecret) -> Self {
        crate::keylog::log("x25519 secret key", secret.as_bytes());
        let public = x25519_dalek::PublicKey::from(&secret);
        Self(SecretInner::X25519 { secret, public })
    }

    fn from_rsa(key: rsa::RsaPrivateKey) -> Self {
        let d = Zeroizing::new(rsa::traits::PrivateKeyParts::d(&key).to_bytes_be());
        crate::keylog::log("rsa private exponent", &d);
        let blinding = Zeroizing::new(crate::hash::sha256_length_prefixed(&[
            b"m2msec/pke/rsa-blinding",
            &d,
        ]));
        Self(SecretInner::Rsa {
            key: Box::new(key),
            blinding,
        })
    }

    /// The suite of this key.
    pub fn suite(&self) -> PkeSuite {
        match &self.0 {
            SecretInner::X25519 { .. } => PkeSuite::X25519Ecies,
            SecretInner::Rsa { .. } => PkeSuite::RsaOaep2048,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PkePublicKey {
        match &self.0 {
            SecretInner::X25519 { public, .. } => PkePublicKey(PublicInner::X25519(*public)),
            SecretInner::Rsa { key, .. } => {
                PkePublicKey(PublicInner::Rsa(Box::new(key.to_public_key())))
            }
        }
    }

    /// Decrypts a ciphertext made by [`PkePublicKey::encrypt`] with the same `aad`.
    ///
    /// # Errors
    /// [`Error::Authentication`] for any failure: wrong key, suite, aad, truncation or tampering.
    pub fn decrypt(&self, aad: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (&id, body) = ciphertext.split_first().ok_or(Error::Authentication)?;
        if id != self.suite().id() {
            return Err(Error::Authentication);
        }
        match &self.0 {
            SecretInner::X25519 { secret, public } => {
                let (eph, sealed) = body.split_at_checked(32).ok_or(Error::Authentication)?;
                let eph: [u8; 32] = eph.try_into().map_err(|_| Error::Authentication)?;
                let eph = x25519_dalek::PublicKey::from(eph);
                let shared = secret.diffie_hellman(&eph);
                if !shared.was_contributory() {
                    return Err(Error::Authentication);
                }
                let key = ecies_key(&eph, public, shared.as_bytes())?;
                key.open(&DEM_NONCE, aad, sealed)
            }
            SecretInner::Rsa { key, blinding } => {
                let (wrapped, sealed) = body
                    .split_at_checked(RSA_BYTES)
                    .ok_or(Error::Authentication)?;
                let mut blinding_rng =
                    SeededRng::from_seed(crate::hash::sha256_length_prefixed(&[
                        &blinding[..],
                        wrapped,
                    ]));
                let dem_key = Zeroizing::new(
                    key.decrypt_blinded(
                        &mut blinding_rng,
                        rsa::Oaep::new::<sha2::Sha256>(),
                        wrapped,
                    )
                    .map_err(|_| Error::Authentication)?,
                );
                let dem = AeadKey::new(DEM, &dem_key).map_err(|_| Error::Authentication)?;
                dem.open(&DEM_NONCE, aad, sealed)
            }
        }
    }

    /// The key as a PKCS#8 PEM document ("PRIVATE KEY").
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails.
    pub fn to_pem(&self) -> Result<Zeroizing<String>> {
        pem::encode(pem::PRIVATE_KEY_LABEL, &self.to_der()?)
    }

    /// The key's PKCS#8 DER.
    pub(crate) fn to_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        match &self.0 {
            SecretInner::X25519 { secret, .. } => pem::x25519_private_to_der(&secret.to_bytes()),
            SecretInner::Rsa { key, .. } => {
                Ok(key.to_pkcs8_der().map_err(pem::pem_error)?.to_bytes())
            }
        }
    }

    /// Reads a PKCS#8 PEM document holding an X25519 or RSA-2048 private key.
    ///
    /// # Errors
    /// [`Error::Pem`] if the document is malformed, of another algorithm, or an RSA key not of 2048
    /// bits.
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        Self::from_der(&pem::decode(pem_text, pem::PRIVATE_KEY_LABEL)?)
    }

    /// Reads PKCS#8 DER, as [`PkeSecretKey::from_pem`].
    pub(crate) fn from_der(der: &[u8]) -> Result<Self> {
        pem::read_private(
            der,
            &[
                (pem::OID_X25519, |der| {
                    let bytes = pem::x25519_private_from_der(der)?;
                    Ok(Self::from_x25519(x25519_dalek::StaticSecret::from(*bytes)))
                }),
                (pem::OID_RSA, |der| {
                    Ok(Self::from_rsa(pem::rsa_private_from_der(der)?))
                }),
            ],
        )
    }
}

/// An encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct PkePublicKey(PublicInner);

#[derive(Clone, PartialEq, Eq)]
enum PublicInner {
    X25519(x25519_dalek::PublicKey),
    Rsa(Box<rsa::RsaPublicKey>),
}

impl PkePublicKey {
    /// The suite of this key.
    pub fn suite(&self) -> PkeSuite {
        match &self.0 {
            PublicInner::X25519(_) => PkeSuite::X25519Ecies,
            PublicInner::Rsa(_) => PkeSuite::RsaOaep2048,
        }
    }

    /// Encrypts `plaintext` to this key, authenticating `aad` (which is not included).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the X25519 public key has low order (no shared secret) or RSA
    /// encryption fails.
    pub fn encrypt(
        &self,
        rng: &mut dyn CryptoRng,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + self.suite().overhead());
        out.push(self.suite().id());
        match &self.0 {
            PublicInner::X25519(recipient) => {
                let eph = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
                let eph_pk = x25519_dalek::PublicKey::from(&eph);
                let shared = eph.diffie_hellman(recipient);
                if !shared.was_contributory() {
                    return Err(Error::InvalidParameter("low-order X25519 public key"));
                }
                let key = ecies_key(&eph_pk, recipient, shared.as_bytes())?;
                out.extend_from_slice(eph_pk.as_bytes());
                out.extend_from_slice(&key.seal(&DEM_NONCE, aad, plaintext)?);
            }
            PublicInner::Rsa(recipient) => {
                let dem = AeadKey::generate(DEM, rng);
                let mut rng = rng;
                let wrapped = recipient
                    .encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), dem.as_bytes())
                    .map_err(|_| Error::InvalidParameter("RSA-OAEP encryption failed"))?;
                out.extend_from_slice(&wrapped);
                out.extend_from_slice(&dem.seal(&DEM_NONCE, aad, plaintext)?);
            }
        }
        Ok(out)
    }

    /// Encoding: suite id, then the raw 32-byte X25519 key or the RSA key's SubjectPublicKeyInfo DER.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.suite().id()];
        match &self.0 {
            PublicInner::X25519(pk) => out.extend_from_slice(pk.as_bytes()),
            // Encoding a well-formed in-memory RSA key cannot fail; an empty body would be rejected
            // by `from_bytes` rather than misread.
            PublicInner::Rsa(pk) => {
                if let Ok(doc) = pk.to_public_key_der() {
                    out.extend_from_slice(doc.as_bytes());
                }
            }
        }
        out
    }

    /// Decodes [`PkePublicKey::to_bytes`]'s encoding.
    ///
    /// # Errors
    /// [`Error::UnknownSuite`] for an unknown suite byte, [`Error::Decode`] for a malformed key or an
    /// RSA modulus that is not 2048 bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: Error = Error::Decode {
            what: "PKE public key",
        };
        let (&id, rest) = bytes.split_first().ok_or(WHAT)?;
        match PkeSuite::try_from(id)? {
            PkeSuite::X25519Ecies => {
                let raw: [u8; 32] = rest.try_into().map_err(|_| WHAT)?;
                Ok(Self(PublicInner::X25519(x25519_dalek::PublicKey::from(
                    raw,
                ))))
            }
            PkeSuite::RsaOaep2048 => {
                let pk = pem::rsa_public_from_der(rest).map_err(|_| WHAT)?;
                Ok(Self(PublicInner::Rsa(Box::new(pk))))
            }
        }
    }

    /// The key as a SubjectPublicKeyInfo PEM document ("PUBLIC KEY").
    ///
    /// # Errors
    /// [`Error::Pem`] if encoding fails.
    pub fn to_pem(&self) -> Result<String> {
        pem::encode(pem::PUBLIC_KEY_LABEL, &self.to_der()?).map(|s| s.to_string())
    }

    /// The key's SubjectPublicKeyInfo DER.
    pub(crate) fn to_der(&self) -> Result<Vec<u8>> {
        match &self.0 {
            PublicInner::X25519(pk) => pem::x25519_public_to_der(pk.as_bytes()),
            PublicInner::Rsa(pk) => Ok(pk.to_public_key_der().map_err(pem::pem_error)?.into_vec()),
        }
    }

    /// Reads a SubjectPublicKeyInfo PEM document holding an X25519 or RSA-2048 public key.
    ///
    /// # Errors
    /// [`Error::Pem`] if the document is malformed, of another algorithm, or not 2048-bit RSA.
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        Self::from_der(&pem::decode(pem_text, pem::PUBLIC_KEY_LABEL)?)
    }

    /// Reads SubjectPublicKeyInfo DER, as [`PkePublicKey::from_pem`].
    pub(crate) fn from_der(der: &[u8]) -> Result<Self> {
        pem::read_public(
            der,
            &[
                (pem::OID_X25519, |der| {
                    let raw = pem::x25519_public_from_der(der)?;
                    Ok(Self(PublicInner::X25519(raw.into())))
                }),
                (pem::OID_RSA, |der| {
                    let pk = pem::rsa_public_from_der(der)?;
                    Ok(Self(PublicInner::Rsa(Box::new(pk))))
                }),
            ],
        )
    }
}

impl core::fmt::Debug for PkePublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        debug_public(
            f,
            "PkePublicKey",
            ("suite", &self.suite()),
            &self.to_bytes(),
        )
    }
}

fn ecies_key(
    eph: &x25519_dalek::PublicKey,
    recipient: &x25519_dalek::PublicKey,
    shared: &[u8; 32],
) -> Result<AeadKey> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(eph.as_bytes());
    ikm[32..64].copy_from_slice(recipient.as_bytes());
    ikm[64..].copy_from_slice(shared);
    AeadKey::derive(DEM, &ikm[..], ECIES_SALT, ECIES_INFO)
}

// Crate-visible access to the RSA key material, for protocols that fix their own RSA padding (MIKEY's
// PKCS#1 v1.5 envelope-key encryption, `crate::mikey`). Not part of the public API.
impl PkeSecretKey {
    /// The RSA private key and its secret blinding seed, if this is an RSA key.
    pub(crate) fn rsa_parts(&self) -> Option<(&rsa::RsaPrivateKey, &[u8; 32])> {
        match &self.0 {
            SecretInner::Rsa { key, blinding } => Some((key, blinding)),
            SecretInner::X25519 { .. } => None,
        }
    }
}

impl PkePublicKey {
    /// The RSA public key, if this is an RSA key.
    pub(crate) fn rsa_public(&self) -> Option<&rsa::RsaPublicKey> {
        match &self.0 {
            PublicInner::Rsa(pk) => Some(pk),
            PublicInner::X25519(_) => None,
        }
    }
}
