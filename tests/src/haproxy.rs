//! A private HAProxy run in the foreground from a test's own config, and a
//! client for its admin socket (`show stat`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

use crate::bins;
use crate::output::{open_log, tail};
use crate::ports::wait_until;
use crate::process::{Slot, Supervised};

/// How long HAProxy may take to accept connections on the frontend.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// Timeout for one admin-socket command.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// A `haproxy -db` process with a config written by the test.
///
/// Create it with [`new`](Self::new), put [`socket_path`](Self::socket_path)
/// into the config's `global` section
/// (`stats socket PATH mode 600 level admin`), then [`start`](Self::start).
/// HAProxy is killed when this is dropped.
#[derive(Debug)]
pub struct Haproxy {
    server: Slot,
    dir: TempDir,
}

impl Haproxy {
    /// Creates the temp dir that will hold the config, the admin socket and
    /// the log.
    pub fn new() -> anyhow::Result<Self> {
        crate::http::install_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("telltale-haproxy-")
            .tempdir()
            .context("cannot create a temp dir for HAProxy")?;
        Ok(Self {
            server: Slot::new("private HAProxy"),
            dir,
        })
    }

    /// Where the config should put the admin socket
    /// (`stats socket PATH mode 600 level admin`).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.sock")
    }

    /// The temp dir, for other files a config may refer to.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Where HAProxy's output goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.log")
    }

    /// The config file [`start`](Self::start) wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// Writes `config`, checks it with `haproxy -c`, runs `haproxy -db` and
    /// waits until 127.0.0.1:`frontend_port` accepts TCP connections.
    pub async fn start(self, config: &str, frontend_port: u16) -> anyhow::Result<Self> {
        let haproxy = bins::require("haproxy", "haproxy")?;
        let config_path = self.config_path();
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let check = tokio::process::Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&config_path)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", haproxy.display()))?;
        if !check.status.success() {
            bail!(
                "haproxy -c rejected the config ({}):\n{}{}\n--- config ---\n{config}",
                check.status,
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let log = open_log(&self.log_path())?;
        let mut cmd = Command::new(&haproxy);
        cmd.arg("-db")
            .arg("-f")
            .arg(&config_path)
            .current_dir(self.dir.path())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.server.put(Supervised::spawn("haproxy", &mut cmd)?);
        let server = &self.server;
        let ready = wait_until(
            &format!("haproxy to accept connections on 127.0.0.1:{frontend_port}"),
            READY_DEADLINE,
            || async move {
                let exited = server.with(|s| s.try_exit()).ok().flatten();
                exited.is_some()
                    || TcpStream::connect(("127.0.0.1", frontend_port))
                        .await
                        .is_ok()
            },
        )
        .await;
        if let Some(status) = self.server.with(|s| s.try_exit())? {
            self.server.take();
            bail!(
                "haproxy exited during startup ({status})\n{}",
                tail(&self.log_path(), 30)
            );
        }
        ready.with_context(|| tail(&self.log_path(), 30))?;
        Ok(self)
    }

    /// Kills HAProxy and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else {
            bail!("private HAProxy is not running");
        };
        server.kill_now();
        Ok(())
    }

    /// SIGSTOP: HAProxy keeps its sockets open but answers nothing.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.server.with(|s| s.signal_all(Signal::SIGSTOP))
    }

    /// Undoes [`freeze`](Self::freeze).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.server.with(|s| s.signal_all(Signal::SIGCONT))
    }

    /// Sends one command (e.g. `show stat`, `disable server be/s1`) to the
    /// admin socket and returns the whole answer.
    pub async fn admin_command(&self, command: &str) -> anyhow::Result<String> {
        let path = self.socket_path();
        let exchange = async {
            let mut stream = UnixStream::connect(&path).await.with_context(|| {
                format!(
                    "cannot connect to the HAProxy admin socket {}: does the config's \
                     global section have `stats socket {} mode 600 level admin`?",
                    path.display(),
                    path.display()
                )
            })?;
            stream.write_all(command.as_bytes()).await?;
            stream.write_all(b"\n").await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            anyhow::Ok(answer)
        };
        tokio::time::timeout(SOCKET_TIMEOUT, exchange)
            .await
            .with_context(|| {
                format!("HAProxy did not answer {command:?} within {SOCKET_TIMEOUT:?}")
            })?
    }

    /// The `status` column of `show stat` for `server` in `backend`: `UP`,
    /// `DOWN`, `DRAIN`, `MAINT`, `no check`, or a transition like `UP 1/3`.
    pub async fn server_state(&self, backend: &str, server: &str) -> anyhow::Result<String> {
        let stat = self.admin_command("show stat").await?;
        let mut lines = stat.lines();
        let header = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .with_context(|| format!("unexpected `show stat` answer: {stat:?}"))?;
        let columns: Vec<&str> = header.split(',').collect();
        let index = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .with_context(|| format!("no {name} column in `show stat` header {header:?}"))
        };
        let (px, sv, status) = (index("pxname")?, index("svname")?, index("status")?);
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(px) == Some(&backend) && fields.get(sv) == Some(&server) {
                return Ok(fields.get(status).copied().unwrap_or_default().to_owned());
            }
        }
        bail!("no server {server:?} in backend {backend:?} in `show stat`:\n{stat}")
    }
}
