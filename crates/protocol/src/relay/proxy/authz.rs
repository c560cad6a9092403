//! Owner authorisation of `forward`, `control` and `DELETE storage` (contract: `api::Signed`;
//! paper 004 §IV-B: only the storage's owner may designate sinks or change a forward).
//!
//! The owner signs `api::signed_input(path, timestamp_ms, payload)` with the Ed25519 key it
//! registered at `store`, and names that key in the envelope (`Signed::key`: Ed25519 has no key
//! recovery). The proxy refuses with 4.01 Unauthorized a request without a well-formed
//! envelope, with a timestamp further than `signed_max_skew_s` from its clock, with a signature
//! that does not verify under the key it names, or that it accepted before (replay); and with
//! 4.03 Forbidden a request validly signed by a key that is not this storage's owner. Ed25519
//! signatures are deterministic and verified strictly (no malleable second form), so the replay
//! cache can key on the signature itself.

use m2msec_crypto::hash::sha256;
use m2msec_crypto::sig::{SigSuite, VerifyingKey};
use m2msec_wire::relay::api::{Signed, signed_input};

/// Why an owner-signed request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// 4.01, with the reason given as diagnostic.
    Unauthorized(&'static str),
    /// 4.03: a valid signature, but not by the owner.
    Forbidden,
}

/// Checks `signed` for resource `path` against the storage's `owner`.
///
/// # Errors
///
/// [`Refused`] as described in the module documentation (the replay check is the caller's, on
/// the store: [`replay_key`]).
pub fn check(
    path: &str,
    signed: &Signed,
    owner: &VerifyingKey,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<(), Refused> {
    if signed.timestamp_ms.abs_diff(now_ms) > max_skew_ms {
        return Err(Refused::Unauthorized("stale timestamp"));
    }
    let Some(signer) = owner_key(&signed.key.0) else {
        return Err(Refused::Unauthorized(
            "the signer's key is not an Ed25519 key",
        ));
    };
    let input = signed_input(path, signed.timestamp_ms, &signed.payload.0);
    if signer.verify(&input, &signed.signature.0).is_err() {
        return Err(Refused::Unauthorized("invalid signature"));
    }
    if signer.to_bytes() != owner.to_bytes() {
        return Err(Refused::Forbidden);
    }
    Ok(())
}

/// The replay-cache key of an accepted envelope.
pub fn replay_key(signed: &Signed) -> [u8; 32] {
    sha256(&signed.signature.0)
}

/// Parses the owner key of a `StoreRequest`: 32 raw Ed25519 bytes, or the 33-byte
/// `sig::VerifyingKey::to_bytes` form of an Ed25519 key.
pub fn owner_key(bytes: &[u8]) -> Option<VerifyingKey> {
    let key = match bytes.len() {
        32 => {
            let mut tagged = Vec::with_capacity(33);
            tagged.push(SigSuite::Ed25519.id());
            tagged.extend_from_slice(bytes);
            VerifyingKey::from_bytes(&tagged).ok()?
        }
        33 => VerifyingKey::from_bytes(bytes).ok()?,
        _ => return None,
    };
    (key.suite() == SigSuite::Ed25519).then_some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use m2msec_crypto::rng::OsRng;
    use m2msec_crypto::sig::SigningKey;
    use m2msec_wire::cbor::Bytes;

    use super::*;

    fn sign(key: &SigningKey, path: &str, ts: u64, payload: &[u8]) -> Signed {
        Signed {
            payload: Bytes(payload.to_vec()),
            timestamp_ms: ts,
            signature: Bytes(key.sign(&mut OsRng, &signed_input(path, ts, payload))),
            key: Bytes(key.verifying_key().to_bytes()),
        }
    }

    #[test]
    fn owner_other_and_invalid() {
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap();
        let other = SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap();
        let ov = owner.verifying_key();
        let now = 1_000_000;
        let ok = sign(&owner, "forward", now, b"x");
        assert_eq!(check("forward", &ok, &ov, now, 1000), Ok(()));
        // Bound to the path.
        assert_eq!(
            check("storage/1", &ok, &ov, now, 1000),
            Err(Refused::Unauthorized("invalid signature"))
        );
        // Stale either way.
        let old = sign(&owner, "forward", now - 1001, b"x");
        assert_eq!(
            check("forward", &old, &ov, now, 1000),
            Err(Refused::Unauthorized("stale timestamp"))
        );
        let future = sign(&owner, "forward", now + 1001, b"x");
        assert!(check("forward", &future, &ov, now, 1000).is_err());
        // A valid signature by another key: forbidden.
        let by_other = sign(&other, "forward", now, b"x");
        assert_eq!(
            check("forward", &by_other, &ov, now, 1000),
            Err(Refused::Forbidden)
        );
        // Another key named, the owner's signature: does not verify.
        let mut swapped = ok.clone();
        swapped.key = by_other.key;
        assert_eq!(
            check("forward", &swapped, &ov, now, 1000),
            Err(Refused::Unauthorized("invalid signature"))
        );
        let mut no_key = ok.clone();
        no_key.key = Bytes(vec![1, 2, 3]);
        assert!(matches!(
            check("forward", &no_key, &ov, now, 1000),
            Err(Refused::Unauthorized(_))
        ));
        assert_eq!(replay_key(&ok), replay_key(&ok.clone()));
    }

    #[test]
    fn owner_key_forms() {
        let k = SigningKey::generate(SigSuite::Ed25519, &mut OsRng).unwrap();
        let tagged = k.verifying_key().to_bytes();
        assert_eq!(tagged.len(), 33);
        assert!(owner_key(&tagged).is_some());
        assert!(owner_key(&tagged[1..]).is_some());
        assert!(owner_key(&tagged[2..]).is_none());
        assert!(owner_key(&[0u8; 33]).is_none());
    }
}
