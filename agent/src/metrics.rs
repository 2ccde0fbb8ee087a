//! The agent's Prometheus registry (served on the admin listener's `/metrics`).
//! Each capability owns a small struct of metric families registered here;
//! labels are bounded by configuration (check names), never by request data.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of the text exposition format.
pub const PROMETHEUS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the agent exports: a registry filled by each capability at
/// start-up (`XxxMetrics::register(&mut registry)`), then frozen.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

/// A fresh registry with the `telltale_` prefix, for capabilities to register in.
pub fn new_registry() -> Registry {
    Registry::with_prefix("telltale")
}

/// Labels naming one check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CheckLabels {
    /// The check's name.
    pub check: String,
    /// Its kind.
    pub kind: String,
}

/// Labels naming one check and the result of one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CheckRunLabels {
    /// The check's name.
    pub check: String,
    /// Its kind.
    pub kind: String,
    /// `pass`, `warn`, `fail` or `timeout`.
    pub result: String,
}

/// Health metrics.
#[derive(Debug, Clone, Default)]
pub struct HealthMetrics {
    /// 1 while a check is up after hysteresis, 0 while it is down or pending.
    pub check_up: Family<CheckLabels, Gauge>,
    /// Duration of the check's last run, in seconds.
    pub check_duration: Family<CheckLabels, Gauge<f64, AtomicU64>>,
    /// Runs by result.
    pub check_runs: Family<CheckRunLabels, Counter>,
    /// 1 while readiness answers 200.
    pub ready: Gauge,
    /// 1 while the agent drains.
    pub draining: Gauge,
}

impl Metrics {
    /// Freezes a filled registry.
    pub fn new(registry: Registry) -> Arc<Self> {
        Arc::new(Self { registry })
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl HealthMetrics {
    /// Registers the health families.
    pub fn register(registry: &mut Registry) -> Self {
        let health = Self::default();
        registry.register(
            "health_check_up",
            "1 while the check counts as up (after rise/fall), 0 while down or pending",
            health.check_up.clone(),
        );
        registry.register(
            "health_check_duration_seconds",
            "Duration of the check's last run",
            health.check_duration.clone(),
        );
        registry.register(
            "health_check_runs",
            "Check runs by result",
            health.check_runs.clone(),
        );
        registry.register(
            "health_ready",
            "1 while readiness answers 200",
            health.ready.clone(),
        );
        registry.register(
            "draining",
            "1 while the agent drains before exiting",
            health.draining.clone(),
        );
        health
    }
}
