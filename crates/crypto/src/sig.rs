//! Signatures: Ed25519 (default) and RSA-PSS-2048 (classic).
//!
//! - **Ed25519** (id 1, RFC 8032) via `ed25519-dalek`: deterministic, 64-byte signatures; verification
//!   is `verify_strict` (rejects small-order keys and non-canonical encodings, so a signature cannot be
//!   malleated into a second valid one).
//! - **RSA-PSS-2048** (id 2, RFC 8017 section 8.1) with SHA-256, MGF1-SHA-256 and a 32-byte salt,
//!   via `rsa` with blinding. **Security warning:** RUSTSEC-2023-0071 (Marvin timing attack) applies
//!   to the `rsa` crate's private-key operations; see the crate docs. Classic, opt-in only.
//!
//! Signatures are raw bytes (64 or 256); keys carry their suite.

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Verifier as _};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::hash::debug_public;
use crate::pem::RSA_BYTES;
use crate::rng::CryptoRng;
use crate::suite::wire_ids;
use crate::{Error, Result, pem};

wire_ids! {
    /// A signature suite with its wire identifier.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SigSuite {
        /// Ed25519 (RFC 8032): the default.
        Ed25519 = 1,
        /// RSA-PSS with SHA-256 and a 2048-bit modulus: classic, opt-in (RUSTSEC-2023-0071).
        RsaPss2048 = 2,
    }
}

impl SigSuite {
    /// Length of a signature in bytes.
    pub const fn signature_len(self) -> usize {
        match self {
            Self::Ed25519 => 64,
            Self::RsaPss2048 => RSA_BYTES,
        }
    }
}

/// A signing key. Zeroized on drop; `Debug` shows the suite only.
pub struct SigningKey(SigningInner);

enum SigningInner {
    // Boxed so that both variants are small and the enum moves cheaply.
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Rsa(Box<rsa::pss::BlindedSigningKey<sha2::Sha256>>),
}

impl ZeroizeOnDrop for SigningKey {}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey")
            .field("suite", &self.suite())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Hands the secret to the key log ([`crate::keylog`]) on its way out of a constructor.
    fn logged(self) -> Self {
        if crate::keylog::enabled() {
            match &self.0 {
                SigningInner::Ed25519(sk) => {
                    crate::keylog::log("ed25519 secret key", sk.as_bytes())
                }
                SigningInner::Rsa(sk) => {
                    let private: &rsa::RsaPrivateKey = (**sk).as_ref();
                    let d = Zeroizing::new(rsa::traits::PrivateKeyParts::d(private).to_bytes_be());
                    crate::keylog::log("rsa private exponent", &d);
                }
            }
        }
        self
    }

    /// A fresh key pair.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if RSA key generation fails (it does not with a working RNG).
    pub fn generate(suite: SigSuite, rng: &mut dyn CryptoRng) -> Result<Self> {
        let mut rng = rng;
        match suite {
            SigSuite::Ed25519 => Ok(Self(SigningInner::Ed25519(Box::new(
                ed25519_dalek::SigningKey::generate(&mut rng),
            )))
            .logged()),
            SigSuite::RsaPss2048 => {
                let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BYTES * 8)
                    .map_err(|_| Error::InvalidParameter("RSA key generation failed"))?;
                Ok(Self(SigningInner::Rsa(Box::new(key.into()))).logged())
            }
        }
    }

    /// The suite of this key.
    pub fn suite(&self) -> SigSuite {
        match &self.0 {
            SigningInner::Ed25519(_) => SigSuite::Ed25519,
            SigningInner::Rsa(_) => SigSuite::RsaPss2048,
        }
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.0 {
            SigningInner::Ed25519(sk) => VerifyingKey(VerifyingInner::Ed25519(sk.verifying_key())),
            SigningInner::Rsa(sk) => {
                let private: &rsa::RsaPrivateKey = (**sk).as_ref();
                VerifyingKey(VerifyingInner::Rsa(Box::new(private.to_public_key())))
            }
        }
    }

    /// Signs `msg`. Ed25519 is deterministic and ignores `rng`; RSA-PSS draws its salt and blinding
    /// factor from it.
    pub fn sign(&self, rng: &mut dyn CryptoRng, msg: &[u8]) -> Vec<u8> {
        match &self.0 {
            SigningInner::Ed25519(sk) => {
                ed25519_dalek::Signer::sign(&**sk, msg).to_bytes().to_vec()
            }
            SigningInner::Rsa(sk) => {
                // `sign_with_rng` panics only if the key is too small for SHA-256 PSS, which a
                // 2048-bit key (enforced at generation and import) never is.
                let mut rng = rng;
                sk.sign_with_rng(&mut rng, msg).to_vec()
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
        let document = match &self.0 {
            SigningInner::Ed25519(sk) => sk.to_pkcs8_der(),
            SigningInner::Rsa(sk) => {
                let private: &rsa::RsaPrivateKey = (**sk).as_ref();
                rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(private)
            }
        };
        Ok(document.map_err(pem::pem_error)?.to_bytes())
    }

    /// Reads a PKCS#8 PEM document holding an Ed25519 or RSA-2048 private key.
    ///
    /// # Errors
    /// [`Error::Pem`] if the document is malformed, of another algorithm, or not 2048-bit RSA.
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        Self::from_der(&pem::decode(pem_text, pem::PRIVATE_KEY_LABEL)?)
    }

    /// Reads PKCS#8 DER, as [`SigningKey::from_pem`].
    pub(crate) fn from_der(der: &[u8]) -> Result<Self> {
        pem::read_private(
            der,
            &[
                (pem::OID_ED25519, |der| {
                    let sk =
                        ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(pem::pem_error)?;
                    Ok(Self(SigningInner::Ed25519(Box::new(sk))).logged())
                }),
                (pem::OID_RSA, |der| {
                    let key = pem::rsa_private_from_der(der)?;
                    Ok(Self(SigningInner::Rsa(Box::new(key.into()))).logged())
                }),
            ],
        )
    }
}

