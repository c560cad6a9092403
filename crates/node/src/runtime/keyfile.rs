//! Key and certificate files: PEM, read with errors that name the file and what is wrong.
//!
//! | what                         | PEM label                 | body                                   |
//! |------------------------------|---------------------------|----------------------------------------|
//! | Ed25519 / RSA signing key    | `PRIVATE KEY`             | PKCS#8                                 |
//! | X25519 / RSA decryption key  | `PRIVATE KEY`             | PKCS#8                                 |
//! | any public key               | `PUBLIC KEY`              | SubjectPublicKeyInfo                   |
//! | pre-shared symmetric key     | `M2MSEC SYMMETRIC KEY`    | one byte AEAD suite id, then the key   |
//! | collab server certificate    | `M2MSEC CERTIFICATE`      | `collab::Certificate::to_bytes`        |
//! | MIKEY pre-shared key         | `M2MSEC MIKEY PSK`        | the raw key, at least 16 bytes         |
//! | SGA device key k_d           | `M2MSEC SGA DEVICE KEY`   | the raw key, at least 16 bytes         |
//! | E2SEC secret key x           | `M2MSEC E2SEC SECRET KEY` | group id byte, then the scalar         |
//! | E2SEC public key v = g^x     | `M2MSEC E2SEC PUBLIC KEY` | group id byte, then the element        |
//!
//! The E2SEC group id bytes are those of `m2msec_crypto::group::GroupId`: 2 DSA-1024/160
//! (RFC 5114 §2.1, legacy), 3 DSA-2048/256 (RFC 5114 §2.3), 4 Ristretto255. The scalar is the
//! group's canonical encoding (big-endian mod q for the DSA groups, 32 little-endian bytes for
//! Ristretto255), the element likewise (big-endian mod p, or the 32-byte Ristretto encoding).
//!
//! The AEAD suite ids are those of `m2msec_crypto::aead::AeadSuite`: 1 AES-128-CCM (8-byte
//! tag), 2 AES-128-GCM, 3 ChaCha20-Poly1305. No standard PEM encoding exists for a bare
//! symmetric key (RFC 7468 defines none), hence our own label; the suite travels with the key
//! so that both ends of a pre-shared key always agree on the algorithm.
//!
//! A MIKEY pre-shared key (RFC 3830 §3.1) is raw bytes of any length from 16 on, without an
//! AEAD: its own label says so. A `M2MSEC SYMMETRIC KEY` file (`m2msec keygen --kind symmetric`)
//! is accepted as a MIKEY pre-shared key too; its suite byte is then ignored.
//!
//! Secret files are created with mode 0600 on Unix, public ones 0644 (see [`crate::private`]).
//! Reading refuses a secret file that group or others may access, and a public one (a key or
//! certificate that is trusted) that they may change, naming the `chmod` that fixes it.

use std::fs;
use std::io::Write;
use std::path::Path;

use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::group::GroupId;
use m2msec_crypto::pke::PkeSecretKey;
use m2msec_crypto::sig::{SigningKey, VerifyingKey};
use m2msec_protocol::collab::Certificate;
use m2msec_protocol::mikey::Psk;
use pem_rfc7468::LineEnding;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::private::{self, Secrecy};

