//! The cryptography of MIKEY (RFC 3830): its PRF and key derivation, the KEMAC transforms
//! (AES-CM-128, AES-KW-128, HMAC-SHA-1-160 and the NULL transforms) and public-key mode's RSA
//! (envelope-key encryption, SIGN payload).
//!
//! The wire format lives in `m2msec-wire`; this module only computes. What is where:
//!
//! | RFC 3830 | here |
//! |---|---|
//! | §4.1.2 default PRF ("MIKEY-1") | [`prf`] |
//! | §4.1.3 keys from the TGK: TEK, salt, encryption, authentication | [`TgkKey`], [`derive_tgk_key`] |
//! | §4.1.4 keys protecting the message, from a PSK or envelope key | [`MessageKey`], [`derive_message_key`], [`MessageKeys`] |
//! | §4.2.3 / §6.2 KEMAC encryption: NULL, AES-CM-128, AES-KW-128 | [`KemacEncryption`], [`aes_cm_128`], [`kemac_iv`], [`aes_kw_128_wrap`] |
//! | §4.2.4 / §6.2 / §6.9 KEMAC and V MAC: NULL, HMAC-SHA-1-160 | [`KemacMac`], [`hmac_sha1_160`], [`verify_hmac_sha1_160`] |
//! | §3.2 / §6.4 PKE payload: envelope key under the responder's RSA key | [`EnvelopeScheme`], [`encrypt_envelope_key`], [`decrypt_envelope_key`] |
//! | §3.2 / §6.5 SIGN payload: RSA PKCS#1 v1.5 or PSS | [`SignScheme`], [`sign`], [`verify`] |
//!
//! The constants and label layout were checked against the RFC's tables as quoted by two independent
//! implementations (minisip's libmikey `KeyAgreement.cxx` / `KeyAgreementPSK.cxx`, and the `mykey`
//! Rust crate); all seven constants are, in decimal, consecutive 9-digit groups of e's expansion
//! (a unit test checks it, so no digit is mistyped). The KEMAC IV was checked against libmikey's
//! `MikeyMessagePSK.cxx`. No published MIKEY KDF test
//! vector was found, so the PRF is cross-checked in `tests/mikey.rs` against a second, independent
//! HMAC-SHA-1 written from SHA-1 alone.
//!
//! # Failures
//! Every failed check (a MAC, an AES-KW integrity check, an RSA decryption, a signature) is the
//! opaque [`Error::Authentication`]; a wrong length or key type passed by local code is
//! [`Error::InvalidParameter`].
//!
//! # Zeroization
//! Derived keys, decrypted key data and envelope keys come back in [`Zeroizing`] buffers or the
//! zeroize-on-drop [`MessageKeys`]; the AES key schedules (`aes`/`ctr` with their `zeroize`
//! feature) are wiped on drop. The HMAC-SHA-1 states inside the PRF are not: `hmac` 0.12 and
//! `sha1` 0.10 offer no zeroization (the same holds for [`crate::kdf`]).
//!
//! # RSA and RUSTSEC-2023-0071
//! Public-key mode uses the crate's existing RSA-2048 keys ([`PkeSecretKey`] / [`PkePublicKey`] of
//! suite `RsaOaep2048` for the envelope key, [`SigningKey`] / [`VerifyingKey`] of suite
//! `RsaPss2048` for SIGN): the suite names the house default padding, MIKEY picks its own here. The
//! `rsa` crate's private-key operations are not constant time (the "Marvin" advisory, see the crate
//! docs), and **PKCS#1 v1.5 decryption, which RFC 3830 mandates for the envelope key, is the worst
//! case**: it is exactly the operation Marvin (and Bleichenbacher before it) turns into a decryption
//! oracle. We blind every private-key operation and return one opaque error, which does not remove
//! the timing leak. A responder that an attacker can make decrypt many chosen PKE payloads while
//! timing it should not use public-key mode.

