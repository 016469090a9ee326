//! `GET /v1/key`: what the presented virtual key is, for `tollgate status`: its id and name,
//! its team and customer (with their names from the snapshot), its expiry, the providers and
//! model patterns it may use, and each budget of its chain with what is left in the current
//! window **as this data plane's limits engine counts it** (exact in the all-in-one; in a fleet
//! of data planes, this node's count of its own requests).
//!
//! Authenticated like `GET /v1/models` (`x-api-key` or `Authorization: Bearer`). Never returns
//! the key, its hash, or anything of the providers' credentials. Cheap: one lookup in the
//! runtime and a read of the key's budget counters; not on the `/v1/messages` path.
//! [`describe`] is pure; the handler is [`key_info`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Serialize;

use crate::DataPlane;
use crate::admission::rfc3339;
use crate::limits::LevelId;
use crate::runtime::{Runtime, VirtualKey};
use crate::server::{Draft, models_caller, new_request_id, refuse};

/// The answer of `GET /v1/key`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub team: Option<Named>,
    pub customer: Option<Named>,
    /// RFC 3339; `None`: the key does not expire.
    pub expires_at: Option<String>,
    /// Providers the key may use; empty: every provider.
    pub providers: Vec<String>,
    /// Per provider config with a model restriction: the patterns allowed (`*`, a glob or
    /// `regex:EXPR`). A provider absent here allows every model.
    pub allowed_models: Vec<AllowedModels>,
    pub budgets: Vec<BudgetInfo>,
    /// Whose count `budgets` is: always `"this data plane"` (see the module docs).
    pub counted_by: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub id: String,
    /// Empty when the snapshot does not name it.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedModels {
    pub provider: String,
    pub patterns: Vec<String>,
}

/// One budget of the key's chain in its current window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetInfo {
    /// `provider_config`, `virtual_key`, `team` or `customer`.
    pub level: &'static str,
    /// The level's id (the provider's name for a provider config).
    pub level_id: String,
    pub level_name: String,
    pub budget_id: String,
    /// `1m 5m 1h 1d 1w 1M 1Y`.
    pub period: &'static str,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub remaining_usd: f64,
    pub window_start: String,
    pub window_end: String,
}

/// What `GET /v1/key` says of `vk` at `now_unix_ms`.
pub fn describe(rt: &Runtime, vk: &VirtualKey, now_unix_ms: i64) -> KeyInfo {
    let levels = rt.limits.key_levels(&vk.id);
    let named = |want: &str, id: &Arc<str>| -> Option<Named> {
        if id.is_empty() {
            return None;
        }
        let name = levels
            .iter()
            .find(|(level, _)| match (level, want) {
                (LevelId::Team(t), "team") => t == id,
                (LevelId::Customer(c), "customer") => c == id,
                _ => false,
            })
            .map(|(_, name)| name.to_string())
            .unwrap_or_default();
        Some(Named {
            id: id.to_string(),
            name,
        })
    };
    let usd = |nano: u64| nano as f64 / 1e9;
    KeyInfo {
        id: vk.id.to_string(),
        name: vk.name.to_string(),
        team: named("team", &vk.owner.team_id),
        customer: named("customer", &vk.owner.customer_id),
        expires_at: (vk.expires_at_unix_ms != 0).then(|| rfc3339(vk.expires_at_unix_ms)),
        providers: vk.providers.iter().map(|p| p.to_string()).collect(),
        allowed_models: vk
            .configs
            .iter()
            .filter(|c| !c.allowed_models.is_empty())
            .map(|c| AllowedModels {
                provider: c.provider.to_string(),
                patterns: c.allowed_models.iter().map(|p| p.to_string()).collect(),
            })
            .collect(),
        budgets: rt
            .limits
            .key_budgets(&vk.id, now_unix_ms)
            .into_iter()
            .map(|b| {
                let (level, level_id) = match &b.level {
                    LevelId::ProviderConfig { provider, .. } => ("provider_config", provider),
                    LevelId::VirtualKey(id) => ("virtual_key", id),
                    LevelId::Team(id) => ("team", id),
                    LevelId::Customer(id) => ("customer", id),
                };
                BudgetInfo {
                    level,
                    level_id: level_id.to_string(),
                    level_name: b.level_name.to_string(),
                    budget_id: b.budget_id.to_string(),
                    period: b.period.as_str(),
                    limit_usd: usd(b.limit_nano_usd),
                    spent_usd: usd(b.used_nano_usd),
                    remaining_usd: usd(b.limit_nano_usd.saturating_sub(b.used_nano_usd)),
                    window_start: rfc3339(b.window.start_unix_ms),
                    window_end: rfc3339(b.window.end_unix_ms),
                }
            })
            .collect(),
        counted_by: "this data plane",
    }
}

/// `GET /v1/key`.
pub(crate) async fn key_info(State(dp): State<Arc<DataPlane>>, headers: HeaderMap) -> Response {
    let draft = Draft::new(new_request_id());
    let now = draft.record.started_at_unix_ms;
    let (rt, vk) = match models_caller(&dp, &headers, &draft) {
        Ok(caller) => caller,
        Err(e) => return refuse(&dp, draft, e),
    };
    tracing::info!(
        request_id = %draft.record.request_id,
        virtual_key_id = %vk.id,
        "key information served"
    );
    Json(describe(&rt, &vk, now)).into_response()
}
