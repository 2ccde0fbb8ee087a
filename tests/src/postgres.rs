//! A private PostgreSQL server (with pg_stat_statements) in a temp dir, which
//! a test may freeze, stop and restart.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::bins;
use crate::output::{open_log, tail};
use crate::ports::free_port;
use crate::process::{Slot, Supervised};

/// How long the server may take to accept connections after starting.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// OS user that owns the cluster: initdb and postgres refuse to run as root.
const OS_USER: &str = "postgres";

/// A PostgreSQL cluster of its own, listening on 127.0.0.1 on a free port,
/// with trust authentication for user `postgres` and the pg_stat_statements
/// extension created in database `postgres`.
///
/// The postmaster and every backend are killed when this is dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    // Declared before `dir` so the server dies before its data dir is removed.
    server: Slot,
    port: u16,
    bin_dir: PathBuf,
    psql: PathBuf,
    uid: u32,
    gid: u32,
    dir: TempDir,
}

impl PrivatePostgres {
    /// Creates a cluster with `initdb`, starts `postgres` on a free port and
    /// waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        crate::http::install_crypto_provider();
        let bin_dir = bins::postgres_bin_dir()?;
        let psql = bins::postgres_tool(&bin_dir, "psql")?;
        let (uid, gid) = os_user(OS_USER)?;
        let dir = tempfile::Builder::new()
            .prefix("telltale-pg-")
            .tempdir()
            .context("cannot create a temp dir for PostgreSQL")?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .with_context(|| format!("cannot chown {} to {OS_USER}", dir.path().display()))?;
        let pg = Self {
            server: Slot::new("private PostgreSQL"),
            port: free_port(),
            bin_dir,
            psql,
            uid,
            gid,
            dir,
        };
        pg.initdb().await?;
        pg.launch().await?;
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .context("cannot create extension pg_stat_statements (package postgresql-contrib)")?;
        Ok(pg)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file the server's output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Whether the server process is running (possibly frozen).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Sends SIGSTOP to the postmaster and every backend: the server keeps
    /// its sockets open but answers nothing, like a hung host.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.server.with(|s| s.signal_all(Signal::SIGSTOP))
    }

    /// Undoes [`freeze`](Self::freeze) (SIGCONT to the same processes).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.server.with(|s| s.signal_all(Signal::SIGCONT))
    }

    /// Fast shutdown: SIGINT to the postmaster, then waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else {
            bail!("private PostgreSQL is already stopped");
        };
        let status = server.stop_with(Signal::SIGINT, STOP_DEADLINE).await?;
        if !status.success() {
            bail!(
                "postgres exited with {status} on fast shutdown\n{}",
                tail(&self.log_path(), 30)
            );
        }
        Ok(())
    }

    /// Starts the server again on the same port and data dir (stopping it
    /// first if it is running) and waits until it accepts connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.server.is_running() {
            self.stop().await?;
        }
        self.launch().await
    }

    /// Runs `psql -Atc SQL` against database `postgres` and returns its
    /// trimmed stdout; fails with psql's stderr when psql fails. Dropping the
    /// future (e.g. on a timeout) kills psql.
    pub async fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let out = tokio::process::Command::from(self.psql_command(sql))
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.psql.display()))?;
        self.psql_result(sql, &out)
    }

    /// Sum of `calls` in pg_stat_statements over statements whose text
    /// contains `fragment` (statements mentioning pg_stat_statements, like
    /// this very query, are not counted). Blocks the calling thread while
    /// psql runs.
    ///
    /// pg_stat_statements stores normalized text: `SELECT 1` is recorded as
    /// `SELECT $1`.
    pub fn calls_of(&self, fragment: &str) -> anyhow::Result<i64> {
        let literal = fragment.replace('\'', "''");
        let sql = format!(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE strpos(query, '{literal}') > 0 \
             AND strpos(query, 'pg_stat_statements') = 0"
        );
        let out = self
            .psql_command(&sql)
            .output()
            .with_context(|| format!("cannot run {}", self.psql.display()))?;
        let out = self.psql_result(&sql, &out)?;
        out.parse()
            .with_context(|| format!("unexpected pg_stat_statements answer {out:?}"))
    }

    fn psql_command(&self, sql: &str) -> Command {
        let mut cmd = Command::new(&self.psql);
        cmd.args(["-X", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"])
            .args(["-Atc", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn psql_result(&self, sql: &str, out: &std::process::Output) -> anyhow::Result<String> {
        if !out.status.success() {
            bail!(
                "psql on port {} failed ({}) for {sql:?}: {}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    async fn initdb(&self) -> anyhow::Result<()> {
        let initdb = self.bin_dir.join("initdb");
        let out = tokio::process::Command::new(&initdb)
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", initdb.display()))?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Spawns the postmaster and waits until it accepts connections.
    async fn launch(&self) -> anyhow::Result<()> {
        let log = open_log(&self.log_path())?;
        let mut cmd = Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "shared_preload_libraries=pg_stat_statements"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=16MB"])
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir.path())
            .stdout(log.try_clone()?)
            .stderr(log);
        let server = Supervised::spawn("postgres", &mut cmd)?.with_drop_signal(Signal::SIGQUIT);
        self.server.put(server);
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.server.with(|s| s.try_exit())? {
                self.server.take();
                bail!(
                    "postgres exited during startup ({status})\n{}",
                    tail(&self.log_path(), 30)
                );
            }
            let last_error = match self.psql("SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() > READY_DEADLINE {
                bail!(
                    "postgres on port {} not accepting connections after {READY_DEADLINE:?}: \
                     {last_error:#}\n{}",
                    self.port,
                    tail(&self.log_path(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// uid and gid of the OS user `name`, from /etc/passwd.
fn os_user(name: &str) -> anyhow::Result<(u32, u32)> {
    let passwd =
        std::fs::read_to_string(Path::new("/etc/passwd")).context("cannot read /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == name {
            let uid = fields[2].parse().context("bad uid in /etc/passwd")?;
            let gid = fields[3].parse().context("bad gid in /etc/passwd")?;
            return Ok((uid, gid));
        }
    }
    bail!(
        "OS user {name} not found: run tests/run.sh, which installs PostgreSQL \
         (the postgresql package creates that user)"
    )
}
