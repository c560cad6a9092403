//! Authenticated encryption: AES-128-CCM-8, AES-128-GCM, ChaCha20-Poly1305, Ascon-AEAD128.
//!
//! A key is bound to its suite ([`AeadKey`] carries it), so a key of one suite can never be used with
//! another suite's algorithm by mistake. Nonces are the caller's business with [`AeadKey::seal`]
//! (protocols with counters) or ours with [`AeadKey::seal_random_nonce`] (random nonce prefixed).
//!
//! | suite               | id | key | nonce | tag | max plaintext         | reference  |
//! |---------------------|----|-----|-------|-----|-----------------------|------------|
//! | AES-128-CCM-8       | 1  | 16  | 13    | 8   | 65 535 bytes (L = 2)  | RFC 3610   |
//! | AES-128-GCM         | 2  | 16  | 12    | 16  | 64 GiB                | NIST SP 800-38D |
//! | ChaCha20-Poly1305   | 3  | 32  | 12    | 16  | 256 GiB               | RFC 8439   |
//! | Ascon-AEAD128       | 4  | 16  | 16    | 16  | no per-message limit  | NIST SP 800-232 |
//!
//! With random 12- or 13-byte nonces a key should not seal more than about 2^32 messages (birthday
//! bound on the nonce); protocols that send more use counters. Ascon-AEAD128's 16-byte nonce makes
//! random nonces safe for far more messages.
//!
//! Ascon-AEAD128 is the NIST-final algorithm of SP 800-232 (little-endian, new IVs), not the older
//! Ascon-128 v1.2 of the competition: `ascon-aead` 0.5 (on `aead` 0.5, the same generation as
//! `aes-gcm` 0.10), checked against the `LWC_AEAD_KAT_128_128.txt` of the Ascon reference code
//! (`vectors/crypto/ascon-aead128-kat.txt`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::rng::CryptoRng;
use crate::suite::wire_ids;
use crate::{Error, Result};

type Aes128Ccm8 = ccm::Ccm<aes::Aes128, ccm::consts::U8, ccm::consts::U13>;

wire_ids! {
    /// An AEAD algorithm with its wire identifier.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum AeadSuite {
        /// AES-128 in CCM mode with an 8-byte tag and a 13-byte nonce (RFC 3610; CoAP/OSCORE's default,
        /// cheap on devices with an AES block engine).
        Aes128Ccm8 = 1,
        /// AES-128-GCM with a 12-byte nonce and a 16-byte tag.
        Aes128Gcm = 2,
        /// ChaCha20-Poly1305 (RFC 8439), fast in software on devices without AES hardware.
        ChaCha20Poly1305 = 3,
        /// Ascon-AEAD128 (NIST SP 800-232): 16-byte key, nonce and tag; the lightweight standard for
        /// constrained devices without AES hardware.
        Ascon128 = 4,
    }
}

impl AeadSuite {
    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Self::Aes128Ccm8 | Self::Aes128Gcm | Self::Ascon128 => 16,
            Self::ChaCha20Poly1305 => 32,
        }
    }

    /// Nonce length in bytes.
    pub const fn nonce_len(self) -> usize {
        match self {
            Self::Aes128Ccm8 => 13,
            Self::Aes128Gcm | Self::ChaCha20Poly1305 => 12,
            Self::Ascon128 => 16,
        }
    }

    /// Tag length in bytes.
    pub const fn tag_len(self) -> usize {
        match self {
            Self::Aes128Ccm8 => 8,
            Self::Aes128Gcm | Self::ChaCha20Poly1305 | Self::Ascon128 => 16,
        }
    }

    /// A human-readable name, for logs and benchmark labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes128Ccm8 => "AES-128-CCM-8",
            Self::Aes128Gcm => "AES-128-GCM",
            Self::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Self::Ascon128 => "Ascon-AEAD128",
        }
    }
}

/// A symmetric key bound to its AEAD suite. Zeroized on drop; `Debug` shows only the suite.
#[derive(Clone)]
pub struct AeadKey {
    suite: AeadSuite,
    key: Zeroizing<Vec<u8>>,
}

impl ZeroizeOnDrop for AeadKey {}

