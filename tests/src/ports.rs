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

/// Where [`free_port`] looks: below Linux's default ephemeral range
/// (32768–60999, `net.ipv4.ip_local_port_range`), which the kernel also uses
/// for the local end of every outgoing connection. A port taken from that range
/// by binding to port 0 can be handed to one of the tests' own client
/// connections between the moment it is picked and the moment the agent binds
/// it ("Address already in use"); below it only listeners live.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A TCP port on 127.0.0.1 that was free a moment ago (bound and closed
/// again), from [`PORTS`], never handed out twice by this process.
///
/// # Panics
///
/// When no port of [`PORTS`] can be bound, which means the machine has no
/// usable loopback interface (or something holds all twelve thousand).
pub fn free_port() -> u16 {
    // Start at a spot of the range that differs between test processes.
    let span = u32::from(PORTS.end - PORTS.start);
    let seed = (std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()))
        % span;
    let mut used = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    for step in 0..span {
        // 7,919 is prime and does not divide the span: every port is visited once.
        let offset = (seed + step * 7_919) % span;
        let port = PORTS.start + u16::try_from(offset).expect("offset < span");
        if used.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        used.insert(port);
        return port;
    }
    panic!("no free port on 127.0.0.1 in {PORTS:?}: is the loopback interface up?");
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
