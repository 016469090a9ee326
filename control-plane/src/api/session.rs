//! The browser session's wire contract: cookie and header names, and reading the cookie. The
//! session's value is 32 random bytes (base64url) held only by the browser, in an HttpOnly,
//! SameSite=Lax cookie (Secure when the gateway is reached over TLS); the store keeps its
//! SHA-256 ([`crate::identity::SessionRecord`]). Mutations authenticated by the cookie must
//! also carry the session's CSRF token in [`CSRF_HEADER`] (the login answer and `GET /api/me`
//! give it), which a page of another site cannot read.

use axum::http::{HeaderMap, header};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "tollgate_session";
/// The header carrying the session's CSRF token on cookie-authenticated mutations.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_several_headers() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; tollgate_session=abc".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "tollgate"), None);
        h.insert(header::COOKIE, "tollgate_session=".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }
}
