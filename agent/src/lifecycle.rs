//! Drain state: readiness turns `fail` the moment a drain starts (SIGTERM or
//! `POST /admin/drain`), liveness never does, and the agent exits after the
//! drain period when the drain was a shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

/// Whether the agent drains, and whether it should exit afterwards.
#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    exit: CancellationToken,
    draining_gauge: Gauge,
}

impl Lifecycle {
    /// Not draining.
    pub fn new(draining_gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            draining: AtomicBool::new(false),
            exit: CancellationToken::new(),
            draining_gauge,
        })
    }

    /// Starts draining; with `then_exit`, the agent exits after the drain period.
    pub fn drain(&self, then_exit: bool) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            tracing::warn!(then_exit, "draining: readiness now answers 503");
        }
        self.draining_gauge.set(1);
        if then_exit {
            self.exit.cancel();
        }
    }

    /// Stops a maintenance drain. Refused (false) once an exit is scheduled.
    pub fn resume(&self) -> bool {
        if self.exit.is_cancelled() {
            return false;
        }
        if self.draining.swap(false, Ordering::SeqCst) {
            tracing::info!("drain cancelled: readiness reflects the checks again");
        }
        self.draining_gauge.set(0);
        true
    }

    /// True while readiness must answer 503 `draining`.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// True once an exit is scheduled.
    pub fn exit_scheduled(&self) -> bool {
        self.exit.is_cancelled()
    }

    /// Resolves when a drain that ends in exit was requested.
    pub async fn exit_requested(&self) {
        self.exit.cancelled().await;
    }
}
