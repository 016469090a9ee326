//! Bedrock authentication: SigV4 signing with the `aws-sigv4` crate, and the credentials behind it
//! (static or `env.NAME` keys, the AWS default chain, an STS-assumed role, or a Bedrock API key).
//!
//! Credentials from the default chain and from STS are cached and refreshed a few minutes before
//! they expire, one refresh at a time; static credentials are resolved at every use so that
//! `env.NAME` references pick up rotated values.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use tokio::sync::Mutex;
use tollgate_proto::config::v1 as pb;

use tollgate_proto::env::EnvAllowlist;

use crate::value::{EnvError, Value};

/// The SigV4 service name of bedrock-runtime (not `bedrock-runtime`).
pub const SERVICE: &str = "bedrock";
/// Default STS role session name.
pub const DEFAULT_SESSION_NAME: &str = "tollgate";
/// Refresh cached credentials this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Cache credentials that carry no expiry (default chain with static env keys) this long.
const NO_EXPIRY_TTL: Duration = Duration::from_secs(300);
/// Requested lifetime of an assumed-role session.
const ASSUME_ROLE_DURATION_SECS: i32 = 3600;

/// Why credentials could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("the AWS default credential chain found no credentials: {0}")]
    DefaultChain(String),
    /// `code`: the AWS error code STS answered with (`AccessDenied`, ...), when it answered.
    #[error("STS AssumeRole failed: {detail}")]
    AssumeRole {
        code: Option<String>,
        detail: String,
    },
}

impl CredentialError {
    /// What a client may be told: which kind of failure or the AWS error code, never an SDK's
    /// error text (it can carry ARNs, account ids, endpoints and OS errors of the gateway's host)
    /// or the name of an environment variable (how the gateway is configured is the operators'
    /// business). The log has both, see [`CredentialError::detail`].
    pub fn client_message(&self) -> String {
        match self {
            CredentialError::Env(_) => {
                "a credential of this provider key is not available on this data plane".into()
            }
            CredentialError::DefaultChain(_) => {
                "the AWS default credential chain found no credentials".into()
            }
            CredentialError::AssumeRole {
                code: Some(code), ..
            } => format!("STS AssumeRole was refused ({code})"),
            CredentialError::AssumeRole { code: None, .. } => "STS AssumeRole failed".into(),
        }
    }

    /// The internal text behind [`CredentialError::client_message`], for the log.
    pub fn detail(&self) -> String {
        match self {
            CredentialError::Env(e) => e.to_string(),
            CredentialError::DefaultChain(d) | CredentialError::AssumeRole { detail: d, .. } => {
                d.clone()
            }
        }
    }
}

/// SigV4 signing failed (a malformed URL or header; never a credential problem).
#[derive(Debug, thiserror::Error)]
#[error("SigV4 signing failed: {0}")]
pub struct SignError(String);

/// Where a Bedrock key's credentials come from.
#[derive(Debug)]
pub enum CredentialSource {
    /// A Bedrock API key, sent as `Authorization: Bearer` instead of SigV4.
    ApiKey(Value),
    Static {
        access_key: Value,
        secret_key: Value,
        session_token: Option<Value>,
    },
    /// Environment, shared config files, web identity, ECS, IMDS.
    DefaultChain,
}

#[derive(Debug)]
pub struct AssumeRole {
    pub role_arn: Value,
    pub external_id: Option<Value>,
    pub session_name: String,
}

/// What to put on an upstream request.
#[derive(Debug, Clone)]
pub enum BedrockCredential {
    Bearer(Arc<str>),
    SigV4(Credentials),
}

/// Static credentials and the values they were built from.
struct ResolvedStatic {
    access_key: Arc<str>,
    secret_key: Arc<str>,
    token: Option<Arc<str>>,
    credentials: Credentials,
}

impl std::fmt::Debug for ResolvedStatic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolvedStatic(<redacted>)")
    }
}

#[derive(Debug)]
struct Cached {
    credentials: Credentials,
    refresh_at: SystemTime,
}

