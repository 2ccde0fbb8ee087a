//! Finding the `telltale` binary to test, building it when it is missing or
//! older than the agent's sources.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

/// The workspace root (this crate lives in `<root>/tests`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `target/<profile>` dir the running test executable was built into
/// (test executables live in `target/<profile>/deps/`).
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable's path")?;
    let mut dir = exe
        .parent()
        .context("the test executable has no parent dir")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Newest modification time of any file under `path` (recursively).
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|entry| newest_mtime(&entry.path()))
        .max()
}

/// Whether `binary` exists and is newer than every one of `sources`.
fn is_fresh(binary: &Path, root: &Path, sources: &[&str]) -> bool {
    let Some(built) = std::fs::metadata(binary).and_then(|m| m.modified()).ok() else {
        return false;
    };
    sources
        .iter()
        .chain(&["Cargo.lock", "Cargo.toml"])
        .filter_map(|p| newest_mtime(&root.join(p)))
        .all(|changed| changed <= built)
}

/// A workspace binary the tests run as a child process.
struct BinarySpec {
    /// The variable that names a prebuilt binary (tests/run.sh sets it).
    env: &'static str,
    package: &'static str,
    bin: &'static str,
    /// Source dirs that make the binary stale when newer.
    sources: &'static [&'static str],
}

/// The `telltale` binary the tests run:
///
/// 1. `$TELLTALE_BIN` when set (tests/run.sh sets it after building);
/// 2. else `<target>/<profile>/telltale` next to the test executable, built
///    first with `cargo build -p telltale-agent --bin telltale` (once per
///    test process) when it is missing or older than the agent's sources.
pub fn telltale_bin() -> anyhow::Result<PathBuf> {
    static CHECKED: Mutex<Option<PathBuf>> = Mutex::new(None);
    workspace_binary(
        &BinarySpec {
            env: "TELLTALE_BIN",
            package: "telltale-agent",
            bin: "telltale",
            sources: &["agent", "sdk"],
        },
        &CHECKED,
    )
}

/// The example shop's binary (`SHOP_BIN`, else built like [`telltale_bin`]).
pub fn shop_bin() -> anyhow::Result<PathBuf> {
    static CHECKED: Mutex<Option<PathBuf>> = Mutex::new(None);
    workspace_binary(
        &BinarySpec {
            env: "SHOP_BIN",
            package: "telltale-example-shop",
            bin: "shop",
            sources: &["examples/shop", "sdk"],
        },
        &CHECKED,
    )
}

fn workspace_binary(
    spec: &BinarySpec,
    checked: &Mutex<Option<PathBuf>>,
) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(spec.env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{}={} does not exist: build it with `cargo build -p {} --bin {}` or unset {}",
                spec.env,
                path.display(),
                spec.package,
                spec.bin,
                spec.env
            );
        }
        return Ok(path);
    }
    let profile = profile_dir()?;
    let binary = profile.join(spec.bin);
    let root = workspace_root();
    // Held while checking and building, so parallel tests build once; the
    // answer is then kept for the rest of the test process.
    let mut checked = checked.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(binary) = checked.as_ref() {
        return Ok(binary.clone());
    }
    if !is_fresh(&binary, &root, spec.sources) {
        build(spec, &root, &profile)?;
        if !binary.is_file() {
            bail!(
                "cargo build succeeded but {} does not exist; set {} to the binary",
                binary.display(),
                spec.env
            );
        }
    }
    *checked = Some(binary.clone());
    Ok(binary)
}

fn build(spec: &BinarySpec, root: &Path, profile: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.args(["build", "-p", spec.package, "--bin", spec.bin])
        .current_dir(root);
    if let Some(target_dir) = profile.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {} to build {}: is cargo on PATH? (or set {})",
            cargo.to_string_lossy(),
            spec.bin,
            spec.env
        )
    })?;
    if !out.status.success() {
        bail!(
            "`cargo build -p {} --bin {}` failed ({}):\n{}",
            spec.package,
            spec.bin,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
