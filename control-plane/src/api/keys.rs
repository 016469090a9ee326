//! `/api/providers/{provider}/keys` and `/api/keys`: provider credentials.
//!
//! Secret fields (`value`, `access_key`, `secret_key`, `session_token`, `external_id`,
//! `auth_credentials`) are sealed before they reach the store and are shown as `"<redacted>"`
//! (literals) or `env.NAME` (references). In an update, `"<redacted>"` keeps the stored secret.
//! Every string field that may be `env.NAME` (secrets, `region`, `role_arn`, `project_id`) must
//! name a variable the env allowlist allows ([`crate::ControlPlane::env_allow`]): otherwise a 400
//! names the field and the rule.
//!
//! What a key needs depends on its provider's kind: `bedrock` keys `bedrock_key_config` (or a
//! Bedrock API key as `value`), `anthropic` keys `value`, `vertex` keys `vertex_key_config`
//! (project, region, service account key; no `value`), `openai` keys `value` unless the provider
//! has a `network_config.base_url` (a local vLLM or Ollama server often needs no API key).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::Audit;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::EnvAllowlist;
use crate::crypto::SecretBox;
use crate::model::{
    BedrockKeyRecord, ProviderKeyRecord, SealedSecret, SecretField, ValueSource, VertexKeyRecord,
    now,
};
use crate::validate::{
    self, BedrockShape, KeyShape, ProviderShape, Sourced, ValidationError, VertexShape,
};

/// AWS settings of a Bedrock key. Every string may be `env.NAME`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BedrockKeyConfigInput {
    /// Secret. Must come with `secret_key`.
    #[serde(default)]
    #[schema(example = "env.AWS_ACCESS_KEY_ID")]
    pub access_key: Option<String>,
    /// Secret. Must come with `access_key`.
    #[serde(default)]
    #[schema(example = "env.AWS_SECRET_ACCESS_KEY")]
    pub secret_key: Option<String>,
    /// Secret. Needs `access_key` and `secret_key`.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Required.
    #[serde(default)]
    #[schema(example = "us-east-1")]
    pub region: Option<String>,
    /// IAM role to assume on top of the base credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Secret. Only with `role_arn`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Only with `role_arn`.
    #[serde(default)]
    pub session_name: Option<String>,
    /// ARN prefix (`arn:aws:bedrock:REGION:ACCOUNT`); alias values become resource ids below it.
    #[serde(default)]
    pub arn: Option<String>,
}

/// Google Cloud settings of a Vertex AI key (Bifrost's field names).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VertexKeyConfigInput {
    /// Required. The Google Cloud project id, or `env.NAME`.
    #[serde(default)]
    #[schema(example = "my-project-123")]
    pub project_id: Option<String>,
    /// Required. A Google Cloud region (`us-east5`, `europe-west1`, ...), `global`, the
    /// multi-regions `us` and `eu`, or `env.NAME`.
    #[serde(default)]
    #[schema(example = "us-east5")]
    pub region: Option<String>,
    /// Required. Secret: the service account's key file as downloaded from Google Cloud (its JSON
    /// as a string: `type` `service_account`, `client_email`, `private_key`, `token_uri`), or
    /// `env.NAME` naming a variable that holds it.
    #[serde(default)]
    #[schema(example = "env.GOOGLE_VERTEX_CREDENTIALS")]
    pub auth_credentials: Option<String>,
    /// Where the signed JWT is exchanged for an access token, instead of the key file's
    /// `token_uri` (private endpoints, test doubles): an `http://` or `https://` URL.
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// `POST /api/providers/{provider}/keys` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(example = "bedrock-key")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Secret: the API key (anthropic, openai) or a Bedrock API key (sent as a bearer token, no
    /// SigV4). Required for anthropic keys, and for openai keys unless the provider has a
    /// `network_config.base_url`; not used by vertex keys.
    #[serde(default)]
    pub value: Option<String>,
    /// Models this key serves; `["*"]` (the default) for all, `[]` for none.
    #[serde(default)]
    #[schema(example = json!(["*"]))]
    pub models: Option<Vec<String>>,
    /// Weight for weighted-random selection among eligible keys; default 1.
    #[serde(default)]
    #[schema(example = 1.0)]
    pub weight: Option<f64>,
    /// Requested model name -> upstream model id, inference profile id or ARN.
    #[serde(default)]
    pub aliases: Option<BTreeMap<String, String>>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Required for Bedrock keys unless `value` is given.
    #[serde(default)]
    pub bedrock_key_config: Option<BedrockKeyConfigInput>,
    /// Required for Vertex AI keys; refused on others.
    #[serde(default)]
    pub vertex_key_config: Option<VertexKeyConfigInput>,
}

