//! Real User Monitoring: browsers post Core Web Vitals and navigation timing
//! to the public listener ([`intake`]); the [`WebVitalsAggregator`] keeps
//! p50/p75/p95 and Google's good / needs-improvement / poor shares per app ×
//! page × metric × device over sliding windows, exposes them on `/metrics`
//! and the admin API, and rolls them up into the embedded database.

mod aggregate;
mod beacon;
mod intake;
mod limits;
mod metric;
mod page;
mod persist;
mod prom;
mod sketch;
mod tracked;
mod window;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use aggregate::{
    Limits, OTHER, PageDetail, PageSummary, Recorded, Rollup, SlowLoad, WebVitalsAggregator,
};
pub use beacon::{BeaconError, PageLoad, Sample, parse as parse_beacon};
pub use intake::RumIntake;
pub use limits::{BeaconLimiter, ClientResolver, Throttled, parse_proxy};
pub use metric::{Device, MetricKind, Rating};
pub use page::{PageNormalizer, PagePattern};
pub use persist::RollupStore;
pub use prom::RumMetrics;
pub use window::{MetricSummary, RumWindow};

use crate::config::RumConfig;
use crate::storage::Storage;

/// How often idle pages and quiet clients are forgotten.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

/// RUM as wired into the agent.
#[derive(Debug, Clone)]
pub struct Rum {
    /// The aggregates (read by the API).
    pub aggregator: Arc<WebVitalsAggregator>,
    intake: Arc<RumIntake>,
    config: RumConfig,
}

impl Rum {
    /// Registers the metrics and builds the aggregator and intake.
    pub fn new(config: &RumConfig, registry: &mut Registry) -> Self {
        let metrics = RumMetrics::register(registry);
        let aggregator = Arc::new(WebVitalsAggregator::new(
            Limits {
                max_pages: config.max_pages,
                max_apps: config.max_apps,
                metrics_max_pages: config.metrics_max_pages,
                max_tracked_ids: config.max_tracked_ids,
                trace_ids_per_page: config.trace_ids_per_page,
            },
            PageNormalizer::new(&config.page_patterns),
            metrics.clone(),
        ));
        let intake = Arc::new(RumIntake::new(config, Arc::clone(&aggregator), metrics));
        Self {
            aggregator,
            intake,
            config: config.clone(),
        }
    }

    /// The public listener's `POST /rum` and `GET /rum.js` (empty when
    /// `rum.enabled` is false).
    pub fn public_routes(&self) -> Router {
        if self.config.enabled {
            intake::router(&self.config, Arc::clone(&self.intake))
        } else {
            Router::new()
        }
    }

    /// Restores the last hour from the database, then keeps writing rollups
    /// and forgetting idle pages until `cancel` (a last write after it).
    pub async fn start(
        &self,
        storage: &Storage,
        cancel: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let store = RollupStore::new(storage.pool().clone(), self.config.retention);
        persist::load_recent(&store, &self.aggregator).await;
        let flusher = persist::spawn_flusher(
            store,
            Arc::clone(&self.aggregator),
            self.config.persist_every,
            cancel.clone(),
        );
        let aggregator = Arc::clone(&self.aggregator);
        let intake = Arc::clone(&self.intake);
        let cancel = cancel.clone();
        let housekeeping = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HOUSEKEEPING_EVERY);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {
                        aggregator.evict_idle(crate::signals::unix_now());
                        intake.prune_clients();
                    }
                }
            }
        });
        vec![flusher, housekeeping]
    }
}
