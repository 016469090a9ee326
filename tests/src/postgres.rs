//! Fresh PostgreSQL databases for end-to-end tests, on the server at `DATABASE_URL`
//! (`scripts/test.sh` makes sure one answers).

use sqlx::Connection;

/// `DATABASE_URL`, or the local server.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped when it goes out of scope (also on failure).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    /// Connection URL of the new database.
    pub url: String,
}

impl TestDatabase {
    /// Creates `<prefix>_<uuid v7>`.
    pub async fn create(prefix: &str) -> TestDatabase {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&database_url()).await.expect(
            "PostgreSQL must be reachable at DATABASE_URL (scripts/test.sh starts the local server)",
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let url = tollgate_control_plane::PostgresStore::url_with_database(&database_url(), &name);
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&database_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
