//! The secure store-and-forward relay (paper 004): key streams at the source, the proxy's
//! re-encryption of management messages, and the sink.