use hmac::Mac as _;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::pke::{PkePublicKey, PkeSecretKey};
use crate::rng::{CryptoRng, SeededRng};
use crate::sig::{SigningKey, VerifyingKey};
use crate::suite::wire_ids;
use crate::{Error, Result};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;
type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Length of an HMAC-SHA-1-160 tag, and of the authentication key MIKEY derives for it (§4.2.4).
pub const HMAC_SHA1_160_LEN: usize = 20;
/// Length of an AES-CM-128 / AES-KW-128 key.
pub const AES_128_KEY_LEN: usize = 16;
/// Length of the salting key of AES-CM-128 in KEMAC: 112 bits (§4.2.3).
pub const KEMAC_SALT_LEN: usize = 14;
/// The `cs_id` that §4.1.4 puts into the label of keys protecting the MIKEY message itself.
pub const MESSAGE_CS_ID: u8 = 0xFF;

/// §4.1.2: the inkey is split into chunks of 256 bits.
const PRF_CHUNK: usize = 32;
/// SHA-1's output, the block of the P function.
const SHA1_LEN: usize = 20;

// ---------------------------------------------------------------------------------------------
// §4.1.2 PRF
// ---------------------------------------------------------------------------------------------

/// The MIKEY-1 PRF of RFC 3830 §4.1.2, `PRF(inkey, label)`, filling `out` (its length is the
/// `outkey_len` of the RFC, in bytes).
///
/// ```text
/// P(s, label, m) = HMAC(s, A_1 || label) || HMAC(s, A_2 || label) || ... || HMAC(s, A_m || label)
///     A_0 = label,  A_i = HMAC(s, A_(i-1)),  HMAC = HMAC-SHA-1
/// n = ceil(inkey_len / 256),  inkey = s_1 || ... || s_n  (each 256 bits, s_n possibly shorter)
/// m = ceil(outkey_len / 160)
/// PRF(inkey, label) = P(s_1, label, m) XOR ... XOR P(s_n, label, m), truncated to outkey_len
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if `inkey` is empty: with n = 0 the XOR of no P outputs would be an
/// all-zero "key".
pub fn prf(inkey: &[u8], label: &[u8], out: &mut [u8]) -> Result<()> {
    if inkey.is_empty() {
        return Err(Error::InvalidParameter("MIKEY PRF input key is empty"));
    }
    out.fill(0);
    for s in inkey.chunks(PRF_CHUNK) {
        p_sha1_xor(s, label, out);
    }
    crate::keylog::log("mikey prf output", out);
    Ok(())
}

/// XORs `P(s, label, m)` (m = ceil(out.len() / 20)) into `out`, truncated to `out.len()`.
fn p_sha1_xor(s: &[u8], label: &[u8], out: &mut [u8]) {
    let keyed = new_hmac_sha1(s);
    // A_1 = HMAC(s, A_0) with A_0 = label.
    let mut a = Zeroizing::new(finish(keyed.clone(), &[label]));
    for block in out.chunks_mut(SHA1_LEN) {
        let p_i = Zeroizing::new(finish(keyed.clone(), &[&a[..], label]));
        for (o, p) in block.iter_mut().zip(p_i.iter()) {
            *o ^= p;
        }
        // A_(i+1) = HMAC(s, A_i)
        *a = finish(keyed.clone(), &[&a[..]]);
    }
}

fn finish(mut mac: HmacSha1, parts: &[&[u8]]) -> [u8; SHA1_LEN] {
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn new_hmac_sha1(key: &[u8]) -> HmacSha1 {
    // HMAC takes keys of every length (RFC 2104 section 2); `new_from_slice` fails only for
    // fixed-length-key MACs.
    match <HmacSha1 as hmac::Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The PRF label of §4.1.3 / §4.1.4: `constant || cs_id || csb_id || RAND`, with the 32-bit
/// constant and the 32-bit CSB ID big-endian (network order) and `cs_id` one byte.
pub fn label(constant: u32, cs_id: u8, csb_id: u32, rand: &[u8]) -> Vec<u8> {
    let mut l = Vec::with_capacity(9 + rand.len());
    l.extend_from_slice(&constant.to_be_bytes());
    l.push(cs_id);
    l.extend_from_slice(&csb_id.to_be_bytes());
    l.extend_from_slice(rand);
    l
}

// ---------------------------------------------------------------------------------------------
// §4.1.3 / §4.1.4 key derivation
// ---------------------------------------------------------------------------------------------

/// A key derived from the TGK for one crypto session (RFC 3830 §4.1.3), with its label constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TgkKey {
    /// The TEK (for SRTP: the master key). Constant 0x2AD01C64.
    Tek,
    /// The salting key (for SRTP: the master salt). Constant 0x39A2C14B.
    Salt,
    /// An encryption key. Constant 0x15798CEF.
    Encryption,
    /// An authentication key. Constant 0x1B5C7973.
    Authentication,
}

impl TgkKey {
    /// All four, in the RFC's table order.
    pub const ALL: [Self; 4] = [
        Self::Tek,
        Self::Authentication,
        Self::Encryption,
        Self::Salt,
    ];

    /// The 32-bit label constant of §4.1.3.
    pub const fn constant(self) -> u32 {
        match self {
            Self::Tek => 0x2AD0_1C64,
            Self::Authentication => 0x1B5C_7973,
            Self::Encryption => 0x1579_8CEF,
            Self::Salt => 0x39A2_C14B,
        }
    }
}

/// A key protecting the MIKEY message itself, derived from the pre-shared key or the envelope key
/// (RFC 3830 §4.1.4), with its label constant. Its label carries `cs_id` = [`MESSAGE_CS_ID`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKey {
    /// `encr_key`, the KEMAC encryption key. Constant 0x150533E1.
    Encryption,
    /// `auth_key`, the KEMAC / V MAC key. Constant 0x2D22AC75.
    Authentication,
    /// `salt_key`, the salt of AES-CM's IV (§4.2.3). Constant 0x29B88916.
    Salt,
}

