//! The data plane's view of configuration: a [`Runtime`] compiled from one immutable
//! [`Snapshot`](tollgate_proto::config::v1::Snapshot).
//!
//! A snapshot is validated and compiled in full before it is published through [`RuntimeHandle`],
//! so a request sees either the old runtime or the new one, never half of each. A snapshot that
//! fails validation is rejected and the last good runtime keeps serving.
//!
//! `env.NAME` references are checked against the data plane's [`EnvAllowlist`] here, once per
//! snapshot: a disallowed one is logged (warn) and compiled into a [`Value::Refused`] that fails
//! the requests using it with a gateway configuration error. It does not reject the snapshot, so
//! every other key and provider keeps working.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use tollgate_proto::config::v1 as pb;
use tollgate_proto::env::EnvAllowlist;
use tollgate_proto::model_pattern::ModelPattern;
use tollgate_proto::pricing::PriceTable;

use crate::health::KeyHealth;
use crate::limits::{Engine, FleetState};

use crate::signing::BedrockAuth;
use crate::value::{EnvError, Value};

/// Default time allowed to connect to an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default whole-request timeout (non-streaming) and time-to-headers timeout (streaming).
/// Claude Code itself waits 600 s (`API_TIMEOUT_MS`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Default longest silence between two chunks of an upstream stream.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default time from sending a streaming call to its response head (capped by the request
/// timeout when that is smaller). Anthropic and Bedrock send the head of a stream before the
/// model's first token, so an upstream silent this long has hung; the request moves on to its
/// next key or fallback well before Claude Code's own 600 s.
pub const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(120);
/// Default first backoff before a retry.
pub const DEFAULT_RETRY_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Default longest backoff before a retry.
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a snapshot was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("provider {0:?} has no kind")]
    UnknownProviderKind(String),
    #[error("provider name {0:?} is used twice")]
    DuplicateProvider(String),
    #[error("provider {provider:?} key {key:?}: {reason}")]
    InvalidKey {
        provider: String,
        key: String,
        reason: &'static str,
    },
    #[error("virtual key {0:?} has a key hash that is not 32 bytes")]
    InvalidKeyHash(String),
    #[error("provider {provider:?}: invalid extra header {header:?}")]
    InvalidHeader { provider: String, header: String },
    #[error("limits: {0}")]
    Limits(crate::limits::LimitsError),
    #[error("price overrides: {0}")]
    Pricing(tollgate_proto::pricing::PricingError),
    #[error("virtual key {key:?}: model pattern {pattern:?}: {reason}")]
    InvalidModelPattern {
        key: String,
        pattern: String,
        reason: tollgate_proto::model_pattern::PatternError,
    },
}

/// What kind of upstream API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Bedrock,
    Anthropic,
    /// Google Vertex AI's Anthropic models.
    Vertex,
    /// An OpenAI-compatible Chat Completions API (OpenAI, vLLM, Ollama, LM Studio, another
    /// gateway): requests and answers translated ([`crate::providers::openai`]).
    OpenAi,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Vertex => "vertex",
            ProviderKind::OpenAi => "openai",
        }
    }
}

/// One configured provider, ready for requests.
#[derive(Debug)]
pub struct Provider {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    /// Endpoint override without a trailing slash.
    pub base_url: Option<Arc<str>>,
    pub connect_timeout: Duration,
    /// Total time of a non-streaming call; also the request's deadline for retries and
    /// fallbacks.
    pub request_timeout: Duration,
    /// Time from sending a streaming call to its response head.
    pub response_header_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub retry: RetryPolicy,
    pub extra_headers: ExtraHeaders,
    pub keys: Vec<ProviderKey>,
    /// The upstream model ids its config names: the values of its metrics' `model` label.
    pub model_labels: crate::metrics::ModelLabels,
    /// The pooled upstream client (its connect timeout is `connect_timeout`); carried over from
    /// the previous config while the timeout is unchanged, so pooled connections survive config
    /// changes.
    pub client: crate::upstream::HttpClient,
}

/// How a provider's failed attempts are retried after every key serving the model failed
/// (`network_config.max_retries`, `retry_backoff_initial`, `retry_backoff_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (0 for the first): `backoff_initial` doubled
    /// `retry` times, at most `backoff_max`, scaled by `jitter` (from `[0.8, 1.2)` in
    /// production, so retries of many requests spread out).
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let doubled = self
            .backoff_initial
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
        doubled
            .min(self.backoff_max)
            .mul_f64(jitter.clamp(0.0, 2.0))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            backoff_initial: DEFAULT_RETRY_BACKOFF_INITIAL,
            backoff_max: DEFAULT_RETRY_BACKOFF_MAX,
        }
    }
}

/// A provider's extra upstream headers (`network_config.extra_headers`). Values are secrets:
/// literal ones are built once, at compile time, and marked sensitive (never printed by `Debug`,
/// kept out of HPACK tables); `env.NAME` ones are read at every use, like key secrets.
#[derive(Debug, Default)]
pub struct ExtraHeaders {
    literal: http::HeaderMap,
    env: Vec<(http::HeaderName, Value)>,
}

