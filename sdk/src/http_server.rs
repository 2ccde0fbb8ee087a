//! The server side: one SERVER span per request with the current semantic
//! conventions, the caller's W3C `traceparent` continued, and a
//! `Server-Timing` header carrying the trace id so a browser's page load can
//! be tied to this trace. A panicking handler becomes a 500 on an error span
//! instead of a dropped connection.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tower::{Layer, Service};
use tracing::{Instrument as _, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The tower layer; add it last (outermost) so it times everything else.
#[derive(Debug, Clone, Copy)]
pub struct ServerLayer {
    server_timing: bool,
}

impl Default for ServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerLayer {
    /// A layer that also sets `Server-Timing`.
    pub fn new() -> Self {
        Self {
            server_timing: true,
        }
    }

    /// Leaves the `Server-Timing` header out (for APIs no browser loads).
    pub fn without_server_timing(mut self) -> Self {
        self.server_timing = false;
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            server_timing: self.server_timing,
        }
    }
}

/// The service [`ServerLayer`] wraps around an app.
#[derive(Debug, Clone)]
pub struct ServerService<S> {
    inner: S,
    server_timing: bool,
}

impl<S, B, ResBody> Service<Request<B>> for ServerService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = request_span(&request);
        let server_timing = if self.server_timing && !span.is_disabled() {
            server_timing_value(&span)
        } else {
            None
        };
        let response = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            match AssertUnwindSafe(response).catch_unwind().await {
                Ok(Ok(mut response)) => {
                    record_status(&span, response.status());
                    if let Some(value) = server_timing {
                        response.headers_mut().append("server-timing", value);
                    }
                    Ok(response)
                }
                Ok(Err(error)) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", "service_error");
                    Err(error)
                }
                Err(panic) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", "panic");
                    span.record("otel.status_description", panic_message(&*panic).as_str());
                    span.record("http.response.status_code", 500);
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    Ok(response)
                }
            }
        })
    }
}

fn request_span<B>(request: &Request<B>) -> Span {
    let method = request.method().as_str();
    let route = matched_route(request);
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    // Every field known now is set now: each later `record` is a trip
    // through every layer.
    let span = tracing::info_span!(
        "http.server",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = field::Empty,
        otel.status_description = field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        url.scheme = request.uri().scheme_str().unwrap_or("http"),
        user_agent.original = agent,
        http.response.status_code = field::Empty,
        error.type = field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

#[cfg(feature = "axum")]
fn matched_route<B>(request: &Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
}

#[cfg(not(feature = "axum"))]
fn matched_route<B>(_request: &Request<B>) -> Option<&str> {
    None
}

fn record_status(span: &Span, status: StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    // Server spans: only 5xx is the server's fault (4xx is the client's).
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
}

/// `traceparent;desc="00-<trace>-<span>-01"`, the W3C form browsers can read
/// from `PerformanceNavigationTiming.serverTiming`.
fn server_timing_value(span: &Span) -> Option<HeaderValue> {
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    if !ids.is_valid() {
        return None;
    }
    HeaderValue::from_str(&format!(
        "traceparent;desc=\"00-{}-{}-{:02x}\"",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    ))
    .ok()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Reads propagation headers.
pub(crate) struct HeaderExtractor<'a>(pub(crate) &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
