//! Exports as jobs: `POST /api/jobs/export` queues an export of spend, request logs or the audit
//! log (CSV or JSON Lines) with the caller's scope; `job_runner.rs` writes it into the store a
//! chunk at a time through [`Batch`] (the rows and their rendering are here, next to the GET
//! endpoints whose parsing, scope and row shapes they share); `GET /api/jobs/{job_id}/download`
//! streams the finished output.
//!
//! | kind    | rows, in the order of                         | a step reads                     |
//! |---------|-----------------------------------------------|----------------------------------|
//! | `spend` | `/api/spend/export` (bucket, cost, group)     | one day of hours, a week of days, or the whole range (`interval=none`), in one query each |
//! | `logs`  | `/api/logs` pages (newest first)              | [`PAGE_ROWS`] rows after the last written |
//! | `audit` | `/api/audit-logs/export` (oldest first)       | [`PAGE_ROWS`] rows after the last written, up to the newest row when the job started |
//!
//! A chunk holds at most [`PAGE_ROWS`] rows; its cursor ([`ExportCursor`]) is committed with it.
//! A spend export holds at most `MAX_CSV_ROWS` (a million) rows in all, as the GET: each slice
//! reads at most one row more than are left, and one too many fails the job. A slice's rows are
//! held in memory while its chunks are written, and no heartbeat is sent during its query: an
//! `interval=none` export of a large range is one query of up to a million rows, and if that
//! takes longer than `job_runner::STALE_AFTER`, another replica may take the job over and read
//! it again (the first runner's chunks are then refused: it no longer owns the job).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use super::audit::Audit;
use super::auth::{Principal, Scope};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::jobs::JobResponse;
use super::logs::{LogEntry, LogsQuery, log_scope, logs_query};
use super::spend::{MAX_CSV_ROWS, SpendParams, csv_header, csv_row, entry, spend_query};
use super::system::{AuditExportQuery, AuditLogEntry, audit_filter};
use super::{cells, parse_id, timestamp};
use crate::ControlPlane;
use crate::audit::{AuditFilter, AuditOrder, AuditQuery};
use crate::identity::Role;
use crate::jobs::{
    EXPORT_TTL, ExportFormat, ExportKind, ExportParams, ExportScope, JobKind, JobRecord, JobState,
    parse_rfc3339, rfc3339,
};
use crate::model::AuditRecord;
use crate::spend::{Interval, SpendQuery, SpendRow, usd_text};
use crate::usage_log::{UsageLogQuery, UsageLogRow};

/// The most rows one chunk of output holds (and one step of logs or audit reads).
pub(crate) const PAGE_ROWS: usize = 1_000;
/// The widest range of a logs export (the GET pages through at most 31 days per query).
const MAX_LOGS_EXPORT_WINDOW: Duration = Duration::days(400);
/// The most exports one creator (a user; the admin token and loopback count as one) may have
/// queued or running at once (more: 429).
pub(crate) const MAX_ACTIVE_EXPORTS: u64 = 3;
/// Chunks read per store query while downloading.
const DOWNLOAD_CHUNKS: u32 = 4;

/// What to export.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// `spend` (as `GET /api/spend`), `logs` (as `GET /api/logs`) or `audit` (as
    /// `GET /api/audit-logs`; admins and viewers).
    #[schema(example = "spend")]
    pub kind: String,
    /// `csv` (default) or `jsonl` (JSON Lines: one row per line, as the JSON API shows it).
    pub format: Option<String>,
    /// The query, with the fields of the corresponding GET endpoint as strings (spend:
    /// `group_by`, `interval`, `since`, `until`, `virtual_key_id`, `team_id`, `customer_id`,
    /// `user_id`, `model`, `provider`; logs: `since`, `until` (up to 400 days apart), the same
    /// filters, `status`, `min_cost_usd`; audit: `actor`, `action`, `target`, `result`, `since`,
    /// `until`). No paging fields: an export holds every matching row. The default range is
    /// fixed when the job is created.
    #[schema(value_type = Option<Object>, example = json!({"group_by": "team", "interval": "day"}))]
    pub query: Option<serde_json::Map<String, Value>>,
}

