//! The pipeline: worker threads take accepted batches off the ingest queue, show
//! each to every observer (golden signals, trace assembly), then hand it to
//! the forwarder, which owns it from there. They drain the queue fully at
//! shutdown, so nothing accepted is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::ingest::{Batch, IngestMetrics, QueuedBatch};

/// Pipeline workers at most: each holds one batch out of the queue's budget.
const MAX_WORKERS: usize = 4;

/// Something that reads every accepted batch (and must be quick about it).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Looks at one batch.
    fn observe(&self, batch: &Batch);
}

/// Where batches go after every observer has seen them (the forwarder).
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Takes the batch; must not block.
    fn take(&self, batch: Batch);
}

/// The stages every batch passes through.
#[derive(Debug)]
pub struct Pipeline {
    /// Readers, in order.
    pub observers: Vec<Arc<dyn Observer>>,
    /// The final owner, if any.
    pub sink: Option<Arc<dyn Sink>>,
    /// Test hook (`ingest.pipeline_delay`): a pause before each batch.
    pub delay: Duration,
    /// Counts processed items.
    pub metrics: IngestMetrics,
}

impl Pipeline {
    /// Processes batches until every sender is gone and the queue is empty,
    /// on a worker thread per two cores (at least one, at most
    /// [`MAX_WORKERS`]: each hand-over of the queue between workers is a
    /// wake-up, and a sidecar leaves the app its cores), off the async
    /// runtime: the runtime's threads (`runtime.worker_threads`) only receive
    /// and answer, so a batch being analysed never holds up a client, and
    /// flat out receiving and analysing use separate cores. Observers lock
    /// only what they share, so workers run in parallel, and one busy batch
    /// does not stall the queue. Batches may finish out of order, which OTLP
    /// never promised. With the test hook `delay` there is one worker, the
    /// slow pipeline it stands for.
    pub async fn run(self, queue: mpsc::Receiver<QueuedBatch>) {
        let workers = if self.delay.is_zero() {
            crate::config::half_the_cores().min(MAX_WORKERS)
        } else {
            1
        };
        let pipeline = Arc::new(self);
        let queue = Arc::new(Mutex::new(queue));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let pipeline = Arc::clone(&pipeline);
            let queue = Arc::clone(&queue);
            tasks.spawn_blocking(move || pipeline.work(&queue));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done {
                // An observer panicked: that worker's batch is lost, the others go on.
                tracing::error!(%error, "a pipeline worker failed");
            }
        }
    }

    fn work(&self, queue: &Mutex<mpsc::Receiver<QueuedBatch>>) {
        loop {
            // The lock is held only while waiting for the next batch. A
            // worker that panicked held none of the queue's state.
            let next = queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .blocking_recv();
            let Some(queued) = next else {
                return;
            };
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            let signal = queued.batch.signal();
            let items = queued.items;
            for observer in &self.observers {
                observer.observe(&queued.batch);
            }
            // The memory budget is released here: the forwarder bounds its own queue.
            let batch = queued.release();
            if let Some(sink) = &self.sink {
                sink.take(batch);
            }
            self.metrics.processed(signal, items);
        }
    }
}
