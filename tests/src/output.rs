//! Log files of spawned services and the tail of them for error messages.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;

/// Opens (appending, creating if needed) the log file a service writes its
/// stdout and stderr to.
pub(crate) fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

/// The last `lines` lines of the file at `path`, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let body = all[start..].join("\n");
            format!("--- last lines of {} ---\n{body}", path.display())
        }
        Err(e) => format!("(cannot read log {}: {e})", path.display()),
    }
}
