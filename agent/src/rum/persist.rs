//! Rollups in the embedded SQLite database (table `rum_rollups`, migration
//! 0003): every changed five-minute bucket is written every
//! `rum.persist_every` and at shutdown, the last hour is read back at start,
//! rows older than `rum.retention` are deleted.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::{Row, SqlitePool};
use tokio_util::sync::CancellationToken;

use super::aggregate::{Rollup, WebVitalsAggregator};
use super::metric::{Device, MetricKind};
use super::window::{BUCKET_SECONDS, BUCKETS};
use crate::signals::unix_now;

/// Writes and reads the rollups.
#[derive(Debug, Clone)]
pub struct RollupStore {
    pool: SqlitePool,
    retention: Duration,
}

/// Rollups per transaction and per read: bounds the copies held at once.
const CHUNK: usize = 1_000;

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl RollupStore {
    /// On the agent's database.
    pub fn new(pool: SqlitePool, retention: Duration) -> Self {
        Self { pool, retention }
    }

    /// Writes (upserts) the buckets that changed since the last call, a
    /// transaction per [`CHUNK`] of them; returns how many.
    pub async fn flush(&self, aggregator: &WebVitalsAggregator) -> Result<usize, sqlx::Error> {
        let mut written = 0;
        let round = aggregator.begin_flush();
        loop {
            let rollups = aggregator.take_dirty(round, CHUNK);
            if rollups.is_empty() {
                break;
            }
            let mut tx = self.pool.begin().await?;
            for r in &rollups {
                sqlx::query(
                    "INSERT INTO rum_rollups (app, page, metric, device, bucket_start, count, good, needs_improvement, poor, sketch)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (app, page, metric, device, bucket_start) DO UPDATE SET
                       count = excluded.count, good = excluded.good,
                       needs_improvement = excluded.needs_improvement, poor = excluded.poor,
                       sketch = excluded.sketch",
                )
                .bind(&r.app)
                .bind(&r.page)
                .bind(r.metric.as_str())
                .bind(r.device.as_str())
                .bind(as_i64(r.start))
                .bind(i64::from(r.count))
                .bind(i64::from(r.ratings[0]))
                .bind(i64::from(r.ratings[1]))
                .bind(i64::from(r.ratings[2]))
                .bind(&r.sketch)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            written += rollups.len();
        }
        let cutoff = unix_now().saturating_sub(self.retention.as_secs());
        sqlx::query("DELETE FROM rum_rollups WHERE bucket_start < ?")
            .bind(as_i64(cutoff))
            .execute(&self.pool)
            .await?;
        Ok(written)
    }

    /// Puts the rollups of the last hour back into `aggregator`, [`CHUNK`]
    /// rows at a time (an hour of 1,000 pages is ~470,000 rows); returns how
    /// many were used.
    pub async fn restore_recent(
        &self,
        aggregator: &WebVitalsAggregator,
        now: u64,
    ) -> Result<usize, sqlx::Error> {
        let since = now.saturating_sub(BUCKET_SECONDS * BUCKETS as u64);
        let mut rows = sqlx::query(
            "SELECT app, page, metric, device, bucket_start, count, good, needs_improvement, poor, sketch
             FROM rum_rollups WHERE bucket_start > ? ORDER BY bucket_start",
        )
        .bind(as_i64(since))
        .fetch(&self.pool);
        let mut used = 0;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.try_next().await? {
            chunk.extend(rollup_of(&row));
            if chunk.len() == CHUNK {
                used += aggregator.restore(std::mem::take(&mut chunk), now);
            }
        }
        used += aggregator.restore(chunk, now);
        Ok(used)
    }
}

/// A row of `rum_rollups`; `None` for a row this build cannot read.
fn rollup_of(row: &sqlx::sqlite::SqliteRow) -> Option<Rollup> {
    let count = |col: &str| u32::try_from(row.try_get::<i64, _>(col).ok()?).ok();
    Some(Rollup {
        app: row.try_get("app").ok()?,
        page: row.try_get("page").ok()?,
        metric: MetricKind::from_name(row.try_get("metric").ok()?)?,
        device: Device::from_name(row.try_get("device").ok()?)?,
        start: u64::try_from(row.try_get::<i64, _>("bucket_start").ok()?).ok()?,
        count: count("count")?,
        ratings: [count("good")?, count("needs_improvement")?, count("poor")?],
        sketch: row.try_get("sketch").ok()?,
    })
}

/// Reads the last hour back into `aggregator`.
pub(super) async fn load_recent(store: &RollupStore, aggregator: &WebVitalsAggregator) {
    match store.restore_recent(aggregator, unix_now()).await {
        Ok(0) => {}
        Ok(used) => tracing::info!(
            buckets = used,
            "web-vitals rollups of the last hour restored"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read web-vitals rollups: starting empty"),
    }
}

/// Writes changed buckets every `every`, and a last time when `cancel` fires.
pub(super) fn spawn_flusher(
    store: RollupStore,
    aggregator: Arc<WebVitalsAggregator>,
    every: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            let stop = tokio::select! {
                () = cancel.cancelled() => true,
                _ = ticker.tick() => false,
            };
            if let Err(e) = store.flush(&aggregator).await {
                tracing::warn!(error = %e, "cannot write web-vitals rollups: those buckets are written again when they next change");
            }
            if stop {
                break;
            }
        }
    })
}
