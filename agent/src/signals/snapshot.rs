//! What the golden signals look like to their readers (the API, alert rules,
//! the OTLP metrics exporter): plain values computed over one window.

use std::time::Duration;

use serde::Serialize;

/// The sliding windows the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Window {
    /// The last minute.
    #[serde(rename = "1m")]
    OneMinute,
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    FifteenMinutes,
    /// The last hour.
    #[serde(rename = "1h")]
    OneHour,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 4] = [
        Self::OneMinute,
        Self::FiveMinutes,
        Self::FifteenMinutes,
        Self::OneHour,
    ];

    /// Its length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::OneMinute => 60,
            Self::FiveMinutes => 300,
            Self::FifteenMinutes => 900,
            Self::OneHour => 3600,
        })
    }

    /// The window of exactly this length, if the store keeps one.
    pub fn from_duration(duration: Duration) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.duration() == duration)
    }

    /// `1m`, `5m`, `15m`, `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
            Self::OneHour => "1h",
        }
    }
}

/// Latency quantiles in seconds (±1 % relative error).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The golden signals of one service × route over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSignals {
    /// `service.name` of the resource.
    pub service: String,
    /// `http.route`, else the span name; `__overflow__` past the series cap.
    pub route: String,
    /// The window these values cover.
    pub window: Window,
    /// Entry spans seen in the window.
    pub requests: u64,
    /// Of which failed (status ERROR or HTTP status ≥ 500).
    pub errors: u64,
    /// Requests per second over the window.
    pub rate_per_second: f64,
    /// Errors per second over the window.
    pub error_rate_per_second: f64,
    /// `errors / requests`, 0 without requests.
    pub error_ratio: f64,
    /// Latency quantiles; `None` without requests.
    pub latency: Option<Latency>,
}
