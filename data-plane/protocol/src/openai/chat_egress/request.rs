//! Anthropic Messages request -> Chat Completions request (the table is in the module docs).

use serde_json::{Map, Value, json};

use super::{EgressError, to_bytes};
use crate::bedrock::RequestBody;

/// The longest `metadata.user_id` sent as `user` (OpenAI refuses longer values).
pub const MAX_USER_LEN: usize = 64;

/// The name under which the output limit is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MaxTokensField {
    /// `max_tokens`: what most OpenAI-compatible servers (vLLM, Ollama, LM Studio) know.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: required by OpenAI's reasoning models (o-series, GPT-5), which
    /// refuse `max_tokens`.
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// The member name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// How to build the upstream request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RequestOptions {
    /// The name of the output limit.
    pub max_tokens_field: MaxTokensField,
    /// Whether to ask for a stream (`stream: true, stream_options: {include_usage: true}`).
    /// The Anthropic body's own `stream` is not consulted: the caller decides.
    pub stream: bool,
}

/// A translated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The Chat Completions request body (JSON).
    pub body: Vec<u8>,
    /// What the translation left out, deduplicated, in the order met: top-level member names
    /// (`thinking`, `metadata.user_id`, …) and descriptions of dropped parts (`thinking blocks`,
    /// `tool type web_search_20250305`, `tools[].cache_control`, …). For a debug log.
    pub dropped: Vec<String>,
}

/// Translates an Anthropic Messages request into a Chat Completions request for
/// `upstream_model` (see the module docs for the mapping).
///
/// Errors ([`EgressError::InvalidRequest`], [`EgressError::Unsupported`], with the JSON path):
/// `messages` missing or not an array, a message or block of the wrong shape, an unknown role,
/// an image or document source Chat Completions cannot carry, `max_tokens` not a non-negative
/// integer, `temperature`/`top_p` not numbers, `stop_sequences` not an array of strings,
/// `tools` or `tool_choice` malformed.
pub fn request(
    parsed: &RequestBody<'_>,
    upstream_model: &str,
    opts: &RequestOptions,
) -> Result<Translated, EgressError> {
    let mut dropped = Dropped::default();
    let mut system: Option<String> = None;
    let mut messages: Option<Vec<Value>> = None;
    let mut max_tokens: Option<u64> = None;
    let mut temperature: Option<Value> = None;
    let mut top_p: Option<Value> = None;
    let mut stop: Option<Vec<Value>> = None;
    let mut tools: Option<Vec<Value>> = None;
    let mut tool_choice: Option<(Value, bool)> = None;
    let mut user: Option<String> = None;

    for (key, raw) in &parsed.fields {
        let key = key.as_ref();
        match key {
            "model" | "stream" | "fallbacks" => continue,
            "system" | "messages" | "max_tokens" | "temperature" | "top_p" | "stop_sequences"
            | "tools" | "tool_choice" | "metadata" => {}
            other => {
                dropped.add(other);
                continue;
            }
        }
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|_| invalid(key.to_owned(), "must be valid JSON"))?;
        if value.is_null() {
            continue;
        }
        match key {
            "system" => system = Some(system_text(&value, "system")?),
            "messages" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| invalid("messages".into(), "must be an array"))?;
                messages = Some(convert_messages(list, &mut dropped)?);
            }
            "max_tokens" => {
                max_tokens = Some(
                    value
                        .as_u64()
                        .ok_or_else(|| invalid(key.into(), "must be a non-negative integer"))?,
                );
            }
            "temperature" | "top_p" => {
                if !value.is_number() {
                    return Err(invalid(key.into(), "must be a number"));
                }
                if key == "temperature" {
                    temperature = Some(value);
                } else {
                    top_p = Some(value);
                }
            }
            "stop_sequences" => {
                let list = value
                    .as_array()
                    .filter(|l| l.iter().all(Value::is_string))
                    .ok_or_else(|| invalid(key.into(), "must be an array of strings"))?;
                stop = Some(list.clone()).filter(|l| !l.is_empty());
            }
            "tools" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| invalid(key.into(), "must be an array"))?;
                tools = Some(convert_tools(list, &mut dropped)?);
            }
            "tool_choice" => tool_choice = Some(convert_tool_choice(&value)?),
            "metadata" => user = convert_metadata(&value, &mut dropped)?,
            _ => {}
        }
    }

    let mut all = Vec::new();
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        all.push(json!({"role": "system", "content": system}));
    }
    all.extend(messages.ok_or_else(|| invalid("messages".into(), "field required"))?);

    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    out.insert("messages".into(), Value::Array(all));
    if let Some(n) = max_tokens {
        out.insert(opts.max_tokens_field.as_str().into(), Value::from(n));
    }
    if let Some(t) = temperature {
        out.insert("temperature".into(), t);
    }
    if let Some(p) = top_p {
        out.insert("top_p".into(), p);
    }
    if let Some(stop) = stop {
        out.insert("stop".into(), Value::Array(stop));
    }
    match tools.filter(|t| !t.is_empty()) {
        Some(tools) => {
            out.insert("tools".into(), Value::Array(tools));
            if let Some((choice, parallel)) = tool_choice {
                out.insert("tool_choice".into(), choice);
                if !parallel {
                    out.insert("parallel_tool_calls".into(), Value::Bool(false));
                }
            }
        }
        None => {
            if tool_choice.is_some() {
                dropped.add("tool_choice");
            }
        }
    }
    if let Some(user) = user {
        out.insert("user".into(), Value::String(user));
    }
    if opts.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Translated {
        body: to_bytes(&Value::Object(out)),
        dropped: dropped.0,
    })
}

