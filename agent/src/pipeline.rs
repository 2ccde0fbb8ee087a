//! The pipeline: worker tasks take accepted batches off the ingest queue, show
//! each to every observer (golden signals, trace assembly), then hand it to
//! the forwarder, which owns it from there. They drain the queue fully at
//! shutdown, so nothing accepted is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
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
    /// on one worker task per runtime thread (more could not run at once, and
    /// each hand-over of the queue is a wake-up): observers lock only what they share, so
    /// copying spans into traces and dropping decoded requests run in
    /// parallel, and one busy batch does not stall the queue. Batches may
    /// finish out of order, which OTLP never promised. With the test hook
    /// `delay` there is one worker, the slow pipeline it stands for.
    pub async fn run(self, queue: mpsc::Receiver<QueuedBatch>) {
        let workers = if self.delay.is_zero() {
            tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .clamp(1, MAX_WORKERS)
        } else {
            1
        };
        let pipeline = Arc::new(self);
        let queue = Arc::new(Mutex::new(queue));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let pipeline = Arc::clone(&pipeline);
            let queue = Arc::clone(&queue);
            tasks.spawn(async move { pipeline.work(&queue).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done {
                // An observer panicked: that worker's batch is lost, the others go on.
                tracing::error!(%error, "a pipeline worker failed");
            }
        }
    }

    async fn work(&self, queue: &Mutex<mpsc::Receiver<QueuedBatch>>) {
        loop {
            // The lock is held only while waiting for the next batch.
            let Some(queued) = queue.lock().await.recv().await else {
                return;
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
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
