//! Model routing: which provider, which upstream model id and which provider key serve a request.
//! Pure: no I/O; randomness comes from the caller.
//!
//! * `provider/model` selects the provider explicitly (`bedrock/global.anthropic.claude-sonnet-4-6`).
//! * A bare name is looked up in the aliases of the keys of every provider the virtual key may use
//!   (`claude-sonnet-4-6` -> `global.anthropic.claude-sonnet-4-6`); failing that, when the virtual
//!   key can reach exactly one provider, the name goes to that provider unchanged, except a bare
//!   Claude name ([`is_bare_claude_name`]) for Bedrock, which only the Anthropic API serves as it
//!   is: that is a [`RouteError::NoAlias`] naming the alias or setting to add.
//! * Among the keys that serve the model, one is picked at random in proportion to its weight.
//! * A virtual key's provider config for the chosen provider narrows this: only its `key_ids`
//!   are candidates, and the model (as requested or as resolved) must match its
//!   `allowed_models`, else [`RouteError::ModelNotAllowed`].

use std::sync::Arc;

use crate::runtime::{Provider, ProviderKey, ProviderKind, Runtime, VirtualKey};

/// Where a request goes.
#[derive(Debug)]
pub struct Route<'rt> {
    pub provider: &'rt Arc<Provider>,
    pub key: &'rt ProviderKey,
    /// Position of `key` in `provider.keys`.
    pub key_index: usize,
    /// Model id sent upstream.
    pub upstream_model: &'rt str,
    /// Whether `upstream_model` came from an alias.
    pub via_alias: bool,
}

/// Why a request cannot be routed. Messages are safe to show the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("provider {0:?} is not configured")]
    UnknownProvider(String),
    #[error("this virtual key may not use provider {0:?}")]
    ProviderNotAllowed(String),
    #[error(
        "model {0:?} is not configured: use provider/model (e.g. bedrock/<model id>) or an alias defined on a provider key"
    )]
    UnknownModel(String),
    #[error("no enabled key of provider {provider:?} serves model {model:?}")]
    NoKey { provider: String, model: String },
    #[error("this virtual key may not use model {model:?} on provider {provider:?}")]
    ModelNotAllowed { provider: String, model: String },
    /// A bare Claude name that no alias maps to a model id of the provider.
    #[error("{}", no_alias_message(model, provider))]
    NoAlias { model: String, provider: String },
}

/// Whether `name` is a bare Claude model name as the Anthropic API spells it
/// (`claude-opus-4-8`, `claude-sonnet-4-5-20250929`): it starts with `claude-` (any case) and
/// has no `/`, `:` or `.`, so it is neither `provider/model`, nor a Bedrock model or inference
/// profile id (`anthropic.claude-…`, `global.anthropic.claude-…`), nor an ARN. The Anthropic API
/// takes such names natively; Bedrock answers "The provided model identifier is invalid".
pub fn is_bare_claude_name(name: &str) -> bool {
    name.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("claude-"))
        && name.len() > 7
        && !name.contains(['/', ':', '.'])
}

/// What to tell a client whose bare Claude name has no alias: the Claude Code setting for the
/// model's tier (with a Bedrock id AWS publishes for it) or the alias to add.
fn no_alias_message(model: &str, provider: &str) -> String {
    let lower = model.to_ascii_lowercase();
    let (setting, example) = if lower.contains("opus") {
        (
            "ANTHROPIC_DEFAULT_OPUS_MODEL",
            "global.anthropic.claude-opus-4-6-v1",
        )
    } else if lower.contains("haiku") {
        (
            "ANTHROPIC_DEFAULT_HAIKU_MODEL",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        )
    } else if lower.contains("sonnet") {
        (
            "ANTHROPIC_DEFAULT_SONNET_MODEL",
            "global.anthropic.claude-sonnet-4-6",
        )
    } else {
        ("ANTHROPIC_MODEL", "global.anthropic.claude-sonnet-4-6")
    };
    format!(
        "model {model:?} has no alias on provider {provider:?}: set {setting} to \
         {provider}/<model id> (e.g. {provider}/{example}), or add {model:?}: \"<model id or \
         inference profile>\" to the aliases of a key of provider {provider:?}"
    )
}

