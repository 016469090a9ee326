//! Model routing: which provider, which upstream model id and which provider key serve a request.
//! Pure: no I/O; randomness comes from the caller.
//!
//! * `provider/model` selects the provider explicitly (`bedrock/global.anthropic.claude-sonnet-4-6`).
//! * A bare name is looked up in the aliases of the keys of every provider the virtual key may use
//!   (`claude-sonnet-4-6` -> `global.anthropic.claude-sonnet-4-6`); failing that, when the virtual
//!   key can reach exactly one provider, the name goes to that provider unchanged, except a bare
//!   Claude name ([`is_bare_claude_name`]) for Bedrock, which only the Anthropic API serves as it
//!   is: that is a [`RouteError::NoAlias`] naming the alias or setting to add.
//! * A bare name several providers alias goes to one of them in proportion to the weights of
//!   the virtual key's provider configs (1 for a provider without one), among those with a key
//!   left to try.
//! * Among the keys that serve the model, one is picked in proportion to its weight: at random
//!   ([`Pick::Draw`]), or, for a request that names its session, by weighted rendezvous hashing
//!   of the session id ([`Pick::Sticky`]): every request of the session, on every data plane,
//!   goes to the same key while that key can serve, and only the sessions of a key that fails
//!   or is ejected move (to their next-ranked key), so prompt caches stay warm.
//! * Keys the request already failed on, and keys ejected by outlier detection
//!   ([`crate::health`]), are left out ([`Exclude`]); ejected keys are a last resort.
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

/// How a route chooses among weighted candidates (providers, then keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    /// A uniform number in `[0, 1)`: weighted random choice.
    Draw(f64),
    /// The hash of a session id ([`session_hash`]): weighted rendezvous choice, the same for
    /// every request of the session while its candidates are the same.
    Sticky(u64),
}

impl Pick {
    /// A random pick, or the session's when the request names one.
    pub fn for_session(session: Option<&str>) -> Pick {
        match session {
            Some(id) => Pick::Sticky(session_hash(id)),
            None => Pick::Draw(rand::random::<f64>()),
        }
    }

    /// Chooses among `items` (each with its weight and a stable id), in proportion to the
    /// weights. Returns the chosen item and the pick for a choice below it: for a draw, the
    /// position within the chosen item's share, rescaled to `[0, 1)` (so the two levels stay
    /// independent); for a session, itself.
    fn choose<T>(
        self,
        items: impl Iterator<Item = T> + Clone,
        weight: impl Fn(&T) -> f64,
        id: impl Fn(&T) -> &str,
    ) -> Option<(T, Pick)> {
        match self {
            Pick::Draw(x) => {
                let total: f64 = items.clone().map(|i| weight(&i)).sum();
                let mut target = x.clamp(0.0, 1.0) * total;
                let mut last = None;
                for item in items {
                    let w = weight(&item);
                    if target < w {
                        let rest = if w > 0.0 { target / w } else { 0.0 };
                        return Some((item, Pick::Draw(rest.clamp(0.0, 1.0))));
                    }
                    target -= w;
                    last = Some(item);
                }
                // Rounding left the target at the very end: the last item.
                last.map(|item| (item, Pick::Draw(0.0)))
            }
            Pick::Sticky(session) => items
                .map(|item| {
                    let score = rendezvous_score(session, id(&item), weight(&item));
                    (item, score)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(item, _)| (item, self)),
        }
    }
}

/// A stable 64-bit hash (FNV-1a) of a session id: the same on every data plane and release, so
/// a session's requests land on the same key wherever they are served.
pub fn session_hash(id: &str) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, id.as_bytes())
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Weighted rendezvous (highest random weight) score of `candidate` for a session:
/// `-weight / ln(u)` with `u` in `(0, 1)` from the hash of both. The candidate with the highest
/// score wins; each wins a share of sessions proportional to its weight, and removing a
/// candidate moves only the sessions it had.
fn rendezvous_score(session: u64, candidate: &str, weight: f64) -> f64 {
    // FNV's low bits mix poorly on their own: finish with a 64-bit mixer (splitmix64's).
    let mut h = fnv1a(session, candidate.as_bytes());
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // 53 bits into (0, 1).
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight / u.ln()
}