/// The names of what was dropped, deduplicated in order.
#[derive(Default)]
struct Dropped(Vec<String>);

impl Dropped {
    fn add(&mut self, what: &str) {
        if !self.0.iter().any(|d| d == what) {
            self.0.push(what.to_owned());
        }
    }
}

fn invalid(path: String, expected: &str) -> EgressError {
    EgressError::InvalidRequest {
        path,
        expected: expected.to_owned(),
    }
}

fn unsupported(path: String, what: String) -> EgressError {
    EgressError::Unsupported { path, what }
}

/// A string or an array of `text` blocks, joined with `\n`.
fn system_text(value: &Value, path: &str) -> Result<String, EgressError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                if block_type(block, || format!("{path}[{j}]"))? != "text" {
                    return Err(invalid(
                        format!("{path}[{j}].type"),
                        "must be \"text\" in a system prompt",
                    ));
                }
                texts.push(text_of(block, || format!("{path}[{j}]"))?);
            }
            Ok(texts.join("\n"))
        }
        _ => Err(invalid(
            path.to_owned(),
            "must be a string or an array of text blocks",
        )),
    }
}

/// A block's `type` (the block must be an object with a string `type`).
fn block_type(block: &Value, path: impl Fn() -> String) -> Result<&str, EgressError> {
    block
        .as_object()
        .ok_or_else(|| invalid(path(), "must be an object"))?
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{}.type", path()), "must be a string"))
}

/// A block's string `text`.
fn text_of(block: &Value, path: impl Fn() -> String) -> Result<&str, EgressError> {
    block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{}.text", path()), "must be a string"))
}

/// A block's string member `key`.
fn str_member<'v>(
    obj: &'v Value,
    key: &str,
    path: &impl Fn() -> String,
) -> Result<&'v str, EgressError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{}.{key}", path()), "must be a string"))
}

fn convert_messages(list: &[Value], dropped: &mut Dropped) -> Result<Vec<Value>, EgressError> {
    let mut out = Vec::with_capacity(list.len() + 1);
    for (i, message) in list.iter().enumerate() {
        let path = || format!("messages[{i}]");
        let obj = message
            .as_object()
            .ok_or_else(|| invalid(path(), "must be an object"))?;
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{}.role", path()), "must be a string"))?;
        let content = obj
            .get("content")
            .ok_or_else(|| invalid(format!("{}.content", path()), "field required"))?;
        match role {
            "system" => {
                let text = system_text(content, &format!("messages[{i}].content"))?;
                out.push(json!({"role": "system", "content": text}));
            }
            "user" => user_turn(content, i, &mut out, dropped)?,
            "assistant" => assistant_turn(content, i, &mut out, dropped)?,
            _ => {
                return Err(invalid(
                    format!("{}.role", path()),
                    "must be \"user\", \"assistant\" or \"system\"",
                ));
            }
        }
    }
    Ok(out)
}

/// The user message's content: a lone text part as a plain string, else the parts.
fn user_content(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1
        && parts[0].get("type").and_then(Value::as_str) == Some("text")
        && let Some(text) = parts[0].get_mut("text")
    {
        return text.take();
    }
    Value::Array(parts)
}