/// An extra header whose value cannot be produced now.
#[derive(Debug, thiserror::Error)]
pub enum ExtraHeaderError {
    #[error("extra header {header}: {source}")]
    Env {
        header: http::HeaderName,
        #[source]
        source: EnvError,
    },
    #[error("extra header {header}: the value of {variable} is not a valid HTTP header value")]
    InvalidValue {
        header: http::HeaderName,
        /// `env.NAME`: the reference, never the value.
        variable: String,
    },
}

impl ExtraHeaders {
    /// The headers to send now: the prebuilt map when every value is literal, otherwise a copy
    /// with the `env.NAME` values read from the environment.
    pub fn resolve(&self) -> Result<Cow<'_, http::HeaderMap>, ExtraHeaderError> {
        if self.env.is_empty() {
            return Ok(Cow::Borrowed(&self.literal));
        }
        let mut headers = self.literal.clone();
        for (name, value) in &self.env {
            let resolved = value.resolve().map_err(|source| ExtraHeaderError::Env {
                header: name.clone(),
                source,
            })?;
            let mut header = http::HeaderValue::try_from(&*resolved).map_err(|_| {
                ExtraHeaderError::InvalidValue {
                    header: name.clone(),
                    variable: match value {
                        Value::Env(n) | Value::Refused(n) => format!("env.{n}"),
                        Value::Literal(_) => "the literal".to_owned(),
                    },
                }
            })?;
            header.set_sensitive(true);
            headers.insert(name.clone(), header);
        }
        Ok(Cow::Owned(headers))
    }
}

/// Which models a provider key serves.
#[derive(Debug)]
pub enum ModelFilter {
    All,
    /// Lower-cased names.
    Only(Vec<String>),
}

impl ModelFilter {
    /// True when the key serves `requested` (the name the client asked for, without provider
    /// prefix) or `resolved` (the upstream id it maps to).
    pub fn allows(&self, requested: &str, resolved: &str) -> bool {
        match self {
            ModelFilter::All => true,
            ModelFilter::Only(names) => names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(requested) || n.eq_ignore_ascii_case(resolved)),
        }
    }
}

/// Credentials and routing data of one provider key.
#[derive(Debug)]
pub struct ProviderKey {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub models: ModelFilter,
    pub weight: f64,
    /// Lower-cased logical name -> upstream model id, inference profile or ARN.
    pub aliases: HashMap<String, Arc<str>>,
    pub credential: KeyCredential,
    /// Its recent failures and ejection ([`crate::health`]); carried over from the previous
    /// config's key with the same id, so a config change does not reset it.
    pub health: Arc<KeyHealth>,
}

impl ProviderKey {
    /// The upstream id for a requested model name: the alias target, or the name itself.
    pub fn resolve<'a>(&'a self, requested: &'a str) -> (&'a str, bool) {
        if self.aliases.is_empty() {
            return (requested, false);
        }
        match self.aliases.get(requested.to_ascii_lowercase().as_str()) {
            Some(target) => (target, true),
            None => (requested, false),
        }
    }
}

/// How a provider key authenticates upstream.
#[derive(Debug)]
pub enum KeyCredential {
    /// Anthropic API key, sent as `x-api-key`.
    AnthropicApiKey(Value),
    /// Bedrock: SigV4 (static, default chain, assumed role) or a Bedrock API key.
    Bedrock(Arc<BedrockAuth>),
    /// Vertex AI: a service account's key file, exchanged for access tokens.
    Vertex(Arc<crate::google::VertexAuth>),
    /// An OpenAI-compatible API key, sent as `Authorization: Bearer`. `None`: the key has no
    /// value (local servers such as vLLM or Ollama need none) and no `Authorization` is sent.
    OpenAiApiKey(Option<Value>),
}

impl KeyCredential {
    /// Whether `other` is the same credential config (a Bedrock credential carried over is
    /// the same `Arc`): a key whose credential changed starts with a clean health record.
    fn same_as(&self, other: &KeyCredential) -> bool {
        match (self, other) {
            (KeyCredential::AnthropicApiKey(a), KeyCredential::AnthropicApiKey(b)) => a == b,
            (KeyCredential::Bedrock(a), KeyCredential::Bedrock(b)) => Arc::ptr_eq(a, b),
            (KeyCredential::Vertex(a), KeyCredential::Vertex(b)) => Arc::ptr_eq(a, b),
            (KeyCredential::OpenAiApiKey(a), KeyCredential::OpenAiApiKey(b)) => a == b,
            _ => false,
        }
    }
}

/// A virtual key as the data plane knows it: only its hash.
#[derive(Debug)]
pub struct VirtualKey {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Providers this key may use; empty: all.
    pub providers: Vec<Arc<str>>,
    pub active: bool,
    /// After this instant (unix ms) the key is refused; 0: never.
    pub expires_at_unix_ms: i64,
    /// Models (`provider/model`) tried in order when an attempt fails, for requests without
    /// their own `fallbacks`.
    pub fallbacks: Vec<String>,
    /// What the key may do with each provider; empty: no restriction beyond `providers`.
    pub configs: Vec<KeyProviderConfig>,
    /// Who its requests are billed to, stamped on their usage records.
    pub owner: Owner,
    /// Content logging: each body of its requests is recorded, cut to this many bytes
    /// (`None`: bodies are not recorded, the default).
    pub content_max_bytes: Option<u32>,
    /// The MCP tools it may list and call at `/mcp` (its own and its team's allowlists).
    pub mcp_access: crate::mcp::Access,
}

