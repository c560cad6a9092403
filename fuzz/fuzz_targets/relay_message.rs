//! The relay decoders on arbitrary bytes (binary header, sink URL, CoAP mapping): never panic;
//! what decodes re-encodes identically.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m2msec_wire::relay::coap::{coap_lite::Packet, from_request, uri_path, uri_query};
use m2msec_wire::relay::{RelayMessage, parse_sink_url};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = RelayMessage::decode(data) {
        assert_eq!(m.encode().ok().as_deref(), Some(data));
        let _ = m.header.aad();
    }
    if let Ok(s) = core::str::from_utf8(data) {
        if let Ok(u) = parse_sink_url(s) {
            assert_eq!(parse_sink_url(&u.to_string()).ok(), Some(u));
        }
    }
    if let Ok(p) = Packet::from_bytes(data) {
        if let Ok(m) = from_request(&p) {
            assert_eq!(m.body, p.payload);
        }
        let _ = (uri_path(&p), uri_query(&p));
    }
});
