//! `examples/shop` run as a child process, pointed at a test's OTLP receiver
//! (the agent or [`crate::collector::OtlpCollector`]) and the shared
//! PostgreSQL and Redis.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::agent::capture;
use crate::process::{Slot, Supervised};
use crate::shared::{SHARED_POSTGRES_URL, SHARED_REDIS_URL};

/// A running shop; killed on drop.
#[derive(Debug)]
pub struct ShopProcess {
    port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    _process: Slot,
}

impl ShopProcess {
    /// Starts the shop as `service` exporting to `otlp_endpoint`, with
    /// `extra` environment (`PAYMENTS_URL`, `SHOP_INSTRUMENTATION`, ...), and
    /// waits until it answers.
    pub async fn start(
        service: &str,
        otlp_endpoint: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let bin = tokio::task::spawn_blocking(crate::agent::shop_bin).await??;
        let port = crate::free_port();
        let mut cmd = Command::new(bin);
        cmd.env("SHOP_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", SHARED_POSTGRES_URL)
            .env("REDIS_URL", SHARED_REDIS_URL)
            .env("OTEL_SERVICE_NAME", service)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint)
            .env("RUST_LOG", "info")
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = Supervised::spawn("shop", &mut cmd)?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = process.take_stdout() {
            capture(out, Arc::clone(&logs));
        }
        if let Some(err) = process.take_stderr() {
            capture(err, Arc::clone(&logs));
        }
        let slot = Slot::new("shop");
        slot.put(process);
        let shop = Self {
            port,
            logs,
            _process: slot,
        };
        let client = crate::http_client();
        let health = shop.url("/healthz");
        crate::wait_until("the shop answers /healthz", Duration::from_secs(30), || {
            let client = client.clone();
            let health = health.clone();
            async move {
                client
                    .get(&health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
        .with_context(|| format!("shop logs:\n{}", shop.logs()))?;
        Ok(shop)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the shop printed so far.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}