/// The team, customer and user a virtual key's requests are billed to (empty: none), as ids.
#[derive(Debug, Default, Clone)]
pub struct Owner {
    pub team_id: Arc<str>,
    /// The key's own customer, or its team's.
    pub customer_id: Arc<str>,
    /// Set for a user's personal key.
    pub user_id: Arc<str>,
}

impl VirtualKey {
    /// Stamps `record` with this key and who its requests are billed to (model requests and MCP
    /// tool calls alike).
    pub fn bill(&self, record: &mut tollgate_proto::usage::v1::UsageRecord) {
        record.virtual_key_id = self.id.to_string();
        record.team_id = self.owner.team_id.to_string();
        record.customer_id = self.owner.customer_id.to_string();
        record.user_id = self.owner.user_id.to_string();
    }
}

/// A virtual key's restrictions on one provider.
#[derive(Debug)]
pub struct KeyProviderConfig {
    pub provider: Arc<str>,
    /// Its share when a model name several providers serve is routed (relative to the other
    /// configs' weights; 1 when unset).
    pub weight: f64,
    /// Empty: every model.
    pub allowed_models: Vec<ModelPattern>,
    /// Provider key ids the virtual key may use; empty: all.
    pub key_ids: Vec<Arc<str>>,
}

impl KeyProviderConfig {
    /// Whether the model, as requested or as resolved, is allowed.
    pub fn allows_model(&self, requested: &str, resolved: &str) -> bool {
        self.allowed_models.is_empty()
            || self
                .allowed_models
                .iter()
                .any(|p| p.matches(requested) || p.matches(resolved))
    }

    pub fn allows_key(&self, key_id: &str) -> bool {
        self.key_ids.is_empty() || self.key_ids.iter().any(|k| &**k == key_id)
    }
}

impl VirtualKey {
    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| &**p == provider)
    }

    /// The key's config for `provider`, if it has one.
    pub fn config(&self, provider: &str) -> Option<&KeyProviderConfig> {
        self.configs.iter().find(|c| &*c.provider == provider)
    }

    /// Whether the key has expired at `now_unix_ms`.
    pub fn expired(&self, now_unix_ms: i64) -> bool {
        self.expires_at_unix_ms != 0 && now_unix_ms >= self.expires_at_unix_ms
    }
}

/// Everything a request needs, compiled from one snapshot.
#[derive(Debug)]
pub struct Runtime {
    pub version: u64,
    /// When the control plane built the snapshot (unix ms).
    pub created_at_unix_ms: i64,
    pub providers: HashMap<Arc<str>, Arc<Provider>>,
    virtual_keys: HashMap<[u8; 32], Arc<VirtualKey>>,
    /// What requests cost: the shipped table, after the snapshot's price overrides (borrowed
    /// when there are none).
    pub pricing: Cow<'static, PriceTable>,
    /// Budgets, rate limits and concurrency of the snapshot's keys, teams and customers; its
    /// counters carry over from the previous runtime.
    pub limits: crate::limits::Engine,
    /// The MCP servers whose tools `/mcp` serves ([`crate::mcp`]).
    pub mcp_servers: Vec<Arc<crate::mcp::ServerSpec>>,
}

impl Runtime {
    /// Validates and compiles a snapshot under the default env allowlist. Nothing here does I/O.
    pub fn compile(snapshot: &pb::Snapshot) -> Result<Runtime, SnapshotError> {
        Runtime::compile_after(snapshot, None, &EnvAllowlist::default())
    }

    /// Like [`Runtime::compile`] with the data plane's env allowlist, carrying over state of
    /// `previous` that the new snapshot does not change: Bedrock credential caches of keys whose
    /// credential config is identical, so a config change elsewhere does not cost an STS call per
    /// key.
    pub fn compile_after(
        snapshot: &pb::Snapshot,
        previous: Option<&Runtime>,
        env: &EnvAllowlist,
    ) -> Result<Runtime, SnapshotError> {
        let fleet = previous.map(|r| r.limits.fleet_arc()).unwrap_or_default();
        Runtime::compile_in(snapshot, previous, env, fleet)
    }

