//! Flame graphs from two sources, rendered with inferno on request:
//! spans (each finished trace folded by self time into its service × route,
//! [`SpanFlames`]) and CPU profiles posted to the admin listener (folded or
//! pprof, native `POST /v1/profiles` or Pyroscope's `POST /ingest`). Both are
//! kept as folded stacks in bounded time buckets ([`StackStore`]).
//!
//! Routes: [`router`]. Span flame graphs read completed traces from the trace
//! assembler ([`SpanFlameFeed`], a `TraceConsumer`), as N+1 detection does.

mod aggregator;
mod folded;
mod ingest;
mod labels;
mod metrics;
mod pprof;
mod query;
mod render;
mod spans;
mod store;
mod trace_feed;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use aggregator::{RecentTrace, SpanFlames};
pub use folded::{FoldedError, OTHER_FRAME, SortedStacks, Stacks, frame_name, parse_folded};
pub use metrics::FlameMetrics;
pub use pprof::{DecodedProfile, PprofError, decode_pprof};
pub use render::{Look, Mode, Source, differential, render_svg};
pub use spans::{FoldSpan, FoldableTrace, FoldedTrace, MISSING_PARENT, flame_chart, fold_trace};
pub use store::{CountMeta, OVERFLOW_DETAIL, SeriesKey, StackStore, StoreLimits};
pub use trace_feed::SpanFlameFeed;

use crate::config::FlameConfig;

/// Renders at once: each holds a core for up to a second on a large profile,
/// and the host's app comes first. Further requests get 503 + Retry-After.
const MAX_CONCURRENT_RENDERS: usize = 2;

/// Everything the flame-graph endpoints read and write.
#[derive(Debug)]
pub struct FlameGraphs {
    /// Span flame graphs.
    pub spans: SpanFlames,
    /// CPU profiles.
    pub cpu: StackStore,
    /// Counters.
    pub metrics: FlameMetrics,
    max_profile_size: usize,
    renders: Semaphore,
}

impl FlameGraphs {
    /// Empty stores bounded by `config`, metrics registered in `registry`.
    pub fn new(config: &FlameConfig, registry: &mut Registry) -> Arc<Self> {
        let metrics = FlameMetrics::register(registry);
        let limits = StoreLimits {
            bucket_seconds: config.bucket.as_secs().max(1),
            retention_seconds: config.retention.as_secs(),
            rollup_after_seconds: config.rollup_after.as_secs(),
            rollup_bucket_seconds: config.rollup_bucket.as_secs().max(1),
            max_series: config.max_series,
            max_stacks: config.max_stacks,
            max_bytes: byte_count(config.max_bytes),
        };
        Arc::new(Self {
            spans: SpanFlames::new(
                StackStore::new(limits, metrics.spans.clone()),
                config.recent_traces,
            ),
            cpu: StackStore::new(limits, metrics.cpu.clone()),
            metrics,
            max_profile_size: byte_count(config.max_profile_size),
            renders: Semaphore::new(MAX_CONCURRENT_RENDERS),
        })
    }

    /// Merges old buckets into wide ones and drops buckets past the
    /// retention, in both stores.
    pub fn expire(&self, now: u64) {
        self.spans.store().expire(now);
        self.cpu.expire(now);
    }
}

/// The admin routes: profile ingest (native and Pyroscope) and rendering.
pub fn router(flames: Arc<FlameGraphs>) -> Router {
    // The body limit is enforced by the handlers (compressed and
    // decompressed); axum's default 2 MiB would refuse first.
    Router::new()
        .route("/v1/profiles", post(ingest::native))
        .route("/ingest", post(ingest::pyroscope))
        .route("/api/v1/flamegraph", get(query::flamegraph))
        .route("/api/v1/flamegraph/series", get(query::series))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(flames)
}

/// How often expired buckets are dropped.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Drops expired buckets every second, until `cancel`.
pub fn spawn_housekeeping(
    flames: Arc<FlameGraphs>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HOUSEKEEPING_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => flames.expire(crate::signals::unix_now()),
            }
        }
    })
}

fn byte_count(size: bytesize::ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}