/// `PUT /api/providers/{provider}/keys/{key_id}` body. Omitted fields stay as they are; `null`
/// clears `description`, `value`, `bedrock_key_config` or `vertex_key_config`. A given
/// `bedrock_key_config` or `vertex_key_config` replaces the stored block. A secret equal to `"<redacted>"` keeps the stored secret, so a GET
/// response can be edited and sent back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    /// Must equal the id in the path if given.
    #[serde(default)]
    pub id: Option<String>,
    /// Must equal the provider in the path if given.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub value: Option<Option<String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub aliases: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<BedrockKeyConfigInput>, nullable)]
    pub bedrock_key_config: Option<Option<BedrockKeyConfigInput>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<VertexKeyConfigInput>, nullable)]
    pub vertex_key_config: Option<Option<VertexKeyConfigInput>>,
    /// Read-only; ignored.
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<String>,
    /// Read-only; ignored.
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<String>,
}

/// A Bedrock key's AWS settings as shown: secrets are `"<redacted>"` or `env.NAME`.
#[derive(Serialize, ToSchema)]
pub struct BedrockKeyConfigView {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub arn: Option<String>,
}

/// A Vertex AI key's settings as shown: `auth_credentials` is `"<redacted>"` or `env.NAME`.
#[derive(Serialize, ToSchema)]
pub struct VertexKeyConfigView {
    pub project_id: Option<String>,
    pub region: Option<String>,
    pub auth_credentials: Option<String>,
    pub token_uri: Option<String>,
}

