//! Runs jobs ([`crate::jobs`]) in the background of every control-plane replica: it claims the
//! oldest queued job (or one whose replica stopped renewing its heartbeat), runs it with a
//! checkpoint after every step, and finishes it. Woken at once when a job is created here;
//! otherwise it looks every [`POLL_EVERY`] (jobs created on another replica). It also deletes
//! the output of exports that expired ([`crate::jobs::EXPORT_TTL`]), every [`PURGE_EVERY`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::exports::{ExportCursor, creator_still_covers, next_batch};
use crate::jobs::{
    EXPORT_TTL, ExportParams, JobKind, JobRecord, JobState, RecomputeParams, Repricer,
    parse_rfc3339, rfc3339,
};
use crate::model::now;
use crate::store::jobs::CostChange;
use crate::store::{Checkpoint, Progress, StoreError};
use crate::{ControlPlane, Inner};

/// How often a replica looks for jobs created elsewhere.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// A running job whose heartbeat is older than this is taken over (its replica is gone). Every
/// step of a job checkpoints well within it.
pub(crate) const STALE_AFTER: time::Duration = time::Duration::minutes(1);
/// How often a replica deletes expired export output.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) async fn run(weak: Weak<Inner>, wake: Arc<Notify>, stop: CancellationToken) {
    let owner = format!("control-plane-{}", uuid::Uuid::new_v4().simple());
    let mut purged_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
        let Some(cp) = weak.upgrade().map(|inner| ControlPlane { inner }) else {
            return;
        };
        if purged_at.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            purged_at = Some(std::time::Instant::now());
            match cp.store().purge_job_output(now() - EXPORT_TTL).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(chunks = n, "deleted expired export output"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete expired export output; will retry")
                }
            }
        }
        loop {
            let t = now();
            match cp.store().claim_job(&owner, t, t - STALE_AFTER).await {
                Ok(Some(job)) => run_one(&cp, &owner, job, &stop).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a job; will retry");
                    break;
                }
            }
        }
    }
}

/// How a job's run ended.
enum Outcome {
    Done(JobState, String),
    /// Another replica took it over: leave it.
    Lost,
}

async fn run_one(cp: &ControlPlane, owner: &str, job: JobRecord, stop: &CancellationToken) {
    tracing::info!(job = %job.id, kind = job.kind.as_str(), resumed = job.done > 0, "job started");
    let outcome = match job.kind {
        JobKind::RecomputeCosts => recompute_costs(cp, owner, &job, stop).await,
        JobKind::Export => export(cp, owner, &job, stop).await,
    };
    let (state, message) = match outcome {
        Ok(Outcome::Lost) => {
            tracing::warn!(job = %job.id, "job taken over by another replica");
            return;
        }
        Ok(Outcome::Done(state, message)) => (state, message),
        Err(e) => (JobState::Failed, e),
    };
    tracing::info!(job = %job.id, state = state.as_str(), %message, "job ended");
    match cp
        .store()
        .finish_job(job.id, owner, state, &message, now())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(job = %job.id, "job taken over by another replica before it ended")
        }
        Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot record the end of a job"),
    }
}

/// Where a recomputation stands: the next hour to do and how many records changed so far.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RecomputeCursor {
    /// RFC 3339.
    next: Option<String>,
    changed: u64,
}

fn store_error(e: StoreError) -> String {
    format!("store error: {e}")
}

