//! Domain records as the store keeps them, and the value types they are made of.
//!
//! Secrets only exist here in sealed form ([`SealedSecret`]): either an `env.NAME` reference or
//! AES-256-GCM ciphertext. Plaintext secrets exist only briefly in the admin API (between parsing
//! a request and sealing) and in the snapshot built for the data plane. The one exception is
//! [`NetworkRecord::legacy_extra_headers`]: header values that a version before migration 0003
//! stored in plaintext, sealed when a control plane starts.
//!
//! | secret | sealed as | associated data |
//! |---|---|---|
//! | provider key `value`, `access_key`, `secret_key`, `session_token`, `external_id`, `auth_credentials` | [`SealedSecret::seal`] | `tollgate/provider_key/{key id}/{field}` |
//! | provider `network_config.extra_headers` values | [`SealedSecret::seal_header`] | `tollgate/provider/{provider}/extra_header/{header name}` |

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::{CryptoError, SecretBox};
use crate::governance::{KeyGovernance, Limits};

/// Placeholder shown instead of a secret literal in API responses. In an update, a secret field
/// with this value keeps the stored secret.
pub const REDACTED: &str = "<redacted>";
/// Prefix of an environment-variable reference in the admin API (`env.AWS_ACCESS_KEY_ID`).
pub const ENV_PREFIX: &str = "env.";

/// Upstream protocol family of a provider: `bedrock` (AWS Bedrock InvokeModel, SigV4),
/// `anthropic` (the Anthropic Messages API), `vertex` (Google Vertex AI, Anthropic models, OAuth2
/// from a service account key), `openai` (an OpenAI Chat Completions API: OpenAI itself or any
/// compatible server at the provider's `base_url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Bedrock,
    Anthropic,
    Vertex,
    OpenAi,
}

impl ProviderKind {
    /// Every kind, in the order of the proto enum.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Bedrock,
        ProviderKind::Anthropic,
        ProviderKind::Vertex,
        ProviderKind::OpenAi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Vertex => "vertex",
            ProviderKind::OpenAi => "openai",
        }
    }

    /// The kind named by `s` (`bedrock`, `anthropic`, `vertex` or `openai`), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a provider reaches its upstream. Used as-is in the admin API and stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Overrides the provider's default endpoint; must be an `http://` or `https://` URL. For
    /// `openai` providers the default is `https://api.openai.com/v1` (applied by the data plane);
    /// set it to reach any OpenAI-compatible server (`http://127.0.0.1:11434/v1` for Ollama,
    /// vLLM, LM Studio, another gateway), whose keys may then omit `value`.
    #[serde(default)]
    #[schema(example = "https://bedrock-runtime.us-east-1.amazonaws.com")]
    pub base_url: Option<String>,
    /// Total timeout of a non-streaming call (its response head and body), in seconds (default
    /// 600). It is also the request's deadline: no retry or fallback starts after it.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub default_request_timeout_in_seconds: Option<u32>,
    /// Connect timeout (TCP, and the tunnel through an egress proxy), in seconds (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub connect_timeout_in_seconds: Option<u32>,
    /// Time allowed from sending a streaming call to its response head, in seconds (default:
    /// 120, or `default_request_timeout_in_seconds` when that is smaller). A non-streaming call's
    /// head comes with its whole answer: the total timeout bounds it.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub response_header_timeout_in_seconds: Option<u32>,
    /// Longest silence allowed between two chunks of a streaming response, in seconds (default
    /// 600).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub stream_idle_timeout_in_seconds: Option<u32>,
    /// Retries of a failed attempt (429, 529, 5xx, no connection, timeout) after a backoff, once
    /// every key of the provider that serves the model has failed (default 0: the request moves
    /// on to its fallbacks at once). Another key is always tried first, without waiting.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    pub max_retries: Option<u32>,
    /// First backoff before a retry, in milliseconds (default 500); it doubles with every retry
    /// up to `retry_backoff_max`, with ±20 % jitter. An upstream `retry-after` that asks for
    /// longer is honoured.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60000)]
    pub retry_backoff_initial: Option<u32>,
    /// Longest backoff before a retry, in milliseconds (default 5000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60000)]
    pub retry_backoff_max: Option<u32>,
    /// Extra headers sent upstream with every request. Values are secrets: each is a literal or
    /// `env.NAME` in requests, and shows as `"<redacted>"` (literals) or `env.NAME` in
    /// responses. In an update, `"<redacted>"` keeps the stored value; headers left out are
    /// removed.
    #[serde(default)]
    #[schema(example = json!({"x-proxy-token": "env.ANTHROPIC_PROXY_TOKEN"}))]
    pub extra_headers: BTreeMap<String, String>,
}

