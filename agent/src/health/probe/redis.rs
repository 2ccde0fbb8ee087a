//! redis: `PING` through the redis crate's connection manager.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::Dsn;

#[derive(Debug)]
pub(crate) struct RedisProbe {
    client: Result<redis::Client, String>,
    timeout: Duration,
    manager: Option<ConnectionManager>,
}

impl RedisProbe {
    pub(crate) fn new(url: &Dsn, timeout: Duration) -> Self {
        let client = redis::Client::open(url.expose().as_str())
            .map_err(|e| format!("invalid redis URL: {e}"));
        Self {
            client,
            timeout,
            manager: None,
        }
    }

    pub(crate) async fn run(&mut self) -> Result<(), String> {
        let mut manager = match self.manager.take() {
            Some(manager) => manager,
            None => self.connect().await?,
        };
        let pong: String = redis::cmd("PING")
            .query_async(&mut manager)
            .await
            .map_err(|e| format!("PING failed: {e}"))?;
        if pong != "PONG" {
            return Err(format!("PING answered {pong:?}"));
        }
        // Kept only after a success: after a failure the next run connects
        // afresh instead of waiting on the manager's own reconnect backoff.
        self.manager = Some(manager);
        Ok(())
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        let client = self.client.clone()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| format!("cannot connect: {e}"))
    }
}