    /// [`Runtime::compile_after`] with the data plane's [`FleetState`] (see [`RuntimeHandle`]).
    fn compile_in(
        snapshot: &pb::Snapshot,
        previous: Option<&Runtime>,
        env: &EnvAllowlist,
        fleet: Arc<FleetState>,
    ) -> Result<Runtime, SnapshotError> {
        let mut providers = HashMap::with_capacity(snapshot.providers.len());
        for p in &snapshot.providers {
            let prev = previous.and_then(|r| r.providers.get(p.name.as_str()));
            let provider = compile_provider(p, prev.map(|p| &**p), env)?;
            if providers
                .insert(provider.name.clone(), Arc::new(provider))
                .is_some()
            {
                return Err(SnapshotError::DuplicateProvider(p.name.clone()));
            }
        }
        let team_customers: HashMap<&str, &str> = snapshot
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.customer_id.as_str()))
            .collect();
        let mut virtual_keys = HashMap::with_capacity(snapshot.virtual_keys.len());
        // A team's MCP allowlist is compiled once, not once per key.
        let mut access_cache = crate::mcp::AccessCache::default();
        for vk in &snapshot.virtual_keys {
            let hash: [u8; 32] = vk
                .key_sha256
                .as_ref()
                .try_into()
                .map_err(|_| SnapshotError::InvalidKeyHash(vk.name.clone()))?;
            virtual_keys.insert(
                hash,
                Arc::new(VirtualKey {
                    id: vk.id.as_str().into(),
                    name: vk.name.as_str().into(),
                    providers: vk.providers.iter().map(|p| p.as_str().into()).collect(),
                    active: vk.active,
                    expires_at_unix_ms: vk.expires_at_unix_ms,
                    fallbacks: vk.fallbacks.clone(),
                    configs: compile_provider_configs(vk)?,
                    owner: Owner {
                        team_id: vk.team_id.as_str().into(),
                        customer_id: if vk.customer_id.is_empty() {
                            team_customers
                                .get(vk.team_id.as_str())
                                .copied()
                                .unwrap_or_default()
                                .into()
                        } else {
                            vk.customer_id.as_str().into()
                        },
                        user_id: vk.user_id.as_str().into(),
                    },
                    content_max_bytes: vk.content_logging.as_ref().map(|c| {
                        c.max_body_bytes
                            .clamp(1, tollgate_proto::content::MAX_BODY_BYTES)
                    }),
                    mcp_access: crate::mcp::Access::compile_cached(vk, &mut access_cache),
                }),
            );
        }
        let limits = Engine::compile_in(snapshot, previous.map(|r| &r.limits), fleet)
            .map_err(SnapshotError::Limits)?;
        Ok(Runtime {
            limits,
            mcp_servers: crate::mcp::spec::compile_servers(snapshot, env),
            version: snapshot.version,
            created_at_unix_ms: snapshot.created_at_unix_ms,
            providers,
            virtual_keys,
            pricing: if snapshot.price_overrides.is_empty() {
                Cow::Borrowed(PriceTable::shipped())
            } else {
                Cow::Owned(
                    PriceTable::shipped()
                        .with_overrides(&snapshot.price_overrides)
                        .map_err(SnapshotError::Pricing)?,
                )
            },
        })
    }

    /// Looks up a virtual key by its presented value. Only the SHA-256 is compared; the lookup
    /// costs the same whether or not the key exists.
    pub fn virtual_key(&self, presented: &str) -> Option<&Arc<VirtualKey>> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.virtual_keys.get(&hash)
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }
}

