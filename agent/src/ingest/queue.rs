//! The bounded hand-off between receivers and the pipeline: a channel bounded
//! in requests, plus a budget of decoded bytes, so neither many small requests
//! nor a few huge ones can grow memory without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use tokio::sync::mpsc;

use super::{IngestMetrics, Signal, TraceBatch};

/// One accepted request.
#[derive(Debug)]
pub enum Batch {
    /// Spans, as the protobuf they arrived in.
    Traces(TraceBatch),
    /// Metric data points.
    Metrics(ExportMetricsServiceRequest),
}

impl Batch {
    /// The signal it carries.
    pub fn signal(&self) -> Signal {
        match self {
            Self::Traces(_) => Signal::Traces,
            Self::Metrics(_) => Signal::Metrics,
        }
    }
}

/// A batch in the queue, holding its share of the memory budget until the
/// pipeline is done with it.
#[derive(Debug)]
pub struct QueuedBatch {
    /// The request.
    pub batch: Batch,
    /// Spans or data points in it.
    pub items: u64,
    /// Held for its `Drop`, which returns the bytes to the budget.
    _reservation: Reservation,
}

impl QueuedBatch {
    /// Releases the memory budget early (drop does it too).
    pub fn release(self) -> Batch {
        self.batch
    }
}

#[derive(Debug)]
struct Reservation {
    bytes: usize,
    in_flight: Arc<AtomicUsize>,
    metrics: IngestMetrics,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let left = self.in_flight.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        self.metrics.queue_bytes.set(left as i64);
    }
}

/// Why a request was refused; both are retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue holds `queue_capacity` requests already (HTTP 429).
    QueueFull,
    /// Accepting it would exceed `memory_limit` (HTTP 503).
    MemoryLimit,
    /// The agent is shutting down (HTTP 503).
    ShuttingDown,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::MemoryLimit => "memory_limit",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::QueueFull => "the agent's ingest queue is full: retry later",
            Self::MemoryLimit => "the agent's ingest memory limit is reached: retry later",
            Self::ShuttingDown => {
                "the agent is shutting down: retry against another instance or later"
            }
        }
    }
}

/// The sending side, shared by every receiver.
#[derive(Debug, Clone)]
pub struct IngestQueue {
    sender: mpsc::Sender<QueuedBatch>,
    in_flight: Arc<AtomicUsize>,
    memory_limit: usize,
    /// How long refused clients should wait.
    pub retry_after: Duration,
    /// Counters shared with the receivers.
    pub metrics: IngestMetrics,
}

impl IngestQueue {
    /// A queue of `capacity` requests and `memory_limit` decoded bytes.
    pub fn new(
        capacity: usize,
        memory_limit: usize,
        retry_after: Duration,
        metrics: IngestMetrics,
    ) -> (Self, mpsc::Receiver<QueuedBatch>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let queue = Self {
            sender,
            in_flight: Arc::new(AtomicUsize::new(0)),
            memory_limit,
            retry_after,
            metrics,
        };
        (queue, receiver)
    }

    /// Queues a validated request whose decoded size is `bytes`, or says why not.
    /// Never waits: a full queue is the client's cue to retry.
    pub fn offer(&self, batch: Batch, items: u64, bytes: usize) -> Result<(), Refusal> {
        let signal = batch.signal();
        let result = self.try_offer(batch, items, bytes);
        match result {
            Ok(()) => self.metrics.accepted(signal, items),
            Err(refusal) => self.metrics.refused(signal, refusal, items),
        }
        result
    }

    fn try_offer(&self, batch: Batch, items: u64, bytes: usize) -> Result<(), Refusal> {
        let before = self.in_flight.fetch_add(bytes, Ordering::AcqRel);
        let reservation = Reservation {
            bytes,
            in_flight: Arc::clone(&self.in_flight),
            metrics: self.metrics.clone(),
        };
        // Always let one request through an empty queue, whatever its size:
        // the size limit already bounds it.
        if before > 0 && before + bytes > self.memory_limit {
            return Err(Refusal::MemoryLimit);
        }
        let permit = self.sender.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => Refusal::QueueFull,
            mpsc::error::TrySendError::Closed(()) => Refusal::ShuttingDown,
        })?;
        self.metrics.queue_bytes.set((before + bytes) as i64);
        permit.send(QueuedBatch {
            batch,
            items,
            _reservation: reservation,
        });
        Ok(())
    }

    /// Requests waiting for the pipeline.
    pub fn depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}
