//! The three statuses of the IETF health-check draft and how they combine.

use serde::Serialize;

/// `pass` and `warn` answer 200, `fail` answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern worth a look (a non-critical failure, a threshold crossed).
    Warn,
    /// Unhealthy: take this instance out of rotation.
    Fail,
}

impl Status {
    /// The name used in the report and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    /// The HTTP status a load balancer sees for this status.
    pub fn http_status(self) -> axum::http::StatusCode {
        match self {
            Self::Pass | Self::Warn => axum::http::StatusCode::OK,
            Self::Fail => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What this check contributes to the aggregate: a non-critical failure
    /// only warns.
    pub fn weighed(self, critical: bool) -> Self {
        match (self, critical) {
            (Self::Fail, false) => Self::Warn,
            (status, _) => status,
        }
    }
}
