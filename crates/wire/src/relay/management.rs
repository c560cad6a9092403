//! Management message bodies: the AFGH-protected (stream id, key index, key) of a section.
//!
//! A relay message whose header has the MANAGEMENT flag (paper 004 §III-C), or an individually
//! protected message (STREAM clear, §III-B), carries a [`Body`]: `[type, version, epoch, afgh]`,
//! where `afgh` is an AFGH ciphertext (`m2msec_crypto::pre::SecondLevel` bytes as the source
//! sends it, `FirstLevel` bytes once the proxy has re-encrypted it and set REENCRYPTED). The
//! epoch is in the clear because the proxy picks the re-encryption key by it.
//!
//! The AFGH plaintext of a management message is a [`SectionKey`]: the section's AEAD key and
//! its validity, signed by the source's owner key over [`SectionKey::signed_input`]. The
//! signature sits *inside* the ciphertext: AFGH is only CPA-secure and anyone holding the
//! source's public key can encrypt to it, so without the signature a proxy could inject a key of
//! its own choosing; inside, it also stays hidden from the proxy. For an individual message the
//! AFGH plaintext is an [`Individual`]: the data and the owner's signature over it.

use zeroize::Zeroizing;

use crate::cbor::{self, Bytes, SecretBytes};
use crate::{cbor_messages, cbor_struct};

/// Version of the management body format, carried in every [`Body`].
pub const VERSION: u8 = 1;

/// Domain separation of the owner's signature over a section key.
pub const SIGNATURE_CONTEXT: &str = "m2msec relay section key v1";

cbor_messages! {
    version = VERSION;
    /// Every management body type (one today; the type code leaves room for more).
    pub enum Management {
        /// The body of a management or individually protected relay message.
        Body = 1 => {
            /// The epoch whose AFGH key pair of the source sealed `afgh`: the proxy re-encrypts
            /// with the sink's re-encryption key for this epoch, or not at all.
            pub epoch: u32,
            /// The AFGH ciphertext: second-level as sent, first-level after re-encryption.
            pub afgh: Bytes,
        },
    }
}

impl Body {
    /// Decodes a body, refusing anything but its one deterministic encoding.
    ///
    /// # Errors
    /// Whatever is wrong with the bytes (truncation, another type or version, trailing bytes,
    /// a non-deterministic encoding); never panics.
    pub fn from_bytes(bytes: &[u8]) -> crate::Result<Self> {
        let Management::Body(body) = Management::decode(bytes)?;
        Ok(body)
    }
}

cbor_struct! {
    /// The AFGH plaintext of a management message: one section of a key stream.
    pub struct SectionKey {
        /// The stream, equal to the header's stream id.
        pub stream_id: u16,
        /// The key's index in the key stream, equal to the header's key index.
        pub key_index: u16,
        /// The AEAD suite id of `key` (`m2msec_crypto::aead::AeadSuite::id`).
        pub suite: u8,
        /// The section's AEAD key.
        pub key: SecretBytes,
        /// Start of the section's validity, ms since the UNIX epoch: the sink refuses data of
        /// this section it processes earlier.
        pub not_before_ms: u64,
        /// End of the section's validity, ms since the UNIX epoch (inclusive).
        pub not_after_ms: u64,
        /// The source owner's signature over [`SectionKey::signed_input`].
        pub signature: Bytes,
    }
}

/// `to_bytes` and `from_bytes` of an AFGH plaintext, which holds a secret: its encoding is
/// zeroized on drop.
macro_rules! secret_plaintext {
    ($ty:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!(
                        "The deterministic CBOR encoding; zeroized on drop since it holds the ",
                        $what,
                        "."
                    )]
            #[must_use]
            pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
                Zeroizing::new(cbor::to_vec(self))
            }

            /// Decodes it, refusing anything but its one deterministic encoding.
            ///
            /// # Errors
            /// Whatever is wrong with the bytes; never panics.
            pub fn from_bytes(bytes: &[u8]) -> crate::Result<Self> {
                cbor::from_slice(bytes)
            }
        }
    };
}

