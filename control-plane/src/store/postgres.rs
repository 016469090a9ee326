//! PostgreSQL backend.
//!
//! Writers serialise on the `config_version` row (the first statement of every mutation updates
//! it); snapshot reads use a `REPEATABLE READ READ ONLY` transaction so all tables are read at one
//! point in time.
//!
//! Replicas: every mutation runs `pg_notify('tollgate_config', '<version>')` in its transaction
//! (PostgreSQL delivers it at commit, never for a rolled-back change), and
//! [`Store::config_changes`](super::Store::config_changes) listens on a dedicated connection.
//!
//! Usage: `usage_records` is range-partitioned by UTC day on `started_at` (see
//! `migrations/postgres/0002_usage_records.sql`). Inserts bind one array per column and
//! `UNNEST` them (any number of rows per statement, one parse), chunked and in one transaction,
//! with `ON CONFLICT (request_id, started_at) DO NOTHING`. Partition DDL (create ahead, drop for
//! retention) runs under a transaction-scoped advisory lock so replicas do not race.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use time::Date;
use tokio::sync::mpsc;

use super::{CONFIG_CHANNEL, rollup, saturating_i64, usage_started_at};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// `url` with its database name replaced by `db` (same server, user and parameters): how
    /// tests and benchmarks reach a database they created through the server's admin database.
    pub fn url_with_database(url: &str, db: &str) -> String {
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let path_start = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        let mut out = format!("{}/{db}", &base[..path_start]);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }

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

    fn listen_config_changes(&self) -> Option<mpsc::Receiver<ConfigChange>> {
        let (tx, rx) = mpsc::channel(64);
        let options = (*self.pool.connect_options()).clone();
        tokio::spawn(listen_loop(options, tx));
        Some(rx)
    }

    async fn insert_usage_rows(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        lock_partitions_shared(&mut tx).await?;
        // Tool calls (`mcp` set) go to their own log, never to the usage table or the rollups.
        let mcp_stored = insert_mcp_calls(&mut tx, records).await?;
        let usage: Vec<&UsageRecord> = records.iter().filter(|r| r.mcp.is_none()).collect();
        // Every raw insert first, then the rollups in key order (no deadlock between
        // replicas: see `rollup`).
        let mut stored = std::collections::HashSet::new();
        for chunk in usage.chunks(USAGE_ROWS_PER_STATEMENT) {
            stored.extend(insert_usage_chunk(&mut tx, chunk).await?);
        }
        let inserted = stored.len() as u64 + mcp_stored;
        for r in &usage {
            if let Some(c) = &r.content
                && stored.contains(&(r.request_id.clone(), rollup::stored_start_ms(r)))
            {
                sqlx::query(super::sql::INSERT_REQUEST_CONTENT)
                    .bind(r.request_id.as_str())
                    .bind(usage_started_at(r.started_at_unix_ms))
                    .bind(c.request.as_ref())
                    .bind(saturating_i64(c.request_bytes))
                    .bind(c.response.as_ref())
                    .bind(saturating_i64(c.response_bytes))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let deltas = rollup::deltas(usage.iter().copied(), |r| {
            // A record repeated in the batch counts once, as the table stored it once.
            stored.remove(&(r.request_id.clone(), rollup::stored_start_ms(r)))
        });
        for (table, rows) in rollup::TABLES
            .into_iter()
            .zip([&deltas.hourly, &deltas.daily])
        {
            let entries: Vec<_> = rows.iter().collect();
            for chunk in entries.chunks(USAGE_ROWS_PER_STATEMENT) {
                upsert_rollup_chunk(&mut tx, table, chunk).await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn drop_rollups_before(&self, date: Date) -> Result<u64, StoreError> {
        let cutoff = date.midnight().assume_utc();
        let mut deleted = 0;
        for table in rollup::TABLES {
            deleted += sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE bucket < $1"
            )))
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(deleted)
    }

    async fn create_usage_partitions_for(
        &self,
        from: Date,
        days: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        let mut day = from;
        for _ in 0..days {
            if self.create_usage_partition(day).await? {
                created.push(partition_name(day));
            }
            match day.next_day() {
                Some(next) => day = next,
                None => break,
            }
        }
        Ok(created)
    }

    /// Creates the partition of `day` unless it exists. Rows the DEFAULT partition holds for that
    /// day are moved into the new table before it is attached (attaching fails otherwise).
    async fn create_usage_partition(&self, day: Date) -> Result<bool, StoreError> {
        let Some(next) = day.next_day() else {
            return Ok(false);
        };
        let name = partition_name(day);
        let mut tx = self.begin_write().await?;
        lock_partitions(&mut tx).await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            tx.commit().await?;
            return Ok(false);
        }
        let (from, to) = (utc_midnight_literal(day), utc_midnight_literal(next));
        // DDL takes no bind parameters; `name`, `from` and `to` are formatted from a `Date` here.
        for statement in [
            format!(
                "CREATE TABLE {name} (LIKE usage_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            ),
            format!(
                "WITH moved AS (DELETE FROM usage_records_default \
                 WHERE started_at >= '{from}' AND started_at < '{to}' RETURNING *) \
                 INSERT INTO {name} SELECT * FROM moved"
            ),
            format!(
                "ALTER TABLE usage_records ATTACH PARTITION {name} FOR VALUES FROM ('{from}') TO ('{to}')"
            ),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(partition = %name, "created usage partition");
        Ok(true)
    }

    async fn drop_usage_before(&self, date: Date) -> Result<UsagePurge, StoreError> {
        let mut tx = self.begin_write().await?;
        lock_partitions(&mut tx).await?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_records'::regclass ORDER BY c.relname",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut dropped = Vec::new();
        for name in names {
            // Only our daily partitions; anything else attached by hand is left alone.
            if partition_day(&name).is_some_and(|d| d < date) {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {name}")))
                    .execute(&mut *tx)
                    .await?;
                dropped.push(name);
            }
        }
        let deleted = sqlx::query("DELETE FROM usage_records_default WHERE started_at < $1")
            .bind(date.midnight().assume_utc())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        let mcp_calls = purge_mcp_calls(&self.pool, date.midnight().assume_utc()).await?;
        if !dropped.is_empty() || deleted > 0 || mcp_calls > 0 {
            tracing::info!(
                partitions = ?dropped,
                default_rows = deleted,
                mcp_calls,
                before = %date,
                "usage retention removed old records"
            );
        }
        Ok(UsagePurge {
            dropped_partitions: dropped,
            deleted_rows: deleted,
            deleted_mcp_calls: mcp_calls,
        })
    }
}

/// Rows per `UNNEST` insert: large enough to amortise the round trip, small enough to keep each
/// statement's arrays a few megabytes at most.
const USAGE_ROWS_PER_STATEMENT: usize = 5000;

const INSERT_USAGE: &str = "INSERT INTO usage_records (request_id, virtual_key_id, provider, \
     model_requested, model_resolved, provider_key_id, input_tokens, output_tokens, \
     cache_read_input_tokens, cache_write_input_tokens, latency_ms, time_to_first_token_ms, \
     status, error_class, started_at, stream, cache_write_1h_input_tokens, cost_nano_usd, \
     fallback_index, attempts, team_id, customer_id, user_id) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], \
     $13::int4[], $14::text[], $15::timestamptz[], $16::bool[], $17::int8[], $18::int8[], \
     $19::int4[], $20::text[], $21::uuid[], $22::uuid[], $23::uuid[]) \
     ON CONFLICT (request_id, started_at) DO NOTHING RETURNING request_id, started_at";

/// Inserts the rows; returns the `(request_id, started_at ms)` of those stored (not skipped).
async fn insert_usage_chunk(
    conn: &mut PgConnection,
    rows: &[&UsageRecord],
) -> Result<Vec<(String, i64)>, StoreError> {
    let n = rows.len();
    let mut request_id = Vec::with_capacity(n);
    let mut virtual_key_id = Vec::with_capacity(n);
    let mut provider = Vec::with_capacity(n);
    let mut model_requested = Vec::with_capacity(n);
    let mut model_resolved = Vec::with_capacity(n);
    let mut provider_key_id = Vec::with_capacity(n);
    let mut input_tokens = Vec::with_capacity(n);
    let mut output_tokens = Vec::with_capacity(n);
    let mut cache_read = Vec::with_capacity(n);
    let mut cache_write = Vec::with_capacity(n);
    let mut latency_ms = Vec::with_capacity(n);
    let mut ttft_ms = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut error_class = Vec::with_capacity(n);
    let mut started_at = Vec::with_capacity(n);
    let mut stream = Vec::with_capacity(n);
    let mut cache_write_1h = Vec::with_capacity(n);
    let mut cost = Vec::with_capacity(n);
    let mut fallback_index = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut team_id = Vec::with_capacity(n);
    let mut customer_id = Vec::with_capacity(n);
    let mut user_id = Vec::with_capacity(n);
    for r in rows {
        request_id.push(r.request_id.as_str());
        virtual_key_id.push(r.virtual_key_id.as_str());
        provider.push(r.provider.as_str());
        model_requested.push(r.model_requested.as_str());
        model_resolved.push(r.model_resolved.as_str());
        provider_key_id.push(r.provider_key_id.as_str());
        input_tokens.push(saturating_i64(r.input_tokens));
        output_tokens.push(saturating_i64(r.output_tokens));
        cache_read.push(saturating_i64(r.cache_read_input_tokens));
        cache_write.push(saturating_i64(r.cache_write_input_tokens));
        latency_ms.push(i64::from(r.latency_ms));
        ttft_ms.push(i64::from(r.time_to_first_token_ms));
        status.push(i32::try_from(r.status).unwrap_or(i32::MAX));
        error_class.push(r.error_class.as_str());
        started_at.push(usage_started_at(r.started_at_unix_ms));
        stream.push(r.stream);
        cache_write_1h.push(saturating_i64(r.cache_write_1h_input_tokens));
        cost.push(r.cost_nano_usd.map(saturating_i64));
        fallback_index.push(i32::try_from(r.fallback_index).unwrap_or(i32::MAX));
        attempts.push(super::attempts_json(&r.attempts));
        team_id.push(super::owner_id(&r.team_id));
        customer_id.push(super::owner_id(&r.customer_id));
        user_id.push(super::owner_id(&r.user_id));
    }
    let stored: Vec<(String, time::OffsetDateTime)> = sqlx::query_as(INSERT_USAGE)
        .bind(request_id)
        .bind(virtual_key_id)
        .bind(provider)
        .bind(model_requested)
        .bind(model_resolved)
        .bind(provider_key_id)
        .bind(input_tokens)
        .bind(output_tokens)
        .bind(cache_read)
        .bind(cache_write)
        .bind(latency_ms)
        .bind(ttft_ms)
        .bind(status)
        .bind(error_class)
        .bind(started_at)
        .bind(stream)
        .bind(cache_write_1h)
        .bind(cost)
        .bind(fallback_index)
        .bind(attempts)
        .bind(team_id)
        .bind(customer_id)
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(stored
        .into_iter()
        .map(|(id, at)| (id, (at.unix_timestamp_nanos() / 1_000_000) as i64))
        .collect())
}

/// Adds `rows` (in key order) to the rollup `table`.
async fn upsert_rollup_chunk(
    conn: &mut PgConnection,
    table: &'static str,
    rows: &[(&rollup::RollupKey, &rollup::RollupSums)],
) -> Result<(), StoreError> {
    static SQL: [std::sync::OnceLock<String>; 2] = [const { std::sync::OnceLock::new() }; 2];
    let i = usize::from(table != rollup::TABLES[0]);
    let sql = SQL[i].get_or_init(|| {
        rollup::upsert_sql(
            table,
            "SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::uuid[], $4::uuid[], \
             $5::uuid[], $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], \
             $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[])",
        )
    });
    let col =
        |f: fn(&rollup::RollupSums) -> i64| rows.iter().map(|(_, s)| f(s)).collect::<Vec<_>>();
    sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(
            rows.iter()
                .map(|(k, _)| rollup::bucket_instant(k.bucket_ms))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(k, _)| k.virtual_key_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(k, _)| k.team_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.customer_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.user_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(k, _)| k.provider.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(k, _)| k.model.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(col(|s| s.requests))
        .bind(col(|s| s.refused_requests))
        .bind(col(|s| s.error_requests))
        .bind(col(|s| s.input_tokens))
        .bind(col(|s| s.output_tokens))
        .bind(col(|s| s.cache_read_input_tokens))
        .bind(col(|s| s.cache_write_input_tokens))
        .bind(col(|s| s.cost_nano_usd))
        .bind(col(|s| s.unpriced_requests))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Serialises partition DDL across replicas (released at commit or rollback).
async fn lock_partitions(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(USAGE_PARTITION_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The usage inserts' side of [`lock_partitions`]: shared among inserts, so a partition is never
/// attached while an insert routes rows into the DEFAULT partition (PostgreSQL then refuses the
/// insert: "new row for relation usage_records_default violates partition constraint").
async fn lock_partitions_shared(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(USAGE_PARTITION_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The advisory lock key of usage partition changes: an arbitrary constant, ASCII "tgusage" as
/// an integer.
const USAGE_PARTITION_LOCK: i64 = 0x0074_6775_7361_6765;

/// `usage_records_p20260115`.
fn partition_name(day: Date) -> String {
    format!(
        "usage_records_p{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The day of a partition named by [`partition_name`].
fn partition_day(name: &str) -> Option<Date> {
    let digits = name.strip_prefix("usage_records_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[0..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..8].parse().ok()?;
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

/// `2026-01-15 00:00:00+00`.
fn utc_midnight_literal(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02} 00:00:00+00",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Audit queries compare text in code-point order, as the indexes of migration 0010 do.
const TEXT_ORDER: &str = " COLLATE \"C\"";
/// `details.result` of an audit row (indexed by migration 0010).
const AUDIT_RESULT: &str = "(details->>'result')";

/// `AND at <op> $t` for audit time filters.
fn push_at_bound(qb: &mut sqlx::QueryBuilder<Postgres>, op: &'static str, t: time::OffsetDateTime) {
    qb.push(" AND at ").push(op).push(" ").push_bind(t);
}

/// Announces a committed config version to every listening replica (delivered at commit).
async fn notify_committed(conn: &mut PgConnection, version: u64) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CONFIG_CHANNEL)
        .bind(version.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const LISTEN_BACKOFF_START: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A listening session that lasted this long resets the backoff.
const LISTEN_STABLE_AFTER: Duration = Duration::from_secs(30);

/// Listens on [`CONFIG_CHANNEL`] until `tx` is closed, reconnecting with jittered exponential
/// backoff. Each listening session uses its own one-connection pool, dropped (and with it the
/// connection) when the session ends, so a broken connection is never reused.
async fn listen_loop(options: PgConnectOptions, tx: mpsc::Sender<ConfigChange>) {
    let mut backoff = LISTEN_BACKOFF_START;
    loop {
        let started = Instant::now();
        let connected = tokio::select! {
            _ = tx.closed() => return,
            r = connect_listener(options.clone()) => r,
        };
        match connected {
            Ok(mut listener) => {
                tracing::debug!(channel = CONFIG_CHANNEL, "listening for config changes");
                // Changes committed while nobody listened are unknown: resync.
                if tx.send(ConfigChange::Resync).await.is_err() {
                    return;
                }
                loop {
                    let next = tokio::select! {
                        _ = tx.closed() => return,
                        n = listener.try_recv() => n,
                    };
                    match next {
                        Ok(Some(notification)) => match notification.payload().parse::<u64>() {
                            Ok(version) => {
                                if tx.send(ConfigChange::Committed(version)).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => tracing::warn!(
                                channel = CONFIG_CHANNEL,
                                "ignoring a config notification whose payload is not a version"
                            ),
                        },
                        Ok(None) => {
                            tracing::warn!(
                                "lost the config-change listener connection; reconnecting"
                            );
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "config-change listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot listen for config changes");
            }
        }
        if started.elapsed() >= LISTEN_STABLE_AFTER {
            backoff = LISTEN_BACKOFF_START;
        }
        let sleep = jitter(backoff);
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(sleep) => {}
        }
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

async fn connect_listener(options: PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends the session (we reconnect ourselves, after a backoff).
    listener.eager_reconnect(false);
    listener.listen(CONFIG_CHANNEL).await?;
    Ok(listener)
}

/// 50-100 % of `d`, so replicas that lost the database together do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

/// `virtual_keys.id` as the hyphenated lower-case text `usage_records` holds, for the
/// request-log join.
const VK_ID_TEXT: &str = "CAST(vk.id AS TEXT)";

/// A rollup `bucket` as Unix seconds.
const ROLLUP_BUCKET_EPOCH: &str = "CAST(EXTRACT(EPOCH FROM bucket) AS BIGINT)";
/// The rollups' "no owner" id (migration 0015).
const NIL_ID: &str = "CAST('00000000-0000-0000-0000-000000000000' AS UUID)";

/// A usage instant as this backend's `started_at` column holds it.
fn usage_instant(t: time::OffsetDateTime) -> time::OffsetDateTime {
    t
}

super::identity::impl_identity_store!(PostgresStore);
super::scim::impl_scim_store!(PostgresStore);
super::cli_login::impl_cli_login_store!(PostgresStore);
super::jobs::impl_job_store!(PostgresStore);

/// Replicas claiming at once each take a different job (or none), never wait for each other.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
super::impl_sql_store!(PostgresStore, Postgres, "postgres");
super::mcp::impl_mcp_store!(PostgresStore, Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = Date::from_calendar_date(2026, time::Month::January, 5).unwrap();
        assert_eq!(partition_name(day), "usage_records_p20260105");
        assert_eq!(partition_day("usage_records_p20260105"), Some(day));
        assert_eq!(partition_day("usage_records_default"), None);
        assert_eq!(partition_day("usage_records_p2026010"), None);
        assert_eq!(partition_day("usage_records_p20261340"), None);
        assert_eq!(utc_midnight_literal(day), "2026-01-05 00:00:00+00");
    }
}
