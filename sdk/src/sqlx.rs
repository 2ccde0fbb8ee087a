//! Database spans for sqlx: wrap the pool once ([`TracedPool::new`]) and pass
//! `&pool` where a `&Pool` went; every query becomes a CLIENT span under the
//! current request span, with its text (literals as `?` unless bound as
//! parameters), operation, table and server. Transactions and single
//! connections are traced with [`TracedPool::on`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _};
use sqlx::error::BoxDynError;
use sqlx::{Database, Either, Execute, Executor, Pool, SqlStr};
use tracing::{Instrument as _, Span, field};

use crate::sql;

/// What a database kind contributes to its spans.
pub trait TracedDatabase: Database {
    /// `db.system.name`.
    const SYSTEM: &'static str;
    /// Whether `"..."` is a string (MySQL) rather than an identifier.
    const DOUBLE_QUOTES_ARE_STRINGS: bool = false;
    /// `server.address` and `server.port`, when the database is remote.
    fn server(options: &<Self::Connection as sqlx::Connection>::Options) -> Option<(String, u16)>;
}

impl TracedDatabase for sqlx::Postgres {
    const SYSTEM: &'static str = "postgresql";
    fn server(options: &sqlx::postgres::PgConnectOptions) -> Option<(String, u16)> {
        Some((options.get_host().to_owned(), options.get_port()))
    }
}

impl TracedDatabase for sqlx::MySql {
    const SYSTEM: &'static str = "mysql";
    const DOUBLE_QUOTES_ARE_STRINGS: bool = true;
    fn server(options: &sqlx::mysql::MySqlConnectOptions) -> Option<(String, u16)> {
        Some((options.get_host().to_owned(), options.get_port()))
    }
}

impl TracedDatabase for sqlx::Sqlite {
    const SYSTEM: &'static str = "sqlite";
    fn server(_: &sqlx::sqlite::SqliteConnectOptions) -> Option<(String, u16)> {
        None
    }
}

#[derive(Debug)]
struct Target {
    server: Option<(String, u16)>,
}

/// A sqlx pool whose queries are traced. Derefs to nothing on purpose: use
/// [`pool`](Self::pool) for what the wrapper does not cover (`begin`,
/// `acquire`, `close`).
#[derive(Debug)]
pub struct TracedPool<DB: Database> {
    pool: Pool<DB>,
    target: Arc<Target>,
}

impl<DB: Database> Clone for TracedPool<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            target: Arc::clone(&self.target),
        }
    }
}

impl<DB: TracedDatabase> TracedPool<DB> {
    /// Wraps `pool`; the server address is read from its connect options.
    pub fn new(pool: Pool<DB>) -> Self {
        let server = DB::server(&pool.connect_options());
        Self {
            pool,
            target: Arc::new(Target { server }),
        }
    }

    /// The pool itself.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Traces queries run on another executor of the same database, such as
    /// a transaction: `query.execute(db.on(&mut *tx))`.
    pub fn on<'c, E>(&self, executor: E) -> Traced<E>
    where
        E: Executor<'c, Database = DB>,
    {
        Traced {
            inner: executor,
            target: Arc::clone(&self.target),
        }
    }
}

/// An executor whose queries are traced (see [`TracedPool::on`]).
#[derive(Debug)]
pub struct Traced<E> {
    inner: E,
    target: Arc<Target>,
}

impl<'p, DB> Executor<'p> for &'p TracedPool<DB>
where
    DB: TracedDatabase,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        self.on(&self.pool).fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        self.on(&self.pool).fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.pool.describe(sql)
    }
}

impl<'c, E, DB> Executor<'c> for Traced<E>
where
    E: Executor<'c, Database = DB>,
    DB: TracedDatabase,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, DB>,
    {
        let (query, span) = Recorded::<DB>::new(query, &self.target);
        let failure_span = span.clone();
        let steps = without_current_span(|| self.inner.fetch_many(query));
        let steps = steps.inspect(move |step| {
            if let Err(error) = step {
                record_error(&failure_span, error);
            }
        });
        UntilDone {
            inner: steps.boxed(),
            span: Some(span),
        }
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, DB>,
    {
        let (query, span) = Recorded::<DB>::new(query, &self.target);
        let failure_span = span.clone();
        without_current_span(|| self.inner.fetch_optional(query))
            .inspect(move |result| {
                if let Err(error) = result {
                    record_error(&failure_span, error);
                }
            })
            .instrument(span)
            .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}

/// A stream that holds its query's span open until the last row (or until
/// it is dropped, when the caller stops early), so the span covers the whole
/// query. The span is not entered on each poll: nothing inside sqlx's stream
/// starts spans of its own, and entering costs a trip through every layer
/// per row.
struct UntilDone<'e, T> {
    inner: BoxStream<'e, T>,
    span: Option<Span>,
}

impl<T> futures_util::Stream for UntilDone<'_, T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        let this = &mut *self;
        let next = this.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(None) = next {
            // Closing the span here ends it at the last row.
            this.span = None;
        }
        next
    }
}

/// Builds sqlx's stream or future where no span is current. sqlx runs them
/// `in_current_span`, which would enter the request's span, through every
/// layer, on each of their polls (one per row); our own span already times
/// the query.
fn without_current_span<T>(build: impl FnOnce() -> T) -> T {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), build)
}

fn record_error(span: &Span, error: &sqlx::Error) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type(error));
}

fn error_type(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(_) => "database",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::Io(_) => "io",
        _ => "other",
    }
}

/// The query taken apart so its text can be read before sqlx consumes it.
struct Recorded<DB: Database> {
    sql: SqlStr,
    arguments: Result<Option<DB::Arguments>, Option<BoxDynError>>,
    persistent: bool,
}

impl<DB: TracedDatabase> Recorded<DB> {
    fn new<'q, Q: Execute<'q, DB>>(mut query: Q, target: &Target) -> (Self, Span) {
        let arguments = query.take_arguments().map_err(Some);
        let persistent = query.persistent();
        let sql = query.sql();
        let span = query_span::<DB>(sql.as_str(), matches!(arguments, Ok(Some(_))), target);
        (
            Self {
                sql,
                arguments,
                persistent,
            },
            span,
        )
    }
}

fn query_span<DB: TracedDatabase>(text: &str, parameterised: bool, target: &Target) -> Span {
    // Describing the query costs a pass over its text: only when recorded.
    // Every field is set as the span is created: each later `record` is a
    // trip through every layer.
    if !tracing::span_enabled!(tracing::Level::INFO) {
        return Span::none();
    }
    let info = sql::describe(text, parameterised, DB::DOUBLE_QUOTES_ARE_STRINGS);
    let name = match (&info.operation, &info.collection) {
        (Some(operation), Some(table)) => format!("{operation} {table}"),
        (Some(operation), None) => operation.clone(),
        _ => DB::SYSTEM.to_owned(),
    };
    let (address, port) = match &target.server {
        Some((host, port)) => (Some(host.as_str()), Some(i64::from(*port))),
        None => (None, None),
    };
    tracing::info_span!(
        "db.query",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = field::Empty,
        db.system.name = DB::SYSTEM,
        db.query.text = info.text,
        db.operation.name = info.operation,
        db.collection.name = info.collection,
        server.address = address,
        server.port = port,
        error.type = field::Empty,
    )
}

impl<'q, DB: Database> Execute<'q, DB> for Recorded<DB> {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&DB::Statement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, BoxDynError> {
        match std::mem::replace(&mut self.arguments, Ok(None)) {
            Ok(arguments) => Ok(arguments),
            Err(Some(error)) => Err(error),
            Err(None) => Ok(None),
        }
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}
