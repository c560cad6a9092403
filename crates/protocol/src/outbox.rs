//! What every role hands its driver: datagrams to send, events, and its operation counts.

use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::fragment::Fragments;
use crate::reliable::{AnswerCache, RetransmitPolicy, Retransmits};
use crate::{Millis, OpCounts, Transmit};

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

/// Queues and counters of a role whose events are `E` and whose messages are `M`: what a
/// [`Role`](crate::Role) fills and its [`Endpoint`](crate::Endpoint) impl drains. Only this
/// crate's roles can fill one.
#[derive(Debug)]
pub struct Outbox<E, M> {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<E>,
    pub(crate) ops: OpCounts,
    /// Requests waiting for an answer (see [`crate::reliable`]).
    pub(crate) retransmits: Retransmits,
    /// What was sent for each accepted datagram (see [`crate::reliable`]).
    pub(crate) answers: AnswerCache,
    /// Messages above the path MTU split, and fragments put together (see
    /// [`crate::fragment`]).
    pub(crate) fragments: Fragments,
    _messages: core::marker::PhantomData<fn(M)>,
}

impl<E, M> Default for Outbox<E, M> {
    fn default() -> Self {
        Self {
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ops: OpCounts::default(),
            retransmits: Retransmits::default(),
            answers: AnswerCache::default(),
            fragments: Fragments::default(),
            _messages: core::marker::PhantomData,
        }
    }
}

// The bounds are on the methods: `WireMessage` is this crate's own, `Outbox` is not.
impl<E, M> Outbox<E, M> {
    /// Queues a datagram.
    pub(crate) fn send(&mut self, destination: SocketAddr, message: impl Into<M>)
    where
        M: WireMessage,
    {
        let transmit = Transmit {
            destination,
            payload: message.into().into_bytes(),
        };
        self.answers.sent_later(&transmit);
        self.transmits.push_back(transmit);
    }

    /// Queues a request: sent again, byte for byte, until a datagram from `destination` is
    /// accepted or the retransmission policy gives up.
    pub(crate) fn send_reliable(
        &mut self,
        now: Millis,
        destination: SocketAddr,
        message: impl Into<M>,
    ) where
        M: WireMessage,
    {
        self.send_tracked(now, destination, message.into(), false);
    }

    /// Queues a request whose answer comes from someone else: sent again until the role
    /// clears its retransmissions (its exchange ended) or the policy gives up.
    pub(crate) fn send_until_cleared(
        &mut self,
        now: Millis,
        destination: SocketAddr,
        message: impl Into<M>,
    ) where
        M: WireMessage,
    {
        self.send_tracked(now, destination, message.into(), true);
    }

    fn send_tracked(
        &mut self,
        now: Millis,
        destination: SocketAddr,
        message: M,
        until_cleared: bool,
    ) where
        M: WireMessage,
    {
        self.send(destination, message);
        if let Some(t) = self.transmits.back() {
            self.retransmits.track(now, t.clone(), until_cleared);
        }
    }

    /// How requests are retransmitted.
    pub(crate) fn set_retransmit_policy(&mut self, policy: RetransmitPolicy) {
        self.retransmits.set_policy(policy);
    }

    /// Queues an event.
    pub(crate) fn event(&mut self, e: E) {
        self.events.push_back(e);
    }
}