/// A provider key. Never contains a secret literal.
#[derive(Serialize, ToSchema)]
pub struct KeyResponse {
    pub id: Uuid,
    pub provider: String,
    pub name: String,
    pub description: Option<String>,
    /// `"<redacted>"`, `env.NAME`, or null.
    pub value: Option<String>,
    pub models: Vec<String>,
    pub weight: f64,
    pub aliases: BTreeMap<String, String>,
    pub enabled: bool,
    pub bedrock_key_config: Option<BedrockKeyConfigView>,
    pub vertex_key_config: Option<VertexKeyConfigView>,
    /// Fields whose stored `env.NAME` reference the env allowlist refuses (written before it
    /// existed, or under a wider one). Data planes refuse them too: requests that use this key
    /// fail until the field is changed. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["bedrock_key_config.secret_key"]))]
    pub refused_env_references: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl KeyResponse {
    fn new(k: &ProviderKeyRecord, env: &EnvAllowlist) -> Self {
        let show = |s: &Option<SealedSecret>| s.as_ref().map(SealedSecret::display);
        KeyResponse {
            id: k.id,
            provider: k.provider.clone(),
            name: k.name.clone(),
            description: k.description.clone(),
            value: show(&k.value),
            models: k.models.clone(),
            weight: k.weight,
            aliases: k.aliases.clone(),
            enabled: k.enabled,
            bedrock_key_config: k.bedrock.as_ref().map(|b| BedrockKeyConfigView {
                access_key: show(&b.access_key),
                secret_key: show(&b.secret_key),
                session_token: show(&b.session_token),
                region: b.region.as_ref().map(ValueSource::display),
                role_arn: b.role_arn.as_ref().map(ValueSource::display),
                external_id: show(&b.external_id),
                session_name: b.session_name.clone(),
                arn: b.arn.clone(),
            }),
            vertex_key_config: k.vertex.as_ref().map(|v| VertexKeyConfigView {
                project_id: v.project_id.as_ref().map(ValueSource::display),
                region: v.region.as_ref().map(ValueSource::display),
                auth_credentials: show(&v.auth_credentials),
                token_uri: v.token_uri.clone(),
            }),
            refused_env_references: validate::refused_key_references(k, env),
            created_at: timestamp(k.created_at),
            updated_at: timestamp(k.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyResponse>,
    pub count: usize,
}

/// A secret field of a request, already sealed; `Keep` stands for `"<redacted>"`.
enum SecretInput {
    Set(SealedSecret),
    Keep,
}

fn secret_input(
    secrets: &SecretBox,
    env: &EnvAllowlist,
    key_id: Uuid,
    field: SecretField,
    path: &str,
    raw: &str,
    allow_keep: bool,
) -> Result<SecretInput, ApiError> {
    Ok(match validate::sourced(path, raw, allow_keep, env)? {
        Sourced::Keep => SecretInput::Keep,
        Sourced::Env(name) => SecretInput::Set(SealedSecret::Env(name)),
        Sourced::Literal(v) => SecretInput::Set(SealedSecret::seal(secrets, key_id, field, &v)?),
    })
}

fn plain_input(path: &str, raw: &str, env: &EnvAllowlist) -> Result<ValueSource, ValidationError> {
    Ok(match validate::sourced(path, raw, false, env)? {
        Sourced::Env(name) => ValueSource::Env(name),
        Sourced::Literal(v) => ValueSource::Literal(v),
        Sourced::Keep => {
            return Err(ValidationError::new(
                path,
                "\"<redacted>\" is only meaningful for secret fields",
            ));
        }
    })
}

fn resolve(
    input: &SecretInput,
    stored: Option<&SealedSecret>,
    path: &str,
) -> Result<SealedSecret, ValidationError> {
    match input {
        SecretInput::Set(s) => Ok(s.clone()),
        SecretInput::Keep => stored.cloned().ok_or_else(|| {
            ValidationError::new(
                path,
                "\"<redacted>\" keeps the stored secret, but none is stored",
            )
        }),
    }
}

/// A parsed `bedrock_key_config` whose literals are sealed.
struct BedrockInput {
    access_key: Option<SecretInput>,
    secret_key: Option<SecretInput>,
    session_token: Option<SecretInput>,
    external_id: Option<SecretInput>,
    region: Option<ValueSource>,
    role_arn: Option<ValueSource>,
    session_name: Option<String>,
    arn: Option<String>,
}

const B: &str = "bedrock_key_config";

impl BedrockInput {
    fn parse(
        input: &BedrockKeyConfigInput,
        secrets: &SecretBox,
        env: &EnvAllowlist,
        key_id: Uuid,
        allow_keep: bool,
    ) -> Result<Self, ApiError> {
        let secret = |field: SecretField, raw: &Option<String>| {
            raw.as_deref()
                .map(|r| {
                    let path = format!("{B}.{}", field.as_str());
                    secret_input(secrets, env, key_id, field, &path, r, allow_keep)
                })
                .transpose()
        };
        let plain = |name: &str, raw: &Option<String>| {
            raw.as_deref()
                .map(|r| plain_input(&format!("{B}.{name}"), r, env))
                .transpose()
        };
        Ok(BedrockInput {
            access_key: secret(SecretField::AccessKey, &input.access_key)?,
            secret_key: secret(SecretField::SecretKey, &input.secret_key)?,
            session_token: secret(SecretField::SessionToken, &input.session_token)?,
            external_id: secret(SecretField::ExternalId, &input.external_id)?,
            region: plain("region", &input.region)?,
            role_arn: plain("role_arn", &input.role_arn)?,
            session_name: input.session_name.clone(),
            arn: input.arn.clone(),
        })
    }

    /// The record block, taking `"<redacted>"` fields from `stored`.
    fn resolve(
        &self,
        stored: Option<&BedrockKeyRecord>,
    ) -> Result<BedrockKeyRecord, ValidationError> {
        let field = |input: &Option<SecretInput>,
                     pick: fn(&BedrockKeyRecord) -> Option<&SealedSecret>,
                     name: &str| {
            input
                .as_ref()
                .map(|i| resolve(i, stored.and_then(pick), &format!("{B}.{name}")))
                .transpose()
        };
        Ok(BedrockKeyRecord {
            access_key: field(&self.access_key, |b| b.access_key.as_ref(), "access_key")?,
            secret_key: field(&self.secret_key, |b| b.secret_key.as_ref(), "secret_key")?,
            session_token: field(
                &self.session_token,
                |b| b.session_token.as_ref(),
                "session_token",
            )?,
            external_id: field(&self.external_id, |b| b.external_id.as_ref(), "external_id")?,
            region: self.region.clone(),
            role_arn: self.role_arn.clone(),
            session_name: self.session_name.clone(),
            arn: self.arn.clone(),
        })
    }
}

/// A parsed `vertex_key_config` whose service account key, when literal, is checked and sealed.
struct VertexInput {
    project_id: Option<ValueSource>,
    region: Option<ValueSource>,
    auth_credentials: Option<SecretInput>,
    token_uri: Option<String>,
}

const V: &str = "vertex_key_config";

impl VertexInput {
    fn parse(
        input: &VertexKeyConfigInput,
        secrets: &SecretBox,
        env: &EnvAllowlist,
        key_id: Uuid,
        allow_keep: bool,
    ) -> Result<Self, ApiError> {
        let plain = |name: &str, raw: &Option<String>| {
            raw.as_deref()
                .map(|r| plain_input(&format!("{V}.{name}"), r, env))
                .transpose()
        };
        let auth_credentials = input
            .auth_credentials
            .as_deref()
            .map(|raw| {
                let path = format!("{V}.auth_credentials");
                Ok::<_, ApiError>(match validate::sourced(&path, raw, allow_keep, env)? {
                    Sourced::Keep => SecretInput::Keep,
                    Sourced::Env(name) => SecretInput::Set(SealedSecret::Env(name)),
                    Sourced::Literal(v) => {
                        // Checked while it is plaintext; the error never quotes it.
                        validate::service_account_key(&path, &v)?;
                        let field = SecretField::AuthCredentials;
                        SecretInput::Set(SealedSecret::seal(secrets, key_id, field, &v)?)
                    }
                })
            })
            .transpose()?;
        Ok(VertexInput {
            project_id: plain("project_id", &input.project_id)?,
            region: plain("region", &input.region)?,
            auth_credentials,
            token_uri: input.token_uri.clone(),
        })
    }

    /// The record block, taking a `"<redacted>"` `auth_credentials` from `stored`.
    fn resolve(
        &self,
        stored: Option<&VertexKeyRecord>,
    ) -> Result<VertexKeyRecord, ValidationError> {
        Ok(VertexKeyRecord {
            project_id: self.project_id.clone(),
            region: self.region.clone(),
            auth_credentials: self
                .auth_credentials
                .as_ref()
                .map(|i| {
                    resolve(
                        i,
                        stored.and_then(|v| v.auth_credentials.as_ref()),
                        &format!("{V}.auth_credentials"),
                    )
                })
                .transpose()?,
            token_uri: self.token_uri.clone(),
        })
    }
}

fn literal(v: &Option<ValueSource>) -> Option<Option<&str>> {
    v.as_ref().map(|v| match v {
        ValueSource::Literal(s) => Some(s.as_str()),
        ValueSource::Env(_) => None,
    })
}

/// Checks a complete key against the rules of its provider.
fn check(provider: ProviderShape, k: &ProviderKeyRecord) -> Result<(), ValidationError> {
    validate::provider_key(
        provider,
        &KeyShape {
            name: &k.name,
            description: k.description.as_deref(),
            models: &k.models,
            weight: k.weight,
            aliases: &k.aliases,
            has_value: k.value.is_some(),
            bedrock: k.bedrock.as_ref().map(|b| BedrockShape {
                has_access_key: b.access_key.is_some(),
                has_secret_key: b.secret_key.is_some(),
                has_session_token: b.session_token.is_some(),
                has_external_id: b.external_id.is_some(),
                region: literal(&b.region),
                role_arn: literal(&b.role_arn),
                session_name: b.session_name.as_deref(),
                arn: b.arn.as_deref(),
            }),
            vertex: k.vertex.as_ref().map(|v| VertexShape {
                project_id: literal(&v.project_id),
                region: literal(&v.region),
                has_auth_credentials: v.auth_credentials.is_some(),
                token_uri: v.token_uri.as_deref(),
            }),
        },
    )
}

/// What the key rules need of `provider` (404 if it does not exist).
async fn provider_shape(cp: &ControlPlane, provider: &str) -> Result<ProviderShape, ApiError> {
    let p = cp
        .store()
        .get_provider(provider)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider {provider:?} not found")))?;
    Ok(ProviderShape {
        kind: p.kind,
        has_base_url: p.network.settings.base_url.is_some(),
    })
}

/// Create a key for a provider.
#[utoipa::path(
    post,
    path = "/api/providers/{provider}/keys",
    tag = "keys",
    params(("provider" = String, Path, description = "Provider name")),
    request_body(content = CreateKeyRequest, example = json!({
        "name": "bedrock-key",
        "models": ["*"],
        "weight": 1.0,
        "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
        "bedrock_key_config": {
            "access_key": "env.AWS_ACCESS_KEY_ID",
            "secret_key": "env.AWS_SECRET_ACCESS_KEY",
            "region": "us-east-1"
        }
    })),
    responses(
        (status = 201, description = "Created", body = KeyResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 409, description = "The provider has a key with this name", body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(provider): ApiPath<String>,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<KeyResponse>), ApiError> {
    let shape = provider_shape(&cp, &provider).await?;
    let id = Uuid::new_v4();
    let secrets = cp.secrets();
    let value = req
        .value
        .as_deref()
        .map(|raw| {
            let input = secret_input(
                secrets,
                cp.env_allow(),
                id,
                SecretField::Value,
                "value",
                raw,
                false,
            )?;
            resolve(&input, None, "value").map_err(ApiError::from)
        })
        .transpose()?;
    let bedrock = req
        .bedrock_key_config
        .as_ref()
        .map(|b| {
            BedrockInput::parse(b, secrets, cp.env_allow(), id, false)?
                .resolve(None)
                .map_err(ApiError::from)
        })
        .transpose()?;
    let vertex = req
        .vertex_key_config
        .as_ref()
        .map(|v| {
            VertexInput::parse(v, secrets, cp.env_allow(), id, false)?
                .resolve(None)
                .map_err(ApiError::from)
        })
        .transpose()?;
    let t = now();
    let record = ProviderKeyRecord {
        id,
        provider: provider.clone(),
        name: req.name,
        description: req.description,
        models: req.models.unwrap_or_else(|| vec!["*".to_owned()]),
        weight: req.weight.unwrap_or(1.0),
        aliases: req.aliases.unwrap_or_default(),
        enabled: req.enabled.unwrap_or(true),
        value,
        bedrock,
        vertex,
        created_at: t,
        updated_at: t,
    };
    check(shape, &record)?;
    let event = audit.event(
        "provider_key.create",
        format!("providers/{provider}/keys/{id}"),
    );
    let version = cp.store().create_key(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyResponse::new(&record, cp.env_allow())),
    ))
}

/// List the keys of a provider.
#[utoipa::path(
    get,
    path = "/api/providers/{provider}/keys",
    tag = "keys",
    params(("provider" = String, Path, description = "Provider name")),
    responses(
        (status = 200, description = "The provider's keys, by name", body = KeyList),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
    )
)]
pub(crate) async fn list_provider_keys(
    State(cp): State<ControlPlane>,
    ApiPath(provider): ApiPath<String>,
) -> Result<Json<KeyList>, ApiError> {
    provider_shape(&cp, &provider).await?;
    let keys: Vec<_> = cp
        .store()
        .list_keys(Some(&provider))
        .await?
        .iter()
        .map(|k| KeyResponse::new(k, cp.env_allow()))
        .collect();
    Ok(Json(KeyList {
        count: keys.len(),
        keys,
    }))
}

/// List the keys of all providers.
#[utoipa::path(
    get,
    path = "/api/keys",
    tag = "keys",
    responses(
        (status = 200, description = "All keys, by provider then name", body = KeyList),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_all_keys(
    State(cp): State<ControlPlane>,
) -> Result<Json<KeyList>, ApiError> {
    let keys: Vec<_> = cp
        .store()
        .list_keys(None)
        .await?
        .iter()
        .map(|k| KeyResponse::new(k, cp.env_allow()))
        .collect();
    Ok(Json(KeyList {
        count: keys.len(),
        keys,
    }))
}

/// Get a key.
#[utoipa::path(
    get,
    path = "/api/providers/{provider}/keys/{key_id}",
    tag = "keys",
    params(
        ("provider" = String, Path, description = "Provider name"),
        ("key_id" = Uuid, Path, description = "Key id"),
    ),
    responses(
        (status = 200, description = "The key", body = KeyResponse),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider or key", body = ErrorBody),
    )
)]
pub(crate) async fn get_key(
    State(cp): State<ControlPlane>,
    ApiPath((provider, key_id)): ApiPath<(String, String)>,
) -> Result<Json<KeyResponse>, ApiError> {
    let id = parse_id("key_id", &key_id)?;
    let key = cp
        .store()
        .get_key(&provider, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider {provider:?} has no key {id}")))?;
    Ok(Json(KeyResponse::new(&key, cp.env_allow())))
}

/// Update a key. Omitted fields stay; `"<redacted>"` keeps a stored secret.
#[utoipa::path(
    put,
    path = "/api/providers/{provider}/keys/{key_id}",
    tag = "keys",
    params(
        ("provider" = String, Path, description = "Provider name"),
        ("key_id" = Uuid, Path, description = "Key id"),
    ),
    request_body = UpdateKeyRequest,
    responses(
        (status = 200, description = "The updated key", body = KeyResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider or key", body = ErrorBody),
        (status = 409, description = "The provider has another key with this name", body = ErrorBody),
    )
)]
pub(crate) async fn update_key(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath((provider, key_id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateKeyRequest>,
) -> Result<Json<KeyResponse>, ApiError> {
    let id = parse_id("key_id", &key_id)?;
    if let Some(given) = &req.id
        && given.parse::<Uuid>().ok() != Some(id)
    {
        return Err(ApiError::invalid_field(
            "id",
            "does not match the key id in the path",
        ));
    }
    if let Some(given) = &req.provider
        && *given != provider
    {
        return Err(ApiError::invalid_field(
            "provider",
            "keys cannot move between providers",
        ));
    }
    let shape = provider_shape(&cp, &provider).await?;
    let secrets = cp.secrets();
    let value = match &req.value {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(secret_input(
            secrets,
            cp.env_allow(),
            id,
            SecretField::Value,
            "value",
            raw,
            true,
        )?)),
    };
    let bedrock = match &req.bedrock_key_config {
        None => None,
        Some(None) => Some(None),
        Some(Some(b)) => Some(Some(BedrockInput::parse(
            b,
            secrets,
            cp.env_allow(),
            id,
            true,
        )?)),
    };
    let vertex = match &req.vertex_key_config {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(VertexInput::parse(
            v,
            secrets,
            cp.env_allow(),
            id,
            true,
        )?)),
    };
    let event = audit.event(
        "provider_key.update",
        format!("providers/{provider}/keys/{id}"),
    );
    let apply = |k: &mut ProviderKeyRecord| -> Result<(), ValidationError> {
        if let Some(name) = &req.name {
            k.name = name.clone();
        }
        if let Some(d) = &req.description {
            k.description = d.clone();
        }
        if let Some(models) = &req.models {
            k.models = models.clone();
        }
        if let Some(w) = req.weight {
            k.weight = w;
        }
        if let Some(a) = &req.aliases {
            k.aliases = a.clone();
        }
        if let Some(e) = req.enabled {
            k.enabled = e;
        }
        if let Some(v) = &value {
            k.value = v
                .as_ref()
                .map(|v| resolve(v, k.value.as_ref(), "value"))
                .transpose()?;
        }
        if let Some(b) = &bedrock {
            k.bedrock = b
                .as_ref()
                .map(|b| b.resolve(k.bedrock.as_ref()))
                .transpose()?;
        }
        if let Some(v) = &vertex {
            k.vertex = v
                .as_ref()
                .map(|v| v.resolve(k.vertex.as_ref()))
                .transpose()?;
        }
        check(shape, k)
    };
    let (record, version) = cp.store().update_key(&provider, id, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(KeyResponse::new(&record, cp.env_allow())))
}

/// Delete a key.
#[utoipa::path(
    delete,
    path = "/api/providers/{provider}/keys/{key_id}",
    tag = "keys",
    params(
        ("provider" = String, Path, description = "Provider name"),
        ("key_id" = Uuid, Path, description = "Key id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such provider or key", body = ErrorBody),
    )
)]
pub(crate) async fn delete_key(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath((provider, key_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("key_id", &key_id)?;
    let event = audit.event(
        "provider_key.delete",
        format!("providers/{provider}/keys/{id}"),
    );
    let version = cp.store().delete_key(&provider, id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
