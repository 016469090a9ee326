//! `tollgate login`'s device-style sign-in (after RFC 8628), served next to the OIDC login:
//!
//! 1. `POST /auth/cli/start` (no credentials) gives a device code (the CLI's secret; only its
//!    SHA-256 is stored), a user code (`BCDF-GHJK`, what the person checks) and the page to open.
//! 2. The person opens `/auth/cli/approve?user_code=...`, signs in (the OIDC login returns them
//!    there) and approves or denies (a form POST with the session's CSRF token). Approvals are
//!    audited (`user.cli_login_approve`).
//! 3. The CLI polls `POST /auth/cli/token` with the device code and gets `authorization_pending`,
//!    `slow_down`, `expired_token`, `access_denied` (RFC 8628's errors, as JSON with a 400), or,
//!    once, the user's personal key value ([`ControlPlane::personal_key`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::web::{
    Peer, SignedIn, error_page, escape, field, form_fields, html, login_url, random_token,
    see_other, signed_in, signed_in_form,
};
use crate::ControlPlane;
use crate::crypto::{random_bytes, sha256};
use crate::model::AuditEvent;
use crate::store::{CliLoginRecord, CliPoll, StoreError};

/// How long a started sign-in may take.
pub(crate) const EXPIRES_IN_SECONDS: i64 = 600;
/// Least seconds between two polls of the CLI.
pub(crate) const INTERVAL_SECONDS: i64 = 3;
/// Pending sign-ins beyond which starting one is refused (the start route has no credentials).
const MAX_PENDING: u64 = 1000;
/// User code alphabet: consonants only (no vowels, so no words; no look-alikes), RFC 8628 §6.1.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// `POST /auth/cli/start` answer (RFC 8628 §3.2).
#[derive(Serialize)]
pub(crate) struct StartResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    interval: i64,
    expires_in: i64,
}

/// A user code of 8 letters from [`USER_CODE_ALPHABET`].
fn new_user_code() -> Result<String, crate::crypto::CryptoError> {
    let bytes = random_bytes::<8>()?;
    // 256 is not a multiple of 20: reject the top values so every letter is equally likely.
    let mut out = String::with_capacity(8);
    let mut pool = bytes.to_vec();
    while out.len() < 8 {
        if pool.is_empty() {
            pool = random_bytes::<8>()?.to_vec();
        }
        let b = pool.pop().unwrap_or(0);
        if usize::from(b) < 240 {
            out.push(char::from(
                USER_CODE_ALPHABET[usize::from(b) % USER_CODE_ALPHABET.len()],
            ));
        }
    }
    Ok(out)
}

/// `BCDFGHJK` → `BCDF-GHJK`.
fn display_code(code: &str) -> String {
    if code.len() == 8 {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// What people type: any case, with or without the dash or spaces.
pub(crate) fn normalize_user_code(raw: &str) -> Option<String> {
    let code: String = raw
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == 8 && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(code)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    super::web::no_store(resp.headers_mut());
    resp
}

/// `POST /auth/cli/start`.
pub(crate) async fn start(State(cp): State<ControlPlane>) -> Response {
    let cfg = match crate::oidc::effective(&cp).await {
        Ok(c) => c,
        Err(e) => {
            if !matches!(e, crate::oidc::ConfigError::NotConfigured) {
                tracing::error!(error = %e, "single sign-on is misconfigured");
            }
            return oauth_error(
                StatusCode::NOT_FOUND,
                "unsupported",
                "single sign-on is not configured on this gateway",
            );
        }
    };
    let now = OffsetDateTime::now_utc();
    for _ in 0..5 {
        let (Ok(device_code), Ok(user_code)) = (random_token(), new_user_code()) else {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "random number generator failed",
            );
        };
        let record = CliLoginRecord {
            device_code_sha256: sha256(device_code.as_bytes()),
            user_code: user_code.clone(),
            user_id: None,
            denied: false,
            created_at: now,
            expires_at: now + time::Duration::seconds(EXPIRES_IN_SECONDS),
            last_poll_at: None,
        };
        match cp.store().create_cli_login(&record, MAX_PENDING).await {
            Ok(()) => {
                let shown = display_code(&user_code);
                let verification_uri = format!("{}/auth/cli/approve", cfg.public_url);
                let mut resp = Json(StartResponse {
                    verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                    verification_uri,
                    device_code,
                    user_code: shown,
                    interval: INTERVAL_SECONDS,
                    expires_in: EXPIRES_IN_SECONDS,
                })
                .into_response();
                super::web::no_store(resp.headers_mut());
                return resp;
            }
            Err(StoreError::Conflict(m)) if m.contains("pending") => {
                return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "slow_down", &m);
            }
            // A user code collision: draw again.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot store a CLI sign-in");
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "see the gateway's log",
                );
            }
        }
    }
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "could not draw a free user code",
    )
}

