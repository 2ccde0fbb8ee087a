//! The load generator against a real agent: what it reports as accepted is
//! what the agent counted, its rate holds, and refusals under backpressure are
//! reported as refusals, not as losses.

use std::path::PathBuf;
use std::process::Command;

use telltale_tests::admin::{telemetry_agent, wait_processed};
use telltale_tests::agent::AgentProcess;
use telltale_tests::otlp::metric_value;
use telltale_tests::telltale_bin;

/// `telltale-loadgen`, built beside the agent by `cargo build --workspace`.
fn loadgen_bin() -> PathBuf {
    let path = telltale_bin()
        .expect("agent binary")
        .with_file_name("telltale-loadgen");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p telltale-loadgen` (tests/run.sh builds the workspace)",
        path.display()
    );
    path
}

fn run_loadgen(agent: &AgentProcess, args: &[&str]) -> serde_json::Value {
    let ports = agent.agent_ports().expect("ports");
    let endpoint = if args.contains(&"http") {
        format!("http://127.0.0.1:{}", ports.otlp_http)
    } else {
        format!("http://127.0.0.1:{}", ports.otlp_grpc)
    };
    let output = Command::new(loadgen_bin())
        .args(["--endpoint", &endpoint, "--report", "json"])
        .args(args)
        .output()
        .expect("run telltale-loadgen");
    assert!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_rate_is_held_and_every_reported_span_was_accepted() {
    let agent = telemetry_agent("").await;
    let report = tokio::task::block_in_place(|| {
        run_loadgen(
            &agent,
            &[
                "--protocol",
                "http",
                "--rate",
                "2000",
                "--duration",
                "3s",
                "--spans-per-request",
                "50",
            ],
        )
    });
    let accepted = report["spans_accepted"].as_f64().unwrap();
    // 2,000 spans/s for 3 s: the schedule sends 6,000, give or take the last
    // tick; requests still due when the time is up are not sent, so a slow
    // moment near the end on a loaded machine costs a few.
    assert!((5_400.0..=6_200.0).contains(&accepted), "{report}");
    assert_eq!(report["requests_refused"], 0);
    assert_eq!(report["requests_failed"], 0);
    let text = wait_processed(&agent, "traces", accepted).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_accepted_items_total",
            &[("signal", "traces")]
        ),
        Some(accepted),
        "{text}"
    );
    // Realistic traces: one SERVER root per five spans counts as a request.
    let requests = metric_value(&text, "telltale_requests_total", &[]).unwrap();
    assert!(
        (requests - accepted / 5.0).abs() < 1.0,
        "{requests} requests for {accepted} spans"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_under_backpressure_are_reported_as_refusals() {
    let agent = telemetry_agent("[ingest]\nqueue_capacity = 1\npipeline_delay = \"100ms\"\n").await;
    let report = tokio::task::block_in_place(|| {
        run_loadgen(
            &agent,
            &[
                "--protocol",
                "grpc",
                "--duration",
                "2s",
                "--connections",
                "8",
            ],
        )
    });
    assert!(report["requests_refused"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["requests_failed"], 0, "{report}");
    let accepted = report["spans_accepted"].as_f64().unwrap();
    let text = wait_processed(&agent, "traces", accepted).await;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_accepted_items_total",
            &[("signal", "traces")]
        ),
        Some(accepted),
        "{text}"
    );
    let refused_spans = report["requests_refused"].as_f64().unwrap() * 100.0;
    assert_eq!(
        metric_value(
            &text,
            "telltale_ingest_refused_items_total",
            &[("signal", "traces")]
        ),
        Some(refused_spans),
        "{text}"
    );
}
