//! One sink's pump as a sans-IO driver ([`Pump`]): the shell (node's `forward.rs`) asks it
//! what to do next ([`Pump::poll`], time passed in), does it — a store read, a send, a sleep —
//! and hands back what came of it ([`Pump::on_read`], [`Pump::on_done`]).
//!
//! The pump reads its storage's queue from the sink's position, gives each message to its
//! [`Forwarder`] (which re-encrypts management and individual messages to the sink and passes
//! the data of the sections it re-encrypted), and has the result delivered — a CoAP
//! confirmable POST to a `coap://` sink, a datagram to a `udp://` one — at the forward's rate,
//! up to [`WINDOW`](super::WINDOW) at once so that a lost datagram delays one message, not the stream. The
//! position advances, in storage order, only once the sink has the message (a 2.xx; a 4.xx, by
//! which the sink says it will never take it, is logged and passed) or the forwarder skipped
//! it (outside the sink's epochs). When the sink is down the same message is sent again with
//! exponential back-off ([`Backoff`]), for as long as it takes: nothing is ever skipped for
//! lack of an answer.
//!
//! Positions live in `Core` and are written by the housekeeping round every 100 ms, with the
//! forwarder's sections (`Forwarder::snapshot`) when they changed. After a crash a sink may
//! thus receive again what it acknowledged in the last moments before it; the sink's durable
//! seen set drops those copies.

use core::time::Duration;
use std::collections::VecDeque;

use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::coap::coap_lite::{MessageClass, ResponseType};

use super::{Backoff, Pace, Place, Prepared, Skipped, Standing, Window, forwarder_at, prepare};
use crate::Millis;
use crate::relay::proxy::api::PumpSpec;
use crate::relay::proxy::state::{Core, Handles};
use crate::relay::{Error, Forwarder, SkipReason};

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The sink has it (a 2.xx, or a datagram sent to a UDP sink).
    Accepted,
    /// The sink answered with a client error (4.xx): it has seen the message and refused it;
    /// sending it again would not change that.
    Refused(ResponseType),
    /// Not delivered (no answer, 5.xx): try again later.
    Failed(String),
}

impl Outcome {
    /// What the code of a sink's answer to a delivery means: a 2.xx, the sink has it; a 4.xx,
    /// it refused it for good; anything else (a 5.xx), try again.
    #[must_use]
    pub fn of_answer(code: MessageClass) -> Self {
        match code {
            MessageClass::Response(c) => match u8::from(code) >> 5 {
                2 => Self::Accepted,
                4 => Self::Refused(c),
                _ => Self::Failed(format!("sink answered {code}")),
            },
            _ => Self::Failed("sink answered with a non-response".into()),
        }
    }
}

/// One delivery under way: the shell sends [`message`](Self::message) and hands it back with
/// the [`Outcome`] ([`Pump::on_done`]).
#[derive(Debug)]
pub struct Delivery {
    /// The pump's round it belongs to (a pause starts a new one).
    round: u64,
    place: Place,
    item: Prepared,
    backoff: Backoff,
}

impl Delivery {
    /// What goes to the sink.
    #[must_use]
    pub fn message(&self) -> Option<&RelayMessage> {
        self.item.out.as_ref()
    }
}

/// What the shell does next, as [`Pump::poll`] says.
#[derive(Debug)]
pub enum Step {
    /// The forward or the sink is gone: the pump ends.
    Gone,
    /// The forward was paused: the deliveries under way are dropped, and the pump went back to
    /// the recorded position and its sections, as after a restart (the forwarder may have seen
    /// messages past it).
    Interrupted,
    /// A warning for the shell's (rate-limited) log.
    Warn(String),
    /// The forwarder passed stored message `seq` (outside the sink's epochs or sections).
    Skipped {
        /// The message.
        seq: u64,
        /// Why.
        reason: SkipReason,
    },
    /// Read up to [`READ_BATCH`](super::READ_BATCH) stored messages from `cursor` and hand them to
    /// [`Pump::on_read`].
    Read(u64),
    /// Nothing to do: wait for the forward to change (resumed), for new messages when
    /// `arrivals`, or at most [`IDLE_RECHECK`](super::IDLE_RECHECK); then ask again. The shell
    /// registers its wake-ups and asks [`Pump::idle`] before it waits, so a wake-up in between
    /// is not lost.
    Idle {
        /// New messages in the storage matter.
        arrivals: bool,
    },
    /// Send this after the pause (zero: at once) and hand it back with its outcome.
    Send(Delivery, Duration),
    /// Wait until this time of the pump's clock (the forward's rate), handing back the
    /// deliveries that finish meanwhile.
    Wait(Duration),
    /// Wait for a delivery under way to finish.
    Settle,
}