/// PEM label of a pre-shared symmetric key.
pub const SYMMETRIC_KEY_LABEL: &str = "M2MSEC SYMMETRIC KEY";
/// PEM label of a collab server certificate.
pub const CERTIFICATE_LABEL: &str = "M2MSEC CERTIFICATE";
/// PEM label of a MIKEY pre-shared key (raw key bytes, at least 16).
pub const MIKEY_PSK_LABEL: &str = "M2MSEC MIKEY PSK";
/// Shortest MIKEY pre-shared key accepted.
pub const MIKEY_PSK_MIN_LEN: usize = 16;
/// PEM label of an SGA device key k_d (raw key bytes, at least 16).
pub const SGA_DEVICE_KEY_LABEL: &str = "M2MSEC SGA DEVICE KEY";
/// PEM label of an E2SEC secret key (group id byte, then the scalar).
pub const E2SEC_SECRET_KEY_LABEL: &str = "M2MSEC E2SEC SECRET KEY";
/// PEM label of an E2SEC public key (group id byte, then the element).
pub const E2SEC_PUBLIC_KEY_LABEL: &str = "M2MSEC E2SEC PUBLIC KEY";
/// PEM label of a PKCS#8 private key.
pub const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
/// PEM label of a SubjectPublicKeyInfo public key.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// Whether a key file holds a secret, judged by what it holds (its first PEM label), not by
/// what the caller expected: a secret is held to `0600` wherever it was given, a public key or
/// certificate only to "not writable by others". Anything that is not PEM counts as secret.
fn secrecy_of(text: &str) -> Secrecy {
    match pem_label(text) {
        Ok(label) if label.contains("PUBLIC KEY") || label == CERTIFICATE_LABEL => Secrecy::Public,
        _ => Secrecy::Secret,
    }
}

/// Reads a key file as text, naming it when it is missing or unreadable, and checks that
/// group and others have no more access to it than what it holds allows ([`secrecy_of`]).
pub(crate) fn read_key_text(path: &Path) -> Result<Zeroizing<String>> {
    let text = match fs::read_to_string(path) {
        Ok(s) => Zeroizing::new(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::key(path, "no such file"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(Error::key(path, "not a PEM file (not text)"));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    private::check(path, secrecy_of(&text))?;
    Ok(text)
}

/// Reads a PEM file and checks its label; returns the text (for decoders that want PEM).
fn read_labelled(path: &Path, expected: &str) -> Result<Zeroizing<String>> {
    let text = read_key_text(path)?;
    let label = pem_label(&text).map_err(|m| Error::key(path, m))?;
    if label != expected {
        return Err(Error::key(
            path,
            format!("PEM label is \"{label}\", expected \"{expected}\""),
        ));
    }
    Ok(text)
}

/// The label of the first PEM block of `text`.
fn pem_label(text: &str) -> core::result::Result<String, String> {
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| "not a PEM file (no \"-----BEGIN\" line)".to_owned())?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let end = rest
        .find("-----")
        .ok_or_else(|| "malformed PEM header line".to_owned())?;
    Ok(rest[..end].to_owned())
}

/// Decodes the first PEM block of `text`, which must carry `label`.
pub(crate) fn decode_block(path: &Path, text: &str, label: &str) -> Result<Zeroizing<Vec<u8>>> {
    let (found, body) = pem_rfc7468::decode_vec(text.trim().as_bytes())
        .map_err(|e| Error::key(path, format!("malformed PEM: {e}")))?;
    if found != label {
        return Err(Error::key(
            path,
            format!("PEM label is \"{found}\", expected \"{label}\""),
        ));
    }
    Ok(Zeroizing::new(body))
}

/// PEM text of `body` under `label`.
pub(crate) fn encode_block(label: &str, body: &[u8]) -> Result<Zeroizing<String>> {
    pem_rfc7468::encode_string(label, LineEnding::LF, body)
        .map(Zeroizing::new)
        .map_err(|e| Error::Usage(format!("cannot encode PEM: {e}")))
}

/// Writes a secret file (mode 0600 on Unix), replacing any previous one.
///
/// # Errors
///
/// [`Error::Private`] naming the file, also when it exists and others may access it.
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    write_file(path, contents, Secrecy::Secret)
}

fn write_file(path: &Path, contents: &str, secrecy: Secrecy) -> Result<()> {
    let mut file = private::open_with(path, private::Write::Truncate, secrecy)?;
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io(path, e))
}

/// Writes a public file (mode 0644), replacing any previous one.
///
/// # Errors
///
/// [`Error::Private`] naming the file, also when it exists and others may change it.
pub fn write_public(path: &Path, contents: &str) -> Result<()> {
    write_file(path, contents, Secrecy::Public)
}