/// Picks a route for `requested` (the request's `model` field). `pick` receives the total weight
/// and returns a number in `[0, total)`; pass a random source in production.
pub fn route<'rt>(
    rt: &'rt Runtime,
    vk: &VirtualKey,
    requested: &'rt str,
    pick: impl FnOnce(f64) -> f64,
) -> Result<Route<'rt>, RouteError> {
    route_avoiding(rt, vk, requested, &[], pick)
}

/// [`route`], leaving out the provider keys named in `avoid` (ids of keys an attempt of this
/// request already failed on): [`RouteError::NoKey`] when no other key serves the model.
pub fn route_avoiding<'rt>(
    rt: &'rt Runtime,
    vk: &VirtualKey,
    requested: &'rt str,
    avoid: &[Arc<str>],
    pick: impl FnOnce(f64) -> f64,
) -> Result<Route<'rt>, RouteError> {
    if let Some((prefix, model)) = requested.split_once('/')
        && let Some(provider) = rt.provider(prefix)
    {
        if !vk.allows_provider(prefix) {
            return Err(RouteError::ProviderNotAllowed(prefix.to_owned()));
        }
        return pick_key(provider, vk, model, avoid, pick);
    }
    // A bare name: the providers whose keys alias it, among those the virtual key may use.
    let lowered = requested.to_ascii_lowercase();
    let mut allowed = rt
        .providers
        .values()
        .filter(|p| vk.allows_provider(&p.name));
    let aliased: Vec<&Arc<Provider>> = allowed
        .clone()
        .filter(|p| p.keys.iter().any(|k| k.aliases.contains_key(&lowered)))
        .collect();
    match aliased.as_slice() {
        [one] => return pick_key(one, vk, requested, avoid, pick),
        [] => {}
        // Several providers alias the name: prefer the first by name for determinism.
        many => {
            let first = many
                .iter()
                .min_by(|a, b| a.name.cmp(&b.name))
                .copied()
                .ok_or_else(|| RouteError::UnknownModel(requested.to_owned()))?;
            return pick_key(first, vk, requested, avoid, pick);
        }
    }
    // `name/...` with a name that is no configured provider (ARNs, which contain `/` after
    // `:`-separated fields, are model ids and fall through).
    if let Some((prefix, _)) = requested.split_once('/')
        && !prefix.contains(':')
    {
        return Err(RouteError::UnknownProvider(prefix.to_owned()));
    }
    match (allowed.next(), allowed.next()) {
        (Some(only), None)
            if only.kind == ProviderKind::Bedrock && is_bare_claude_name(requested) =>
        {
            Err(RouteError::NoAlias {
                model: requested.to_owned(),
                provider: only.name.to_string(),
            })
        }
        (Some(only), None) => pick_key(only, vk, requested, avoid, pick),
        _ => Err(RouteError::UnknownModel(requested.to_owned())),
    }
}

