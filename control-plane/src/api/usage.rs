//! Spend against limits, from the stored usage: `GET /api/virtual-keys/{id}/usage` (and for
//! teams and customers), and the admin budget reset `POST .../budgets/{budget_id}/reset`.
//!
//! Windows are computed with the data planes' rule (`tollgate_proto::window`); spend, tokens
//! and requests are the usage records that started in the current window (after an admin reset
//! in it), across every data plane. They trail the data planes by the usage delivery delay
//! (about a second).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use tollgate_proto::config::v1::LevelKind;
use tollgate_proto::window::WindowSpec;
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::Audit;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::governance::{self, Budget, Limits, ResetDuration, usd};
use crate::model::{AuditEvent, now};
use crate::validate::ValidationError;

/// One budget's current window.
#[derive(Serialize, ToSchema)]
pub struct BudgetUsage {
    pub id: Uuid,
    pub reset_duration: ResetDuration,
    pub calendar_aligned: bool,
    /// USD per window.
    pub max_limit: f64,
    /// USD spent in the current window.
    pub spent: f64,
    pub spent_nano_usd: u64,
    /// USD left in the current window.
    pub remaining: f64,
    /// Requests in the window whose model had no price (not in `spent`).
    pub unpriced_requests: u64,
    /// RFC 3339: where the counted spend starts (the window's start, or an admin reset in it).
    pub counted_from: String,
    /// RFC 3339: when the window ends and the budget starts again.
    pub resets_at: String,
}

/// A rate limit's current window.
#[derive(Serialize, ToSchema)]
pub struct RateUsage {
    pub max_limit: u64,
    pub used: u64,
    pub reset_duration: ResetDuration,
    /// RFC 3339.
    pub resets_at: String,
}

/// The usage of an owner (a virtual key, a team, a customer) against its own limits.
#[derive(Serialize, ToSchema)]
pub struct UsageResponse {
    pub id: Uuid,
    pub name: String,
    /// The virtual keys whose usage is counted (the key itself, or the group's keys).
    pub virtual_keys: usize,
    pub budgets: Vec<BudgetUsage>,
    /// Requests per window, when the owner has a request limit (requests its limits refused
    /// are not counted).
    pub requests: Option<RateUsage>,
    /// Tokens per window, when the owner has a token limit.
    pub tokens: Option<RateUsage>,
    pub max_concurrent: Option<u32>,
    /// Requests in flight now, over every data plane (as they reported in the last few
    /// seconds; they report about twice a second).
    pub in_flight: u64,
    /// RFC 3339: when these figures were computed.
    pub at: String,
}

