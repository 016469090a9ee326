//! Building the [`Snapshot`] the data plane consumes, from rows loaded by the store.
//!
//! [`build_snapshot`] is a pure function of its inputs: literal secrets are decrypted into
//! `ValueRef{literal}`, `env.NAME` references become `ValueRef{env: NAME}` (the data plane
//! resolves them, under its own env allowlist), timeouts turn into milliseconds, and everything
//! is sorted by name so equal states give equal snapshots.
//!
//! References the control plane's allowlist refuses (rows written before the allowlist existed,
//! or under a wider one) are published as they are: the data plane refuses them when it compiles
//! the snapshot, so only the requests that use them fail, never the whole snapshot.
//!
//! Extra headers go to `NetworkConfig.extra_header_values` (literals and env references); the
//! literal ones are also copied to the literal-only `extra_headers` field that data planes older
//! than `extra_header_values` read.
//!
//! MCP servers: only the enabled ones, their `env` and `headers` values opened like provider
//! secrets. A virtual key's `mcp_access` lists its own tool allowlist, then its team's (each
//! only when set): the data plane allows a tool only when every entry does.
//!
//! A built snapshot holds plaintext secrets: never log it (prost's `Debug` prints every field).

use std::collections::BTreeMap;

use bytes::Bytes;
use tollgate_proto::config::v1 as pb;
use uuid::Uuid;

use crate::crypto::{CryptoError, SecretBox};
use crate::governance;
use crate::mcp::{McpServerRecord, SecretMap, TransportRecord};
use crate::model::{
    ConfigState, CustomerRecord, NetworkRecord, ProviderKeyRecord, ProviderKind, SealedSecret,
    SecretField, TeamRecord, ValueSource, VirtualKeyRecord,
};

pub use pb::Snapshot;

/// Errors of snapshot building.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot decrypt {field} of provider key {key_id} (is the secret key right?): {source}")]
    Secret {
        key_id: Uuid,
        field: &'static str,
        #[source]
        source: CryptoError,
    },
    #[error(
        "cannot decrypt extra header {header:?} of provider {provider:?} (is the secret key right?): {source}"
    )]
    Header {
        provider: String,
        header: String,
        #[source]
        source: CryptoError,
    },
    #[error("price override {id} is not valid: {reason}")]
    PriceOverride { id: Uuid, reason: String },
    #[error("cannot decrypt {entry} of MCP server {server:?} (is the secret key right?): {source}")]
    Mcp {
        server: String,
        entry: String,
        #[source]
        source: CryptoError,
    },
}

