//! Redis spans: wrap a connection (a `ConnectionManager`, a
//! `MultiplexedConnection`, ...) in [`TracedRedis`] and use it as before; each
//! command becomes a CLIENT span named after it. Keys and values are never
//! recorded: they are the app's data.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tracing::{Instrument as _, Span, field};

/// A traced redis connection; clone it like the connection it wraps.
#[derive(Debug, Clone)]
pub struct TracedRedis<C> {
    inner: C,
    server: Option<(String, u16)>,
}

impl<C> TracedRedis<C> {
    /// Wraps `connection`, recording no server address.
    pub fn new(connection: C) -> Self {
        Self {
            inner: connection,
            server: None,
        }
    }

    /// Records `server.address` and `server.port` on every span.
    pub fn with_server(mut self, address: impl Into<String>, port: u16) -> Self {
        self.server = Some((address.into(), port));
        self
    }

    /// The wrapped connection.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn span(&self, operation: &str, batch_size: Option<usize>) -> Span {
        let span = tracing::info_span!(
            "redis",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = field::Empty,
            db.system.name = "redis",
            db.operation.name = operation,
            db.operation.batch.size = field::Empty,
            server.address = field::Empty,
            server.port = field::Empty,
            error.type = field::Empty,
        );
        if let Some(size) = batch_size {
            span.record("db.operation.batch.size", size as u64);
        }
        if let Some((address, port)) = &self.server {
            span.record("server.address", address.as_str());
            span.record("server.port", i64::from(*port));
        }
        span
    }
}

/// The command's name (its first argument), upper-cased; `UNKNOWN` when the
/// first argument is not a plain word.
fn command_name(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(bytes))
            if !bytes.is_empty()
                && bytes.len() <= 32
                && bytes.iter().all(u8::is_ascii_alphabetic) =>
        {
            String::from_utf8_lossy(bytes).to_ascii_uppercase()
        }
        _ => "UNKNOWN".to_owned(),
    }
}

fn finish<T>(span: &Span, result: &redis::RedisResult<T>) {
    if let Err(error) = result {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", format!("{:?}", error.kind()).as_str());
    }
}

impl<C: ConnectionLike + Send> ConnectionLike for TracedRedis<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let span = self.span(&command_name(cmd), None);
        let recorder = span.clone();
        Box::pin(
            async move {
                let result = self.inner.req_packed_command(cmd).await;
                finish(&recorder, &result);
                result
            }
            .instrument(span),
        )
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let commands: Vec<String> = pipeline.cmd_iter().map(command_name).collect();
        let mut distinct = commands.clone();
        distinct.dedup();
        let name = if distinct.len() == 1 {
            format!("PIPELINE {}", distinct[0])
        } else {
            "PIPELINE".to_owned()
        };
        let span = self.span(&name, Some(commands.len()));
        let recorder = span.clone();
        Box::pin(
            async move {
                let result = self
                    .inner
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                finish(&recorder, &result);
                result
            }
            .instrument(span),
        )
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
