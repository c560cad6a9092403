//! The relay proxy (paper 004 §IV, the untrusted store-and-forward proxy P) as one sans-IO
//! role, [`Proxy`]: its API, what it knows about storages, forwards and their sinks, how it
//! decides, and what it keeps in the store. No sockets, tasks or clocks: requests come in
//! decoded with the time as [`Millis`](crate::Millis), durable state is read through the
//! `m2msec_store::Store` trait and written by the shell from the [`Action::Commit`]s it hands
//! out, and a shell (node's tokio proxy) attaches its own handles through [`state::Handles`].
//!
//! - [`routing`]: the [`Proxy`] role, its routes, reads and admission (back-pressure).
//! - [`commit`]: a group commit's shares and what each one's write means.
//! - `control`: store, forward, control and delete, one at a time.
//! - [`api`]: requests, responses, actions and events.
//! - [`pump`]: a sink's pump ([`pump::Pump`], polled by the shell) — its standing, what each
//!   stored message becomes, how its position advances, the window of deliveries under way,
//!   pacing and back-off.
//! - [`resources`]: discovery and the representations (CBOR, JSON).
//! - [`state`]: storages with exact byte accounting and admission, forwards with each sink's
//!   position, monitors that changed, the retention watermark.
//! - [`authz`]: the owner's signed requests (4.01/4.03).
//! - [`records`]: the tables and their encodings; reading them back after a restart.
//! - [`restore`]: a restart's records put back, and what the shell does about them.
//! - [`retention`]: dedup keys, owned writes and the housekeeping round's decisions.
//! - [`metrics`]: the per-second load counters.
//!
//! The cryptography the proxy applies to what it forwards is [`Forwarder`](super::Forwarder).

pub mod api;
pub mod authz;
pub mod commit;
mod control;
pub mod metrics;
pub mod pump;
pub mod records;
pub mod resources;
pub mod restore;
pub mod retention;
pub mod routing;
pub mod state;

pub use api::{
    Action, Admitted, Event, Handled, Limits, OptionValue, PumpSpec, Request, Response, Ticket,
};
pub use routing::{Notification, Proxy, datagram_refused, notification_format};
pub use state::{Core, Handles, MonitorId, Refusal, Written};
