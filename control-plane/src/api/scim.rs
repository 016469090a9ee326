//! SCIM 2.0 over HTTP (`/scim/v2/*`, RFC 7644) and the admin routes that manage its token
//! (`/api/scim`, `/api/scim/token`). Resources, filters and PATCH are in [`crate::scim`].
//!
//! * Auth: `Authorization: Bearer <SCIM token>`, a token of its own (never the admin token).
//!   The admin creates it with `POST /api/scim/token`, which shows it once; the `scim` setting
//!   keeps only its SHA-256, compared in constant time. `DELETE /api/scim/token` disables SCIM.
//!   The setting is read on every request, so a new or deleted token applies at once on every
//!   control-plane replica. Refusals are logged (peer, method, path, reason; never the token).
//! * Every change is audited with actor `scim@<peer ip>` and actions `scim.user.create`,
//!   `scim.user.replace`, `scim.user.patch`, `scim.user.deactivate`, `scim.user.reactivate`,
//!   `scim.user.delete`, `scim.group.create`, `scim.group.replace`, `scim.group.patch`,
//!   `scim.group.delete`; changes that move or deactivate a personal key publish the new
//!   snapshot before the response is sent.
//! * Answers are `application/scim+json`; errors are SCIM errors (`invalidSyntax` for bad JSON,
//!   `invalidFilter`, `invalidValue`, `uniqueness`, ...), never the admin API's error shape.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Actor;
use super::error::{ApiError, ErrorBody};
use super::timestamp;
use crate::ControlPlane;
use crate::crypto::sha256;
use crate::identity::{UserRecord, fold_user_name};
use crate::model::{AuditEvent, now};
use crate::scim::{
    self, Filter, GROUP_FILTER_ATTRS, GroupAttrs, ScimError, USER_FILTER_ATTRS, UserAttrs,
};
use crate::store::{ScimGroupRecord, StoreError};
use crate::validate::ValidationError;

/// The identity setting that holds the SCIM token's digest.
pub(crate) const SCIM_SETTING: &str = "scim";
/// Prefix of SCIM token values.
const TOKEN_PREFIX: &str = "tgscim_";
const CONTENT_TYPE: &str = "application/scim+json";

/// The `scim` setting as stored: the token's digest, never the token.
#[derive(Debug, Serialize, Deserialize)]
struct ScimSetting {
    /// Hex SHA-256 of the token.
    token_sha256: String,
    /// The first characters of the token, to recognise it.
    token_prefix: String,
    created_at: String,
}

// ---------------------------------------------------------------------------------------------
// Responses and errors.

fn scim_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

fn created(body: &Value) -> Response {
    let mut r = scim_response(StatusCode::CREATED, body);
    if let Some(loc) = body["meta"]["location"]
        .as_str()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    r
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = scim_response(status, &self.body());
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tollgate-scim\""),
            );
        }
        r
    }
}

fn internal(cause: impl std::fmt::Display) -> ScimError {
    tracing::error!(error = %cause, "SCIM request failed");
    ScimError::new(500, None, "internal error; the cause is in the server log")
}

fn store_error(e: StoreError) -> ScimError {
    match e {
        StoreError::NotFound(m) => ScimError::not_found(m),
        StoreError::Conflict(m) => ScimError::uniqueness(m),
        StoreError::Invalid(v) => ScimError::bad(
            "invalidValue",
            match v.field {
                Some(f) => format!("{f}: {}", v.message),
                None => v.message,
            },
        ),
        other => internal(other),
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        store_error(e)
    }
}

impl From<crate::Error> for ScimError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Store(s) => store_error(s),
            other => internal(other),
        }
    }
}

type ScimResult = Result<Response, ScimError>;

// ---------------------------------------------------------------------------------------------
// Extractors.

/// A JSON request body (any content type: identity providers differ); bad JSON is a 400
/// `invalidSyntax`, too large a body a 413.
pub(crate) struct ScimBody(Value);

fn too_large() -> ScimError {
    ScimError::new(
        413,
        None,
        format!(
            "request body too large: SCIM accepts at most {} bytes",
            super::MAX_BODY_BYTES
        ),
    )
}

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimError> {
        if http_body::Body::size_hint(req.body()).lower() > super::MAX_BODY_BYTES as u64 {
            return Err(too_large());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ScimError::bad(
                    "invalidSyntax",
                    format!("cannot read the request body: {}", r.body_text()),
                )
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ScimBody)
            .map_err(|e| ScimError::bad("invalidSyntax", format!("malformed JSON: {e}")))
    }
}

