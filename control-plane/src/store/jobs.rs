//! Storage of jobs (migration 0017), both backends, the usage reads and writes a cost
//! recomputation makes, and the output of exports (migration 0019: chunks of bytes written with
//! the checkpoint that accounts for them).
//!
//! Any control-plane replica may run a job. Claiming is one statement (PostgreSQL: the row
//! picked `FOR UPDATE SKIP LOCKED`; SQLite: one process owns the file), so two replicas never
//! run the same job; a running job's heartbeat is renewed at every checkpoint, and a job whose
//! heartbeat is older than the caller's `stale_before` is claimed again (its replica died).

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::jobs::{JobKind, JobRecord, JobState, UsageCostRow};
use crate::model::AuditEvent;

/// What a checkpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    Continue,
    /// An admin asked to cancel it: stop now.
    Cancel,
    /// This runner no longer owns the job (another replica took it over): stop without
    /// finishing it.
    Lost,
}

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new queued job, audited in the same transaction.
    async fn create_job(&self, job: &JobRecord, event: &AuditEvent) -> Result<(), StoreError>;

    async fn get_job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError>;

    /// The newest `limit` jobs, newest first.
    async fn list_jobs(&self, limit: u32) -> Result<Vec<JobRecord>, StoreError>;

    /// Takes the oldest queued job, or a running one whose heartbeat is older than
    /// `stale_before`, for `owner`: it becomes running with `owner` and a fresh heartbeat.
    async fn claim_job(
        &self,
        owner: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<Option<JobRecord>, StoreError>;

    /// Records progress (and renews the heartbeat) of a job `owner` runs.
    async fn checkpoint_job(
        &self,
        id: Uuid,
        owner: &str,
        progress: &Progress,
        now: OffsetDateTime,
    ) -> Result<Checkpoint, StoreError>;

    /// Ends a job `owner` runs (`state` final); false when `owner` no longer runs it.
    async fn finish_job(
        &self,
        id: Uuid,
        owner: &str,
        state: JobState,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Cancels a queued job at once, or asks a running one to stop at its next checkpoint;
    /// audited. `None`: no such job. A finished job is returned unchanged (not audited).
    async fn cancel_job(
        &self,
        id: Uuid,
        event: &AuditEvent,
    ) -> Result<Option<JobRecord>, StoreError>;

    /// Appends chunk `seq` of a job's output and records `progress` in one transaction, if
    /// `owner` still runs the job and no cancellation was asked for (otherwise nothing is
    /// written and the answer says why). A chunk is never written twice: its checkpoint moves
    /// the cursor past it in the same commit.
    async fn append_job_output(
        &self,
        id: Uuid,
        owner: &str,
        seq: u64,
        bytes: &[u8],
        progress: &Progress,
        now: OffsetDateTime,
    ) -> Result<Checkpoint, StoreError>;

    /// Like [`JobStore::append_job_output`], but first deletes the job's chunks from `seq` on, in
    /// the same transaction: a runner that took an export over rewrites the slice a previous
    /// run left half written (its rows may have changed order since), so no row is written
    /// twice and none is lost. Empty `bytes` write no chunk (the deletion and the checkpoint
    /// still happen).
    async fn rewrite_job_output(
        &self,
        id: Uuid,
        owner: &str,
        seq: u64,
        bytes: &[u8],
        progress: &Progress,
        now: OffsetDateTime,
    ) -> Result<Checkpoint, StoreError>;

    /// The exports that are queued or running, oldest first.
    async fn active_exports(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// Up to `limit` chunks of a job's output after chunk `after` (`None`: from the first), in
    /// order.
    async fn job_output(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Deletes the output of the jobs that finished before `finished_before`; returns how many
    /// chunks went.
    async fn purge_job_output(&self, finished_before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Usage records that started in `[from, to)`.
    async fn count_usage(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// What re-pricing needs of the usage records that started in `[from, to)`.
    async fn usage_cost_rows(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageCostRow>, StoreError>;

    /// Gives each record of `changes` its new cost, if it still has the cost it was read with
    /// (compare and set: a concurrent recomputation's change is not overwritten), and adds the
    /// differences to the spend rollups of the records' buckets, in one transaction. Returns
    /// how many records changed.
    async fn set_usage_costs(&self, changes: &[CostChange]) -> Result<u64, StoreError>;
}

/// A stored record and the cost it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostChange {
    pub row: UsageCostRow,
    /// `None`: unpriced.
    pub cost_nano_usd: Option<i64>,
}

/// A job's progress at a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    pub cursor: Option<String>,
    pub message: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub params: sqlx::types::Json<serde_json::Value>,
    pub state: String,
    pub done: i64,
    pub total: Option<i64>,
    pub cursor: Option<String>,
    pub message: Option<String>,
    pub created_by: String,
    pub owner: Option<String>,
    pub cancel_requested: bool,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub heartbeat_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "jobs",
            reason,
        };
        Ok(JobRecord {
            id: r.id,
            kind: JobKind::parse(&r.kind)
                .ok_or_else(|| corrupt(format!("unknown kind {:?} of {}", r.kind, r.id)))?,
            params: r.params.0,
            state: JobState::parse(&r.state)
                .ok_or_else(|| corrupt(format!("unknown state {:?} of {}", r.state, r.id)))?,
            done: u64::try_from(r.done).unwrap_or(0),
            total: r.total.map(|t| u64::try_from(t).unwrap_or(0)),
            cursor: r.cursor,
            message: r.message,
            created_by: r.created_by,
            owner: r.owner,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
            finished_at: r.finished_at,
        })
    }
}

pub(crate) mod sql {
    pub const COLUMNS: &str = "id, kind, params, state, done, total, cursor, message, created_by, \
         owner, cancel_requested, created_at, started_at, heartbeat_at, finished_at";
    pub const INSERT: &str = "INSERT INTO jobs (id, kind, params, state, done, total, cursor, \
         message, created_by, owner, cancel_requested, created_at, started_at, heartbeat_at, \
         finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
    /// `{LOCK}`: the backend's row lock of the picked job.
    pub const CLAIM: &str = "UPDATE jobs SET state = 'running', owner = $1, heartbeat_at = $2, \
         started_at = COALESCE(started_at, $2) WHERE id = (SELECT id FROM jobs \
         WHERE state = 'queued' OR (state = 'running' AND heartbeat_at < $3) \
         ORDER BY created_at, id LIMIT 1{LOCK}) RETURNING ";
    pub const CHECKPOINT: &str = "UPDATE jobs SET done = $3, total = $4, cursor = $5, \
         message = $6, heartbeat_at = $7 WHERE id = $1 AND owner = $2 AND state = 'running' \
         RETURNING cancel_requested";
    pub const FINISH: &str = "UPDATE jobs SET state = $3, message = $4, finished_at = $5, \
         heartbeat_at = $5 WHERE id = $1 AND owner = $2 AND state = 'running'";
    pub const CANCEL_QUEUED: &str = "UPDATE jobs SET state = 'cancelled', cancel_requested = TRUE, \
         message = 'cancelled before it started', finished_at = $2 \
         WHERE id = $1 AND state = 'queued'";
    pub const CANCEL_RUNNING: &str =
        "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'";
    pub const OUTPUT_INSERT: &str =
        "INSERT INTO job_output (job_id, seq, bytes) VALUES ($1, $2, $3)";
    pub const OUTPUT_DELETE_FROM: &str = "DELETE FROM job_output WHERE job_id = $1 AND seq >= $2";
    pub const OUTPUT_READ: &str = "SELECT seq, bytes FROM job_output WHERE job_id = $1 \
         AND seq > $2 ORDER BY seq LIMIT $3";
    pub const OUTPUT_PURGE: &str = "DELETE FROM job_output WHERE job_id IN \
         (SELECT id FROM jobs WHERE finished_at < $1)";
    pub const COUNT_USAGE: &str =
        "SELECT COUNT(*) FROM usage_records WHERE started_at >= $1 AND started_at < $2";
    pub const USAGE_COST_ROWS: &str = "SELECT request_id, started_at, virtual_key_id, team_id, \
         customer_id, user_id, provider, model_resolved, \
         provider_key_id, input_tokens, output_tokens, cache_read_input_tokens, \
         cache_write_input_tokens, cache_write_1h_input_tokens, cost_nano_usd \
         FROM usage_records WHERE started_at >= $1 AND started_at < $2 \
         ORDER BY started_at, request_id";
    /// Compare and set: only a record that still has the cost it was read with.
    pub const SET_COST: &str = "UPDATE usage_records SET cost_nano_usd = $3 \
         WHERE request_id = $1 AND started_at = $2 AND cost_nano_usd IS NOT DISTINCT FROM $4";
    /// Adds a cost difference to one rollup row (`{TABLE}`: hourly or daily).
    pub const ROLLUP_ADD: &str = "UPDATE {TABLE} SET cost_nano_usd = cost_nano_usd + $1, \
         unpriced_requests = unpriced_requests + $2 WHERE bucket = $3 AND virtual_key_id = $4 \
         AND team_id = $5 AND customer_id = $6 AND user_id = $7 AND provider = $8 AND model = $9";
}

/// Implements [`JobStore`] for a backend; expanded next to `impl_sql_store!`, whose
/// `lock_writers` and `audit` it uses. The backend provides `SKIP_LOCKED` (the row lock of a
/// claim) and `usage_instant`; the rollup keys and tables come from `store/rollup.rs`.
macro_rules! impl_job_store {
    ($store:ty) => {
        use $crate::store::jobs::{Checkpoint, JobRow, JobStore, Progress, sql as jobsql};

        fn job_select(tail: &str) -> String {
            format!("SELECT {} FROM jobs {tail}", jobsql::COLUMNS)
        }

        /// Checkpoints `progress` and writes chunk `seq` (none when `bytes` is empty), after
        /// deleting the chunks from `seq` on when `rewrite`; one transaction.
        #[allow(clippy::too_many_arguments)]
        async fn write_job_output(
            store: &$store,
            id: uuid::Uuid,
            owner: &str,
            seq: u64,
            rewrite: bool,
            bytes: &[u8],
            progress: &Progress,
            now: time::OffsetDateTime,
        ) -> Result<Checkpoint, StoreError> {
            let mut tx = store.begin_write().await?;
            // The checkpoint first: on PostgreSQL it locks the job's row, so no claim can take
            // the job over between it and the chunk.
            let cancel: Option<bool> = sqlx::query_scalar(jobsql::CHECKPOINT)
                .bind(id)
                .bind(owner)
                .bind(i64::try_from(progress.done).unwrap_or(i64::MAX))
                .bind(progress.total.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
                .bind(&progress.cursor)
                .bind(&progress.message)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            match cancel {
                None => return Ok(Checkpoint::Lost),
                Some(true) => return Ok(Checkpoint::Cancel),
                Some(false) => {}
            }
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            if rewrite {
                sqlx::query(jobsql::OUTPUT_DELETE_FROM)
                    .bind(id)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            if !bytes.is_empty() || !rewrite {
                sqlx::query(jobsql::OUTPUT_INSERT)
                    .bind(id)
                    .bind(seq)
                    .bind(bytes)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Checkpoint::Continue)
        }

        #[async_trait::async_trait]
        impl JobStore for $store {
            async fn create_job(
                &self,
                job: &$crate::jobs::JobRecord,
                event: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                sqlx::query(jobsql::INSERT)
                    .bind(job.id)
                    .bind(job.kind.as_str())
                    .bind(sqlx::types::Json(&job.params))
                    .bind(job.state.as_str())
                    .bind(i64::try_from(job.done).unwrap_or(i64::MAX))
                    .bind(job.total.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
                    .bind(&job.cursor)
                    .bind(&job.message)
                    .bind(&job.created_by)
                    .bind(&job.owner)
                    .bind(job.cancel_requested)
                    .bind(job.created_at)
                    .bind(job.started_at)
                    .bind(job.heartbeat_at)
                    .bind(job.finished_at)
                    .execute(&mut *tx)
                    .await?;
                audit(&mut tx, event, version).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_job(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::jobs::JobRecord>, StoreError> {
                sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(job_select("WHERE id = $1")))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::jobs::JobRecord::try_from)
                    .transpose()
            }

            async fn list_jobs(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::jobs::JobRecord>, StoreError> {
                sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(job_select(
                    "ORDER BY created_at DESC, id DESC LIMIT $1",
                )))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map($crate::jobs::JobRecord::try_from)
                .collect()
            }

            async fn claim_job(
                &self,
                owner: &str,
                now: time::OffsetDateTime,
                stale_before: time::OffsetDateTime,
            ) -> Result<Option<$crate::jobs::JobRecord>, StoreError> {
                let claim = format!(
                    "{}{}",
                    jobsql::CLAIM.replace("{LOCK}", SKIP_LOCKED),
                    jobsql::COLUMNS
                );
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(claim))
                    .bind(owner)
                    .bind(now)
                    .bind(stale_before)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row.map($crate::jobs::JobRecord::try_from).transpose()
            }

            async fn checkpoint_job(
                &self,
                id: uuid::Uuid,
                owner: &str,
                progress: &Progress,
                now: time::OffsetDateTime,
            ) -> Result<Checkpoint, StoreError> {
                let cancel: Option<bool> = sqlx::query_scalar(jobsql::CHECKPOINT)
                    .bind(id)
                    .bind(owner)
                    .bind(i64::try_from(progress.done).unwrap_or(i64::MAX))
                    .bind(progress.total.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
                    .bind(&progress.cursor)
                    .bind(&progress.message)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(match cancel {
                    None => Checkpoint::Lost,
                    Some(true) => Checkpoint::Cancel,
                    Some(false) => Checkpoint::Continue,
                })
            }

            async fn finish_job(
                &self,
                id: uuid::Uuid,
                owner: &str,
                state: $crate::jobs::JobState,
                message: &str,
                now: time::OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(jobsql::FINISH)
                    .bind(id)
                    .bind(owner)
                    .bind(state.as_str())
                    .bind(message)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn cancel_job(
                &self,
                id: uuid::Uuid,
                event: &AuditEvent,
            ) -> Result<Option<$crate::jobs::JobRecord>, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = lock_writers(&mut tx).await?;
                let queued = sqlx::query(jobsql::CANCEL_QUEUED)
                    .bind(id)
                    .bind($crate::model::now())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let running = if queued == 0 {
                    sqlx::query(jobsql::CANCEL_RUNNING)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                } else {
                    0
                };
                let job =
                    sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(job_select("WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map($crate::jobs::JobRecord::try_from)
                        .transpose()?;
                if queued + running > 0 {
                    audit(&mut tx, event, version).await?;
                }
                tx.commit().await?;
                Ok(job)
            }

            async fn append_job_output(
                &self,
                id: uuid::Uuid,
                owner: &str,
                seq: u64,
                bytes: &[u8],
                progress: &Progress,
                now: time::OffsetDateTime,
            ) -> Result<Checkpoint, StoreError> {
                write_job_output(self, id, owner, seq, false, bytes, progress, now).await
            }

            async fn rewrite_job_output(
                &self,
                id: uuid::Uuid,
                owner: &str,
                seq: u64,
                bytes: &[u8],
                progress: &Progress,
                now: time::OffsetDateTime,
            ) -> Result<Checkpoint, StoreError> {
                write_job_output(self, id, owner, seq, true, bytes, progress, now).await
            }

            async fn active_exports(&self) -> Result<Vec<$crate::jobs::JobRecord>, StoreError> {
                sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(job_select(
                    "WHERE kind = 'export' AND state IN ('queued', 'running') \
                     ORDER BY created_at, id",
                )))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map($crate::jobs::JobRecord::try_from)
                .collect()
            }

            async fn job_output(
                &self,
                id: uuid::Uuid,
                after: Option<u64>,
                limit: u32,
            ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(jobsql::OUTPUT_READ)
                    .bind(id)
                    .bind(after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, bytes)| (u64::try_from(seq).unwrap_or(0), bytes))
                    .collect())
            }

            async fn purge_job_output(
                &self,
                finished_before: time::OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(jobsql::OUTPUT_PURGE)
                    .bind(finished_before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n)
            }

            async fn count_usage(
                &self,
                from: time::OffsetDateTime,
                to: time::OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar(jobsql::COUNT_USAGE)
                    .bind(usage_instant(from))
                    .bind(usage_instant(to))
                    .fetch_one(&self.pool)
                    .await?;
                count_from_db("usage_records", n)
            }

            async fn usage_cost_rows(
                &self,
                from: time::OffsetDateTime,
                to: time::OffsetDateTime,
            ) -> Result<Vec<$crate::jobs::UsageCostRow>, StoreError> {
                Ok(sqlx::query_as(jobsql::USAGE_COST_ROWS)
                    .bind(usage_instant(from))
                    .bind(usage_instant(to))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn set_usage_costs(
                &self,
                changes: &[$crate::store::jobs::CostChange],
            ) -> Result<u64, StoreError> {
                use std::collections::BTreeMap;
                // (cost, unpriced) differences per rollup row, hourly and daily, in the global
                // key order every usage insert upserts them in (no deadlock with ingest).
                let mut deltas: [BTreeMap<super::rollup::RollupKey, (i64, i64)>; 2] =
                    [BTreeMap::new(), BTreeMap::new()];
                let mut tx = self.begin_write().await?;
                let mut changed = 0;
                for c in changes {
                    let r = &c.row;
                    let n = sqlx::query(jobsql::SET_COST)
                        .bind(&r.request_id)
                        .bind(usage_instant(r.started_at))
                        .bind(c.cost_nano_usd)
                        .bind(r.cost_nano_usd)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n == 0 {
                        continue;
                    }
                    changed += n;
                    let cost = c
                        .cost_nano_usd
                        .unwrap_or(0)
                        .saturating_sub(r.cost_nano_usd.unwrap_or(0));
                    let unpriced =
                        i64::from(c.cost_nano_usd.is_none()) - i64::from(r.cost_nano_usd.is_none());
                    let ms = (r.started_at.unix_timestamp_nanos() / 1_000_000) as i64;
                    let hour = super::rollup::RollupKey::hourly(
                        ms,
                        &r.virtual_key_id,
                        r.team_id,
                        r.customer_id,
                        r.user_id,
                        &r.provider,
                        &r.model_resolved,
                    );
                    let day = hour.daily();
                    for (i, key) in [hour, day].into_iter().enumerate() {
                        let d = deltas[i].entry(key).or_default();
                        d.0 = d.0.saturating_add(cost);
                        d.1 += unpriced;
                    }
                }
                for (table, rows) in super::rollup::TABLES.iter().zip(&deltas) {
                    let sql = jobsql::ROLLUP_ADD.replace("{TABLE}", table);
                    for (k, (cost, unpriced)) in rows {
                        if *cost == 0 && *unpriced == 0 {
                            continue;
                        }
                        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                            .bind(*cost)
                            .bind(*unpriced)
                            .bind(usage_instant(super::rollup::bucket_instant(k.bucket_ms)))
                            .bind(k.virtual_key_id.as_str())
                            .bind(k.team_id)
                            .bind(k.customer_id)
                            .bind(k.user_id)
                            .bind(k.provider.as_str())
                            .bind(k.model.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(changed)
            }
        }
    };
}
pub(crate) use impl_job_store;
