//! The governance model: budgets, rate limits and concurrency limits of virtual keys, their
//! provider configs, teams and customers. Pure: the admin API's input shapes, their validation
//! (errors name the field with its JSON path), the stored form (a JSON document per owner) and its
//! conversion into the snapshot's `Limits`.
//!
//! Money is USD in the API (`max_limit: 50`) and integer nano-dollars everywhere else, like the
//! costs of usage records, so spend and limits compare exactly.
//!
//! A budget is identified by its reset period within its owner (two budgets of one owner may not
//! share one), and keeps a stable `id` and the instant its windows are anchored to across
//! updates that keep its period, so an update never forgets spend.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::model_pattern::ModelPattern;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::validate::{self, ValidationError};

/// Largest budget accepted, in USD (its nano-dollars fit an `i64` column with room to spare).
pub const MAX_BUDGET_USD: f64 = 1e9;
/// Most requests in flight a limit may allow.
pub const MAX_CONCURRENT: u32 = 1_000_000;
/// Largest request or token rate limit (it fits the stores' signed 64-bit integers).
pub const MAX_RATE_LIMIT: u64 = 1_000_000_000_000_000;
/// Most entries in a list field (budgets, provider configs, patterns, key ids).
const MAX_ITEMS: usize = 100;

/// How long a budget or rate-limit window lasts: the data planes' window period, which reads
/// and writes the admin API's spelling (`1m 5m 1h 1d 1w 1M 1Y`).
pub use tollgate_proto::window::Period as ResetDuration;

/// A budget as sent to the admin API.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// Given to keep a budget's identity explicitly; budgets are otherwise matched by
    /// `reset_duration`. Read-only fields of a listed budget are accepted and ignored, so a
    /// budget can be sent back as it was read.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// USD per window.
    #[schema(example = 100.0)]
    pub max_limit: f64,
    #[schema(example = "1M")]
    pub reset_duration: ResetDuration,
    /// Windows start at UTC calendar boundaries (the 1st of the month, Monday, midnight, ...)
    /// instead of at the budget's creation. Default false.
    #[serde(default)]
    pub calendar_aligned: bool,
}

/// Request and token rate limits as sent to the admin API: each limit needs its duration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per `request_reset_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_max_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reset_duration: Option<ResetDuration>,
    /// Tokens (input, output, cache writes and reads) per `token_reset_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_max_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_reset_duration: Option<ResetDuration>,
}

/// A stored budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub id: Uuid,
    pub max_limit_nano_usd: u64,
    pub reset_duration: ResetDuration,
    pub calendar_aligned: bool,
    /// Where windows that are not calendar-aligned start (unix ms).
    pub anchor_unix_ms: i64,
    /// The last admin reset (unix ms): spend before it does not count in its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at_unix_ms: Option<i64>,
}

/// The limits of one owner (a virtual key, one of its provider configs, a team, a customer), as
/// stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// A virtual key's governance settings, as stored (its `governance` column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyGovernance {
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_configs: Vec<ProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_unix_ms: Option<i64>,
    #[serde(default)]
    pub fail_open: bool,
    /// Models (`provider/model`) tried in order when an attempt fails (429, 529, 5xx, no
    /// connection, timeout), unless a request brings its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// The key's own content-logging setting (`None`: its team's applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_logging: Option<ContentLogging>,
    /// The key's own MCP tool allowlist: patterns over served tool names (`<server>__<tool>`);
    /// `None`: no restriction of its own (its team's still applies), empty: no tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_tools: Option<Vec<String>>,
}

/// Content logging of a virtual key or a team: whether the request and response bodies of its
/// requests are recorded, and how much of each. A key's own setting wins over its team's (so
/// one key can be left out of, or added to, what its team records); neither: not recorded.
/// Bodies are kept `--content-retention-days` (default 7) and read with
/// `GET /api/logs/{request_id}/content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentLogging {
    pub enabled: bool,
    /// Each body is cut to this many bytes (1 to 1048576; default 65536).
    #[serde(default = "default_body_bytes")]
    #[schema(example = 65536)]
    pub max_body_bytes: u32,
}

fn default_body_bytes() -> u32 {
    tollgate_proto::content::DEFAULT_BODY_BYTES
}