/// Authentication of one Bedrock provider key.
#[derive(Debug)]
pub struct BedrockAuth {
    /// The configured region; without one, `AWS_REGION` / `AWS_DEFAULT_REGION` at use time.
    pub region: Option<Value>,
    /// `arn:aws:bedrock:REGION:ACCOUNT`: alias targets that are not ARNs are resources below it.
    pub arn_prefix: Option<Arc<str>>,
    pub source: CredentialSource,
    pub assume_role: Option<AssumeRole>,
    cache: ArcSwapOption<Cached>,
    refresh: Mutex<()>,
    /// The last derived SigV4 signing key (valid for a day).
    pub signing_key: SigningKeyCache,
    /// Static credentials as last resolved, reused while the resolved values stay the same.
    last_static: ArcSwapOption<ResolvedStatic>,
    /// SHA-256 of the credential configuration this was built from.
    fingerprint: [u8; 32],
}

impl BedrockAuth {
    /// Builds the authentication of a snapshot's provider key; the error names what is missing.
    /// `env.NAME` references that `env` does not allow become [`Value::Refused`] (see
    /// [`BedrockAuth::values`]).
    pub fn from_proto(
        k: &pb::ProviderKey,
        env: &EnvAllowlist,
    ) -> Result<BedrockAuth, &'static str> {
        let cfg = k.bedrock.clone().unwrap_or_default();
        let api_key = Value::from_proto(k.value.as_ref(), env);
        let access_key = Value::from_proto(cfg.access_key.as_ref(), env);
        let secret_key = Value::from_proto(cfg.secret_key.as_ref(), env);
        let source = match (api_key, access_key, secret_key) {
            (Some(v), _, _) => CredentialSource::ApiKey(v),
            (None, Some(access_key), Some(secret_key)) => CredentialSource::Static {
                access_key,
                secret_key,
                session_token: Value::from_proto(cfg.session_token.as_ref(), env),
            },
            (None, None, None) => CredentialSource::DefaultChain,
            _ => return Err("access_key and secret_key must be given together"),
        };
        let region = Value::from_proto(cfg.region.as_ref(), env);
        let assume_role =
            Value::from_proto(cfg.role_arn.as_ref(), env).map(|role_arn| AssumeRole {
                role_arn,
                external_id: Value::from_proto(cfg.external_id.as_ref(), env),
                session_name: if cfg.session_name.is_empty() {
                    DEFAULT_SESSION_NAME.to_owned()
                } else {
                    cfg.session_name.clone()
                },
            });
        if assume_role.is_some() && matches!(source, CredentialSource::ApiKey(_)) {
            return Err("a Bedrock API key cannot be combined with role_arn");
        }
        Ok(BedrockAuth {
            region,
            arn_prefix: Some(cfg.arn_prefix.trim_end_matches(':'))
                .filter(|a| !a.is_empty())
                .map(Arc::from),
            source,
            assume_role,
            cache: ArcSwapOption::empty(),
            refresh: Mutex::new(()),
            signing_key: SigningKeyCache::default(),
            last_static: ArcSwapOption::empty(),
            fingerprint: fingerprint(k),
        })
    }

    /// Identifies the credential configuration: equal fingerprints, interchangeable auth.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Every configured value with the admin API's name of its field, e.g. to report references
    /// the env allowlist refused.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        let (value, access_key, secret_key, session_token) = match &self.source {
            CredentialSource::ApiKey(v) => (Some(v), None, None, None),
            CredentialSource::Static {
                access_key,
                secret_key,
                session_token,
            } => (
                None,
                Some(access_key),
                Some(secret_key),
                session_token.as_ref(),
            ),
            CredentialSource::DefaultChain => (None, None, None, None),
        };
        let role = self.assume_role.as_ref();
        [
            ("value", value),
            ("bedrock_key_config.access_key", access_key),
            ("bedrock_key_config.secret_key", secret_key),
            ("bedrock_key_config.session_token", session_token),
            ("bedrock_key_config.region", self.region.as_ref()),
            ("bedrock_key_config.role_arn", role.map(|r| &r.role_arn)),
            (
                "bedrock_key_config.external_id",
                role.and_then(|r| r.external_id.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(field, v)| v.map(|v| (field, v)))
    }

    /// The region to sign for and to build the default endpoint with. Without a configured one,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`: fixed names, not chosen by the configuration (and
    /// within the default env allowlist, which cannot be narrowed).
    pub fn region(&self) -> Result<Arc<str>, EnvError> {
        match &self.region {
            Some(v) => v.resolve(),
            None => Value::Env("AWS_REGION".into())
                .resolve()
                .or_else(|_| Value::Env("AWS_DEFAULT_REGION".into()).resolve())
                .map_err(|_| {
                    EnvError::Missing(
                        "AWS_REGION (or AWS_DEFAULT_REGION; no region is configured on the key)"
                            .into(),
                    )
                }),
        }
    }

    /// The credential to use now. Cheap when cached.
    pub async fn credential(&self) -> Result<BedrockCredential, CredentialError> {
        match (&self.source, &self.assume_role) {
            (CredentialSource::ApiKey(v), _) => Ok(BedrockCredential::Bearer(v.resolve()?)),
            (CredentialSource::Static { .. }, None) => {
                Ok(BedrockCredential::SigV4(self.static_credentials()?))
            }
            _ => self.cached().await.map(BedrockCredential::SigV4),
        }
    }

    /// Whether credentials come from the refreshing cache (default chain or assumed role).
    pub fn is_cached(&self) -> bool {
        !matches!(
            (&self.source, &self.assume_role),
            (CredentialSource::ApiKey(_), _) | (CredentialSource::Static { .. }, None)
        )
    }

    /// Drops cached credentials (after the upstream rejected them as expired or invalid).
    pub fn invalidate(&self) {
        self.cache.store(None);
    }

    fn static_credentials(&self) -> Result<Credentials, CredentialError> {
        let CredentialSource::Static {
            access_key,
            secret_key,
            session_token,
        } = &self.source
        else {
            return Err(CredentialError::DefaultChain("not static".into()));
        };
        // Resolved at every use (`env.NAME` picks up the current value); the `Credentials` built
        // from them are reused while the values stay the same.
        let access_key = access_key.resolve()?;
        let secret_key = secret_key.resolve()?;
        let token = match session_token {
            Some(t) => Some(t.resolve()?),
            None => None,
        };
        if let Some(last) = self.last_static.load().as_ref()
            && last.access_key == access_key
            && last.secret_key == secret_key
            && last.token == token
        {
            return Ok(last.credentials.clone());
        }
        let credentials = Credentials::new(
            access_key.to_string(),
            secret_key.to_string(),
            token.as_deref().map(str::to_owned),
            None,
            "tollgate",
        );
        self.last_static.store(Some(Arc::new(ResolvedStatic {
            access_key,
            secret_key,
            token,
            credentials: credentials.clone(),
        })));
        Ok(credentials)
    }

    async fn cached(&self) -> Result<Credentials, CredentialError> {
        if let Some(c) = self.cache.load().as_ref()
            && SystemTime::now() < c.refresh_at
        {
            return Ok(c.credentials.clone());
        }
        // One refresh at a time; the others wait and reuse its result.
        let _guard = self.refresh.lock().await;
        if let Some(c) = self.cache.load().as_ref()
            && SystemTime::now() < c.refresh_at
        {
            return Ok(c.credentials.clone());
        }
        let credentials = self.fetch().await?;
        let refresh_at = match credentials.expiry() {
            Some(expiry) => expiry
                .checked_sub(REFRESH_BEFORE_EXPIRY)
                .unwrap_or(expiry)
                .max(SystemTime::now() + Duration::from_secs(10)),
            None => SystemTime::now() + NO_EXPIRY_TTL,
        };
        self.cache.store(Some(Arc::new(Cached {
            credentials: credentials.clone(),
            refresh_at,
        })));
        Ok(credentials)
    }

    async fn fetch(&self) -> Result<Credentials, CredentialError> {
        let region = aws_config::Region::new(self.region()?.to_string());
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
        if let CredentialSource::Static { .. } = self.source {
            loader = loader.credentials_provider(self.static_credentials()?);
        }
        let sdk_config = loader.load().await;
        let Some(role) = &self.assume_role else {
            let provider = sdk_config.credentials_provider().ok_or_else(|| {
                CredentialError::DefaultChain("no credential provider configured".into())
            })?;
            return provider
                .provide_credentials()
                .await
                .map_err(|e| CredentialError::DefaultChain(error_chain(&e)));
        };
        let sts = aws_sdk_sts::Client::new(&sdk_config);
        let external_id = match &role.external_id {
            Some(v) => Some(v.resolve()?.to_string()),
            None => None,
        };
        let out = sts
            .assume_role()
            .role_arn(role.role_arn.resolve()?.to_string())
            .role_session_name(&role.session_name)
            .set_external_id(external_id)
            .duration_seconds(ASSUME_ROLE_DURATION_SECS)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_sts::error::ProvideErrorMetadata;
                // Only a well-formed code is shown to clients.
                let code = e.code().filter(|c| {
                    !c.is_empty()
                        && c.len() <= 64
                        && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
                });
                CredentialError::AssumeRole {
                    code: code.map(str::to_owned),
                    detail: error_chain(&e),
                }
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| CredentialError::AssumeRole {
                code: None,
                detail: "STS returned no credentials".into(),
            })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        tracing::info!(
            role_session = %role.session_name,
            expires_in_s = expiry
                .and_then(|e| e.duration_since(SystemTime::now()).ok())
                .map(|d| d.as_secs()),
            "assumed AWS role for Bedrock"
        );
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "sts",
        ))
    }
}

