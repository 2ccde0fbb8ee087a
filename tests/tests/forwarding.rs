//! Forwarding upstream: a second agent plays the collector. Every span arrives;
//! during an outage spans wait in the bounded queue and arrive when the
//! upstream returns; past the bound the oldest are dropped and counted. An
//! upstream that accepts connections and never answers delays neither ingest,
//! nor `/health`, nor shutdown.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::otlp::{SpanSpec, Transport, export_all, exporter, metric_value};

const UPSTREAM_CONFIG: &str = "[health.checks.mem]\nkind = \"memory\"\n";

async fn metric(agent: &AgentProcess, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::get(agent.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, name, labels).unwrap_or(0.0)
}

/// Waits until the counter `name` reaches `want`; going past it fails at once.
async fn wait_metric(
    agent: &AgentProcess,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
) {
    wait_value(agent, name, labels, want, within, true).await;
}

/// Waits until the gauge `name` reads `want`, from above or below.
async fn wait_gauge(
    agent: &AgentProcess,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
) {
    wait_value(agent, name, labels, want, within, false).await;
}

async fn wait_value(
    agent: &AgentProcess,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
    counter: bool,
) {
    let started = Instant::now();
    loop {
        let value = metric(agent, name, labels).await;
        if value == want {
            return;
        }
        assert!(
            !counter || value <= want,
            "{name}{labels:?} = {value}, more than {want}"
        );
        assert!(
            started.elapsed() < within,
            "{name}{labels:?} = {value}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_upstream(ports: &AgentPorts) -> AgentProcess {
    let config = format!("{}{UPSTREAM_CONFIG}", ports.listeners_toml(false));
    AgentProcess::spawn(&config, ports)
        .await
        .expect("upstream agent")
}

async fn stop(mut agent: AgentProcess) {
    agent.signal(Signal::SIGKILL).expect("kill upstream");
    agent
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("upstream exits");
}

async fn send(ports: &AgentPorts, first_id: u64, count: u64) {
    let exporter = exporter(
        Transport::Grpc,
        ports.otlp_grpc,
        ports.otlp_http,
        false,
        "forwarded",
    )
    .unwrap();
    let spans = (first_id..first_id + count)
        .map(|i| SpanSpec::server(u128::from(i), i, "/forwarded", Duration::from_millis(3)).build())
        .collect();
    export_all(&exporter, spans, 100)
        .await
        .expect("export to the edge agent");
}

/// An edge agent's config forwarding to `endpoint`; `extra` is more TOML.
fn forwarding_config(ports: &AgentPorts, endpoint: &str, protocol: &str, extra: &str) -> String {
    format!(
        "{}{UPSTREAM_CONFIG}[upstream]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nbatch_max_spans = 500\nbatch_timeout = \"100ms\"\nqueue_max_spans = 3000\nmax_backoff = \"300ms\"\n{extra}",
        ports.listeners_toml(false)
    )
}

/// An edge forwarding to `upstream`; `extra` is more TOML for `[upstream]`.
fn edge_config(ports: &AgentPorts, upstream: &AgentPorts, protocol: &str, extra: &str) -> String {
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", upstream.otlp_grpc),
        _ => format!("http://127.0.0.1:{}", upstream.otlp_http),
    };
    forwarding_config(
        ports,
        &endpoint,
        protocol,
        &format!("timeout = \"2s\"\n{extra}"),
    )
}

/// Only forwarded spans: the counts below are exact.
const NO_GOLDEN_METRICS: &str = "export_metrics = false\n";

const PROCESSED: &str = "telltale_ingest_processed_items_total";
const DROPPED: &str = "telltale_forward_dropped_items_total";
const SENT: &str = "telltale_forward_sent_items_total";
const QUEUED: &str = "telltale_forward_queue_items";
const TRACES: [(&str, &str); 1] = [("signal", "traces")];

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_the_upstream_and_survive_its_outage_within_the_bound() {
    let upstream_ports = AgentPorts::pick();
    let upstream = start_upstream(&upstream_ports).await;
    let edge_ports = AgentPorts::pick();
    let edge = AgentProcess::spawn(
        &edge_config(&edge_ports, &upstream_ports, "grpc", NO_GOLDEN_METRICS),
        &edge_ports,
    )
    .await
    .expect("edge agent");
    let within = Duration::from_secs(20);

    // Every span arrives.
    send(&edge_ports, 1, 1_000).await;
    wait_metric(&upstream, PROCESSED, &TRACES, 1_000.0, within).await;
    wait_metric(&edge, SENT, &TRACES, 1_000.0, within).await;
    assert_eq!(
        metric(&edge, "telltale_forward_upstream_up", &[]).await,
        1.0
    );

    // Outage: spans wait in the edge's queue, then arrive when the upstream returns.
    stop(upstream).await;
    send(&edge_ports, 10_000, 2_000).await;
    wait_gauge(&edge, QUEUED, &TRACES, 2_000.0, within).await;
    let upstream = start_upstream(&upstream_ports).await;
    wait_metric(&upstream, PROCESSED, &TRACES, 2_000.0, within).await;
    wait_gauge(&edge, QUEUED, &TRACES, 0.0, within).await;
    assert_eq!(metric(&edge, DROPPED, &[]).await, 0.0);
    assert!(metric(&edge, "telltale_forward_retries_total", &TRACES).await > 0.0);

    // A longer outage than the queue holds: the oldest are dropped and counted.
    stop(upstream).await;
    send(&edge_ports, 20_000, 5_000).await;
    wait_gauge(&edge, QUEUED, &TRACES, 3_000.0, within).await;
    // The drop is counted just after the queue gauge moves: waited for too.
    wait_metric(
        &edge,
        DROPPED,
        &[("signal", "traces"), ("reason", "queue_full")],
        2_000.0,
        within,
    )
    .await;
    let upstream = start_upstream(&upstream_ports).await;
    wait_metric(&upstream, PROCESSED, &TRACES, 3_000.0, within).await;
    wait_metric(&edge, SENT, &TRACES, 6_000.0, within).await;
    // Health never depended on the upstream.
    let health = reqwest::get(edge.public_url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_and_golden_signals_reach_an_http_upstream() {
    let upstream_ports = AgentPorts::pick();
    let upstream = start_upstream(&upstream_ports).await;
    let edge_ports = AgentPorts::pick();
    let golden = "export_metrics = true\nmetrics_interval = \"1s\"\n";
    let edge = AgentProcess::spawn(
        &edge_config(&edge_ports, &upstream_ports, "http", golden),
        &edge_ports,
    )
    .await
    .expect("edge agent");
    send(&edge_ports, 1, 700).await;
    let within = Duration::from_secs(20);
    wait_metric(&upstream, PROCESSED, &TRACES, 700.0, within).await;
    wait_metric(&edge, SENT, &TRACES, 700.0, within).await;

    // The edge's golden signals of /forwarded arrive as OTLP metrics: one
    // rate, one error ratio and four latency quantiles per export.
    let metrics = [("signal", "metrics")];
    let started = Instant::now();
    while metric(&upstream, PROCESSED, &metrics).await < 6.0 {
        assert!(
            started.elapsed() < within,
            "no golden signals upstream after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The edge counts what it sent once the upstream has answered, which
    // may be just after the upstream processed it.
    let started = Instant::now();
    while metric(&edge, SENT, &metrics).await < 6.0 {
        assert!(
            started.elapsed() < within,
            "the edge never counted its golden signals as sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&edge, DROPPED, &[]).await, 0.0);
}

/// How long the silent upstream makes each export wait: far longer than any
/// bound below, so a forwarder that blocked anything would fail them.
const SILENT_TIMEOUT: &str = "timeout = \"60s\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_upstream_delays_neither_ingest_nor_health_nor_shutdown() {
    // Accepts every connection and never says a word: the worst outage.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("an address"));
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    for protocol in ["grpc", "http"] {
        let ports = AgentPorts::pick();
        let extra = format!(
            "{SILENT_TIMEOUT}{NO_GOLDEN_METRICS}[shutdown]\ndrain_period = \"0s\"\ngrace_period = \"1s\"\n"
        );
        let mut edge = AgentProcess::spawn(
            &forwarding_config(&ports, &endpoint, protocol, &extra),
            &ports,
        )
        .await
        .expect("edge agent");

        // Ingest answers while every export hangs: the spans wait in the queue.
        tokio::time::timeout(Duration::from_secs(20), send(&ports, 1, 1_000))
            .await
            .unwrap_or_else(|_| panic!("{protocol}: ingest stalled behind the silent upstream"));
        wait_metric(&edge, PROCESSED, &TRACES, 1_000.0, Duration::from_secs(20)).await;
        wait_gauge(&edge, QUEUED, &TRACES, 1_000.0, Duration::from_secs(20)).await;
        assert_eq!(metric(&edge, SENT, &TRACES).await, 0.0);

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        for _ in 0..5 {
            let health = client
                .get(edge.public_url("/health"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{protocol}: /health did not answer: {e}"));
            assert_eq!(health.status(), 200, "{protocol}");
        }

        // Shutdown: the flush is bounded by the grace period, the rest counted.
        edge.signal(Signal::SIGTERM).expect("SIGTERM");
        let status = edge
            .wait_exit(Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| {
                panic!("{protocol}: shutdown hung behind the silent upstream: {e}")
            });
        assert!(status.success(), "{protocol}: {status}");
        // The last lines may reach the log reader just after the exit.
        edge.wait_for_log("dropped at shutdown", Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: the shutdown loss is reported: {e}"));
    }
}
