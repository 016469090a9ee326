//! Thinking blocks that the serving platform cannot verify.
//!
//! A `thinking` block carries a `signature` (a `redacted_thinking` block its `data`) made by the
//! platform that produced it. Claude Code sends them back with every later turn, byte for byte,
//! and each platform verifies them: the Anthropic API refuses a block it did not sign with 400
//! ``messages.N.content.M: Invalid `signature` in `thinking` block``, Bedrock with 400
//! `ValidationException` "messages.N.content.M: Invalid signature in thinking block" (and
//! "...thinking.signature: Field required" for an empty one). So a conversation that moved from
//! Bedrock to the Anthropic API (a fallback) fails on its next turn there, and again when it
//! moves back.
//!
//! The Messages API lets a request leave out the thinking blocks of earlier assistant turns
//! (they are not part of the context the model sees anyway), with one exception: while thinking
//! is on, the final assistant turn of a tool-use loop must start with its thinking block. So
//! [`without_thinking`] removes every thinking and redacted-thinking block from the assistant
//! turns, and when it had to take them from a final turn that uses a tool, it also turns
//! thinking off for that request (the `thinking` member, and the `clear_thinking_*` edits of
//! `context_management`, which need thinking on). Everything else in the body is kept byte for
//! byte; only the assistant messages that held such blocks are rewritten.
//!
//! [`is_signature_rejection`] recognises the platforms' refusals, so the gateway strips only
//! after a platform has said no (a conversation that stays on one platform keeps its blocks).

use serde_json::Value;
use serde_json::value::RawValue;

use crate::bedrock::{BodyError, RequestBody};
use crate::json;

/// Whether an upstream error body says a thinking block's signature was refused: Anthropic's
/// ``Invalid `signature` in `thinking` block``, Bedrock's `Invalid signature in thinking block`,
/// or Bedrock's `thinking.signature: Field required`.
pub fn is_signature_rejection(error_body: &[u8]) -> bool {
    const PATTERNS: [&[u8]; 3] = [
        b"Invalid `signature` in `thinking` block",
        b"Invalid signature in thinking block",
        b"thinking.signature: Field required",
    ];
    PATTERNS
        .iter()
        .any(|p| error_body.windows(p.len()).any(|w| w == *p))
}

/// What [`without_thinking`] made of a body.
#[derive(Debug, PartialEq, Eq)]
pub struct Stripped {
    /// The body to send instead.
    pub body: Vec<u8>,
    /// Thinking and redacted-thinking blocks removed.
    pub blocks: usize,
    /// Thinking was turned off for the request (see the module docs).
    pub thinking_off: bool,
}

/// The body without the thinking and redacted-thinking blocks of its assistant turns (see the
/// module docs); `None` when it has none.
pub fn without_thinking(body: &RequestBody<'_>) -> Result<Option<Stripped>, BodyError> {
    let invalid =
        |field: &'static str, expected: &'static str| BodyError::InvalidField { field, expected };
    let Some(messages) = json::get(&body.fields, "messages") else {
        return Ok(None);
    };
    let messages: Vec<&RawValue> = serde_json::from_str(messages.get())
        .map_err(|_| invalid("messages", "an array of messages"))?;
    let last_assistant = messages.iter().rposition(|m| is_assistant(m));
    let mut blocks = 0;
    let mut thinking_off = false;
    // The new `messages` array: untouched messages byte for byte, rewritten ones re-serialized.
    let mut out = String::with_capacity(body.len);
    out.push('[');
    for (i, raw) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Only assistant messages with such blocks are parsed and rewritten.
        if !is_assistant(raw) || !mentions_thinking(raw.get()) {
            out.push_str(raw.get());
            continue;
        }
        let mut message: Value = serde_json::from_str(raw.get())
            .map_err(|_| invalid("messages", "an array of messages"))?;
        let Some(content) = message.get_mut("content").and_then(Value::as_array_mut) else {
            out.push_str(raw.get());
            continue;
        };
        let before = content.len();
        content.retain(|block| !is_thinking_block(block));
        let removed = before - content.len();
        if removed == 0 {
            out.push_str(raw.get());
            continue;
        }
        blocks += removed;
        if Some(i) == last_assistant
            && content
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        {
            thinking_off = true;
        }
        if content.is_empty() {
            // A turn that was only thinking: an assistant message may not be empty.
            content.push(serde_json::json!({"type": "text", "text": "(thinking omitted)"}));
        }
        out.push_str(&message.to_string());
    }
    out.push(']');
    if blocks == 0 {
        return Ok(None);
    }
    let context_management = match json::get(&body.fields, "context_management") {
        Some(raw) if thinking_off => without_thinking_edits(raw.get())?,
        _ => Edits::Unchanged,
    };
    let mut buf = Vec::with_capacity(body.len);
    buf.push(b'{');
    for (key, value) in &body.fields {
        let value: &str = match key.as_ref() {
            "messages" => &out,
            "thinking" if thinking_off => continue,
            "context_management" => match &context_management {
                Edits::Kept(v) => v,
                Edits::Unchanged => value.get(),
                Edits::Empty => continue,
            },
            _ => value.get(),
        };
        if buf.len() > 1 {
            buf.push(b',');
        }
        json::write_str(&mut buf, key);
        buf.push(b':');
        buf.extend_from_slice(value.as_bytes());
    }
    buf.push(b'}');
    Ok(Some(Stripped {
        body: buf,
        blocks,
        thinking_off,
    }))
}

fn is_assistant(message: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Role<'a> {
        #[serde(borrow)]
        role: Option<&'a str>,
    }
    match serde_json::from_str::<Role<'_>>(message.get()) {
        Ok(r) => r.role == Some("assistant"),
        // An escaped or repeated `role`: read it as a whole value does (the last one wins).
        Err(_) => serde_json::from_str::<Value>(message.get())
            .is_ok_and(|m| m.get("role").and_then(Value::as_str) == Some("assistant")),
    }
}

/// A cheap pre-check before parsing a message: it names a thinking block, or has escapes (which
/// could spell one).
fn mentions_thinking(raw: &str) -> bool {
    raw.contains("thinking") || raw.contains('\\')
}

fn is_thinking_block(block: &Value) -> bool {
    matches!(
        block.get("type").and_then(Value::as_str),
        Some("thinking" | "redacted_thinking")
    )
}

/// `context_management` once thinking is off.
enum Edits {
    /// No `clear_thinking_*` edit: as it was.
    Unchanged,
    /// Without its `clear_thinking_*` edits.
    Kept(String),
    /// Nothing left: the member goes.
    Empty,
}

fn without_thinking_edits(raw: &str) -> Result<Edits, BodyError> {
    let mut value: Value = serde_json::from_str(raw).map_err(|_| BodyError::InvalidField {
        field: "context_management",
        expected: "an object",
    })?;
    let Some(edits) = value.get_mut("edits").and_then(Value::as_array_mut) else {
        return Ok(Edits::Unchanged);
    };
    let before = edits.len();
    edits.retain(|e| {
        !e.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("clear_thinking"))
    });
    Ok(if edits.len() == before {
        Edits::Unchanged
    } else if edits.is_empty() && value.as_object().is_some_and(|o| o.len() == 1) {
        Edits::Empty
    } else {
        Edits::Kept(value.to_string())
    })
}
