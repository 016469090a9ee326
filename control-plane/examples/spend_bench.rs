//! Spend reports and request-log pages on PostgreSQL with a month of usage.
//!
//! ```text
//! cargo run --release -p tollgate-control-plane --example spend_bench -- \
//!     [--records 10000000] [--keys 5000] [--teams 200] [--writers 2] [--runs 7] [--keep]
//! ```
//!
//! It creates a fresh database next to `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) with 20 customers, `--teams` teams and
//! `--keys` keys (every tenth a user's personal key), prepares the daily partitions of the last
//! 30 days and stores `--records` usage records spread evenly over those 30 days, oldest first,
//! through the real insert path (`Store::insert_usage`: batches of 500, which also keep the spend
//! rollups). Keys are skewed (key `5000·u²` for a uniform `u`), each mostly uses one of four
//! models. It then times (median of `--runs`, after one warm-up) the store calls behind
//! `GET /api/spend` and `GET /api/logs` (a first page of 100), the latter with the log indexes
//! of migration 0016 and again after dropping them, prints the table sizes, and drops the
//! database (unless `--keep`). `--load-only` stops (keeping the database) after loading;
//! `--database NAME` times the queries on a database loaded before, without loading. `--bulk`
//! generates the records in SQL instead (`spend_bench_bulk.sql`) and builds the rollups with
//! migration 0015's backfill statements: minutes instead of an hour for 10 million rows on a
//! busy two-core machine, where the real insert path managed ~4,000 records/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use time::{Duration, OffsetDateTime};
use tollgate_control_plane::model::{
    AuditEvent, CustomerRecord, TeamRecord, VirtualKeyRecord, now,
};
use tollgate_control_plane::spend::{Dimension, Interval, SpendQuery};
use tollgate_control_plane::store::UsageRecord;
use tollgate_control_plane::usage_log::{LogScope, StatusFilter, UsageLogQuery};
use tollgate_control_plane::{PostgresStore, Store};
use uuid::Uuid;

const BATCH: usize = 500;
const MODELS: [(&str, &str); 4] = [
    ("claude-sonnet-4-6", "bedrock"),
    ("claude-haiku-4-5", "bedrock"),
    ("gpt-4o", "openai"),
    ("gemini-2.5-pro", "vertex"),
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn event() -> AuditEvent {
    AuditEvent {
        actor: "bench".into(),
        action: "bench".into(),
        target: "bench".into(),
        details: serde_json::json!({}),
    }
}

/// A small deterministic generator (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Org {
    keys: Vec<Uuid>,
    /// Per key: team, customer, user.
    owners: Vec<(Uuid, Uuid, Option<Uuid>)>,
    teams: Vec<Uuid>,
}

fn batch(org: &Org, b: usize, total: usize, start_ms: i64, span_ms: i64) -> Vec<UsageRecord> {
    let from = b * BATCH;
    let to = ((b + 1) * BATCH).min(total);
    (from..to)
        .map(|i| {
            let r = mix(i as u64);
            let u = (r & 0xffff) as f64 / 65536.0;
            let k = ((u * u) * org.keys.len() as f64) as usize;
            let (team, customer, user) = org.owners[k];
            let m = if (r >> 16) % 10 < 8 {
                k % MODELS.len()
            } else {
                ((r >> 20) % 4) as usize
            };
            let (model, provider) = MODELS[m];
            let roll = (r >> 24) % 100;
            let (status, class) = match roll {
                0..=1 => (429, "rate_limited"),
                2..=4 => (502, "upstream_error"),
                _ => (200, ""),
            };
            UsageRecord {
                request_id: format!("{:016x}-{i}", r),
                virtual_key_id: org.keys[k].to_string(),
                provider: provider.into(),
                model_requested: model.into(),
                model_resolved: model.into(),
                provider_key_id: "pk-1".into(),
                input_tokens: 500 + (r >> 32) % 5000,
                output_tokens: 50 + (r >> 40) % 800,
                cache_read_input_tokens: (r >> 48) % 3 * 1000,
                cache_write_input_tokens: (r >> 50) % 2 * 500,
                latency_ms: 800 + ((r >> 52) % 4000) as u32,
                time_to_first_token_ms: 300,
                status,
                error_class: class.into(),
                started_at_unix_ms: start_ms + (i as i64 * span_ms) / total as i64,
                stream: true,
                cache_write_1h_input_tokens: 0,
                cost_nano_usd: (!(r >> 56).is_multiple_of(20))
                    .then_some(2_000_000 + (r >> 33) % 30_000_000),
                fallback_index: 0,
                attempts: Vec::new(),
                team_id: team.to_string(),
                customer_id: customer.to_string(),
                user_id: user.map(|u| u.to_string()).unwrap_or_default(),
                content: None,
                mcp: None,
            }
        })
        .collect()
}

