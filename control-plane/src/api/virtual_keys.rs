//! `/api/virtual-keys` (also served as `/api/governance/virtual-keys`): keys clients use to call
//! the gateway. The value is generated here, returned once by the create call, and stored only
//! as its SHA-256.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::Audit;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::crypto::{generate_virtual_key, sha256};
use crate::governance::{
    self, Budget, BudgetInput, BudgetView, ContentLogging, KeyGovernance, Limits, ProviderConfig,
    ProviderConfigInput, ProviderConfigView, RateLimit, ResetDuration, monthly, usd,
};
use crate::model::{VirtualKeyRecord, now};
use crate::store::StoreError;
use crate::validate::{self, ValidationError};

/// `POST /api/virtual-keys` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVirtualKeyRequest {
    #[schema(example = "engineering-team")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Shorthand for one calendar-aligned `1M` budget of this many USD; 0 or omitted means none.
    /// Not together with `budgets`.
    #[serde(default)]
    #[schema(example = 500)]
    pub monthly_budget: Option<f64>,
    /// Shorthand for one provider config (weight 1, every model and key).
    #[serde(default)]
    #[schema(example = "bedrock")]
    pub provider: Option<String>,
    /// Shorthand for one provider config per provider. Omitted or empty (and no
    /// `provider_configs`): every provider.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// What the key may do with each provider, with per-provider limits. Only one of
    /// `provider`, `providers` and `provider_configs`.
    #[serde(default)]
    pub provider_configs: Option<Vec<ProviderConfigInput>>,
    /// Spending limits, one per `reset_duration`.
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// The team the key belongs to (its limits, and its customer's, apply too). Not together
    /// with `customer_id`.
    #[serde(default)]
    pub team_id: Option<Uuid>,
    /// The customer the key belongs to directly.
    #[serde(default)]
    pub customer_id: Option<Uuid>,
    /// Default true.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// RFC 3339, in the future; afterwards the key is refused like an inactive one.
    #[serde(default)]
    #[schema(example = "2027-01-01T00:00:00Z")]
    pub expires_at: Option<String>,
    /// With the control plane unreachable and this data plane's share of a limit used up, admit
    /// (true) or refuse (false, the default) the key's requests.
    #[serde(default)]
    pub fail_open: Option<bool>,
    /// Models (`provider/model`, at most 8) tried in order when an attempt fails with 429, 529,
    /// 5xx, no connection or a timeout, unless a request brings its own `fallbacks`.
    #[serde(default)]
    #[schema(example = json!(["anthropic/claude-sonnet-4-6"]))]
    pub fallbacks: Option<Vec<String>>,
    /// Admins only: record the request and response bodies of this key's requests, or (with
    /// `enabled: false`) not, whatever its team says. Absent: the team's setting applies.
    #[serde(default)]
    pub content_logging: Option<ContentLogging>,
    /// The MCP tools (`/mcp`) this key may list and call: patterns (exact, `*` globs,
    /// `regex:`; case-insensitive) over the served names `<server>__<tool>`. Absent or null: no
    /// restriction of the key's own; `[]`: no tool. Its team's list applies too.
    #[serde(default)]
    #[schema(example = json!(["github__search_*", "docs__*"]))]
    pub mcp_tools: Option<Vec<String>>,
}

/// `PUT /api/virtual-keys/{vk_id}` body; omitted fields stay as they are, `null` clears the
/// nullable ones. A list given replaces the stored one (budgets keep their id and windows when
/// their `reset_duration` stays). The value cannot be changed (create a new key instead).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVirtualKeyRequest {
    /// Must equal the id in the path if given.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    /// Sets (or, with 0, removes) the calendar-aligned `1M` budget; other budgets stay.
    #[serde(default)]
    pub monthly_budget: Option<f64>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    #[serde(default)]
    pub provider_configs: Option<Vec<ProviderConfigInput>>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<RateLimit>, nullable)]
    pub rate_limit: Option<Option<RateLimit>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<u32>, nullable)]
    pub max_concurrent: Option<Option<u32>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Uuid>, nullable)]
    pub team_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Uuid>, nullable)]
    pub customer_id: Option<Option<Uuid>>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub expires_at: Option<Option<String>>,
    #[serde(default)]
    pub fail_open: Option<bool>,
    /// Replaces the list (`[]` clears it).
    #[serde(default)]
    pub fallbacks: Option<Vec<String>>,
    /// Admins only: replaces the key's own content-logging setting (`null`: its team's
    /// applies).
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<ContentLogging>, nullable)]
    pub content_logging: Option<Option<ContentLogging>>,
    /// Replaces the key's MCP tool allowlist (`null`: no restriction of its own, `[]`: no
    /// tool).
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub mcp_tools: Option<Option<Vec<String>>>,
    /// Read-only; ignored.
    #[serde(default, rename = "value_prefix")]
    pub _value_prefix: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<String>,
}

