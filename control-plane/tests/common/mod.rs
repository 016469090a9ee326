//! Shared test helpers: temporary SQLite files and per-test PostgreSQL databases.
#![allow(dead_code)]

pub mod owners;

use std::future::Future;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tollgate_control_plane::PostgresStore;

/// The server tests run against; override with `DATABASE_URL`.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `body` with the URL of a fresh, uniquely named PostgreSQL database, then drops the
/// database, also when `body` panics (the panic is re-raised afterwards).
pub async fn with_postgres<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url = postgres_admin_url();
    let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("cannot connect to PostgreSQL at DATABASE_URL ({admin_url}): {e}")
    });
    // Identifiers cannot be bound; `name` is generated here, not user input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let result = tokio::spawn(body(PostgresStore::url_with_database(&admin_url, &name))).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop test database");
    admin.close().await.ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[test]
fn database_name_replacement() {
    assert_eq!(
        PostgresStore::url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        PostgresStore::url_with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
        "postgres://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(
        PostgresStore::url_with_database("postgres://h:5432", "t3"),
        "postgres://h:5432/t3"
    );
}
