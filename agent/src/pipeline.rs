//! The pipeline: one task takes accepted batches off the ingest queue, shows
//! each to every observer (golden signals, and later trace assembly), then hands
//! it to the forwarder, which owns it from there. It drains the queue fully at
//! shutdown, so nothing accepted is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::ingest::{Batch, IngestMetrics, QueuedBatch};

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
    /// Processes batches until every sender is gone and the queue is empty.
    pub async fn run(self, mut queue: mpsc::Receiver<QueuedBatch>) {
        while let Some(queued) = queue.recv().await {
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
