//! The relay proxy's engine (paper 004 §IV, the untrusted store-and-forward proxy P): what it
//! knows about storages, forwards and their sinks, how it decides, and what it keeps in the
//! store. No sockets, tasks or clocks: time comes in as [`Millis`](crate::Millis) (or wall-clock
//! seconds for the load counters), durable state goes through the `m2msec_store::Store` trait,
//! and a shell (node's tokio proxy) attaches its own handles through [`state::Handles`].
//!
//! - [`state`]: storages with exact byte accounting and admission (back-pressure), forwards
//!   with each sink's position, monitors that changed, the retention watermark.
//! - [`authz`]: the owner's signed requests (4.01/4.03).
//! - [`records`]: the tables and their encodings; reading them back after a restart.
//! - [`retention`]: dedup keys, owned writes and the housekeeping round's decisions.
//! - [`metrics`]: the per-second load counters.
//!
//! The cryptography the proxy applies to what it forwards is [`Forwarder`](super::Forwarder).

pub mod authz;
pub mod metrics;
pub mod records;
pub mod retention;
pub mod state;

pub use state::{Core, Handles, MonitorId, Refusal, Written};
