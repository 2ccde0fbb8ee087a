//! The fleet view through a real Prometheus (Debian's `prometheus`): the
//! example config and rules pass `promtool`, a private Prometheus scrapes two
//! agents fed with known traffic, and the fleet-wide p95 it computes from the
//! summed buckets agrees with the exact p95 of the combined traffic within
//! the agent's bucket resolution, as do the example recording rule and a
//! Grafana panel's own query.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use telltale_tests::admin::wait_processed;
use telltale_tests::otlp::{SpanSpec, Transport, export_all, exporter};
use telltale_tests::prometheus::{PrivatePrometheus, promtool};
use telltale_tests::{AgentPorts, AgentProcess};

/// The agent's latency bucket bounds: `exponential_buckets(0.001, 1.5, 26)`
/// in agent/src/signals/prom.rs.
fn bucket_bounds() -> Vec<f64> {
    (0..26).map(|i| 0.001 * 1.5_f64.powi(i)).collect()
}

/// The `(lower, upper]` bucket holding `seconds`.
fn bucket_of(seconds: f64) -> (f64, f64) {
    let bounds = bucket_bounds();
    let upper = bounds.iter().position(|b| seconds <= *b).expect("in range");
    let lower = if upper == 0 { 0.0 } else { bounds[upper - 1] };
    (lower, bounds[upper])
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const ROUTE: &str = "/fleet";

async fn agent() -> (AgentProcess, AgentPorts) {
    let ports = AgentPorts::pick();
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n",
        ports.listeners_toml(false)
    );
    (
        AgentProcess::spawn(&config, &ports).await.expect("agent"),
        ports,
    )
}

/// SERVER spans of [`ROUTE`] for service `fleet`, one per duration in ms.
async fn send(ports: &AgentPorts, first_id: u64, millis: impl Iterator<Item = u64>) -> usize {
    let exporter = exporter(
        Transport::Grpc,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "fleet",
    )
    .expect("exporter");
    let spans: Vec<_> = millis
        .enumerate()
        .map(|(i, ms)| {
            let id = first_id + i as u64;
            SpanSpec::server(u128::from(id), id, ROUTE, Duration::from_millis(ms)).build()
        })
        .collect();
    let count = spans.len();
    export_all(&exporter, spans, 100).await.expect("export");
    count
}

/// The value of a one-sample query, waiting for Prometheus to have one.
async fn single_value(prometheus: &PrivatePrometheus, promql: &str) -> f64 {
    value_where(prometheus, promql, f64::is_finite).await
}