impl MessageKey {
    /// All three, in the RFC's table order.
    pub const ALL: [Self; 3] = [Self::Encryption, Self::Authentication, Self::Salt];

    /// The 32-bit label constant of §4.1.4.
    pub const fn constant(self) -> u32 {
        match self {
            Self::Encryption => 0x1505_33E1,
            Self::Authentication => 0x2D22_AC75,
            Self::Salt => 0x29B8_8916,
        }
    }
}

/// `len` bytes of the §4.1.3 key `key` of crypto session `cs_id`:
/// `PRF(TGK, constant || cs_id || csb_id || RAND)`.
///
/// # Errors
/// [`Error::InvalidParameter`] if `tgk` is empty.
pub fn derive_tgk_key(
    tgk: &[u8],
    key: TgkKey,
    cs_id: u8,
    csb_id: u32,
    rand: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    derive(tgk, key.constant(), cs_id, csb_id, rand, len)
}

/// `len` bytes of the §4.1.4 key `key`, from a pre-shared key or an envelope key:
/// `PRF(inkey, constant || 0xFF || csb_id || RAND)`.
///
/// # Errors
/// [`Error::InvalidParameter`] if `inkey` is empty.
pub fn derive_message_key(
    inkey: &[u8],
    key: MessageKey,
    csb_id: u32,
    rand: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    derive(inkey, key.constant(), MESSAGE_CS_ID, csb_id, rand, len)
}

fn derive(
    inkey: &[u8],
    constant: u32,
    cs_id: u8,
    csb_id: u32,
    rand: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    prf(inkey, &label(constant, cs_id, csb_id, rand), &mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// KEMAC transforms
// ---------------------------------------------------------------------------------------------

wire_ids! {
    /// The KEMAC payload's "Encr alg" (RFC 3830 §6.2), with its wire value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum KemacEncryption {
        /// No encryption. The RFC marks it "very restricted usage" (§6.2, §4.2.3): only where the key
        /// data needs no confidentiality from this layer (it travels over an already secure channel).
        /// Never a default; name it explicitly.
        Null = 0,
        /// AES in counter mode with a 128-bit key (§4.2.3, mandatory to implement): the default.
        AesCm128 = 1,
        /// AES key wrap (RFC 3394) with a 128-bit key (§4.2.3). The key data must be a multiple of 8
        /// bytes, at least 16; the output is 8 bytes longer.
        AesKw128 = 2,
    }
}

wire_ids! {
    /// The KEMAC payload's "MAC alg" (RFC 3830 §6.2), also the V payload's "Auth alg" (§6.9).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum KemacMac {
        /// No MAC. The RFC marks it "very restricted usage" (§6.2, §4.2.4): only where the message is
        /// authenticated otherwise — in public-key mode the SIGN payload covers the whole message.
        /// Never a default; name it explicitly.
        Null = 0,
        /// HMAC-SHA-1 with the full 160-bit output and a 160-bit key (§4.2.4, mandatory): the default.
        HmacSha1_160 = 1,
    }
}

