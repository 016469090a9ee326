//! The data plane's view of configuration: a [`Runtime`] compiled from one immutable
//! [`Snapshot`](tollgate_proto::config::v1::Snapshot).
//!
//! A snapshot is validated and compiled in full before it is published through [`RuntimeHandle`],
//! so a request sees either the old runtime or the new one, never half of each. A snapshot that
//! fails validation is rejected and the last good runtime keeps serving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use tollgate_proto::config::v1 as pb;

use crate::signing::BedrockAuth;
use crate::value::Value;

/// Default time allowed to connect to an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default whole-request timeout (non-streaming) and time-to-headers timeout (streaming).
/// Claude Code itself waits 600 s (`API_TIMEOUT_MS`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Default longest silence between two chunks of an upstream stream.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

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
}

/// What kind of upstream API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Bedrock,
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Anthropic => "anthropic",
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
    pub request_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub extra_headers: http::HeaderMap,
    pub keys: Vec<ProviderKey>,
    /// The pooled upstream client (its connect timeout is `connect_timeout`); carried over from
    /// the previous config while the timeout is unchanged, so pooled connections survive config
    /// changes.
    pub client: crate::upstream::HttpClient,
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
}

/// A virtual key as the data plane knows it: only its hash.
#[derive(Debug)]
pub struct VirtualKey {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Providers this key may use; empty: all.
    pub providers: Vec<Arc<str>>,
    pub active: bool,
}

impl VirtualKey {
    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| &**p == provider)
    }
}

/// Everything a request needs, compiled from one snapshot.
#[derive(Debug)]
pub struct Runtime {
    pub version: u64,
    pub providers: HashMap<Arc<str>, Arc<Provider>>,
    virtual_keys: HashMap<[u8; 32], Arc<VirtualKey>>,
}

impl Runtime {
    /// Validates and compiles a snapshot. Nothing here does I/O.
    pub fn compile(snapshot: &pb::Snapshot) -> Result<Runtime, SnapshotError> {
        Runtime::compile_after(snapshot, None)
    }

    /// Like [`Runtime::compile`], carrying over state of `previous` that the new snapshot does
    /// not change: Bedrock credential caches of keys whose credential config is identical, so a
    /// config change elsewhere does not cost an STS call per key.
    pub fn compile_after(
        snapshot: &pb::Snapshot,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, SnapshotError> {
        let mut providers = HashMap::with_capacity(snapshot.providers.len());
        for p in &snapshot.providers {
            let prev = previous.and_then(|r| r.providers.get(p.name.as_str()));
            let provider = compile_provider(p, prev.map(|p| &**p))?;
            if providers
                .insert(provider.name.clone(), Arc::new(provider))
                .is_some()
            {
                return Err(SnapshotError::DuplicateProvider(p.name.clone()));
            }
        }
        let mut virtual_keys = HashMap::with_capacity(snapshot.virtual_keys.len());
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
                }),
            );
        }
        Ok(Runtime {
            version: snapshot.version,
            providers,
            virtual_keys,
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

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

fn compile_provider(
    p: &pb::Provider,
    previous: Option<&Provider>,
) -> Result<Provider, SnapshotError> {
    let kind = match pb::ProviderKind::try_from(p.kind) {
        Ok(pb::ProviderKind::Bedrock) => ProviderKind::Bedrock,
        Ok(pb::ProviderKind::Anthropic) => ProviderKind::Anthropic,
        _ => return Err(SnapshotError::UnknownProviderKind(p.name.clone())),
    };
    let network = p.network.clone().unwrap_or_default();
    let mut extra_headers = http::HeaderMap::new();
    for (name, value) in &network.extra_headers {
        let invalid = || SnapshotError::InvalidHeader {
            provider: p.name.clone(),
            header: name.clone(),
        };
        let name = http::HeaderName::try_from(name.as_str()).map_err(|_| invalid())?;
        let value = http::HeaderValue::try_from(value.as_str()).map_err(|_| invalid())?;
        extra_headers.insert(name, value);
    }
    let base_url = Some(network.base_url.trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .map(Arc::from);
    let mut keys = Vec::with_capacity(p.keys.len());
    for k in p.keys.iter().filter(|k| k.enabled) {
        let prev = previous.and_then(|prev| prev.keys.iter().find(|pk| *pk.id == *k.id));
        keys.push(compile_key(p, kind, k, prev)?);
    }
    let connect_timeout = millis_or(network.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT);
    let client = previous
        .filter(|prev| prev.connect_timeout == connect_timeout)
        .map_or_else(
            || crate::upstream::HttpClient::new(connect_timeout),
            |prev| prev.client.clone(),
        );
    Ok(Provider {
        name: p.name.as_str().into(),
        kind,
        base_url,
        connect_timeout,
        request_timeout: millis_or(network.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT),
        stream_idle_timeout: millis_or(network.stream_idle_timeout_ms, DEFAULT_STREAM_IDLE_TIMEOUT),
        extra_headers,
        keys,
        client,
    })
}

fn compile_key(
    p: &pb::Provider,
    kind: ProviderKind,
    k: &pb::ProviderKey,
    previous: Option<&ProviderKey>,
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
        ProviderKind::Anthropic => KeyCredential::AnthropicApiKey(
            Value::from_proto(k.value.as_ref()).ok_or_else(|| invalid("missing API key"))?,
        ),
        ProviderKind::Bedrock => {
            let fresh = BedrockAuth::from_proto(k).map_err(invalid)?;
            match previous.map(|pk| &pk.credential) {
                Some(KeyCredential::Bedrock(prev)) if prev.fingerprint() == fresh.fingerprint() => {
                    KeyCredential::Bedrock(Arc::clone(prev))
                }
                _ => KeyCredential::Bedrock(Arc::new(fresh)),
            }
        }
    };
    let models = if k.models.is_empty() || k.models.iter().any(|m| m == "*") {
        ModelFilter::All
    } else {
        ModelFilter::Only(k.models.iter().map(|m| m.to_ascii_lowercase()).collect())
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
    })
}

/// The atomically swapped current runtime. Requests load it once and keep that `Arc` for their
/// whole life, so a config change never affects a request in flight.
#[derive(Debug, Default)]
pub struct RuntimeHandle {
    current: ArcSwapOption<Runtime>,
}

impl RuntimeHandle {
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
        let runtime = Runtime::compile_after(snapshot, previous.as_deref())?;
        let version = runtime.version;
        self.current.store(Some(Arc::new(runtime)));
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
        }
    }

    fn auth(rt: &Runtime) -> Arc<BedrockAuth> {
        match &rt.providers["bedrock"].keys[0].credential {
            KeyCredential::Bedrock(a) => Arc::clone(a),
            KeyCredential::AnthropicApiKey(_) => panic!("bedrock key expected"),
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
}
