//! The four golden signals: latency, traffic and errors per service × route
//! from entry spans ([`SignalStore`]), and saturation from the host and the
//! apps' own metrics ([`Saturation`]). [`SignalsObserver`] feeds both from the
//! pipeline.

mod entry;
mod prom;
mod ring;
mod saturation;
mod snapshot;
mod store;
#[cfg(test)]
pub(crate) mod testdata;

use std::sync::Arc;

pub use entry::{EntrySpan, UNKNOWN_SERVICE, entry_span, service_name, span_service};
pub use saturation::{AppValue, DiskUse, HostSaturation, Saturation};
pub use snapshot::{Latency, RouteSignals, Window};
pub use store::{OVERFLOW, Point, RouteDetail, SignalStore, unix_now};

use crate::ingest::Batch;
use crate::pipeline::Observer;

/// Feeds every accepted batch to the golden signals.
#[derive(Debug, Clone)]
pub struct SignalsObserver {
    /// Latency, traffic, errors.
    pub store: Arc<SignalStore>,
    /// Saturation.
    pub saturation: Arc<Saturation>,
}

impl Observer for SignalsObserver {
    fn observe(&self, batch: &Batch) {
        let now = unix_now();
        match batch {
            Batch::Traces(request) => self.store.observe_traces(request, now),
            Batch::Metrics(request) => self.saturation.observe_metrics(request, now),
        }
    }
}

/// How often idle series and stale app values are dropped.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops idle series and stale app values every minute until `cancel` fires.
pub fn spawn_housekeeping(
    store: Arc<SignalStore>,
    saturation: Arc<Saturation>,
    cancel: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HOUSEKEEPING_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {
                    let now = unix_now();
                    store.evict_idle(now);
                    saturation.expire(now);
                }
            }
        }
    })
}
