//! Findings: detections deduplicated by fingerprint (service, route, kind,
//! template) with first and last seen, occurrences, worst and typical count and
//! the latest evidence. Held in memory (the API reads them from here), capped
//! at `n_plus_one.max_findings`, written to SQLite in the background
//! ([`super::persist`]), counted on `/metrics` and logged at WARN at most once
//! per fingerprint per `n_plus_one.log_interval`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::detect::{Detection, FindingKind, Skipped};
use crate::traces::{TraceId, span_id_hex, trace_id_hex};

/// Counts kept to compute the typical (median) count of a finding.
const RECENT_COUNTS: usize = 32;

/// One deduplicated finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The fingerprint, 16 hex digits.
    pub id: String,
    /// The calling service.
    pub service: String,
    /// The request's route.
    pub route: String,
    /// What it is.
    pub kind: FindingKind,
    /// The repeated template.
    pub template: String,
    /// The "1" before the N, when there was one.
    pub source_template: Option<String>,
    /// `db.system.name`, or `http`.
    pub system: String,
    /// The parent span's name in the latest occurrence.
    pub parent_span_name: String,
    /// First seen, Unix milliseconds.
    pub first_seen_unix_ms: i64,
    /// Last seen, Unix milliseconds.
    pub last_seen_unix_ms: i64,
    /// Traces it was found in.
    pub occurrences: u64,
    /// Most repeats in one trace.
    pub worst_count: u64,
    /// Median repeats over the latest occurrences.
    pub typical_count: u64,
    /// Repeats in the latest occurrence.
    pub count: u64,
    /// Their summed duration, nanoseconds.
    pub total_duration_nanos: u64,
    /// One call's mean duration, nanoseconds.
    pub per_call_nanos: u64,
    /// Time batching would have saved in the latest occurrence, nanoseconds.
    pub saved_nanos: u64,
    /// The latest trace it was found in (`/api/v1/traces/{id}`).
    pub example_trace_id: String,
    /// The repeated spans in that trace.
    pub example_span_ids: Vec<String>,
    /// The fix to consider.
    pub fix: String,
    #[serde(skip)]
    pub(super) recent_counts: VecDeque<u64>,
    #[serde(skip)]
    pub(super) last_logged: Option<Instant>,
}

