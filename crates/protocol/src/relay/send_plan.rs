//! The source's sending rules, sans-IO: [`Sending`] is told what was sealed and what the proxy
//! acknowledged, and says what to do next ([`Step`]); the node's `send_stream` only seals, posts,
//! sends datagrams and waits, as told.
//!
//! **Ordering.** The proxy forwards a section's data to a sink only after it re-encrypted the
//! section's management message for that sink, in storage order. So a management message is
//! posted alone, once everything before it was acknowledged, and acknowledged (durable) before
//! any data of its section leaves; data messages of a section then travel concurrently (up to
//! [`SendOptions::window`]) over CoAP or, with [`SendOptions::udp`], as plain datagrams.

use std::collections::VecDeque;
use std::time::Duration;

use m2msec_wire::relay::api::SinkGrant;
use m2msec_wire::relay::coap::coap_lite::{MessageClass, Packet, ResponseType};
use m2msec_wire::relay::{Flags, RelayMessage};

use super::StreamPosition;

/// Messages sealed (and their position persisted) at a time.
pub const SEAL_BATCH: usize = 32;

/// UDP datagrams sent between two short breaths (`breathe` in [`Step::Datagram`]).
const DATAGRAMS_PER_BREATH: u64 = 64;

/// How the source delivers.
#[derive(Clone, Copy, Debug)]
pub struct SendOptions {
    /// Data messages as plain UDP datagrams to the storage's UDP port (management messages
    /// still over CoAP, acknowledged before their section's data).
    pub udp: bool,
    /// CoAP data messages in flight at a time (at most the client's NSTART is useful).
    pub window: usize,
    /// How long one message may be refused with 5.03 before the run gives up.
    pub patience: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            udp: false,
            window: 16,
            patience: Duration::from_secs(600),
        }
    }
}

/// What a run of [`Sending`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SendReport {
    /// Data messages sent (one per payload).
    pub data: u64,
    /// Management messages sent (one per section).
    pub management: u64,
    /// Data bytes (plaintext) sent.
    pub data_bytes: u64,
    /// Messages the proxy acknowledged (CoAP); UDP datagrams are not acknowledged.
    pub acknowledged: u64,
    /// Data messages sent as plain UDP datagrams.
    pub udp_datagrams: u64,
    /// 5.03 answers met (each followed by a wait of its Max-Age).
    pub busy: u64,
    /// Milliseconds waited because of them.
    pub waited_ms: u64,
    /// Milliseconds from the first seal to the last acknowledgement.
    pub elapsed_ms: u64,
    /// The stream's next message id after the run (persisted).
    pub next_message_id: u32,
    /// The key index the next section will use (persisted).
    pub next_key_index: u16,
}

/// What the shell does next.
#[derive(Debug)]
pub enum Step {
    /// Seal at most this many more payloads and hand them to [`Sending::sealed`] (none left:
    /// an empty batch).
    Seal(usize),
    /// Post this message over CoAP (until stored) and report its acknowledgement.
    Post(RelayMessage),
    /// Send this data message as a plain UDP datagram; no acknowledgement follows.
    Datagram {
        /// The message.
        msg: RelayMessage,
        /// Pause a millisecond after it: the proxy's ingestion queue is bounded, and what
        /// overflows it is dropped (and counted) there.
        breathe: bool,
    },
    /// Wait for an acknowledgement of a post in flight.
    Wait,
    /// Everything was sent and acknowledged.
    Done,
}

/// The sending rules of one run: a queue of sealed messages and the posts in flight.
#[derive(Debug)]
pub struct Sending {
    opts: SendOptions,
    queue: VecDeque<RelayMessage>,
    in_flight: usize,
    /// A management message is in flight: nothing else leaves until it is acknowledged.
    management_in_flight: bool,
    input_ended: bool,
    report: SendReport,
}

impl Sending {
    /// A run delivering as `opts` says.
    #[must_use]
    pub fn new(opts: SendOptions) -> Self {
        Self {
            opts,
            queue: VecDeque::new(),
            in_flight: 0,
            management_in_flight: false,
            input_ended: false,
            report: SendReport::default(),
        }
    }

