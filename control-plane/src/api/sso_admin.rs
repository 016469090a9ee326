//! `/api/sso` (the OIDC configuration, when the flags do not set it) and `/api/group-mappings`
//! (which identity-provider groups put users in which team and give which role). Admin only.
//!
//! The client secret is stored sealed (or as an `env.NAME` reference, resolved at each login)
//! and shown as `"<redacted>"` (or the reference); sending `"<redacted>"` back keeps it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::Audit;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::ControlPlane;
use crate::identity::{GROUP_MAPPINGS_SETTING, GroupMappings};
use crate::model::SealedSecret;
use crate::sso::{
    CLIENT_SECRET_AAD, DEFAULT_GROUPS_CLAIM, DEFAULT_SCOPES, DEFAULT_SESSION_HOURS,
    DEFAULT_USER_NAME_CLAIM, SSO_SETTING, StoredSso, validate_claim_name, validate_issuer,
    validate_public_url, validate_scopes, validate_session_hours,
};
use crate::validate::{Sourced, sourced};

/// `PUT /api/sso` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoRequest {
    /// The identity provider's issuer URL (https://; http:// only on a loopback address).
    #[schema(example = "https://example.okta.com/oauth2/default")]
    pub issuer: String,
    pub client_id: String,
    /// The client secret, `env.NAME`, or `"<redacted>"` to keep the stored one. Omit it for a
    /// public client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes to ask for; default `openid email profile` (`openid` is always asked for).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The ID token claim listing the user's groups (default `groups`; a dotted path such as
    /// `realm_access.roles` is followed).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// The claim giving the user name (default `email`; then `preferred_username`, then `sub`).
    #[serde(default)]
    pub user_name_claim: Option<String>,
    /// The gateway's external base URL; the redirect URI is `<public_url>/auth/callback`.
    /// `--public-url` wins.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Browser session lifetime in hours (default 12). `--session-hours` wins.
    #[serde(default)]
    pub session_hours: Option<u32>,
}

/// The single sign-on configuration in effect.
#[derive(Serialize, ToSchema)]
pub struct SsoResponse {
    /// Whether a login can be attempted.
    pub configured: bool,
    /// `flags` (the --oidc-* flags; PUT and DELETE answer 409), `api` (this route) or `none`.
    pub source: String,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// `"<redacted>"`, `env.NAME`, or null.
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub user_name_claim: String,
    pub public_url: Option<String>,
    /// Register this at the identity provider.
    pub redirect_uri: Option<String>,
    pub session_hours: u32,
}

fn flags_conflict(flag: &str, env: &str) -> ApiError {
    ApiError::Conflict(format!(
        "single sign-on is configured by {flag} ({env}) on this gateway; change the flags, \
         or remove them to configure it here"
    ))
}

async fn describe(cp: &ControlPlane) -> Result<SsoResponse, ApiError> {
    let flags = cp.sso().flags();
    let stored = if flags.configures_oidc() {
        None
    } else {
        crate::oidc::stored(cp)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let (source, issuer, client_id, secret, scopes, groups, user_name, url, hours) =
        if flags.configures_oidc() {
            (
                "flags",
                flags.issuer.clone(),
                flags.client_id.clone(),
                flags
                    .client_secret
                    .as_ref()
                    .map(|_| crate::model::REDACTED.to_owned()),
                flags.scopes.clone().unwrap_or_default(),
                flags.groups_claim.clone(),
                flags.user_name_claim.clone(),
                flags.public_url.clone(),
                flags.session_hours,
            )
        } else if let Some(s) = stored {
            (
                "api",
                Some(s.issuer),
                Some(s.client_id),
                s.client_secret
                    .as_deref()
                    .and_then(SealedSecret::from_column)
                    .map(|c| c.display()),
                s.scopes,
                Some(s.groups_claim),
                Some(s.user_name_claim),
                flags.public_url.clone().or(s.public_url),
                flags.session_hours.or(s.session_hours),
            )
        } else {
            (
                "none",
                None,
                None,
                None,
                Vec::new(),
                None,
                None,
                flags.public_url.clone(),
                flags.session_hours,
            )
        };
    let url = url.map(|u| u.trim_end_matches('/').to_owned());
    Ok(SsoResponse {
        configured: issuer.is_some() && url.is_some(),
        source: source.to_owned(),
        issuer,
        client_id,
        client_secret: secret,
        scopes: crate::sso::normalize_scopes(&scopes),
        groups_claim: groups.unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_owned()),
        user_name_claim: user_name.unwrap_or_else(|| DEFAULT_USER_NAME_CLAIM.to_owned()),
        redirect_uri: url.as_ref().map(|u| format!("{u}/auth/callback")),
        public_url: url,
        session_hours: hours.unwrap_or(DEFAULT_SESSION_HOURS),
    })
}

