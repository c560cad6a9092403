//! Keys in PEM files: a label that names what the block holds, and a body that encodes it.
//!
//! What the bytes under a label mean is the key type's business, so each type says it here
//! beside its other encodings ([`PemKey`] for the keys of this crate; `m2msec-protocol`
//! implements it for its own keys). Reading and writing the files, with their permission checks
//! and errors that name the file, is the node's (`runtime::keyfile`).
//!
//! The standard keys ([`SigningKey`], [`VerifyingKey`], [`PkeSecretKey`], [`PkePublicKey`]) are
//! `PRIVATE KEY` (PKCS#8, RFC 5958) and `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 5280), labels
//! every algorithm shares: the body's algorithm identifier says which key it is. The others
//! have labels of our own.

use zeroize::Zeroizing;

use crate::aead::{AeadKey, AeadSuite};
use crate::pke::{PkePublicKey, PkeSecretKey};
use crate::pre::{self, PairingBackend};
use crate::sig::{SigningKey, VerifyingKey};
use crate::{Result, pem};

/// A key whose PEM block carries [`PemKey::LABEL`] over [`PemKey::to_body`].
pub trait PemKey: Sized {
    /// The label of its PEM block.
    const LABEL: &'static str;
    /// Further labels whose blocks [`PemKey::from_body`] reads as this key too.
    const ALSO_READS: &'static [&'static str] = &[];

    /// The body of its PEM block.
    ///
    /// # Errors
    /// [`crate::Error::Pem`] if encoding fails (only a standard key's DER encoding can).
    fn to_body(&self) -> Result<Zeroizing<Vec<u8>>>;

    /// Reads the body of a block labelled `label` ([`PemKey::LABEL`] or one of
    /// [`PemKey::ALSO_READS`]).
    ///
    /// # Errors
    /// [`BodyError`] saying what is wrong with the bytes.
    fn from_body(label: &str, body: &[u8]) -> core::result::Result<Self, BodyError>;
}

/// What is wrong with the body of a key's PEM block, said for the person who gave the file
/// ("an SGA device key has at least 16 bytes, this one 8").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// A key the body is not: "not `what`: why".
fn not(what: &str, why: &crate::Error) -> BodyError {
    BodyError(format!("not {what}: {why}"))
}

/// A pre-shared symmetric key: `M2MSEC SYMMETRIC KEY`, one byte [`AeadSuite`] id, then the key.
///
/// No standard PEM encoding exists for a bare symmetric key (RFC 7468 defines none), hence our
/// own label; the suite travels with the key so that both ends of a pre-shared key always agree
/// on the algorithm.
impl PemKey for AeadKey {
    const LABEL: &'static str = "M2MSEC SYMMETRIC KEY";

    fn to_body(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut body = Zeroizing::new(Vec::with_capacity(1 + self.as_bytes().len()));
        body.push(self.suite().id());
        body.extend_from_slice(self.as_bytes());
        Ok(body)
    }

    fn from_body(_: &str, body: &[u8]) -> core::result::Result<Self, BodyError> {
        let (&suite, key) = body
            .split_first()
            .ok_or_else(|| BodyError("empty symmetric key".into()))?;
        let suite = AeadSuite::try_from(suite)
            .map_err(|_| BodyError(format!("unknown AEAD suite id {suite}")))?;
        Self::new(suite, key).map_err(|e| {
            BodyError(format!(
                "malformed {suite:?} key of {} bytes: {e}",
                key.len()
            ))
        })
    }
}

/// An AFGH secret key: [`pre::SECRET_KEY_PEM_LABEL`] over [`pre::SecretKeyOf::to_bytes`].
impl<B: PairingBackend> PemKey for pre::SecretKeyOf<B> {
    const LABEL: &'static str = pre::SECRET_KEY_PEM_LABEL;

    fn to_body(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(self.to_bytes())
    }

    fn from_body(_: &str, body: &[u8]) -> core::result::Result<Self, BodyError> {
        Self::from_bytes(body).map_err(|e| not("an AFGH secret key", &e))
    }
}

