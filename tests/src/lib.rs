//! Harness for Telltale's end-to-end tests.
//!
//! Each helper starts a PRIVATE instance of a real service (PostgreSQL,
//! MariaDB, Redis, HAProxy, a tiny HTTP app, the `telltale` agent itself) in a
//! temp dir on a free loopback port, so a test can stop, restart or freeze it
//! without disturbing the machine's shared services. Nothing is mocked.
//!
//! Every helper kills the processes it spawned when dropped, also when the
//! test panics. A missing binary is an error (never a skipped test) whose
//! message says how to install it: `tests/run.sh` installs and starts
//! everything the tests need.

pub mod admin;
pub mod agent;
pub mod apps;
mod bins;
pub mod browser;
pub mod collector;
pub mod dashboard;
pub mod haproxy;
mod http;
pub mod mariadb;
pub mod npm;
pub mod otlp;
mod output;
pub mod ports;
pub mod postgres;
mod proc_tree;
mod process;
pub mod prometheus;
pub mod redis;
mod resp;
pub mod shared;
pub mod shop;

pub use agent::{AgentPorts, AgentProcess, shop_bin, telltale_bin};
pub use apps::TinyHttpApp;
pub use browser::Browser;
pub use haproxy::Haproxy;
pub use http::http_client;
pub use mariadb::PrivateMariaDb;
pub use ports::{free_port, wait_until};
pub use postgres::PrivatePostgres;
pub use redis::PrivateRedis;
pub use shared::{
    SHARED_MARIADB_URL, SHARED_POSTGRES_URL, SHARED_REDIS_URL, require_shared_services,
};
