//! What each role writes by hand ([`Role`]), and the one [`Endpoint`] impl that turns any role
//! into what a driver runs.
//!
//! A role only decodes, handles a message, handles its own deadlines and queues what it sends in
//! its [`Outbox`]. What every role does alike around that (copies of accepted datagrams, answered
//! retransmissions, refusals reported as events, see [`crate::reliable`]) lives here, once.
//!
//! The roles of one protocol share their messages, errors and wire form: they implement
//! [`ProtocolRole`] and name their [`Protocol`], which says those once; the blanket impl below
//! makes each of them a [`Role`].

use core::net::SocketAddr;

use m2msec_crypto::rng::CryptoRng;

use m2msec_wire::fragment::Fragment;

use crate::fragment::Reassembly;
use crate::outbox::Outbox;
use crate::reliable::AnswerCache;
use crate::{Endpoint, Millis, OpCounts, Transmit};

/// One role of one protocol: its messages, its events and its state machine, with time and the
/// RNG passed in. Every role of this crate implements it; drivers run it as an [`Endpoint`],
/// which adds what every role shares (copies, retransmissions, refusals as events).
pub trait Role {
    /// A datagram as the role reads it.
    type Message;
    /// What the role reports.
    type Event;
    /// Why the role refuses a datagram.
    type Error;
    /// What the role's [`Outbox`] puts on the wire.
    type Wire;

    /// Parses a datagram; nothing about the role's state is known yet.
    ///
    /// # Errors
    /// Bytes that are not a message of the protocol.
    fn decode(datagram: &[u8]) -> Result<Self::Message, Self::Error>;

    /// The event that reports a refused datagram (the session stays as it was).
    fn rejected(remote: SocketAddr, error: Self::Error) -> Self::Event;

    /// Handles a decoded message from `remote`, queueing answers and events in the outbox.
    ///
    /// # Errors
    /// Why the message is refused; the driver reports it as [`Role::rejected`].
    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Self::Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Self::Error>;

    /// Time has reached `now`: sessions past their deadline fail.
    fn on_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng);

    /// The role's own earliest deadline (retransmissions are added by the [`Endpoint`] impl).
    fn next_timeout(&self) -> Option<Millis>;

    /// The role's queues and counters.
    fn outbox(&self) -> &Outbox<Self::Event, Self::Wire>;

    /// The role's queues and counters, to change.
    fn outbox_mut(&mut self) -> &mut Outbox<Self::Event, Self::Wire>;
}

/// What every role of one protocol shares: how a datagram reads, why one is refused and what
/// goes on the wire. A protocol names it once, on an uninhabited marker type, so that its roles
/// ([`ProtocolRole`]) do not repeat it.
pub trait Protocol {
    /// A datagram as the protocol's roles read it.
    type Message;
    /// Why a role of the protocol refuses a datagram.
    type Error;
    /// What the roles' [`Outbox`]es put on the wire.
    type Wire;

    /// Parses a datagram; nothing about a role's state is known yet.
    ///
    /// # Errors
    /// Bytes that are not a message of the protocol.
    fn decode(datagram: &[u8]) -> Result<Self::Message, Self::Error>;
}

/// A [`Role`] written against its [`Protocol`]: it names only its own events and state machine,
/// and the blanket impl below takes messages, errors, wire form and decoding from the protocol.
pub trait ProtocolRole {
    /// The protocol the role belongs to.
    type Protocol: Protocol;
    /// What the role reports.
    type Event;

    /// Handles a decoded message from `remote`, queueing answers and events in the outbox.
    ///
    /// # Errors
    /// Why the message is refused; the driver reports it as [`ProtocolRole::rejected`].
    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Message<Self>,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error<Self>>;

    /// Time has reached `now`: sessions past their deadline fail.
    fn on_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng);

    /// The role's own earliest deadline (retransmissions are added by the [`Endpoint`] impl).
    fn next_timeout(&self) -> Option<Millis>;

    /// The event that reports a refused datagram (the session stays as it was): the variant is
    /// the role's own, so the role names it.
    fn rejected(remote: SocketAddr, error: Error<Self>) -> Self::Event;

    /// The role's queues and counters.
    fn outbox(&self) -> &Outbox<Self::Event, Wire<Self>>;

    /// The role's queues and counters, to change.
    fn outbox_mut(&mut self) -> &mut Outbox<Self::Event, Wire<Self>>;
}

