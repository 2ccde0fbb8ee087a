//! `/api/v1/findings`: N+1 and repeated-call findings, filtered by service,
//! route and kind, most recently seen first.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::detect::FindingKind;
use super::findings::{FindingFilter, FindingsStore};
use crate::server::json_error;
use crate::signals::unix_now;

/// The findings route.
pub fn router(store: Arc<FindingsStore>) -> Router {
    Router::new()
        .route("/api/v1/findings", get(findings))
        .with_state(store)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    service: Option<String>,
    route: Option<String>,
    kind: Option<String>,
}

async fn findings(
    State(store): State<Arc<FindingsStore>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad query: parameters are service=NAME, route=ROUTE, kind=n_plus_one_query|n_plus_one_http|repeated_query|repeated_http",
        );
    };
    let kind = match params.kind.as_deref() {
        None => None,
        Some(text) => match FindingKind::parse(text) {
            Some(kind) => Some(kind),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unknown kind `{text}`: use n_plus_one_query, n_plus_one_http, repeated_query or repeated_http"
                    ),
                );
            }
        },
    };
    let filter = FindingFilter {
        service: params.service,
        route: params.route,
        kind,
    };
    axum::Json(serde_json::json!({
        "time": unix_now(),
        "findings": store.list(&filter),
    }))
    .into_response()
}
