//! The schedule of a device daemon that runs key establishments one after another (the collab
//! client, the MIKEY initiator, an E2SEC party that initiates): when the next run starts, when
//! a failed one is tried again, and how each ended. Time is passed in; the daemon's handler
//! starts what this says is due.

use core::time::Duration;

use crate::Millis;

/// How many key establishments a daemon runs, and how far apart.
#[derive(Clone, Copy, Debug)]
pub struct Runs {
    /// Number of runs (at least 1).
    pub count: u32,
    /// Tries per establishment before it counts as failed (at least 1; see [`Retries`]).
    pub attempts: u32,
    /// Pause between the end of one run and the start of the next.
    pub interval: Duration,
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            count: 1,
            attempts: 1,
            interval: Duration::from_secs(1),
        }
    }
}

/// How one key establishment of a device ended: its summary, or the typed error of the run
/// `id` names (a collab session, a MIKEY CSB id, an E2SEC peer).
#[derive(Debug)]
pub enum Outcome<S, Id, E> {
    /// A key was established.
    Established(S),
    /// The run failed with a typed error.
    Failed {
        /// The run.
        id: Id,
        /// The error.
        error: E,
    },
}

impl<S, Id, E: core::fmt::Display> Outcome<S, Id, E> {
    /// Whether a key was established.
    #[must_use]
    pub fn is_established(&self) -> bool {
        matches!(self, Self::Established(_))
    }

    /// The summary, or why the run failed.
    ///
    /// # Errors
    ///
    /// The run's error, as text.
    pub fn into_result(self) -> Result<S, String> {
        match self {
            Self::Established(s) => Ok(s),
            Self::Failed { error, .. } => Err(error.to_string()),
        }
    }
}

/// The tries of one key establishment: a failed one — a timeout on a bad link, a refusal by a
/// peer that was not ready — is started again after a backoff (0.5 s, doubled each time),
/// until `attempts` tries have failed; only then does the failure count.
#[derive(Clone, Copy, Debug)]
pub struct Retries {
    attempts: u32,
    failed: u32,
}

impl Retries {
    /// Wait before the first try again.
    const BACKOFF: Duration = Duration::from_millis(500);

    /// `attempts` tries in all (at least 1).
    #[must_use]
    pub fn new(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            failed: 0,
        }
    }

    /// A try failed at `now`: when to start the next one, or `None` when none is left.
    pub fn again(&mut self, now: Millis) -> Option<Millis> {
        self.failed += 1;
        if self.failed >= self.attempts {
            self.failed = 0;
            return None;
        }
        Some(now.after(Self::BACKOFF * (1u32 << (self.failed - 1).min(8))))
    }

    /// The establishment ended (established, or out of tries): the next one starts afresh.
    pub fn reset(&mut self) {
        self.failed = 0;
    }
}

/// What the end of a run means for the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRun {
    /// The run failed and is tried again: this is try `attempt` of `of`.
    Retry {
        /// The coming try, from 2.
        attempt: u32,
        /// Tries in all.
        of: u32,
    },
    /// The run counted; the next starts after the interval.
    Next,
    /// The run counted and was the last.
    Done,
}

/// Where a daemon is in its [`Runs`] (when to start the next run, or the failed one again)
/// and the outcomes so far.
#[derive(Debug)]
pub struct RunLog<O> {
    runs: Runs,
    started: u32,
    next_start: Option<Millis>,
    retries: Retries,
    /// Whether `next_start` tries the last establishment again (it does not count as a run).
    retrying: bool,
    outcomes: Vec<O>,
}

impl<O> RunLog<O> {
    /// The log of `runs`, the first of which is already started.
    #[must_use]
    pub fn new(runs: Runs) -> Self {
        Self {
            runs,
            started: 1,
            next_start: None,
            retries: Retries::new(runs.attempts),
            retrying: false,
            outcomes: Vec::new(),
        }
    }

    /// The log of `runs`, none started yet: the first starts after [`Self::resume`].
    #[must_use]
    pub fn waiting(runs: Runs) -> Self {
        Self {
            started: 0,
            ..Self::new(runs)
        }
    }

    /// Runs started so far, from 1 (a try again is part of its run).
    #[must_use]
    pub const fn started(&self) -> u32 {
        self.started
    }

    /// Sets the next run, if one is left and none is set, to start at `now`; the caller knows
    /// none is under way.
    pub fn resume(&mut self, now: Millis) {
        let left = self.retrying || self.started < self.runs.count.max(1);
        if left && self.next_start.is_none() {
            self.next_start = Some(now);
        }
    }

