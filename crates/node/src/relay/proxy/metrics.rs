//! The load counters: the engine's (`m2msec_protocol::relay::proxy::metrics`).

pub(crate) use m2msec_protocol::relay::proxy::metrics::*;
