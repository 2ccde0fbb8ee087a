//! The HAProxy agent-check listener: one line per connection telling HAProxy
//! whether to send traffic here and how much (`agent-check` in a `server` line).

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::health::HealthBoard;
use crate::host::HostLoad;
use crate::lifecycle::Lifecycle;

/// How long a peer may take to receive the line.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The agent-check server.
#[derive(Debug)]
pub struct AgentCheckServer {
    board: Arc<HealthBoard>,
    lifecycle: Arc<Lifecycle>,
    load: Arc<HostLoad>,
    min_weight_percent: u8,
}

impl AgentCheckServer {
    /// Builds the server.
    pub fn new(
        board: Arc<HealthBoard>,
        lifecycle: Arc<Lifecycle>,
        load: Arc<HostLoad>,
        min_weight_percent: u8,
    ) -> Self {
        Self {
            board,
            lifecycle,
            load,
            min_weight_percent,
        }
    }

    /// Serves until `cancel` fires.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (mut stream, _) = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(error = %e, "agent-check accept failed");
                        continue;
                    }
                },
            };
            // Readiness as the checks see it: a drain is reported on its own.
            let line = agent_check_line(
                self.board.rendered().ready.status.is_success(),
                self.lifecycle.is_draining(),
                self.load.cpu_percent(),
                self.min_weight_percent,
            );
            tokio::spawn(async move {
                let write = async {
                    stream.write_all(line.as_bytes()).await?;
                    stream.shutdown().await
                };
                if let Ok(Err(e)) = tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    tracing::debug!(error = %e, "agent-check reply failed");
                }
            });
        }
    }
}

/// The reply line: an operational state (`up` / `down`, from readiness
/// before any drain) and an administrative one (`ready` / `drain`), always both,
/// so each reply undoes whatever an earlier one set; plus, when serving, a weight
/// that follows host CPU so HAProxy sends less to a busy host.
pub fn agent_check_line(
    ready: bool,
    draining: bool,
    cpu_percent: f32,
    min_weight_percent: u8,
) -> String {
    match (ready, draining) {
        (true, false) => {
            let idle = (100.0 - cpu_percent).round().clamp(0.0, 100.0) as u8;
            let weight = idle.max(min_weight_percent).max(1);
            format!("up ready {weight}%\n")
        }
        (true, true) => "up drain\n".to_owned(),
        (false, false) => "down ready #readiness failing\n".to_owned(),
        (false, true) => "down drain #readiness failing\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::agent_check_line;

    #[test]
    fn weight_follows_idle_cpu_with_a_floor() {
        assert_eq!(agent_check_line(true, false, 25.0, 10), "up ready 75%\n");
        assert_eq!(agent_check_line(true, false, 99.0, 10), "up ready 10%\n");
        assert_eq!(agent_check_line(true, false, 0.0, 10), "up ready 100%\n");
    }

    #[test]
    fn drain_and_down_win_over_weight() {
        assert_eq!(agent_check_line(true, true, 0.0, 10), "up drain\n");
        assert_eq!(
            agent_check_line(false, true, 0.0, 10),
            "down drain #readiness failing\n"
        );
        assert_eq!(
            agent_check_line(false, false, 0.0, 10),
            "down ready #readiness failing\n"
        );
    }
}
