//! The shop's settings, from the environment (an example needs no config file).

use std::net::SocketAddr;

use anyhow::{Context as _, bail};

/// How the shop reports telemetry; `none` and `hand-wired` exist for the
/// overhead benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instrumentation {
    /// `telltale_sdk::init()`.
    Sdk,
    /// tracing-opentelemetry + opentelemetry-otlp wired by hand, same spans.
    HandWired,
    /// No subscriber: every span is disabled.
    None,
}

impl Instrumentation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sdk => "sdk",
            Self::HandWired => "hand-wired",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `SHOP_LISTEN`, default `127.0.0.1:3000`.
    pub(crate) listen: SocketAddr,
    /// `DATABASE_URL`, default the local `test` database.
    pub(crate) database_url: String,
    /// `REDIS_URL`, default the local Redis.
    pub(crate) redis_url: String,
    /// `PAYMENTS_URL`: where `POST /checkout` authorises payments; default
    /// this shop's own `/payments/authorize`.
    pub(crate) payments_url: Option<String>,
    /// `SHOP_INSTRUMENTATION`: `sdk` (default), `hand-wired` or `none`.
    pub(crate) instrumentation: Instrumentation,
    /// `SHOP_FLAKY_ERROR_RATE`: the share of `GET /flaky` that fails, default 0.2.
    pub(crate) flaky_error_rate: f64,
    /// `TELLTALE_PUBLIC_URL`: the agent's public listener as browsers reach
    /// it; when set, HTML pages load its `/rum.js`.
    pub(crate) rum_agent_url: Option<String>,
    /// `SHOP_POOL_SIZE`: PostgreSQL connections at most, default 10.
    pub(crate) pool_size: u32,
}

impl Settings {
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let listen = var("SHOP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
        let instrumentation = match var("SHOP_INSTRUMENTATION").as_deref() {
            None | Some("sdk") => Instrumentation::Sdk,
            Some("hand-wired") => Instrumentation::HandWired,
            Some("none") => Instrumentation::None,
            Some(other) => {
                bail!("SHOP_INSTRUMENTATION={other:?}: expected sdk, hand-wired or none")
            }
        };
        let flaky_error_rate = match var("SHOP_FLAKY_ERROR_RATE") {
            Some(rate) => rate
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .with_context(|| {
                    format!("SHOP_FLAKY_ERROR_RATE={rate:?}: expected a number from 0 to 1")
                })?,
            None => 0.2,
        };
        let pool_size = match var("SHOP_POOL_SIZE") {
            Some(size) => size
                .parse::<u32>()
                .ok()
                .filter(|s| *s > 0)
                .with_context(|| format!("SHOP_POOL_SIZE={size:?}: expected a positive integer"))?,
            None => 10,
        };
        Ok(Self {
            listen: listen.parse().with_context(|| {
                format!("SHOP_LISTEN={listen:?} is not an address like 127.0.0.1:3000")
            })?,
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into()),
            redis_url: var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            payments_url: var("PAYMENTS_URL"),
            instrumentation,
            flaky_error_rate,
            rum_agent_url: var("TELLTALE_PUBLIC_URL"),
            pool_size,
        })
    }
}
