//! Prometheus families of trace assembly: what completed and why, what is in
//! flight, and what the caps dropped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::span::Completion;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Trace assembly counters and gauges.
#[derive(Debug, Clone, Default)]
pub struct TraceMetrics {
    completed: Family<ReasonLabels, Counter>,
    pub(crate) traces_in_flight: Gauge,
    pub(crate) spans_in_flight: Gauge,
    /// Spans dropped because their trace reached `traces.max_spans_per_trace`.
    pub dropped_spans: Counter,
    /// Evicted traces dropped unanalysed because consumers fell behind.
    pub dropped_traces: Counter,
}

impl TraceMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "traces_completed",
            "Traces handed to analysis, by why they were complete (quiet, max_age, evicted_max_traces, evicted_max_spans, shutdown)",
            metrics.completed.clone(),
        );
        registry.register(
            "traces_in_flight",
            "Traces being assembled (traces.max_traces caps them)",
            metrics.traces_in_flight.clone(),
        );
        registry.register(
            "trace_spans_in_flight",
            "Spans held by traces being assembled (traces.max_spans caps them)",
            metrics.spans_in_flight.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Spans dropped because their trace already held traces.max_spans_per_trace spans",
            metrics.dropped_spans.clone(),
        );
        registry.register(
            "traces_dropped",
            "Evicted traces dropped without analysis because analysis fell behind",
            metrics.dropped_traces.clone(),
        );
        // Every reason shows from the start, so a rate() has a zero to start from.
        for reason in [
            Completion::Quiet,
            Completion::MaxAge,
            Completion::EvictedTraces,
            Completion::EvictedSpans,
            Completion::Shutdown,
        ] {
            let _ = metrics.completed.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        metrics
    }

    pub(crate) fn completed(&self, completion: Completion) {
        self.completed
            .get_or_create(&ReasonLabels {
                reason: completion.as_str(),
            })
            .inc();
    }

    pub(crate) fn set_in_flight(&self, traces: usize, spans: usize) {
        self.traces_in_flight
            .set(i64::try_from(traces).unwrap_or(i64::MAX));
        self.spans_in_flight
            .set(i64::try_from(spans).unwrap_or(i64::MAX));
    }
}