/// PEM text of a pre-shared symmetric key.
///
/// # Errors
///
/// Only if PEM encoding fails, which it does not for key-sized inputs.
pub fn symmetric_key_pem(key: &AeadKey) -> Result<Zeroizing<String>> {
    let mut body = Zeroizing::new(Vec::with_capacity(1 + key.as_bytes().len()));
    body.push(key.suite().id());
    body.extend_from_slice(key.as_bytes());
    encode_block(SYMMETRIC_KEY_LABEL, &body)
}

/// Decodes a pre-shared symmetric key from PEM text.
///
/// # Errors
///
/// [`Error::KeyFile`] naming `path` (used only in messages) and what is wrong.
pub fn symmetric_key_from_pem(path: &Path, text: &str) -> Result<AeadKey> {
    let body = decode_block(path, text, SYMMETRIC_KEY_LABEL)?;
    let (&suite, key) = body
        .split_first()
        .ok_or_else(|| Error::key(path, "empty symmetric key"))?;
    let suite = AeadSuite::try_from(suite)
        .map_err(|_| Error::key(path, format!("unknown AEAD suite id {suite}")))?;
    AeadKey::new(suite, key).map_err(|e| {
        Error::key(
            path,
            format!("malformed {suite:?} key of {} bytes: {e}", key.len()),
        )
    })
}

/// Reads a pre-shared symmetric key file.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_symmetric_key(path: &Path) -> Result<AeadKey> {
    let text = read_labelled(path, SYMMETRIC_KEY_LABEL)?;
    symmetric_key_from_pem(path, &text)
}

/// PEM text of a MIKEY pre-shared key.
///
/// # Errors
///
/// [`Error::Usage`] for a key shorter than [`MIKEY_PSK_MIN_LEN`].
pub fn mikey_psk_pem(key: &[u8]) -> Result<Zeroizing<String>> {
    if key.len() < MIKEY_PSK_MIN_LEN {
        return Err(Error::Usage(format!(
            "a MIKEY pre-shared key has at least {MIKEY_PSK_MIN_LEN} bytes"
        )));
    }
    encode_block(MIKEY_PSK_LABEL, key)
}

/// Reads a MIKEY pre-shared key: PEM `M2MSEC MIKEY PSK` (raw bytes), or `M2MSEC SYMMETRIC KEY`
/// whose key bytes (after the suite byte) are used. Either way at least 16 bytes.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_mikey_psk(path: &Path) -> Result<Psk> {
    let text = read_key_text(path)?;
    let label = pem_label(&text).map_err(|m| Error::key(path, m))?;
    let body = match label.as_str() {
        MIKEY_PSK_LABEL => decode_block(path, &text, MIKEY_PSK_LABEL)?,
        SYMMETRIC_KEY_LABEL => {
            let body = decode_block(path, &text, SYMMETRIC_KEY_LABEL)?;
            Zeroizing::new(body.get(1..).unwrap_or_default().to_vec())
        }
        other => {
            return Err(Error::key(
                path,
                format!(
                    "PEM label is \"{other}\", expected \"{MIKEY_PSK_LABEL}\" or \"{SYMMETRIC_KEY_LABEL}\""
                ),
            ));
        }
    };
    if body.len() < MIKEY_PSK_MIN_LEN {
        return Err(Error::key(
            path,
            format!(
                "a MIKEY pre-shared key has at least {MIKEY_PSK_MIN_LEN} bytes, this one {}",
                body.len()
            ),
        ));
    }
    Psk::new(&body).map_err(|e| Error::key(path, e.to_string()))
}

/// PEM text of an SGA device key.
///
/// # Errors
///
/// [`Error::Usage`] for a key shorter than 16 bytes.
pub fn sga_device_key_pem(key: &[u8]) -> Result<Zeroizing<String>> {
    if key.len() < 16 {
        return Err(Error::Usage(
            "an SGA device key has at least 16 bytes".into(),
        ));
    }
    encode_block(SGA_DEVICE_KEY_LABEL, key)
}

