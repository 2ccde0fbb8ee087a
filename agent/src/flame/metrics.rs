//! The flame graphs' Prometheus families: what each store holds, what its
//! bounds dropped, and the profiles received by format and result. Labels are
//! fixed sets (source, format, result), never request data.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProfileLabels {
    format: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TraceLabels {
    result: &'static str,
}

/// Handles on one store's series (`source` = `spans` or `cpu`).
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    /// Series held.
    pub series: Gauge,
    /// Bytes held.
    pub bytes: Gauge,
    /// Distinct stacks counted as `[other]` because a bucket was full.
    pub overflow_stacks: Counter,
    /// Additions sent to an overflow series because `max_series` was reached.
    pub overflow_series_adds: Counter,
    /// Buckets dropped by the retention.
    pub expired_buckets: Counter,
    /// Buckets dropped early to stay under `max_bytes`.
    pub evicted_buckets: Counter,
}

/// Every flame-graph metric.
#[derive(Debug, Clone)]
pub struct FlameMetrics {
    /// Span flame graphs' store.
    pub spans: SourceMetrics,
    /// CPU profiles' store.
    pub cpu: SourceMetrics,
    profiles: Family<ProfileLabels, Counter>,
    traces: Family<TraceLabels, Counter>,
}

impl FlameMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let series = Family::<SourceLabels, Gauge>::default();
        let bytes = Family::<SourceLabels, Gauge>::default();
        let overflow_stacks = Family::<SourceLabels, Counter>::default();
        let overflow_series = Family::<SourceLabels, Counter>::default();
        let expired = Family::<SourceLabels, Counter>::default();
        let evicted = Family::<SourceLabels, Counter>::default();
        let source = |name: &'static str| {
            let labels = SourceLabels { source: name };
            SourceMetrics {
                series: series.get_or_create(&labels).clone(),
                bytes: bytes.get_or_create(&labels).clone(),
                overflow_stacks: overflow_stacks.get_or_create(&labels).clone(),
                overflow_series_adds: overflow_series.get_or_create(&labels).clone(),
                expired_buckets: expired.get_or_create(&labels).clone(),
                evicted_buckets: evicted.get_or_create(&labels).clone(),
            }
        };
        let metrics = Self {
            spans: source("spans"),
            cpu: source("cpu"),
            profiles: Family::default(),
            traces: Family::default(),
        };
        registry.register(
            "flame_series",
            "Flame-graph series (service x route for spans, service x labels for CPU) held",
            series,
        );
        registry.register_with_unit(
            "flame_stored",
            "Approximate memory held by folded stacks (flame.max_bytes bounds it)",
            Unit::Bytes,
            bytes,
        );
        registry.register(
            "flame_overflow_stacks",
            "Distinct stacks counted as [other] because a bucket held flame.max_stacks",
            overflow_stacks,
        );
        registry.register(
            "flame_overflow_series_adds",
            "Additions counted in a service's __overflow__ series because flame.max_series was reached",
            overflow_series,
        );
        registry.register(
            "flame_expired_buckets",
            "Time buckets dropped after flame.retention",
            expired,
        );
        registry.register(
            "flame_evicted_buckets",
            "Time buckets dropped before their retention to stay under flame.max_bytes",
            evicted,
        );
        registry.register(
            "flame_profiles",
            "CPU profiles received, by format and result (accepted, bad_request, too_large)",
            metrics.profiles.clone(),
        );
        registry.register(
            "flame_traces",
            "Traces folded into span flame graphs",
            metrics.traces.clone(),
        );
        metrics
    }

    /// Counts one profile request.
    pub fn profile(&self, format: &'static str, result: &'static str) {
        self.profiles
            .get_or_create(&ProfileLabels { format, result })
            .inc();
    }

    /// Counts one trace (`folded` or `dropped`).
    pub fn trace(&self, result: &'static str) {
        self.traces.get_or_create(&TraceLabels { result }).inc();
    }
}
