//! PEM and DER plumbing shared by [`crate::pke`], [`crate::sig`] and [`crate::ots`].
//!
//! Standard encodings where they exist — PKCS#8 (RFC 5958) for private keys and SubjectPublicKeyInfo
//! (RFC 5280) for public keys, with the RFC 8410 identifiers for X25519 and Ed25519 — so that
//! OpenSSL (`openssl pkey -in key.pem -text`) reads our key files. One-time keys have no standard
//! encoding; they get labels of our own around their byte encodings.

use der::Encode as _;
use pkcs8::ObjectIdentifier;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// PKCS#8 private key label (RFC 7468 section 10).
pub(crate) const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
/// SubjectPublicKeyInfo label (RFC 7468 section 13).
pub(crate) const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// id-X25519, RFC 8410 section 3.
pub(crate) const OID_X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
/// id-Ed25519, RFC 8410 section 3.
pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// rsaEncryption, RFC 8017 appendix C.
pub(crate) const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Bytes in the modulus of every RSA key here: the classic suites are RSA-2048 only.
pub(crate) const RSA_BYTES: usize = 256;

/// A PKCS#8 RSA private key, refused unless its modulus is 2048 bits.
pub(crate) fn rsa_private_from_der(der: &[u8]) -> Result<rsa::RsaPrivateKey> {
    use rsa::pkcs8::DecodePrivateKey as _;
    rsa_2048(rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(pem_error)?)
}

/// A SubjectPublicKeyInfo RSA public key, refused unless its modulus is 2048 bits.
pub(crate) fn rsa_public_from_der(der: &[u8]) -> Result<rsa::RsaPublicKey> {
    use rsa::pkcs8::DecodePublicKey as _;
    rsa_2048(rsa::RsaPublicKey::from_public_key_der(der).map_err(pem_error)?)
}

fn rsa_2048<K: rsa::traits::PublicKeyParts>(key: K) -> Result<K> {
    if key.size() != RSA_BYTES {
        return Err(Error::Pem("RSA key is not 2048 bits".into()));
    }
    Ok(key)
}

/// How a key of one algorithm is read from its DER: what [`read_private`] and [`read_public`]
/// choose from by the document's algorithm identifier.
pub(crate) type Reader<K> = (ObjectIdentifier, fn(&[u8]) -> Result<K>);

/// Reads a PKCS#8 private key (DER) with the reader of its algorithm.
///
/// # Errors
/// [`Error::Pem`] for a malformed document or an algorithm `readers` does not name, and what
/// the reader refuses.
pub(crate) fn read_private<K>(der: &[u8], readers: &[Reader<K>]) -> Result<K> {
    read_with(pkcs8_algorithm(der)?, der, readers)
}

/// Reads a SubjectPublicKeyInfo public key (DER) with the reader of its algorithm.
///
/// # Errors
/// As [`read_private`].
pub(crate) fn read_public<K>(der: &[u8], readers: &[Reader<K>]) -> Result<K> {
    read_with(spki_algorithm(der)?, der, readers)
}

fn read_with<K>(oid: ObjectIdentifier, der: &[u8], readers: &[Reader<K>]) -> Result<K> {
    let (_, read) = readers
        .iter()
        .find(|(known, _)| *known == oid)
        .ok_or_else(|| Error::Pem(format!("unsupported key algorithm {oid}")))?;
    read(der)
}

pub(crate) fn pem_error(e: impl core::fmt::Display) -> Error {
    Error::Pem(e.to_string())
}

/// PEM-encodes `der` under `label` with LF line endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> Result<Zeroizing<String>> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .map(Zeroizing::new)
        .map_err(pem_error)
}

/// Decodes a PEM document and checks its label.
pub(crate) fn decode(pem: &str, label: &str) -> Result<Zeroizing<Vec<u8>>> {
    let (found, der) = der::pem::decode_vec(pem.as_bytes()).map_err(pem_error)?;
    let der = Zeroizing::new(der);
    if found != label {
        return Err(Error::Pem(format!(
            "expected a \"{label}\" PEM block, found \"{found}\""
        )));
    }
    Ok(der)
}

/// The algorithm OID of a PKCS#8 document.
pub(crate) fn pkcs8_algorithm(der: &[u8]) -> Result<ObjectIdentifier> {
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(pem_error)?;
    Ok(info.algorithm.oid)
}

/// The algorithm OID of a SubjectPublicKeyInfo document.
pub(crate) fn spki_algorithm(der: &[u8]) -> Result<ObjectIdentifier> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der).map_err(pem_error)?;
    Ok(info.algorithm.oid)
}

/// PKCS#8 for an X25519 private key: the key is `CurvePrivateKey ::= OCTET STRING` inside the
/// PrivateKey OCTET STRING (RFC 8410 section 7).
pub(crate) fn x25519_private_to_der(secret: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>> {
    let mut inner = Zeroizing::new(Vec::with_capacity(34));
    inner.extend_from_slice(&[0x04, 0x20]);
    inner.extend_from_slice(secret);
    let info = pkcs8::PrivateKeyInfo::new(
        pkcs8::AlgorithmIdentifierRef {
            oid: OID_X25519,
            parameters: None,
        },
        &inner,
    );
    info.to_der().map(Zeroizing::new).map_err(pem_error)
}

/// Inverse of [`x25519_private_to_der`].
pub(crate) fn x25519_private_from_der(der: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(pem_error)?;
    if info.algorithm.oid != OID_X25519 || info.algorithm.parameters.is_some() {
        return Err(Error::Pem("not an X25519 private key".into()));
    }
    match info.private_key {
        [0x04, 0x20, key @ ..] if key.len() == 32 => {
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(key);
            Ok(out)
        }
        _ => Err(Error::Pem("malformed X25519 private key".into())),
    }
}

/// SubjectPublicKeyInfo for a raw X25519 public key (RFC 8410 section 4).
pub(crate) fn x25519_public_to_der(public: &[u8; 32]) -> Result<Vec<u8>> {
    let info = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_X25519,
            parameters: None,
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(public).map_err(pem_error)?,
    };
    info.to_der().map_err(pem_error)
}

/// Inverse of [`x25519_public_to_der`].
pub(crate) fn x25519_public_from_der(der: &[u8]) -> Result<[u8; 32]> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der).map_err(pem_error)?;
    if info.algorithm.oid != OID_X25519 || info.algorithm.parameters.is_some() {
        return Err(Error::Pem("not an X25519 public key".into()));
    }
    info.subject_public_key
        .as_bytes()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::Pem("malformed X25519 public key".into()))
}