impl ContentLogging {
    /// Checks a setting given to the admin API (`field`: its JSON name).
    pub fn check(self, field: &str) -> Result<ContentLogging, ValidationError> {
        let max = tollgate_proto::content::MAX_BODY_BYTES;
        if self.max_body_bytes == 0 || self.max_body_bytes > max {
            return Err(ValidationError::new(
                format!("{field}.max_body_bytes"),
                format!("must be 1 to {max} bytes"),
            ));
        }
        Ok(self)
    }

    /// What a key records: its own setting, else its team's; `None` when bodies are not
    /// recorded.
    pub fn effective(
        key: Option<ContentLogging>,
        team: Option<ContentLogging>,
    ) -> Option<pb::ContentLogging> {
        key.or(team)
            .filter(|c| c.enabled)
            .map(|c| pb::ContentLogging {
                max_body_bytes: c.max_body_bytes,
            })
    }
}

/// A key's fallback list: at most [`tollgate_proto::model_id::MAX_FALLBACKS`]
/// `provider/model` names (the provider is
/// not checked here: a data plane skips an entry that does not route).
pub fn fallbacks(list: &[String]) -> Result<Vec<String>, ValidationError> {
    use tollgate_proto::model_id::MAX_FALLBACKS;
    if list.len() > MAX_FALLBACKS {
        return Err(ValidationError::new(
            "fallbacks",
            format!("at most {MAX_FALLBACKS} entries"),
        ));
    }
    for (i, model) in list.iter().enumerate() {
        let field = format!("fallbacks[{i}]");
        if let Err(e) = tollgate_proto::model_id::check(model) {
            return Err(ValidationError::new(field, e.to_string()));
        }
        if !model
            .split_once('/')
            .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty())
        {
            return Err(ValidationError::new(
                field,
                "must be provider/model, e.g. anthropic/claude-sonnet-4-6",
            ));
        }
    }
    Ok(list.to_vec())
}

/// A budget as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetView {
    pub id: Uuid,
    /// USD per window.
    pub max_limit: f64,
    pub reset_duration: ResetDuration,
    pub calendar_aligned: bool,
}

impl From<&Budget> for BudgetView {
    fn from(b: &Budget) -> Self {
        BudgetView {
            id: b.id,
            max_limit: usd(b.max_limit_nano_usd),
            reset_duration: b.reset_duration,
            calendar_aligned: b.calendar_aligned,
        }
    }
}

/// The budget the admin API's `monthly_budget` stands for: calendar-aligned, `1M`.
pub fn monthly(budgets: &[Budget]) -> Option<&Budget> {
    budgets
        .iter()
        .find(|b| b.reset_duration == ResetDuration::Month && b.calendar_aligned)
}

/// Nano-dollars shown as USD.
pub fn usd(nano: u64) -> f64 {
    nano as f64 / 1e9
}

/// USD → nano-dollars, rounded to the nearest one; refuses negative, non-finite and absurd
/// amounts.
pub fn nano_usd(field: &str, amount: f64) -> Result<u64, ValidationError> {
    if !amount.is_finite() || amount < 0.0 {
        return Err(ValidationError::new(
            field,
            "must be a finite number of USD, 0 or more",
        ));
    }
    if amount > MAX_BUDGET_USD {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_BUDGET_USD} USD"),
        ));
    }
    Ok((amount * 1e9).round() as u64)
}

fn too_many(field: &str, len: usize) -> Result<(), ValidationError> {
    if len > MAX_ITEMS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_ITEMS} entries"),
        ));
    }
    Ok(())
}