/// The start of an owner-signed input, `[context, header_aad, epoch, ...]`, an array of `len`
/// items.
fn signed_input_start(len: usize, context: &str, header_aad: &[u8], epoch: u32) -> cbor::Writer {
    let mut w = cbor::Writer::new();
    w.array(len);
    w.text(context);
    w.bytes(header_aad);
    w.uint(u64::from(epoch));
    w
}

secret_plaintext!(SectionKey, "key");

impl SectionKey {
    /// What the owner signs: the CBOR array
    /// `[SIGNATURE_CONTEXT, header_aad, epoch, stream_id, key_index, suite, key, not_before_ms,
    /// not_after_ms]`.
    ///
    /// `header_aad` is the relay header's authenticated bytes (version, flags without
    /// REENCRYPTED, message id, stream id, key index, source URL), so the signature binds the
    /// key to this source, stream and section and to this very management message; the epoch
    /// binds it to the AFGH key pair that sealed it. Zeroized on drop since it holds the key.
    #[must_use]
    pub fn signed_input(&self, header_aad: &[u8], epoch: u32) -> Zeroizing<Vec<u8>> {
        let mut w = signed_input_start(9, SIGNATURE_CONTEXT, header_aad, epoch);
        w.uint(u64::from(self.stream_id));
        w.uint(u64::from(self.key_index));
        w.uint(u64::from(self.suite));
        w.bytes(self.key.expose());
        w.uint(self.not_before_ms);
        w.uint(self.not_after_ms);
        Zeroizing::new(w.into_bytes())
    }
}

/// Domain separation of the owner's signature over an individually protected message.
pub const INDIVIDUAL_SIGNATURE_CONTEXT: &str = "m2msec relay individual v1";

cbor_struct! {
    /// The AFGH plaintext of an individually protected message (STREAM clear, §III-B): the data
    /// and the source owner's signature over [`Individual::signed_input`].
    ///
    /// Signed for the same reason as [`SectionKey`]: AFGH does not authenticate its sender, so an
    /// unsigned individual message could be forged by anyone who can encrypt to the source.
    pub struct Individual {
        /// The data (zeroized on drop, redacted in `Debug`).
        pub data: SecretBytes,
        /// The source owner's signature.
        pub signature: Bytes,
    }
}

secret_plaintext!(Individual, "data");

