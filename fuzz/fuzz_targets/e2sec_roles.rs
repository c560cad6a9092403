//! Arbitrary datagrams into every live E2SEC role mid-session (the EPC and both parties,
//! warrants fetched, halfway through an authentication), each seemingly from one of the roles
//! or a stranger (`m2msec_protocol::fuzzing`): no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use m2msec_protocol::e2sec::sim::World;
use m2msec_protocol::fuzzing::{self, Live};

static LIVE: Mutex<Option<Live<World>>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_one(
        &LIVE,
        || fuzzing::e2sec(1).expect("deployment"),
        |w| w.events = Default::default(),
        data,
    );
});