#[derive(Deserialize)]
pub(crate) struct ApproveQuery {
    user_code: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "CLI sign-in page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway could not complete the request; the cause is in its log.",
    )
}

/// `GET /auth/cli/approve`: the page asking to approve a CLI sign-in (signs in first).
pub(crate) async fn approve_page(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Query(q): Query<ApproveQuery>,
) -> Response {
    let here = match q.user_code.as_deref() {
        Some(c) => format!(
            "/auth/cli/approve?user_code={}",
            form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
        ),
        None => "/auth/cli/approve".to_owned(),
    };
    let Some(SignedIn { session, user }) = (match signed_in(&cp, &headers).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    }) else {
        return see_other(&login_url(&here));
    };
    let Some(raw) = q.user_code.as_deref().filter(|c| !c.trim().is_empty()) else {
        return html(
            StatusCode::OK,
            "Sign in tollgate login",
            "<p>Enter the code your terminal shows:</p>\n\
             <form method=\"get\" action=\"/auth/cli/approve\">\
             <input name=\"user_code\" autocomplete=\"off\" placeholder=\"BCDF-GHJK\" required> \
             <button>Continue</button></form>",
        );
    };
    let Some(code) = normalize_user_code(raw) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown code",
            "That is not a code of `tollgate login` (8 letters, such as BCDF-GHJK).",
        );
    };
    match cp.store().cli_login(&code, OffsetDateTime::now_utc()).await {
        Ok(Some(login)) if login.user_id.is_none() => {}
        Ok(_) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Unknown or expired code",
                "No sign-in of `tollgate login` waits for this code: it expired, was already \
                 used, or was mistyped. Run `tollgate login` again.",
            );
        }
        Err(e) => return internal(e),
    }
    let csrf = escape(&session.csrf_token);
    let shown = escape(&display_code(&code));
    html(
        StatusCode::OK,
        "Sign in tollgate login",
        &format!(
            "<p>A <code>tollgate login</code> on a computer asks to sign in as <b>{user}</b> \
             and receive your personal key.</p>\n\
             <p>Approve only if your terminal shows this code and you started it just now:</p>\n\
             <p class=\"code\">{shown}</p>\n\
             <form method=\"post\" action=\"/auth/cli/approve\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"user_code\" value=\"{shown}\">\
             <button name=\"decision\" value=\"approve\">Approve</button>\
             <button name=\"decision\" value=\"deny\">Deny</button></form>",
            user = escape(&user.user_name),
        ),
    )
}

