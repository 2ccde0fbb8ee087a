//! The shop's routes; `app()` builds the router so tests can serve it too.

use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::AsyncCommands as _;
use serde::Deserialize;
use telltale_sdk::{RumLayer, ServerLayer, TracedClient, TracedPool, TracedRedis};

use crate::settings::Settings;
use crate::store::{OrderView, Product, Store};

/// How long a product stays in the cache.
const PRODUCT_TTL_SECONDS: u64 = 60;

#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    cache: TracedRedis<redis::aio::ConnectionManager>,
    http: TracedClient,
    payments_url: String,
    flaky_error_rate: f64,
}

impl AppState {
    pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&settings.database_url)
            .await
            .context("cannot connect to PostgreSQL (set DATABASE_URL)")?;
        telltale_sdk::metrics::observe_pool(&pool, "shop");
        let redis = redis::Client::open(settings.redis_url.as_str())
            .context("REDIS_URL is not a redis:// URL")?;
        let (host, port) = redis_address(&settings.redis_url);
        let cache = redis::aio::ConnectionManager::new(redis)
            .await
            .context("cannot connect to Redis (set REDIS_URL)")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        let payments_url = settings
            .payments_url
            .clone()
            .unwrap_or_else(|| format!("http://{}/payments/authorize", settings.listen));
        Ok(Self {
            store: Store {
                db: TracedPool::new(pool),
            },
            cache: TracedRedis::new(cache).with_server(host, port),
            http: TracedClient::new(http),
            payments_url,
            flaky_error_rate: settings.flaky_error_rate,
        })
    }
}

fn redis_address(url: &str) -> (String, u16) {
    let parsed = reqwest::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = parsed.and_then(|u| u.port()).unwrap_or(6379);
    (host, port)
}

pub(crate) fn app(state: AppState, settings: &Settings) -> Router {
    let router = Router::new()
        .route("/", get(home))
        .route("/orders", get(orders_one_by_one))
        .route("/orders/fast", get(orders_joined))
        .route("/products/{id}", get(product))
        .route("/checkout", post(checkout))
        .route("/payments/authorize", post(authorize_payment))
        .route("/flaky", get(flaky))
        .route("/slow", get(slow))
        .route("/telemetry", get(telemetry))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let router = match &settings.rum_agent_url {
        Some(agent) => router.layer(RumLayer::new(agent)),
        None => router,
    };
    router.layer(ServerLayer::new())
}

/// Internal detail is logged, not sent.
struct AppError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

async fn home() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Telltale shop</title></head>\
         <body><h1>Telltale shop</h1><p><a href=\"/orders\">orders</a> · \
         <a href=\"/orders/fast\">orders (fast)</a> · <a href=\"/products/1\">a product</a></p>\
         <button id=\"buy\" onclick=\"this.textContent='thanks'\">buy</button></body></html>",
    )
}

/// The N+1: the list, then one query per order for its customer.
async fn orders_one_by_one(
    State(state): State<AppState>,
) -> Result<Json<Vec<OrderView>>, AppError> {
    let orders = state.store.recent_orders().await?;
    let mut views = Vec::with_capacity(orders.len());
    for (id, customer_id, total_cents) in orders {
        let customer = state.store.customer_of(customer_id).await?;
        views.push(OrderView {
            id,
            total_cents,
            customer,
        });
    }
    Ok(Json(views))
}

/// The fix: one JOIN.
async fn orders_joined(State(state): State<AppState>) -> Result<Json<Vec<OrderView>>, AppError> {
    Ok(Json(state.store.orders_with_customers().await?))
}

/// Redis first; PostgreSQL on a miss, then cached.
async fn product(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, AppError> {
    let key = format!("shop:product:{id}");
    let mut cache = state.cache.clone();
    let cached: Option<String> = cache.get(&key).await?;
    if let Some(json) = cached
        && let Ok(product) = serde_json::from_str::<Product>(&json)
    {
        return Ok(Json(product).into_response());
    }
    match state.store.product(id).await? {
        Some(product) => {
            let _: () = cache
                .set_ex(&key, serde_json::to_string(&product)?, PRODUCT_TTL_SECONDS)
                .await?;
            Ok(Json(product).into_response())
        }
        None => Ok((StatusCode::NOT_FOUND, "no such product\n").into_response()),
    }
}

#[derive(Debug, Deserialize)]
struct CheckoutRequest {
    customer_id: i64,
    total_cents: i64,
}

/// Authorises the payment with the payments service, then writes the order.
async fn checkout(
    State(state): State<AppState>,
    Json(request): Json<CheckoutRequest>,
) -> Result<Response, AppError> {
    let authorised = state
        .http
        .send(
            state
                .http
                .inner()
                .post(&state.payments_url)
                .json(&serde_json::json!({ "amount_cents": request.total_cents })),
        )
        .await?;
    if !authorised.status().is_success() {
        return Ok((StatusCode::PAYMENT_REQUIRED, "payment declined\n").into_response());
    }
    let order_id = state
        .store
        .place_order(request.customer_id, request.total_cents)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "order_id": order_id })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct PaymentRequest {
    amount_cents: i64,
}

/// The payments service's one endpoint (another shop process plays it, or
/// this one): declines non-positive amounts.
async fn authorize_payment(Json(payment): Json<PaymentRequest>) -> StatusCode {
    if payment.amount_cents > 0 {
        StatusCode::OK
    } else {
        StatusCode::PAYMENT_REQUIRED
    }
}

/// Fails a configured share of the time, for the error signals and alerts.
async fn flaky(State(state): State<AppState>) -> Result<&'static str, AppError> {
    if fastrand::f64() < state.flaky_error_rate {
        return Err(AppError(anyhow::anyhow!("flaky failed, as configured")));
    }
    Ok("ok\n")
}

#[derive(Debug, Deserialize)]
struct SlowQuery {
    ms: Option<u64>,
}

/// Holds a pool connection for `ms` milliseconds (at most 10 s) in the
/// database: a slow report, and what makes pool saturation visible.
async fn slow(
    State(state): State<AppState>,
    Query(query): Query<SlowQuery>,
) -> Result<&'static str, AppError> {
    let seconds = query.ms.unwrap_or(500).min(10_000) as f64 / 1000.0;
    state.store.sleep(seconds).await?;
    Ok("done\n")
}

/// What the SDK sent and dropped, for operators (and the tests).
async fn telemetry() -> Json<serde_json::Value> {
    let stats = telltale_sdk::export_stats();
    Json(serde_json::json!({
        "queued": stats.queued,
        "exported": stats.exported,
        "droppedQueueFull": stats.dropped_queue_full,
        "droppedExportFailed": stats.dropped_export_failed,
    }))
}