/// A virtual key as listed: never its value.
#[derive(Serialize, ToSchema)]
pub struct VirtualKeyResponse {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The start of the value, to recognise the key.
    #[schema(example = "sk-tg-AbCd…")]
    pub value_prefix: String,
    /// Providers the key may use; empty means all.
    pub providers: Vec<String>,
    /// The calendar-aligned `1M` budget in USD; 0 when there is none.
    pub monthly_budget: f64,
    pub budgets: Vec<BudgetView>,
    pub rate_limit: Option<RateLimit>,
    pub max_concurrent: Option<u32>,
    /// Empty: every provider of `providers`, every model and key.
    pub provider_configs: Vec<ProviderConfigView>,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub is_active: bool,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub fail_open: bool,
    /// Models tried in order when an attempt fails (empty: none).
    pub fallbacks: Vec<String>,
    /// The key's own content-logging setting (`null`: its team's applies).
    pub content_logging: Option<ContentLogging>,
    /// The key's own MCP tool allowlist over served names `<server>__<tool>` (`null`: no
    /// restriction of its own; its team's list applies too).
    pub mcp_tools: Option<Vec<String>>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&VirtualKeyRecord> for VirtualKeyResponse {
    fn from(vk: &VirtualKeyRecord) -> Self {
        let g = &vk.governance;
        VirtualKeyResponse {
            id: vk.id,
            name: vk.name.clone(),
            description: vk.description.clone(),
            value_prefix: format!("{}…", vk.value_prefix),
            providers: vk.providers.clone(),
            monthly_budget: monthly(&g.limits.budgets).map_or(0.0, |b| usd(b.max_limit_nano_usd)),
            budgets: g.limits.budgets.iter().map(BudgetView::from).collect(),
            rate_limit: g.limits.rate_limit.clone(),
            max_concurrent: g.limits.max_concurrent,
            provider_configs: g
                .provider_configs
                .iter()
                .map(ProviderConfigView::from)
                .collect(),
            team_id: vk.team_id,
            customer_id: vk.customer_id,
            is_active: vk.active,
            expires_at: g
                .expires_at_unix_ms
                .and_then(|ms| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                })
                .map(timestamp),
            fail_open: g.fail_open,
            fallbacks: g.fallbacks.clone(),
            content_logging: g.content_logging,
            mcp_tools: g.mcp_tools.clone(),
            created_at: timestamp(vk.created_at),
            updated_at: timestamp(vk.updated_at),
        }
    }
}

/// The create response: the only time the value is returned.
#[derive(Serialize, ToSchema)]
pub struct CreatedVirtualKeyResponse {
    /// The key. Shown only in this response; store it now.
    #[schema(example = "sk-tg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd")]
    pub value: String,
    #[serde(flatten)]
    pub virtual_key: VirtualKeyResponse,
}

#[derive(Serialize, ToSchema)]
pub struct VirtualKeyList {
    pub virtual_keys: Vec<VirtualKeyResponse>,
    pub count: usize,
}

