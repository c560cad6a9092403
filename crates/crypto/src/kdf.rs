//! HKDF-SHA-256 (RFC 5869) and HMAC-SHA-256 (RFC 2104).

use hmac::Mac as _;

use crate::{Error, Result};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Length of an HMAC-SHA-256 tag.
pub const HMAC_SHA256_LEN: usize = 32;

/// HKDF-SHA-256 extract-then-expand (RFC 5869 section 2) into `out`.
///
/// # Errors
/// [`Error::InvalidParameter`] if `out` is longer than 255 × 32 = 8160 bytes, the RFC's limit.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| Error::InvalidParameter("HKDF output longer than 8160 bytes"))?;
    crate::keylog::log("hkdf output", out);
    Ok(())
}

/// HMAC-SHA-256 of the concatenation of `data`'s slices under `key`.
///
/// The slices are concatenated as they are: if their boundaries matter, encode them first (for
/// example with length prefixes).
pub fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let mut mac = new_hmac(key);
    for part in data {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Checks an HMAC-SHA-256 `tag` over `data` under `key`, in constant time.
///
/// # Errors
/// [`Error::Authentication`] if the tag is wrong or not 32 bytes long.
pub fn verify_hmac_sha256(key: &[u8], data: &[&[u8]], tag: &[u8]) -> Result<()> {
    let expected = hmac_sha256(key, data);
    if crate::ct::eq(&expected, tag) {
        Ok(())
    } else {
        Err(Error::Authentication)
    }
}

fn new_hmac(key: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of every length (RFC 2104 section 2: long keys are hashed, short ones
    // padded), so `new_from_slice` cannot fail for it; the `Result` exists for fixed-key MACs.
    match <HmacSha256 as hmac::Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_roundtrip_and_tamper() {
        let tag = hmac_sha256(b"key", &[b"hello ", b"world"]);
        assert_eq!(tag, hmac_sha256(b"key", &[b"hello world"]));
        assert!(verify_hmac_sha256(b"key", &[b"hello world"], &tag).is_ok());
        let mut bad = tag;
        bad[0] ^= 1;
        assert_eq!(
            verify_hmac_sha256(b"key", &[b"hello world"], &bad),
            Err(Error::Authentication)
        );
        assert_eq!(
            verify_hmac_sha256(b"key", &[b"hello world"], &tag[..16]),
            Err(Error::Authentication)
        );
        assert_eq!(
            verify_hmac_sha256(b"yek", &[b"hello world"], &tag),
            Err(Error::Authentication)
        );
    }

    #[test]
    fn hkdf_too_long() {
        let mut out = vec![0u8; 8161];
        assert!(hkdf_sha256(b"", b"ikm", b"", &mut out).is_err());
        let mut out = vec![0u8; 8160];
        assert!(hkdf_sha256(b"", b"ikm", b"", &mut out).is_ok());
    }
}