/// The message type of a [`ProtocolRole`]'s protocol.
type Message<R> = <<R as ProtocolRole>::Protocol as Protocol>::Message;
/// The error type of a [`ProtocolRole`]'s protocol.
type Error<R> = <<R as ProtocolRole>::Protocol as Protocol>::Error;
/// The wire type of a [`ProtocolRole`]'s protocol.
type Wire<R> = <<R as ProtocolRole>::Protocol as Protocol>::Wire;

/// A role of a protocol is a [`Role`] with the protocol's messages, errors and decoder.
impl<R: ProtocolRole> Role for R {
    type Message = Message<R>;
    type Event = R::Event;
    type Error = Error<R>;
    type Wire = Wire<R>;

    fn decode(datagram: &[u8]) -> Result<Self::Message, Self::Error> {
        R::Protocol::decode(datagram)
    }

    fn rejected(remote: SocketAddr, error: Self::Error) -> Self::Event {
        <R as ProtocolRole>::rejected(remote, error)
    }

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        msg: Self::Message,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Self::Error> {
        ProtocolRole::handle(self, now, remote, msg, rng)
    }

    fn on_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        ProtocolRole::on_timeout(self, now, rng);
    }

    fn next_timeout(&self) -> Option<Millis> {
        ProtocolRole::next_timeout(self)
    }

    fn outbox(&self) -> &Outbox<Self::Event, Self::Wire> {
        ProtocolRole::outbox(self)
    }

    fn outbox_mut(&mut self) -> &mut Outbox<Self::Event, Self::Wire> {
        ProtocolRole::outbox_mut(self)
    }
}

/// Every role is reliable on a lossy link ([`crate::reliable`]): a copy of a datagram already
/// accepted is answered with what was sent for it instead of being handled again, an accepted
/// datagram answers the requests that waited for its sender, and requests are retransmitted
/// when due.
///
/// A message too large for the path leaves as fragments, and fragments are put together before
/// anything else sees them ([`crate::fragment`]): copies, answers and the role all deal in whole
/// messages.
impl<R: Role> Endpoint for R
where
    R::Error: From<m2msec_wire::Error>,
{
    type Event = R::Event;

    fn handle_datagram(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn CryptoRng,
    ) {
        let whole;
        let datagram = if Fragment::is_fragment(datagram) {
            match self.outbox_mut().fragments.receive(now, remote, datagram) {
                Reassembly::Whole(message) => {
                    whole = message;
                    &whole[..]
                }
                Reassembly::Incomplete => return,
                Reassembly::Refused(e) => {
                    self.outbox_mut().event(R::rejected(remote, e.into()));
                    return;
                }
            }
        } else {
            datagram
        };
        // A copy of a datagram already accepted: send again what was sent for it.
        let digest = AnswerCache::digest(remote, datagram);
        let out = self.outbox_mut();
        if let Some(again) = out.answers.lookup(now, &digest) {
            out.transmits.extend(again);
            return;
        }
        let before = out.transmits.len();
        let waiting = out.retransmits.waiting();
        let result = R::decode(datagram).and_then(|msg| self.handle(now, remote, msg, rng));
        let out = self.outbox_mut();
        match result {
            Ok(()) => {
                out.retransmits.answered_by(remote, waiting);
                let sent = out.transmits.iter().skip(before).cloned().collect();
                out.answers.remember(now, digest, remote, sent);
            }
            Err(error) => out.event(R::rejected(remote, error)),
        }
    }

    fn handle_timeout(&mut self, now: Millis, rng: &mut dyn CryptoRng) {
        let out = self.outbox_mut();
        out.retransmits.on_timeout(now, &mut out.transmits);
        self.on_timeout(now, rng);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let out = self.outbox_mut();
        loop {
            let next = out.transmits.pop_front()?;
            let mut datagrams = out.fragments.split(next).into_iter();
            if let Some(first) = datagrams.next() {
                // The other fragments go next, before anything queued after their message.
                for rest in datagrams.rev() {
                    out.transmits.push_front(rest);
                }
                return Some(first);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        match (
            self.next_timeout(),
            self.outbox().retransmits.next_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        self.outbox_mut().events.pop_front()
    }

    fn op_counts(&self) -> OpCounts {
        self.outbox().ops
    }

    fn set_path_mtu(&mut self, path_mtu: u16) {
        self.outbox_mut().fragments.set_path_mtu(path_mtu);
    }
}
