//! `/api/pricing`: the pricing table the data planes use, and an admin's overrides of it.
//! Overrides are entries in the shape of `proto/pricing.json` (USD per million tokens), stored,
//! matched before the shipped table (oldest first) and published in the snapshot.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tollgate_proto::pricing::{LongContextInput, PriceEntry, PriceInput, PriceTable, Rates};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Actor;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::model::{AuditEvent, PriceOverrideRecord, now};
use crate::validate::ValidationError;

/// A price entry: which models of which provider, and their prices in USD per million tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    /// `anthropic`, `bedrock` or `vertex`: the kind of provider, whatever its configured name.
    #[schema(example = "bedrock")]
    pub provider: String,
    /// Model id patterns (`*` matches any run of characters). For Bedrock they match the id
    /// without its scope prefix (`anthropic.claude-sonnet-4-6*` covers `global.`, `us.`, ...), or
    /// a whole ARN (an application inference profile, priced as given).
    #[schema(example = json!(["anthropic.claude-sonnet-4-6*"]))]
    pub models: Vec<String>,
    #[schema(example = 2.7)]
    pub input: f64,
    #[schema(example = 13.5)]
    pub output: f64,
    /// Cache writes with the default 5-minute TTL.
    pub cache_write_5m: f64,
    /// Cache writes with the 1-hour TTL.
    pub cache_write_1h: f64,
    pub cache_read: f64,
    /// Above `above_input_tokens` input tokens, the whole request is priced at these rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextBody>,
    /// How much more Bedrock geographic profiles and in-region ids cost than `global.` ones.
    #[serde(default)]
    pub regional_premium_percent: u64,
    /// Where the prices come from (a page, a contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LongContextBody {
    pub above_input_tokens: u64,
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

impl From<PriceBody> for PriceInput {
    fn from(b: PriceBody) -> Self {
        PriceInput {
            provider: b.provider,
            models: b.models,
            input: b.input,
            output: b.output,
            cache_write_5m: b.cache_write_5m,
            cache_write_1h: b.cache_write_1h,
            cache_read: b.cache_read,
            long_context: b.long_context.map(|l| LongContextInput {
                above_input_tokens: l.above_input_tokens,
                input: l.input,
                output: l.output,
                cache_write_5m: l.cache_write_5m,
                cache_write_1h: l.cache_write_1h,
                cache_read: l.cache_read,
            }),
            regional_premium_percent: b.regional_premium_percent,
            source: b.source,
            note: b.note,
        }
    }
}

impl From<&PriceInput> for PriceBody {
    fn from(i: &PriceInput) -> Self {
        PriceBody {
            provider: i.provider.clone(),
            models: i.models.clone(),
            input: i.input,
            output: i.output,
            cache_write_5m: i.cache_write_5m,
            cache_write_1h: i.cache_write_1h,
            cache_read: i.cache_read,
            long_context: i.long_context.as_ref().map(|l| LongContextBody {
                above_input_tokens: l.above_input_tokens,
                input: l.input,
                output: l.output,
                cache_write_5m: l.cache_write_5m,
                cache_write_1h: l.cache_write_1h,
                cache_read: l.cache_read,
            }),
            regional_premium_percent: i.regional_premium_percent,
            source: i.source.clone(),
            note: i.note.clone(),
        }
    }
}

/// USD per million tokens of nano-dollars per token.
fn per_mtok(nano_per_token: u64) -> f64 {
    nano_per_token as f64 / 1000.0
}

impl From<&PriceEntry> for PriceBody {
    fn from(e: &PriceEntry) -> Self {
        let r: Rates = e.price.rates;
        PriceBody {
            provider: e.provider.clone(),
            models: e.models.clone(),
            input: per_mtok(r.input),
            output: per_mtok(r.output),
            cache_write_5m: per_mtok(r.cache_write_5m),
            cache_write_1h: per_mtok(r.cache_write_1h),
            cache_read: per_mtok(r.cache_read),
            long_context: e.price.long_context.map(|(above, l)| LongContextBody {
                above_input_tokens: above,
                input: per_mtok(l.input),
                output: per_mtok(l.output),
                cache_write_5m: per_mtok(l.cache_write_5m),
                cache_write_1h: per_mtok(l.cache_write_1h),
                cache_read: per_mtok(l.cache_read),
            }),
            regional_premium_percent: e.regional_premium_percent,
            source: Some(e.source.clone()),
            note: None,
        }
    }
}

