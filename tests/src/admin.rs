//! Reading a running agent's admin listener: its Prometheus exposition and
//! its JSON API, and waiting for the pipeline to catch up.

use std::time::{Duration, Instant};

use crate::agent::AgentProcess;
use crate::otlp::metric_value;

/// The agent's `/metrics` text.
pub async fn metrics_text(agent: &AgentProcess) -> String {
    reqwest::get(agent.admin_url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// `GET path` on the admin listener as JSON, with its status.
pub async fn api_json(agent: &AgentProcess, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(agent.admin_url(path))
        .await
        .expect("GET the admin API");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Waits until the pipeline has processed at least `expected` items of
/// `signal` (`traces`, `metrics`); returns the exposition at that moment.
pub async fn wait_processed(agent: &AgentProcess, signal: &str, expected: f64) -> String {
    let started = Instant::now();
    loop {
        let text = metrics_text(agent).await;
        let processed = metric_value(
            &text,
            "telltale_ingest_processed_items_total",
            &[("signal", signal)],
        )
        .unwrap_or(0.0);
        if processed >= expected {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "processed {processed} of {expected} {signal}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent on free ports with a memory check (no external service) and
/// `extra` TOML appended, for tests about telemetry rather than health.
pub async fn telemetry_agent(extra: &str) -> AgentProcess {
    let ports = crate::agent::AgentPorts::pick();
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n{extra}",
        ports.listeners_toml(false)
    );
    AgentProcess::spawn(&config, &ports).await.expect("agent")
}

/// Every exporter setting a round-trip test covers: each transport, with and
/// without gzip, with a service name of its own (`{prefix}-{transport}-{gzip}`).
pub fn exporter_settings(prefix: &str) -> Vec<(crate::otlp::Transport, bool, String)> {
    crate::otlp::Transport::ALL
        .into_iter()
        .flat_map(|transport| {
            [false, true].into_iter().map(move |gzip| {
                let service = format!(
                    "{prefix}-{}-{}",
                    transport.name(),
                    if gzip { "gzip" } else { "plain" }
                );
                (transport, gzip, service)
            })
        })
        .collect()
}
