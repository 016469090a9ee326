//! SQLite backend: one file, created if missing, WAL journal, foreign keys enforced.
//!
//! Writers start with `BEGIN IMMEDIATE`, so a mutation holds the write lock from its first
//! statement and concurrent writers wait (`busy_timeout`) instead of failing on lock upgrade.
//!
//! Usage records go to a plain `usage_records` table, unique on `request_id`, with multi-row
//! `INSERT OR IGNORE` statements of a few fixed sizes (each compiled once per connection). Only
//! one process uses the file, so there are no config-change notifications
//! ([`Store::config_changes`](super::Store::config_changes) is `None`).

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{rollup, saturating_i64, usage_started_at};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The SQLite [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and runs the migrations. The
    /// file is readable only by this user (0600), and so are the `-wal` and `-shm` files SQLite
    /// creates next to it (it gives them the database file's mode).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(e.into()))?;
        }
        make_private(path).map_err(|e| StoreError::Database(e.into()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        tracing::info!(path = %path.display(), "opened SQLite store");
        Ok(Self { pool })
    }

    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn listen_config_changes(&self) -> Option<tokio::sync::mpsc::Receiver<super::ConfigChange>> {
        None
    }

    async fn insert_usage_rows(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        // Tool calls (`mcp` set) go to their own log, never to the usage table or the rollups.
        let mcp_stored = insert_mcp_calls(&mut tx, records).await?;
        let usage: Vec<&UsageRecord> = records.iter().filter(|r| r.mcp.is_none()).collect();
        let mut stored: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut rest = &usage[..];
        for (i, &rows) in USAGE_CHUNKS.iter().enumerate() {
            while rest.len() >= rows {
                let (chunk, tail) = rest.split_at(rows);
                rest = tail;
                let mut q = sqlx::query_as::<_, (String,)>(usage_insert_sql(i));
                for r in chunk {
                    q = q
                        .bind(r.request_id.as_str())
                        .bind(r.virtual_key_id.as_str())
                        .bind(r.provider.as_str())
                        .bind(r.model_requested.as_str())
                        .bind(r.model_resolved.as_str())
                        .bind(r.provider_key_id.as_str())
                        .bind(saturating_i64(r.input_tokens))
                        .bind(saturating_i64(r.output_tokens))
                        .bind(saturating_i64(r.cache_read_input_tokens))
                        .bind(saturating_i64(r.cache_write_input_tokens))
                        .bind(i64::from(r.latency_ms))
                        .bind(i64::from(r.time_to_first_token_ms))
                        .bind(i64::from(r.status))
                        .bind(r.error_class.as_str())
                        .bind(started_at_text(usage_started_at(r.started_at_unix_ms)))
                        .bind(r.stream)
                        .bind(saturating_i64(r.cache_write_1h_input_tokens))
                        .bind(r.cost_nano_usd.map(saturating_i64))
                        .bind(i64::from(r.fallback_index))
                        .bind(super::attempts_json(&r.attempts))
                        .bind(super::owner_id(&r.team_id))
                        .bind(super::owner_id(&r.customer_id))
                        .bind(super::owner_id(&r.user_id));
                }
                // RETURNING lists the rows inserted, not those ignored as already stored.
                let ids = q.fetch_all(&mut *tx).await?;
                stored.extend(ids.into_iter().map(|(id,)| id));
            }
        }
        let inserted = stored.len() as u64 + mcp_stored;
        for r in &usage {
            if let Some(c) = &r.content
                && stored.contains(&r.request_id)
            {
                sqlx::query(super::sql::INSERT_REQUEST_CONTENT)
                    .bind(r.request_id.as_str())
                    .bind(started_at_text(usage_started_at(r.started_at_unix_ms)))
                    .bind(c.request.as_ref())
                    .bind(saturating_i64(c.request_bytes))
                    .bind(c.response.as_ref())
                    .bind(saturating_i64(c.response_bytes))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // A record repeated in the batch counts once (the first one was stored).
        let deltas = rollup::deltas(usage.iter().copied(), |r| stored.remove(&r.request_id));
        for (i, rows) in [&deltas.hourly, &deltas.daily].into_iter().enumerate() {
            for (k, s) in rows {
                sqlx::query(rollup_upsert_sql(i))
                    .bind(started_at_text(rollup::bucket_instant(k.bucket_ms)))
                    .bind(k.virtual_key_id.as_str())
                    .bind(k.team_id)
                    .bind(k.customer_id)
                    .bind(k.user_id)
                    .bind(k.provider.as_str())
                    .bind(k.model.as_str())
                    .bind(s.requests)
                    .bind(s.refused_requests)
                    .bind(s.error_requests)
                    .bind(s.input_tokens)
                    .bind(s.output_tokens)
                    .bind(s.cache_read_input_tokens)
                    .bind(s.cache_write_input_tokens)
                    .bind(s.cost_nano_usd)
                    .bind(s.unpriced_requests)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn drop_rollups_before(&self, date: time::Date) -> Result<u64, StoreError> {
        let cutoff = started_at_text(date.midnight().assume_utc());
        let mut deleted = 0;
        for table in rollup::TABLES {
            deleted += sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE bucket < $1"
            )))
            .bind(&cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(deleted)
    }

    async fn create_usage_partitions_for(
        &self,
        _from: time::Date,
        _days: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn drop_usage_before(&self, date: time::Date) -> Result<UsagePurge, StoreError> {
        let cutoff = started_at_text(date.midnight().assume_utc());
        let deleted = sqlx::query("DELETE FROM usage_records WHERE started_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let mcp_calls = purge_mcp_calls(&self.pool, date.midnight().assume_utc()).await?;
        Ok(UsagePurge {
            dropped_partitions: Vec::new(),
            deleted_rows: deleted,
            deleted_mcp_calls: mcp_calls,
        })
    }
}

/// Rows per usage `INSERT` statement. A batch goes out in chunks of these fixed sizes, so the
/// connection's statement cache compiles each statement once instead of parsing a new
/// thousand-row statement per batch (20 binds per row; SQLite allows 32,766 per statement).
const USAGE_CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The `INSERT OR IGNORE` of `USAGE_CHUNKS[i]` rows.
fn usage_insert_sql(i: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; USAGE_CHUNKS.len()] =
        [const { std::sync::OnceLock::new() }; USAGE_CHUNKS.len()];
    SQL[i].get_or_init(|| {
        let row = format!("({})", vec!["?"; 23].join(", "));
        format!(
            "INSERT OR IGNORE INTO usage_records ({}) VALUES {} RETURNING request_id",
            super::sql::USAGE_COLUMNS,
            vec![row; USAGE_CHUNKS[i]].join(", ")
        )
    })
}

/// The upsert of one row into `rollup::TABLES[i]`.
fn rollup_upsert_sql(i: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 2] = [const { std::sync::OnceLock::new() }; 2];
    SQL[i].get_or_init(|| {
        rollup::upsert_sql(
            rollup::TABLES[i],
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
    })
}

/// A rollup `bucket` (fixed-width UTC text) as Unix seconds.
const ROLLUP_BUCKET_EPOCH: &str = "CAST(strftime('%s', bucket) AS INTEGER)";
/// The rollups' "no owner" id (migration 0015): 16 zero bytes, as `Uuid::nil()` binds.
const NIL_ID: &str = "zeroblob(16)";

/// A usage instant as this backend's `started_at` column holds it.
fn usage_instant(t: OffsetDateTime) -> String {
    started_at_text(t)
}

/// Fixed-width UTC text (`2026-01-15T10:00:00.123Z`), so text order is time order.
fn started_at_text(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// `virtual_keys.id` (a 16-byte blob) as the hyphenated lower-case text `usage_records`
/// holds, for the request-log join.
const VK_ID_TEXT: &str = "lower(substr(hex(vk.id), 1, 8) || '-' || substr(hex(vk.id), 9, 4) \
     || '-' || substr(hex(vk.id), 13, 4) || '-' || substr(hex(vk.id), 17, 4) || '-' \
     || substr(hex(vk.id), 21, 12))";

/// Audit queries compare text in the default BINARY collation: code-point order.
const TEXT_ORDER: &str = "";
/// `details.result` of an audit row (indexed by migration 0010).
const AUDIT_RESULT: &str = "json_extract(details, '$.result')";
/// A fixed-width key of an audit row's `at` (`2026-01-15T10:00:00` and nine fraction digits):
/// the column holds RFC 3339 text whose fraction has 0 to 9 digits, which does not sort as time
/// (`10:00:00Z` sorts after `10:00:00.5Z`). Indexed by migration 0010 with this very text.
const AT_KEY: &str = "substr(at, 1, 19) || substr(CASE WHEN substr(at, 20, 1) = '.' \
     THEN rtrim(substr(at, 21), 'Z') ELSE '' END || '000000000', 1, 9)";

/// `AND <at> <op> $t` for audit time filters, on [`AT_KEY`].
fn push_at_bound(qb: &mut sqlx::QueryBuilder<Sqlite>, op: &'static str, t: OffsetDateTime) {
    qb.push(" AND ")
        .push(AT_KEY)
        .push(" ")
        .push(op)
        .push(" ")
        .push_bind(at_key(t));
}

/// [`AT_KEY`] of an instant, computed here.
fn at_key(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let seconds = t
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    format!("{seconds}{:09}", t.nanosecond())
}

/// Nothing to announce: one process owns the file.
async fn notify_committed(_conn: &mut SqliteConnection, _version: u64) -> Result<(), StoreError> {
    Ok(())
}

super::identity::impl_identity_store!(SqliteStore);
super::scim::impl_scim_store!(SqliteStore);
super::cli_login::impl_cli_login_store!(SqliteStore);
super::jobs::impl_job_store!(SqliteStore);

/// One process owns the file: a claim needs no row lock.
const SKIP_LOCKED: &str = "";
super::impl_sql_store!(SqliteStore, Sqlite, "sqlite");
super::mcp::impl_mcp_store!(SqliteStore, Sqlite);

/// Creates the database file readable only by this user if it is missing, and takes group and
/// other access away from an existing one and its `-wal`/`-shm` files (left by an older version
/// or a crash). SQLite gives the files it creates the database file's mode.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mut sidecars = [path.to_path_buf(), path.to_path_buf(), path.to_path_buf()];
        sidecars[1].as_mut_os_string().push("-wal");
        sidecars[2].as_mut_os_string().push("-shm");
        for file in &sidecars {
            match std::fs::metadata(file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::SqliteStore;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_audit_time_key_is_the_indexed_expression_and_sorts_as_time() {
        let migration = include_str!("../../../migrations/sqlite/0010_audit_fields.sql");
        let flat = super::AT_KEY
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(migration.contains(&format!("({flat})")), "{flat}");
        let whole = time::macros::datetime!(2026-01-15 10:00:00 UTC);
        let half = time::macros::datetime!(2026-01-15 10:00:00.5 UTC);
        assert_eq!(super::at_key(whole), "2026-01-15T10:00:00000000000");
        assert_eq!(super::at_key(half), "2026-01-15T10:00:00500000000");
        assert!(super::at_key(whole) < super::at_key(half));
    }

    #[tokio::test]
    async fn database_wal_and_shm_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tollgate.db");
        let store = SqliteStore::open(&db).await.unwrap();
        // The migrations wrote through the WAL, so all three files exist while the pool is open.
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("tollgate.db{suffix}"));
            assert!(file.exists(), "{} missing", file.display());
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        drop(store);
    }

    #[tokio::test]
    async fn an_existing_world_readable_database_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tollgate.db");
        drop(SqliteStore::open(&db).await.unwrap());
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("tollgate.db{suffix}"));
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _store = SqliteStore::open(&db).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("tollgate.db{suffix}"));
            if file.exists() {
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
        }
    }
}
