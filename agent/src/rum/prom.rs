//! RUM on `/metrics`: the web vitals as histograms whose bucket edges include
//! Google's thresholds (so p75 and the good / poor shares can be computed
//! across a fleet with `histogram_quantile` and bucket ratios), and a counter
//! for every beacon refused or value dropped, by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::metric::{Device, MetricKind};

/// Seconds. Every threshold is an edge: FID 0.1/0.3, INP 0.2/0.5,
/// TTFB 0.8/1.8, FCP 1.8/3.0, LCP 2.5/4.0.
const TIME_EDGES: [f64; 15] = [
    0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 1.8, 2.5, 3.0, 4.0, 6.0, 10.0, 20.0,
];
/// CLS score: thresholds 0.1 and 0.25.
const CLS_EDGES: [f64; 8] = [0.01, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0];

fn time_histogram() -> Histogram {
    Histogram::new(TIME_EDGES)
}

fn cls_histogram() -> Histogram {
    Histogram::new(CLS_EDGES)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct VitalLabels {
    app: String,
    page: String,
    metric: &'static str,
    device: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Every RUM family.
#[derive(Debug, Clone)]
pub struct RumMetrics {
    durations: Family<VitalLabels, Histogram, fn() -> Histogram>,
    layout_shift: Family<VitalLabels, Histogram, fn() -> Histogram>,
    refused: Family<ReasonLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    /// Beacons accepted.
    pub(crate) beacons: Counter,
    /// Values recorded (a re-reported value counts again).
    pub(crate) values: Counter,
    /// Page × metric × device series held.
    pub(crate) pages: Gauge,
    // Handles of the drop reasons counted on the hot path, resolved once.
    pub(crate) duplicate: Counter,
    pub(crate) stale: Counter,
    pub(crate) untracked_id: Counter,
    pub(crate) page_overflow: Counter,
    pub(crate) app_overflow: Counter,
}

impl RumMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let dropped: Family<ReasonLabels, Counter> = Family::default();
        let reason = |reason| dropped.get_or_create(&ReasonLabels { reason }).clone();
        let metrics = Self {
            durations: Family::new_with_constructor(time_histogram),
            layout_shift: Family::new_with_constructor(cls_histogram),
            refused: Family::default(),
            beacons: Counter::default(),
            values: Counter::default(),
            pages: Gauge::default(),
            duplicate: reason("duplicate"),
            stale: reason("stale"),
            untracked_id: reason("untracked_id"),
            page_overflow: reason("page_overflow"),
            app_overflow: reason("app_overflow"),
            dropped: dropped.clone(),
        };
        registry.register_with_unit(
            "rum_web_vital",
            "LCP, INP, FCP, TTFB and FID of page loads (first report of each metric id); bucket edges include Google's thresholds",
            Unit::Seconds,
            metrics.durations.clone(),
        );
        registry.register(
            "rum_cumulative_layout_shift",
            "CLS of page loads (first report of each metric id); edges include 0.1 and 0.25",
            metrics.layout_shift.clone(),
        );
        registry.register(
            "rum_beacons",
            "Beacons accepted on the public listener",
            metrics.beacons.clone(),
        );
        registry.register(
            "rum_values",
            "Web-vital and navigation values recorded (re-reports included)",
            metrics.values.clone(),
        );
        registry.register(
            "rum_refused_beacons",
            "Beacons refused, by reason (too_large, malformed, invalid, origin, media_type, client_rate, global_rate)",
            metrics.refused.clone(),
        );
        registry.register(
            "rum_dropped_values",
            "Values not aggregated as sent, by reason: page_overflow and app_overflow (counted under `other`), duplicate (same id and value again), stale (same id, a smaller value than held: it arrived after a larger one), untracked_id (an id forgotten since, counted again)",
            metrics.dropped.clone(),
        );
        registry.register(
            "rum_pages",
            "Pages held across apps (rum.max_pages caps each app)",
            metrics.pages.clone(),
        );
        metrics
    }

    /// Counts a refused beacon.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The histogram of one page × vital × device (created on first use).
    pub(crate) fn vital(
        &self,
        app: &str,
        page: &str,
        kind: MetricKind,
        device: Device,
    ) -> Histogram {
        let labels = VitalLabels {
            app: app.to_owned(),
            page: page.to_owned(),
            metric: kind.as_str(),
            device: device.as_str(),
        };
        if kind == MetricKind::Cls {
            self.layout_shift.get_or_create(&labels).clone()
        } else {
            self.durations.get_or_create(&labels).clone()
        }
    }

    /// Forgets every series of an evicted page.
    pub(crate) fn remove_page(&self, app: &str, page: &str) {
        for kind in &MetricKind::ALL[..MetricKind::VITALS] {
            for device in Device::ALL {
                let labels = VitalLabels {
                    app: app.to_owned(),
                    page: page.to_owned(),
                    metric: kind.as_str(),
                    device: device.as_str(),
                };
                self.durations.remove(&labels);
                self.layout_shift.remove(&labels);
            }
        }
    }
}

/// Observes `value` (browser units) in a vital's histogram (base units).
pub(crate) fn observe(histogram: &Histogram, kind: MetricKind, value: f64) {
    if kind == MetricKind::Cls {
        histogram.observe(value);
    } else {
        histogram.observe(value / 1000.0);
    }
}
