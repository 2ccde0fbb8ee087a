//! A private MariaDB server in a temp dir, which a test may freeze, stop and
//! restart.

use std::path::PathBuf;
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
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a normal shutdown may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A `mariadbd` of its own on 127.0.0.1 and a free port, user `root` without
/// password, with an empty database `test`.
///
/// The server is killed when this is dropped.
#[derive(Debug)]
pub struct PrivateMariaDb {
    server: Slot,
    port: u16,
    mariadbd: PathBuf,
    client: PathBuf,
    dir: TempDir,
}

impl PrivateMariaDb {
    /// Creates a data dir with `mariadb-install-db`, starts `mariadbd` on a
    /// free port, waits until it accepts connections and creates `test`.
    pub async fn start() -> anyhow::Result<Self> {
        crate::http::install_crypto_provider();
        let install = bins::require("mariadb-install-db", "mariadb-server")?;
        let mariadbd = bins::on_path("mariadbd")
            .or_else(|| Some(PathBuf::from("/usr/sbin/mariadbd")).filter(|p| p.exists()))
            .context(
                "mariadbd not found on PATH or in /usr/sbin: run tests/run.sh, \
                 which installs mariadb-server",
            )?;
        let client = bins::require("mariadb", "mariadb-client")?;
        let dir = tempfile::Builder::new()
            .prefix("telltale-mariadb-")
            .tempdir()
            .context("cannot create a temp dir for MariaDB")?;
        let db = Self {
            server: Slot::new("private MariaDB"),
            port: free_port(),
            mariadbd,
            client,
            dir,
        };
        let out = tokio::process::Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", db.data_dir().display()))
            .args(["--auth-root-authentication-method=normal", "--user=root"])
            .args(["--skip-test-db", "--skip-name-resolve"])
            .current_dir(db.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", install.display()))?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        db.launch().await?;
        db.sql_in(None, "CREATE DATABASE IF NOT EXISTS test")
            .await?;
        Ok(db)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT/test`
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file the server's output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.log")
    }

    /// Whether the server process is running (possibly frozen).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Normal shutdown (SIGTERM), waiting for the server to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else {
            bail!("private MariaDB is already stopped");
        };
        let status = server.stop_with(Signal::SIGTERM, STOP_DEADLINE).await?;
        if !status.success() {
            bail!(
                "mariadbd exited with {status} on shutdown\n{}",
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

    /// SIGSTOP: the server keeps its socket open but answers nothing.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.server.with(|s| s.signal_all(Signal::SIGSTOP))
    }

    /// Undoes [`freeze`](Self::freeze).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.server.with(|s| s.signal_all(Signal::SIGCONT))
    }

    /// Runs `stmt` in database `test` with the `mariadb` client (batch mode,
    /// no column names) and returns its trimmed stdout.
    pub async fn sql(&self, stmt: &str) -> anyhow::Result<String> {
        self.sql_in(Some("test"), stmt).await
    }

    async fn sql_in(&self, database: Option<&str>, stmt: &str) -> anyhow::Result<String> {
        let mut cmd = tokio::process::Command::new(&self.client);
        cmd.arg("--no-defaults")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "-u",
                "root",
            ])
            .args(["--batch", "--skip-column-names", "--connect-timeout=10"])
            .args(["-e", stmt]);
        if let Some(database) = database {
            cmd.arg(database);
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.client.display()))?;
        if !out.status.success() {
            bail!(
                "mariadb client on port {} failed ({}) for {stmt:?}: {}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    async fn launch(&self) -> anyhow::Result<()> {
        let log = open_log(&self.log_path())?;
        let dir = self.dir.path();
        let mut cmd = Command::new(&self.mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("mariadb.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .args(["--user=root", "--skip-log-bin", "--skip-name-resolve"])
            .args(["--innodb-buffer-pool-size=16M", "--performance-schema=OFF"])
            .args([
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-innodb-doublewrite",
            ])
            .current_dir(dir)
            .stdout(log.try_clone()?)
            .stderr(log);
        self.server.put(Supervised::spawn("mariadbd", &mut cmd)?);
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.server.with(|s| s.try_exit())? {
                self.server.take();
                bail!(
                    "mariadbd exited during startup ({status})\n{}",
                    tail(&self.log_path(), 30)
                );
            }
            let last_error = match self.sql_in(None, "SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() > READY_DEADLINE {
                bail!(
                    "mariadbd on port {} not accepting connections after {READY_DEADLINE:?}: \
                     {last_error:#}\n{}",
                    self.port,
                    tail(&self.log_path(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
