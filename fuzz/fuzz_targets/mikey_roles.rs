//! Arbitrary datagrams into every live MIKEY role mid-session (I, R and two third parties: R
//! holds one of the two parts it needs, I waits for its verification), each seemingly from one
//! of the roles or a stranger (`m2msec_protocol::fuzzing`): no panic, ever.
#![no_main]
#![forbid(unsafe_code)]

m2msec_fuzz::roles_target!(mikey);