/// Builds the snapshot of `state`. `created_at_unix_ms` is stamped into it as is.
pub fn build_snapshot(
    state: &ConfigState,
    secrets: &SecretBox,
    created_at_unix_ms: i64,
) -> Result<Snapshot, SnapshotError> {
    let mut keys_by_provider: BTreeMap<&str, Vec<&ProviderKeyRecord>> = BTreeMap::new();
    for key in &state.keys {
        keys_by_provider
            .entry(key.provider.as_str())
            .or_default()
            .push(key);
    }

    let mut providers = Vec::with_capacity(state.providers.len());
    let mut sorted: Vec<_> = state.providers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for p in sorted {
        let mut keys = keys_by_provider.remove(p.name.as_str()).unwrap_or_default();
        keys.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        providers.push(pb::Provider {
            name: p.name.clone(),
            kind: kind(p.kind) as i32,
            network: Some(network(&p.name, &p.network, secrets)?),
            keys: keys
                .into_iter()
                .map(|k| provider_key(k, secrets))
                .collect::<Result<_, _>>()?,
        });
    }
    for (provider, keys) in keys_by_provider {
        // Cannot happen with the foreign key in place; never publish keys without a provider.
        tracing::warn!(
            provider,
            keys = keys.len(),
            "skipping keys of a provider that does not exist"
        );
    }

    let mut vks: Vec<&VirtualKeyRecord> = state.virtual_keys.iter().collect();
    vks.sort_by(|a, b| a.name.cmp(&b.name));
    let team_content: BTreeMap<Uuid, governance::ContentLogging> = state
        .teams
        .iter()
        .filter_map(|t| Some((t.id, t.content_logging?)))
        .collect();
    let team_tools: BTreeMap<Uuid, &Vec<String>> = state
        .teams
        .iter()
        .filter_map(|t| Some((t.id, t.mcp_tools.as_ref()?)))
        .collect();
    let virtual_keys = vks
        .into_iter()
        .map(|vk| {
            let team = vk.team_id.and_then(|t| team_content.get(&t).copied());
            let mut key = virtual_key(vk, team);
            // Every entry must allow a tool: the key's own list, then its team's.
            key.mcp_access = [
                vk.governance.mcp_tools.as_ref(),
                vk.team_id.and_then(|t| team_tools.get(&t).copied()),
            ]
            .into_iter()
            .flatten()
            .map(|tools| pb::McpAccess {
                tools: tools.clone(),
            })
            .collect();
            key
        })
        .collect();
    let mut teams: Vec<&TeamRecord> = state.teams.iter().collect();
    teams.sort_by(|a, b| a.name.cmp(&b.name));
    let mut customers: Vec<&CustomerRecord> = state.customers.iter().collect();
    customers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut mcp_servers: Vec<&McpServerRecord> = state.mcp_servers.iter().collect();
    mcp_servers.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(Snapshot {
        version: state.version,
        providers,
        virtual_keys,
        created_at_unix_ms,
        teams: teams
            .into_iter()
            .map(|t| pb::Team {
                id: t.id.to_string(),
                name: t.name.clone(),
                customer_id: t.customer_id.map(|c| c.to_string()).unwrap_or_default(),
                limits: Some(governance::limits_to_pb(&t.limits)),
            })
            .collect(),
        customers: customers
            .into_iter()
            .map(|c| pb::Customer {
                id: c.id.to_string(),
                name: c.name.clone(),
                limits: Some(governance::limits_to_pb(&c.limits)),
            })
            .collect(),
        price_overrides: state
            .price_overrides
            .iter()
            .map(|o| {
                o.entry
                    .check()
                    .map(|entry| entry.to_override(&o.id.to_string()))
                    .map_err(|e| SnapshotError::PriceOverride {
                        id: o.id,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?,
        mcp_servers: mcp_servers
            .into_iter()
            .filter(|s| s.enabled)
            .map(|s| mcp_server(s, secrets))
            .collect::<Result<_, _>>()?,
    })
}

/// An enabled MCP server: its secrets opened into `ValueRef.literal`, references kept as
/// `ValueRef.env` (as provider keys').
fn mcp_server(s: &McpServerRecord, secrets: &SecretBox) -> Result<pb::McpServer, SnapshotError> {
    let open_map = |map: SecretMap, entries: &BTreeMap<String, SealedSecret>| {
        entries
            .iter()
            .map(|(name, sealed)| {
                crate::mcp::open(secrets, s.id, map, name, sealed)
                    .map(|v| (name.clone(), value_ref(v)))
                    .map_err(|source| SnapshotError::Mcp {
                        server: s.name.clone(),
                        entry: format!("{}.{name}", map.as_str()),
                        source,
                    })
            })
            .collect::<Result<std::collections::HashMap<_, _>, _>>()
    };
    let transport = match &s.transport {
        TransportRecord::Stdio {
            command,
            args,
            env,
            cwd,
        } => pb::mcp_server::Transport::Stdio(pb::McpStdio {
            command: command.clone(),
            args: args.clone(),
            env: open_map(SecretMap::Env, env)?,
            cwd: cwd.clone().unwrap_or_default(),
        }),
        TransportRecord::Http { url, headers } => pb::mcp_server::Transport::Http(pb::McpHttp {
            url: url.clone(),
            headers: open_map(SecretMap::Headers, headers)?,
        }),
    };
    Ok(pb::McpServer {
        id: s.id.to_string(),
        name: s.name.clone(),
        transport: Some(transport),
        allowed_tools: s.allowed_tools.clone(),
        call_timeout_ms: s.call_timeout_ms,
    })
}

/// `team_content`: the content-logging setting of the key's team, if any.
fn virtual_key(
    vk: &VirtualKeyRecord,
    team_content: Option<governance::ContentLogging>,
) -> pb::VirtualKey {
    let g = &vk.governance;
    pb::VirtualKey {
        id: vk.id.to_string(),
        name: vk.name.clone(),
        key_sha256: Bytes::copy_from_slice(&vk.key_sha256),
        providers: vk.providers.clone(),
        // For data planes that predate `limits` (they never enforced it).
        monthly_budget_usd: governance::monthly(&g.limits.budgets)
            .map_or(0.0, |b| governance::usd(b.max_limit_nano_usd)),
        active: vk.active,
        limits: Some(governance::limits_to_pb(&g.limits)),
        provider_configs: g
            .provider_configs
            .iter()
            .map(governance::provider_config_to_pb)
            .collect(),
        team_id: vk.team_id.map(|t| t.to_string()).unwrap_or_default(),
        customer_id: vk.customer_id.map(|c| c.to_string()).unwrap_or_default(),
        expires_at_unix_ms: g.expires_at_unix_ms.unwrap_or(0),
        fail_open: g.fail_open,
        fallbacks: g.fallbacks.clone(),
        user_id: vk.user_id.map(|u| u.to_string()).unwrap_or_default(),
        content_logging: governance::ContentLogging::effective(g.content_logging, team_content),
        mcp_access: Vec::new(),
    }
}

fn kind(k: ProviderKind) -> pb::ProviderKind {
    match k {
        ProviderKind::Bedrock => pb::ProviderKind::Bedrock,
        ProviderKind::Anthropic => pb::ProviderKind::Anthropic,
        ProviderKind::Vertex => pb::ProviderKind::Vertex,
        ProviderKind::OpenAi => pb::ProviderKind::Openai,
    }
}

fn ms(seconds: Option<u32>) -> u32 {
    seconds.map_or(0, |s| s.saturating_mul(1000))
}

fn network(
    provider: &str,
    nc: &NetworkRecord,
    secrets: &SecretBox,
) -> Result<pb::NetworkConfig, SnapshotError> {
    let mut values = BTreeMap::new();
    for (header, sealed) in &nc.extra_headers {
        let value = sealed
            .open_header(secrets, provider, header)
            .map_err(|source| SnapshotError::Header {
                provider: provider.to_owned(),
                header: header.clone(),
                source,
            })?;
        values.insert(header.clone(), value);
    }
    // Not sealed yet (written by an older version): served as literals.
    for (header, value) in &nc.legacy_extra_headers {
        values.insert(header.clone(), ValueSource::Literal(value.clone()));
    }
    let settings = &nc.settings;
    let literal_only = values
        .iter()
        .filter_map(|(header, v)| match v {
            ValueSource::Literal(v) => Some((header.clone(), v.clone())),
            ValueSource::Env(_) => None,
        })
        .collect();
    Ok(pb::NetworkConfig {
        base_url: settings.base_url.clone().unwrap_or_default(),
        connect_timeout_ms: ms(settings.connect_timeout_in_seconds),
        request_timeout_ms: ms(settings.default_request_timeout_in_seconds),
        stream_idle_timeout_ms: ms(settings.stream_idle_timeout_in_seconds),
        response_header_timeout_ms: ms(settings.response_header_timeout_in_seconds),
        max_retries: settings.max_retries.unwrap_or_default(),
        retry_backoff_initial_ms: settings.retry_backoff_initial.unwrap_or_default(),
        retry_backoff_max_ms: settings.retry_backoff_max.unwrap_or_default(),
        extra_headers: literal_only,
        extra_header_values: values
            .into_iter()
            .map(|(header, v)| (header, value_ref(v)))
            .collect(),
    })
}

fn value_ref(v: ValueSource) -> pb::ValueRef {
    pb::ValueRef {
        source: Some(match v {
            ValueSource::Literal(s) => pb::value_ref::Source::Literal(s),
            ValueSource::Env(name) => pb::value_ref::Source::Env(name),
        }),
    }
}

fn open(
    key_id: Uuid,
    field: SecretField,
    secret: Option<&SealedSecret>,
    secrets: &SecretBox,
) -> Result<Option<pb::ValueRef>, SnapshotError> {
    secret
        .map(|s| {
            s.open(secrets, key_id, field)
                .map(value_ref)
                .map_err(|source| SnapshotError::Secret {
                    key_id,
                    field: field.as_str(),
                    source,
                })
        })
        .transpose()
}

fn provider_key(
    k: &ProviderKeyRecord,
    secrets: &SecretBox,
) -> Result<pb::ProviderKey, SnapshotError> {
    let bedrock = match &k.bedrock {
        None => None,
        Some(b) => Some(pb::BedrockKeyConfig {
            access_key: open(k.id, SecretField::AccessKey, b.access_key.as_ref(), secrets)?,
            secret_key: open(k.id, SecretField::SecretKey, b.secret_key.as_ref(), secrets)?,
            session_token: open(
                k.id,
                SecretField::SessionToken,
                b.session_token.as_ref(),
                secrets,
            )?,
            region: b.region.clone().map(value_ref),
            role_arn: b.role_arn.clone().map(value_ref),
            external_id: open(
                k.id,
                SecretField::ExternalId,
                b.external_id.as_ref(),
                secrets,
            )?,
            session_name: b.session_name.clone().unwrap_or_default(),
            arn_prefix: b.arn.clone().unwrap_or_default(),
        }),
    };
    let vertex = match &k.vertex {
        None => None,
        Some(v) => Some(pb::VertexKeyConfig {
            project_id: v.project_id.clone().map(value_ref),
            region: v.region.clone().map(value_ref),
            auth_credentials: open(
                k.id,
                SecretField::AuthCredentials,
                v.auth_credentials.as_ref(),
                secrets,
            )?,
            token_uri: v.token_uri.clone().unwrap_or_default(),
        }),
    };
    Ok(pb::ProviderKey {
        id: k.id.to_string(),
        name: k.name.clone(),
        models: k.models.clone(),
        weight: k.weight,
        aliases: k
            .aliases
            .iter()
            .map(|(a, t)| (a.clone(), t.clone()))
            .collect(),
        value: open(k.id, SecretField::Value, k.value.as_ref(), secrets)?,
        bedrock,
        enabled: k.enabled,
        vertex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::{Budget, KeyGovernance, Limits, ProviderConfig, ResetDuration};
    use crate::model::{
        BedrockKeyRecord, PriceOverrideRecord, ProviderRecord, VertexKeyRecord, now,
    };

    fn env(name: &str) -> pb::ValueRef {
        value_ref(ValueSource::Env(name.into()))
    }
    fn lit(v: &str) -> pb::ValueRef {
        value_ref(ValueSource::Literal(v.into()))
    }

    fn state(secrets: &SecretBox) -> ConfigState {
        let t = now();
        let key_id = Uuid::new_v4();
        let (team_id, customer_id) = (Uuid::new_v4(), Uuid::new_v4());
        let provider = |name: &str, kind| ProviderRecord {
            name: name.into(),
            kind,
            network: NetworkRecord::default(),
            created_at: t,
            updated_at: t,
        };
        let mut bedrock = provider("bedrock", ProviderKind::Bedrock);
        bedrock.network = NetworkRecord {
            settings: crate::model::NetworkConfig {
                base_url: Some("http://127.0.0.1:9999".into()),
                connect_timeout_in_seconds: Some(5),
                default_request_timeout_in_seconds: Some(600),
                ..crate::model::NetworkConfig::default()
            },
            extra_headers: [
                (
                    "x-team".to_string(),
                    SealedSecret::seal_header(secrets, "bedrock", "x-team", "eng").unwrap(),
                ),
                (
                    "x-proxy-token".to_string(),
                    SealedSecret::Env("ANTHROPIC_PROXY_TOKEN".into()),
                ),
            ]
            .into(),
            legacy_extra_headers: Default::default(),
        };
        ConfigState {
            version: 42,
            providers: vec![provider("zeta", ProviderKind::Anthropic), bedrock],
            keys: vec![
                ProviderKeyRecord {
                    id: key_id,
                    provider: "bedrock".into(),
                    name: "bedrock-key".into(),
                    description: None,
                    models: vec!["*".into()],
                    weight: 1.5,
                    aliases: [(
                        "claude-sonnet-4-6".to_string(),
                        "global.anthropic.claude-sonnet-4-6".to_string(),
                    )]
                    .into(),
                    enabled: true,
                    value: None,
                    bedrock: Some(BedrockKeyRecord {
                        access_key: Some(SealedSecret::Env("AWS_ACCESS_KEY_ID".into())),
                        secret_key: Some(
                            SealedSecret::seal(secrets, key_id, SecretField::SecretKey, "s3cr3t")
                                .unwrap(),
                        ),
                        region: Some(ValueSource::Literal("us-east-1".into())),
                        role_arn: Some(ValueSource::Env("ROLE".into())),
                        session_name: Some("tg".into()),
                        arn: Some("arn:aws:bedrock:us-east-1:123456789012".into()),
                        ..Default::default()
                    }),
                    vertex: None,
                    created_at: t,
                    updated_at: t,
                },
                ProviderKeyRecord {
                    id: Uuid::new_v4(),
                    provider: "gone".into(),
                    name: "orphan".into(),
                    description: None,
                    models: vec![],
                    weight: 1.0,
                    aliases: Default::default(),
                    enabled: true,
                    value: Some(SealedSecret::Env("X".into())),
                    bedrock: None,
                    vertex: None,
                    created_at: t,
                    updated_at: t,
                },
            ],
            virtual_keys: vec![VirtualKeyRecord {
                id: Uuid::new_v4(),
                name: "engineering-team".into(),
                description: None,
                key_sha256: [9u8; 32],
                value_prefix: "sk-tg-AbCd".into(),
                providers: vec!["bedrock".into()],
                active: true,
                team_id: Some(team_id),
                customer_id: None,
                user_id: None,
                governance: KeyGovernance {
                    limits: Limits {
                        budgets: vec![Budget {
                            id: Uuid::new_v4(),
                            max_limit_nano_usd: 500_000_000_000,
                            reset_duration: ResetDuration::Month,
                            calendar_aligned: true,
                            anchor_unix_ms: 7,
                            reset_at_unix_ms: None,
                        }],
                        rate_limit: None,
                        max_concurrent: Some(4),
                    },
                    provider_configs: vec![ProviderConfig {
                        provider: "bedrock".into(),
                        weight: 2.0,
                        allowed_models: vec!["regex:claude-.*".into()],
                        key_ids: vec![key_id],
                        limits: Limits::default(),
                    }],
                    expires_at_unix_ms: Some(1_900_000_000_000),
                    fail_open: true,
                    fallbacks: vec!["anthropic/claude-sonnet-4-6".into()],
                    content_logging: None,
                    mcp_tools: None,
                },
                created_at: t,
                updated_at: t,
            }],
            teams: vec![TeamRecord {
                id: team_id,
                name: "platform".into(),
                customer_id: Some(customer_id),
                limits: Limits::default(),
                member_key_limits: None,
                content_logging: None,
                mcp_tools: None,
                created_at: t,
                updated_at: t,
            }],
            price_overrides: vec![PriceOverrideRecord {
                id: Uuid::nil(),
                entry: serde_json::from_value(serde_json::json!({
                    "provider": "bedrock", "models": ["anthropic.claude-sonnet-4-6*"],
                    "input": 2.7, "output": 13.5, "cache_write_5m": 3.375,
                    "cache_write_1h": 5.4, "cache_read": 0.27, "regional_premium_percent": 10
                }))
                .unwrap(),
                created_at: t,
                updated_at: t,
            }],
            customers: vec![CustomerRecord {
                id: customer_id,
                name: "acme".into(),
                limits: Limits {
                    max_concurrent: Some(100),
                    ..Limits::default()
                },
                created_at: t,
                updated_at: t,
            }],
            mcp_servers: vec![],
        }
    }

    #[test]
    fn builds_the_contract_shape() {
        let secrets = SecretBox::new(&[3u8; 32]);
        let st = state(&secrets);
        let snap = build_snapshot(&st, &secrets, 1234).unwrap();
        assert_eq!(snap.version, 42);
        assert_eq!(snap.created_at_unix_ms, 1234);
        let names: Vec<_> = snap.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["bedrock", "zeta"],
            "sorted, orphan keys' provider absent"
        );
        let b = &snap.providers[0];
        assert_eq!(b.kind, pb::ProviderKind::Bedrock as i32);
        let net = b.network.as_ref().unwrap();
        assert_eq!(net.base_url, "http://127.0.0.1:9999");
        assert_eq!(net.connect_timeout_ms, 5_000);
        assert_eq!(net.request_timeout_ms, 600_000);
        assert_eq!(net.stream_idle_timeout_ms, 0);
        assert_eq!(
            net.extra_header_values,
            [
                ("x-proxy-token".to_string(), env("ANTHROPIC_PROXY_TOKEN")),
                ("x-team".to_string(), lit("eng")),
            ]
            .into(),
            "header values decrypted; references stay references"
        );
        assert_eq!(
            net.extra_headers,
            [("x-team".to_string(), "eng".to_string())].into(),
            "the literal-only field for older data planes has the literals"
        );
        assert_eq!(b.keys.len(), 1);
        let k = &b.keys[0];
        assert_eq!(k.id, st.keys[0].id.to_string());
        assert_eq!(k.weight, 1.5);
        assert_eq!(
            k.aliases["claude-sonnet-4-6"],
            "global.anthropic.claude-sonnet-4-6"
        );
        assert!(k.value.is_none());
        let cfg = k.bedrock.as_ref().unwrap();
        assert_eq!(cfg.access_key, Some(env("AWS_ACCESS_KEY_ID")));
        assert_eq!(cfg.secret_key, Some(lit("s3cr3t")), "literal decrypted");
        assert_eq!(cfg.region, Some(lit("us-east-1")));
        assert_eq!(cfg.role_arn, Some(env("ROLE")));
        assert_eq!(cfg.session_token, None);
        assert_eq!(cfg.session_name, "tg");
        assert_eq!(cfg.arn_prefix, "arn:aws:bedrock:us-east-1:123456789012");
        assert!(snap.providers[1].keys.is_empty());
        assert_eq!(snap.providers[1].kind, pb::ProviderKind::Anthropic as i32);

        let vk = &snap.virtual_keys[0];
        assert_eq!(&vk.key_sha256[..], &[9u8; 32]);
        assert_eq!(vk.providers, ["bedrock"]);
        assert_eq!(
            vk.monthly_budget_usd, 500.0,
            "for data planes before `limits`"
        );
        assert!(vk.active);
        let limits = vk.limits.as_ref().unwrap();
        assert_eq!(limits.budgets[0].max_limit_nano_usd, 500_000_000_000);
        assert_eq!(limits.budgets[0].reset, pb::ResetPeriod::Month as i32);
        assert_eq!(limits.max_concurrent, 4);
        let pc = &vk.provider_configs[0];
        assert_eq!((pc.provider.as_str(), pc.weight), ("bedrock", 2.0));
        assert_eq!(pc.allowed_models, ["regex:claude-.*"]);
        assert_eq!(pc.key_ids, [st.keys[0].id.to_string()]);
        assert_eq!(vk.team_id, st.teams[0].id.to_string());
        assert_eq!(vk.customer_id, "");
        assert_eq!(
            (vk.expires_at_unix_ms, vk.fail_open),
            (1_900_000_000_000, true)
        );
        assert_eq!(vk.fallbacks, ["anthropic/claude-sonnet-4-6"]);
        assert_eq!(snap.teams[0].customer_id, st.customers[0].id.to_string());
        assert_eq!(
            snap.customers[0].limits.as_ref().unwrap().max_concurrent,
            100
        );
        let o = &snap.price_overrides[0];
        assert_eq!(o.id, Uuid::nil().to_string());
        assert_eq!(o.rates.as_ref().unwrap().output, 13_500, "n$ per token");
        assert_eq!(o.regional_premium_percent, 10);

        // Deterministic: same state, same snapshot.
        assert_eq!(build_snapshot(&st, &secrets, 1234).unwrap(), snap);
    }

    #[test]
    fn wrong_secret_key_is_an_error_naming_the_field() {
        let secrets = SecretBox::new(&[3u8; 32]);
        let st = state(&secrets);
        let err = build_snapshot(&st, &SecretBox::new(&[4u8; 32]), 0).unwrap_err();
        // Providers come first (sorted): the header of `bedrock` fails before its key.
        let SnapshotError::Header {
            provider, header, ..
        } = err
        else {
            panic!("header error expected: {err}")
        };
        assert_eq!((provider.as_str(), header.as_str()), ("bedrock", "x-team"));
        let mut st = st;
        st.providers
            .iter_mut()
            .for_each(|p| p.network = NetworkRecord::default());
        let err = build_snapshot(&st, &SecretBox::new(&[4u8; 32]), 0).unwrap_err();
        let SnapshotError::Secret { key_id, field, .. } = err else {
            panic!("secret error expected: {err}")
        };
        assert_eq!(key_id, st.keys[0].id);
        assert_eq!(field, "secret_key");
    }

    #[test]
    fn ciphertext_is_bound_to_its_key_and_field() {
        let secrets = SecretBox::new(&[3u8; 32]);
        let mut st = state(&secrets);
        // Move the sealed secret_key into session_token: the associated data no longer matches.
        let b = st.keys[0].bedrock.as_mut().unwrap();
        b.session_token = b.secret_key.clone();
        let err = build_snapshot(&st, &secrets, 0).unwrap_err();
        let SnapshotError::Secret { field, .. } = err else {
            panic!("secret error expected: {err}")
        };
        assert_eq!(field, "session_token");
    }

    #[test]
    fn header_ciphertext_is_bound_to_its_provider_and_name() {
        let secrets = SecretBox::new(&[3u8; 32]);
        let mut st = state(&secrets);
        let net = &mut st.providers[1].network;
        let sealed = net.extra_headers.remove("x-team").unwrap();
        net.extra_headers.insert("x-other".into(), sealed.clone());
        let err = build_snapshot(&st, &secrets, 0).unwrap_err();
        assert!(matches!(err, SnapshotError::Header { ref header, .. } if header == "x-other"));
        // Moved to another provider under the same header name: refused too.
        st.providers[1].network.extra_headers.clear();
        st.providers[0]
            .network
            .extra_headers
            .insert("x-team".into(), sealed);
        let err = build_snapshot(&st, &secrets, 0).unwrap_err();
        assert!(matches!(err, SnapshotError::Header { ref provider, .. } if provider == "zeta"));
    }

    #[test]
    fn vertex_and_openai_providers_reach_the_snapshot() {
        let secrets = SecretBox::new(&[3u8; 32]);
        let t = now();
        let provider = |name: &str, kind, base_url: Option<&str>| ProviderRecord {
            name: name.into(),
            kind,
            network: NetworkRecord {
                settings: crate::model::NetworkConfig {
                    base_url: base_url.map(Into::into),
                    ..Default::default()
                },
                ..Default::default()
            },
            created_at: t,
            updated_at: t,
        };
        let key = |provider: &str, name: &str| ProviderKeyRecord {
            id: Uuid::new_v4(),
            provider: provider.into(),
            name: name.into(),
            description: None,
            models: vec!["*".into()],
            weight: 1.0,
            aliases: Default::default(),
            enabled: true,
            value: None,
            bedrock: None,
            vertex: None,
            created_at: t,
            updated_at: t,
        };
        const KEY_FILE: &str = r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nX\n-----END PRIVATE KEY-----\n"}"#;
        let mut sealed = key("vertex", "sealed");
        sealed.vertex = Some(VertexKeyRecord {
            project_id: Some(ValueSource::Literal("my-project-123".into())),
            region: Some(ValueSource::Env("GOOGLE_CLOUD_REGION".into())),
            auth_credentials: Some(
                SealedSecret::seal(&secrets, sealed.id, SecretField::AuthCredentials, KEY_FILE)
                    .unwrap(),
            ),
            token_uri: Some("http://127.0.0.1:9000/token".into()),
        });
        let mut by_env = key("vertex", "from-env");
        by_env.vertex = Some(VertexKeyRecord {
            project_id: Some(ValueSource::Env("GOOGLE_CLOUD_PROJECT".into())),
            region: Some(ValueSource::Literal("global".into())),
            auth_credentials: Some(SealedSecret::Env("GOOGLE_VERTEX_CREDENTIALS".into())),
            token_uri: None,
        });
        let mut openai = key("openai", "main");
        openai.value =
            Some(SealedSecret::seal(&secrets, openai.id, SecretField::Value, "sk-proj-1").unwrap());
        let ollama = key("ollama", "local");
        let st = ConfigState {
            version: 3,
            providers: vec![
                provider("vertex", ProviderKind::Vertex, None),
                provider("openai", ProviderKind::OpenAi, None),
                provider(
                    "ollama",
                    ProviderKind::OpenAi,
                    Some("http://127.0.0.1:11434/v1"),
                ),
            ],
            keys: vec![sealed.clone(), by_env, openai, ollama],
            virtual_keys: vec![],
            teams: vec![],
            customers: vec![],
            price_overrides: vec![],
            mcp_servers: vec![],
        };
        let snap = build_snapshot(&st, &secrets, 0).unwrap();
        let by_name = |n: &str| snap.providers.iter().find(|p| p.name == n).unwrap();
        assert_eq!(by_name("vertex").kind, pb::ProviderKind::Vertex as i32);
        assert_eq!(by_name("openai").kind, pb::ProviderKind::Openai as i32);
        assert_eq!(by_name("ollama").kind, pb::ProviderKind::Openai as i32);
        assert_eq!(
            by_name("ollama").network.as_ref().unwrap().base_url,
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(
            by_name("openai").network.as_ref().unwrap().base_url,
            "",
            "the default (https://api.openai.com/v1) is the data plane's"
        );
        assert_eq!(by_name("openai").keys[0].value, Some(lit("sk-proj-1")));
        assert_eq!(by_name("ollama").keys[0].value, None);
        assert!(by_name("ollama").keys[0].vertex.is_none());

        let keys = &by_name("vertex").keys;
        assert_eq!(keys[0].name, "from-env");
        let v = keys[0].vertex.as_ref().unwrap();
        assert_eq!(v.project_id, Some(env("GOOGLE_CLOUD_PROJECT")));
        assert_eq!(v.region, Some(lit("global")));
        assert_eq!(v.auth_credentials, Some(env("GOOGLE_VERTEX_CREDENTIALS")));
        assert_eq!(v.token_uri, "");
        let v = keys[1].vertex.as_ref().unwrap();
        assert_eq!(v.project_id, Some(lit("my-project-123")));
        assert_eq!(v.region, Some(env("GOOGLE_CLOUD_REGION")));
        assert_eq!(v.auth_credentials, Some(lit(KEY_FILE)), "opened");
        assert_eq!(v.token_uri, "http://127.0.0.1:9000/token");
        assert!(keys[1].bedrock.is_none() && keys[1].value.is_none());

        // The sealed key file is bound to its key and field.
        let mut moved = st.clone();
        moved.keys[0].value = sealed.vertex.unwrap().auth_credentials;
        let err = build_snapshot(&moved, &secrets, 0).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Secret { field: "value", .. }),
            "{err}"
        );
    }

    /// Values an older version left in plaintext (not sealed yet) are served as literals, and
    /// win over a sealed value of the same name.
    #[test]
    fn legacy_plaintext_header_values_are_served_as_literals() {
        let secrets = SecretBox::new(&[3u8; 32]);
        let mut st = state(&secrets);
        let net = &mut st.providers[1].network;
        net.legacy_extra_headers = [
            ("x-old".to_string(), "old".to_string()),
            ("x-proxy-token".to_string(), "plain".to_string()),
        ]
        .into();
        let snap = build_snapshot(&st, &secrets, 0).unwrap();
        let net = snap.providers[0].network.as_ref().unwrap();
        assert_eq!(net.extra_header_values["x-old"], lit("old"));
        assert_eq!(net.extra_header_values["x-proxy-token"], lit("plain"));
        assert_eq!(net.extra_header_values["x-team"], lit("eng"));
        assert_eq!(net.extra_headers.len(), 3);
    }

    #[test]
    fn enabled_mcp_servers_and_tool_allowlists_reach_the_snapshot() {
        use crate::mcp::{McpServerRecord, SecretMap, TransportRecord};
        let secrets = SecretBox::new(&[3u8; 32]);
        let mut st = state(&secrets);
        let t = crate::model::now();
        let stdio_id = Uuid::new_v4();
        let server =
            |name: &str, id: Uuid, transport: TransportRecord, enabled: bool| McpServerRecord {
                id,
                name: name.into(),
                transport,
                allowed_tools: vec!["search_*".into()],
                call_timeout_ms: 5_000,
                enabled,
                created_at: t,
                updated_at: t,
            };
        let token =
            crate::mcp::seal(&secrets, stdio_id, SecretMap::Env, "GITHUB_TOKEN", "ghp_1").unwrap();
        let http_id = Uuid::new_v4();
        let bearer = crate::mcp::seal(
            &secrets,
            http_id,
            SecretMap::Headers,
            "Authorization",
            "Bearer x",
        )
        .unwrap();
        st.mcp_servers = vec![
            server(
                "web",
                http_id,
                TransportRecord::Http {
                    url: "https://mcp.example.com/mcp".into(),
                    headers: [("Authorization".to_owned(), bearer)].into(),
                },
                true,
            ),
            server(
                "github",
                stdio_id,
                TransportRecord::Stdio {
                    command: "npx".into(),
                    args: vec!["-y".into(), "server-github".into()],
                    env: [
                        ("GITHUB_TOKEN".to_owned(), token),
                        ("LOG".to_owned(), SealedSecret::Env("MCP_LOG".into())),
                    ]
                    .into(),
                    cwd: Some("/srv".into()),
                },
                true,
            ),
            server(
                "off",
                Uuid::new_v4(),
                TransportRecord::Http {
                    url: "https://off.example.com".into(),
                    headers: BTreeMap::new(),
                },
                false,
            ),
        ];
        st.teams[0].mcp_tools = Some(vec!["github__*".into()]);
        st.virtual_keys[0].governance.mcp_tools = Some(vec![]);
        let snap = build_snapshot(&st, &secrets, 0).unwrap();
        let names: Vec<_> = snap.mcp_servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["github", "web"],
            "sorted, the disabled one left out"
        );
        let gh = &snap.mcp_servers[0];
        assert_eq!(gh.id, stdio_id.to_string());
        assert_eq!(gh.allowed_tools, ["search_*"]);
        assert_eq!(gh.call_timeout_ms, 5_000);
        let lit = |v: &str| pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(v.into())),
        };
        match gh.transport.as_ref().unwrap() {
            pb::mcp_server::Transport::Stdio(s) => {
                assert_eq!(s.command, "npx");
                assert_eq!(s.args, ["-y", "server-github"]);
                assert_eq!(s.cwd, "/srv");
                assert_eq!(s.env["GITHUB_TOKEN"], lit("ghp_1"));
                assert_eq!(
                    s.env["LOG"],
                    pb::ValueRef {
                        source: Some(pb::value_ref::Source::Env("MCP_LOG".into()))
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        match snap.mcp_servers[1].transport.as_ref().unwrap() {
            pb::mcp_server::Transport::Http(h) => {
                assert_eq!(h.url, "https://mcp.example.com/mcp");
                assert_eq!(h.headers["Authorization"], lit("Bearer x"));
            }
            other => panic!("{other:?}"),
        }
        // The key's own list (empty: no tool), then its team's.
        let access: Vec<Vec<String>> = snap.virtual_keys[0]
            .mcp_access
            .iter()
            .map(|a| a.tools.clone())
            .collect();
        assert_eq!(access, [vec![], vec!["github__*".to_owned()]]);
        // Neither set: no entry (every tool).
        st.teams[0].mcp_tools = None;
        st.virtual_keys[0].governance.mcp_tools = None;
        let snap = build_snapshot(&st, &secrets, 0).unwrap();
        assert!(snap.virtual_keys[0].mcp_access.is_empty());
        // A ciphertext moved to another server does not open.
        let other = Uuid::new_v4();
        st.mcp_servers[1].id = other;
        let err = build_snapshot(&st, &secrets, 0).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Mcp { server, entry, .. }
                if server == "github" && entry == "env.GITHUB_TOKEN"),
            "{err}"
        );
    }
}
