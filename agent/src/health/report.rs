//! The `application/health+json` body (IETF draft-inadarei-api-health-check),
//! rendered once per change so that `/health` only copies bytes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use super::Status;
use super::board::CheckResult;

/// The media type of every health body.
pub const HEALTH_JSON: &str = "application/health+json";

/// The top-level report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HealthReport<'a> {
    /// Aggregate status.
    pub status: Status,
    /// Version of the agent.
    pub release_id: &'static str,
    /// Always `telltale`.
    pub service_id: &'static str,
    /// What this report covers.
    pub description: &'static str,
    /// Why the report fails (names of failing checks, or `draining`); only on fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `component:measurement` → observations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Vec<CheckEntry<'a>>>,
}

/// One observation of one check.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckEntry<'a> {
    /// The check's name.
    pub component_id: &'a str,
    /// `datastore`, `system` or `component`.
    pub component_type: &'static str,
    /// The measured value, when the run measured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    /// Its unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<&'static str>,
    /// The check's status (after hysteresis).
    pub status: Status,
    /// When the last run finished (RFC 3339), or when the agent started.
    pub time: String,
    /// Why the check fails, redacted; only on fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a str>,
}

const PRODUCT: &str = "telltale";
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The readiness report over every check. `draining` overrides the status.
pub(super) fn readiness<'a>(
    results: &'a [CheckResult],
    started: SystemTime,
    draining: bool,
) -> HealthReport<'a> {
    let status = results
        .iter()
        .map(|r| r.status.weighed(r.critical))
        .max()
        .unwrap_or(Status::Pass);
    let output = if draining {
        Some("draining".to_owned())
    } else if status == Status::Fail {
        let failing: Vec<&str> = results
            .iter()
            .filter(|r| r.critical && r.status == Status::Fail)
            .map(|r| r.name.as_str())
            .collect();
        Some(format!("failing: {}", failing.join(", ")))
    } else {
        None
    };
    HealthReport {
        status: if draining { Status::Fail } else { status },
        release_id: RELEASE,
        service_id: PRODUCT,
        description: "readiness: deep checks of this instance's dependencies",
        output,
        checks: entries(results, started),
    }
}

/// The report of one check alone: its own status, whatever its criticality.
pub(super) fn single<'a>(result: &'a CheckResult, started: SystemTime) -> HealthReport<'a> {
    HealthReport {
        status: result.status,
        release_id: RELEASE,
        service_id: PRODUCT,
        description: "one check of this instance",
        output: None,
        checks: entries(std::slice::from_ref(result), started),
    }
}

/// Liveness: the process answers. Never depends on anything external.
pub(super) fn liveness() -> HealthReport<'static> {
    HealthReport {
        status: Status::Pass,
        release_id: RELEASE,
        service_id: PRODUCT,
        description: "liveness: the agent process is running",
        output: None,
        checks: BTreeMap::new(),
    }
}

fn entries(results: &[CheckResult], started: SystemTime) -> BTreeMap<String, Vec<CheckEntry<'_>>> {
    let mut checks = BTreeMap::new();
    for result in results {
        let time = humantime::format_rfc3339_millis(result.time.unwrap_or(started)).to_string();
        let output = (result.status == Status::Fail)
            .then_some(result.output.as_deref())
            .flatten();
        let entry = |value, unit| CheckEntry {
            component_id: &result.name,
            component_type: result.kind.component_type(),
            observed_value: value,
            observed_unit: unit,
            status: result.status,
            time: time.clone(),
            output,
        };
        if result.measurements.is_empty() {
            let key = format!("{}:{}", result.name, primary_measurement(result));
            checks.insert(key, vec![entry(None, None)]);
        }
        for m in &result.measurements {
            checks.insert(
                format!("{}:{}", result.name, m.name),
                vec![entry(Some(m.value), Some(m.unit))],
            );
        }
    }
    checks
}

fn primary_measurement(result: &CheckResult) -> &'static str {
    use crate::config::CheckKind::{Disk, Memory};
    match result.kind {
        Disk | Memory => "utilization",
        _ => "responseTime",
    }
}

/// Serializes a report; the shape is fixed, so this cannot fail in practice.
pub(super) fn to_bytes(report: &HealthReport<'_>) -> Bytes {
    Bytes::from(serde_json::to_vec(report).unwrap_or_else(|_| {
        br#"{"status":"fail","output":"report could not be rendered"}"#.to_vec()
    }))
}
