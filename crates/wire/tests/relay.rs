//! The relay header codec is total: arbitrary bytes never panic; every message round-trips;
//! whatever decodes re-encodes to the same bytes; the aad ignores what the proxy may change.
#![allow(clippy::unwrap_used, missing_docs)]

use m2msec_wire::relay::{Flags, Header, MAX_URL_LEN, RelayMessage, parse_sink_url};
use proptest::prelude::*;

fn url() -> impl Strategy<Value = String> {
    // Multi-byte characters included: the limit is in bytes, not characters.
    proptest::string::string_regex("[a-z0-9:/\\[\\].é]{0,80}").unwrap()
}

fn message() -> impl Strategy<Value = RelayMessage> {
    (
        0u8..8,
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        url(),
        url(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(flags, message_id, stream_id, key_index, source, sink, body)| RelayMessage {
                header: Header {
                    flags: Flags::from_bits(flags).unwrap(),
                    message_id,
                    stream_id,
                    key_index,
                    source,
                    sink,
                },
                body,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_reencode(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        if let Ok(m) = RelayMessage::decode(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.encode().unwrap();
        prop_assert_eq!(bytes.len(), msg.header.encoded_len() + msg.body.len());
        prop_assert_eq!(RelayMessage::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn mutated_messages_never_panic(
        msg in message(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = msg.encode().unwrap();
        for (pos, val) in flips {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        if let Ok(m) = RelayMessage::decode(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn aad_is_the_header_prefix_without_reencrypted(msg in message(), sink in url()) {
        let bytes = msg.encode().unwrap();
        let aad = msg.header.aad();
        let prefix_len = 11 + msg.header.source.len();
        prop_assert_eq!(&aad[2..], &bytes[2..prefix_len]);
        prop_assert_eq!(aad[1], msg.header.flags.without(Flags::REENCRYPTED).bits());
        let forwarded = Header {
            sink,
            flags: msg.header.flags.with(Flags::REENCRYPTED),
            ..msg.header
        };
        prop_assert_eq!(forwarded.aad(), aad);
    }

    #[test]
    fn sink_url_parser_never_panics(s in "\\PC{0,300}") {
        if let Ok(u) = parse_sink_url(&s) {
            prop_assert!(s.len() <= MAX_URL_LEN);
            prop_assert_eq!(parse_sink_url(&u.to_string()).unwrap(), u);
        }
    }

    #[test]
    fn individual_ids_round_trip(id in any::<u64>()) {
        prop_assert_eq!(Header::individual(id, String::new(), String::new()).individual_id(), id);
    }
}