fn instant(unix_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

async fn budget_usage(
    cp: &ControlPlane,
    keys: &[String],
    b: &Budget,
    now_ms: i64,
) -> Result<BudgetUsage, ApiError> {
    let window =
        WindowSpec::new(b.reset_duration, b.calendar_aligned, b.anchor_unix_ms).window_at(now_ms);
    let from = match b.reset_at_unix_ms {
        Some(reset) if window.contains(reset) => reset,
        _ => window.start_unix_ms,
    };
    let used = cp
        .store()
        .usage_in(keys, instant(from), instant(window.end_unix_ms))
        .await?;
    Ok(BudgetUsage {
        id: b.id,
        reset_duration: b.reset_duration,
        calendar_aligned: b.calendar_aligned,
        max_limit: usd(b.max_limit_nano_usd),
        spent: usd(used.cost_nano_usd),
        spent_nano_usd: used.cost_nano_usd,
        remaining: usd(b.max_limit_nano_usd.saturating_sub(used.cost_nano_usd)),
        unpriced_requests: used.unpriced_requests,
        counted_from: timestamp(instant(from)),
        resets_at: timestamp(instant(window.end_unix_ms)),
    })
}

async fn rate_usage(
    cp: &ControlPlane,
    keys: &[String],
    limit: Option<u64>,
    reset: Option<ResetDuration>,
    tokens: bool,
    now_ms: i64,
) -> Result<Option<RateUsage>, ApiError> {
    let (Some(max_limit), Some(reset_duration)) = (limit, reset) else {
        return Ok(None);
    };
    let window = WindowSpec::calendar(reset_duration).window_at(now_ms);
    let used = cp
        .store()
        .usage_in(
            keys,
            instant(window.start_unix_ms),
            instant(window.end_unix_ms),
        )
        .await?;
    Ok(Some(RateUsage {
        max_limit,
        used: if tokens { used.tokens } else { used.requests },
        reset_duration,
        resets_at: timestamp(instant(window.end_unix_ms)),
    }))
}

async fn usage_of(
    cp: &ControlPlane,
    (kind, id): (LevelKind, Uuid),
    name: String,
    limits: &Limits,
    keys: Vec<String>,
) -> Result<Json<UsageResponse>, ApiError> {
    let t = now();
    let now_ms = governance::unix_ms(t);
    let mut budgets = Vec::with_capacity(limits.budgets.len());
    for b in &limits.budgets {
        budgets.push(budget_usage(cp, &keys, b, now_ms).await?);
    }
    let rate = limits.rate_limit.clone().unwrap_or_default();
    Ok(Json(UsageResponse {
        id,
        name,
        virtual_keys: keys.len(),
        budgets,
        requests: rate_usage(
            cp,
            &keys,
            rate.request_max_limit,
            rate.request_reset_duration,
            false,
            now_ms,
        )
        .await?,
        tokens: rate_usage(
            cp,
            &keys,
            rate.token_max_limit,
            rate.token_reset_duration,
            true,
            now_ms,
        )
        .await?,
        max_concurrent: limits.max_concurrent,
        in_flight: cp.in_flight(&(kind as i32, id.to_string(), String::new())),
        at: timestamp(t),
    }))
}

/// Usage of a virtual key against its limits (its own budgets and rate limit).
#[utoipa::path(
    get,
    path = "/api/virtual-keys/{vk_id}/usage",
    tag = "virtual-keys",
    params(("vk_id" = Uuid, Path, description = "Virtual key id")),
    responses(
        (status = 200, description = "Spend, tokens and requests in each current window", body = UsageResponse),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such virtual key", body = ErrorBody),
    )
)]
pub(crate) async fn virtual_key_usage(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiPath(vk_id): ApiPath<String>,
) -> Result<Json<UsageResponse>, ApiError> {
    let id = parse_id("vk_id", &vk_id)?;
    let vk = super::virtual_keys::scoped_key(&cp, &caller, id).await?;
    usage_of(
        &cp,
        (LevelKind::VirtualKey, id),
        vk.name,
        &vk.governance.limits,
        vec![id.to_string()],
    )
    .await
}

/// Usage of a team's keys against the team's limits.
#[utoipa::path(
    get,
    path = "/api/teams/{team_id}/usage",
    tag = "teams",
    params(("team_id" = Uuid, Path, description = "Team id")),
    responses(
        (status = 200, description = "Spend, tokens and requests in each current window", body = UsageResponse),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such team", body = ErrorBody),
    )
)]
pub(crate) async fn team_usage(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiPath(team_id): ApiPath<String>,
) -> Result<Json<UsageResponse>, ApiError> {
    let id = parse_id("team_id", &team_id)?;
    caller.check_team(id)?;
    let team = cp
        .store()
        .get_team(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("team {id} not found")))?;
    let keys = cp
        .store()
        .list_virtual_keys()
        .await?
        .into_iter()
        .filter(|k| k.team_id == Some(id))
        .map(|k| k.id.to_string())
        .collect();
    usage_of(&cp, (LevelKind::Team, id), team.name, &team.limits, keys).await
}

/// Usage of a customer's keys (its own, and its teams') against the customer's limits.
#[utoipa::path(
    get,
    path = "/api/customers/{customer_id}/usage",
    tag = "customers",
    params(("customer_id" = Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, description = "Spend, tokens and requests in each current window", body = UsageResponse),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such customer", body = ErrorBody),
    )
)]
pub(crate) async fn customer_usage(
    State(cp): State<ControlPlane>,
    ApiPath(customer_id): ApiPath<String>,
) -> Result<Json<UsageResponse>, ApiError> {
    let id = parse_id("customer_id", &customer_id)?;
    let customer = cp
        .store()
        .get_customer(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("customer {id} not found")))?;
    let teams: Vec<Uuid> = cp
        .store()
        .list_teams()
        .await?
        .into_iter()
        .filter(|t| t.customer_id == Some(id))
        .map(|t| t.id)
        .collect();
    let keys = cp
        .store()
        .list_virtual_keys()
        .await?
        .into_iter()
        .filter(|k| k.customer_id == Some(id) || k.team_id.is_some_and(|t| teams.contains(&t)))
        .map(|k| k.id.to_string())
        .collect();
    usage_of(
        &cp,
        (LevelKind::Customer, id),
        customer.name,
        &customer.limits,
        keys,
    )
    .await
}

