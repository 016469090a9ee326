//! Which `anthropic-beta` values Bedrock `InvokeModel` accepts, per model family, and the body
//! fields that only exist with a beta.
//!
//! Bedrock fails a whole request with `invalid beta flag` when `anthropic_beta` holds a value it
//! does not know for the model, so betas outside the family's list are dropped. A dropped beta
//! must not leave its body fields behind (Claude Code sends the pairs together), so the
//! translation also removes the fields of every beta that is not forwarded:
//!
//! | beta | body field removed when the beta is not forwarded | why it matters |
//! |---|---|---|
//! | `extended-cache-ttl-2025-04-11` | `ttl` of every `cache_control` object, unless the family takes `ttl` natively | Bedrock rejects the beta always, and `ttl` on models before Claude 4.5 (protocols.md §3.3; LiteLLM `_remove_ttl_from_cache_control`) |
//! | `prompt-caching-scope-2026-01-05` | `scope` of every `cache_control` object | Bedrock accepts only `type` and `ttl` in `cache_control` (LiteLLM, same function) |
//! | `context-management-2025-06-27` | top-level `context_management` | sent by Claude Code on every turn with the beta (protocols.md §1.4) |
//! | `tool-search-tool-2025-10-19` (`advanced-tool-use-2025-11-20`) | `defer_loading` of every tool | sent by Claude Code 2.1.331 with the beta (protocols.md §3.3, LiteLLM `remove_custom_field_from_tools`) |
//!
//! Other pairs (`effort-2025-11-24` ↔ `output_config`, structured outputs ↔ tool `strict`) are
//! left alone: `output_config.effort` is how adaptive-thinking models take their effort even
//! without a beta (Opus 4.7 requires it, anthropics/claude-code#49490), and Claude Code sends no
//! `strict` through a gateway.
//!
//! Families (the model name inside the id, date and version suffix removed, see
//! [`family_name`]) and their lists:
//!
//! | family | betas | `cache_control.ttl` without the beta | source |
//! |---|---|---|---|
//! | `claude-opus-4-7` | none | no | anthropics/claude-code#49648, #49490 (every beta, `interleaved-thinking` included, is `invalid beta flag`, verified with the AWS CLI) |
//! | `claude-opus-4-6`, `claude-sonnet-4-6`, `claude-opus-4-5`, `claude-sonnet-4-5` | [`BEDROCK_BETAS`] | yes | ENVOY's live-probed list plus `effort` (protocols.md §3.3); TTL 5m/1h on Claude 4.5+ (LiteLLM `_is_claude_4_5_on_bedrock`, AWS model cards) |
//! | `claude-haiku-4-5` | [`BEDROCK_BETAS`] without `context-1m-2025-08-07` | yes | AWS model card: 200K context window, prompt caching TTL "5 minutes, 1 hour" |
//! | anything else (older models, application inference profile ARNs, models newer than this table) | [`BEDROCK_BETAS`] | no | as above; stripping `ttl` never fails a request, it only shortens the cache lifetime to 5 minutes |

use std::borrow::Cow;

use memchr::{memchr, memchr2, memmem};

use crate::json;

/// Betas Bedrock `InvokeModel` accepts in `anthropic_beta` for the Claude 4 models it serves
/// (protocols.md §3.3: ENVOY's live-probed allowlist plus `effort-2025-11-24`). Support varies
/// per model: see [`BEDROCK_FAMILIES`].
pub const BEDROCK_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "dev-full-thinking-2025-05-14",
    "effort-2025-11-24",
    "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14",
    "mcp-client-2025-04-04",
    "mcp-client-2025-11-20",
    "model-context-window-exceeded-2025-08-26",
    "output-128k-2025-02-19",
    "pdfs-2024-09-25",
    "search-results-2025-06-09",
    "token-counting-2024-11-01",
    "token-efficient-tools-2025-02-19",
    "tool-search-tool-2025-10-19",
    "web-search-2025-03-05",
];

/// Betas Anthropic names differently from Bedrock: `(anthropic_name, bedrock_name)`.
pub const BETA_ALIASES: &[(&str, &str)] = &[(
    "advanced-tool-use-2025-11-20",
    "tool-search-tool-2025-10-19",
)];

