//! Admin authentication.
//!
//! * A configured token must be presented as `Authorization: Bearer <token>` on every `/api`
//!   request, from any address (compared in constant time, on SHA-256 digests so the length does
//!   not leak either).
//! * Without a token, `allow_loopback_without_token` admits only clients whose TCP peer address
//!   is loopback (from `ConnectInfo<SocketAddr>`; forwarded-for headers are not trusted). A request
//!   without `ConnectInfo` is not considered loopback. Because a local browser is a loopback
//!   client too, this mode also refuses cross-origin browser requests (`Origin` not matching
//!   `Host`, `Sec-Fetch-Site: cross-site`) and `Host` names that are not loopback names (DNS
//!   rebinding).
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
                if !peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
                    return Err(ApiError::Unauthorized(
                        "no admin token is configured; the admin API only accepts loopback clients"
                            .to_owned(),
                    ));
                }
                browser_guard(headers)?;
                Ok(Actor(format!("loopback@{peer_ip}")))
            }
            None => Err(ApiError::Unauthorized(
                "the admin API is disabled: no admin token is configured".to_owned(),
            )),
        }
    }
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
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin_authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, authority)| authority);
        if origin_authority.is_none() || origin_authority != host {
            return refuse("cross-origin browser request");
        }
    }
    Ok(())
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
            assert!(p.check(&ok, Some(lo)).is_ok(), "{ok:?}");
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
            assert!(p.check(&bad, Some(lo)).is_err(), "{bad:?}");
        }

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
