//! A sink's pump, its decisions without the network (paper 004 §IV-C: the proxy forwards each
//! stored message to each sink its owner granted): where it stands, what each stored message
//! becomes for the sink, how its position advances, how fast it may send (the forward's rate)
//! and how long it waits before trying a sink that did not answer again, and which deliveries
//! may be under way at once ([`Window`]); [`Pump`] puts them together for a shell (node's
//! `forward.rs`), which reads the store, sends, and sleeps.

use core::time::Duration;
use std::collections::VecDeque;

use m2msec_wire::relay::{Flags, RelayMessage};

use super::api::PumpSpec;
use super::metrics::Slot;
use super::state::{Core, Handles, MonitorId, SinkState};
use crate::relay::{Error, Forwarded, Forwarder, SkipReason};

mod driver;

pub use driver::{Delivery, Outcome, Pump, Step};

/// Messages read from the store at a time.
pub const READ_BATCH: usize = 64;
/// Deliveries under way at once to one sink. RFC 7252 §4.7 lets an endpoint raise NSTART
/// (default 1) when it knows the path; the proxy–sink path is the proxy's own, and with one
/// message at a time every lost datagram would stall the whole stream for a CoAP
/// retransmission timeout (2–3 s) instead of delaying one message.
pub const WINDOW: usize = 16;
/// First pause after a failed delivery; doubled up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between two attempts at one message.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A pump with nothing to do looks again at least this often.
pub const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Where a pump stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The forward or the sink is gone (deleted, removed, replaced): the pump ends.
    Gone,
    /// The forward is paused.
    Paused,
    /// Deliver from `cursor`; the storage's next sequence number is `next`.
    Run {
        /// The sink's position.
        cursor: u64,
        /// The storage's next sequence number.
        next: u64,
    },
}

impl Standing {
    /// `Ok` while the pump is to run; else why it stops delivering.
    ///
    /// # Errors
    ///
    /// [`Stop::Gone`] when the forward or the sink is gone, [`Stop::Interrupted`] when the
    /// forward is paused.
    pub fn running(self) -> Result<(), Stop> {
        match self {
            Self::Gone => Err(Stop::Gone),
            Self::Paused => Err(Stop::Interrupted),
            Self::Run { .. } => Ok(()),
        }
    }
}

/// Why a pump stops delivering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The forward was paused: the deliveries under way are dropped and the pump goes back to
    /// the recorded position and its sections, as after a restart (the forwarder may have seen
    /// messages past it).
    Interrupted,
    /// The forward or its sink was removed, or the proxy stops.
    Gone,
}

/// One stored message, made ready for the sink in storage order.
#[derive(Debug)]
pub struct Prepared {
    /// Its sequence number.
    pub seq: u64,
    /// What goes to the sink, if anything (`None`: skipped).
    pub out: Option<RelayMessage>,
    /// Why nothing goes, for the shell's log.
    pub skipped: Option<Skipped>,
    /// A management message re-encrypted for the sink.
    pub reencrypted: bool,
    /// A management message (a section key): it goes alone, after everything before it, so the
    /// sink never holds data it cannot open yet.
    pub management: bool,
    /// The forwarder's sections after this message, recorded with the position once it is
    /// delivered (a later message's may already be ahead).
    pub snapshot: Option<Vec<u8>>,
}

impl Prepared {
    /// How many deliveries may be under way when this one starts: a management message (a
    /// section key) goes alone, after everything before it, so the sink never holds data it
    /// cannot open yet; anything else within the [`WINDOW`].
    #[must_use]
    pub fn window(&self) -> usize {
        if self.management { 1 } else { WINDOW }
    }
}

/// Why a stored message is not sent.
#[derive(Debug)]
pub enum Skipped {
    /// It does not decode (a damaged store): logged as a warning.
    Undecodable(String),
    /// The forwarder passes it (outside the sink's epochs or sections).
    Forwarder(SkipReason),
}

/// The sink's forwarder with the sections of `snapshot` (`Forwarder::snapshot`; empty or
/// unreadable: none).
///
/// # Errors
///
/// The grant's, when its re-encryption keys are not usable.
pub fn forwarder_at(spec: &PumpSpec, snapshot: &[u8]) -> Result<Forwarder, Error> {
    if snapshot.is_empty() {
        Forwarder::new(spec.url.clone(), spec.rekeys.clone())
    } else {
        Forwarder::restore(spec.url.clone(), spec.rekeys.clone(), snapshot)
            .or_else(|_| Forwarder::new(spec.url.clone(), spec.rekeys.clone()))
    }
}