/// Marks budget `budget_id` of `limits` reset now (spend before now stops counting in its
/// current window); NotFound-shaped error when the owner has no such budget.
fn reset_budget(limits: &mut Limits, budget_id: Uuid, now_ms: i64) -> Result<(), ValidationError> {
    let b = limits
        .budgets
        .iter_mut()
        .find(|b| b.id == budget_id)
        .ok_or_else(|| ValidationError::new("budget_id", format!("no budget {budget_id}")))?;
    b.reset_at_unix_ms = Some(now_ms);
    Ok(())
}

fn reset_event(audit: &Audit, target: String, budget_id: Uuid) -> AuditEvent {
    audit
        .event("budget.reset", target)
        .with("budget_id", json!(budget_id))
}

/// Reset a virtual key's budget: spend so far in its current window stops counting (on every
/// data plane from the next config version on).
#[utoipa::path(
    post,
    path = "/api/virtual-keys/{vk_id}/budgets/{budget_id}/reset",
    tag = "virtual-keys",
    params(
        ("vk_id" = Uuid, Path, description = "Virtual key id"),
        ("budget_id" = Uuid, Path, description = "Budget id"),
    ),
    responses(
        (status = 204, description = "Reset"),
        (status = 400, description = "Malformed id or no such budget", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such virtual key", body = ErrorBody),
    )
)]
pub(crate) async fn reset_virtual_key_budget(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: Audit,
    ApiPath((vk_id, budget_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("vk_id", &vk_id)?;
    super::virtual_keys::scoped_key(&cp, &caller, id).await?;
    let budget_id = parse_id("budget_id", &budget_id)?;
    let now_ms = governance::unix_ms(now());
    let apply = |vk: &mut crate::model::VirtualKeyRecord| {
        reset_budget(&mut vk.governance.limits, budget_id, now_ms)
    };
    let event = reset_event(&audit, format!("virtual-keys/{id}"), budget_id);
    let (_, version) = cp.store().update_virtual_key(id, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset a team's budget.
#[utoipa::path(
    post,
    path = "/api/teams/{team_id}/budgets/{budget_id}/reset",
    tag = "teams",
    params(
        ("team_id" = Uuid, Path, description = "Team id"),
        ("budget_id" = Uuid, Path, description = "Budget id"),
    ),
    responses(
        (status = 204, description = "Reset"),
        (status = 400, description = "Malformed id or no such budget", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such team", body = ErrorBody),
    )
)]
pub(crate) async fn reset_team_budget(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: Audit,
    ApiPath((team_id, budget_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("team_id", &team_id)?;
    caller.check_team(id)?;
    let budget_id = parse_id("budget_id", &budget_id)?;
    let now_ms = governance::unix_ms(now());
    let apply = |t: &mut crate::model::TeamRecord| reset_budget(&mut t.limits, budget_id, now_ms);
    let event = reset_event(&audit, format!("teams/{id}"), budget_id);
    let (_, version) = cp.store().update_team(id, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset a customer's budget.
#[utoipa::path(
    post,
    path = "/api/customers/{customer_id}/budgets/{budget_id}/reset",
    tag = "customers",
    params(
        ("customer_id" = Uuid, Path, description = "Customer id"),
        ("budget_id" = Uuid, Path, description = "Budget id"),
    ),
    responses(
        (status = 204, description = "Reset"),
        (status = 400, description = "Malformed id or no such budget", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such customer", body = ErrorBody),
    )
)]
pub(crate) async fn reset_customer_budget(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath((customer_id, budget_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("customer_id", &customer_id)?;
    let budget_id = parse_id("budget_id", &budget_id)?;
    let now_ms = governance::unix_ms(now());
    let apply =
        |c: &mut crate::model::CustomerRecord| reset_budget(&mut c.limits, budget_id, now_ms);
    let event = reset_event(&audit, format!("customers/{id}"), budget_id);
    let (_, version) = cp.store().update_customer(id, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
