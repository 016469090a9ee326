//! Google Cloud credentials for Vertex AI: a service account's key file exchanged for OAuth 2.0
//! access tokens with a signed JWT (the JWT-bearer grant, RFC 7523), as Google's client
//! libraries do.
//!
//! * The assertion: header `{"alg":"RS256","typ":"JWT","kid":<private_key_id>}`, claims `iss`
//!   (the service account's `client_email`), `scope` (`cloud-platform`), `aud` (the key file's
//!   `token_uri`), `iat`, `exp` one hour later; signed with the key file's RSA key.
//! * It is posted to the key file's `token_uri`, or to the key's `token_uri` override (private
//!   endpoints, test doubles), through the provider's pooled client (so `HTTPS_PROXY` and the
//!   connect timeout apply), and answered with `{access_token, expires_in}`.
//! * Tokens are cached per provider key and refreshed five minutes before they expire (or at
//!   half their life when that is shorter). One refresh runs at a time: requests that find the
//!   token due while it is still valid keep using it while one of them refreshes; requests that
//!   find it expired wait for that one refresh instead of each starting their own.
//! * The key file is resolved at every use (`env.NAME` picks up a rotated key); a cached token
//!   is used only with the key file it was obtained with.
//!
//! Nothing here logs or returns the key file or a token: errors name what failed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tollgate_proto::config::v1 as pb;
use tollgate_proto::env::EnvAllowlist;

use crate::error::ProxyError;
use crate::upstream::{self, HttpClient};
use crate::value::{EnvError, Value};

/// The grant type of a JWT assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime asked of an assertion (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// Refresh this long before a token expires (at most half its life).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Largest token-endpoint answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// Why no access token could be produced.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The key file is not a usable service-account key (which part is named, never its value).
    #[error("the service account key file {0}")]
    KeyFile(&'static str),
    /// The token endpoint refused the assertion (`error` is the OAuth error code it gave).
    #[error("the token endpoint refused the service account ({status}{})", .error.as_deref().map(|e| format!(", {e}")).unwrap_or_default())]
    Refused { status: u16, error: Option<String> },
    /// The token endpoint answered 200 with something that is not a token.
    #[error("the token endpoint's answer holds no access token")]
    Malformed,
    /// The token endpoint could not be reached in time: classified like an upstream failure
    /// (retryable on another key).
    #[error("{}", .0.message)]
    Transport(ProxyError),
}

impl TokenError {
    /// What the client of the gateway is told (the log gets [`TokenError`]'s text too).
    pub fn client_message(&self) -> String {
        match self {
            TokenError::Env(_) => {
                "a credential of this provider key is not available on this data plane".into()
            }
            TokenError::KeyFile(_) => {
                "this provider key's service account key is not usable".into()
            }
            TokenError::Refused { error, .. } => format!(
                "Google refused this provider key's service account{}",
                error
                    .as_deref()
                    .map(|e| format!(" ({})", crate::logsafe::log_safe(e)))
                    .unwrap_or_default()
            ),
            TokenError::Malformed => "Google's token endpoint sent no access token".into(),
            TokenError::Transport(e) => e.message.to_string(),
        }
    }
}

/// The fields of a service account's key file the exchange needs.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: Option<String>,
}

/// A cached access token.
struct Token {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
    /// The key file it was obtained with.
    key_file: Arc<str>,
}

/// Authentication of one Vertex AI provider key, with its token cache.
pub struct VertexAuth {
    pub project: Value,
    pub region: Value,
    key_file: Value,
    token_uri: Option<Arc<str>>,
    cache: ArcSwapOption<Token>,
    refresh: tokio::sync::Mutex<()>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for VertexAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VertexAuth")
            .field("project", &self.project)
            .field("region", &self.region)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl VertexAuth {
    /// Builds the authentication of a snapshot's Vertex key; the error names what is missing.
    pub fn from_proto(k: &pb::ProviderKey, env: &EnvAllowlist) -> Result<VertexAuth, &'static str> {
        let cfg = k.vertex.clone().unwrap_or_default();
        let project =
            Value::from_proto(cfg.project_id.as_ref(), env).ok_or("missing project_id")?;
        let region = Value::from_proto(cfg.region.as_ref(), env).ok_or("missing region")?;
        let key_file = Value::from_proto(cfg.auth_credentials.as_ref(), env)
            .ok_or("missing auth_credentials (the service account key file)")?;
        let mut digest = Sha256::new();
        for v in [&project, &region, &key_file] {
            digest.update(format!("{v:?}|"));
            if let Value::Literal(s) = v {
                digest.update(s.as_bytes());
            }
            digest.update(b"\0");
        }
        digest.update(cfg.token_uri.as_bytes());
        Ok(VertexAuth {
            project,
            region,
            key_file,
            token_uri: Some(cfg.token_uri.trim())
                .filter(|u| !u.is_empty())
                .map(Arc::from),
            cache: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
            fingerprint: digest.finalize().into(),
        })
    }

