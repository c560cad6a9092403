//! `MemoryStore` against the shared conformance suite.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use m2msec_store::{MemoryStore, Store};

#[test]
fn conformance() {
    common::conformance(&MemoryStore::new());
}

#[test]
fn insert_if_absent_is_atomic() {
    common::insert_if_absent_is_atomic(Arc::new(MemoryStore::new()));
}

#[test]
fn queue_push_unique_is_atomic() {
    common::queue_push_unique_is_atomic(Arc::new(MemoryStore::new()));
}

#[test]
fn usable_as_shared_trait_object() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let other = Arc::clone(&store);
    store.put("t", b"k", b"v").unwrap();
    assert_eq!(other.get("t", b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
