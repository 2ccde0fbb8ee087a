//! A real HAProxy balancing two app servers, each with its own agent and its
//! own private Redis: the agents' `/health` and agent-check steer the traffic.

use std::time::{Duration, Instant};

use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::apps::TinyHttpApp;
use telltale_tests::haproxy::Haproxy;
use telltale_tests::ports::free_port;
use telltale_tests::redis::PrivateRedis;

struct Node {
    app: TinyHttpApp,
    redis: PrivateRedis,
    agent: AgentProcess,
    ports: AgentPorts,
}

async fn node(name: &str) -> Node {
    let app = TinyHttpApp::start(name).await.expect("app");
    let redis = PrivateRedis::start().await.expect("redis");
    let ports = AgentPorts::pick();
    let config = format!(
        "{}[health]\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 2\n[health.checks.cache]\nkind = \"redis\"\nurl = \"{}\"\n",
        ports.listeners_toml(true),
        redis.url()
    );
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    Node {
        app,
        redis,
        agent,
        ports,
    }
}

/// Sends `n` requests through HAProxy and returns how many each app served.
async fn send(frontend: u16, n: usize, a: &Node, b: &Node) -> (u64, u64) {
    let (a0, b0) = (a.app.requests_served(), b.app.requests_served());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..n {
        let response = client
            .get(format!("http://127.0.0.1:{frontend}/"))
            .send()
            .await
            .expect("haproxy answers");
        assert_eq!(response.status(), 200);
    }
    (a.app.requests_served() - a0, b.app.requests_served() - b0)
}

async fn wait_state(haproxy: &Haproxy, backend: &str, server: &str, want: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let state = haproxy
            .server_state(backend, server)
            .await
            .expect("show stat");
        if state.starts_with(want) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{backend}/{server} is {state}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_follows_the_agents_health_and_agent_check() {
    let mut one = node("one").await;
    let two = node("two").await;
    let haproxy = Haproxy::new().expect("haproxy temp dir");
    let (frontend, agent_frontend) = (free_port(), free_port());
    let agent_check = |n: &Node| n.ports.agent_check;
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
frontend web_agent_only
    bind 127.0.0.1:{agent_frontend}
    default_backend app_agent_only
backend app
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    # The agent-check's percentage scales the initial weight: start from 100.
    # fall 2 and a check timeout of 1 s: one slow reply on a loaded machine
    # must not take the healthy control server out.
    timeout check 1s
    default-server inter 200ms fall 2 rise 1 weight 100
    server one 127.0.0.1:{one_app} check port {one_public} agent-check agent-port {one_ac} agent-inter 200ms
    server two 127.0.0.1:{two_app} check port {two_public} agent-check agent-port {two_ac} agent-inter 200ms
backend app_agent_only
    balance roundrobin
    default-server weight 100
    server one 127.0.0.1:{one_app} agent-check agent-port {one_ac} agent-inter 200ms
    server two 127.0.0.1:{two_app} agent-check agent-port {two_ac} agent-inter 200ms
",
        socket = haproxy.socket_path().display(),
        one_app = one.app.port(),
        two_app = two.app.port(),
        one_public = one.ports.public,
        two_public = two.ports.public,
        one_ac = agent_check(&one),
        two_ac = agent_check(&two),
    );
    let haproxy = haproxy
        .start(&config, frontend)
        .await
        .expect("haproxy starts");
    let settle = Duration::from_secs(10);
    wait_state(&haproxy, "app", "one", "UP", settle).await;
    wait_state(&haproxy, "app", "two", "UP", settle).await;
    let (to_one, to_two) = send(frontend, 20, &one, &two).await;
    assert!(
        to_one > 0 && to_two > 0,
        "both serve while healthy: {to_one}/{to_two}"
    );

    // One agent's Redis stops: its /health turns 503 and HAProxy takes it out.
    one.redis.stop().await.expect("stop redis");
    wait_state(&haproxy, "app", "one", "DOWN", settle).await;
    let (to_one, to_two) = send(frontend, 20, &one, &two).await;
    assert_eq!(
        (to_one, to_two),
        (0, 20),
        "all traffic to the healthy server"
    );

    // Redis returns: traffic returns.
    one.redis.restart().await.expect("restart redis");
    wait_state(&haproxy, "app", "one", "UP", settle).await;
    let (to_one, _) = send(frontend, 20, &one, &two).await;
    assert!(to_one > 0, "traffic returns to the recovered server");
    // The agent-check alone saw the same: "down" while Redis was stopped,
    // "up" again now (shown as "no check" without a health check of its own).
    wait_state(&haproxy, "app_agent_only", "one", "no check", settle).await;

    // Agent-check alone: a maintenance drain puts the server in DRAIN.
    let client = reqwest::Client::new();
    let response = client
        .post(one.agent.admin_url("/admin/drain?exit=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_state(&haproxy, "app_agent_only", "one", "DRAIN", settle).await;
    wait_state(&haproxy, "app", "one", "DOWN", settle).await;
    let (to_one, to_two) = send(agent_frontend, 20, &one, &two).await;
    assert_eq!(
        (to_one, to_two),
        (0, 20),
        "a draining server gets no new traffic"
    );
    let (to_one, to_two) = send(frontend, 10, &one, &two).await;
    assert_eq!((to_one, to_two), (0, 10));

    // Drain ends: `ready` in the agent's reply puts it back.
    let response = client
        .delete(one.agent.admin_url("/admin/drain"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Without a health check of its own, HAProxy shows a ready server as "no check".
    wait_state(&haproxy, "app_agent_only", "one", "no check", settle).await;
    let (to_one, _) = send(agent_frontend, 20, &one, &two).await;
    assert!(to_one > 0, "traffic returns after the drain");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_check_line_carries_a_cpu_weight() {
    let one = node("solo").await;
    // The first Redis check may not have run yet: until it has, the agent
    // rightly answers "down".
    let started = Instant::now();
    let line = loop {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", one.ports.agent_check))
            .await
            .unwrap();
        let mut line = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut line)
            .await
            .unwrap();
        if line.starts_with("up ready ") || started.elapsed() > Duration::from_secs(10) {
            break line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let weight: u8 = line
        .strip_prefix("up ready ")
        .and_then(|rest| rest.trim_end().strip_suffix('%'))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("unexpected agent-check line {line:?}"));
    assert!((10..=100).contains(&weight), "{line:?}");
    drop(one.agent);
}
