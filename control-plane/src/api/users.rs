//! `/api/me` (a signed-in user's own profile, personal key and API tokens) and `/api/users`
//! (everyone who signed in or SCIM provisioned: read by admins and viewers, changed by admins).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::Audit;
use super::auth::{Credential, Principal};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::virtual_keys::VirtualKeyResponse;
use super::{parse_id, timestamp};
use crate::ControlPlane;
use crate::crypto::sha256;
use crate::identity::{API_TOKEN_PREFIX, ApiTokenRecord, Role, UserRecord};
use crate::model::now;
use crate::validate;

/// Longest and default lifetime of a personal API token, in days.
const MAX_TOKEN_DAYS: u32 = 365;
const DEFAULT_TOKEN_DAYS: u32 = 90;

/// A user as the API shows them.
#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    pub user_name: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Groups from the identity provider.
    pub groups: Vec<String>,
    /// The role in effect (assigned, else from the groups).
    pub role: Role,
    /// The role an admin assigned; `null`: from the groups.
    pub assigned_role: Option<Role>,
    pub team_id: Option<Uuid>,
    pub active: bool,
    /// SCIM `externalId`.
    pub external_id: Option<String>,
    /// RFC 3339; `null` before the first sign-in.
    pub last_login_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl UserResponse {
    fn of(u: &UserRecord, role: Role) -> Self {
        UserResponse {
            id: u.id,
            user_name: u.user_name.clone(),
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            groups: u.groups.clone(),
            role,
            assigned_role: u.role,
            team_id: u.team_id,
            active: u.active,
            external_id: u.external_id.clone(),
            last_login_at: u.last_login_at.map(timestamp),
            created_at: timestamp(u.created_at),
            updated_at: timestamp(u.updated_at),
        }
    }
}

/// `GET /api/me`.
#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// `admin_token`, `loopback`, `session` or `api_token`.
    #[schema(example = "session")]
    pub credential: String,
    pub role: Role,
    /// `null` for the admin token and loopback callers.
    pub user: Option<UserResponse>,
    /// The personal virtual key's id, once the first sign-in created it.
    pub personal_key_id: Option<Uuid>,
    /// Browser sessions only: send it in `X-CSRF-Token` with every change.
    pub csrf_token: Option<String>,
}

/// Who is calling: their user, role and personal key.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "users",
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub(crate) async fn me(caller: Principal) -> Json<MeResponse> {
    Json(MeResponse {
        credential: match caller.credential {
            Credential::AdminToken => "admin_token",
            Credential::Loopback => "loopback",
            Credential::Session => "session",
            Credential::ApiToken { .. } => "api_token",
        }
        .to_owned(),
        role: caller.role,
        user: caller
            .user
            .as_ref()
            .map(|u| UserResponse::of(u, caller.role)),
        personal_key_id: caller.personal_key_id,
        csrf_token: caller.csrf_token.clone(),
    })
}

/// The caller's personal virtual key (without its value).
#[utoipa::path(
    get,
    path = "/api/me/key",
    tag = "users",
    responses(
        (status = 200, description = "The personal key", body = VirtualKeyResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a signed-in user", body = ErrorBody),
        (status = 404, description = "No personal key yet", body = ErrorBody),
    )
)]
pub(crate) async fn my_key(
    State(cp): State<ControlPlane>,
    caller: Principal,
) -> Result<Json<VirtualKeyResponse>, ApiError> {
    caller.signed_in_user()?;
    let id = caller.personal_key_id.ok_or_else(no_key)?;
    let vk = cp.store().get_virtual_key(id).await?.ok_or_else(no_key)?;
    Ok(Json(VirtualKeyResponse::from(&vk)))
}

fn no_key() -> ApiError {
    ApiError::NotFound(
        "you have no personal key yet: it is created when you first sign in through SSO".to_owned(),
    )
}

/// `POST /api/me/key/rotate` answer: the only response with the new value.
#[derive(Serialize, ToSchema)]
pub struct RotatedKeyResponse {
    /// The new value; the old one stops working on every data plane within seconds.
    pub value: String,
    #[serde(flatten)]
    pub virtual_key: VirtualKeyResponse,
}

