//! Findings in the agent's SQLite database (`n_plus_one_findings`, migration
//! 0002): read back at start, the changed ones upserted every second in one
//! transaction, and those past retention deleted. Memory stays the source of
//! truth for the API; the database is what survives a restart.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Row, SqlitePool};
use tokio_util::sync::CancellationToken;

use super::detect::FindingKind;
use super::findings::{Finding, FindingsStore};

/// How often changed findings are written: a crash loses at most this much.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often findings past retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reads the stored findings seen since `cutoff_ms`, newest first, at most `limit`.
pub(super) async fn load(
    pool: &SqlitePool,
    cutoff_ms: i64,
    limit: usize,
) -> Result<Vec<Finding>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM n_plus_one_findings WHERE last_seen_unix_ms >= ? \
         ORDER BY last_seen_unix_ms DESC LIMIT ?",
    )
    .bind(cutoff_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let mut findings = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("kind")?;
        // A kind this agent does not know comes from a newer agent: leave it stored.
        let Some(kind) = FindingKind::parse(&kind) else {
            continue;
        };
        let span_ids: String = row.try_get("example_span_ids")?;
        findings.push(Finding {
            id: row.try_get("id")?,
            service: row.try_get("service")?,
            route: row.try_get("route")?,
            kind,
            template: row.try_get("template")?,
            source_template: row.try_get("source_template")?,
            system: row.try_get("system")?,
            parent_span_name: row.try_get("parent_span_name")?,
            first_seen_unix_ms: row.try_get("first_seen_unix_ms")?,
            last_seen_unix_ms: row.try_get("last_seen_unix_ms")?,
            occurrences: to_u64(row.try_get("occurrences")?),
            worst_count: to_u64(row.try_get("worst_count")?),
            typical_count: to_u64(row.try_get("typical_count")?),
            count: to_u64(row.try_get("count")?),
            total_duration_nanos: to_u64(row.try_get("total_duration_nanos")?),
            per_call_nanos: to_u64(row.try_get("per_call_nanos")?),
            saved_nanos: to_u64(row.try_get("saved_nanos")?),
            example_trace_id: row.try_get("example_trace_id")?,
            example_span_ids: span_ids
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            fix: row.try_get("fix")?,
            recent_counts: VecDeque::new(),
            last_logged: None,
        });
    }
    Ok(findings)
}

