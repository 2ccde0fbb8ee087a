//! Database spans for sqlx: wrap the pool once ([`TracedPool::new`]) and pass
//! `&pool` where a `&Pool` went; every query becomes a CLIENT span under the
//! current request span, with its text (literals as `?` unless bound as
//! parameters), operation, table and server. Transactions and single
//! connections are traced with [`TracedPool::on`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _};
use sqlx::error::BoxDynError;
use sqlx::{Database, Either, Execute, Executor, Pool, SqlStr};
use tracing::{Span, field};

use crate::quiet::Quieter;
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
        let quiet = Quieter::for_current();
        let steps = quiet.building(|| self.inner.fetch_many(query));
        InFlight::new(steps, span, quiet).boxed()
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
        let quiet = Quieter::for_current();
        let answer = quiet.building(|| self.inner.fetch_optional(query));
        InFlight::new(answer, span, quiet).boxed()
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

/// A query's stream or future, holding its span open until the last row or
/// the answer (or until dropped, when the caller stops early), so the span
/// covers the whole query, and marking it failed on an error. Polled with no
/// span current (see [`Quieter`]) and without entering its own span: nothing
/// inside sqlx starts spans worth having, and each entry is a trip through
/// every layer.
struct InFlight<I> {
    inner: I,
    span: Option<Span>,
    quiet: Quieter,
}

impl<I> InFlight<I> {
    fn new(inner: I, span: Span, quiet: Quieter) -> Self {
        Self {
            inner,
            span: Some(span),
            quiet,
        }
    }

    /// Marks the span failed when `step` is an error.
    fn note<T>(&self, step: &Result<T, sqlx::Error>) {
        if let (Err(error), Some(span)) = (step, &self.span) {
            record_error(span, error);
        }
    }
}

impl<T, I> futures_util::Stream for InFlight<I>
where
    I: futures_util::Stream<Item = Result<T, sqlx::Error>> + Unpin,
{
    type Item = I::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        let this = &mut *self;
        let next = this.quiet.polling(|| this.inner.poll_next_unpin(cx));
        match &next {
            std::task::Poll::Ready(Some(step)) => this.note(step),
            // The only handle on the span: dropping it ends the span at the
            // last row.
            std::task::Poll::Ready(None) => this.span = None,
            std::task::Poll::Pending => {}
        }
        next
    }
}

impl<T, I> Future for InFlight<I>
where
    I: Future<Output = Result<T, sqlx::Error>> + Unpin,
{
    type Output = I::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<I::Output> {
        let this = &mut *self;
        let answer = this.quiet.polling(|| this.inner.poll_unpin(cx));
        if let std::task::Poll::Ready(result) = &answer {
            this.note(result);
            this.span = None;
        }
        answer
    }
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
    let described = described(text, parameterised, DB::DOUBLE_QUOTES_ARE_STRINGS);
    let info = &described.info;
    let (address, port) = match &target.server {
        Some((host, port)) => (Some(host.as_str()), Some(i64::from(*port))),
        None => (None, None),
    };
    tracing::info_span!(
        "db.query",
        otel.name = described.name.as_deref().unwrap_or(DB::SYSTEM),
        otel.kind = "client",
        otel.status_code = field::Empty,
        db.system.name = DB::SYSTEM,
        db.query.text = info.text.as_str(),
        db.operation.name = info.operation.as_deref(),
        db.collection.name = info.collection.as_deref(),
        server.address = address,
        server.port = port,
        error.type = field::Empty,
    )
}

/// What a query's span says about it.
#[derive(Debug)]
struct Described {
    info: sql::QueryInfo,
    /// `OPERATION table`, or the operation; `None`: the database's name.
    name: Option<String>,
}

/// Statements described so far, by `DOUBLE_QUOTES_ARE_STRINGS` then text.
#[derive(Debug, Default)]
struct DescribedCache {
    by_quotes: [HashMap<Box<str>, Arc<Described>>; 2],
    len: usize,
    /// Text held, keys and descriptions.
    bytes: usize,
}

/// Distinct statements remembered at most, and the text they may hold; when
/// either is reached the cache starts over (an app has a few hundred
/// statements; one that builds them from values would only churn it).
const DESCRIBED_CAPACITY: usize = 1_024;
const DESCRIBED_BYTES: usize = 1024 * 1024;
/// Longer statements (a bulk `INSERT` built row by row) are described each time.
const DESCRIBED_MAX_TEXT: usize = 4 * 1024;

static DESCRIBED: LazyLock<Mutex<DescribedCache>> = LazyLock::new(Mutex::default);

/// Describes a statement once: an app runs the same parameterised
/// statements over and over, and the pass over the text was the SDK's
/// largest single cost per query.
fn described(text: &str, parameterised: bool, double_quotes_are_strings: bool) -> Arc<Described> {
    let describe = || {
        let info = sql::describe(text, parameterised, double_quotes_are_strings);
        let name = match (&info.operation, &info.collection) {
            (Some(operation), Some(table)) => Some(format!("{operation} {table}")),
            (Some(operation), None) => Some(operation.clone()),
            _ => None,
        };
        Arc::new(Described { info, name })
    };
    // Text with values inline is mostly unique: remembering it would only
    // push out the statements that repeat.
    if !parameterised || text.len() > DESCRIBED_MAX_TEXT {
        return describe();
    }
    let quotes = usize::from(double_quotes_are_strings);
    let mut cache = DESCRIBED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(hit) = cache.by_quotes[quotes].get(text) {
        return Arc::clone(hit);
    }
    let fresh = describe();
    let bytes = text.len() + fresh.info.text.len();
    if cache.len >= DESCRIBED_CAPACITY || cache.bytes + bytes > DESCRIBED_BYTES {
        *cache = DescribedCache::default();
    }
    cache.len += 1;
    cache.bytes += bytes;
    cache.by_quotes[quotes].insert(text.into(), Arc::clone(&fresh));
    fresh
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameterised_statements_are_described_once() {
        let text = "SELECT id, total FROM orders WHERE customer_id = $1";
        let first = described(text, true, false);
        assert!(Arc::ptr_eq(&first, &described(text, true, false)));
        assert_eq!(first.name.as_deref(), Some("SELECT orders"));
        assert_eq!(first.info.text, text);
        // Same text, MySQL's reading of quotes: described apart.
        assert!(!Arc::ptr_eq(&first, &described(text, true, true)));
    }

    #[test]
    fn inline_values_and_long_statements_are_described_each_time() {
        let inline = "SELECT * FROM orders WHERE id = 42";
        let once = described(inline, false, false);
        assert!(!Arc::ptr_eq(&once, &described(inline, false, false)));
        assert_eq!(once.info.text, "SELECT * FROM orders WHERE id = ?");
        let long = format!("INSERT INTO t (a) VALUES {}", "($1), ".repeat(1_000));
        assert!(long.len() > DESCRIBED_MAX_TEXT);
        assert!(!Arc::ptr_eq(
            &described(&long, true, false),
            &described(&long, true, false)
        ));
    }
}
