//! Measures the built-in dashboard for BENCHMARKS.md (examples/bench/dashboard.sh
//! runs it against an agent it has loaded):
//!
//! - `page-load ADMIN_URL RUNS`: each page opened cold in a real headless
//!   Chromium, RUNS times; the time from navigation start to the first render
//!   with data (the page's `telltale:first-render` performance mark).
//! - `api ADMIN_URL SECONDS [PAUSE_MS]`: the overview's requests (what
//!   `#/overview` fetches on each refresh) one refresh after another (PAUSE_MS
//!   apart, default 0) for SECONDS; each refresh's wall time and each
//!   endpoint's latency.
//!
//! Prints markdown tables on stdout.

// The report on stdout is what this program is for.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use telltale_tests::Browser;

const PAGES: &[&str] = &[
    "overview", "health", "traces", "findings", "vitals", "flame",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["page-load", admin, runs] => page_load(admin, runs.parse().context("RUNS")?).await,
        ["api", admin, seconds] => api(admin, seconds.parse().context("SECONDS")?, 0).await,
        ["api", admin, seconds, pause] => {
            api(
                admin,
                seconds.parse().context("SECONDS")?,
                pause.parse().context("PAUSE_MS")?,
            )
            .await
        }
        _ => bail!(
            "usage: dashboard_bench page-load ADMIN_URL RUNS | api ADMIN_URL SECONDS [PAUSE_MS]"
        ),
    }
}

async fn page_load(admin: &str, runs: usize) -> anyhow::Result<()> {
    let browser = Browser::start().await?;
    println!("| page | first render with data, median ms | min | max | elements in the page |");
    println!("|---|---:|---:|---:|---:|");
    for page in PAGES {
        let mut times = Vec::with_capacity(runs);
        let mut elements = 0;
        for _ in 0..runs {
            browser.client().goto("about:blank").await?;
            browser.client().goto(&format!("{admin}/#/{page}")).await?;
            browser
                .wait_for(
                    "performance.getEntriesByName('telltale:first-render').length > 0",
                    Duration::from_secs(60),
                )
                .await
                .with_context(|| format!("#/{page} never rendered with data"))?;
            let measured = browser
                .eval(
                    "return [performance.getEntriesByName('telltale:first-render')[0].startTime, \
                     document.querySelectorAll('#main *').length];",
                )
                .await?;
            times.push(measured[0].as_f64().context("a mark time")?);
            elements = measured[1].as_u64().unwrap_or(0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| `#/{page}` | {:.0} | {:.0} | {:.0} | {elements} |",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
    browser.close().await
}

async fn api(admin: &str, seconds: u64, pause_ms: u64) -> anyhow::Result<()> {
    let client = telltale_tests::http_client();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{admin}{path}");
        async move {
            let started = Instant::now();
            let response = client.get(&url).send().await.context("GET")?;
            if !response.status().is_success() {
                bail!("{url}: {}", response.status());
            }
            let body: serde_json::Value = response.json().await?;
            anyhow::Ok((started.elapsed(), body))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut refreshes = Vec::new();
    let mut services_ms = Vec::new();
    let mut routes_ms = Vec::new();
    let mut routes_seen;
    loop {
        let started = Instant::now();
        let (services, _saturation, _alerts) = tokio::try_join!(
            get("/api/v1/services?window=5m".into()),
            get("/api/v1/saturation".into()),
            get("/api/v1/alerts".into()),
        )?;
        services_ms.push(services.0);
        let names: Vec<String> = services.1["services"]
            .as_array()
            .context("services")?
            .iter()
            .filter_map(|s| s["service"].as_str().map(str::to_owned))
            .collect();
        // All routes requests at once, as the page's Promise.all does.
        let mut routes = tokio::task::JoinSet::new();
        for name in &names {
            routes.spawn(get(format!(
                "/api/v1/services/{}/routes?window=5m",
                urlencode(name)
            )));
        }
        let routes = routes.join_all().await;
        routes_seen = 0;
        for answer in routes {
            let (elapsed, body) = answer?;
            routes_ms.push(elapsed);
            routes_seen += body["routes"].as_array().map_or(0, Vec::len);
        }
        refreshes.push(started.elapsed());
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    println!("| request | count | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, samples) in [
        ("one overview refresh (all requests)", &mut refreshes),
        ("`/api/v1/services`", &mut services_ms),
        ("`/api/v1/services/{s}/routes`", &mut routes_ms),
    ] {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} |",
            samples.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0))
        );
    }
    println!("\nroutes listed per refresh: {routes_seen}");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