/// Replace the caller's personal key with a new value.
#[utoipa::path(
    post,
    path = "/api/me/key/rotate",
    tag = "users",
    responses(
        (status = 200, description = "Rotated; `value` is shown only here", body = RotatedKeyResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a signed-in user", body = ErrorBody),
        (status = 404, description = "No personal key yet", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_my_key(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: Audit,
) -> Result<Json<RotatedKeyResponse>, ApiError> {
    let user = caller.signed_in_user()?;
    let id = caller.personal_key_id.ok_or_else(no_key)?;
    let event = audit.event("user.rotate_key", format!("users/{}", user.id));
    let derive = |user: Uuid, generation: u64| cp.personal_key(user, generation);
    let (user, version) = cp
        .store()
        .rotate_personal_key(user.id, &derive, &event)
        .await?;
    cp.committed(&event, version).await?;
    let vk = cp.store().get_virtual_key(id).await?.ok_or_else(no_key)?;
    Ok(Json(RotatedKeyResponse {
        value: cp.personal_key(user.id, user.key_generation),
        virtual_key: VirtualKeyResponse::from(&vk),
    }))
}

/// A personal API token as listed (never its value).
#[derive(Serialize, ToSchema)]
pub struct ApiTokenResponse {
    pub id: Uuid,
    pub name: String,
    #[schema(example = "tgp_AbCd")]
    pub value_prefix: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// RFC 3339.
    pub last_used_at: Option<String>,
    /// RFC 3339; set once revoked.
    pub revoked_at: Option<String>,
}

impl From<&ApiTokenRecord> for ApiTokenResponse {
    fn from(t: &ApiTokenRecord) -> Self {
        ApiTokenResponse {
            id: t.id,
            name: t.name.clone(),
            value_prefix: t.value_prefix.clone(),
            created_at: timestamp(t.created_at),
            expires_at: timestamp(t.expires_at),
            last_used_at: t.last_used_at.map(timestamp),
            revoked_at: t.revoked_at.map(timestamp),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiTokenList {
    pub tokens: Vec<ApiTokenResponse>,
    pub count: usize,
}

/// `POST /api/me/tokens` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiTokenRequest {
    #[schema(example = "ci-pipeline")]
    pub name: String,
    /// Lifetime in days (1-365, default 90).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// `POST /api/me/tokens` answer: the only response with the value.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiTokenResponse {
    /// Send it as `Authorization: Bearer <value>`; it acts as you, with your role.
    pub value: String,
    pub token: ApiTokenResponse,
}

/// The caller's personal API tokens (revoked ones included).
#[utoipa::path(
    get,
    path = "/api/me/tokens",
    tag = "users",
    responses(
        (status = 200, description = "The caller's tokens", body = ApiTokenList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a signed-in user", body = ErrorBody),
    )
)]
pub(crate) async fn list_my_tokens(
    State(cp): State<ControlPlane>,
    caller: Principal,
) -> Result<Json<ApiTokenList>, ApiError> {
    let user = caller.signed_in_user()?;
    let tokens: Vec<_> = cp
        .store()
        .list_api_tokens(user.id)
        .await?
        .iter()
        .map(ApiTokenResponse::from)
        .collect();
    Ok(Json(ApiTokenList {
        count: tokens.len(),
        tokens,
    }))
}

/// Create a personal API token for scripts. Only a browser session may create one, so a
/// token cannot renew itself.
#[utoipa::path(
    post,
    path = "/api/me/tokens",
    tag = "users",
    request_body = CreateApiTokenRequest,
    responses(
        (status = 201, description = "Created; `value` is shown only here", body = CreatedApiTokenResponse),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a browser session", body = ErrorBody),
        (status = 409, description = "A token of yours has this name", body = ErrorBody),
    )
)]
pub(crate) async fn create_my_token(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: Audit,
    ApiJson(req): ApiJson<CreateApiTokenRequest>,
) -> Result<(StatusCode, Json<CreatedApiTokenResponse>), ApiError> {
    let user = caller.signed_in_user()?;
    if caller.credential != Credential::Session {
        return Err(ApiError::Forbidden(
            "API tokens are created from a signed-in browser session, not with another token"
                .to_owned(),
        ));
    }
    validate::display_name("name", &req.name)?;
    let days = req.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid_field(
            "expires_in_days",
            format!("must be between 1 and {MAX_TOKEN_DAYS}"),
        ));
    }
    let value = format!("{API_TOKEN_PREFIX}{}", super::web::random_token()?);
    let t = now();
    let token = ApiTokenRecord {
        id: Uuid::now_v7(),
        user_id: user.id,
        name: req.name,
        token_sha256: sha256(value.as_bytes()),
        value_prefix: value.chars().take(8).collect(),
        created_at: t,
        expires_at: t + time::Duration::days(i64::from(days)),
        last_used_at: None,
        revoked_at: None,
    };
    let event = audit.event(
        "api_token.create",
        format!("users/{}/tokens/{}", user.id, token.id),
    );
    cp.store().create_api_token(&token, &event).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiTokenResponse {
            value,
            token: ApiTokenResponse::from(&token),
        }),
    ))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(
    delete,
    path = "/api/me/tokens/{token_id}",
    tag = "users",
    params(("token_id" = Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a signed-in user", body = ErrorBody),
        (status = 404, description = "No such active token of yours", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_my_token(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: Audit,
    ApiPath(token_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let user = caller.signed_in_user()?;
    let id = parse_id("token_id", &token_id)?;
    let event = audit.event("api_token.revoke", format!("users/{}/tokens/{id}", user.id));
    cp.store().revoke_api_token(user.id, id, &event).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserResponse>,
    pub count: usize,
}

/// Everyone who signed in or was provisioned, by user name.
#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    responses(
        (status = 200, description = "All users", body = UserList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin or viewer", body = ErrorBody),
    )
)]
pub(crate) async fn list_users(State(cp): State<ControlPlane>) -> Result<Json<UserList>, ApiError> {
    let mappings = cp.group_mappings().await?;
    let users: Vec<_> = cp
        .store()
        .list_users()
        .await?
        .iter()
        .map(|u| UserResponse::of(u, mappings.effective_role(u)))
        .collect();
    Ok(Json(UserList {
        count: users.len(),
        users,
    }))
}

/// One user.
#[utoipa::path(
    get,
    path = "/api/users/{user_id}",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin or viewer", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn get_user(
    State(cp): State<ControlPlane>,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<UserResponse>, ApiError> {
    let id = parse_id("user_id", &user_id)?;
    let user = cp
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?;
    let role = cp.group_mappings().await?.effective_role(&user);
    Ok(Json(UserResponse::of(&user, role)))
}

/// `PUT /api/users/{user_id}` body; omitted fields stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// Assign a role; `null` returns to the role the groups give.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Role>, nullable)]
    pub role: Option<Option<Role>>,
    /// Move to a team (`null`: no team); the personal key moves with them.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<Uuid>, nullable)]
    pub team_id: Option<Option<Uuid>>,
    /// `false` deactivates: the personal key stops on every data plane, sessions end, API
    /// tokens are revoked.
    #[serde(default)]
    pub active: Option<bool>,
}

/// Assign a role or team, or (de)activate a user.
#[utoipa::path(
    put,
    path = "/api/users/{user_id}",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "User id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The updated user", body = UserResponse),
        (status = 400, description = "Invalid request or unknown team", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn update_user(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    let id = parse_id("user_id", &user_id)?;
    if let Some(Some(team)) = req.team_id
        && cp.store().get_team(team).await?.is_none()
    {
        return Err(ApiError::invalid_field(
            "team_id",
            format!("team {team} not found"),
        ));
    }
    let mappings = cp.group_mappings().await?;
    let apply = |u: &mut UserRecord| {
        if let Some(role) = req.role {
            u.role = role;
        }
        if let Some(team) = req.team_id {
            u.team_id = team;
        }
        if let Some(active) = req.active {
            u.active = active;
        }
        Ok(())
    };
    let action = match req.active {
        Some(false) => "user.deactivate",
        Some(true) => "user.activate",
        None => "user.update",
    };
    let event = audit.event(action, format!("users/{id}"));
    let (user, version) = cp
        .store()
        .update_user(id, &apply, &mappings, &event)
        .await?;
    cp.committed(&event, version).await?;
    Ok(Json(UserResponse::of(
        &user,
        mappings.effective_role(&user),
    )))
}

/// Delete a user and their personal key (it stops on every data plane within seconds).
#[utoipa::path(
    delete,
    path = "/api/users/{user_id}",
    tag = "users",
    params(("user_id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn delete_user(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(user_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("user_id", &user_id)?;
    let event = audit.event("user.delete", format!("users/{id}"));
    let version = cp.store().delete_user(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}
