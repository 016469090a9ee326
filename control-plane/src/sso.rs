//! Single sign-on with OpenID Connect: its configuration (command-line flags, or the `sso`
//! setting the admin API writes), and the pure rules of the login flow: which claims make the
//! user's [`Profile`], which `return_to` targets are allowed, and the sealed cookies that carry
//! a login's state and the one-time display of a personal key between requests. The HTTP side
//! (`/auth/*`, `/api/sso`) is in the private `api` module.
//!
//! # Where the configuration comes from
//! * Flags (`--oidc-issuer`, `--oidc-client-id`, ...): when `--oidc-issuer` is given, the flags
//!   are the whole OIDC configuration and `PUT /api/sso` answers 409 naming the flag.
//! * Otherwise the `sso` setting (`PUT /api/sso`), its client secret sealed with the master key
//!   (AES-256-GCM, associated data naming the setting) or kept as an `env.NAME` reference that
//!   is resolved when a login needs it.
//!
//! `--public-url` and `--session-hours` also win over the setting's `public_url` and
//! `session_hours`.
//!
//! # Cookies
//! Both cookies below are sealed with the master key ([`crate::crypto::SecretBox`]), so any
//! control-plane replica can read them and nobody else can read or forge them; both carry an
//! expiry checked on opening.
//! * `tollgate_login_<state prefix>` (Path=/auth, 10 minutes): the state, nonce, PKCE verifier
//!   and `return_to` of one login in progress. Named after its state, so two logins in two tabs
//!   do not overwrite each other.
//! * `tollgate_reveal` (Path=/auth/me, 10 minutes): "show this session's user the personal key
//!   of generation N once", set by the login that created the key or by a rotation; the page
//!   clears it when it shows the key. It holds no key: the value is derived again.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::{CryptoError, SecretBox};
use crate::identity::Profile;
use crate::validate::ValidationError;

/// The identity setting holding the SSO configuration.
pub const SSO_SETTING: &str = "sso";
/// Scopes asked for when none are configured.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
pub const DEFAULT_USER_NAME_CLAIM: &str = "email";
/// Lifetime of a browser session when none is configured.
pub const DEFAULT_SESSION_HOURS: u32 = 12;
/// Longest configurable session.
pub const MAX_SESSION_HOURS: u32 = 24 * 30;
/// Lifetime of a login in progress (its cookie) and of the one-time key display.
pub const LOGIN_TTL_SECONDS: i64 = 600;
/// Longest accepted `return_to`.
const MAX_RETURN_TO: usize = 2048;

/// The OIDC and session settings given on the command line. With `issuer` set they are the
/// whole OIDC configuration; `public_url` and `session_hours` apply in any case.
#[derive(Clone, Default, PartialEq)]
pub struct SsoFlags {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub groups_claim: Option<String>,
    pub user_name_claim: Option<String>,
    pub public_url: Option<String>,
    pub session_hours: Option<u32>,
}

impl fmt::Debug for SsoFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoFlags")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("user_name_claim", &self.user_name_claim)
            .field("public_url", &self.public_url)
            .field("session_hours", &self.session_hours)
            .finish()
    }
}

