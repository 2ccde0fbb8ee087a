//! An HTTP client for tests.
//!
//! The workspace builds reqwest with `rustls-no-provider`, so building any
//! `reqwest::Client` panics unless a rustls crypto provider is installed
//! first: [`http_client`] installs ring's (a no-op when one is installed).
//! The service helpers install it too when they start, so tests that call
//! `reqwest::get` or `reqwest::Client::new()` after starting one work.

use std::time::Duration;

/// A reqwest client with a 10 s request timeout, usable for plain http.
///
/// # Panics
///
/// When reqwest cannot build a client, which only happens when the system's
/// TLS configuration is unusable.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("cannot build a reqwest client")
}

/// Installs ring as rustls's process-wide crypto provider unless one is
/// installed already.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one meanwhile: just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