/// What stored message `seq` (bytes `value`) becomes for the sink of `forwarder`.
pub fn prepare(forwarder: &mut Forwarder, seq: u64, value: &[u8]) -> Prepared {
    let skipped = |why| Prepared {
        seq,
        out: None,
        skipped: Some(why),
        reencrypted: false,
        management: false,
        snapshot: None,
    };
    match RelayMessage::decode(value) {
        Err(e) => skipped(Skipped::Undecodable(e.to_string())),
        Ok(msg) => match forwarder.transform(&msg) {
            Forwarded::Skip(reason) => skipped(Skipped::Forwarder(reason)),
            Forwarded::Send(out) => {
                let reencrypted = out.header.flags.contains(Flags::REENCRYPTED);
                let management = msg.header.flags.contains(Flags::MANAGEMENT);
                Prepared {
                    seq,
                    snapshot: (reencrypted && management).then(|| forwarder.snapshot()),
                    out: Some(out),
                    skipped: None,
                    reencrypted,
                    management,
                }
            }
        },
    }
}

impl<H: Handles> Core<H> {
    /// Where the pump of `spec` stands.
    #[must_use]
    pub fn standing(&self, spec: &PumpSpec) -> Standing {
        let Some(f) = self.forwards.get(&spec.forward_id) else {
            return Standing::Gone;
        };
        let Some(sink) = f
            .sinks
            .get(&spec.url)
            .filter(|s| s.generation == spec.generation)
        else {
            return Standing::Gone;
        };
        if f.record.paused {
            return Standing::Paused;
        }
        let next = self
            .storages
            .get(&spec.storage_id)
            .map_or(0, |s| s.stats.next_seq);
        Standing::Run {
            cursor: sink.pos.cursor,
            next,
        }
    }

    /// The sink of `spec`, unless it was removed or replaced (a new pump serves it then).
    pub fn sink_mut(&mut self, spec: &PumpSpec) -> Option<&mut SinkState<H>> {
        self.forwards
            .get_mut(&spec.forward_id)
            .and_then(|f| f.sinks.get_mut(&spec.url))
            .filter(|s| s.generation == spec.generation)
    }

    /// What the shell attached to the storage and the forward of `spec` (node: their pumps'
    /// wake-ups); `None` when either is gone.
    #[must_use]
    pub fn pump_handles(&self, spec: &PumpSpec) -> Option<(&H::Storage, &H::Forward)> {
        let storage = self.storages.get(&spec.storage_id)?;
        let forward = self.forwards.get(&spec.forward_id)?;
        Some((&storage.handles, &forward.handles))
    }

    /// The sections recorded with the sink's position (`Forwarder::snapshot`), to start again
    /// from after an interruption; empty when none.
    #[must_use]
    pub fn recorded_snapshot(&self, spec: &PumpSpec) -> Vec<u8> {
        self.forwards
            .get(&spec.forward_id)
            .and_then(|f| f.sinks.get(&spec.url))
            .map(|s| s.pos.snapshot.clone())
            .unwrap_or_default()
    }

    /// Moves the sink's position past `item`, delivered or skipped; `false` when the pump is
    /// gone (the sink was removed or replaced). Positions advance in storage order only: the
    /// shell records a message once every earlier one was, so the position never passes a
    /// message the sink does not have.
    pub fn record_delivery(&mut self, spec: &PumpSpec, item: &Prepared, now_s: u64) -> bool {
        let Some(sink) = self.sink_mut(spec) else {
            return false;
        };
        sink.pos.cursor = item.seq.saturating_add(1).max(sink.pos.cursor);
        match &item.out {
            Some(_) => sink.pos.delivered = sink.pos.delivered.saturating_add(1),
            None => sink.pos.skipped = sink.pos.skipped.saturating_add(1),
        }
        if item.reencrypted {
            sink.pos.reencrypted = sink.pos.reencrypted.saturating_add(1);
            if let Some(snapshot) = &item.snapshot {
                sink.pos.snapshot.clone_from(snapshot);
            }
        }
        sink.dirty = true;
        self.dirty.insert(MonitorId::Forward(spec.forward_id));
        if let Some(out) = &item.out {
            let len = out.encode().map_or(0, |b| b.len());
            self.metrics.record(
                now_s,
                Slot {
                    messages_out: 1,
                    bytes_out: u64::try_from(len).unwrap_or(u64::MAX),
                    ..Slot::default()
                },
            );
        }
        true
    }
}

