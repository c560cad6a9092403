//! Counters behind `load`, `throughput` and `info`: one slot per second over the longest window,
//! so any window up to it is a sum of slots and memory stays fixed.

use std::collections::VecDeque;

/// What happened in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Messages stored (duplicates excluded).
    pub messages_in: u64,
    /// Bytes of the messages stored.
    pub bytes_in: u64,
    /// Messages delivered to a sink (each sink counts).
    pub messages_out: u64,
    /// Bytes delivered.
    pub bytes_out: u64,
    /// Messages refused because a storage, the proxy or the ingest queue was full.
    pub rejected_full: u64,
    /// Microseconds of CPU time the proxy's process used (all its threads), as its shell
    /// measured them.
    pub cpu_us: u64,
}

impl Slot {
    fn add(&mut self, other: &Self) {
        self.messages_in = self.messages_in.saturating_add(other.messages_in);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.messages_out = self.messages_out.saturating_add(other.messages_out);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.rejected_full = self.rejected_full.saturating_add(other.rejected_full);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
    }

    /// Percent of one core the proxy used over `window_s` seconds (above 100 on several).
    #[must_use]
    pub fn cpu_percent(&self, window_s: u32) -> u32 {
        let window_us = u64::from(window_s.max(1)).saturating_mul(1_000_000);
        u32::try_from(self.cpu_us.saturating_mul(100) / window_us).unwrap_or(u32::MAX)
    }

    /// The rate at which the proxy forwards, in bits per second of its CPU time: what it
    /// delivered divided by the processing it took (the paper's throughput, 004 Fig. 7), so the
    /// rate it could sustain were its processor given to forwarding; 0 before it has forwarded
    /// anything. A lower bound: the CPU time includes storing what came in.
    #[must_use]
    pub fn capacity_bps(&self) -> u64 {
        if self.cpu_us == 0 {
            return 0;
        }
        let bits = u128::from(self.bytes_out) * 8 * 1_000_000;
        u64::try_from(bits / u128::from(self.cpu_us)).unwrap_or(u64::MAX)
    }
}

/// Per-second slots over the last `max_window_s` seconds.
#[derive(Debug)]
pub struct Metrics {
    /// The second of the front slot (newest), in the clock's seconds.
    newest: u64,
    /// Newest first.
    slots: VecDeque<Slot>,
    max_window_s: u32,
}

impl Metrics {
    /// Counters over at most `max_window_s` seconds (at least 1).
    pub fn new(max_window_s: u32, now_s: u64) -> Self {
        let max_window_s = max_window_s.max(1);
        let mut slots = VecDeque::with_capacity(usize::try_from(max_window_s).unwrap_or(1));
        slots.push_front(Slot::default());
        Self {
            newest: now_s,
            slots,
            max_window_s,
        }
    }

    /// Moves the newest slot to `now_s`, dropping slots that left the longest window. A clock
    /// going backwards keeps counting into the newest slot.
    fn advance(&mut self, now_s: u64) {
        if now_s <= self.newest {
            return;
        }
        let cap = u64::from(self.max_window_s);
        let gap = (now_s - self.newest).min(cap);
        for _ in 0..gap {
            self.slots.push_front(Slot::default());
        }
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        self.slots.truncate(cap);
        self.newest = now_s;
    }

    /// Adds `delta` to the slot of second `now_s`.
    pub fn record(&mut self, now_s: u64, delta: Slot) {
        self.advance(now_s);
        if let Some(front) = self.slots.front_mut() {
            front.add(&delta);
        }
    }

    /// The sum of the last `window_s` seconds (the current one included), `window_s` clamped
    /// to 1..=max.
    pub fn sum(&mut self, now_s: u64, window_s: u32) -> Slot {
        self.advance(now_s);
        let n = usize::try_from(window_s.clamp(1, self.max_window_s)).unwrap_or(usize::MAX);
        let mut total = Slot::default();
        for slot in self.slots.iter().take(n) {
            total.add(slot);
        }
        total
    }
}

/// Bits per second of `bytes` over `window_s` seconds.
pub fn bits_per_second(bytes: u64, window_s: u32) -> u64 {
    bytes.saturating_mul(8) / u64::from(window_s.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(n: u64) -> Slot {
        Slot {
            messages_in: n,
            bytes_in: n * 10,
            ..Slot::default()
        }
    }

    #[test]
    fn windows_sum_the_right_seconds() {
        let mut m = Metrics::new(5, 100);
        m.record(100, msgs(1));
        m.record(101, msgs(2));
        m.record(103, msgs(4));
        assert_eq!(m.sum(103, 1).messages_in, 4);
        assert_eq!(m.sum(103, 3).messages_in, 6);
        assert_eq!(m.sum(103, 60).messages_in, 7); // clamped to 5
        // Seconds slide out of the window.
        assert_eq!(m.sum(105, 5).messages_in, 6);
        assert_eq!(m.sum(200, 5).messages_in, 0);
        // A clock going back counts into the newest slot.
        m.record(150, msgs(8));
        assert_eq!(m.sum(200, 1).messages_in, 8);
        assert_eq!(m.slots.len(), 5);
    }

    #[test]
    fn cpu_load_and_forwarding_capacity() {
        let mut m = Metrics::new(60, 0);
        let used = |cpu_us, bytes_out| Slot {
            cpu_us,
            bytes_out,
            ..Slot::default()
        };
        m.record(0, used(250_000, 0));
        m.record(1, used(750_000, 1_000_000));
        let sum = m.sum(1, 2);
        // 1 s of CPU in 2 s: half a core.
        assert_eq!(sum.cpu_percent(2), 50);
        // 1 MB delivered in 1 s of CPU: 8 Mbit/s.
        assert_eq!(sum.capacity_bps(), 8_000_000);
        assert_eq!(Slot::default().capacity_bps(), 0);
        assert_eq!(used(3_000_000, 0).cpu_percent(1), 300);
    }

    #[test]
    fn throughput_in_bits() {
        assert_eq!(bits_per_second(1000, 2), 4000);
        assert_eq!(bits_per_second(u64::MAX, 0), u64::MAX);
    }
}