    /// The next step. A [`Step::Post`] or [`Step::Wait`] must be answered with
    /// [`Sending::acknowledged`], a [`Step::Seal`] with [`Sending::sealed`].
    pub fn poll(&mut self) -> Step {
        if self.management_in_flight {
            return Step::Wait;
        }
        let Some(front) = self.queue.front() else {
            return match (self.input_ended, self.in_flight) {
                (false, _) => Step::Seal(SEAL_BATCH),
                (true, 0) => Step::Done,
                (true, _) => Step::Wait,
            };
        };
        let management = front.header.flags.contains(Flags::MANAGEMENT);
        if management && self.in_flight > 0
            || !management && !self.opts.udp && self.in_flight >= self.opts.window.max(1)
        {
            return Step::Wait;
        }
        let Some(msg) = self.queue.pop_front() else {
            return Step::Wait;
        };
        if !management && self.opts.udp {
            self.report.udp_datagrams += 1;
            let breathe = self.report.udp_datagrams % DATAGRAMS_PER_BREATH == 0;
            return Step::Datagram { msg, breathe };
        }
        self.in_flight += 1;
        self.management_in_flight = management;
        Step::Post(msg)
    }

    /// `messages` were sealed from `payloads` (their position durable): they are sent next, in
    /// order. An empty batch ends the input.
    pub fn sealed(&mut self, payloads: &[Vec<u8>], messages: Vec<RelayMessage>) {
        self.input_ended |= payloads.is_empty();
        self.report.data += payloads.len() as u64;
        self.report.data_bytes += payloads.iter().map(|p| p.len() as u64).sum::<u64>();
        self.queue.extend(messages);
    }

    /// One post in flight was acknowledged, after `busy` 5.03 answers and a wait of `waited`.
    pub fn acknowledged(&mut self, (busy, waited): (u32, Duration)) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if core::mem::take(&mut self.management_in_flight) {
            self.report.management += 1;
        }
        self.report.acknowledged += 1;
        self.report.busy += u64::from(busy);
        self.report.waited_ms += millis(waited);
    }

    /// The report so far (for progress output).
    #[must_use]
    pub fn report(&self) -> &SendReport {
        &self.report
    }

    /// The report of the run, which took `elapsed` and left the stream at `position`.
    #[must_use]
    pub fn finish(self, elapsed: Duration, position: &StreamPosition) -> SendReport {
        SendReport {
            elapsed_ms: millis(elapsed),
            next_message_id: position.next_message_id(),
            next_key_index: position.next_key_index(),
            ..self.report
        }
    }
}

/// What a refusal from the proxy means: its code, what that code says of this request, and the
/// proxy's diagnostic payload when it is printable text.
#[must_use]
pub fn refusal(p: &Packet) -> String {
    let diagnostic = String::from_utf8(p.payload.clone())
        .ok()
        .filter(|t| !t.is_empty() && t.chars().all(|c| !c.is_control()));
    let meaning = match p.header.code {
        MessageClass::Response(code) => Some(code),
        _ => None,
    };
    let meaning = match meaning {
        Some(ResponseType::Unauthorized) => " (the proxy refused the owner signature)",
        Some(ResponseType::Forbidden) => " (the owner key does not own this storage)",
        Some(ResponseType::NotFound) => " (no such resource on the proxy)",
        Some(ResponseType::BadRequest) => " (the proxy could not parse the request)",
        Some(ResponseType::RequestEntityTooLarge) => " (message too large for the proxy)",
        _ => "",
    };
    match diagnostic {
        Some(d) => format!("{}{meaning}: {d}", p.header.code),
        None => format!("{}{meaning}", p.header.code),
    }
}

