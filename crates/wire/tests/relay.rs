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

mod api {
    use m2msec_wire::cbor::Bytes;
    use m2msec_wire::relay::api::{
        Body, Control, EpochRekey, ForwardMonitor, ForwardRequest, Signed, SinkGrant, Start,
        StorageMonitor, StoreRequest, StoreResponse,
    };
    use proptest::prelude::*;

    fn grant() -> impl Strategy<Value = SinkGrant> {
        (
            "[a-z:/0-9.]{0,40}",
            proptest::collection::vec(
                (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..100)),
                0..4,
            ),
        )
            .prop_map(|(url, rekeys)| SinkGrant {
                url,
                rekeys: rekeys
                    .into_iter()
                    .map(|(epoch, rekey)| EpochRekey {
                        epoch,
                        rekey: Bytes(rekey),
                    })
                    .collect(),
            })
    }

    fn start() -> impl Strategy<Value = Start> {
        prop_oneof![Just(Start::Beginning), Just(Start::Now)]
    }

    fn control() -> impl Strategy<Value = Control> {
        prop_oneof![
            Just(Control::Pause),
            Just(Control::Resume),
            proptest::collection::vec(grant(), 0..3).prop_map(Control::SetSinks),
            (grant(), start()).prop_map(|(g, s)| Control::AddSink(g, s)),
            "[a-z:/0-9.]{0,40}".prop_map(Control::RemoveSink),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decoders_are_total_and_canonical(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            if let Ok(v) = StoreRequest::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes.clone()); }
            if let Ok(v) = StoreResponse::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes.clone()); }
            if let Ok(v) = StorageMonitor::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes.clone()); }
            if let Ok(v) = ForwardRequest::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes.clone()); }
            if let Ok(v) = ForwardMonitor::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes.clone()); }
            if let Ok(v) = Control::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes.clone()); }
            if let Ok(v) = Signed::from_bytes(&bytes) { prop_assert_eq!(v.to_bytes(), bytes); }
        }

        #[test]
        fn controls_round_trip(c in control()) {
            prop_assert_eq!(Control::from_bytes(&c.to_bytes()).unwrap(), c);
        }

        #[test]
        fn forward_requests_round_trip(
            storage_id in any::<u32>(),
            sinks in proptest::collection::vec(grant(), 0..4),
            rate in any::<u32>(),
            start in start(),
            port in proptest::option::of(any::<u16>()),
        ) {
            let req = ForwardRequest { storage_id, sinks, rate, start };
            prop_assert_eq!(ForwardRequest::from_bytes(&req.to_bytes()).unwrap(), req);
            let resp = StoreResponse { storage_id, udp_port: port };
            prop_assert_eq!(StoreResponse::from_bytes(&resp.to_bytes()).unwrap(), resp);
        }
    }
}

mod coap {
    use m2msec_wire::relay::coap::coap_lite::Packet;
    use m2msec_wire::relay::coap::{Target, from_request, to_request};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn requests_round_trip_through_bytes(
            msg in super::message(),
            proxy_uri in "[a-z0-9:/.]{1,60}",
            mid in any::<u16>(),
            con in any::<bool>(),
        ) {
            let packet = to_request(&msg, &Target::ProxyUri(&proxy_uri), mid, con).unwrap();
            let bytes = packet.to_bytes_unlimited().unwrap();
            let back = from_request(&Packet::from_bytes(&bytes).unwrap()).unwrap();
            prop_assert_eq!(&back.header.sink, &proxy_uri);
            prop_assert_eq!(back.header.aad(), msg.header.aad());
            prop_assert_eq!(back.header.flags, msg.header.flags);
            prop_assert_eq!(back.body, msg.body);
        }

        #[test]
        fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = Packet::from_bytes(&bytes) {
                let _ = from_request(&p);
                let _ = m2msec_wire::relay::coap::uri_path(&p);
            }
        }
    }
}