/// Reads an SGA device key k_d: PEM `M2MSEC SGA DEVICE KEY` (raw bytes, at least 16).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_sga_device_key(path: &Path) -> Result<m2msec_protocol::sga::DeviceKey> {
    let text = read_labelled(path, SGA_DEVICE_KEY_LABEL)?;
    let body = decode_block(path, &text, SGA_DEVICE_KEY_LABEL)?;
    m2msec_protocol::sga::DeviceKey::new(&body).map_err(|_| {
        Error::key(
            path,
            format!(
                "an SGA device key has at least 16 bytes, this one {}",
                body.len()
            ),
        )
    })
}

/// PEM text of an E2SEC secret key.
///
/// # Errors
///
/// Only if PEM encoding fails.
pub fn e2sec_secret_key_pem(key: &m2msec_protocol::e2sec::SecretKey) -> Result<Zeroizing<String>> {
    let scalar = key.to_bytes();
    let mut body = Zeroizing::new(Vec::with_capacity(1 + scalar.len()));
    body.push(key.group().id());
    body.extend_from_slice(&scalar);
    encode_block(E2SEC_SECRET_KEY_LABEL, &body)
}

/// PEM text of an E2SEC public key (`element` in `group`'s encoding).
///
/// # Errors
///
/// Only if PEM encoding fails.
pub fn e2sec_public_key_pem(group: GroupId, element: &[u8]) -> Result<String> {
    let mut body = Vec::with_capacity(1 + element.len());
    body.push(group.id());
    body.extend_from_slice(element);
    Ok(encode_block(E2SEC_PUBLIC_KEY_LABEL, &body)?.to_string())
}

fn e2sec_group(path: &Path, id: Option<&u8>) -> Result<GroupId> {
    let &id = id.ok_or_else(|| Error::key(path, "empty E2SEC key"))?;
    match GroupId::try_from(id) {
        Ok(GroupId::Modp2048) | Err(_) => Err(Error::key(
            path,
            format!("unknown E2SEC group id {id} (2 DSA-1024/160, 3 DSA-2048/256, 4 Ristretto255)"),
        )),
        Ok(g) => Ok(g),
    }
}

/// Reads an E2SEC secret key: PEM `M2MSEC E2SEC SECRET KEY` (group id byte, then the scalar).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_e2sec_secret_key(path: &Path) -> Result<m2msec_protocol::e2sec::SecretKey> {
    let text = read_labelled(path, E2SEC_SECRET_KEY_LABEL)?;
    let body = decode_block(path, &text, E2SEC_SECRET_KEY_LABEL)?;
    let group = e2sec_group(path, body.first())?;
    m2msec_protocol::e2sec::SecretKey::from_bytes(group, &body[1..])
        .map_err(|e| Error::key(path, format!("not a {} secret key: {e}", group.name())))
}

/// Reads an E2SEC public key: PEM `M2MSEC E2SEC PUBLIC KEY` (group id byte, then the element);
/// returns the group and the element's encoding, checked to be in the group.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_e2sec_public_key(path: &Path) -> Result<(GroupId, Vec<u8>)> {
    let text = read_labelled(path, E2SEC_PUBLIC_KEY_LABEL)?;
    let body = decode_block(path, &text, E2SEC_PUBLIC_KEY_LABEL)?;
    let group = e2sec_group(path, body.first())?;
    let element = body[1..].to_vec();
    m2msec_crypto::group::Group::new(group)
        .element_from_bytes(&element)
        .map_err(|e| Error::key(path, format!("not a {} public key: {e}", group.name())))?;
    Ok((group, element))
}

/// Reads a public encryption key (SubjectPublicKeyInfo: X25519 or RSA).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_pke_public_key(path: &Path) -> Result<m2msec_crypto::pke::PkePublicKey> {
    let text = read_labelled(path, PUBLIC_KEY_LABEL)?;
    m2msec_crypto::pke::PkePublicKey::from_pem(&text)
        .map_err(|e| Error::key(path, format!("not an X25519 or RSA encryption key: {e}")))
}