/// A virtual key's provider configs: model patterns compiled, key ids kept.
fn compile_provider_configs(vk: &pb::VirtualKey) -> Result<Vec<KeyProviderConfig>, SnapshotError> {
    vk.provider_configs
        .iter()
        .map(|c| {
            let allowed_models = c
                .allowed_models
                .iter()
                .map(|p| {
                    ModelPattern::parse(p).map_err(|reason| SnapshotError::InvalidModelPattern {
                        key: vk.name.clone(),
                        pattern: p.clone(),
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(KeyProviderConfig {
                provider: c.provider.as_str().into(),
                weight: if c.weight.is_finite() && c.weight > 0.0 {
                    c.weight
                } else {
                    1.0
                },
                allowed_models,
                key_ids: c.key_ids.iter().map(|k| k.as_str().into()).collect(),
            })
        })
        .collect()
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

/// Logs a reference the env allowlist refused (once per compiled snapshot).
fn warn_refused(
    provider: &str,
    key: Option<&str>,
    field: &str,
    variable: &str,
    env: &EnvAllowlist,
) {
    tracing::warn!(
        provider,
        provider_key = key.unwrap_or(""),
        field,
        variable,
        allowed = %env.describe(),
        "env reference refused by this data plane's env allowlist (--env-allow / \
         TOLLGATE_ENV_ALLOW; TOLLGATE_* never resolves): requests that need it fail until the \
         configuration changes"
    );
}

/// The extra headers of a provider: `extra_header_values`, then the literal-only
/// `extra_headers` for names it lacks (snapshots written by older control planes).
fn compile_extra_headers(
    p: &pb::Provider,
    network: &pb::NetworkConfig,
    env: &EnvAllowlist,
) -> Result<ExtraHeaders, SnapshotError> {
    let invalid = |name: &str| SnapshotError::InvalidHeader {
        provider: p.name.clone(),
        header: name.to_owned(),
    };
    let literal = |name: &str, value: &str| {
        let mut value = http::HeaderValue::try_from(value).map_err(|_| invalid(name))?;
        value.set_sensitive(true);
        Ok::<_, SnapshotError>(value)
    };
    let mut headers = ExtraHeaders::default();
    for (name, value) in &network.extra_header_values {
        let header = http::HeaderName::try_from(name.as_str()).map_err(|_| invalid(name))?;
        match &value.source {
            Some(pb::value_ref::Source::Literal(v)) => {
                headers.literal.insert(header, literal(name, v)?);
            }
            Some(pb::value_ref::Source::Env(var)) if !var.is_empty() => {
                let value = Value::env(var, env);
                if let Some(var) = value.refused() {
                    let field = format!("network_config.extra_headers.{name}");
                    warn_refused(&p.name, None, &field, var, env);
                }
                headers.env.push((header, value));
            }
            _ => return Err(invalid(name)),
        }
    }
    for (name, value) in &network.extra_headers {
        if network.extra_header_values.contains_key(name) {
            continue;
        }
        let header = http::HeaderName::try_from(name.as_str()).map_err(|_| invalid(name))?;
        headers.literal.insert(header, literal(name, value)?);
    }
    Ok(headers)
}

fn compile_provider(
    p: &pb::Provider,
    previous: Option<&Provider>,
    env: &EnvAllowlist,
) -> Result<Provider, SnapshotError> {
    let kind = match pb::ProviderKind::try_from(p.kind) {
        Ok(pb::ProviderKind::Bedrock) => ProviderKind::Bedrock,
        Ok(pb::ProviderKind::Anthropic) => ProviderKind::Anthropic,
        Ok(pb::ProviderKind::Vertex) => ProviderKind::Vertex,
        Ok(pb::ProviderKind::Openai) => ProviderKind::OpenAi,
        _ => return Err(SnapshotError::UnknownProviderKind(p.name.clone())),
    };
    let network = p.network.clone().unwrap_or_default();
    let extra_headers = compile_extra_headers(p, &network, env)?;
    let base_url = Some(network.base_url.trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .map(Arc::from);
    let mut keys = Vec::with_capacity(p.keys.len());
    for k in p.keys.iter().filter(|k| k.enabled) {
        let prev = previous.and_then(|prev| prev.keys.iter().find(|pk| *pk.id == *k.id));
        keys.push(compile_key(p, kind, k, prev, env)?);
    }
    let connect_timeout = millis_or(network.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT);
    let client = previous
        .filter(|prev| prev.connect_timeout == connect_timeout)
        .map_or_else(
            || crate::upstream::HttpClient::new(connect_timeout),
            |prev| prev.client.clone(),
        );
    let request_timeout = millis_or(network.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT);
    let backoff_initial = millis_or(
        network.retry_backoff_initial_ms,
        DEFAULT_RETRY_BACKOFF_INITIAL,
    );
    Ok(Provider {
        name: p.name.as_str().into(),
        kind,
        base_url,
        connect_timeout,
        request_timeout,
        response_header_timeout: millis_or(
            network.response_header_timeout_ms,
            DEFAULT_RESPONSE_HEADER_TIMEOUT.min(request_timeout),
        ),
        stream_idle_timeout: millis_or(network.stream_idle_timeout_ms, DEFAULT_STREAM_IDLE_TIMEOUT),
        retry: RetryPolicy {
            max_retries: network.max_retries,
            backoff_initial,
            backoff_max: millis_or(network.retry_backoff_max_ms, DEFAULT_RETRY_BACKOFF_MAX)
                .max(backoff_initial),
        },
        extra_headers,
        keys,
        model_labels: crate::metrics::ModelLabels::of(p),
        client,
    })
}

fn compile_key(
    p: &pb::Provider,
    kind: ProviderKind,
    k: &pb::ProviderKey,
    previous: Option<&ProviderKey>,
    env: &EnvAllowlist,
) -> Result<ProviderKey, SnapshotError> {
    let invalid = |reason| SnapshotError::InvalidKey {
        provider: p.name.clone(),
        key: k.name.clone(),
        reason,
    };
    if !(k.weight.is_finite() && k.weight > 0.0) {
        return Err(invalid("weight must be a positive number"));
    }
    let credential = match kind {
        ProviderKind::Anthropic => {
            let value = Value::from_proto(k.value.as_ref(), env)
                .ok_or_else(|| invalid("missing API key"))?;
            if let Some(var) = value.refused() {
                warn_refused(&p.name, Some(&k.name), "value", var, env);
            }
            KeyCredential::AnthropicApiKey(value)
        }
        ProviderKind::OpenAi => {
            // No value is a key without a credential (a local server), not an error.
            let value = Value::from_proto(k.value.as_ref(), env);
            if let Some(var) = value.as_ref().and_then(Value::refused) {
                warn_refused(&p.name, Some(&k.name), "value", var, env);
            }
            KeyCredential::OpenAiApiKey(value)
        }
        ProviderKind::Bedrock => {
            let fresh = BedrockAuth::from_proto(k, env).map_err(invalid)?;
            for (field, value) in fresh.values() {
                if let Some(var) = value.refused() {
                    warn_refused(&p.name, Some(&k.name), field, var, env);
                }
            }
            match previous.map(|pk| &pk.credential) {
                Some(KeyCredential::Bedrock(prev)) if prev.fingerprint() == fresh.fingerprint() => {
                    KeyCredential::Bedrock(Arc::clone(prev))
                }
                _ => KeyCredential::Bedrock(Arc::new(fresh)),
            }
        }
        ProviderKind::Vertex => {
            let fresh = crate::google::VertexAuth::from_proto(k, env).map_err(invalid)?;
            for (field, value) in fresh.values() {
                if let Some(var) = value.refused() {
                    warn_refused(&p.name, Some(&k.name), field, var, env);
                }
            }
            // The token cache survives config changes that keep the key's settings.
            match previous.map(|pk| &pk.credential) {
                Some(KeyCredential::Vertex(prev)) if prev.fingerprint() == fresh.fingerprint() => {
                    KeyCredential::Vertex(Arc::clone(prev))
                }
                _ => KeyCredential::Vertex(Arc::new(fresh)),
            }
        }
    };
    let models = if k.models.is_empty() || k.models.iter().any(|m| m == "*") {
        ModelFilter::All
    } else {
        ModelFilter::Only(k.models.iter().map(|m| m.to_ascii_lowercase()).collect())
    };
    let health = match previous {
        Some(pk) if pk.credential.same_as(&credential) => Arc::clone(&pk.health),
        _ => Arc::default(),
    };
    Ok(ProviderKey {
        id: k.id.as_str().into(),
        name: k.name.as_str().into(),
        models,
        weight: k.weight,
        aliases: k
            .aliases
            .iter()
            .map(|(from, to)| (from.to_ascii_lowercase(), Arc::from(to.as_str())))
            .collect(),
        credential,
        health,
    })
}

/// The atomically swapped current runtime. Requests load it once and keep that `Arc` for their
/// whole life, so a config change never affects a request in flight.
#[derive(Debug, Default)]
pub struct RuntimeHandle {
    current: ArcSwapOption<Runtime>,
    /// The env allowlist snapshots are compiled under.
    env: EnvAllowlist,
    /// What the control plane says of the fleet (reachability, this node's share), for every
    /// runtime's limits engine, from before the first config on.
    fleet: Arc<FleetState>,
    /// When the current runtime was stored (unix ms; 0: none yet).
    applied_at_unix_ms: AtomicI64,
}

impl RuntimeHandle {
    /// A handle compiling snapshots under `env` ([`Default`]: the default allowlist).
    pub fn new(env: EnvAllowlist) -> Self {
        RuntimeHandle {
            current: ArcSwapOption::empty(),
            env,
            fleet: Arc::default(),
            applied_at_unix_ms: AtomicI64::new(0),
        }
    }

    /// When the runtime being served was applied (unix ms; 0: none yet).
    pub fn applied_at_unix_ms(&self) -> i64 {
        self.applied_at_unix_ms.load(Ordering::Relaxed)
    }

    /// The fleet state every runtime's limits engine is compiled with.
    pub fn fleet(&self) -> &FleetState {
        &self.fleet
    }

    pub fn load(&self) -> Option<Arc<Runtime>> {
        self.current.load_full()
    }

    /// Compiles and publishes a snapshot unless it is older than the one being served.
    /// Returns the version now served.
    pub fn apply(&self, snapshot: &pb::Snapshot) -> Result<u64, SnapshotError> {
        if let Some(current) = self.current.load().as_ref()
            && snapshot.version < current.version
        {
            tracing::warn!(
                offered = snapshot.version,
                serving = current.version,
                "ignoring a config snapshot older than the one being served"
            );
            return Ok(current.version);
        }
        let previous = self.current.load_full();
        let runtime = Runtime::compile_in(
            snapshot,
            previous.as_deref(),
            &self.env,
            Arc::clone(&self.fleet),
        )?;
        let version = runtime.version;
        self.current.store(Some(Arc::new(runtime)));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.applied_at_unix_ms.store(now, Ordering::Relaxed);
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64, secret: &str, vks: usize) -> pb::Snapshot {
        let lit = |s: &str| {
            Some(pb::ValueRef {
                source: Some(pb::value_ref::Source::Literal(s.into())),
            })
        };
        pb::Snapshot {
            version,
            providers: vec![pb::Provider {
                name: "bedrock".into(),
                kind: pb::ProviderKind::Bedrock as i32,
                network: None,
                keys: vec![pb::ProviderKey {
                    id: "k1".into(),
                    name: "k1".into(),
                    models: vec!["*".into()],
                    weight: 1.0,
                    bedrock: Some(pb::BedrockKeyConfig {
                        access_key: lit("AKID"),
                        secret_key: lit(secret),
                        region: lit("us-east-1"),
                        role_arn: lit("arn:aws:iam::123456789012:role/r"),
                        ..Default::default()
                    }),
                    enabled: true,
                    ..Default::default()
                }],
            }],
            virtual_keys: (0..vks)
                .map(|i| pb::VirtualKey {
                    id: format!("vk{i}"),
                    name: format!("vk{i}"),
                    key_sha256: vec![i as u8; 32].into(),
                    active: true,
                    ..Default::default()
                })
                .collect(),
            created_at_unix_ms: 0,
            ..Default::default()
        }
    }

    fn auth(rt: &Runtime) -> Arc<BedrockAuth> {
        match &rt.providers["bedrock"].keys[0].credential {
            KeyCredential::Bedrock(a) => Arc::clone(a),
            _ => panic!("bedrock key expected"),
        }
    }

    #[test]
    fn unchanged_credentials_keep_their_cache_across_snapshots() {
        let handle = RuntimeHandle::default();
        handle.apply(&snapshot(1, "s1", 0)).expect("v1");
        let first = auth(&handle.load().expect("runtime"));
        // A change elsewhere (a new virtual key) keeps the same credential object...
        handle.apply(&snapshot(2, "s1", 1)).expect("v2");
        assert!(Arc::ptr_eq(&first, &auth(&handle.load().expect("runtime"))));
        // ...a changed secret does not.
        handle.apply(&snapshot(3, "s2", 1)).expect("v3");
        assert!(!Arc::ptr_eq(
            &first,
            &auth(&handle.load().expect("runtime"))
        ));
    }

    #[test]
    fn older_snapshots_are_ignored_and_invalid_ones_rejected() {
        let handle = RuntimeHandle::default();
        assert_eq!(handle.apply(&snapshot(5, "s", 0)).expect("v5"), 5);
        assert_eq!(handle.apply(&snapshot(4, "s", 3)).expect("older"), 5);
        assert_eq!(handle.load().expect("runtime").version, 5);
        let mut bad = snapshot(6, "s", 0);
        bad.providers[0].kind = pb::ProviderKind::Unspecified as i32;
        assert!(handle.apply(&bad).is_err());
        assert_eq!(
            handle.load().expect("runtime").version,
            5,
            "last good config still served"
        );
    }

    fn env_ref(name: &str) -> pb::ValueRef {
        pb::ValueRef {
            source: Some(pb::value_ref::Source::Env(name.into())),
        }
    }

    fn literal(v: &str) -> pb::ValueRef {
        pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(v.into())),
        }
    }

    /// A disallowed reference does not reject the snapshot: the key compiles into a value that
    /// fails every use with a clear error, and the other keys keep working.
    #[test]
    fn disallowed_env_references_fail_their_key_only() {
        let mut snap = snapshot(1, "s", 1);
        let mut planted = snap.providers[0].keys[0].clone();
        planted.id = "k2".into();
        planted.name = "planted".into();
        planted.bedrock.as_mut().unwrap().secret_key = Some(env_ref("TOLLGATE_SECRET_KEY"));
        snap.providers[0].keys.push(planted);
        snap.providers.push(pb::Provider {
            name: "anthropic".into(),
            kind: pb::ProviderKind::Anthropic as i32,
            network: None,
            keys: vec![pb::ProviderKey {
                id: "a1".into(),
                name: "a1".into(),
                weight: 1.0,
                value: Some(env_ref("HOME")),
                enabled: true,
                ..Default::default()
            }],
        });
        let handle = RuntimeHandle::new(EnvAllowlist::default());
        assert_eq!(handle.apply(&snap).expect("applied, not rejected"), 1);
        let rt = handle.load().expect("runtime");
        let keys = &rt.providers["bedrock"].keys;
        let KeyCredential::Bedrock(good) = &keys[0].credential else {
            panic!("bedrock key expected")
        };
        assert!(good.values().all(|(_, v)| v.refused().is_none()));
        let KeyCredential::Bedrock(bad) = &keys[1].credential else {
            panic!("bedrock key expected")
        };
        let refused: Vec<_> = bad
            .values()
            .filter_map(|(field, v)| v.refused().map(|n| (field, n)))
            .collect();
        assert_eq!(
            refused,
            [("bedrock_key_config.secret_key", "TOLLGATE_SECRET_KEY")]
        );
        let KeyCredential::AnthropicApiKey(home) = &rt.providers["anthropic"].keys[0].credential
        else {
            panic!("anthropic key expected")
        };
        let err = home.resolve().unwrap_err();
        assert!(
            matches!(err, EnvError::Refused(ref n) if &**n == "HOME"),
            "{err}"
        );
        // The same snapshot under an allowlist that names HOME resolves it.
        let wider = RuntimeHandle::new(EnvAllowlist::with_extra(["HOME"]).unwrap());
        wider.apply(&snap).expect("applied");
        let KeyCredential::AnthropicApiKey(home) =
            &wider.load().unwrap().providers["anthropic"].keys[0].credential
        else {
            panic!("anthropic key expected")
        };
        assert_eq!(home.refused(), None);
    }

    /// OpenAI-compatible providers compile to their kind; a key may have no value (a local
    /// server), which is not an error, and changing the value resets the key's health.
    #[test]
    fn openai_keys_may_have_no_value() {
        let key = |id: &str, value: Option<pb::ValueRef>| pb::ProviderKey {
            id: id.into(),
            name: id.into(),
            weight: 1.0,
            value,
            enabled: true,
            ..Default::default()
        };
        let mut snap = snapshot(1, "s", 1);
        snap.providers.push(pb::Provider {
            name: "ollama".into(),
            kind: pb::ProviderKind::Openai as i32,
            network: Some(pb::NetworkConfig {
                base_url: "http://127.0.0.1:11434/v1/".into(),
                ..Default::default()
            }),
            keys: vec![
                key("o1", None),
                key("o2", Some(literal("sk-proj-x"))),
                key("o3", Some(env_ref("OPENAI_API_KEY"))),
            ],
        });
        let handle = RuntimeHandle::new(EnvAllowlist::default());
        handle.apply(&snap).expect("applied");
        let rt = handle.load().expect("runtime");
        let p = &rt.providers["ollama"];
        assert_eq!(p.kind, ProviderKind::OpenAi);
        assert_eq!(p.kind.as_str(), "openai");
        assert_eq!(p.base_url.as_deref(), Some("http://127.0.0.1:11434/v1"));
        let creds: Vec<Option<String>> = p
            .keys
            .iter()
            .map(|k| match &k.credential {
                KeyCredential::OpenAiApiKey(v) => v.as_ref().map(|v| format!("{v:?}")),
                other => panic!("openai key expected: {other:?}"),
            })
            .collect();
        assert_eq!(creds[0], None);
        assert!(creds[1].is_some() && creds[2].is_some(), "{creds:?}");
        assert!(
            creds.iter().flatten().all(|c| !c.contains("sk-proj-x")),
            "Debug never prints a secret: {creds:?}"
        );
    }

    fn with_headers(network: pb::NetworkConfig) -> pb::Snapshot {
        let mut snap = snapshot(1, "s", 0);
        snap.providers[0].network = Some(network);
        snap
    }

    #[test]
    fn extra_headers_literal_prebuilt_and_sensitive_env_resolved_at_use() {
        let network = pb::NetworkConfig {
            extra_header_values: [
                ("x-proxy-token".to_string(), literal("proxy-secret")),
                ("x-path".to_string(), env_ref("PATH")),
            ]
            .into(),
            ..Default::default()
        };
        let handle = RuntimeHandle::new(EnvAllowlist::with_extra(["PATH"]).unwrap());
        handle.apply(&with_headers(network)).expect("applied");
        let rt = handle.load().unwrap();
        let extra = &rt.providers["bedrock"].extra_headers;
        assert!(!format!("{extra:?}").contains("proxy-secret"), "{extra:?}");
        let headers = extra.resolve().expect("resolved");
        assert_eq!(headers["x-proxy-token"], "proxy-secret");
        assert_eq!(headers["x-path"], std::env::var("PATH").unwrap().as_str());
        assert!(headers.values().all(http::HeaderValue::is_sensitive));

        // Literal only: the prebuilt map itself, no copy per request.
        let network = pb::NetworkConfig {
            extra_header_values: [("x-a".to_string(), literal("1"))].into(),
            ..Default::default()
        };
        handle.apply(&with_headers(network)).expect("applied");
        let rt = handle.load().unwrap();
        assert!(matches!(
            rt.providers["bedrock"].extra_headers.resolve().unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn refused_or_missing_header_references_fail_the_request_not_the_snapshot() {
        let network = pb::NetworkConfig {
            extra_header_values: [
                ("x-steal".to_string(), env_ref("TOLLGATE_ADMIN_TOKEN")),
                ("x-a".to_string(), literal("1")),
            ]
            .into(),
            ..Default::default()
        };
        let handle = RuntimeHandle::default();
        handle.apply(&with_headers(network)).expect("applied");
        let rt = handle.load().unwrap();
        let err = rt.providers["bedrock"].extra_headers.resolve().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("x-steal") && text.contains("env.TOLLGATE_ADMIN_TOKEN"),
            "{text}"
        );
        assert!(matches!(
            err,
            ExtraHeaderError::Env {
                source: EnvError::Refused(_),
                ..
            }
        ));

        let network = pb::NetworkConfig {
            extra_header_values: [("x-k".to_string(), env_ref("ANTHROPIC_TG_TEST_UNSET"))].into(),
            ..Default::default()
        };
        handle.apply(&with_headers(network)).expect("applied");
        let err = handle.load().unwrap().providers["bedrock"]
            .extra_headers
            .resolve()
            .unwrap_err();
        assert!(matches!(
            err,
            ExtraHeaderError::Env {
                source: EnvError::Missing(_),
                ..
            }
        ));
    }

    /// Snapshots from older control planes (and their disk caches) carry literal values in
    /// field 5 only; newer ones carry both, and field 6 wins.
    #[test]
    fn literal_only_extra_headers_of_older_snapshots_still_apply() {
        let network = pb::NetworkConfig {
            extra_headers: [
                ("x-old".to_string(), "old-value".to_string()),
                ("x-both".to_string(), "from-field-5".to_string()),
            ]
            .into(),
            extra_header_values: [("x-both".to_string(), literal("from-field-6"))].into(),
            ..Default::default()
        };
        let handle = RuntimeHandle::default();
        handle.apply(&with_headers(network)).expect("applied");
        let rt = handle.load().unwrap();
        let headers = rt.providers["bedrock"].extra_headers.resolve().unwrap();
        assert_eq!(headers["x-old"], "old-value");
        assert_eq!(headers["x-both"], "from-field-6");
        assert_eq!(headers.len(), 2);

        // Structurally invalid headers still reject the snapshot, as before.
        let bad = pb::NetworkConfig {
            extra_header_values: [("bad header".to_string(), literal("x"))].into(),
            ..Default::default()
        };
        assert!(matches!(
            handle.apply(&pb::Snapshot {
                version: 2,
                ..with_headers(bad)
            }),
            Err(SnapshotError::InvalidHeader { .. })
        ));
    }
}