/// The blocks of a turn's `content`; a string content is written out as one message of `role`
/// at once (`None`).
fn content_blocks<'a>(
    content: &'a Value,
    role: &str,
    i: usize,
    out: &mut Vec<Value>,
) -> Result<Option<&'a Vec<Value>>, EgressError> {
    match content {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            Ok(None)
        }
        Value::Array(blocks) => Ok(Some(blocks)),
        _ => Err(invalid(
            format!("messages[{i}].content"),
            "must be a string or an array of content blocks",
        )),
    }
}

fn user_turn(
    content: &Value,
    i: usize,
    out: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<(), EgressError> {
    let Some(blocks) = content_blocks(content, "user", i, out)? else {
        return Ok(());
    };
    // Tool results first (they must follow the assistant's tool calls), then one user message
    // with the images they held and the rest of the turn.
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = || format!("messages[{i}].content[{j}]");
        match block_type(block, path)? {
            "text" => parts.push(json!({"type": "text", "text": text_of(block, path)?})),
            "image" => parts.push(image_part(block, &path)?),
            "document" => document_parts(block, &path, &mut parts)?,
            "tool_result" => out.push(tool_message(block, &path, &mut tool_images, dropped)?),
            "thinking" | "redacted_thinking" => dropped.add("thinking blocks"),
            other => dropped.add(&format!("content blocks of type {other}")),
        }
    }
    tool_images.append(&mut parts);
    if !tool_images.is_empty() {
        out.push(json!({"role": "user", "content": user_content(tool_images)}));
    }
    Ok(())
}

