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

use crate::value::{MissingEnv, Value};

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
    MissingEnv(#[from] MissingEnv),
    #[error("the AWS default credential chain found no credentials: {0}")]
    DefaultChain(String),
    #[error("STS AssumeRole failed: {0}")]
    AssumeRole(String),
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
    /// SHA-256 of the credential configuration this was built from.
    fingerprint: [u8; 32],
}

impl BedrockAuth {
    /// Builds the authentication of a snapshot's provider key; the error names what is missing.
    pub fn from_proto(k: &pb::ProviderKey) -> Result<BedrockAuth, &'static str> {
        let cfg = k.bedrock.clone().unwrap_or_default();
        let api_key = Value::from_proto(k.value.as_ref());
        let access_key = Value::from_proto(cfg.access_key.as_ref());
        let secret_key = Value::from_proto(cfg.secret_key.as_ref());
        let source = match (api_key, access_key, secret_key) {
            (Some(v), _, _) => CredentialSource::ApiKey(v),
            (None, Some(access_key), Some(secret_key)) => CredentialSource::Static {
                access_key,
                secret_key,
                session_token: Value::from_proto(cfg.session_token.as_ref()),
            },
            (None, None, None) => CredentialSource::DefaultChain,
            _ => return Err("access_key and secret_key must be given together"),
        };
        let region = Value::from_proto(cfg.region.as_ref());
        let assume_role = Value::from_proto(cfg.role_arn.as_ref()).map(|role_arn| AssumeRole {
            role_arn,
            external_id: Value::from_proto(cfg.external_id.as_ref()),
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
            fingerprint: fingerprint(k),
        })
    }

    /// Identifies the credential configuration: equal fingerprints, interchangeable auth.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The region to sign for and to build the default endpoint with.
    pub fn region(&self) -> Result<Arc<str>, MissingEnv> {
        match &self.region {
            Some(v) => v.resolve(),
            None => Value::Env("AWS_REGION".into())
                .resolve()
                .or_else(|_| Value::Env("AWS_DEFAULT_REGION".into()).resolve())
                .map_err(|_| {
                    MissingEnv(
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
        let token = match session_token {
            Some(t) => Some(t.resolve()?.to_string()),
            None => None,
        };
        Ok(Credentials::new(
            access_key.resolve()?.to_string(),
            secret_key.resolve()?.to_string(),
            token,
            None,
            "tollgate",
        ))
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
            .map_err(|e| CredentialError::AssumeRole(error_chain(&e)))?;
        let c = out
            .credentials()
            .ok_or_else(|| CredentialError::AssumeRole("STS returned no credentials".into()))?;
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

/// Signs a Bedrock request with SigV4 and returns the headers to add (`authorization`,
/// `x-amz-date` and, with temporary credentials, `x-amz-security-token`).
///
/// `url` must be exactly the encoded URL that is sent, and `headers` exactly the headers to sign
/// (they are sent unchanged); `host` is derived from the URL. The canonical URI is the wire path
/// encoded once more, as SigV4 requires for every service but S3.
pub fn sign_request(
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, SignError> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
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
            &creds,
            "us-east-1",
            time,
            "POST",
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
            &[("content-type", "application/json")],
            br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
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
}
