//! Configuration of trace assembly, the recent-trace ring and N+1 detection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Trace assembly and the recent-trace ring.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// Assemble traces at all (and so detect N+1 patterns and keep recent
    /// traces). Default true; false is the benchmark baseline.
    pub enabled: bool,
    /// A trace whose root has arrived is complete after this long without a
    /// new span. Default 1s. The root ends last, so what comes after it is
    /// work that outlived the request or another process's spans, exported
    /// on that process's own schedule: the Telltale SDK sends what it holds
    /// every 500 ms, so its spans arrive within about half a second of the
    /// root's. The OpenTelemetry SDKs' default delay is 5 s, which no
    /// quiet period short of that covers fully: raise it where services
    /// using those SDKs report here. Each second of it holds a second of
    /// spans in memory (about 2.5 MiB at 10,000 spans/s).
    #[serde(with = "humantime_serde")]
    pub quiet_period: Duration,
    /// A trace is complete at this age whatever arrives: a root that never
    /// comes (a sampled-out parent, a lost batch) cannot hold a trace forever.
    /// Default 30s: longer than any request worth assembling.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Traces in flight at most; the oldest is evicted (and still analysed,
    /// marked partial) to make room. Default 10,000: at 1,000 requests/s with a
    /// 1 s quiet period about 1,500 are in flight.
    pub max_traces: usize,
    /// Spans in flight at most, across traces; the oldest trace is evicted to
    /// make room. Default 200,000 (about 50 MiB at the ~260 bytes of RSS a
    /// span in flight takes, measured at 10,000 spans/s of realistic spans).
    pub max_spans: usize,
    /// Spans kept for one trace; further spans of it are dropped and counted.
    /// Default 10,000: a runaway loop of a million queries cannot take the
    /// whole span budget, and 10,000 repeats is evidence enough.
    pub max_spans_per_trace: usize,
    /// Most recently completed traces kept for `/api/v1/traces`. Default 100.
    pub recent_traces: usize,
    /// Slowest traces of the last hour kept. Default 20.
    pub slowest_traces: usize,
    /// Most recent traces with an ERROR span kept. Default 50.
    pub error_traces: usize,
    /// Most recent traces that gave an N+1 finding kept, with the repeated
    /// spans marked. Default 100.
    pub flagged_traces: usize,
    /// Spans held by all those lists together; the plain recent traces are
    /// evicted first, the flagged ones last. Default 100,000.
    pub ring_max_spans: usize,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            quiet_period: Duration::from_secs(1),
            max_age: Duration::from_secs(30),
            max_traces: 10_000,
            max_spans: 200_000,
            max_spans_per_trace: 10_000,
            recent_traces: 100,
            slowest_traces: 20,
            error_traces: 50,
            flagged_traces: 100,
            ring_max_spans: 100_000,
        }
    }
}

/// N+1 detection on assembled traces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NPlusOneConfig {
    /// Detect at all. Default true (needs `traces.enabled`).
    pub enabled: bool,
    /// Calls with the same template under one parent span that make a
    /// finding. Default 5: two or three lookups are often deliberate; five
    /// identical ones under one parent are a loop.
    pub min_repeats: usize,
    /// The repeated calls must take at least this long together. Default 0s:
    /// the agent often sees development traffic against a local database, where
    /// a round trip costs a tenth of what it costs in production, so the count
    /// is the signal; raise it (say to 10ms) to quiet cheap repeats in production.
    #[serde(with = "humantime_serde")]
    pub min_total_duration: Duration,
    /// Templates never reported, written as SQL or as `METHOD host/path` for
    /// HTTP; each is normalised like the spans' statements, so literals and
    /// spacing need not match. Default none.
    pub ignore: Vec<String>,
    /// Distinct findings kept (service × route × kind × template). Default
    /// 1,000; occurrences of further ones are counted and dropped.
    pub max_findings: usize,
    /// A finding not seen for this long is deleted. Default 7d: a week covers
    /// a weekly batch job, and a fixed N+1 leaves the list by itself.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// A finding is logged at WARN at most once per this period. Default 10m.
    #[serde(with = "humantime_serde")]
    pub log_interval: Duration,
}

impl Default for NPlusOneConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_repeats: 5,
            min_total_duration: Duration::ZERO,
            ignore: Vec::new(),
            max_findings: 1_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            log_interval: Duration::from_secs(600),
        }
    }
}
