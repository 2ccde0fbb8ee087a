//! A private Redis server in a temp dir, which a test may freeze, stop and
//! restart, and ask how often a command ran.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::bins;
use crate::output::{open_log, tail};
use crate::ports::free_port;
use crate::process::{Slot, Supervised};
use crate::resp::{self, Reply};

/// How long the server may take to answer PING after starting.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// Timeout for one request the harness itself makes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis-server` of its own on 127.0.0.1 and a free port, without
/// persistence. Command statistics are reset once it is up, so
/// [`command_calls`](Self::command_calls) counts only what the test caused.
///
/// The server is killed when this is dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    server: Slot,
    port: u16,
    binary: std::path::PathBuf,
    dir: TempDir,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub async fn start() -> anyhow::Result<Self> {
        crate::http::install_crypto_provider();
        let binary = bins::require("redis-server", "redis-server")?;
        let dir = tempfile::Builder::new()
            .prefix("telltale-redis-")
            .tempdir()
            .context("cannot create a temp dir for Redis")?;
        let redis = Self {
            server: Slot::new("private Redis"),
            port: free_port(),
            binary,
            dir,
        };
        redis.launch().await?;
        Ok(redis)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The file the server's output goes to.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Whether the server process is running (possibly frozen).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else {
            bail!("private Redis is already stopped");
        };
        server.kill_now();
        Ok(())
    }

    /// Starts the server again on the same port (stopping it first if it is
    /// running) and waits until it answers PING. Its data and command
    /// statistics start empty.
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

    /// How many times `cmd` (e.g. `"ping"`, case-insensitive) has run, from
    /// `INFO commandstats`; 0 when it never ran. Blocks the calling thread
    /// for the one request (at most a few seconds).
    pub fn command_calls(&self, cmd: &str) -> anyhow::Result<u64> {
        let stats =
            match resp::command_blocking(self.port, &["INFO", "commandstats"], REQUEST_TIMEOUT)? {
                Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
                other => bail!("unexpected answer to INFO commandstats: {other:?}"),
            };
        let wanted = format!("cmdstat_{}:", cmd.to_ascii_lowercase());
        for line in stats.lines() {
            if let Some(fields) = line.trim().strip_prefix(&wanted) {
                let calls = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("calls="))
                    .with_context(|| format!("no calls= in {line:?}"))?;
                return calls
                    .parse()
                    .with_context(|| format!("bad calls= in {line:?}"));
            }
        }
        Ok(0)
    }

    /// Sends one command (e.g. `["SET", "k", "v"]`) and returns the reply as
    /// text: simple strings, integers and bulk strings as they are, nil as
    /// an empty string; a Redis error reply is an `Err`.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        match resp::command(self.port, args, REQUEST_TIMEOUT).await? {
            Reply::Simple(s) => Ok(s),
            Reply::Integer(i) => Ok(i.to_string()),
            Reply::Bulk(b) => Ok(String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()),
            Reply::Error(e) => bail!("redis answered {args:?} with error: {e}"),
        }
    }

    async fn launch(&self) -> anyhow::Result<()> {
        let log = open_log(&self.log_path())?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.server
            .put(Supervised::spawn("redis-server", &mut cmd)?);
        self.wait_ready().await?;
        self.command(&["CONFIG", "RESETSTAT"]).await?;
        Ok(())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.server.with(|s| s.try_exit())? {
                self.server.take();
                bail!(
                    "redis-server exited during startup ({status})\n{}",
                    tail(&self.log_path(), 30)
                );
            }
            let answer = resp::command(self.port, &["PING"], Duration::from_secs(1)).await;
            match answer {
                Ok(Reply::Simple(pong)) if pong == "PONG" => return Ok(()),
                other if start.elapsed() > READY_DEADLINE => bail!(
                    "redis-server on port {} did not answer PING within {READY_DEADLINE:?} \
                     (last answer: {other:?})\n{}",
                    self.port,
                    tail(&self.log_path(), 30)
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