/// The provider configs a request asks for: `provider`, `providers` or `provider_configs`,
/// checked against `previous` (whose budgets they keep); `None` when none is given. With
/// `provider_configs`, a `provider` or `providers` naming the same providers is accepted (a key
/// read from the API can be sent back as it is); anything else is one form too many.
fn configs_of(
    provider: &Option<String>,
    providers: &Option<Vec<String>>,
    configs: &Option<Vec<ProviderConfigInput>>,
    previous: &[ProviderConfig],
    now: OffsetDateTime,
) -> Result<Option<Vec<ProviderConfig>>, ValidationError> {
    let shorthand = |name: &str| ProviderConfig {
        provider: name.to_owned(),
        weight: 1.0,
        allowed_models: Vec::new(),
        key_ids: Vec::new(),
        limits: Limits::default(),
    };
    if let Some(list) = configs {
        let built = governance::provider_configs(list, previous, now)?;
        let mut names: Vec<&str> = built.iter().map(|c| c.provider.as_str()).collect();
        names.sort_unstable();
        let differs = |given: &[String]| {
            let mut given: Vec<&str> = given.iter().map(String::as_str).collect();
            given.sort_unstable();
            given.dedup();
            given != names
        };
        if let Some(p) = provider
            && differs(std::slice::from_ref(p))
        {
            return Err(ValidationError::new(
                "provider",
                "differs from `provider_configs`; send only `provider_configs`",
            ));
        }
        if let Some(ps) = providers
            && differs(ps)
        {
            return Err(ValidationError::new(
                "providers",
                "differs from `provider_configs`; send only `provider_configs`",
            ));
        }
        return Ok(Some(built));
    }
    match (provider, providers) {
        (Some(_), Some(_)) => Err(ValidationError::new(
            "providers",
            "give either `provider` or `providers`, not both",
        )),
        (Some(p), None) => {
            validate::provider_name("provider", p)?;
            Ok(Some(vec![shorthand(p)]))
        }
        (None, Some(list)) => {
            let mut out: Vec<ProviderConfig> = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                validate::provider_name(&format!("providers[{i}]"), p)?;
                if !out.iter().any(|c| &c.provider == p) {
                    out.push(shorthand(p));
                }
            }
            Ok(Some(out))
        }
        (None, None) => Ok(None),
    }
}

/// `monthly_budget` sent with `budgets` must say what `budgets` says (the calendar-aligned `1M`
/// budget's amount, 0 when there is none): a key read from the API can be sent back as it is.
fn monthly_agrees(amount: f64, budgets: &[Budget]) -> Result<(), ValidationError> {
    let said = monthly(budgets).map_or(0, |b| b.max_limit_nano_usd);
    if governance::nano_usd("monthly_budget", amount)? != said {
        return Err(ValidationError::new(
            "monthly_budget",
            "differs from `budgets`; send only `budgets` (or only `monthly_budget`)",
        ));
    }
    Ok(())
}

/// The budgets after `monthly_budget` (the calendar-aligned `1M` one set, or removed with 0).
fn with_monthly(
    mut budgets: Vec<Budget>,
    amount: f64,
    now: OffsetDateTime,
) -> Result<Vec<Budget>, ValidationError> {
    let nano = governance::nano_usd("monthly_budget", amount)?;
    // The stored monthly budget keeps its id and windows when its amount changes.
    let previous = budgets.clone();
    budgets.retain(|b| b.reset_duration != ResetDuration::Month || !b.calendar_aligned);
    if nano > 0 {
        if budgets
            .iter()
            .any(|b| b.reset_duration == ResetDuration::Month)
        {
            return Err(ValidationError::new(
                "monthly_budget",
                "the key has a 1M budget that is not calendar-aligned; change it in `budgets`",
            ));
        }
        let input = BudgetInput {
            id: None,
            max_limit: amount,
            reset_duration: ResetDuration::Month,
            calendar_aligned: true,
        };
        budgets.extend(governance::budgets(
            "monthly_budget",
            &[input],
            &previous,
            now,
        )?);
    }
    Ok(budgets)
}

/// `team_id` and `customer_id` exclude each other.
fn one_owner(team: Option<Uuid>, customer: Option<Uuid>) -> Result<(), ValidationError> {
    if team.is_some() && customer.is_some() {
        return Err(ValidationError::new(
            "customer_id",
            "give `team_id` or `customer_id`, not both (a team's customer applies to its keys)",
        ));
    }
    Ok(())
}

/// The store names unknown providers by their provider config (`provider_configs[i].provider`);
/// name the field the request used when it sent a shorthand.
fn rename_provider_field(e: StoreError, provider: bool, providers: bool) -> ApiError {
    match e {
        StoreError::Invalid(mut v) if provider || providers => {
            if let Some(i) = v
                .field
                .as_deref()
                .and_then(|f| f.strip_prefix("provider_configs["))
                .and_then(|f| f.strip_suffix("].provider"))
            {
                v.field = Some(if provider {
                    "provider".to_owned()
                } else {
                    format!("providers[{i}]")
                });
            }
            v.into()
        }
        other => other.into(),
    }
}

/// Content logging records what users send and receive: only an admin turns it on or off
/// (`changes`: the request would change the key's setting).
fn admin_sets_content_logging(caller: &Principal, changes: bool) -> Result<(), ApiError> {
    if changes && caller.role != crate::identity::Role::Admin {
        return Err(ApiError::Forbidden(
            "only an admin sets a key's content logging".to_owned(),
        ));
    }
    Ok(())
}

