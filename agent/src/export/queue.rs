//! The retry queue of one signal: requests waiting to be sent, plus the batch
//! being sent, bounded together in items (spans or data points). When a new
//! request does not fit, the oldest waiting requests make room, and every item
//! given up is reported to the caller to count. Plain data, no I/O: the
//! forwarder wraps it in a lock and keeps every critical section short.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Requests waiting for the upstream and the batch in flight, at most
/// `max_items` items together.
#[derive(Debug)]
pub(crate) struct RetryQueue<P> {
    waiting: VecDeque<Waiting<P>>,
    waiting_items: u64,
    in_flight: Option<InFlight>,
    next_ticket: u64,
    max_items: u64,
}

#[derive(Debug)]
struct Waiting<P> {
    payload: P,
    items: u64,
    arrived: Instant,
}

#[derive(Debug)]
struct InFlight {
    ticket: Ticket,
    items: u64,
}

/// Names one claimed batch, so the sender can tell whether it still owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// What [`RetryQueue::push`] gave up to make room.
#[derive(Debug)]
pub(crate) struct Evicted<P> {
    /// Items dropped (oldest first, or the new request if it alone is too big).
    pub(crate) items: u64,
    /// Their payloads, to be freed by the caller outside its lock.
    pub(crate) payloads: Vec<P>,
}

/// A batch taken for sending.
#[derive(Debug)]
pub(crate) struct Claimed<P> {
    /// The requests, oldest first, to merge into one.
    pub(crate) parts: Vec<P>,
    /// Items in them.
    pub(crate) items: u64,
    /// Hand it back to [`RetryQueue::finish`].
    pub(crate) ticket: Ticket,
}

/// When the next batch should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing waits.
    Empty,
    /// A partial batch waits for more until then.
    At(Instant),
    /// A batch is ready now.
    Now,
}

impl<P> RetryQueue<P> {
    /// An empty queue holding at most `max_items` items.
    pub(crate) fn new(max_items: u64) -> Self {
        Self {
            waiting: VecDeque::new(),
            waiting_items: 0,
            in_flight: None,
            next_ticket: 0,
            max_items,
        }
    }

    /// Items held: waiting and in flight (the gauge, and what the bound counts).
    pub(crate) fn items(&self) -> u64 {
        self.waiting_items + self.in_flight.as_ref().map_or(0, |f| f.items)
    }

    /// Adds a request of `items` items, evicting the oldest data until it fits.
    ///
    /// Waiting requests go first. The batch in flight is given up only when
    /// that is not enough (it may be delivered any moment, and it was claimed
    /// as one unit), and a request bigger than the whole queue is dropped
    /// itself: evicting everything would still not make room for it.
    pub(crate) fn push(&mut self, payload: P, items: u64, now: Instant) -> Evicted<P> {
        let mut evicted = Evicted {
            items: 0,
            payloads: Vec::new(),
        };
        if items > self.max_items {
            evicted.items = items;
            evicted.payloads.push(payload);
            return evicted;
        }
        while self.items().saturating_add(items) > self.max_items {
            if let Some(oldest) = self.waiting.pop_front() {
                self.waiting_items -= oldest.items;
                evicted.items += oldest.items;
                evicted.payloads.push(oldest.payload);
            } else if let Some(in_flight) = self.in_flight.take() {
                // The sender finds its ticket gone and stops retrying it.
                evicted.items += in_flight.items;
            } else {
                break;
            }
        }
        self.waiting_items += items;
        self.waiting.push_back(Waiting {
            payload,
            items,
            arrived: now,
        });
        evicted
    }

    /// Whether a batch should be claimed: a full batch is ready at once, a
    /// partial one when its oldest request has waited `timeout`, anything
    /// at all while `flushing`.
    pub(crate) fn readiness(
        &self,
        batch_max: u64,
        timeout: Duration,
        flushing: bool,
        now: Instant,
    ) -> Readiness {
        let Some(oldest) = self.waiting.front() else {
            return Readiness::Empty;
        };
        let due = oldest.arrived + timeout;
        if flushing || self.waiting_items >= batch_max || due <= now {
            Readiness::Now
        } else {
            Readiness::At(due)
        }
    }

    /// Takes the oldest requests, up to `batch_max` items (at least one request,
    /// however big), as the batch in flight. `None` while a batch is in flight
    /// or nothing waits.
    pub(crate) fn claim(&mut self, batch_max: u64) -> Option<Claimed<P>> {
        if self.in_flight.is_some() {
            return None;
        }
        let mut parts = Vec::new();
        let mut items = 0u64;
        while let Some(next) = self.waiting.front() {
            if !parts.is_empty() && items + next.items > batch_max {
                break;
            }
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            items += next.items;
            parts.push(next.payload);
        }
        if parts.is_empty() {
            return None;
        }
        self.waiting_items -= items;
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.in_flight = Some(InFlight { ticket, items });
        Some(Claimed {
            parts,
            items,
            ticket,
        })
    }