/// Who made a SCIM request: `scim@<peer ip>`.
#[derive(Debug, Clone)]
pub(crate) struct ScimActor(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ScimActor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ScimActor>()
            .cloned()
            .unwrap_or_else(|| ScimActor("scim@unknown".to_owned())))
    }
}

/// The list and read query parameters (names in any case).
#[derive(Debug, Default)]
struct ListParams {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<String>,
    excluded: Option<String>,
}

fn list_params(
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<ListParams, ScimError> {
    let Query(pairs) =
        q.map_err(|e| ScimError::bad("invalidValue", format!("bad query: {}", e.body_text())))?;
    let mut p = ListParams::default();
    let int = |name: &str, v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| ScimError::bad("invalidValue", format!("{name} must be an integer")))
    };
    for (k, v) in pairs {
        match k.to_ascii_lowercase().as_str() {
            "filter" => p.filter = Some(v),
            "startindex" => p.start_index = Some(int("startIndex", &v)?),
            "count" => p.count = Some(int("count", &v)?),
            "attributes" => p.attributes = Some(v),
            "excludedattributes" => p.excluded = Some(v),
            _ => {}
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Router and auth.

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            cp.clone(),
            require_scim,
        ))
        .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES))
        .with_state(cp)
}

/// The admin routes (behind admin auth): `/scim` and `/scim/token`.
pub(crate) fn admin_routes() -> Router<ControlPlane> {
    Router::new()
        .route("/scim", get(scim_status))
        .route("/scim/token", post(create_token).delete(delete_token))
}