impl KemacMac {
    /// Length of the MAC field on the wire: 0 or 20.
    pub const fn tag_len(self) -> usize {
        match self {
            Self::Null => 0,
            Self::HmacSha1_160 => HMAC_SHA1_160_LEN,
        }
    }
}

/// The AES-CM-128 IV of the KEMAC payload (RFC 3830 §4.2.3):
///
/// ```text
/// IV = (S XOR (0x0000 || CSB ID || T)) || 0x0000
/// ```
///
/// `S` is the 112-bit salting key of §4.1.4 ([`MessageKey::Salt`]), CSB ID the header's 32-bit
/// bundle ID and `T` the 64-bit timestamp of the message's T payload, all big-endian: bytes 0-1 of
/// the IV are `S[0..2]`, bytes 2-5 `S[2..6] ^ csb_id`, bytes 6-13 `S[6..14] ^ t`, bytes 14-15 zero
/// (they count the AES blocks). A 32-bit COUNTER timestamp (§6.6) is passed zero-extended.
pub fn kemac_iv(salt: &[u8; KEMAC_SALT_LEN], csb_id: u32, t: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..KEMAC_SALT_LEN].copy_from_slice(salt);
    for (b, x) in iv[2..6].iter_mut().zip(csb_id.to_be_bytes()) {
        *b ^= x;
    }
    for (b, x) in iv[6..14].iter_mut().zip(t.to_be_bytes()) {
        *b ^= x;
    }
    iv
}

/// AES-CM-128 (RFC 3711 §4.1.1, as RFC 3830 §4.2.3 uses it): XORs `data` with the keystream
/// `E(k, IV) || E(k, IV + 1 mod 2^128) || ...`. Encryption and decryption are the same call.
///
/// Counter mode has no integrity: pair it with the KEMAC MAC.
pub fn aes_cm_128(key: &[u8; AES_128_KEY_LEN], iv: &[u8; 16], data: &mut [u8]) {
    use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
    let mut cipher = Aes128Ctr::new(key.into(), iv.into());
    cipher.apply_keystream(data);
}

/// AES-KW-128 wrap (RFC 3394 section 2.2.1, default IV 0xA6A6A6A6A6A6A6A6).
///
/// # Errors
/// [`Error::InvalidParameter`] if `plaintext` is not a multiple of 8 bytes or shorter than 16.
pub fn aes_kw_128_wrap(kek: &[u8; AES_128_KEY_LEN], plaintext: &[u8]) -> Result<Vec<u8>> {
    if plaintext.len() < 16 || plaintext.len() % 8 != 0 {
        return Err(Error::InvalidParameter(
            "AES-KW input must be a multiple of 8 bytes, at least 16",
        ));
    }
    aes_kw::KekAes128::new(kek.into())
        .wrap_vec(plaintext)
        .map_err(|_| Error::InvalidParameter("AES-KW wrap failed"))
}

/// AES-KW-128 unwrap (RFC 3394 section 2.2.2) with the integrity check of section 2.2.3.
///
/// # Errors
/// [`Error::Authentication`] for any failure: a wrong length, key or tampered input.
pub fn aes_kw_128_unwrap(
    kek: &[u8; AES_128_KEY_LEN],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
        return Err(Error::Authentication);
    }
    aes_kw::KekAes128::new(kek.into())
        .unwrap_vec(wrapped)
        .map(Zeroizing::new)
        .map_err(|_| Error::Authentication)
}

/// HMAC-SHA-1 (RFC 2104) with the full 160-bit output, over the concatenation of `data`'s slices.
///
/// In MIKEY the KEMAC MAC covers the whole message up to (not including) the MAC field, and the V
/// payload's MAC the response up to its MAC field together with the fields of the initiator's
/// message that §5.2 lists: pass those pieces as slices, in order (they are concatenated as they
/// are).
pub fn hmac_sha1_160(key: &[u8], data: &[&[u8]]) -> [u8; HMAC_SHA1_160_LEN] {
    finish(new_hmac_sha1(key), data)
}

