//! The OIDC login (authorization code flow with PKCE, state and nonce), the session cookie,
//! logout, and the signed-in user's page with their personal key and the Claude Code setup.
//!
//! * `GET /auth/login?return_to=/path`: redirects to the identity provider. The state, nonce,
//!   PKCE verifier and `return_to` travel in a sealed, HttpOnly cookie (Path=/auth, 10 min), so
//!   any control-plane replica can finish the flow.
//! * `GET /auth/callback`: checks the state (and the `iss` parameter when sent), exchanges the
//!   code with the verifier, verifies the ID token (signature against the provider's keys,
//!   issuer, audience, nonce, expiry), provisions the user ([`crate::store::IdentityStore::
//!   provision_user`]: one user, one personal key, in the team their groups map to), refuses
//!   inactive users, opens a session (cookie `tollgate_session`) and redirects to `return_to`.
//! * `POST /auth/logout` (CSRF token in the form or the `X-CSRF-Token` header): ends the
//!   session; then the provider's `end_session_endpoint` when it advertises one.
//! * `GET /auth/me`: who you are, your team, role and key; the key's value and the Claude Code
//!   settings once after the login that created the key or after a rotation
//!   (`POST /auth/me/rotate-key`).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

use super::session::{SESSION_COOKIE, cookie};
use super::web::{
    Peer, SignedIn, add_cookie, csrf_ok, error_page, escape, field, form_fields, html, login_url,
    random_token, see_other, set_cookie, signed_in, signed_in_form,
};
use crate::ControlPlane;
use crate::crypto::sha256;
use crate::identity::{SessionRecord, UserRecord, fold_user_name};
use crate::model::AuditEvent;
use crate::oidc::{ConfigError, Metadata, error_chain};
use crate::sso::{
    LOGIN_TTL_SECONDS, LoginState, REVEAL_COOKIE, Reveal, SsoConfig, login_cookie_name,
    profile_from_claims, safe_return_to,
};

/// Logs and audits a refused sign-in (`user.login_failed`, actor `anonymous@IP`, the reason and
/// `details`, which never hold codes, tokens or secrets). The audit row is written in the
/// background, so the refusal page does not wait for the store.
fn login_failed(
    cp: &ControlPlane,
    peer: &Peer,
    headers: &HeaderMap,
    reason: &str,
    details: serde_json::Value,
) {
    tracing::warn!(
        action = "user.login_failed",
        peer = %peer.0,
        reason,
        details = %details,
        "sign-in refused"
    );
    let event = AuditEvent::new(
        format!("anonymous@{}", peer.0),
        "user.login_failed",
        "auth/callback",
        &super::web::audit_source(peer, headers),
    )
    .failure(reason)
    .with("details", details);
    let cp = cp.clone();
    tokio::spawn(async move {
        if let Err(e) = cp.store().append_audit(&event).await {
            tracing::warn!(error = %e, "cannot write the audit row of a refused sign-in");
        }
    });
}

fn not_configured(e: &ConfigError) -> Response {
    match e {
        ConfigError::NotConfigured => error_page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured",
            "This gateway has no identity provider configured. An administrator can set one \
             with the --oidc-* flags or PUT /api/sso.",
        ),
        other => {
            tracing::error!(error = %other, "single sign-on is misconfigured");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Single sign-on is unavailable",
                "Single sign-on is misconfigured on this gateway; the cause is in its log.",
            )
        }
    }
}

fn provider_unreachable(e: &str) -> Response {
    tracing::error!(error = %e, "cannot use the identity provider");
    error_page(
        StatusCode::BAD_GATEWAY,
        "Cannot reach the identity provider",
        "The gateway could not talk to the identity provider; try again, or ask an \
         administrator (the cause is in the gateway's log).",
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway could not complete the request; the cause is in its log.",
    )
}

