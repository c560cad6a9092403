//! m2msec crypto.
#![forbid(unsafe_code)]
