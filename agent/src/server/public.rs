//! The public listener: what load balancers poll. Handlers copy pre-rendered
//! bytes; nothing here runs a check or takes a lock.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::health::{HEALTH_JSON, HealthBoard, RenderedBody};
use crate::lifecycle::Lifecycle;

/// What the public handlers read.
#[derive(Debug, Clone)]
pub struct PublicState {
    /// The checks' rendered results.
    pub board: Arc<HealthBoard>,
    /// Drain state.
    pub lifecycle: Arc<Lifecycle>,
}

/// The public HTTP server.
#[derive(Debug)]
pub struct PublicServer {
    router: Router,
}

impl PublicServer {
    /// Builds the server.
    pub fn new(state: PublicState) -> Self {
        Self {
            router: router(state),
        }
    }

    /// Builds the server with more routes (RUM's) beside the health ones.
    pub fn with_routes(state: PublicState, routes: Router) -> Self {
        Self {
            router: router(state).merge(routes),
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

/// The public routes, separate from the socket so tests can call them directly.
pub fn router(state: PublicState) -> Router {
    Router::new()
        .route("/health", get(readiness))
        .route("/health/ready", get(readiness))
        .route("/readyz", get(readiness))
        .route("/health/live", get(liveness))
        .route("/livez", get(liveness))
        .route("/health/{check}", get(one_check))
        .fallback(not_found)
        .with_state(state)
}

async fn readiness(State(state): State<PublicState>) -> Response {
    let rendered = state.board.rendered();
    if state.lifecycle.is_draining() {
        health_response(&rendered.draining)
    } else {
        health_response(&rendered.ready)
    }
}

async fn liveness(State(state): State<PublicState>) -> Response {
    health_response(&state.board.rendered().live)
}

async fn one_check(State(state): State<PublicState>, Path(check): Path<String>) -> Response {
    match state.board.rendered().checks.get(&check) {
        Some(body) => health_response(body),
        None => json_error(StatusCode::NOT_FOUND, &format!("no check named `{check}`")),
    }
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not found: this listener serves /health, /health/ready, /health/live, /health/{check}, /readyz and /livez",
    )
}

fn health_response(body: &RenderedBody) -> Response {
    (
        body.status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON)),
            // A cached health answer in a proxy would hide a failure.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.body.clone(),
    )
        .into_response()
}

/// A JSON error body with a reason, for any listener.
pub(crate) fn json_error(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}