impl SsoFlags {
    /// Checks the flags together; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let named = |flag: &str, e: ValidationError| format!("{flag}: {}", e.message);
        if self.issuer.is_none() {
            for (flag, set) in [
                ("--oidc-client-id", self.client_id.is_some()),
                ("--oidc-client-secret", self.client_secret.is_some()),
                ("--oidc-scopes", self.scopes.is_some()),
                ("--oidc-groups-claim", self.groups_claim.is_some()),
                ("--oidc-user-name-claim", self.user_name_claim.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{flag} needs --oidc-issuer (TOLLGATE_OIDC_ISSUER): the OIDC flags \
                         configure single sign-on together, or use PUT /api/sso"
                    ));
                }
            }
        }
        if let Some(issuer) = &self.issuer {
            validate_issuer("issuer", issuer).map_err(|e| named("--oidc-issuer", e))?;
            match &self.client_id {
                Some(id) if !id.trim().is_empty() => {}
                _ => return Err("--oidc-issuer needs --oidc-client-id".to_owned()),
            }
            if self.public_url.is_none() {
                return Err(
                    "--oidc-issuer needs --public-url: the redirect URI registered at the \
                     identity provider is <public-url>/auth/callback"
                        .to_owned(),
                );
            }
            if let Some(s) = &self.client_secret
                && s.trim().is_empty()
            {
                return Err("--oidc-client-secret must not be empty".to_owned());
            }
            validate_scopes("scopes", self.scopes.as_deref().unwrap_or_default())
                .map_err(|e| named("--oidc-scopes", e))?;
            for (flag, claim) in [
                ("--oidc-groups-claim", &self.groups_claim),
                ("--oidc-user-name-claim", &self.user_name_claim),
            ] {
                if let Some(c) = claim {
                    validate_claim_name("claim", c).map_err(|e| named(flag, e))?;
                }
            }
        }
        if let Some(url) = &self.public_url {
            validate_public_url("public_url", url).map_err(|e| named("--public-url", e))?;
        }
        if let Some(h) = self.session_hours {
            validate_session_hours("session_hours", h).map_err(|e| named("--session-hours", e))?;
        }
        Ok(())
    }

    /// Whether the flags configure OIDC (then the `sso` setting is not used).
    pub fn configures_oidc(&self) -> bool {
        self.issuer.is_some()
    }
}

/// The `sso` setting as stored. `client_secret` is column text: `env:NAME` or `enc:v1:...`
/// ([`crate::model::SealedSecret::to_column`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredSso {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub user_name_claim: String,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub session_hours: Option<u32>,
}

/// Associated data of the sealed client secret in the `sso` setting.
pub(crate) const CLIENT_SECRET_AAD: &[u8] = b"tollgate/settings/sso/client_secret";

/// Which claims of the ID token make the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimNames {
    /// Claim holding the group names (a dotted path such as `realm_access.roles` is followed
    /// when no claim has that exact name).
    pub groups: String,
    /// Claim holding the user name; falls back to `preferred_username`, then `sub`.
    pub user_name: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            groups: DEFAULT_GROUPS_CLAIM.to_owned(),
            user_name: DEFAULT_USER_NAME_CLAIM.to_owned(),
        }
    }
}

/// The effective configuration of a login.
#[derive(Clone)]
pub(crate) struct SsoConfig {
    pub issuer: String,
    pub client_id: String,
    /// Resolved (opened, or read from the environment).
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub claims: ClaimNames,
    /// Without a trailing slash.
    pub public_url: String,
    pub session_hours: u32,
}

impl SsoConfig {
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.public_url)
    }

    /// Whether cookies get `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

fn is_loopback_host(host: &openidconnect::url::Host<&str>) -> bool {
    match host {
        openidconnect::url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        openidconnect::url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        openidconnect::url::Host::Ipv6(ip) => IpAddr::V6(*ip).to_canonical().is_loopback(),
    }
}

