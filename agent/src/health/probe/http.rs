//! http: the application itself answers `GET url` with a 2xx.

use crate::config::Dsn;

#[derive(Debug)]
pub(crate) struct HttpProbe {
    url: Dsn,
    client: Result<reqwest::Client, String>,
}

impl HttpProbe {
    pub(crate) fn new(url: Dsn) -> Self {
        let client = reqwest::Client::builder()
            // The app is next door: a proxy from the environment would test the proxy.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(5))
            .pool_max_idle_per_host(1)
            .user_agent(concat!("telltale-health/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"));
        Self { url, client }
    }

    pub(crate) async fn run(&mut self) -> Result<(), String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let response = client
            .get(self.url.expose().clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered HTTP {status}, expected 2xx"))
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause
/// ("connection refused") is what an operator needs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
