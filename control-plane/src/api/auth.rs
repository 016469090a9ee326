//! Admin authentication: who is calling ([`Principal`]).
//!
//! Credentials, tried in this order:
//! * `Authorization: Bearer <token>`: the configured admin token (role `admin`; compared in
//!   constant time, on SHA-256 digests so the length does not leak either), or a personal API
//!   token (`tgp_...`, acting as its user with the user's role). Any other bearer is refused.
//! * The session cookie of a browser that signed in through SSO (acting as its user). A
//!   mutation must also carry the session's CSRF token ([`super::session::CSRF_HEADER`]),
//!   and a browser `Origin`, when sent, must be the request's own.
//! * Without a token configured, `allow_loopback_without_token` admits clients whose TCP peer
//!   address is loopback (from `ConnectInfo<SocketAddr>`; forwarded-for headers are not
//!   trusted) as `admin`. A request without `ConnectInfo` is not considered loopback. Because a
//!   local browser is a loopback client too, this mode also refuses cross-origin browser
//!   requests (`Origin` not matching `Host`, `Sec-Fetch-Site: cross-site`) and `Host` names
//!   that are not loopback names (DNS rebinding).
//! * Otherwise the request is refused with 401.
//!
//! What a principal may do is decided by [`super::access`] (the role) and by the handlers
//! (the scope: a team admin's team, a member's own key).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::error::ApiError;
use super::session::{CSRF_HEADER, SESSION_COOKIE, cookie};
use super::web::{SignedIn, csrf_ok, signed_in};
use crate::crypto::sha256;
use crate::identity::{API_TOKEN_PREFIX, Role, SessionRecord, UserRecord};
use crate::{AdminAuth, ControlPlane};

/// Who made an admin request, as recorded in the audit log (`token@10.0.0.5`,
/// `loopback@127.0.0.1`, `user:alice@example.com@10.0.0.5`).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Actor(
            parts
                .extensions
                .get::<Principal>()
                .map_or_else(|| "unknown".to_owned(), Principal::actor),
        ))
    }
}

/// How a principal authenticated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Credential {
    AdminToken,
    Loopback,
    Session,
    ApiToken { id: Uuid },
}

/// The authenticated caller of an `/api` request.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub credential: Credential,
    pub role: Role,
    /// The signed-in user (sessions and API tokens); `None` for the admin token and loopback.
    pub user: Option<UserRecord>,
    /// The user's personal key, if they have one.
    pub personal_key_id: Option<Uuid>,
    /// Browser sessions: the session's CSRF token (for `GET /api/me` to hand to the page).
    pub csrf_token: Option<String>,
    pub peer_ip: String,
}

/// What part of the configuration a principal's role covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Admins and viewers: everything (viewers only read, which [`super::access`] enforces).
    All,
    /// Team admins: their team (none if they are in no team).
    Team(Option<Uuid>),
    /// Members: their own key.
    Own,
}

impl Principal {
    fn actor(&self) -> String {
        match (&self.credential, &self.user) {
            (Credential::AdminToken, _) => format!("token@{}", self.peer_ip),
            (Credential::Loopback, _) => format!("loopback@{}", self.peer_ip),
            (_, Some(u)) => format!("user:{}@{}", u.user_name, self.peer_ip),
            (_, None) => format!("unknown@{}", self.peer_ip),
        }
    }

    pub(crate) fn scope(&self) -> Scope {
        match self.role {
            Role::Admin | Role::Viewer => Scope::All,
            Role::TeamAdmin => Scope::Team(self.user.as_ref().and_then(|u| u.team_id)),
            Role::Member => Scope::Own,
        }
    }

    /// Whether the key (`id` in team `team_id`) is within the principal's scope.
    pub(crate) fn covers_key(&self, id: Uuid, team_id: Option<Uuid>) -> bool {
        match self.scope() {
            Scope::All => true,
            Scope::Team(team) => team.is_some() && team == team_id,
            Scope::Own => self.personal_key_id == Some(id),
        }
    }

    /// Whether the team is within the principal's scope.
    pub(crate) fn covers_team(&self, id: Uuid) -> bool {
        match self.scope() {
            Scope::All => true,
            Scope::Team(team) => team == Some(id),
            Scope::Own => self.user.as_ref().and_then(|u| u.team_id) == Some(id),
        }
    }

