//! memory: how much of the host's memory is in use. Inside a cgroup with a
//! memory limit (a container), the limit and the cgroup's usage count instead,
//! since that is what the kernel's OOM killer enforces.

use sysinfo::{MemoryRefreshKind, RefreshKind, System};

use crate::config::Thresholds;

use super::{ProbeOutcome, usage};

#[derive(Debug)]
pub(crate) struct MemoryProbe {
    system: Result<System, String>,
    thresholds: Thresholds,
}

impl MemoryProbe {
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .map_err(|e| format!("cannot read host memory: {e}"));
        Self { system, thresholds }
    }

    pub(crate) fn run(&mut self) -> ProbeOutcome {
        let system = match &mut self.system {
            Ok(system) => system,
            Err(e) => return ProbeOutcome::failed(e.clone()),
        };
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let (total, available, what) = match system.cgroup_limits() {
            Some(limits)
                if limits.total_memory > 0 && limits.total_memory < system.total_memory() =>
            {
                (
                    limits.total_memory,
                    limits.free_memory,
                    "memory (cgroup limit)",
                )
            }
            _ => (system.total_memory(), system.available_memory(), "memory"),
        };
        if total == 0 {
            return ProbeOutcome::failed("the host reports no memory");
        }
        let used_percent = 100.0 * total.saturating_sub(available) as f64 / total as f64;
        usage::judge(what, used_percent, available, &self.thresholds)
    }
}