    /// Identifies the configuration: equal fingerprints, interchangeable auth (the token cache
    /// is carried over config changes that keep it).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Every configured value with the admin API's name of its field.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        [
            ("vertex_key_config.project_id", &self.project),
            ("vertex_key_config.region", &self.region),
            ("vertex_key_config.auth_credentials", &self.key_file),
        ]
        .into_iter()
    }

    /// Drops the cached token (after Vertex refused it).
    pub fn invalidate(&self) {
        self.cache.store(None);
    }

    /// `Bearer <access token>` for a request now: the cached token, or a new one.
    pub async fn bearer(
        &self,
        client: &HttpClient,
        provider: &str,
        timeout: Duration,
    ) -> Result<HeaderValue, TokenError> {
        let key_file = self.key_file.resolve()?;
        let now = Instant::now();
        let current = self.cache.load_full().filter(|t| t.key_file == key_file);
        if let Some(t) = &current {
            if now < t.refresh_at {
                return Ok(t.header.clone());
            }
            if now < t.expires_at {
                // Due but valid: one request refreshes, the others keep using it meanwhile.
                let Ok(_guard) = self.refresh.try_lock() else {
                    return Ok(t.header.clone());
                };
                return match self.fetch(client, provider, timeout, &key_file).await {
                    Ok(header) => Ok(header),
                    Err(e) => {
                        tracing::warn!(provider, error = %e, "could not refresh a Vertex AI access token; using the current one until it expires");
                        Ok(t.header.clone())
                    }
                };
            }
        }
        let _guard = self.refresh.lock().await;
        // Another request may have refreshed it while this one waited.
        if let Some(t) = self.cache.load_full()
            && t.key_file == key_file
            && Instant::now() < t.refresh_at
        {
            return Ok(t.header.clone());
        }
        self.fetch(client, provider, timeout, &key_file).await
    }

    async fn fetch(
        &self,
        client: &HttpClient,
        provider: &str,
        timeout: Duration,
        key_file: &Arc<str>,
    ) -> Result<HeaderValue, TokenError> {
        let started = Instant::now();
        let file: KeyFile =
            serde_json::from_str(key_file).map_err(|_| TokenError::KeyFile("is not JSON"))?;
        if file.kind.as_deref() != Some("service_account") {
            return Err(TokenError::KeyFile("is not a service account key"));
        }
        let email = file
            .client_email
            .ok_or(TokenError::KeyFile("has no client_email"))?;
        let pem = file
            .private_key
            .ok_or(TokenError::KeyFile("has no private_key"))?;
        let audience = file
            .token_uri
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned());
        let endpoint = self.token_uri.as_deref().unwrap_or(&audience);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = Claims {
            iss: &email,
            scope: tollgate_protocol::vertex::SCOPE,
            aud: &audience,
            iat,
            exp: iat + ASSERTION_LIFETIME,
        };
        let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jwt_header.kid = file.private_key_id;
        let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| TokenError::KeyFile("has a private_key that is not an RSA key in PEM"))?;
        let assertion = jsonwebtoken::encode(&jwt_header, &claims, &signing_key)
            .map_err(|_| TokenError::KeyFile("has a private_key that cannot sign"))?;
        let form = format!("grant_type={}&assertion={assertion}", encode(JWT_BEARER));
        let uri = upstream::parse_url(endpoint).map_err(TokenError::Transport)?;
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let req = upstream::post(uri, headers, &HeaderMap::new(), Bytes::from(form));
        let resp = client
            .send(provider, req, timeout)
            .await
            .map_err(TokenError::Transport)?;
        let status = resp.status();
        let body = upstream::read_body(
            provider,
            resp,
            timeout.saturating_sub(started.elapsed()),
            MAX_TOKEN_ANSWER,
        )
        .await
        .map_err(TokenError::Transport)?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenRefusal>(&body)
                .ok()
                .and_then(|r| r.error)
                .filter(|e| e.len() <= 64);
            return Err(TokenError::Refused {
                status: status.as_u16(),
                error,
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        let token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Malformed)?;
        let mut header =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| TokenError::Malformed)?;
        header.set_sensitive(true);
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let now = Instant::now();
        self.cache.store(Some(Arc::new(Token {
            header: header.clone(),
            refresh_at: now + life.saturating_sub(REFRESH_MARGIN.min(life / 2)),
            expires_at: now + life,
            key_file: Arc::clone(key_file),
        })));
        tracing::debug!(
            provider,
            expires_in_s = life.as_secs(),
            "obtained a Vertex AI access token"
        );
        Ok(header)
    }
}

/// `application/x-www-form-urlencoded` escaping of a value.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