/// How a provider reaches its upstream, as stored: the admin API's [`NetworkConfig`] with its
/// header values sealed. The non-secret settings (and [`NetworkRecord::legacy_extra_headers`])
/// are the JSON column `network_config`; the sealed values the column `extra_header_secrets`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRecord {
    /// Every setting but the header values: its `extra_headers` is empty.
    pub settings: NetworkConfig,
    /// Header name -> a literal sealed with [`SealedSecret::seal_header`], or an env reference.
    pub extra_headers: BTreeMap<String, SealedSecret>,
    /// Plaintext values written by a version before migration 0003 (inside `network_config`),
    /// not sealed yet. A control plane seals them when it starts
    /// ([`Store::seal_legacy_extra_headers`](crate::store::Store::seal_legacy_extra_headers));
    /// until then (a replica of the older version writing during a rolling upgrade) they are
    /// served as literals and shown as `"<redacted>"`. A name here overrides the same name in
    /// `extra_headers`. Empty for every row this version wrote.
    pub legacy_extra_headers: BTreeMap<String, String>,
}

impl NetworkRecord {
    /// What the admin API shows: settings as stored, header values as `"<redacted>"` or
    /// `env.NAME`.
    pub fn display(&self) -> NetworkConfig {
        let mut extra_headers: BTreeMap<String, String> = self
            .extra_headers
            .iter()
            .map(|(name, v)| (name.clone(), v.display()))
            .collect();
        for name in self.legacy_extra_headers.keys() {
            extra_headers.insert(name.clone(), REDACTED.to_owned());
        }
        NetworkConfig {
            extra_headers,
            ..self.settings.clone()
        }
    }

    /// The non-secret settings of `nc` (its header values are not taken).
    pub fn settings_of(nc: &NetworkConfig) -> Self {
        NetworkRecord {
            settings: NetworkConfig {
                extra_headers: BTreeMap::new(),
                ..nc.clone()
            },
            extra_headers: BTreeMap::new(),
            legacy_extra_headers: BTreeMap::new(),
        }
    }
}

/// A non-secret value that may be given literally or as an `env.NAME` reference (`region`,
/// `role_arn`, Vertex `project_id`). Stored as JSON `{"literal": ".."}` or `{"env": "NAME"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    Literal(String),
    Env(String),
}

impl ValueSource {
    /// The admin-API spelling: the literal, or `env.NAME`.
    pub fn display(&self) -> String {
        match self {
            ValueSource::Literal(v) => v.clone(),
            ValueSource::Env(name) => format!("{ENV_PREFIX}{name}"),
        }
    }
}

/// A secret as stored: an environment reference (kept as written, resolved by the data plane) or
/// a literal sealed with [`SecretBox`]. The column text is `env:NAME` or `enc:v1:<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub enum SealedSecret {
    Env(String),
    Encrypted(String),
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealedSecret::Env(name) => write!(f, "Env({name})"),
            SealedSecret::Encrypted(_) => f.write_str("Encrypted(..)"),
        }
    }
}

/// Names of the secret fields of a provider key; part of the encryption associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    Value,
    AccessKey,
    SecretKey,
    SessionToken,
    ExternalId,
    /// A Vertex AI key's service account key file.
    AuthCredentials,
}

