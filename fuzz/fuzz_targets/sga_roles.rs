//! Arbitrary datagrams into every live SGA role mid-session (the server and two registered
//! devices, halfway through an invitation), each seemingly from one of the roles or a stranger
//! (`m2msec_protocol::fuzzing`): no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

m2msec_fuzz::roles_target!(sga);
