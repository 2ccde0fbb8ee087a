//! Saturation, the fourth golden signal: how full the host is (CPU, memory,
//! disks, load, sampled with sysinfo) and how full the apps say they are over
//! OTLP metrics (database pools, and any gauge the config names).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, metric::Data, number_data_point};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sysinfo::{DiskRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};
use tokio_util::sync::CancellationToken;

use super::entry::{service_name, string_attribute};
use crate::host::HostLoad;

/// How often the host is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// App values not reported again for this long are forgotten (an app that
/// stopped, a pool that closed): the OTLP SDK default export interval is 60 s.
const APP_VALUE_TTL_SECONDS: u64 = 300;
/// Most app saturation series kept; more are counted as dropped.
const MAX_APP_SERIES: usize = 1_000;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MountLabels {
    mount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeriodLabels {
    period: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    service: String,
    pool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AppGaugeLabels {
    service: String,
    metric: String,
    attributes: String,
}

/// The host's saturation at the last sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSaturation {
    /// CPU use, 0–1.
    pub cpu: f64,
    /// Memory in use (total minus available), 0–1.
    pub memory: f64,
    /// Use of each mounted filesystem.
    pub disks: Vec<DiskUse>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

/// One mounted filesystem's use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskUse {
    /// Where it is mounted.
    pub mount: String,
    /// Space used, 0–1.
    pub utilization: f64,
}

impl HostSaturation {
    /// The fullest disk's use, 0–1.
    pub fn max_disk(&self) -> f64 {
        self.disks.iter().map(|d| d.utilization).fold(0.0, f64::max)
    }
}

/// One app-reported saturation value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppValue {
    /// `service.name` of the reporting app.
    pub service: String,
    /// The pool name, or the metric name for configured gauges.
    pub name: String,
    /// Attributes of the data point besides the pool name, as `k=v,k=v`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub attributes: String,
    /// Pools: used over max (0–1). Gauges: the reported value.
    pub value: f64,
    /// When it was last reported, seconds since the Unix epoch.
    pub reported: u64,
}

/// Pool connection counts as reported, before they make a ratio.
#[derive(Debug, Clone, Copy, Default)]
struct PoolCounts {
    used: Option<f64>,
    max: Option<f64>,
    reported: u64,
}

#[derive(Debug, Default)]
struct AppState {
    pools: HashMap<(String, String), PoolCounts>,
    gauges: HashMap<(String, String, String), AppValue>,
}

/// Saturation gauges and their latest values.
#[derive(Debug)]
pub struct Saturation {
    host: Mutex<HostSaturation>,
    app: Mutex<AppState>,
    gauge_names: Vec<String>,
    cpu: FloatGauge,
    memory: FloatGauge,
    disk: Family<MountLabels, FloatGauge>,
    load: Family<PeriodLabels, FloatGauge>,
    pool: Family<PoolLabels, FloatGauge>,
    app_gauge: Family<AppGaugeLabels, FloatGauge>,
    app_dropped: Counter,
}

impl Saturation {
    /// Registers the saturation families; `gauge_names` are the app metrics
    /// (`signals.saturation_gauges`) reported besides database pools.
    pub fn new(gauge_names: Vec<String>, registry: &mut Registry) -> Self {
        let saturation = Self {
            host: Mutex::default(),
            app: Mutex::default(),
            gauge_names,
            cpu: FloatGauge::default(),
            memory: FloatGauge::default(),
            disk: Family::default(),
            load: Family::default(),
            pool: Family::default(),
            app_gauge: Family::default(),
            app_dropped: Counter::default(),
        };
        registry.register(
            "host_cpu_utilization",
            "Host CPU use, 0-1",
            saturation.cpu.clone(),
        );
        registry.register(
            "host_memory_utilization",
            "Host memory in use (total minus available), 0-1",
            saturation.memory.clone(),
        );
        registry.register(
            "host_disk_utilization",
            "Use of each mounted filesystem, 0-1",
            saturation.disk.clone(),
        );
        registry.register(
            "host_load_average",
            "Host load average",
            saturation.load.clone(),
        );
        registry.register(
            "app_pool_utilization",
            "Database pool connections in use over the pool's maximum, as the app reports them (db.client.connection.count / .max)",
            saturation.pool.clone(),
        );
        registry.register(
            "app_saturation",
            "App gauges named in signals.saturation_gauges, as last reported",
            saturation.app_gauge.clone(),
        );
        registry.register(
            "app_saturation_dropped_series",
            "App saturation data points not kept because 1000 series were held",
            saturation.app_dropped.clone(),
        );
        saturation
    }

