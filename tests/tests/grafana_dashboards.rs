//! The Grafana dashboards (`dashboards/grafana/*.json`) and the Prometheus
//! rules (`examples/prometheus/telltale-rules.yml`) query only metrics the
//! agent exports: every `telltale_*` name in them must be a family a real
//! agent serves on `/metrics` after OTLP spans, RUM beacons and an alert.
//! The dashboards are importable: a `${datasource}` Prometheus variable that
//! every panel and variable query uses, unique panel ids, a current schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use telltale_tests::admin::{metrics_text, wait_processed};
use telltale_tests::otlp::{SpanSpec, Transport, export_all, exporter};
use telltale_tests::{AgentPorts, AgentProcess, http_client};

/// Metrics of capabilities not merged into this branch yet, with where they
/// are registered. The lead removes each entry when its branch is merged
/// (the test fails while an entry is both listed and exported, as a reminder).
const NOT_MERGED_YET: &[(&str, &str)] = &[];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = workspace().join("dashboards/grafana");
    let mut found: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            (path, json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 2, "dashboards in {}", dir.display());
    found
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL text a dashboard runs: panel targets and variable queries.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out: Vec<String> = panels(dashboard)
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .map(|t| t["expr"].as_str().expect("a target's expr").to_owned())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            out.push(variable["definition"].as_str().unwrap().to_owned());
        }
    }
    out
}

/// The `telltale_*` identifiers in a PromQL text (label values are quoted
/// and never start with `telltale_` here; recording rule names hold a `:`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("telltale_") {
        let start = i + found;
        let preceded = start > 0 && {
            let c = bytes[start - 1];
            c.is_ascii_alphanumeric() || c == b'_' || c == b':'
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let followed_by_colon = end < bytes.len() && bytes[end] == b':';
        if !preceded && !followed_by_colon {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The sample names an exposition can hold, from its `# TYPE` lines (so a
/// family without samples yet, e.g. pools nobody reported, still counts).
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_count", "_sum"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// An agent that has seen every kind of input the dashboards chart.
async fn fed_agent() -> AgentProcess {
    let ports = AgentPorts::pick();
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n\n[alerts]\nevaluate_every = \"1s\"\n\n[[alerts.rules]]\nname = \"slow\"\nsignal = \"latency_p95\"\nabove = 0.001\nfor = \"0s\"\n\n[ingest]\nqueue_capacity = 1\npipeline_delay = \"300ms\"\n",
        ports.listeners_toml(false)
    );
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let exporter = exporter(
        Transport::Grpc,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "shop",
    )
    .expect("exporter");
    let mut spans: Vec<_> = (1..=50_u64)
        .map(|id| {
            let span = SpanSpec::server(
                u128::from(id),
                id,
                "/checkout",
                Duration::from_millis(5 + id),
            );
            if id % 5 == 0 { span.error() } else { span }.build()
        })
        .collect();
    // An N+1: six identical queries under one request, for the findings panels.
    let loop_trace = 1_000_u128;
    spans.push(SpanSpec::server(loop_trace, 1_000, "/orders", Duration::from_millis(40)).build());
    for i in 0..6_u64 {
        spans.push(
            SpanSpec::client(
                loop_trace,
                1_001 + i,
                1_000,
                "SELECT",
                Duration::from_millis(2),
            )
            .attr(opentelemetry::KeyValue::new("db.system.name", "postgresql"))
            .attr(opentelemetry::KeyValue::new(
                "db.query.text",
                "SELECT name FROM customers WHERE id = $1",
            ))
            .build(),
        );
    }
    export_all(&exporter, spans, 57).await.expect("export");
    wait_processed(&agent, "traces", 57.0).await;
    telltale_tests::wait_until(
        "the N+1 finding's counter",
        Duration::from_secs(30),
        || async {
            metrics_text(&agent)
                .await
                .contains("telltale_n_plus_one_total{")
        },
    )
    .await
    .expect("the N+1 counter");
    let beacon = r#"{"page":"/home","device":"mobile","metrics":[{"name":"LCP","value":2100,"id":"l1"},{"name":"INP","value":150,"id":"i1"},{"name":"FCP","value":900,"id":"f1"},{"name":"TTFB","value":300,"id":"t1"},{"name":"CLS","value":0.02,"id":"c1"}]}"#;
    let response = http_client()
        .post(agent.public_url("/rum"))
        .header("content-type", "text/plain")
        .body(beacon)
        .send()
        .await
        .expect("POST /rum");
    assert_eq!(response.status(), 202);
    // A refused beacon (malformed), counted by reason.
    let response = http_client()
        .post(agent.public_url("/rum"))
        .header("content-type", "text/plain")
        .body("{not json")
        .send()
        .await
        .expect("POST /rum");
    assert_eq!(response.status(), 400);
    send_pool_metrics(&agent).await;
    // Accepted metrics go through the (deliberately slow) pipeline.
    telltale_tests::wait_until("the pool gauge", Duration::from_secs(30), || async {
        metrics_text(&agent)
            .await
            .contains("telltale_app_pool_utilization{")
    })
    .await
    .expect("the pool gauge from OTLP metrics");
    refuse_some_spans(&agent).await;
    agent
}

/// The app's database pool (8 of 10 connections used) as OTLP/HTTP JSON.
async fn send_pool_metrics(agent: &AgentProcess) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    let point = |value: i64, state: Option<&str>| {
        let mut attributes = vec![
            serde_json::json!({"key": "db.client.connection.pool.name", "value": {"stringValue": "main"}}),
        ];
        if let Some(state) = state {
            attributes.push(serde_json::json!({"key": "db.client.connection.state", "value": {"stringValue": state}}));
        }
        serde_json::json!({"asInt": value.to_string(), "timeUnixNano": now, "attributes": attributes})
    };
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "db.client.connection.count", "sum": {"aggregationTemporality": 2, "isMonotonic": false,
                "dataPoints": [point(8, Some("used")), point(2, Some("idle"))]}},
            {"name": "db.client.connection.max", "gauge": {"dataPoints": [point(10, None)]}},
        ]}],
    }]});
    let response = http_client()
        .post(format!(
            "http://127.0.0.1:{}/v1/metrics",
            agent.agent_ports().unwrap().otlp_http
        ))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /v1/metrics");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

