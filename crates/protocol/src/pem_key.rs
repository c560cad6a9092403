//! The PEM forms of the protocols' own keys ([`PemKey`]; the node reads and writes the files):
//!
//! | what                         | PEM label                  | body                                 |
//! |------------------------------|----------------------------|--------------------------------------|
//! | collab server certificate    | `M2MSEC CERTIFICATE`       | [`Certificate::to_bytes`]            |
//! | MIKEY pre-shared key         | `M2MSEC MIKEY PSK`         | the raw key, at least 16 bytes       |
//! | SGA device key k_d           | `M2MSEC SGA DEVICE KEY`    | the raw key, at least 16 bytes       |
//! | E2SEC secret key x           | `M2MSEC E2SEC SECRET KEY`  | group id byte, then the scalar       |
//! | E2SEC public key v = g^x     | `M2MSEC E2SEC PUBLIC KEY`  | group id byte, then the element      |
//! | relay source seed            | `M2MSEC RELAY SOURCE SEED` | the 32 seed bytes                    |
//!
//! A MIKEY pre-shared key (RFC 3830 §3.1) is raw bytes of any length from 16 on, without an
//! AEAD: its own label says so. A `M2MSEC SYMMETRIC KEY` file (an [`AeadKey`]) is read as a MIKEY
//! pre-shared key too; its suite byte is then ignored.
//!
//! The E2SEC group id bytes are those of [`GroupId`]: 2 DSA-1024/160 (RFC 5114 §2.1, legacy),
//! 3 DSA-2048/256 (RFC 5114 §2.3), 4 Ristretto255. The scalar is the group's canonical encoding
//! (big-endian mod q for the DSA groups, 32 little-endian bytes for Ristretto255), the element
//! likewise (big-endian mod p, or the 32-byte Ristretto encoding).

use m2msec_crypto::aead::AeadKey;
use m2msec_crypto::group::{Group, GroupId};
pub use m2msec_crypto::pem_key::{BodyError, PemKey};
use zeroize::Zeroizing;

use crate::collab::Certificate;
use crate::e2sec::{PublicKey, SecretKey};
use crate::mikey::Psk;
use crate::relay::SourceSeed;
use crate::sga::DeviceKey;

/// Shortest MIKEY pre-shared key or SGA device key accepted.
pub const MIN_RAW_KEY_LEN: usize = 16;

impl PemKey for Certificate {
    const LABEL: &'static str = "M2MSEC CERTIFICATE";

    fn to_body(&self) -> m2msec_crypto::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.to_bytes()))
    }

    fn from_body(_: &str, body: &[u8]) -> Result<Self, BodyError> {
        Self::from_bytes(body).map_err(|e| BodyError(format!("malformed certificate: {e}")))
    }
}

/// Refuses a raw key (`what`) shorter than [`MIN_RAW_KEY_LEN`].
fn raw_key(what: &str, body: &[u8]) -> Result<(), BodyError> {
    if body.len() < MIN_RAW_KEY_LEN {
        let n = body.len();
        let what = format!("{what} has at least {MIN_RAW_KEY_LEN} bytes, this one {n}");
        return Err(BodyError(what));
    }
    Ok(())
}

impl PemKey for Psk {
    const LABEL: &'static str = "M2MSEC MIKEY PSK";
    const ALSO_READS: &'static [&'static str] = &[AeadKey::LABEL];

    fn to_body(&self) -> m2msec_crypto::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.as_bytes().to_vec()))
    }

    fn from_body(label: &str, body: &[u8]) -> Result<Self, BodyError> {
        // A symmetric key file: its key bytes, after the suite byte.
        let key = if label == AeadKey::LABEL {
            body.get(1..).unwrap_or_default()
        } else {
            body
        };
        raw_key("a MIKEY pre-shared key", key)?;
        Self::new(key).map_err(|e| BodyError(e.to_string()))
    }
}

impl PemKey for DeviceKey {
    const LABEL: &'static str = "M2MSEC SGA DEVICE KEY";

    fn to_body(&self) -> m2msec_crypto::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.as_bytes().to_vec()))
    }

    fn from_body(_: &str, body: &[u8]) -> Result<Self, BodyError> {
        raw_key("an SGA device key", body)?;
        Self::new(body).map_err(|e| BodyError(e.to_string()))
    }
}

/// The group of an E2SEC key body and the rest of it.
fn e2sec_group(body: &[u8]) -> Result<(GroupId, &[u8]), BodyError> {
    let (&id, rest) = body
        .split_first()
        .ok_or_else(|| BodyError("empty E2SEC key".into()))?;
    match GroupId::try_from(id) {
        Ok(GroupId::Modp2048) | Err(_) => Err(BodyError(format!(
            "unknown E2SEC group id {id} (2 DSA-1024/160, 3 DSA-2048/256, 4 Ristretto255)"
        ))),
        Ok(g) => Ok((g, rest)),
    }
}