async fn create(
    cp: &ControlPlane,
    caller: &Principal,
    audit: Audit,
    mut req: CreateVirtualKeyRequest,
) -> Result<(StatusCode, Json<CreatedVirtualKeyResponse>), ApiError> {
    req.team_id = caller.key_team(req.team_id, req.customer_id)?;
    admin_sets_content_logging(caller, req.content_logging.is_some())?;
    validate::display_name("name", &req.name)?;
    if let Some(d) = &req.description {
        validate::description("description", d)?;
    }
    let t = now();
    let provider_configs =
        configs_of(&req.provider, &req.providers, &req.provider_configs, &[], t)?
            .unwrap_or_default();
    let mut limits = governance::limits(
        "",
        req.budgets.as_deref(),
        req.rate_limit.as_ref(),
        req.max_concurrent,
        &Limits::default(),
        t,
    )?;
    match (req.monthly_budget, &req.budgets) {
        (Some(amount), Some(_)) => monthly_agrees(amount, &limits.budgets)?,
        (Some(amount), None) => limits.budgets = with_monthly(limits.budgets, amount, t)?,
        (None, _) => {}
    }
    one_owner(req.team_id, req.customer_id)?;
    let fallbacks = governance::fallbacks(req.fallbacks.as_deref().unwrap_or_default())?;
    let expires_at_unix_ms = req
        .expires_at
        .as_deref()
        .map(|raw| governance::expires_at(raw, t).map(governance::unix_ms))
        .transpose()?;
    let value = generate_virtual_key()?;
    let record = VirtualKeyRecord {
        id: Uuid::new_v4(),
        name: req.name,
        description: req.description,
        key_sha256: sha256(value.as_bytes()),
        value_prefix: crate::crypto::virtual_key_prefix(&value),
        providers: provider_configs
            .iter()
            .map(|c| c.provider.clone())
            .collect(),
        active: req.is_active.unwrap_or(true),
        team_id: req.team_id,
        customer_id: req.customer_id,
        user_id: None,
        governance: KeyGovernance {
            limits,
            provider_configs,
            expires_at_unix_ms,
            fail_open: req.fail_open.unwrap_or(false),
            fallbacks,
            content_logging: req
                .content_logging
                .map(|c| c.check("content_logging"))
                .transpose()?,
            mcp_tools: req
                .mcp_tools
                .as_deref()
                .map(|list| crate::mcp::tool_patterns("mcp_tools", list))
                .transpose()?,
        },
        created_at: t,
        updated_at: t,
    };
    let event = audit.event("virtual_key.create", format!("virtual-keys/{}", record.id));
    let version = cp
        .store()
        .create_virtual_key(&record, &event)
        .await
        .map_err(|e| rename_provider_field(e, req.provider.is_some(), req.providers.is_some()))?;
    cp.committed(&event, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedVirtualKeyResponse {
            value,
            virtual_key: VirtualKeyResponse::from(&record),
        }),
    ))
}

async fn list(cp: &ControlPlane, caller: &Principal) -> Result<Json<VirtualKeyList>, ApiError> {
    let virtual_keys: Vec<_> = cp
        .store()
        .list_virtual_keys()
        .await?
        .iter()
        .filter(|vk| caller.covers_key(vk.id, vk.team_id))
        .map(VirtualKeyResponse::from)
        .collect();
    Ok(Json(VirtualKeyList {
        count: virtual_keys.len(),
        virtual_keys,
    }))
}

async fn get(
    cp: &ControlPlane,
    caller: &Principal,
    vk_id: &str,
) -> Result<Json<VirtualKeyResponse>, ApiError> {
    let vk = scoped_key(cp, caller, parse_id("vk_id", vk_id)?).await?;
    Ok(Json(VirtualKeyResponse::from(&vk)))
}

/// The key `id`, if it exists (404) and is within the caller's scope (403).
pub(crate) async fn scoped_key(
    cp: &ControlPlane,
    caller: &Principal,
    id: Uuid,
) -> Result<VirtualKeyRecord, ApiError> {
    let vk = cp
        .store()
        .get_virtual_key(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("virtual key {id} not found")))?;
    caller.check_key(vk.id, vk.team_id)?;
    Ok(vk)
}

