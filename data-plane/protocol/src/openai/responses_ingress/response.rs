//! Anthropic Message → Response object.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{
    ResponseContext, ResponsesError, State, call_item, ids, message_item, reasoning_item,
    status_for,
};
use crate::anthropic::usage_from_raw;

#[derive(Deserialize)]
struct Message<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    content: Vec<Value>,
    stop_reason: Option<String>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

/// Turns a non-streaming Anthropic Message into a Response object (mapping in the module
/// docs), created at `created_unix`, for the request `ctx` describes.
///
/// Errors: the answer is not a JSON object with `id` and a `content` array (an error body is
/// the caller's to map, before calling this).
pub fn response(
    anthropic_message: &[u8],
    ctx: &ResponseContext,
    created_unix: u64,
) -> Result<Vec<u8>, ResponsesError> {
    let message: Message<'_> = serde_json::from_slice(anthropic_message)
        .map_err(|e| ResponsesError::Upstream(e.to_string()))?;
    if message.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(ResponsesError::Upstream(format!(
            "type is {:?}, not \"message\"",
            message.kind
        )));
    }
    let (id, stem) = ids(&message.id);
    let mut output = Vec::with_capacity(message.content.len());
    for (index, block) in message.content.iter().enumerate() {
        let index = index as u64;
        match block.get("type").and_then(Value::as_str) {
            Some("thinking" | "redacted_thinking") => output.push(reasoning_item(
                &format!("rs_{stem}_{index}"),
                block,
                ctx.summaries,
            )),
            Some("text") => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                output.push(message_item(
                    &format!("msg_{stem}_{index}"),
                    text,
                    "completed",
                ));
            }
            Some("tool_use") => {
                let call_id = block.get("id").and_then(Value::as_str).unwrap_or("");
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                let arguments = match block.get("input") {
                    Some(input) if !input.is_null() => {
                        serde_json::to_string(input).unwrap_or_else(|_| "{}".into())
                    }
                    _ => "{}".into(),
                };
                output.push(call_item(
                    ctx,
                    &stem,
                    index,
                    call_id,
                    name,
                    &arguments,
                    "completed",
                ));
            }
            _ => {}
        }
    }
    let (status, reason) = status_for(message.stop_reason.as_deref());
    let usage = message.usage.and_then(usage_from_raw);
    let object = ctx.response_object(
        &id,
        created_unix,
        State {
            status,
            incomplete: reason,
            error: Value::Null,
        },
        output,
        Some(usage.unwrap_or_default()),
    );
    serde_json::to_vec(&object).map_err(|e| ResponsesError::Upstream(e.to_string()))
}