/// Checks `budgets` (at `field`) and builds their stored form. A budget with the id or the reset
/// period of one in `previous` keeps that one's id and anchor (and admin reset) unless its
/// calendar alignment changed; new ones are anchored at `now`.
pub fn budgets(
    field: &str,
    input: &[BudgetInput],
    previous: &[Budget],
    now: OffsetDateTime,
) -> Result<Vec<Budget>, ValidationError> {
    too_many(field, input.len())?;
    let mut out: Vec<Budget> = Vec::with_capacity(input.len());
    for (i, b) in input.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let max_limit_nano_usd = nano_usd(&format!("{at}.max_limit"), b.max_limit)?;
        if max_limit_nano_usd == 0 {
            return Err(ValidationError::new(
                format!("{at}.max_limit"),
                "must be more than 0 (remove the budget to have none)",
            ));
        }
        if out.iter().any(|o| o.reset_duration == b.reset_duration) {
            return Err(ValidationError::new(
                format!("{at}.reset_duration"),
                format!(
                    "another budget already has reset_duration {:?}; each budget needs its own",
                    b.reset_duration.as_str()
                ),
            ));
        }
        let kept = match b.id {
            Some(id) => Some(previous.iter().find(|p| p.id == id).ok_or_else(|| {
                ValidationError::new(format!("{at}.id"), format!("no budget {id} to update"))
            })?),
            None => previous
                .iter()
                .find(|p| p.reset_duration == b.reset_duration),
        }
        .filter(|p| p.calendar_aligned == b.calendar_aligned);
        out.push(Budget {
            id: kept.map_or_else(Uuid::new_v4, |p| p.id),
            max_limit_nano_usd,
            reset_duration: b.reset_duration,
            calendar_aligned: b.calendar_aligned,
            anchor_unix_ms: kept.map_or_else(|| unix_ms(now), |p| p.anchor_unix_ms),
            reset_at_unix_ms: kept.and_then(|p| p.reset_at_unix_ms),
        });
    }
    Ok(out)
}

/// Checks a rate limit (at `field`): every limit positive and with its duration, and the other
/// way round; `None` when it sets nothing.
pub fn rate_limit(field: &str, r: &RateLimit) -> Result<Option<RateLimit>, ValidationError> {
    let pair = |max: Option<u64>, reset: Option<ResetDuration>, name: &str| match (max, reset) {
        (Some(0), _) => Err(ValidationError::new(
            format!("{field}.{name}_max_limit"),
            "must be at least 1 (leave it out to have no limit)",
        )),
        (Some(n), _) if n > MAX_RATE_LIMIT => Err(ValidationError::new(
            format!("{field}.{name}_max_limit"),
            format!("must be at most {MAX_RATE_LIMIT}"),
        )),
        (Some(_), None) => Err(ValidationError::new(
            format!("{field}.{name}_reset_duration"),
            format!("required with {name}_max_limit"),
        )),
        (None, Some(_)) => Err(ValidationError::new(
            format!("{field}.{name}_max_limit"),
            format!("required with {name}_reset_duration"),
        )),
        _ => Ok(()),
    };
    pair(r.request_max_limit, r.request_reset_duration, "request")?;
    pair(r.token_max_limit, r.token_reset_duration, "token")?;
    Ok((r.request_max_limit.is_some() || r.token_max_limit.is_some()).then(|| r.clone()))
}

/// Checks `max_concurrent` (at `field`): at least 1 when given.
pub fn max_concurrent(field: &str, n: Option<u32>) -> Result<Option<u32>, ValidationError> {
    match n {
        Some(0) => Err(ValidationError::new(
            field,
            "must be at least 1 (leave it out to have no limit)",
        )),
        Some(n) if n > MAX_CONCURRENT => Err(ValidationError::new(
            field,
            format!("must be at most {MAX_CONCURRENT}"),
        )),
        other => Ok(other),
    }
}

/// Checks limits sent in full (a create, or a provider config) at `prefix` (`""` or
/// `provider_configs[0].`).
pub fn limits(
    prefix: &str,
    budgets_in: Option<&[BudgetInput]>,
    rate: Option<&RateLimit>,
    concurrent: Option<u32>,
    previous: &Limits,
    now: OffsetDateTime,
) -> Result<Limits, ValidationError> {
    Ok(Limits {
        budgets: budgets(
            &format!("{prefix}budgets"),
            budgets_in.unwrap_or_default(),
            &previous.budgets,
            now,
        )?,
        rate_limit: rate
            .map(|r| rate_limit(&format!("{prefix}rate_limit"), r))
            .transpose()?
            .flatten(),
        max_concurrent: max_concurrent(&format!("{prefix}max_concurrent"), concurrent)?,
    })
}