/// What Bedrock accepts for one model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BedrockFamily {
    /// The family as [`family_name`] extracts it from a model id (`claude-sonnet-4-6`); empty
    /// for [`UNKNOWN_FAMILY`].
    pub name: &'static str,
    /// The betas Bedrock accepts for it...
    pub betas: &'static [&'static str],
    /// ...except these (a family that lacks one feature of the common list).
    pub except: &'static [&'static str],
    /// Whether `cache_control.ttl` (`5m`, `1h`) is accepted without the
    /// `extended-cache-ttl-2025-04-11` beta (which Bedrock never accepts).
    pub cache_ttl: bool,
}

/// The families this gateway knows (module docs give the sources).
pub const BEDROCK_FAMILIES: &[BedrockFamily] = &[
    BedrockFamily {
        name: "claude-opus-4-7",
        betas: &[],
        except: &[],
        cache_ttl: false,
    },
    BedrockFamily {
        name: "claude-opus-4-6",
        betas: BEDROCK_BETAS,
        except: &[],
        cache_ttl: true,
    },
    BedrockFamily {
        name: "claude-sonnet-4-6",
        betas: BEDROCK_BETAS,
        except: &[],
        cache_ttl: true,
    },
    BedrockFamily {
        name: "claude-opus-4-5",
        betas: BEDROCK_BETAS,
        except: &[],
        cache_ttl: true,
    },
    BedrockFamily {
        name: "claude-sonnet-4-5",
        betas: BEDROCK_BETAS,
        except: &[],
        cache_ttl: true,
    },
    BedrockFamily {
        name: "claude-haiku-4-5",
        betas: BEDROCK_BETAS,
        // A 200K context window (AWS model card): no 1M-context beta.
        except: &["context-1m-2025-08-07"],
        cache_ttl: true,
    },
];

/// The rules for model ids no row of [`BEDROCK_FAMILIES`] names.
pub const UNKNOWN_FAMILY: BedrockFamily = BedrockFamily {
    name: "",
    betas: BEDROCK_BETAS,
    except: &[],
    cache_ttl: false,
};

impl BedrockFamily {
    /// The Bedrock name of `beta` when this family accepts it.
    pub fn accepts(&self, beta: &str) -> Option<&'static str> {
        self.betas
            .iter()
            .copied()
            .find(|b| *b == beta)
            .filter(|b| !self.except.contains(b))
    }
}

/// The family of a Bedrock model id, inference profile id or ARN: the name after the last
/// `anthropic.`, cut at `:`, without a `-v<N>` version and a `-YYYYMMDD` date suffix
/// (`global.anthropic.claude-haiku-4-5-20251001-v1:0` -> `claude-haiku-4-5`). `None` when the
/// id names no Anthropic model (application inference profiles, provisioned models).
pub fn family_name(model_id: &str) -> Option<&str> {
    // The last `anthropic.`; ids are short, so a plain backwards scan beats a substring
    // searcher's setup.
    const MARK: &[u8] = b"anthropic.";
    let at = model_id
        .as_bytes()
        .windows(MARK.len())
        .rposition(|w| w == MARK)?;
    let name = &model_id[at + MARK.len()..];
    let mut name = name.split(':').next().unwrap_or(name);
    if let Some((head, version)) = name.rsplit_once("-v")
        && !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
    {
        name = head;
    }
    if let Some((head, date)) = name.rsplit_once('-')
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
    {
        name = head;
    }
    (!name.is_empty()).then_some(name)
}

/// The rules for `model_id` ([`UNKNOWN_FAMILY`] when no row names its family).
pub fn bedrock_family(model_id: &str) -> &'static BedrockFamily {
    family_name(model_id)
        .and_then(|f| BEDROCK_FAMILIES.iter().find(|row| row.name == f))
        .unwrap_or(&UNKNOWN_FAMILY)
}

