//! B's certificate: its public encryption and signature keys signed by a CA the proxies trust.
//!
//! The paper assumes a CA without fixing a format. X.509 would be the usual choice, but every
//! party here also speaks CBOR and the proxies only need the two keys bound to B's name, so the
//! certificate is a small CBOR structure (`m2msec_wire::collab::Certificate`).

use m2msec_crypto::pke::PkePublicKey;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigningKey, VerifyingKey};
use m2msec_wire::cbor::{self, Bytes};
use m2msec_wire::collab::{Certificate as WireCertificate, CertificateBody};

use super::{Error, signed_bytes};

/// A certificate as issued; verify it with [`Certificate::verify`] before use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate(pub(crate) WireCertificate);

/// The keys of a certificate that verified.
#[derive(Clone, Debug)]
pub(crate) struct CertifiedKeys {
    pub(crate) encryption: PkePublicKey,
    pub(crate) signature: VerifyingKey,
}

impl Certificate {
    /// The CA signs `subject`'s keys.
    ///
    /// # Errors
    /// If the CA key cannot sign.
    pub fn issue(
        ca: &SigningKey,
        subject: &str,
        encryption_key: &PkePublicKey,
        signature_key: &VerifyingKey,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, Error> {
        let body = CertificateBody {
            subject: subject.to_owned(),
            encryption_key: Bytes(encryption_key.to_bytes()),
            signature_key: Bytes(signature_key.to_bytes()),
        };
        let signature = ca.sign(rng, &signed_bytes(b"certificate", &body));
        Ok(Self(WireCertificate {
            body,
            signature: Bytes(signature),
        }))
    }

    /// The subject's name.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.0.body.subject
    }

    /// The certificate's bytes (CBOR).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::to_vec(&self.0)
    }

    /// Decodes [`Certificate::to_bytes`]; the signature is not checked here.
    ///
    /// # Errors
    /// Malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self(cbor::from_slice(bytes)?))
    }

    /// Checks the CA's signature and that the keys decode.
    ///
    /// # Errors
    /// [`Error::BadCertificate`].
    pub fn verify(&self, ca: &VerifyingKey) -> Result<(), Error> {
        self.verified_keys(ca).map(|_| ())
    }

    pub(crate) fn verified_keys(&self, ca: &VerifyingKey) -> Result<CertifiedKeys, Error> {
        ca.verify(
            &signed_bytes(b"certificate", &self.0.body),
            &self.0.signature.0,
        )
        .map_err(|_| Error::BadCertificate)?;
        Ok(CertifiedKeys {
            encryption: PkePublicKey::from_bytes(&self.0.body.encryption_key.0)
                .map_err(|_| Error::BadCertificate)?,
            signature: VerifyingKey::from_bytes(&self.0.body.signature_key.0)
                .map_err(|_| Error::BadCertificate)?,
        })
    }
}
