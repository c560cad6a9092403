//! The `m2msec` command.
#![forbid(unsafe_code)]

fn main() {}
