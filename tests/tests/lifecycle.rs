//! Drain, shutdown, the admin token, start-up errors: the agent as a process.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use telltale_tests::agent::{AgentPorts, AgentProcess};

const QUICK_CHECKS: &str = "[health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\n";

async fn code_of(url: &str) -> u16 {
    reqwest::get(url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits until `url` answers `code` (a fresh agent's first checks may still
/// be running when its liveness already answers).
async fn wait_for_code(url: &str, code: u16, within: Duration) {
    let started = Instant::now();
    loop {
        let got = code_of(url).await;
        if got == code {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{url} answered {got}, not {code}, for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_readiness_at_once_keeps_liveness_and_exits_zero_after_the_drain_period() {
    let ports = AgentPorts::pick();
    let config = format!(
        "{}{QUICK_CHECKS}[shutdown]\ndrain_period = \"2s\"\ngrace_period = \"1s\"\n",
        ports.listeners_toml(false)
    );
    let mut agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    wait_for_code(&agent.public_url("/health"), 200, Duration::from_secs(5)).await;

    agent.signal(Signal::SIGTERM).expect("SIGTERM");
    let signalled = Instant::now();
    // Readiness turns at once (the signal reaches the agent asynchronously,
    // so "at once" is within half a second), and stays so.
    wait_for_code(
        &agent.public_url("/health"),
        503,
        Duration::from_millis(500),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(code_of(&agent.public_url("/health")).await, 503);
    }
    let response = reqwest::get(agent.public_url("/health/ready"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["output"], "draining", "{body}");
    assert_eq!(code_of(&agent.public_url("/readyz")).await, 503);
    assert_eq!(code_of(&agent.public_url("/health/live")).await, 200);
    assert_eq!(code_of(&agent.public_url("/livez")).await, 200);

    // Still answering through the drain period.
    tokio::time::sleep(Duration::from_millis(1_500).saturating_sub(signalled.elapsed())).await;
    assert_eq!(code_of(&agent.public_url("/health/live")).await, 200);

    let status = agent
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("agent exits");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}\n{}", agent.logs());
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the 2 s drain period"
    );
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}: drain 2 s + grace 1 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_drain_without_exit_takes_readiness_out_until_resumed() {
    let ports = AgentPorts::pick();
    let config = format!("{}{QUICK_CHECKS}", ports.listeners_toml(false));
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let client = reqwest::Client::new();

    let response = client
        .post(agent.admin_url("/admin/drain?exit=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(code_of(&agent.public_url("/health")).await, 503);
    assert_eq!(code_of(&agent.public_url("/health/live")).await, 200);
    let metrics = client
        .get(agent.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("telltale_draining 1"), "{metrics}");

    let response = client
        .delete(agent.admin_url("/admin/drain"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(code_of(&agent.public_url("/health")).await, 200);

    let response = client
        .post(agent.admin_url("/admin/drain?exit=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("exit=true|false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_drain_with_exit_ends_the_process() {
    let ports = AgentPorts::pick();
    let config = format!(
        "{}{QUICK_CHECKS}[shutdown]\ndrain_period = \"500ms\"\n",
        ports.listeners_toml(false)
    );
    let mut agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let client = reqwest::Client::new();
    let response = client
        .post(agent.admin_url("/admin/drain"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let response = client
        .delete(agent.admin_url("/admin/drain"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        409,
        "a drain that ends in exit cannot be cancelled"
    );
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("agent exits");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_token_is_required_when_configured_and_never_shown() {
    let ports = AgentPorts::pick();
    let token = "0123456789-admin-token-abcdef";
    let listeners = ports.listeners_toml(false).replace(
        &format!("127.0.0.1:{}", ports.admin),
        &format!("0.0.0.0:{}", ports.admin),
    );
    let config = format!("{listeners}{QUICK_CHECKS}[admin]\ntoken = \"{token}\"\n");
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let client = reqwest::Client::new();
    // The page shell at `/` is public (no data); everything with data is not.
    for path in ["/metrics", "/api/v1/health", "/api"] {
        let response = client.get(agent.admin_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without a token");
        assert!(response.headers().contains_key("www-authenticate"));
        let response = client
            .get(agent.admin_url(path))
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path} with a wrong token");
        let response = client
            .get(agent.admin_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path} with the token");
        assert!(!response.text().await.unwrap().contains(token));
    }
    let response = client
        .post(agent.admin_url("/admin/drain?exit=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "the drain switch is protected too");
    assert_eq!(code_of(&agent.public_url("/health")).await, 200);
    assert!(!agent.logs().contains(token));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_beyond_loopback_without_a_token_is_refused_at_start() {
    let ports = AgentPorts::pick();
    let listeners = ports.listeners_toml(false).replace(
        &format!("127.0.0.1:{}", ports.admin),
        &format!("0.0.0.0:{}", ports.admin),
    );
    let output = run_config(&listeners).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("listeners.admin") && stderr.contains("admin.token"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_is_a_start_error_naming_the_address() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let ports = AgentPorts::pick();
    let listeners = ports
        .listeners_toml(false)
        .replace(&format!("127.0.0.1:{}", ports.public), &taken.to_string());
    let output = run_config(&listeners).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&taken.to_string()) && stderr.contains("listeners.public"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configs_exit_non_zero_with_key_line_and_advice() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "[health]\ninterval = \"5s\"\n\n[health.chekcs.db]\nkind = \"postgres\"\n",
            "health.chekcs",
            "line 4",
        ),
        (
            "[health.checks.db]\nkind = \"postgres\"\nurl = \"not a url\"\n",
            "health.checks.db.url",
            "line 3",
        ),
        (
            "[health.checks.db]\nkind = \"postgres\"\nurl = \"redis://127.0.0.1:6379\"\n",
            "health.checks.db.url",
            "line 3",
        ),
        (
            "[health.checks.d]\nkind = \"disk\"\nfail_used_percent = 150\n",
            "health.checks.d.fail_used_percent",
            "line 3",
        ),
        (
            "[health]\ntimeout = \"ten seconds\"\n",
            "health.timeout",
            "line 2",
        ),
        (
            "[health]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
            "health.timeout",
            "line 3",
        ),
    ];
    for (config, key, place) in cases {
        let output = run_config(config).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{config}: {stderr}");
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{config}: key missing from {stderr}"
        );
        assert!(
            stderr.contains(place),
            "{config}: `{place}` missing from {stderr}"
        );
        assert!(
            stderr.contains("fix:"),
            "{config}: advice missing from {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The same checks through `check-config`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, cases[0].0).unwrap();
    let output = AgentProcess::run_to_end(&["check-config", file.to_str().unwrap()], &[])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean `checks`?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_runs_with_env_overrides_only() {
    let ports = AgentPorts::pick();
    let [public, admin, grpc, http] = [ports.public, ports.admin, ports.otlp_grpc, ports.otlp_http]
        .map(|p| format!("127.0.0.1:{p}"));
    let mut agent = AgentProcess::spawn_with_args(
        &[],
        &[
            ("TELLTALE_LISTENERS__PUBLIC", public.as_str()),
            ("TELLTALE_LISTENERS__ADMIN", admin.as_str()),
            ("TELLTALE_LISTENERS__OTLP_GRPC", grpc.as_str()),
            ("TELLTALE_LISTENERS__OTLP_HTTP", http.as_str()),
        ],
    )
    .await
    .expect("agent with no config file");
    let url = format!("http://{public}/health");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body: serde_json::Value = loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status() == 200
        {
            break response.json().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "default agent never ready:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body["checks"]["disk:utilization"].is_array(), "{body}");
    assert!(body["checks"]["memory:utilization"].is_array(), "{body}");
    agent.signal(Signal::SIGTERM).unwrap();
    // Two signals sent back to back may arrive as one (pending signals
    // coalesce): send the second once the first has started the drain.
    agent
        .wait_for_log("draining before exit", Duration::from_secs(5))
        .await
        .expect("the first SIGTERM starts the drain");
    agent.signal(Signal::SIGTERM).unwrap();
    assert!(
        agent
            .wait_exit(Duration::from_secs(10))
            .await
            .unwrap()
            .success()
    );
}

/// Runs the agent on a config file that must be refused, and collects its output.
async fn run_config(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("telltale.toml");
    std::fs::write(&file, config).unwrap();
    AgentProcess::run_to_end(&["--config", file.to_str().unwrap()], &[])
        .await
        .expect("agent runs")
}