/// A body field that exists only with a beta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaField {
    /// A member of every `cache_control` object, at any depth.
    CacheControl(&'static str),
    /// A top-level member.
    TopLevel(&'static str),
    /// A member of every object of the top-level `tools` array.
    Tool(&'static str),
}

impl BetaField {
    /// How logs name the field (`cache_control.ttl`).
    pub fn path(self) -> &'static str {
        match self {
            BetaField::CacheControl("ttl") => "cache_control.ttl",
            BetaField::CacheControl("scope") => "cache_control.scope",
            BetaField::Tool("defer_loading") => "tools[].defer_loading",
            BetaField::CacheControl(name) | BetaField::TopLevel(name) | BetaField::Tool(name) => {
                name
            }
        }
    }
}

/// Body fields that only exist with a beta (Bedrock name): removed when the beta is not
/// forwarded (module docs).
pub const BETA_FIELDS: &[(&str, BetaField)] = &[
    (
        "extended-cache-ttl-2025-04-11",
        BetaField::CacheControl("ttl"),
    ),
    (
        "prompt-caching-scope-2026-01-05",
        BetaField::CacheControl("scope"),
    ),
    (
        "context-management-2025-06-27",
        BetaField::TopLevel("context_management"),
    ),
    (
        "tool-search-tool-2025-10-19",
        BetaField::Tool("defer_loading"),
    ),
];

/// The fields to remove for a request that forwards `kept` to a model of `family`.
pub(crate) fn fields_to_remove(family: &BedrockFamily, kept: &[&str]) -> Vec<BetaField> {
    BETA_FIELDS
        .iter()
        .filter(|(beta, field)| {
            let native = family.cache_ttl && *field == BetaField::CacheControl("ttl");
            !(kept.contains(beta) || native)
        })
        .map(|(_, field)| *field)
        .collect()
}

/// Aliases, deduplicates and allowlists betas; returns `(kept, dropped)`. Empty names (from
/// `a,,b`) are ignored.
pub(crate) fn filter_betas<'a>(
    betas: impl Iterator<Item = &'a str>,
    family: &BedrockFamily,
) -> (Vec<&'static str>, Vec<String>) {
    let mut kept: Vec<&'static str> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for beta in betas.map(str::trim).filter(|b| !b.is_empty()) {
        let name = BETA_ALIASES
            .iter()
            .find(|(from, _)| *from == beta)
            .map_or(beta, |(_, to)| *to);
        match family.accepts(name) {
            Some(a) => {
                if !kept.contains(&a) {
                    kept.push(a);
                }
            }
            None => {
                if !dropped.iter().any(|d| d == beta) {
                    dropped.push(beta.to_owned());
                }
            }
        }
    }
    (kept, dropped)
}

/// A top-level member's value with the fields in `remove` taken out, or `None` when the whole
/// member goes. What was removed is added to `removed` (once per field).
pub(crate) fn clean_member<'a>(
    name: &str,
    raw: &'a [u8],
    remove: &[BetaField],
    removed: &mut Vec<BetaField>,
) -> Option<Cow<'a, [u8]>> {
    if let Some(field) = remove
        .iter()
        .find(|f| matches!(f, BetaField::TopLevel(n) if *n == name))
    {
        record(removed, *field);
        return None;
    }
    let cache_keys: Vec<&'static str> = remove
        .iter()
        .filter_map(|f| match f {
            BetaField::CacheControl(key) => Some(*key),
            _ => None,
        })
        .collect();
    let mut value = match name {
        _ if cache_keys.is_empty() => Cow::Borrowed(raw),
        "system" | "messages" | "tools" => strip_cache_control(raw, &cache_keys, removed),
        // The top-level `cache_control` (automatic caching) is itself the object to clean.
        "cache_control" => match json::parse_members(raw) {
            Ok(fields) if fields.iter().any(|(k, _)| cache_keys.contains(&k.as_ref())) => {
                Cow::Owned(without_keys(&fields, &cache_keys, removed))
            }
            _ => Cow::Borrowed(raw),
        },
        _ => Cow::Borrowed(raw),
    };
    if name == "tools" {
        for field in remove {
            if let BetaField::Tool(key) = field {
                let stripped = match strip_tool_member(&value, key) {
                    Cow::Owned(bytes) => Some(bytes),
                    Cow::Borrowed(_) => None,
                };
                if let Some(bytes) = stripped {
                    record(removed, *field);
                    value = Cow::Owned(bytes);
                }
            }
        }
    }
    Some(value)
}

