//! How long to wait before retrying an export: exponential with jitter, or the
//! upstream's own throttling hint (gRPC RetryInfo, HTTP `Retry-After`).

use std::time::Duration;

/// The first wait after a failure.
const INITIAL: Duration = Duration::from_millis(250);
/// The shortest wait a hint can ask for: "retry after 0" from an overloaded
/// upstream must not turn the sender into a busy loop against it.
const MIN_HINT: Duration = Duration::from_millis(100);

/// Retry delays for one sender; reset after every success.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at 250 ms and doubles up to `max`.
    pub(crate) fn new(max: Duration) -> Self {
        let max = max.max(Duration::from_millis(1));
        Self {
            next: INITIAL.min(max),
            max,
        }
    }

    /// The upstream answered: the next failure starts from the bottom again.
    pub(crate) fn reset(&mut self) {
        self.next = INITIAL.min(self.max);
    }

    /// The wait before the next attempt. A hint from the upstream wins over
    /// the schedule (it knows its load), but never beyond `max`, so one odd
    /// answer cannot park the queue for an hour, nor below 100 ms.
    pub(crate) fn delay(&mut self, hint: Option<Duration>) -> Duration {
        let scheduled = self.next;
        self.next = (self.next * 2).min(self.max);
        match hint {
            Some(hint) => hint.clamp(MIN_HINT.min(self.max), self.max),
            // Jitter between half and the full delay, so agents restarted
            // together do not retry in lockstep.
            None => scheduled.mul_f64(0.5 + fastrand::f64() / 2.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(2));
        let bounds = [250, 500, 1000, 2000, 2000];
        for upper in bounds {
            let delay = backoff.delay(None);
            let upper = Duration::from_millis(upper);
            assert!(
                delay <= upper && delay >= upper / 2,
                "{delay:?} vs {upper:?}"
            );
        }
        backoff.reset();
        assert!(backoff.delay(None) <= Duration::from_millis(250));
    }

    #[test]
    fn hints_are_followed_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        assert_eq!(
            backoff.delay(Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
        assert_eq!(
            backoff.delay(Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
        assert_eq!(backoff.delay(Some(Duration::ZERO)), MIN_HINT);
    }

    #[test]
    fn a_tiny_maximum_wins_over_everything() {
        let mut backoff = Backoff::new(Duration::from_millis(20));
        assert!(backoff.delay(None) <= Duration::from_millis(20));
        assert_eq!(
            backoff.delay(Some(Duration::ZERO)),
            Duration::from_millis(20)
        );
    }
}
