//! Validation of the telemetry sections: the runtime's threads, ingest bounds,
//! series cap, alert rules and the upstream.

use super::{Config, ConfigError, Source};
use crate::config::RuntimeConfig;

/// The largest `ingest.max_request_size`: 1 GiB.
const MAX_REQUEST_SIZE: u64 = 1 << 30;

/// The windows the signal store keeps, in seconds.
const ALERT_WINDOWS: [u64; 4] = [60, 300, 900, 3600];

impl Source<'_> {
    pub(super) fn validate_telemetry(&self, raw: &Config) -> Result<(), ConfigError> {
        let refuse = |key: &str, message: String, advice: &str| {
            Err(ConfigError::new(self.origin, message)
                .key(key)
                .at(self.location(key))
                .advice(advice))
        };
        let ingest = &raw.ingest;
        if ingest.max_request_size.as_u64() < 1024 {
            return refuse(
                "ingest.max_request_size",
                format!(
                    "{} is too small for any OTLP request",
                    ingest.max_request_size
                ),
                "use at least 64 KiB; the default is 4 MiB",
            );
        }
        // Far above any OTLP request (collectors default to 4 MiB), and what
        // keeps a trace request's index offsets within 32 bits.
        if ingest.max_request_size.as_u64() > MAX_REQUEST_SIZE {
            return refuse(
                "ingest.max_request_size",
                format!(
                    "{} is above the largest request the agent reads (1 GiB)",
                    ingest.max_request_size
                ),
                "OTLP SDKs send batches of a few MiB; the default is 4 MiB",
            );
        }
        if raw
            .runtime
            .worker_threads
            .is_some_and(|n| !(1..=RuntimeConfig::MAX_WORKER_THREADS).contains(&n))
        {
            return refuse(
                "runtime.worker_threads",
                format!(
                    "worker_threads = {} is out of range",
                    raw.runtime.worker_threads.unwrap_or_default()
                ),
                "use 1 to 256 threads, or leave it out for half the cores",
            );
        }
        if ingest.queue_capacity == 0 || ingest.queue_capacity > 1_000_000 {
            return refuse(
                "ingest.queue_capacity",
                format!("queue_capacity = {} is out of range", ingest.queue_capacity),
                "use 1 to 1,000,000 requests; the default is 256",
            );
        }
        if ingest.memory_limit < ingest.max_request_size {
            return refuse(
                "ingest.memory_limit",
                format!(
                    "memory_limit ({}) is below max_request_size ({})",
                    ingest.memory_limit, ingest.max_request_size
                ),
                "the queue must hold at least one request: raise memory_limit",
            );
        }
        if raw.signals.max_series == 0 {
            return refuse(
                "signals.max_series",
                "max_series = 0 would keep no series at all".to_owned(),
                "use a positive cap; the default is 10000",
            );
        }
        if let Err((key, message, advice)) = raw.flame.check() {
            return refuse(key, message, advice);
        }
        if raw.alerts.evaluate_every < std::time::Duration::from_millis(100) {
            return refuse(
                "alerts.evaluate_every",
                format!(
                    "evaluate_every = {} is too short to be useful",
                    humantime::format_duration(raw.alerts.evaluate_every)
                ),
                "use at least 100ms; the default is 10s",
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, rule) in raw.alerts.rules.iter().enumerate() {
            let key = format!("alerts.rules.{i}");
            if rule.name.is_empty() || !names.insert(rule.name.as_str()) {
                return refuse(
                    &format!("{key}.name"),
                    format!("alert name `{}` is empty or used twice", rule.name),
                    "give every rule its own name",
                );
            }
            if !ALERT_WINDOWS.contains(&rule.window.as_secs()) || rule.window.subsec_nanos() != 0 {
                return refuse(
                    &format!("{key}.window"),
                    format!(
                        "window {} is not one the agent keeps",
                        humantime::format_duration(rule.window)
                    ),
                    "use 1m, 5m, 15m or 1h",
                );
            }
            if !rule.above.is_finite() || rule.above < 0.0 {
                return refuse(
                    &format!("{key}.above"),
                    format!("above = {} is not a usable threshold", rule.above),
                    "use a non-negative number in the signal's unit (seconds, ratio 0-1, requests/s)",
                );
            }
        }
        if let Some(webhook) = &raw.alerts.webhook
            && !matches!(webhook.expose().scheme(), "http" | "https")
        {
            return refuse(
                "alerts.webhook",
                format!("{webhook} is not an http(s) URL"),
                "use http:// or https://",
            );
        }
        if let Some(upstream) = &raw.upstream {
            if !matches!(upstream.endpoint.expose().scheme(), "http" | "https") {
                return refuse(
                    "upstream.endpoint",
                    format!("{} is not an http(s) URL", upstream.endpoint),
                    "use e.g. http://otel-collector:4317 for grpc or http://otel-collector:4318 for http",
                );
            }
            if upstream.batch_max_spans == 0 || upstream.queue_max_spans < upstream.batch_max_spans
            {
                return refuse(
                    "upstream.queue_max_spans",
                    format!(
                        "queue_max_spans ({}) must hold at least one batch of batch_max_spans ({}) spans",
                        upstream.queue_max_spans, upstream.batch_max_spans
                    ),
                    "raise queue_max_spans or lower batch_max_spans (both above zero)",
                );
            }
        }
        Ok(())
    }
}
