//! PostgreSQL backend.
//!
//! Writers serialise on the `config_version` row (the first statement of every mutation updates
//! it); snapshot reads use a `REPEATABLE READ READ ONLY` transaction so all tables are read at one
//! point in time.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        tracing::info!("connected to PostgreSQL store");
        Ok(Self { pool })
    }

    /// Closes the pool (tests use this before dropping their database).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_read(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

super::impl_sql_store!(PostgresStore, Postgres, "postgres");
