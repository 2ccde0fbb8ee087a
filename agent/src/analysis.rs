//! Trace analysis wired together: the assembler (a pipeline observer), its
//! consumers (N+1 detection, then the recent-trace ring, then the consumers
//! the caller adds, e.g. span flame graphs), the findings store
//! and its SQLite writer, and their API routes. Started and finished by
//! [`crate::run_on`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::nplusone::{NPlusOne, NPlusOneDetector, NPlusOneMetrics};
use crate::pipeline::Observer;
use crate::traces::{TraceAssembler, TraceConsumer, TraceMetrics, TraceRing};

/// The running trace analysis.
#[derive(Debug)]
pub struct TraceAnalysis {
    /// The assembler, when `traces.enabled` (and not `ingest.discard`).
    pub assembler: Option<Arc<TraceAssembler>>,
    /// Recent, slowest, erroring and flagged traces.
    pub ring: Arc<TraceRing>,
    /// Findings and their writer.
    pub n_plus_one: NPlusOne,
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl TraceAnalysis {
    /// Loads stored findings and starts assembly and detection as configured;
    /// `more_consumers` read every completed trace too.
    pub async fn start(
        config: &Config,
        pool: SqlitePool,
        registry: &mut Registry,
        more_consumers: Vec<Arc<dyn TraceConsumer>>,
        stop: &CancellationToken,
    ) -> Self {
        let trace_metrics = TraceMetrics::register(registry);
        let n_plus_one_metrics = NPlusOneMetrics::register(registry);
        let ring = Arc::new(TraceRing::new(&config.traces));
        let n_plus_one =
            NPlusOne::start(&config.n_plus_one, pool, n_plus_one_metrics, stop.clone()).await;
        let assemble = config.traces.enabled && !config.ingest.discard;
        if !config.traces.enabled {
            tracing::warn!(
                "traces.enabled is false: no trace assembly, N+1 detection or recent traces"
            );
        }
        let (assembler, sweeper) = if assemble {
            // Detection first: it flags the trace in the ring before the ring files it.
            let mut consumers: Vec<Arc<dyn TraceConsumer>> = Vec::new();
            if config.n_plus_one.enabled {
                consumers.push(Arc::new(NPlusOneDetector::new(
                    &config.n_plus_one,
                    Arc::clone(&n_plus_one.findings),
                    Some(Arc::clone(&ring)),
                )));
            }
            consumers.push(Arc::clone(&ring) as Arc<dyn TraceConsumer>);
            consumers.extend(more_consumers);
            let assembler = Arc::new(TraceAssembler::new(
                &config.traces,
                consumers,
                trace_metrics,
            ));
            let sweeper = assembler.spawn_sweeper(stop.clone());
            (Some(assembler), Some(sweeper))
        } else {
            (None, None)
        };
        Self {
            assembler,
            ring,
            n_plus_one,
            sweeper,
        }
    }

    /// The observer to add to the pipeline, if assembling.
    pub fn observer(&self) -> Option<Arc<dyn Observer>> {
        self.assembler
            .as_ref()
            .map(|a| Arc::clone(a) as Arc<dyn Observer>)
    }

    /// `/api/v1/traces`, `/api/v1/traces/{id}`, `/api/v1/findings`.
    pub fn router(&self) -> Router {
        crate::traces::router(Arc::clone(&self.ring)).merge(crate::nplusone::router(Arc::clone(
            &self.n_plus_one.findings,
        )))
    }

    /// After `stop` fired: lets the sweeper analyse what it still holds, then
    /// writes the last findings, within `deadline`.
    pub async fn finish(self, deadline: Duration) {
        let work = async move {
            if let Some(sweeper) = self.sweeper {
                let _ = sweeper.await;
            }
            self.n_plus_one.finish().await;
        };
        if tokio::time::timeout(deadline, work).await.is_err() {
            tracing::warn!(
                "trace analysis did not finish within {deadline:?}; the last findings may not be stored"
            );
        }
    }
}
