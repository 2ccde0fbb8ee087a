//! postgres, mysql and sqlite through sqlx: one connection per check, opened
//! lazily, used for the validation query, closed after any failure.

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};

use crate::config::{CheckKind, Dsn};

/// The name the agent's sessions carry, so a DBA can tell them apart.
const APPLICATION_NAME: &str = "telltale-health";

#[derive(Debug)]
pub(crate) struct SqlProbe {
    kind: CheckKind,
    url: Dsn,
    query: String,
    connection: Option<SqlConnection>,
}

#[derive(Debug)]
enum SqlConnection {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
    Sqlite(SqliteConnection),
}

impl SqlProbe {
    pub(crate) fn new(kind: CheckKind, url: Dsn, query: String) -> Self {
        Self {
            kind,
            url,
            query,
            connection: None,
        }
    }

    pub(crate) async fn run(&mut self) -> Result<(), String> {
        // Taken out of `self` so a run cancelled by its timeout drops it: a
        // connection left mid-query is never reused.
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => self
                .connect()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?,
        };
        let query = sqlx::raw_sql(AssertSqlSafe(self.query.clone()));
        let result = match &mut connection {
            SqlConnection::Postgres(c) => query.execute(c).await.map(drop),
            SqlConnection::Mysql(c) => query.execute(c).await.map(drop),
            SqlConnection::Sqlite(c) => query.execute(c).await.map(drop),
        };
        result.map_err(|e| format!("validation query failed: {e}"))?;
        self.connection = Some(connection);
        Ok(())
    }

    async fn connect(&self) -> Result<SqlConnection, sqlx::Error> {
        let url = self.url.expose().as_str();
        Ok(match self.kind {
            CheckKind::Postgres => SqlConnection::Postgres(
                PgConnectOptions::from_str(url)?
                    .application_name(APPLICATION_NAME)
                    .disable_statement_logging()
                    .connect()
                    .await?,
            ),
            CheckKind::Mysql => SqlConnection::Mysql(
                MySqlConnectOptions::from_str(url)?
                    .disable_statement_logging()
                    .connect()
                    .await?,
            ),
            // Read-only: a health check must never create or change the file.
            _ => SqlConnection::Sqlite(
                SqliteConnectOptions::from_str(url)?
                    .read_only(true)
                    .create_if_missing(false)
                    .disable_statement_logging()
                    .connect()
                    .await?,
            ),
        })
    }
}
