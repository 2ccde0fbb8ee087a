//! A private Prometheus (Debian's `prometheus` package) scraping the agents a
//! test started, every second, with its own TSDB in a temp dir; and its HTTP
//! query API.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::bins;
use crate::output::{open_log, tail};
use crate::ports::{free_port, wait_until};
use crate::process::{Slot, Supervised};

/// How long Prometheus may take to answer `/-/ready` (it replays a WAL first).
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A `prometheus` process on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct PrivatePrometheus {
    server: Slot,
    dir: TempDir,
    port: u16,
}

impl PrivatePrometheus {
    /// Starts Prometheus scraping `/metrics` of each `host:port` in `targets`
    /// every second (job `telltale`), evaluating `rule_files` every second.
    /// The config is checked with `promtool check config` first.
    pub async fn start(targets: &[String], rule_files: &[PathBuf]) -> anyhow::Result<Self> {
        let prometheus = bins::require("prometheus", "prometheus")?;
        let dir = tempfile::Builder::new()
            .prefix("telltale-prometheus-")
            .tempdir()
            .context("cannot create a temp dir for Prometheus")?;
        let port = free_port();
        let config = config_text(targets, rule_files);
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, &config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        promtool(&["check", "config", &config_path.to_string_lossy()]).await?;

        let log_path = dir.path().join("prometheus.log");
        let log = open_log(&log_path)?;
        let mut cmd = Command::new(&prometheus);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdout(log.try_clone()?)
            .stderr(log);
        let this = Self {
            server: Slot::new("private Prometheus"),
            dir,
            port,
        };
        this.server.put(Supervised::spawn("prometheus", &mut cmd)?);
        let url = this.url("/-/ready");
        let server = &this.server;
        let ready = wait_until("prometheus /-/ready", READY_DEADLINE, || {
            let url = url.clone();
            async move {
                let exited = server.with(|s| s.try_exit()).ok().flatten();
                exited.is_some()
                    || reqwest::get(&url)
                        .await
                        .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        if let Some(status) = this.server.with(|s| s.try_exit())? {
            this.server.take();
            bail!(
                "prometheus exited during startup ({status})\n{}",
                tail(&log_path, 30)
            );
        }
        ready.with_context(|| tail(&log_path, 30))?;
        Ok(this)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The last lines of Prometheus's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("prometheus.log"), 30)
    }

    /// An instant query: each result's labels and value (NaN stays NaN).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<(Value, f64)>> {
        let url = reqwest::Url::parse_with_params(&self.url("/api/v1/query"), [("query", promql)])
            .context("a query URL")?;
        let response = crate::http::http_client()
            .get(url)
            .send()
            .await
            .context("GET /api/v1/query")?;
        let status = response.status();
        let body: Value = response.json().await.context("a JSON answer")?;
        if !status.is_success() || body["status"] != "success" {
            bail!("query {promql:?} failed ({status}): {body}");
        }
        let results = body["data"]["result"]
            .as_array()
            .with_context(|| format!("no vector result for {promql:?}: {body}"))?;
        results
            .iter()
            .map(|sample| {
                let text = sample["value"][1]
                    .as_str()
                    .with_context(|| format!("a sample without a value: {sample}"))?;
                let value = text
                    .parse::<f64>()
                    .with_context(|| format!("a value that is not a number: {text}"))?;
                Ok((sample["metric"].clone(), value))
            })
            .collect()
    }

    /// The state (`up` per target) of every scrape target, as `(instance, up)`.
    pub async fn targets_up(&self) -> anyhow::Result<Vec<(String, f64)>> {
        Ok(self
            .query("up{job=\"telltale\"}")
            .await?
            .into_iter()
            .map(|(labels, value)| {
                let instance = labels["instance"].as_str().unwrap_or_default().to_owned();
                (instance, value)
            })
            .collect())
    }
}

/// Runs `promtool` (from the same package) and fails with its output when it
/// disagrees.
pub async fn promtool(args: &[&str]) -> anyhow::Result<String> {
    let promtool = bins::require("promtool", "prometheus")?;
    let output = tokio::process::Command::new(&promtool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", promtool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "promtool {} failed ({}):\n{text}",
            args.join(" "),
            output.status
        );
    }
    Ok(text)
}

fn config_text(targets: &[String], rule_files: &[PathBuf]) -> String {
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|item| format!("\"{item}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rules = quoted(rule_files.iter().map(|p| p.display().to_string()).collect());
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n  - job_name: telltale\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [{}]\n",
        quoted(targets.to_vec())
    )
}