    /// The host's latest sample.
    pub fn host(&self) -> HostSaturation {
        lock(&self.host).clone()
    }

    /// Database pools (used / max) and configured gauges, as last reported.
    pub fn app(&self) -> (Vec<AppValue>, Vec<AppValue>) {
        let state = lock(&self.app);
        let mut pools: Vec<AppValue> = state
            .pools
            .iter()
            .filter_map(|((service, pool), counts)| {
                Some(AppValue {
                    service: service.clone(),
                    name: pool.clone(),
                    attributes: String::new(),
                    value: pool_utilization(counts)?,
                    reported: counts.reported,
                })
            })
            .collect();
        pools.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
        let mut gauges: Vec<AppValue> = state.gauges.values().cloned().collect();
        gauges.sort_by(|a, b| {
            (&a.service, &a.name, &a.attributes).cmp(&(&b.service, &b.name, &b.attributes))
        });
        (pools, gauges)
    }

    /// Samples the host every few seconds until `cancel` fires.
    pub fn spawn_host_sampler(
        self: &Arc<Self>,
        cpu: Arc<HostLoad>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let saturation = Arc::clone(self);
        tokio::spawn(async move {
            let mut system = match System::new_with_specifics(
                RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
            ) {
                Ok(system) => system,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read host memory: memory saturation stays 0");
                    return;
                }
            };
            let mut disks =
                Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
                    .ok();
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                system.refresh_memory();
                if let Some(disks) = &mut disks {
                    disks.refresh(true);
                }
                let sample = HostSaturation {
                    cpu: f64::from(cpu.cpu_percent()) / 100.0,
                    memory: ratio(
                        system
                            .total_memory()
                            .saturating_sub(system.available_memory()),
                        system.total_memory(),
                    ),
                    disks: disks
                        .iter()
                        .flat_map(|d| d.iter())
                        .filter(|d| d.total_space() > 0)
                        .map(|d| {
                            let used = d.total_space().saturating_sub(d.available_space());
                            DiskUse {
                                mount: d.mount_point().display().to_string(),
                                utilization: ratio(used, d.total_space()),
                            }
                        })
                        .collect(),
                    load: System::load_average().map_or([0.0; 3], |l| [l.one, l.five, l.fifteen]),
                };
                saturation.publish_host(sample);
            }
        })
    }

    fn publish_host(&self, sample: HostSaturation) {
        self.cpu.set(sample.cpu);
        self.memory.set(sample.memory);
        let mut host = lock(&self.host);
        // Forget unmounted filesystems only: clearing all would let a scrape
        // in between see no disks at all.
        for gone in host
            .disks
            .iter()
            .filter(|old| !sample.disks.iter().any(|d| d.mount == old.mount))
        {
            self.disk.remove(&MountLabels {
                mount: gone.mount.clone(),
            });
        }
        for disk in &sample.disks {
            self.disk
                .get_or_create(&MountLabels {
                    mount: disk.mount.clone(),
                })
                .set(disk.utilization);
        }
        for (period, value) in ["1m", "5m", "15m"].into_iter().zip(sample.load) {
            self.load.get_or_create(&PeriodLabels { period }).set(value);
        }
        *host = sample;
    }

    /// Reads pool sizes and configured gauges from an app's metrics.
    pub fn observe_metrics(&self, request: &ExportMetricsServiceRequest, now: u64) {
        let mut state = lock(&self.app);
        for resource in &request.resource_metrics {
            let service = service_name(resource.resource.as_ref());
            for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let points: &[NumberDataPoint] = match &metric.data {
                    Some(Data::Gauge(g)) => &g.data_points,
                    Some(Data::Sum(s)) => &s.data_points,
                    _ => continue,
                };
                match metric.name.as_str() {
                    // Stable and pre-1.26 semantic-convention names.
                    "db.client.connection.count" | "db.client.connections.usage" => {
                        for point in points {
                            let state_attr =
                                string_attribute(&point.attributes, "db.client.connection.state")
                                    .or_else(|| string_attribute(&point.attributes, "state"));
                            if state_attr == Some("used")
                                && let Some(counts) =
                                    self.pool_counts(&mut state, service, point, now)
                            {
                                counts.used = Some(number(point));
                            }
                        }
                    }
                    "db.client.connection.max" | "db.client.connections.max" => {
                        for point in points {
                            if let Some(counts) = self.pool_counts(&mut state, service, point, now)
                            {
                                counts.max = Some(number(point));
                            }
                        }
                    }
                    name if self.gauge_names.iter().any(|g| g == name) => {
                        for point in points {
                            self.record_gauge(&mut state, service, name, point, now);
                        }
                    }
                    _ => {}
                }
            }
        }
        for ((service, pool), counts) in &state.pools {
            if let Some(utilization) = pool_utilization(counts) {
                let labels = PoolLabels {
                    service: service.clone(),
                    pool: pool.clone(),
                };
                self.pool.get_or_create(&labels).set(utilization);
            }
        }
    }

    fn pool_counts<'s>(
        &self,
        state: &'s mut AppState,
        service: &str,
        point: &NumberDataPoint,
        now: u64,
    ) -> Option<&'s mut PoolCounts> {
        let pool = string_attribute(&point.attributes, "db.client.connection.pool.name")
            .or_else(|| string_attribute(&point.attributes, "pool.name"))
            .unwrap_or("default")
            .to_owned();
        let key = (service.to_owned(), pool);
        let full = state.pools.len() + state.gauges.len() >= MAX_APP_SERIES;
        if full && !state.pools.contains_key(&key) {
            self.app_dropped.inc();
            return None;
        }
        let counts = state.pools.entry(key).or_default();
        counts.reported = now;
        Some(counts)
    }

    fn record_gauge(
        &self,
        state: &mut AppState,
        service: &str,
        name: &str,
        point: &NumberDataPoint,
        now: u64,
    ) {
        let attributes = render_attributes(&point.attributes);
        let key = (service.to_owned(), name.to_owned(), attributes.clone());
        let full = state.pools.len() + state.gauges.len() >= MAX_APP_SERIES;
        if full && !state.gauges.contains_key(&key) {
            self.app_dropped.inc();
            return;
        }
        let value = number(point);
        self.app_gauge
            .get_or_create(&AppGaugeLabels {
                service: service.to_owned(),
                metric: name.to_owned(),
                attributes: attributes.clone(),
            })
            .set(value);
        state.gauges.insert(
            key,
            AppValue {
                service: service.to_owned(),
                name: name.to_owned(),
                attributes,
                value,
                reported: now,
            },
        );
    }

    /// Forgets app values not reported for a while.
    pub fn expire(&self, now: u64) {
        let mut state = lock(&self.app);
        let fresh = |reported: u64| reported + APP_VALUE_TTL_SECONDS > now;
        state.pools.retain(|(service, pool), counts| {
            let keep = fresh(counts.reported);
            if !keep {
                self.pool.remove(&PoolLabels {
                    service: service.clone(),
                    pool: pool.clone(),
                });
            }
            keep
        });
        state.gauges.retain(|(service, metric, attributes), value| {
            let keep = fresh(value.reported);
            if !keep {
                self.app_gauge.remove(&AppGaugeLabels {
                    service: service.clone(),
                    metric: metric.clone(),
                    attributes: attributes.clone(),
                });
            }
            keep
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool_utilization(counts: &PoolCounts) -> Option<f64> {
    match (counts.used, counts.max) {
        (Some(used), Some(max)) if max > 0.0 => Some(used / max),
        _ => None,
    }
}

#[allow(clippy::cast_precision_loss)] // byte counts as ratios
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[allow(clippy::cast_precision_loss)] // gauge values far below 2^52
fn number(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn render_attributes(attributes: &[KeyValue]) -> String {
    let mut parts: Vec<String> = attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some(format!("{}={value}", kv.key))
        })
        .collect();
    parts.sort();
    parts.join(",")
}

#[cfg(test)]
mod tests;
