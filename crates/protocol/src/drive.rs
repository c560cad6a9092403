//! The I/O-free core of a role's driver: what the async shell in `m2msec-node` decides without a
//! socket or a clock of its own.
//!
//! The whole driver is the loop quinn's `ConnectionDriver` has (STYLE.md): wait for a datagram
//! or for the role's deadline, feed it to the role, then drain the role's events — handing each
//! to a [`Handler`] that persists what must survive a restart — and only after that send the
//! role's datagrams. A handler error stops the loop *before* anything is sent, so a datagram
//! never leaves that depends on state the store failed to record.
//!
//! This module holds the parts of that loop that need no I/O — the [`deadline`] to sleep until,
//! what fires when it passes ([`on_timer`]) and the [`drain`] — so that their ordering rules are
//! tested here, without sockets; the shell keeps the waiting, the sockets and the clock (time is
//! passed in).

use core::convert::Infallible;

use m2msec_crypto::rng::CryptoRng;

use crate::{Endpoint, Millis, Transmit};

/// Whether the driver keeps going after a handler call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving.
    Continue,
    /// Stop once the datagrams already queued are sent.
    Stop,
}

/// What a handler may touch while it handles an event or a wake-up.
pub struct Context<'a, E> {
    /// The role (to start a new session, read its counters…).
    pub endpoint: &'a mut E,
    /// The current time.
    pub now: Millis,
    /// The driver's RNG.
    pub rng: &'a mut dyn CryptoRng,
}

/// The application side of a driver: what to do with the role's events, and with the commands
/// `C` taken from outside the network (none by default).
pub trait Handler<E: Endpoint, C = Infallible> {
    /// What a handler call fails with (the node's error: a store that failed to record…).
    type Error;

