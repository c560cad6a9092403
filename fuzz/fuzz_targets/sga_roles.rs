//! Arbitrary datagrams into every live SGA role mid-session (the server and two registered
//! devices, halfway through an invitation), each seemingly from one of the roles or a stranger
//! (`m2msec_protocol::fuzzing`): no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use m2msec_protocol::sga::sim::World;
use m2msec_protocol::fuzzing::{self, Live};

static LIVE: Mutex<Option<Live<World>>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_one(
        &LIVE,
        || fuzzing::sga(1).expect("deployment"),
        |w| w.events = Default::default(),
        data,
    );
});
