//! Posting a request again until the server takes it: a busy server answers 5.03 Service
//! Unavailable with a Max-Age (RFC 7252 §5.9.3, §5.10.5: 60 s when absent), after which the
//! request may be sent again; one that stays silent past the client's retransmissions is
//! posted again too, for as long as a late copy is still harmless. The decisions only: the
//! caller sleeps and sends.

use core::time::Duration;

use m2msec_wire::relay::coap::coap_lite::{CoapOption, Packet};

use crate::options::uint_option;

/// Max-Age of a 5.03 without one (RFC 7252 §5.10.5).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// One request posted until it is taken: how long it was refused or unanswered, and whether
/// to go on.
#[derive(Clone, Copy, Debug)]
pub struct Repost {
    patience: Duration,
    silence_limit: Duration,
    busy: u32,
    waited: Duration,
    unanswered: Duration,
}

impl Repost {
    /// Gives up once the waits add up to more than `patience`, or the silences alone to more
    /// than `silence_limit`.
    #[must_use]
    pub fn new(patience: Duration, silence_limit: Duration) -> Self {
        Self {
            patience,
            silence_limit,
            busy: 0,
            waited: Duration::ZERO,
            unanswered: Duration::ZERO,
        }
    }

    /// A 5.03 `answer`: how long to wait before posting again (its Max-Age), or `None` when
    /// that wait would exceed the patience.
    pub fn busy(&mut self, answer: &Packet) -> Option<Duration> {
        let age = uint_option(answer, CoapOption::MaxAge)
            .map_or(DEFAULT_MAX_AGE, |s| Duration::from_secs(u64::from(s)));
        self.busy = self.busy.saturating_add(1);
        let waited = self.waited.saturating_add(age);
        if waited > self.patience {
            return None;
        }
        self.waited = waited;
        Some(age)
    }

    /// An exchange that went unanswered for `elapsed` (the client's retransmissions
    /// exhausted): whether to post again.
    pub fn unanswered(&mut self, elapsed: Duration) -> bool {
        self.waited = self.waited.saturating_add(elapsed);
        self.unanswered = self.unanswered.saturating_add(elapsed);
        self.waited <= self.patience && self.unanswered <= self.silence_limit
    }

    /// The 5.03 answers met and the time waited.
    #[must_use]
    pub fn spent(&self) -> (u32, Duration) {
        (self.busy, self.waited)
    }
}

#[cfg(test)]
mod tests {
    use m2msec_wire::relay::coap::coap_lite::{MessageClass, ResponseType};

    use super::*;
    use crate::options::set_uint_option;

    fn busy(max_age: Option<u32>) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Response(ResponseType::ServiceUnavailable);
        if let Some(s) = max_age {
            set_uint_option(&mut p, CoapOption::MaxAge, s);
        }
        p
    }

    #[test]
    fn waits_each_max_age_until_the_patience_is_spent() {
        let mut r = Repost::new(Duration::from_secs(62), Duration::from_secs(240));
        assert_eq!(r.busy(&busy(Some(1))), Some(Duration::from_secs(1)));
        // No Max-Age: 60 s.
        assert_eq!(r.busy(&busy(None)), Some(DEFAULT_MAX_AGE));
        // 61 s waited: 2 more would pass the patience.
        assert_eq!(r.busy(&busy(Some(2))), None);
        assert_eq!(r.spent(), (3, Duration::from_secs(61)));
    }

    #[test]
    fn silences_count_against_both_limits() {
        let mut r = Repost::new(Duration::from_secs(600), Duration::from_secs(240));
        assert!(r.unanswered(Duration::from_secs(93)));
        assert!(r.unanswered(Duration::from_secs(93)));
        assert!(!r.unanswered(Duration::from_secs(93)), "279 s unanswered");
        let mut r = Repost::new(Duration::from_secs(100), Duration::from_secs(240));
        assert_eq!(r.busy(&busy(Some(60))), Some(Duration::from_secs(60)));
        assert!(
            !r.unanswered(Duration::from_secs(41)),
            "101 s waited in all"
        );
        assert_eq!(r.spent(), (1, Duration::from_secs(101)));
    }
}
