//! Arbitrary datagrams into every live E2SEC role mid-session (the EPC and both parties,
//! warrants fetched, halfway through an authentication), each seemingly from one of the roles
//! or a stranger (`m2msec_protocol::fuzzing`): no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

m2msec_fuzz::roles_target!(e2sec);
