//! The relay's daemons: the CoAP proxy, the sink, and the client commands.
pub mod bench;
pub mod client;
pub mod coap;
pub mod config;
pub mod demo;
pub mod provision;
pub mod proxy;
pub mod sink;
pub mod source;