/// A group id byte, then `encoding`.
fn with_group(group: GroupId, encoding: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(1 + encoding.len()));
    body.push(group.id());
    body.extend_from_slice(encoding);
    body
}

impl PemKey for SecretKey {
    const LABEL: &'static str = "M2MSEC E2SEC SECRET KEY";

    fn to_body(&self) -> m2msec_crypto::Result<Zeroizing<Vec<u8>>> {
        Ok(with_group(self.group(), &self.to_bytes()))
    }

    fn from_body(_: &str, body: &[u8]) -> Result<Self, BodyError> {
        let (group, scalar) = e2sec_group(body)?;
        Self::from_bytes(group, scalar)
            .map_err(|e| BodyError(format!("not a {} secret key: {e}", group.name())))
    }
}

impl PemKey for PublicKey {
    const LABEL: &'static str = "M2MSEC E2SEC PUBLIC KEY";

    fn to_body(&self) -> m2msec_crypto::Result<Zeroizing<Vec<u8>>> {
        Ok(with_group(self.group, &self.element))
    }

    /// Checks that the element is in the group.
    fn from_body(_: &str, body: &[u8]) -> Result<Self, BodyError> {
        let (group, element) = e2sec_group(body)?;
        Group::new(group)
            .element_from_bytes(element)
            .map_err(|e| BodyError(format!("not a {} public key: {e}", group.name())))?;
        let element = element.to_vec();
        Ok(Self { group, element })
    }
}

impl PemKey for SourceSeed {
    const LABEL: &'static str = "M2MSEC RELAY SOURCE SEED";

    fn to_body(&self) -> m2msec_crypto::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.expose().to_vec()))
    }

    fn from_body(_: &str, body: &[u8]) -> Result<Self, BodyError> {
        let seed = <[u8; 32]>::try_from(body).map_err(|_| {
            BodyError(format!(
                "a source seed has 32 bytes, this one {}",
                body.len()
            ))
        })?;
        Ok(Self::new(seed))
    }
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::aead::AeadSuite;
    use m2msec_crypto::rng::SeededRng;

    use super::*;

    fn refused<K: PemKey>(label: &str, body: &[u8], what: &str) -> bool {
        K::from_body(label, body).is_err_and(|e| e.0.contains(what))
    }

    #[test]
    fn mikey_psk_from_both_labels() {
        let own = Psk::from_body(Psk::LABEL, &[7; 32]);
        assert!(own.is_ok_and(|k| k.as_bytes() == [7; 32]));
        let mut rng = SeededRng::from_seed_u64(2);
        let aead = AeadKey::generate(AeadSuite::Aes128Ccm8, &mut rng);
        let body = aead.to_body().unwrap_or_default();
        let sym = Psk::from_body(AeadKey::LABEL, &body);
        assert!(sym.is_ok_and(|k| k.as_bytes() == aead.as_bytes()));
        assert!(refused::<Psk>(
            Psk::LABEL,
            &[1; 8],
            "at least 16 bytes, this one 8"
        ));
    }

    #[test]
    fn raw_keys_and_seeds_say_their_length() {
        assert!(refused::<DeviceKey>(
            DeviceKey::LABEL,
            &[1; 15],
            "this one 15"
        ));
        assert!(refused::<SourceSeed>(
            SourceSeed::LABEL,
            &[1; 8],
            "has 32 bytes, this one 8"
        ));
        let seed = SourceSeed::from_body(SourceSeed::LABEL, &[9; 32]);
        assert!(seed.is_ok_and(|s| *s.expose() == [9; 32]));
    }

    #[test]
    fn e2sec_keys_round_trip_with_their_group() -> Result<(), crate::e2sec::Error> {
        let mut rng = SeededRng::from_seed_u64(3);
        let x = SecretKey::generate(GroupId::Ristretto255, &mut rng);
        let back = SecretKey::from_body(SecretKey::LABEL, &x.to_body()?);
        assert!(back.is_ok_and(|b| b.to_bytes() == x.to_bytes()));
        let v = x.public()?;
        assert_eq!(
            PublicKey::from_body(PublicKey::LABEL, &v.to_body()?).ok(),
            Some(v)
        );
        assert!(refused::<SecretKey>(
            SecretKey::LABEL,
            &[],
            "empty E2SEC key"
        ));
        assert!(refused::<PublicKey>(
            PublicKey::LABEL,
            &[1, 0],
            "unknown E2SEC group id 1"
        ));
        Ok(())
    }
}