impl Individual {
    /// What the owner signs: `[INDIVIDUAL_SIGNATURE_CONTEXT, header_aad, epoch, data]`, binding
    /// the data to the header's 64-bit id and source and to the sealing epoch.
    #[must_use]
    pub fn signed_input(&self, header_aad: &[u8], epoch: u32) -> Zeroizing<Vec<u8>> {
        let mut w = signed_input_start(4, INDIVIDUAL_SIGNATURE_CONTEXT, header_aad, epoch);
        w.bytes(self.data.expose());
        Zeroizing::new(w.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn section_key() -> SectionKey {
        SectionKey {
            stream_id: 7,
            key_index: 65535,
            suite: 3,
            key: SecretBytes::new(vec![0x42; 32]),
            not_before_ms: 1_700_000_000_000,
            not_after_ms: 1_700_000_060_000,
            signature: Bytes(vec![0xa5; 64]),
        }
    }

    #[test]
    fn body_round_trip_and_layout() {
        let body = Body {
            epoch: 472_222,
            afgh: Bytes(vec![1, 2, 3]),
        };
        let bytes = body.to_bytes();
        // [1, 1, 472222, h'010203']
        assert_eq!(
            bytes,
            [
                0x84, 0x01, 0x01, 0x1a, 0x00, 0x07, 0x34, 0x9e, 0x43, 1, 2, 3
            ]
        );
        assert_eq!(Body::from_bytes(&bytes), Ok(body));
    }

    #[test]
    fn body_refuses_wrong_version_type_and_shape() {
        let good = Body {
            epoch: 1,
            afgh: Bytes(vec![9]),
        }
        .to_bytes();
        let mut wrong_version = good.clone();
        wrong_version[2] = 2;
        assert_eq!(
            Body::from_bytes(&wrong_version),
            Err(Error::UnsupportedVersion(2))
        );
        let mut wrong_type = good.clone();
        wrong_type[1] = 9;
        assert_eq!(
            Body::from_bytes(&wrong_type),
            Err(Error::UnknownMessageType(9))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            Body::from_bytes(&trailing),
            Err(Error::TrailingBytes(1))
        ));
        assert_eq!(
            Body::from_bytes(&good[..good.len() - 1]),
            Err(Error::Truncated)
        );
        // An epoch beyond u32.
        let big = [0x84, 0x01, 0x01, 0x1b, 0, 0, 0, 1, 0, 0, 0, 0, 0x40];
        assert_eq!(Body::from_bytes(&big), Err(Error::IntegerRange));
        // A non-minimal epoch (1 as a two-byte integer).
        let long = [0x84, 0x01, 0x01, 0x19, 0x00, 0x01, 0x41, 9];
        assert_eq!(Body::from_bytes(&long), Err(Error::NonCanonical));
        // Three fields.
        let short = [0x83, 0x01, 0x01, 0x01];
        assert!(matches!(
            Body::from_bytes(&short),
            Err(Error::WrongArity { .. })
        ));
    }

    #[test]
    fn section_key_round_trip_redacts_key() {
        let sk = section_key();
        let bytes = sk.to_bytes();
        assert_eq!(SectionKey::from_bytes(&bytes), Ok(sk.clone()));
        let debug = format!("{sk:?}");
        assert!(!debug.contains("4242"), "{debug}");
        assert!(debug.contains("<secret, 32 bytes>"), "{debug}");
        assert!(SectionKey::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(SectionKey::from_bytes(&[0x80]).is_err());
    }

    #[test]
    fn signed_input_binds_every_field() {
        let sk = section_key();
        let base = sk.signed_input(b"aad", 5);
        assert_ne!(*base, *sk.signed_input(b"aae", 5));
        assert_ne!(*base, *sk.signed_input(b"aad", 6));
        let variants = [
            SectionKey {
                stream_id: 8,
                ..sk.clone()
            },
            SectionKey {
                key_index: 0,
                ..sk.clone()
            },
            SectionKey {
                suite: 2,
                ..sk.clone()
            },
            SectionKey {
                key: SecretBytes::new(vec![0x43; 32]),
                ..sk.clone()
            },
            SectionKey {
                not_before_ms: 0,
                ..sk.clone()
            },
            SectionKey {
                not_after_ms: 0,
                ..sk.clone()
            },
        ];
        for v in variants {
            assert_ne!(*base, *v.signed_input(b"aad", 5));
        }
        // The signature itself is not signed.
        let other_sig = SectionKey {
            signature: Bytes(vec![]),
            ..sk
        };
        assert_eq!(*base, *other_sig.signed_input(b"aad", 5));
    }

    #[test]
    fn individual_round_trip_and_binding() {
        let ind = Individual {
            data: SecretBytes::new(b"reading 21.5".to_vec()),
            signature: Bytes(vec![7; 64]),
        };
        let bytes = ind.to_bytes();
        assert_eq!(Individual::from_bytes(&bytes), Ok(ind.clone()));
        assert!(!format!("{ind:?}").contains("reading"));
        let base = ind.signed_input(b"aad", 1);
        assert_ne!(*base, *ind.signed_input(b"aae", 1));
        assert_ne!(*base, *ind.signed_input(b"aad", 2));
        let other = Individual {
            data: SecretBytes::new(b"reading 21.6".to_vec()),
            ..ind
        };
        assert_ne!(*base, *other.signed_input(b"aad", 1));
        // Never confused with a section key's signature.
        let sk = section_key();
        assert_ne!(*base, *sk.signed_input(b"aad", 1));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = Body::from_bytes(&bytes);
            let _ = SectionKey::from_bytes(&bytes);
            let _ = Individual::from_bytes(&bytes);
        }
    }
}
