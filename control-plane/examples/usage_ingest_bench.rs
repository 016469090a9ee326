//! Usage ingestion rate into PostgreSQL, through the same store method the gRPC `Report` service
//! and `ControlPlane::ingest_usage` use (one transaction per batch, idempotent on request id).
//!
//! ```text
//! cargo run --release -p tollgate-control-plane --example usage_ingest_bench -- \
//!     [--records 200000] [--batch 500] [--writers 1,4]
//! ```
//!
//! It creates a fresh database next to `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), prepares today's partitions, inserts the
//! records in batches with each number of concurrent writers (one writer ~ one data-plane
//! stream), resends the first run's batches once (all duplicates), prints records/s, and drops
//! the database.

use std::sync::Arc;
use std::time::Instant;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tollgate_control_plane::store::UsageRecord;
use tollgate_control_plane::{PostgresStore, Store};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn records(run: usize, n: usize, now_ms: i64) -> Vec<UsageRecord> {
    (0..n)
        .map(|i| UsageRecord {
            request_id: format!("{}-{run}-{i}", uuid::Uuid::new_v4()),
            virtual_key_id: format!("0197a3c2-7d1e-7b6a-9f00-{:012}", i % 250),
            provider: "bedrock".into(),
            model_requested: "claude-sonnet-4-6".into(),
            model_resolved: "global.anthropic.claude-sonnet-4-6-20260101-v1:0".into(),
            provider_key_id: "0197a3c2-7d1e-7b6a-9f00-000000000001".into(),
            input_tokens: 1200 + (i % 5000) as u64,
            output_tokens: 300 + (i % 800) as u64,
            cache_read_input_tokens: (i % 3) as u64 * 10_000,
            cache_write_input_tokens: (i % 7) as u64 * 500,
            latency_ms: 2_000 + (i % 9000) as u32,
            time_to_first_token_ms: 400 + (i % 600) as u32,
            status: if i % 50 == 0 { 429 } else { 200 },
            error_class: if i % 50 == 0 {
                "rate_limit_error".into()
            } else {
                String::new()
            },
            started_at_unix_ms: now_ms - (i as i64 % 3_600_000),
            stream: i % 4 != 0,
            cache_write_1h_input_tokens: (i % 7) as u64 * 100,
            cost_nano_usd: Some(4_000_000 + (i % 5000) as u64 * 3_000),
            fallback_index: 0,
            attempts: Vec::new(),
            // 250 keys in 25 teams of 5 customers; every other key a user's personal key.
            team_id: format!("0197a3c2-7d1e-7b6a-9f01-{:012}", i % 25),
            customer_id: format!("0197a3c2-7d1e-7b6a-9f02-{:012}", i % 5),
            user_id: if i % 2 == 0 {
                format!("0197a3c2-7d1e-7b6a-9f03-{:012}", i % 250)
            } else {
                String::new()
            },
            content: None,
            mcp: None,
        })
        .collect()
}

/// Inserts `batches` with `writers` concurrent tasks; returns (rows stored, seconds).
async fn run(
    store: Arc<PostgresStore>,
    batches: Arc<Vec<Vec<UsageRecord>>>,
    writers: usize,
) -> (u64, f64) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, batches, next) = (store.clone(), batches.clone(), next.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    stored += store.insert_usage(batch).await.expect("insert");
                }
                stored
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap();
    }
    (stored, t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let total: usize = arg("--records").map_or(200_000, |v| v.parse().expect("--records N"));
    let batch: usize = arg("--batch").map_or(500, |v| v.parse().expect("--batch N"));
    let writer_counts: Vec<usize> = arg("--writers")
        .unwrap_or_else(|| "1,4".into())
        .split(',')
        .map(|w| w.parse().expect("--writers 1,4"))
        .collect();
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("tollgate_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create database");

    let store = Arc::new(
        PostgresStore::connect(&PostgresStore::url_with_database(&admin_url, &name))
            .await
            .expect("store"),
    );
    let today = time::OffsetDateTime::now_utc().date();
    store
        .create_usage_partitions(today.previous_day().unwrap(), 3)
        .await
        .expect("partitions");
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;

    println!("{total} records per run, batches of {batch}, one transaction per batch");
    let mut first_run = None;
    for (run_no, &writers) in writer_counts.iter().enumerate() {
        let all = records(run_no, total, now_ms);
        let batches: Arc<Vec<Vec<UsageRecord>>> =
            Arc::new(all.chunks(batch).map(<[UsageRecord]>::to_vec).collect());
        let (stored, secs) = run(store.clone(), batches.clone(), writers).await;
        assert_eq!(stored as usize, total);
        println!(
            "  {writers} writer(s): {stored} new rows in {secs:.2} s = {:.0} records/s",
            stored as f64 / secs
        );
        first_run.get_or_insert(batches);
    }
    if let Some(batches) = first_run {
        let (stored, secs) = run(store.clone(), batches, 1).await;
        assert_eq!(stored, 0, "a resend stores nothing");
        println!(
            "  resend of the first run (all duplicates), 1 writer: {:.0} records/s",
            total as f64 / secs
        );
    }
    let counts = store.usage_by_virtual_key().await.expect("counts");
    println!(
        "  stored: {} rows over {} virtual keys",
        counts.values().map(|t| t.requests).sum::<u64>(),
        counts.len()
    );

    store.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop database");
}
