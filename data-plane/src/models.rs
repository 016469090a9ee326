//! Model discovery (`GET /v1/models`): what a virtual key may use, in the Anthropic list shape
//! Claude Code reads with `CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`. Pure: the list is
//! computed from the runtime; the handler is in `server.rs`.
//!
//! **What is listed.** For every provider the key may use, every model name its allowed
//! provider keys know by name: their aliases (`claude-sonnet-4-6` → an inference profile) and
//! the names of keys restricted to named models, each as `provider/name`, and as the bare name
//! where routing sends the bare name there (the first provider by name that aliases it). Every
//! listed id routes: each candidate goes through [`crate::routing::route`] with the key's
//! restrictions (`allowed_models`, `key_ids`). Keys serving every model (`models: ["*"]`)
//! without aliases add nothing: their model space has no list.

use serde::Serialize;

use crate::routing;
use crate::runtime::{ModelFilter, Runtime, VirtualKey};

/// Most models one page returns (`limit`), and the default.
pub const MAX_LIMIT: usize = 1_000;
pub const DEFAULT_LIMIT: usize = 20;

/// One listed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub display_name: String,
    /// RFC 3339 (when the gateway's configuration was built: the models carry no date).
    pub created_at: String,
}

impl ModelInfo {
    /// The listing of `id` (its display name derived from it).
    pub fn new(id: String, created_at: &str) -> ModelInfo {
        ModelInfo {
            kind: "model",
            display_name: display_name(&id),
            id,
            created_at: created_at.to_owned(),
        }
    }
}

/// A page of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    pub data: Vec<ModelInfo>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

/// Every id the key may use, sorted: bare names first, then `provider/name`.
pub fn ids(rt: &Runtime, vk: &VirtualKey) -> Vec<String> {
    let mut providers: Vec<_> = rt
        .providers
        .values()
        .filter(|p| vk.allows_provider(&p.name))
        .collect();
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<String> = Vec::new();
    for p in providers {
        let config = vk.config(&p.name);
        let mut names: Vec<&str> = Vec::new();
        for k in p
            .keys
            .iter()
            .filter(|k| config.is_none_or(|c| c.allows_key(&k.id)))
        {
            names.extend(k.aliases.keys().map(String::as_str));
            if let ModelFilter::Only(only) = &k.models {
                names.extend(only.iter().map(String::as_str));
            }
        }
        names.sort_unstable();
        names.dedup();
        for name in names {
            let qualified = format!("{}/{name}", p.name);
            if routes_to(rt, vk, &qualified, &p.name) {
                if routes_to(rt, vk, name, &p.name) {
                    out.push(name.to_owned());
                }
                out.push(qualified);
            }
        }
    }
    out.sort_by(|a, b| (a.contains('/'), a).cmp(&(b.contains('/'), b)));
    out.dedup();
    out
}

/// Whether `model` routes for this key, to provider `provider`.
fn routes_to(rt: &Runtime, vk: &VirtualKey, model: &str, provider: &str) -> bool {
    routing::route(rt, vk, model, routing::Pick::Draw(0.0))
        .is_ok_and(|r| *r.provider.name == *provider)
}

/// A name people read: `claude-sonnet-4-6` → `Claude Sonnet 4.6`, with the provider after a
/// qualified id (`Claude Sonnet 4.6 (bedrock)`). Short numeric parts are joined by dots
/// (versions); longer ones (dates) stay apart.
pub fn display_name(id: &str) -> String {
    let (provider, name) = match id.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, id),
    };
    let mut words: Vec<String> = Vec::new();
    let mut version = false;
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let short_number = part.len() <= 2 && part.bytes().all(|b| b.is_ascii_digit());
        match words.last_mut() {
            Some(last) if short_number && version => {
                last.push('.');
                last.push_str(part);
            }
            _ => {
                let mut chars = part.chars();
                let word = match chars.next() {
                    Some(c) => c.to_uppercase().chain(chars).collect(),
                    None => String::new(),
                };
                words.push(word);
            }
        }
        version = short_number;
    }
    let name = words.join(" ");
    match provider {
        Some(p) => format!("{name} ({p})"),
        None => name,
    }
}