/// A stored override.
#[derive(Serialize, ToSchema)]
pub struct PriceOverrideResponse {
    pub id: Uuid,
    #[serde(flatten)]
    pub price: PriceBody,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&PriceOverrideRecord> for PriceOverrideResponse {
    fn from(o: &PriceOverrideRecord) -> Self {
        PriceOverrideResponse {
            id: o.id,
            price: PriceBody::from(&o.entry),
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
    pub shipped: Vec<PriceBody>,
}

/// Checks an override; errors name the field.
fn checked(body: PriceBody) -> Result<PriceInput, ValidationError> {
    let input = PriceInput::from(body);
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
            .map(PriceBody::from)
            .collect(),
    }))
}

/// Add a pricing override; it applies to usage from the next config version on.
#[utoipa::path(
    post,
    path = "/api/pricing",
    tag = "pricing",
    request_body = PriceBody,
    responses(
        (status = 201, description = "Created", body = PriceOverrideResponse),
        (status = 400, description = "Invalid entry", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn create_price_override(
    State(cp): State<ControlPlane>,
    actor: Actor,
    ApiJson(body): ApiJson<PriceBody>,
) -> Result<(StatusCode, Json<PriceOverrideResponse>), ApiError> {
    let entry = checked(body)?;
    let t = now();
    let record = PriceOverrideRecord {
        id: Uuid::new_v4(),
        entry,
        created_at: t,
        updated_at: t,
    };
    let event = AuditEvent {
        actor: actor.0,
        action: "pricing.create".to_owned(),
        target: format!("pricing/{}", record.id),
        details: json!(record.entry),
    };
    let version = cp.store().create_price_override(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(PriceOverrideResponse::from(&record)),
    ))
}

/// Replace a pricing override.
#[utoipa::path(
    put,
    path = "/api/pricing/{override_id}",
    tag = "pricing",
    params(("override_id" = Uuid, Path, description = "Override id")),
    request_body = PriceBody,
    responses(
        (status = 200, description = "Replaced", body = PriceOverrideResponse),
        (status = 400, description = "Invalid entry", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such override", body = ErrorBody),
    )
)]
pub(crate) async fn replace_price_override(
    State(cp): State<ControlPlane>,
    actor: Actor,
    ApiPath(override_id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdatePriceBody>,
) -> Result<Json<PriceOverrideResponse>, ApiError> {
    let id = parse_id("override_id", &override_id)?;
    if body.id.is_some_and(|given| given != id) {
        return Err(ApiError::invalid_field(
            "id",
            "does not match the id in the path",
        ));
    }
    let entry = checked(body.price)?;
    let t = now();
    let record = PriceOverrideRecord {
        id,
        entry,
        created_at: t,
        updated_at: t,
    };
    let event = AuditEvent {
        actor: actor.0,
        action: "pricing.update".to_owned(),
        target: format!("pricing/{id}"),
        details: json!(record.entry),
    };
    let (stored, version) = cp.store().replace_price_override(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(PriceOverrideResponse::from(&stored)))
}

/// `PUT /api/pricing/{override_id}` body: a whole entry (read-only fields of a listed override
/// are accepted and ignored).
#[derive(Deserialize, ToSchema)]
pub struct UpdatePriceBody {
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(flatten)]
    pub price: PriceBody,
    /// Read-only; ignored.
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<String>,
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
    actor: Actor,
    ApiPath(override_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("override_id", &override_id)?;
    let event = AuditEvent {
        actor: actor.0,
        action: "pricing.delete".to_owned(),
        target: format!("pricing/{id}"),
        details: json!({}),
    };
    let version = cp.store().delete_price_override(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
