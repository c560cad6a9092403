//! Owner authorisation: the engine's (`m2msec_protocol::relay::proxy::authz`).

pub(crate) use m2msec_protocol::relay::proxy::authz::*;
