//! The relay's CBOR decoders on arbitrary bytes — management bodies (Body, SectionKey,
//! Individual) and the proxy API bodies: never panic; what decodes re-encodes identically.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m2msec_wire::relay::api::{
    Body as ApiBody, Control, ForwardMonitor, ForwardRequest, Signed, StorageMonitor, StoreRequest,
    StoreResponse,
};
use m2msec_wire::relay::management::{Body, Individual, SectionKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Body::from_bytes(data) {
        assert_eq!(b.to_bytes(), data);
    }
    if let Ok(k) = SectionKey::from_bytes(data) {
        assert_eq!(k.to_bytes().as_slice(), data);
    }
    if let Ok(i) = Individual::from_bytes(data) {
        assert_eq!(i.to_bytes().as_slice(), data);
    }
    roundtrips::<StoreRequest>(data);
    roundtrips::<StoreResponse>(data);
    roundtrips::<StorageMonitor>(data);
    roundtrips::<ForwardRequest>(data);
    roundtrips::<ForwardMonitor>(data);
    roundtrips::<Control>(data);
    roundtrips::<Signed>(data);
});

/// What decodes as a `T` re-encodes to the same bytes.
fn roundtrips<T: ApiBody>(data: &[u8]) {
    if let Ok(v) = T::from_bytes(data) {
        assert_eq!(v.to_bytes(), data);
    }
}