/// The forward's rate as pacing: at most one message per `1/rate` seconds. Times are
/// durations since any origin the shell keeps fixed (sub-millisecond: a rate above 1000/s
/// still paces).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    interval: Option<Duration>,
    next: Duration,
}

impl Pace {
    /// Pacing at `rate` messages per second (0: unlimited).
    #[must_use]
    pub fn new(rate: u32) -> Self {
        Self {
            interval: (rate > 0).then(|| Duration::from_secs(1) / rate),
            next: Duration::ZERO,
        }
    }

    /// Takes the next slot: when the message may go (`now` or later).
    pub fn take(&mut self, now: Duration) -> Duration {
        let Some(interval) = self.interval else {
            return now;
        };
        let at = self.next.max(now);
        self.next = at.saturating_add(interval);
        at
    }
}

/// The pause before the next attempt at a message a sink did not take: [`FIRST_BACKOFF`],
/// doubled each time, at most [`MAX_BACKOFF`]. Nothing is ever skipped for lack of an answer.
#[derive(Clone, Copy, Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(FIRST_BACKOFF)
    }
}

impl Backoff {
    /// The pause before the next attempt; the one after is longer.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        pause
    }
}

/// The deliveries under way to one sink. Up to [`WINDOW`] go at once, so that a lost datagram
/// delays one message, not the stream; they finish in any order, but the sink's position may
/// only pass a message once it and every earlier one are done, so [`pop_settled`](Self::pop_settled)
/// hands them back in storage order. A management message (a section key) goes alone, after
/// everything before it, so the sink never holds data it cannot open yet. `T` is what the shell
/// keeps of a finished delivery.
#[derive(Debug)]
pub struct Window<T> {
    /// The place of `entries[0]`.
    first: u64,
    /// In storage order: whether it is a management message, and its outcome once done.
    entries: VecDeque<(bool, Option<T>)>,
}

/// A delivery's place in its [`Window`], handed back with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place(u64);

impl<T> Default for Window<T> {
    fn default() -> Self {
        Self {
            first: 0,
            entries: VecDeque::new(),
        }
    }
}

impl<T> Window<T> {
    /// Whether `item` may start now: never beside a management message, and only while fewer
    /// than its [`Prepared::window`] are under way.
    #[must_use]
    pub fn may_send(&self, item: &Prepared) -> bool {
        !self.must_drain() && self.entries.len() < item.window()
    }

    /// Takes `item`'s place, after every earlier one (the shell asked [`may_send`](Self::may_send)).
    pub fn push(&mut self, item: &Prepared) -> Place {
        let place = Place(
            self.first
                .saturating_add(u64::try_from(self.entries.len()).unwrap_or(u64::MAX)),
        );
        self.entries.push_back((item.management, None));
        place
    }

    /// The delivery at `place` finished with `outcome`, in whatever order; a place not under
    /// way is ignored.
    pub fn complete(&mut self, place: Place, outcome: T) {
        let index = place
            .0
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(entry) = index.and_then(|i| self.entries.get_mut(i)) {
            entry.1 = Some(outcome);
        }
    }

    /// The oldest delivery's outcome, once it and every earlier one are done: the sink's
    /// position may pass it.
    pub fn pop_settled(&mut self) -> Option<T> {
        self.entries.front()?.1.as_ref()?;
        self.first = self.first.saturating_add(1);
        self.entries.pop_front()?.1
    }

    /// A management message is under way: it settles before anything else starts.
    #[must_use]
    pub fn must_drain(&self) -> bool {
        self.entries.iter().any(|(management, _)| *management)
    }

