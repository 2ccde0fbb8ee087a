//! The signal store: one series per service × route, fed by entry spans,
//! capped at `signals.max_series` with one overflow series per service, so a
//! route with IDs in it costs one series, not one per ID.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use foldhash::HashMap;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::entry::{entry_span, span_service};
use super::prom::{RequestMetrics, SeriesMetrics};
use super::ring::{Bucket, History, Totals};
use super::snapshot::{RouteSignals, Window};
use crate::ingest::TraceBatch;

/// The route (and, past the cap, the service) that spans of new series count in
/// once `signals.max_series` is reached.
pub const OVERFLOW: &str = "__overflow__";

/// Series idle this long are dropped: the longest window plus one bucket.
const EVICT_AFTER_SECONDS: u64 = 3_600 + 300;

/// Seconds since the Unix epoch, the store's clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug)]
struct Series {
    history: History,
    metrics: SeriesMetrics,
}

#[derive(Debug, Default)]
struct SeriesMap {
    services: HashMap<String, HashMap<String, Series>>,
    count: usize,
}

/// The golden signals of every service × route.
#[derive(Debug)]
pub struct SignalStore {
    series: Mutex<SeriesMap>,
    max_series: usize,
    /// When the store started: windows longer than its age are not divided by
    /// time it was not running.
    pub(crate) started: u64,
    metrics: RequestMetrics,
}

/// One point of a route's chart: a bucket of the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Bucket start, seconds since the Unix epoch.
    pub time: u64,
    /// Requests in the bucket.
    pub requests: u64,
    /// Failed requests in the bucket.
    pub errors: u64,
    /// 95th percentile latency in seconds; `None` without requests.
    pub p95: Option<f64>,
}

/// A route's current values and its chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDetail {
    /// The values over the window.
    #[serde(flatten)]
    pub signals: RouteSignals,
    /// The window bucket by bucket, oldest first.
    pub points: Vec<Point>,
}

