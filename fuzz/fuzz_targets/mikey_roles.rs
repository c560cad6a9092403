//! Arbitrary datagrams into every live MIKEY role mid-session (I, R and two third parties: R
//! holds one of the two parts it needs, I waits for its verification), each seemingly from one
//! of the roles or a stranger (`m2msec_protocol::fuzzing`): no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use m2msec_protocol::mikey::sim::World;
use m2msec_protocol::fuzzing::{self, Live};

static LIVE: Mutex<Option<Live<World>>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_one(
        &LIVE,
        || fuzzing::mikey(1).expect("deployment"),
        |w| w.events = Default::default(),
        data,
    );
});
