//! `/api/audit-logs` (and its export), `/api/version` and `/openapi.json`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::timestamp;
use crate::ControlPlane;
use crate::audit::{AuditFilter, AuditOrder, AuditResult, TextMatch};
use crate::model::AuditRecord;

const DEFAULT_AUDIT_LIMIT: u32 = 100;
const MAX_AUDIT_LIMIT: u32 = 1000;
/// Rows per store query while exporting.
const EXPORT_CHUNK: u32 = 500;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries to return (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (send the same filters again).
    pub cursor: Option<String>,
    /// Who: exact (`token@10.0.0.5`), or a prefix ending in `*` (`token@*`).
    pub actor: Option<String>,
    /// What: exact (`provider_key.update`), or a prefix ending in `*` (`virtual_key.*`).
    pub action: Option<String>,
    /// On what: exact (`providers/bedrock`), or a prefix ending in `*` (`providers/bedrock*`).
    pub target: Option<String>,
    /// `success` or `failure`.
    pub result: Option<String>,
    /// RFC 3339: entries at or after this time.
    pub since: Option<String>,
    /// RFC 3339: entries before this time.
    pub until: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditExportQuery {
    /// Who: exact, or a prefix ending in `*`.
    pub actor: Option<String>,
    /// What: exact, or a prefix ending in `*` (`virtual_key.*`).
    pub action: Option<String>,
    /// On what: exact, or a prefix ending in `*`.
    pub target: Option<String>,
    /// `success` or `failure`.
    pub result: Option<String>,
    /// RFC 3339: entries at or after this time.
    pub since: Option<String>,
    /// RFC 3339: entries before this time.
    pub until: Option<String>,
}

/// Parses the filters shared by the list and the export (400 naming the field).
pub(crate) fn audit_filter(
    actor: Option<&str>,
    action: Option<&str>,
    target: Option<&str>,
    result: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<AuditFilter, ApiError> {
    let text = |field: &str, raw: Option<&str>| {
        raw.map(|r| TextMatch::parse(r).map_err(|why| ApiError::invalid_field(field, why)))
            .transpose()
    };
    let time =
        |field: &str, raw: Option<&str>| raw.map(|r| super::parse_time(field, r)).transpose();
    let filter = AuditFilter {
        actor: text("actor", actor)?,
        action: text("action", action)?,
        target: text("target", target)?,
        result: result
            .map(|r| {
                AuditResult::parse(r).ok_or_else(|| {
                    ApiError::invalid_field("result", "must be `success` or `failure`")
                })
            })
            .transpose()?,
        since: time("since", since)?,
        until: time("until", until)?,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && until <= since
    {
        return Err(ApiError::invalid_field("until", "must be after `since`"));
    }
    Ok(filter)
}

/// The opaque cursor of the page after row `id` (newest first).
fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

fn decode_cursor(raw: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("v1:")?.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::invalid_field("cursor", "not a cursor from `next_cursor` of this API")
        })
}

/// One audit row: who, from where, what, before → after, result ([`crate::audit`] describes
/// `details`). `details` never contains secrets.
#[derive(Serialize, ToSchema)]
pub struct AuditLogEntry {
    pub id: i64,
    /// RFC 3339, microseconds (the hash covers exactly this instant).
    pub at: String,
    /// `token@ADDR`, `loopback@ADDR`; `anonymous@ADDR` for `auth.failed`.
    pub actor: String,
    /// `provider.create`, `provider_key.update`, `virtual_key.delete`, `budget.reset`,
    /// `auth.failed`, ...
    pub action: String,
    /// `providers/bedrock`, `providers/bedrock/keys/ID`, `virtual-keys/ID`; a refused create
    /// names the collection (`virtual-keys`), `auth.failed` the request path.
    pub target: String,
    /// The config version the change produced; for a row that records no change, the version
    /// current when it was written.
    pub config_version: u64,
    /// `result` (`success` or `failure`), `source` (`ip`, `user_agent`), `before` and `after`
    /// (the record with secrets redacted; null for a create or delete), `changed` (updates),
    /// `error` and `status` (failures).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The previous row's hash (empty for the first chained row; null before the chain).
    pub prev_hash: Option<String>,
    /// This row's hash: SHA-256 over the fields above and `prev_hash` (see `tollgate audit
    /// verify`).
    pub hash: Option<String>,
}

impl From<AuditRecord> for AuditLogEntry {
    fn from(r: AuditRecord) -> Self {
        AuditLogEntry {
            id: r.id,
            at: timestamp(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            config_version: r.config_version,
            details: r.details,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditLogList {
    pub audit_logs: Vec<AuditLogEntry>,
    pub count: usize,
    /// Pass as `cursor` (with the same filters) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The audit log, newest first, filtered, a page at a time (keyset pagination: follow
/// `next_cursor`).
#[utoipa::path(
    get,
    path = "/api/audit-logs",
    tag = "system",
    params(AuditQuery),
    responses(
        (status = 200, description = "Newest entries first", body = AuditLogList),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_audit_logs(
    State(cp): State<ControlPlane>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditLogList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_AUDIT_LIMIT}"),
        ));
    }
    let filter = audit_filter(
        q.actor.as_deref(),
        q.action.as_deref(),
        q.target.as_deref(),
        q.result.as_deref(),
        q.since.as_deref(),
        q.until.as_deref(),
    )?;
    let before_id = q.cursor.as_deref().map(decode_cursor).transpose()?;
    // One row more than asked tells whether there is a next page.
    let mut rows = cp
        .store()
        .query_audit(&crate::audit::AuditQuery {
            filter,
            before_id,
            after_id: None,
            order: AuditOrder::NewestFirst,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(r.id)))
        .flatten();
    let audit_logs: Vec<_> = rows.into_iter().map(AuditLogEntry::from).collect();
    Ok(Json(AuditLogList {
        count: audit_logs.len(),
        audit_logs,
        next_cursor,
    }))
}

/// The audit log as JSON lines, oldest first: every matching row (no page limit) up to the
/// newest row when the export began, each line an entry with `prev_hash` and `hash`, so an
/// unfiltered export can be verified offline (each row's hash covers its fields and the previous
/// row's hash). Streamed from the store in chunks; a store error mid-way ends the body early.
#[utoipa::path(
    get,
    path = "/api/audit-logs/export",
    tag = "system",
    params(AuditExportQuery),
    responses(
        (status = 200, description = "One entry per line, oldest first", content_type = "application/x-ndjson", body = AuditLogEntry),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn export_audit_logs(
    State(cp): State<ControlPlane>,
    ApiQuery(q): ApiQuery<AuditExportQuery>,
) -> Result<Response, ApiError> {
    let filter = audit_filter(
        q.actor.as_deref(),
        q.action.as_deref(),
        q.target.as_deref(),
        q.result.as_deref(),
        q.since.as_deref(),
        q.until.as_deref(),
    )?;
    // Rows written while the export runs are left out: it ends at the head it saw first.
    let head = cp.store().list_audit(1).await?.first().map_or(0, |r| r.id);
    let store = cp.store().clone();
    // State: the last id sent, or None when done.
    let lines = futures::stream::try_unfold(Some(0_i64), move |after| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let rows = store
                .query_audit(&crate::audit::AuditQuery {
                    filter,
                    before_id: Some(head.saturating_add(1)),
                    after_id: Some(after),
                    order: AuditOrder::OldestFirst,
                    limit: EXPORT_CHUNK,
                })
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "audit export failed; the body ends early");
                    std::io::Error::other("audit export failed")
                })?;
            let Some(last) = rows.last().map(|r| r.id) else {
                return Ok(None);
            };
            let next = (rows.len() == EXPORT_CHUNK as usize).then_some(last);
            let mut chunk = Vec::with_capacity(rows.len() * 512);
            for row in rows {
                serde_json::to_writer(&mut chunk, &AuditLogEntry::from(row))
                    .map_err(std::io::Error::other)?;
                chunk.push(b'\n');
            }
            Ok::<_, std::io::Error>(Some((bytes::Bytes::from(chunk), next)))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct VersionResponse {
    /// Build version of Tollgate.
    pub version: String,
    /// Current configuration version (bumped by every change).
    pub config_version: u64,
    /// Version of the snapshot published to data planes.
    pub published_version: u64,
    /// `sqlite` or `postgres`.
    pub store: String,
}

/// Build and configuration versions.
#[utoipa::path(
    get,
    path = "/api/version",
    tag = "system",
    responses(
        (status = 200, description = "Versions", body = VersionResponse),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn version(
    State(cp): State<ControlPlane>,
) -> Result<Json<VersionResponse>, ApiError> {
    Ok(Json(VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_version: cp.store().config_version().await?,
        published_version: cp.snapshots().borrow().version,
        store: cp.store().backend().to_owned(),
    }))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of the admin API", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = SPEC.get_or_init(super::openapi_pretty).clone();
    ([(header::CONTENT_TYPE, "application/json")], body)
}
