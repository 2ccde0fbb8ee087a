//! Rise/fall hysteresis: a passing check turns `fail` only after `fall`
//! consecutive failures, a failed one turns back only after `rise` consecutive
//! successes, so one slow ping does not flap the load balancer.

use super::Status;

/// Whether the check is currently considered up, and the streak against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No run has finished yet.
    Pending,
    /// Up; `failures` consecutive failures so far (fewer than `fall`).
    Up { failures: u32 },
    /// Down; `successes` consecutive successes so far (fewer than `rise`).
    Down { successes: u32 },
}

/// The status to report after a run, and why when it differs from the run's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The status the report shows.
    pub status: Status,
    /// Set while the reported status lags the run's (a failure not yet counted
    /// as down, a success not yet counted as up).
    pub pending_note: Option<String>,
}

impl Hysteresis {
    /// A check with these thresholds, before its first run.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            state: State::Pending,
        }
    }

    /// True once at least one run has finished.
    pub fn has_result(&self) -> bool {
        self.state != State::Pending
    }

    /// True while the check counts as up.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// Feeds one run's own status (`warn` counts as a success) and returns what
    /// to report. The first run decides at once: there is nothing to smooth yet.
    pub fn observe(&mut self, run: Status) -> Verdict {
        let success = run != Status::Fail;
        self.state = match (self.state, success) {
            (State::Pending, true) => State::Up { failures: 0 },
            (State::Pending, false) => State::Down { successes: 0 },
            (State::Up { .. }, true) => State::Up { failures: 0 },
            (State::Up { failures }, false) if failures + 1 >= self.fall => {
                State::Down { successes: 0 }
            }
            (State::Up { failures }, false) => State::Up {
                failures: failures + 1,
            },
            (State::Down { successes }, true) if successes + 1 >= self.rise => {
                State::Up { failures: 0 }
            }
            (State::Down { successes }, true) => State::Down {
                successes: successes + 1,
            },
            (State::Down { .. }, false) => State::Down { successes: 0 },
        };
        match self.state {
            State::Up { failures } if failures > 0 => Verdict {
                status: Status::Warn,
                pending_note: Some(format!("failure {failures} of {} before fail", self.fall)),
            },
            State::Down { successes } if successes > 0 => Verdict {
                status: Status::Fail,
                pending_note: Some(format!(
                    "recovering: success {successes} of {} before pass",
                    self.rise
                )),
            },
            _ => Verdict {
                status: run,
                pending_note: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &mut Hysteresis, statuses: &[Status]) -> Vec<Status> {
        statuses.iter().map(|s| h.observe(*s).status).collect()
    }

    use Status::{Fail, Pass, Warn};

    #[test]
    fn first_result_decides_at_once() {
        assert_eq!(run(&mut Hysteresis::new(2, 3), &[Fail]), [Fail]);
        assert_eq!(run(&mut Hysteresis::new(2, 3), &[Pass]), [Pass]);
    }

    #[test]
    fn one_failure_among_passes_only_warns() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(
            run(&mut h, &[Pass, Fail, Pass, Fail, Fail, Pass]),
            [Pass, Warn, Pass, Warn, Warn, Pass]
        );
        assert!(h.is_up());
    }

    #[test]
    fn fall_consecutive_failures_turn_it_down_and_rise_successes_back_up() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(
            run(
                &mut h,
                &[Pass, Fail, Fail, Fail, Pass, Fail, Pass, Pass, Pass]
            ),
            [Pass, Warn, Warn, Fail, Fail, Fail, Fail, Pass, Pass]
        );
    }

    #[test]
    fn warn_runs_count_as_success() {
        let mut h = Hysteresis::new(1, 1);
        assert_eq!(run(&mut h, &[Warn, Fail, Warn]), [Warn, Fail, Warn]);
    }

    #[test]
    fn pending_notes_say_where_the_streak_stands() {
        let mut h = Hysteresis::new(2, 3);
        h.observe(Pass);
        let v = h.observe(Fail);
        assert_eq!(
            v.pending_note.as_deref(),
            Some("failure 1 of 3 before fail")
        );
        h.observe(Fail);
        h.observe(Fail);
        let v = h.observe(Pass);
        assert_eq!(
            v.pending_note.as_deref(),
            Some("recovering: success 1 of 2 before pass")
        );
    }
}