/// Queues an export of spend, request logs or the audit log, narrowed to the caller's scope
/// exactly as the corresponding GET endpoint is (stored with the job: whichever replica runs it
/// applies it). Follow it with `GET /api/jobs/{job_id}`; once it succeeded, download it with
/// `GET /api/jobs/{job_id}/download` (for a week). Spend CSV is byte for byte what
/// `GET /api/spend/export` returns for the same query; logs and audit exports hold every
/// matching row, in the order of `GET /api/logs` (newest first) and of
/// `GET /api/audit-logs/export` (oldest first).
#[utoipa::path(
    post,
    path = "/api/jobs/export",
    tag = "jobs",
    request_body = ExportRequest,
    responses(
        (status = 202, description = "Queued", body = JobResponse),
        (status = 400, description = "Invalid kind, format or query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "An audit export by a team admin or member", body = ErrorBody),
        (status = 429, description = "The caller already has 3 exports queued or running", body = ErrorBody),
    )
)]
pub(crate) async fn create_export(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: Audit,
    ApiJson(req): ApiJson<ExportRequest>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let export = match req.kind.as_str() {
        "spend" => ExportKind::Spend,
        "logs" => ExportKind::Logs,
        "audit" => ExportKind::Audit,
        other => {
            return Err(ApiError::invalid_field(
                "kind",
                format!("{other:?} is not spend, logs or audit"),
            ));
        }
    };
    let format = match req.format.as_deref() {
        None | Some("csv") => ExportFormat::Csv,
        Some("jsonl") => ExportFormat::Jsonl,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "format",
                format!("{other:?} is not csv or jsonl"),
            ));
        }
    };
    if export == ExportKind::Audit && caller.scope() != Scope::All {
        return Err(ApiError::Forbidden(
            "the audit log is read by admins and viewers".to_owned(),
        ));
    }
    let mut query = req.query.unwrap_or_default();
    if let Some((k, _)) = query.iter().find(|(_, v)| !v.is_string()) {
        return Err(ApiError::invalid_field(
            format!("query.{k}"),
            "must be a string, as in the GET endpoint's query",
        ));
    }
    // The default range is fixed now (as given, not rounded: the runner parses it again with
    // the same checks), so every run reads the same rows.
    let default = match export {
        ExportKind::Spend => Some(super::spend::DEFAULT_RANGE),
        ExportKind::Logs => Some(super::logs::DEFAULT_WINDOW),
        ExportKind::Audit => None,
    };
    if let Some(default) = default {
        let until = match query.get("until").and_then(Value::as_str) {
            Some(raw) => super::parse_time("until", raw)?,
            None => OffsetDateTime::now_utc(),
        };
        query
            .entry("until")
            .or_insert_with(|| Value::String(timestamp(until)));
        query
            .entry("since")
            .or_insert_with(|| Value::String(timestamp(until - default)));
    }
    let params = ExportParams {
        export,
        format,
        query,
        scope: log_scope(&caller).into(),
        user_id: caller.user.as_ref().map(|u| u.id),
    };
    // Checked now: a 400 names the field.
    plan(&params)?;
    let params = params.to_json();
    // A bound on what one caller keeps the runners busy with (checked before the job is
    // stored: two requests at the same instant may both pass).
    let creator = caller.user.as_ref().map(|u| u.id);
    let active = cp
        .store()
        .active_exports()
        .await?
        .iter()
        .filter(|j| ExportParams::from_json(&j.params).is_ok_and(|p| p.user_id == creator))
        .count() as u64;
    if active >= MAX_ACTIVE_EXPORTS {
        return Err(ApiError::TooManyRequests(format!(
            "{active} of your exports are queued or running (at most {MAX_ACTIVE_EXPORTS}); \
             ask again once one ended, or cancel one"
        )));
    }
    super::jobs::queue(&cp, &audit, JobKind::Export, params).await
}

/// Whether `caller` may see `job`: admins and viewers every job; others the jobs they asked for,
/// and team admins also the cost recomputations (as before exports existed).
pub(crate) fn may_read(caller: &Principal, job: &JobRecord) -> bool {
    caller.scope() == Scope::All
        || is_creator(caller, job)
        || (job.kind == JobKind::RecomputeCosts && caller.role == Role::TeamAdmin)
}

/// Whether `caller` (a signed-in user) asked for the export `job`.
fn is_creator(caller: &Principal, job: &JobRecord) -> bool {
    let Some(user) = caller.user.as_ref() else {
        return false;
    };
    job.kind == JobKind::Export
        && ExportParams::from_json(&job.params)
            .is_ok_and(|p| p.user_id.is_some_and(|u| u == user.id))
}