/// A partial update of stored limits: a field given replaces the stored one (`null` clears the
/// rate limit and `max_concurrent`); budgets keep their identity as in [`budgets`].
pub fn update_limits(
    stored: &mut Limits,
    budgets_in: Option<&[BudgetInput]>,
    rate: Option<Option<&RateLimit>>,
    concurrent: Option<Option<u32>>,
    now: OffsetDateTime,
) -> Result<(), ValidationError> {
    if let Some(list) = budgets_in {
        stored.budgets = budgets("budgets", list, &stored.budgets, now)?;
    }
    if let Some(rate) = rate {
        stored.rate_limit = rate
            .map(|r| rate_limit("rate_limit", r))
            .transpose()?
            .flatten();
    }
    if let Some(n) = concurrent {
        stored.max_concurrent = max_concurrent("max_concurrent", n)?;
    }
    Ok(())
}

/// The limits of an owner as the admin API shows them (flattened into the owner's response).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitsView {
    pub budgets: Vec<BudgetView>,
    pub rate_limit: Option<RateLimit>,
    pub max_concurrent: Option<u32>,
}

impl From<&Limits> for LimitsView {
    fn from(l: &Limits) -> Self {
        LimitsView {
            budgets: l.budgets.iter().map(BudgetView::from).collect(),
            rate_limit: l.rate_limit.clone(),
            max_concurrent: l.max_concurrent,
        }
    }
}

/// A provider config as sent to the admin API.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfigInput {
    #[schema(example = "bedrock")]
    pub provider: String,
    /// Relative weight when a model is served by several of the key's providers. Default 1.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Model patterns: exact names, `*` globs, `regex:EXPR` (full match, case-insensitive).
    /// Omitted or `["*"]`: all models.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Provider key ids this key may use through the provider. Omitted or `["*"]`: all.
    #[serde(default)]
    pub key_ids: Option<Vec<String>>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// A stored provider config. Empty `allowed_models` and `key_ids` mean all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub provider: String,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<Uuid>,
    #[serde(default)]
    pub limits: Limits,
}

/// A provider config as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderConfigView {
    pub provider: String,
    pub weight: f64,
    /// `["*"]` when every model is allowed.
    pub allowed_models: Vec<String>,
    /// `["*"]` when every key of the provider may be used.
    pub key_ids: Vec<String>,
    pub budgets: Vec<BudgetView>,
    pub rate_limit: Option<RateLimit>,
    pub max_concurrent: Option<u32>,
}

impl From<&ProviderConfig> for ProviderConfigView {
    fn from(c: &ProviderConfig) -> Self {
        let all_if_empty = |v: Vec<String>| {
            if v.is_empty() {
                vec!["*".to_owned()]
            } else {
                v
            }
        };
        ProviderConfigView {
            provider: c.provider.clone(),
            weight: c.weight,
            allowed_models: all_if_empty(c.allowed_models.clone()),
            key_ids: all_if_empty(c.key_ids.iter().map(Uuid::to_string).collect()),
            budgets: c.limits.budgets.iter().map(BudgetView::from).collect(),
            rate_limit: c.limits.rate_limit.clone(),
            max_concurrent: c.limits.max_concurrent,
        }
    }
}

/// Checks provider configs sent in full. Key ids are checked for form here; that they exist
/// (and belong to the provider) is the store's check, in the transaction that writes them.
pub fn provider_configs(
    input: &[ProviderConfigInput],
    previous: &[ProviderConfig],
    now: OffsetDateTime,
) -> Result<Vec<ProviderConfig>, ValidationError> {
    too_many("provider_configs", input.len())?;
    let mut out: Vec<ProviderConfig> = Vec::with_capacity(input.len());
    for (i, c) in input.iter().enumerate() {
        let at = format!("provider_configs[{i}]");
        validate::provider_name(&format!("{at}.provider"), &c.provider)?;
        if out.iter().any(|o| o.provider == c.provider) {
            return Err(ValidationError::new(
                format!("{at}.provider"),
                format!("provider {:?} is configured twice", c.provider),
            ));
        }
        let weight = c.weight.unwrap_or(1.0);
        if !weight.is_finite() || weight <= 0.0 {
            return Err(ValidationError::new(
                format!("{at}.weight"),
                "must be a finite number above 0",
            ));
        }
        let allowed_models =
            model_patterns(&format!("{at}.allowed_models"), c.allowed_models.as_deref())?;
        let key_ids = key_ids(&format!("{at}.key_ids"), c.key_ids.as_deref())?;
        let prev = previous
            .iter()
            .find(|p| p.provider == c.provider)
            .map(|p| &p.limits);
        let limits = limits(
            &format!("{at}."),
            c.budgets.as_deref(),
            c.rate_limit.as_ref(),
            c.max_concurrent,
            prev.unwrap_or(&Limits::default()),
            now,
        )?;
        out.push(ProviderConfig {
            provider: c.provider.clone(),
            weight,
            allowed_models,
            key_ids,
            limits,
        });
    }
    Ok(out)
}

