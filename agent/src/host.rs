//! A background sampler of host CPU use: sysinfo needs two readings some time
//! apart to compute it, so one task keeps it fresh for whoever asks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sysinfo::{CpuRefreshKind, RefreshKind, System};
use tokio_util::sync::CancellationToken;

/// How often CPU use is sampled: fresh enough for load balancing, cheap enough
/// to be invisible.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The latest host CPU use, shared.
#[derive(Debug, Default)]
pub struct HostLoad {
    cpu_percent_bits: AtomicU32,
}

impl HostLoad {
    /// Host CPU use over the last sample period, 0–100.
    pub fn cpu_percent(&self) -> f32 {
        f32::from_bits(self.cpu_percent_bits.load(Ordering::Relaxed))
    }

    fn set_cpu_percent(&self, value: f32) {
        self.cpu_percent_bits
            .store(value.clamp(0.0, 100.0).to_bits(), Ordering::Relaxed);
    }

    /// Starts sampling until `cancel` fires.
    pub fn spawn_sampler(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let load = Arc::clone(self);
        tokio::spawn(async move {
            let mut system = match System::new_with_specifics(
                RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_usage()),
            ) {
                Ok(system) => system,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read host CPU use: agent-check weights stay at 100%");
                    return;
                }
            };
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                system.refresh_cpu_usage();
                load.set_cpu_percent(system.global_cpu_usage());
            }
        })
    }
}