    /// Whether the batch of `ticket` is still held (not evicted meanwhile).
    pub(crate) fn holds(&self, ticket: Ticket) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.ticket == ticket)
    }

    /// Ends the batch of `ticket` (sent or given up). `false` when it was
    /// evicted meanwhile: its items are counted as dropped already.
    pub(crate) fn finish(&mut self, ticket: Ticket) -> bool {
        if self.holds(ticket) {
            self.in_flight = None;
            true
        } else {
            false
        }
    }

    /// Empties the queue (at shutdown): the items left, in flight included,
    /// and the waiting payloads to free.
    pub(crate) fn drain(&mut self) -> (u64, Vec<P>) {
        let items = self.items();
        self.in_flight = None;
        self.waiting_items = 0;
        let payloads = self.waiting.drain(..).map(|w| w.payload).collect();
        (items, payloads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: u64 = 500;
    const WAIT: Duration = Duration::from_millis(100);

    /// Payloads are names, so tests can see which requests were evicted.
    fn queue(max: u64) -> RetryQueue<&'static str> {
        RetryQueue::new(max)
    }

    #[test]
    fn full_queue_evicts_the_oldest_waiting_requests_first() {
        let now = Instant::now();
        let mut q = queue(300);
        for name in ["a", "b", "c"] {
            assert_eq!(q.push(name, 100, now).items, 0);
        }
        let evicted = q.push("d", 150, now);
        assert_eq!(evicted.items, 200);
        assert_eq!(evicted.payloads, ["a", "b"]);
        assert_eq!(q.items(), 250);
        let claimed = q.claim(BATCH).expect("a batch");
        assert_eq!(claimed.parts, ["c", "d"]);
    }

    #[test]
    fn the_batch_in_flight_is_evicted_only_when_waiting_requests_are_not_enough() {
        let now = Instant::now();
        let mut q = queue(300);
        q.push("a", 200, now);
        let claimed = q.claim(BATCH).expect("a batch");
        q.push("b", 50, now);
        // 200 in flight + 50 waiting: "b" goes first, then the batch in flight.
        let evicted = q.push("c", 250, now);
        assert_eq!(evicted.items, 250);
        assert_eq!(evicted.payloads, ["b"]);
        assert_eq!(q.items(), 250);
        assert!(!q.holds(claimed.ticket));
        assert!(
            !q.finish(claimed.ticket),
            "an evicted batch is not counted twice"
        );
        assert_eq!(q.claim(BATCH).expect("next batch").parts, ["c"]);
    }

    #[test]
    fn a_request_bigger_than_the_queue_is_dropped_alone() {
        let now = Instant::now();
        let mut q = queue(300);
        q.push("a", 100, now);
        let evicted = q.push("huge", 301, now);
        assert_eq!((evicted.items, evicted.payloads), (301, vec!["huge"]));
        assert_eq!(q.items(), 100);
    }

    #[test]
    fn every_item_is_held_evicted_or_finished() {
        // Conservation under a mix of pushes, claims and finishes.
        let now = Instant::now();
        let mut q = queue(1_000);
        let (mut pushed, mut evicted, mut finished) = (0u64, 0u64, 0u64);
        for round in 0..200u64 {
            let items = 1 + (round * 37) % 180;
            pushed += items;
            evicted += q.push("x", items, now).items;
            if round % 3 == 0
                && let Some(claimed) = q.claim(BATCH)
                && q.finish(claimed.ticket)
            {
                finished += claimed.items;
            }
            assert!(q.items() <= 1_000);
        }
        assert_eq!(pushed, evicted + finished + q.items());
        let (left, _) = q.drain();
        assert_eq!(q.items(), 0);
        assert_eq!(pushed, evicted + finished + left);
    }

    #[test]
    fn batches_hold_at_most_batch_max_items_but_at_least_one_request() {
        let now = Instant::now();
        let mut q = queue(10_000);
        for name in ["a", "b", "c"] {
            q.push(name, 200, now);
        }
        let first = q.claim(BATCH).expect("a batch");
        assert_eq!((first.parts.len(), first.items), (2, 400));
        assert!(q.claim(BATCH).is_none(), "one batch in flight at a time");
        assert!(q.finish(first.ticket));
        q.push("big", 900, now);
        let second = q.claim(BATCH).expect("a batch");
        assert_eq!(second.parts, ["c"]);
        q.finish(second.ticket);
        let third = q.claim(BATCH).expect("a batch");
        assert_eq!((third.parts, third.items), (vec!["big"], 900));
    }

    #[test]
    fn partial_batches_wait_for_the_timeout_unless_full_or_flushing() {
        let start = Instant::now();
        let mut q = queue(10_000);
        assert_eq!(q.readiness(BATCH, WAIT, false, start), Readiness::Empty);
        q.push("a", 100, start);
        assert_eq!(
            q.readiness(BATCH, WAIT, false, start),
            Readiness::At(start + WAIT)
        );
        assert_eq!(q.readiness(BATCH, WAIT, true, start), Readiness::Now);
        assert_eq!(
            q.readiness(BATCH, WAIT, false, start + WAIT),
            Readiness::Now
        );
        q.push("b", 400, start);
        assert_eq!(q.readiness(BATCH, WAIT, false, start), Readiness::Now);
    }
}
