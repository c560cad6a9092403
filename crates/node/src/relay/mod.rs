//! The relay's daemons: the CoAP proxy, the sink, and the client commands.
pub mod coap;
pub mod config;
pub mod provision;
pub mod sink;
pub mod proxy;
pub mod source;
pub mod bench;
pub mod client;
pub mod demo;
