//! Export to the collector or backend the user already runs: spans and metrics
//! forwarded unchanged over OTLP through a bounded retry queue per signal
//! ([`Forwarder`], the pipeline's sink), and the golden signals exported as
//! OTLP metrics through the same queue ([`Forwarder::export_signals`]).
//! Nothing here may block ingest: an upstream outage costs queued data
//! (counted in `telltale_forward_dropped_items_total`), never a stalled receiver.

mod backoff;
mod counters;
#[cfg(test)]
mod fake_upstream;
mod forward;
mod golden;
mod lane;
mod payload;
mod queue;
mod sender;
mod throttle;
mod upstream;

pub use counters::DropReason;
pub use forward::Forwarder;

use crate::signals::{RouteSignals, Window};

/// Where the exported golden signals come from (the signal store, or a fixed
/// table in tests).
pub trait SignalSource: Send + Sync + 'static {
    /// The signals of every service × route over `window`.
    fn snapshot(&self, window: Window) -> Vec<RouteSignals>;
}

/// Any function of the window is a source: `run_on` wires the signal store
/// as `move |window| store.snapshot(window, unix_now())`.
impl<F> SignalSource for F
where
    F: Fn(Window) -> Vec<RouteSignals> + Send + Sync + 'static,
{
    fn snapshot(&self, window: Window) -> Vec<RouteSignals> {
        self(window)
    }
}

/// Why an upstream configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A configured header cannot be sent (its value is never shown).
    #[error(
        "upstream: header `{name}` is not a valid header name, or its value has characters headers cannot carry: fix it in upstream.headers"
    )]
    InvalidHeader {
        /// The header's name, as configured.
        name: String,
    },
    /// The endpoint cannot be used with the chosen protocol.
    #[error("upstream: endpoint {endpoint} cannot be used: {reason}")]
    InvalidEndpoint {
        /// The endpoint, password hidden.
        endpoint: String,
        /// What is wrong with it and what to do.
        reason: String,
    },
}