/// A verifying key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey(VerifyingInner);

#[derive(Clone, PartialEq, Eq)]
enum VerifyingInner {
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(Box<rsa::RsaPublicKey>),
}

impl VerifyingKey {
    /// The suite of this key.
    pub fn suite(&self) -> SigSuite {
        match &self.0 {
            VerifyingInner::Ed25519(_) => SigSuite::Ed25519,
            VerifyingInner::Rsa(_) => SigSuite::RsaPss2048,
        }
    }

    /// Verifies `sig` on `msg`.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the signature is invalid or malformed.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        match &self.0 {
            VerifyingInner::Ed25519(pk) => {
                let sig =
                    ed25519_dalek::Signature::from_slice(sig).map_err(|_| Error::Authentication)?;
                pk.verify_strict(msg, &sig)
                    .map_err(|_| Error::Authentication)
            }
            VerifyingInner::Rsa(pk) => {
                if sig.len() != RSA_BYTES {
                    return Err(Error::Authentication);
                }
                let sig = rsa::pss::Signature::try_from(sig).map_err(|_| Error::Authentication)?;
                let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new((**pk).clone());
                vk.verify(msg, &sig).map_err(|_| Error::Authentication)
            }
        }
    }

    /// Encoding: suite id, then the raw 32-byte Ed25519 key or the RSA key's SubjectPublicKeyInfo DER.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.suite().id()];
        match &self.0 {
            VerifyingInner::Ed25519(pk) => out.extend_from_slice(pk.as_bytes()),
            // Encoding a well-formed in-memory RSA key cannot fail; an empty body would be rejected
            // by `from_bytes` rather than misread.
            VerifyingInner::Rsa(pk) => {
                if let Ok(doc) = rsa::pkcs8::EncodePublicKey::to_public_key_der(&**pk) {
                    out.extend_from_slice(doc.as_bytes());
                }
            }
        }
        out
    }

    /// Decodes [`VerifyingKey::to_bytes`]'s encoding.
    ///
    /// # Errors
    /// [`Error::UnknownSuite`] for an unknown suite byte, [`Error::Decode`] for a malformed key (an
    /// Ed25519 encoding that is not a curve point, an RSA modulus that is not 2048 bits).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: Error = Error::Decode {
            what: "verifying key",
        };
        let (&id, rest) = bytes.split_first().ok_or(WHAT)?;
        match SigSuite::try_from(id)? {
            SigSuite::Ed25519 => {
                let raw: [u8; 32] = rest.try_into().map_err(|_| WHAT)?;
                let pk = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| WHAT)?;
                Ok(Self(VerifyingInner::Ed25519(pk)))
            }
            SigSuite::RsaPss2048 => {
                let pk = pem::rsa_public_from_der(rest).map_err(|_| WHAT)?;
                Ok(Self(VerifyingInner::Rsa(Box::new(pk))))
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
        let document = match &self.0 {
            VerifyingInner::Ed25519(pk) => pk.to_public_key_der(),
            VerifyingInner::Rsa(pk) => rsa::pkcs8::EncodePublicKey::to_public_key_der(&**pk),
        };
        Ok(document.map_err(pem::pem_error)?.into_vec())
    }

    /// Reads a SubjectPublicKeyInfo PEM document holding an Ed25519 or RSA-2048 public key.
    ///
    /// # Errors
    /// [`Error::Pem`] if the document is malformed, of another algorithm, or not 2048-bit RSA.
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        Self::from_der(&pem::decode(pem_text, pem::PUBLIC_KEY_LABEL)?)
    }

    /// Reads SubjectPublicKeyInfo DER, as [`VerifyingKey::from_pem`].
    pub(crate) fn from_der(der: &[u8]) -> Result<Self> {
        pem::read_public(
            der,
            &[
                (pem::OID_ED25519, |der| {
                    let pk = ed25519_dalek::VerifyingKey::from_public_key_der(der)
                        .map_err(pem::pem_error)?;
                    Ok(Self(VerifyingInner::Ed25519(pk)))
                }),
                (pem::OID_RSA, |der| {
                    let pk = pem::rsa_public_from_der(der)?;
                    Ok(Self(VerifyingInner::Rsa(Box::new(pk))))
                }),
            ],
        )
    }
}

impl core::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        debug_public(
            f,
            "VerifyingKey",
            ("suite", &self.suite()),
            &self.to_bytes(),
        )
    }
}

// Crate-visible access to the RSA key material, for protocols that fix their own RSA signature
// scheme (MIKEY's SIGN payload, `crate::mikey`). Not part of the public API.
impl SigningKey {
    /// The RSA private key, if this is an RSA key.
    pub(crate) fn rsa_private(&self) -> Option<&rsa::RsaPrivateKey> {
        match &self.0 {
            SigningInner::Rsa(sk) => Some((**sk).as_ref()),
            SigningInner::Ed25519(_) => None,
        }
    }
}

impl VerifyingKey {
    /// The RSA public key, if this is an RSA key.
    pub(crate) fn rsa_public(&self) -> Option<&rsa::RsaPublicKey> {
        match &self.0 {
            VerifyingInner::Rsa(pk) => Some(pk),
            VerifyingInner::Ed25519(_) => None,
        }
    }
}
