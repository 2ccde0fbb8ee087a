//! The admin listener: metrics, the JSON API and the drain switch, behind a
//! bearer token when one is configured; the dashboard's static files beside
//! them (see `crate::ui`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::health::{HealthBoard, Measurement, Status};
use crate::lifecycle::Lifecycle;
use crate::metrics::{MAX_SCRAPES_AT_ONCE, Metrics, PROMETHEUS_TEXT};

use super::public::json_error;
use super::scrape_body::{SCRAPE_DEADLINE, ScrapeBody};

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The checks' results.
    pub board: Arc<HealthBoard>,
    /// Drain state.
    pub lifecycle: Arc<Lifecycle>,
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// Required bearer token, if any.
    pub token: Option<Secret>,
    /// How long a drain lasts before exit.
    pub drain_period: Duration,
}

/// The admin HTTP server.
#[derive(Debug)]
pub struct AdminServer {
    router: Router,
}

impl AdminServer {
    /// Builds the server; `api` holds the capabilities' `/api/v1` routes.
    pub fn new(state: AdminState, api: Router) -> Self {
        Self {
            router: router(state, api),
        }
    }

    /// Serves until `cancel` fires.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        super::serve_http(listener, self.router, cancel).await
    }
}

/// The admin routes, separate from the socket so tests can call them directly.
/// Every route, `api`'s included, sits behind the bearer token; only the
/// dashboard's static files (`/`, `/ui/*`), which hold no data, do not.
pub fn router(state: AdminState, api: Router) -> Router {
    let probe = api.clone();
    Router::new()
        .route("/api", get(move || index(probe.clone())))
        .route("/metrics", get(metrics))
        .route("/api/v1/health", get(health_detail))
        .route("/api/v1/health/history", get(health_history))
        .route("/admin/drain", post(start_drain).delete(stop_drain))
        .with_state(state.clone())
        .merge(api)
        .fallback(|| async {
            json_error(
                StatusCode::NOT_FOUND,
                "not found: see GET /api for the admin endpoints",
            )
        })
        .layer(middleware::from_fn_with_state(state, require_token))
        .merge(crate::ui::router())
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        next.run(request).await
    } else {
        let mut response = json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <admin.token>)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"telltale-admin\""),
        );
        response
    }
}

async fn index(api: Router) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "service": "telltale",
        "version": env!("CARGO_PKG_VERSION"),
        "dashboard": "/",
        "features": crate::ui::Features::probe(&api).await,
        "endpoints": {
            "GET /": "the built-in dashboard",
            "GET /metrics": "Prometheus metrics",
            "GET /api/v1/health": "every check with its status, measurements and hysteresis",
            "GET /api/v1/health/history": "recent status transitions",
            "GET /api/v1/services?window=1m|5m|15m|1h": "golden signals per service",
            "GET /api/v1/services/{service}/routes?window=": "golden signals per route, with a chart per window bucket",
            "GET /api/v1/saturation": "host CPU, memory, disks, load; app pools and configured gauges",
            "GET /api/v1/alerts": "alert rules, instances pending or firing, recent transitions",
            "GET /api/v1/rum/pages?window=15m|1h&app=&device=": "web vitals per page: p75 and good / needs-improvement / poor shares",
            "GET /api/v1/rum/pages/{page}?window=&app=": "one page's vitals per device, navigation breakdown, slowest loads with their trace",
            "GET /api/v1/findings?service=&route=&kind=": "N+1 and repeated-call findings with their evidence",
            "GET /api/v1/traces?list=recent|slowest|errors|flagged&limit=&service=": "recently completed traces",
            "GET /api/v1/traces/{id}": "one trace's spans, with the spans findings marked",
            "POST /v1/profiles?service=&labels=&format=folded|pprof&sample_rate=": "a CPU profile (folded or pprof, gzip or not)",
            "POST /ingest?name=app.cpu{labels}&from=&until=&format=&sampleRate=": "a CPU profile, Pyroscope's API",
            "GET /api/v1/flamegraph?source=spans|cpu&service=&route=&labels=&from=&to=&mode=flame|icicle|chart&format=svg|folded&diff_from=&diff_to=&trace_id=": "a flame graph",
            "GET /api/v1/flamegraph/series": "the stored flame-graph series",
            "POST /admin/drain": "drain, then exit after the drain period (?exit=false: drain until DELETE)",
            "DELETE /admin/drain": "end a drain started with ?exit=false",
        }
    }))
}