/// An AFGH public key: [`pre::PUBLIC_KEY_PEM_LABEL`] over [`pre::PublicKeyOf::to_bytes`].
impl<B: PairingBackend> PemKey for pre::PublicKeyOf<B> {
    const LABEL: &'static str = pre::PUBLIC_KEY_PEM_LABEL;

    fn to_body(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.to_bytes()))
    }

    fn from_body(_: &str, body: &[u8]) -> core::result::Result<Self, BodyError> {
        Self::from_bytes(body).map_err(|e| not("an AFGH public key", &e))
    }
}

/// Implements [`PemKey`] for standard keys: `KEY: LABEL, "what it is"`, the body the key's
/// DER (`to_der` / `from_der`); a body that is none refused as "not what it is".
macro_rules! standard_keys {
    ($( $(#[$doc:meta])* $key:ty: $label:expr, $what:literal; )*) => {$(
        $(#[$doc])*
        impl PemKey for $key {
            const LABEL: &'static str = $label;

            fn to_body(&self) -> Result<Zeroizing<Vec<u8>>> {
                self.to_der().map(Into::into)
            }

            fn from_body(_: &str, der: &[u8]) -> core::result::Result<Self, BodyError> {
                Self::from_der(der).map_err(|e| not($what, &e))
            }
        }
    )*};
}

standard_keys! {
    /// Ed25519 or RSA-2048, PKCS#8.
    SigningKey: pem::PRIVATE_KEY_LABEL, "an Ed25519 or RSA signing key";
    /// Ed25519 or RSA-2048, SubjectPublicKeyInfo.
    VerifyingKey: pem::PUBLIC_KEY_LABEL, "an Ed25519 or RSA public key";
    /// X25519 or RSA-2048, PKCS#8.
    PkeSecretKey: pem::PRIVATE_KEY_LABEL, "an X25519 or RSA decryption key";
    /// X25519 or RSA-2048, SubjectPublicKeyInfo.
    PkePublicKey: pem::PUBLIC_KEY_LABEL, "an X25519 or RSA encryption key";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn symmetric_body_round_trip_and_errors() -> Result<()> {
        let mut rng = SeededRng::from_seed_u64(1);
        let key = AeadKey::generate(AeadSuite::ChaCha20Poly1305, &mut rng);
        let back = AeadKey::from_body(AeadKey::LABEL, &key.to_body()?);
        assert!(back.is_ok_and(|b| b.as_bytes() == key.as_bytes()));
        let says = |body: &[u8], what: &str| {
            AeadKey::from_body(AeadKey::LABEL, body).is_err_and(|e| e.0.starts_with(what))
        };
        assert!(says(&[], "empty symmetric key"));
        assert!(says(&[99, 1], "unknown AEAD suite id 99"));
        let short = "malformed ChaCha20Poly1305 key of 3 bytes";
        assert!(says(&[3, 1, 2, 3], short));
        Ok(())
    }

    #[test]
    fn standard_keys_are_their_der() -> Result<()> {
        let mut rng = SeededRng::from_seed_u64(2);
        let sk = SigningKey::generate(crate::sig::SigSuite::Ed25519, &mut rng)?;
        assert_eq!(
            pem::encode(SigningKey::LABEL, &sk.to_body()?)?,
            sk.to_pem()?
        );
        let back = SigningKey::from_body(SigningKey::LABEL, &sk.to_body()?);
        assert!(back.is_ok_and(|b| b.verifying_key() == sk.verifying_key()));
        let vk = sk.verifying_key();
        assert_eq!(
            *pem::encode(VerifyingKey::LABEL, &vk.to_body()?)?,
            vk.to_pem()?
        );
        let e = PkePublicKey::from_body(PkePublicKey::LABEL, &vk.to_body()?).err();
        assert!(e.is_some_and(|e| e.0.starts_with("not an X25519 or RSA encryption key: ")));
        Ok(())
    }
}
