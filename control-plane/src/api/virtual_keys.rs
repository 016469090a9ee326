//! `/api/virtual-keys` (also served as `/api/governance/virtual-keys`): keys clients use to call
//! the gateway. The value is generated here, returned once by the create call, and stored only
//! as its SHA-256.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Actor;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::crypto::{generate_virtual_key, sha256};
use crate::model::{AuditEvent, VirtualKeyRecord, now};
use crate::store::StoreError;
use crate::validate::{self, ValidationError};

/// Characters of the value kept (and shown) to recognise a key: `sk-tg-` and four more.
const PREFIX_LEN: usize = 10;

/// `POST /api/virtual-keys` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVirtualKeyRequest {
    #[schema(example = "engineering-team")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Monthly budget in USD; 0 or omitted means none.
    #[serde(default)]
    #[schema(example = 500)]
    pub monthly_budget: Option<f64>,
    /// The one provider this key may use (alternative to `providers`).
    #[serde(default)]
    #[schema(example = "bedrock")]
    pub provider: Option<String>,
    /// Providers this key may use; omitted or empty means all.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// Default true.
    #[serde(default)]
    pub is_active: Option<bool>,
}

fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PUT /api/virtual-keys/{vk_id}` body; omitted fields stay as they are. The value cannot be
/// changed (create a new key instead).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVirtualKeyRequest {
    /// Must equal the id in the path if given.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub monthly_budget: Option<f64>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    #[serde(default)]
    pub is_active: Option<bool>,
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
    /// USD per month; 0 means none.
    pub monthly_budget: f64,
    pub is_active: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&VirtualKeyRecord> for VirtualKeyResponse {
    fn from(vk: &VirtualKeyRecord) -> Self {
        VirtualKeyResponse {
            id: vk.id,
            name: vk.name.clone(),
            description: vk.description.clone(),
            value_prefix: format!("{}…", vk.value_prefix),
            providers: vk.providers.clone(),
            monthly_budget: vk.monthly_budget,
            is_active: vk.active,
            created_at: timestamp(vk.created_at),
            updated_at: timestamp(vk.updated_at),
        }
    }
}

/// The create response: the only time the value is returned.
#[derive(Serialize, ToSchema)]
pub struct CreatedVirtualKeyResponse {
    pub id: Uuid,
    pub name: String,
    /// The key. Shown only in this response; store it now.
    #[schema(example = "sk-tg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd")]
    pub value: String,
    pub description: Option<String>,
    pub value_prefix: String,
    pub providers: Vec<String>,
    pub monthly_budget: f64,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct VirtualKeyList {
    pub virtual_keys: Vec<VirtualKeyResponse>,
    pub count: usize,
}

/// The provider list of a request (`provider` or `providers`), checked for form.
fn providers_of(
    provider: &Option<String>,
    providers: &Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ValidationError> {
    match (provider, providers) {
        (Some(_), Some(_)) => Err(ValidationError::new(
            "providers",
            "give either `provider` or `providers`, not both",
        )),
        (Some(p), None) => {
            validate::provider_name("provider", p)?;
            Ok(Some(vec![p.clone()]))
        }
        (None, Some(list)) => {
            let mut out: Vec<String> = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                validate::provider_name(&format!("providers[{i}]"), p)?;
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(Some(out))
        }
        (None, None) => Ok(None),
    }
}

fn budget(b: f64) -> Result<f64, ValidationError> {
    if b.is_finite() && b >= 0.0 {
        Ok(b)
    } else {
        Err(ValidationError::new(
            "monthly_budget",
            "must be a finite number of USD, 0 or more",
        ))
    }
}

/// The store names unknown providers as `providers[i]`; say `provider` if that is what was sent.
fn rename_provider_field(e: StoreError, singular: bool) -> ApiError {
    match e {
        StoreError::Invalid(mut v) if singular => {
            v.field = Some("provider".to_owned());
            v.into()
        }
        other => other.into(),
    }
}

async fn create(
    cp: &ControlPlane,
    actor: Actor,
    req: CreateVirtualKeyRequest,
) -> Result<(StatusCode, Json<CreatedVirtualKeyResponse>), ApiError> {
    validate::display_name("name", &req.name)?;
    if let Some(d) = &req.description {
        validate::description("description", d)?;
    }
    let monthly_budget = budget(req.monthly_budget.unwrap_or(0.0))?;
    let providers = providers_of(&req.provider, &req.providers)?.unwrap_or_default();
    let value = generate_virtual_key()?;
    let t = now();
    let record = VirtualKeyRecord {
        id: Uuid::new_v4(),
        name: req.name,
        description: req.description,
        key_sha256: sha256(value.as_bytes()),
        value_prefix: value[..PREFIX_LEN].to_owned(),
        providers,
        monthly_budget,
        active: req.is_active.unwrap_or(true),
        created_at: t,
        updated_at: t,
    };
    let event = AuditEvent {
        actor: actor.0,
        action: "virtual_key.create".to_owned(),
        target: format!("virtual-keys/{}", record.id),
        details: json!({
            "name": record.name,
            "value_prefix": record.value_prefix,
            "providers": record.providers,
            "monthly_budget": record.monthly_budget,
            "is_active": record.active,
        }),
    };
    let version = cp
        .store()
        .create_virtual_key(&record, &event)
        .await
        .map_err(|e| rename_provider_field(e, req.provider.is_some()))?;
    cp.committed(&event, version).await?;
    let shown = VirtualKeyResponse::from(&record);
    Ok((
        StatusCode::CREATED,
        Json(CreatedVirtualKeyResponse {
            id: shown.id,
            name: shown.name,
            value,
            description: shown.description,
            value_prefix: shown.value_prefix,
            providers: shown.providers,
            monthly_budget: shown.monthly_budget,
            is_active: shown.is_active,
            created_at: shown.created_at,
            updated_at: shown.updated_at,
        }),
    ))
}

async fn list(cp: &ControlPlane) -> Result<Json<VirtualKeyList>, ApiError> {
    let virtual_keys: Vec<_> = cp
        .store()
        .list_virtual_keys()
        .await?
        .iter()
        .map(VirtualKeyResponse::from)
        .collect();
    Ok(Json(VirtualKeyList {
        count: virtual_keys.len(),
        virtual_keys,
    }))
}

async fn get(cp: &ControlPlane, vk_id: &str) -> Result<Json<VirtualKeyResponse>, ApiError> {
    let id = parse_id("vk_id", vk_id)?;
    let vk = cp
        .store()
        .get_virtual_key(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("virtual key {id} not found")))?;
    Ok(Json(VirtualKeyResponse::from(&vk)))
}

async fn update(
    cp: &ControlPlane,
    actor: Actor,
    vk_id: &str,
    req: UpdateVirtualKeyRequest,
) -> Result<Json<VirtualKeyResponse>, ApiError> {
    let id = parse_id("vk_id", vk_id)?;
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
    let monthly_budget = req.monthly_budget.map(budget).transpose()?;
    let providers = providers_of(&req.provider, &req.providers)?;
    let changed: Vec<&str> = [
        ("name", req.name.is_some()),
        ("description", req.description.is_some()),
        ("monthly_budget", monthly_budget.is_some()),
        ("providers", providers.is_some()),
        ("is_active", req.is_active.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, present)| present.then_some(f))
    .collect();
    let event = AuditEvent {
        actor: actor.0,
        action: "virtual_key.update".to_owned(),
        target: format!("virtual-keys/{id}"),
        details: json!({
            "changed": changed,
            "providers": providers,
            "monthly_budget": monthly_budget,
            "is_active": req.is_active,
        }),
    };
    let apply = |vk: &mut VirtualKeyRecord| -> Result<(), ValidationError> {
        if let Some(name) = &req.name {
            vk.name = name.clone();
        }
        if let Some(d) = &req.description {
            vk.description = d.clone();
        }
        if let Some(b) = monthly_budget {
            vk.monthly_budget = b;
        }
        if let Some(p) = &providers {
            vk.providers = p.clone();
        }
        if let Some(a) = req.is_active {
            vk.active = a;
        }
        Ok(())
    };
    let (record, version) = cp
        .store()
        .update_virtual_key(id, &apply, &event)
        .await
        .map_err(|e| rename_provider_field(e, req.provider.is_some()))?;
    cp.committed(&event, version).await?;
    Ok(Json(VirtualKeyResponse::from(&record)))
}

async fn delete(cp: &ControlPlane, actor: Actor, vk_id: &str) -> Result<StatusCode, ApiError> {
    let id = parse_id("vk_id", vk_id)?;
    let event = AuditEvent {
        actor: actor.0,
        action: "virtual_key.delete".to_owned(),
        target: format!("virtual-keys/{id}"),
        details: json!({}),
    };
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
            actor: Actor,
            ApiJson(req): ApiJson<CreateVirtualKeyRequest>,
        ) -> Result<(StatusCode, Json<CreatedVirtualKeyResponse>), ApiError> {
            create(&cp, actor, req).await
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
        ) -> Result<Json<VirtualKeyList>, ApiError> {
            list(&cp).await
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
            ApiPath(vk_id): ApiPath<String>,
        ) -> Result<Json<VirtualKeyResponse>, ApiError> {
            get(&cp, &vk_id).await
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
            actor: Actor,
            ApiPath(vk_id): ApiPath<String>,
            ApiJson(req): ApiJson<UpdateVirtualKeyRequest>,
        ) -> Result<Json<VirtualKeyResponse>, ApiError> {
            update(&cp, actor, &vk_id, req).await
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
            actor: Actor,
            ApiPath(vk_id): ApiPath<String>,
        ) -> Result<StatusCode, ApiError> {
            delete(&cp, actor, &vk_id).await
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