/// The exposition, encoded on a blocking-pool thread (megabytes of text with
/// many series: not on the threads answering `/health`) and sent in the
/// pieces it was written in, with at most `MAX_SCRAPES_AT_ONCE` being served
/// and each read within `SCRAPE_DEADLINE`.
async fn metrics(State(state): State<AdminState>) -> Response {
    let Some(slot) = state.metrics.scrape_slot() else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_SCRAPES_AT_ONCE} scrapes of /metrics are already being served"),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return response;
    };
    let registry = Arc::clone(&state.metrics);
    // The slot goes into the encoding and back: a client that hangs up while
    // the text is built must not free it while the text still takes memory.
    let Ok((chunks, slot)) = tokio::task::spawn_blocking(move || (registry.encode(), slot)).await
    else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
            .into_response();
    };
    let body = Body::from_stream(ScrapeBody::new(chunks, slot, SCRAPE_DEADLINE));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_TEXT),
        )],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckDetail {
    name: String,
    kind: &'static str,
    critical: bool,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    measurements: Vec<MeasurementDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    last_duration_ms: f64,
}

#[derive(Serialize)]
struct MeasurementDetail {
    name: &'static str,
    value: f64,
    unit: &'static str,
}

impl From<&Measurement> for MeasurementDetail {
    fn from(m: &Measurement) -> Self {
        Self {
            name: m.name,
            value: m.value,
            unit: m.unit,
        }
    }
}

async fn health_detail(State(state): State<AdminState>) -> impl IntoResponse {
    let rendered = state.board.rendered();
    let draining = state.lifecycle.is_draining();
    let checks: Vec<CheckDetail> = state
        .board
        .results()
        .iter()
        .map(|r| CheckDetail {
            name: r.name.clone(),
            kind: r.kind.as_str(),
            critical: r.critical,
            status: r.status,
            output: r.output.clone(),
            measurements: r.measurements.iter().map(MeasurementDetail::from).collect(),
            time: r
                .time
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            last_duration_ms: r.last_duration.as_secs_f64() * 1e3,
        })
        .collect();
    let ready = rendered.ready.status.is_success() && !draining;
    axum::Json(serde_json::json!({
        "ready": ready,
        "draining": draining,
        "exitScheduled": state.lifecycle.exit_scheduled(),
        "started": humantime::format_rfc3339_millis(state.board.started()).to_string(),
        "checks": checks,
    }))
}

async fn health_history(State(state): State<AdminState>) -> impl IntoResponse {
    let (transitions, dropped) = state.board.history();
    axum::Json(serde_json::json!({ "transitions": transitions, "dropped": dropped }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainParams {
    /// Exit after the drain period (default) or stay drained until `DELETE`.
    #[serde(default = "exit_by_default")]
    exit: bool,
}

fn exit_by_default() -> bool {
    true
}

async fn start_drain(
    State(state): State<AdminState>,
    params: Result<Query<DrainParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad query: the only parameter is exit=true|false",
        );
    };
    state.lifecycle.drain(params.exit);
    let body = if params.exit {
        serde_json::json!({ "draining": true, "exitAfterSeconds": state.drain_period.as_secs_f64() })
    } else {
        serde_json::json!({ "draining": true, "exitAfterSeconds": null })
    };
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

async fn stop_drain(State(state): State<AdminState>) -> Response {
    if state.lifecycle.resume() {
        axum::Json(serde_json::json!({ "draining": false })).into_response()
    } else {
        json_error(
            StatusCode::CONFLICT,
            "the agent is shutting down: a drain that ends in exit cannot be cancelled",
        )
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::Redactor;
    use crate::metrics::{HealthMetrics, new_registry};

    fn admin_router() -> Router {
        let mut registry = new_registry();
        let health = HealthMetrics::register(&mut registry);
        let state = AdminState {
            board: HealthBoard::new(&[], Redactor::default(), health.clone()),
            lifecycle: Lifecycle::new(health.draining),
            metrics: Metrics::new(registry),
            token: None,
            drain_period: Duration::from_secs(1),
        };
        router(state, Router::new())
    }

    async fn scrape(router: &Router) -> Response {
        router
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn unread_scrapes_hold_their_slots_and_a_fifth_is_refused_with_retry_after() {
        let router = admin_router();
        // Bodies not read yet hold their slots, as slow clients' do.
        let mut unread = Vec::new();
        for _ in 0..MAX_SCRAPES_AT_ONCE {
            let response = scrape(&router).await;
            assert_eq!(response.status(), StatusCode::OK);
            unread.push(response);
        }
        let refused = scrape(&router).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");

        // One client reads its scrape to the end: its slot serves the next.
        let read = unread.pop().unwrap();
        let text = axum::body::to_bytes(read.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(text.ends_with(b"# EOF\n"));
        let again = scrape(&router).await;
        assert_eq!(again.status(), StatusCode::OK);
        let text = axum::body::to_bytes(again.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(text.to_vec()).unwrap();
        assert!(
            text.contains("telltale_metrics_refused_scrapes_total 1\n"),
            "{text}"
        );
    }
}
