//! Key and certificate files: PEM, read with errors that name the file and what is wrong.
//!
//! | what                         | PEM label                 | body                                   |
//! |------------------------------|---------------------------|----------------------------------------|
//! | Ed25519 / RSA signing key    | `PRIVATE KEY`             | PKCS#8                                 |
//! | X25519 / RSA decryption key  | `PRIVATE KEY`             | PKCS#8                                 |
//! | any public key               | `PUBLIC KEY`              | SubjectPublicKeyInfo                   |
//! | pre-shared symmetric key     | `M2MSEC SYMMETRIC KEY`    | one byte AEAD suite id, then the key   |
//! | AFGH (relay) key pair        | `M2MSEC AFGH SECRET KEY` / `… PUBLIC KEY` | `m2msec_crypto::pre`'s encodings |
//! | the protocols' own keys      | `M2MSEC CERTIFICATE`, `M2MSEC MIKEY PSK`, … | see `m2msec_protocol::pem_key` |
//!
//! Every key implements [`PemKey`] beside its type (`m2msec_crypto::pem_key` says what the
//! bytes under each label mean); here are only the files: [`load`] reads one with the
//! permission checks, [`write_secret`] and [`write_public`] write one, and [`pem`] is the text
//! of any key.
//!
//! The AEAD suite ids are those of `m2msec_crypto::aead::AeadSuite`: 1 AES-128-CCM (8-byte
//! tag), 2 AES-128-GCM, 3 ChaCha20-Poly1305.
//!
//! Secret files are created with mode 0600 on Unix, public ones 0644 (see [`crate::private`]).
//! Reading refuses a secret file that group or others may access, and a public one (a key or
//! certificate that is trusted) that they may change, naming the `chmod` that fixes it.

use std::fs;
use std::io::Write;
use std::path::Path;

use m2msec_protocol::collab::Certificate;
pub use m2msec_protocol::pem_key::PemKey;
use pem_rfc7468::LineEnding;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::private::{self, Secrecy};

/// Whether a key file holds a secret, judged by what it holds (its first PEM label), not by
/// what the caller expected: a secret is held to `0600` wherever it was given, a public key or
/// certificate only to "not writable by others". Anything that is not PEM counts as secret.
fn secrecy_of(text: &str) -> Secrecy {
    match pem_label(text) {
        Ok(label) if label.contains("PUBLIC KEY") || label == Certificate::LABEL => Secrecy::Public,
        _ => Secrecy::Secret,
    }
}

