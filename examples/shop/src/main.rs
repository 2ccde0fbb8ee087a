//! Run with: `cargo run -p telltale-example-shop` (beside `telltale`, with
//! PostgreSQL and Redis on their default local ports).
//!
//! A small shop instrumented with `telltale-sdk`, whose routes each show one
//! thing the agent finds: an N+1 query loop (`GET /orders`) and its fix
//! (`GET /orders/fast`), a Redis cache in front of PostgreSQL
//! (`GET /products/{id}`), writes plus an outbound HTTP call (`POST /checkout`),
//! errors (`GET /flaky`), and an HTML page for RUM (`GET /`).

mod routes;
mod settings;
mod store;
mod telemetry;

use anyhow::Context as _;

use settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    // rustls needs one crypto provider for reqwest and sqlx.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telemetry = telemetry::start(&settings);
    let state = routes::AppState::connect(&settings).await?;
    state
        .store
        .prepare()
        .await
        .context("cannot create or seed the shop's schema")?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (set SHOP_LISTEN)", settings.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        instrumentation = settings.instrumentation.name(),
        "shop started"
    );
    axum::serve(listener, routes::app(state, &settings))
        .with_graceful_shutdown(stop_requested())
        .await
        .context("the server failed")?;
    tracing::info!("shop stopped");
    telemetry.shutdown();
    Ok(())
}

async fn stop_requested() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
