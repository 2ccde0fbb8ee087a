//! Deep health checks for load balancers: probes run in the background on
//! their own schedule ([`runner`]), results pass through rise/fall hysteresis
//! onto the [`HealthBoard`], which renders the `application/health+json` bodies
//! that `/health` serves without ever running a check itself.

mod board;
mod hysteresis;
mod probe;
mod report;
mod runner;
mod status;

pub use board::{CheckResult, HealthBoard, Rendered, RenderedBody, Transition};
pub use hysteresis::{Hysteresis, Verdict};
pub use probe::{Measurement, ProbeOutcome};
pub use report::HEALTH_JSON;
pub use runner::spawn_checks;
pub use status::Status;