/// Reads a signing key (PKCS#8: Ed25519 or RSA).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = read_labelled(path, PRIVATE_KEY_LABEL)?;
    SigningKey::from_pem(&text)
        .map_err(|e| Error::key(path, format!("not an Ed25519 or RSA signing key: {e}")))
}

/// Reads a signature verification key (SubjectPublicKeyInfo: Ed25519 or RSA).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let text = read_labelled(path, PUBLIC_KEY_LABEL)?;
    VerifyingKey::from_pem(&text)
        .map_err(|e| Error::key(path, format!("not an Ed25519 or RSA public key: {e}")))
}

/// Reads a decryption key (PKCS#8: X25519 or RSA).
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_pke_secret_key(path: &Path) -> Result<PkeSecretKey> {
    let text = read_labelled(path, PRIVATE_KEY_LABEL)?;
    PkeSecretKey::from_pem(&text)
        .map_err(|e| Error::key(path, format!("not an X25519 or RSA decryption key: {e}")))
}

/// PEM text of a collab certificate.
///
/// # Errors
///
/// Only if PEM encoding fails.
pub fn certificate_pem(cert: &Certificate) -> Result<String> {
    Ok(encode_block(CERTIFICATE_LABEL, &cert.to_bytes())?.to_string())
}

/// Reads a collab certificate file.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong.
pub fn load_certificate(path: &Path) -> Result<Certificate> {
    let text = read_labelled(path, CERTIFICATE_LABEL)?;
    let body = decode_block(path, &text, CERTIFICATE_LABEL)?;
    Certificate::from_bytes(&body)
        .map_err(|e| Error::key(path, format!("malformed certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use m2msec_crypto::rng::SeededRng;

    #[test]
    fn symmetric_round_trip_and_errors() -> Result<()> {
        let mut rng = SeededRng::from_seed_u64(1);
        let key = AeadKey::generate(AeadSuite::ChaCha20Poly1305, &mut rng);
        let pem = symmetric_key_pem(&key)?;
        assert!(pem.starts_with("-----BEGIN M2MSEC SYMMETRIC KEY-----"));
        let back = symmetric_key_from_pem(Path::new("k.pem"), &pem)?;
        assert_eq!(back.as_bytes(), key.as_bytes());

        let wrong = pem.replace("SYMMETRIC KEY", "CERTIFICATE");
        let e = symmetric_key_from_pem(Path::new("k.pem"), &wrong).err();
        assert!(e.is_some_and(|e| e.to_string().contains("expected \"M2MSEC SYMMETRIC KEY\"")));

        let short = encode_block(SYMMETRIC_KEY_LABEL, &[3, 1, 2, 3])?;
        let e = symmetric_key_from_pem(Path::new("k.pem"), &short).err();
        assert!(e.is_some_and(|e| e.to_string().starts_with("key file k.pem: malformed")));
        Ok(())
    }

    #[test]
    fn mikey_psk_in_both_labels() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("m2msec-psk-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let own = dir.join("own.key");
        write_secret(&own, &mikey_psk_pem(&[7; 32])?)?;
        assert_eq!(load_mikey_psk(&own)?.as_bytes(), &[7; 32]);
        let mut rng = SeededRng::from_seed_u64(2);
        let aead = AeadKey::generate(AeadSuite::Aes128Ccm8, &mut rng);
        let sym = dir.join("sym.key");
        write_secret(&sym, &symmetric_key_pem(&aead)?)?;
        assert_eq!(load_mikey_psk(&sym)?.as_bytes(), aead.as_bytes());
        let short = dir.join("short.key");
        write_secret(&short, &encode_block(MIKEY_PSK_LABEL, &[1; 8])?)?;
        let e = load_mikey_psk(&short).err();
        assert!(e.is_some_and(|e| e.to_string().contains("at least 16 bytes")));
        assert!(mikey_psk_pem(&[1; 15]).is_err());
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn missing_file_is_named() {
        let e = load_symmetric_key(Path::new("/nonexistent/psk.pem")).err();
        assert!(e.is_some_and(|e| e.to_string() == "key file /nonexistent/psk.pem: no such file"));
    }
}
