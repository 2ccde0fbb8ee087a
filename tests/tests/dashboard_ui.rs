//! The built-in dashboard in a real headless Chromium, against an agent fed
//! real OTLP spans and RUM beacons: every page renders without a single
//! SEVERE entry in the browser's log (console errors, failed loads), shows the
//! values the API returns (read from the DOM), and is saved as a screenshot
//! under `target/ui-screenshots/`. With an admin token, the API and metrics
//! refuse requests without it, the dashboard asks for it once, and neither
//! the token nor a check's password ever reaches the page.

use std::time::Duration;

use opentelemetry::KeyValue;
use serde_json::{Value, json};
use telltale_tests::admin::{api_json, metrics_text, wait_processed};
use telltale_tests::dashboard::{millis, percent, screenshot, seconds, severe_logs};
use telltale_tests::otlp::{SpanSpec, Transport, export_all, exporter, metric_value};
use telltale_tests::{AgentPorts, AgentProcess, Browser, http_client, wait_until};

const RENDER_DEADLINE: Duration = Duration::from_secs(20);
/// Traces [`send_traffic`] sends: one per request.
const TRACES_SENT: f64 = 200.0;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Opens `#/{hash}` and waits until the dashboard has rendered `page` there.
async fn open(browser: &Browser, agent: &AgentProcess, hash: &str, page: &str) {
    // Forget the previous page, so the wait below sees the new render.
    browser
        .eval("document.body.dataset.page = ''; return true;")
        .await
        .ok();
    browser
        .client()
        .goto(&agent.admin_url(&format!("/#/{hash}")))
        .await
        .expect("navigate");
    browser
        .wait_for(
            &format!("document.body && document.body.dataset.page === '{page}'"),
            RENDER_DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("{hash}: {e}"));
}

/// Fails on any SEVERE entry of the browser's log since the last call.
async fn assert_clean_console(browser: &Browser, page: &str) {
    let entries = severe_logs(browser).await.expect("browser log");
    assert!(
        entries.is_empty(),
        "{page}: the browser logged errors: {entries:#?}"
    );
}

async fn dom(browser: &Browser, script: &str) -> Value {
    browser.eval(script).await.expect("read the DOM")
}

/// Spans of two routes with known durations; every tenth `/checkout` fails;
/// each `/checkout` runs the same SELECT once per item (an N+1).
async fn send_traffic(agent: &AgentProcess) -> f64 {
    let ports = agent.agent_ports().unwrap();
    let exporter = exporter(
        Transport::HttpProtobuf,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "shop",
    )
    .expect("exporter");
    let mut spans = Vec::new();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 200
    for i in 0..TRACES_SENT as u64 {
        let id = i + 1;
        let route = if i % 2 == 0 { "/checkout" } else { "/cart" };
        let duration = Duration::from_micros(2_000 + i * 1_500);
        let mut span = SpanSpec::server(u128::from(id), id, route, duration);
        if route == "/checkout" && i % 10 == 0 {
            span = span.error();
        }
        spans.push(span.build());
        if route == "/checkout" {
            for item in 0..6_u64 {
                spans.push(
                    SpanSpec::client(
                        u128::from(id),
                        id * 100 + item,
                        id,
                        "SELECT items",
                        Duration::from_micros(300),
                    )
                    .attr(KeyValue::new("db.system", "postgresql"))
                    .attr(KeyValue::new(
                        "db.statement",
                        format!("SELECT * FROM items WHERE id = {}", item + 7),
                    ))
                    .build(),
                );
            }
        }
    }
    let sent = spans.len();
    export_all(&exporter, spans, 100).await.expect("export");
    #[allow(clippy::cast_precision_loss)]
    let sent = sent as f64;
    wait_processed(agent, "traces", sent).await;
    sent
}

