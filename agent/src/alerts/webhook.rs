//! Webhook notifications: each transition is POSTed as JSON by a background
//! task, so a slow or dead receiver never delays evaluation. The queue is
//! bounded; what does not fit is counted as dropped.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{AlertMetrics, Transition};

/// Transitions waiting to be delivered.
const QUEUE: usize = 256;
/// One delivery attempt's deadline.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per transition; a receiver down for longer misses it (counted).
const ATTEMPTS: u32 = 3;

/// The sending side of the webhook queue.
#[derive(Debug, Clone)]
pub struct Webhook {
    queue: mpsc::Sender<Transition>,
    metrics: AlertMetrics,
}

impl Webhook {
    /// Starts the delivery task for `url` until `cancel` fires.
    pub fn spawn(
        url: Url,
        metrics: AlertMetrics,
        cancel: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("telltale/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (queue, mut pending) = mpsc::channel::<Transition>(QUEUE);
        let task_metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                let transition = tokio::select! {
                    () = cancel.cancelled() => break,
                    next = pending.recv() => match next {
                        Some(t) => t,
                        None => break,
                    },
                };
                let result = deliver(&client, &url, &transition).await;
                task_metrics.webhook(if result { "ok" } else { "failed" });
            }
        });
        Ok(Self { queue, metrics })
    }

    /// Queues a transition; never waits.
    pub(super) fn send(&self, transition: Transition) {
        if self.queue.try_send(transition).is_err() {
            self.metrics.webhook("dropped");
        }
    }
}

async fn deliver(client: &reqwest::Client, url: &Url, transition: &Transition) -> bool {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match client.post(url.clone()).json(transition).send().await {
            Ok(response) if response.status().is_success() => return true,
            // The address may hold credentials: log the host only.
            Ok(response) => {
                tracing::warn!(host = ?url.host_str(), status = %response.status(), attempt, "alert webhook refused the notification")
            }
            Err(e) => {
                tracing::warn!(host = ?url.host_str(), error = %e.without_url(), attempt, "alert webhook unreachable")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    false
}
