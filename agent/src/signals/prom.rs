//! The golden signals as Prometheus families. Each series keeps handles to its
//! own counters and histogram, so a span costs a few atomic adds, not a label
//! lookup; labels are the capped service × route pairs, never raw span data.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets: 1 ms to 25 s in steps of 1.5×, fine enough for
/// `histogram_quantile` summed across a fleet to land within a quarter of the
/// true value even between bucket bounds, in 26 buckets a series.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 1.5, 26))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    service: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    route: String,
    status_class: &'static str,
}

/// Every status class a request can have, in label order.
const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error", "ok"];

/// The golden-signal families.
#[derive(Debug, Clone)]
pub(crate) struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    errors: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Service × route series held (overflow series included).
    pub(crate) series: Gauge,
    /// Entry spans counted in an overflow series because the cap was reached.
    pub(crate) overflow_spans: Counter,
    /// Series dropped after an hour without requests.
    pub(crate) evicted_series: Counter,
}

impl RequestMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            series: Gauge::default(),
            overflow_spans: Counter::default(),
            evicted_series: Counter::default(),
        };
        registry.register(
            "requests",
            "Entry spans (SERVER, CONSUMER) by service, route and status class",
            metrics.requests.clone(),
        );
        registry.register(
            "request_errors",
            "Entry spans with status ERROR or an HTTP status of 500 or more",
            metrics.errors.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Duration of entry spans",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "signals_series",
            "Service x route series held (signals.max_series caps them)",
            metrics.series.clone(),
        );
        registry.register(
            "signals_overflow_spans",
            "Entry spans counted in a __overflow__ route because signals.max_series was reached",
            metrics.overflow_spans.clone(),
        );
        registry.register(
            "signals_evicted_series",
            "Series dropped after an hour without requests",
            metrics.evicted_series.clone(),
        );
        metrics
    }

    /// Handles for one series, created on its first request.
    pub(crate) fn series(&self, service: &str, route: &str) -> SeriesMetrics {
        let labels = RouteLabels {
            service: service.to_owned(),
            route: route.to_owned(),
        };
        SeriesMetrics {
            errors: self.errors.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
            requests: Default::default(),
            labels,
        }
    }

    /// Forgets a series' label sets (its counters restart if it comes back,
    /// which Prometheus reads as a counter reset).
    pub(crate) fn remove(&self, series: &SeriesMetrics) {
        self.errors.remove(&series.labels);
        self.duration.remove(&series.labels);
        for class in STATUS_CLASSES {
            self.requests.remove(&series.request_labels(class));
        }
    }
}

/// One series' metric handles.
#[derive(Debug)]
pub(crate) struct SeriesMetrics {
    labels: RouteLabels,
    requests: [Option<Counter>; STATUS_CLASSES.len()],
    errors: Counter,
    duration: Histogram,
}

impl SeriesMetrics {
    fn request_labels(&self, status_class: &'static str) -> RequestLabels {
        RequestLabels {
            service: self.labels.service.clone(),
            route: self.labels.route.clone(),
            status_class,
        }
    }

    pub(crate) fn record(
        &mut self,
        family: &RequestMetrics,
        status_class: &'static str,
        seconds: f64,
        failed: bool,
    ) {
        let index = STATUS_CLASSES
            .iter()
            .position(|c| *c == status_class)
            .unwrap_or(STATUS_CLASSES.len() - 1);
        if self.requests[index].is_none() {
            let labels = self.request_labels(STATUS_CLASSES[index]);
            self.requests[index] = Some(family.requests.get_or_create(&labels).clone());
        }
        if let Some(counter) = &self.requests[index] {
            counter.inc();
        }
        if failed {
            self.errors.inc();
        }
        self.duration.observe(seconds);
    }
}
