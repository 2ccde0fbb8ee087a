//! One probe per check kind. A probe only observes: timing, timeouts and
//! hysteresis are the runner's job. Probes keep their connection between runs
//! (one per check, never more) and drop it after any failure, so the next run
//! starts clean.

mod disk;
mod http;
mod memory;
mod redis;
mod sql;
mod tcp;
mod usage;

use crate::config::{CheckSpec, ProbeSpec};

use super::Status;

/// One observed quantity: `component:measurement` in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The measurement name, e.g. `responseTime`, `utilization`.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// Its unit: `ms`, `percent`, `bytes`.
    pub unit: &'static str,
}

/// What one run found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// The run's own status, before hysteresis.
    pub status: Status,
    /// What was measured (may be empty on failure).
    pub measurements: Vec<Measurement>,
    /// Why it is not `pass`, unredacted (the runner redacts).
    pub output: Option<String>,
}

impl ProbeOutcome {
    /// A failed run.
    pub fn failed(output: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            measurements: Vec::new(),
            output: Some(output.into()),
        }
    }
}

/// What a check kind measures when it only needs to reach its target.
pub(super) enum Reach {
    /// The target answered; the runner records the response time.
    Reached,
    /// A full outcome (disk and memory report usage instead of latency).
    Outcome(ProbeOutcome),
}

/// A probe, built once per check and reused across runs.
#[derive(Debug)]
pub(crate) enum Probe {
    /// postgres, mysql, sqlite.
    Sql(sql::SqlProbe),
    /// redis.
    Redis(redis::RedisProbe),
    /// disk.
    Disk(disk::DiskProbe),
    /// memory.
    // Boxed: sysinfo's System is large, and the enum should not pay for it.
    Memory(Box<memory::MemoryProbe>),
    /// http.
    Http(http::HttpProbe),
    /// tcp.
    Tcp(tcp::TcpProbe),
}

impl Probe {
    /// Builds the probe for a check. Nothing connects yet.
    pub(crate) fn new(spec: &CheckSpec) -> Self {
        match &spec.probe {
            ProbeSpec::Sql { url, query } => {
                Self::Sql(sql::SqlProbe::new(spec.kind, url.clone(), query.clone()))
            }
            ProbeSpec::Redis { url } => {
                Self::Redis(redis::RedisProbe::new(url, spec.schedule.timeout))
            }
            ProbeSpec::Disk { path, thresholds } => {
                Self::Disk(disk::DiskProbe::new(path.clone(), *thresholds))
            }
            ProbeSpec::Memory { thresholds } => {
                Self::Memory(Box::new(memory::MemoryProbe::new(*thresholds)))
            }
            ProbeSpec::Http { url } => Self::Http(http::HttpProbe::new(url.clone())),
            ProbeSpec::Tcp { address } => Self::Tcp(tcp::TcpProbe::new(address.clone())),
        }
    }

    /// Runs once. Cancel-safe: dropping the future drops any half-used
    /// connection, and the next run reconnects.
    pub(super) async fn run(&mut self) -> Reach {
        let reached = match self {
            Self::Sql(p) => p.run().await,
            Self::Redis(p) => p.run().await,
            Self::Http(p) => p.run().await,
            Self::Tcp(p) => p.run().await,
            Self::Disk(p) => return Reach::Outcome(p.run().await),
            Self::Memory(p) => return Reach::Outcome(p.run()),
        };
        match reached {
            Ok(()) => Reach::Reached,
            Err(output) => Reach::Outcome(ProbeOutcome::failed(output)),
        }
    }
}