/// A sink's pump without the network: its forwarder, the deliveries under way, pacing and
/// back-off (see the module documentation).
#[derive(Debug)]
pub struct Pump {
    spec: PumpSpec,
    forwarder: Forwarder,
    window: Window<Prepared>,
    pace: Pace,
    round: u64,
    /// Read from the store and prepared (re-encrypted where it must be), not yet taken.
    batch: VecDeque<Prepared>,
    /// Prepared, waiting for room in the window, and its pacing slot once taken.
    next: Option<(Prepared, Option<Duration>)>,
    /// Logs for the shell, before anything else.
    notes: VecDeque<Step>,
    /// Deliveries to send again, with their pause.
    retry: VecDeque<(Delivery, Duration)>,
}

impl Pump {
    /// The pump of `spec`, its forwarder at the sections of `spec.snapshot`.
    ///
    /// # Errors
    ///
    /// The grant's, when its re-encryption keys are not usable.
    pub fn new(spec: PumpSpec) -> Result<Self, Error> {
        Ok(Self {
            forwarder: forwarder_at(&spec, &spec.snapshot)?,
            pace: Pace::new(spec.rate),
            spec,
            window: Window::default(),
            round: 0,
            batch: VecDeque::new(),
            next: None,
            notes: VecDeque::new(),
            retry: VecDeque::new(),
        })
    }

    /// The epochs the sink is granted, for the shell's log.
    #[must_use]
    pub fn epochs(&self) -> Vec<u32> {
        self.forwarder.epochs()
    }

    /// What to do next, without cryptography (see [`on_read`](Self::on_read)). `now` is the
    /// pump's clock (any origin the shell keeps fixed), `wall` the wall clock, whose seconds
    /// go to the load counters; the sink's position in `core` advances
    /// here, past what was delivered or skipped, in storage order.
    pub fn poll<H: Handles>(&mut self, core: &mut Core<H>, now: Duration, wall: Millis) -> Step {
        if let Some(note) = self.notes.pop_front() {
            return note;
        }
        let standing = core.standing(&self.spec);
        match standing {
            Standing::Gone => return Step::Gone,
            Standing::Paused if self.busy() => {
                // What the sink already has moves the position first, as it would have
                // without the pause.
                while let Some(item) = self.window.pop_settled() {
                    if !core.record_delivery(&self.spec, &item, wall.0 / 1000) {
                        return Step::Gone;
                    }
                }
                self.interrupt(&core.recorded_snapshot(&self.spec));
                return Step::Interrupted;
            }
            Standing::Paused | Standing::Run { .. } => {}
        }
        if let Some(step) = self.rest(standing) {
            return step;
        }
        if let Some((delivery, pause)) = self.retry.pop_front() {
            return Step::Send(delivery, pause);
        }
        loop {
            while let Some(item) = self.window.pop_settled() {
                if !core.record_delivery(&self.spec, &item, wall.0 / 1000) {
                    return Step::Gone;
                }
            }
            if self.window.must_drain() {
                return Step::Settle;
            }
            if self.next.is_none() {
                let Some(mut item) = self.batch.pop_front() else {
                    break;
                };
                let seq = item.seq;
                let note = item.skipped.take().map(|why| match why {
                    Skipped::Undecodable(e) => {
                        Step::Warn(format!("stored message {seq} does not decode: {e}"))
                    }
                    Skipped::Forwarder(reason) => Step::Skipped { seq, reason },
                });
                self.next = Some((item, None));
                if let Some(note) = note {
                    return note;
                }
            }
            let Some((item, slot)) = &mut self.next else {
                break;
            };
            if !self.window.may_send(item) {
                return Step::Settle;
            }
            if item.out.is_some() {
                // Only a slot still to come is waited for: a shell's timer, even one already
                // due, may round up to its next tick (tokio's millisecond), which at no rate
                // limit would cap a pump at about one message per tick.
                let at = *slot.get_or_insert_with(|| self.pace.take(now));
                if at > now {
                    return Step::Wait(at);
                }
            }
            let Some((item, _)) = self.next.take() else {
                break;
            };
            let place = self.window.push(&item);
            if item.out.is_none() {
                self.window.complete(place, item);
                continue;
            }
            let delivery = Delivery {
                round: self.round,
                place,
                item,
                backoff: Backoff::default(),
            };
            return Step::Send(delivery, Duration::ZERO);
        }
        if !self.window.is_empty() {
            return Step::Settle;
        }
        // Where it stands now that what settled moved the position.
        let standing = core.standing(&self.spec);
        if let Some(step) = self.rest(standing) {
            return step;
        }
        match standing {
            Standing::Run { cursor, .. } => Step::Read(cursor),
            Standing::Gone | Standing::Paused => Step::Gone,
        }
    }

