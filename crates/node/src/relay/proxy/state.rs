//! The proxy's in-memory state: the engine's role (`m2msec_protocol::relay::proxy::Proxy`, its
//! `Core` behind it) with this shell's tasks and wake-ups attached.
//!
//! One `Mutex<Engine>` shared by the tasks; every critical section is a few map operations or
//! one call into the engine, never an await.

use std::sync::Arc;

use m2msec_protocol::relay::proxy::state as engine;
pub(crate) use m2msec_protocol::relay::proxy::state::Written;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::runtime::coap::ReplyTo;

/// What the tokio shell attaches to the engine's state.
#[derive(Debug)]
pub(crate) struct Tokio;

impl engine::Handles for Tokio {
    type Storage = StorageTasks;
    /// Wakes the forward's pumps on resume, pause and shutdown.
    type Forward = Arc<Notify>;
    /// The pump delivering to the sink.
    type Sink = Option<AbortHandle>;
    type Reply = ReplyTo;
}

/// A storage's tasks.
#[derive(Debug, Default)]
pub(crate) struct StorageTasks {
    /// Wakes the storage's pumps when messages were stored.
    pub(crate) arrived: Arc<Notify>,
    /// The plain-UDP ingestion task, if any.
    pub(crate) udp_task: Option<AbortHandle>,
}

/// The engine, with this shell's handles.
pub(crate) type Engine = m2msec_protocol::relay::proxy::Proxy<Tokio>;
/// What the engine asks of this shell.
pub(crate) type Event = m2msec_protocol::relay::proxy::Event<Tokio>;