    /// 403 unless the key is within the principal's scope.
    pub(crate) fn check_key(&self, id: Uuid, team_id: Option<Uuid>) -> Result<(), ApiError> {
        if self.covers_key(id, team_id) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "virtual key {id} is outside what the {} role of {} covers",
                self.role,
                self.who()
            )))
        }
    }

    /// 403 unless the team is within the principal's scope.
    pub(crate) fn check_team(&self, id: Uuid) -> Result<(), ApiError> {
        if self.covers_team(id) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "team {id} is outside what the {} role of {} covers",
                self.role,
                self.who()
            )))
        }
    }

    /// Where a key a principal creates or moves may belong: anywhere for admins; a team admin
    /// only in their own team (the default when none is given), never a customer's.
    pub(crate) fn key_team(
        &self,
        team_id: Option<Uuid>,
        customer_id: Option<Uuid>,
    ) -> Result<Option<Uuid>, ApiError> {
        match self.scope() {
            Scope::All => Ok(team_id),
            Scope::Team(Some(own)) if customer_id.is_none() && team_id.is_none_or(|t| t == own) => {
                Ok(Some(own))
            }
            Scope::Team(Some(own)) => Err(ApiError::Forbidden(format!(
                "a team admin's keys belong to their team ({own}), not to another team or a customer"
            ))),
            Scope::Team(None) | Scope::Own => Err(ApiError::Forbidden(format!(
                "{} is in no team, so cannot manage keys",
                self.who()
            ))),
        }
    }

    fn who(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "this caller".to_owned(), |u| u.user_name.clone())
    }

    /// The signed-in user, or 403 for the admin token and loopback callers.
    pub(crate) fn signed_in_user(&self) -> Result<&UserRecord, ApiError> {
        self.user.as_ref().ok_or_else(|| {
            ApiError::Forbidden(
                "this route is for signed-in users (an SSO session or a personal API token); \
                 the admin token has no user"
                    .to_owned(),
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no principal on an /api request".to_owned()))
    }
}

/// The middleware's view of [`AdminAuth`], with the control plane for sessions and tokens.
#[derive(Clone)]
pub(crate) struct AuthPolicy {
    token_sha256: Option<[u8; 32]>,
    allow_loopback: bool,
    cp: Option<ControlPlane>,
}

impl AuthPolicy {
    pub(crate) fn new(auth: &AdminAuth, cp: Option<ControlPlane>) -> Self {
        Self {
            token_sha256: auth.token.as_deref().map(|t| sha256(t.as_bytes())),
            allow_loopback: auth.allow_loopback_without_token,
            cp,
        }
    }

    async fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Principal, ApiError> {
        let peer_ip = peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string());
        let principal = |credential, role, user, personal_key_id| Principal {
            credential,
            role,
            user,
            personal_key_id,
            csrf_token: None,
            peer_ip: peer_ip.clone(),
        };
        if let Some(presented) = bearer(headers) {
            if let Some(expected) = &self.token_sha256
                && bool::from(sha256(presented.as_bytes()).ct_eq(expected))
            {
                return Ok(principal(Credential::AdminToken, Role::Admin, None, None));
            }
            if presented.starts_with(API_TOKEN_PREFIX)
                && let Some(cp) = &self.cp
                && let Some((token, user)) = cp
                    .store()
                    .api_token(&sha256(presented.as_bytes()), crate::model::now())
                    .await?
            {
                let (role, key) = user_role(cp, &user).await?;
                return Ok(principal(
                    Credential::ApiToken { id: token.id },
                    role,
                    Some(user),
                    key,
                ));
            }
            return Err(ApiError::Unauthorized(
                if presented.starts_with(API_TOKEN_PREFIX) {
                    "invalid, expired or revoked API token"
                } else {
                    "invalid admin token"
                }
                .to_owned(),
            ));
        }
        if cookie(headers, SESSION_COOKIE).is_some()
            && let Some(cp) = &self.cp
        {
            let Some(SignedIn { session, user }) = signed_in(cp, headers).await? else {
                return Err(ApiError::Unauthorized(
                    "the session has ended: sign in again at /auth/login".to_owned(),
                ));
            };
            if !is_safe(method) {
                csrf_guard(headers, &session)?;
            }
            let (role, key) = user_role(cp, &user).await?;
            return Ok(Principal {
                csrf_token: Some(session.csrf_token),
                ..principal(Credential::Session, role, Some(user), key)
            });
        }
        match &self.token_sha256 {
            Some(_) => Err(ApiError::Unauthorized(
                "missing admin token: send `Authorization: Bearer <token>`".to_owned(),
            )),
            None if self.allow_loopback => {
                if !peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
                    return Err(ApiError::Unauthorized(
                        "no admin token is configured; the admin API only accepts loopback clients"
                            .to_owned(),
                    ));
                }
                browser_guard(headers)?;
                Ok(principal(Credential::Loopback, Role::Admin, None, None))
            }
            None => Err(ApiError::Unauthorized(
                "the admin API is disabled: no admin token is configured".to_owned(),
            )),
        }
    }
}

/// A user as a signed-in request of theirs would be authenticated now (their current role, team
/// and personal key); `None` when the user is gone or deactivated. Background work done for a
/// user (an export) checks it against what it was asked with.
pub(crate) async fn user_principal(
    cp: &ControlPlane,
    user_id: Uuid,
) -> Result<Option<Principal>, ApiError> {
    let Some(user) = cp.store().get_user(user_id).await? else {
        return Ok(None);
    };
    if !user.active {
        return Ok(None);
    }
    let (role, key) = user_role(cp, &user).await?;
    Ok(Some(Principal {
        credential: Credential::Session,
        role,
        user: Some(user),
        personal_key_id: key,
        csrf_token: None,
        peer_ip: String::new(),
    }))
}

