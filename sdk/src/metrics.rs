//! Metrics over OTLP: the sqlx pool gauges the agent reads as saturation
//! (`db.client.connection.count` by state over `db.client.connection.max`),
//! and a small API for the app's own gauges and counters (queue depth, jobs in
//! flight). Everything goes out with the meter provider `init` installed.

use opentelemetry::metrics::{Counter, Gauge, Meter, UpDownCounter};

/// The meter the SDK's instruments are created on.
pub fn meter() -> Meter {
    opentelemetry::global::meter("telltale-sdk")
}

/// A gauge of the app's own, e.g. `gauge("queue.depth", "{job}")`.
pub fn gauge(name: &'static str, unit: &'static str) -> Gauge<f64> {
    meter().f64_gauge(name).with_unit(unit).build()
}

/// A monotonic counter of the app's own, e.g. `counter("jobs.done", "{job}")`.
pub fn counter(name: &'static str, unit: &'static str) -> Counter<u64> {
    meter().u64_counter(name).with_unit(unit).build()
}

/// A count that goes up and down, e.g. jobs in flight.
pub fn up_down_counter(name: &'static str, unit: &'static str) -> UpDownCounter<i64> {
    meter().i64_up_down_counter(name).with_unit(unit).build()
}

/// Reports `pool`'s connections as `db.client.connection.count`
/// (`db.client.connection.state` = `used` / `idle`) and
/// `db.client.connection.max`, named `pool_name`, at every metrics export.
#[cfg(feature = "sqlx")]
pub fn observe_pool<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, pool_name: &str) {
    use opentelemetry::KeyValue;

    let meter = meter();
    let name = KeyValue::new("db.client.connection.pool.name", pool_name.to_owned());
    let counted = pool.clone();
    let labels = name.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Connections in the pool, by state")
        .with_callback(move |observer| {
            let open = i64::from(counted.size());
            let idle = i64::try_from(counted.num_idle())
                .unwrap_or(i64::MAX)
                .min(open);
            observer.observe(
                open - idle,
                &[
                    labels.clone(),
                    KeyValue::new("db.client.connection.state", "used"),
                ],
            );
            observer.observe(
                idle,
                &[
                    labels.clone(),
                    KeyValue::new("db.client.connection.state", "idle"),
                ],
            );
        })
        .build();
    let max = i64::from(pool.options().get_max_connections());
    meter
        .i64_observable_up_down_counter("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("The most connections the pool opens")
        .with_callback(move |observer| observer.observe(max, std::slice::from_ref(&name)))
        .build();
}
