//! N+1 detection: every assembled trace is searched for the same database
//! statement (normalised to a template) or outbound HTTP call (URL template)
//! repeated under one parent span ([`detect`]); findings are deduplicated,
//! kept in SQLite across restarts, served on `/api/v1/findings`, counted on
//! `/metrics` and logged at WARN. A finding's trace is kept in the
//! [`TraceRing`] with the repeated spans marked.

mod api;
mod detect;
mod findings;
mod http_template;
mod normalize;
mod persist;
mod truncation;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

pub use api::router;
pub use detect::{DetectConfig, Detection, FindingKind, NormalizeCache, Skipped, detect};
pub use findings::{Finding, FindingFilter, FindingsStore, NPlusOneMetrics, finding_id};
pub use http_template::{HttpCall, http_call, path_template};
pub use normalize::{
    NormalizedSql, Parameters, SqlDialect, SqlSkip, looks_truncated, normalize_sql,
};
pub use persist::{flush, unix_ms};

use crate::config::NPlusOneConfig;
use crate::traces::{AssembledTrace, Mark, TraceConsumer, TraceRing, span_id_hex};

/// HTTP methods an ignore entry may start with.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The template an `n_plus_one.ignore` entry stands for: `METHOD host/path`
/// is an HTTP template, anything else a SQL statement.
pub fn ignore_template(entry: &str) -> Result<String, String> {
    let trimmed = entry.trim();
    if let Some((method, rest)) = trimmed.split_once(' ')
        && METHODS.contains(&method.to_ascii_uppercase().as_str())
        && !rest.trim().contains(' ')
        && rest.contains('/')
    {
        let url = if rest.contains("://") {
            rest.trim().to_owned()
        } else {
            format!("http://{}", rest.trim())
        };
        return http_call(method, &url, None)
            .map(|call| call.template)
            .ok_or_else(|| "not a valid `METHOD host/path`".to_owned());
    }
    match normalize_sql(trimmed, SqlDialect::Generic) {
        Ok(normalized) => Ok(normalized.template),
        Err(SqlSkip::Empty) => Err("it is empty".to_owned()),
        Err(SqlSkip::Truncated) => Err("it looks cut short".to_owned()),
    }
}

/// The trace consumer that detects, records and flags.
#[derive(Debug)]
pub struct NPlusOneDetector {
    config: DetectConfig,
    cache: Mutex<NormalizeCache>,
    findings: Arc<FindingsStore>,
    ring: Option<Arc<TraceRing>>,
}

impl NPlusOneDetector {
    /// A detector recording into `findings` and flagging traces in `ring`.
    pub fn new(
        config: &NPlusOneConfig,
        findings: Arc<FindingsStore>,
        ring: Option<Arc<TraceRing>>,
    ) -> Self {
        let ignore: HashSet<String> = config
            .ignore
            .iter()
            .filter_map(|entry| ignore_template(entry).ok())
            .collect();
        Self {
            config: DetectConfig {
                min_repeats: config.min_repeats.max(2),
                min_total_nanos: u64::try_from(config.min_total_duration.as_nanos())
                    .unwrap_or(u64::MAX),
                ignore,
            },
            cache: Mutex::new(NormalizeCache::default()),
            findings,
            ring,
        }
    }
}

impl TraceConsumer for NPlusOneDetector {
    fn on_trace(&self, trace: &Arc<AssembledTrace>) {
        let (detections, skipped) = {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            detect(trace, &self.config, &mut cache)
        };
        self.findings
            .record(&trace.trace_id, &detections, skipped, unix_ms());
        if let Some(ring) = &self.ring {
            for detection in &detections {
                ring.flag(
                    trace,
                    Mark {
                        finding_id: finding_id(detection),
                        kind: detection.kind.as_str(),
                        template: detection.template.clone(),
                        span_ids: detection
                            .span_ids
                            .iter()
                            .map(|id| span_id_hex(*id))
                            .collect(),
                    },
                );
            }
        }
    }
}

/// The running N+1 capability: the store, and the writer keeping it in SQLite.
#[derive(Debug)]
pub struct NPlusOne {
    /// The findings.
    pub findings: Arc<FindingsStore>,
    pool: SqlitePool,
    writer: tokio::task::JoinHandle<()>,
}

impl NPlusOne {
    /// Loads stored findings (past retention deleted first) and starts the writer.
    pub async fn start(
        config: &NPlusOneConfig,
        pool: SqlitePool,
        metrics: NPlusOneMetrics,
        stop: CancellationToken,
    ) -> Self {
        let findings = Arc::new(FindingsStore::new(
            config.max_findings,
            config.log_interval,
            metrics,
        ));
        persist::prune(&findings, &pool, config.retention).await;
        let cutoff = unix_ms()
            .saturating_sub(i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX));
        match persist::load(&pool, cutoff, config.max_findings).await {
            Ok(stored) => {
                tracing::info!(
                    findings = stored.len(),
                    "N+1 findings restored from the agent database"
                );
                findings.restore(stored);
            }
            Err(e) => {
                findings.metrics().store_errors.inc();
                tracing::warn!(error = %e, "cannot read stored N+1 findings; starting without them");
            }
        }
        let writer =
            persist::spawn_writer(Arc::clone(&findings), pool.clone(), config.retention, stop);
        Self {
            findings,
            pool,
            writer,
        }
    }

    /// Writes what is left (after the last traces were analysed) and stops the writer.
    pub async fn finish(self) {
        let _ = self.writer.await;
        flush(&self.findings, &self.pool).await;
    }
}