/// Why a page cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("limit must be a whole number from 1 to {MAX_LIMIT}")]
    Limit,
    #[error("give either after_id or before_id, not both")]
    BothCursors,
}

/// The query of a list call.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
}

/// One page of `ids` (Anthropic's cursor rules: `after_id` starts after that id, `before_id`
/// ends before it; an id that is not listed starts from the beginning or the end).
pub fn page(ids: &[String], q: &PageQuery, created_at: &str) -> Result<Page, PageError> {
    let limit = match &q.limit {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(PageError::Limit)?,
    };
    let position = |id: &str| ids.iter().position(|i| i == id);
    let (start, end) = match (&q.after_id, &q.before_id) {
        (Some(_), Some(_)) => return Err(PageError::BothCursors),
        (Some(after), None) => {
            let start = position(after).map_or(0, |i| i + 1);
            (start, (start + limit).min(ids.len()))
        }
        (None, Some(before)) => {
            let end = position(before).unwrap_or(ids.len());
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(ids.len())),
    };
    let has_more = if q.before_id.is_some() {
        start > 0
    } else {
        end < ids.len()
    };
    let data: Vec<ModelInfo> = ids[start..end]
        .iter()
        .map(|id| ModelInfo::new(id.clone(), created_at))
        .collect();
    Ok(Page {
        first_id: data.first().map(|m| m.id.clone()),
        last_id: data.last().map(|m| m.id.clone()),
        has_more,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        for (id, want) in [
            ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
            ("claude-opus-4-1-20250805", "Claude Opus 4.1 20250805"),
            ("claude-3-5-haiku-20241022", "Claude 3.5 Haiku 20241022"),
            ("bedrock/claude-haiku-4-5", "Claude Haiku 4.5 (bedrock)"),
            ("my_fine_tune", "My Fine Tune"),
        ] {
            assert_eq!(display_name(id), want, "{id}");
        }
    }

    fn q(limit: Option<&str>, after: Option<&str>, before: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_owned),
            after_id: after.map(str::to_owned),
            before_id: before.map(str::to_owned),
        }
    }

    #[test]
    fn pages_follow_the_cursors() {
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        fn ids_of(p: &Page) -> Vec<&str> {
            p.data.iter().map(|m| m.id.as_str()).collect()
        }
        let p = page(&ids, &q(None, None, None), "t").unwrap();
        assert_eq!(ids_of(&p), ["a", "b", "c", "d", "e"]);
        assert!(!p.has_more);
        assert_eq!(
            (p.first_id.as_deref(), p.last_id.as_deref()),
            (Some("a"), Some("e"))
        );
        let p = page(&ids, &q(Some("2"), None, None), "t").unwrap();
        assert_eq!((ids_of(&p), p.has_more), (vec!["a", "b"], true));
        let p = page(&ids, &q(Some("2"), Some("b"), None), "t").unwrap();
        assert_eq!((ids_of(&p), p.has_more), (vec!["c", "d"], true));
        let p = page(&ids, &q(Some("2"), Some("d"), None), "t").unwrap();
        assert_eq!((ids_of(&p), p.has_more), (vec!["e"], false));
        let p = page(&ids, &q(Some("2"), None, Some("d")), "t").unwrap();
        assert_eq!((ids_of(&p), p.has_more), (vec!["b", "c"], true));
        let p = page(&ids, &q(Some("3"), None, Some("c")), "t").unwrap();
        assert_eq!((ids_of(&p), p.has_more), (vec!["a", "b"], false));
        let p = page(&[], &q(None, None, None), "t").unwrap();
        assert_eq!((p.data.len(), p.first_id, p.has_more), (0, None, false));
        for bad in ["0", "1001", "-1", "x", ""] {
            assert_eq!(
                page(&ids, &q(Some(bad), None, None), "t"),
                Err(PageError::Limit),
                "{bad}"
            );
        }
        assert_eq!(
            page(&ids, &q(None, Some("a"), Some("c")), "t"),
            Err(PageError::BothCursors)
        );
    }
}
