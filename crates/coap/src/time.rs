//! Durations between two readings of the driver's clock.

use core::time::Duration;

use m2msec_protocol::Millis;

/// How long from `since` to `now`; zero if the clock went backwards.
pub(crate) fn elapsed(since: Millis, now: Millis) -> Duration {
    Duration::from_millis(now.0.saturating_sub(since.0))
}