async fn median_ms<F, Fut, T>(runs: usize, mut f: F) -> (f64, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = f().await; // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        out = f().await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], out)
}

#[tokio::main]
async fn main() {
    let total: usize = arg("--records").map_or(10_000_000, |v| v.parse().expect("--records N"));
    let n_keys: usize = arg("--keys").map_or(5_000, |v| v.parse().expect("--keys N"));
    let n_teams: usize = arg("--teams").map_or(200, |v| v.parse().expect("--teams N"));
    let writers: usize = arg("--writers").map_or(2, |v| v.parse().expect("--writers N"));
    let runs: usize = arg("--runs").map_or(7, |v| v.parse().expect("--runs N"));
    let load_only = std::env::args().any(|a| a == "--load-only");
    let keep = load_only || std::env::args().any(|a| a == "--keep");
    let reuse = arg("--database");
    let bulk = std::env::args().any(|a| a == "--bulk");
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = reuse
        .clone()
        .unwrap_or_else(|| format!("tollgate_bench_{}", Uuid::new_v4().simple()));
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
    if reuse.is_none() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create database");
    }
    let url = PostgresStore::url_with_database(&admin_url, &name);
    let store = Arc::new(PostgresStore::connect(&url).await.expect("store"));
    println!("database {name}");
    let today = OffsetDateTime::now_utc().date();
    let first_day = today - Duration::days(30);
    let start = first_day.midnight().assume_utc();
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let org = if reuse.is_some() {
        Arc::new(read_org(&mut conn).await)
    } else {
        let org = load(
            &store, &mut conn, total, n_keys, n_teams, writers, first_day, bulk,
        )
        .await;
        if load_only {
            println!("loaded; kept database {name}");
            return;
        }
        org
    };
    let (n_keys, n_teams) = (org.keys.len(), org.teams.len());

    // Spend reports.
    let until = today.next_day().unwrap().midnight().assume_utc();
    let month = SpendQuery {
        since: start,
        until,
        interval: Interval::None,
        group_by: Vec::new(),
        virtual_key_id: None,
        team_id: None,
        customer_id: None,
        user_id: None,
        model: None,
        provider: None,
        scope: LogScope::All,
        limit: 1_000_001,
    };
    let hot_key = org.keys[0];
    let week_ago = until - Duration::days(7);
    let spend_cases: Vec<(&str, SpendQuery)> = vec![
        ("month, total", month.clone()),
        (
            "month by team (200 groups)",
            SpendQuery {
                group_by: vec![Dimension::Team],
                ..month.clone()
            },
        ),
        (
            "month by key (5,000 groups)",
            SpendQuery {
                group_by: vec![Dimension::Key],
                ..month.clone()
            },
        ),
        (
            "month by customer and model",
            SpendQuery {
                group_by: vec![Dimension::Customer, Dimension::Model],
                ..month.clone()
            },
        ),
        (
            "month by team by day",
            SpendQuery {
                group_by: vec![Dimension::Team],
                interval: Interval::Day,
                ..month.clone()
            },
        ),
        (
            "one team by day",
            SpendQuery {
                interval: Interval::Day,
                team_id: Some(org.teams[0]),
                ..month.clone()
            },
        ),
        (
            "one team's keys, month (team admin)",
            SpendQuery {
                group_by: vec![Dimension::Key],
                scope: LogScope::Team(Some(org.teams[0])),
                ..month.clone()
            },
        ),
        (
            "one key by hour over a week",
            SpendQuery {
                interval: Interval::Hour,
                since: week_ago,
                virtual_key_id: Some(hot_key),
                ..month.clone()
            },
        ),
        (
            "month by model by hour (31 days)",
            SpendQuery {
                interval: Interval::Hour,
                group_by: vec![Dimension::Model],
                ..month.clone()
            },
        ),
    ];
    println!("spend (median of {runs} runs, store call incl. names):");
    for (label, q) in &spend_cases {
        let (ms, rows) = median_ms(runs, || store.query_spend(q)).await;
        let rows = rows.expect("spend");
        println!("  {label}: {ms:.1} ms, {} rows", rows.len());
    }
    // The same month by team straight from the raw rows, for comparison.
    let t = Instant::now();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT team_id, SUM(cost_nano_usd) FROM usage_records \
         WHERE started_at >= $1 AND started_at < $2 GROUP BY team_id) g",
    )
    .bind(start)
    .bind(until)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    println!(
        "  (raw usage_records, month by team: {:.0} ms, {n} groups, one run)",
        t.elapsed().as_secs_f64() * 1000.0
    );

    // Request-log first pages.
    let log = |since: OffsetDateTime| UsageLogQuery {
        since,
        until,
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
        limit: 101,
    };
    // The last day of data and today (the records end at today's midnight).
    let day = until - Duration::days(2);
    let month_window = until - Duration::days(31);
    let quiet_key = org.keys[n_keys - 1];
    let user_key = (0..n_keys).step_by(10).next_back().unwrap();
    let log_cases: Vec<(&str, UsageLogQuery)> = vec![
        ("last day, no filter", log(day)),
        ("31 d, no filter", log(month_window)),
        (
            "last day, busiest key",
            UsageLogQuery {
                virtual_key_id: Some(hot_key),
                ..log(day)
            },
        ),
        (
            "31 d, quietest key",
            UsageLogQuery {
                virtual_key_id: Some(quiet_key),
                ..log(month_window)
            },
        ),
        (
            "31 d, one team",
            UsageLogQuery {
                team_id: Some(org.teams[n_teams - 1]),
                ..log(month_window)
            },
        ),
        (
            "31 d, team scope (team admin)",
            UsageLogQuery {
                scope: LogScope::Team(Some(org.teams[n_teams - 1])),
                ..log(month_window)
            },
        ),
        (
            "31 d, one user",
            UsageLogQuery {
                user_id: org.owners[user_key].2,
                ..log(month_window)
            },
        ),
        (
            "31 d, model",
            UsageLogQuery {
                model: Some("gemini-2.5-pro".into()),
                ..log(month_window)
            },
        ),
        (
            "31 d, status 5xx",
            UsageLogQuery {
                status: Some(StatusFilter::Class(5)),
                ..log(month_window)
            },
        ),
        (
            "31 d, one key, status 5xx",
            UsageLogQuery {
                virtual_key_id: Some(quiet_key),
                status: Some(StatusFilter::Class(5)),
                ..log(month_window)
            },
        ),
    ];
    for phase in ["with the migration-0016 indexes", "without them"] {
        // Without the indexes a month-long page reads the month: three runs are enough.
        let with = !phase.starts_with("without");
        let runs = if with { runs } else { runs.min(3) };
        println!("request logs, first page of 100 ({phase}; median of {runs} runs):");
        for (label, q) in &log_cases {
            let (ms, rows) = median_ms(runs, || store.query_usage_logs(q)).await;
            println!("  {label}: {ms:.1} ms, {} rows", rows.expect("logs").len());
        }
        if with {
            sqlx::raw_sql(
                "DROP INDEX usage_records_started_at_idx, usage_records_key_started_idx, \
                 usage_records_team_started_idx, usage_records_user_started_idx",
            )
            .execute(&mut conn)
            .await
            .expect("drop indexes");
            let bytes: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(pg_total_relation_size(i.inhrelid)), 0)::bigint FROM pg_inherits i WHERE i.inhparent = 'usage_records'::regclass",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            println!("  usage_records without them: {:.0} MB", bytes as f64 / 1e6);
        }
    }

    conn.close().await.ok();
    store.close().await;
    if keep {
        println!("kept database {name}");
    } else {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
    }
}

