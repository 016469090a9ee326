//! `/api/providers`: create, list, get, partially update and delete providers.
//!
//! `network_config.extra_headers` values are secrets (proxy tokens): each is a literal (sealed
//! before it reaches the store, bound to the provider and header name) or an `env.NAME`
//! reference under the env allowlist, shown as `"<redacted>"` or `env.NAME`, and never written
//! to the audit log (which keeps header names only). A given `network_config` replaces the
//! stored one: a header sent as `"<redacted>"` keeps its stored value, a new value replaces it,
//! and headers left out are removed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::Audit;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::timestamp;
use crate::ControlPlane;
use crate::model::{
    NetworkConfig, NetworkRecord, ProviderKind, ProviderRecord, REDACTED, SealedSecret, now,
};
use crate::validate::{self, Sourced, ValidationError};

/// `POST /api/providers` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderRequest {
    /// Provider name, used in `provider/model`. `bedrock`, `anthropic`, `vertex` and `openai`
    /// imply their type; other names need `custom_provider_config` (e.g. `ollama` with base type
    /// `openai` and a `network_config.base_url`).
    #[schema(example = "bedrock")]
    pub provider: String,
    #[serde(default)]
    pub network_config: Option<NetworkConfig>,
    #[serde(default)]
    pub custom_provider_config: Option<CustomProviderConfig>,
}

/// The upstream protocol of a provider with a custom name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomProviderConfig {
    pub base_provider_type: ProviderKind,
}

/// `PUT /api/providers/{provider}` body: blocks that are omitted stay as they are; a given
/// `network_config` replaces the stored one. Response-only fields are accepted so a GET response
/// can be sent back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderRequest {
    /// Must equal the name in the path if given.
    #[serde(default)]
    pub provider: Option<String>,
    /// Must equal the name in the path if given.
    #[serde(default)]
    pub name: Option<String>,
    /// Must equal the stored type if given (the type cannot change).
    #[serde(default)]
    pub kind: Option<ProviderKind>,
    #[serde(default)]
    pub network_config: Option<NetworkConfig>,
    /// Must name the stored type if given (the type cannot change).
    #[serde(default)]
    pub custom_provider_config: Option<CustomProviderConfig>,
    /// Read-only; ignored.
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<String>,
}

