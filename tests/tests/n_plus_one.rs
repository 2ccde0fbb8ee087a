//! N+1 detection end to end: the real agent receives real OTLP traces shaped
//! like the Telltale SDK's (DB CLIENT spans with `db.system.name` and
//! `db.query.text` under the request's SERVER span), assembles them, and must
//! show exactly one finding with its evidence on `/api/v1/findings`, the
//! finding's trace on `/api/v1/traces/{id}`, the count on `/metrics`, a WARN
//! line, and the same finding after a restart on the same database. Bad input
//! (missing parents, parent cycles, a million spans in one trace) stays bounded.

use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_sdk::trace::SpanData;
use serde_json::Value;
use telltale_tests::admin::{api_json, metrics_text, wait_processed};
use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::otlp::{SpanSpec, Transport, export_all, exporter, metric_value};
use telltale_tests::wait_until;

const ORDERS_QUERY: &str = "SELECT id, customer_id, total FROM orders ORDER BY id DESC LIMIT $1";
const CUSTOMER_QUERY: &str = "SELECT id, name, email FROM customers WHERE id = $1";
const JOIN_QUERY: &str = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id DESC LIMIT $1";

/// An agent on free ports keeping its database at `db`, completing traces
/// `quiet` after their last span, with `traces` keys added to `[traces]`.
async fn agent_with_db(db: &std::path::Path, quiet: &str, traces: &str) -> AgentProcess {
    let ports = AgentPorts::pick();
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n[storage]\npath = \"{}\"\n[shutdown]\ndrain_period = \"0s\"\n[traces]\nquiet_period = \"{quiet}\"\n{traces}",
        ports.listeners_toml(false),
        db.display()
    );
    AgentProcess::spawn(&config, &ports).await.expect("agent")
}

/// A DB CLIENT span as the SDK sends it.
fn db_span(trace: u128, id: u64, parent: u64, query: &str, start: SystemTime, ms: u64) -> SpanData {
    let operation = query
        .split_whitespace()
        .next()
        .unwrap_or("SELECT")
        .to_owned();
    SpanSpec::client(trace, id, parent, &operation, Duration::from_millis(ms))
        .starting_at(start)
        .attr(KeyValue::new("db.system.name", "postgresql"))
        .attr(KeyValue::new("db.query.text", query.to_owned()))
        .attr(KeyValue::new("db.operation.name", operation))
        .attr(KeyValue::new("server.address", "127.0.0.1"))
        .build()
}

/// `GET /orders`: the list query, then one customer query per order.
fn orders_trace(trace: u128, orders: u64) -> Vec<SpanData> {
    let start = SystemTime::now() - Duration::from_millis(100);
    let root = trace as u64;
    let mut spans = vec![
        SpanSpec::server(trace, root, "/orders", Duration::from_millis(60))
            .starting_at(start)
            .build(),
        db_span(
            trace,
            root + 1,
            root,
            ORDERS_QUERY,
            start + Duration::from_millis(1),
            2,
        ),
    ];
    for i in 0..orders {
        let at = start + Duration::from_millis(4 + i * 2);
        spans.push(db_span(trace, root + 10 + i, root, CUSTOMER_QUERY, at, 1));
    }
    spans
}

/// `GET /orders/fast`: one JOIN.
fn fast_orders_trace(trace: u128) -> Vec<SpanData> {
    let start = SystemTime::now() - Duration::from_millis(100);
    let root = trace as u64;
    vec![
        SpanSpec::server(trace, root, "/orders/fast", Duration::from_millis(10))
            .starting_at(start)
            .build(),
        db_span(
            trace,
            root + 1,
            root,
            JOIN_QUERY,
            start + Duration::from_millis(1),
            3,
        ),
    ]
}

