//! Ingest counters: what was accepted, refused (retryable) and rejected
//! (invalid), per signal, so no loss is ever silent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Refusal, Signal};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    signal: &'static str,
    reason: &'static str,
}

/// Ingest counters.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    accepted: Family<SignalLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    processed: Family<SignalLabels, Counter>,
    /// Decoded bytes waiting in the queue.
    pub queue_bytes: Gauge,
}

impl IngestMetrics {
    /// Registers the ingest families.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "ingest_accepted_items",
            "Spans (traces) or data points (metrics) accepted into the pipeline queue",
            metrics.accepted.clone(),
        );
        registry.register(
            "ingest_refused_items",
            "Items refused with a retryable answer (queue full, memory limit, shutting down)",
            metrics.refused.clone(),
        );
        registry.register(
            "ingest_rejected_items",
            "Items rejected as invalid (partial success) or in undecodable or oversized requests",
            metrics.rejected.clone(),
        );
        registry.register(
            "ingest_processed_items",
            "Items the pipeline has finished with",
            metrics.processed.clone(),
        );
        registry.register(
            "ingest_queue_bytes",
            "Decoded bytes waiting for the pipeline",
            metrics.queue_bytes.clone(),
        );
        metrics
    }

    pub(super) fn accepted(&self, signal: Signal, items: u64) {
        self.accepted
            .get_or_create(&SignalLabels {
                signal: signal.as_str(),
            })
            .inc_by(items);
    }

    pub(super) fn refused(&self, signal: Signal, refusal: Refusal, items: u64) {
        self.refused
            .get_or_create(&ReasonLabels {
                signal: signal.as_str(),
                reason: refusal.as_str(),
            })
            .inc_by(items);
    }

    /// Counts invalid items (`reason`: `invalid`, `undecodable`, `too_large`, ...).
    pub fn rejected(&self, signal: Signal, reason: &'static str, items: u64) {
        self.rejected
            .get_or_create(&ReasonLabels {
                signal: signal.as_str(),
                reason,
            })
            .inc_by(items);
    }

    /// Counts items the pipeline finished.
    pub fn processed(&self, signal: Signal, items: u64) {
        self.processed
            .get_or_create(&SignalLabels {
                signal: signal.as_str(),
            })
            .inc_by(items);
    }
}