/// The URL and first and last epoch of a grant, as a forward record keeps it.
#[must_use]
pub fn grant_summary(g: &SinkGrant) -> (String, u32, u32) {
    let first = g.rekeys.iter().map(|r| r.epoch).min().unwrap_or(0);
    let last = g.rekeys.iter().map(|r| r.epoch).max().unwrap_or(0);
    (g.url.clone(), first, last)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::rng::SeededRng;
    use m2msec_crypto::sig::{SigSuite, SigningKey};

    use super::*;
    use crate::Millis;
    use crate::relay::{Source, SourceConfig, SourceSeed};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// `n` one-byte payloads sealed by a source rotating every `rotate` messages, and the
    /// source's position after them.
    fn sealed(n: u8, rotate: u32) -> Result<Sealed, Box<dyn std::error::Error>> {
        let mut rng = SeededRng::from_seed_u64(9);
        let mut config = SourceConfig::new("coap://127.0.0.9/source", 1);
        config.rotate_messages = rotate;
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng)?;
        let mut source = Source::new(config, SourceSeed::new([7; 32]), owner, None, &mut rng)?;
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| vec![i]).collect();
        let mut out = Vec::new();
        for p in &payloads {
            out.extend(source.seal(Millis(1_000), p, &mut rng)?);
        }
        Ok((payloads, out, source.position()))
    }

    type Sealed = (Vec<Vec<u8>>, Vec<RelayMessage>, StreamPosition);

    /// Runs `plan` over one batch, acknowledging whenever it waits; the steps as letters:
    /// `S` seal, `M`/`D` a management/data post, `u`/`b` a datagram (`b`: then a breath), `w`
    /// a wait.
    fn trace(plan: &mut Sending, payloads: &[Vec<u8>], messages: Vec<RelayMessage>) -> String {
        let mut batch = Some((payloads, messages));
        let mut out = String::new();
        loop {
            match plan.poll() {
                Step::Seal(max) => {
                    assert_eq!(max, SEAL_BATCH);
                    out.push('S');
                    let (p, m) = batch.take().unwrap_or((&[], Vec::new()));
                    plan.sealed(p, m);
                }
                Step::Post(msg) if msg.header.flags.contains(Flags::MANAGEMENT) => out.push('M'),
                Step::Post(_) => out.push('D'),
                Step::Datagram { breathe, .. } => out.push(if breathe { 'b' } else { 'u' }),
                Step::Wait => {
                    out.push('w');
                    plan.acknowledged((1, Duration::from_millis(2)));
                }
                Step::Done => return out,
            }
        }
    }

    /// A management message leaves alone, after everything before it was acknowledged, and
    /// is acknowledged before its section's data; data travels up to the window.
    #[test]
    fn management_alone_then_data_up_to_the_window() -> TestResult {
        let (payloads, messages, _) = sealed(5, 3)?;
        let opts = SendOptions {
            window: 2,
            ..SendOptions::default()
        };
        let mut plan = Sending::new(opts);
        assert_eq!(trace(&mut plan, &payloads, messages), "SMwDDwDwwMwDDSww");
        let report = plan.report();
        assert_eq!((report.data, report.data_bytes), (5, 5));
        assert_eq!((report.management, report.acknowledged), (2, 7));
        assert_eq!((report.busy, report.waited_ms), (7, 14));
        assert_eq!(report.udp_datagrams, 0);
        Ok(())
    }

    /// Over UDP only management messages are posted (and acknowledged); the data goes as
    /// datagrams with a breath after every 64th.
    #[test]
    fn udp_data_as_datagrams_with_a_breath_every_64() -> TestResult {
        let (payloads, messages, position) = sealed(130, 1000)?;
        let opts = SendOptions {
            udp: true,
            ..SendOptions::default()
        };
        let mut plan = Sending::new(opts);
        let steps = trace(&mut plan, &payloads, messages);
        let expected = format!("SMw{}b{}buuS", "u".repeat(63), "u".repeat(63));
        assert_eq!(steps, expected);
        let report = plan.finish(Duration::from_millis(7), &position);
        assert_eq!(report.next_message_id, position.next_message_id());
        assert_eq!(
            (report.udp_datagrams, report.acknowledged, report.management),
            (130, 1, 1)
        );
        assert_eq!(report.elapsed_ms, 7);
        Ok(())
    }

    /// Nothing to send: one empty seal, then done.
    #[test]
    fn no_payloads_is_done_at_once() {
        let mut plan = Sending::new(SendOptions::default());
        assert_eq!(trace(&mut plan, &[], Vec::new()), "S");
        assert_eq!(plan.report(), &SendReport::default());
    }

    /// A refusal names the code, what it means for a source, and a printable diagnostic.
    #[test]
    fn a_refusal_says_what_its_code_means() {
        let mut p = Packet::new();
        p.header.code = MessageClass::Response(ResponseType::Forbidden);
        let plain = refusal(&p);
        assert!(
            plain.ends_with(" (the owner key does not own this storage)"),
            "{plain}"
        );
        p.payload = b"not the owner".to_vec();
        assert_eq!(refusal(&p), format!("{plain}: not the owner"));
        p.payload = vec![0x07];
        assert_eq!(refusal(&p), plain);
    }
}