async fn findings(agent: &AgentProcess, query: &str) -> Vec<Value> {
    let (status, body) = api_json(agent, &format!("/api/v1/findings{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["findings"].as_array().expect("findings").clone()
}

async fn wait_findings(agent: &AgentProcess, query: &str, count: usize) -> Vec<Value> {
    wait_until("findings on the API", Duration::from_secs(30), || async {
        findings(agent, query).await.len() >= count
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- telltale output ---\n{}", agent.logs()));
    findings(agent, query).await
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_loop_gives_one_finding_with_its_evidence_that_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("telltale.db");
    let mut agent = agent_with_db(&db, "200ms", "").await;
    let ports = agent.agent_ports().unwrap();
    let exporter = exporter(
        Transport::HttpProtobuf,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "shop",
    )
    .expect("exporter");
    let orders_id: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;
    let fast_id: u128 = 0x1bf7_6519_16cd_43dd_8448_eb21_1c80_319c;
    let mut spans = orders_trace(orders_id, 10);
    spans.extend(fast_orders_trace(fast_id));
    let sent = spans.len();
    export_all(&exporter, spans, 100).await.expect("export");
    wait_processed(&agent, "traces", sent as f64).await;

    let found = wait_findings(&agent, "", 1).await;
    // The fast trace may complete a sweep later: wait until both were analysed.
    wait_until("both traces analysed", Duration::from_secs(30), || async {
        metric_value(
            &metrics_text(&agent).await,
            "telltale_n_plus_one_analysed_traces_total",
            &[],
        )
        .unwrap_or(0.0)
            >= 2.0
    })
    .await
    .unwrap();
    let found_now = findings(&agent, "").await;
    assert_eq!(found_now.len(), 1, "exactly one finding: {found_now:#?}");
    assert_eq!(found[0]["id"], found_now[0]["id"]);
    let finding = &found_now[0];
    let orders_hex = format!("{orders_id:032x}");
    assert_eq!(finding["kind"], "n_plus_one_query");
    assert_eq!(finding["service"], "shop");
    assert_eq!(finding["route"], "/orders");
    assert_eq!(
        finding["template"],
        "SELECT id, name, email FROM customers WHERE id = ?"
    );
    assert_eq!(
        finding["sourceTemplate"],
        "SELECT id, customer_id, total FROM orders ORDER BY id DESC LIMIT ?"
    );
    assert_eq!(finding["system"], "postgresql");
    assert_eq!(finding["count"], 10);
    assert_eq!(finding["worstCount"], 10);
    assert_eq!(finding["typicalCount"], 10);
    assert_eq!(finding["occurrences"], 1);
    assert_eq!(finding["totalDurationNanos"], 10_000_000);
    assert_eq!(finding["perCallNanos"], 1_000_000);
    assert_eq!(finding["savedNanos"], 9_000_000);
    assert_eq!(finding["parentSpanName"], "GET /orders");
    assert_eq!(finding["exampleTraceId"], orders_hex.as_str());
    assert!(
        finding["fix"].as_str().unwrap().starts_with("eager load"),
        "{finding}"
    );
    assert_eq!(finding["exampleSpanIds"].as_array().unwrap().len(), 10);

    // Filters.
    assert!(findings(&agent, "?route=/orders/fast").await.is_empty());
    assert_eq!(
        findings(&agent, "?service=shop&route=/orders&kind=n_plus_one_query")
            .await
            .len(),
        1
    );
    assert!(findings(&agent, "?kind=n_plus_one_http").await.is_empty());
    let (status, body) = api_json(&agent, "/api/v1/findings?kind=n_plus_two").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("n_plus_two"),
        "{body}"
    );
    let (status, _) = api_json(&agent, "/api/v1/findings?colour=red").await;
    assert_eq!(status, 400);

    // The finding's trace, with the repeated spans marked.
    let (status, trace) = api_json(&agent, &format!("/api/v1/traces/{orders_hex}")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["traceId"], orders_hex.as_str());
    assert_eq!(trace["partial"], false);
    assert_eq!(trace["spans"].as_array().unwrap().len(), 12);
    let marks = trace["marks"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "{trace}");
    assert_eq!(marks[0]["findingId"], finding["id"]);
    assert_eq!(marks[0]["spanIds"], finding["exampleSpanIds"]);
    let (status, recent) = api_json(&agent, "/api/v1/traces?list=recent").await;
    assert_eq!(status, 200);
    assert_eq!(recent["traces"].as_array().unwrap().len(), 2, "{recent}");
    let (status, flagged) = api_json(&agent, "/api/v1/traces?list=flagged").await;
    assert_eq!(status, 200);
    assert_eq!(flagged["traces"][0]["traceId"], orders_hex.as_str());
    assert_eq!(flagged["traces"][0]["route"], "/orders");

    // Metrics and the WARN line with the example trace id.
    let text = metrics_text(&agent).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_n_plus_one_total",
            &[
                ("service", "shop"),
                ("route", "/orders"),
                ("kind", "n_plus_one_query")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "telltale_n_plus_one_total",
            &[("route", "/orders/fast")]
        ),
        None
    );
    assert_eq!(
        metric_value(&text, "telltale_n_plus_one_findings", &[]),
        Some(1.0)
    );
    agent
        .wait_for_log(&orders_hex, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        agent
            .logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("N+1") && l.contains(&orders_hex)),
        "{}",
        agent.logs()
    );

    // A second occurrence with more repeats updates the same finding.
    let second: u128 = 0x2cf7_6519_16cd_43dd_8448_eb21_1c80_319c;
    export_all(&exporter, orders_trace(second, 14), 100)
        .await
        .unwrap();
    wait_until("a second occurrence", Duration::from_secs(30), || async {
        findings(&agent, "").await[0]["occurrences"] == 2
    })
    .await
    .unwrap();
    let updated = findings(&agent, "").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["worstCount"], 14);
    assert_eq!(updated[0]["count"], 14);
    assert_eq!(
        updated[0]["exampleTraceId"],
        format!("{second:032x}").as_str()
    );
    assert_eq!(updated[0]["firstSeenUnixMs"], finding["firstSeenUnixMs"]);

    // Restart on the same database: the finding is there before any traffic.
    agent.signal(Signal::SIGTERM).unwrap();
    let status = agent.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{status}");
    drop(agent);
    let agent = agent_with_db(&db, "200ms", "").await;
    let restored = findings(&agent, "").await;
    assert_eq!(restored.len(), 1, "{restored:#?}");
    for key in [
        "id",
        "kind",
        "service",
        "route",
        "template",
        "sourceTemplate",
        "occurrences",
        "worstCount",
        "count",
        "exampleTraceId",
        "exampleSpanIds",
        "firstSeenUnixMs",
        "lastSeenUnixMs",
        "fix",
    ] {
        assert_eq!(restored[0][key], updated[0][key], "{key}");
    }
}

