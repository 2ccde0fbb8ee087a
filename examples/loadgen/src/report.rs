//! Counting outcomes and request latencies, and the report printed at the end.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use sketches_ddsketch::{Config, DDSketch};

use crate::send::Outcome;

/// One worker's counts.
#[derive(Clone)]
pub(crate) struct Tally {
    requests: u64,
    spans_sent: u64,
    spans_accepted: u64,
    spans_rejected: u64,
    refused: u64,
    failed: u64,
    latency: DDSketch,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            requests: 0,
            spans_sent: 0,
            spans_accepted: 0,
            spans_rejected: 0,
            refused: 0,
            failed: 0,
            latency: DDSketch::new(Config::new(0.01, 2048, 1e-9)),
        }
    }
}

impl Tally {
    /// Counts one request of `spans` spans that took `took`.
    pub(crate) fn record(&mut self, outcome: Outcome, spans: u64, took: Duration) {
        self.requests += 1;
        self.spans_sent += spans;
        match outcome {
            Outcome::Accepted { rejected } => {
                self.spans_accepted += spans.saturating_sub(rejected);
                self.spans_rejected += rejected.min(spans);
            }
            Outcome::Refused => self.refused += 1,
            Outcome::Failed => self.failed += 1,
        }
        self.latency.add(took.as_secs_f64());
    }

    /// Adds another worker's counts.
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.spans_sent += other.spans_sent;
        self.spans_accepted += other.spans_accepted;
        self.spans_rejected += other.spans_rejected;
        self.refused += other.refused;
        self.failed += other.failed;
        // Same configuration on both sides: merge cannot fail.
        let _ = self.latency.merge(&other.latency);
    }
}

/// Request latency quantiles, milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct LatencyMs {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// The run's result.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    protocol: &'static str,
    spans_per_request: u32,
    connections: u32,
    target_spans_per_second: u64,
    seconds: f64,
    requests: u64,
    spans_sent: u64,
    spans_accepted: u64,
    spans_rejected: u64,
    requests_refused: u64,
    requests_failed: u64,
    accepted_spans_per_second: f64,
    requests_per_second: f64,
    latency_ms: Option<LatencyMs>,
}

impl Report {
    /// The report of a run that lasted `elapsed`.
    pub(crate) fn new(
        tally: &Tally,
        elapsed: Duration,
        target: u64,
        spans_per_request: u32,
        connections: u32,
        protocol: &'static str,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        let q = |q: f64| tally.latency.quantile(q).ok().flatten().map(|s| s * 1e3);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        Self {
            protocol,
            spans_per_request,
            connections,
            target_spans_per_second: target,
            seconds,
            requests: tally.requests,
            spans_sent: tally.spans_sent,
            spans_accepted: tally.spans_accepted,
            spans_rejected: tally.spans_rejected,
            requests_refused: tally.refused,
            requests_failed: tally.failed,
            accepted_spans_per_second: tally.spans_accepted as f64 / seconds,
            requests_per_second: tally.requests as f64 / seconds,
            latency_ms: Some(LatencyMs {
                p50: q(0.5).unwrap_or(0.0),
                p90: q(0.9).unwrap_or(0.0),
                p99: q(0.99).unwrap_or(0.0),
                max: tally.latency.max().map_or(0.0, |s| s * 1e3),
            })
            .filter(|_| tally.requests > 0),
        }
    }

    /// The report as a few human lines.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} x{} conns, {} spans/request, {:.1}s: {:.0} spans/s accepted, {:.0} requests/s",
            self.protocol,
            self.connections,
            self.spans_per_request,
            self.seconds,
            self.accepted_spans_per_second,
            self.requests_per_second
        );
        let _ = writeln!(
            out,
            "sent {} spans in {} requests; accepted {}, rejected {}; refused requests {}, failed {}",
            self.spans_sent,
            self.requests,
            self.spans_accepted,
            self.spans_rejected,
            self.requests_refused,
            self.requests_failed
        );
        if let Some(l) = &self.latency_ms {
            let _ = writeln!(
                out,
                "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                l.p50, l.p90, l.p99, l.max
            );
        }
        out
    }
}
