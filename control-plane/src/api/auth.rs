//! Admin authentication.
//!
//! * A configured token must be presented as `Authorization: Bearer <token>` on every `/api`
//!   request, from any address (compared in constant time, on SHA-256 digests so the length does
//!   not leak either).
//! * Without a token, `allow_loopback_without_token` admits only clients whose TCP peer address
//!   is loopback (from `ConnectInfo<SocketAddr>`; forwarded-for headers are not trusted). A request
//!   without `ConnectInfo` is not considered loopback.
//! * Otherwise every request is refused with 401.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use crate::AdminAuth;
use crate::crypto::sha256;

/// Who made an admin request, as recorded in the audit log (`token@10.0.0.5`, `loopback@127.0.0.1`).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .unwrap_or_else(|| Actor("unknown".to_owned())))
    }
}

/// The middleware's view of [`AdminAuth`].
#[derive(Clone)]
pub(crate) struct AuthPolicy {
    token_sha256: Option<[u8; 32]>,
    allow_loopback: bool,
}

impl AuthPolicy {
    pub(crate) fn new(auth: &AdminAuth) -> Self {
        Self {
            token_sha256: auth.token.as_deref().map(|t| sha256(t.as_bytes())),
            allow_loopback: auth.allow_loopback_without_token,
        }
    }

    fn check(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Actor, ApiError> {
        let peer_ip = peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string());
        match &self.token_sha256 {
            Some(expected) => {
                let presented = bearer(headers).ok_or_else(|| {
                    ApiError::Unauthorized(
                        "missing admin token: send `Authorization: Bearer <token>`".to_owned(),
                    )
                })?;
                if bool::from(sha256(presented.as_bytes()).ct_eq(expected)) {
                    Ok(Actor(format!("token@{peer_ip}")))
                } else {
                    Err(ApiError::Unauthorized("invalid admin token".to_owned()))
                }
            }
            None if self.allow_loopback => {
                if peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
                    Ok(Actor(format!("loopback@{peer_ip}")))
                } else {
                    Err(ApiError::Unauthorized(
                        "no admin token is configured; the admin API only accepts loopback clients"
                            .to_owned(),
                    ))
                }
            }
            None => Err(ApiError::Unauthorized(
                "the admin API is disabled: no admin token is configured".to_owned(),
            )),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Axum middleware enforcing [`AuthPolicy`]; on success it stores the [`Actor`] in the request.
pub(crate) async fn require_admin(
    State(policy): State<Arc<AuthPolicy>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match policy.check(req.headers(), peer) {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
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
        AuthPolicy::new(&AdminAuth {
            token: token.map(str::to_owned),
            allow_loopback_without_token: loopback,
        })
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn rules() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();

        let p = policy(None, true);
        assert!(p.check(&headers(None), Some(lo)).is_ok());
        assert!(p.check(&headers(None), Some(lo6)).is_ok());
        assert!(p.check(&headers(None), Some(mapped)).is_ok());
        assert!(p.check(&headers(None), Some(remote)).is_err());
        assert!(p.check(&headers(None), None).is_err());

        let p = policy(None, false);
        assert!(p.check(&headers(None), Some(lo)).is_err());

        let p = policy(Some("s3cret"), true);
        assert!(
            p.check(&headers(None), Some(lo)).is_err(),
            "token required even on loopback"
        );
        assert!(p.check(&headers(Some("Bearer wrong")), Some(lo)).is_err());
        assert!(p.check(&headers(Some("Basic s3cret")), Some(lo)).is_err());
        assert!(
            p.check(&headers(Some("Bearer s3cret")), Some(remote))
                .is_ok()
        );
        assert!(p.check(&headers(Some("bearer s3cret")), None).is_ok());
        assert_eq!(
            p.check(&headers(Some("Bearer s3cret")), Some(remote))
                .unwrap()
                .0,
            "token@10.1.2.3"
        );
    }
}
