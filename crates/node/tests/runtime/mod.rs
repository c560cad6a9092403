//! How the node's integration tests run the async shell: on a fresh multi-threaded runtime, as
//! the daemons do, and demos with the options every demo test shares.
// Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use m2msec_node::harness::demo::RunOptions;

/// A multi-threaded runtime with every driver enabled.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// Runs a demo (`run(&options, &progress)` of a protocol's `demo` module) to its report; the
/// test fails if the demo cannot even be set up.
pub(crate) fn demo<R, E: std::fmt::Display>(run: impl Future<Output = Result<R, E>>) -> R {
    runtime()
        .block_on(run)
        .unwrap_or_else(|e| panic!("demo set-up failed: {e}"))
}

/// The run options of a demo test: the defaults, with 20 s to finish.
pub(crate) fn run_options() -> RunOptions {
    RunOptions {
        timeout: Duration::from_secs(20),
        ..RunOptions::default()
    }
}