/// An issuer URL: `https://`, or `http://` on a loopback host (a local test identity
/// provider); no credentials, query or fragment.
pub(crate) fn validate_issuer(field: &str, raw: &str) -> Result<String, ValidationError> {
    let raw = raw.trim();
    let url = openidconnect::url::Url::parse(raw)
        .map_err(|e| invalid(field, format!("{raw:?} is not a URL: {e}")))?;
    let host = url
        .host()
        .ok_or_else(|| invalid(field, "the issuer URL has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        _ => {
            return Err(invalid(
                field,
                "the issuer must be an https:// URL (http:// only for a loopback address, in tests)",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            field,
            "the issuer URL must not contain credentials",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            field,
            "the issuer URL must not have a query or fragment",
        ));
    }
    Ok(raw.to_owned())
}

/// The gateway's external base URL: `http(s)://host[:port]`, no path (the login routes are at
/// `/auth/*` of that origin). Returned without a trailing slash.
pub(crate) fn validate_public_url(field: &str, raw: &str) -> Result<String, ValidationError> {
    let raw = raw.trim();
    let url = openidconnect::url::Url::parse(raw)
        .map_err(|e| invalid(field, format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            field,
            "must be an http:// or https:// URL such as https://gateway.example.com",
        ));
    }
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid(
            field,
            "must be an origin only (scheme, host, optional port), without path, query or credentials",
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

pub(crate) fn validate_scopes(field: &str, scopes: &[String]) -> Result<(), ValidationError> {
    for s in scopes {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return Err(invalid(field, format!("invalid scope {s:?}")));
        }
    }
    Ok(())
}

pub(crate) fn validate_claim_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(invalid(field, format!("invalid claim name {name:?}")));
    }
    Ok(())
}

pub(crate) fn validate_session_hours(field: &str, hours: u32) -> Result<(), ValidationError> {
    if !(1..=MAX_SESSION_HOURS).contains(&hours) {
        return Err(invalid(
            field,
            format!("must be between 1 and {MAX_SESSION_HOURS} hours"),
        ));
    }
    Ok(())
}

/// The scopes of a login: the configured ones (split on spaces and commas) with `openid`
/// first, or [`DEFAULT_SCOPES`].
pub fn normalize_scopes(scopes: &[String]) -> Vec<String> {
    let mut out = vec!["openid".to_owned()];
    let given: Vec<&str> = scopes
        .iter()
        .flat_map(|s| s.split([' ', ',']))
        .filter(|s| !s.is_empty())
        .collect();
    let given = if given.is_empty() {
        DEFAULT_SCOPES.to_vec()
    } else {
        given
    };
    for s in given {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// Where a login may send the browser back to: a path on this origin (`/auth/me`,
/// `/auth/cli/approve?user_code=...`). Refused: absolute URLs, scheme-relative `//host`,
/// backslashes (browsers read `/\host` as `//host`), control characters, over-long values.
/// `None` or empty gives `/auth/me`.
pub fn safe_return_to(raw: Option<&str>) -> Result<String, &'static str> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok("/auth/me".to_owned());
    };
    if raw.len() > MAX_RETURN_TO {
        return Err("return_to is too long");
    }
    if !raw.starts_with('/') || raw.starts_with("//") {
        return Err("return_to must be a path on this gateway, such as /auth/me");
    }
    if raw
        .chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err("return_to contains characters a path cannot have");
    }
    Ok(raw.to_owned())
}

/// Follows `name` in the claims: the claim of that exact name, else a dotted path
/// (`realm_access.roles`).
fn claim<'a>(claims: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    name.split('.')
        .try_fold(claims, |v, part| v.get(part))
        .filter(|v| !v.is_null())
}

