//! A sink's pump, its decisions without the network (paper 004 §IV-C: the proxy forwards each
//! stored message to each sink its owner granted): where it stands, what each stored message
//! becomes for the sink, how its position advances, how fast it may send (the forward's rate)
//! and how long it waits before trying a sink that did not answer again. The shell (node's
//! `forward.rs`) reads the store, keeps up to [`WINDOW`] deliveries under way, and sleeps.

use core::time::Duration;

use m2msec_wire::relay::{Flags, RelayMessage};

use super::api::PumpSpec;
use super::metrics::Slot;
use super::state::{Core, Handles, MonitorId};
use crate::relay::{Error, Forwarded, Forwarder, SkipReason};

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
        let Some(sink) = self
            .forwards
            .get_mut(&spec.forward_id)
            .and_then(|f| f.sinks.get_mut(&spec.url))
            .filter(|s| s.generation == spec.generation)
        else {
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

#[cfg(test)]
mod tests {
    use super::*;

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