    /// Whether [`poll`](Self::poll) would say [`Step::Idle`] now, and if so whether new
    /// messages matter (its `arrivals`): for the shell to look again once its wake-ups are
    /// registered, and wait as things stand then.
    #[must_use]
    pub fn idle<H: Handles>(&self, core: &Core<H>) -> Option<bool> {
        if !(self.notes.is_empty() && self.retry.is_empty()) {
            return None;
        }
        match self.rest(core.standing(&self.spec)) {
            Some(Step::Idle { arrivals }) => Some(arrivals),
            _ => None,
        }
    }

    /// What was read at the last [`Step::Read`]; empty when the storage holds nothing there
    /// (its messages were removed with it: the next look finds the forward gone).
    ///
    /// The messages are prepared here — decoded, and re-encrypted to the sink where they must
    /// be — so that [`poll`](Self::poll), which the shell calls holding the engine's `Core`,
    /// does no cryptography. Each keeps the forwarder's sections as they were after it, and a
    /// pause rewinds the forwarder to the recorded ones, so preparing ahead changes nothing.
    pub fn on_read(&mut self, batch: Vec<(u64, Vec<u8>)>) {
        for (seq, value) in batch {
            let item = prepare(&mut self.forwarder, seq, &value);
            self.batch.push_back(item);
        }
    }

    /// What became of a delivery: passed once the sink has it or refused it, sent again after
    /// a pause when it failed. A delivery of a round the pump left behind is ignored.
    pub fn on_done(&mut self, mut delivery: Delivery, outcome: Outcome) {
        if delivery.round != self.round {
            return;
        }
        let id = delivery.message().map_or(0, |m| m.header.message_id);
        match outcome {
            Outcome::Accepted => {}
            Outcome::Refused(code) => {
                let code = MessageClass::Response(code);
                self.notes.push_back(Step::Warn(format!(
                    "sink {} refused message {id} ({code}): passed",
                    self.spec.url
                )));
            }
            Outcome::Failed(e) => {
                let pause = delivery.backoff.next_pause();
                self.notes.push_back(Step::Warn(format!(
                    "sink {} unreachable ({e}): retrying in {pause:?}",
                    self.spec.url
                )));
                self.retry.push_back((delivery, pause));
                return;
            }
        }
        self.window.complete(delivery.place, delivery.item);
    }

    /// [`Step::Idle`] when there is nothing to deliver at `standing`: paused, or caught up
    /// with nothing read or under way.
    fn rest(&self, standing: Standing) -> Option<Step> {
        match standing {
            Standing::Paused => Some(Step::Idle { arrivals: false }),
            Standing::Run { cursor, next } if cursor >= next && !self.busy() => {
                Some(Step::Idle { arrivals: true })
            }
            Standing::Gone | Standing::Run { .. } => None,
        }
    }