/// Page loads of `/products/:id` on two devices, one with a backend trace.
async fn send_beacons(agent: &AgentProcess) {
    let loads: Vec<Value> = (0..8)
        .map(|i| {
            let mut load = json!({
                "page": format!("https://shop.example/products/{i}"),
                "device": if i % 2 == 0 { "mobile" } else { "desktop" },
                "nav": {"dns": 5 + i, "tcp": 10, "request": 120 + 10 * i, "download": 30, "dom": 200, "load": 40},
                "metrics": [
                    {"name": "LCP", "value": 1800 + 400 * i, "id": format!("lcp-{i}")},
                    {"name": "CLS", "value": 0.02 * f64::from(i), "id": format!("cls-{i}")},
                    {"name": "FCP", "value": 900 + 100 * i, "id": format!("fcp-{i}")},
                    {"name": "TTFB", "value": 300 + 50 * i, "id": format!("ttfb-{i}")},
                    {"name": "INP", "value": 80 + 40 * i, "id": format!("inp-{i}")},
                ],
            });
            if i == 7 {
                load["traceId"] = json!(TRACE_ID);
            }
            load
        })
        .collect();
    let response = http_client()
        .post(agent.public_url("/rum"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(Value::Array(loads).to_string())
        .send()
        .await
        .expect("POST /rum");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
}

fn agent_config(ports: &AgentPorts, extra: &str) -> String {
    format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n\n[alerts]\nevaluate_every = \"1s\"\n\n[[alerts.rules]]\nname = \"checkout-slow\"\nsignal = \"latency_p95\"\nabove = 0.1\nfor = \"0s\"\nwindow = \"1h\"\nservice = \"shop\"\nroute = \"/checkout\"\n\n[shutdown]\ndrain_period = \"0s\"\n{extra}",
        ports.listeners_toml(false)
    )
}

async fn check_overview(browser: &Browser, agent: &AgentProcess) {
    open(browser, agent, "overview?window=1h", "overview").await;
    // The alert needs one evaluation after the traffic.
    browser
        .wait_for(
            "document.querySelector('tr.firing[data-alert=\"checkout-slow\"]') !== null",
            RENDER_DEADLINE,
        )
        .await
        .expect("the firing alert on the overview");
    let (status, api) = api_json(agent, "/api/v1/services/shop/routes?window=1h").await;
    assert_eq!(status, 200, "{api}");
    let shown = dom(
        browser,
        "return [...document.querySelectorAll('table.routes tr[data-route]')].map(tr => {
            const f = (k) => tr.querySelector(`[data-field=${k}]`).textContent;
            return { route: tr.dataset.route, requests: f('requests'), errorRatio: f('errorRatio'),
                     p50: f('p50'), p95: f('p95'), p99: f('p99') };
         });",
    )
    .await;
    let routes = api["routes"].as_array().unwrap();
    assert_eq!(shown.as_array().unwrap().len(), routes.len(), "{shown}");
    for route in routes {
        let name = route["route"].as_str().unwrap();
        let row = shown
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {shown}"));
        assert_eq!(row["requests"], route["requests"].to_string(), "{name}");
        assert_eq!(
            row["errorRatio"],
            percent(route["errorRatio"].as_f64().unwrap())
        );
        for q in ["p50", "p95", "p99"] {
            assert_eq!(
                row[q],
                seconds(route["latency"][q].as_f64().unwrap()),
                "{name} {q}"
            );
        }
    }
    assert_eq!(shown.as_array().unwrap().len(), 2);
    // Saturation gauges show the host's CPU and memory.
    let gauges = dom(
        browser,
        "return [...document.querySelectorAll('.gauge')].map(g => g.dataset.gauge);",
    )
    .await;
    for name in ["CPU", "Memory"] {
        assert!(
            gauges.as_array().unwrap().iter().any(|g| g == name),
            "{gauges}"
        );
    }
    let charts = dom(
        browser,
        "return document.querySelectorAll('svg.chart .series circle').length;",
    )
    .await;
    assert!(charts.as_u64().unwrap() > 0, "charts draw the buckets");
    screenshot(browser, "overview").await.expect("screenshot");
    assert_clean_console(browser, "overview").await;
}

async fn check_health(browser: &Browser, agent: &AgentProcess) {
    open(browser, agent, "health", "health").await;
    let (_, api) = api_json(agent, "/api/v1/health").await;
    let shown = dom(
        browser,
        "return Object.fromEntries([...document.querySelectorAll('table.checks tr[data-check]')]
            .map(tr => [tr.dataset.check, tr.querySelector('[data-field=status]').textContent]));",
    )
    .await;
    for check in api["checks"].as_array().unwrap() {
        let name = check["name"].as_str().unwrap();
        assert_eq!(shown[name], check["status"], "{name}: {shown}");
    }
    let ready = dom(
        browser,
        "return document.querySelector('[data-field=ready]').textContent;",
    )
    .await;
    assert_eq!(
        ready,
        if api["ready"] == true { "yes" } else { "no" },
        "{api}"
    );
    let segments = dom(
        browser,
        "return document.querySelectorAll('svg.timeline rect').length;",
    )
    .await;
    assert!(segments.as_u64().unwrap() >= 1, "a timeline per check");
    screenshot(browser, "health").await.expect("screenshot");
    assert_clean_console(browser, "health").await;
}

