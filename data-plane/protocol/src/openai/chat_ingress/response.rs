//! Anthropic `Message` → `chat.completion`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{ChatError, REASONING_FORMAT, finish_reason, usage_json};
use crate::anthropic::usage_from_raw;

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    content: Option<Vec<Block>>,
    stop_reason: Option<String>,
    usage: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    data: Option<String>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
}

/// Turns a non-streaming Anthropic Message into a `chat.completion` answer for `model` (the
/// name the client asked for), made at `created_unix`:
///
/// * `id`: `chatcmpl-` + the message id; one choice, `index` 0;
/// * `message.content`: the text blocks joined (`null` when there is none);
/// * `message.tool_calls`: each `tool_use` as `{id, type:"function", function:{name,
///   arguments}}`, `arguments` the input as a JSON string (absent when there are none);
/// * `message.reasoning_content`: the thinking text joined (absent when there is none);
/// * `message.reasoning_details`: OpenRouter's entries, `reasoning.text` with its `signature`
///   per thinking block and `reasoning.encrypted` with the `data` of a redacted one, each with
///   `format` `anthropic-claude-v1` and `index` (its order among them), so they come back intact;
/// * `finish_reason` and `usage` as the parent module says.
///
/// Server-tool blocks (web search and the like) have no Chat Completions form and are left out.
///
/// Errors ([`ChatError::UpstreamAnswer`]): not JSON, or no `content` array.
pub fn response(
    anthropic_message: &[u8],
    model: &str,
    created_unix: u64,
) -> Result<Vec<u8>, ChatError> {
    let message: Message = serde_json::from_slice(anthropic_message)
        .map_err(|_| ChatError::UpstreamAnswer("not a JSON message"))?;
    let blocks = message
        .content
        .ok_or(ChatError::UpstreamAnswer("no content array"))?;

    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut details = Vec::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.kind.as_deref() {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or_default()),
            Some("thinking") => {
                let thinking = block.thinking.unwrap_or_default();
                reasoning
                    .get_or_insert_with(String::new)
                    .push_str(&thinking);
                let mut entry = json!({"type": "reasoning.text", "text": thinking});
                if let (Some(signature), Some(map)) = (block.signature, entry.as_object_mut()) {
                    map.insert("signature".into(), Value::String(signature));
                }
                details.push(entry);
            }
            Some("redacted_thinking") => {
                details.push(
                    json!({"type": "reasoning.encrypted", "data": block.data.unwrap_or_default()}),
                );
            }
            Some("tool_use") => {
                let input = block.input.unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": block.id.unwrap_or_default(),
                    "type": "function",
                    "function": {"name": block.name.unwrap_or_default(), "arguments": input.to_string()},
                }));
            }
            _ => {}
        }
    }
    for (index, entry) in details.iter_mut().enumerate() {
        if let Some(map) = entry.as_object_mut() {
            map.insert("format".into(), REASONING_FORMAT.into());
            map.insert("index".into(), index.into());
        }
    }

    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    msg.insert("content".into(), text.map_or(Value::Null, Value::String));
    msg.insert("refusal".into(), Value::Null);
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(r) = reasoning {
        msg.insert("reasoning_content".into(), Value::String(r));
    }
    if !details.is_empty() {
        msg.insert("reasoning_details".into(), Value::Array(details));
    }
    let usage = message
        .usage
        .as_deref()
        .and_then(usage_from_raw)
        .unwrap_or_default();
    let out = json!({
        "id": format!("chatcmpl-{}", message.id.unwrap_or_default()),
        "object": "chat.completion",
        "created": created_unix,
        "model": model,
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": null,
            "finish_reason": finish_reason(message.stop_reason.as_deref().unwrap_or("end_turn")),
        }],
        "usage": usage_json(&usage),
    });
    serde_json::to_vec(&out).map_err(|_| ChatError::UpstreamAnswer("unserializable"))
}