/// `["*"]` (or nothing) is every model: stored as an empty list.
fn model_patterns(field: &str, input: Option<&[String]>) -> Result<Vec<String>, ValidationError> {
    let Some(list) = input else {
        return Ok(Vec::new());
    };
    too_many(field, list.len())?;
    if list.is_empty() {
        return Err(ValidationError::new(
            field,
            "list at least one model pattern, or `*` for all (leave it out for all)",
        ));
    }
    for (i, p) in list.iter().enumerate() {
        ModelPattern::parse(p)
            .map_err(|e| ValidationError::new(format!("{field}[{i}]"), e.to_string()))?;
    }
    if list.iter().any(|p| p == "*") {
        return Ok(Vec::new());
    }
    Ok(list.to_vec())
}

/// `["*"]` (or nothing) is every key: stored as an empty list.
fn key_ids(field: &str, input: Option<&[String]>) -> Result<Vec<Uuid>, ValidationError> {
    let Some(list) = input else {
        return Ok(Vec::new());
    };
    too_many(field, list.len())?;
    if list.is_empty() {
        return Err(ValidationError::new(
            field,
            "list at least one provider key id, or `*` for all (leave it out for all)",
        ));
    }
    if list.iter().any(|k| k == "*") {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, k) in list.iter().enumerate() {
        let id: Uuid = k.parse().map_err(|_| {
            ValidationError::new(
                format!("{field}[{i}]"),
                format!("{k:?} is not a key id (a UUID)"),
            )
        })?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// An instant as unix milliseconds.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Parses `expires_at` (RFC 3339), which must be in the future.
pub fn expires_at(raw: &str, now: OffsetDateTime) -> Result<OffsetDateTime, ValidationError> {
    let t = OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            ValidationError::new(
                "expires_at",
                format!("{raw:?} is not an RFC 3339 time such as 2027-01-01T00:00:00Z"),
            )
        },
    )?;
    if t <= now {
        return Err(ValidationError::new("expires_at", "must be in the future"));
    }
    Ok(t)
}

/// The snapshot form of stored limits.
pub fn limits_to_pb(l: &Limits) -> pb::Limits {
    pb::Limits {
        budgets: l
            .budgets
            .iter()
            .map(|b| pb::Budget {
                id: b.id.to_string(),
                max_limit_nano_usd: b.max_limit_nano_usd,
                reset: b.reset_duration.to_pb() as i32,
                calendar_aligned: b.calendar_aligned,
                anchor_unix_ms: b.anchor_unix_ms,
                reset_at_unix_ms: b.reset_at_unix_ms.unwrap_or(0),
            })
            .collect(),
        rate_limit: l.rate_limit.as_ref().map(|r| pb::RateLimit {
            request_max_limit: r.request_max_limit.unwrap_or(0),
            request_reset: r
                .request_reset_duration
                .map_or(pb::ResetPeriod::Unspecified, ResetDuration::to_pb)
                as i32,
            token_max_limit: r.token_max_limit.unwrap_or(0),
            token_reset: r
                .token_reset_duration
                .map_or(pb::ResetPeriod::Unspecified, ResetDuration::to_pb)
                as i32,
        }),
        max_concurrent: l.max_concurrent.unwrap_or(0),
    }
}

/// The snapshot form of a stored provider config.
pub fn provider_config_to_pb(c: &ProviderConfig) -> pb::ProviderConfig {
    pb::ProviderConfig {
        provider: c.provider.clone(),
        weight: c.weight,
        allowed_models: c.allowed_models.clone(),
        key_ids: c.key_ids.iter().map(Uuid::to_string).collect(),
        limits: Some(limits_to_pb(&c.limits)),
    }
}

#[cfg(test)]
mod tests;
