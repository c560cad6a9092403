//! Ascon-AEAD128 (NIST SP 800-232) known answers from the Ascon team's reference KAT file; data
//! in `vectors/crypto/ascon-aead128-kat.txt` (source in its header and in the README).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use m2msec_crypto::Error;
use m2msec_crypto::aead::{AeadKey, AeadSuite};

#[test]
fn ascon_aead128_matches_the_reference_kat() {
    let cases = common::load("ascon-aead128-kat.txt");
    assert_eq!(cases.len(), 11);
    for case in cases {
        let key = AeadKey::new(AeadSuite::Ascon128, &case.hex("key")).unwrap();
        let (nonce, ad, pt, ct) = (
            case.hex("nonce"),
            case.hex("ad"),
            case.hex("pt"),
            case.hex("ct"),
        );
        assert_eq!(key.seal(&nonce, &ad, &pt).unwrap(), ct, "{}", case.name);
        assert_eq!(
            &key.open(&nonce, &ad, &ct).unwrap()[..],
            &pt[..],
            "{}",
            case.name
        );
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        assert_eq!(key.open(&nonce, &ad, &bad), Err(Error::Authentication));
    }
}

#[test]
fn ascon_suite_parameters() {
    let s = AeadSuite::Ascon128;
    assert_eq!(
        (s.id(), s.key_len(), s.nonce_len(), s.tag_len()),
        (4, 16, 16, 16)
    );
    assert_eq!(AeadSuite::try_from(4).unwrap(), s);
    assert_eq!(s.name(), "Ascon-AEAD128");
}