fn record(removed: &mut Vec<BetaField>, field: BetaField) {
    if !removed.contains(&field) {
        removed.push(field);
    }
}

/// An object rebuilt from its members without `keys` (recorded in `removed`).
fn without_keys(
    fields: &[json::Field<'_>],
    keys: &[&'static str],
    removed: &mut Vec<BetaField>,
) -> Vec<u8> {
    for key in keys {
        if fields.iter().any(|(k, _)| k == key) {
            record(removed, BetaField::CacheControl(key));
        }
    }
    let mut out = Vec::new();
    write_object(
        &mut out,
        fields.iter().filter(|(k, _)| !keys.contains(&k.as_ref())),
    );
    out
}

/// `raw` (one JSON value) without the members `keys` of every object that is the value of a
/// `cache_control` member, at any depth (each removal recorded in `removed`). Only those small
/// objects are rewritten; every other byte is copied. Borrowed when nothing was removed (the
/// usual case costs one substring search per key).
pub(crate) fn strip_cache_control<'a>(
    raw: &'a [u8],
    keys: &[&'static str],
    removed: &mut Vec<BetaField>,
) -> Cow<'a, [u8]> {
    if !keys.iter().any(|k| contains_quoted(raw, k)) {
        return Cow::Borrowed(raw);
    }
    let mut out: Vec<u8> = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(q) = memchr(b'"', &raw[i..]) {
        let start = i + q;
        let Some(end) = string_end(raw, start + 1) else {
            break;
        };
        i = end;
        let colon = skip_ws(raw, end);
        if raw.get(colon) != Some(&b':') {
            continue;
        }
        i = colon + 1;
        if &raw[start..end] != b"\"cache_control\"" {
            continue;
        }
        let open = skip_ws(raw, colon + 1);
        if raw.get(open) != Some(&b'{') {
            continue;
        }
        let Some(close) = container_end(raw, open) else {
            break;
        };
        i = close;
        let Ok(fields) = json::parse_members(&raw[open..close]) else {
            continue;
        };
        if !fields.iter().any(|(k, _)| keys.contains(&k.as_ref())) {
            continue;
        }
        out.extend_from_slice(&raw[copied..open]);
        out.extend_from_slice(&without_keys(&fields, keys, removed));
        copied = close;
    }
    if copied == 0 {
        return Cow::Borrowed(raw);
    }
    out.extend_from_slice(&raw[copied..]);
    Cow::Owned(out)
}

/// The top-level `tools` array `raw` without the member `key` of each tool object; the tools
/// without it keep their bytes. Borrowed when nothing was removed (or `raw` is not an array).
pub(crate) fn strip_tool_member<'a>(raw: &'a [u8], key: &str) -> Cow<'a, [u8]> {
    if !contains_quoted(raw, key) {
        return Cow::Borrowed(raw);
    }
    let Ok(tools) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(raw) else {
        return Cow::Borrowed(raw);
    };
    let mut changed = false;
    let mut out = Vec::with_capacity(raw.len());
    out.push(b'[');
    for (n, tool) in tools.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let bytes = tool.get().as_bytes();
        match json::parse_members(bytes) {
            Ok(fields) if fields.iter().any(|(k, _)| k == key) => {
                changed = true;
                write_object(&mut out, fields.iter().filter(|(k, _)| k != key));
            }
            _ => out.extend_from_slice(bytes),
        }
    }
    out.push(b']');
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw)
    }
}

fn write_object<'f, 'a: 'f>(out: &mut Vec<u8>, fields: impl Iterator<Item = &'f json::Field<'a>>) {
    out.push(b'{');
    for (n, (key, value)) in fields.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        json::write_str(out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
}

/// Whether `"key"` occurs in `raw` (a cheap filter before any scan).
fn contains_quoted(raw: &[u8], key: &str) -> bool {
    let mut needle = Vec::with_capacity(key.len() + 2);
    needle.push(b'"');
    needle.extend_from_slice(key.as_bytes());
    needle.push(b'"');
    memmem::find(raw, &needle).is_some()
}

/// The index after the closing quote of the string whose content starts at `from`.
fn string_end(raw: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr2(b'"', b'\\', raw.get(from..)?)?;
        if raw[at] == b'"' {
            return Some(at + 1);
        }
        from = at + 2;
    }
}