/// The value of a one-sample query, waiting until `accept` takes it.
async fn value_where(
    prometheus: &PrivatePrometheus,
    promql: &str,
    accept: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = prometheus.query(promql).await.expect("query");
        if let [(_, value)] = result.as_slice()
            && accept(*value)
        {
            return *value;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} → {result:?}\n{}",
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_example_config_and_rules_pass_promtool() {
    let dir = workspace().join("examples/prometheus");
    let config = dir.join("prometheus.yml");
    let rules = dir.join("telltale-rules.yml");
    let checked = promtool(&["check", "config", &config.to_string_lossy()])
        .await
        .expect("promtool check config");
    assert!(checked.contains("SUCCESS"), "{checked}");
    let checked = promtool(&["check", "rules", &rules.to_string_lossy()])
        .await
        .expect("promtool check rules");
    assert!(checked.contains("SUCCESS"), "{checked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_p95_over_two_agents_matches_the_combined_traffic() {
    let (agent_a, ports_a) = agent().await;
    let (agent_b, ports_b) = agent().await;
    let rules = workspace().join("examples/prometheus/telltale-rules.yml");
    let targets = [ports_a, ports_b].map(|p| format!("127.0.0.1:{}", p.admin));
    let prometheus = PrivatePrometheus::start(&targets, &[rules])
        .await
        .expect("private prometheus");

    // One request each first, so both histograms exist in Prometheus before
    // the measured traffic: rate() only sees increases between two scrapes.
    send(&ports_a, 1, std::iter::once(1)).await;
    send(&ports_b, 1, std::iter::once(1)).await;
    wait_processed(&agent_a, "traces", 1.0).await;
    wait_processed(&agent_b, "traces", 1.0).await;
    let baseline =
        format!("count(telltale_request_duration_seconds_count{{route=\"{ROUTE}\"}} == 1)");
    value_where(&prometheus, &baseline, |v| v == 2.0).await;
    let up = prometheus.targets_up().await.expect("up");
    assert!(up.len() == 2 && up.iter().all(|(_, v)| *v == 1.0), "{up:?}");

    // Agent A: 100 fast requests (10..=109 ms); agent B: 100 slow ones
    // (300..=399 ms). The p95 of the 200 is the 190th: B's 90th, 389 ms.
    let a: Vec<u64> = (10..110).collect();
    let b: Vec<u64> = (300..400).collect();
    send(&ports_a, 100, a.iter().copied()).await;
    send(&ports_b, 100, b.iter().copied()).await;
    wait_processed(&agent_a, "traces", 101.0).await;
    wait_processed(&agent_b, "traces", 101.0).await;
    let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    let rank = (0.95 * all.len() as f64).ceil() as usize;
    let exact_p95 = all[rank - 1] as f64 / 1000.0;
    assert_eq!(exact_p95, 0.389);
    let (lower, upper) = bucket_of(exact_p95);

    let total = format!("sum(telltale_request_duration_seconds_count{{route=\"{ROUTE}\"}})");
    value_where(&prometheus, &total, |v| v == 202.0).await;
    // One more scrape interval, so the window's last sample is past the traffic.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let fleet = format!(
        "histogram_quantile(0.95, sum by (le) (rate(telltale_request_duration_seconds_bucket{{route=\"{ROUTE}\"}}[1m])))"
    );
    let p95 = single_value(&prometheus, &fleet).await;
    assert!(
        lower < p95 && p95 <= upper,
        "fleet p95 {p95} s, exact {exact_p95} s: outside its bucket ({lower}, {upper}]"
    );
    // Averaging each agent's own p95 would land a bucket lower: the summed
    // buckets are what makes the fleet figure right.
    let per_agent = format!(
        "avg(histogram_quantile(0.95, sum by (instance, le) (rate(telltale_request_duration_seconds_bucket{{route=\"{ROUTE}\"}}[1m]))))"
    );
    let averaged = single_value(&prometheus, &per_agent).await;
    assert!(averaged <= lower, "averaged per-agent p95 {averaged} s");

    // The example recording rule gives the same figure.
    let recorded = format!(
        "service_route:telltale_request_duration_seconds:p95_5m{{service=\"fleet\", route=\"{ROUTE}\"}}"
    );
    let p95_rule = single_value(&prometheus, &recorded).await;
    assert!(
        lower < p95_rule && p95_rule <= upper,
        "recorded p95 {p95_rule} s outside ({lower}, {upper}]"
    );

    // A Grafana panel's own query, its variables set as Grafana would.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("dashboards/grafana/telltale-fleet.json"))
            .expect("the fleet dashboard"),
    )
    .expect("JSON");
    let panel = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == "Latency p50 / p95 / p99 (all selected routes)")
        .expect("the latency panel");
    let expr = panel["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["expr"].as_str().expect("expr"))
        .find(|e| e.starts_with("histogram_quantile(0.95"))
        .expect("the p95 target")
        .replace("$service", "fleet")
        .replace("$route", ROUTE)
        .replace("$instance", ".*");
    let panel_p95 = single_value(&prometheus, &expr).await;
    assert!(
        lower < panel_p95 && panel_p95 <= upper,
        "the panel's p95 {panel_p95} s outside ({lower}, {upper}]"
    );
}