    /// The run that is due cannot start yet: it waits for [`Self::resume`].
    pub fn defer(&mut self) {
        self.next_start = None;
    }

    /// A run ended (with a key, or failed for good) and counts: the daemon stops after the
    /// last run, else starts the next after the interval.
    pub fn established(&mut self, now: Millis, outcome: O) -> AfterRun {
        self.outcomes.push(outcome);
        self.retries.reset();
        if self.started >= self.runs.count.max(1) {
            return AfterRun::Done;
        }
        self.next_start = Some(now.after(self.runs.interval));
        AfterRun::Next
    }

    /// A run failed: it is tried again after a backoff while tries are left; only then does
    /// `outcome` count.
    pub fn failed(&mut self, now: Millis, outcome: O) -> AfterRun {
        if let Some(at) = self.retries.again(now) {
            self.next_start = Some(at);
            self.retrying = true;
            return AfterRun::Retry {
                attempt: self.retries.failed + 1,
                of: self.retries.attempts,
            };
        }
        self.established(now, outcome)
    }

    /// When the next run, or the next try, starts.
    #[must_use]
    pub fn next_start(&self) -> Option<Millis> {
        self.next_start
    }

    /// That time has come: the caller starts the run now.
    pub fn start(&mut self) {
        self.next_start = None;
        if !core::mem::take(&mut self.retrying) {
            self.started += 1;
        }
    }

    /// The runs' results.
    #[must_use]
    pub fn into_outcomes(self) -> Vec<O> {
        self.outcomes
    }
}

impl<S, Id, E> RunLog<Outcome<S, Id, E>> {
    /// A run ended with `outcome`: counted if it established a key, tried again while tries
    /// are left if it failed ([`Self::established`], [`Self::failed`]).
    pub fn ended(&mut self, now: Millis, outcome: Outcome<S, Id, E>) -> AfterRun {
        if matches!(outcome, Outcome::Established(_)) {
            self.established(now, outcome)
        } else {
            self.failed(now, outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = RunLog<Outcome<(), u32, &'static str>>;

    fn failed() -> Outcome<(), u32, &'static str> {
        Outcome::Failed {
            id: 7,
            error: "timed out",
        }
    }

    #[test]
    fn runs_start_after_the_interval_and_stop_after_the_last() {
        let runs = Runs {
            count: 2,
            attempts: 1,
            interval: Duration::from_secs(1),
        };
        let mut log = Log::new(runs);
        assert_eq!(log.started(), 1);
        assert_eq!(
            log.ended(Millis(100), Outcome::Established(())),
            AfterRun::Next
        );
        assert_eq!(log.next_start(), Some(Millis(1_100)));
        log.start();
        assert_eq!((log.started(), log.next_start()), (2, None));
        assert_eq!(
            log.ended(Millis(2_000), failed()),
            AfterRun::Done,
            "one try only"
        );
        let outcomes = log.into_outcomes();
        assert!(outcomes[0].is_established());
        assert_eq!(
            outcomes.into_iter().nth(1).map(Outcome::into_result),
            Some(Err("timed out".into()))
        );
    }

    #[test]
    fn a_failed_run_is_tried_again_with_a_doubling_backoff_and_counts_once() {
        let runs = Runs {
            count: 1,
            attempts: 3,
            ..Runs::default()
        };
        let mut log = Log::new(runs);
        assert_eq!(
            log.ended(Millis(0), failed()),
            AfterRun::Retry { attempt: 2, of: 3 }
        );
        assert_eq!(log.next_start(), Some(Millis(500)));
        log.start();
        assert_eq!(log.started(), 1, "a try again is part of its run");
        assert_eq!(
            log.ended(Millis(1_000), failed()),
            AfterRun::Retry { attempt: 3, of: 3 }
        );
        assert_eq!(log.next_start(), Some(Millis(2_000)), "doubled");
        log.start();
        assert_eq!(log.ended(Millis(3_000), failed()), AfterRun::Done);
        assert_eq!(log.into_outcomes().len(), 1);
    }

    #[test]
    fn a_waiting_log_starts_on_resume_and_a_deferred_run_waits_for_the_next() {
        let mut log = Log::waiting(Runs::default());
        assert_eq!((log.started(), log.next_start()), (0, None));
        log.resume(Millis(5));
        log.resume(Millis(9));
        assert_eq!(
            log.next_start(),
            Some(Millis(5)),
            "the first resume sets it"
        );
        log.defer();
        assert_eq!(log.next_start(), None);
        log.resume(Millis(20));
        log.start();
        assert_eq!(log.started(), 1);
        log.resume(Millis(30));
        assert_eq!(log.next_start(), None, "no run left");
    }
}