    /// Messages read, prepared or under way.
    fn busy(&self) -> bool {
        !(self.window.is_empty()
            && self.batch.is_empty()
            && self.next.is_none()
            && self.retry.is_empty())
    }

    /// Drops what was read and is under way, and goes back to the sections recorded with the
    /// position (`snapshot`; kept as they are when it does not restore).
    fn interrupt(&mut self, snapshot: &[u8]) {
        self.round = self.round.wrapping_add(1);
        self.window = Window::default();
        self.batch.clear();
        self.next = None;
        self.retry.clear();
        if let Ok(f) = forwarder_at(&self.spec, snapshot) {
            self.forwarder = f;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use std::collections::{BTreeMap, BTreeSet};

    use m2msec_crypto::pre;
    use m2msec_crypto::rng::SeededRng;
    use m2msec_crypto::sig::{SigSuite, SigningKey};
    use m2msec_store::QueueStats;
    use m2msec_wire::relay::Flags;

    use super::*;
    use crate::relay::proxy::pump::{FIRST_BACKOFF, READ_BATCH, WINDOW};
    use crate::relay::proxy::records::{
        CursorRecord, ForwardRecord, StorageCounters, StorageRecord,
    };
    use crate::relay::proxy::state::{ForwardState, SinkState, StorageState};
    use crate::relay::{Source, SourceConfig, SourceSeed};

    const SINK: &str = "udp://127.0.0.1:9";

    /// A proxy holding `n` sealed messages of one stream (a section key every 3) in storage
    /// 1, forwarded by forward 1 to [`SINK`] at `rate`; the pump of that sink.
    fn setup(n: u8, rate: u32) -> (Core, Vec<(u64, Vec<u8>)>, Pump) {
        let mut rng = SeededRng::from_seed_u64(9);
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng).unwrap();
        let verifying = owner.verifying_key();
        let mut config = SourceConfig::new("coap://127.0.0.9/source", 1);
        config.rotate_messages = 3;
        let seed = SourceSeed::generate(&mut rng);
        let mut source = Source::new(config, seed, owner, None, &mut rng).unwrap();
        let now = Millis(1_700_000_000_000);
        let epoch = source.epoch_at(now).unwrap();
        let sink = pre::SecretKey::generate(&mut rng);
        let rekeys = source
            .rekeys_for(&sink.public_key(), epoch..=epoch)
            .unwrap();
        let mut stored = Vec::new();
        for k in 0..n {
            for m in source.seal(now, &[k; 3], &mut rng).unwrap() {
                let seq = u64::try_from(stored.len()).unwrap();
                stored.push((seq, m.encode().unwrap()));
            }
        }
        let mut core: Core = Core::new(1 << 30, 60, 0);
        core.storages.insert(
            1,
            StorageState {
                record: StorageRecord {
                    id: 1,
                    owner_key: String::new(),
                    source: "coap://127.0.0.9/source".into(),
                    capacity: 1 << 30,
                    udp: false,
                    udp_port: None,
                },
                owner: verifying,
                stats: QueueStats {
                    len: stored.len() as u64,
                    bytes: 0,
                    first_seq: Some(0),
                    next_seq: stored.len() as u64,
                },
                pending_bytes: 0,
                counters: StorageCounters::default(),
                counters_dirty: false,
                forwards: BTreeSet::from([1]),
                handles: (),
            },
        );
        let sink_state = SinkState {
            pos: CursorRecord::default(),
            dirty: false,
            handles: (),
            generation: 0,
        };
        core.forwards.insert(
            1,
            ForwardState {
                record: ForwardRecord {
                    id: 1,
                    storage_id: 1,
                    rate,
                    paused: false,
                    sinks: Vec::new(),
                },
                sinks: BTreeMap::from([(SINK.to_owned(), sink_state)]),
                handles: (),
            },
        );
        let spec = PumpSpec {
            forward_id: 1,
            storage_id: 1,
            url: SINK.into(),
            rekeys,
            snapshot: Vec::new(),
            rate,
            generation: 0,
        };
        (core, stored, Pump::new(spec).unwrap())
    }

    fn cursor(core: &Core) -> u64 {
        core.forwards[&1].sinks[SINK].pos.cursor
    }

    /// A shell in miniature: reads from `stored`, finishes deliveries in a pseudo-random
    /// order (xorshift), never waits (time jumps to the slot asked for); what was sent, in
    /// the order it was sent, once the pump is idle.
    fn run(core: &mut Core, stored: &[(u64, Vec<u8>)], pump: &mut Pump) -> Vec<u64> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap()
        };
        let mut now = Duration::ZERO;
        let mut under_way: Vec<Delivery> = Vec::new();
        let mut sent = Vec::new();
        loop {
            match pump.poll(core, now, Millis(0)) {
                Step::Read(from) => pump.on_read(
                    stored
                        .iter()
                        .filter(|(seq, _)| *seq >= from)
                        .take(READ_BATCH)
                        .cloned()
                        .collect(),
                ),
                Step::Send(d, pause) => {
                    assert_eq!(pause, Duration::ZERO);
                    let management = d
                        .message()
                        .unwrap()
                        .header
                        .flags
                        .contains(Flags::MANAGEMENT);
                    assert!(
                        !management || under_way.is_empty(),
                        "a section key goes alone"
                    );
                    assert!(under_way.len() < WINDOW);
                    sent.push(d.item.seq);
                    under_way.push(d);
                }
                Step::Settle => {
                    assert!(!under_way.is_empty(), "only a delivery under way settles");
                    let d = under_way.swap_remove(random(under_way.len()));
                    pump.on_done(d, Outcome::Accepted);
                }
                Step::Wait(at) => {
                    assert!(at > now);
                    now = at;
                }
                Step::Skipped { .. } | Step::Warn(_) => {}
                Step::Idle { arrivals } => {
                    assert!(arrivals && under_way.is_empty());
                    assert_eq!(pump.idle(core), Some(true));
                    return sent;
                }
                step @ (Step::Gone | Step::Interrupted) => panic!("{step:?}"),
            }
        }
    }

    #[test]
    fn a_pump_delivers_everything_and_its_position_follows_in_order() {
        let (mut core, stored, mut pump) = setup(100, 0);
        assert!(stored.len() > READ_BATCH, "more than one read");
        let sent = run(&mut core, &stored, &mut pump);
        assert_eq!(sent, (0..stored.len() as u64).collect::<Vec<_>>());
        let pos = &core.forwards[&1].sinks[SINK].pos;
        assert_eq!(pos.cursor, stored.len() as u64);
        assert_eq!(pos.delivered, stored.len() as u64);
        assert!(pos.reencrypted > 0 && !pos.snapshot.is_empty());
    }

    #[test]
    fn pacing_waits_only_for_a_slot_still_to_come() {
        let (mut core, stored, mut pump) = setup(2, 4);
        let ms = Duration::from_millis;
        assert!(matches!(
            pump.poll(&mut core, ms(0), Millis(0)),
            Step::Read(0)
        ));
        pump.on_read(stored);
        let Step::Send(first, _) = pump.poll(&mut core, ms(0), Millis(0)) else {
            panic!("the first slot is now");
        };
        pump.on_done(first, Outcome::Accepted);
        assert!(matches!(pump.poll(&mut core, ms(10), Millis(0)), Step::Wait(at) if at == ms(250)));
        assert!(
            matches!(pump.poll(&mut core, ms(100), Millis(0)), Step::Wait(at) if at == ms(250))
        );
        assert!(matches!(
            pump.poll(&mut core, ms(250), Millis(0)),
            Step::Send(..)
        ));
        // Unlimited: never a wait, even at one instant.
        let (mut core, stored, mut pump) = setup(3, 0);
        assert!(matches!(
            pump.poll(&mut core, ms(0), Millis(0)),
            Step::Read(0)
        ));
        pump.on_read(stored.clone());
        let mut sends = 0;
        loop {
            match pump.poll(&mut core, ms(0), Millis(0)) {
                Step::Send(d, _) => {
                    sends += 1;
                    pump.on_done(d, Outcome::Accepted);
                }
                Step::Skipped { .. } => {}
                Step::Idle { .. } => break,
                step => panic!("{step:?}"),
            }
        }
        assert_eq!(sends, stored.len());
    }

    #[test]
    fn a_failed_delivery_is_sent_again_with_back_off_and_a_refusal_is_passed() {
        let (mut core, stored, mut pump) = setup(1, 0);
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Read(0)
        ));
        pump.on_read(stored[..1].to_vec());
        let Step::Send(d, _) = pump.poll(&mut core, Duration::ZERO, Millis(0)) else {
            panic!("sent");
        };
        pump.on_done(d, Outcome::Failed("timeout".into()));
        let Step::Warn(w) = pump.poll(&mut core, Duration::ZERO, Millis(0)) else {
            panic!("logged");
        };
        assert!(
            w.contains("unreachable (timeout): retrying in 200ms"),
            "{w}"
        );
        let Step::Send(d, pause) = pump.poll(&mut core, Duration::ZERO, Millis(0)) else {
            panic!("sent again");
        };
        assert_eq!(pause, FIRST_BACKOFF);
        pump.on_done(d, Outcome::Failed("timeout".into()));
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Warn(_)
        ));
        let Step::Send(d, pause) = pump.poll(&mut core, Duration::ZERO, Millis(0)) else {
            panic!("sent again");
        };
        assert_eq!(pause, FIRST_BACKOFF * 2, "doubled");
        assert_eq!(cursor(&core), 0, "nothing is skipped for lack of an answer");
        pump.on_done(d, Outcome::Refused(ResponseType::BadRequest));
        let Step::Warn(w) = pump.poll(&mut core, Duration::ZERO, Millis(0)) else {
            panic!("logged");
        };
        assert!(
            w.contains("refused message") && w.contains("(4.00): passed"),
            "{w}"
        );
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Read(1)
        ));
        assert_eq!(cursor(&core), 1);
    }

    #[test]
    fn a_sinks_answer_says_delivered_refused_or_again() {
        use m2msec_wire::relay::coap::coap_lite::RequestType;
        let answer = |code| Outcome::of_answer(MessageClass::Response(code));
        assert_eq!(answer(ResponseType::Changed), Outcome::Accepted);
        assert_eq!(answer(ResponseType::Created), Outcome::Accepted);
        assert_eq!(
            answer(ResponseType::Forbidden),
            Outcome::Refused(ResponseType::Forbidden)
        );
        assert_eq!(
            answer(ResponseType::ServiceUnavailable),
            Outcome::Failed("sink answered 5.03".into())
        );
        assert_eq!(
            Outcome::of_answer(MessageClass::Request(RequestType::Post)),
            Outcome::Failed("sink answered with a non-response".into())
        );
    }

    #[test]
    fn a_pause_drops_what_is_under_way_and_a_removed_sink_ends_the_pump() {
        let (mut core, stored, mut pump) = setup(3, 0);
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Read(0)
        ));
        pump.on_read(stored);
        let Step::Send(first, _) = pump.poll(&mut core, Duration::ZERO, Millis(0)) else {
            panic!("sent");
        };
        core.forwards.get_mut(&1).unwrap().record.paused = true;
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Interrupted
        ));
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Idle { arrivals: false }
        ));
        assert_eq!(pump.idle(&core), Some(false));
        // A delivery of before the pause changes nothing.
        pump.on_done(first, Outcome::Accepted);
        assert_eq!(pump.idle(&core), Some(false));
        core.forwards.get_mut(&1).unwrap().record.paused = false;
        assert_eq!(pump.idle(&core), None);
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Read(0)
        ));
        assert_eq!(cursor(&core), 0);
        assert!(core.pump_handles(&pump.spec).is_some());
        assert!(core.sink_mut(&pump.spec).is_some());
        core.forwards.get_mut(&1).unwrap().sinks.clear();
        assert!(core.sink_mut(&pump.spec).is_none(), "removed");
        assert!(matches!(
            pump.poll(&mut core, Duration::ZERO, Millis(0)),
            Step::Gone
        ));
    }
}
