//! Locating the service binaries the helpers run.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The first executable called `name` in `$PATH`.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `name` on `$PATH`, or an error saying which Debian package provides it and
/// that `tests/run.sh` installs it.
pub(crate) fn require(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    match on_path(name) {
        Some(path) => Ok(path),
        None => bail!(
            "{name} not found on PATH: run tests/run.sh, which installs {package} \
             (or apt-get install {package})"
        ),
    }
}

/// The directory holding PostgreSQL's server binaries (`initdb`, `postgres`,
/// `psql`): where `initdb` on `$PATH` really lives, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub(crate) fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(initdb) = on_path("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent()
            && is_executable(&dir.join("postgres"))
        {
            return Ok(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            is_executable(&bin.join("initdb")).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "initdb not found on PATH or in /usr/lib/postgresql/*/bin: \
             run tests/run.sh, which installs PostgreSQL (apt-get install postgresql)"
        ),
    }
}

/// A PostgreSQL client binary (`psql`, `pg_isready`) next to the server
/// binaries, else on `$PATH`.
pub(crate) fn postgres_tool(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let beside = bin_dir.join(name);
    if is_executable(&beside) {
        return Ok(beside);
    }
    require(name, "postgresql-client")
}
