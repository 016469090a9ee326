//! Spend reports ([`Store::query_spend`]) on SQLite and PostgreSQL: every `group_by` subset and
//! interval, every filter and scope, checked against the same grouping computed in Rust from the
//! inserted records; a resent batch (and a record repeated within a batch) counts once;
//! concurrent inserters add up exactly; the migration's backfill builds the same rollups; the
//! rollup retention removes old buckets.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;
use tollgate_control_plane::spend::{Dimension, Interval, SpendQuery, SpendRow, SpendTotals};
use tollgate_control_plane::store::UsageRecord;
use tollgate_control_plane::usage_log::LogScope;
use tollgate_control_plane::{PostgresStore, SqliteStore, Store};
use uuid::Uuid;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn text(id: Option<Uuid>) -> String {
    id.map(|u| u.to_string()).unwrap_or_default()
}

/// 2026-01-10T00:00:00Z.
const BASE_MS: i64 = 1_767_225_600_000 + 9 * DAY_MS;

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

/// The sums of one record, computed from the definitions (not from the store's code).
fn totals_of(r: &UsageRecord) -> SpendTotals {
    // The fixture's refusals by limits (`records` uses these two and `upstream_error`).
    let refused = matches!(r.error_class.as_str(), "rate_limited" | "budget_exhausted");
    SpendTotals {
        requests: u64::from(!refused),
        refused_requests: u64::from(refused),
        error_requests: u64::from(!refused && !r.error_class.is_empty()),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cache_read_input_tokens: r.cache_read_input_tokens,
        cache_write_input_tokens: r.cache_write_input_tokens,
        cost_nano_usd: r.cost_nano_usd.unwrap_or(0),
        unpriced_requests: u64::from(r.cost_nano_usd.is_none()),
    }
}

/// A group's values as text: the bucket (Unix seconds) and each grouped dimension ("" = none).
type GroupKey = Vec<String>;

/// What the query should return, computed in Rust over the distinct records.
fn expected(records: &[UsageRecord], q: &SpendQuery) -> BTreeMap<GroupKey, SpendTotals> {
    let since = (q.since.unix_timestamp_nanos() / 1_000_000) as i64;
    let until = (q.until.unix_timestamp_nanos() / 1_000_000) as i64;
    let mut out: BTreeMap<GroupKey, SpendTotals> = BTreeMap::new();
    for r in records {
        let key_id: Option<Uuid> = r.virtual_key_id.parse().ok();
        let in_scope = match q.scope {
            LogScope::All => true,
            LogScope::Team(t) => t.is_some() && text(t) == r.team_id,
            LogScope::Key(k) => k.is_some() && key_id == k,
        };
        let step = if q.interval == Interval::Hour {
            HOUR_MS
        } else {
            DAY_MS
        };
        let bucket = r.started_at_unix_ms.div_euclid(step) * step;
        if !(in_scope
            && bucket >= since
            && bucket < until
            && q.virtual_key_id.is_none_or(|k| key_id == Some(k))
            && q.team_id.is_none_or(|t| r.team_id == t.to_string())
            && q.customer_id.is_none_or(|c| r.customer_id == c.to_string())
            && q.user_id.is_none_or(|u| r.user_id == u.to_string())
            && q.model.as_ref().is_none_or(|m| &r.model_resolved == m)
            && q.provider.as_ref().is_none_or(|p| &r.provider == p))
        {
            continue;
        }
        let mut key = Vec::new();
        if q.interval != Interval::None {
            key.push((bucket / 1000).to_string());
        }
        for d in &q.group_by {
            key.push(match d {
                Dimension::Key => r.virtual_key_id.clone(),
                Dimension::User => r.user_id.clone(),
                Dimension::Team => r.team_id.clone(),
                Dimension::Customer => r.customer_id.clone(),
                Dimension::Model => r.model_resolved.clone(),
                Dimension::Provider => r.provider.clone(),
            });
        }
        out.entry(key).or_default().add(&totals_of(r));
    }
    out
}

