//! RUM beacons posted over real sockets to the real agent: aggregates checked
//! against exact values, every kind of bad input refused with a reason and
//! counted while good beacons still pass, and rollups surviving a restart.

use std::net::IpAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use telltale_tests::admin::{api_json, metrics_text};
use telltale_tests::otlp::metric_value;
use telltale_tests::{AgentPorts, AgentProcess, http_client};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn rum_agent(rum: &str) -> AgentProcess {
    rum_agent_with(rum, ":memory:", &AgentPorts::pick()).await
}

async fn rum_agent_with(rum: &str, db: &str, ports: &AgentPorts) -> AgentProcess {
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n\n[shutdown]\ndrain_period = \"100ms\"\n\n[storage]\npath = \"{db}\"\n\n[rum]\n{rum}\n",
        ports.listeners_toml(false)
    );
    AgentProcess::spawn(&config, ports).await.expect("agent")
}

/// POSTs `body` to `/rum` with `headers`, from `source` when given.
async fn post(
    agent: &AgentProcess,
    body: &str,
    headers: &[(&str, &str)],
    source: Option<IpAddr>,
) -> (u16, Value, Option<String>) {
    let client = match source {
        Some(ip) => reqwest::Client::builder()
            .local_address(ip)
            .build()
            .expect("client"),
        None => http_client(),
    };
    let mut request = client.post(agent.public_url("/rum")).body(body.to_owned());
    if !headers.iter().any(|(name, _)| *name == "content-type") {
        // What navigator.sendBeacon sends with a string.
        request = request.header("content-type", "text/plain;charset=UTF-8");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /rum");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

fn refused(text: &str, reason: &str) -> f64 {
    metric_value(
        text,
        "telltale_rum_refused_beacons_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = (q * (sorted.len() - 1) as f64).floor() as usize;
    sorted[i]
}

#[tokio::test]
async fn p75_and_shares_match_exact_values_within_one_percent() {
    let agent = rum_agent("client_burst = 10000\nclient_rate = 10000").await;
    let mut rng = fastrand_like(42);
    let mut lcp = Vec::new();
    let mut cls = Vec::new();
    let devices = ["mobile", "desktop", "tablet"];
    for batch in 0..20 {
        let mut loads = Vec::new();
        for i in 0..50 {
            let l = 600.0 + rng() * 5_000.0;
            let c = rng() * 0.4;
            lcp.push(l);
            cls.push(c);
            loads.push(json!({
                "page": format!("https://shop.example/products/{}?utm=x", batch * 50 + i),
                "device": devices[i % 3],
                "metrics": [
                    {"name": "LCP", "value": l, "id": format!("lcp-{batch}-{i}")},
                    {"name": "CLS", "value": c, "id": format!("cls-{batch}-{i}")},
                ],
            }));
        }
        let (status, body, _) = post(&agent, &Value::Array(loads).to_string(), &[], None).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["accepted"], 100);
    }
    let (status, body) = api_json(&agent, "/api/v1/rum/pages/products/:id?app=shop.example").await;
    assert_eq!(status, 200, "{body}");
    for (name, values, good, poor) in [("LCP", &lcp, 2500.0, 4000.0), ("CLS", &cls, 0.1, 0.25)] {
        let got = &body["page"]["vitals"][name];
        assert_eq!(got["count"], 1000, "{name}: {got}");
        for (q, key) in [(0.5, "p50"), (0.75, "p75"), (0.95, "p95")] {
            let want = exact_quantile(values, q);
            let have = got[key].as_f64().unwrap();
            assert!(
                (have - want).abs() <= 0.01 * want,
                "{name} {key}: {have} vs exact {want}"
            );
        }
        let n = values.len() as f64;
        let shares = [
            (
                "good",
                values.iter().filter(|v| **v <= good).count() as f64 / n,
            ),
            (
                "needsImprovement",
                values.iter().filter(|v| **v > good && **v <= poor).count() as f64 / n,
            ),
            (
                "poor",
                values.iter().filter(|v| **v > poor).count() as f64 / n,
            ),
        ];
        for (key, want) in shares {
            let have = got[key].as_f64().unwrap();
            assert!(
                (have - want).abs() <= 0.01 * want,
                "{name} {key}: {have} vs exact {want}"
            );
        }
    }
    // Per device, and in the Prometheus histograms (whose edges include the thresholds).
    let mobile = (0..1000).filter(|i| i % 50 % 3 == 0).count();
    assert_eq!(body["page"]["devices"]["mobile"]["LCP"]["count"], mobile);
    let text = metrics_text(&agent).await;
    let good_bucket = metric_value(
        &text,
        "telltale_rum_web_vital_seconds_bucket",
        &[
            ("app", "shop.example"),
            ("page", "/products/:id"),
            ("metric", "LCP"),
            ("device", "desktop"),
            ("le", "2.5"),
        ],
    )
    .expect("an LCP bucket at 2.5 s");
    let desktop_good = lcp
        .iter()
        .enumerate()
        .filter(|(i, v)| i % 50 % 3 == 1 && **v <= 2500.0)
        .count();
    assert_eq!(good_bucket, desktop_good as f64);
}

/// A small deterministic generator (the tests crate does not depend on fastrand).
fn fastrand_like(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::test]
async fn a_re_reported_metric_id_keeps_its_largest_value() {
    let agent = rum_agent("").await;
    let beacon = |cls: f64| {
        json!({"page": "/cart", "metrics": [{"name": "CLS", "value": cls, "id": "v5-1-cls"}]})
            .to_string()
    };
    assert_eq!(post(&agent, &beacon(0.05), &[], None).await.0, 202);
    let (status, body, _) = post(&agent, &beacon(0.3), &[], None).await;
    assert_eq!((status, &body["replaced"]), (202, &json!(1)), "{body}");
    let (status, body, _) = post(&agent, &beacon(0.3), &[], None).await;
    assert_eq!((status, &body["duplicates"]), (202, &json!(1)), "{body}");
    // An earlier, smaller report arriving late does not undo the larger.
    let (status, body, _) = post(&agent, &beacon(0.05), &[], None).await;
    assert_eq!((status, &body["stale"]), (202, &json!(1)), "{body}");
    let (_, body) = api_json(&agent, "/api/v1/rum/pages/cart").await;
    let cls = &body["page"]["vitals"]["CLS"];
    assert_eq!(cls["count"], 1, "{body}");
    assert_eq!(cls["poor"], 1.0, "the largest value counts: {body}");
}

/// Sends a chunked body of `size` bytes with no Content-Length; returns the
/// status line.
async fn post_chunked(agent: &AgentProcess, size: usize) -> String {
    let port = agent.agent_ports().unwrap().public;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = "POST /rum HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 8192];
    let mut sent = 0;
    while sent < size {
        let frame = format!("{:x}\r\n", chunk.len());
        // The agent may answer and close before everything is sent.
        if stream.write_all(frame.as_bytes()).await.is_err()
            || stream.write_all(&chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// What is sent, its headers, and the status, counter reason and message
/// expected back.
type BadBeacon = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_counted_and_nothing_else_is_lost() {
    let agent = rum_agent(
        "allowed_origins = [\"https://shop.example\"]\nclient_rate = 1\nclient_burst = 5\nmax_pages = 50\ntrusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    // Every good beacon below comes from its own client (X-Forwarded-For
    // through the trusted 127.0.0.1), so only the flood hits the client limit.
    let mut next_client = 0_u32;
    let mut client = || {
        next_client += 1;
        format!("198.51.{}.{}", next_client / 250, next_client % 250 + 1)
    };
    let good = json!({"page": "/ok", "metrics": [{"name": "FCP", "value": 800}]}).to_string();

    let cases: Vec<BadBeacon> = vec![
        (
            "malformed JSON",
            "{\"page\": \"/\", ".into(),
            vec![],
            400,
            "malformed",
            "malformed beacon",
        ),
        (
            "NaN",
            "{\"name\":\"LCP\",\"value\":NaN,\"page\":\"/\"}".into(),
            vec![],
            400,
            "malformed",
            "malformed",
        ),
        (
            "wrong type",
            "{\"name\":\"LCP\",\"value\":\"slow\",\"page\":\"/\"}".into(),
            vec![],
            400,
            "malformed",
            "invalid type",
        ),
        (
            "negative",
            "{\"name\":\"INP\",\"value\":-5,\"page\":\"/\"}".into(),
            vec![],
            400,
            "invalid",
            "INP of -5 ms is out of range",
        ),
        (
            "huge",
            "{\"name\":\"TTFB\",\"value\":1e300,\"page\":\"/\"}".into(),
            vec![],
            400,
            "invalid",
            "out of range",
        ),
        (
            "huge CLS",
            "{\"name\":\"CLS\",\"value\":12345,\"page\":\"/\"}".into(),
            vec![],
            400,
            "invalid",
            "CLS of 12345",
        ),
        (
            "unknown metric",
            "{\"name\":\"XYZ\",\"value\":5,\"page\":\"/\"}".into(),
            vec![],
            400,
            "invalid",
            "not one of LCP",
        ),
        (
            "no page",
            "{\"name\":\"LCP\",\"value\":5}".into(),
            vec![],
            400,
            "invalid",
            "no page",
        ),
        (
            "origin",
            good.clone(),
            vec![("origin", "https://evil.example".into())],
            403,
            "origin",
            "not in rum.allowed_origins",
        ),
        (
            "media type",
            good.clone(),
            vec![("content-type", "application/x-www-form-urlencoded".into())],
            415,
            "media_type",
            "text/plain",
        ),
        (
            "too large",
            format!("{{\"page\":\"/\",\"pad\":\"{}\"}}", "x".repeat(70_000)),
            vec![],
            413,
            "too_large",
            "rum.max_body_size",
        ),
    ];
    for (what, body, headers, status, reason, needle) in cases {
        let mut headers: Vec<(&str, String)> = headers;
        headers.push(("x-forwarded-for", client()));
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, answer, _) = post(&agent, &body, &refs, None).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(needle),
            "{what}: {answer}"
        );
        let text = metrics_text(&agent).await;
        assert!(
            refused(&text, reason) >= 1.0,
            "{what}: no refusal counted as {reason}"
        );
    }

    // A chunked body with no Content-Length is cut off at the limit too.
    let status = post_chunked(&agent, 1 << 20).await;
    assert!(status.contains("413"), "chunked oversized body: {status}");

    // An allowed origin passes, and a preflight from it is answered.
    let from_shop = client();
    let (status, body, _) = post(
        &agent,
        &good,
        &[
            ("origin", "https://shop.example"),
            ("x-forwarded-for", &from_shop),
        ],
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let preflight = http_client()
        .request(reqwest::Method::OPTIONS, agent.public_url("/rum"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://shop.example")
    );

    // A flood from one client: 429 with Retry-After, while others pass.
    let flooder = client();
    let mut throttled = None;
    for _ in 0..20 {
        let (status, body, retry_after) =
            post(&agent, &good, &[("x-forwarded-for", &flooder)], None).await;
        if status == 429 {
            throttled = Some((body, retry_after));
            break;
        }
        assert_eq!(status, 202, "{body}");
    }
    let (body, retry_after) = throttled.expect("a client sending 20 beacons at once is throttled");
    assert!(
        body["error"].as_str().unwrap().contains("rum.client_rate"),
        "{body}"
    );
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    let other = client();
    assert_eq!(
        post(&agent, &good, &[("x-forwarded-for", &other)], None)
            .await
            .0,
        202
    );
    // A client that is not a trusted proxy cannot pose as another with the header.
    let direct: IpAddr = "127.0.0.2".parse().unwrap();
    let mut statuses = Vec::new();
    for i in 0..10 {
        let spoofed = format!("203.0.113.{i}");
        statuses.push(
            post(
                &agent,
                &good,
                &[("x-forwarded-for", &spoofed)],
                Some(direct),
            )
            .await
            .0,
        );
    }
    assert!(
        statuses.contains(&429),
        "127.0.0.2 is one client whatever its header says: {statuses:?}"
    );

    // 100,000 distinct URLs: pages stay bounded, values land in `other`.
    let mut sent = 0;
    for batch in 0..500 {
        let loads: Vec<Value> = (0..200)
            .map(|i| json!({"name": "TTFB", "value": 120, "page": format!("/search/term{batch}x{i}")}))
            .collect();
        let xff = client();
        let (status, body, _) = post(
            &agent,
            &Value::Array(loads).to_string(),
            &[("x-forwarded-for", &xff)],
            None,
        )
        .await;
        assert_eq!(status, 202, "{body}");
        sent += body["accepted"].as_u64().unwrap();
    }
    assert_eq!(sent, 100_000);
    let (_, pages) = api_json(&agent, "/api/v1/rum/pages?app=-").await;
    let pages = pages["pages"].as_array().unwrap();
    assert!(
        pages.len() <= 51,
        "{} pages kept with max_pages = 50",
        pages.len()
    );
    let ttfb_total: u64 = pages
        .iter()
        .filter_map(|p| p["vitals"]["TTFB"]["count"].as_u64())
        .sum();
    assert_eq!(
        ttfb_total, 100_000,
        "nothing lost, only merged into `other`"
    );
    let text = metrics_text(&agent).await;
    let overflow = metric_value(
        &text,
        "telltale_rum_dropped_values_total",
        &[("reason", "page_overflow")],
    )
    .unwrap();
    assert!(overflow >= 99_900.0, "page overflow counted: {overflow}");

    // The agent is still healthy and every good beacon was counted.
    let health = http_client()
        .get(agent.public_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (_, ok) = api_json(&agent, "/api/v1/rum/pages/ok?app=-").await;
    let accepted_ok = ok["page"]["vitals"]["FCP"]["count"].as_u64().unwrap();
    let beacons = metric_value(&text, "telltale_rum_beacons_total", &[]).unwrap();
    assert_eq!(
        beacons,
        accepted_ok as f64 + 500.0,
        "beacons accepted = good ones + the 500 batches"
    );
}

#[tokio::test]
async fn rollups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("telltale.db");
    let db = db.to_str().unwrap();
    let ports = AgentPorts::pick();
    let mut agent = rum_agent_with("persist_every = \"1s\"", db, &ports).await;
    let beacon = json!({"page": "https://shop.example/checkout", "device": "mobile",
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "nav": {"load": 1800}, "metrics": [{"name": "LCP", "value": 3100, "id": "x"}]});
    assert_eq!(post(&agent, &beacon.to_string(), &[], None).await.0, 202);
    agent.signal(Signal::SIGTERM).unwrap();
    assert!(
        agent
            .wait_exit(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );
    drop(agent);

    let agent = rum_agent_with("persist_every = \"1s\"", db, &ports).await;
    let (status, body) = api_json(&agent, "/api/v1/rum/pages/checkout").await;
    assert_eq!(status, 200, "{body}");
    let lcp = &body["page"]["devices"]["mobile"]["LCP"];
    assert_eq!(lcp["count"], 1, "{body}");
    assert_eq!(lcp["needsImprovement"], 1.0, "{body}");
    assert_eq!(body["page"]["navigation"]["load"]["count"], 1, "{body}");
}