async fn features(agent: &AgentProcess) -> Value {
    let (status, index) = api_json(agent, "/api").await;
    assert_eq!(status, 200, "{index}");
    index["features"].clone()
}

async fn check_traces_and_findings(browser: &Browser, agent: &AgentProcess, features: &Value) {
    if features["traces"] == true {
        // Traces are listed once assembled (after their quiet period). Wait for
        // all of them: while some are still assembling, the slowest list changes
        // between the API's answer and the page's (a race a loaded machine hit).
        wait_until("every trace assembled", RENDER_DEADLINE, || async {
            let text = metrics_text(agent).await;
            metric_value(&text, "telltale_traces_completed_total", &[])
                .is_some_and(|done| done >= TRACES_SENT)
                && metric_value(&text, "telltale_traces_in_flight", &[]) == Some(0.0)
        })
        .await
        .expect("traces");
        open(browser, agent, "traces?list=slowest", "traces").await;
        let (_, api) = api_json(agent, "/api/v1/traces?list=slowest&limit=50").await;
        let first = &api["traces"][0];
        // The page fills its table from its own fetch: poll until it shows
        // the list, a deadline rather than one read racing that fetch.
        let started = std::time::Instant::now();
        let shown = loop {
            let shown = dom(browser, "return [...document.querySelectorAll('table.trace-list tr[data-trace]')].map(tr => [tr.dataset.trace, tr.querySelector('[data-field=duration]').textContent]);").await;
            if shown[0][0] == first["traceId"] || started.elapsed() > RENDER_DEADLINE {
                break shown;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(shown[0][0], first["traceId"], "{shown}");
        #[allow(clippy::cast_precision_loss)]
        let duration = first["durationNanos"].as_u64().unwrap() as f64 / 1e6;
        assert_eq!(shown[0][1], millis(duration));
        screenshot(browser, "traces").await.expect("screenshot");
        let id = first["traceId"].as_str().unwrap();
        open(browser, agent, &format!("traces/{id}"), "traces").await;
        let (_, trace) = api_json(agent, &format!("/api/v1/traces/{id}")).await;
        let rows = dom(
            browser,
            "return document.querySelectorAll('.waterfall .span-row').length;",
        )
        .await;
        assert_eq!(rows, json!(trace["spans"].as_array().unwrap().len()));
        screenshot(browser, "trace-waterfall")
            .await
            .expect("screenshot");
    } else {
        open(browser, agent, "traces", "traces").await;
        let text = dom(browser, "return document.querySelector('main').innerText;").await;
        assert!(
            text.as_str().unwrap().contains("No data yet"),
            "traces without the API: {text}"
        );
        screenshot(browser, "traces").await.expect("screenshot");
    }
    assert_clean_console(browser, "traces").await;

    if features["findings"] == true {
        wait_until("an N+1 finding", RENDER_DEADLINE, || async {
            let (_, body) = api_json(agent, "/api/v1/findings").await;
            body["findings"].as_array().is_some_and(|f| !f.is_empty())
        })
        .await
        .expect("findings");
        open(browser, agent, "findings", "findings").await;
        let (_, api) = api_json(agent, "/api/v1/findings").await;
        let shown = dom(browser, "return [...document.querySelectorAll('article.finding')].map(a => [a.dataset.finding, a.querySelector('[data-field=template]').textContent, a.querySelector('[data-field=count]').textContent]);").await;
        let finding = &api["findings"][0];
        let row = shown
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == finding["id"])
            .unwrap_or_else(|| panic!("finding {} not shown: {shown}", finding["id"]));
        assert_eq!(row[1], finding["template"]);
        assert_eq!(row[2], finding["count"].to_string());
    } else {
        open(browser, agent, "findings", "findings").await;
        let text = dom(browser, "return document.querySelector('main').innerText;").await;
        assert!(
            text.as_str().unwrap().contains("No data yet"),
            "findings without the API: {text}"
        );
    }
    screenshot(browser, "findings").await.expect("screenshot");
    assert_clean_console(browser, "findings").await;
}

async fn check_vitals(browser: &Browser, agent: &AgentProcess) {
    open(browser, agent, "vitals", "vitals").await;
    let (_, api) = api_json(agent, "/api/v1/rum/pages?window=1h").await;
    let page = &api["pages"][0];
    assert_eq!(page["page"], "/products/:id", "{api}");
    let shown = dom(
        browser,
        "const tr = document.querySelector('table.rum-pages tr[data-page=\"/products/:id\"]');
         return Object.fromEntries([...tr.querySelectorAll('td[data-vital]')].map(td =>
            [td.dataset.vital, { p75: td.querySelector('[data-field=p75]').textContent, rating: td.className }]));",
    )
    .await;
    for vital in ["LCP", "INP", "FCP", "TTFB"] {
        let summary = &page["vitals"][vital];
        assert_eq!(
            shown[vital]["p75"],
            millis(summary["p75"].as_f64().unwrap()),
            "{vital}"
        );
        let rating = summary["rating"].as_str().unwrap();
        assert!(
            shown[vital]["rating"]
                .as_str()
                .unwrap()
                .contains(&format!("rating-{rating}")),
            "{vital}: {shown}"
        );
    }
    assert_eq!(
        shown["CLS"]["p75"],
        format!("{:.3}", page["vitals"]["CLS"]["p75"].as_f64().unwrap())
    );
    screenshot(browser, "vitals").await.expect("screenshot");
    assert_clean_console(browser, "vitals").await;

    open(
        browser,
        agent,
        "vitals/%2Fproducts%2F%3Aid?app=shop.example&window=1h",
        "vitals",
    )
    .await;
    let (status, detail) = api_json(
        agent,
        "/api/v1/rum/pages/products/:id?app=shop.example&window=1h",
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let phases = dom(
        browser,
        "return Object.fromEntries([...document.querySelectorAll('tr[data-phase]')].map(tr =>
            [tr.dataset.phase, tr.querySelector('[data-field=p75]').textContent]));",
    )
    .await;
    for (phase, summary) in detail["page"]["navigation"].as_object().unwrap() {
        assert_eq!(
            phases[phase],
            millis(summary["p75"].as_f64().unwrap()),
            "{phase}: {phases}"
        );
    }
    let traces = dom(
        browser,
        "return [...document.querySelectorAll('tr[data-trace]')].map(tr => tr.dataset.trace);",
    )
    .await;
    assert_eq!(traces, json!([TRACE_ID]), "the slow load links its trace");
    let devices = dom(
        browser,
        "return [...document.querySelectorAll('tr[data-device]')].map(tr => tr.dataset.device);",
    )
    .await;
    assert_eq!(devices, json!(["desktop", "mobile"]));
    screenshot(browser, "vitals-page")
        .await
        .expect("screenshot");
    assert_clean_console(browser, "vitals page").await;
}

