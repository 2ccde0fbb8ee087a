//! Outbound HTTP spans for reqwest: [`TracedClient::send`] wraps a request in
//! a CLIENT span and passes the trace on in `traceparent`, so the called
//! service's spans join this trace.

use http::HeaderMap;
use opentelemetry::propagation::Injector;
use tracing::{Instrument as _, field};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A reqwest client whose requests are traced.
#[derive(Debug, Clone, Default)]
pub struct TracedClient {
    inner: reqwest::Client,
}

impl TracedClient {
    /// Wraps `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { inner: client }
    }

    /// The wrapped client, to build requests with.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Builds and sends `request` under a CLIENT span:
    /// `client.send(client.inner().get(url))`.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        self.execute(request.build()?).await
    }

    /// Sends a built request under a CLIENT span.
    pub async fn execute(
        &self,
        mut request: reqwest::Request,
    ) -> reqwest::Result<reqwest::Response> {
        let method = request.method().as_str().to_owned();
        let url = request.url();
        let span = tracing::info_span!(
            "http.client",
            otel.name = method.as_str(),
            otel.kind = "client",
            otel.status_code = field::Empty,
            http.request.method = method.as_str(),
            url.full = redacted_url(url).as_str(),
            server.address = url.host_str().unwrap_or_default(),
            server.port = url.port_or_known_default().map(i64::from),
            http.response.status_code = field::Empty,
            error.type = field::Empty,
        );
        if !span.is_disabled() {
            let context = span.context();
            opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()));
            });
        }
        let result = self.inner.execute(request).instrument(span.clone()).await;
        match &result {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", status.as_u16());
                // Client spans: any 4xx or 5xx is a failed call.
                if status.is_client_error() || status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", status.as_str());
                }
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                let kind = if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                span.record("error.type", kind);
            }
        }
        result
    }
}

/// The URL without credentials, and with query values replaced: both can
/// carry secrets; the keys are kept (the agent groups calls by them).
fn redacted_url(url: &reqwest::Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_fragment(None);
    if clean.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(key, _)| key.into_owned()).collect();
        clean
            .query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|key| (key.as_str(), "REDACTED")));
    }
    clean.into()
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_query_values_are_not_recorded() {
        let url = reqwest::Url::parse(
            "https://user:pw@pay.example:8443/v1/charge?token=abc&amount=5#frag",
        )
        .unwrap();
        assert_eq!(
            redacted_url(&url),
            "https://pay.example:8443/v1/charge?token=REDACTED&amount=REDACTED"
        );
    }
}
