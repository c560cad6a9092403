//! How a role's event reads in a daemon's log. The protocol writes no log (no `tracing` here):
//! each event says how loud it is ([`Logged::level`]) and, as its `Display`, what happened
//! followed by its fields as `name=value`, the way the daemons' log prints fields; the node
//! writes the line. An event that reports refused input also says whose and why
//! ([`Logged::rejection`]), so that the node can keep a flood of it from flooding the log.

use core::fmt::{self, Write as _};

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

    /// The refused input this event reports, if it reports one. Anyone can send a datagram, so
    /// the node logs these at most once per peer and reason in an interval and counts the rest.
    fn rejection(&self) -> Option<Rejection> {
        None
    }
}

/// Input refused from one peer, as a log limit counts it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rejection {
    /// Who sent it: a socket address, or the name a request carried.
    pub peer: String,
    /// Why, as a kind that is the same for every datagram refused alike (see [`Rejection::new`]).
    pub reason: String,
}

impl Rejection {
    /// `peer`'s input refused with `error`, whose kind is the variant names its derived
    /// `Debug` starts with, joined by `.` (`Decode(UnexpectedType { expected: "map" })` is
    /// `Decode.UnexpectedType`).
    #[must_use]
    pub fn new(peer: impl fmt::Display, error: &impl fmt::Debug) -> Self {
        Self {
            peer: peer.to_string(),
            reason: reason(error),
        }
    }
}

/// The kind of `error` (see [`Rejection::new`]). Unlike the error's text it carries no values (lengths, names, type codes), so a flood of one kind of
/// junk is one reason however its bytes vary, and the reasons are a closed set: the variants.
fn reason(error: &impl fmt::Debug) -> String {
    /// Keeps the leading `Ident(Ident(…` chain of what is written to it.
    struct Variants {
        path: String,
        /// Inside an identifier, or just after `(` and waiting for one; `None` once done.
        open: Option<bool>,
    }
    impl fmt::Write for Variants {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                match (self.open, c) {
                    (None, _) => return Err(fmt::Error), // done: stop formatting
                    (Some(_), c) if c.is_ascii_alphabetic() || c == '_' => {
                        self.path.push(c);
                        self.open = Some(true);
                    }
                    (Some(true), c) if c.is_ascii_digit() => self.path.push(c),
                    (Some(true), '(') => {
                        self.path.push('.');
                        self.open = Some(false);
                    }
                    _ => self.open = None,
                }
            }
            Ok(())
        }
    }
    let mut v = Variants {
        path: String::new(),
        open: Some(false),
    };
    // An `Err` only says the chain ended before the `Debug` text did.
    let _ = write!(v, "{error:?}");
    let path = v.path.trim_end_matches('.');
    if path.is_empty() {
        "other".into()
    } else {
        path.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Inner {
        Truncated,
        Unexpected { expected: &'static str },
        Length(usize),
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Outer {
        Decode(Inner),
        Named(String),
        Code(u8),
        Plain,
    }

    #[test]
    fn the_reason_is_the_variant_path_without_values() {
        let cases = [
            (Outer::Decode(Inner::Truncated), "Decode.Truncated"),
            (
                Outer::Decode(Inner::Unexpected { expected: "map" }),
                "Decode.Unexpected",
            ),
            (Outer::Decode(Inner::Length(7)), "Decode.Length"),
            (Outer::Named("device-x".into()), "Named"),
            (Outer::Code(9), "Code"),
            (Outer::Plain, "Plain"),
        ];
        for (error, expected) in cases {
            assert_eq!(reason(&error), expected, "{error:?}");
        }
        assert_eq!(reason(&Outer::Code(1)), reason(&Outer::Code(200)));
        assert_eq!(reason(&"text"), "other");
    }
}