async fn recompute_costs(
    cp: &ControlPlane,
    owner: &str,
    job: &JobRecord,
    stop: &CancellationToken,
) -> Result<Outcome, String> {
    let params = RecomputeParams::from_json(&job.params)?;
    let snapshot = cp.snapshots().borrow().clone();
    let repricer =
        Repricer::new(&snapshot).map_err(|e| format!("the current prices are invalid: {e}"))?;
    let store = cp.store();
    let total = match job.total {
        Some(t) => t,
        None => store
            .count_usage(params.since, params.until)
            .await
            .map_err(store_error)?,
    };
    let mut cursor: RecomputeCursor = job
        .cursor
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let mut done = job.done;
    let progress = |done: u64, cursor: &RecomputeCursor| Progress {
        done,
        total: Some(total),
        cursor: serde_json::to_string(cursor).ok(),
        message: Some(format!(
            "{done} of {total} records re-priced, {} changed",
            cursor.changed
        )),
    };
    match store
        .checkpoint_job(job.id, owner, &progress(done, &cursor), now())
        .await
        .map_err(store_error)?
    {
        Checkpoint::Continue => {}
        Checkpoint::Cancel => return Ok(cancelled(done, total)),
        Checkpoint::Lost => return Ok(Outcome::Lost),
    }
    let next = |c: &RecomputeCursor| c.next.as_deref().and_then(|t| parse_rfc3339(t).ok());
    while let Some((from, to)) = params.slice(next(&cursor)) {
        // The runner holds the control plane while a job runs, so `stop` (its last handle
        // dropped) cannot fire then: an orderly shutdown is what ends a job early.
        if stop.is_cancelled() || cp.shutting_down() {
            // Leave it running; another replica (or this one after a restart) takes it over
            // from the last checkpoint once its heartbeat is stale.
            return Ok(Outcome::Lost);
        }
        let rows = store.usage_cost_rows(from, to).await.map_err(store_error)?;
        done += rows.len() as u64;
        let changes: Vec<CostChange> = rows
            .into_iter()
            .filter_map(|row| {
                let cost = repricer
                    .cost(&row)
                    .map(|c| i64::try_from(c).unwrap_or(i64::MAX));
                (cost != row.cost_nano_usd).then_some(CostChange {
                    row,
                    cost_nano_usd: cost,
                })
            })
            .collect();
        if !changes.is_empty() {
            cursor.changed += store.set_usage_costs(&changes).await.map_err(store_error)?;
        }
        cursor.next = Some(rfc3339(to));
        match store
            .checkpoint_job(job.id, owner, &progress(done, &cursor), now())
            .await
            .map_err(store_error)?
        {
            Checkpoint::Continue => {}
            Checkpoint::Cancel => return Ok(cancelled(done, total)),
            Checkpoint::Lost => return Ok(Outcome::Lost),
        }
    }
    Ok(Outcome::Done(
        JobState::Succeeded,
        format!("{done} records re-priced, {} changed", cursor.changed),
    ))
}

/// Writes an export a chunk at a time, each chunk with the checkpoint that moves the cursor
/// past it (`append_job_output`), so a replica taking the job over continues after the last
/// chunk written (a spend slice taken over part-way from the slice's first chunk, over the
/// chunks written: `rewrite_job_output`).
async fn export(
    cp: &ControlPlane,
    owner: &str,
    job: &JobRecord,
    stop: &CancellationToken,
) -> Result<Outcome, String> {
    let params = ExportParams::from_json(&job.params)?;
    let store = cp.store();
    let mut cursor: ExportCursor = match job.cursor.as_deref() {
        Some(c) => serde_json::from_str(c).map_err(|e| format!("invalid cursor: {e}"))?,
        None => ExportCursor::default(),
    };
    let cancelled = |c: &ExportCursor| {
        Outcome::Done(
            JobState::Cancelled,
            format!("cancelled after {} rows; nothing to download", c.rows),
        )
    };
    loop {
        // Whoever asked for it must still read what it holds (demoted, moved, deactivated).
        creator_still_covers(cp, &params).await?;
        let Some(mut batch) = next_batch(cp, &params, &cursor).await? else {
            break;
        };
        // A spend slice a previous run left half written is written again from its start,
        // over its chunks (`rewrite_job_output`, with the first chunk).
        let (start, mut rewrite) = batch.start();
        cursor = start;
        while let Some((bytes, next)) = batch.next_chunk()? {
            if stop.is_cancelled() || cp.shutting_down() {
                return Ok(Outcome::Lost);
            }
            let progress = Progress {
                done: next.rows,
                total: None,
                cursor: serde_json::to_string(&next).ok(),
                message: Some(next.message(&params)),
            };
            let checkpoint = if rewrite {
                store
                    .rewrite_job_output(job.id, owner, cursor.seq, &bytes, &progress, now())
                    .await
            } else if bytes.is_empty() {
                store.checkpoint_job(job.id, owner, &progress, now()).await
            } else {
                store
                    .append_job_output(job.id, owner, cursor.seq, &bytes, &progress, now())
                    .await
            }
            .map_err(store_error)?;
            match checkpoint {
                Checkpoint::Continue => {
                    cursor = next;
                    rewrite = false;
                }
                Checkpoint::Cancel => return Ok(cancelled(&cursor)),
                Checkpoint::Lost => return Ok(Outcome::Lost),
            }
        }
    }
    let rows = cursor.rows;
    let done = Progress {
        done: rows,
        total: Some(rows),
        cursor: serde_json::to_string(&cursor).ok(),
        message: Some(cursor.message(&params)),
    };
    match store
        .checkpoint_job(job.id, owner, &done, now())
        .await
        .map_err(store_error)?
    {
        Checkpoint::Continue => {}
        Checkpoint::Cancel => return Ok(cancelled(&cursor)),
        Checkpoint::Lost => return Ok(Outcome::Lost),
    }
    Ok(Outcome::Done(
        JobState::Succeeded,
        format!(
            "{rows} rows written; download within {} days",
            EXPORT_TTL.whole_days()
        ),
    ))
}

fn cancelled(done: u64, total: u64) -> Outcome {
    Outcome::Done(
        JobState::Cancelled,
        format!(
            "cancelled after {done} of {total} records (the records re-priced so far keep their new cost)"
        ),
    )
}
