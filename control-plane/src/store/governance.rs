//! Storage of the governance model shared by both backends: team and customer rows, their SQL,
//! and the checks of a virtual key's references that need rows (see `check_vk_references` in
//! the backend macro).

use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::governance::{Limits, ProviderConfig};
use crate::model::{CustomerRecord, PriceOverrideRecord, TeamRecord};
use crate::validate::ValidationError;
use tollgate_proto::pricing::PriceInput;

#[derive(sqlx::FromRow)]
pub(crate) struct TeamRow {
    id: Uuid,
    name: String,
    customer_id: Option<Uuid>,
    limits: Json<Limits>,
    member_key_limits: Option<Json<Limits>>,
    content_logging: Option<Json<crate::governance::ContentLogging>>,
    mcp_tools: Option<Json<Vec<String>>>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<TeamRow> for TeamRecord {
    fn from(r: TeamRow) -> Self {
        TeamRecord {
            id: r.id,
            name: r.name,
            customer_id: r.customer_id,
            limits: r.limits.0,
            member_key_limits: r.member_key_limits.map(|l| l.0),
            content_logging: r.content_logging.map(|c| c.0),
            mcp_tools: r.mcp_tools.map(|t| t.0),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CustomerRow {
    id: Uuid,
    name: String,
    limits: Json<Limits>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<CustomerRow> for CustomerRecord {
    fn from(r: CustomerRow) -> Self {
        CustomerRecord {
            id: r.id,
            name: r.name,
            limits: r.limits.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PriceOverrideRow {
    id: Uuid,
    entry: Json<PriceInput>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<PriceOverrideRow> for PriceOverrideRecord {
    fn from(r: PriceOverrideRow) -> Self {
        PriceOverrideRecord {
            id: r.id,
            entry: r.entry.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Every key id that provider config `index` names must be one of the provider's `existing` keys.
pub(crate) fn check_key_ids(
    index: usize,
    config: &ProviderConfig,
    existing: &[Uuid],
) -> Result<(), StoreError> {
    for (j, id) in config.key_ids.iter().enumerate() {
        if !existing.contains(id) {
            return Err(ValidationError::new(
                format!("provider_configs[{index}].key_ids[{j}]"),
                format!("provider {:?} has no key {id}", config.provider),
            )
            .into());
        }
    }
    Ok(())
}

/// A unique violation (the name) or a foreign-key violation (rows that belong to the one being
/// deleted, or a customer that does not exist) as a conflict with `message`; anything else as a
/// database error.
pub(crate) fn reference_conflict(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            StoreError::Conflict(message())
        }
        _ => StoreError::Database(e),
    }
}

pub(crate) mod sql {
    pub const LIST_TEAMS: &str = "SELECT id, name, customer_id, limits, member_key_limits, content_logging, \
         mcp_tools, created_at, updated_at FROM teams ORDER BY name";
    pub const GET_TEAM: &str = "SELECT id, name, customer_id, limits, member_key_limits, content_logging, \
         mcp_tools, created_at, updated_at FROM teams WHERE id = $1";
    pub const INSERT_TEAM: &str = "INSERT INTO teams (id, name, customer_id, limits, created_at, \
         updated_at, member_key_limits, content_logging, mcp_tools) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    pub const UPDATE_TEAM: &str = "UPDATE teams SET name = $2, customer_id = $3, limits = $4, \
         updated_at = $5, member_key_limits = $6, content_logging = $7, mcp_tools = $8 WHERE id = $1";
    pub const DELETE_TEAM: &str = "DELETE FROM teams WHERE id = $1";
    pub const TEAM_MEMBERS: &str = "SELECT name FROM virtual_keys WHERE team_id = $1 ORDER BY name";

    pub const LIST_CUSTOMERS: &str =
        "SELECT id, name, limits, created_at, updated_at FROM customers ORDER BY name";
    pub const GET_CUSTOMER: &str =
        "SELECT id, name, limits, created_at, updated_at FROM customers WHERE id = $1";
    pub const INSERT_CUSTOMER: &str = "INSERT INTO customers (id, name, limits, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5)";
    pub const UPDATE_CUSTOMER: &str =
        "UPDATE customers SET name = $2, limits = $3, updated_at = $4 WHERE id = $1";
    pub const DELETE_CUSTOMER: &str = "DELETE FROM customers WHERE id = $1";
    pub const CUSTOMER_MEMBERS: &str = "SELECT name FROM teams WHERE customer_id = $1 \
         UNION ALL SELECT name FROM virtual_keys WHERE customer_id = $1";

    pub const LIST_PRICE_OVERRIDES: &str = "SELECT id, entry, created_at, updated_at \
         FROM price_overrides ORDER BY created_at, id";
    pub const INSERT_PRICE_OVERRIDE: &str = "INSERT INTO price_overrides (id, entry, created_at, \
         updated_at) VALUES ($1, $2, $3, $4)";
    pub const UPDATE_PRICE_OVERRIDE: &str =
        "UPDATE price_overrides SET entry = $2, updated_at = $3 WHERE id = $1";
    pub const DELETE_PRICE_OVERRIDE: &str = "DELETE FROM price_overrides WHERE id = $1";

    pub const KEY_IDS_OF_PROVIDER: &str = "SELECT id FROM provider_keys WHERE provider = $1";
}