/// The single sign-on (OIDC) configuration.
#[utoipa::path(
    get,
    path = "/api/sso",
    tag = "sso",
    responses(
        (status = 200, description = "The configuration in effect (secrets redacted)", body = SsoResponse),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    )
)]
pub(crate) async fn get_sso(State(cp): State<ControlPlane>) -> Result<Json<SsoResponse>, ApiError> {
    describe(&cp).await.map(Json)
}

/// Configure single sign-on (OIDC). Refused when the --oidc-* flags configure it.
#[utoipa::path(
    put,
    path = "/api/sso",
    tag = "sso",
    request_body = SsoRequest,
    responses(
        (status = 200, description = "Stored; the next login uses it", body = SsoResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 409, description = "The flags configure single sign-on", body = ErrorBody),
    )
)]
pub(crate) async fn put_sso(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiJson(req): ApiJson<SsoRequest>,
) -> Result<Json<SsoResponse>, ApiError> {
    let flags = cp.sso().flags();
    if flags.configures_oidc() {
        return Err(flags_conflict("--oidc-issuer", "TOLLGATE_OIDC_ISSUER"));
    }
    let issuer = validate_issuer("issuer", &req.issuer)?;
    if req.client_id.trim().is_empty() {
        return Err(ApiError::invalid_field("client_id", "must not be empty"));
    }
    let scopes = req.scopes.clone().unwrap_or_default();
    validate_scopes("scopes", &scopes)?;
    let groups_claim = req
        .groups_claim
        .clone()
        .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_owned());
    validate_claim_name("groups_claim", &groups_claim)?;
    let user_name_claim = req
        .user_name_claim
        .clone()
        .unwrap_or_else(|| DEFAULT_USER_NAME_CLAIM.to_owned());
    validate_claim_name("user_name_claim", &user_name_claim)?;
    let public_url = match &req.public_url {
        Some(u) => Some(validate_public_url("public_url", u)?),
        None => None,
    };
    if let (Some(flag), Some(given)) = (&flags.public_url, &public_url)
        && flag.trim_end_matches('/') != given
    {
        return Err(ApiError::Conflict(format!(
            "the public URL is set by --public-url (TOLLGATE_PUBLIC_URL) to {flag}; omit \
             public_url or send the same value"
        )));
    }
    if public_url.is_none() && flags.public_url.is_none() {
        return Err(ApiError::invalid_field(
            "public_url",
            "required (the gateway's external base URL, e.g. https://gateway.example.com) \
             unless the gateway runs with --public-url",
        ));
    }
    if let Some(h) = req.session_hours {
        validate_session_hours("session_hours", h)?;
        if flags.session_hours.is_some_and(|f| f != h) {
            return Err(ApiError::Conflict(
                "the session lifetime is set by --session-hours (TOLLGATE_SESSION_HOURS); omit \
                 session_hours or send the same value"
                    .to_owned(),
            ));
        }
    }
    let previous = crate::oidc::stored(&cp)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let client_secret = match &req.client_secret {
        None => None,
        Some(raw) => match sourced("client_secret", raw, true, cp.env_allow())? {
            Sourced::Env(name) => Some(SealedSecret::Env(name).to_column()),
            Sourced::Literal(secret) => Some(
                SealedSecret::Encrypted(cp.secrets().seal(&secret, CLIENT_SECRET_AAD)?).to_column(),
            ),
            Sourced::Keep => Some(
                previous
                    .as_ref()
                    .and_then(|p| p.client_secret.clone())
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "client_secret",
                            "\"<redacted>\" keeps the stored secret, but none is stored",
                        )
                    })?,
            ),
        },
    };
    let stored = StoredSso {
        issuer,
        client_id: req.client_id.trim().to_owned(),
        client_secret,
        scopes: if scopes.is_empty() {
            DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            scopes
        },
        groups_claim,
        user_name_claim,
        public_url,
        session_hours: req.session_hours,
    };
    let value = serde_json::to_value(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
    let event = audit.event("sso.update", "settings/sso");
    cp.store()
        .put_setting(SSO_SETTING, Some(&value), &event)
        .await?;
    tracing::info!(actor = %event.actor, issuer = %stored.issuer, "single sign-on configured");
    describe(&cp).await.map(Json)
}

