//! I/O-free state machines of the m2msec protocols.
//!
//! Every role is a value that is fed datagrams, the current time and an RNG, and hands back
//! datagrams to send, the next time it wants to be woken, and events. It never opens a socket,
//! reads a clock or draws randomness of its own (the shape of quinn-proto's `Connection`), so the
//! same role runs in unit tests, in the simulator and in the daemons of `m2msec-node`.
#![forbid(unsafe_code)]

pub mod collab;
mod endpoint;

pub use endpoint::{Endpoint, Millis, OpCounts, Transmit};