/// A user's effective role (assigned, else from the group mappings) and personal key.
async fn user_role(cp: &ControlPlane, user: &UserRecord) -> Result<(Role, Option<Uuid>), ApiError> {
    let role = match user.role {
        Some(assigned) => assigned,
        None => cp.group_mappings().await?.role_for(&user.groups),
    };
    let key = cp.store().personal_key_id(user.id).await?;
    Ok((role, key))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A cookie-authenticated mutation must carry the session's CSRF token, and a browser's
/// `Origin` (when sent) must be the request's own host.
fn csrf_guard(headers: &HeaderMap, session: &SessionRecord) -> Result<(), ApiError> {
    if !csrf_ok(session, headers, None) {
        return Err(ApiError::Forbidden(format!(
            "a change made with the session cookie must carry the session's CSRF token in \
             `{CSRF_HEADER}` (GET /api/me gives it)"
        )));
    }
    if !origin_is_own(headers) {
        return Err(ApiError::Forbidden(
            "cross-origin request with the session cookie".to_owned(),
        ));
    }
    Ok(())
}

/// Without a token, the loopback rule alone would let any web page open in a local browser drive
/// the admin API (cross-site requests, or DNS rebinding of an attacker's name to 127.0.0.1).
/// Refuse requests that a browser marks as coming from another site, and requests addressed to
/// a host name that is not a loopback name.
fn browser_guard(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::Unauthorized(format!(
            "{why}; without an admin token the admin API only serves local tools such as curl"
        )))
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(host) = host
        && !is_loopback_host(host)
    {
        return refuse("the Host header does not name a loopback address");
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return refuse("cross-site browser request");
    }
    if !origin_is_own(headers) {
        return refuse("cross-origin browser request");
    }
    Ok(())
}

/// Whether a browser's `Origin`, when sent, names the request's own `Host`.
fn origin_is_own(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    origin_authority.is_some() && origin_authority == host
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Axum middleware enforcing [`AuthPolicy`]; on success it stores the [`Principal`] in the
/// request.
pub(crate) async fn authenticate(
    State(policy): State<Arc<AuthPolicy>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match policy.check(req.method(), req.headers(), peer).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(err) => {
            tracing::warn!(
                peer = %peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                method = %req.method(),
                path = %req.uri().path(),
                reason = %err,
                "admin API request refused"
            );
            err.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(token: Option<&str>, loopback: bool) -> AuthPolicy {
        AuthPolicy::new(
            &AdminAuth {
                token: token.map(str::to_owned),
                allow_loopback_without_token: loopback,
            },
            None,
        )
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn rules() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();

        let p = policy(None, true);
        assert!(
            p.check(&Method::GET, &headers(None), Some(lo))
                .await
                .is_ok()
        );
        assert!(
            p.check(&Method::GET, &headers(None), Some(lo6))
                .await
                .is_ok()
        );
        assert!(
            p.check(&Method::GET, &headers(None), Some(mapped))
                .await
                .is_ok()
        );
        assert!(
            p.check(&Method::GET, &headers(None), Some(remote))
                .await
                .is_err()
        );
        assert!(p.check(&Method::GET, &headers(None), None).await.is_err());

        // Browsers: cross-origin requests and rebound host names are refused.
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        for ok in [
            with(&[("host", "localhost:8080")]),
            with(&[("host", "127.0.0.1:8080")]),
            with(&[("host", "[::1]:8080")]),
            with(&[("host", "LOCALHOST")]),
            with(&[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:8080"),
            ]),
            with(&[
                ("host", "localhost:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ] {
            assert!(p.check(&Method::GET, &ok, Some(lo)).await.is_ok(), "{ok:?}");
        }
        for bad in [
            with(&[("host", "evil.example:8080")]),
            with(&[("host", "127.0.0.1.evil.example")]),
            with(&[
                ("host", "localhost:8080"),
                ("origin", "https://evil.example"),
            ]),
            with(&[("host", "localhost:8080"), ("origin", "null")]),
            with(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")]),
        ] {
            assert!(
                p.check(&Method::GET, &bad, Some(lo)).await.is_err(),
                "{bad:?}"
            );
        }

        let p = policy(None, false);
        assert!(
            p.check(&Method::GET, &headers(None), Some(lo))
                .await
                .is_err()
        );

        let p = policy(Some("s3cret"), true);
        assert!(
            p.check(&Method::GET, &headers(None), Some(lo))
                .await
                .is_err(),
            "token required even on loopback"
        );
        assert!(
            p.check(&Method::GET, &headers(Some("Bearer wrong")), Some(lo))
                .await
                .is_err()
        );
        assert!(
            p.check(&Method::GET, &headers(Some("Basic s3cret")), Some(lo))
                .await
                .is_err()
        );
        assert!(
            p.check(&Method::GET, &headers(Some("Bearer s3cret")), Some(remote))
                .await
                .is_ok()
        );
        assert!(
            p.check(&Method::GET, &headers(Some("bearer s3cret")), None)
                .await
                .is_ok()
        );
        assert_eq!(
            p.check(&Method::GET, &headers(Some("Bearer s3cret")), Some(remote))
                .await
                .unwrap()
                .actor(),
            "token@10.1.2.3"
        );
    }
}
