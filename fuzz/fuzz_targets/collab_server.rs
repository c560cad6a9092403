//! Arbitrary datagrams fed to a live server B in the middle of a session: no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use m2msec_crypto::rng::SeededRng;
use m2msec_protocol::Endpoint;
use m2msec_protocol::collab::sim::{Spec, World, address};

static WORLD: Mutex<Option<(World, SeededRng)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    let (world, rng) = guard.get_or_insert_with(|| {
        let mut rng = SeededRng::from_seed_u64(1);
        let mut w = World::generate(&Spec::default(), &mut rng).expect("deployment");
        w.client.connect(w.net.now, &mut rng).expect("connect");
        (w, rng)
    });
    let now = world.net.now;
    world.server.handle_datagram(now, address(9, 9), data, rng);
    while world.server.poll_event().is_some() {}
    while world.server.poll_transmit().is_some() {}
});