/// The index after the `}` or `]` closing the container that opens at `open`.
fn container_end(raw: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < raw.len() {
        match raw[i] {
            b'"' => {
                i = string_end(raw, i + 1)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn skip_ws(raw: &[u8], mut i: usize) -> usize {
    while raw
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_are_sorted_and_unique_and_aliases_allowed() {
        let mut sorted = BEDROCK_BETAS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, BEDROCK_BETAS);
        for family in BEDROCK_FAMILIES {
            for beta in family.except {
                assert!(family.betas.contains(beta), "{}: {beta}", family.name);
            }
        }
        for (_, to) in BETA_ALIASES {
            assert!(
                BEDROCK_BETAS.contains(to),
                "alias target {to} must be allowed"
            );
        }
        let haiku = bedrock_family("global.anthropic.claude-haiku-4-5-20251001-v1:0");
        let accepted: Vec<_> = BEDROCK_BETAS
            .iter()
            .filter_map(|b| haiku.accepts(b))
            .collect();
        let expected: Vec<_> = BEDROCK_BETAS
            .iter()
            .copied()
            .filter(|b| *b != "context-1m-2025-08-07")
            .collect();
        assert_eq!(accepted, expected);
    }

    #[test]
    fn families_come_from_any_id_form() {
        for (id, family) in [
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                Some("claude-haiku-4-5"),
            ),
            (
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                Some("claude-haiku-4-5"),
            ),
            ("us.anthropic.claude-sonnet-4-6", Some("claude-sonnet-4-6")),
            (
                "global.anthropic.claude-opus-4-6-v1",
                Some("claude-opus-4-6"),
            ),
            ("eu.anthropic.claude-opus-4-7", Some("claude-opus-4-7")),
            (
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                Some("claude-3-5-haiku"),
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                Some("claude-sonnet-4-5"),
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
                None,
            ),
        ] {
            assert_eq!(family_name(id), family, "{id}");
        }
        assert_eq!(
            bedrock_family("global.anthropic.claude-haiku-4-5-20251001-v1:0").except,
            ["context-1m-2025-08-07"]
        );
        assert_eq!(
            bedrock_family("eu.anthropic.claude-opus-4-7").betas.len(),
            0
        );
        assert_eq!(
            bedrock_family("anthropic.claude-3-5-haiku-20241022-v1:0"),
            &UNKNOWN_FAMILY
        );
        assert_eq!(
            bedrock_family("global.anthropic.claude-opus-4-8"),
            &UNKNOWN_FAMILY
        );
    }

    #[test]
    fn filter_betas_aliases_dedupes_and_reports() {
        let (kept, dropped) = filter_betas(
            [
                "interleaved-thinking-2025-05-14",
                "claude-code-20250219",
                "",
                " advanced-tool-use-2025-11-20 ",
                "tool-search-tool-2025-10-19",
                "claude-code-20250219",
                "interleaved-thinking-2025-05-14",
            ]
            .into_iter(),
            &UNKNOWN_FAMILY,
        );
        assert_eq!(
            kept,
            [
                "interleaved-thinking-2025-05-14",
                "tool-search-tool-2025-10-19"
            ]
        );
        assert_eq!(dropped, ["claude-code-20250219"]);
        let (kept, dropped) = filter_betas(
            ["interleaved-thinking-2025-05-14"].into_iter(),
            bedrock_family("eu.anthropic.claude-opus-4-7"),
        );
        assert!(kept.is_empty());
        assert_eq!(dropped, ["interleaved-thinking-2025-05-14"]);
    }

    #[test]
    fn fields_follow_the_betas_kept_and_the_family() {
        let known = bedrock_family("global.anthropic.claude-sonnet-4-6");
        assert_eq!(
            fields_to_remove(
                known,
                &[
                    "context-management-2025-06-27",
                    "tool-search-tool-2025-10-19"
                ]
            ),
            [BetaField::CacheControl("scope")]
        );
        assert_eq!(
            fields_to_remove(&UNKNOWN_FAMILY, &["context-management-2025-06-27"]),
            [
                BetaField::CacheControl("ttl"),
                BetaField::CacheControl("scope"),
                BetaField::Tool("defer_loading")
            ]
        );
    }

    #[test]
    fn cache_control_members_are_removed_at_any_depth_and_nothing_else_changes() {
        let raw = br#"[{"type":"text","text":"say \"cache_control\": {\"ttl\":1}","cache_control" : {"type":"ephemeral", "ttl":"1h","scope":"global"}},
 {"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":"x","cache_control":{"ttl":"5m","type":"ephemeral"}}]}]},
 {"cache_control":{"type":"ephemeral"}, "ttl": "kept: not in cache_control"}]"#;
        let mut removed = Vec::new();
        let out = strip_cache_control(raw, &["ttl", "scope"], &mut removed);
        assert_eq!(
            removed,
            [
                BetaField::CacheControl("ttl"),
                BetaField::CacheControl("scope")
            ]
        );
        let want = br#"[{"type":"text","text":"say \"cache_control\": {\"ttl\":1}","cache_control" : {"type":"ephemeral"}},
 {"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]},
 {"cache_control":{"type":"ephemeral"}, "ttl": "kept: not in cache_control"}]"#;
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
        // Only `scope`: `ttl` stays.
        let out = strip_cache_control(
            br#"{"cache_control":{"ttl":"1h","scope":"global"}}"#,
            &["scope"],
            &mut Vec::new(),
        );
        assert_eq!(&out[..], br#"{"cache_control":{"ttl":"1h"}}"#);
        // Nothing to remove: borrowed, byte for byte.
        for unchanged in [
            &br#"[{"text":"ttl \"ttl\"","cache_control":{"type":"ephemeral"}}]"#[..],
            br#"[{"cache_control":"ttl"}]"#,
            br#"{"a":"unterminated"#,
        ] {
            assert!(matches!(
                strip_cache_control(unchanged, &["ttl"], &mut Vec::new()),
                Cow::Borrowed(b) if b == unchanged
            ));
        }
    }

    #[test]
    fn tool_members_are_removed_from_the_tools_that_have_them() {
        let raw = br#"[ {"name":"Read","input_schema":{"type":"object","properties":{"defer_loading":{"type":"boolean"}}}},
  {"name":"Deferred", "defer_loading" : true,"input_schema":{"type":"object"}} ]"#;
        let out = strip_tool_member(raw, "defer_loading");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"[{"name":"Read","input_schema":{"type":"object","properties":{"defer_loading":{"type":"boolean"}}}},{"name":"Deferred","input_schema":{"type":"object"}}]"#
        );
        let plain = br#"[{"name":"Read","input_schema":{"type":"object"}}]"#;
        assert!(matches!(
            strip_tool_member(plain, "defer_loading"),
            Cow::Borrowed(_)
        ));
    }

    /// Found by the `request_body` fuzz target: a tool object with a repeated key kept its
    /// `defer_loading` while the other tools lost theirs. Nested objects are forwarded as they
    /// came, repeated keys included, so the member goes from those too (each copy of it).
    #[test]
    fn members_are_removed_from_objects_with_repeated_keys_too() {
        let raw = br#"[{"name":"A","defer_loading":true},{"name":"B","description":"x","description":"y","defer_loading":true,"defer_loading":false}]"#;
        let out = strip_tool_member(raw, "defer_loading");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"[{"name":"A"},{"name":"B","description":"x","description":"y"}]"#
        );
        let mut removed = Vec::new();
        let out = strip_cache_control(
            br#"[{"cache_control":{"type":"ephemeral","type":"ephemeral","ttl":"1h"}}]"#,
            &["ttl"],
            &mut removed,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"[{"cache_control":{"type":"ephemeral","type":"ephemeral"}}]"#
        );
        assert_eq!(removed, [BetaField::CacheControl("ttl")]);
        let mut removed = Vec::new();
        let out = clean_member(
            "cache_control",
            br#"{"type":"ephemeral","ttl":"1h","ttl":"5m"}"#,
            &[BetaField::CacheControl("ttl")],
            &mut removed,
        )
        .expect("kept");
        assert_eq!(&out[..], br#"{"type":"ephemeral"}"#);
        assert_eq!(removed, [BetaField::CacheControl("ttl")]);
    }
}