/// A provider. Extra-header values show as `"<redacted>"` or `env.NAME`.
#[derive(Serialize, ToSchema)]
pub struct ProviderResponse {
    #[schema(example = "bedrock")]
    pub name: String,
    /// Upstream protocol.
    pub kind: ProviderKind,
    /// Present for providers whose name is not their type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_provider_config: Option<CustomProviderConfig>,
    pub network_config: NetworkConfig,
    /// Fields whose stored `env.NAME` reference the env allowlist refuses (written before it
    /// existed, or under a wider one). Data planes refuse them too: requests that need them fail
    /// until the field is changed. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["network_config.extra_headers.x-proxy-token"]))]
    pub refused_env_references: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl ProviderResponse {
    fn new(p: &ProviderRecord, cp: &ControlPlane) -> Self {
        ProviderResponse {
            name: p.name.clone(),
            kind: p.kind,
            custom_provider_config: (ProviderKind::parse(&p.name) != Some(p.kind)).then_some(
                CustomProviderConfig {
                    base_provider_type: p.kind,
                },
            ),
            network_config: p.network.display(),
            refused_env_references: validate::refused_network_references(
                &p.network,
                cp.env_allow(),
            ),
            created_at: timestamp(p.created_at),
            updated_at: timestamp(p.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderResponse>,
    pub count: usize,
}

fn resolve_kind(
    name: &str,
    custom: Option<&CustomProviderConfig>,
) -> Result<ProviderKind, ValidationError> {
    match (ProviderKind::parse(name), custom) {
        (Some(kind), None) => Ok(kind),
        (Some(kind), Some(c)) if c.base_provider_type == kind => Ok(kind),
        (Some(kind), Some(_)) => Err(ValidationError::new(
            "custom_provider_config.base_provider_type",
            format!("provider {name:?} is always of type {kind}"),
        )),
        (None, Some(c)) => Ok(c.base_provider_type),
        (None, None) => Err(ValidationError::new(
            "custom_provider_config",
            format!(
                "provider {name:?} is not a known type: give custom_provider_config.base_provider_type (\"bedrock\", \"anthropic\", \"vertex\" or \"openai\")"
            ),
        )),
    }
}

/// A header value of a request: sealed, or `"<redacted>"` (keep the stored one).
enum HeaderInput {
    Set(SealedSecret),
    Keep,
}

/// Validates `nc` and seals its literal header values for provider `provider`.
fn network_input(
    cp: &ControlPlane,
    provider: &str,
    nc: &NetworkConfig,
    allow_keep: bool,
) -> Result<BTreeMap<String, HeaderInput>, ApiError> {
    let parsed = validate::network_config("network_config", nc, cp.env_allow(), allow_keep)?;
    let mut headers = BTreeMap::new();
    for (name, value) in parsed {
        let input = match value {
            Sourced::Env(var) => HeaderInput::Set(SealedSecret::Env(var)),
            Sourced::Literal(v) => HeaderInput::Set(SealedSecret::seal_header(
                cp.secrets(),
                provider,
                &name,
                &v,
            )?),
            Sourced::Keep => HeaderInput::Keep,
        };
        headers.insert(name, input);
    }
    Ok(headers)
}

/// The stored network block that `nc` (already parsed into `headers`) makes of `stored`.
fn network_record(
    nc: &NetworkConfig,
    headers: &BTreeMap<String, HeaderInput>,
    stored: Option<&NetworkRecord>,
) -> Result<NetworkRecord, ValidationError> {
    let mut record = NetworkRecord::settings_of(nc);
    for (name, input) in headers {
        match input {
            HeaderInput::Set(sealed) => {
                record.extra_headers.insert(name.clone(), sealed.clone());
            }
            HeaderInput::Keep => {
                let legacy = stored.and_then(|s| s.legacy_extra_headers.get(name));
                let sealed = stored.and_then(|s| s.extra_headers.get(name));
                if let Some(v) = legacy {
                    // Not sealed yet (an older version wrote it): kept as it is, sealed when a
                    // control plane next starts.
                    record.legacy_extra_headers.insert(name.clone(), v.clone());
                } else if let Some(v) = sealed {
                    record.extra_headers.insert(name.clone(), v.clone());
                } else {
                    return Err(ValidationError::new(
                        format!("network_config.extra_headers.{name}"),
                        format!("{REDACTED:?} keeps the stored value, but none is stored"),
                    ));
                }
            }
        }
    }
    Ok(record)
}

/// Create a provider.
#[utoipa::path(
    post,
    path = "/api/providers",
    tag = "providers",
    request_body(content = CreateProviderRequest, example = json!({"provider": "bedrock"})),
    responses(
        (status = 201, description = "Created", body = ProviderResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 409, description = "A provider with this name exists", body = ErrorBody),
    )
)]
pub(crate) async fn create_provider(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiJson(req): ApiJson<CreateProviderRequest>,
) -> Result<(StatusCode, Json<ProviderResponse>), ApiError> {
    validate::provider_name("provider", &req.provider)?;
    let kind = resolve_kind(&req.provider, req.custom_provider_config.as_ref())?;
    let nc = req.network_config.unwrap_or_default();
    let headers = network_input(&cp, &req.provider, &nc, false)?;
    let t = now();
    let record = ProviderRecord {
        name: req.provider,
        kind,
        network: network_record(&nc, &headers, None)?,
        created_at: t,
        updated_at: t,
    };
    let event = audit.event("provider.create", format!("providers/{}", record.name));
    let version = cp.store().create_provider(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(ProviderResponse::new(&record, &cp)),
    ))
}

/// List providers.
#[utoipa::path(
    get,
    path = "/api/providers",
    tag = "providers",
    responses(
        (status = 200, description = "All providers, by name", body = ProviderList),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_providers(
    State(cp): State<ControlPlane>,
) -> Result<Json<ProviderList>, ApiError> {
    let providers: Vec<_> = cp
        .store()
        .list_providers()
        .await?
        .iter()
        .map(|p| ProviderResponse::new(p, &cp))
        .collect();
    Ok(Json(ProviderList {
        count: providers.len(),
        providers,
    }))
}

/// Get a provider.
#[utoipa::path(
    get,
    path = "/api/providers/{provider}",
    tag = "providers",
    params(("provider" = String, Path, description = "Provider name")),
    responses(
        (status = 200, description = "The provider", body = ProviderResponse),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
    )
)]
pub(crate) async fn get_provider(
    State(cp): State<ControlPlane>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProviderResponse>, ApiError> {
    let p = cp
        .store()
        .get_provider(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider {name:?} not found")))?;
    Ok(Json(ProviderResponse::new(&p, &cp)))
}

/// Update a provider. Omitted blocks are left untouched.
#[utoipa::path(
    put,
    path = "/api/providers/{provider}",
    tag = "providers",
    params(("provider" = String, Path, description = "Provider name")),
    request_body = UpdateProviderRequest,
    responses(
        (status = 200, description = "The updated provider", body = ProviderResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
    )
)]
pub(crate) async fn update_provider(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateProviderRequest>,
) -> Result<Json<ProviderResponse>, ApiError> {
    for (field, given) in [("provider", &req.provider), ("name", &req.name)] {
        if let Some(given) = given
            && *given != name
        {
            return Err(ApiError::invalid_field(
                field,
                format!(
                    "providers cannot be renamed ({given:?} differs from {name:?} in the path)"
                ),
            ));
        }
    }
    let headers = req
        .network_config
        .as_ref()
        .map(|nc| network_input(&cp, &name, nc, true))
        .transpose()?;
    if req
        .network_config
        .as_ref()
        .is_some_and(|nc| nc.base_url.is_none())
    {
        keyless_keys_keep_their_base_url(&cp, &name).await?;
    }
    let event = audit.event("provider.update", format!("providers/{name}"));
    let apply = |p: &mut ProviderRecord| -> Result<(), ValidationError> {
        let wanted = [
            ("kind", req.kind),
            (
                "custom_provider_config.base_provider_type",
                req.custom_provider_config
                    .as_ref()
                    .map(|c| c.base_provider_type),
            ),
        ];
        for (field, kind) in wanted {
            if let Some(kind) = kind
                && kind != p.kind
            {
                return Err(ValidationError::new(
                    field,
                    format!(
                        "the provider type cannot change from {} to {kind}; create a new provider instead",
                        p.kind
                    ),
                ));
            }
        }
        if let (Some(nc), Some(headers)) = (&req.network_config, &headers) {
            p.network = network_record(nc, headers, Some(&p.network))?;
        }
        Ok(())
    };
    let (record, version) = cp.store().update_provider(&name, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(ProviderResponse::new(&record, &cp)))
}

/// Keys of an `openai` provider may omit `value` only while the provider has a `base_url`
/// (`https://api.openai.com/v1` needs an API key): an update that removes the `base_url` is
/// refused while such keys exist. Checked before the update's transaction, like the key rules
/// check the provider before theirs.
async fn keyless_keys_keep_their_base_url(cp: &ControlPlane, name: &str) -> Result<(), ApiError> {
    let Some(p) = cp.store().get_provider(name).await? else {
        return Ok(()); // the update answers 404
    };
    if p.kind != ProviderKind::OpenAi || p.network.settings.base_url.is_none() {
        return Ok(());
    }
    let keyless: Vec<String> = cp
        .store()
        .list_keys(Some(name))
        .await?
        .into_iter()
        .filter(|k| k.value.is_none())
        .map(|k| k.name)
        .collect();
    if keyless.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        "network_config.base_url",
        format!(
            "keys {keyless:?} have no `value`, which only a provider with a base_url allows (the default https://api.openai.com/v1 needs an API key): give them a value first, or keep the base_url"
        ),
    ))
}

/// Delete a provider and its keys. Refused (409) while a virtual key names it.
#[utoipa::path(
    delete,
    path = "/api/providers/{provider}",
    tag = "providers",
    params(("provider" = String, Path, description = "Provider name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 409, description = "Virtual keys still use the provider", body = ErrorBody),
    )
)]
pub(crate) async fn delete_provider(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let event = audit.event("provider.delete", format!("providers/{name}"));
    let version = cp.store().delete_provider(&name, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
