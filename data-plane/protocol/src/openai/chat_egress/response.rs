//! `chat.completion` -> Anthropic Message (the table is in the module docs).

use serde_json::{Map, Value, json};

use super::{EgressError, error_text, message_id, sanitize_id, stop_reason, to_bytes};

/// The key under which a tool call's `arguments` are kept when they are not a JSON object.
pub(crate) const RAW_ARGUMENTS: &str = "_raw_arguments";

/// Translates a `chat.completion` body into an Anthropic Message reporting `model` (the name
/// the client asked for). Only `choices[0]` is read.
///
/// Errors ([`EgressError::InvalidResponse`]): not a JSON object, an `error` member (some
/// servers answer errors with a 200), `choices` missing, empty or not an array of objects.
pub fn message(chat_completion: &[u8], model: &str) -> Result<Vec<u8>, EgressError> {
    let bad = |why: &str| EgressError::InvalidResponse(why.to_owned());
    let body: Value = serde_json::from_slice(chat_completion)
        .map_err(|e| EgressError::InvalidResponse(format!("not JSON: {e}")))?;
    let obj = body.as_object().ok_or_else(|| bad("not a JSON object"))?;
    if obj.get("error").is_some_and(|e| !e.is_null()) {
        let (message, _) = error_text(&body);
        return Err(EgressError::InvalidResponse(format!(
            "the upstream answered with an error: {}",
            message.unwrap_or_default()
        )));
    }
    let choice = obj
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(Value::as_object)
        .ok_or_else(|| bad("`choices` is missing or empty"))?;
    let upstream_id = obj.get("id").and_then(Value::as_str);
    let id = message_id(upstream_id);
    let msg = choice.get("message").and_then(Value::as_object);
    let field = |key: &str| msg.and_then(|m| m.get(key));

    let mut content = Vec::new();
    let mut text = content_text(field("content"));
    if let Some(refusal) = field("refusal").and_then(Value::as_str) {
        text.push_str(refusal);
    }
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = field("tool_calls").and_then(Value::as_array);
    for (k, call) in calls.into_iter().flatten().enumerate() {
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .unwrap_or(&Value::Null);
        content.push(json!({
            "type": "tool_use",
            "id": tool_use_id(call.get("id").and_then(Value::as_str), &id, k),
            "name": name,
            "input": tool_input(arguments),
        }));
    }
    let has_calls = calls.is_some_and(|c| !c.is_empty());
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let usage = obj
        .get("usage")
        .and_then(super::usage_from_openai)
        .unwrap_or_default();

    let mut out = Map::new();
    out.insert("id".into(), Value::String(id));
    out.insert("type".into(), Value::from("message"));
    out.insert("role".into(), Value::from("assistant"));
    out.insert("model".into(), Value::from(model));
    out.insert("content".into(), Value::Array(content));
    out.insert(
        "stop_reason".into(),
        Value::from(stop_reason(finish, has_calls)),
    );
    out.insert("stop_sequence".into(), Value::Null);
    out.insert(
        "usage".into(),
        json!({
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
        }),
    );
    Ok(to_bytes(&Value::Object(out)))
}

/// `message.content`: a string, or (some servers) an array of text parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The Anthropic id of a tool call: the upstream's (sanitized), else derived from the message
/// id and the call's position.
pub(crate) fn tool_use_id(upstream: Option<&str>, message_id: &str, position: usize) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => sanitize_id(id),
        None => format!(
            "toolu_{}_{position}",
            message_id.strip_prefix("msg_").unwrap_or(message_id)
        ),
    }
}

/// A tool call's `arguments` as an `input` object: the parsed JSON object; `{}` when empty;
/// otherwise `{"_raw_arguments": <the string>}`.
fn tool_input(arguments: &Value) -> Value {
    let raw = match arguments {
        Value::Null => return json!({}),
        // Some servers send the arguments as an object instead of a string.
        Value::Object(_) => return arguments.clone(),
        Value::String(s) => s.as_str(),
        other => return json!({ RAW_ARGUMENTS: other.to_string() }),
    };
    if raw.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(parsed @ Value::Object(_)) => parsed,
        _ => json!({ RAW_ARGUMENTS: raw }),
    }
}