/// Reads a key file as text, naming it when it is missing or unreadable, and checks that
/// group and others have no more access to it than what it holds allows ([`secrecy_of`]).
fn read_key_text(path: &Path) -> Result<Zeroizing<String>> {
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

/// Reads a PEM file whose label must be one of `expected`; returns the text and the label.
fn read_labelled(path: &Path, expected: &[&str]) -> Result<(Zeroizing<String>, String)> {
    let text = read_key_text(path)?;
    let label = pem_label(&text).map_err(|m| Error::key(path, m))?;
    if !expected.contains(&label.as_str()) {
        let expected = expected.iter().map(|l| format!("\"{l}\""));
        let expected = expected.collect::<Vec<_>>().join(" or ");
        let what = format!("PEM label is \"{label}\", expected {expected}");
        return Err(Error::key(path, what));
    }
    Ok((text, label))
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

/// Reads the key file `path` of a key with a label of its own.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and what is wrong: missing, open to others, another
/// label, malformed PEM or a body the key refuses.
pub fn load<K: PemKey>(path: &Path) -> Result<K> {
    let labels = [&[K::LABEL], K::ALSO_READS].concat();
    let (text, label) = read_labelled(path, &labels)?;
    let (decoded, body) = pem_rfc7468::decode_vec(text.trim().as_bytes())
        .map_err(|e| Error::key(path, format!("malformed PEM: {e}")))?;
    // The label checked above is the first "-----BEGIN" anywhere; the block decoded is the
    // first at the start of a line. Both must be the same block, else the body would be read
    // under another label's meaning.
    if decoded != label {
        let what = format!("PEM label is \"{decoded}\", expected \"{label}\"");
        return Err(Error::key(path, what));
    }
    let body = Zeroizing::new(body);
    K::from_body(&label, &body).map_err(|e| Error::key(path, e.0))
}

/// The PEM text of a key with a label of its own.
///
/// # Errors
///
/// Only if PEM encoding fails, which it does not for key-sized inputs.
pub fn pem<K: PemKey>(key: &K) -> Result<Zeroizing<String>> {
    pem_rfc7468::encode_string(K::LABEL, LineEnding::LF, &key.to_body()?)
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

/// Reads the key file `path` and refuses the key unless `accept` takes it (a protocol that
/// knows one algorithm only); `refusal` says why.
///
/// # Errors
///
/// As [`load`]; [`Error::KeyFile`] naming the file with `refusal`.
pub(crate) fn load_accepted<K: PemKey>(
    path: &Path,
    accept: fn(&K) -> bool,
    refusal: &str,
) -> Result<K> {
    let key = load(path)?;
    if !accept(&key) {
        return Err(Error::key(path, refusal));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::aead::{AeadKey, AeadSuite};
    use m2msec_crypto::rng::SeededRng;
    use m2msec_protocol::mikey::Psk;

    use super::*;

    /// Writes `text` as the secret file `name` of `dir`; its path.
    fn secret_file(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf> {
        let path = dir.join(name);
        write_secret(&path, text)?;
        Ok(path)
    }

    fn block(label: &str, body: &[u8]) -> Result<String> {
        pem_rfc7468::encode_string(label, LineEnding::LF, body)
            .map_err(|e| Error::Usage(e.to_string()))
    }

    #[test]
    fn symmetric_round_trip_and_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut rng = SeededRng::from_seed_u64(1);
        let key = AeadKey::generate(AeadSuite::ChaCha20Poly1305, &mut rng);
        let pem = pem(&key)?;
        assert!(pem.starts_with("-----BEGIN M2MSEC SYMMETRIC KEY-----"));
        let k = secret_file(dir.path(), "k.pem", &pem)?;
        assert_eq!(load::<AeadKey>(&k)?.as_bytes(), key.as_bytes());

        let wrong = secret_file(
            dir.path(),
            "w.pem",
            &pem.replace("SYMMETRIC KEY", "MIKEY PSK"),
        )?;
        let e = load::<AeadKey>(&wrong).err();
        assert!(e.is_some_and(|e| e.to_string().contains("expected \"M2MSEC SYMMETRIC KEY\"")));

        let short = secret_file(dir.path(), "s.pem", &block(AeadKey::LABEL, &[3, 1, 2, 3])?)?;
        let e = load::<AeadKey>(&short).err();
        let starts = format!("key file {}: malformed", short.display());
        assert!(e.is_some_and(|e| e.to_string().starts_with(&starts)));
        Ok(())
    }

    #[test]
    fn mikey_psk_in_both_labels() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let own = secret_file(dir.path(), "own.key", &pem(&Psk::new(&[7; 32])?)?)?;
        assert_eq!(load::<Psk>(&own)?.as_bytes(), &[7; 32]);
        let mut rng = SeededRng::from_seed_u64(2);
        let aead = AeadKey::generate(AeadSuite::Aes128Ccm8, &mut rng);
        let sym = secret_file(dir.path(), "sym.key", &pem(&aead)?)?;
        assert_eq!(load::<Psk>(&sym)?.as_bytes(), aead.as_bytes());
        let short = secret_file(dir.path(), "short.key", &block(Psk::LABEL, &[1; 8])?)?;
        let e = load::<Psk>(&short).err();
        assert!(e.is_some_and(|e| e.to_string().contains("at least 16 bytes")));
        let cert = secret_file(dir.path(), "c.key", &block("M2MSEC CERTIFICATE", &[1; 8])?)?;
        let e = load::<Psk>(&cert).err().map(|e| e.to_string());
        let both = "expected \"M2MSEC MIKEY PSK\" or \"M2MSEC SYMMETRIC KEY\"";
        assert!(e.as_ref().is_some_and(|e| e.contains(both)), "{e:?}");
        assert!(Psk::new(&[1; 15]).is_err());
        Ok(())
    }

    #[test]
    fn the_block_decoded_is_the_label_checked() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut rng = SeededRng::from_seed_u64(3);
        let aead = pem(&AeadKey::generate(AeadSuite::Aes128Ccm8, &mut rng))?;
        // A MIKEY PSK label mid-line, then a symmetric key's block: not read as a PSK.
        let text = format!("x -----BEGIN M2MSEC MIKEY PSK-----\n{}", *aead);
        let mixed = secret_file(dir.path(), "mixed.key", &text)?;
        let e = load::<Psk>(&mixed).err().map(|e| e.to_string());
        let says = "PEM label is \"M2MSEC SYMMETRIC KEY\", expected \"M2MSEC MIKEY PSK\"";
        assert!(e.as_ref().is_some_and(|e| e.contains(says)), "{e:?}");
        Ok(())
    }

    #[test]
    fn missing_file_is_named() {
        let e = load::<AeadKey>(Path::new("/nonexistent/psk.pem")).err();
        assert!(e.is_some_and(|e| e.to_string() == "key file /nonexistent/psk.pem: no such file"));
    }
}