fn non_empty_str(v: Option<&serde_json::Value>) -> Option<String> {
    v.and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What the ID token's claims say about the user (the token already verified).
///
/// * `sub` is required; the profile is keyed by (issuer, sub).
/// * `email` is used only unless `email_verified` is `false`.
/// * The user name is the configured claim (default `email`), else `preferred_username`, else
///   `sub`.
/// * Groups: the configured claim as a list of strings (a single string is one group). An
///   absent claim means no groups, except Microsoft Entra ID's group overage (`_claim_names`
///   names the groups claim: more than 200 groups were left out), where the stored groups are
///   kept (`groups: None`) and a warning is logged.
pub fn profile_from_claims(
    issuer: &str,
    claims: &serde_json::Value,
    names: &ClaimNames,
) -> Result<Profile, String> {
    let subject = non_empty_str(claims.get("sub")).ok_or("the ID token has no `sub` claim")?;
    let email_verified = claims.get("email_verified").and_then(|v| {
        v.as_bool()
            .or_else(|| v.as_str().map(|s| s.eq_ignore_ascii_case("true")))
    });
    let email = non_empty_str(claims.get("email")).filter(|_| email_verified != Some(false));
    let display_name = non_empty_str(claims.get("name")).or_else(|| {
        let given = non_empty_str(claims.get("given_name"));
        let family = non_empty_str(claims.get("family_name"));
        match (given, family) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.or(f),
        }
    });
    let configured = if names.user_name == "email" {
        email.clone()
    } else {
        non_empty_str(claim(claims, &names.user_name))
    };
    let user_name = configured
        .or_else(|| non_empty_str(claims.get("preferred_username")))
        .unwrap_or_else(|| subject.clone());
    let groups = match claim(claims, &names.groups) {
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|g| g.as_str())
                .map(str::to_owned)
                .collect(),
        ),
        Some(serde_json::Value::String(g)) => Some(vec![g.clone()]),
        Some(_) => return Err(format!("the `{}` claim is not a list", names.groups)),
        None if claims
            .get("_claim_names")
            .and_then(|c| c.get(&names.groups))
            .is_some() =>
        {
            tracing::warn!(
                claim = %names.groups,
                "the identity provider left the groups out of the ID token (group overage); \
                 keeping the user's stored groups"
            );
            None
        }
        None => Some(Vec::new()),
    };
    Ok(Profile {
        issuer: Some(issuer.to_owned()),
        subject: Some(subject),
        user_name,
        email,
        display_name,
        groups,
    })
}

/// A login in progress, carried by the sealed `tollgate_login_*` cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    /// The issuer the login started with (a configuration change in between fails it).
    pub issuer: String,
    /// Unix seconds.
    pub expires_at: i64,
}

const LOGIN_AAD: &[u8] = b"tollgate/auth/login-state/v1";
const REVEAL_AAD: &[u8] = b"tollgate/auth/reveal-key/v1";

/// Cookie name prefix of a login in progress.
pub(crate) const LOGIN_COOKIE_PREFIX: &str = "tollgate_login_";
/// The one-time key display cookie.
pub(crate) const REVEAL_COOKIE: &str = "tollgate_reveal";

/// The cookie name of the login whose state is `state` (its first 16 characters; states are
/// base64url, which cookie names may hold).
pub(crate) fn login_cookie_name(state: &str) -> Option<String> {
    let prefix: String = state.chars().take(16).collect();
    (prefix.len() == 16
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| format!("{LOGIN_COOKIE_PREFIX}{prefix}"))
}

fn seal_json<T: Serialize>(
    secrets: &SecretBox,
    value: &T,
    aad: &[u8],
) -> Result<String, CryptoError> {
    let json = serde_json::to_string(value).map_err(|_| CryptoError::Seal)?;
    secrets.seal(&json, aad)
}

fn open_json<T: for<'de> Deserialize<'de>>(
    secrets: &SecretBox,
    sealed: &str,
    aad: &[u8],
) -> Option<T> {
    let json = secrets.open(sealed, aad).ok()?;
    serde_json::from_str(&json).ok()
}

impl LoginState {
    pub fn seal(&self, secrets: &SecretBox) -> Result<String, CryptoError> {
        seal_json(secrets, self, LOGIN_AAD)
    }

    /// The login sealed in `text`, if it opens and has not expired.
    pub fn open(secrets: &SecretBox, text: &str, now: OffsetDateTime) -> Option<LoginState> {
        open_json::<LoginState>(secrets, text, LOGIN_AAD)
            .filter(|s| s.expires_at > now.unix_timestamp())
    }
}

/// "Show the personal key of `generation` to `user_id` once, in the session whose digest is
/// `session_sha256` (hex)", carried by the sealed `tollgate_reveal` cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reveal {
    pub user_id: Uuid,
    pub generation: u64,
    pub session_sha256: String,
    pub expires_at: i64,
}