/// Checks a full 160-bit HMAC-SHA-1 `tag`, in constant time.
///
/// # Errors
/// [`Error::Authentication`] if the tag is wrong or not 20 bytes long.
pub fn verify_hmac_sha1_160(key: &[u8], data: &[&[u8]], tag: &[u8]) -> Result<()> {
    let expected = Zeroizing::new(hmac_sha1_160(key, data));
    if crate::ct::eq(&expected[..], tag) {
        Ok(())
    } else {
        Err(Error::Authentication)
    }
}

/// The three §4.1.4 keys that protect one MIKEY message — `encr_key` (16 bytes), `salt_key`
/// (14 bytes) and `auth_key` (20 bytes) — derived from a pre-shared key (PSK mode) or an envelope
/// key (public-key mode), bound to one CSB ID.
///
/// Zeroized on drop; `Debug` shows the CSB ID only.
pub struct MessageKeys {
    csb_id: u32,
    encryption: Zeroizing<[u8; AES_128_KEY_LEN]>,
    salt: Zeroizing<[u8; KEMAC_SALT_LEN]>,
    authentication: Zeroizing<[u8; HMAC_SHA1_160_LEN]>,
}

impl ZeroizeOnDrop for MessageKeys {}

impl core::fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MessageKeys")
            .field("csb_id", &format_args!("{:#010x}", self.csb_id))
            .finish_non_exhaustive()
    }
}

impl MessageKeys {
    /// Derives `encr_key`, `salt_key` and `auth_key` from `inkey` (the PSK or the envelope key),
    /// the header's CSB ID and the initiator's RAND (§4.1.4).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `inkey` is empty.
    pub fn derive(inkey: &[u8], csb_id: u32, rand: &[u8]) -> Result<Self> {
        let mut keys = Self {
            csb_id,
            encryption: Zeroizing::new([0; AES_128_KEY_LEN]),
            salt: Zeroizing::new([0; KEMAC_SALT_LEN]),
            authentication: Zeroizing::new([0; HMAC_SHA1_160_LEN]),
        };
        let lbl = |k: MessageKey| label(k.constant(), MESSAGE_CS_ID, csb_id, rand);
        prf(
            inkey,
            &lbl(MessageKey::Encryption),
            &mut keys.encryption[..],
        )?;
        prf(inkey, &lbl(MessageKey::Salt), &mut keys.salt[..])?;
        prf(
            inkey,
            &lbl(MessageKey::Authentication),
            &mut keys.authentication[..],
        )?;
        Ok(keys)
    }

    /// The CSB ID the keys were derived for.
    pub fn csb_id(&self) -> u32 {
        self.csb_id
    }

    /// The KEMAC AES-CM IV for timestamp `t` ([`kemac_iv`] with this salt and CSB ID).
    pub fn kemac_iv(&self, t: u64) -> [u8; 16] {
        kemac_iv(&self.salt, self.csb_id, t)
    }

    /// Encrypts the KEMAC "Encr data" (the concatenated Key data sub-payloads) with `alg`; `t` is
    /// the T payload value of the message that carries the KEMAC (used by AES-CM only).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for AES-KW with key data that is not a multiple of 8 bytes or
    /// shorter than 16.
    pub fn encrypt(&self, alg: KemacEncryption, t: u64, key_data: &[u8]) -> Result<Vec<u8>> {
        match alg {
            KemacEncryption::Null => Ok(key_data.to_vec()),
            KemacEncryption::AesCm128 => {
                let mut out = key_data.to_vec();
                aes_cm_128(&self.encryption, &self.kemac_iv(t), &mut out);
                Ok(out)
            }
            KemacEncryption::AesKw128 => aes_kw_128_wrap(&self.encryption, key_data),
        }
    }

    /// Decrypts a KEMAC "Encr data" field; the inverse of [`MessageKeys::encrypt`].
    ///
    /// AES-CM and NULL cannot detect tampering: verify the MAC (or the signature) first.
    ///
    /// # Errors
    /// [`Error::Authentication`] if AES-KW's integrity check fails.
    pub fn decrypt(
        &self,
        alg: KemacEncryption,
        t: u64,
        encr_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        match alg {
            KemacEncryption::Null => Ok(Zeroizing::new(encr_data.to_vec())),
            KemacEncryption::AesCm128 => {
                let mut out = Zeroizing::new(encr_data.to_vec());
                aes_cm_128(&self.encryption, &self.kemac_iv(t), &mut out);
                Ok(out)
            }
            KemacEncryption::AesKw128 => aes_kw_128_unwrap(&self.encryption, encr_data),
        }
    }

