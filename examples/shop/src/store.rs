//! The shop's data in PostgreSQL (schema `shop`), created and seeded at start,
//! and the queries each route runs. `customer_of` in a loop is the N+1 the
//! agent should flag; `orders_with_customers` is its fix.

use serde::Serialize;
use sqlx::{Postgres, Row as _};
use telltale_sdk::TracedPool;

/// Seed sizes: twenty orders, each with its own customer, so `GET /orders`
/// runs one query for the list and twenty for the customers.
pub(crate) const SEEDED_ORDERS: i64 = 20;
const SEEDED_PRODUCTS: i64 = 50;
/// Serialises schema creation between shops starting together.
const SCHEMA_LOCK: i64 = 0x5e11_7a1e;

#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) db: TracedPool<Postgres>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OrderView {
    pub(crate) id: i64,
    pub(crate) total_cents: i64,
    pub(crate) customer: String,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct Product {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) price_cents: i64,
}

impl Store {
    /// Creates the schema and seeds it once; safe to run from several shops.
    pub(crate) async fn prepare(&self) -> sqlx::Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *conn)
            .await?;
        let result = async {
            sqlx::raw_sql(
                "CREATE SCHEMA IF NOT EXISTS shop;
                 CREATE TABLE IF NOT EXISTS shop.customers (
                     id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS shop.orders (
                     id BIGSERIAL PRIMARY KEY,
                     customer_id BIGINT NOT NULL REFERENCES shop.customers (id),
                     total_cents BIGINT NOT NULL,
                     created_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS shop.products (
                     id BIGINT PRIMARY KEY, name TEXT NOT NULL, price_cents BIGINT NOT NULL);",
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO shop.customers (id, name, email)
                 SELECT n, 'Customer ' || n, 'customer' || n || '@example.com'
                 FROM generate_series(1, $1) AS n ON CONFLICT (id) DO NOTHING",
            )
            .bind(SEEDED_ORDERS)
            .execute(&mut *conn)
            .await?;
            let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.orders")
                .fetch_one(&mut *conn)
                .await?;
            if orders == 0 {
                sqlx::query(
                    "INSERT INTO shop.orders (customer_id, total_cents)
                     SELECT n, n * 1000 FROM generate_series(1, $1) AS n",
                )
                .bind(SEEDED_ORDERS)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "INSERT INTO shop.products (id, name, price_cents)
                 SELECT n, 'Product ' || n, 500 + n * 10
                 FROM generate_series(1, $1) AS n ON CONFLICT (id) DO NOTHING",
            )
            .bind(SEEDED_PRODUCTS)
            .execute(&mut *conn)
            .await
            .map(|_| ())
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *conn)
            .await?;
        result
    }

    /// The first orders, without their customers.
    pub(crate) async fn recent_orders(&self) -> sqlx::Result<Vec<(i64, i64, i64)>> {
        sqlx::query_as("SELECT id, customer_id, total_cents FROM shop.orders ORDER BY id LIMIT $1")
            .bind(SEEDED_ORDERS)
            .fetch_all(&self.db)
            .await
    }

    /// One customer's name: called once per order, this is the N+1.
    pub(crate) async fn customer_of(&self, customer_id: i64) -> sqlx::Result<String> {
        sqlx::query_scalar("SELECT name FROM shop.customers WHERE id = $1")
            .bind(customer_id)
            .fetch_one(&self.db)
            .await
    }

    /// The same view in one query.
    pub(crate) async fn orders_with_customers(&self) -> sqlx::Result<Vec<OrderView>> {
        let rows = sqlx::query(
            "SELECT o.id, o.total_cents, c.name FROM shop.orders o
             JOIN shop.customers c ON c.id = o.customer_id ORDER BY o.id LIMIT $1",
        )
        .bind(SEEDED_ORDERS)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrderView {
                    id: row.try_get(0)?,
                    total_cents: row.try_get(1)?,
                    customer: row.try_get(2)?,
                })
            })
            .collect()
    }

    pub(crate) async fn product(&self, id: i64) -> sqlx::Result<Option<Product>> {
        let row: Option<(i64, String, i64)> =
            sqlx::query_as("SELECT id, name, price_cents FROM shop.products WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db)
                .await?;
        Ok(row.map(|(id, name, price_cents)| Product {
            id,
            name,
            price_cents,
        }))
    }

    /// Keeps one connection busy in the database for `seconds`.
    pub(crate) async fn sleep(&self, seconds: f64) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_sleep($1)")
            .bind(seconds)
            .execute(&self.db)
            .await
            .map(|_| ())
    }

    /// Records an order in a transaction; returns its id.
    pub(crate) async fn place_order(
        &self,
        customer_id: i64,
        total_cents: i64,
    ) -> sqlx::Result<i64> {
        let mut tx = self.db.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO shop.orders (customer_id, total_cents) VALUES ($1, $2) RETURNING id",
        )
        .bind(customer_id)
        .bind(total_cents)
        .fetch_one(self.db.on(&mut *tx))
        .await?;
        sqlx::query("UPDATE shop.customers SET email = email WHERE id = $1")
            .bind(customer_id)
            .execute(self.db.on(&mut *tx))
            .await?;
        tx.commit().await?;
        Ok(id)
    }
}
