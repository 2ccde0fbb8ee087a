//! disk: used percentage and free bytes of the filesystem holding a path,
//! through sysinfo's disk list (the mount with the longest matching prefix).

use std::path::{Path, PathBuf};

use sysinfo::{DiskRefreshKind, Disks};

use crate::config::Thresholds;

use super::{ProbeOutcome, usage};

#[derive(Debug)]
pub(crate) struct DiskProbe {
    path: PathBuf,
    thresholds: Thresholds,
}

impl DiskProbe {
    pub(crate) fn new(path: PathBuf, thresholds: Thresholds) -> Self {
        Self { path, thresholds }
    }

    pub(crate) async fn run(&mut self) -> ProbeOutcome {
        let path = self.path.clone();
        let thresholds = self.thresholds;
        // statfs on a hung network mount blocks: keep it off the async workers,
        // so the runner's timeout still fires.
        tokio::task::spawn_blocking(move || measure(&path, &thresholds))
            .await
            .unwrap_or_else(|e| ProbeOutcome::failed(format!("disk probe crashed: {e}")))
    }
}

fn measure(path: &Path, thresholds: &Thresholds) -> ProbeOutcome {
    let canonical = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => return ProbeOutcome::failed(format!("{}: {e}", path.display())),
    };
    let disks =
        match Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage()) {
            Ok(d) => d,
            Err(e) => return ProbeOutcome::failed(format!("cannot list filesystems: {e}")),
        };
    let Some(disk) = disks
        .iter()
        .filter(|d| canonical.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
    else {
        return ProbeOutcome::failed(format!(
            "no mounted filesystem holds {}",
            canonical.display()
        ));
    };
    let total = disk.total_space();
    if total == 0 {
        return ProbeOutcome::failed(format!(
            "{} reports a size of zero",
            disk.mount_point().display()
        ));
    }
    let free = disk.available_space();
    let used_percent = 100.0 * (total.saturating_sub(free)) as f64 / total as f64;
    usage::judge(
        &format!("disk {}", disk.mount_point().display()),
        used_percent,
        free,
        thresholds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Status;

    #[test]
    fn root_filesystem_is_measured() {
        let lax = Thresholds {
            warn_used_percent: 100.0,
            fail_used_percent: 100.0,
            min_free_bytes: None,
        };
        let outcome = measure(Path::new("/"), &lax);
        assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
        let used = outcome.measurements[0].value;
        assert!((0.0..100.0).contains(&used), "{used}");
        assert!(outcome.measurements[1].value > 0.0);
    }

    #[test]
    fn a_missing_path_fails_with_its_name() {
        let lax = Thresholds {
            warn_used_percent: 100.0,
            fail_used_percent: 100.0,
            min_free_bytes: None,
        };
        let outcome = measure(Path::new("/no/such/dir"), &lax);
        assert_eq!(outcome.status, Status::Fail);
        assert!(outcome.output.unwrap().contains("/no/such/dir"));
    }
}