fn actual(rows: &[SpendRow], q: &SpendQuery) -> BTreeMap<GroupKey, SpendTotals> {
    let mut out = BTreeMap::new();
    for r in rows {
        let mut key = Vec::new();
        if q.interval != Interval::None {
            key.push(r.bucket.unwrap().unix_timestamp().to_string());
        } else {
            assert_eq!(r.bucket, None);
        }
        for d in &q.group_by {
            key.push(match d {
                Dimension::Key => r.virtual_key_id.clone().unwrap(),
                Dimension::User => text(r.user_id),
                Dimension::Team => text(r.team_id),
                Dimension::Customer => text(r.customer_id),
                Dimension::Model => r.model.clone().unwrap(),
                Dimension::Provider => r.provider.clone().unwrap(),
            });
        }
        assert!(
            out.insert(key.clone(), r.totals).is_none(),
            "group {key:?} twice"
        );
    }
    out
}

/// Runs `q` and compares it with the Rust grouping; checks the order (bucket, then cost).
async fn check(store: &dyn Store, records: &[UsageRecord], q: &SpendQuery) {
    let rows = store.query_spend(q).await.unwrap();
    assert_eq!(
        actual(&rows, q),
        expected(records, q),
        "group_by {:?} interval {:?} filters {:?}/{:?}/{:?}/{:?}/{:?}/{:?} scope {:?}",
        q.group_by,
        q.interval,
        q.virtual_key_id,
        q.team_id,
        q.customer_id,
        q.user_id,
        q.model,
        q.provider,
        q.scope
    );
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.bucket < b.bucket
                || (a.bucket == b.bucket && a.totals.cost_nano_usd >= b.totals.cost_nano_usd),
            "order"
        );
    }
}

fn base_query(interval: Interval, group_by: Vec<Dimension>) -> SpendQuery {
    SpendQuery {
        since: at(BASE_MS - DAY_MS),
        until: at(BASE_MS + 4 * DAY_MS),
        interval,
        group_by,
        virtual_key_id: None,
        team_id: None,
        customer_id: None,
        user_id: None,
        model: None,
        provider: None,
        scope: LogScope::All,
        limit: 100_000,
    }
}

/// Every subset of the dimensions, in a varying order.
fn subsets() -> Vec<Vec<Dimension>> {
    (0u32..64)
        .map(|mask| {
            let mut dims: Vec<Dimension> = Dimension::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| d)
                .collect();
            if mask % 2 == 1 {
                dims.reverse();
            }
            dims
        })
        .collect()
}

use common::owners::Owners as Fixture;

async fn fixture(store: &dyn Store) -> Fixture {
    common::owners::owners(store, true).await
}

/// `n` records numbered from `from`, spread over three days around [`BASE_MS`].
fn records(f: &Fixture, from: usize, n: usize) -> Vec<UsageRecord> {
    // (key, team, customer, user): as the data plane stamps them. The last key was deleted.
    let owners = [
        (f.keys[0], Some(f.teams[0]), Some(f.customer), None),
        (f.keys[1], Some(f.teams[1]), None, None),
        (f.keys[2], None, Some(f.customer), None),
        (f.personal, None, None, Some(f.user)),
        (Uuid::from_u128(0xdead), Some(f.teams[1]), None, None),
    ];
    let classes = [
        "",
        "",
        "rate_limited",
        "upstream_error",
        "",
        "budget_exhausted",
        "",
    ];
    let models = ["claude-sonnet-4-6", "gpt-4o", "claude-haiku"];
    (from..from + n)
        .map(|i| {
            let (key, team, cust, user) = owners[i % owners.len()];
            UsageRecord {
                request_id: format!("req-{i:05}"),
                virtual_key_id: key.to_string(),
                provider: if i % 3 == 0 { "bedrock" } else { "openai" }.into(),
                model_requested: "alias".into(),
                model_resolved: models[(i / 2) % models.len()].into(),
                provider_key_id: "pk-1".into(),
                input_tokens: 100 + i as u64,
                output_tokens: 20 + (i % 7) as u64,
                cache_read_input_tokens: (i % 4) as u64,
                cache_write_input_tokens: (i % 3) as u64,
                latency_ms: 1000,
                time_to_first_token_ms: 200,
                status: if classes[i % classes.len()].is_empty() {
                    200
                } else {
                    429
                },
                error_class: classes[i % classes.len()].into(),
                // Over [BASE - 1 day, BASE + 2 days), some right at hour and day bounds.
                started_at_unix_ms: BASE_MS - DAY_MS + ((i as i64 * 7_919_000) % (3 * DAY_MS))
                    - i64::from(i % 11 == 0),
                stream: i % 2 == 0,
                cache_write_1h_input_tokens: 0,
                cost_nano_usd: (i % 6 != 5).then_some(1_000_000 + 17 * i as u64),
                fallback_index: 0,
                attempts: Vec::new(),
                team_id: text(team),
                customer_id: text(cust),
                user_id: text(user),
                mcp: None,
                content: None,
            }
        })
        .collect()
}

