//! m2msec node.
#![forbid(unsafe_code)]