fn fingerprint(k: &pb::ProviderKey) -> [u8; 32] {
    use prost::Message;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if let Some(v) = &k.value {
        h.update(v.encode_to_vec());
    }
    h.update([0xff]);
    if let Some(b) = &k.bedrock {
        h.update(b.encode_to_vec());
    }
    h.finalize().into()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A request to sign: `url` must be exactly the encoded URL that is sent, and `headers` exactly
/// the headers to sign (they are sent unchanged); `host` is derived from the URL.
#[derive(Debug, Clone, Copy)]
pub struct ToSign<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub time: SystemTime,
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Signs a Bedrock request with SigV4 and returns the headers to add (`authorization`,
/// `x-amz-date` and, with temporary credentials, `x-amz-security-token`). The canonical URI is
/// the wire path encoded once more, as SigV4 requires for every service but S3.
///
/// The requests Tollgate sends (a POST to a plain path, lowercase header names with clean values)
/// are signed by `sign_fast`: the same canonical request, built in one buffer, and the signing
/// key taken from `cache` when the secret, day and region have not changed (deriving it costs
/// four HMACs). Anything else goes through the `aws-sigv4` crate's general signer
/// ([`sign_request_general`]). A test holds the two to byte-identical output.
pub fn sign_request(
    cache: &SigningKeyCache,
    req: &ToSign<'_>,
) -> Result<Vec<(&'static str, String)>, SignError> {
    match sign_fast(cache, req) {
        Some(signed) => Ok(signed),
        None => sign_request_general(req),
    }
}

/// The `aws-sigv4` crate's signer, for any request.
pub fn sign_request_general(req: &ToSign<'_>) -> Result<Vec<(&'static str, String)>, SignError> {
    let identity = req.credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(req.region)
        .name(SERVICE)
        .time(req.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.url,
        req.headers.iter().copied(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_owned()))
        .collect())
}

/// The last derived signing key of one provider key. A key is valid for one secret, UTC day,
/// region and service; any change derives a new one.
#[derive(Default)]
pub struct SigningKeyCache(ArcSwapOption<CachedSigningKey>);

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyCache(..)")
    }
}

