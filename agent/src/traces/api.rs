//! `/api/v1/traces` (lists of held traces) and `/api/v1/traces/{id}` (one
//! trace with its spans and the spans marked by findings, for a waterfall).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::ring::{TraceList, TraceRing};
use super::span::{parse_trace_id, trace_id_hex};
use crate::server::json_error;
use crate::signals::unix_now;

/// Most summaries one list request returns.
const MAX_LIMIT: usize = 1_000;

/// The trace routes.
pub fn router(ring: Arc<TraceRing>) -> Router {
    Router::new()
        .route("/api/v1/traces", get(list))
        .route("/api/v1/traces/{id}", get(one))
        .with_state(ring)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    list: Option<String>,
    limit: Option<usize>,
    service: Option<String>,
}

async fn list(
    State(ring): State<Arc<TraceRing>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad query: parameters are list=recent|slowest|errors|flagged, limit=1..1000, service=NAME",
        );
    };
    let name = params.list.as_deref().unwrap_or("recent");
    let Some(which) = TraceList::parse(name) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("unknown list `{name}`: use recent, slowest, errors or flagged"),
        );
    };
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be between 1 and {MAX_LIMIT}"),
        );
    }
    let traces = ring.list(which, limit, params.service.as_deref());
    axum::Json(serde_json::json!({
        "time": unix_now(),
        "list": name,
        "traces": traces,
    }))
    .into_response()
}

async fn one(State(ring): State<Arc<TraceRing>>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "a trace id is 32 hexadecimal digits",
        );
    };
    match ring.get(&trace_id) {
        Some(held) => axum::Json(serde_json::json!({
            "traceId": trace_id_hex(&trace_id),
            "partial": held.trace.partial,
            "completion": held.trace.completion,
            "droppedSpans": held.trace.dropped_spans,
            "durationNanos": held.trace.duration_nanos(),
            "spans": held.trace.spans,
            "marks": held.marks,
        }))
        .into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "trace {} is not held (only recent, slowest, erroring and flagged traces are kept)",
                trace_id_hex(&trace_id)
            ),
        ),
    }
}
