//! `telltale-sdk` in a real app: `examples/shop` (axum, sqlx on the shared
//! PostgreSQL, Redis) exports to a real OTLP/gRPC receiver, and the spans and
//! metrics it sends are checked one by one: the N+1 loop of `GET /orders`,
//! the cache in front of the database, an outbound call continued by a second
//! service, pool gauges, and a dead or frozen agent that must not slow the app.

use std::time::Duration;

use telltale_tests::collector::{OtlpCollector, ReceivedPoint, ReceivedSpan};
use telltale_tests::shop::ShopProcess;
use telltale_tests::{PrivateRedis, http_client, require_shared_services};

/// `SpanKind` values on the wire.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
/// `Status.code` ERROR.
const STATUS_ERROR: i32 = 2;
const WAIT: Duration = Duration::from_secs(20);

fn in_trace(spans: &[ReceivedSpan], trace: &str) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id() == trace)
        .cloned()
        .collect()
}

/// The trace id the shop put in `Server-Timing`.
fn server_timing_trace(response: &reqwest::Response) -> String {
    let value = response
        .headers()
        .get("server-timing")
        .expect("a Server-Timing header")
        .to_str()
        .unwrap()
        .to_owned();
    let start = value.find("00-").expect("a traceparent in Server-Timing") + 3;
    value[start..start + 32].to_owned()
}

