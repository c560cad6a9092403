//! Rate-limited warnings about input from the network: a flood of bad datagrams must not flood
//! the log, and none goes uncounted.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// At most this many warnings per second about one kind of bad input; the rest are counted and
/// summarised.
pub const WARNINGS_PER_SECOND: u32 = 5;

/// Logs at most [`WARNINGS_PER_SECOND`] warnings a second about one kind of input, then how
/// many it did not log; counts every one.
#[derive(Debug)]
pub struct LogLimit {
    what: &'static str,
    window: Instant,
    in_window: u32,
    suppressed: u64,
    total: u64,
}

impl LogLimit {
    /// The log of `what` ("coap", "udp ingestion", "rejected message"…).
    #[must_use]
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            window: Instant::now(),
            in_window: 0,
            suppressed: 0,
            total: 0,
        }
    }

    /// Every warning so far, logged or not.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counts `detail` about `peer`, and logs it unless this second's budget is spent.
    pub fn warn(&mut self, peer: impl Display, detail: &dyn Display) {
        self.total += 1;
        let now = Instant::now();
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(
                    what = self.what,
                    suppressed = self.suppressed,
                    total = self.total,
                    "more of the same not logged"
                );
            }
            self.window = now;
            self.in_window = 0;
            self.suppressed = 0;
        }
        if self.in_window < WARNINGS_PER_SECOND {
            self.in_window += 1;
            tracing::warn!(what = self.what, %peer, total = self.total, "{detail}");
        } else {
            self.suppressed += 1;
        }
    }
}
