//! `/api/jobs`: long operations run in the background with their progress
//! ([`crate::jobs`], run by `job_runner.rs` on any control-plane replica). Admins start and
//! cancel them; admins and viewers follow them. Exports (`api/exports.rs`) are jobs any caller
//! may start; a caller sees the jobs [`may_read`] allows.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::audit::Audit;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::exports::may_read;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{parse_id, parse_time, timestamp};
use crate::ControlPlane;
use crate::jobs::{JobKind, JobRecord, RecomputeParams};
use crate::spend::{ceil_to, floor_to};

/// The widest range one recomputation covers.
const MAX_RECOMPUTE_RANGE: Duration = Duration::days(400);
const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 500;

/// A job and its progress.
#[derive(Serialize, ToSchema)]
pub struct JobResponse {
    pub id: Uuid,
    /// `recompute_costs` or `export`.
    pub kind: String,
    /// What it was asked to do (`since`, `until` for a recomputation; `export`, `format`,
    /// `query`, `scope`, `user_id` for an export).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Progress, in the job's unit (usage records for a recomputation, rows written for an
    /// export).
    pub done: u64,
    /// The whole, once known (null before a recomputation starts; an export's once it
    /// finished).
    pub total: Option<u64>,
    /// `done / total` in percent, when the total is known.
    pub percent: Option<f64>,
    /// The latest progress text, or what went wrong.
    pub message: Option<String>,
    /// Who asked for it (as the audit log names actors).
    pub created_by: String,
    pub cancel_requested: bool,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    /// When the running replica last reported (a job stays `running` if its replica dies, and
    /// another replica takes it over a minute after this).
    pub heartbeat_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<JobRecord> for JobResponse {
    fn from(j: JobRecord) -> Self {
        JobResponse {
            id: j.id,
            kind: j.kind.as_str().to_owned(),
            params: j.params,
            state: j.state.as_str().to_owned(),
            done: j.done,
            total: j.total,
            percent: j.total.map(|t| {
                if t == 0 {
                    100.0
                } else {
                    (j.done.min(t) as f64 * 1000.0 / t as f64).round() / 10.0
                }
            }),
            message: j.message,
            created_by: j.created_by,
            cancel_requested: j.cancel_requested,
            created_at: timestamp(j.created_at),
            started_at: j.started_at.map(timestamp),
            heartbeat_at: j.heartbeat_at.map(timestamp),
            finished_at: j.finished_at.map(timestamp),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobResponse>,
    pub count: usize,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Newest first, at most this many (1-500, default 50).
    pub limit: Option<u32>,
}

/// What to re-price.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecomputeCostsRequest {
    /// RFC 3339: records that started at or after this time, rounded down to the UTC hour.
    #[schema(example = "2026-01-01T00:00:00Z")]
    pub since: String,
    /// RFC 3339: records that started before this time (default: now), rounded up to the UTC
    /// hour. At most 400 days after `since`.
    pub until: Option<String>,
}

/// Re-prices the stored usage of a time range with the current prices (the shipped table and
/// the overrides in force now), as a job: the records' cost and the spend rollups of their
/// hours are updated an hour at a time. Follow it with `GET /api/jobs/{job_id}`.
#[utoipa::path(
    post,
    path = "/api/jobs/recompute-costs",
    tag = "jobs",
    request_body = RecomputeCostsRequest,
    responses(
        (status = 202, description = "Queued", body = JobResponse),
        (status = 400, description = "Invalid range (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn recompute_costs(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiJson(req): ApiJson<RecomputeCostsRequest>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let since = parse_time("since", &req.since)?;
    let until = match req.until.as_deref() {
        Some(raw) => parse_time("until", raw)?,
        None => OffsetDateTime::now_utc(),
    };
    if until <= since {
        return Err(ApiError::invalid_field("until", "must be after `since`"));
    }
    // The range asked for (rounding it outwards to whole hours may add up to one).
    if until - since > MAX_RECOMPUTE_RANGE {
        return Err(ApiError::invalid_field(
            "since",
            "at most 400 days before `until`: split the range",
        ));
    }
    let (since, until) = (
        floor_to(since, Duration::HOUR),
        ceil_to(until, Duration::HOUR),
    );
    let params = RecomputeParams { since, until }.to_json();
    queue(&cp, &audit, JobKind::RecomputeCosts, params).await
}

/// Queues a job of `kind` with `params` for the caller, audited (`job.create`), and wakes this
/// replica's runner: the 202 of every job-creating route.
pub(crate) async fn queue(
    cp: &ControlPlane,
    audit: &Audit,
    kind: JobKind,
    params: serde_json::Value,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let job = JobRecord::queued(kind, params.clone(), audit.actor.0.clone());
    let event = audit
        .event("job.create", format!("jobs/{}", job.id))
        .with(
            "after",
            json!({"kind": job.kind.as_str(), "params": params}),
        )
        .success();
    cp.store().create_job(&job, &event).await?;
    cp.wake_jobs();
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// Jobs, newest first: those the caller may read (admins and viewers: every job; team
/// admins: cost recomputations and their own exports; members: their own exports), among the
/// newest 500.
#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "jobs",
    params(JobListQuery),
    responses(
        (status = 200, description = "Newest first", body = JobList),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_jobs(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiQuery(q): ApiQuery<JobListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "from 1 to 500"));
    }
    let all = caller.scope() == super::auth::Scope::All;
    let jobs: Vec<JobResponse> = cp
        .store()
        .list_jobs(if all { limit } else { MAX_LIST })
        .await?
        .into_iter()
        .filter(|j| may_read(&caller, j))
        .take(limit as usize)
        .map(JobResponse::from)
        .collect();
    Ok(Json(JobList {
        count: jobs.len(),
        jobs,
    }))
}

/// One job and its progress (404 for a job the caller may not read, as for an unknown one).
#[utoipa::path(
    get,
    path = "/api/jobs/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such job the caller may read", body = ErrorBody),
    )
)]
pub(crate) async fn get_job(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobResponse>, ApiError> {
    let id = parse_id("job_id", &id)?;
    let job = cp
        .store()
        .get_job(id)
        .await?
        .filter(|j| may_read(&caller, j))
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    Ok(Json(job.into()))
}

/// Cancels a job: a queued one at once; a running one stops at its next checkpoint (within
/// an hour's worth of records), keeping what it has done. A finished job is returned as it is.
#[utoipa::path(
    post,
    path = "/api/jobs/{job_id}/cancel",
    tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, cancelled or asked to stop", body = JobResponse),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_job(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobResponse>, ApiError> {
    let id = parse_id("job_id", &id)?;
    let event = audit.event("job.cancel", format!("jobs/{id}")).success();
    let job = cp
        .store()
        .cancel_job(id, &event)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    Ok(Json(job.into()))
}