impl Reveal {
    pub fn seal(&self, secrets: &SecretBox) -> Result<String, CryptoError> {
        seal_json(secrets, self, REVEAL_AAD)
    }

    pub fn open(secrets: &SecretBox, text: &str, now: OffsetDateTime) -> Option<Reveal> {
        open_json::<Reveal>(secrets, text, REVEAL_AAD)
            .filter(|r| r.expires_at > now.unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_make_the_profile() {
        let names = ClaimNames::default();
        let p = profile_from_claims(
            "https://idp.example",
            &json!({"sub": "u1", "email": "Ann@Example.com", "name": "Ann A",
                    "groups": ["eng", 7, "ml"], "preferred_username": "ann"}),
            &names,
        )
        .unwrap();
        assert_eq!(p.subject.as_deref(), Some("u1"));
        assert_eq!(p.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(p.user_name, "Ann@Example.com");
        assert_eq!(p.email.as_deref(), Some("Ann@Example.com"));
        assert_eq!(p.display_name.as_deref(), Some("Ann A"));
        assert_eq!(p.groups, Some(vec!["eng".to_owned(), "ml".to_owned()]));

        // Fallbacks: preferred_username, then sub; unverified email is not used.
        let p = profile_from_claims(
            "i",
            &json!({"sub": "u2", "email": "x@y", "email_verified": false,
                    "preferred_username": "bob", "given_name": "Bob", "family_name": "B"}),
            &names,
        )
        .unwrap();
        assert_eq!(p.user_name, "bob");
        assert_eq!(p.email, None);
        assert_eq!(p.display_name.as_deref(), Some("Bob B"));
        assert_eq!(p.groups, Some(vec![]), "no groups claim: no groups");
        let p = profile_from_claims("i", &json!({"sub": "u3"}), &names).unwrap();
        assert_eq!(p.user_name, "u3");
        assert!(profile_from_claims("i", &json!({"email": "a@b"}), &names).is_err());
        assert!(profile_from_claims("i", &json!({"sub": ""}), &names).is_err());

        // A configured claim, a nested groups path, a single-string group.
        let names = ClaimNames {
            groups: "realm_access.roles".into(),
            user_name: "upn".into(),
        };
        let p = profile_from_claims(
            "i",
            &json!({"sub": "u4", "upn": "c@corp", "realm_access": {"roles": ["admins"]}}),
            &names,
        )
        .unwrap();
        assert_eq!(p.user_name, "c@corp");
        assert_eq!(p.groups, Some(vec!["admins".to_owned()]));
        let names = ClaimNames {
            groups: "role".into(),
            ..ClaimNames::default()
        };
        let p = profile_from_claims("i", &json!({"sub": "u5", "role": "ops"}), &names).unwrap();
        assert_eq!(p.groups, Some(vec!["ops".to_owned()]));
        assert!(profile_from_claims("i", &json!({"sub": "u5", "role": {"a": 1}}), &names).is_err());

        // Entra's group overage keeps the stored groups.
        let p = profile_from_claims(
            "i",
            &json!({"sub": "u6", "_claim_names": {"groups": "src1"},
                    "_claim_sources": {"src1": {"endpoint": "https://graph"}}}),
            &ClaimNames::default(),
        )
        .unwrap();
        assert_eq!(p.groups, None);
    }

    #[test]
    fn return_to_must_stay_on_this_origin() {
        assert_eq!(safe_return_to(None).unwrap(), "/auth/me");
        assert_eq!(safe_return_to(Some("")).unwrap(), "/auth/me");
        for ok in ["/auth/me", "/auth/cli/approve?user_code=ABCD-EFGH", "/"] {
            assert_eq!(safe_return_to(Some(ok)).unwrap(), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "auth/me",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
            "/a b",
            "/\tevil",
        ] {
            assert!(safe_return_to(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(safe_return_to(Some(&format!("/{}", "a".repeat(3000)))).is_err());
    }

    #[test]
    fn sealed_cookies_open_only_unaltered_unexpired_and_for_their_purpose() {
        let secrets = SecretBox::new(&[7; 32]);
        let now = OffsetDateTime::now_utc();
        let login = LoginState {
            state: "s".repeat(43),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/auth/me".into(),
            issuer: "https://idp".into(),
            expires_at: now.unix_timestamp() + 600,
        };
        let sealed = login.seal(&secrets).unwrap();
        assert!(!sealed.contains("pkce") && !sealed.contains("/auth/me"));
        assert_eq!(
            LoginState::open(&secrets, &sealed, now),
            Some(login.clone())
        );
        // Expired.
        assert_eq!(
            LoginState::open(&secrets, &sealed, now + time::Duration::seconds(601)),
            None
        );
        // Another master key, an altered byte, another purpose.
        assert_eq!(
            LoginState::open(&SecretBox::new(&[8; 32]), &sealed, now),
            None
        );
        let mut altered = sealed.clone().into_bytes();
        let i = altered.len() - 5;
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            LoginState::open(&secrets, &String::from_utf8(altered).unwrap(), now),
            None
        );
        assert_eq!(Reveal::open(&secrets, &sealed, now), None);
        let reveal = Reveal {
            user_id: Uuid::from_u128(1),
            generation: 2,
            session_sha256: "ab".into(),
            expires_at: now.unix_timestamp() + 10,
        };
        let sealed = reveal.seal(&secrets).unwrap();
        assert_eq!(Reveal::open(&secrets, &sealed, now), Some(reveal));
        assert_eq!(LoginState::open(&secrets, &sealed, now), None);
        assert_eq!(Reveal::open(&secrets, "garbage", now), None);
    }

    #[test]
    fn login_cookie_names_come_from_the_state() {
        assert_eq!(
            login_cookie_name("abcdefghijklmnop-rest").as_deref(),
            Some("tollgate_login_abcdefghijklmnop")
        );
        assert_eq!(login_cookie_name("short"), None);
        assert_eq!(login_cookie_name("abcdefghijklmn;="), None);
    }

    #[test]
    fn urls_and_flags_are_checked() {
        assert!(validate_issuer("i", "https://login.example.com/tenant/v2.0").is_ok());
        assert!(validate_issuer("i", "http://127.0.0.1:9090").is_ok());
        assert!(validate_issuer("i", "http://localhost:9090").is_ok());
        assert!(validate_issuer("i", "http://[::1]:9090").is_ok());
        for bad in [
            "http://idp.example.com",
            "ftp://x",
            "https://u:p@idp",
            "https://idp?x=1",
            "not a url",
        ] {
            assert!(validate_issuer("i", bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_public_url("p", "https://gw.example.com/").unwrap(),
            "https://gw.example.com"
        );
        assert!(validate_public_url("p", "https://gw.example.com/prefix").is_err());
        assert!(validate_public_url("p", "gw.example.com").is_err());

        assert_eq!(normalize_scopes(&[]), vec!["openid", "email", "profile"]);
        assert_eq!(
            normalize_scopes(&["email groups".into(), "openid".into()]),
            vec!["openid", "email", "groups"]
        );

        let ok = SsoFlags {
            issuer: Some("https://idp.example".into()),
            client_id: Some("gw".into()),
            public_url: Some("https://gw.example".into()),
            ..SsoFlags::default()
        };
        assert!(ok.validate().is_ok());
        let err = SsoFlags {
            public_url: None,
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("--public-url"), "{err}");
        let err = SsoFlags {
            client_id: Some("x".into()),
            ..SsoFlags::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.contains("--oidc-client-id needs --oidc-issuer"),
            "{err}"
        );
        let err = SsoFlags {
            session_hours: Some(0),
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("--session-hours"), "{err}");
        let debug = format!(
            "{:?}",
            SsoFlags {
                client_secret: Some("hunter2".into()),
                ..ok
            }
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