async fn not_found(uri: axum::http::Uri) -> ScimError {
    ScimError::not_found(format!("no SCIM endpoint at {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ScimError {
    ScimError::new(
        405,
        None,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn check_token(cp: &ControlPlane, headers: &axum::http::HeaderMap) -> Result<(), ScimError> {
    let setting = cp.store().setting(SCIM_SETTING).await?;
    let Some(setting) = setting else {
        return Err(ScimError::new(
            401,
            None,
            "SCIM provisioning is disabled: no SCIM token is configured (POST /api/scim/token)",
        ));
    };
    let setting: ScimSetting = serde_json::from_value(setting)
        .map_err(|e| internal(format!("the scim setting is unreadable: {e}")))?;
    let expected: [u8; 32] = hex::decode(&setting.token_sha256)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| internal("the scim setting's token digest is not 32 hex bytes"))?;
    let presented = super::auth::bearer(headers).ok_or_else(|| {
        ScimError::new(
            401,
            None,
            "missing SCIM token: send `Authorization: Bearer <token>`",
        )
    })?;
    if bool::from(sha256(presented.as_bytes()).ct_eq(&expected)) {
        Ok(())
    } else {
        Err(ScimError::new(401, None, "invalid SCIM token"))
    }
}

async fn require_scim(State(cp): State<ControlPlane>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match check_token(&cp, req.headers()).await {
        Ok(()) => {
            let ip = peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string());
            req.extensions_mut().insert(ScimActor(format!("scim@{ip}")));
            next.run(req).await
        }
        Err(err) => {
            if err.status == 401 {
                tracing::warn!(
                    peer = %peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                    method = %req.method(),
                    path = %req.uri().path(),
                    reason = %err.detail,
                    "SCIM request refused"
                );
            }
            err.into_response()
        }
    }
}

fn parse_uuid(kind: &str, raw: &str) -> Result<Uuid, ScimError> {
    raw.trim()
        .parse()
        .map_err(|_| ScimError::not_found(format!("no {kind} {raw:?}")))
}

fn event(actor: &ScimActor, action: &str, target: String, details: Value) -> AuditEvent {
    AuditEvent {
        actor: actor.0.clone(),
        action: action.to_owned(),
        target,
        details,
    }
}

fn to_validation(e: ScimError) -> ValidationError {
    ValidationError::new("Operations", e.detail)
}

// ---------------------------------------------------------------------------------------------
// Users.

/// The SCIM groups of every user.
async fn memberships(cp: &ControlPlane) -> Result<HashMap<Uuid, Vec<(Uuid, String)>>, ScimError> {
    let mut by_user: HashMap<Uuid, Vec<(Uuid, String)>> = HashMap::new();
    for g in cp.store().list_scim_groups().await? {
        for m in &g.members {
            by_user
                .entry(*m)
                .or_default()
                .push((g.id, g.display_name.clone()));
        }
    }
    Ok(by_user)
}

async fn user_resource(cp: &ControlPlane, u: &UserRecord) -> Result<Value, ScimError> {
    let groups = cp.store().scim_groups_of(u.id).await?;
    Ok(scim::user_resource(u, &groups))
}

async fn list_users(
    State(cp): State<ControlPlane>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ScimResult {
    let p = list_params(q)?;
    let groups = memberships(&cp).await?;
    let all = cp
        .store()
        .list_users()
        .await?
        .iter()
        .map(|u| scim::user_resource(u, groups.get(&u.id).map_or(&[][..], Vec::as_slice)))
        .collect();
    list_page(&p, USER_FILTER_ATTRS, all)
}

/// One page of a list answer: the resources the query's filter keeps, paginated and projected.
fn list_page(p: &ListParams, filter_attrs: &[&str], all: Vec<Value>) -> ScimResult {
    let filter = p
        .filter
        .as_deref()
        .map(|f| Filter::parse(f, filter_attrs))
        .transpose()?;
    let all: Vec<Value> = all
        .into_iter()
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    let total = all.len();
    let (mut page, start) = scim::paginate(all, p.start_index, p.count);
    for r in &mut page {
        scim::project(r, p.attributes.as_deref(), p.excluded.as_deref());
    }
    Ok(scim_response(
        StatusCode::OK,
        &scim::list_response(total, start, page),
    ))
}

async fn get_user(
    State(cp): State<ControlPlane>,
    Path(id): Path<String>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ScimResult {
    let p = list_params(q)?;
    let id = parse_uuid("user", &id)?;
    let u = cp
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user {id}")))?;
    let mut r = user_resource(&cp, &u).await?;
    scim::project(&mut r, p.attributes.as_deref(), p.excluded.as_deref());
    Ok(scim_response(StatusCode::OK, &r))
}

async fn create_user(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let attrs = UserAttrs::from_resource(&body, true)?;
    let t = now();
    let mut user = UserRecord {
        id: Uuid::now_v7(),
        issuer: None,
        subject: None,
        user_name: String::new(),
        external_id: None,
        email: None,
        display_name: None,
        groups: Vec::new(),
        role: None,
        team_id: None,
        active: true,
        key_generation: 0,
        last_login_at: None,
        created_at: t,
        updated_at: t,
    };
    attrs.write_to(&mut user);
    if cp
        .store()
        .get_user_by_name(&user.user_name)
        .await?
        .is_some()
    {
        return Err(ScimError::uniqueness(format!(
            "a user named {:?} already exists",
            user.user_name
        )));
    }
    let event = event(
        &actor,
        "scim.user.create",
        format!("users/{}", user.id),
        json!({"user_name": user.user_name, "external_id": user.external_id, "active": user.active}),
    );
    let version = cp.store().create_user(&user, &event).await?;
    cp.committed(&event, version).await?;
    Ok(created(&scim::user_resource(&user, &[])))
}

/// The audit action of a change from `before` to `after` (`other` when the user stays as
/// active as they were).
fn user_action(before: bool, after: bool, other: &'static str) -> &'static str {
    match (before, after) {
        (true, false) => "scim.user.deactivate",
        (false, true) => "scim.user.reactivate",
        _ => other,
    }
}

/// The names of the attributes that differ (for the audit row).
fn changed_attrs(a: &UserAttrs, b: &UserAttrs) -> Vec<&'static str> {
    let mut c = Vec::new();
    if fold_user_name(&a.user_name) != fold_user_name(&b.user_name) {
        c.push("userName");
    }
    if a.external_id != b.external_id {
        c.push("externalId");
    }
    if a.display_name != b.display_name {
        c.push("displayName");
    }
    if a.email != b.email {
        c.push("emails");
    }
    if a.active != b.active {
        c.push("active");
    }
    c
}

/// Writes a user change and publishes the snapshot it produced.
async fn write_user(
    cp: &ControlPlane,
    actor: &ScimActor,
    id: Uuid,
    before: &UserAttrs,
    after: &UserAttrs,
    other: &'static str,
    apply: &crate::store::Apply<'_, UserRecord>,
) -> Result<UserRecord, ScimError> {
    let event = event(
        actor,
        user_action(before.active, after.active, other),
        format!("users/{id}"),
        json!({"changed": changed_attrs(before, after), "active": after.active}),
    );
    let mappings = cp.group_mappings().await?;
    let (user, version) = cp.store().update_user(id, apply, &mappings, &event).await?;
    cp.committed(&event, version).await?;
    Ok(user)
}

async fn replace_user(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let id = parse_uuid("user", &id)?;
    let before = cp
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user {id}")))?;
    let after = UserAttrs::from_resource(&body, before.active)?;
    let apply = |u: &mut UserRecord| {
        after.write_to(u);
        Ok(())
    };
    let user = write_user(
        &cp,
        &actor,
        id,
        &UserAttrs::of(&before),
        &after,
        "scim.user.replace",
        &apply,
    )
    .await?;
    Ok(scim_response(
        StatusCode::OK,
        &user_resource(&cp, &user).await?,
    ))
}

async fn patch_user(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let id = parse_uuid("user", &id)?;
    let ops = scim::parse_patch(&body)?;
    let before = cp
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user {id}")))?;
    let old = UserAttrs::of(&before);
    let mut after = old.clone();
    scim::patch_user(&mut after, &ops)?;
    if changed_attrs(&old, &after).is_empty() {
        // Identity providers resend what they already sent: nothing to write or audit.
        return Ok(scim_response(
            StatusCode::OK,
            &user_resource(&cp, &before).await?,
        ));
    }
    // Applied again to the row the transaction reads, so a concurrent change is not undone.
    let apply = |u: &mut UserRecord| {
        let mut a = UserAttrs::of(u);
        scim::patch_user(&mut a, &ops).map_err(to_validation)?;
        a.write_to(u);
        Ok(())
    };
    let user = write_user(&cp, &actor, id, &old, &after, "scim.user.patch", &apply).await?;
    Ok(scim_response(
        StatusCode::OK,
        &user_resource(&cp, &user).await?,
    ))
}

async fn delete_user(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    Path(id): Path<String>,
) -> ScimResult {
    let id = parse_uuid("user", &id)?;
    let event = event(&actor, "scim.user.delete", format!("users/{id}"), json!({}));
    let version = cp.store().delete_user(id, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Groups.

async fn user_names(cp: &ControlPlane) -> Result<HashMap<Uuid, String>, ScimError> {
    Ok(cp
        .store()
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.user_name))
        .collect())
}

async fn group_resource(cp: &ControlPlane, g: &ScimGroupRecord) -> Result<Value, ScimError> {
    let names = user_names(cp).await?;
    Ok(scim::group_resource(g, &|id| names.get(&id).cloned(), true))
}

async fn list_groups(
    State(cp): State<ControlPlane>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ScimResult {
    let p = list_params(q)?;
    let names = user_names(&cp).await?;
    let all = cp
        .store()
        .list_scim_groups()
        .await?
        .iter()
        .map(|g| scim::group_resource(g, &|id| names.get(&id).cloned(), true))
        .collect();
    list_page(&p, GROUP_FILTER_ATTRS, all)
}

async fn get_group(
    State(cp): State<ControlPlane>,
    Path(id): Path<String>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ScimResult {
    let p = list_params(q)?;
    let id = parse_uuid("group", &id)?;
    let g = cp
        .store()
        .get_scim_group(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no group {id}")))?;
    let mut r = if scim::excludes_members(p.excluded.as_deref()) {
        scim::group_resource(&g, &|_| None, false)
    } else {
        group_resource(&cp, &g).await?
    };
    scim::project(&mut r, p.attributes.as_deref(), p.excluded.as_deref());
    Ok(scim_response(StatusCode::OK, &r))
}

async fn create_group(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let attrs = GroupAttrs::from_resource(&body)?;
    let t = now();
    let mut group = ScimGroupRecord {
        id: Uuid::now_v7(),
        display_name: String::new(),
        external_id: None,
        members: Vec::new(),
        created_at: t,
        updated_at: t,
    };
    attrs.write_to(&mut group);
    let event = event(
        &actor,
        "scim.group.create",
        format!("scim-groups/{}", group.id),
        json!({"display_name": group.display_name, "members": group.members.len()}),
    );
    let mappings = cp.group_mappings().await?;
    let version = cp
        .store()
        .create_scim_group(&group, &mappings, &event)
        .await?;
    cp.committed(&event, version).await?;
    let group = cp
        .store()
        .get_scim_group(group.id)
        .await?
        .ok_or_else(|| internal("a group just created is gone"))?;
    Ok(created(&group_resource(&cp, &group).await?))
}

/// Writes a group change and publishes the snapshot it produced.
async fn write_group(
    cp: &ControlPlane,
    actor: &ScimActor,
    id: Uuid,
    action: &str,
    apply: &crate::store::Apply<'_, ScimGroupRecord>,
) -> ScimResult {
    let before = cp
        .store()
        .get_scim_group(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no group {id}")))?;
    let event = event(actor, action, format!("scim-groups/{id}"), json!({}));
    let mappings = cp.group_mappings().await?;
    let details_of = |after: &ScimGroupRecord| {
        let added = after
            .members
            .iter()
            .filter(|m| !before.members.contains(m))
            .count();
        let removed = before
            .members
            .iter()
            .filter(|m| !after.members.contains(m))
            .count();
        json!({
            "display_name": after.display_name,
            "renamed_from": (before.display_name != after.display_name).then_some(&before.display_name),
            "members_added": added,
            "members_removed": removed,
        })
    };
    // The audit row should say what changed: compute it on the group as read now (the
    // transaction applies the same operations to the row it reads).
    let mut preview = before.clone();
    apply(&mut preview).map_err(|e| ScimError::bad("invalidValue", e.message))?;
    let event = AuditEvent {
        details: details_of(&preview),
        ..event
    };
    let (group, version) = cp
        .store()
        .update_scim_group(id, apply, &mappings, &event)
        .await?;
    cp.committed(&event, version).await?;
    Ok(scim_response(
        StatusCode::OK,
        &group_resource(cp, &group).await?,
    ))
}

async fn replace_group(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let id = parse_uuid("group", &id)?;
    let attrs = GroupAttrs::from_resource(&body)?;
    let apply = |g: &mut ScimGroupRecord| {
        attrs.write_to(g);
        Ok(())
    };
    write_group(&cp, &actor, id, "scim.group.replace", &apply).await
}

async fn patch_group(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let id = parse_uuid("group", &id)?;
    let ops = scim::parse_patch(&body)?;
    let apply = |g: &mut ScimGroupRecord| {
        let mut a = GroupAttrs {
            display_name: g.display_name.clone(),
            external_id: g.external_id.clone(),
            members: g.members.clone(),
        };
        scim::patch_group(&mut a, &ops).map_err(to_validation)?;
        a.write_to(g);
        Ok(())
    };
    // Operation errors (bad paths, values) are SCIM errors of their own: check them first.
    let mut probe = GroupAttrs {
        display_name: "probe".to_owned(),
        external_id: None,
        members: Vec::new(),
    };
    scim::patch_group(&mut probe, &ops)?;
    write_group(&cp, &actor, id, "scim.group.patch", &apply).await
}

async fn delete_group(
    State(cp): State<ControlPlane>,
    actor: ScimActor,
    Path(id): Path<String>,
) -> ScimResult {
    let id = parse_uuid("group", &id)?;
    let event = event(
        &actor,
        "scim.group.delete",
        format!("scim-groups/{id}"),
        json!({}),
    );
    let mappings = cp.group_mappings().await?;
    let version = cp.store().delete_scim_group(id, &mappings, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Discovery.

async fn service_provider_config() -> Response {
    scim_response(StatusCode::OK, &scim::service_provider_config())
}

async fn resource_types() -> Response {
    let all: Vec<Value> = ["User", "Group"]
        .into_iter()
        .filter_map(scim::resource_type)
        .collect();
    scim_response(StatusCode::OK, &scim::list_response(all.len(), 1, all))
}

async fn resource_type(Path(name): Path<String>) -> ScimResult {
    scim::resource_type(&name)
        .map(|r| scim_response(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {name:?}")))
}

async fn schemas() -> Response {
    let all: Vec<Value> = [scim::USER_SCHEMA, scim::GROUP_SCHEMA]
        .into_iter()
        .filter_map(scim::schema)
        .collect();
    scim_response(StatusCode::OK, &scim::list_response(all.len(), 1, all))
}

async fn schema(Path(id): Path<String>) -> ScimResult {
    scim::schema(&id)
        .map(|r| scim_response(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")))
}

// ---------------------------------------------------------------------------------------------
// Admin routes.

/// Whether SCIM provisioning is enabled, and which token it accepts.
#[derive(Serialize, ToSchema)]
pub struct ScimStatus {
    /// A SCIM token is configured.
    pub enabled: bool,
    /// The first characters of the token (`tgscim_` and four more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_prefix: Option<String>,
    /// RFC 3339: when the token was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Where the SCIM endpoints are served on this gateway (`/scim/v2`).
    pub base_path: String,
}

/// A new SCIM token: the value is shown here only.
#[derive(Serialize, ToSchema)]
pub struct ScimTokenCreated {
    /// The bearer token identity providers send to `/scim/v2`. Only its SHA-256 is stored.
    pub token: String,
    pub token_prefix: String,
    /// RFC 3339.
    pub created_at: String,
    pub base_path: String,
}

/// Whether SCIM provisioning is enabled.
#[utoipa::path(
    get,
    path = "/api/scim",
    tag = "scim",
    responses(
        (status = 200, description = "SCIM status", body = ScimStatus),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn scim_status(
    State(cp): State<ControlPlane>,
) -> Result<Json<ScimStatus>, ApiError> {
    let setting = match cp.store().setting(SCIM_SETTING).await? {
        Some(v) => Some(
            serde_json::from_value::<ScimSetting>(v)
                .map_err(|e| ApiError::Internal(format!("the scim setting is unreadable: {e}")))?,
        ),
        None => None,
    };
    Ok(Json(ScimStatus {
        enabled: setting.is_some(),
        token_prefix: setting.as_ref().map(|s| s.token_prefix.clone()),
        created_at: setting.map(|s| s.created_at),
        base_path: scim::BASE_PATH.to_owned(),
    }))
}

/// Creates the SCIM token, replacing any previous one (which stops working at once).
#[utoipa::path(
    post,
    path = "/api/scim/token",
    tag = "scim",
    responses(
        (status = 201, description = "The new token, shown once", body = ScimTokenCreated),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn create_token(
    State(cp): State<ControlPlane>,
    actor: Actor,
) -> Result<(StatusCode, Json<ScimTokenCreated>), ApiError> {
    let token = format!("{TOKEN_PREFIX}{}", super::web::random_token()?);
    let token_prefix: String = token.chars().take(TOKEN_PREFIX.len() + 4).collect();
    let created_at = timestamp(now());
    let setting = ScimSetting {
        token_sha256: hex::encode(sha256(token.as_bytes())),
        token_prefix: token_prefix.clone(),
        created_at: created_at.clone(),
    };
    let value = serde_json::to_value(&setting).map_err(|e| ApiError::Internal(e.to_string()))?;
    let event = AuditEvent {
        actor: actor.0,
        action: "scim.token.create".to_owned(),
        target: "settings/scim".to_owned(),
        details: json!({"token_prefix": token_prefix}),
    };
    cp.store()
        .put_setting(SCIM_SETTING, Some(&value), &event)
        .await?;
    tracing::info!(actor = %event.actor, token_prefix = %token_prefix, "SCIM token created");
    Ok((
        StatusCode::CREATED,
        Json(ScimTokenCreated {
            token,
            token_prefix,
            created_at,
            base_path: scim::BASE_PATH.to_owned(),
        }),
    ))
}

/// Deletes the SCIM token: SCIM provisioning is disabled until a new one is created.
#[utoipa::path(
    delete,
    path = "/api/scim/token",
    tag = "scim",
    responses(
        (status = 204, description = "SCIM disabled"),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn delete_token(
    State(cp): State<ControlPlane>,
    actor: Actor,
) -> Result<StatusCode, ApiError> {
    let event = AuditEvent {
        actor: actor.0,
        action: "scim.token.delete".to_owned(),
        target: "settings/scim".to_owned(),
        details: json!({}),
    };
    cp.store().put_setting(SCIM_SETTING, None, &event).await?;
    tracing::info!(actor = %event.actor, "SCIM token deleted: SCIM provisioning disabled");
    Ok(StatusCode::NO_CONTENT)
}