/// Downloads a finished export (`Content-Disposition: attachment`, named
/// `<kind>-<job id>.<csv|jsonl>`), streamed from the store. Its creator and admins may download
/// it, for a week after it finished; its creator only while their scope (role, team, personal
/// key) is still the one it was asked with.
#[utoipa::path(
    get,
    path = "/api/jobs/{job_id}/download",
    tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The export: CSV with a header row, or JSON Lines", content_type = "text/csv", body = String),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "A viewer, not its creator", body = ErrorBody),
        (status = 404, description = "No such export within the caller's reach (also its creator's, once their role, team or personal key changed)", body = ErrorBody),
        (status = 409, description = "Not finished, or it failed or was cancelled", body = ErrorBody),
        (status = 410, description = "Its output expired", body = ErrorBody),
    )
)]
pub(crate) async fn download(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id("job_id", &id)?;
    let not_found = || ApiError::NotFound(format!("no export {id}"));
    let job = cp.store().get_job(id).await?.ok_or_else(not_found)?;
    if job.kind != JobKind::Export || !may_read(&caller, &job) {
        return Err(not_found());
    }
    if caller.role != Role::Admin && !is_creator(&caller, &job) {
        return Err(ApiError::Forbidden(
            "an export is downloaded by the user who asked for it and by admins".to_owned(),
        ));
    }
    let params = ExportParams::from_json(&job.params).map_err(ApiError::Internal)?;
    // Its rows are those of the scope it was asked with: a creator whose role or team changed
    // since (a team admin moved or demoted) no longer sees it.
    if caller.role != Role::Admin && ExportScope::from(log_scope(&caller)) != params.scope {
        return Err(not_found());
    }
    match job.state {
        JobState::Succeeded => {}
        JobState::Queued | JobState::Running => {
            return Err(ApiError::Conflict(format!(
                "export {id} is {}: download it once it succeeded",
                job.state.as_str()
            )));
        }
        JobState::Failed | JobState::Cancelled => {
            return Err(ApiError::Conflict(format!(
                "export {id} {}: {}",
                job.state.as_str(),
                job.message.as_deref().unwrap_or("no output")
            )));
        }
    }
    let finished = job.finished_at.unwrap_or(job.created_at);
    if finished + EXPORT_TTL <= crate::model::now() {
        return Err(ApiError::Gone(format!(
            "the output of export {id} expired {} days after it finished",
            EXPORT_TTL.whole_days()
        )));
    }
    let store = cp.store().clone();
    // State: the last chunk sent (`None` before the first), or done.
    let body = futures::stream::try_unfold(Some(None), move |after: Option<Option<u64>>| {
        let store = store.clone();
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let chunks = store
                .job_output(id, after, DOWNLOAD_CHUNKS)
                .await
                .map_err(|e| {
                    tracing::warn!(job = %id, error = %e, "export download failed; the body ends early");
                    std::io::Error::other("export download failed")
                })?;
            let Some(last) = chunks.last().map(|c| c.0) else {
                return Ok(None);
            };
            let next = (chunks.len() == DOWNLOAD_CHUNKS as usize).then_some(Some(last));
            let mut bytes = Vec::with_capacity(chunks.iter().map(|c| c.1.len()).sum());
            for (_, b) in chunks {
                bytes.extend_from_slice(&b);
            }
            Ok::<_, std::io::Error>(Some((bytes::Bytes::from(bytes), next)))
        }
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                params.format.content_type().to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", params.filename(id)),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Whether the user who asked for an export may still read all it holds: their scope now
/// (role, team, personal key) is everything or the one stored with it. Checked by the runner
/// before each step, so an export whose creator was demoted, moved to another team or
/// deactivated since fails instead of running with the old scope. Exports of the admin token
/// or loopback (no user) are not checked.
pub(crate) async fn creator_still_covers(
    cp: &ControlPlane,
    p: &ExportParams,
) -> Result<(), String> {
    let Some(user) = p.user_id else {
        return Ok(());
    };
    let caller = super::auth::user_principal(cp, user)
        .await
        .map_err(|e| format!("cannot check its creator's access: {e}"))?;
    let Some(caller) = caller else {
        return Err("its creator no longer exists or was deactivated".to_owned());
    };
    let now = ExportScope::from(log_scope(&caller));
    if now == ExportScope::All || now == p.scope {
        Ok(())
    } else {
        Err(
            "its creator's role or team changed since it was asked for; ask for it again"
                .to_owned(),
        )
    }
}

/// The query an export runs, parsed from its stored parameters with the GET endpoint's parsing.
pub(crate) enum Plan {
    Spend(SpendQuery),
    Logs(UsageLogQuery),
    Audit(AuditFilter),
}

fn parse_query<T: serde::de::DeserializeOwned>(
    query: &serde_json::Map<String, Value>,
    paging: &[&str],
) -> Result<T, ApiError> {
    if let Some(k) = paging.iter().find(|k| query.contains_key(**k)) {
        return Err(ApiError::invalid_field(
            format!("query.{k}"),
            "not for an export: it holds every matching row (give `format` beside `query`)",
        ));
    }
    serde_json::from_value(Value::Object(query.clone()))
        .map_err(|e| ApiError::invalid_field("query", e.to_string()))
}

pub(crate) fn plan(p: &ExportParams) -> Result<Plan, ApiError> {
    Ok(match p.export {
        ExportKind::Spend => {
            let q: SpendParams = parse_query(&p.query, &["format"])?;
            Plan::Spend(spend_query(p.scope.into(), &q, MAX_CSV_ROWS)?)
        }
        ExportKind::Logs => {
            let q: LogsQuery = parse_query(&p.query, &["limit", "cursor"])?;
            Plan::Logs(logs_query(&q, p.scope.into(), MAX_LOGS_EXPORT_WINDOW)?)
        }
        ExportKind::Audit => {
            let q: AuditExportQuery = parse_query(&p.query, &["limit", "cursor"])?;
            Plan::Audit(audit_filter(
                q.actor.as_deref(),
                q.action.as_deref(),
                q.target.as_deref(),
                q.result.as_deref(),
                q.since.as_deref(),
                q.until.as_deref(),
            )?)
        }
    })
}

/// Where an export stands (the job's `cursor`), committed with each chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExportCursor {
    /// The next chunk's number.
    pub seq: u64,
    /// Rows written.
    pub rows: u64,
    /// Spend: the start of the next slice to read (RFC 3339; `None`: the range's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Spend: the rows of the slice at `next` already written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// Spend, within a slice: the number of the slice's first chunk and the rows written
    /// before the slice. A runner taking the export over mid-slice (`skip > 0`) deletes the
    /// slice's chunks and writes the slice again from here: its rows are ordered by cost,
    /// which may have changed since (the last bucket still fills, recomputations), so
    /// skipping `skip` rows of a new read could write a row twice and lose another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<(u64, u64)>,
    /// Logs: the last row written (`started_at` in Unix nanoseconds, `request_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_log: Option<(String, String)>,
    /// Audit: the newest row id when the export began, and the last id written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_id: Option<i64>,
    /// Nothing left to read.
    #[serde(default)]
    pub done: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ExportCursor {
    /// A progress text: rows written and how far the range is read.
    pub(crate) fn message(&self, p: &ExportParams) -> String {
        let mut m = format!("{} rows written", self.rows);
        match p.export {
            ExportKind::Spend => {
                if let Some(next) = &self.next {
                    m.push_str(&format!(", up to {next}"));
                }
            }
            ExportKind::Logs => {
                if let Some(at) = self
                    .after_log
                    .as_ref()
                    .and_then(|(nanos, _)| nanos.parse::<i128>().ok())
                    .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                {
                    m.push_str(&format!(", back to {}", rfc3339(at)));
                }
            }
            ExportKind::Audit => {
                if let (Some(after), Some(head)) = (self.after_id, self.head) {
                    m.push_str(&format!(", through row {after} of {head}"));
                }
            }
        }
        m
    }
}

/// The rows of one step, rendered a chunk at a time ([`Batch::next_chunk`]).
pub(crate) struct Batch {
    format: ExportFormat,
    /// Whether the batch's first chunk replaces the chunks from its `seq` on
    /// ([`crate::store::jobs::JobStore::rewrite_job_output`]): a slice written again.
    rewrite: bool,
    rows: Rows,
    cursor: ExportCursor,
    /// The cursor once every row of the batch is written.
    end: ExportCursor,
    /// Whether [`Batch::next_chunk`] has given anything (an empty batch still gives its cursor
    /// once, and the header row when it is the export's first chunk).
    started: bool,
}

enum Rows {
    Spend(SpendQuery, std::vec::IntoIter<SpendRow>),
    Logs(std::vec::IntoIter<UsageLogRow>),
    Audit(std::vec::IntoIter<AuditRecord>),
}

/// One step of an export after `cursor`: the next slice or page of rows, or `None` when the
/// export is complete.
pub(crate) async fn next_batch(
    cp: &ControlPlane,
    p: &ExportParams,
    cursor: &ExportCursor,
) -> Result<Option<Batch>, String> {
    if cursor.done {
        return Ok(None);
    }
    let plan = plan(p).map_err(|e| format!("invalid export: {e}"))?;
    let store = cp.store();
    let store_error = |e| format!("store error: {e}");
    let mut start = cursor.clone();
    let mut end = cursor.clone();
    let mut rewrite = false;
    let rows = match plan {
        Plan::Spend(mut q) => {
            let from = match &cursor.next {
                Some(t) => parse_rfc3339(t)?,
                None => q.since,
            };
            if from >= q.until {
                return Ok(None);
            }
            let slice = match q.interval {
                Interval::Hour => Duration::DAY,
                Interval::Day => Duration::weeks(1),
                Interval::None => q.until - q.since,
            };
            let to = (from + slice).min(q.until);
            start = slice_start(cursor)?;
            rewrite = cursor.skip > 0;
            // The whole export holds at most MAX_CSV_ROWS rows, as `/api/spend/export`: a slice
            // reads at most one row more than the rows left.
            let room = u64::from(MAX_CSV_ROWS).saturating_sub(start.rows);
            q.limit = u32::try_from(room + 1).unwrap_or(u32::MAX);
            q.since = from;
            q.until = to;
            let rows = store.query_spend(&q).await.map_err(store_error)?;
            if rows.len() as u64 > room {
                return Err(format!(
                    "the report has more than {MAX_CSV_ROWS} rows; narrow it (a shorter range, \
                     fewer groups, a filter)"
                ));
            }
            end = start.clone();
            end.next = Some(rfc3339(to));
            end.skip = 0;
            end.slice = None;
            Rows::Spend(q, rows.into_iter())
        }
        Plan::Logs(mut q) => {
            q.after = match &cursor.after_log {
                Some((nanos, id)) => {
                    let at = nanos
                        .parse::<i128>()
                        .ok()
                        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                        .ok_or_else(|| format!("invalid cursor {nanos:?}"))?;
                    Some((at, id.clone()))
                }
                None => None,
            };
            q.limit = PAGE_ROWS as u32;
            let rows = store.query_usage_logs(&q).await.map_err(store_error)?;
            if rows.is_empty() && cursor.seq > 0 {
                return Ok(None);
            }
            end.done = rows.len() < PAGE_ROWS;
            if let Some(last) = rows.last() {
                end.after_log = Some((
                    last.started_at.unix_timestamp_nanos().to_string(),
                    last.request_id.clone(),
                ));
            }
            Rows::Logs(rows.into_iter())
        }
        Plan::Audit(filter) => {
            // Rows written while the export runs are left out: it ends at the newest row it
            // saw first (its own `job.create` included).
            let head = match cursor.head {
                Some(h) => h,
                None => store
                    .list_audit(1)
                    .await
                    .map_err(store_error)?
                    .first()
                    .map_or(0, |r| r.id),
            };
            end.head = Some(head);
            let rows = store
                .query_audit(&AuditQuery {
                    filter,
                    before_id: Some(head.saturating_add(1)),
                    after_id: Some(cursor.after_id.unwrap_or(0)),
                    order: AuditOrder::OldestFirst,
                    limit: PAGE_ROWS as u32,
                })
                .await
                .map_err(store_error)?;
            if rows.is_empty() && cursor.seq > 0 {
                return Ok(None);
            }
            end.done = rows.len() < PAGE_ROWS;
            if let Some(last) = rows.last() {
                end.after_id = Some(last.id);
            }
            Rows::Audit(rows.into_iter())
        }
    };
    Ok(Some(Batch {
        format: p.format,
        rewrite,
        rows,
        cursor: start,
        end,
        started: false,
    }))
}

/// Where a spend slice is written from: `cursor` at a slice's start (the slice's first chunk
/// and rows so far noted), or, when a previous run wrote part of the slice (`skip > 0`), the
/// cursor at the slice's start: the slice is written again over its chunks.
fn slice_start(cursor: &ExportCursor) -> Result<ExportCursor, String> {
    if cursor.skip == 0 {
        return Ok(ExportCursor {
            slice: Some((cursor.seq, cursor.rows)),
            ..cursor.clone()
        });
    }
    let (seq, rows) = cursor.slice.ok_or_else(|| {
        "the export was taken over mid-slice with a cursor of an older version; queue it again"
            .to_owned()
    })?;
    Ok(ExportCursor {
        seq,
        rows,
        skip: 0,
        ..cursor.clone()
    })
}

impl Batch {
    /// The cursor the batch is written from (a slice written again starts before the
    /// caller's), and whether its first chunk replaces the chunks from there on.
    pub(crate) fn start(&self) -> (ExportCursor, bool) {
        (self.cursor.clone(), self.rewrite)
    }

    /// The next chunk of at most [`PAGE_ROWS`] rows and the cursor after it; `None` once the
    /// batch is written. An empty chunk only moves the cursor.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<(Vec<u8>, ExportCursor)>, String> {
        let header = self.cursor.seq == 0 && self.format == ExportFormat::Csv;
        let mut out = Vec::new();
        let mut csv = csv::Writer::from_writer(&mut out);
        let csv_error = |e: csv::Error| format!("cannot write CSV: {e}");
        if header {
            let h: Vec<&str> = match &self.rows {
                Rows::Spend(q, _) => csv_header(q),
                Rows::Logs(_) => LOG_COLUMNS.to_vec(),
                Rows::Audit(_) => AUDIT_COLUMNS.to_vec(),
            };
            csv.write_record(&h).map_err(csv_error)?;
        }
        let mut n = 0_u64;
        let mut jsonl = Vec::new();
        let format = self.format;
        let mut write = |cells: Vec<String>, json: &dyn erased::Json| -> Result<(), String> {
            match format {
                ExportFormat::Csv => csv.write_record(&cells).map_err(csv_error),
                ExportFormat::Jsonl => json
                    .write_line(&mut jsonl)
                    .map_err(|e| format!("cannot write JSON: {e}")),
            }
        };
        let more = match &mut self.rows {
            Rows::Spend(q, rows) => {
                for r in rows.by_ref().take(PAGE_ROWS) {
                    let cells = if format == ExportFormat::Csv {
                        csv_row(q, &r)
                    } else {
                        Vec::new()
                    };
                    write(cells, &entry(q, r))?;
                    n += 1;
                }
                rows.len() > 0
            }
            Rows::Logs(rows) => {
                for r in rows.by_ref().take(PAGE_ROWS) {
                    let cells = if format == ExportFormat::Csv {
                        log_row(&r)
                    } else {
                        Vec::new()
                    };
                    write(cells, &LogEntry::from(r))?;
                    n += 1;
                }
                rows.len() > 0
            }
            Rows::Audit(rows) => {
                for r in rows.by_ref().take(PAGE_ROWS) {
                    let cells = if format == ExportFormat::Csv {
                        audit_row(&r)
                    } else {
                        Vec::new()
                    };
                    write(cells, &AuditLogEntry::from(r))?;
                    n += 1;
                }
                rows.len() > 0
            }
        };
        if n == 0 && self.started && !header {
            return Ok(None);
        }
        csv.flush().map_err(|e| format!("cannot write CSV: {e}"))?;
        drop(csv);
        out.extend_from_slice(&jsonl);
        self.started = true;
        let mut next = if more {
            ExportCursor {
                skip: self.cursor.skip + n,
                ..self.cursor.clone()
            }
        } else {
            self.end.clone()
        };
        next.rows = self.cursor.rows + n;
        next.seq = self.cursor.seq + u64::from(!out.is_empty());
        self.cursor = next.clone();
        Ok(Some((out, next)))
    }
}

/// Rendering a row of any kind as one JSON line.
mod erased {
    pub(super) trait Json {
        fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer(&mut *out, self)?;
            out.push(b'\n');
            Ok(())
        }
    }
}

