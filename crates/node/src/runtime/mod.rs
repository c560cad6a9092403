//! What runs a role on the network, for every protocol alike.

pub mod coap;
pub mod config;
pub mod driver;
pub mod keyfile;
pub mod keylog;
pub mod log_limit;
pub mod tap;