/// Keys a route must not use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exclude<'a> {
    /// Keys this request's attempts already failed on.
    pub keys: &'a [Arc<str>],
    /// Leave out keys outlier detection has ejected at this instant ([`crate::health::now_ms`]);
    /// `None`: ejected keys are candidates too (the last resort).
    pub ejected_at: Option<u64>,
}

impl Exclude<'_> {
    fn allows(&self, key: &ProviderKey) -> bool {
        !self.keys.iter().any(|a| **a == *key.id)
            && self.ejected_at.is_none_or(|now| key.health.available(now))
    }
}

/// Picks a route for `requested` (the request's `model` field), any key allowed.
pub fn route<'rt>(
    rt: &'rt Runtime,
    vk: &VirtualKey,
    requested: &'rt str,
    pick: Pick,
) -> Result<Route<'rt>, RouteError> {
    route_excluding(rt, vk, requested, Exclude::default(), pick)
}

/// [`route`], leaving out the keys `exclude` names: [`RouteError::NoKey`] when no other key
/// serves the model.
pub fn route_excluding<'rt>(
    rt: &'rt Runtime,
    vk: &VirtualKey,
    requested: &'rt str,
    exclude: Exclude<'_>,
    pick: Pick,
) -> Result<Route<'rt>, RouteError> {
    if let Some((prefix, model)) = requested.split_once('/')
        && let Some(provider) = rt.provider(prefix)
    {
        if !vk.allows_provider(prefix) {
            return Err(RouteError::ProviderNotAllowed(prefix.to_owned()));
        }
        return pick_key(provider, vk, model, exclude, pick);
    }
    // A bare name: the providers whose keys alias it, among those the virtual key may use.
    let lowered = requested.to_ascii_lowercase();
    let mut allowed = rt
        .providers
        .values()
        .filter(|p| vk.allows_provider(&p.name));
    let mut aliased: Vec<&Arc<Provider>> = allowed
        .clone()
        .filter(|p| p.keys.iter().any(|k| k.aliases.contains_key(&lowered)))
        .collect();
    match aliased.as_slice() {
        [one] => return pick_key(one, vk, requested, exclude, pick),
        [] => {}
        // Several providers alias the name: one of those with a key left, by the virtual key's
        // provider weights (in name order, so every data plane ranks them alike).
        _ => {
            aliased.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            let open = aliased
                .iter()
                .copied()
                .filter(|p| eligible(p, vk, requested, exclude).next().is_some());
            let weight = |p: &&Arc<Provider>| vk.config(&p.name).map_or(1.0, |c| c.weight);
            return match pick.choose(open, weight, |p| &p.name) {
                Some((provider, below)) => pick_key(provider, vk, requested, exclude, below),
                // None has a key left: the first one's error says so.
                None => pick_key(aliased[0], vk, requested, exclude, pick),
            };
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
        (Some(only), None) => pick_key(only, vk, requested, exclude, pick),
        _ => Err(RouteError::UnknownModel(requested.to_owned())),
    }
}

/// The keys of `provider` that may serve `model` for `vk`, with the id each resolves it to and
/// whether through an alias.
fn eligible<'rt, 'x>(
    provider: &'rt Arc<Provider>,
    vk: &'x VirtualKey,
    model: &'rt str,
    exclude: Exclude<'x>,
) -> impl Iterator<Item = (usize, &'rt ProviderKey, &'rt str, bool)> + Clone + 'x
where
    'rt: 'x,
{
    let config = vk.config(&provider.name);
    provider.keys.iter().enumerate().filter_map(move |(i, k)| {
        let (resolved, via_alias) = k.resolve(model);
        (k.models.allows(model, resolved)
            && config.is_none_or(|c| c.allows_key(&k.id))
            && exclude.allows(k))
        .then_some((i, k, resolved, via_alias))
    })
}

