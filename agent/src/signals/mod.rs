//! The four golden signals: latency, traffic and errors per service × route
//! from entry spans, and saturation from the host and the apps' own metrics.

mod snapshot;

pub use snapshot::{Latency, RouteSignals, Window};