impl SecretField {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretField::Value => "value",
            SecretField::AccessKey => "access_key",
            SecretField::SecretKey => "secret_key",
            SecretField::SessionToken => "session_token",
            SecretField::ExternalId => "external_id",
            SecretField::AuthCredentials => "auth_credentials",
        }
    }
}

fn secret_aad(key_id: Uuid, field: SecretField) -> Vec<u8> {
    format!("tollgate/provider_key/{key_id}/{}", field.as_str()).into_bytes()
}

/// Provider names and header names cannot contain `/`, so the text is unambiguous.
fn header_aad(provider: &str, header: &str) -> Vec<u8> {
    format!("tollgate/provider/{provider}/extra_header/{header}").into_bytes()
}

impl SealedSecret {
    /// Seals a literal secret of provider key `key_id`.
    pub fn seal(
        secrets: &SecretBox,
        key_id: Uuid,
        field: SecretField,
        plaintext: &str,
    ) -> Result<Self, CryptoError> {
        secrets
            .seal(plaintext, &secret_aad(key_id, field))
            .map(SealedSecret::Encrypted)
    }

    /// The plaintext of a sealed literal, or the reference of an env secret.
    pub fn open(
        &self,
        secrets: &SecretBox,
        key_id: Uuid,
        field: SecretField,
    ) -> Result<ValueSource, CryptoError> {
        match self {
            SealedSecret::Env(name) => Ok(ValueSource::Env(name.clone())),
            SealedSecret::Encrypted(sealed) => secrets
                .open(sealed, &secret_aad(key_id, field))
                .map(ValueSource::Literal),
        }
    }

    /// Seals a literal value of extra header `header` of provider `provider`.
    pub fn seal_header(
        secrets: &SecretBox,
        provider: &str,
        header: &str,
        plaintext: &str,
    ) -> Result<Self, CryptoError> {
        secrets
            .seal(plaintext, &header_aad(provider, header))
            .map(SealedSecret::Encrypted)
    }

    /// The plaintext of a sealed header value, or the reference of an env one.
    pub fn open_header(
        &self,
        secrets: &SecretBox,
        provider: &str,
        header: &str,
    ) -> Result<ValueSource, CryptoError> {
        match self {
            SealedSecret::Env(name) => Ok(ValueSource::Env(name.clone())),
            SealedSecret::Encrypted(sealed) => secrets
                .open(sealed, &header_aad(provider, header))
                .map(ValueSource::Literal),
        }
    }

    /// What the admin API shows: env references as written, literals as [`REDACTED`].
    pub fn display(&self) -> String {
        match self {
            SealedSecret::Env(name) => format!("{ENV_PREFIX}{name}"),
            SealedSecret::Encrypted(_) => REDACTED.to_owned(),
        }
    }

    pub fn is_env(&self) -> bool {
        matches!(self, SealedSecret::Env(_))
    }

    /// Column text.
    pub fn to_column(&self) -> String {
        match self {
            SealedSecret::Env(name) => format!("env:{name}"),
            SealedSecret::Encrypted(sealed) => format!("enc:{sealed}"),
        }
    }

    /// Parses column text written by [`SealedSecret::to_column`].
    pub fn from_column(text: &str) -> Option<Self> {
        if let Some(name) = text.strip_prefix("env:") {
            Some(SealedSecret::Env(name.to_owned()))
        } else {
            text.strip_prefix("enc:")
                .map(|sealed| SealedSecret::Encrypted(sealed.to_owned()))
        }
    }
}

/// A provider (`bedrock`, `anthropic`, `vertex`, `openai`, or a custom name with a base kind).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRecord {
    pub name: String,
    pub kind: ProviderKind,
    pub network: NetworkRecord,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// AWS settings of a Bedrock key. Secret fields are sealed; the others are plain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BedrockKeyRecord {
    pub access_key: Option<SealedSecret>,
    pub secret_key: Option<SealedSecret>,
    pub session_token: Option<SealedSecret>,
    pub external_id: Option<SealedSecret>,
    pub region: Option<ValueSource>,
    pub role_arn: Option<ValueSource>,
    pub session_name: Option<String>,
    /// ARN prefix (`arn:aws:bedrock:REGION:ACCOUNT`).
    pub arn: Option<String>,
}

