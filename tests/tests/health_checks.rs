//! Every check kind against the real thing, passing and failing, through the real
//! `telltale` binary; and no credential ever reaches a body or a log line.

use std::time::Duration;

use serde_json::Value;
use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::apps::TinyHttpApp;
use telltale_tests::postgres::PrivatePostgres;
use telltale_tests::redis::PrivateRedis;
use telltale_tests::shared;

/// Schedules that settle in about a second, with a timeout long enough that a
/// loaded machine's slow probe is not mistaken for a failing dependency.
const FAST: &str = "[health]\ninterval = \"1s\"\ntimeout = \"900ms\"\nrise = 1\nfall = 1\n";

async fn get_json(url: &str) -> (u16, Value, String) {
    let response = reqwest::get(url).await.expect("request to the agent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let body = response.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json, content_type)
}

/// Waits until `GET url` answers `status`, returning the last body.
async fn wait_for_status(url: &str, status: u16, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (code, body, _) = get_json(url).await;
        if code == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not answer {status} within {within:?}; last: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_entry<'a>(report: &'a Value, key: &str) -> &'a Value {
    &report["checks"][key][0]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_check_kind_passes_against_the_real_service() {
    shared::require_shared_services()
        .await
        .expect("shared services");
    let postgres = PrivatePostgres::start().await.expect("private postgres");
    let redis = PrivateRedis::start().await.expect("private redis");
    let app = TinyHttpApp::start("app").await.expect("http app");
    let sqlite_dir = tempfile::tempdir().unwrap();
    // A zero-length file is a valid, empty SQLite database.
    let sqlite_file = sqlite_dir.path().join("app.db");
    std::fs::write(&sqlite_file, b"").unwrap();

    let ports = AgentPorts::pick();
    let config = format!(
        "{listeners}{FAST}
[health.checks.pg]
kind = \"postgres\"
url = \"{pg}\"
[health.checks.maria]
kind = \"mysql\"
url = \"{maria}\"
[health.checks.lite]
kind = \"sqlite\"
url = \"sqlite://{lite}\"
[health.checks.cache]
kind = \"redis\"
url = \"{redis}\"
[health.checks.root]
kind = \"disk\"
path = \"/\"
warn_used_percent = 100
fail_used_percent = 100
[health.checks.mem]
kind = \"memory\"
warn_used_percent = 100
fail_used_percent = 100
[health.checks.web]
kind = \"http\"
url = \"http://127.0.0.1:{app}/\"
[health.checks.port]
kind = \"tcp\"
address = \"127.0.0.1:{app}\"
",
        listeners = ports.listeners_toml(false),
        pg = postgres.url(),
        maria = shared::SHARED_MARIADB_URL,
        lite = sqlite_file.display(),
        redis = redis.url(),
        app = app.port(),
    );
    let agent = AgentProcess::spawn(&config, &ports)
        .await
        .expect("agent starts");
    let report = wait_for_status(&agent.public_url("/health"), 200, Duration::from_secs(10)).await;
    // Pending checks fail the report, so 200 means every check has run and passed.
    assert_eq!(report["status"], "pass", "{report}");

    for (name, measurement, unit, component_type) in [
        ("pg", "responseTime", "ms", "datastore"),
        ("maria", "responseTime", "ms", "datastore"),
        ("lite", "responseTime", "ms", "datastore"),
        ("cache", "responseTime", "ms", "datastore"),
        ("root", "utilization", "percent", "system"),
        ("mem", "utilization", "percent", "system"),
        ("web", "responseTime", "ms", "component"),
        ("port", "responseTime", "ms", "component"),
    ] {
        let entry = check_entry(&report, &format!("{name}:{measurement}"));
        assert_eq!(entry["status"], "pass", "{name}: {report}");
        assert_eq!(entry["componentId"], name);
        assert_eq!(entry["componentType"], component_type);
        assert_eq!(entry["observedUnit"], unit);
        assert!(
            entry["observedValue"].as_f64().is_some_and(|v| v >= 0.0),
            "{name}: {entry}"
        );
        assert!(
            entry["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{entry}"
        );
        assert!(
            entry.get("output").is_none(),
            "output only on failure: {entry}"
        );

        let (code, single, content_type) =
            get_json(&agent.public_url(&format!("/health/{name}"))).await;
        assert_eq!(code, 200);
        assert_eq!(content_type, "application/health+json");
        assert_eq!(single["status"], "pass");
        assert_eq!(
            single["checks"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with(&format!("{name}:")))
                .count(),
            single["checks"].as_object().unwrap().len()
        );
    }
    assert!(
        report["checks"]["root:free"][0]["observedValue"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(app.requests_served() > 0, "the http check reached the app");

    let (code, live, _) = get_json(&agent.public_url("/health/live")).await;
    assert_eq!((code, live["status"].as_str()), (200, Some("pass")));
    let (code, missing, _) = get_json(&agent.public_url("/health/nosuch")).await;
    assert_eq!(code, 404);
    assert!(missing["error"].as_str().unwrap().contains("nosuch"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_check_kind_fails_with_a_reason_and_no_secret() {
    let app = TinyHttpApp::start("app").await.expect("http app");
    app.set_status(500);
    let closed = telltale_tests::ports::free_port();
    let ports = AgentPorts::pick();
    let config = format!(
        "{listeners}{FAST}
[health.checks.pg]
kind = \"postgres\"
url = \"postgres://app:pg-Secret-4711@127.0.0.1:{closed}/shop\"
[health.checks.maria]
kind = \"mysql\"
url = \"mysql://root:maria-Secret-4712@127.0.0.1:3306/test\"
[health.checks.lite]
kind = \"sqlite\"
url = \"sqlite:///nonexistent/dir/app.db\"
[health.checks.cache]
kind = \"redis\"
url = \"redis://:redis-Secret-4713@127.0.0.1:{closed}/\"
[health.checks.root]
kind = \"disk\"
path = \"/\"
warn_used_percent = 0.0001
fail_used_percent = 0.0001
[health.checks.mem]
kind = \"memory\"
critical = false
warn_used_percent = 0.0001
fail_used_percent = 0.0001
[health.checks.web]
kind = \"http\"
url = \"http://user:web-Secret-4714@127.0.0.1:{app}/\"
[health.checks.port]
kind = \"tcp\"
address = \"127.0.0.1:{closed}\"
",
        listeners = ports.listeners_toml(false),
        app = app.port(),
    );
    let agent = AgentProcess::spawn(&config, &ports)
        .await
        .expect("agent starts");
    // Wait for every check's first run: none may still be pending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let (code, report, _) = get_json(&agent.public_url("/health")).await;
        assert_eq!(code, 503, "{report}");
        let text = report.to_string();
        if !text.contains("pending") {
            break report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "checks still pending: {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["status"], "fail");
    let output = report["output"].as_str().unwrap();
    for name in ["pg", "maria", "lite", "cache", "root", "web", "port"] {
        assert!(output.contains(name), "{name} missing from {output}");
    }
    assert!(!output.contains("mem"), "memory is not critical: {output}");

    for (key, reason) in [
        ("pg:responseTime", "cannot connect"),
        ("maria:responseTime", "cannot connect"),
        ("lite:responseTime", "cannot connect"),
        ("cache:responseTime", "cannot connect"),
        ("root:utilization", "used"),
        ("web:responseTime", "HTTP 500"),
        ("port:responseTime", "cannot connect"),
    ] {
        let entry = check_entry(&report, key);
        assert_eq!(entry["status"], "fail", "{key}: {entry}");
        let out = entry["output"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} has no output: {entry}"));
        assert!(out.contains(reason), "{key}: `{out}` lacks `{reason}`");
    }
    // The non-critical memory check fails on its own endpoint, yet only warns the whole.
    let (code, mem, _) = get_json(&agent.public_url("/health/mem")).await;
    assert_eq!((code, mem["status"].as_str()), (503, Some("fail")));

    let (_, detail, _) = get_json(&agent.admin_url("/api/v1/health")).await;
    let metrics = reqwest::get(agent.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("telltale_health_check_up{check=\"pg\",kind=\"postgres\"} 0"),
        "{metrics}"
    );
    let everything = format!("{report}\n{detail}\n{metrics}\n{}", agent.logs());
    for secret in [
        "pg-Secret-4711",
        "maria-Secret-4712",
        "redis-Secret-4713",
        "web-Secret-4714",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    assert!(
        agent.logs().contains("check turned fail")
            || agent.logs().contains("first check run failed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        "[health.checks.db]\nkind = \"postgres\"\nurl = \"postgres://app:Hunter2-Secret@db:5432/shop\"\n",
    )
    .unwrap();
    let output = AgentProcess::run_to_end(
        &["check-config", file.to_str().unwrap()],
        &[("TELLTALE_ADMIN__TOKEN", "a-very-long-admin-token-value")],
    )
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("postgres://app:***@db:5432/shop"),
        "{stdout}"
    );
    assert!(stdout.contains("token = \"***\""), "{stdout}");
    assert!(
        !stdout.contains("Hunter2-Secret") && !stdout.contains("a-very-long-admin-token-value"),
        "{stdout}"
    );
    assert!(
        stdout.contains("interval = \"5s\""),
        "defaults are shown: {stdout}"
    );
}