struct CachedSigningKey {
    secret: Box<str>,
    date: [u8; 8],
    region: Box<str>,
    key: [u8; 32],
}

impl SigningKeyCache {
    fn key(&self, secret: &str, date: &[u8; 8], region: &str, time: SystemTime) -> [u8; 32] {
        if let Some(k) = self.0.load().as_ref()
            && k.date == *date
            && &*k.region == region
            && &*k.secret == secret
        {
            return k.key;
        }
        let derived = v4::generate_signing_key(secret, time, region, SERVICE);
        let mut key = [0u8; 32];
        key.copy_from_slice(derived.as_ref());
        self.0.store(Some(Arc::new(CachedSigningKey {
            secret: secret.into(),
            date: *date,
            region: region.into(),
            key,
        })));
        key
    }
}

/// The SigV4 signature of a request of the shape Tollgate sends, or `None` when the request is
/// outside that shape (query string, dot or empty path segments, header names that are not
/// lowercase, values needing whitespace normalisation, `host` or `x-amz-*` given by the caller,
/// repeated names): those go to the general signer.
fn sign_fast(cache: &SigningKeyCache, req: &ToSign<'_>) -> Option<Vec<(&'static str, String)>> {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;

    let ToSign {
        credentials,
        region,
        time,
        method,
        url,
        headers,
        body,
    } = *req;

    let uri: http::Uri = url.parse().ok()?;
    if uri.query().is_some() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let path = uri.path();
    if !path.starts_with('/')
        || path[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    let host = uri.host()?;
    let default_port = matches!(
        (uri.scheme_str(), uri.port_u16()),
        (Some("http"), Some(80)) | (Some("https"), Some(443))
    );
    // Caller headers must sort before `host` and be plain: lowercase names, values without
    // leading, trailing or doubled spaces. Tollgate signs `accept` and `content-type`.
    let mut prev = "";
    for (name, value) in headers {
        let plain_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit());
        let plain_value = value.bytes().all(|b| (0x20..0x7f).contains(&b))
            && !value.starts_with(' ')
            && !value.ends_with(' ')
            && !value.contains("  ");
        if !plain_name || !plain_value || *name <= prev || *name >= "host" {
            return None;
        }
        prev = name;
    }

    let utc = time::OffsetDateTime::from(time);
    let mut amz_date = String::with_capacity(16);
    let _ = write!(
        amz_date,
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    );
    let date: [u8; 8] = amz_date.as_bytes()[..8].try_into().ok()?;
    let date_str = &amz_date[..8];
    let token = credentials.session_token();

    // The canonical request, hashed as it is written.
    let mut canonical = Vec::with_capacity(512);
    canonical.extend_from_slice(method.as_bytes());
    canonical.push(b'\n');
    // The wire path encoded once more: everything but unreserved characters and `/`.
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            canonical.push(b);
        } else {
            let _ = write!(ByteWriter(&mut canonical), "%{b:02X}");
        }
    }
    canonical.extend_from_slice(b"\n\n");
    let mut signed_headers = String::with_capacity(80);
    for (name, value) in headers {
        canonical.extend_from_slice(name.as_bytes());
        canonical.push(b':');
        canonical.extend_from_slice(value.as_bytes());
        canonical.push(b'\n');
        signed_headers.push_str(name);
        signed_headers.push(';');
    }
    canonical.extend_from_slice(b"host:");
    canonical.extend_from_slice(host.as_bytes());
    if let (Some(port), false) = (uri.port(), default_port) {
        canonical.push(b':');
        canonical.extend_from_slice(port.as_str().as_bytes());
    }
    canonical.extend_from_slice(b"\nx-amz-date:");
    canonical.extend_from_slice(amz_date.as_bytes());
    canonical.push(b'\n');
    signed_headers.push_str("host;x-amz-date");
    if let Some(token) = token {
        if token.starts_with(' ') || token.ends_with(' ') || token.contains("  ") {
            return None;
        }
        canonical.extend_from_slice(b"x-amz-security-token:");
        canonical.extend_from_slice(token.as_bytes());
        canonical.push(b'\n');
        signed_headers.push_str(";x-amz-security-token");
    }
    canonical.push(b'\n');
    canonical.extend_from_slice(signed_headers.as_bytes());
    canonical.push(b'\n');
    canonical.extend_from_slice(hex::encode(Sha256::digest(body)).as_bytes());

    let scope = format!("{date_str}/{region}/{SERVICE}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(&canonical))
    );
    let key = cache.key(credentials.secret_access_key(), &date, region, time);
    let signature = v4::calculate_signature(key, string_to_sign.as_bytes());
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id()
    );
    let mut out = Vec::with_capacity(3);
    out.push(("x-amz-date", amz_date));
    if let Some(token) = token {
        out.push(("x-amz-security-token", token.to_owned()));
    }
    out.push(("authorization", authorization));
    Some(out)
}

