//! OpenAI's formats and Anthropic Messages, the gateway's hub format. One module per
//! format pair and direction:
//!
//! | module | client speaks | upstream speaks |
//! |---|---|---|
//! | [`chat_ingress`] | OpenAI Chat Completions | Anthropic Messages (Bedrock InvokeModel, Anthropic, Vertex) |
//! | [`chat_egress`] | Anthropic Messages (Claude Code) | OpenAI Chat Completions (OpenAI, vLLM, Ollama, …) |
//! | [`responses_ingress`] | OpenAI Responses | Anthropic Messages |

pub mod chat_egress;
pub mod chat_ingress;
pub mod responses_ingress;

use serde_json::{Value, json};

/// An OpenAI reasoning effort (`reasoning_effort`, `reasoning.effort`) → Claude's
/// `thinking.budget_tokens` ([`effort_budget`]). `none` turns thinking off; `minimal` is
/// Claude's smallest budget; each step above roughly doubles or quadruples it.
pub const EFFORT_BUDGETS: [(&str, u32); 5] = [
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 16384),
    ("xhigh", 32768),
];

/// The thinking budget for a reasoning effort: `Some(Some(n))` for the efforts of
/// [`EFFORT_BUDGETS`], `Some(None)` for `none` (no thinking), `None` for an unknown value.
pub fn effort_budget(effort: &str) -> Option<Option<u32>> {
    if effort == "none" {
        return Some(None);
    }
    EFFORT_BUDGETS
        .iter()
        .find(|(name, _)| *name == effort)
        .map(|&(_, budget)| Some(budget))
}

/// `data:<media type>;base64,<data>` → `(media type, data)`.
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    (!media.is_empty()).then_some((media, data))
}

/// The Anthropic image `source` of an OpenAI image URL: a base64 data URL → a `base64` source,
/// an http(s) URL → a `url` source; the error says what the URL must be.
pub(crate) fn image_source(url: &str) -> Result<Value, &'static str> {
    if url.starts_with("data:") {
        let Some((media, data)) = data_url(url) else {
            return Err("a data URL must have the form data:<media type>;base64,<data>");
        };
        return Ok(json!({"type": "base64", "media_type": media, "data": data}));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err("must be an http(s) URL or a base64 data URL")
}