    /// Handles one event. Persisting happens here, synchronously, before the driver sends.
    ///
    /// # Errors
    ///
    /// An error stops the driver at once, without sending what the role has queued.
    fn on_event(&mut self, cx: &mut Context<'_, E>, event: E::Event) -> Result<Flow, Self::Error>;

    /// When the handler itself wants to be woken (the client daemon's next run), if ever.
    fn next_wakeup(&self) -> Option<Millis> {
        None
    }

    /// Called once the time from [`Handler::next_wakeup`] has come.
    ///
    /// # Errors
    ///
    /// An error stops the driver.
    fn on_wakeup(&mut self, cx: &mut Context<'_, E>) -> Result<Flow, Self::Error> {
        let _ = cx;
        Ok(Flow::Continue)
    }

    /// Until when the network holds the role, if it does (a demo's adversary delaying a
    /// message past its validity): the driver then neither sends, receives nor runs the
    /// role's timers, and what the role queued leaves once the time has come.
    fn held_until(&self) -> Option<Millis> {
        None
    }

    /// Handles one command from outside the network; what the role queues leaves as after an
    /// event.
    ///
    /// # Errors
    ///
    /// An error stops the driver.
    fn on_command(&mut self, cx: &mut Context<'_, E>, command: C) -> Result<Flow, Self::Error> {
        let _ = (cx, command);
        Ok(Flow::Continue)
    }

    /// Whether the role is on the network. While it is not (a device whose radio sleeps), its
    /// socket is closed: nothing arrives, what it sends is lost, its timers still run; the
    /// socket is bound again on the same address once it is back.
    fn online(&self) -> bool {
        true
    }
}

/// The end of the handler's hold on the role at the time `now` reads, while it lasts.
pub fn held<E: Endpoint, C, H: Handler<E, C>>(
    handler: &H,
    now: impl FnOnce() -> Millis,
) -> Option<Millis> {
    // The clock is read only when a hold is set (a simulated clock may move on each read).
    handler.held_until().filter(|until| *until > now())
}

/// When the driver must next wake: the role's deadline or the handler's, whichever is first.
pub fn deadline<E: Endpoint, C, H: Handler<E, C>>(endpoint: &E, handler: &H) -> Option<Millis> {
    match (endpoint.poll_timeout(), handler.next_wakeup()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The [`deadline`] has passed at `now`: the role's timeout runs first, then the handler's
/// wake-up, each only if its own time has come.
///
/// # Errors
///
/// The handler's, from [`Handler::on_wakeup`].
pub fn on_timer<E: Endpoint, C, H: Handler<E, C>>(
    endpoint: &mut E,
    rng: &mut dyn CryptoRng,
    handler: &mut H,
    now: Millis,
) -> Result<Flow, H::Error> {
    if endpoint.poll_timeout().is_some_and(|t| t <= now) {
        endpoint.handle_timeout(now, rng);
    }
    if handler.next_wakeup().is_some_and(|t| t <= now) {
        handler.on_wakeup(&mut Context { endpoint, now, rng })
    } else {
        Ok(Flow::Continue)
    }
}

/// What one [`drain`] leaves the shell to do.
#[derive(Debug)]
pub struct Drained {
    /// Whether a handler call said stop.
    pub flow: Flow,
    /// Whether the role is on the network now ([`Handler::online`]).
    pub online: bool,
    /// The datagrams to send, in the role's order: none while the handler holds the role
    /// (they stay queued) or keeps it offline (they are lost).
    pub transmits: Vec<Transmit>,
}

/// Hands every pending event to the handler, each at the time `clock` reads then, and only
/// after that takes every pending datagram to send.
///
/// # Errors
///
/// The first error of [`Handler::on_event`]: the events after it stay queued and no datagram
/// is taken, so none leaves that depends on state the handler failed to record.
pub fn drain<E: Endpoint, C, H: Handler<E, C>>(
    endpoint: &mut E,
    rng: &mut dyn CryptoRng,
    handler: &mut H,
    mut clock: impl FnMut() -> Millis,
) -> Result<Drained, H::Error> {
    let mut flow = Flow::Continue;
    while let Some(event) = endpoint.poll_event() {
        let now = clock();
        if handler.on_event(&mut Context { endpoint, now, rng }, event)? == Flow::Stop {
            flow = Flow::Stop;
        }
    }
    let online = handler.online();
    let mut transmits = Vec::new();
    if held(handler, &mut clock).is_none() {
        while let Some(transmit) = endpoint.poll_transmit() {
            if online {
                transmits.push(transmit);
            }
        }
    }
    Ok(Drained {
        flow,
        online,
        transmits,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use core::net::SocketAddr;

    use m2msec_crypto::rng::SeededRng;

    use super::*;
    use crate::OpCounts;

    /// A role with scripted events, datagrams and deadline; it records what happened to it.
    #[derive(Default)]
    struct Fake {
        events: Vec<u8>,
        transmits: Vec<u8>,
        timeout: Option<Millis>,
        log: Vec<&'static str>,
    }

    impl Endpoint for Fake {
        type Event = u8;

        fn handle_datagram(&mut self, _: Millis, _: SocketAddr, _: &[u8], _: &mut dyn CryptoRng) {
            self.log.push("datagram");
        }

        fn handle_timeout(&mut self, _: Millis, _: &mut dyn CryptoRng) {
            self.log.push("role timeout");
            self.timeout = None;
        }

        fn poll_transmit(&mut self) -> Option<Transmit> {
            let byte = self.transmits.pop()?;
            self.log.push("transmit taken");
            Some(Transmit {
                destination: SocketAddr::from(([127, 0, 0, 1], 9)),
                payload: vec![byte],
            })
        }

        fn poll_timeout(&self) -> Option<Millis> {
            self.timeout
        }

        fn poll_event(&mut self) -> Option<u8> {
            self.events.pop()
        }

        fn op_counts(&self) -> OpCounts {
            OpCounts::default()
        }

        fn set_path_mtu(&mut self, _: u16) {}
    }

    /// A handler that fails on event `fail`, stops on event `stop`, and logs into the role.
    #[derive(Default)]
    struct Script {
        fail: Option<u8>,
        stop: Option<u8>,
        wakeup: Option<Millis>,
        held: Option<Millis>,
        offline: bool,
        seen: Vec<u8>,
    }

    impl Handler<Fake> for Script {
        type Error = u8;

        fn on_event(&mut self, cx: &mut Context<'_, Fake>, event: u8) -> Result<Flow, u8> {
            if self.fail == Some(event) {
                return Err(event);
            }
            cx.endpoint.log.push("event handled");
            self.seen.push(event);
            Ok(if self.stop == Some(event) {
                Flow::Stop
            } else {
                Flow::Continue
            })
        }

        fn next_wakeup(&self) -> Option<Millis> {
            self.wakeup
        }

        fn on_wakeup(&mut self, cx: &mut Context<'_, Fake>) -> Result<Flow, u8> {
            cx.endpoint.log.push("handler wakeup");
            self.wakeup = None;
            Ok(Flow::Continue)
        }

        fn held_until(&self) -> Option<Millis> {
            self.held
        }

        fn online(&self) -> bool {
            !self.offline
        }
    }

    fn fake(events: &[u8], transmits: &[u8]) -> Fake {
        Fake {
            events: events.iter().rev().copied().collect(),
            transmits: transmits.iter().rev().copied().collect(),
            ..Fake::default()
        }
    }

    fn drain_at(role: &mut Fake, handler: &mut Script, now: u64) -> Result<Drained, u8> {
        drain(role, &mut SeededRng::from_seed_u64(1), handler, || {
            Millis(now)
        })
    }

    fn payloads(drained: &Drained) -> Vec<u8> {
        drained
            .transmits
            .iter()
            .flat_map(|t| t.payload.clone())
            .collect()
    }

    #[test]
    fn a_handler_error_sends_nothing() {
        let mut role = fake(&[1, 2, 3], &[7, 8]);
        let mut handler = Script {
            fail: Some(2),
            ..Script::default()
        };
        assert_eq!(drain_at(&mut role, &mut handler, 0).unwrap_err(), 2);
        assert_eq!(handler.seen, [1]);
        // The events after the failing one stay queued.
        assert_eq!(role.events, [3]);
        // Nothing taken: the datagrams stay with the role, which the shell then drops.
        assert_eq!(role.transmits.len(), 2);
        assert!(!role.log.contains(&"transmit taken"));
    }

    #[test]
    fn datagrams_are_taken_only_after_every_event_is_handled() {
        let mut role = fake(&[1, 2, 3], &[7, 8]);
        let mut handler = Script {
            stop: Some(1),
            ..Script::default()
        };
        let drained = drain_at(&mut role, &mut handler, 0).unwrap();
        // A stop still lets the later events be handled and the queued datagrams leave.
        assert_eq!(drained.flow, Flow::Stop);
        assert_eq!(handler.seen, [1, 2, 3]);
        assert_eq!(payloads(&drained), [7, 8]);
        assert_eq!(
            role.log,
            [
                "event handled",
                "event handled",
                "event handled",
                "transmit taken",
                "transmit taken"
            ]
        );
    }

    #[test]
    fn the_role_timeout_runs_before_the_handler_wakeup() {
        let mut role = Fake {
            timeout: Some(Millis(10)),
            ..Fake::default()
        };
        let mut handler = Script {
            wakeup: Some(Millis(20)),
            ..Script::default()
        };
        assert_eq!(deadline(&role, &handler), Some(Millis(10)));
        let rng = &mut SeededRng::from_seed_u64(1);
        // Before either time nothing fires; at the later one both do, the role's first.
        assert_eq!(
            on_timer(&mut role, rng, &mut handler, Millis(5)),
            Ok(Flow::Continue)
        );
        assert!(role.log.is_empty());
        assert_eq!(
            on_timer(&mut role, rng, &mut handler, Millis(20)),
            Ok(Flow::Continue)
        );
        assert_eq!(role.log, ["role timeout", "handler wakeup"]);
        assert_eq!(deadline(&role, &handler), None);
    }

    #[test]
    fn the_deadline_is_the_earlier_of_role_and_handler() {
        let role = Fake {
            timeout: Some(Millis(30)),
            ..Fake::default()
        };
        let handler = Script {
            wakeup: Some(Millis(20)),
            ..Script::default()
        };
        assert_eq!(deadline(&role, &handler), Some(Millis(20)));
        assert_eq!(deadline(&role, &Script::default()), Some(Millis(30)));
    }

    #[test]
    fn an_offline_role_loses_what_it_sends_but_its_events_are_handled() {
        let mut role = fake(&[1], &[7, 8]);
        let mut handler = Script {
            offline: true,
            ..Script::default()
        };
        let drained = drain_at(&mut role, &mut handler, 0).unwrap();
        assert!(!drained.online);
        assert!(drained.transmits.is_empty());
        assert!(role.transmits.is_empty(), "lost, not kept for later");
        assert_eq!(handler.seen, [1]);
    }

    #[test]
    fn a_held_role_keeps_its_datagrams_until_the_hold_ends() {
        let mut role = fake(&[], &[7]);
        let mut handler = Script {
            held: Some(Millis(100)),
            ..Script::default()
        };
        assert!(
            drain_at(&mut role, &mut handler, 50)
                .unwrap()
                .transmits
                .is_empty()
        );
        assert_eq!(held(&handler, || Millis(50)), Some(Millis(100)));
        assert_eq!(role.transmits, [7]);
        let drained = drain_at(&mut role, &mut handler, 100).unwrap();
        assert_eq!(payloads(&drained), [7]);
    }
}
