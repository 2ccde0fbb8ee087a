//! The machine's SHARED database services, used by tests of the pass path
//! that do not stop or freeze anything.

use std::time::Duration;

use anyhow::bail;
use tokio::net::TcpStream;

/// The shared PostgreSQL (database `test`, trust auth).
pub const SHARED_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The shared MariaDB (database `test`, root without password).
pub const SHARED_MARIADB_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// The shared Redis.
pub const SHARED_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// Name, port and the command in tests/run.sh that starts each service.
const SERVICES: [(&str, u16, &str); 3] = [
    (
        "PostgreSQL",
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    (
        "MariaDB",
        3306,
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    ),
    (
        "Redis",
        6379,
        "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" \
         --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
];

/// Checks that the shared PostgreSQL, MariaDB and Redis accept TCP
/// connections on 127.0.0.1; the error names every one that is down and how
/// to start it.
pub async fn require_shared_services() -> anyhow::Result<()> {
    let mut down = Vec::new();
    for (name, port, start) in SERVICES {
        let connect = TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => down.push(format!(
                "shared {name} on 127.0.0.1:{port} is down ({e}); start it with: {start}"
            )),
            Err(_) => down.push(format!(
                "shared {name} on 127.0.0.1:{port} does not accept connections within 3s; \
                 start it with: {start}"
            )),
        }
    }
    if !down.is_empty() {
        bail!(
            "{}\n(tests/run.sh installs and starts all shared services)",
            down.join("\n")
        );
    }
    Ok(())
}
