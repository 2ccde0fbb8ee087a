//! One signal's share of the forwarder: its retry queue behind a short lock,
//! the wake-up for its sender, and the accounting that keeps the counters and
//! the queue gauge true. Every path that gives items up goes through here.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::counters::{DropReason, ForwardCounters};
use super::payload::Payload;
use super::queue::{Claimed, Readiness, RetryQueue, Ticket};

/// The queue of one signal and its bookkeeping.
#[derive(Debug)]
pub(crate) struct Lane<P> {
    queue: Mutex<State<P>>,
    /// Wakes the sender: new data, or the queue closing.
    pub(crate) wake: Notify,
    counters: ForwardCounters,
}

#[derive(Debug)]
struct State<P> {
    queue: RetryQueue<P>,
    closed: bool,
}

impl<P: Payload> Lane<P> {
    /// An empty lane holding at most `max_items`.
    pub(crate) fn new(max_items: u64, counters: ForwardCounters) -> Self {
        counters.queued(P::SIGNAL, 0);
        Self {
            queue: Mutex::new(State {
                queue: RetryQueue::new(max_items),
                closed: false,
            }),
            wake: Notify::new(),
            counters,
        }
    }

    /// The counters (shared by both lanes).
    pub(crate) fn counters(&self) -> &ForwardCounters {
        &self.counters
    }

    /// Queues a request without waiting; what does not fit is counted.
    pub(crate) fn offer(&self, payload: P) {
        let items = payload.items();
        // Nothing to deliver; an empty request would only cost a round trip.
        if items == 0 {
            return;
        }
        let evicted = {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                self.counters
                    .dropped(P::SIGNAL, DropReason::Shutdown, items);
                return;
            }
            let evicted = state.queue.push(payload, items, Instant::now());
            self.counters.queued(P::SIGNAL, state.queue.items());
            evicted
        };
        self.counters
            .dropped(P::SIGNAL, DropReason::QueueFull, evicted.items);
        // The evicted payloads are freed here, outside the lock.
        drop(evicted.payloads);
        self.wake.notify_one();
    }

    /// Whether the sender should claim a batch now.
    pub(crate) fn readiness(&self, batch_max: u64, timeout: Duration, flushing: bool) -> Readiness {
        self.lock()
            .queue
            .readiness(batch_max, timeout, flushing, Instant::now())
    }

    /// Takes the next batch for sending.
    pub(crate) fn claim(&self, batch_max: u64) -> Option<Claimed<P>> {
        self.lock().queue.claim(batch_max)
    }

    /// Whether the batch is still ours (not evicted to make room).
    pub(crate) fn holds(&self, ticket: Ticket) -> bool {
        self.lock().queue.holds(ticket)
    }

    /// The batch was delivered; `rejected` of its `items` were refused inside.
    pub(crate) fn delivered(&self, ticket: Ticket, items: u64, rejected: u64) {
        if self.finish(ticket) {
            let rejected = rejected.min(items);
            self.counters.sent(P::SIGNAL, items - rejected);
            self.counters
                .dropped(P::SIGNAL, DropReason::Rejected, rejected);
        }
    }

    /// The batch was refused for good.
    pub(crate) fn rejected(&self, ticket: Ticket, items: u64) {
        if self.finish(ticket) {
            self.counters
                .dropped(P::SIGNAL, DropReason::Rejected, items);
        }
    }

    /// Closes the lane: whatever is left, in flight included, is counted as
    /// dropped at shutdown (and returned), and so is anything offered later.
    pub(crate) fn close(&self) -> u64 {
        let (items, payloads) = {
            let mut state = self.lock();
            state.closed = true;
            let left = state.queue.drain();
            self.counters.queued(P::SIGNAL, 0);
            left
        };
        self.counters
            .dropped(P::SIGNAL, DropReason::Shutdown, items);
        drop(payloads);
        self.wake.notify_one();
        items
    }

    /// `false` when the batch had been evicted: counted already.
    fn finish(&self, ticket: Ticket) -> bool {
        let mut state = self.lock();
        let ours = state.queue.finish(ticket);
        self.counters.queued(P::SIGNAL, state.queue.items());
        ours
    }

    fn lock(&self) -> MutexGuard<'_, State<P>> {
        // The state is consistent after every method (no method panics
        // half-way), so a poisoned lock still guards valid data.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
