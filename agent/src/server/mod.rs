//! The listeners. Every socket is bound before anything is spawned, so a port
//! conflict fails the start with the address in the message; every server has
//! the same shape: built from its state, then `serve(listener, cancel)`.

mod admin;
mod agent_check;
mod public;
mod scrape_body;

use std::net::SocketAddr;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::ListenersConfig;

pub use admin::{AdminServer, AdminState, router as admin_router};
pub use agent_check::{AgentCheckServer, agent_check_line};
pub(crate) use public::json_error;
pub use public::{PublicServer, PublicState, router as public_router};

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} ({listener} listener, config key `listeners.{listener}`): {source}{advice}"
)]
pub struct BindError {
    /// Which listener.
    pub listener: &'static str,
    /// The address asked for.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
    advice: &'static str,
}

/// Every listener the configuration asks for, bound.
#[derive(Debug)]
pub struct BoundListeners {
    /// Load balancers and browsers.
    pub public: std::net::TcpListener,
    /// Dashboard, API, metrics.
    pub admin: std::net::TcpListener,
    /// HAProxy agent-check, when enabled.
    pub agent_check: Option<std::net::TcpListener>,
    /// OTLP/gRPC receiver.
    pub otlp_grpc: std::net::TcpListener,
    /// OTLP/HTTP receiver.
    pub otlp_http: std::net::TcpListener,
}

/// The addresses actually bound (port 0 resolved).
#[derive(Debug, Clone, Copy)]
pub struct ListenerAddrs {
    /// Public listener.
    pub public: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Agent-check listener, when enabled.
    pub agent_check: Option<SocketAddr>,
    /// OTLP/gRPC receiver.
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver.
    pub otlp_http: SocketAddr,
}

impl BoundListeners {
    /// Binds every configured listener now.
    pub fn bind(config: &ListenersConfig) -> Result<Self, BindError> {
        Ok(Self {
            public: bind("public", config.public)?,
            admin: bind("admin", config.admin)?,
            agent_check: config
                .agent_check
                .map(|addr| bind("agent_check", addr))
                .transpose()?,
            otlp_grpc: bind("otlp_grpc", config.otlp_grpc)?,
            otlp_http: bind("otlp_http", config.otlp_http)?,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> ListenerAddrs {
        let addr =
            |l: &std::net::TcpListener| l.local_addr().expect("a bound socket has an address");
        ListenerAddrs {
            public: addr(&self.public),
            admin: addr(&self.admin),
            agent_check: self.agent_check.as_ref().map(addr),
            otlp_grpc: addr(&self.otlp_grpc),
            otlp_http: addr(&self.otlp_http),
        }
    }
}

fn bind(listener: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let error = |source: std::io::Error| {
        let advice = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; another process holds this port: stop it or choose another port"
            }
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need privileges: choose a higher port"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "; this host has no such address: use 0.0.0.0 or one of its own"
            }
            _ => "",
        };
        BindError {
            listener,
            addr,
            source,
            advice,
        }
    };
    let socket = std::net::TcpListener::bind(addr).map_err(error)?;
    socket.set_nonblocking(true).map_err(error)?;
    Ok(socket)
}

/// Serves an HTTP router until `cancel` fires, then lets in-flight requests finish.
pub(crate) async fn serve_http(
    listener: std::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Small answers (health, OTLP acknowledgements) must not wait for Nagle's
    // algorithm and the peer's delayed ACK: that costs 40 ms a response.
    let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    // The peer address reaches handlers (RUM's per-client rate limits).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await
}
