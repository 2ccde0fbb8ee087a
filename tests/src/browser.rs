//! A real headless Chromium driven over WebDriver: `chromedriver` (Debian's
//! `chromium-driver`) started on a free port, one session opened with
//! fantoccini. Reusable by any test that needs a browser (RUM, dashboard).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::bins::require;
use crate::ports::{free_port, wait_until};
use crate::process::Supervised;

/// How long chromedriver may take to answer `/status`.
const DRIVER_DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium session; the browser and its driver are killed when
/// this is dropped.
#[derive(Debug)]
pub struct Browser {
    client: fantoccini::Client,
    _driver: Supervised,
}

impl Browser {
    /// Starts chromedriver and opens a headless session (`--no-sandbox` when
    /// running as root, where Chromium's sandbox refuses to start).
    ///
    /// Fails, naming the package, when `chromium` or `chromedriver` is
    /// missing: `tests/run.sh` installs both.
    pub async fn start() -> anyhow::Result<Self> {
        let chromium = require("chromium", "chromium")?;
        let chromedriver = require("chromedriver", "chromium-driver")?;
        let port = free_port();
        let mut cmd = Command::new(&chromedriver);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let driver = Supervised::spawn("chromedriver", &mut cmd)?;
        let status = format!("http://127.0.0.1:{port}/status");
        let http = crate::http::http_client();
        wait_until("chromedriver's /status", DRIVER_DEADLINE, || async {
            http.get(&status)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;

        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
        ];
        if running_as_root() {
            args.push("--no-sandbox");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium.to_string_lossy(),
                "args": args,
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .with_context(|| {
                format!(
                    "cannot open a headless Chromium session through {}",
                    chromedriver.display()
                )
            })?;
        Ok(Self {
            client,
            _driver: driver,
        })
    }

    /// The WebDriver session.
    pub fn client(&self) -> &fantoccini::Client {
        &self.client
    }

    /// Runs `script` in the page and returns its value as JSON.
    pub async fn eval(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        self.client
            .execute(script, Vec::new())
            .await
            .with_context(|| format!("cannot run in the page: {script}"))
    }

    /// Waits until `condition` (a JavaScript expression) is true in the page.
    pub async fn wait_for(&self, condition: &str, deadline: Duration) -> anyhow::Result<()> {
        let script = format!("return Boolean({condition});");
        let waited = wait_until(condition, deadline, || async {
            matches!(self.eval(&script).await, Ok(serde_json::Value::Bool(true)))
        })
        .await;
        if waited.is_err() {
            bail!("`{condition}` did not become true in the page within {deadline:?}");
        }
        Ok(())
    }

    /// Ends the session (the browser exits); the driver goes on drop.
    pub async fn close(self) -> anyhow::Result<()> {
        self.client
            .close()
            .await
            .context("cannot end the WebDriver session")
    }
}

/// Chromium's sandbox refuses to start as root.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