/// A stable 64-bit FNV-1a hash: ids stay the same across agent versions
/// (std's hasher makes no such promise), so stored findings keep matching.
fn fingerprint(service: &str, route: &str, kind: FindingKind, template: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [service, route, kind.as_str(), template] {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    span_id_hex(hash)
}

/// The id of the finding `detection` belongs to.
pub fn finding_id(detection: &Detection) -> String {
    fingerprint(
        &detection.service,
        &detection.route,
        detection.kind,
        &detection.template,
    )
}

impl Finding {
    /// A finding read back from storage: its typical count seeds the median.
    pub(crate) fn restored(mut self) -> Self {
        self.recent_counts = VecDeque::from([self.typical_count]);
        self.last_logged = None;
        self
    }

    fn new(detection: &Detection, trace_id: &TraceId, now_ms: i64) -> Self {
        let mut finding = Self {
            id: fingerprint(
                &detection.service,
                &detection.route,
                detection.kind,
                &detection.template,
            ),
            service: detection.service.to_string(),
            route: detection.route.clone(),
            kind: detection.kind,
            template: detection.template.clone(),
            source_template: None,
            system: detection.system.clone(),
            parent_span_name: String::new(),
            first_seen_unix_ms: now_ms,
            last_seen_unix_ms: now_ms,
            occurrences: 0,
            worst_count: 0,
            typical_count: 0,
            count: 0,
            total_duration_nanos: 0,
            per_call_nanos: 0,
            saved_nanos: 0,
            example_trace_id: String::new(),
            example_span_ids: Vec::new(),
            fix: String::new(),
            recent_counts: VecDeque::new(),
            last_logged: None,
        };
        finding.record(detection, trace_id, now_ms);
        finding
    }

    fn record(&mut self, detection: &Detection, trace_id: &TraceId, now_ms: i64) {
        self.last_seen_unix_ms = now_ms.max(self.last_seen_unix_ms);
        self.occurrences += 1;
        self.worst_count = self.worst_count.max(detection.count);
        if self.recent_counts.len() == RECENT_COUNTS {
            self.recent_counts.pop_front();
        }
        self.recent_counts.push_back(detection.count);
        let mut sorted: Vec<u64> = self.recent_counts.iter().copied().collect();
        sorted.sort_unstable();
        self.typical_count = sorted[sorted.len() / 2];
        self.count = detection.count;
        self.total_duration_nanos = detection.total_nanos;
        self.per_call_nanos = detection.per_call_nanos;
        self.saved_nanos = detection.saved_nanos;
        if detection.source_template.is_some() {
            self.source_template.clone_from(&detection.source_template);
        }
        self.parent_span_name.clone_from(&detection.parent_name);
        self.example_trace_id = trace_id_hex(trace_id);
        self.example_span_ids = detection
            .span_ids
            .iter()
            .map(|id| span_id_hex(*id))
            .collect();
        self.fix = self.kind.fix(self.source_template.is_some()).to_owned();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FindingLabels {
    service: String,
    route: String,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The N+1 families.
#[derive(Debug, Clone, Default)]
pub struct NPlusOneMetrics {
    occurrences: Family<FindingLabels, Counter>,
    findings: Gauge,
    dropped: Counter,
    skipped: Family<ReasonLabels, Counter>,
    analysed: Counter,
    /// Failed writes to the database.
    pub store_errors: Counter,
}

impl NPlusOneMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "n_plus_one",
            "Traces in which an N+1 or repeated-call pattern was found, by service, route and kind",
            metrics.occurrences.clone(),
        );
        registry.register(
            "n_plus_one_findings",
            "Distinct findings held (n_plus_one.max_findings caps them)",
            metrics.findings.clone(),
        );
        registry.register(
            "n_plus_one_dropped_findings",
            "Occurrences of new findings dropped because n_plus_one.max_findings was reached",
            metrics.dropped.clone(),
        );
        registry.register(
            "n_plus_one_skipped_statements",
            "Statements detection skipped, by reason (truncated, empty)",
            metrics.skipped.clone(),
        );
        registry.register(
            "n_plus_one_analysed_traces",
            "Traces analysed for N+1 patterns",
            metrics.analysed.clone(),
        );
        registry.register(
            "n_plus_one_store_errors",
            "Failed writes of findings to the agent database",
            metrics.store_errors.clone(),
        );
        for reason in ["truncated", "empty"] {
            let _ = metrics.skipped.get_or_create(&ReasonLabels { reason });
        }
        metrics
    }
}

#[derive(Debug, Default)]
struct Held {
    findings: HashMap<String, Finding>,
    /// Changed since the last write to the database.
    dirty: HashSet<String>,
}

/// Which findings the API lists.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Only this service.
    pub service: Option<String>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this kind.
    pub kind: Option<FindingKind>,
}

/// The findings, in memory.
#[derive(Debug)]
pub struct FindingsStore {
    held: Mutex<Held>,
    max_findings: usize,
    log_interval: Duration,
    metrics: NPlusOneMetrics,
}

