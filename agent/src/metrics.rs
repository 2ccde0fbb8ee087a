//! The agent's Prometheus registry (served on the admin listener's `/metrics`).
//! Each capability owns a small struct of metric families registered here;
//! labels are bounded by configuration (check names), never by request data.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The content type of the text exposition format.
pub const PROMETHEUS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the agent exports: a registry filled by each capability at
/// start-up (`XxxMetrics::register(&mut registry)`), then frozen.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    scrapes: Arc<Semaphore>,
    refused_scrapes: Counter,
}

/// Most scrapes served at once. A scrape holds its whole exposition (tens of
/// megabytes with 10,000 series) until the client has read it, so scrapers
/// arriving together, or clients that read slowly, are what bounds the
/// memory `/metrics` takes; past this many they get 503 with `Retry-After`.
pub const MAX_SCRAPES_AT_ONCE: usize = 4;

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
    pub fn new(mut registry: Registry) -> Arc<Self> {
        let refused_scrapes = Counter::default();
        registry.register(
            "metrics_refused_scrapes",
            format!(
                "Scrapes of /metrics answered 503 because {MAX_SCRAPES_AT_ONCE} were being served"
            ),
            refused_scrapes.clone(),
        );
        Arc::new(Self {
            registry,
            scrapes: Arc::new(Semaphore::new(MAX_SCRAPES_AT_ONCE)),
            refused_scrapes,
        })
    }

    /// A place among the scrapes being served, held by the response body
    /// until it is read, dropped or past its deadline (`server::scrape_body`);
    /// `None` (and counted) when all are taken.
    pub fn scrape_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = Arc::clone(&self.scrapes).try_acquire_owned().ok();
        if slot.is_none() {
            self.refused_scrapes.inc();
        }
        slot
    }

    /// The exposition text, in chunks of about [`EXPOSITION_CHUNK`] bytes.
    ///
    /// Why chunks: with RUM's per-page histograms the text runs to megabytes,
    /// and one `String` grown by doubling for it takes twice that at its peak
    /// and leaves the allocator holding the difference after every scrape.
    pub fn encode(&self) -> Vec<Bytes> {
        let mut out = ChunkedText::default();
        // Writing into memory cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out.finish()
    }
}

/// The size of one piece of the exposition text.
pub const EXPOSITION_CHUNK: usize = 64 * 1024;

/// Text written in fixed-size pieces, none ever reallocated.
#[derive(Debug, Default)]
struct ChunkedText {
    done: Vec<Bytes>,
    current: String,
}

impl ChunkedText {
    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(Bytes::from(self.current));
        }
        self.done
    }
}

impl std::fmt::Write for ChunkedText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.current.len() + s.len() > self.current.capacity() {
            if !self.current.is_empty() {
                let full = std::mem::take(&mut self.current);
                self.done.push(Bytes::from(full));
            }
            self.current.reserve_exact(EXPOSITION_CHUNK.max(s.len()));
        }
        self.current.push_str(s);
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    #[test]
    fn chunked_text_keeps_every_byte_in_bounded_pieces() {
        let mut chunked = ChunkedText::default();
        let mut whole = String::new();
        for i in 0..20_000 {
            let line = format!("telltale_example_total{{page=\"/p/{i}\"}} {i}\n");
            chunked.write_str(&line).unwrap();
            whole.push_str(&line);
        }
        let big = "x".repeat(EXPOSITION_CHUNK * 2);
        chunked.write_str(&big).unwrap();
        whole.push_str(&big);
        let chunks = chunked.finish();
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        let (last, rest) = chunks.split_last().unwrap();
        assert_eq!(
            last.len(),
            big.len(),
            "an oversized write is one piece of its own"
        );
        assert!(rest.iter().all(|c| c.len() <= EXPOSITION_CHUNK));
        assert_eq!(chunks.concat(), whole.as_bytes());
    }

    #[test]
    fn the_registry_encodes_to_the_text_format() {
        let mut registry = new_registry();
        let health = HealthMetrics::register(&mut registry);
        health.ready.set(1);
        let text = String::from_utf8(Metrics::new(registry).encode().concat()).unwrap();
        assert!(text.contains("telltale_health_ready 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn scrapes_past_the_limit_are_refused_and_counted_until_one_ends() {
        let metrics = Metrics::new(new_registry());
        let held: Vec<_> = (0..MAX_SCRAPES_AT_ONCE)
            .map(|_| metrics.scrape_slot().expect("a free slot"))
            .collect();
        assert!(metrics.scrape_slot().is_none());
        assert!(metrics.scrape_slot().is_none());
        drop(held);
        assert!(
            metrics.scrape_slot().is_some(),
            "slots come back when scrapes end"
        );
        let text = String::from_utf8(metrics.encode().concat()).unwrap();
        assert!(
            text.contains("telltale_metrics_refused_scrapes_total 2\n"),
            "{text}"
        );
    }
}