fn client_for(cfg: &SsoConfig, metadata: &Metadata) -> Result<ConfiguredClient, String> {
    let redirect = RedirectUrl::new(cfg.redirect_uri()).map_err(|e| e.to_string())?;
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(cfg.client_id.clone()),
        cfg.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

type ConfiguredClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /auth/login`.
pub(crate) async fn login(State(cp): State<ControlPlane>, Query(q): Query<LoginQuery>) -> Response {
    let return_to = match safe_return_to(q.return_to.as_deref()) {
        Ok(r) => r,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, "Cannot sign in", why),
    };
    let cfg = match crate::oidc::effective(&cp).await {
        Ok(c) => c,
        Err(e) => return not_configured(&e),
    };
    let metadata = match cp.sso().metadata(&cfg.issuer, false).await {
        Ok(m) => m,
        Err(e) => return provider_unreachable(&e),
    };
    let client = match client_for(&cfg, &metadata) {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let (state, nonce, verifier) = match (random_token(), random_token(), random_token()) {
        (Ok(s), Ok(n), Ok(v)) => (s, n, v),
        _ => return internal("the random number generator failed"),
    };
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.clone()));
    let (url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let state = state.clone();
                move || CsrfToken::new(state)
            },
            {
                let nonce = nonce.clone();
                move || Nonce::new(nonce)
            },
        )
        .add_scopes(
            cfg.scopes
                .iter()
                .filter(|s| *s != "openid")
                .map(|s| Scope::new(s.clone())),
        )
        .set_pkce_challenge(challenge)
        .url();
    let login = LoginState {
        state: state.clone(),
        nonce,
        pkce_verifier: verifier,
        return_to,
        issuer: cfg.issuer.clone(),
        expires_at: OffsetDateTime::now_utc().unix_timestamp() + LOGIN_TTL_SECONDS,
    };
    let (Some(name), Ok(sealed)) = (login_cookie_name(&state), login.seal(cp.secrets())) else {
        return internal("cannot seal the login state");
    };
    let mut resp = see_other(url.as_str());
    add_cookie(
        &mut resp,
        set_cookie(
            &name,
            &sealed,
            "/auth",
            LOGIN_TTL_SECONDS,
            cfg.secure_cookies(),
        ),
    );
    resp
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// `GET /auth/callback`.
pub(crate) async fn callback(
    State(cp): State<ControlPlane>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let cfg = match crate::oidc::effective(&cp).await {
        Ok(c) => c,
        Err(e) => return not_configured(&e),
    };
    let secure = cfg.secure_cookies();
    let cookie_name = q.state.as_deref().and_then(login_cookie_name);
    let clear_login = |resp: &mut Response| {
        if let Some(name) = &cookie_name {
            add_cookie(resp, set_cookie(name, "", "/auth", 0, secure));
        }
    };
    let refuse = |status: StatusCode, reason: &str, message: &str, details: serde_json::Value| {
        login_failed(&cp, &peer, &headers, reason, details);
        let mut resp = error_page(status, "Sign-in failed", message);
        clear_login(&mut resp);
        resp
    };
    if let Some(error) = &q.error {
        // The provider's error code and description are shown escaped; they carry no secret.
        let description = q.error_description.as_deref().unwrap_or("");
        return refuse(
            StatusCode::BAD_REQUEST,
            "provider_error",
            &format!("The identity provider refused the sign-in: {error} {description}"),
            json!({"error": error, "error_description": description}),
        );
    }
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "missing_code",
            "The identity provider's answer has no code or state.",
            json!({}),
        );
    };
    let now = OffsetDateTime::now_utc();
    let login = cookie_name
        .as_deref()
        .and_then(|name| cookie(&headers, name))
        .and_then(|sealed| LoginState::open(cp.secrets(), sealed, now))
        .filter(|l| bool::from(l.state.as_bytes().ct_eq(state.as_bytes())));
    let Some(login) = login else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "state_mismatch",
            "This sign-in was not started here, was started in another browser, or took more \
             than 10 minutes. Start again.",
            json!({}),
        );
    };
    if login.issuer != cfg.issuer || q.iss.as_deref().is_some_and(|iss| iss != cfg.issuer) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "issuer_mismatch",
            "The answer does not come from the configured identity provider. Start again.",
            json!({"iss": q.iss}),
        );
    }
    let metadata = match cp.sso().metadata(&cfg.issuer, false).await {
        Ok(m) => m,
        Err(e) => return provider_unreachable(&e),
    };
    let client = match client_for(&cfg, &metadata) {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let request = match client.exchange_code(AuthorizationCode::new(code.to_owned())) {
        Ok(r) => r.set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone())),
        Err(e) => return internal(format!("the provider has no token endpoint: {e}")),
    };
    let token = match request.request_async(cp.sso().http()).await {
        Ok(t) => t,
        Err(e) => {
            let why = error_chain(&e);
            return refuse(
                StatusCode::BAD_GATEWAY,
                "code_exchange_failed",
                "The identity provider did not accept the sign-in code. Start again.",
                json!({"error": why}),
            );
        }
    };
    let Some(id_token) = openidconnect::TokenResponse::id_token(&token) else {
        return refuse(
            StatusCode::BAD_GATEWAY,
            "no_id_token",
            "The identity provider answered without an ID token (is the `openid` scope allowed?).",
            json!({}),
        );
    };
    let nonce = Nonce::new(login.nonce.clone());
    let mut verified = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .map(|_| ());
    if matches!(
        verified,
        Err(
            openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey
            )
        )
    ) {
        // The provider may have rotated its keys: fetch them again and retry once.
        match cp.sso().metadata(&cfg.issuer, true).await {
            Ok(fresh) => match client_for(&cfg, &fresh) {
                Ok(c) => verified = id_token.claims(&c.id_token_verifier(), &nonce).map(|_| ()),
                Err(e) => return internal(e),
            },
            Err(e) => return provider_unreachable(&e),
        }
    }
    if let Err(e) = verified {
        return refuse(
            StatusCode::BAD_REQUEST,
            "id_token_invalid",
            "The identity provider's ID token did not verify. Start again.",
            json!({"error": error_chain(&e)}),
        );
    }
    // The token verified: read all of its claims (the groups claim is not a standard one).
    let claims = match jwt_claims(&id_token.to_string()) {
        Some(c) => c,
        None => return internal("the verified ID token's claims are not JSON"),
    };
    let profile = match profile_from_claims(&cfg.issuer, &claims, &cfg.claims) {
        Ok(p) => p,
        Err(why) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "claims_unusable",
                &format!("The identity provider's ID token cannot be used: {why}"),
                json!({"error": why}),
            );
        }
    };
    let user_name = fold_user_name(&profile.user_name);
    let mappings = match cp.group_mappings().await {
        Ok(m) => m,
        Err(e) => return internal(e),
    };
    if !mappings.admits(profile.groups.as_deref().unwrap_or_default()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "not_in_allowed_group",
            "Your account is not in a group allowed to use this gateway. Ask an administrator \
             to add you to one.",
            json!({"user_name": user_name, "groups": profile.groups}),
        );
    }
    let event = AuditEvent::new(
        format!("user:{user_name}@{}", peer.0),
        "user.login",
        format!("users/{user_name}"),
        &super::web::audit_source(&peer, &headers),
    )
    .with("method", json!("oidc"))
    .with("issuer", json!(cfg.issuer));
    let key = |user_id, generation| cp.personal_key(user_id, generation);
    let provisioned = match cp
        .store()
        .provision_user(&profile, &mappings, &key, &event)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            login_failed(
                &cp,
                &peer,
                &headers,
                "provisioning_failed",
                json!({"user_name": user_name, "error": e.to_string()}),
            );
            return internal(e);
        }
    };
    if !provisioned.user.active {
        return refuse(
            StatusCode::FORBIDDEN,
            "user_inactive",
            "Your account on this gateway is deactivated. Ask an administrator to reactivate it.",
            json!({"user_name": user_name, "user_id": provisioned.user.id}),
        );
    }
    if let Some(version) = provisioned.version
        && let Err(e) = cp.committed(&event, version).await
    {
        tracing::warn!(error = %e, "publishing the new personal key failed; the replicas pick it up");
    }
    let (session_value, csrf) = match (random_token(), random_token()) {
        (Ok(s), Ok(c)) => (s, c),
        _ => return internal("the random number generator failed"),
    };
    let session_sha256 = sha256(session_value.as_bytes());
    let lifetime = time::Duration::hours(i64::from(cfg.session_hours));
    let session = SessionRecord {
        id_sha256: session_sha256,
        user_id: provisioned.user.id,
        csrf_token: csrf,
        created_at: now,
        expires_at: now + lifetime,
    };
    if let Err(e) = cp.store().create_session(&session).await {
        return internal(e);
    }
    tracing::info!(
        action = "user.login",
        user = %user_name,
        user_created = provisioned.user_created,
        key_created = provisioned.key_created,
        peer = %peer.0,
        "signed in"
    );
    let mut resp = see_other(&login.return_to);
    clear_login(&mut resp);
    add_cookie(
        &mut resp,
        set_cookie(
            SESSION_COOKIE,
            &session_value,
            "/",
            lifetime.whole_seconds(),
            secure,
        ),
    );
    if provisioned.key_created {
        add_cookie(
            &mut resp,
            reveal_cookie(&cp, &provisioned.user, &session_sha256, secure),
        );
    }
    resp
}

/// The payload of a compact JWT as JSON (its signature checked by the caller).
fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn reveal_cookie(
    cp: &ControlPlane,
    user: &UserRecord,
    session_sha256: &[u8; 32],
    secure: bool,
) -> Option<axum::http::HeaderValue> {
    let reveal = Reveal {
        user_id: user.id,
        generation: user.key_generation,
        session_sha256: hex::encode(session_sha256),
        expires_at: OffsetDateTime::now_utc().unix_timestamp() + LOGIN_TTL_SECONDS,
    };
    let sealed = reveal.seal(cp.secrets()).ok()?;
    set_cookie(
        REVEAL_COOKIE,
        &sealed,
        "/auth/me",
        LOGIN_TTL_SECONDS,
        secure,
    )
}

/// Whether cookies get `Secure` (from the effective public URL; false when SSO is gone).
async fn secure_cookies(cp: &ControlPlane) -> bool {
    crate::oidc::effective(cp)
        .await
        .is_ok_and(|c| c.secure_cookies())
}

/// `POST /auth/logout`.
pub(crate) async fn logout(
    State(cp): State<ControlPlane>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let signed = match signed_in(&cp, &headers).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let cfg = crate::oidc::effective(&cp).await.ok();
    let secure = cfg.as_ref().is_some_and(SsoConfig::secure_cookies);
    let mut location = "/auth/logged-out".to_owned();
    if let Some(SignedIn { session, user }) = signed {
        if !csrf_ok(&session, &headers, field(&fields, "csrf_token")) {
            return error_page(
                StatusCode::FORBIDDEN,
                "Cannot sign out",
                "The request did not carry this session's CSRF token. Sign out from the \
                 gateway's own page.",
            );
        }
        if let Err(e) = cp.store().delete_session(&session.id_sha256).await {
            return internal(e);
        }
        tracing::info!(action = "user.logout", user = %user.user_name, peer = %peer.0, "signed out");
        let event = AuditEvent::new(
            format!("user:{}@{}", user.user_name, peer.0),
            "user.logout",
            format!("users/{}", user.id),
            &super::web::audit_source(&peer, &headers),
        )
        .success();
        if let Err(e) = cp.store().append_audit(&event).await {
            tracing::warn!(error = %e, "cannot write the audit row of a sign-out");
        }
        if let Some(cfg) = &cfg
            && let Ok(metadata) = cp.sso().metadata(&cfg.issuer, false).await
            && let Some(end) = &metadata.additional_metadata().end_session_endpoint
        {
            let mut url = end.url().clone();
            url.query_pairs_mut()
                .append_pair("client_id", &cfg.client_id)
                .append_pair(
                    "post_logout_redirect_uri",
                    &format!("{}/auth/logged-out", cfg.public_url),
                );
            location = url.to_string();
        }
    }
    let mut resp = see_other(&location);
    add_cookie(&mut resp, set_cookie(SESSION_COOKIE, "", "/", 0, secure));
    add_cookie(
        &mut resp,
        set_cookie(REVEAL_COOKIE, "", "/auth/me", 0, secure),
    );
    resp
}

/// `GET /auth/logged-out`.
pub(crate) async fn logged_out() -> Response {
    html(
        StatusCode::OK,
        "Signed out",
        "<p>You are signed out of the gateway.</p>\n<p><a href=\"/auth/login\">Sign in again</a></p>",
    )
}

/// `GET /auth/me`.
pub(crate) async fn me(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    let Some(SignedIn { session, user }) = (match signed_in(&cp, &headers).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    }) else {
        return see_other(&login_url("/auth/me"));
    };
    let cfg = match crate::oidc::effective(&cp).await {
        Ok(c) => c,
        Err(e) => return not_configured(&e),
    };
    let mappings = match cp.group_mappings().await {
        Ok(m) => m,
        Err(e) => return internal(e),
    };
    let team = match user.team_id {
        Some(id) => match cp.store().get_team(id).await {
            Ok(t) => t.map(|t| t.name),
            Err(e) => return internal(e),
        },
        None => None,
    };
    let key = match cp.store().personal_key_id(user.id).await {
        Ok(Some(id)) => match cp.store().get_virtual_key(id).await {
            Ok(k) => k,
            Err(e) => return internal(e),
        },
        Ok(None) => None,
        Err(e) => return internal(e),
    };
    let now = OffsetDateTime::now_utc();
    let reveal = cookie(&headers, REVEAL_COOKIE)
        .and_then(|c| Reveal::open(cp.secrets(), c, now))
        .filter(|r| {
            r.user_id == user.id
                && r.generation == user.key_generation
                && r.session_sha256 == hex::encode(session.id_sha256)
                && key.as_ref().is_some_and(|k| k.active)
        });
    let gateway = &cfg.public_url;
    let mut body = String::new();
    body.push_str(&format!(
        "<p>Signed in as <b>{}</b>{}.</p>\n<table>\n",
        escape(&user.user_name),
        user.display_name
            .as_deref()
            .map(|n| format!(" ({})", escape(n)))
            .unwrap_or_default()
    ));
    let row = |k: &str, v: String| format!("<tr><td>{k}</td><td>{v}</td></tr>\n");
    body.push_str(&row(
        "Email",
        user.email
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "—".into()),
    ));
    body.push_str(&row(
        "Team",
        team.as_deref().map(escape).unwrap_or_else(|| "none".into()),
    ));
    body.push_str(&row(
        "Role",
        escape(mappings.effective_role(&user).as_str()),
    ));
    body.push_str(&row(
        "Groups",
        if user.groups.is_empty() {
            "none".into()
        } else {
            escape(&user.groups.join(", "))
        },
    ));
    body.push_str(&row(
        "Personal key",
        match &key {
            Some(k) => format!(
                "<code>{}…</code>{}",
                escape(&k.value_prefix),
                if k.active { "" } else { " (inactive)" }
            ),
            None => "none yet".into(),
        },
    ));
    body.push_str(&row(
        "Session ends",
        escape(&super::timestamp(session.expires_at)),
    ));
    body.push_str("</table>\n");
    let helper = json!({
        "apiKeyHelper": format!("tollgate login --print-key --gateway {gateway}"),
        "env": {"ANTHROPIC_BASE_URL": gateway},
    });
    let helper = serde_json::to_string_pretty(&helper).unwrap_or_default();
    if let Some(r) = &reveal {
        let value = cp.personal_key(user.id, r.generation);
        let inline = json!({"env": {"ANTHROPIC_BASE_URL": gateway, "ANTHROPIC_AUTH_TOKEN": value}});
        let inline = serde_json::to_string_pretty(&inline).unwrap_or_default();
        body.push_str(&format!(
            "<section class=\"secret\">\n<h2>Your personal key</h2>\n\
             <p>This is the only time this page shows it: copy it now.</p>\n\
             <pre>{value}</pre>\n\
             <h3>Claude Code: recommended setup</h3>\n\
             <p>Install <code>tollgate</code> on your machine and put this in \
             <code>~/.claude/settings.json</code>. Claude Code then asks <code>tollgate login</code> \
             for the key, which signs you in through this page when the key changes:</p>\n\
             <pre>{helper}</pre>\n\
             <h3>Or: the key in the settings file</h3>\n<pre>{inline}</pre>\n</section>\n",
            value = escape(&value),
            helper = escape(&helper),
            inline = escape(&inline),
        ));
    } else {
        body.push_str(&format!(
            "<h2>Claude Code</h2>\n<p>Put this in <code>~/.claude/settings.json</code>; \
             <code>tollgate login</code> fetches your key after you sign in (its value is shown \
             here only right after it is created or rotated):</p>\n<pre>{}</pre>\n",
            escape(&helper)
        ));
    }
    let csrf = escape(&session.csrf_token);
    body.push_str(&format!(
        "<h2>Actions</h2>\n\
         <form method=\"post\" action=\"/auth/me/rotate-key\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <button>Rotate my key</button></form>\n\
         <form method=\"post\" action=\"/auth/logout\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <button>Sign out</button></form>\n\
         <p class=\"muted\">Rotating replaces your key at once: the old value stops working \
         and this page shows the new one.</p>"
    ));
    let mut resp = html(StatusCode::OK, "Your Tollgate account", &body);
    if reveal.is_some() || cookie(&headers, REVEAL_COOKIE).is_some() {
        add_cookie(
            &mut resp,
            set_cookie(REVEAL_COOKIE, "", "/auth/me", 0, cfg.secure_cookies()),
        );
    }
    resp
}

/// `POST /auth/me/rotate-key`.
pub(crate) async fn rotate_key(
    State(cp): State<ControlPlane>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let SignedIn { session, user } =
        match signed_in_form(&cp, &headers, &fields, "/auth/me", "Cannot rotate the key").await {
            Ok(s) => s,
            Err(page) => return page,
        };
    let event = AuditEvent::new(
        format!("user:{}@{}", user.user_name, peer.0),
        "user.rotate_key",
        format!("users/{}", user.id),
        &super::web::audit_source(&peer, &headers),
    )
    .with("via", json!("auth/me"));
    let key = |user_id, generation| cp.personal_key(user_id, generation);
    let (user, version) = match cp.store().rotate_personal_key(user.id, &key, &event).await {
        Ok(r) => r,
        Err(crate::store::StoreError::NotFound(m)) => {
            return error_page(StatusCode::NOT_FOUND, "Cannot rotate the key", &m);
        }
        Err(e) => return internal(e),
    };
    if let Err(e) = cp.committed(&event, version).await {
        tracing::warn!(error = %e, "publishing the rotated key failed; the replicas pick it up");
    }
    let mut resp = see_other("/auth/me");
    add_cookie(
        &mut resp,
        reveal_cookie(&cp, &user, &session.id_sha256, secure_cookies(&cp).await),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_claims_of_a_compact_jwt() {
        use base64::Engine as _;
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b("{\"alg\":\"RS256\"}"),
            b("{\"sub\":\"a\",\"groups\":[\"g\"]}")
        );
        assert_eq!(jwt_claims(&jwt).unwrap()["groups"][0], "g");
        assert!(jwt_claims("nodots").is_none());
        assert!(jwt_claims("a.!!!.c").is_none());
    }
}
