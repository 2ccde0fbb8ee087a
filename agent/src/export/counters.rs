//! The forwarder's own Prometheus metrics: what was delivered, retried and
//! dropped (and why), how much waits in the retry queue, and whether the
//! upstream answered last time. No loss is silent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ingest::Signal;

/// Why forwarded items were given up on (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The retry queue was full: the oldest requests made room for new ones
    /// (or one request was bigger than the whole queue).
    QueueFull,
    /// The upstream refused them for good (invalid, too large, partial success).
    Rejected,
    /// Still queued when the agent stopped.
    Shutdown,
    /// An accepted request the agent could not decode for sending: a fault
    /// in the agent (its in-place check passed what prost refuses), logged.
    Undecodable,
}

impl DropReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Rejected => "rejected",
            Self::Shutdown => "shutdown",
            Self::Undecodable => "undecodable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DropLabels {
    signal: &'static str,
    reason: &'static str,
}

/// Forwarding metrics, shared by both signals' lanes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardCounters {
    sent: Family<SignalLabels, Counter>,
    dropped: Family<DropLabels, Counter>,
    retries: Family<SignalLabels, Counter>,
    queue_items: Family<SignalLabels, Gauge>,
    upstream_up: Gauge,
}

impl ForwardCounters {
    /// Registers the `forward_*` families (the registry adds `telltale_`).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let counters = Self::default();
        registry.register(
            "forward_sent_items",
            "Spans (traces) or data points (metrics) the upstream accepted",
            counters.sent.clone(),
        );
        registry.register(
            "forward_dropped_items",
            "Items given up on: retry queue full, rejected by the upstream, or still queued at shutdown",
            counters.dropped.clone(),
        );
        registry.register(
            "forward_retries",
            "Export attempts that failed with a retryable answer and were retried",
            counters.retries.clone(),
        );
        registry.register(
            "forward_queue_items",
            "Items (spans or data points) held in the retry queue, the batch in flight included",
            counters.queue_items.clone(),
        );
        registry.register(
            "forward_upstream_up",
            "1 after the last export attempt (either signal) succeeded, 0 after it failed",
            counters.upstream_up.clone(),
        );
        // Present from the start, so dashboards tell "no loss" from "no data".
        for signal in [Signal::Traces, Signal::Metrics] {
            let _ = counters.sent.get_or_create(&labels(signal));
            let _ = counters.retries.get_or_create(&labels(signal));
            let _ = counters.queue_items.get_or_create(&labels(signal));
            for reason in [
                DropReason::QueueFull,
                DropReason::Rejected,
                DropReason::Shutdown,
                DropReason::Undecodable,
            ] {
                let _ = counters.dropped.get_or_create(&drop_labels(signal, reason));
            }
        }
        counters
    }

    pub(crate) fn sent(&self, signal: Signal, items: u64) {
        self.sent.get_or_create(&labels(signal)).inc_by(items);
    }

    pub(crate) fn dropped(&self, signal: Signal, reason: DropReason, items: u64) {
        if items > 0 {
            self.dropped
                .get_or_create(&drop_labels(signal, reason))
                .inc_by(items);
        }
    }

    pub(crate) fn retried(&self, signal: Signal) {
        self.retries.get_or_create(&labels(signal)).inc();
    }

    pub(crate) fn queued(&self, signal: Signal, items: u64) {
        self.queue_items
            .get_or_create(&labels(signal))
            .set(i64::try_from(items).unwrap_or(i64::MAX));
    }

    pub(crate) fn upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }
}

fn labels(signal: Signal) -> SignalLabels {
    SignalLabels {
        signal: signal.as_str(),
    }
}

fn drop_labels(signal: Signal, reason: DropReason) -> DropLabels {
    DropLabels {
        signal: signal.as_str(),
        reason: reason.as_str(),
    }
}