/// Creates the organisation and stores the month of usage; returns the organisation.
#[allow(clippy::too_many_arguments)]
async fn load(
    store: &Arc<PostgresStore>,
    conn: &mut PgConnection,
    total: usize,
    n_keys: usize,
    n_teams: usize,
    writers: usize,
    first_day: time::Date,
    bulk: bool,
) -> Arc<Org> {
    // The organisation.
    let t = now();
    let mut customers = Vec::new();
    for c in 0..20 {
        let rec = CustomerRecord {
            id: Uuid::new_v4(),
            name: format!("customer-{c}"),
            limits: Default::default(),
            created_at: t,
            updated_at: t,
        };
        store
            .create_customer(&rec, &event())
            .await
            .expect("customer");
        customers.push(rec.id);
    }
    let mut teams = Vec::new();
    for i in 0..n_teams {
        let rec = TeamRecord {
            id: Uuid::new_v4(),
            name: format!("team-{i}"),
            customer_id: Some(customers[i % customers.len()]),
            limits: Default::default(),
            member_key_limits: None,
            content_logging: None,
            mcp_tools: None,
            created_at: t,
            updated_at: t,
        };
        store.create_team(&rec, &event()).await.expect("team");
        teams.push(rec.id);
    }
    let mut keys = Vec::new();
    let mut owners = Vec::new();
    for k in 0..n_keys {
        let team = teams[k % teams.len()];
        let mut sha = [0u8; 32];
        sha[..8].copy_from_slice(&(k as u64).to_le_bytes());
        let rec = VirtualKeyRecord {
            id: Uuid::new_v4(),
            name: format!("key-{k}"),
            description: None,
            key_sha256: sha,
            value_prefix: "sk-tg-bench".into(),
            providers: Vec::new(),
            active: true,
            team_id: Some(team),
            customer_id: None,
            user_id: None,
            governance: Default::default(),
            created_at: t,
            updated_at: t,
        };
        store.create_virtual_key(&rec, &event()).await.expect("key");
        keys.push(rec.id);
        owners.push((
            team,
            customers[(k % teams.len()) % customers.len()],
            (k % 10 == 0).then(Uuid::new_v4),
        ));
    }
    let org = Arc::new(Org {
        keys,
        owners,
        teams,
    });
    println!("{n_keys} keys in {n_teams} teams of 20 customers");

    // A month of usage, through the real insert path.
    store
        .create_usage_partitions(first_day, 33)
        .await
        .expect("partitions");
    let start = first_day.midnight().assume_utc();
    let start_ms = (start.unix_timestamp_nanos() / 1_000_000) as i64;
    let span_ms = 30 * 86_400_000;
    if bulk {
        let t0 = Instant::now();
        let sql = include_str!("spend_bench_bulk.sql")
            .replace(":'start'", &format!("'{start}'"))
            .replace(":n", &total.to_string());
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .expect("bulk load");
        println!(
            "bulk-loaded {total} records in {:.0} s",
            t0.elapsed().as_secs_f64()
        );
        let t1 = Instant::now();
        let migration = include_str!("../../migrations/postgres/0015_usage_rollups.sql");
        let backfill = &migration[migration.find("-- Backfill").expect("backfill")..];
        sqlx::raw_sql(sqlx::AssertSqlSafe(backfill.to_owned()))
            .execute(&mut *conn)
            .await
            .expect("backfill");
        println!(
            "built the rollups with the migration's backfill in {:.0} s",
            t1.elapsed().as_secs_f64()
        );
    }
    let batches = if bulk { 0 } else { total.div_ceil(BATCH) };
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, org, next) = (store.clone(), org.clone(), next.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let records = batch(&org, b, total, start_ms, span_ms);
                    stored += store.insert_usage(&records).await.expect("insert");
                    if b % 2000 == 0 {
                        println!("  batch {b}/{batches}");
                    }
                }
                stored
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    if !bulk {
        println!(
            "stored {stored} records in {secs:.0} s ({:.0} records/s, {writers} writers, batches of {BATCH}, rollups included)",
            stored as f64 / secs
        );
    }
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&mut *conn)
        .await
        .expect("analyze");
    for (label, sql) in [
        (
            "usage_records (all partitions, with indexes)",
            "SELECT COALESCE(SUM(pg_total_relation_size(i.inhrelid)), 0)::bigint FROM pg_inherits i WHERE i.inhparent = 'usage_records'::regclass",
        ),
        (
            "usage_rollup_hourly",
            "SELECT pg_total_relation_size('usage_rollup_hourly')",
        ),
        (
            "usage_rollup_daily",
            "SELECT pg_total_relation_size('usage_rollup_daily')",
        ),
    ] {
        let bytes: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await.unwrap();
        println!("  {label}: {:.0} MB", bytes as f64 / 1e6);
    }
    for table in ["usage_rollup_hourly", "usage_rollup_daily"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        println!("  {table}: {n} rows");
    }

    org
}

/// The organisation of a database loaded before (keys and teams in creation order).
async fn read_org(conn: &mut PgConnection) -> Org {
    let keys: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT vk.id, vk.team_id, t.customer_id FROM virtual_keys vk JOIN teams t ON t.id = vk.team_id \
         ORDER BY CAST(substr(vk.name, 5) AS INT)",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("keys");
    let teams: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM teams ORDER BY CAST(substr(name, 6) AS INT)")
            .fetch_all(&mut *conn)
            .await
            .expect("teams");
    let user: Option<Uuid> =
        sqlx::query_scalar("SELECT user_id FROM usage_records WHERE user_id IS NOT NULL LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .expect("user")
            .flatten();
    let n = keys.len();
    Org {
        keys: keys.iter().map(|k| k.0).collect(),
        owners: keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.1,
                    k.2,
                    (i + 10 >= n && i % 10 == 0).then_some(user).flatten(),
                )
            })
            .collect(),
        teams,
    }
}
