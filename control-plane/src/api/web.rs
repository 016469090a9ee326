//! Shared pieces of the browser routes under `/auth`: HTML pages (self-contained, no script,
//! everything escaped), cookies, the signed-in session, the peer address, CSRF checks.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use super::session::{CSRF_HEADER, SESSION_COOKIE, cookie};
use crate::ControlPlane;
use crate::crypto::{random_bytes, sha256};
use crate::identity::{SessionRecord, UserRecord};

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `body` must already be escaped HTML.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Tollgate</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;\
         color:#1d1d1f;line-height:1.45}}\
         h1{{font-size:1.4rem}}h2{{font-size:1.15rem;margin-top:2rem}}\
         pre{{background:#f4f4f6;padding:.8rem;overflow-x:auto;border-radius:6px;\
         white-space:pre-wrap;word-break:break-all}}\
         code{{background:#f4f4f6;padding:0 .2rem;border-radius:3px}}\
         table{{border-collapse:collapse}}td{{padding:.25rem 1rem .25rem 0;vertical-align:top}}\
         .secret{{border:2px solid #d97706;border-radius:8px;padding:0 1rem 1rem}}\
         .code{{font-size:1.6rem;letter-spacing:.15rem;font-family:monospace}}\
         button{{font-size:1rem;padding:.4rem 1rem;margin:.5rem .5rem 0 0}}\
         form{{display:inline}}.muted{{color:#666}}</style></head>\n<body>\n\
         <h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    )
}

/// An HTML answer that no cache keeps and no other site may frame.
pub(crate) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let mut resp = (status, page(title, body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(h);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `Cache-Control: no-store` (pages and answers that may hold a secret).
pub(crate) fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// An error page (the message is escaped here).
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        title,
        &format!(
            "<p>{}</p>\n<p><a href=\"/auth/login\">Sign in again</a></p>",
            escape(message)
        ),
    )
}

/// A `303 See Other` to `location` (a path of this origin or the identity provider's URL).
pub(crate) fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    no_store(resp.headers_mut());
    resp
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure when the gateway is reached over TLS.
/// `max_age` 0 deletes the cookie.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    secure: bool,
) -> Option<HeaderValue> {
    let mut v = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    if secure {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).ok()
}

/// Adds a `Set-Cookie` header.
pub(crate) fn add_cookie(resp: &mut Response, cookie: Option<HeaderValue>) {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
}

/// 32 random bytes, base64url: session values, CSRF tokens, states, nonces, device codes.
pub(crate) fn random_token() -> Result<String, ApiError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// The browser's address as seen on the socket (for the audit log).
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string()),
        ))
    }
}

/// A browser's session and its user.
pub(crate) struct SignedIn {
    pub session: SessionRecord,
    pub user: UserRecord,
}

/// The unexpired session of an active user that the request's cookie names, if any.
pub(crate) async fn signed_in(
    cp: &ControlPlane,
    headers: &HeaderMap,
) -> Result<Option<SignedIn>, ApiError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let digest = sha256(value.as_bytes());
    Ok(cp
        .store()
        .session(&digest, time::OffsetDateTime::now_utc())
        .await?
        .map(|(session, user)| SignedIn { session, user }))
}

/// Whether a mutation carries the session's CSRF token (the `X-CSRF-Token` header or the
/// `csrf_token` form field), compared in constant time.
pub(crate) fn csrf_ok(
    session: &SessionRecord,
    headers: &HeaderMap,
    form_value: Option<&str>,
) -> bool {
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form_value);
    presented.is_some_and(|p| {
        bool::from(sha256(p.as_bytes()).ct_eq(&sha256(session.csrf_token.as_bytes())))
    })
}

/// The signed-in user of a form POST that must carry the session's CSRF token: a redirect to
/// the sign-in page (coming back to `return_to`) without a session, a 403 page saying what
/// could not be done (`title`) without the token.
pub(crate) async fn signed_in_form(
    cp: &ControlPlane,
    headers: &HeaderMap,
    fields: &[(String, String)],
    return_to: &str,
    title: &str,
) -> Result<SignedIn, axum::response::Response> {
    let signed = match signed_in(cp, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(see_other(&login_url(return_to))),
        Err(e) => return Err(e.into_response()),
    };
    if !csrf_ok(&signed.session, headers, field(fields, "csrf_token")) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            title,
            "The request did not carry this session's CSRF token. Use the gateway's own page.",
        ));
    }
    Ok(signed)
}

/// The fields of an `application/x-www-form-urlencoded` body.
pub(crate) fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of form field `name`.
pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `/auth/login?return_to=<path>` (percent-encoded).
pub(crate) fn login_url(return_to: &str) -> String {
    format!(
        "/auth/login?return_to={}",
        form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
    )
}

/// Where a sign-in request came from, for its audit rows.
pub(crate) fn audit_source(
    peer: &Peer,
    headers: &axum::http::HeaderMap,
) -> crate::audit::AuditSource {
    crate::audit::AuditSource::new(
        peer.0.parse().ok(),
        headers
            .get(axum::http::header::USER_AGENT)
            .map(axum::http::HeaderValue::as_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn cookies_are_http_only_and_lax() {
        let c = set_cookie("n", "v", "/auth", 600, true).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "n=v; Path=/auth; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
        );
        let c = set_cookie("n", "", "/", 0, false).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "n=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
        assert!(set_cookie("n", "a\r\nb", "/", 0, false).is_none());
    }

    #[test]
    fn csrf_needs_the_sessions_token() {
        let s = SessionRecord {
            id_sha256: [0; 32],
            user_id: uuid::Uuid::nil(),
            csrf_token: "tok".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let mut h = HeaderMap::new();
        assert!(!csrf_ok(&s, &h, None));
        assert!(csrf_ok(&s, &h, Some("tok")));
        assert!(!csrf_ok(&s, &h, Some("tok2")));
        h.insert(CSRF_HEADER, "tok".parse().unwrap());
        assert!(csrf_ok(&s, &h, None));
        h.insert(CSRF_HEADER, "bad".parse().unwrap());
        assert!(!csrf_ok(&s, &h, Some("tok")), "the header wins");
        assert_eq!(
            login_url("/auth/cli/approve?user_code=AB-CD"),
            "/auth/login?return_to=%2Fauth%2Fcli%2Fapprove%3Fuser_code%3DAB-CD"
        );
    }
}