fn pick_key<'rt>(
    provider: &'rt Arc<Provider>,
    vk: &VirtualKey,
    model: &'rt str,
    avoid: &[Arc<str>],
    pick: impl FnOnce(f64) -> f64,
) -> Result<Route<'rt>, RouteError> {
    let config = vk.config(&provider.name);
    let eligible = || {
        provider.keys.iter().enumerate().filter_map(move |(i, k)| {
            let (resolved, via_alias) = k.resolve(model);
            (k.models.allows(model, resolved)
                && config.is_none_or(|c| c.allows_key(&k.id))
                && !avoid.iter().any(|a| **a == *k.id))
            .then_some((i, k, resolved, via_alias))
        })
    };
    let total: f64 = eligible().map(|(_, k, _, _)| k.weight).sum();
    let mut target = pick(total);
    let mut last = None;
    for (key_index, key, resolved, via_alias) in eligible() {
        last = Some((key_index, key, resolved, via_alias));
        if target < key.weight {
            break;
        }
        target -= key.weight;
    }
    let (key_index, key, upstream_model, via_alias) = last.ok_or_else(|| RouteError::NoKey {
        provider: provider.name.to_string(),
        model: model.to_owned(),
    })?;
    if let Some(c) = config
        && !c.allows_model(model, upstream_model)
    {
        return Err(RouteError::ModelNotAllowed {
            provider: provider.name.to_string(),
            model: model.to_owned(),
        });
    }
    Ok(Route {
        provider,
        key,
        key_index,
        upstream_model,
        via_alias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_proto::config::v1 as pb;
    use tollgate_proto::model_pattern::ModelPattern;

    fn lit(s: &str) -> Option<pb::ValueRef> {
        Some(pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(s.into())),
        })
    }

    fn bedrock_key(
        name: &str,
        weight: f64,
        models: &[&str],
        aliases: &[(&str, &str)],
    ) -> pb::ProviderKey {
        pb::ProviderKey {
            id: format!("id-{name}"),
            name: name.into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            weight,
            aliases: aliases
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            value: None,
            bedrock: Some(pb::BedrockKeyConfig {
                access_key: lit("AKID"),
                secret_key: lit("secret"),
                region: lit("us-east-1"),
                ..Default::default()
            }),
            enabled: true,
        }
    }

    fn runtime() -> Runtime {
        Runtime::compile(&pb::Snapshot {
            version: 1,
            providers: vec![
                pb::Provider {
                    name: "bedrock".into(),
                    kind: pb::ProviderKind::Bedrock as i32,
                    network: None,
                    keys: vec![
                        bedrock_key(
                            "a",
                            1.0,
                            &["*"],
                            &[("claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6")],
                        ),
                        bedrock_key(
                            "b",
                            3.0,
                            &["*"],
                            &[("Claude-Sonnet-4-6", "us.anthropic.claude-sonnet-4-6")],
                        ),
                        bedrock_key(
                            "haiku-only",
                            1.0,
                            &["global.anthropic.claude-haiku-4-5-20251001-v1:0"],
                            &[],
                        ),
                    ],
                },
                pb::Provider {
                    name: "anthropic".into(),
                    kind: pb::ProviderKind::Anthropic as i32,
                    network: None,
                    keys: vec![pb::ProviderKey {
                        id: "ant".into(),
                        name: "ant".into(),
                        models: vec!["*".into()],
                        weight: 1.0,
                        value: lit("sk-ant"),
                        enabled: true,
                        ..Default::default()
                    }],
                },
            ],
            virtual_keys: vec![],
            created_at_unix_ms: 0,
            ..Default::default()
        })
        .expect("valid snapshot")
    }

    fn vk(providers: &[&str]) -> VirtualKey {
        VirtualKey {
            id: "vk".into(),
            name: "vk".into(),
            providers: providers.iter().map(|p| Arc::from(*p)).collect(),
            active: true,
            expires_at_unix_ms: 0,
            fallbacks: Vec::new(),
            configs: Vec::new(),
        }
    }

    /// A virtual key restricted on Bedrock to `key_ids` and `models`.
    fn restricted(key_ids: &[&str], models: &[&str]) -> VirtualKey {
        VirtualKey {
            configs: vec![crate::runtime::KeyProviderConfig {
                provider: "bedrock".into(),
                allowed_models: models
                    .iter()
                    .map(|m| ModelPattern::parse(m).expect("pattern"))
                    .collect(),
                key_ids: key_ids.iter().map(|k| Arc::from(*k)).collect(),
            }],
            ..vk(&["bedrock"])
        }
    }

    /// A provider config narrows the keys picked and the models allowed (as requested or as
    /// resolved by an alias).
    #[test]
    fn provider_configs_restrict_keys_and_models() {
        let rt = runtime();
        // Only key b, whatever the draw (a has weight 1 of 4 and would win a draw of 0).
        let only_b = restricted(&["id-b"], &[]);
        for draw in [0.0, 0.5, 0.99] {
            let r = route(&rt, &only_b, "claude-sonnet-4-6", |t| draw * t).expect("route");
            assert_eq!(r.key.id.as_ref(), "id-b");
            assert_eq!(r.upstream_model, "us.anthropic.claude-sonnet-4-6");
        }
        // No allowed key serves the model.
        let haiku_key = restricted(&["id-haiku-only"], &[]);
        assert!(matches!(
            route(&rt, &haiku_key, "claude-sonnet-4-6", |_| 0.0),
            Err(RouteError::NoKey { .. })
        ));
        // Models: the requested name or the resolved id must match.
        let sonnet = restricted(&[], &["claude-sonnet-*"]);
        assert!(route(&rt, &sonnet, "claude-sonnet-4-6", |_| 0.0).is_ok());
        let by_id = restricted(&[], &["regex:.*\\.anthropic\\.claude-sonnet-4-6"]);
        assert!(route(&rt, &by_id, "claude-sonnet-4-6", |_| 0.0).is_ok());
        let haiku = restricted(&[], &["regex:claude-haiku-.*"]);
        assert_eq!(
            route(
                &rt,
                &haiku,
                "bedrock/us.anthropic.claude-sonnet-4-6",
                |_| 0.0
            )
            .map(|r| r.upstream_model),
            Err(RouteError::ModelNotAllowed {
                provider: "bedrock".into(),
                model: "us.anthropic.claude-sonnet-4-6".into()
            })
        );
    }

    #[test]
    fn provider_prefix_selects_the_provider_and_keeps_the_id() {
        let rt = runtime();
        let r = route(
            &rt,
            &vk(&[]),
            "bedrock/global.anthropic.claude-sonnet-4-6",
            |_| 0.0,
        )
        .expect("route");
        assert_eq!(&*r.provider.name, "bedrock");
        assert_eq!(r.upstream_model, "global.anthropic.claude-sonnet-4-6");
        assert!(!r.via_alias);
    }

    #[test]
    fn bare_alias_resolves_case_insensitively_through_the_picked_key() {
        let rt = runtime();
        let r = route(&rt, &vk(&[]), "CLAUDE-sonnet-4-6", |_| 0.5).expect("route");
        assert_eq!(&*r.key.name, "a");
        assert_eq!(r.upstream_model, "global.anthropic.claude-sonnet-4-6");
        assert!(r.via_alias);
        let r = route(&rt, &vk(&[]), "claude-sonnet-4-6", |_| 1.5).expect("route");
        assert_eq!(&*r.key.name, "b");
        assert_eq!(r.upstream_model, "us.anthropic.claude-sonnet-4-6");
    }

    #[test]
    fn weights_decide_the_share_of_each_key() {
        let rt = runtime();
        // Keys a (1), b (3) and haiku-only (not eligible for sonnet): total weight 4.
        let mut totals = vec![];
        let picks: Vec<String> = [0.0, 0.99, 1.0, 2.5, 3.99]
            .iter()
            .map(|x| {
                route(&rt, &vk(&[]), "claude-sonnet-4-6", |t| {
                    totals.push(t);
                    *x
                })
                .expect("route")
                .key
                .name
                .to_string()
            })
            .collect();
        assert!(totals.iter().all(|t| (*t - 4.0).abs() < 1e-9), "{totals:?}");
        assert_eq!(picks, ["a", "a", "b", "b", "b"]);
    }

    #[test]
    fn model_allow_lists_are_honoured() {
        let rt = runtime();
        let r = route(
            &rt,
            &vk(&["bedrock"]),
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            |t| t - 0.01,
        )
        .expect("route");
        assert_eq!(&*r.key.name, "haiku-only");
    }

    #[test]
    fn virtual_key_provider_restrictions_apply() {
        let rt = runtime();
        assert_eq!(
            route(&rt, &vk(&["bedrock"]), "anthropic/claude-opus-4-5", |_| 0.0)
                .map(|r| r.upstream_model),
            Err(RouteError::ProviderNotAllowed("anthropic".into()))
        );
        // With only one reachable provider a bare unknown name goes there unchanged.
        let r = route(&rt, &vk(&["anthropic"]), "claude-opus-4-5", |_| 0.0).expect("route");
        assert_eq!(&*r.provider.name, "anthropic");
        assert_eq!(r.upstream_model, "claude-opus-4-5");
    }

    #[test]
    fn bare_claude_names_are_told_apart_from_bedrock_ids_and_arns() {
        for bare in [
            "claude-opus-4-8",
            "claude-opus-5-5",
            "Claude-Sonnet-4-5-20250929",
            "claude-haiku-4-5",
        ] {
            assert!(is_bare_claude_name(bare), "{bare}");
        }
        for not_bare in [
            "claude-",
            "claude",
            "anthropic.claude-opus-4-6-v1",
            "global.anthropic.claude-opus-4-6-v1",
            "claude-3-5-haiku-20241022-v1:0",
            "bedrock/claude-opus-4-8",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            "opus",
            "my-claude-alias",
        ] {
            assert!(!is_bare_claude_name(not_bare), "{not_bare}");
        }
    }

    #[test]
    fn a_bare_claude_name_without_alias_is_not_sent_to_bedrock() {
        let rt = runtime();
        let err = route(&rt, &vk(&["bedrock"]), "claude-opus-4-8", |_| 0.0)
            .map(|r| r.upstream_model)
            .expect_err("no alias");
        assert_eq!(
            err,
            RouteError::NoAlias {
                model: "claude-opus-4-8".into(),
                provider: "bedrock".into()
            }
        );
        let message = err.to_string();
        for part in [
            r#"model "claude-opus-4-8" has no alias on provider "bedrock""#,
            "ANTHROPIC_DEFAULT_OPUS_MODEL",
            "bedrock/global.anthropic.claude-opus-4-6-v1",
            r#"add "claude-opus-4-8": "#,
        ] {
            assert!(message.contains(part), "{message}");
        }
        let haiku = route(&rt, &vk(&["bedrock"]), "claude-haiku-4-8", |_| 0.0)
            .map(|r| r.upstream_model)
            .expect_err("no alias")
            .to_string();
        assert!(
            haiku.contains("ANTHROPIC_DEFAULT_HAIKU_MODEL")
                && haiku.contains("global.anthropic.claude-haiku-4-5-20251001-v1:0"),
            "{haiku}"
        );
        // An aliased bare name still routes; Bedrock ids and ARNs still go to the only provider.
        let r = route(&rt, &vk(&["bedrock"]), "claude-sonnet-4-6", |_| 0.0).expect("alias");
        assert_eq!(r.upstream_model, "global.anthropic.claude-sonnet-4-6");
        let r = route(
            &rt,
            &vk(&["bedrock"]),
            "global.anthropic.claude-opus-4-6-v1",
            |_| 0.0,
        )
        .expect("bedrock id");
        assert_eq!(r.upstream_model, "global.anthropic.claude-opus-4-6-v1");
        // The Anthropic API takes bare names natively.
        let r = route(&rt, &vk(&["anthropic"]), "claude-opus-4-8", |_| 0.0).expect("anthropic");
        assert_eq!(&*r.provider.name, "anthropic");
        assert_eq!(r.upstream_model, "claude-opus-4-8");
    }

    #[test]
    fn unknown_names_are_reported() {
        let rt = runtime();
        assert_eq!(
            route(&rt, &vk(&[]), "mystery-model", |_| 0.0).map(|r| r.upstream_model),
            Err(RouteError::UnknownModel("mystery-model".into()))
        );
        assert_eq!(
            route(&rt, &vk(&[]), "vertex/claude", |_| 0.0).map(|r| r.upstream_model),
            Err(RouteError::UnknownProvider("vertex".into()))
        );
        // Even when the key reaches a single provider, an unknown prefix is not sent upstream.
        assert_eq!(
            route(&rt, &vk(&["bedrock"]), "openai/gpt-5", |_| 0.0).map(|r| r.upstream_model),
            Err(RouteError::UnknownProvider("openai".into()))
        );
        // ARNs contain `/` but are model ids.
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        let r = route(&rt, &vk(&["bedrock"]), arn, |_| 0.0).expect("route");
        assert_eq!(r.upstream_model, arn);
    }
}
