//! The m2msec daemons: a tokio runtime around the I/O-free roles of `m2msec-protocol`.
//!
//! - [`runtime`]: what runs a role on the network — the driver (one role, one UDP socket, one
//!   task; the shared send path and store opening), the wire tap and pcap capture, config and
//!   key files;
//! - [`harness`]: what every protocol's commands do alike — daemons, demos, provisioning,
//!   bench figures, reports, the flags several protocols read;
//! - one plug per protocol ([`collab`], [`mikey`], [`sga`], [`e2sec`], [`relay`]): its configs,
//!   how its roles are built, what its summary says;
//! - [`protocols`]: the registry, the one place that names them all.
#![forbid(unsafe_code)]

pub mod collab;
pub mod e2sec;
pub mod error;
pub mod harness;
pub mod mikey;
pub mod protocols;
pub mod relay;
pub mod runtime;
pub mod sga;

pub use error::{Error, Result};
/// Owner-only files and directories: every writer of secrets or decrypted data goes through it.
pub use m2msec_store::private;

/// Lower-case hex of `bytes` (fingerprints and ids in logs and reports).
pub use m2msec_wire::cbor::hex;
