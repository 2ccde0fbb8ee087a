//! The task that empties one signal's lane: it waits for a full batch or the
//! batch timeout, merges the claimed requests into one, and sends it until it
//! is delivered, refused for good, or evicted to make room for newer data.
//! Between failures it backs off; it never holds the lane's lock across an
//! await, so ingest is never held up by the network.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::lane::Lane;
use super::queue::{Claimed, Readiness};
use super::throttle::Outcome;
use super::upstream::{Exportable, Upstream};

/// Sends one signal's batches upstream.
#[derive(Debug)]
pub(crate) struct Sender<P> {
    pub(crate) lane: Arc<Lane<P>>,
    pub(crate) upstream: Upstream,
    pub(crate) batch_max: u64,
    pub(crate) batch_timeout: Duration,
    pub(crate) max_backoff: Duration,
    /// Shutdown, first step: send what is left without waiting for full
    /// batches, then end.
    pub(crate) flush: CancellationToken,
    /// Shutdown, deadline passed: end now, whatever is in flight.
    pub(crate) stop: CancellationToken,
}

/// What the sender remembers between batches.
#[derive(Debug)]
struct Streak {
    backoff: Backoff,
    /// Whether the last attempt succeeded, so an outage is logged once as a
    /// warning, not at every retry.
    up: bool,
}

impl<P: Exportable> Sender<P> {
    /// Runs until flushed empty or stopped.
    pub(crate) async fn run(self) {
        let mut streak = Streak {
            backoff: Backoff::new(self.max_backoff),
            up: true,
        };
        loop {
            let flushing = self.flush.is_cancelled();
            match self
                .lane
                .readiness(self.batch_max, self.batch_timeout, flushing)
            {
                Readiness::Empty if flushing => return,
                Readiness::Empty => tokio::select! {
                    () = self.lane.wake.notified() => {}
                    () = self.flush.cancelled() => {}
                    () = self.stop.cancelled() => return,
                },
                Readiness::At(due) => tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    () = self.lane.wake.notified() => {}
                    () = self.flush.cancelled() => {}
                    () = self.stop.cancelled() => return,
                },
                Readiness::Now => {
                    if let Some(claimed) = self.lane.claim(self.batch_max)
                        && !self.deliver(claimed, &mut streak).await
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Sends one batch until it is settled; `false` when told to stop first
    /// (the batch then stays in the lane, to be counted at shutdown).
    async fn deliver(&self, claimed: Claimed<P>, streak: &mut Streak) -> bool {
        let Claimed {
            parts,
            items,
            ticket,
        } = claimed;
        let request = P::merge_all(parts);
        let signal = P::SIGNAL.as_str();
        let counters = self.lane.counters();
        loop {
            let outcome = tokio::select! {
                biased;
                () = self.stop.cancelled() => return false,
                outcome = self.upstream.send(&request) => outcome,
            };
            match outcome {
                Outcome::Accepted { rejected, message } => {
                    counters.upstream_up(true);
                    streak.backoff.reset();
                    if !streak.up {
                        tracing::info!(signal, "upstream reachable again");
                        streak.up = true;
                    }
                    if rejected > 0 {
                        tracing::warn!(signal, rejected, items, message = %message, "the upstream refused part of a batch");
                    }
                    self.lane.delivered(ticket, items, rejected);
                    return true;
                }
                Outcome::Rejected { reason } => {
                    counters.upstream_up(false);
                    tracing::warn!(signal, items, reason = %reason, "the upstream refused a batch: dropped, not retried");
                    self.lane.rejected(ticket, items);
                    return true;
                }
                Outcome::Retry { hint, reason } => {
                    counters.upstream_up(false);
                    // Evicted while we tried: newer data took its place, and
                    // its items are counted as dropped already.
                    if !self.lane.holds(ticket) {
                        return true;
                    }
                    counters.retried(P::SIGNAL);
                    let delay = streak.backoff.delay(hint);
                    let wait = humantime::format_duration(Duration::from_millis(
                        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    ));
                    if streak.up {
                        tracing::warn!(signal, items, reason = %reason, retry_in = %wait, "upstream export failed: retrying");
                        streak.up = false;
                    } else {
                        tracing::debug!(signal, items, reason = %reason, retry_in = %wait, "upstream export failed again");
                    }
                    tokio::select! {
                        biased;
                        () = self.stop.cancelled() => return false,
                        () = tokio::time::sleep(delay) => {}
                    }
                    if !self.lane.holds(ticket) {
                        return true;
                    }
                }
            }
        }
    }
}