/// Google Cloud settings of a Vertex AI key. `auth_credentials` (the service account key file,
/// JSON) is sealed; the others are plain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VertexKeyRecord {
    pub project_id: Option<ValueSource>,
    pub region: Option<ValueSource>,
    pub auth_credentials: Option<SealedSecret>,
    /// Where the signed JWT is exchanged for an access token, instead of the key file's
    /// `token_uri`.
    pub token_uri: Option<String>,
}

/// A credential of a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderKeyRecord {
    pub id: Uuid,
    pub provider: String,
    pub name: String,
    pub description: Option<String>,
    pub models: Vec<String>,
    pub weight: f64,
    pub aliases: BTreeMap<String, String>,
    pub enabled: bool,
    /// API key (anthropic, openai) or Bedrock API key.
    pub value: Option<SealedSecret>,
    pub bedrock: Option<BedrockKeyRecord>,
    pub vertex: Option<VertexKeyRecord>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A virtual key. Only the SHA-256 of its value is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub key_sha256: [u8; 32],
    /// The first characters of the value (`sk-tg-AbCd`), to recognise a key in listings.
    pub value_prefix: String,
    /// Providers the key may use; empty means all. Always the providers of
    /// `governance.provider_configs` when those are set.
    pub providers: Vec<String>,
    pub active: bool,
    /// At most one of `team_id` and `customer_id`.
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    /// The user whose personal key this is (set when the key is created, never changed).
    pub user_id: Option<Uuid>,
    /// Limits, provider configs, expiry, fail-open.
    pub governance: KeyGovernance,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A team: virtual keys belong to it, it may belong to a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    pub id: Uuid,
    pub name: String,
    pub customer_id: Option<Uuid>,
    pub limits: Limits,
    /// The limits a member's personal key gets when SSO or SCIM places the member here.
    pub member_key_limits: Option<Limits>,
    /// Whether its keys' request and response bodies are recorded (a key's own setting wins).
    pub content_logging: Option<crate::governance::ContentLogging>,
    /// The team's MCP tool allowlist: patterns over served tool names (`<server>__<tool>`);
    /// `None`: no restriction, empty: no tool. Its keys' own lists apply too.
    pub mcp_tools: Option<Vec<String>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// An admin's pricing override, matched before the shipped table.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceOverrideRecord {
    pub id: Uuid,
    pub entry: tollgate_proto::pricing::PriceInput,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A customer: teams and virtual keys belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRecord {
    pub id: Uuid,
    pub name: String,
    pub limits: Limits,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What a mutation writes to the audit log (see [`crate::audit`] for what `details` holds; build
/// one with [`AuditEvent::new`]). `details` must never contain secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

/// A row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The config version the change produced (for a row that records no change: the version
    /// current when it was written).
    pub config_version: u64,
    pub details: serde_json::Value,
    /// The previous row's hash and this row's ([`crate::audit_chain`]); `None` for rows written
    /// before the chain began.
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// Everything a snapshot is built from, read in one consistent transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigState {
    pub version: u64,
    pub providers: Vec<ProviderRecord>,
    pub keys: Vec<ProviderKeyRecord>,
    pub virtual_keys: Vec<VirtualKeyRecord>,
    pub teams: Vec<TeamRecord>,
    pub customers: Vec<CustomerRecord>,
    /// Oldest first (the order they are matched in).
    pub price_overrides: Vec<PriceOverrideRecord>,
    /// Every MCP server, enabled or not, by name.
    pub mcp_servers: Vec<crate::mcp::McpServerRecord>,
}

/// The current time, truncated to whole microseconds (what PostgreSQL keeps), in UTC.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}