/// Applies a partial update to the stored key (run by the store inside its transaction, so
/// budgets are matched against what is stored).
fn apply_update(
    vk: &mut VirtualKeyRecord,
    req: &UpdateVirtualKeyRequest,
    t: OffsetDateTime,
) -> Result<(), ValidationError> {
    if let Some(name) = &req.name {
        vk.name = name.clone();
    }
    if let Some(d) = &req.description {
        vk.description = d.clone();
    }
    let g = &mut vk.governance;
    if let Some(configs) = configs_of(
        &req.provider,
        &req.providers,
        &req.provider_configs,
        &g.provider_configs,
        t,
    )? {
        vk.providers = configs.iter().map(|c| c.provider.clone()).collect();
        g.provider_configs = configs;
    }
    governance::update_limits(
        &mut g.limits,
        req.budgets.as_deref(),
        req.rate_limit.as_ref().map(Option::as_ref),
        req.max_concurrent,
        t,
    )?;
    match (req.monthly_budget, &req.budgets) {
        (Some(amount), Some(_)) => monthly_agrees(amount, &g.limits.budgets)?,
        (Some(amount), None) => {
            g.limits.budgets = with_monthly(std::mem::take(&mut g.limits.budgets), amount, t)?;
        }
        (None, _) => {}
    }
    if let Some(e) = &req.expires_at {
        g.expires_at_unix_ms = e
            .as_deref()
            .map(|raw| governance::expires_at(raw, t).map(governance::unix_ms))
            .transpose()?;
    }
    if let Some(f) = req.fail_open {
        g.fail_open = f;
    }
    if let Some(list) = &req.fallbacks {
        g.fallbacks = governance::fallbacks(list)?;
    }
    if let Some(content) = req.content_logging {
        g.content_logging = content.map(|c| c.check("content_logging")).transpose()?;
    }
    if let Some(tools) = &req.mcp_tools {
        g.mcp_tools = tools
            .as_deref()
            .map(|list| crate::mcp::tool_patterns("mcp_tools", list))
            .transpose()?;
    }
    if let Some(team) = req.team_id {
        vk.team_id = team;
    }
    if let Some(customer) = req.customer_id {
        vk.customer_id = customer;
    }
    if vk.team_id.is_some() && vk.customer_id.is_some() {
        let field = if req.customer_id.is_some() {
            "customer_id"
        } else {
            "team_id"
        };
        return Err(ValidationError::new(
            field,
            "a key belongs to a team or to a customer, not both (set the other to null)",
        ));
    }
    if let Some(a) = req.is_active {
        vk.active = a;
    }
    Ok(())
}

async fn update(
    cp: &ControlPlane,
    caller: &Principal,
    audit: Audit,
    vk_id: &str,
    req: UpdateVirtualKeyRequest,
) -> Result<Json<VirtualKeyResponse>, ApiError> {
    let id = parse_id("vk_id", vk_id)?;
    let current = scoped_key(cp, caller, id).await?;
    // A key read and sent back as it was (its setting unchanged) is not a change.
    admin_sets_content_logging(
        caller,
        req.content_logging
            .is_some_and(|c| c != current.governance.content_logging),
    )?;
    if req.team_id.is_some() || req.customer_id.is_some() {
        caller.key_team(
            req.team_id.unwrap_or(current.team_id),
            req.customer_id.unwrap_or(current.customer_id),
        )?;
    }
    if let Some(given) = &req.id
        && given.parse::<Uuid>().ok() != Some(id)
    {
        return Err(ApiError::invalid_field(
            "id",
            "does not match the id in the path",
        ));
    }
    if let Some(name) = &req.name {
        validate::display_name("name", name)?;
    }
    if let Some(Some(d)) = &req.description {
        validate::description("description", d)?;
    }
    let t = now();
    let apply = |vk: &mut VirtualKeyRecord| apply_update(vk, &req, t);
    let event = audit.event("virtual_key.update", format!("virtual-keys/{id}"));
    let (record, version) = cp
        .store()
        .update_virtual_key(id, &apply, &event)
        .await
        .map_err(|e| rename_provider_field(e, req.provider.is_some(), req.providers.is_some()))?;
    cp.committed(&event, version).await?;
    Ok(Json(VirtualKeyResponse::from(&record)))
}