/// A change to a query (a filter, a scope, a range).
type Filter<'a> = Box<dyn Fn(&mut SpendQuery) + Send + Sync + 'a>;

async fn check_everything(store: &dyn Store, f: &Fixture, all: &[UsageRecord]) {
    for interval in [Interval::Hour, Interval::Day, Interval::None] {
        for dims in subsets() {
            check(store, all, &base_query(interval, dims)).await;
        }
    }
    // Filters and scopes, grouped by key (and by hour, to see the buckets).
    let filters: Vec<Filter<'_>> = vec![
        Box::new(|q| q.virtual_key_id = Some(f.keys[0])),
        Box::new(|q| q.team_id = Some(f.teams[1])),
        Box::new(|q| q.customer_id = Some(f.customer)),
        Box::new(|q| q.user_id = Some(f.user)),
        Box::new(|q| q.model = Some("gpt-4o".into())),
        Box::new(|q| q.provider = Some("bedrock".into())),
        Box::new(|q| q.scope = LogScope::Team(Some(f.teams[1]))),
        Box::new(|q| q.scope = LogScope::Team(None)),
        Box::new(|q| q.scope = LogScope::Key(Some(f.personal))),
        Box::new(|q| q.scope = LogScope::Key(None)),
        Box::new(|q| {
            q.scope = LogScope::Team(Some(f.teams[0]));
            q.model = Some("claude-haiku".into());
        }),
        // A narrower range: one day.
        Box::new(|q| {
            q.since = at(BASE_MS);
            q.until = at(BASE_MS + DAY_MS);
        }),
    ];
    for interval in [Interval::Hour, Interval::Day, Interval::None] {
        for filter in &filters {
            for dims in [
                vec![Dimension::Key],
                vec![Dimension::Team, Dimension::Model],
            ] {
                let mut q = base_query(interval, dims);
                filter(&mut q);
                check(store, all, &q).await;
            }
        }
    }
}

async fn spend_conforms<F, Fut>(store: Arc<dyn Store>, rebuild_from_raw: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let f = fixture(store.as_ref()).await;
    let all = records(&f, 0, 400);
    // Batches of 50; the second batch repeats one record of its own.
    let mut stored = 0;
    for (i, batch) in all.chunks(50).enumerate() {
        let mut batch = batch.to_vec();
        if i == 1 {
            batch.push(batch[3].clone());
        }
        stored += store.insert_usage(&batch).await.unwrap();
    }
    assert_eq!(stored, 400);
    check_everything(store.as_ref(), &f, &all).await;

    // A resent batch (and a batch half old, half new) counts once.
    assert_eq!(store.insert_usage(&all[100..150]).await.unwrap(), 0);
    let more = records(&f, 400, 20);
    let mut mixed = all[0..20].to_vec();
    mixed.extend(more.iter().cloned());
    assert_eq!(store.insert_usage(&mixed).await.unwrap(), 20);
    let mut all = all;
    all.extend(more);
    check_everything(store.as_ref(), &f, &all).await;

    // Names are the current ones; the deleted key has none; "no team" is a group of its own.
    let rows = store
        .query_spend(&base_query(
            Interval::None,
            vec![
                Dimension::Key,
                Dimension::Team,
                Dimension::User,
                Dimension::Customer,
            ],
        ))
        .await
        .unwrap();
    let personal_name = store
        .get_virtual_key(f.personal)
        .await
        .unwrap()
        .unwrap()
        .name;
    for r in &rows {
        let key: Uuid = r.virtual_key_id.as_deref().unwrap().parse().unwrap();
        let name = if key == f.keys[0] {
            Some("key-eng")
        } else if key == f.keys[1] {
            Some("key-ml")
        } else if key == f.keys[2] {
            Some("key-acme")
        } else if key == f.personal {
            Some(personal_name.as_str())
        } else {
            None
        };
        assert_eq!(r.key_name.as_deref(), name);
        assert!(r.key_name.is_some() || key == Uuid::from_u128(0xdead));
        assert_eq!(
            r.team_name.as_deref(),
            r.team_id
                .map(|t| if t == f.teams[0] { "eng" } else { "ml" })
        );
        assert_eq!(r.customer_name.as_deref(), r.customer_id.map(|_| "acme"));
        assert_eq!(
            r.user_name.as_deref(),
            r.user_id.map(|_| "alice@example.com")
        );
    }
    assert!(rows.iter().any(|r| r.team_id.is_none()));
    assert_eq!(
        store
            .query_spend(&SpendQuery {
                limit: 2,
                ..base_query(Interval::None, vec![Dimension::Key])
            })
            .await
            .unwrap()
            .len(),
        2
    );

    // The migration's backfill, run over the raw rows, builds the same rollups.
    rebuild_from_raw().await;
    check_everything(store.as_ref(), &f, &all).await;

    // Retention: buckets before BASE go, later ones stay.
    let deleted = store
        .drop_spend_rollups_before(at(BASE_MS).date())
        .await
        .unwrap();
    assert!(deleted > 0);
    let rest: Vec<UsageRecord> = all
        .iter()
        .filter(|r| r.started_at_unix_ms >= BASE_MS)
        .cloned()
        .collect();
    for interval in [Interval::Hour, Interval::Day] {
        check(
            store.as_ref(),
            &rest,
            &base_query(interval, vec![Dimension::Key]),
        )
        .await;
    }
}