    /// The MAC field for `alg` over the concatenation of `data`: 20 bytes of HMAC-SHA-1 under
    /// `auth_key`, or nothing for [`KemacMac::Null`].
    pub fn mac(&self, alg: KemacMac, data: &[&[u8]]) -> Vec<u8> {
        match alg {
            KemacMac::Null => Vec::new(),
            KemacMac::HmacSha1_160 => hmac_sha1_160(&self.authentication[..], data).to_vec(),
        }
    }

    /// Checks a MAC field, in constant time.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the tag is wrong, or not empty for [`KemacMac::Null`].
    pub fn verify_mac(&self, alg: KemacMac, data: &[&[u8]], tag: &[u8]) -> Result<()> {
        match alg {
            KemacMac::Null if tag.is_empty() => Ok(()),
            KemacMac::Null => Err(Error::Authentication),
            KemacMac::HmacSha1_160 => verify_hmac_sha1_160(&self.authentication[..], data, tag),
        }
    }

    /// `auth_key`, for a caller that MACs with [`hmac_sha1_160`] directly.
    pub fn authentication_key(&self) -> &[u8; HMAC_SHA1_160_LEN] {
        &self.authentication
    }

    /// `encr_key`.
    pub fn encryption_key(&self) -> &[u8; AES_128_KEY_LEN] {
        &self.encryption
    }

    /// `salt_key`.
    pub fn salt_key(&self) -> &[u8; KEMAC_SALT_LEN] {
        &self.salt
    }
}

// ---------------------------------------------------------------------------------------------
// Public-key mode: PKE and SIGN payloads
// ---------------------------------------------------------------------------------------------

/// How the envelope key is encrypted to the responder's RSA key (PKE payload, RFC 3830 §3.2, §6.4).
///
/// The PKE payload carries no algorithm identifier: the scheme follows from the responder's
/// certificate, so both sides must agree on it out of band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeScheme {
    /// RSAES-PKCS1-v1_5 (RFC 8017 section 7.2), RFC 3830's mandatory scheme: the default for
    /// interoperability. **Its decryption is the worst case of RUSTSEC-2023-0071**: see the module
    /// docs.
    RsaPkcs1v15,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (RFC 8017 section 7.1): a local opt-in
    /// beyond RFC 3830's mandatory set, for deployments that control both ends.
    RsaOaepSha256,
}

/// Encrypts `env_key` to `recipient` for the PKE payload's "Data" field (256 bytes for RSA-2048).
///
/// # Errors
/// [`Error::InvalidParameter`] if `recipient` is not an RSA key or `env_key` is too long for the
/// scheme (PKCS#1 v1.5: 245 bytes, OAEP-SHA-256: 190 bytes) or empty.
pub fn encrypt_envelope_key(
    recipient: &PkePublicKey,
    scheme: EnvelopeScheme,
    rng: &mut dyn CryptoRng,
    env_key: &[u8],
) -> Result<Vec<u8>> {
    let pk = recipient.rsa_public().ok_or(Error::InvalidParameter(
        "envelope key needs an RSA public key",
    ))?;
    if env_key.is_empty() {
        return Err(Error::InvalidParameter("empty envelope key"));
    }
    let mut rng = rng;
    match scheme {
        EnvelopeScheme::RsaPkcs1v15 => pk.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, env_key),
        EnvelopeScheme::RsaOaepSha256 => {
            pk.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), env_key)
        }
    }
    .map_err(|_| Error::InvalidParameter("envelope key too long for RSA encryption"))
}