fn pick_key<'rt>(
    provider: &'rt Arc<Provider>,
    vk: &VirtualKey,
    model: &'rt str,
    exclude: Exclude<'_>,
    pick: Pick,
) -> Result<Route<'rt>, RouteError> {
    let config = vk.config(&provider.name);
    let chosen = pick.choose(
        eligible(provider, vk, model, exclude),
        |(_, k, _, _)| k.weight,
        |(_, k, _, _)| &k.id,
    );
    let ((key_index, key, upstream_model, via_alias), _) =
        chosen.ok_or_else(|| RouteError::NoKey {
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
            vertex: None,
        }
    }

    fn runtime() -> Runtime {
        Runtime::compile(&snapshot()).expect("valid snapshot")
    }

    fn snapshot() -> pb::Snapshot {
        pb::Snapshot {
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
        }
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
            owner: Default::default(),
            content_max_bytes: None,
            mcp_access: Default::default(),
        }
    }

    /// A virtual key restricted on Bedrock to `key_ids` and `models`.
    fn restricted(key_ids: &[&str], models: &[&str]) -> VirtualKey {
        VirtualKey {
            configs: vec![crate::runtime::KeyProviderConfig {
                provider: "bedrock".into(),
                weight: 1.0,
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
            let r = route(&rt, &only_b, "claude-sonnet-4-6", Pick::Draw(draw)).expect("route");
            assert_eq!(r.key.id.as_ref(), "id-b");
            assert_eq!(r.upstream_model, "us.anthropic.claude-sonnet-4-6");
        }
        // No allowed key serves the model.
        let haiku_key = restricted(&["id-haiku-only"], &[]);
        assert!(matches!(
            route(&rt, &haiku_key, "claude-sonnet-4-6", Pick::Draw(0.0)),
            Err(RouteError::NoKey { .. })
        ));
        // Models: the requested name or the resolved id must match.
        let sonnet = restricted(&[], &["claude-sonnet-*"]);
        assert!(route(&rt, &sonnet, "claude-sonnet-4-6", Pick::Draw(0.0)).is_ok());
        let by_id = restricted(&[], &["regex:.*\\.anthropic\\.claude-sonnet-4-6"]);
        assert!(route(&rt, &by_id, "claude-sonnet-4-6", Pick::Draw(0.0)).is_ok());
        let haiku = restricted(&[], &["regex:claude-haiku-.*"]);
        assert_eq!(
            route(
                &rt,
                &haiku,
                "bedrock/us.anthropic.claude-sonnet-4-6",
                Pick::Draw(0.0)
            )
            .map(|r| r.upstream_model),
            Err(RouteError::ModelNotAllowed {
                provider: "bedrock".into(),
                model: "us.anthropic.claude-sonnet-4-6".into()
            })
        );
    }

    fn key_of(rt: &Runtime, vk: &VirtualKey, model: &str, pick: Pick) -> String {
        route(rt, vk, model, pick)
            .expect("route")
            .key
            .name
            .to_string()
    }

    /// A session's requests all go to one key; sessions spread over the keys by weight; a key
    /// that drops out moves only its own sessions, and only while it is out.
    #[test]
    fn sessions_stick_to_a_key_and_move_only_when_it_fails() {
        let rt = runtime();
        let all = vk(&[]);
        let sessions: Vec<String> = (0..4000).map(|i| format!("session-{i}")).collect();
        let first: Vec<String> = sessions
            .iter()
            .map(|s| key_of(&rt, &all, "claude-sonnet-4-6", Pick::for_session(Some(s))))
            .collect();
        for (s, k) in sessions.iter().zip(&first).take(50) {
            for _ in 0..3 {
                assert_eq!(
                    &key_of(&rt, &all, "claude-sonnet-4-6", Pick::for_session(Some(s))),
                    k
                );
            }
        }
        // Weights 1 (a) and 3 (b): a quarter of the sessions on a, within sampling noise
        // (the standard deviation is under 0.7 %).
        let on_a = first.iter().filter(|k| *k == "a").count() as f64 / 4000.0;
        assert!((0.22..0.28).contains(&on_a), "share of key a: {on_a}");
        // Key a fails (or is ejected): its sessions move to b, b's sessions stay.
        let failed = [Arc::from("id-a")];
        let without_a = Exclude {
            keys: &failed,
            ejected_at: None,
        };
        for (s, k) in sessions.iter().zip(&first).take(200) {
            let r = route_excluding(
                &rt,
                &all,
                "claude-sonnet-4-6",
                without_a,
                Pick::for_session(Some(s)),
            )
            .expect("route");
            assert_eq!(&*r.key.name, "b", "{s} was on {k}");
        }
        // Back in service: every session is where it was.
        for (s, k) in sessions.iter().zip(&first).take(200) {
            assert_eq!(
                &key_of(&rt, &all, "claude-sonnet-4-6", Pick::for_session(Some(s))),
                k
            );
        }
    }

    /// A bare name that several providers alias goes to them by the virtual key's provider
    /// weights, and to the other provider when one has no key left.
    #[test]
    fn provider_weights_split_a_name_several_providers_serve() {
        let mut snap = snapshot();
        let anthropic = snap
            .providers
            .iter_mut()
            .find(|p| p.name == "anthropic")
            .expect("anthropic");
        anthropic.keys[0]
            .aliases
            .insert("claude-sonnet-4-6".into(), "claude-sonnet-4-6".into());
        let rt = Runtime::compile(&snap).expect("valid");
        let config = |provider: &str, weight: f64| crate::runtime::KeyProviderConfig {
            provider: provider.into(),
            weight,
            allowed_models: Vec::new(),
            key_ids: Vec::new(),
        };
        let split = VirtualKey {
            configs: vec![config("bedrock", 1.0), config("anthropic", 3.0)],
            ..vk(&[])
        };
        // Providers in name order: anthropic (3 of 4), then bedrock; within bedrock the
        // draw's remainder picks the key (a is the first quarter of bedrock's share).
        let provider_of = |x: f64| {
            let r = route(&rt, &split, "claude-sonnet-4-6", Pick::Draw(x)).expect("route");
            format!("{}/{}", r.provider.name, r.key.name)
        };
        assert_eq!(provider_of(0.0), "anthropic/ant");
        assert_eq!(provider_of(0.74), "anthropic/ant");
        assert_eq!(provider_of(0.76), "bedrock/a");
        assert_eq!(provider_of(0.99), "bedrock/b");
        // Sessions split about 3 to 1.
        let on_anthropic = (0..2000)
            .filter(|i| {
                let s = format!("s{i}");
                route(
                    &rt,
                    &split,
                    "claude-sonnet-4-6",
                    Pick::for_session(Some(&s)),
                )
                .expect("route")
                .provider
                .name
                .as_ref()
                    == "anthropic"
            })
            .count() as f64
            / 2000.0;
        assert!((0.71..0.79).contains(&on_anthropic), "{on_anthropic}");
        // Anthropic's only key failed: the name goes to Bedrock.
        let failed = [Arc::from("ant")];
        let r = route_excluding(
            &rt,
            &split,
            "claude-sonnet-4-6",
            Exclude {
                keys: &failed,
                ejected_at: None,
            },
            Pick::Draw(0.0),
        )
        .expect("route");
        assert_eq!(&*r.provider.name, "bedrock");
    }

    /// Ejected keys are left out while `ejected_at` is given, and are candidates without it.
    #[test]
    fn ejected_keys_are_left_out_until_the_last_resort() {
        let rt = runtime();
        let b = &rt.provider("bedrock").expect("bedrock").keys[1];
        let now = crate::health::now_ms();
        for _ in 0..crate::health::EJECT_AFTER {
            b.health.record(crate::health::Verdict::Failure, now);
        }
        let healthy = Exclude {
            keys: &[],
            ejected_at: Some(now),
        };
        for x in [0.0, 0.5, 0.99] {
            let r = route_excluding(&rt, &vk(&[]), "claude-sonnet-4-6", healthy, Pick::Draw(x))
                .expect("route");
            assert_eq!(&*r.key.name, "a");
        }
        assert_eq!(
            key_of(&rt, &vk(&[]), "claude-sonnet-4-6", Pick::Draw(0.99)),
            "b"
        );
    }

    #[test]
    fn provider_prefix_selects_the_provider_and_keeps_the_id() {
        let rt = runtime();
        let r = route(
            &rt,
            &vk(&[]),
            "bedrock/global.anthropic.claude-sonnet-4-6",
            Pick::Draw(0.0),
        )
        .expect("route");
        assert_eq!(&*r.provider.name, "bedrock");
        assert_eq!(r.upstream_model, "global.anthropic.claude-sonnet-4-6");
        assert!(!r.via_alias);
    }

    #[test]
    fn bare_alias_resolves_case_insensitively_through_the_picked_key() {
        let rt = runtime();
        let r = route(&rt, &vk(&[]), "CLAUDE-sonnet-4-6", Pick::Draw(0.125)).expect("route");
        assert_eq!(&*r.key.name, "a");
        assert_eq!(r.upstream_model, "global.anthropic.claude-sonnet-4-6");
        assert!(r.via_alias);
        let r = route(&rt, &vk(&[]), "claude-sonnet-4-6", Pick::Draw(0.375)).expect("route");
        assert_eq!(&*r.key.name, "b");
        assert_eq!(r.upstream_model, "us.anthropic.claude-sonnet-4-6");
    }

    #[test]
    fn weights_decide_the_share_of_each_key() {
        let rt = runtime();
        // Keys a (1), b (3) and haiku-only (not eligible for sonnet): a takes a quarter.
        let picks: Vec<String> = [0.0, 0.2499, 0.25, 0.6, 0.9999]
            .iter()
            .map(|x| {
                route(&rt, &vk(&[]), "claude-sonnet-4-6", Pick::Draw(*x))
                    .expect("route")
                    .key
                    .name
                    .to_string()
            })
            .collect();
        assert_eq!(picks, ["a", "a", "b", "b", "b"]);
    }

    #[test]
    fn model_allow_lists_are_honoured() {
        let rt = runtime();
        let r = route(
            &rt,
            &vk(&["bedrock"]),
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            Pick::Draw(0.999),
        )
        .expect("route");
        assert_eq!(&*r.key.name, "haiku-only");
    }

    #[test]
    fn virtual_key_provider_restrictions_apply() {
        let rt = runtime();
        assert_eq!(
            route(
                &rt,
                &vk(&["bedrock"]),
                "anthropic/claude-opus-4-5",
                Pick::Draw(0.0)
            )
            .map(|r| r.upstream_model),
            Err(RouteError::ProviderNotAllowed("anthropic".into()))
        );
        // With only one reachable provider a bare unknown name goes there unchanged.
        let r = route(&rt, &vk(&["anthropic"]), "claude-opus-4-5", Pick::Draw(0.0)).expect("route");
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
        let err = route(&rt, &vk(&["bedrock"]), "claude-opus-4-8", Pick::Draw(0.0))
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
        let haiku = route(&rt, &vk(&["bedrock"]), "claude-haiku-4-8", Pick::Draw(0.0))
            .map(|r| r.upstream_model)
            .expect_err("no alias")
            .to_string();
        assert!(
            haiku.contains("ANTHROPIC_DEFAULT_HAIKU_MODEL")
                && haiku.contains("global.anthropic.claude-haiku-4-5-20251001-v1:0"),
            "{haiku}"
        );
        // An aliased bare name still routes; Bedrock ids and ARNs still go to the only provider.
        let r = route(&rt, &vk(&["bedrock"]), "claude-sonnet-4-6", Pick::Draw(0.0)).expect("alias");
        assert_eq!(r.upstream_model, "global.anthropic.claude-sonnet-4-6");
        let r = route(
            &rt,
            &vk(&["bedrock"]),
            "global.anthropic.claude-opus-4-6-v1",
            Pick::Draw(0.0),
        )
        .expect("bedrock id");
        assert_eq!(r.upstream_model, "global.anthropic.claude-opus-4-6-v1");
        // The Anthropic API takes bare names natively.
        let r =
            route(&rt, &vk(&["anthropic"]), "claude-opus-4-8", Pick::Draw(0.0)).expect("anthropic");
        assert_eq!(&*r.provider.name, "anthropic");
        assert_eq!(r.upstream_model, "claude-opus-4-8");
    }

    #[test]
    fn unknown_names_are_reported() {
        let rt = runtime();
        assert_eq!(
            route(&rt, &vk(&[]), "mystery-model", Pick::Draw(0.0)).map(|r| r.upstream_model),
            Err(RouteError::UnknownModel("mystery-model".into()))
        );
        assert_eq!(
            route(&rt, &vk(&[]), "vertex/claude", Pick::Draw(0.0)).map(|r| r.upstream_model),
            Err(RouteError::UnknownProvider("vertex".into()))
        );
        // Even when the key reaches a single provider, an unknown prefix is not sent upstream.
        assert_eq!(
            route(&rt, &vk(&["bedrock"]), "openai/gpt-5", Pick::Draw(0.0))
                .map(|r| r.upstream_model),
            Err(RouteError::UnknownProvider("openai".into()))
        );
        // ARNs contain `/` but are model ids.
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        let r = route(&rt, &vk(&["bedrock"]), arn, Pick::Draw(0.0)).expect("route");
        assert_eq!(r.upstream_model, arn);
    }
}
