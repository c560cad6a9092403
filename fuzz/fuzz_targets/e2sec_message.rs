//! The E2SEC decoder on arbitrary bytes: never panics; what decodes re-encodes identically.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m2msec_wire::e2sec::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(m.to_bytes(), data);
    }
});
