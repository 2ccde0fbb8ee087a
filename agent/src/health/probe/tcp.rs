//! tcp: the application accepts a connection.

use tokio::net::TcpStream;

#[derive(Debug)]
pub(crate) struct TcpProbe {
    address: String,
}

impl TcpProbe {
    pub(crate) fn new(address: String) -> Self {
        Self { address }
    }

    pub(crate) async fn run(&mut self) -> Result<(), String> {
        TcpStream::connect(self.address.as_str())
            .await
            .map(drop)
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))
    }
}