/// Decrypts the PKE payload's "Data" field with the responder's RSA key.
///
/// The private-key operation is blinded (the blinding factor comes from a per-key secret and the
/// ciphertext, so no RNG is needed). **Timing warning:** for [`EnvelopeScheme::RsaPkcs1v15`] this
/// is the operation RUSTSEC-2023-0071 ("Marvin") attacks best — a padding oracle through timing —
/// and blinding does not close it. See the module docs.
///
/// # Errors
/// [`Error::Authentication`] for any failure: not an RSA key, wrong length, wrong key, bad padding.
pub fn decrypt_envelope_key(
    key: &PkeSecretKey,
    scheme: EnvelopeScheme,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let (sk, blinding) = key.rsa_parts().ok_or(Error::Authentication)?;
    if ciphertext.len() != rsa::traits::PublicKeyParts::size(sk) {
        return Err(Error::Authentication);
    }
    let mut blinding_rng = SeededRng::from_seed(crate::hash::sha256_length_prefixed(&[
        b"m2msec/mikey/envelope-blinding",
        &blinding[..],
        ciphertext,
    ]));
    let plain = match scheme {
        EnvelopeScheme::RsaPkcs1v15 => {
            sk.decrypt_blinded(&mut blinding_rng, rsa::Pkcs1v15Encrypt, ciphertext)
        }
        EnvelopeScheme::RsaOaepSha256 => sk.decrypt_blinded(
            &mut blinding_rng,
            rsa::Oaep::new::<sha2::Sha256>(),
            ciphertext,
        ),
    };
    plain.map(Zeroizing::new).map_err(|_| Error::Authentication)
}

/// The SIGN payload's signature scheme (RFC 3830 §6.5) and hash.
///
/// The payload's 4-bit "S type" names only the padding ([`SignScheme::s_type`]): 0 = RSA/PKCS#1/1.5,
/// 1 = RSA/PSS. The hash is not on the wire; RFC 3830 (2004) makes SHA-1 the mandatory hash
/// (§4.2.1), so the `…Sha1` schemes are the interoperable ones. The `…Sha256` variants are a
/// deployment choice beyond the RFC's registry, for both ends under one operator. PSS uses MGF1 with
/// the same hash and a salt as long as the hash (RFC 8017 section 9.1 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-1: S type 0, RFC 3830's mandatory scheme.
    Pkcs1v15Sha1,
    /// RSASSA-PSS with SHA-1: S type 1.
    PssSha1,
    /// RSASSA-PKCS1-v1_5 with SHA-256: S type 0, local choice.
    Pkcs1v15Sha256,
    /// RSASSA-PSS with SHA-256: S type 1, local choice.
    PssSha256,
}

impl SignScheme {
    /// The four, RFC-mandatory first.
    pub const ALL: [Self; 4] = [
        Self::Pkcs1v15Sha1,
        Self::PssSha1,
        Self::Pkcs1v15Sha256,
        Self::PssSha256,
    ];

    /// The SIGN payload's "S type": 0 for PKCS#1 v1.5, 1 for PSS.
    pub const fn s_type(self) -> u8 {
        match self {
            Self::Pkcs1v15Sha1 | Self::Pkcs1v15Sha256 => 0,
            Self::PssSha1 | Self::PssSha256 => 1,
        }
    }
}

/// Signs `msg` (the whole MIKEY message up to the SIGN payload's signature field, §5.2) with an RSA
/// signing key; the signature is as long as the modulus (256 bytes for RSA-2048). The private-key
/// operation is blinded with `rng`, which also supplies PSS's salt.
///
/// # Errors
/// [`Error::InvalidParameter`] if `key` is not an RSA key.
pub fn sign(
    key: &SigningKey,
    scheme: SignScheme,
    rng: &mut dyn CryptoRng,
    msg: &[u8],
) -> Result<Vec<u8>> {
    use sha1::Digest as _;
    let sk = key
        .rsa_private()
        .ok_or(Error::InvalidParameter("SIGN needs an RSA signing key"))?;
    let mut rng = rng;
    match scheme {
        SignScheme::Pkcs1v15Sha1 => sk.sign_with_rng(
            &mut rng,
            rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
            &sha1::Sha1::digest(msg),
        ),
        SignScheme::PssSha1 => sk.sign_with_rng(
            &mut rng,
            rsa::Pss::new::<sha1::Sha1>(),
            &sha1::Sha1::digest(msg),
        ),
        SignScheme::Pkcs1v15Sha256 => sk.sign_with_rng(
            &mut rng,
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(msg),
        ),
        SignScheme::PssSha256 => sk.sign_with_rng(
            &mut rng,
            rsa::Pss::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(msg),
        ),
    }
    // Signing fails only for a modulus too small for the padding, which RSA-2048 never is.
    .map_err(|_| Error::InvalidParameter("RSA signing failed"))
}