/// Requests beyond a one-slot queue (the pipeline pauses per batch) are
/// refused and counted. Rounds of concurrent requests until one is refused:
/// on a loaded machine one round can arrive slowly enough to fit the queue.
async fn refuse_some_spans(agent: &AgentProcess) {
    let url = format!(
        "http://127.0.0.1:{}/v1/traces",
        agent.agent_ports().unwrap().otlp_http
    );
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /x","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let client = http_client();
    let mut seen = Vec::new();
    for _round in 0..20 {
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let request = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body);
            sends.spawn(async move {
                request
                    .send()
                    .await
                    .expect("POST /v1/traces")
                    .status()
                    .as_u16()
            });
        }
        let statuses: Vec<u16> = sends.join_all().await;
        assert!(
            statuses.iter().all(|s| [200, 429, 503].contains(s)),
            "{statuses:?}"
        );
        seen.extend_from_slice(&statuses);
        if statuses.iter().any(|s| *s == 429 || *s == 503) {
            return;
        }
    }
    panic!("no request was refused by a one-slot queue: {seen:?}");
}

#[test]
fn dashboards_are_importable_with_a_prometheus_datasource_variable() {
    for (path, dashboard) in dashboards() {
        let name = path.display();
        assert!(
            dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{name}: uid"
        );
        assert!(
            dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}: a current schemaVersion"
        );
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables.iter().any(|v| v["type"] == "datasource"
                && v["name"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: a `datasource` variable of type prometheus"
        );
        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            assert!(
                ids.insert(panel["id"].as_u64().expect("panel id")),
                "{name}: duplicate panel id {}",
                panel["id"]
            );
            assert!(
                panel["gridPos"]["w"].as_u64().is_some(),
                "{name}: gridPos of {}",
                panel["title"]
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                panel["title"]
            );
            for target in panel["targets"].as_array().expect("targets") {
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{name}: {}",
                    panel["title"]
                );
            }
        }
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                variable["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                variable["name"]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboards_and_rules_query_is_exported() {
    let agent = fed_agent().await;
    // The alert fires within a second or two; its family holds a sample then.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exposition = loop {
        let text = metrics_text(&agent).await;
        if text.contains("telltale_alert_firing{") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exported = exported(&exposition);

    let mut sources: Vec<(String, BTreeSet<String>)> = dashboards()
        .into_iter()
        .map(|(path, dashboard)| {
            let names = queries(&dashboard)
                .iter()
                .flat_map(|q| metric_names(q))
                .collect();
            (path.display().to_string(), names)
        })
        .collect();
    let rules: &Path = &workspace().join("examples/prometheus/telltale-rules.yml");
    let rules_text = std::fs::read_to_string(rules).expect("the example rules");
    sources.push((rules.display().to_string(), metric_names(&rules_text)));

    let mut missing = Vec::new();
    let mut queried = BTreeSet::new();
    for (source, names) in &sources {
        assert!(!names.is_empty(), "{source} queries no telltale metric");
        for name in names {
            queried.insert(name.clone());
            let waived = NOT_MERGED_YET.iter().any(|(n, _)| n == name);
            if !exported.contains(name) && !waived {
                missing.push(format!("{source}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported:\n{}\n\nexported:\n{exported:#?}",
        missing.join("\n")
    );
    for (name, origin) in NOT_MERGED_YET {
        assert!(
            !exported.contains(*name),
            "{name} is exported now ({origin} is merged): remove it from NOT_MERGED_YET"
        );
        assert!(
            queried.contains(*name),
            "{name} is allow-listed but no longer queried"
        );
    }
    // The golden signals are charted as fleet-wide quantiles over summed buckets.
    let fleet = std::fs::read_to_string(workspace().join("dashboards/grafana/telltale-fleet.json"))
        .unwrap();
    assert!(fleet.contains(
        "histogram_quantile(0.95, sum by (le) (rate(telltale_request_duration_seconds_bucket"
    ));
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le) (rate(telltale_request_duration_seconds_bucket{service=~"$service"}[5m]))) / service:telltale_requests:rate5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["telltale_request_duration_seconds_bucket"]
    );
}
