//! A tiny hand-rolled HTTP/1.1 app on a free port, as a backend for HAProxy
//! or a target of the agent's `http` check.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request head the app reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with its name
/// as the body and `Connection: close`, with a status the test can change.
///
/// The server stops when this is dropped.
#[derive(Debug)]
pub struct TinyHttpApp {
    name: String,
    port: u16,
    state: Arc<State>,
    accept_loop: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    name: String,
    status: AtomicU16,
    served: AtomicU64,
}

impl TinyHttpApp {
    /// Listens on a free port and serves `200 OK` with body `name`.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        crate::http::install_crypto_provider();
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot bind 127.0.0.1:0 for the tiny HTTP app")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            name: name.to_owned(),
            status: AtomicU16::new(200),
            served: AtomicU64::new(0),
        });
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Self {
            name: name.to_owned(),
            port,
            state,
            accept_loop,
        })
    }

    /// The name given to [`start`](Self::start), which is also the body.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Makes every later response use `status` (e.g. 500).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// How many requests it has answered. A request is counted before its
    /// response is written, so a client that has read its response always
    /// sees it counted.
    pub fn requests_served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }
}

impl Drop for TinyHttpApp {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    // Connection tasks are tracked so aborting this loop ends them too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve(stream, Arc::clone(&state)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    if tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .ok()
        .and_then(Result::ok)
        .is_none()
    {
        return;
    }
    let status = state.status.load(Ordering::SeqCst);
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        reason(status),
        state.name.len(),
        state.name
    );
    // Counted first: counting after the write raced the client, which could
    // read the whole response before this task ran again.
    state.served.fetch_add(1, Ordering::SeqCst);
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Reads until the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(
            n > 0,
            "connection closed before the end of the request head"
        );
        head.extend_from_slice(&buf[..n]);
        anyhow::ensure!(head.len() <= MAX_HEAD, "request head too large");
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