/// Verifies a SIGN payload signature on `msg` with an RSA verifying key.
///
/// # Errors
/// [`Error::Authentication`] if the signature is invalid, of the wrong length, or `key` is not an
/// RSA key.
pub fn verify(key: &VerifyingKey, scheme: SignScheme, msg: &[u8], sig: &[u8]) -> Result<()> {
    use sha1::Digest as _;
    let pk = key.rsa_public().ok_or(Error::Authentication)?;
    if sig.len() != rsa::traits::PublicKeyParts::size(pk) {
        return Err(Error::Authentication);
    }
    match scheme {
        SignScheme::Pkcs1v15Sha1 => pk.verify(
            rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
            &sha1::Sha1::digest(msg),
            sig,
        ),
        SignScheme::PssSha1 => {
            pk.verify(rsa::Pss::new::<sha1::Sha1>(), &sha1::Sha1::digest(msg), sig)
        }
        SignScheme::Pkcs1v15Sha256 => pk.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(msg),
            sig,
        ),
        SignScheme::PssSha256 => pk.verify(
            rsa::Pss::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(msg),
            sig,
        ),
    }
    .map_err(|_| Error::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_layout() {
        let l = label(0x2AD0_1C64, 0x01, 0x0A0B_0C0D, &[0xEE; 3]);
        assert_eq!(
            l,
            [
                0x2A, 0xD0, 0x1C, 0x64, 0x01, 0x0A, 0x0B, 0x0C, 0x0D, 0xEE, 0xEE, 0xEE
            ]
        );
    }

    #[test]
    fn constants_are_the_rfc_tables() {
        // RFC 3830 §4.1.3 and §4.1.4 (cross-checked against libmikey's KeyAgreement.cxx).
        assert_eq!(TgkKey::Tek.constant(), 0x2AD01C64);
        assert_eq!(TgkKey::Authentication.constant(), 0x1B5C7973);
        assert_eq!(TgkKey::Encryption.constant(), 0x15798CEF);
        assert_eq!(TgkKey::Salt.constant(), 0x39A2C14B);
        assert_eq!(MessageKey::Encryption.constant(), 0x150533E1);
        assert_eq!(MessageKey::Authentication.constant(), 0x2D22AC75);
        assert_eq!(MessageKey::Salt.constant(), 0x29B88916);
    }

    /// A consistency check on transcription: the seven constants are the first seven 9-digit groups
    /// of e's decimals (e = 2.718281828 459045235 360287471 ...), in the order TEK, TGK auth, TGK
    /// encr, message encr, message auth, message salt, TGK salt. One mistyped hex digit breaks it.
    #[test]
    fn constants_are_nine_digit_groups_of_e() {
        const E_DECIMALS: &str = "718281828459045235360287471352662497757247093699959574966967627";
        let ordered = [
            TgkKey::Tek.constant(),
            TgkKey::Authentication.constant(),
            TgkKey::Encryption.constant(),
            MessageKey::Encryption.constant(),
            MessageKey::Authentication.constant(),
            MessageKey::Salt.constant(),
            TgkKey::Salt.constant(),
        ];
        for (i, c) in ordered.iter().enumerate() {
            assert_eq!(c.to_string(), E_DECIMALS[9 * i..9 * (i + 1)], "group {i}");
        }
    }

    #[test]
    fn kemac_iv_layout() {
        let salt = [0u8; KEMAC_SALT_LEN];
        let iv = kemac_iv(&salt, 0x1122_3344, 0x5566_7788_99AA_BBCC);
        assert_eq!(
            iv,
            [
                0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0, 0
            ]
        );
        let salt = [0xFF; KEMAC_SALT_LEN];
        let iv = kemac_iv(&salt, 0, 0);
        assert_eq!(iv[..14], [0xFF; 14]);
        assert_eq!(iv[14..], [0, 0]);
    }

    #[test]
    fn prf_rejects_empty_key_and_handles_empty_output() {
        let mut out = [0u8; 4];
        assert!(prf(&[], b"l", &mut out).is_err());
        assert!(prf(b"k", b"l", &mut []).is_ok());
    }

    #[test]
    fn message_keys_debug_is_redacted() {
        let keys = MessageKeys::derive(b"psk", 7, b"rand").unwrap_or_else(|_| unreachable!());
        let dbg = format!("{keys:?}");
        assert!(dbg.contains("0x00000007"));
        assert!(!dbg.contains(&format!("{:?}", keys.authentication_key())));
    }
}