impl core::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AeadKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl AeadKey {
    /// Wraps existing key bytes (from a key file or a key agreement).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `key` is not exactly `suite.key_len()` bytes.
    pub fn new(suite: AeadSuite, key: &[u8]) -> Result<Self> {
        if key.len() != suite.key_len() {
            return Err(Error::InvalidParameter("AEAD key length"));
        }
        crate::keylog::log("aead key", key);
        Ok(Self {
            suite,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// A fresh random key.
    pub fn generate(suite: AeadSuite, rng: &mut dyn CryptoRng) -> Self {
        let mut key = Zeroizing::new(vec![0u8; suite.key_len()]);
        rng.fill_bytes(&mut key);
        crate::keylog::log("aead key", &key);
        Self { suite, key }
    }

    /// Derives a key with HKDF-SHA-256 (RFC 5869) from input keying material.
    ///
    /// `info` should name the purpose (protocol, role, direction) so that keys for different uses
    /// never coincide; the suite is not mixed in, so include it in `info` if one secret feeds several
    /// suites.
    ///
    /// # Errors
    /// None in practice (key lengths are far below HKDF's limit); the `Result` mirrors
    /// [`crate::kdf::hkdf_sha256`].
    pub fn derive(suite: AeadSuite, ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<Self> {
        let mut key = Zeroizing::new(vec![0u8; suite.key_len()]);
        crate::kdf::hkdf_sha256(salt, ikm, info, &mut key)?;
        Ok(Self { suite, key })
    }

    /// The suite this key belongs to.
    pub fn suite(&self) -> AeadSuite {
        self.suite
    }

    /// The raw key bytes. Only for writing key files or feeding a KDF: copies made from this slice are
    /// not zeroized by us, so wrap them in [`Zeroizing`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }

    /// Encrypts and authenticates `plaintext`, authenticates `aad`; returns ciphertext || tag.
    ///
    /// A (key, nonce) pair must never seal two different messages.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `nonce` has the wrong length or `plaintext` exceeds the suite's
    /// limit (65 535 bytes for CCM-8).
    pub fn seal(&self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        if nonce.len() != self.suite.nonce_len() {
            return Err(Error::InvalidParameter("AEAD nonce length"));
        }
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        self.run(Direction::Seal, nonce, payload)
            .ok_or(Error::InvalidParameter("AEAD plaintext too long"))
    }

    /// Checks and decrypts ciphertext || tag.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the tag does not verify (wrong key, nonce, aad or tampering) or the
    /// input is shorter than a tag; [`Error::InvalidParameter`] if `nonce` has the wrong length.
    pub fn open(&self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if nonce.len() != self.suite.nonce_len() {
            return Err(Error::InvalidParameter("AEAD nonce length"));
        }
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        self.run(Direction::Open, nonce, payload)
            .map(Zeroizing::new)
            .ok_or(Error::Authentication)
    }

    /// Runs the suite's cipher `direction`-wards; `None` when it refuses.
    fn run(&self, direction: Direction, nonce: &[u8], payload: Payload<'_, '_>) -> Option<Vec<u8>> {
        let key = &self.key;
        match self.suite {
            AeadSuite::Aes128Ccm8 => run_with::<Aes128Ccm8>(key, direction, nonce, payload),
            AeadSuite::Aes128Gcm => run_with::<aes_gcm::Aes128Gcm>(key, direction, nonce, payload),
            AeadSuite::ChaCha20Poly1305 => {
                run_with::<chacha20poly1305::ChaCha20Poly1305>(key, direction, nonce, payload)
            }
            AeadSuite::Ascon128 => {
                run_with::<ascon_aead::AsconAead128>(key, direction, nonce, payload)
            }
        }
    }

    /// Seals under a fresh random nonce and returns nonce || ciphertext || tag.
    ///
    /// This never fails for plaintexts within the suite's limit. Beyond it (only reachable with
    /// CCM-8 and more than 65 535 bytes) it returns the bare nonce, which every receiver rejects
    /// with [`Error::Authentication`]: the contract's signature has no `Result`, and failing closed
    /// beats a panic. Use [`AeadKey::try_seal_random_nonce`] to get the error instead.
    pub fn seal_random_nonce(
        &self,
        rng: &mut dyn CryptoRng,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let nonce_len = self.suite.nonce_len();
        self.try_seal_random_nonce(rng, aad, plaintext)
            .unwrap_or_else(|_| {
                let mut nonce = vec![0u8; nonce_len];
                rng.fill_bytes(&mut nonce);
                nonce
            })
    }

    /// Like [`AeadKey::seal_random_nonce`], reporting an over-long plaintext.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `plaintext` exceeds the suite's limit.
    pub fn try_seal_random_nonce(
        &self,
        rng: &mut dyn CryptoRng,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 16];
        let nonce = &mut nonce[..self.suite.nonce_len()];
        rng.fill_bytes(nonce);
        let sealed = self.seal(nonce, aad, plaintext)?;
        let mut out = Vec::with_capacity(nonce.len() + sealed.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens nonce || ciphertext || tag as produced by [`AeadKey::seal_random_nonce`].
    ///
    /// # Errors
    /// [`Error::Authentication`] if the input is too short or does not verify.
    pub fn open_with_nonce_prefix(&self, aad: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let nonce_len = self.suite.nonce_len();
        if data.len() < nonce_len + self.suite.tag_len() {
            return Err(Error::Authentication);
        }
        let (nonce, ciphertext) = data.split_at(nonce_len);
        self.open(nonce, aad, ciphertext)
    }
}

/// Which way [`AeadKey::run`] runs a cipher.
#[derive(Clone, Copy)]
enum Direction {
    Seal,
    Open,
}

fn run_with<C: Aead + KeyInit>(
    key: &[u8],
    direction: Direction,
    nonce: &[u8],
    payload: Payload<'_, '_>,
) -> Option<Vec<u8>> {
    let cipher = C::new_from_slice(key).ok()?;
    // `from_slice` would panic on a wrong length; `seal` and `open` checked it against the suite,
    // and the suite fixes `C`'s nonce size, but we compare again rather than rely on that at a
    // distance.
    if nonce.len() != <C as aes_gcm::aead::AeadCore>::NonceSize::to_usize() {
        return None;
    }
    let nonce = aes_gcm::aead::generic_array::GenericArray::from_slice(nonce);
    match direction {
        Direction::Seal => cipher.encrypt(nonce, payload),
        Direction::Open => cipher.decrypt(nonce, payload),
    }
    .ok()
}

use aes_gcm::aead::generic_array::typenum::Unsigned as _;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn suite_ids_roundtrip() {
        for s in AeadSuite::ALL {
            assert_eq!(AeadSuite::try_from(s.id()).unwrap(), s);
        }
        assert_eq!(AeadSuite::try_from(0), Err(Error::UnknownSuite(0)));
        assert_eq!(AeadSuite::try_from(5), Err(Error::UnknownSuite(5)));
    }

    #[test]
    fn roundtrip_and_tamper_every_suite() {
        let mut rng = SeededRng::from_seed_u64(1);
        for suite in AeadSuite::ALL {
            let key = AeadKey::generate(suite, &mut rng);
            let nonce = vec![7u8; suite.nonce_len()];
            let ct = key.seal(&nonce, b"aad", b"hello").unwrap();
            assert_eq!(ct.len(), 5 + suite.tag_len());
            assert_eq!(&key.open(&nonce, b"aad", &ct).unwrap()[..], b"hello");
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(key.open(&nonce, b"aad", &bad), Err(Error::Authentication));
            assert_eq!(key.open(&nonce, b"aae", &ct), Err(Error::Authentication));
            assert_eq!(
                key.open(&nonce, b"aad", &ct[..2]),
                Err(Error::Authentication)
            );
            let other = AeadKey::generate(suite, &mut rng);
            assert_eq!(other.open(&nonce, b"aad", &ct), Err(Error::Authentication));
            assert!(key.seal(&nonce[1..], b"", b"").is_err());

            let boxed = key.seal_random_nonce(&mut rng, b"x", b"payload");
            assert_eq!(
                &key.open_with_nonce_prefix(b"x", &boxed).unwrap()[..],
                b"payload"
            );
            assert_eq!(
                key.open_with_nonce_prefix(b"x", &boxed[..3]),
                Err(Error::Authentication)
            );
            assert!(!format!("{key:?}").contains(&format!("{:?}", key.as_bytes())));
        }
    }

    #[test]
    fn ccm_length_limit_fails_closed() {
        let mut rng = SeededRng::from_seed_u64(2);
        let key = AeadKey::generate(AeadSuite::Aes128Ccm8, &mut rng);
        let big = vec![0u8; 70_000];
        assert!(key.try_seal_random_nonce(&mut rng, b"", &big).is_err());
        let out = key.seal_random_nonce(&mut rng, b"", &big);
        assert_eq!(
            key.open_with_nonce_prefix(b"", &out),
            Err(Error::Authentication)
        );
    }

    #[test]
    fn new_and_derive_check_lengths() {
        assert!(AeadKey::new(AeadSuite::Aes128Gcm, &[0; 15]).is_err());
        assert!(AeadKey::new(AeadSuite::ChaCha20Poly1305, &[0; 32]).is_ok());
        let a = AeadKey::derive(AeadSuite::Aes128Gcm, b"ikm", b"salt", b"info").unwrap();
        let b = AeadKey::derive(AeadSuite::Aes128Gcm, b"ikm", b"salt", b"info2").unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.as_bytes().len(), 16);
    }
}