#[tokio::test]
async fn orders_cache_and_checkout_produce_the_expected_span_trees() {
    require_shared_services().await.unwrap();
    let collector = OtlpCollector::start().await.unwrap();
    let redis = PrivateRedis::start().await.unwrap();
    let redis_url = redis.url();
    let payments = ShopProcess::start(
        "payments",
        &collector.endpoint(),
        &[("REDIS_URL", &redis_url)],
    )
    .await
    .unwrap();
    let payments_url = payments.url("/payments/authorize");
    let shop = ShopProcess::start(
        "shop",
        &collector.endpoint(),
        &[("REDIS_URL", &redis_url), ("PAYMENTS_URL", &payments_url)],
    )
    .await
    .unwrap();
    let client = http_client();

    // GET /orders, continuing a trace the caller started.
    let caller_trace = format!("{:032x}", fastrand_u128());
    let caller_span = "00f067aa0ba902b7";
    let response = client
        .get(shop.url("/orders"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        server_timing_trace(&response),
        caller_trace,
        "Server-Timing carries the trace"
    );
    let orders: Vec<serde_json::Value> = response.json().await.unwrap();
    assert_eq!(orders.len(), 20);
    let spans = collector
        .wait_spans("the 22 spans of GET /orders", WAIT, |all| {
            let spans = in_trace(all, &caller_trace);
            (spans.len() >= 22).then_some(spans)
        })
        .await
        .unwrap();
    assert_eq!(
        spans.len(),
        22,
        "one SERVER span and 21 queries: {spans:#?}"
    );
    let server: Vec<_> = spans.iter().filter(|s| s.span.kind == SERVER).collect();
    assert_eq!(server.len(), 1);
    let server = server[0];
    assert_eq!(server.service, "shop");
    assert_eq!(server.span.name, "GET /orders");
    assert_eq!(server.parent_id(), caller_span, "traceparent was continued");
    assert_eq!(server.attr("http.route").as_deref(), Some("/orders"));
    assert_eq!(server.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(server.attr("url.path").as_deref(), Some("/orders"));
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let queries: Vec<_> = spans.iter().filter(|s| s.span.kind == CLIENT).collect();
    assert_eq!(queries.len(), 21);
    for query in &queries {
        assert_eq!(
            query.parent_id(),
            server.span_id(),
            "queries hang off the request"
        );
        assert_eq!(query.attr("db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(query.attr("db.operation.name").as_deref(), Some("SELECT"));
        assert_eq!(query.attr("server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(query.attr("server.port").as_deref(), Some("5432"));
        assert!(query.span.start_time_unix_nano >= server.span.start_time_unix_nano);
        assert!(query.span.end_time_unix_nano <= server.span.end_time_unix_nano);
        assert!(query.span.end_time_unix_nano > query.span.start_time_unix_nano);
    }
    let text = |q: &&ReceivedSpan| q.attr("db.query.text").unwrap_or_default();
    let list: Vec<_> = queries
        .iter()
        .filter(|q| {
            text(q) == "SELECT id, customer_id, total_cents FROM shop.orders ORDER BY id LIMIT $1"
        })
        .collect();
    assert_eq!(list.len(), 1, "the list query, once");
    assert_eq!(
        list[0].attr("db.collection.name").as_deref(),
        Some("shop.orders")
    );
    let per_order: Vec<_> = queries
        .iter()
        .filter(|q| text(q) == "SELECT name FROM shop.customers WHERE id = $1")
        .collect();
    assert_eq!(per_order.len(), 20, "one customer query per order: the N+1");
    assert!(
        per_order
            .iter()
            .all(|q| q.attr("db.collection.name").as_deref() == Some("shop.customers"))
    );
    assert!(
        per_order
            .iter()
            .all(|q| q.span.start_time_unix_nano >= list[0].span.end_time_unix_nano),
        "the loop runs after the list query"
    );

    // GET /products/7: a miss (Redis GET, PostgreSQL, Redis SETEX), then a hit.
    let mut product_traces = Vec::new();
    for _ in 0..2 {
        let response = client.get(shop.url("/products/7")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        product_traces.push(server_timing_trace(&response));
    }
    let miss = collector
        .wait_spans("the cache miss", WAIT, |all| {
            let spans = in_trace(all, &product_traces[0]);
            (spans.len() >= 4).then_some(spans)
        })
        .await
        .unwrap();
    let operations = |spans: &[ReceivedSpan]| {
        let mut ops: Vec<String> = spans
            .iter()
            .filter(|s| s.span.kind == CLIENT)
            .map(|s| {
                format!(
                    "{}:{}",
                    s.attr("db.system.name").unwrap_or_default(),
                    s.attr("db.operation.name").unwrap_or_default()
                )
            })
            .collect();
        ops.sort();
        ops
    };
    assert_eq!(
        operations(&miss),
        ["postgresql:SELECT", "redis:GET", "redis:SETEX"]
    );
    for span in miss
        .iter()
        .filter(|s| s.attr("db.system.name").as_deref() == Some("redis"))
    {
        assert!(
            span.attr("db.query.text").is_none(),
            "no keys or values recorded"
        );
        assert_eq!(span.attr("server.port"), Some(redis.port().to_string()));
    }
    let hit = collector
        .wait_spans("the cache hit", WAIT, |all| {
            let spans = in_trace(all, &product_traces[1]);
            (spans.len() >= 2).then_some(spans)
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        operations(&in_trace(&collector.spans(), &product_traces[1])),
        ["redis:GET"],
        "{hit:#?}"
    );

    // POST /checkout: an outbound call continued by the payments service.
    let response = client
        .post(shop.url("/checkout"))
        .json(&serde_json::json!({"customer_id": 3, "total_cents": 1234}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let trace = server_timing_trace(&response);
    let spans = collector
        .wait_spans("the checkout across two services", WAIT, |all| {
            let spans = in_trace(all, &trace);
            (spans.len() >= 5).then_some(spans)
        })
        .await
        .unwrap();
    let outbound = spans
        .iter()
        .find(|s| s.span.kind == CLIENT && s.attr("http.request.method").is_some())
        .expect("an outbound HTTP span");
    assert_eq!(outbound.service, "shop");
    assert_eq!(
        outbound.attr("http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(outbound.attr("url.full"), Some(payments_url.clone()));
    assert_eq!(
        outbound.attr("server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        outbound.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let remote = spans
        .iter()
        .find(|s| s.service == "payments")
        .expect("the payments service's span in the same trace");
    assert_eq!(remote.span.kind, SERVER);
    assert_eq!(
        remote.attr("http.route").as_deref(),
        Some("/payments/authorize")
    );
    assert_eq!(
        remote.parent_id(),
        outbound.span_id(),
        "traceparent crossed the call"
    );
    let writes: Vec<_> = spans
        .iter()
        .filter_map(|s| s.attr("db.operation.name"))
        .collect();
    assert!(
        writes.contains(&"INSERT".to_owned()) && writes.contains(&"UPDATE".to_owned()),
        "{writes:?}"
    );
}

#[tokio::test]
async fn failing_routes_mark_their_spans_as_errors() {
    require_shared_services().await.unwrap();
    let collector = OtlpCollector::start().await.unwrap();
    let shop = ShopProcess::start(
        "flaky-shop",
        &collector.endpoint(),
        &[("SHOP_FLAKY_ERROR_RATE", "1")],
    )
    .await
    .unwrap();
    let response = http_client().get(shop.url("/flaky")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let trace = server_timing_trace(&response);
    let span = collector
        .wait_spans("the failed request", WAIT, |all| {
            in_trace(all, &trace).into_iter().next()
        })
        .await
        .unwrap();
    assert_eq!(
        span.attr("http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(
        span.span.status.as_ref().map(|s| s.code),
        Some(STATUS_ERROR)
    );
}

#[tokio::test]
async fn pool_gauges_report_connections_held_by_requests() {
    require_shared_services().await.unwrap();
    let collector = OtlpCollector::start().await.unwrap();
    let shop = ShopProcess::start(
        "pool-shop",
        &collector.endpoint(),
        &[
            ("SHOP_POOL_SIZE", "8"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ],
    )
    .await
    .unwrap();
    let client = http_client();
    let held: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            let url = shop.url("/slow?ms=4000");
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let used = |value: f64| {
        move |points: &[ReceivedPoint]| {
            points.iter().any(|p| {
                p.service == "pool-shop"
                    && p.metric == "db.client.connection.count"
                    && p.attr("db.client.connection.state").as_deref() == Some("used")
                    && p.attr("db.client.connection.pool.name").as_deref() == Some("shop")
                    && p.value() == value
            })
        }
    };
    wait_points(&collector, "5 connections in use", used(5.0)).await;
    let max = collector
        .points()
        .into_iter()
        .find(|p| p.service == "pool-shop" && p.metric == "db.client.connection.max")
        .expect("db.client.connection.max");
    assert_eq!(max.value(), 8.0);
    for request in held {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    let before = collector.points().len();
    wait_points(
        &collector,
        "no connection in use after the requests",
        move |points: &[ReceivedPoint]| used(0.0)(&points[before.min(points.len())..]),
    )
    .await;
}

async fn wait_points(
    collector: &OtlpCollector,
    what: &str,
    check: impl Fn(&[ReceivedPoint]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check(&collector.points()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reported within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shop keeps answering every request when the agent is gone (connection
/// refused) or frozen (accepts, never answers); the SDK counts what it drops.
#[tokio::test]
async fn a_dead_or_frozen_agent_costs_the_app_nothing_but_dropped_spans() {
    require_shared_services().await.unwrap();
    // Frozen: a listener that accepts and never answers.
    let frozen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let frozen_addr = frozen.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = frozen.accept().await {
            sockets.push(socket);
        }
    });
    // Dead: a port nobody listens on.
    let dead_port = telltale_tests::free_port();
    for (name, endpoint) in [
        ("frozen", format!("http://{frozen_addr}")),
        ("dead", format!("http://127.0.0.1:{dead_port}")),
    ] {
        let shop = ShopProcess::start(name, &endpoint, &[]).await.unwrap();
        let client = http_client();
        // 4,000 spans against a 2,048-span queue: the queue must overflow.
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let client = client.clone();
            let url = shop.url("/healthz");
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..500 {
                    let response = client.get(&url).send().await;
                    if response.is_ok_and(|r| r.status() == 200) {
                        ok += 1;
                    }
                }
                (worker, ok)
            }));
        }
        for task in tasks {
            let (worker, ok) = task.await.unwrap();
            assert_eq!(ok, 500, "{name} agent: worker {worker} got errors");
        }
        let stats = wait_drops(&client, &shop).await;
        assert_eq!(
            stats["exported"], 0,
            "{name} agent: nothing can have been exported"
        );
        let queued = stats["queued"].as_u64().unwrap();
        let full = stats["droppedQueueFull"].as_u64().unwrap();
        // The start-up probes and /telemetry polls add a few spans of their own.
        assert!(
            queued + full >= 4000,
            "{name} agent: every span is queued or counted as dropped: {stats}"
        );
        if name == "frozen" {
            assert!(
                full > 0,
                "frozen agent: the bounded queue overflowed: {stats}"
            );
        }
        assert!(
            stats["droppedExportFailed"].as_u64().unwrap() > 0,
            "{name} agent: failed exports are counted: {stats}"
        );
    }
    held.abort();
}

/// Waits until a failed export has been counted (the export timeout is 5 s).
async fn wait_drops(client: &reqwest::Client, shop: &ShopProcess) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats: serde_json::Value = client
            .get(shop.url("/telemetry"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["droppedExportFailed"].as_u64().unwrap_or(0) > 0 {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed export counted: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn fastrand_u128() -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    nanos ^ (u128::from(std::process::id()) << 64) | 1
}