async fn check_flame(browser: &Browser, agent: &AgentProcess, features: &Value) {
    open(browser, agent, "flame", "flame").await;
    let text = dom(browser, "return document.querySelector('main').innerText;").await;
    if features["flamegraph"] == true {
        let (_, series) = api_json(agent, "/api/v1/flamegraph/series").await;
        if series["series"].as_array().is_some_and(|s| !s.is_empty()) {
            browser
                .wait_for(
                    "document.querySelector('iframe.flame-frame') !== null",
                    RENDER_DEADLINE,
                )
                .await
                .expect("a flame graph");
        }
    } else {
        assert!(
            text.as_str().unwrap().contains("No data yet"),
            "flame graphs without the API: {text}"
        );
    }
    screenshot(browser, "flame").await.expect("screenshot");
    assert_clean_console(browser, "flame").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_shows_what_the_api_returns_without_console_errors() {
    let ports = AgentPorts::pick();
    let agent = AgentProcess::spawn(&agent_config(&ports, ""), &ports)
        .await
        .expect("agent");
    send_traffic(&agent).await;
    send_beacons(&agent).await;
    let features = features(&agent).await;
    assert_eq!(features["rum"], true, "{features}");

    let browser = Browser::start().await.expect("headless Chromium");
    check_overview(&browser, &agent).await;
    check_health(&browser, &agent).await;
    check_traces_and_findings(&browser, &agent, &features).await;
    check_vitals(&browser, &agent).await;
    check_flame(&browser, &agent, &features).await;
    browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_only_the_static_shell_answers_and_no_secret_reaches_the_page() {
    const TOKEN: &str = "ui-test-token-5b0c7e1d9a";
    const PASSWORD: &str = "hunter2-redis-secret";
    let ports = AgentPorts::pick();
    // A Redis check on a closed port whose URL holds a password: it fails,
    // and its output must not carry the password.
    let closed = telltale_tests::free_port();
    let extra = format!(
        "\n[admin]\ntoken = \"{TOKEN}\"\n\n[health.checks.cache]\nkind = \"redis\"\ncritical = false\ninterval = \"200ms\"\ntimeout = \"100ms\"\nurl = \"redis://:{PASSWORD}@127.0.0.1:{closed}/\"\n"
    );
    let agent = AgentProcess::spawn(&agent_config(&ports, &extra), &ports)
        .await
        .expect("agent");

    let http = http_client();
    for path in [
        "/api",
        "/api/v1/services",
        "/api/v1/health",
        "/api/v1/rum/pages",
        "/metrics",
        "/admin/drain",
    ] {
        let response = http.get(agent.admin_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without the token");
        let response = http
            .get(agent.admin_url(path))
            .bearer_auth("wrong-token-0000000000")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path} with a wrong token");
    }
    let with_token = http
        .get(agent.admin_url("/api/v1/health"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    let health = with_token.text().await.unwrap();
    assert!(!health.contains(PASSWORD), "{health}");
    // The shell holds no data: the same bytes with or without a token.
    let shell = http.get(agent.admin_url("/")).send().await.unwrap();
    assert_eq!(shell.status(), 200);
    let shell = shell.text().await.unwrap();
    assert!(shell.contains("/ui/app.js"));
    assert!(!shell.contains("shop") && !shell.contains(TOKEN));

    let browser = Browser::start().await.expect("headless Chromium");
    browser
        .client()
        .goto(&agent.admin_url("/#/health"))
        .await
        .expect("navigate");
    browser
        .wait_for(
            "document.getElementById('token-dialog').open",
            RENDER_DEADLINE,
        )
        .await
        .expect("the dashboard asks for the token");
    let locked = dom(&browser, "return document.querySelector('main').innerText;").await;
    assert!(
        locked
            .as_str()
            .unwrap()
            .contains("requires its admin token"),
        "{locked}"
    );
    screenshot(&browser, "token-prompt")
        .await
        .expect("screenshot");
    let input = browser
        .client()
        .find(fantoccini::Locator::Css("#token-input"))
        .await
        .expect("token input");
    input.send_keys(TOKEN).await.expect("type the token");
    browser
        .client()
        .find(fantoccini::Locator::Css("#token-form button"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    browser
        .wait_for(
            "document.body.dataset.page === 'health' && document.querySelector('tr[data-check=\"cache\"]') !== null",
            RENDER_DEADLINE,
        )
        .await
        .expect("the health page after the token");
    // The check has failed by now; its output is on the page, redacted.
    browser
        .wait_for(
            "document.querySelector('tr[data-check=\"cache\"] [data-field=status]').textContent !== 'pass'",
            RENDER_DEADLINE,
        )
        .await
        .expect("the failing cache check");
    // Another page, reached by navigation: the token is not asked again.
    open(&browser, &agent, "overview?window=1h", "overview").await;
    open(&browser, &agent, "health", "health").await;
    let page = dom(
        &browser,
        "return document.documentElement.outerHTML + document.body.innerText + location.href;",
    )
    .await;
    let page = page.as_str().unwrap();
    assert!(!page.contains(TOKEN), "the token is shown in the page");
    assert!(
        !page.contains(PASSWORD),
        "a check's password reached the page"
    );
    let kept = dom(
        &browser,
        "return sessionStorage.getItem('telltale.adminToken');",
    )
    .await;
    assert_eq!(kept, TOKEN, "the token is kept for the tab");
    screenshot(&browser, "health-with-token")
        .await
        .expect("screenshot");
    // The only errors the browser logged are the 401s before the token.
    let entries = severe_logs(&browser).await.expect("log");
    assert!(
        entries.iter().all(|e| e.message.contains("401")),
        "{entries:#?}"
    );
    browser.close().await.expect("close");
}
