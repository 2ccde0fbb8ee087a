//! Tests of the harness itself: every helper starts a real private service
//! that answers, can be frozen, stopped and restarted, and leaves no process
//! behind.

use std::time::Duration;

use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::apps::TinyHttpApp;
use telltale_tests::haproxy::Haproxy;
use telltale_tests::mariadb::PrivateMariaDb;
use telltale_tests::ports::{free_port, wait_until};
use telltale_tests::postgres::PrivatePostgres;
use telltale_tests::redis::PrivateRedis;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// One raw HTTP/1.1 GET to 127.0.0.1:`port`; returns the status line and body.
async fn http_get(port: u16) -> anyhow::Result<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await??;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// A raw RESP PING; true when the answer is `+PONG`.
async fn ping(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        anyhow::Ok(line.starts_with("+PONG"))
    };
    matches!(
        timeout(Duration::from_secs(1), exchange).await,
        Ok(Ok(true))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn private_postgres_answers_counts_freezes_stops_and_restarts() {
    let mut pg = PrivatePostgres::start().await.expect("private postgres");
    assert_eq!(pg.psql("select 1").await.unwrap(), "1");
    assert!(pg.url().ends_with(&format!(":{}/postgres", pg.port())));

    // pg_stat_statements counts statements, and not calls_of's own query.
    let probe = "SELECT count(*) FROM pg_class WHERE relname = 'telltale_probe'";
    let fragment = "FROM pg_class WHERE relname";
    assert_eq!(pg.calls_of(fragment).unwrap(), 0);
    pg.psql(probe).await.unwrap();
    pg.psql(probe).await.unwrap();
    assert_eq!(pg.calls_of(fragment).unwrap(), 2);
    assert_eq!(pg.calls_of(fragment).unwrap(), 2);

    // An open session, to show that freezing reaches existing backends too.
    let psql = psql_binary();
    let mut session = tokio::process::Command::new(psql)
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &pg.port().to_string()])
        .args(["-U", "postgres", "-d", "postgres"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("interactive psql");
    let mut input = session.stdin.take().unwrap();
    let mut output = BufReader::new(session.stdout.take().unwrap()).lines();
    input.write_all(b"select 11;\n").await.unwrap();
    let line = timeout(Duration::from_secs(10), output.next_line()).await;
    assert_eq!(line.unwrap().unwrap().as_deref(), Some("11"));

    pg.freeze().expect("freeze");
    let fresh = timeout(Duration::from_secs(1), pg.psql("select 1")).await;
    assert!(
        !matches!(fresh, Ok(Ok(_))),
        "a new connection answered while frozen: {fresh:?}"
    );
    input.write_all(b"select 22;\n").await.unwrap();
    let line = timeout(Duration::from_secs(1), output.next_line()).await;
    assert!(
        line.is_err(),
        "an open session answered while frozen: {line:?}"
    );

    pg.resume().expect("resume");
    let line = timeout(Duration::from_secs(10), output.next_line()).await;
    assert_eq!(line.unwrap().unwrap().as_deref(), Some("22"));
    assert_eq!(pg.psql("select 1").await.unwrap(), "1");
    drop(input);
    let _ = session.wait().await;

    pg.stop().await.expect("stop");
    assert!(!pg.is_running());
    assert!(
        pg.psql("select 1").await.is_err(),
        "stopped server answered"
    );
    pg.restart().await.expect("restart");
    assert_eq!(pg.psql("select 1").await.unwrap(), "1");
    assert_eq!(
        pg.psql("select count(*) from pg_extension where extname = 'pg_stat_statements'")
            .await
            .unwrap(),
        "1"
    );
    assert!(pg.calls_of(fragment).unwrap() >= 0);

    // Dropping it ends the postmaster and every backend.
    let postmaster: u32 = std::fs::read_to_string(pg.data_dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let backends: Vec<u32> = pg
        .psql("select pid from pg_stat_activity")
        .await
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(alive(postmaster));
    pg.freeze().unwrap();
    drop(pg);
    assert!(!alive(postmaster), "postmaster {postmaster} survived drop");
    // A killed backend may take a moment to be gone from /proc.
    for pid in backends {
        wait_until(
            &format!("backend {pid} to be gone after drop"),
            Duration::from_secs(3),
            || async move { !alive(pid) },
        )
        .await
        .unwrap();
    }
}

/// The psql binary next to initdb (as the harness uses), else the one on PATH.
fn psql_binary() -> String {
    let dirs = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.exists());
    dirs.max()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "psql".to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn private_redis_counts_commands_freezes_stops_and_restarts() {
    let mut redis = PrivateRedis::start().await.expect("private redis");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.command_calls("ping").unwrap(), 0, "stats start empty");
    assert!(ping(redis.port()).await);
    assert_eq!(redis.command_calls("ping").unwrap(), 1);
    assert!(ping(redis.port()).await);
    assert_eq!(redis.command_calls("PING").unwrap(), 2);
    assert_eq!(redis.command_calls("flushall").unwrap(), 0);
    assert_eq!(redis.command(&["SET", "k", "v"]).await.unwrap(), "OK");
    assert_eq!(redis.command(&["GET", "k"]).await.unwrap(), "v");

    redis.freeze().expect("freeze");
    assert!(!ping(redis.port()).await, "answered while frozen");
    redis.resume().expect("resume");
    assert!(ping(redis.port()).await);

    redis.stop().await.expect("stop");
    assert!(!ping(redis.port()).await, "answered while stopped");
    assert!(redis.command_calls("ping").is_err());
    redis.restart().await.expect("restart");
    assert_eq!(redis.command_calls("ping").unwrap(), 0);
    assert!(ping(redis.port()).await);
    assert_eq!(redis.command_calls("ping").unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_mariadb_answers_stops_and_restarts_with_its_data() {
    let mut db = PrivateMariaDb::start().await.expect("private mariadb");
    assert_eq!(db.sql("select 1").await.unwrap(), "1");
    assert_eq!(
        db.url(),
        format!("mysql://root@127.0.0.1:{}/test", db.port())
    );
    db.sql("create table t (n int); insert into t values (7)")
        .await
        .unwrap();

    db.freeze().expect("freeze");
    let frozen = timeout(Duration::from_secs(1), db.sql("select 1")).await;
    assert!(!matches!(frozen, Ok(Ok(_))), "answered while frozen");
    db.resume().expect("resume");
    assert_eq!(db.sql("select n from t").await.unwrap(), "7");

    db.stop().await.expect("stop");
    assert!(db.sql("select 1").await.is_err(), "stopped server answered");
    db.restart().await.expect("restart");
    assert_eq!(db.sql("select n from t").await.unwrap(), "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn tiny_http_app_answers_with_its_name_and_chosen_status_and_counts() {
    let app = TinyHttpApp::start("alpha").await.expect("app");
    assert_eq!(app.requests_served(), 0);
    let (status, body) = http_get(app.port()).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "alpha");
    app.set_status(500);
    let (status, body) = http_get(app.port()).await.unwrap();
    assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(body, "alpha");
    let response = telltale_tests::http_client()
        .get(app.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(app.requests_served(), 3);

    let port = app.port();
    drop(app);
    wait_until(
        "the app to close its port",
        Duration::from_secs(5),
        || async { TcpStream::connect(("127.0.0.1", port)).await.is_err() },
    )
    .await
    .unwrap();
}

/// Waits until HAProxy reports server app/one as `want`.
async fn wait_state(haproxy: &Haproxy, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = haproxy.server_state("app", "one").await.unwrap();
        if state == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "app/one is {state}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_forwards_to_a_backend_and_reports_its_state() {
    let app = TinyHttpApp::start("behind-haproxy").await.expect("app");
    let haproxy = Haproxy::new().expect("haproxy temp dir");
    let frontend = free_port();
    let config = format!(
        "global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:{frontend}
    default_backend app
backend app
    option httpchk GET /
    timeout check 1s
    server one 127.0.0.1:{app} check inter 100ms fall 2 rise 1
",
        socket = haproxy.socket_path().display(),
        app = app.port(),
    );
    let mut haproxy = haproxy.start(&config, frontend).await.expect("haproxy");
    wait_state(&haproxy, "UP").await;
    let (status, body) = http_get(frontend).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "behind-haproxy");

    app.set_status(500);
    wait_state(&haproxy, "DOWN").await;
    assert!(haproxy.server_state("app", "nosuch").await.is_err());

    // A broken config is refused with haproxy's own explanation.
    let broken = Haproxy::new()
        .unwrap()
        .start("frontend web\n    bind 127.0.0.1:1\n    nonsense here\n", 1)
        .await
        .expect_err("broken config");
    assert!(format!("{broken:#}").contains("nonsense"), "{broken:#}");

    haproxy.stop().await.expect("stop");
    assert!(http_get(frontend).await.is_err(), "answered after stop");
}

#[test]
fn listeners_toml_lists_the_picked_ports() {
    let ports = AgentPorts::pick();
    assert_eq!(
        ports.listeners_toml(false),
        format!(
            "[listeners]\npublic = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\notlp_grpc = \"127.0.0.1:{}\"\notlp_http = \"127.0.0.1:{}\"\n\n",
            ports.public, ports.admin, ports.otlp_grpc, ports.otlp_http
        )
    );
    assert!(ports.listeners_toml(true).contains(&format!(
        "agent_check = \"127.0.0.1:{}\"\n",
        ports.agent_check
    )));
    let all = [ports.public, ports.admin, ports.agent_check];
    assert!(all[0] != all[1] && all[1] != all[2] && all[0] != all[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_process_becomes_ready_and_is_killed_on_drop() {
    let ports = AgentPorts::pick();
    let agent = AgentProcess::spawn(&ports.listeners_toml(false), &ports)
        .await
        .expect("agent with only listeners configured");
    let response = telltale_tests::http_client()
        .get(agent.public_url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pid = agent.pid();
    assert!(alive(pid));
    drop(agent);
    assert!(!alive(pid), "telltale {pid} survived drop");

    let output = AgentProcess::run_to_end(&["--help"], &[]).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("check-config"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_test_leaves_no_process_behind() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let redis = PrivateRedis::start().await.expect("private redis");
        let info = redis.command(&["INFO", "server"]).await.unwrap();
        let pid: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .expect("process_id in INFO server");
        redis.freeze().unwrap();
        tx.send(pid).unwrap();
        panic!("a test failing while its redis is frozen");
    });
    let pid = rx.await.expect("the task reports the pid");
    assert!(task.await.unwrap_err().is_panic());
    assert!(!alive(pid), "redis-server {pid} survived the panic");
}
