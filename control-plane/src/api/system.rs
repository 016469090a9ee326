//! `/api/audit-logs`, `/api/version` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::timestamp;
use crate::ControlPlane;
use crate::model::AuditRecord;

const DEFAULT_AUDIT_LIMIT: u32 = 100;
const MAX_AUDIT_LIMIT: u32 = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries to return (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One audited change. `details` never contains secrets.
#[derive(Serialize, ToSchema)]
pub struct AuditLogEntry {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// `token@ADDR` or `loopback@ADDR`.
    pub actor: String,
    /// `provider.create`, `provider_key.update`, `virtual_key.delete`, ...
    pub action: String,
    /// `providers/bedrock`, `providers/bedrock/keys/ID`, `virtual-keys/ID`.
    pub target: String,
    /// The config version the change produced.
    pub config_version: u64,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
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
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditLogList {
    pub audit_logs: Vec<AuditLogEntry>,
    pub count: usize,
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/audit-logs",
    tag = "system",
    params(AuditQuery),
    responses(
        (status = 200, description = "Newest entries first", body = AuditLogList),
        (status = 400, description = "Invalid query", body = ErrorBody),
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
    let audit_logs: Vec<_> = cp
        .store()
        .list_audit(limit)
        .await?
        .into_iter()
        .map(AuditLogEntry::from)
        .collect();
    Ok(Json(AuditLogList {
        count: audit_logs.len(),
        audit_logs,
    }))
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
