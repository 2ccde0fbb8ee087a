//! The whole chain on real parts: `examples/shop` with `telltale-sdk` on the
//! shared PostgreSQL exports to the real agent, which finds the N+1 of
//! `GET /orders` (one list query, then one customer query per order) and
//! nothing in `GET /orders/fast` (one JOIN); the finding survives a restart
//! of the agent on the same database.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use telltale_tests::admin::api_json;
use telltale_tests::agent::{AgentPorts, AgentProcess};
use telltale_tests::shop::ShopProcess;
use telltale_tests::{http_client, require_shared_services, wait_until};

const CUSTOMER_TEMPLATE: &str = "SELECT name FROM shop.customers WHERE id = ?";

async fn agent_on(db: &std::path::Path, ports: &AgentPorts) -> AgentProcess {
    let config = format!(
        "{}[health.checks.mem]\nkind = \"memory\"\n[storage]\npath = \"{}\"\n[shutdown]\ndrain_period = \"0s\"\n[traces]\nquiet_period = \"500ms\"\n",
        ports.listeners_toml(false),
        db.display()
    );
    AgentProcess::spawn(&config, ports).await.expect("agent")
}

async fn findings(agent: &AgentProcess, query: &str) -> Vec<Value> {
    let (status, body) = api_json(agent, &format!("/api/v1/findings{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["findings"].as_array().expect("findings").clone()
}

#[tokio::test]
async fn the_shop_orders_loop_is_one_finding_and_the_join_is_none() {
    require_shared_services().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("telltale.db");
    let ports = AgentPorts::pick();
    let mut agent = agent_on(&db, &ports).await;
    let endpoint = format!("http://127.0.0.1:{}", ports.otlp_grpc);
    let shop = ShopProcess::start("shop-n1", &endpoint, &[]).await.unwrap();
    let client = http_client();

    for path in ["/orders/fast", "/orders", "/orders/fast", "/orders"] {
        let response = client.get(shop.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    wait_until("the /orders finding", Duration::from_secs(30), || async {
        findings(&agent, "?service=shop-n1")
            .await
            .iter()
            .any(|f| f["occurrences"] == 2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent logs:\n{}", agent.logs()));
    // Both routes' traces are complete by now: give a late one a quiet period.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let found = findings(&agent, "?service=shop-n1").await;
    assert_eq!(found.len(), 1, "exactly one finding: {found:#?}");
    let finding = &found[0];
    assert_eq!(finding["kind"], "n_plus_one_query");
    assert_eq!(finding["route"], "/orders");
    assert_eq!(finding["template"], CUSTOMER_TEMPLATE);
    assert_eq!(
        finding["sourceTemplate"],
        "SELECT id, customer_id, total_cents FROM shop.orders ORDER BY id LIMIT ?"
    );
    assert_eq!(finding["system"], "postgresql");
    assert_eq!(finding["count"], 20, "one query per seeded order");
    assert_eq!(finding["occurrences"], 2);
    assert!(
        findings(&agent, "?service=shop-n1&route=/orders/fast")
            .await
            .is_empty(),
        "the JOIN is never flagged"
    );
    let trace_id = finding["exampleTraceId"]
        .as_str()
        .expect("an example trace")
        .to_owned();
    let (status, trace) = api_json(&agent, &format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{trace}");

    // Restart on the same database: the finding is still there.
    agent.signal(Signal::SIGTERM).unwrap();
    agent.wait_exit(Duration::from_secs(20)).await.unwrap();
    let agent = agent_on(&db, &ports).await;
    let after = findings(&agent, "?service=shop-n1").await;
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["id"], finding["id"]);
    assert_eq!(after[0]["count"], 20);
    assert_eq!(after[0]["occurrences"], 2);
}
