//! SGA decoders are total and deterministic.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_wire::Error;
use m2msec_wire::cbor::{self, Bytes, SecretBytes};
use m2msec_wire::sga::{
    Deliver, KeyShareBody, Message, Negotiate, NegotiateBody, Poll, StoredMessage,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
        let _ = cbor::from_slice::<KeyShareBody>(&bytes);
        let _ = cbor::from_slice::<StoredMessage>(&bytes);
        let _ = cbor::from_slice::<NegotiateBody>(&bytes);
    }

    #[test]
    fn messages_round_trip(
        id in any::<u64>(),
        session in any::<[u8; 16]>(),
        text in proptest::collection::vec(any::<u8>(), 0..300),
        mac in any::<[u8; 32]>(),
    ) {
        let messages: Vec<Message> = vec![
            Deliver { session, from: session, message_id: id, recipient: Bytes(text.clone()), ciphertext: Bytes(text.clone()) }.into(),
            Poll { device: session, timestamp: id, mac }.into(),
            Negotiate { session, sealed: Bytes(text.clone()) }.into(),
        ];
        for m in messages {
            prop_assert_eq!(Message::decode(&m.to_bytes()).unwrap(), m);
        }
        // A2's body carries the server's timestamp, which d_j checks against its window.
        let body = NegotiateBody {
            masked_temp_key: SecretBytes::new(text),
            from: "a".into(),
            gateway: "g".into(),
            to: "b".into(),
            suite: 3,
            timestamp: id,
        };
        let back: NegotiateBody = cbor::from_slice(&cbor::to_vec(&body)).unwrap();
        prop_assert_eq!(back.timestamp, id);
        prop_assert_eq!(cbor::to_vec(&back), cbor::to_vec(&body));
    }

    #[test]
    fn mutated_messages_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = Message::from(Poll { device: [5; 16], timestamp: 7, mac: [3; 32] }).to_bytes();
        for (pos, val) in flips {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        let _ = Message::decode(&bytes);
    }
}

#[test]
fn malformed_cases_have_typed_errors() {
    let good = Message::from(Poll {
        device: [0; 16],
        timestamp: 1,
        mac: [0; 32],
    })
    .to_bytes();
    assert_eq!(
        Message::decode(&good[..good.len() - 1]),
        Err(Error::Truncated)
    );
    let mut kind = good.clone();
    kind[1] = 0x17;
    assert_eq!(Message::decode(&kind), Err(Error::UnknownMessageType(23)));
    let mut version = good;
    version[2] = 3;
    assert_eq!(Message::decode(&version), Err(Error::UnsupportedVersion(3)));
    // A version-1 peer (identities in clear) is told so, not misread.
    version[2] = 1;
    assert_eq!(Message::decode(&version), Err(Error::UnsupportedVersion(1)));
}
