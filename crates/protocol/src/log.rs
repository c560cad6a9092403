//! How a role's event reads in a daemon's log. The protocol writes no log (no `tracing` here):
//! each event says how loud it is ([`Logged::level`]) and, as its `Display`, what happened
//! followed by its fields as `name=value`, the way the daemons' log prints fields; the node
//! writes the line.

use core::fmt;

/// How loud an event is in a daemon's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A run the daemon was asked for failed for good.
    Error,
    /// Something was refused or failed; the role goes on.
    Warn,
    /// Progress an operator follows.
    Info,
    /// Detail.
    Debug,
    /// What only a trace shows (the records a daemon persists).
    Trace,
}

/// An event a daemon writes to its log as it is (see the module's doc).
pub trait Logged: fmt::Display {
    /// How loud it is.
    fn level(&self) -> Level;
}
