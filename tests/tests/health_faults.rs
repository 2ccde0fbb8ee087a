//! Dependencies that stop, freeze and come back, on private instances; and the
//! promise that polling `/health` never costs the dependencies anything.

use std::time::{Duration, Instant};

use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::postgres::PrivatePostgres;
use telltale_tests::redis::PrivateRedis;

async fn status_of(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.expect("request to the agent");
    let code = response.status().as_u16();
    (code, response.json().await.expect("json body"))
}

/// Polls until `url` answers `code`; returns how long it took.
async fn time_until(url: &str, code: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (got, body) = status_of(url).await;
        if got == code {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{url} not {code} within {within:?}: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_redis_fails_readiness_within_interval_timeout_and_fall_then_recovers_after_rise() {
    let mut redis = PrivateRedis::start().await.expect("private redis");
    let ports = AgentPorts::pick();
    let (interval, timeout, fall, rise) = (
        Duration::from_millis(400),
        Duration::from_millis(300),
        2u32,
        2u32,
    );
    let config = format!(
        "{}[health]\ninterval = \"400ms\"\ntimeout = \"300ms\"\nfall = {fall}\nrise = {rise}\n[health.checks.cache]\nkind = \"redis\"\nurl = \"{}\"\n",
        ports.listeners_toml(false),
        redis.url()
    );
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let health = agent.public_url("/health");
    time_until(&health, 200, Duration::from_secs(5)).await;

    redis.stop().await.expect("stop redis");
    // Worst case: a run just passed, then `fall` runs one interval apart each
    // take up to the timeout, plus one interval of phase.
    let bound = interval * (fall + 1) + timeout * fall + Duration::from_millis(500);
    let took = time_until(&health, 503, bound * 2).await;
    assert!(took <= bound, "503 after {took:?}, bound {bound:?}");
    let (_, body) = status_of(&health).await;
    assert!(
        body["checks"]["cache:responseTime"][0]["output"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
            || body["checks"]["cache:responseTime"][0]["output"]
                .as_str()
                .unwrap()
                .contains("PING failed"),
        "{body}"
    );

    redis.restart().await.expect("restart redis");
    let bound = interval * (rise + 1) + timeout * rise + Duration::from_millis(500);
    let took = time_until(&health, 200, bound * 2).await;
    assert!(took <= bound, "200 again after {took:?}, bound {bound:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_postgres_never_slows_health_and_fails_after_the_timeout() {
    let postgres = PrivatePostgres::start().await.expect("private postgres");
    let ports = AgentPorts::pick();
    let config = format!(
        "{}[health]\ninterval = \"500ms\"\ntimeout = \"400ms\"\nfall = 1\nrise = 2\n[health.checks.db]\nkind = \"postgres\"\nurl = \"{}\"\n",
        ports.listeners_toml(false),
        postgres.url()
    );
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let health = agent.public_url("/health");
    time_until(&health, 200, Duration::from_secs(5)).await;

    postgres.freeze().expect("SIGSTOP postgres");
    let client = reqwest::Client::new();
    let frozen_at = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut failed_after = None;
    while frozen_at.elapsed() < Duration::from_secs(3) {
        let started = Instant::now();
        let response = client
            .get(&health)
            .send()
            .await
            .expect("health answers while postgres is frozen");
        slowest = slowest.max(started.elapsed());
        if response.status() == 503 && failed_after.is_none() {
            failed_after = Some(frozen_at.elapsed());
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(
                body["checks"]["db:responseTime"][0]["output"]
                    .as_str()
                    .unwrap()
                    .contains("timed out"),
                "{body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Answered from the cached result: a poll that waited on the frozen
    // database would take up to the check's timeout (400 ms); 250 ms leaves
    // a loaded machine its pauses and still catches a wait.
    assert!(
        slowest < Duration::from_millis(250),
        "a /health poll took {slowest:?} while postgres was frozen"
    );
    let failed_after = failed_after.expect("readiness turned 503 while postgres was frozen");
    // One interval of phase plus the timeout, with slack for a loaded machine.
    assert!(
        failed_after <= Duration::from_millis(500 + 400 + 700),
        "503 only after {failed_after:?}"
    );

    postgres.resume().expect("SIGCONT postgres");
    let took = time_until(&health, 200, Duration::from_secs(10)).await;
    // rise = 2: a second success one interval after the first. The first may be
    // a run that started while frozen and finished at the resume, so the least
    // possible wait is the interval minus the timeout.
    assert!(
        took >= Duration::from_millis(500 - 400),
        "back to 200 after {took:?}: rise was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_polls_causes_no_more_queries_than_the_interval() {
    let redis = PrivateRedis::start().await.expect("private redis");
    let postgres = PrivatePostgres::start().await.expect("private postgres");
    let ports = AgentPorts::pick();
    let interval = Duration::from_secs(1);
    let config = format!(
        "{}[health]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[health.checks.cache]\nkind = \"redis\"\nurl = \"{}\"\n[health.checks.db]\nkind = \"postgres\"\nurl = \"{}\"\nquery = \"SELECT 4711\"\n",
        ports.listeners_toml(false),
        redis.url(),
        postgres.url()
    );
    let agent = AgentProcess::spawn(&config, &ports).await.expect("agent");
    let health = agent.public_url("/health");
    time_until(&health, 200, Duration::from_secs(5)).await;

    // The window counted runs from before the first count to after the last
    // (reading pg_stat_statements runs psql, which takes a while).
    let started = Instant::now();
    let pings_before = redis.command_calls("ping").expect("commandstats");
    let queries_before = postgres.calls_of("SELECT $1").expect("pg_stat_statements");
    let client = reqwest::Client::new();
    let mut answered = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let client = client.clone();
        let health = health.clone();
        tasks.spawn(async move {
            let mut ok = 0;
            for _ in 0..(2_000 / 16 + usize::from(worker < 2_000 % 16)) {
                if client
                    .get(&health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    ok += 1;
                }
            }
            ok
        });
    }
    while let Some(ok) = tasks.join_next().await {
        answered += ok.unwrap();
    }
    let pings = redis.command_calls("ping").expect("commandstats") - pings_before;
    let queries = postgres.calls_of("SELECT $1").expect("pg_stat_statements") - queries_before;
    let elapsed = started.elapsed();
    assert_eq!(answered, 2_000, "every poll answered 200");
    let allowed = (elapsed.as_secs_f64() / interval.as_secs_f64()).floor() as u64 + 1;
    assert!(
        pings <= allowed,
        "{pings} PINGs for 2,000 polls in {elapsed:?}, allowed {allowed}"
    );
    assert!(
        queries as u64 <= allowed,
        "{queries} queries for 2,000 polls in {elapsed:?}, allowed {allowed}"
    );
}