/// Several tasks insert overlapping batches at once (each batch is also sent by another task):
/// the totals are exact, and (PostgreSQL) no transaction deadlocks.
/// Returns the records.
async fn concurrent_inserts_add_up(stores: Vec<Arc<dyn Store>>) -> Vec<UsageRecord> {
    let store = stores[0].clone();
    let f = fixture(store.as_ref()).await;
    let all = records(&f, 0, 1200);
    let batches: Vec<Vec<UsageRecord>> = all.chunks(60).map(<[UsageRecord]>::to_vec).collect();
    let batches = Arc::new(batches);
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (store, batches) = (stores[t % stores.len()].clone(), batches.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                // Task t sends the batches b with b % 4 == t or b % 4 == (t + 1) % 4, in
                // opposite orders for odd and even tasks.
                let mut mine: Vec<usize> = (0..batches.len())
                    .filter(|b| b % 4 == t || b % 4 == (t + 1) % 4)
                    .collect();
                if t % 2 == 1 {
                    mine.reverse();
                }
                for b in mine {
                    stored += store.insert_usage(&batches[b]).await.unwrap();
                }
                stored
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap();
    }
    assert_eq!(stored, 1200);
    let distinct: HashSet<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(distinct.len(), 1200);
    for interval in [Interval::Hour, Interval::None] {
        for dims in [vec![], vec![Dimension::Key, Dimension::Model]] {
            check(store.as_ref(), &all, &base_query(interval, dims)).await;
        }
    }
    all
}

/// The migration's backfill statements (from `-- Backfill` to the end), after emptying the
/// rollups.
fn backfill_sql(migration: &str) -> String {
    let start = migration.find("-- Backfill").expect("backfill section");
    format!(
        "DELETE FROM usage_rollup_hourly; DELETE FROM usage_rollup_daily; {}",
        &migration[start..]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_spend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let rebuild = || {
        let path = path.clone();
        async move {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let sql = backfill_sql(include_str!(
                "../../migrations/sqlite/0015_usage_rollups.sql"
            ));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    };
    spend_conforms(Arc::new(store), rebuild).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_inserts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    concurrent_inserts_add_up(vec![Arc::new(store)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_spend_conforms() {
    common::with_postgres(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let rebuild = || {
            let url = url.clone();
            async move {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                let sql = backfill_sql(include_str!(
                    "../../migrations/postgres/0015_usage_rollups.sql"
                ));
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
        };
        spend_conforms(Arc::new(store.clone()), rebuild).await;
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_inserts_add_up() {
    common::with_postgres(|url| async move {
        // Two stores: two replicas' pools, two tasks on each.
        let a = PostgresStore::connect(&url).await.unwrap();
        let b = PostgresStore::connect(&url).await.unwrap();
        let all = concurrent_inserts_add_up(vec![Arc::new(a.clone()), Arc::new(b.clone())]).await;
        // The other replica reads the same totals.
        check(&b, &all, &base_query(Interval::Day, vec![Dimension::Team])).await;
        a.close().await;
        b.close().await;
    })
    .await;
}