/// `POST /auth/cli/approve`: the decision (form fields `csrf_token`, `user_code`, `decision`).
pub(crate) async fn approve(
    State(cp): State<ControlPlane>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let SignedIn { user, .. } = match signed_in_form(
        &cp,
        &headers,
        &fields,
        "/auth/cli/approve",
        "Cannot approve",
    )
    .await
    {
        Ok(s) => s,
        Err(page) => return page,
    };
    let Some(code) = field(&fields, "user_code").and_then(normalize_user_code) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown code",
            "The form has no valid code.",
        );
    };
    let approve = match field(&fields, "decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Cannot approve",
                "The form must say approve or deny.",
            );
        }
    };
    let event = AuditEvent::new(
        format!("user:{}@{}", user.user_name, peer.0),
        if approve {
            "user.cli_login_approve"
        } else {
            "user.cli_login_deny"
        },
        format!("users/{}", user.id),
        &super::web::audit_source(&peer, &headers),
    )
    .with("user_code", json!(display_code(&code)));
    match cp
        .store()
        .decide_cli_login(&code, user.id, approve, OffsetDateTime::now_utc(), &event)
        .await
    {
        Ok(true) if approve => html(
            StatusCode::OK,
            "Approved",
            "<p>Done: <code>tollgate login</code> receives your key in a few seconds. You can \
             close this tab.</p>",
        ),
        Ok(true) => html(
            StatusCode::OK,
            "Denied",
            "<p>The sign-in was refused; the terminal that asked gets nothing.</p>",
        ),
        Ok(false) => error_page(
            StatusCode::NOT_FOUND,
            "Unknown or expired code",
            "No sign-in waits for this code any more: it expired or was already decided.",
        ),
        Err(e) => internal(e),
    }
}

/// `POST /auth/cli/token` success answer.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    /// The personal virtual key's value (send it as `x-api-key`).
    key: String,
    user_name: String,
}

/// `POST /auth/cli/token` (form field `device_code`, or a JSON body `{"device_code"}`).
pub(crate) async fn token(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let device_code = if is_json {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("device_code")?.as_str().map(str::to_owned))
    } else {
        field(&form_fields(&body), "device_code").map(str::to_owned)
    };
    let Some(device_code) = device_code.filter(|d| !d.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "device_code is required",
        );
    };
    let now = OffsetDateTime::now_utc();
    let poll = cp
        .store()
        .poll_cli_login(
            &sha256(device_code.as_bytes()),
            now,
            // A little slack for network jitter between the CLI's sleeps.
            time::Duration::milliseconds(INTERVAL_SECONDS * 1000 - 500),
        )
        .await;
    let user_id = match poll {
        Ok(CliPoll::Approved(id)) => id,
        Ok(CliPoll::Pending) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                "waiting for the user to approve in the browser",
            );
        }
        Ok(CliPoll::SlowDown) => {
            return oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast");
        }
        Ok(CliPoll::Denied) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "access_denied",
                "the user denied the sign-in",
            );
        }
        Ok(CliPoll::Expired | CliPoll::Unknown) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "expired_token",
                "the sign-in expired or was already used; start again",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "CLI sign-in poll failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "see the gateway's log",
            );
        }
    };
    let user = match cp.store().get_user(user_id).await {
        Ok(Some(u)) if u.active => u,
        Ok(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "access_denied",
                "the account is deactivated",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "CLI sign-in: cannot read the user");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "see the gateway's log",
            );
        }
    };
    match cp.store().personal_key_id(user.id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "access_denied",
                "the account has no personal key; sign in to the gateway in a browser first",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "CLI sign-in: cannot read the personal key");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "see the gateway's log",
            );
        }
    }
    tracing::info!(action = "user.cli_login", user = %user.user_name, "tollgate login received the personal key");
    let mut resp = Json(TokenResponse {
        key: cp.personal_key(user.id, user.key_generation),
        user_name: user.user_name,
    })
    .into_response();
    super::web::no_store(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_consonants_and_read_back_however_typed() {
        for _ in 0..200 {
            let c = new_user_code().unwrap();
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{c}");
            assert_eq!(
                normalize_user_code(&display_code(&c)).as_deref(),
                Some(c.as_str())
            );
            assert_eq!(
                normalize_user_code(&display_code(&c).to_lowercase()).as_deref(),
                Some(c.as_str())
            );
        }
        assert_eq!(
            normalize_user_code("bcdf ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
    }
}
