//! `/api/pricing`: the pricing table the data planes use, and an admin's overrides of it.
//! Overrides are entries in the shape of `proto/pricing.json` (USD per million tokens), stored,
//! matched before the shipped table (oldest first) and published in the snapshot.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tollgate_proto::pricing::{LongContextInput, PriceInput, PriceTable};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::Audit;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::model::{PriceOverrideRecord, now};
use crate::validate::ValidationError;

/// A price entry as shown: the fields of [`PriceInput`] (USD per million tokens), in a schema
/// that lets responses add their own fields (an override's id and times) beside them.
#[derive(Serialize, ToSchema)]
pub struct PriceView {
    #[schema(example = "bedrock")]
    pub provider: String,
    pub models: Vec<String>,
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextInput>,
    pub regional_premium_percent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<PriceInput> for PriceView {
    fn from(p: PriceInput) -> Self {
        PriceView {
            provider: p.provider,
            models: p.models,
            input: p.input,
            output: p.output,
            cache_write_5m: p.cache_write_5m,
            cache_write_1h: p.cache_write_1h,
            cache_read: p.cache_read,
            long_context: p.long_context,
            regional_premium_percent: p.regional_premium_percent,
            source: p.source,
            note: p.note,
        }
    }
}

/// A stored override.
#[derive(Serialize, ToSchema)]
pub struct PriceOverrideResponse {
    pub id: Uuid,
    #[serde(flatten)]
    pub price: PriceView,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&PriceOverrideRecord> for PriceOverrideResponse {
    fn from(o: &PriceOverrideRecord) -> Self {
        PriceOverrideResponse {
            id: o.id,
            price: PriceView::from(o.entry.clone()),
            created_at: timestamp(o.created_at),
            updated_at: timestamp(o.updated_at),
        }
    }
}

/// `GET /api/pricing`.
#[derive(Serialize, ToSchema)]
pub struct PricingResponse {
    /// Matched first, oldest first.
    pub overrides: Vec<PriceOverrideResponse>,
    /// The table that ships with this version (`proto/pricing.json`), with the source of every
    /// price.
    pub shipped: Vec<PriceView>,
}

/// Checks an override; errors name the field.
fn checked(input: PriceInput) -> Result<PriceInput, ValidationError> {
    input
        .check()
        .map_err(|e| ValidationError::new(e.field, e.problem))?;
    Ok(input)
}

/// The pricing table: overrides (matched first) and the shipped entries.
#[utoipa::path(
    get,
    path = "/api/pricing",
    tag = "pricing",
    responses(
        (status = 200, description = "Overrides and the shipped table", body = PricingResponse),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn get_pricing(
    State(cp): State<ControlPlane>,
) -> Result<Json<PricingResponse>, ApiError> {
    let overrides = cp.store().list_price_overrides().await?;
    Ok(Json(PricingResponse {
        overrides: overrides.iter().map(PriceOverrideResponse::from).collect(),
        shipped: PriceTable::shipped()
            .entries()
            .iter()
            .map(|e| PriceView::from(e.to_input()))
            .collect(),
    }))
}

/// Add a pricing override; it applies to usage from the next config version on.
#[utoipa::path(
    post,
    path = "/api/pricing",
    tag = "pricing",
    request_body = PriceInput,
    responses(
        (status = 201, description = "Created", body = PriceOverrideResponse),
        (status = 400, description = "Invalid entry", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn create_price_override(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiJson(body): ApiJson<PriceInput>,
) -> Result<(StatusCode, Json<PriceOverrideResponse>), ApiError> {
    let entry = checked(body)?;
    let t = now();
    let record = PriceOverrideRecord {
        id: Uuid::new_v4(),
        entry,
        created_at: t,
        updated_at: t,
    };
    let event = audit.event("pricing.create", format!("pricing/{}", record.id));
    let version = cp.store().create_price_override(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(PriceOverrideResponse::from(&record)),
    ))
}

/// Replace a pricing override: the body is the whole entry (without the override's id and
/// times).
#[utoipa::path(
    put,
    path = "/api/pricing/{override_id}",
    tag = "pricing",
    params(("override_id" = Uuid, Path, description = "Override id")),
    request_body = PriceInput,
    responses(
        (status = 200, description = "Replaced", body = PriceOverrideResponse),
        (status = 400, description = "Invalid entry", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such override", body = ErrorBody),
    )
)]
pub(crate) async fn replace_price_override(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(override_id): ApiPath<String>,
    ApiJson(body): ApiJson<PriceInput>,
) -> Result<Json<PriceOverrideResponse>, ApiError> {
    let id = parse_id("override_id", &override_id)?;
    let entry = checked(body)?;
    let t = now();
    let record = PriceOverrideRecord {
        id,
        entry,
        created_at: t,
        updated_at: t,
    };
    let event = audit.event("pricing.update", format!("pricing/{id}"));
    let (stored, version) = cp.store().replace_price_override(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(PriceOverrideResponse::from(&stored)))
}

/// Delete a pricing override (the shipped price, if any, applies again).
#[utoipa::path(
    delete,
    path = "/api/pricing/{override_id}",
    tag = "pricing",
    params(("override_id" = Uuid, Path, description = "Override id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such override", body = ErrorBody),
    )
)]
pub(crate) async fn delete_price_override(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(override_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("override_id", &override_id)?;
    let event = audit.event("pricing.delete", format!("pricing/{id}"));
    let version = cp.store().delete_price_override(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
