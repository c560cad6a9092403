//! What every role hands its driver: datagrams to send, events, and its operation counts.

use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::{OpCounts, Transmit};

/// A message type that can be put on the wire.
pub(crate) trait WireMessage {
    fn into_bytes(self) -> Vec<u8>;
}

impl WireMessage for Vec<u8> {
    fn into_bytes(self) -> Vec<u8> {
        self
    }
}

impl WireMessage for m2msec_wire::collab::Message {
    fn into_bytes(self) -> Vec<u8> {
        self.to_bytes()
    }
}

impl WireMessage for m2msec_wire::sga::Message {
    fn into_bytes(self) -> Vec<u8> {
        self.to_bytes()
    }
}

/// Queues and counters of a role whose events are `E` and whose messages are `M`.
#[derive(Debug)]
pub(crate) struct Outbox<E, M> {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<E>,
    pub(crate) ops: OpCounts,
    _messages: core::marker::PhantomData<fn(M)>,
}

impl<E, M> Default for Outbox<E, M> {
    fn default() -> Self {
        Self {
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ops: OpCounts::default(),
            _messages: core::marker::PhantomData,
        }
    }
}

impl<E, M: WireMessage> Outbox<E, M> {
    /// Queues a datagram.
    pub(crate) fn send(&mut self, destination: SocketAddr, message: impl Into<M>) {
        self.transmits.push_back(Transmit {
            destination,
            payload: message.into().into_bytes(),
        });
    }

    /// Queues an event.
    pub(crate) fn event(&mut self, e: E) {
        self.events.push_back(e);
    }
}
