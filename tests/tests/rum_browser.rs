//! A real headless Chromium loads a product page served on loopback that
//! includes the agent's `/rum.js` and Google's `web-vitals` (installed from
//! npm now, never committed). After a real click and navigating away (which
//! hides the page), the agent holds LCP, CLS, FCP, TTFB, INP and the
//! navigation breakdown for the normalised page from both, and the two agree.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::Value;
use telltale_tests::admin::api_json;
use telltale_tests::npm::NpmPackage;
use telltale_tests::{AgentPorts, AgentProcess, Browser};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const VITALS: [&str; 5] = ["LCP", "CLS", "FCP", "TTFB", "INP"];
/// The shortest interaction web-vitals reports as INP by default.
const WEB_VITALS_INP_THRESHOLD_MS: f64 = 40.0;
const NAVIGATION: [&str; 6] = ["dns", "tcp", "request", "download", "dom", "load"];

/// The product page: both collectors, a late banner that shifts the layout,
/// and a button whose handler blocks the main thread for 150 ms (an INP
/// well above web-vitals' 40 ms reporting threshold).
fn product_page(agent_public: u16) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Product 42</title>
<script src="http://127.0.0.1:{agent_public}/rum.js"></script>
<script src="/web-vitals.js"></script>
<script>
  // web-vitals' Metric objects, posted as the library produces them.
  var beacon = "http://127.0.0.1:{agent_public}/rum?app=web-vitals&page=" + encodeURIComponent(location.href);
  function send(metric) {{ navigator.sendBeacon(beacon, JSON.stringify(metric)); }}
  webVitals.onLCP(send); webVitals.onCLS(send); webVitals.onFCP(send);
  webVitals.onTTFB(send);
  // web-vitals processes INP entries in an idle callback, and headless
  // Chromium runs none: the entries are only read at the hide, too late
  // for the default report-on-hide. reportAllChanges sends them then.
  webVitals.onINP(send, {{ reportAllChanges: true }});
</script>
</head><body>
<div id="banner"></div>
<h1>Product 42</h1>
<p style="font-size:32px">A pair of running shoes, light and fast, with a long description
that makes this paragraph the largest contentful element of the page.</p>
<button id="buy" style="font-size:28px">Buy</button>
<script>
  document.getElementById("buy").addEventListener("click", function () {{
    var until = performance.now() + 150;
    while (performance.now() < until) {{}}
    this.textContent = "Bought";
  }});
  // The click's Event Timing entry reaches observers only once the frame
  // after it is presented, which a loaded machine delays. Observers are told
  // in the order they were made, so when this last one has the entry, both
  // collectors have it too and will send it when the page is hidden.
  new PerformanceObserver(function (list) {{
    list.getEntries().forEach(function (e) {{
      if (e.name === "click" && e.duration >= 100) window.clickTimed = true;
    }});
  }}).observe({{ type: "event", durationThreshold: 16 }});
  setTimeout(function () {{
    var banner = document.getElementById("banner");
    banner.style.height = "240px";
    banner.textContent = "Sale!";
    requestAnimationFrame(function () {{ setTimeout(function () {{ window.shifted = true; }}, 100); }});
  }}, 300);
</script>
</body></html>"#
    )
}

/// Serves the pages on a free loopback port; returns the port.
async fn serve_pages(web_vitals: PathBuf, agent_public: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = std::fs::read_to_string(&web_vitals)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", web_vitals.display()));
    let page = product_page(agent_public);
    let app = Router::new()
        .route(
            "/products/{id}",
            get(move || async move {
                (
                    [(
                        header::HeaderName::from_static("server-timing"),
                        format!("traceparent;desc=\"00-{TRACE_ID}-00f067aa0ba902b7-01\""),
                    )],
                    Html(page),
                )
            }),
        )
        .route(
            "/web-vitals.js",
            get(move || async move {
                ([(header::CONTENT_TYPE, "text/javascript")], script).into_response()
            }),
        )
        .route(
            "/next",
            get(|| async { Html("<!doctype html><p>next page</p>") }),
        );
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, server)
}