    /// Deliveries under way or done but not yet settled.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing under way and nothing left to settle.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, management: bool) -> Prepared {
        Prepared {
            seq,
            out: None,
            skipped: None,
            reencrypted: false,
            management,
            snapshot: None,
        }
    }

    #[test]
    fn out_of_order_completions_settle_in_storage_order() {
        let mut w = Window::default();
        let places: Vec<Place> = (0..3).map(|seq| w.push(&item(seq, false))).collect();
        w.complete(places[2], 2);
        assert_eq!(w.pop_settled(), None, "the oldest is still under way");
        w.complete(places[0], 0);
        assert_eq!(w.pop_settled(), Some(0));
        assert_eq!(
            w.pop_settled(),
            None,
            "1 is still under way, 2 waits for it"
        );
        w.complete(places[1], 1);
        assert_eq!(w.pop_settled(), Some(1));
        assert_eq!(w.pop_settled(), Some(2));
        assert!(w.is_empty());
        // A place already settled, or never given, changes nothing.
        w.complete(places[0], 9);
        w.complete(Place(7), 9);
        assert!(w.is_empty());
    }

    #[test]
    fn the_window_holds_its_limit() {
        let mut w = Window::default();
        let places: Vec<Place> = (0..WINDOW as u64)
            .map(|seq| {
                let next = item(seq, false);
                assert!(w.may_send(&next));
                w.push(&next)
            })
            .collect();
        let next = item(WINDOW as u64, false);
        assert!(!w.may_send(&next));
        // A later delivery done does not free a place: the oldest still holds the position.
        w.complete(places[WINDOW - 1], ());
        assert_eq!(w.pop_settled(), None);
        assert!(!w.may_send(&next));
        w.complete(places[0], ());
        assert_eq!(w.pop_settled(), Some(()));
        assert!(w.may_send(&next));
        assert_eq!(w.len(), WINDOW - 1);
    }

    #[test]
    fn a_management_message_waits_for_everything_before_it_and_goes_alone() {
        let mut w = Window::default();
        let a = w.push(&item(0, false));
        let b = w.push(&item(1, false));
        let key = item(2, true);
        assert!(!w.may_send(&key));
        w.complete(b, 1);
        assert!(!w.may_send(&key), "0 is still under way");
        w.complete(a, 0);
        assert_eq!((w.pop_settled(), w.pop_settled()), (Some(0), Some(1)));
        assert!(w.may_send(&key));
        let k = w.push(&key);
        assert!(w.must_drain());
        assert!(!w.may_send(&item(3, false)), "nothing goes beside it");
        assert!(!w.may_send(&item(3, true)));
        w.complete(k, 2);
        assert!(w.must_drain(), "done is not settled");
        assert_eq!(w.pop_settled(), Some(2));
        assert!(!w.must_drain());
        assert!(w.may_send(&item(3, false)));
    }

    #[test]
    fn nothing_is_skipped_whatever_the_order_of_completions() {
        // A shell in miniature: deliveries finish in a pseudo-random order (xorshift).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap_or(0)
        };
        let items: Vec<Prepared> = (0..500).map(|seq| item(seq, seq % 37 == 5)).collect();
        let mut w = Window::default();
        let mut under_way: Vec<(Place, u64)> = Vec::new();
        let mut settled = Vec::new();
        let mut next = items.iter().peekable();
        while next.peek().is_some() || !w.is_empty() {
            while let Some(i) = next.next_if(|i| w.may_send(i)) {
                under_way.push((w.push(i), i.seq));
                assert!(w.len() <= WINDOW);
                if w.must_drain() {
                    assert!(
                        i.management && w.len() == 1,
                        "a management message goes alone"
                    );
                }
            }
            if !under_way.is_empty() {
                let (place, seq) = under_way.swap_remove(random(under_way.len()));
                w.complete(place, seq);
            }
            while let Some(seq) = w.pop_settled() {
                settled.push(seq);
            }
        }
        assert_eq!(settled, (0..500).collect::<Vec<u64>>());
    }

    #[test]
    fn only_a_running_pump_delivers() {
        assert_eq!(Standing::Gone.running(), Err(Stop::Gone));
        assert_eq!(Standing::Paused.running(), Err(Stop::Interrupted));
        let run = Standing::Run { cursor: 3, next: 3 };
        assert_eq!(run.running(), Ok(()));
    }

    #[test]
    fn pacing_spaces_messages_and_never_runs_behind() {
        let ms = Duration::from_millis;
        let mut unlimited = Pace::new(0);
        assert_eq!(unlimited.take(ms(5)), ms(5));
        assert_eq!(unlimited.take(ms(5)), ms(5));
        let mut pace = Pace::new(4);
        assert_eq!(pace.take(ms(0)), ms(0));
        assert_eq!(pace.take(ms(10)), ms(250));
        assert_eq!(pace.take(ms(20)), ms(500));
        // After a pause the next slot is now, not a burst of the slots missed.
        assert_eq!(pace.take(ms(2000)), ms(2000));
        assert_eq!(pace.take(ms(2000)), ms(2250));
        // Faster than one per millisecond still paces.
        let mut fast = Pace::new(4000);
        fast.take(Duration::ZERO);
        assert_eq!(fast.take(Duration::ZERO), Duration::from_micros(250));
    }

    #[test]
    fn back_off_doubles_up_to_its_bound() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..10)
            .map(|_| u64::try_from(b.next_pause().as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(
            pauses,
            [
                200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000
            ]
        );
    }
}
