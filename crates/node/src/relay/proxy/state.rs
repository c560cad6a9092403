//! The proxy's in-memory state: the engine's `Core` (`m2msec_protocol::relay::proxy::state`)
//! with this shell's tasks and wake-ups attached.
//!
//! One `Mutex<Core>` shared by the tasks; every critical section is a few map operations, never
//! an await or a store call.

use std::sync::Arc;

use m2msec_protocol::relay::proxy::state as engine;
pub(crate) use m2msec_protocol::relay::proxy::state::{MonitorId, Refusal, Written};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// What the tokio shell attaches to the engine's state.
#[derive(Debug)]
pub(crate) struct Tokio;

impl engine::Handles for Tokio {
    type Storage = StorageTasks;
    type Forward = ForwardTasks;
    /// The pump delivering to the sink.
    type Sink = Option<AbortHandle>;
}

/// A storage's tasks.
#[derive(Debug)]
pub(crate) struct StorageTasks {
    /// Wakes the storage's pumps when messages were stored.
    pub(crate) arrived: Arc<Notify>,
    /// The plain-UDP ingestion task, if any.
    pub(crate) udp_task: Option<AbortHandle>,
}

/// A forward's wake-up.
#[derive(Debug)]
pub(crate) struct ForwardTasks {
    /// Wakes its pumps on resume and on shutdown.
    pub(crate) control: Arc<Notify>,
}

pub(crate) type Core = engine::Core<Tokio>;
pub(crate) type StorageState = engine::StorageState<Tokio>;
pub(crate) type ForwardState = engine::ForwardState<Tokio>;
pub(crate) type SinkState = engine::SinkState<Tokio>;
