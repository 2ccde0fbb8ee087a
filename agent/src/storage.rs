//! The agent's embedded SQLite database: what must survive a restart (N+1
//! findings, web-vitals rollups, health history). Opened and migrated once at
//! start; every capability gets the same small pool and owns its own tables,
//! added as numbered files in `agent/migrations/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::StorageConfig;

/// SQLite allows one writer at a time; a few connections let readers (the API)
/// run beside it under WAL.
const MAX_CONNECTIONS: u32 = 4;
/// How long a statement waits for the writer lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file could not be opened or created.
    #[error(
        "cannot open the agent database {path}: {source} (set storage.path to a writable file)"
    )]
    Open {
        /// The configured path.
        path: String,
        /// What SQLite said.
        source: sqlx::Error,
    },
    /// A migration failed (a database written by a newer agent, say).
    #[error("cannot migrate the agent database {path}: {source}")]
    Migrate {
        /// The configured path.
        path: String,
        /// What the migrator said.
        source: sqlx::migrate::MigrateError,
    },
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Storage {
    pool: SqlitePool,
}

impl Storage {
    /// Opens (creating it when missing) and migrates the database at
    /// `config.path`; `:memory:` keeps everything in memory for this run only.
    pub async fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        let path = config.path.to_string_lossy().into_owned();
        let in_memory = path == ":memory:";
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:")
        } else {
            Ok(SqliteConnectOptions::new().filename(&config.path))
        }
        .map_err(|source| StorageError::Open {
            path: path.clone(),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + NORMAL: a power cut may lose the last transactions, never
        // corrupt the file; findings and rollups are re-derived from traffic.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT);
        if !in_memory {
            create_parent_dir(&config.path).map_err(|e| StorageError::Open {
                path: path.clone(),
                source: sqlx::Error::Io(e),
            })?;
        }
        // An in-memory database lives as long as its one connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { MAX_CONNECTIONS })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .connect_with(options)
            .await
            .map_err(|source| StorageError::Open {
                path: path.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StorageError::Migrate {
                path: path.clone(),
                source,
            })?;
        let storage = Self { pool };
        storage.record_start().await;
        Ok(storage)
    }

    /// The shared pool; each capability queries its own tables through it.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for running statements.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn record_start(&self) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if let Err(e) =
            sqlx::query("INSERT INTO agent_starts (started_at_unix_ms, version) VALUES (?, ?)")
                .bind(now_ms)
                .bind(env!("CARGO_PKG_VERSION"))
                .execute(&self.pool)
                .await
        {
            tracing::warn!(error = %e, "cannot record the start in the agent database");
        }
    }
}

fn create_parent_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_migrates_and_reopens_a_file_database() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            path: dir.path().join("nested/telltale.db"),
        };
        let first = Storage::open(&config).await.unwrap();
        first.close().await;
        let second = Storage::open(&config).await.unwrap();
        let starts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_starts")
            .fetch_one(second.pool())
            .await
            .unwrap();
        assert_eq!(starts, 2, "both starts are kept across a reopen");
    }

    #[tokio::test]
    async fn an_unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let config = StorageConfig {
            path: blocker.join("telltale.db"),
        };
        let error = Storage::open(&config).await.unwrap_err().to_string();
        assert!(error.contains("storage.path"), "{error}");
        assert!(error.contains(&blocker.display().to_string()), "{error}");
    }

    #[tokio::test]
    async fn memory_database_is_migrated() {
        let config = StorageConfig {
            path: ":memory:".into(),
        };
        let storage = Storage::open(&config).await.unwrap();
        let starts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_starts")
            .fetch_one(storage.pool())
            .await
            .unwrap();
        assert_eq!(starts, 1);
    }
}
