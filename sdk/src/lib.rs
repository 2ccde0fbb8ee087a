//! Instrument a Rust service for the [Telltale] agent in one line.
//!
//! ```no_run
//! # async fn demo() {
//! // Traces and metrics go to the agent beside the app (OTLP/gRPC
//! // 127.0.0.1:4317 unless `OTEL_EXPORTER_OTLP_ENDPOINT` says otherwise).
//! let telemetry = telltale_sdk::init();
//!
//! let app = axum::Router::new()
//!     .route("/orders/{id}", axum::routing::get(|| async { "order" }))
//!     // One SERVER span per request, `traceparent` in, `Server-Timing` out.
//!     .layer(telltale_sdk::ServerLayer::new());
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//!
//! // Flushes what is buffered (also done on drop).
//! telemetry.shutdown();
//! # }
//! ```
//!
//! Database and cache calls are traced by wrapping the handle once:
//! [`TracedPool`] for sqlx pools (PostgreSQL, MySQL, SQLite), [`TracedRedis`]
//! for redis connections, [`TracedClient`] for outbound reqwest calls. Pool
//! saturation and the app's own gauges go out as OTLP metrics ([`metrics`]).
//!
//! The SDK never hurts its host: spans go through a bounded queue that drops
//! (and counts, see [`export_stats`]) when the agent is slow or away; nothing
//! blocks a request and nothing panics. A missing agent at start-up is a
//! warning.
//!
//! [Telltale]: https://example.invalid/telltale

#![warn(missing_docs)]

mod export;
mod guard;
#[cfg(feature = "reqwest")]
pub mod http_client;
pub mod http_server;
pub mod metrics;
#[cfg(feature = "profiling")]
pub mod profiling;
#[cfg(feature = "sqlx")]
mod quiet;
#[cfg(feature = "redis")]
pub mod redis;
pub mod rum;
pub mod sql;
#[cfg(feature = "sqlx")]
pub mod sqlx;

pub use export::{ExportStats, export_stats};
pub use guard::{InitError, Telemetry, TelemetryBuilder, TelemetryGuard, init};
#[cfg(feature = "reqwest")]
pub use http_client::TracedClient;
pub use http_server::ServerLayer;
#[cfg(feature = "redis")]
pub use redis::TracedRedis;
pub use rum::RumLayer;
#[cfg(feature = "sqlx")]
pub use sqlx::TracedPool;