impl SignalStore {
    /// An empty store whose families are registered in `registry`.
    pub fn new(max_series: usize, registry: &mut Registry) -> Self {
        Self {
            series: Mutex::new(SeriesMap::default()),
            max_series: max_series.max(1),
            started: unix_now(),
            metrics: RequestMetrics::register(registry),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeriesMap> {
        // A panic while holding the lock cannot leave counts half-written in a
        // way worse than losing them: keep serving.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts every entry span of the request at `now`.
    pub fn observe_traces(&self, batch: &TraceBatch, now: u64) {
        let mut map = self.lock();
        for resource in batch.resource_spans() {
            let service = span_service(&resource);
            for span in resource.spans() {
                let Some(entry) = entry_span(&span) else {
                    continue;
                };
                let series = self.series_for(&mut map, service, entry.route);
                series
                    .history
                    .record(now, entry.duration_seconds, entry.failed);
                series.metrics.record(
                    &self.metrics,
                    entry.status_class(),
                    entry.duration_seconds,
                    entry.failed,
                );
            }
        }
    }

    /// The series of `service` × `route`, created if the cap allows, else the
    /// service's overflow series (or the global one for a new service).
    fn series_for<'m>(&self, map: &'m mut SeriesMap, service: &str, route: &str) -> &'m mut Series {
        let exists = map
            .services
            .get(service)
            .is_some_and(|routes| routes.contains_key(route));
        // Nearly every span finds its series: looked up again rather than
        // through `entry`, whose key would be a copy of the name each time.
        if exists {
            return map
                .services
                .get_mut(service)
                .and_then(|routes| routes.get_mut(route))
                .expect("series present");
        }
        let (service, route) = if map.count < self.max_series {
            (service, route)
        } else {
            self.metrics.overflow_spans.inc();
            if map.services.contains_key(service) {
                (service, OVERFLOW)
            } else {
                (OVERFLOW, OVERFLOW)
            }
        };
        let routes = map.services.entry(service.to_owned()).or_default();
        if !routes.contains_key(route) {
            map.count += 1;
            self.metrics
                .series
                .set(i64::try_from(map.count).unwrap_or(i64::MAX));
            routes.insert(
                route.to_owned(),
                Series {
                    history: History::default(),
                    metrics: self.metrics.series(service, route),
                },
            );
        }
        // Inserted just above when missing.
        routes.get_mut(route).expect("series present")
    }

    /// Drops series without requests for longer than the longest window.
    pub fn evict_idle(&self, now: u64) {
        let mut map = self.lock();
        let mut evicted = 0_usize;
        for routes in map.services.values_mut() {
            routes.retain(|_, series| {
                let keep = series
                    .history
                    .last_seen()
                    .is_some_and(|seen| seen + EVICT_AFTER_SECONDS > now);
                if !keep {
                    self.metrics.remove(&series.metrics);
                    evicted += 1;
                }
                keep
            });
        }
        map.services.retain(|_, routes| !routes.is_empty());
        map.count -= evicted;
        self.metrics.evicted_series.inc_by(evicted as u64);
        self.metrics
            .series
            .set(i64::try_from(map.count).unwrap_or(i64::MAX));
    }

    fn signals(
        &self,
        service: &str,
        route: &str,
        window: Window,
        now: u64,
        totals: &Totals,
    ) -> RouteSignals {
        let age = now.saturating_sub(self.started).max(1);
        #[allow(clippy::cast_precision_loss)] // counts and seconds far below 2^52
        let seconds = totals.covered_seconds.min(age) as f64;
        let Bucket {
            requests,
            errors,
            latency,
            ..
        } = &totals.merged;
        #[allow(clippy::cast_precision_loss)]
        let (requests_f, errors_f) = (*requests as f64, *errors as f64);
        RouteSignals {
            service: service.to_owned(),
            route: route.to_owned(),
            window,
            requests: *requests,
            errors: *errors,
            rate_per_second: requests_f / seconds,
            error_rate_per_second: errors_f / seconds,
            error_ratio: if *requests == 0 {
                0.0
            } else {
                errors_f / requests_f
            },
            latency: latency.latency(),
        }
    }

    /// Every series over `window`, sorted by service then route.
    pub fn snapshot(&self, window: Window, now: u64) -> Vec<RouteSignals> {
        let map = self.lock();
        let mut all: Vec<RouteSignals> = map
            .services
            .iter()
            .flat_map(|(service, routes)| {
                routes.iter().map(move |(route, series)| {
                    let totals = series.history.totals(now, window);
                    self.signals(service, route, window, now, &totals)
                })
            })
            .collect();
        all.sort_by(|a, b| (&a.service, &a.route).cmp(&(&b.service, &b.route)));
        all
    }

    /// Each service's signals over `window`, its routes merged (route = `*`).
    pub fn services(&self, window: Window, now: u64) -> Vec<(RouteSignals, usize)> {
        let map = self.lock();
        let mut all: Vec<(RouteSignals, usize)> = map
            .services
            .iter()
            .map(|(service, routes)| {
                let mut merged: Option<Totals> = None;
                for series in routes.values() {
                    let totals = series.history.totals(now, window);
                    match &mut merged {
                        Some(m) => m.merge(&totals),
                        None => merged = Some(totals),
                    }
                }
                // A service exists only with at least one route.
                let totals = merged.expect("service with routes");
                (
                    self.signals(service, "*", window, now, &totals),
                    routes.len(),
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.service.cmp(&b.0.service));
        all
    }

    /// The routes of one service with their charts, or `None` if unknown.
    pub fn routes(&self, service: &str, window: Window, now: u64) -> Option<Vec<RouteDetail>> {
        let map = self.lock();
        let routes = map.services.get(service)?;
        let mut all: Vec<RouteDetail> = routes
            .iter()
            .map(|(route, series)| {
                let totals = series.history.totals(now, window);
                RouteDetail {
                    signals: self.signals(service, route, window, now, &totals),
                    points: series
                        .history
                        .points(now, window)
                        .into_iter()
                        .map(|b| Point {
                            time: b.start,
                            requests: b.requests,
                            errors: b.errors,
                            p95: b.latency.latency().map(|l| l.p95),
                        })
                        .collect(),
                }
            })
            .collect();
        all.sort_by(|a, b| {
            b.signals
                .requests
                .cmp(&a.signals.requests)
                .then(a.signals.route.cmp(&b.signals.route))
        });
        Some(all)
    }

    /// Series held now.
    pub fn series_count(&self) -> usize {
        self.lock().count
    }
}

#[cfg(test)]
mod tests;