/// The page detail of `app`, once it holds every vital (else `None`).
async fn complete_page(agent: &AgentProcess, app: &str) -> Option<Value> {
    let path = format!("/api/v1/rum/pages/products/:id?app={app}");
    let (status, body) = api_json(agent, &path).await;
    if status != 200 {
        return None;
    }
    let page = body["page"].clone();
    VITALS
        .iter()
        .all(|v| page["vitals"][v]["count"].as_u64() == Some(1))
        .then_some(page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rum_js_and_web_vitals_report_the_same_page_load() {
    let web_vitals =
        NpmPackage::install("web-vitals", "web-vitals@5").expect("npm install web-vitals");
    let ports = AgentPorts::pick();
    // The page origin must be in the allow-list before the agent starts.
    let (page_listener_port, _pages) = serve_pages(
        web_vitals.file("dist/web-vitals.attribution.iife.js"),
        ports.public,
    )
    .await;
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n\n[storage]\npath = \":memory:\"\n\n[rum]\nallowed_origins = [\"http://127.0.0.1:{page_listener_port}\"]\n",
        ports.listeners_toml(false)
    );
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");

    let browser = Browser::start().await.expect("headless Chromium");
    let url = format!("http://127.0.0.1:{page_listener_port}/products/42?ref=mail#reviews");
    browser.client().goto(&url).await.expect("load the page");
    browser
        .wait_for(
            "document.readyState === 'complete' && window.shifted === true",
            Duration::from_secs(20),
        )
        .await
        .expect("page loaded and shifted");
    // A real click through WebDriver (trusted input, so the browser times it).
    browser
        .client()
        .find(fantoccini::Locator::Css("#buy"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
    browser
        .wait_for("window.clickTimed === true", Duration::from_secs(10))
        .await
        .expect("click handled, painted and timed");
    // Navigating away hides the document: visibilitychange -> hidden fires
    // during unload, and both collectors send their beacons then.
    browser
        .client()
        .goto(&format!("http://127.0.0.1:{page_listener_port}/next"))
        .await
        .expect("navigate away");

    let app = format!("127.0.0.1:{page_listener_port}");
    let started = std::time::Instant::now();
    // A collector may report a quicker part of the interaction first (web-vitals
    // with reportAllChanges sends the pointerdown's few ms) and the click's
    // under the same metric id; the agent keeps the larger whichever beacon
    // arrives last. Wait until both hold the click.
    let counts_the_click = |page: &Value| {
        page["vitals"]["INP"]["p50"]
            .as_f64()
            .is_some_and(|inp| inp >= WEB_VITALS_INP_THRESHOLD_MS)
    };
    let (ours, theirs) = loop {
        let ours = complete_page(&agent, &app).await.filter(counts_the_click);
        let theirs = complete_page(&agent, "web-vitals")
            .await
            .filter(counts_the_click);
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            break (ours, theirs);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let (_, everything) = api_json(&agent, "/api/v1/rum/pages").await;
            let counters: Vec<String> = telltale_tests::admin::metrics_text(&agent)
                .await
                .lines()
                .filter(|l| l.starts_with("telltale_rum_") && !l.contains("_bucket"))
                .map(str::to_owned)
                .collect();
            panic!(
                "no complete beacons, the click in their INP, from both collectors within 20 s\npages: {everything:#}\ncounters:\n{}",
                counters.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The navigation breakdown and the backend trace of the document.
    for step in NAVIGATION {
        assert_eq!(ours["navigation"][step]["count"], 1, "{step}: {ours:#}");
    }
    assert_eq!(ours["slowestLoads"][0]["traceId"], TRACE_ID, "{ours:#}");
    assert!(
        ours["devices"]["desktop"].is_object(),
        "headless Chrome is a desktop: {ours:#}"
    );
    assert!(
        ours["vitals"]["CLS"]["p50"].as_f64().unwrap() > 0.0,
        "the banner shifted the layout: {ours:#}"
    );
    assert!(
        ours["vitals"]["INP"]["p50"].as_f64().unwrap() >= 150.0,
        "the click blocked for 150 ms: {ours:#}"
    );

    // The same load, measured twice: within 10 % of each other.
    for vital in VITALS {
        let a = ours["vitals"][vital]["p50"].as_f64().unwrap();
        let b = theirs["vitals"][vital]["p50"].as_f64().unwrap();
        let tolerance = 0.10 * a.max(b);
        assert!(
            (a - b).abs() <= tolerance,
            "{vital}: rum.js {a} vs web-vitals {b}\nrum.js: {ours:#}\nweb-vitals: {theirs:#}"
        );
    }
    browser.close().await.expect("close the browser");
}