/// Upserts `findings` in one transaction.
pub(super) async fn save(pool: &SqlitePool, findings: &[Finding]) -> Result<(), sqlx::Error> {
    if findings.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for f in findings {
        sqlx::query(
            "INSERT INTO n_plus_one_findings (id, service, route, kind, template, source_template, \
             system, parent_span_name, first_seen_unix_ms, last_seen_unix_ms, occurrences, \
             worst_count, typical_count, count, total_duration_nanos, per_call_nanos, saved_nanos, \
             example_trace_id, example_span_ids, fix) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET source_template = excluded.source_template, \
             system = excluded.system, parent_span_name = excluded.parent_span_name, \
             last_seen_unix_ms = excluded.last_seen_unix_ms, occurrences = excluded.occurrences, \
             worst_count = excluded.worst_count, typical_count = excluded.typical_count, \
             count = excluded.count, total_duration_nanos = excluded.total_duration_nanos, \
             per_call_nanos = excluded.per_call_nanos, saved_nanos = excluded.saved_nanos, \
             example_trace_id = excluded.example_trace_id, \
             example_span_ids = excluded.example_span_ids, fix = excluded.fix",
        )
        .bind(&f.id)
        .bind(&f.service)
        .bind(&f.route)
        .bind(f.kind.as_str())
        .bind(&f.template)
        .bind(&f.source_template)
        .bind(&f.system)
        .bind(&f.parent_span_name)
        .bind(f.first_seen_unix_ms)
        .bind(f.last_seen_unix_ms)
        .bind(to_i64(f.occurrences))
        .bind(to_i64(f.worst_count))
        .bind(to_i64(f.typical_count))
        .bind(to_i64(f.count))
        .bind(to_i64(f.total_duration_nanos))
        .bind(to_i64(f.per_call_nanos))
        .bind(to_i64(f.saved_nanos))
        .bind(&f.example_trace_id)
        .bind(f.example_span_ids.join(","))
        .bind(&f.fix)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Deletes findings last seen before `cutoff_ms`.
pub(super) async fn delete_before(pool: &SqlitePool, cutoff_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM n_plus_one_findings WHERE last_seen_unix_ms < ?")
        .bind(cutoff_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Writes what changed in the store; failed writes are retried next time.
pub async fn flush(store: &FindingsStore, pool: &SqlitePool) {
    let dirty = store.take_dirty();
    if let Err(e) = save(pool, &dirty).await {
        store.metrics().store_errors.inc();
        tracing::warn!(error = %e, findings = dirty.len(), "cannot write N+1 findings to the agent database; retrying");
        store.mark_dirty(dirty.into_iter().map(|f| f.id));
    }
}

/// Applies retention in memory and in the database.
pub(super) async fn prune(store: &FindingsStore, pool: &SqlitePool, retention: Duration) {
    let cutoff = unix_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    store.prune(cutoff);
    if let Err(e) = delete_before(pool, cutoff).await {
        store.metrics().store_errors.inc();
        tracing::warn!(error = %e, "cannot delete expired N+1 findings");
    }
}

/// Writes changes every second and applies retention every hour until `stop`
/// fires. The final write is the caller's ([`flush`]), after the last traces
/// were analysed.
pub(super) fn spawn_writer(
    store: Arc<FindingsStore>,
    pool: SqlitePool,
    retention: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut flush_tick = tokio::time::interval(FLUSH_EVERY);
        let mut prune_tick = tokio::time::interval(PRUNE_EVERY);
        prune_tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = flush_tick.tick() => flush(&store, &pool).await,
                _ = prune_tick.tick() => prune(&store, &pool, retention).await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
    use crate::nplusone::{Detection, FindingFilter, NPlusOneMetrics, Skipped};

    fn detection(route: &str) -> Detection {
        Detection {
            kind: FindingKind::NPlusOneHttp,
            service: Arc::from("shop"),
            route: route.to_owned(),
            template: "GET pricing/v1/price/{id}".to_owned(),
            source_template: None,
            system: "http".to_owned(),
            count: 6,
            total_nanos: 6_000,
            per_call_nanos: 1_000,
            saved_nanos: 5_000,
            parent_span_id: 1,
            parent_name: "GET /cart".to_owned(),
            span_ids: vec![2, 3],
        }
    }

    #[tokio::test]
    async fn findings_survive_a_reopen_and_retention_deletes_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            path: dir.path().join("telltale.db"),
        };
        let storage = crate::storage::Storage::open(&config).await.unwrap();
        let store = FindingsStore::new(10, Duration::from_secs(60), NPlusOneMetrics::default());
        store.record(&[1; 16], &[detection("/cart")], Skipped::default(), 5_000);
        store.record(&[2; 16], &[detection("/cart")], Skipped::default(), 6_000);
        store.record(&[3; 16], &[detection("/old")], Skipped::default(), 1_000);
        flush(&store, storage.pool()).await;
        storage.close().await;

        let storage = crate::storage::Storage::open(&config).await.unwrap();
        let loaded = load(storage.pool(), 0, 10).await.unwrap();
        let restored = FindingsStore::new(10, Duration::from_secs(60), NPlusOneMetrics::default());
        restored.restore(loaded);
        let before = store.list(&FindingFilter::default());
        let after = restored.list(&FindingFilter::default());
        assert_eq!(after.len(), 2);
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.occurrences, b.occurrences);
            assert_eq!(a.example_trace_id, b.example_trace_id);
            assert_eq!(a.example_span_ids, b.example_span_ids);
            assert_eq!(a.first_seen_unix_ms, b.first_seen_unix_ms);
        }
        assert_eq!(delete_before(storage.pool(), 2_000).await.unwrap(), 1);
        assert_eq!(load(storage.pool(), 0, 10).await.unwrap().len(), 1);
    }
}