/// `write!` into a byte buffer.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_documented_vector() {
        // protocols.md Appendix A1, row 1 (aws-sigv4 and botocore agree).
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let headers = sign_request(
            &SigningKeyCache::default(),
            &ToSign {
                credentials: &creds,
                region: "us-east-1",
                time,
                method: "POST",
                url: "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
                headers: &[("content-type", "application/json")],
                body: br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
            },
        )
        .expect("signs");
        let auth = headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=75cefbb2917d9b7183b4f40c26d37d52decdf95ccfed3696d776dd135fc48acb"
            )
        );
    }

    fn sorted(mut h: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        h.sort();
        h
    }

    /// The fast signer and the `aws-sigv4` crate agree byte for byte on every request shape
    /// Tollgate sends, and one cache follows changes of secret, day and region.
    #[test]
    fn fast_signer_matches_aws_sigv4() {
        let cache = SigningKeyCache::default();
        let urls = [
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/global.anthropic.claude-sonnet-4-6/invoke",
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
            "https://bedrock-runtime.us-west-2.amazonaws.com:443/model/anthropic.claude-3-haiku/count-tokens",
            "http://127.0.0.1:41234/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/invoke",
            "http://localhost/model/a~b_c.d-e/invoke",
            "http://localhost:80/model/x%20y%25z%2B/invoke",
            "https://vpce-0123.bedrock-runtime.us-east-1.vpce.amazonaws.com/model/m/invoke",
            // Raw sub-delimiters in the path are legal on the wire and encoded for signing.
            "http://localhost/model/us.anthropic.claude:0@a+b!$&'()*,;=/invoke",
        ];
        let creds = [
            Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "t",
            ),
            Credentials::new("AKIDOTHER", "another/secret+key", None, None, "t"),
            Credentials::new(
                "ASIATEMP",
                "temporary-secret",
                Some("IQoJb3JpZ2luX2VjEJr//////////token=".to_owned()),
                None,
                "t",
            ),
        ];
        let headers: &[&[(&str, &str)]] = &[
            &[
                ("accept", "application/json"),
                ("content-type", "application/json"),
            ],
            &[("content-type", "application/json")],
            &[],
        ];
        let bodies: [&[u8]; 3] = [b"", br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#, &[0xff; 3000]];
        let times = [
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_996_799), // 23:59:59
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_996_800), // the next day
        ];
        let mut checked = 0;
        for url in urls {
            for c in &creds {
                for region in ["us-east-1", "eu-west-3"] {
                    for h in headers {
                        for body in bodies {
                            for time in times {
                                let req = ToSign {
                                    credentials: c,
                                    region,
                                    time,
                                    method: "POST",
                                    url,
                                    headers: h,
                                    body,
                                };
                                let fast = sign_fast(&cache, &req)
                                    .unwrap_or_else(|| panic!("fast path refused {url}"));
                                let general = sign_request_general(&req).expect("general signer");
                                assert_eq!(sorted(fast), sorted(general), "{url} {region} {h:?}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 8 * 3 * 2 * 3 * 3 * 3);
    }

    /// Requests outside the fast path's shape are signed by `aws-sigv4` (same result either way).
    #[test]
    fn unusual_requests_fall_back_to_the_general_signer() {
        let cache = SigningKeyCache::default();
        let c = Credentials::new("AKID", "secret", None, None, "t");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("https://h.example/model/m/invoke?x=1", &[]),
            ("https://h.example/model/./invoke", &[]),
            ("https://h.example/model//invoke", &[]),
            ("https://h.example/model/m/invoke", &[("Content-Type", "a")]),
            (
                "https://h.example/model/m/invoke",
                &[("content-type", " a  b ")],
            ),
            ("https://h.example/model/m/invoke", &[("x-extra", "a")]),
            (
                "https://h.example/model/m/invoke",
                &[("content-type", "a"), ("accept", "b")],
            ),
        ];
        for (url, h) in cases {
            let req = ToSign {
                credentials: &c,
                region: "us-east-1",
                time,
                method: "POST",
                url,
                headers: h,
                body: b"{}",
            };
            assert!(
                sign_fast(&cache, &req).is_none(),
                "{url} {h:?} should not take the fast path"
            );
            let via_public = sign_request(&cache, &req).expect("signs");
            let general = sign_request_general(&req).expect("signs");
            assert_eq!(sorted(via_public), sorted(general));
        }
    }
}
