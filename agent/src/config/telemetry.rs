//! Configuration of the telemetry side: OTLP ingest and its bounds, the golden
//! signals, alert rules, and forwarding to an upstream collector.

use std::collections::BTreeMap;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{Dsn, Secret};

/// OTLP ingest limits. Everything between the receivers and the pipeline is
/// bounded by these; what does not fit is refused with a retryable answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request accepted, measured after decompression. Default 4 MiB
    /// (the OTLP/gRPC default message size): larger → HTTP 413 /
    /// gRPC RESOURCE_EXHAUSTED, not retryable.
    pub max_request_size: ByteSize,
    /// Requests queued between the receivers and the pipeline. Default 256:
    /// at 100 spans per request, a few seconds of a busy service.
    pub queue_capacity: usize,
    /// Bytes the queued requests may hold at once (a trace request's protobuf
    /// and its index, a metrics request's body). Default 64 MiB: bounds memory
    /// whatever the request sizes. Over it → HTTP 503 / gRPC UNAVAILABLE + retry.
    pub memory_limit: ByteSize,
    /// How long refused clients are told to wait (`Retry-After`, RetryInfo).
    /// Default 1s: long enough for the pipeline to catch up, short enough that
    /// SDK export queues do not overflow meanwhile.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Test hook: delay added to every batch the pipeline processes, to make
    /// backpressure observable. Default 0s; never set it in production.
    #[serde(with = "humantime_serde")]
    pub pipeline_delay: Duration,
    /// Benchmark baseline: receive, decode, validate and queue every request as
    /// usual, then drop it (no golden signals, no forwarding). Default false.
    pub discard: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_request_size: ByteSize::mib(4),
            queue_capacity: 256,
            memory_limit: ByteSize::mib(64),
            retry_after: Duration::from_secs(1),
            pipeline_delay: Duration::ZERO,
            discard: false,
        }
    }
}

/// Golden signals from entry spans and app metrics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Most service × route series kept. Default 10,000; spans of further
    /// routes count in one overflow series per service (route `__overflow__`),
    /// so a route with IDs in it cannot exhaust memory.
    pub max_series: usize,
    /// Names of app gauges (OTLP metrics) reported as saturation besides the
    /// database pool, e.g. `["queue.depth", "jobs.in_flight"]`. Default none.
    pub saturation_gauges: Vec<String>,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self {
            max_series: 10_000,
            saturation_gauges: Vec::new(),
        }
    }
}

/// Which value an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSignal {
    /// Latency quantiles, in seconds.
    LatencyP50,
    /// 90th percentile latency, seconds.
    LatencyP90,
    /// 95th percentile latency, seconds.
    LatencyP95,
    /// 99th percentile latency, seconds.
    LatencyP99,
    /// Failed share of requests, 0–1.
    ErrorRatio,
    /// Requests per second.
    Traffic,
    /// Host CPU use, 0–1.
    CpuUtilization,
    /// Host memory use, 0–1.
    MemoryUtilization,
    /// Root filesystem use, 0–1.
    DiskUtilization,
    /// Database pool in use over its maximum, 0–1.
    PoolUtilization,
}

/// One alert rule: fires when `signal` stays above `above` for `for`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique name: the `alert` label and the API key.
    pub name: String,
    /// What to watch.
    pub signal: AlertSignal,
    /// The threshold, in the signal's unit (seconds, ratio 0–1, requests/s).
    pub above: f64,
    /// How long the value must stay above before the alert fires. Default 1m.
    #[serde(
        default = "default_alert_for",
        rename = "for",
        with = "humantime_serde"
    )]
    pub for_: Duration,
    /// The window the value is computed over: 1m, 5m, 15m or 1h. Default 1m.
    #[serde(default = "default_alert_window", with = "humantime_serde")]
    pub window: Duration,
    /// Only this service (request signals). Default: every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only this route (request signals). Default: every route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

fn default_alert_for() -> Duration {
    Duration::from_secs(60)
}

fn default_alert_window() -> Duration {
    Duration::from_secs(60)
}

/// Alert evaluation and notification.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often rules are evaluated. Default 10s.
    #[serde(with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// POSTed a JSON body on every firing / resolved transition. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Dsn>,
    /// The rules.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            evaluate_every: Duration::from_secs(10),
            webhook: None,
            rules: Vec::new(),
        }
    }
}

/// How spans and metrics are sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// OTLP/gRPC (`http://collector:4317`).
    Grpc,
    /// OTLP/HTTP protobuf (`http://collector:4318`; `/v1/traces` is appended).
    Http,
}

/// Forwarding to the collector or backend the user already runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The collector's base URL, e.g. `http://otel-collector:4317`.
    pub endpoint: Dsn,
    /// `grpc` (default) or `http`.
    #[serde(default = "default_protocol")]
    pub protocol: UpstreamProtocol,
    /// Extra headers on every export (e.g. an API key). Values are never shown.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Largest batch sent at once, in spans. Default 8,192.
    #[serde(default = "default_batch_max_spans")]
    pub batch_max_spans: usize,
    /// How long a partial batch waits for more spans. Default 1s.
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Spans held for (re)sending while the upstream is slow or down. Default
    /// 100,000; when full, the oldest are dropped and counted.
    #[serde(default = "default_queue_max_spans")]
    pub queue_max_spans: usize,
    /// Longest wait between retries (backoff doubles up to it, or follows the
    /// upstream's throttling hint). Default 30s.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Timeout of one export call. Default 10s.
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Also export the golden signals as OTLP metrics. Default true.
    #[serde(default = "default_true")]
    pub export_metrics: bool,
    /// How often golden-signal metrics are exported. Default 60s.
    #[serde(default = "default_metrics_interval", with = "humantime_serde")]
    pub metrics_interval: Duration,
}

fn default_protocol() -> UpstreamProtocol {
    UpstreamProtocol::Grpc
}
fn default_batch_max_spans() -> usize {
    8_192
}
fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_max_spans() -> usize {
    100_000
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}
fn default_metrics_interval() -> Duration {
    Duration::from_secs(60)
}