async fn delete(
    cp: &ControlPlane,
    caller: &Principal,
    audit: Audit,
    vk_id: &str,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("vk_id", vk_id)?;
    scoped_key(cp, caller, id).await?;
    let event = audit.event("virtual_key.delete", format!("virtual-keys/{id}"));
    let version = cp.store().delete_virtual_key(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Generates the handlers for one route prefix (`/api/virtual-keys` and its governance alias),
/// each with its own OpenAPI operation.
macro_rules! vk_handlers {
    ($tag:tt, $base:tt, $item:tt,
     $create:ident, $list:ident, $get:ident, $update:ident, $delete:ident) => {
        /// Create a virtual key. The response is the only one that contains its value.
        #[utoipa::path(
            post,
            path = $base,
            tag = $tag,
            request_body(content = CreateVirtualKeyRequest, example = json!({
                "name": "engineering-team", "monthly_budget": 500, "provider": "bedrock"
            })),
            responses(
                (status = 201, description = "Created; `value` is shown only here", body = CreatedVirtualKeyResponse),
                (status = 400, description = "Invalid request or unknown provider", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 409, description = "A virtual key with this name exists", body = ErrorBody),
            )
        )]
        pub(crate) async fn $create(
            State(cp): State<ControlPlane>,
            caller: Principal,
            audit: Audit,
            ApiJson(req): ApiJson<CreateVirtualKeyRequest>,
        ) -> Result<(StatusCode, Json<CreatedVirtualKeyResponse>), ApiError> {
            create(&cp, &caller, audit, req).await
        }

        /// List virtual keys (without their values).
        #[utoipa::path(
            get,
            path = $base,
            tag = $tag,
            responses(
                (status = 200, description = "All virtual keys, by name", body = VirtualKeyList),
                (status = 401, description = "Not authorised", body = ErrorBody),
            )
        )]
        pub(crate) async fn $list(
            State(cp): State<ControlPlane>,
            caller: Principal,
        ) -> Result<Json<VirtualKeyList>, ApiError> {
            list(&cp, &caller).await
        }

        /// Get a virtual key (without its value).
        #[utoipa::path(
            get,
            path = $item,
            tag = $tag,
            params(("vk_id" = Uuid, Path, description = "Virtual key id")),
            responses(
                (status = 200, description = "The virtual key", body = VirtualKeyResponse),
                (status = 400, description = "Malformed id", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 404, description = "No such virtual key", body = ErrorBody),
            )
        )]
        pub(crate) async fn $get(
            State(cp): State<ControlPlane>,
            caller: Principal,
            ApiPath(vk_id): ApiPath<String>,
        ) -> Result<Json<VirtualKeyResponse>, ApiError> {
            get(&cp, &caller, &vk_id).await
        }

        /// Update a virtual key; omitted fields stay as they are.
        #[utoipa::path(
            put,
            path = $item,
            tag = $tag,
            params(("vk_id" = Uuid, Path, description = "Virtual key id")),
            request_body = UpdateVirtualKeyRequest,
            responses(
                (status = 200, description = "The updated virtual key", body = VirtualKeyResponse),
                (status = 400, description = "Invalid request or unknown provider", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 404, description = "No such virtual key", body = ErrorBody),
                (status = 409, description = "Another virtual key has this name", body = ErrorBody),
            )
        )]
        pub(crate) async fn $update(
            State(cp): State<ControlPlane>,
            caller: Principal,
            audit: Audit,
            ApiPath(vk_id): ApiPath<String>,
            ApiJson(req): ApiJson<UpdateVirtualKeyRequest>,
        ) -> Result<Json<VirtualKeyResponse>, ApiError> {
            update(&cp, &caller, audit, &vk_id, req).await
        }

        /// Delete a virtual key.
        #[utoipa::path(
            delete,
            path = $item,
            tag = $tag,
            params(("vk_id" = Uuid, Path, description = "Virtual key id")),
            responses(
                (status = 204, description = "Deleted"),
                (status = 400, description = "Malformed id", body = ErrorBody),
                (status = 401, description = "Not authorised", body = ErrorBody),
                (status = 404, description = "No such virtual key", body = ErrorBody),
            )
        )]
        pub(crate) async fn $delete(
            State(cp): State<ControlPlane>,
            caller: Principal,
            audit: Audit,
            ApiPath(vk_id): ApiPath<String>,
        ) -> Result<StatusCode, ApiError> {
            delete(&cp, &caller, audit, &vk_id).await
        }
    };
}

vk_handlers!(
    "virtual-keys",
    "/api/virtual-keys",
    "/api/virtual-keys/{vk_id}",
    create_virtual_key,
    list_virtual_keys,
    get_virtual_key,
    update_virtual_key,
    delete_virtual_key
);

vk_handlers!(
    "governance",
    "/api/governance/virtual-keys",
    "/api/governance/virtual-keys/{vk_id}",
    governance_create_virtual_key,
    governance_list_virtual_keys,
    governance_get_virtual_key,
    governance_update_virtual_key,
    governance_delete_virtual_key
);