/// Remove the single sign-on configuration (existing sessions stay until they expire).
#[utoipa::path(
    delete,
    path = "/api/sso",
    tag = "sso",
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 409, description = "The flags configure single sign-on", body = ErrorBody),
    )
)]
pub(crate) async fn delete_sso(
    State(cp): State<ControlPlane>,
    audit: Audit,
) -> Result<StatusCode, ApiError> {
    if cp.sso().flags().configures_oidc() {
        return Err(flags_conflict("--oidc-issuer", "TOLLGATE_OIDC_ISSUER"));
    }
    let event = audit.event("sso.delete", "settings/sso");
    cp.store().put_setting(SSO_SETTING, None, &event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group → team and group → role rules.
#[utoipa::path(
    get,
    path = "/api/group-mappings",
    tag = "sso",
    responses(
        (status = 200, description = "The rules (empty when none are set)", body = GroupMappings),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    )
)]
pub(crate) async fn get_group_mappings(
    State(cp): State<ControlPlane>,
) -> Result<Json<GroupMappings>, ApiError> {
    Ok(Json(cp.group_mappings().await?))
}

/// Replace the group → team and group → role rules. They apply at each user's next sign-in
/// (and to SCIM group changes).
#[utoipa::path(
    put,
    path = "/api/group-mappings",
    tag = "sso",
    request_body = GroupMappings,
    responses(
        (status = 200, description = "Stored", body = GroupMappings),
        (status = 400, description = "Invalid request (an empty group, an unknown team)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    )
)]
pub(crate) async fn put_group_mappings(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiJson(mappings): ApiJson<GroupMappings>,
) -> Result<Json<GroupMappings>, ApiError> {
    for (i, m) in mappings.teams.iter().enumerate() {
        if m.group.trim().is_empty() {
            return Err(ApiError::invalid_field(
                format!("teams[{i}].group"),
                "must not be empty",
            ));
        }
        if cp.store().get_team(m.team_id).await?.is_none() {
            return Err(ApiError::invalid_field(
                format!("teams[{i}].team_id"),
                format!("no team {}", m.team_id),
            ));
        }
    }
    for (i, m) in mappings.roles.iter().enumerate() {
        if m.group.trim().is_empty() {
            return Err(ApiError::invalid_field(
                format!("roles[{i}].group"),
                "must not be empty",
            ));
        }
    }
    for (i, g) in mappings.allowed_groups.iter().enumerate() {
        if g.trim().is_empty() {
            return Err(ApiError::invalid_field(
                format!("allowed_groups[{i}]"),
                "must not be empty",
            ));
        }
    }
    let value = serde_json::to_value(&mappings).map_err(|e| ApiError::Internal(e.to_string()))?;
    let event = audit.event("group_mappings.update", "settings/group_mappings");
    cp.store()
        .put_setting(GROUP_MAPPINGS_SETTING, Some(&value), &event)
        .await?;
    Ok(Json(mappings))
}
