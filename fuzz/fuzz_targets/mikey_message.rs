//! The RFC 3830 decoder on arbitrary bytes: must never panic, and what decodes re-encodes to
//! the same bytes (the decoder is strict).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m2msec_wire::mikey::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(m.encode().ok().as_deref(), Some(data));
    }
});