impl FindingsStore {
    /// An empty store.
    pub fn new(max_findings: usize, log_interval: Duration, metrics: NPlusOneMetrics) -> Self {
        Self {
            held: Mutex::new(Held::default()),
            max_findings,
            log_interval,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics, for the parts that count on their own.
    pub fn metrics(&self) -> &NPlusOneMetrics {
        &self.metrics
    }

    /// Adds findings read from the database (newest first, up to the cap).
    pub fn restore(&self, findings: Vec<Finding>) {
        let mut held = self.lock();
        for finding in findings {
            if held.findings.len() >= self.max_findings {
                break;
            }
            held.findings.insert(finding.id.clone(), finding.restored());
        }
        self.metrics.findings.set(held.findings.len() as i64);
    }

    /// Records what one analysed trace gave.
    pub fn record(
        &self,
        trace_id: &TraceId,
        detections: &[Detection],
        skipped: Skipped,
        now_ms: i64,
    ) {
        self.metrics.analysed.inc();
        if skipped.truncated > 0 {
            self.metrics
                .skipped
                .get_or_create(&ReasonLabels {
                    reason: "truncated",
                })
                .inc_by(skipped.truncated);
        }
        if skipped.empty > 0 {
            self.metrics
                .skipped
                .get_or_create(&ReasonLabels { reason: "empty" })
                .inc_by(skipped.empty);
        }
        if detections.is_empty() {
            return;
        }
        let mut held = self.lock();
        for detection in detections {
            let id = finding_id(detection);
            let room = held.findings.len() < self.max_findings;
            let finding = match held.findings.entry(id.clone()) {
                std::collections::hash_map::Entry::Occupied(entry) => {
                    let finding = entry.into_mut();
                    finding.record(detection, trace_id, now_ms);
                    finding
                }
                std::collections::hash_map::Entry::Vacant(entry) if room => {
                    entry.insert(Finding::new(detection, trace_id, now_ms))
                }
                std::collections::hash_map::Entry::Vacant(_) => {
                    self.metrics.dropped.inc();
                    continue;
                }
            };
            self.metrics
                .occurrences
                .get_or_create(&FindingLabels {
                    service: finding.service.clone(),
                    route: finding.route.clone(),
                    kind: finding.kind.as_str(),
                })
                .inc();
            let log_due = finding
                .last_logged
                .is_none_or(|at| at.elapsed() >= self.log_interval);
            if log_due {
                finding.last_logged = Some(Instant::now());
                tracing::warn!(
                    kind = finding.kind.as_str(),
                    service = %finding.service,
                    route = %finding.route,
                    template = %finding.template,
                    source = finding.source_template.as_deref().unwrap_or("-"),
                    count = finding.count,
                    total_ms = finding.total_duration_nanos as f64 / 1e6,
                    saved_ms = finding.saved_nanos as f64 / 1e6,
                    trace_id = %finding.example_trace_id,
                    finding = %finding.id,
                    fix = %finding.fix,
                    "N+1 pattern: the same call repeats under one parent span"
                );
            }
            held.dirty.insert(id);
        }
        self.metrics.findings.set(held.findings.len() as i64);
    }

    /// The findings matching `filter`, most recently seen first.
    pub fn list(&self, filter: &FindingFilter) -> Vec<Finding> {
        let held = self.lock();
        let mut out: Vec<Finding> = held
            .findings
            .values()
            .filter(|f| filter.service.as_deref().is_none_or(|s| f.service == s))
            .filter(|f| filter.route.as_deref().is_none_or(|r| f.route == r))
            .filter(|f| filter.kind.is_none_or(|k| f.kind == k))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.last_seen_unix_ms
                .cmp(&a.last_seen_unix_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// The findings changed since the last call, to write.
    pub fn take_dirty(&self) -> Vec<Finding> {
        let mut held = self.lock();
        let dirty = std::mem::take(&mut held.dirty);
        dirty
            .into_iter()
            .filter_map(|id| held.findings.get(&id).cloned())
            .collect()
    }

    /// Puts back findings whose write failed, to retry on the next flush.
    pub fn mark_dirty(&self, ids: impl IntoIterator<Item = String>) {
        let mut held = self.lock();
        held.dirty.extend(ids);
    }

    /// Forgets findings last seen before `cutoff_ms`.
    pub fn prune(&self, cutoff_ms: i64) -> usize {
        let mut held = self.lock();
        let before = held.findings.len();
        held.findings
            .retain(|_, f| f.last_seen_unix_ms >= cutoff_ms);
        let removed = before - held.findings.len();
        self.metrics.findings.set(held.findings.len() as i64);
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn detection(count: u64, route: &str) -> Detection {
        Detection {
            kind: FindingKind::NPlusOneQuery,
            service: Arc::from("shop"),
            route: route.to_owned(),
            template: "SELECT * FROM items WHERE order_id = ?".to_owned(),
            source_template: Some("SELECT * FROM orders".to_owned()),
            system: "postgresql".to_owned(),
            count,
            total_nanos: count * 1_000_000,
            per_call_nanos: 1_000_000,
            saved_nanos: (count - 1) * 1_000_000,
            parent_span_id: 7,
            parent_name: "GET /orders".to_owned(),
            span_ids: (1..=count).collect(),
        }
    }

    #[test]
    fn occurrences_are_deduplicated_with_worst_and_typical_counts() {
        let store = FindingsStore::new(10, Duration::from_secs(600), NPlusOneMetrics::default());
        for (i, count) in [5, 9, 6, 6, 20].into_iter().enumerate() {
            let trace = [i as u8 + 1; 16];
            store.record(
                &trace,
                &[detection(count, "/orders")],
                Skipped::default(),
                1_000 + i as i64,
            );
        }
        let findings = store.list(&FindingFilter::default());
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.occurrences, 5);
        assert_eq!(f.worst_count, 20);
        assert_eq!(f.typical_count, 6);
        assert_eq!(f.count, 20);
        assert_eq!(f.first_seen_unix_ms, 1_000);
        assert_eq!(f.last_seen_unix_ms, 1_004);
        assert_eq!(f.example_trace_id, trace_id_hex(&[5; 16]));
        assert!(f.fix.starts_with("eager load"), "{}", f.fix);
        assert_eq!(store.take_dirty().len(), 1);
        assert!(store.take_dirty().is_empty(), "written findings are clean");
    }

    #[test]
    fn the_cap_drops_new_fingerprints_and_counts_them() {
        let metrics = NPlusOneMetrics::default();
        let store = FindingsStore::new(2, Duration::from_secs(600), metrics.clone());
        for route in ["/a", "/b", "/c", "/a"] {
            store.record(&[1; 16], &[detection(5, route)], Skipped::default(), 1);
        }
        assert_eq!(store.list(&FindingFilter::default()).len(), 2);
        assert_eq!(metrics.dropped.get(), 1);
        assert_eq!(metrics.findings.get(), 2);
    }

    #[test]
    fn filters_and_pruning() {
        let store = FindingsStore::new(10, Duration::from_secs(600), NPlusOneMetrics::default());
        store.record(&[1; 16], &[detection(5, "/a")], Skipped::default(), 100);
        store.record(&[2; 16], &[detection(5, "/b")], Skipped::default(), 200);
        let only_b = FindingFilter {
            route: Some("/b".into()),
            ..FindingFilter::default()
        };
        assert_eq!(store.list(&only_b).len(), 1);
        let http = FindingFilter {
            kind: Some(FindingKind::NPlusOneHttp),
            ..FindingFilter::default()
        };
        assert!(store.list(&http).is_empty());
        assert_eq!(store.prune(150), 1);
        assert_eq!(store.list(&FindingFilter::default())[0].route, "/b");
    }

    #[test]
    fn fingerprints_are_stable() {
        // Pinned: a change here orphans every finding stored by earlier agents.
        assert_eq!(
            fingerprint("shop", "/orders", FindingKind::NPlusOneQuery, "SELECT ?"),
            "205b14da189f3e69"
        );
        assert_ne!(
            fingerprint("shop", "/orders", FindingKind::NPlusOneQuery, "SELECT ?"),
            fingerprint("shop", "/orders", FindingKind::RepeatedQuery, "SELECT ?")
        );
    }
}
