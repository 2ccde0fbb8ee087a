//! The JSON API the dashboard reads (admin listener, `/api/v1/...`): services
//! and their routes with current values and charts, saturation, alerts.

mod rum;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

pub use rum::rum_router;

use crate::alerts::AlertEngine;
use crate::server::json_error;
use crate::signals::{
    AppValue, HostSaturation, Latency, Saturation, SignalStore, Window, unix_now,
};

/// What the API reads.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Latency, traffic, errors.
    pub store: Arc<SignalStore>,
    /// Host and app saturation.
    pub saturation: Arc<Saturation>,
    /// Alert rules and their state.
    pub alerts: Arc<AlertEngine>,
}

/// The `/api/v1` routes of the golden signals.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{service}/routes", get(routes))
        .route("/api/v1/saturation", get(saturation))
        .route("/api/v1/alerts", get(alerts))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowParams {
    window: Option<String>,
}

/// The `?window=` parameter: 1m (default), 5m, 15m or 1h; `None` if invalid.
fn window(params: Result<Query<WindowParams>, QueryRejection>) -> Option<Window> {
    let Ok(Query(params)) = params else {
        return None;
    };
    match params.window.as_deref() {
        None => Some(Window::OneMinute),
        Some(w) => Window::ALL.into_iter().find(|k| k.as_str() == w),
    }
}

fn bad_window() -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        "bad query: the only parameter is window=1m|5m|15m|1h",
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSummary {
    service: String,
    routes: usize,
    requests: u64,
    errors: u64,
    rate_per_second: f64,
    error_rate_per_second: f64,
    error_ratio: f64,
    latency: Option<Latency>,
}

async fn services(
    State(state): State<ApiState>,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Response {
    let Some(window) = window(params) else {
        return bad_window();
    };
    let now = unix_now();
    let services: Vec<ServiceSummary> = state
        .store
        .services(window, now)
        .into_iter()
        .map(|(s, routes)| ServiceSummary {
            service: s.service,
            routes,
            requests: s.requests,
            errors: s.errors,
            rate_per_second: s.rate_per_second,
            error_rate_per_second: s.error_rate_per_second,
            error_ratio: s.error_ratio,
            latency: s.latency,
        })
        .collect();
    axum::Json(serde_json::json!({
        "window": window,
        "time": now,
        "series": state.store.series_count(),
        "services": services,
    }))
    .into_response()
}

async fn routes(
    State(state): State<ApiState>,
    Path(service): Path<String>,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Response {
    let Some(window) = window(params) else {
        return bad_window();
    };
    let now = unix_now();
    match state.store.routes(&service, window, now) {
        Some(routes) => axum::Json(serde_json::json!({
            "service": service,
            "window": window,
            "time": now,
            "routes": routes,
        }))
        .into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!("no requests from service `{service}` in the last hour"),
        ),
    }
}

#[derive(Serialize)]
struct SaturationBody {
    time: u64,
    host: HostSaturation,
    pools: Vec<AppValue>,
    gauges: Vec<AppValue>,
}

async fn saturation(State(state): State<ApiState>) -> impl IntoResponse {
    let (pools, gauges) = state.saturation.app();
    axum::Json(SaturationBody {
        time: unix_now(),
        host: state.saturation.host(),
        pools,
        gauges,
    })
}

async fn alerts(State(state): State<ApiState>) -> impl IntoResponse {
    let (rules, transitions) = state.alerts.status();
    axum::Json(serde_json::json!({
        "time": unix_now(),
        "rules": rules,
        "transitions": transitions,
    }))
}
