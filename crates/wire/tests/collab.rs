//! Decoders are total: arbitrary bytes never panic; every message round-trips; each malformed
//! case has its typed error.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_wire::Error;
use m2msec_wire::cbor::{self, Bytes};
use m2msec_wire::collab::{
    Abort, CertificateBody, ClientHello, Message, ProxyListBody, ProxyTicket, SealedFragment,
};
use proptest::prelude::*;

fn hello(nonce: [u8; 16]) -> ClientHello {
    ClientHello {
        session: [7; 16],
        client: "client".into(),
        client_nonce: nonce,
        aead: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
        let _ = cbor::from_slice::<ProxyListBody>(&bytes);
        let _ = cbor::from_slice::<CertificateBody>(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        nonce in any::<[u8; 16]>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = Message::from(hello(nonce)).to_bytes();
        for (pos, val) in flips {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn messages_round_trip(
        nonce in any::<[u8; 16]>(),
        key_id in any::<[u8; 32]>(),
        share in proptest::collection::vec(any::<u8>(), 0..300),
        sig in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let messages: Vec<Message> = vec![
            hello(nonce).into(),
            SealedFragment { session: nonce, key_id, encrypted_share: Bytes(share), signature: Bytes(sig) }.into(),
            Abort { session: nonce, reason: 1 }.into(),
        ];
        for m in messages {
            prop_assert_eq!(Message::decode(&m.to_bytes()).unwrap(), m);
        }
    }
}

#[test]
fn malformed_cases_have_typed_errors() {
    let good = Message::from(hello([1; 16])).to_bytes();
    assert_eq!(Message::decode(&[]), Err(Error::Truncated));
    assert_eq!(
        Message::decode(&good[..good.len() - 1]),
        Err(Error::Truncated)
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(Message::decode(&trailing), Err(Error::TrailingBytes(1)));
    let mut version = good.clone();
    version[2] = 9;
    assert_eq!(Message::decode(&version), Err(Error::UnsupportedVersion(9)));
    let mut kind = good.clone();
    kind[1] = 0x17; // type 23
    assert_eq!(Message::decode(&kind), Err(Error::UnknownMessageType(23)));
    let mut arity = good;
    arity[0] = 0x85;
    assert!(matches!(
        Message::decode(&arity),
        Err(Error::WrongArity { .. })
    ));
    // A 15-byte session id.
    let short = [0x84, 0x12, 0x01, 0x4f];
    let mut s = short.to_vec();
    s.extend([0; 15]);
    s.push(1);
    assert_eq!(
        Message::decode(&s),
        Err(Error::WrongLength {
            found: 15,
            expected: 16
        })
    );
    // The reason code as a non-minimal integer (0x18 0x01 instead of 0x01).
    let mut nm = vec![0x84, 0x12, 0x01, 0x50];
    nm.extend([0; 16]);
    nm.extend([0x18, 0x01]);
    assert_eq!(Message::decode(&nm), Err(Error::NonCanonical));
    // An indefinite-length array.
    assert_eq!(
        Message::decode(&[0x9f, 0x01, 0x01, 0xff]),
        Err(Error::NonCanonical)
    );
    // A text field that is not UTF-8.
    let mut bad_text = vec![0x86, 0x01, 0x01, 0x50];
    bad_text.extend([0; 16]);
    bad_text.extend([0x62, 0xff, 0xfe]);
    assert!(matches!(
        Message::decode(&bad_text),
        Err(Error::UnexpectedType { .. })
    ));
    // A list longer than the format allows claims more elements than bytes.
    let huge = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        cbor::from_slice::<Vec<ProxyTicket>>(&huge),
        Err(Error::TooManyElements(cbor::MAX_LIST))
    );
}