/// A CLIENT span with string attributes, for HTTP and non-SQL calls.
fn call(
    trace: u128,
    id: u64,
    parent: u64,
    start: SystemTime,
    attrs: &[(&'static str, String)],
) -> SpanData {
    let mut spec =
        SpanSpec::client(trace, id, parent, "call", Duration::from_millis(2)).starting_at(start);
    for (k, v) in attrs {
        spec = spec.attr(KeyValue::new(*k, v.clone()));
    }
    spec.build()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_loops_are_found_and_redis_and_truncated_statements_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_with_db(&dir.path().join("t.db"), "200ms", "").await;
    let ports = agent.agent_ports().unwrap();
    let exporter = exporter(
        Transport::Grpc,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "cart",
    )
    .unwrap();
    let trace: u128 = 0x5150_0000_0000_0000_0000_0000_0000_0001;
    let start = SystemTime::now() - Duration::from_millis(200);
    let root = 0x100;
    let mut spans = vec![
        SpanSpec::server(trace, root, "/cart", Duration::from_millis(100))
            .starting_at(start)
            .build(),
    ];
    let mut id = root + 1;
    // Six price lookups, old attribute names (http.method, http.url).
    for item in 0..6 {
        spans.push(call(
            trace,
            id,
            root,
            start + Duration::from_millis(item * 3),
            &[
                ("http.method", "GET".into()),
                (
                    "http.url",
                    format!(
                        "http://pricing.internal:8080/v1/price/{}?currency=eur",
                        1000 + item
                    ),
                ),
            ],
        ));
        id += 1;
    }
    // Ten Redis GETs: not SQL, never N+1 here.
    for item in 0..10 {
        spans.push(call(
            trace,
            id,
            root,
            start + Duration::from_millis(item),
            &[
                ("db.system.name", "redis".into()),
                ("db.query.text", "GET cart:?".into()),
            ],
        ));
        id += 1;
    }
    // Seven statements the SDK cut short.
    for item in 0..7 {
        spans.push(call(trace, id, root, start + Duration::from_millis(item), &[
            ("db.system.name", "postgresql".into()),
            ("db.query.text", "SELECT id, sku, price FROM items WHERE cart_id = $1 AND sku IN (SELECT sku FROM ...".into()),
        ]));
        id += 1;
    }
    let sent = spans.len();
    export_all(&exporter, spans, 50).await.unwrap();
    wait_processed(&agent, "traces", sent as f64).await;
    let found = wait_findings(&agent, "", 1).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["kind"], "n_plus_one_http");
    assert_eq!(
        found[0]["template"],
        "GET pricing.internal:8080/v1/price/{id}?currency"
    );
    assert_eq!(found[0]["count"], 6);
    assert_eq!(found[0]["system"], "http");
    let text = metrics_text(&agent).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_n_plus_one_skipped_statements_total",
            &[("reason", "truncated")]
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "telltale_n_plus_one_total",
            &[("kind", "n_plus_one_http"), ("route", "/cart")]
        ),
        Some(1.0)
    );
}

