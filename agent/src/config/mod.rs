//! The agent's configuration: one TOML file (or the embedded default), overridden
//! by `TELLTALE_*` environment variables, validated before anything starts.
//! The `///` comments on these types are the user documentation of each key;
//! `examples/telltale.toml` mirrors them.

mod checks;
mod error;
mod flame;
mod load;
mod rum;
mod secret;
mod telemetry;
mod traces;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use checks::{CheckConfig, CheckKind, CheckSpec, ProbeSpec, Schedule, Thresholds};
pub use error::ConfigError;
pub use flame::{FlameConfig, FlameIssue};
pub use load::{EnvSource, ProcessEnv, load_file, load_str};
pub use rum::RumConfig;
pub use secret::{Dsn, REDACTED, Redactor, Secret};
pub use telemetry::{
    AlertRule, AlertSignal, AlertsConfig, IngestConfig, SignalsConfig, UpstreamConfig,
    UpstreamProtocol,
};
pub use traces::{NPlusOneConfig, TracesConfig};

/// The embedded default: what `telltale` runs with no `--config`. Every key takes
/// its documented default, so this is the defaults and nothing else.
pub const EMBEDDED_DEFAULT: &str = "# telltale embedded default: every key at its default\n";

/// The whole configuration, as read from TOML.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the agent listens.
    pub listeners: ListenersConfig,
    /// The admin listener's protection.
    pub admin: AdminConfig,
    /// Health checks and the report load balancers poll.
    pub health: HealthConfig,
    /// The HAProxy agent-check answers.
    pub agent_check: AgentCheckConfig,
    /// Drain and shutdown timing.
    pub shutdown: ShutdownConfig,
    /// OTLP ingest limits and backpressure.
    pub ingest: IngestConfig,
    /// Golden signals.
    pub signals: SignalsConfig,
    /// Alert rules on the golden signals and saturation.
    pub alerts: AlertsConfig,
    /// Forwarding to an upstream OTLP collector. Off unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamConfig>,
    /// The embedded database for what survives a restart.
    pub storage: StorageConfig,
    /// Real User Monitoring: web-vitals beacons from browsers.
    pub rum: RumConfig,
    /// Trace assembly and the recent-trace ring.
    pub traces: TracesConfig,
    /// N+1 detection on assembled traces.
    pub n_plus_one: NPlusOneConfig,
    /// Flame graphs from spans and CPU profiles.
    pub flame: FlameConfig,
    /// The threads the agent runs on.
    pub runtime: RuntimeConfig,
}

/// The async runtime's threads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that receive and answer on every listener (1 to 256).
    /// Default: half the cores, at least 1: the agent runs beside the app it
    /// watches and leaves it the rest. The ingest pipeline and trace analysis
    /// run on threads of their own. At a steady rate one thread spends less
    /// CPU than two, since no idle thread is woken to look for work
    /// (BENCHMARKS.md). Raise it for an agent that receives from many hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

impl RuntimeConfig {
    /// The most `worker_threads` may be.
    pub const MAX_WORKER_THREADS: usize = 256;

    /// The worker threads to start: the configured count, else half the cores.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(half_the_cores)
    }
}

/// Half the cores this process may use, at least one: the share a sidecar
/// takes by default (the runtime's threads, the pipeline's).
pub fn half_the_cores() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores / 2).max(1)
}

/// The agent's embedded SQLite database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The database file, created (with its directory) and migrated at start;
    /// relative paths are from the working directory. Default `telltale.db`.
    /// `:memory:` keeps everything in memory, lost at exit.
    pub path: std::path::PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: "telltale.db".into(),
        }
    }
}

/// Listener addresses. Ports are bound before anything is spawned, so a port
/// already in use fails the start with the address in the message.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// Load balancers and browsers: `/health*`, `/livez`, `/readyz`.
    /// Default `0.0.0.0:8686`: load balancers reach it from other hosts.
    pub public: SocketAddr,
    /// Dashboard, `/api/v1/*`, `/metrics`, `/admin/drain`. Default `127.0.0.1:8687`;
    /// binding beyond loopback requires `admin.token`.
    pub admin: SocketAddr,
    /// HAProxy agent-check TCP listener (one line per connection). Off unless set.
    pub agent_check: Option<SocketAddr>,
    /// OTLP/gRPC receiver. Default `127.0.0.1:4317`: the app runs on this host.
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver (`/v1/traces`, `/v1/metrics`). Default `127.0.0.1:4318`.
    pub otlp_http: SocketAddr,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        Self {
            public: SocketAddr::from(([0, 0, 0, 0], 8686)),
            admin: SocketAddr::from(([127, 0, 0, 1], 8687)),
            agent_check: None,
            otlp_grpc: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http: SocketAddr::from(([127, 0, 0, 1], 4318)),
        }
    }
}

/// Admin listener protection.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token required on every admin request when set
    /// (`Authorization: Bearer <token>`). Mandatory when `listeners.admin` is not a
    /// loopback address. Prefer `TELLTALE_ADMIN__TOKEN` to keep it out of files.
    pub token: Option<Secret>,
}

/// Health checks and their defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often each check runs unless it sets its own. Default 5 s: a load
    /// balancer polling every 1–2 s sees a change within a few of its polls, while
    /// the database sees one query per 5 s whatever the polling rate.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a check may take before it counts as failed. Default 1 s:
    /// Kubernetes' default probe timeout; a frozen dependency is reported within it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes before a failed check reports pass again. Default 2
    /// (HAProxy's default): one lucky ping does not put a flapping host back.
    pub rise: u32,
    /// Consecutive failures before a passing check reports fail. Default 3
    /// (HAProxy's default): one slow ping does not take a host out of rotation.
    pub fall: u32,
    /// The checks, keyed by name (`[health.checks.<name>]`). Names appear in
    /// `/health/<name>`, in the report keys and in metric labels: lowercase letters,
    /// digits, `-` and `_`. Default, when no check is configured: `disk` (the
    /// root filesystem, critical) and `memory` (non-critical), which need no
    /// external service.
    pub checks: BTreeMap<String, CheckConfig>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            checks: checks::default_checks(),
        }
    }
}

/// HAProxy agent-check tuning (the listener itself is `listeners.agent_check`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentCheckConfig {
    /// The lowest weight the agent reports, in percent, however busy the host.
    /// Default 10: a saturated but healthy host still takes some traffic, so
    /// HAProxy keeps measuring it instead of starving it.
    pub min_weight_percent: u8,
}

impl Default for AgentCheckConfig {
    fn default() -> Self {
        Self {
            min_weight_percent: 10,
        }
    }
}

/// Drain and shutdown timing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM or `POST /admin/drain`, how long readiness answers 503
    /// `draining` while the agent keeps serving, before it exits. Default 10 s:
    /// HAProxy polling every 2 s with `fall 3` needs 6 s to take the server out.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// After the drain period, how long in-flight requests may take to finish
    /// before the agent exits anyway. Default 5 s: shutdown can never hang.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_period: Duration::from_secs(10),
            grace_period: Duration::from_secs(5),
        }
    }
}

/// A configuration that passed validation: what the agent runs on.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The configuration as read (for printing, with secrets redacted).
    pub raw: Config,
    /// The checks, typed per kind, in name order.
    pub checks: Vec<CheckSpec>,
    /// Scrubs every configured secret out of outputs and logs.
    pub redactor: Redactor,
}

impl ValidConfig {
    /// The effective configuration as TOML, every secret shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.raw)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}