/// The columns of a logs CSV (the fields of `/api/logs` entries, flattened).
const LOG_COLUMNS: [&str; 25] = [
    "request_id",
    "started_at",
    "virtual_key_id",
    "key_name",
    "user_id",
    "user_name",
    "team_id",
    "customer_id",
    "provider",
    "model_requested",
    "model_resolved",
    "provider_key_id",
    "status",
    "error_class",
    "stream",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "latency_ms",
    "time_to_first_token_ms",
    "fallback_index",
    "attempts",
];

fn log_row(r: &UsageLogRow) -> Vec<String> {
    let text = |v: &str| cells::text(Some(v));
    let id = |v: Option<uuid::Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    vec![
        text(&r.request_id),
        timestamp(r.started_at),
        text(&r.virtual_key_id),
        cells::text(r.key_name.as_deref()),
        id(r.user_id),
        cells::text(r.user_name.as_deref()),
        id(r.team_id),
        id(r.customer_id),
        text(&r.provider),
        text(&r.model_requested),
        text(&r.model_resolved),
        text(&r.provider_key_id),
        r.status.to_string(),
        text(&r.error_class),
        r.stream.to_string(),
        r.input_tokens.to_string(),
        r.output_tokens.to_string(),
        r.cache_read_input_tokens.to_string(),
        r.cache_write_input_tokens.to_string(),
        r.cache_write_1h_input_tokens.to_string(),
        r.cost_nano_usd
            .map(|c| usd_text(u64::try_from(c).unwrap_or(0)))
            .unwrap_or_default(),
        r.latency_ms.to_string(),
        r.time_to_first_token_ms.to_string(),
        r.fallback_index.to_string(),
        cells::text(r.attempts.as_deref()),
    ]
}

