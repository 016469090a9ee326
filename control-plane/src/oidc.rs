//! The OIDC relying party's runtime: the HTTP client the `openidconnect` crate calls through
//! (the workspace's reqwest; redirects are never followed, answers are capped), the provider
//! metadata and JWKS cache, and the effective SSO configuration ([`crate::sso`]: flags, else
//! the `sso` setting).
//!
//! The cache keeps one issuer's discovery document and key set for [`METADATA_TTL`]. An ID
//! token signed with a key it does not know (the provider rotated its keys) makes the caller
//! ask again with `refresh`, which refetches unless the cached copy is younger than
//! [`MIN_REFETCH`] (so forged `kid`s cannot make the gateway hammer the provider).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse, IssuerUrl};

use crate::ControlPlane;
use crate::model::SealedSecret;
use crate::sso::{
    CLIENT_SECRET_AAD, ClaimNames, DEFAULT_GROUPS_CLAIM, DEFAULT_SESSION_HOURS,
    DEFAULT_USER_NAME_CLAIM, SSO_SETTING, SsoConfig, SsoFlags, StoredSso, normalize_scopes,
};

/// Provider metadata with the RP-initiated logout endpoint.
pub(crate) type Metadata = openidconnect::ProviderMetadataWithLogout;

/// How long discovery and the key set are reused.
pub(crate) const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Youngest cached copy a `refresh` replaces.
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(30);
/// Largest answer read from the identity provider.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An error talking to the identity provider (no secrets in it: URLs and statuses only).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

/// The client `openidconnect` sends its requests with.
#[derive(Clone)]
pub(crate) struct HttpClient(reqwest::Client);

impl HttpClient {
    fn new() -> Result<Self, String> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map(HttpClient)
            .map_err(|e| format!("cannot build the OIDC HTTP client: {e}"))
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let mut resp = self
                .0
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(format!("request to {url} failed: {e}")))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| HttpError(format!("reading the answer of {url} failed: {e}")))?
            {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError(format!(
                        "the answer of {url} is larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

struct Cached {
    issuer: String,
    metadata: Arc<Metadata>,
    fetched: Instant,
}

/// The SSO state of a control plane: the flags, the HTTP client, the metadata cache.
pub(crate) struct SsoRuntime {
    flags: RwLock<SsoFlags>,
    http: HttpClient,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl SsoRuntime {
    pub(crate) fn new() -> Result<Self, String> {
        Ok(SsoRuntime {
            flags: RwLock::new(SsoFlags::default()),
            http: HttpClient::new()?,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn flags(&self) -> SsoFlags {
        self.flags.read().map(|f| f.clone()).unwrap_or_default()
    }

    pub(crate) fn set_flags(&self, flags: SsoFlags) {
        if let Ok(mut f) = self.flags.write() {
            *f = flags;
        }
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The issuer's discovery document and key set, from the cache unless it is older than
    /// [`METADATA_TTL`], is another issuer's, or `refresh` asks for a new copy (honoured when
    /// the cached one is older than [`MIN_REFETCH`]).
    pub(crate) async fn metadata(
        &self,
        issuer: &str,
        refresh: bool,
    ) -> Result<Arc<Metadata>, String> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.issuer == issuer
        {
            let age = c.fetched.elapsed();
            if age < METADATA_TTL && (!refresh || age < MIN_REFETCH) {
                return Ok(c.metadata.clone());
            }
        }
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| format!("invalid issuer URL {issuer:?}: {e}"))?;
        let metadata = Metadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| format!("OIDC discovery of {issuer} failed: {}", error_chain(&e)))?;
        let metadata = Arc::new(metadata);
        tracing::info!(
            issuer,
            keys = metadata.jwks().keys().len(),
            "fetched the identity provider's metadata and signing keys"
        );
        *cache = Some(Cached {
            issuer: issuer.to_owned(),
            metadata: metadata.clone(),
            fetched: Instant::now(),
        });
        Ok(metadata)
    }
}

/// Why the effective SSO configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// Neither flags nor the setting configure OIDC.
    #[error("single sign-on is not configured")]
    NotConfigured,
    /// Configured, but unusable (missing public URL, secret that cannot be read, ...).
    #[error("{0}")]
    Broken(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The stored `sso` setting, if any.
pub(crate) async fn stored(cp: &ControlPlane) -> Result<Option<StoredSso>, ConfigError> {
    match cp.store().setting(SSO_SETTING).await? {
        None => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| ConfigError::Broken(format!("the stored `sso` setting is invalid: {e}"))),
    }
}

/// The effective configuration: the flags when they configure OIDC, else the setting; with
/// the client secret opened or read from the environment.
pub(crate) async fn effective(cp: &ControlPlane) -> Result<SsoConfig, ConfigError> {
    let flags = cp.sso().flags();
    let (issuer, client_id, client_secret, scopes, groups, user_name, public_url, hours) =
        if flags.configures_oidc() {
            (
                flags.issuer.clone().unwrap_or_default(),
                flags.client_id.clone().unwrap_or_default(),
                flags.client_secret.clone(),
                flags.scopes.clone().unwrap_or_default(),
                flags.groups_claim.clone(),
                flags.user_name_claim.clone(),
                flags.public_url.clone(),
                flags.session_hours,
            )
        } else {
            let Some(s) = stored(cp).await? else {
                return Err(ConfigError::NotConfigured);
            };
            let secret = match &s.client_secret {
                None => None,
                Some(column) => Some(open_secret(cp, column)?),
            };
            (
                s.issuer,
                s.client_id,
                secret,
                s.scopes,
                Some(s.groups_claim),
                Some(s.user_name_claim),
                flags.public_url.clone().or(s.public_url),
                flags.session_hours.or(s.session_hours),
            )
        };
    let public_url = public_url.ok_or_else(|| {
        ConfigError::Broken(
            "single sign-on needs the gateway's public URL (--public-url or `public_url` in \
             PUT /api/sso)"
                .to_owned(),
        )
    })?;
    Ok(SsoConfig {
        issuer,
        client_id,
        client_secret,
        scopes: normalize_scopes(&scopes),
        claims: ClaimNames {
            groups: groups.unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_owned()),
            user_name: user_name.unwrap_or_else(|| DEFAULT_USER_NAME_CLAIM.to_owned()),
        },
        public_url: public_url.trim_end_matches('/').to_owned(),
        session_hours: hours.unwrap_or(DEFAULT_SESSION_HOURS),
    })
}

/// The stored client secret's plaintext: opened, or read from the environment variable it
/// names (which must be on the env allowlist).
fn open_secret(cp: &ControlPlane, column: &str) -> Result<String, ConfigError> {
    match SealedSecret::from_column(column) {
        Some(SealedSecret::Encrypted(sealed)) => cp
            .secrets()
            .open(&sealed, CLIENT_SECRET_AAD)
            .map_err(|e| ConfigError::Broken(format!("cannot open the OIDC client secret: {e}"))),
        Some(SealedSecret::Env(name)) => {
            if !cp.env_allow().allows(&name) {
                return Err(ConfigError::Broken(format!(
                    "the OIDC client secret names env.{name}, which the env allowlist refuses"
                )));
            }
            std::env::var(&name).map_err(|_| {
                ConfigError::Broken(format!(
                    "the OIDC client secret names env.{name}, which is not set"
                ))
            })
        }
        None => Err(ConfigError::Broken(
            "the stored OIDC client secret is malformed".to_owned(),
        )),
    }
}

/// An error and its sources, `: `-separated (the `openidconnect` errors put the useful part in
/// their sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
