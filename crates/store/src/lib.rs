//! m2msec store.
#![forbid(unsafe_code)]
