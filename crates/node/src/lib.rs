//! The m2msec daemons: a tokio runtime around the I/O-free roles of `m2msec-protocol`.
//!
//! - [`driver`]: one role, one UDP socket, one task — datagrams and timers in, events
//!   persisted, datagrams out; the shared send path ([`driver::Egress`]) and store opening;
//! - [`config`] and [`keyfile`]: TOML config files and PEM key files, with errors that name
//!   the file, the field and what is wrong;
//! - [`tap`] and [`pcap`]: what went on the wire, counted and captured;
//! - [`provision`], [`figure`], [`report`], [`loss_bench`]: what provisioning, benches and
//!   demos do alike for every protocol;
//! - one module per protocol ([`collab`], [`mikey`], [`sga`], [`e2sec`], [`relay`]) with its
//!   daemons, its demo deployment, its provisioning, its annotated trace and its benchmark.
#![forbid(unsafe_code)]

pub mod collab;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod driver;
pub mod e2sec;
pub mod error;
pub mod figure;
pub mod flags;
pub mod keyfile;
pub mod keylog;
pub mod loss_bench;
pub mod mikey;
pub mod pcap;
pub mod protocols;
pub mod provision;
pub mod relay;
pub mod report;
pub mod sga;
pub mod tap;

pub use error::{Error, Result};
/// Owner-only files and directories: every writer of secrets or decrypted data goes through it.
pub use m2msec_store::private;

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