/// The columns of an audit CSV (`details` as JSON text).
const AUDIT_COLUMNS: [&str; 10] = [
    "id",
    "at",
    "actor",
    "action",
    "target",
    "config_version",
    "result",
    "details",
    "prev_hash",
    "hash",
];

fn audit_row(r: &AuditRecord) -> Vec<String> {
    vec![
        r.id.to_string(),
        timestamp(r.at),
        cells::text(Some(&r.actor)),
        cells::text(Some(&r.action)),
        cells::text(Some(&r.target)),
        r.config_version.to_string(),
        cells::text(r.details.get("result").and_then(Value::as_str)),
        cells::text(Some(&r.details.to_string())),
        r.prev_hash.clone().unwrap_or_default(),
        r.hash.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spend::{Dimension, SpendTotals};
    use crate::usage_log::LogScope;

    fn spend_batch(rows: usize, cursor: ExportCursor) -> Batch {
        spend_batch_of((0..rows).collect(), cursor)
    }

    /// A batch of one spend slice whose rows are models `m{i}` for `ids`, in that order,
    /// written from `cursor` as `next_batch` does.
    fn spend_batch_of(ids: Vec<usize>, cursor: ExportCursor) -> Batch {
        let q = SpendQuery {
            since: OffsetDateTime::UNIX_EPOCH,
            until: OffsetDateTime::UNIX_EPOCH + Duration::DAY,
            interval: Interval::None,
            group_by: vec![Dimension::Model],
            virtual_key_id: None,
            team_id: None,
            customer_id: None,
            user_id: None,
            model: None,
            provider: None,
            scope: LogScope::All,
            limit: 10,
        };
        let rows: Vec<SpendRow> = ids
            .into_iter()
            .map(|i| SpendRow {
                model: Some(format!("m{i}")),
                totals: SpendTotals {
                    requests: 1,
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        let start = slice_start(&cursor).unwrap();
        let mut end = start.clone();
        end.next = Some("end".into());
        end.skip = 0;
        end.slice = None;
        Batch {
            format: ExportFormat::Csv,
            rewrite: cursor.skip > 0,
            rows: Rows::Spend(q, rows.into_iter()),
            cursor: start,
            end,
            started: false,
        }
    }

    fn chunks(mut b: Batch) -> Vec<(String, ExportCursor)> {
        let mut out = Vec::new();
        while let Some((bytes, cursor)) = b.next_chunk().unwrap() {
            out.push((String::from_utf8(bytes).unwrap(), cursor));
        }
        out
    }

    #[test]
    fn a_large_slice_is_written_a_page_at_a_time_with_its_position_in_the_cursor() {
        let got = chunks(spend_batch(2_500, ExportCursor::default()));
        assert_eq!(got.len(), 3);
        let lines: Vec<usize> = got.iter().map(|c| c.0.lines().count()).collect();
        assert_eq!(
            lines,
            [1_001, 1_000, 500],
            "the header row in the first chunk only"
        );
        assert!(got[0].0.starts_with("model,requests,"));
        assert!(got[1].0.starts_with("m1000,1,"));
        let cursors: Vec<(u64, u64, u64, Option<&str>)> = got
            .iter()
            .map(|(_, c)| (c.seq, c.rows, c.skip, c.next.as_deref()))
            .collect();
        assert_eq!(
            cursors,
            [
                (1, 1_000, 1_000, None),
                (2, 2_000, 2_000, None),
                (3, 2_500, 0, Some("end")),
            ]
        );

        // Taken over after the first chunk: the slice is read again and written again from
        // its first chunk (over the chunks written), header included.
        let resumed = spend_batch(2_500, got[0].1.clone());
        assert_eq!(resumed.start().0.seq, 0);
        assert!(resumed.start().1, "it replaces the slice's chunks");
        assert_eq!(chunks(resumed), got);
    }

    /// Writes `batch` into `out` (chunk number to text) as the runner does: a rewriting batch
    /// first deletes the chunks from its start.
    fn write(out: &mut std::collections::BTreeMap<u64, String>, mut batch: Batch) {
        let (start, rewrite) = batch.start();
        if rewrite {
            out.retain(|seq, _| *seq < start.seq);
        }
        let mut seq = start.seq;
        while let Some((bytes, next)) = batch.next_chunk().unwrap() {
            if !bytes.is_empty() {
                assert!(out.insert(seq, String::from_utf8(bytes).unwrap()).is_none());
            }
            seq = next.seq;
        }
    }

    #[test]
    fn a_slice_taken_over_after_its_rows_changed_order_holds_every_row_once() {
        // A slice that is not the export's first: 7 rows in 2 chunks were written before it.
        let before = ExportCursor {
            seq: 2,
            rows: 7,
            next: Some("1970-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let mut out = std::collections::BTreeMap::from([(0, "h\n".into()), (1, "x\n".into())]);
        let mut first = spend_batch_of((0..2_500).collect(), before);
        let (_, cursor) = first.next_chunk().unwrap().unwrap();
        out.insert(2, "(written by the first run)".into());
        assert_eq!(
            (cursor.seq, cursor.skip, cursor.slice),
            (3, 1_000, Some((2, 7)))
        );

        // The costs changed: the slice reads in the opposite order now.
        let again = spend_batch_of((0..2_500).rev().collect(), cursor);
        let (start, _) = again.start();
        assert_eq!((start.seq, start.rows, start.skip), (2, 7, 0));
        write(&mut out, again);
        assert_eq!(out[&0], "h\n", "the chunks before the slice stay");
        let text: String = out.range(2..).map(|(_, t)| t.as_str()).collect();
        let mut models: Vec<&str> = text.lines().map(|l| l.split(',').next().unwrap()).collect();
        assert_eq!(models.len(), 2_500);
        models.sort_unstable();
        models.dedup();
        assert_eq!(models.len(), 2_500, "no row twice, none lost");
    }

    #[test]
    fn a_mid_slice_cursor_without_its_slice_start_fails_the_export() {
        let old = ExportCursor {
            seq: 3,
            rows: 1_000,
            skip: 1_000,
            ..Default::default()
        };
        assert!(slice_start(&old).unwrap_err().contains("queue it again"));
    }

    #[test]
    fn an_empty_export_is_its_header_and_an_empty_step_only_moves_the_cursor() {
        let got = chunks(spend_batch(0, ExportCursor::default()));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.lines().count(), 1);
        assert_eq!((got[0].1.seq, got[0].1.rows), (1, 0));
        let later = ExportCursor {
            seq: 4,
            rows: 10,
            ..Default::default()
        };
        let got = chunks(spend_batch(0, later));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "");
        assert_eq!(
            (got[0].1.seq, got[0].1.rows, got[0].1.next.as_deref()),
            (4, 10, Some("end"))
        );
    }
}
