//! Arbitrary datagrams, fragments or not, from two senders, put together as a receiver does
//! (`m2msec_protocol::fragment`): no panic, and what is held stays bounded.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m2msec_protocol::Millis;
use m2msec_protocol::fragment::OnPath;
use m2msec_protocol::network::Datagram;

fuzz_target!(|data: &[u8]| {
    let mut path = OnPath::default();
    // Each datagram: a length byte, then that many bytes; its sender is the length's low bit.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (payload, tail) = tail.split_at(n);
        rest = tail;
        let d = Datagram {
            at: Millis(u64::from(len)),
            from: std::net::SocketAddr::from(([127, 0, 0, 1], u16::from(len & 1))),
            to: std::net::SocketAddr::from(([127, 0, 0, 2], 1)),
            payload: payload.to_vec(),
        };
        let _ = path.message(&d);
    }
});
