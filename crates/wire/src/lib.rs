//! m2msec wire.
#![forbid(unsafe_code)]
