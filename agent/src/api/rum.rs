//! `/api/v1/rum/pages` and `/api/v1/rum/pages/{page}`: the web vitals per
//! page over a window, as the dashboard reads them.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::rum::{Device, RumWindow, WebVitalsAggregator};
use crate::server::json_error;
use crate::signals::unix_now;

/// The RUM routes of the admin API.
pub fn rum_router(aggregator: Arc<WebVitalsAggregator>) -> Router {
    Router::new()
        .route("/api/v1/rum/pages", get(pages))
        .route("/api/v1/rum/pages/{*page}", get(page))
        .with_state(aggregator)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    window: Option<String>,
    app: Option<String>,
    device: Option<String>,
}

const BAD_QUERY: &str =
    "bad query: parameters are window=15m|1h, app=<app>, device=mobile|tablet|desktop";

fn parse(params: Result<Query<Params>, QueryRejection>) -> Option<(RumWindow, Params)> {
    let Ok(Query(params)) = params else {
        return None;
    };
    let window = match params.window.as_deref() {
        None => RumWindow::OneHour,
        Some(w) => RumWindow::ALL.into_iter().find(|k| k.as_str() == w)?,
    };
    if params
        .device
        .as_deref()
        .is_some_and(|d| Device::from_name(d).is_none())
    {
        return None;
    }
    Some((window, params))
}

async fn pages(
    State(aggregator): State<Arc<WebVitalsAggregator>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let Some((window, params)) = parse(params) else {
        return json_error(StatusCode::BAD_REQUEST, BAD_QUERY);
    };
    let now = unix_now();
    let device = params.device.as_deref().and_then(Device::from_name);
    let pages = aggregator.pages(window, now, params.app.as_deref(), device);
    axum::Json(serde_json::json!({
        "window": window,
        "time": now,
        "pages": pages,
    }))
    .into_response()
}

async fn page(
    State(aggregator): State<Arc<WebVitalsAggregator>>,
    Path(page): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let Some((window, params)) = parse(params) else {
        return json_error(StatusCode::BAD_REQUEST, BAD_QUERY);
    };
    // `/api/v1/rum/pages/products/:id` and `.../%2Fproducts%2F%3Aid` alike.
    let page = if page.starts_with('/') || page == crate::rum::OTHER {
        page
    } else {
        format!("/{page}")
    };
    let app = match params.app {
        Some(app) => app,
        None => {
            let apps = aggregator.apps_of(&page);
            match apps.as_slice() {
                [one] => one.clone(),
                [] => {
                    return json_error(
                        StatusCode::NOT_FOUND,
                        &format!("no beacons for page `{page}` in the last hour"),
                    );
                }
                many => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "page `{page}` exists in apps {}: add ?app=",
                            many.join(", ")
                        ),
                    );
                }
            }
        }
    };
    match aggregator.page(&app, &page, window, unix_now()) {
        Some(detail) => axum::Json(serde_json::json!({
            "window": window,
            "time": unix_now(),
            "page": detail,
        }))
        .into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!("no beacons for page `{page}` of app `{app}` in the last hour"),
        ),
    }
}
