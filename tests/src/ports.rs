//! Free loopback ports and polling until a condition holds.

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::bail;

/// Ports already handed out by this process, so two helpers in the same test
/// binary never get the same port even if the kernel offers it twice.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// the port the kernel chose, close the socket).
///
/// # Panics
///
/// When binding to 127.0.0.1 fails, which means the machine has no usable
/// loopback interface.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .expect("cannot bind 127.0.0.1:0: is the loopback interface up?");
        let port = listener
            .local_addr()
            .expect("a bound socket has a local address")
            .port();
        drop(listener);
        let mut used = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if used.insert(port) {
            return port;
        }
    }
}

/// Polls `f` about every 50 ms until it returns `true`.
///
/// Fails with an error naming `what` and `deadline` when `f` has not returned
/// `true` within `deadline` (a call of `f` that hangs counts against the
/// deadline too).
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if let Ok(true) = tokio::time::timeout(left.max(Duration::from_millis(10)), f()).await {
            return Ok(());
        }
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