fn tool_message(
    block: &Value,
    path: &impl Fn() -> String,
    images: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<Value, EgressError> {
    let id = str_member(block, "tool_use_id", path)?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let mut texts = Vec::new();
            for (k, item) in items.iter().enumerate() {
                let item_path = || format!("{}.content[{k}]", path());
                match block_type(item, item_path)? {
                    "text" => texts.push(text_of(item, item_path)?),
                    "image" => images.push(image_part(item, &item_path)?),
                    "thinking" | "redacted_thinking" => dropped.add("thinking blocks"),
                    other => dropped.add(&format!("tool_result content blocks of type {other}")),
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(invalid(
                format!("{}.content", path()),
                "must be a string or an array of content blocks",
            ));
        }
    };
    match block.get("is_error") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Bool(true)) => text.insert_str(0, "Error: "),
        Some(_) => return Err(invalid(format!("{}.is_error", path()), "must be a boolean")),
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

fn image_part(block: &Value, path: &impl Fn() -> String) -> Result<Value, EgressError> {
    let source = block
        .get("source")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid(format!("{}.source", path()), "must be an object"))?;
    let source_path = || format!("{}.source", path());
    let url = match str_member(source, "type", &source_path)? {
        "base64" => {
            let media_type = str_member(source, "media_type", &source_path)?;
            let data = str_member(source, "data", &source_path)?;
            format!("data:{media_type};base64,{data}")
        }
        "url" => str_member(source, "url", &source_path)?.to_owned(),
        other => {
            return Err(unsupported(
                source_path(),
                format!("an image source of type {other:?}"),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn document_parts(
    block: &Value,
    path: &impl Fn() -> String,
    parts: &mut Vec<Value>,
) -> Result<(), EgressError> {
    let source = block
        .get("source")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid(format!("{}.source", path()), "must be an object"))?;
    let source_path = || format!("{}.source", path());
    match str_member(source, "type", &source_path)? {
        "base64" => {
            let media_type = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("application/pdf");
            let data = str_member(source, "data", &source_path)?;
            let filename = block
                .get("title")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .unwrap_or("document.pdf");
            parts.push(json!({"type": "file", "file": {
                "filename": filename,
                "file_data": format!("data:{media_type};base64,{data}"),
            }}));
        }
        "text" => {
            let data = str_member(source, "data", &source_path)?;
            parts.push(json!({"type": "text", "text": data}));
        }
        "content" => match source.get("content") {
            Some(Value::String(s)) => parts.push(json!({"type": "text", "text": s})),
            Some(Value::Array(items)) => {
                for (k, item) in items.iter().enumerate() {
                    let item_path = || format!("{}.content[{k}]", source_path());
                    match block_type(item, item_path)? {
                        "text" => {
                            parts.push(json!({"type": "text", "text": text_of(item, item_path)?}));
                        }
                        "image" => parts.push(image_part(item, &item_path)?),
                        other => {
                            return Err(unsupported(
                                item_path(),
                                format!("a document content block of type {other:?}"),
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(invalid(
                    format!("{}.content", source_path()),
                    "must be a string or an array of content blocks",
                ));
            }
        },
        other => {
            return Err(unsupported(
                source_path(),
                format!("a document source of type {other:?}"),
            ));
        }
    }
    Ok(())
}

fn assistant_turn(
    content: &Value,
    i: usize,
    out: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<(), EgressError> {
    let Some(blocks) = content_blocks(content, "assistant", i, out)? else {
        return Ok(());
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = || format!("messages[{i}].content[{j}]");
        match block_type(block, path)? {
            "text" => texts.push(text_of(block, path)?),
            "tool_use" => {
                let id = str_member(block, "id", &path)?;
                let name = str_member(block, "name", &path)?;
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) if input.is_object() => input.to_string(),
                    Some(_) => {
                        return Err(invalid(format!("{}.input", path()), "must be an object"));
                    }
                };
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            "thinking" | "redacted_thinking" => dropped.add("thinking blocks"),
            other => dropped.add(&format!("content blocks of type {other}")),
        }
    }
    if texts.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    message.insert(
        "content".into(),
        if texts.is_empty() {
            Value::Null
        } else {
            Value::String(texts.join("\n"))
        },
    );
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

/// Tool members that are dropped without a word: they are the custom tool itself.
const TOOL_MEMBERS: &[&str] = &["name", "description", "input_schema", "type"];

fn convert_tools(list: &[Value], dropped: &mut Dropped) -> Result<Vec<Value>, EgressError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let path = || format!("tools[{i}]");
        let obj = tool
            .as_object()
            .ok_or_else(|| invalid(path(), "must be an object"))?;
        match obj.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "custom" => {}
            Some(Value::String(t)) => {
                dropped.add(&format!("tool type {t}"));
                continue;
            }
            Some(_) => return Err(invalid(format!("{}.type", path()), "must be a string")),
        }
        let name = str_member(tool, "name", &path)?;
        let mut function = Map::new();
        function.insert("name".into(), Value::from(name));
        match obj.get("description") {
            None | Some(Value::Null) => {}
            Some(Value::String(d)) => {
                function.insert("description".into(), Value::from(d.as_str()));
            }
            Some(_) => {
                return Err(invalid(
                    format!("{}.description", path()),
                    "must be a string",
                ));
            }
        }
        let schema = match obj.get("input_schema") {
            Some(schema @ Value::Object(_)) => schema.clone(),
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(_) => {
                return Err(invalid(
                    format!("{}.input_schema", path()),
                    "must be an object",
                ));
            }
        };
        function.insert("parameters".into(), schema);
        for key in obj.keys() {
            if !TOOL_MEMBERS.contains(&key.as_str()) {
                dropped.add(&format!("tools[].{key}"));
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// The `tool_choice` value and whether parallel tool calls stay allowed.
fn convert_tool_choice(value: &Value) -> Result<(Value, bool), EgressError> {
    let path = || "tool_choice".to_owned();
    let choice = match block_type(value, path)? {
        "auto" => Value::from("auto"),
        "any" => Value::from("required"),
        "none" => Value::from("none"),
        "tool" => {
            let name = str_member(value, "name", &path)?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(invalid(
                "tool_choice.type".into(),
                "must be \"auto\", \"any\", \"tool\" or \"none\"",
            ));
        }
    };
    let parallel = match value.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(disable)) => !disable,
        Some(_) => {
            return Err(invalid(
                "tool_choice.disable_parallel_tool_use".into(),
                "must be a boolean",
            ));
        }
    };
    Ok((choice, parallel))
}

/// `metadata.user_id` as `user` when short enough; other members are reported dropped.
fn convert_metadata(value: &Value, dropped: &mut Dropped) -> Result<Option<String>, EgressError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("metadata".into(), "must be an object"))?;
    let mut user = None;
    for (key, v) in obj {
        match (key.as_str(), v) {
            ("user_id", Value::Null) => {}
            ("user_id", Value::String(id)) if id.chars().count() <= MAX_USER_LEN => {
                user = Some(id.clone());
            }
            ("user_id", Value::String(_)) => dropped.add("metadata.user_id"),
            ("user_id", _) => {
                return Err(invalid(
                    "metadata.user_id".into(),
                    "must be a string or null",
                ));
            }
            (other, _) => dropped.add(&format!("metadata.{other}")),
        }
    }
    Ok(user)
}
