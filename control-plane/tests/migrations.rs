//! Upgrades keep what was stored: data written under an older schema is converted the way the
//! next migration says, on SQLite and on PostgreSQL. Each test applies the migrations up to a
//! version, writes rows as that schema holds them, then opens the store (which applies the rest).

mod common;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use time::{Duration, OffsetDateTime};
use tollgate_control_plane::usage_log::{LogScope, UsageLogQuery};
use tollgate_control_plane::{PostgresStore, SqliteStore, Store};
use uuid::Uuid;

/// The migrations of `backend` up to and including `version`.
async fn migrations_upto(backend: &str, version: i64) -> Migrator {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(backend);
    let mut m = Migrator::new(dir).await.expect("migrations");
    let kept: Vec<_> = m
        .migrations
        .iter()
        .filter(|x| x.version <= version)
        .cloned()
        .collect();
    assert_eq!(kept.last().map(|x| x.version), Some(version));
    m.migrations = Cow::Owned(kept);
    m
}

/// The ids of the rows written before migration 0014.
struct Before {
    team: Uuid,
    customer_of_team: Uuid,
    customer: Uuid,
    user: Uuid,
    /// In the team, the user's personal key.
    personal: Uuid,
    /// The customer's own key.
    direct: Uuid,
    /// No owner.
    plain: Uuid,
}

impl Before {
    fn new() -> Before {
        Before {
            team: Uuid::new_v4(),
            customer_of_team: Uuid::new_v4(),
            customer: Uuid::new_v4(),
            user: Uuid::new_v4(),
            personal: Uuid::new_v4(),
            direct: Uuid::new_v4(),
            plain: Uuid::new_v4(),
        }
    }

    /// The rows, as SQL with `$n` placeholders and their values: two customers, a team of the
    /// first, a user, three keys and one usage record per key plus one of a deleted key.
    fn statements(&self, now: &str) -> Vec<(&'static str, Vec<Value>)> {
        use Value::{Id, NullId, Text};
        let key = |id: Uuid, name: &'static str, team: Value, customer: Value, user: Value| {
            (
                "INSERT INTO virtual_keys (id, name, key_sha256, value_prefix, providers, active, \
                 team_id, customer_id, user_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'sk-tg-x', '[]', TRUE, $4, $5, $6, $7, $7)",
                vec![
                    Id(id),
                    Text(name.into()),
                    Value::Bytes(id.as_bytes().repeat(2)),
                    team,
                    customer,
                    user,
                    Text(now.into()),
                ],
            )
        };
        let usage = |request_id: &'static str, key: Uuid| {
            (
                "INSERT INTO usage_records (request_id, virtual_key_id, provider, model_requested, \
                 model_resolved, provider_key_id, input_tokens, output_tokens, \
                 cache_read_input_tokens, cache_write_input_tokens, latency_ms, \
                 time_to_first_token_ms, status, error_class, started_at, stream) \
                 VALUES ($1, $2, 'bedrock', 'm', 'm', 'pk', 1, 1, 0, 0, 10, 5, 200, '', $3, FALSE)",
                vec![
                    Text(request_id.into()),
                    Text(key.to_string()),
                    Text(now.into()),
                ],
            )
        };
        let customer = |id: Uuid, name: &'static str| {
            (
                "INSERT INTO customers (id, name, limits, created_at, updated_at) \
                 VALUES ($1, $2, '{}', $3, $3)",
                vec![Id(id), Text(name.into()), Text(now.into())],
            )
        };
        vec![
            customer(self.customer_of_team, "acme"),
            customer(self.customer, "globex"),
            (
                "INSERT INTO teams (id, name, customer_id, limits, created_at, updated_at) \
                 VALUES ($1, 'eng', $2, '{}', $3, $3)",
                vec![Id(self.team), Id(self.customer_of_team), Text(now.into())],
            ),
            (
                "INSERT INTO users (id, user_name, team_id, active, created_at, updated_at) \
                 VALUES ($1, 'alice', $2, TRUE, $3, $3)",
                vec![Id(self.user), Id(self.team), Text(now.into())],
            ),
            key(
                self.personal,
                "personal",
                Id(self.team),
                NullId,
                Id(self.user),
            ),
            key(self.direct, "direct", NullId, Id(self.customer), NullId),
            key(self.plain, "plain", NullId, NullId, NullId),
            usage("r-personal", self.personal),
            usage("r-direct", self.direct),
            usage("r-plain", self.plain),
            usage("r-deleted", Uuid::new_v4()),
        ]
    }

    /// After the upgrade every record is billed to its key's owner at upgrade time.
    async fn check(&self, store: Arc<dyn Store>) {
        let now = OffsetDateTime::now_utc();
        let q = UsageLogQuery {
            since: now - Duration::days(1),
            until: now + Duration::days(1),
            virtual_key_id: None,
            team_id: None,
            customer_id: None,
            user_id: None,
            model: None,
            provider: None,
            status: None,
            min_cost_nano_usd: None,
            scope: LogScope::All,
            after: None,
            limit: 100,
        };
        let rows = store.query_usage_logs(&q).await.unwrap();
        let mut got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.request_id.as_str(),
                    r.team_id,
                    r.customer_id,
                    r.user_id,
                    r.user_name.as_deref(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("r-deleted", None, None, None, None),
                ("r-direct", None, Some(self.customer), None, None),
                (
                    "r-personal",
                    Some(self.team),
                    Some(self.customer_of_team),
                    Some(self.user),
                    Some("alice")
                ),
                ("r-plain", None, None, None, None),
            ]
        );
        // The filters read the stored owner.
        let by_customer = store
            .query_usage_logs(&UsageLogQuery {
                customer_id: Some(self.customer_of_team),
                ..q
            })
            .await
            .unwrap();
        assert_eq!(by_customer.len(), 1);
        assert_eq!(by_customer[0].request_id, "r-personal");
    }
}

enum Value {
    Id(Uuid),
    NullId,
    Text(String),
    Bytes(Vec<u8>),
}

#[tokio::test]
async fn sqlite_usage_records_get_their_keys_owner_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let before = Before::new();
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true),
        )
        .await
        .unwrap();
        migrations_upto("sqlite", 13)
            .await
            .run(&pool)
            .await
            .unwrap();
        let t = OffsetDateTime::now_utc();
        let now = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        // Usage start times are fixed-width millisecond text on this backend.
        let started = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        );
        for (sql, values) in before.statements(&now) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in values {
                q = match v {
                    Value::Id(id) => q.bind(id),
                    Value::NullId => q.bind(None::<Uuid>),
                    Value::Text(t) if t == now && sql.contains("usage_records") => {
                        q.bind(started.clone())
                    }
                    Value::Text(t) => q.bind(t),
                    Value::Bytes(b) => q.bind(b),
                };
            }
            q.execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    before.check(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_usage_records_get_their_keys_owner_on_upgrade() {
    common::with_postgres(|url| async move {
        let before = Before::new();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrations_upto("postgres", 13)
            .await
            .run(&pool)
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let text = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        for (sql, values) in before.statements(&text) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in values {
                q = match v {
                    Value::Id(id) => q.bind(id),
                    Value::NullId => q.bind(None::<Uuid>),
                    Value::Text(t) if t == text => q.bind(now),
                    Value::Text(t) => q.bind(t),
                    Value::Bytes(b) => q.bind(b),
                };
            }
            q.execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = PostgresStore::connect(&url).await.unwrap();
        before.check(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}
