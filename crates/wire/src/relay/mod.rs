//! The relay's byte formats (paper 004 §III-E): the binary UDP header, its CoAP mapping, the
//! CBOR bodies of the proxy API and of management messages.

pub mod management;
