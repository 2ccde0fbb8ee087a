//! The public listener's RUM routes: `POST /rum` (beacons) and `GET /rum.js`
//! (the collection script). A beacon passes, in order: origin allow-list,
//! rate limits, content type, body size (counted as read), parsing and
//! validation; each refusal is a 4xx with a reason in JSON, counted by reason.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::aggregate::WebVitalsAggregator;
use super::beacon;
use super::limits::{BeaconLimiter, ClientResolver, Throttled};
use super::metric::Device;
use super::prom::RumMetrics;
use crate::config::RumConfig;
use crate::server::json_error;
use crate::signals::unix_now;

/// The collection script, with `__TELLTALE_RUM_PATH__` standing for `rum.path`.
const RUM_JS: &str = include_str!("rum.js");

/// Everything the RUM handlers read.
#[derive(Debug)]
pub struct RumIntake {
    aggregator: Arc<WebVitalsAggregator>,
    metrics: RumMetrics,
    limiter: BeaconLimiter,
    resolver: ClientResolver,
    any_origin: bool,
    origins: Vec<String>,
    max_body: usize,
    script: String,
}

impl RumIntake {
    /// From `[rum]` and the aggregator beacons feed.
    pub fn new(
        config: &RumConfig,
        aggregator: Arc<WebVitalsAggregator>,
        metrics: RumMetrics,
    ) -> Self {
        Self {
            aggregator,
            metrics,
            limiter: BeaconLimiter::new(config),
            resolver: ClientResolver::new(&config.trusted_proxies),
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config.allowed_origins.clone(),
            max_body: usize::try_from(config.max_body_size.as_u64()).unwrap_or(usize::MAX),
            script: RUM_JS.replace(
                "__TELLTALE_RUM_PATH__",
                &serde_json::to_string(&config.path).unwrap_or_else(|_| "\"/rum\"".into()),
            ),
        }
    }

    /// Forgets rate-limit state of clients that went quiet.
    pub fn prune_clients(&self) {
        self.limiter.prune();
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    fn refuse(&self, status: StatusCode, reason: &'static str, message: &str) -> Response {
        self.metrics.refused(reason);
        json_error(status, message)
    }
}

/// The RUM routes (beacon path and script path from `[rum]`), with CORS.
pub(super) fn router(config: &RumConfig, intake: Arc<RumIntake>) -> Router {
    let allow_origin = if intake.any_origin {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    // Preflights are answered by the layer: allowed origins get the CORS
    // headers, others an answer without them, which the browser refuses.
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(86_400));
    Router::new()
        .route(&config.path, post(beacon_handler))
        .route(&config.script_path, get(script))
        .layer(cors)
        .with_state(intake)
}

async fn script(State(intake): State<Arc<RumIntake>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        intake.script.clone(),
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn beacon_handler(State(intake): State<Arc<RumIntake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !intake.origin_allowed(origin) {
            return intake.refuse(
                StatusCode::FORBIDDEN,
                "origin",
                &format!("origin `{origin}` is not in rum.allowed_origins"),
            );
        }
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = intake.resolver.client(peer.ip(), &forwarded);
        if let Err(throttled) = intake.limiter.check(client) {
            return throttled_response(&intake, throttled);
        }
    }
    let media_type = header_str(headers, header::CONTENT_TYPE).map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if !matches!(
        media_type.as_deref(),
        None | Some("text/plain" | "application/json" | "")
    ) {
        return intake.refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media_type",
            "send the beacon as text/plain (navigator.sendBeacon with a string) or application/json",
        );
    }
    let too_large = || {
        intake.refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!(
                "beacon larger than rum.max_body_size ({} bytes)",
                intake.max_body
            ),
        )
    };
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > intake.max_body as u64) {
        return too_large();
    }
    // Counted on the bytes read: a chunked body stops at the limit too.
    let Ok(bytes) = axum::body::to_bytes(Body::new(body), intake.max_body).await else {
        return too_large();
    };
    // `?page=` and `?app=` for bodies that do not say (a web-vitals Metric as is).
    let query = |name: &str| {
        parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let query_app = query("app");
    let default_page =
        query("page").or_else(|| header_str(headers, header::REFERER).map(str::to_owned));
    let loads = match beacon::parse(&bytes, default_page.as_deref()) {
        Ok(loads) => loads,
        Err(e) => return intake.refuse(StatusCode::BAD_REQUEST, e.reason(), &e.to_string()),
    };
    // Resolve every page first: one bad URL refuses the whole beacon.
    let mut placed = Vec::with_capacity(loads.len());
    for load in &loads {
        let url = load.page.as_deref().unwrap_or("/");
        let Some(page) = intake
            .aggregator
            .page_of(url, load.app.as_deref().or(query_app.as_deref()))
        else {
            return intake.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "invalid beacon: page is neither an http(s) URL nor a path starting with /",
            );
        };
        placed.push(page);
    }
    let ua_device = Device::from_user_agent(header_str(headers, header::USER_AGENT).unwrap_or(""));
    let now = unix_now();
    let (mut values, mut replaced, mut duplicates, mut stale) = (0, 0, 0, 0);
    for (load, (app, page)) in loads.iter().zip(&placed) {
        let device = load.device.unwrap_or(ua_device);
        let recorded = intake.aggregator.record(app, page, device, load, now);
        values += recorded.values;
        replaced += recorded.replaced;
        duplicates += recorded.duplicates;
        stale += recorded.stale;
    }
    intake.metrics.beacons.inc();
    // Four numbers: formatted directly, this is the hot path.
    (
        StatusCode::ACCEPTED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        format!("{{\"accepted\":{values},\"replaced\":{replaced},\"duplicates\":{duplicates},\"stale\":{stale}}}"),
    )
        .into_response()
}

fn throttled_response(intake: &RumIntake, throttled: Throttled) -> Response {
    let (reason, wait, message) = match throttled {
        Throttled::Client(wait) => (
            "client_rate",
            wait,
            "too many beacons from this client (rum.client_rate)",
        ),
        Throttled::Global(wait) => (
            "global_rate",
            wait,
            "too many beacons from everyone (rum.global_rate)",
        ),
    };
    let mut response = intake.refuse(StatusCode::TOO_MANY_REQUESTS, reason, message);
    // Whole seconds, rounded up: Retry-After has no fractions.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}