fn proto_kv(key: &str, value: &str) -> ProtoKeyValue {
    ProtoKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..ProtoKeyValue::default()
    }
}

fn proto_span(
    trace: u128,
    id: u64,
    parent: Option<u64>,
    now: u64,
    attrs: Vec<ProtoKeyValue>,
) -> Span {
    Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: "s".into(),
        kind: 3,
        start_time_unix_nano: now,
        end_time_unix_nano: now + 1_000,
        attributes: attrs,
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![proto_kv("service.name", "flood")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_spans_in_one_trace_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Decoding 50,000 spans takes a debug build longer than 200 ms: a longer
    // quiet period keeps the flood one trace.
    let agent = agent_with_db(
        &dir.path().join("t.db"),
        "5s",
        "max_spans_per_trace = 1000\n",
    )
    .await;
    let ports = agent.agent_ports().unwrap();
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.otlp_grpc))
        .await
        .unwrap()
        .max_encoding_message_size(8 << 20);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // A million spans in one trace, 50,000 per request.
    let flood: u128 = 0xCC;
    client
        .export(request(vec![proto_span(flood, 1, None, now, vec![])]))
        .await
        .unwrap();
    for chunk in 0..20_u64 {
        let spans = (0..50_000)
            .map(|i| proto_span(flood, 2 + chunk * 50_000 + i, Some(1), now, vec![]))
            .collect();
        client.export(request(spans)).await.expect("flood export");
    }
    let text = wait_processed(&agent, "traces", 1_000_001.0).await;
    assert!(
        metric_value(&text, "telltale_trace_spans_in_flight", &[]).unwrap() <= 1_000.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "telltale_trace_spans_dropped_total", &[]),
        Some(1_000_001.0 - 1_000.0)
    );
    // The root is there, so the flood completes after the quiet period.
    wait_until(
        "the flood trace completes",
        Duration::from_secs(30),
        || async {
            api_json(&agent, &format!("/api/v1/traces/{flood:032x}"))
                .await
                .0
                == 200
        },
    )
    .await
    .unwrap();
    let (_, trace) = api_json(&agent, &format!("/api/v1/traces/{flood:032x}")).await;
    assert_eq!(trace["spans"].as_array().unwrap().len(), 1_000);
    assert_eq!(trace["partial"], true);
    assert_eq!(trace["droppedSpans"], 1_000_001 - 1_000);

    let (status, _) = api_json(&agent, "/api/v1/traces?list=recent").await;
    assert_eq!(status, 200);
    let (status, body) = api_json(&agent, "/api/v1/traces/not-a-trace-id").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api_json(&agent, &format!("/api/v1/traces/{:032x}", 0xEEu128)).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = api_json(&agent, "/api/v1/traces?list=oldest").await;
    assert_eq!(status, 400);
    let (status, _) = api_json(&agent, "/api/v1/traces?limit=0").await;
    assert_eq!(status, 400);
    let live = reqwest::get(agent.public_url("/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_with_missing_parents_or_parent_cycles_are_analysed_at_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_with_db(&dir.path().join("t.db"), "200ms", "max_age = \"1s\"\n").await;
    let ports = agent.agent_ports().unwrap();
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.otlp_grpc))
        .await
        .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let query = || {
        vec![
            proto_kv("db.system.name", "postgresql"),
            proto_kv("db.query.text", "SELECT * FROM t WHERE id = $1"),
        ]
    };
    let mut spans: Vec<Span> = (1..=5)
        .map(|i| proto_span(0xAA, i, Some(0xDEAD), now, query()))
        .collect();
    spans.push(proto_span(0xBB, 1, Some(2), now, vec![]));
    spans.push(proto_span(0xBB, 2, Some(1), now, vec![]));
    spans.extend((10..16).map(|i| proto_span(0xBB, i, Some(1), now, query())));
    client.export(request(spans)).await.unwrap();
    let found = wait_findings(&agent, "", 1).await;
    wait_until(
        "both rootless traces analysed",
        Duration::from_secs(30),
        || async {
            metric_value(
                &metrics_text(&agent).await,
                "telltale_traces_completed_total",
                &[("reason", "max_age")],
            )
            .unwrap_or(0.0)
                >= 2.0
        },
    )
    .await
    .unwrap();
    // A trace counts as completed before the detector has read it: wait
    // for the second occurrence itself.
    wait_until("the second occurrence", Duration::from_secs(30), || async {
        findings(&agent, "")
            .await
            .first()
            .is_some_and(|f| f["occurrences"] == 2)
    })
    .await
    .unwrap();
    let found_all = findings(&agent, "").await;
    // One fingerprint (same service, route `unknown`, template), two occurrences.
    assert_eq!(found_all.len(), 1, "{found_all:#?}");
    assert_eq!(found[0]["route"], "unknown");
    assert_eq!(found_all[0]["occurrences"], 2);
    assert_eq!(found_all[0]["worstCount"], 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_detection_settings_are_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        ("[n_plus_one]\nmin_repeats = 1\n", "n_plus_one.min_repeats"),
        ("[n_plus_one]\nmin_repeat = 5\n", "n_plus_one.min_repeat"),
        (
            "[n_plus_one]\nignore = [\"SELECT * FROM t WHERE id =\"]\n",
            "n_plus_one.ignore.0",
        ),
        (
            "[traces]\nquiet_period = \"5s\"\nmax_age = \"1s\"\n",
            "traces.max_age",
        ),
    ] {
        let file = dir.path().join("t.toml");
        std::fs::write(&file, toml).unwrap();
        let output = AgentProcess::run_to_end(&["check-config", file.to_str().unwrap()], &[])
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{toml}");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}
