//! Chat Completions request body → Anthropic Messages request body (the table in the parent
//! module's docs).

use serde_json::{Map, Value, json};

use super::super::{data_url, effort_budget};
use super::ChatError;
use crate::json;

/// Settings of the translation that are the gateway's, not the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestOptions {
    /// The Anthropic `max_tokens` (required there) when the client gives neither
    /// `max_completion_tokens` nor `max_tokens` (OpenAI's default is "as many as the model
    /// allows", which Claude has no spelling for). The data plane passes 4096.
    pub default_max_tokens: u32,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            default_max_tokens: 4096,
        }
    }
}

/// A Chat Completions request turned into an Anthropic Messages request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The Anthropic Messages body. `model` is the client's, byte for byte; `"stream": true` is
    /// there for a streaming request.
    pub body: Vec<u8>,
    /// The client's `model`.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `stream_options.include_usage`: the stream ends with a usage chunk ([`super::ChatStream`]).
    pub include_usage: bool,
    /// `anthropic-beta` values the translation needs. Empty today: structured outputs
    /// (`output_config.format`) are generally available and need none; the list stays for the
    /// features that will.
    pub betas: Vec<&'static str>,
    /// Fields the client sent that Claude cannot take and that were left out (JSON paths such as
    /// `seed` or `messages[2].reasoning_content`), for the caller to log at debug level.
    pub dropped: Vec<String>,
}

/// Top-level fields dropped because Claude has no equivalent (named in [`Translated::dropped`]).
const DROPPED: &[&str] = &[
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "service_tier",
    "store",
    "prediction",
    "web_search_options",
];

/// Turns a Chat Completions body into an Anthropic Messages body (see the parent module for the
/// mapping). Only the translation's own choices are made here; what Claude itself refuses (an
/// unknown model, a too long prompt) is left to the upstream.
///
/// Errors ([`ChatError`], a 400 for the client): not JSON, not an object, duplicate top-level
/// keys, `model` or `messages` missing or of the wrong type, `messages` empty, and every refusal
/// of the mapping table.
pub fn request(body: &[u8], opts: &RequestOptions) -> Result<Translated, ChatError> {
    let fields = json::parse_object(body)?;
    let mut input = Map::new();
    for (key, raw) in &fields {
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|e| ChatError::invalid(key.as_ref(), e.to_string()))?;
        if !value.is_null() {
            input.insert(key.to_string(), value);
        }
    }
    Builder::default().build(input, opts)
}

#[derive(Default)]
struct Builder {
    dropped: Vec<String>,
    system: Vec<Value>,
    turns: Vec<(&'static str, Vec<Value>)>,
}

fn take_str(input: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ChatError> {
    match input.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ChatError::invalid(key, "must be a string")),
    }
}

fn take_bool(input: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, ChatError> {
    match input.remove(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ChatError::invalid(key, "must be a boolean")),
    }
}

fn take_tokens(input: &mut Map<String, Value>, key: &str) -> Result<Option<u64>, ChatError> {
    match input.remove(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= u64::from(u32::MAX) => Ok(Some(n)),
            _ => Err(ChatError::invalid(key, "must be a non-negative integer")),
        },
    }
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

impl Builder {
    fn build(
        mut self,
        mut input: Map<String, Value>,
        opts: &RequestOptions,
    ) -> Result<Translated, ChatError> {
        let model = match input.remove("model") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) => return Err(ChatError::invalid("model", "must not be empty")),
            Some(_) => return Err(ChatError::invalid("model", "must be a string")),
            None => return Err(ChatError::invalid("model", "field required")),
        };
        let messages = match input.remove("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m,
            Some(Value::Array(_)) => {
                return Err(ChatError::invalid("messages", "must not be empty"));
            }
            Some(_) => return Err(ChatError::invalid("messages", "must be an array")),
            None => return Err(ChatError::invalid("messages", "field required")),
        };
        self.refuse_unsupported(&mut input)?;

        let stream = take_bool(&mut input, "stream")?.unwrap_or(false);
        let include_usage = match input.remove("stream_options") {
            None => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ChatError::invalid(
                        "stream_options.include_usage",
                        "must be a boolean",
                    ));
                }
            },
            Some(_) => return Err(ChatError::invalid("stream_options", "must be an object")),
        };

        for (i, message) in messages.into_iter().enumerate() {
            self.message(i, message)?;
        }

        let mut out = Map::new();
        out.insert("model".into(), Value::String(model.clone()));
        // Set below; inserted now to stand after "model" for readers of logged bodies.
        out.insert("max_tokens".into(), Value::Null);
        let max_completion = take_tokens(&mut input, "max_completion_tokens")?;
        let max_tokens = take_tokens(&mut input, "max_tokens")?;
        let mut max_tokens = max_completion
            .or(max_tokens)
            .unwrap_or(u64::from(opts.default_max_tokens));

        if !self.system.is_empty() {
            out.insert(
                "system".into(),
                Value::Array(std::mem::take(&mut self.system)),
            );
        }
        let turns = std::mem::take(&mut self.turns);
        out.insert(
            "messages".into(),
            Value::Array(
                turns
                    .into_iter()
                    .map(|(role, content)| json!({"role": role, "content": content}))
                    .collect(),
            ),
        );

        if let Some(stop) = input.remove("stop") {
            let stops = match stop {
                Value::String(s) => vec![Value::String(s)],
                Value::Array(items) => items,
                _ => {
                    return Err(ChatError::invalid(
                        "stop",
                        "must be a string or an array of strings",
                    ));
                }
            };
            let mut kept = Vec::with_capacity(stops.len());
            for (i, s) in stops.into_iter().enumerate() {
                match s {
                    Value::String(s) if s.trim().is_empty() => {}
                    Value::String(s) => kept.push(Value::String(s)),
                    _ => return Err(ChatError::invalid(format!("stop[{i}]"), "must be a string")),
                }
            }
            if !kept.is_empty() {
                out.insert("stop_sequences".into(), Value::Array(kept));
            }
        }

        let temperature = input.remove("temperature");
        if let Some(t) = &temperature {
            match t.as_f64() {
                Some(x) if (0.0..=1.0).contains(&x) => {}
                Some(x) if (0.0..=2.0).contains(&x) => {
                    return Err(ChatError::invalid(
                        "temperature",
                        format!(
                            "{x} is above 1, the highest temperature Claude models take (OpenAI's range is 0 to 2, Claude's 0 to 1)"
                        ),
                    ));
                }
                _ => {
                    return Err(ChatError::invalid(
                        "temperature",
                        "must be a number between 0 and 1",
                    ));
                }
            }
            out.insert("temperature".into(), t.clone());
        }
        if let Some(p) = input.remove("top_p") {
            if !p.is_number() {
                return Err(ChatError::invalid("top_p", "must be a number"));
            }
            out.insert("top_p".into(), p);
        }
        if let Some(k) = input.remove("top_k") {
            out.insert("top_k".into(), k);
        }
        if stream {
            out.insert("stream".into(), Value::Bool(true));
        }

        self.tools(&mut input, &mut out)?;

        // Thinking: Anthropic's own `thinking` wins over `reasoning_effort`.
        let effort = take_str(&mut input, "reasoning_effort")?;
        let thinking = match input.remove("thinking") {
            Some(t) => {
                if effort.is_some() {
                    self.dropped.push("reasoning_effort".into());
                }
                Some(t)
            }
            None => match effort {
                None => None,
                Some(e) => match effort_budget(&e) {
                    Some(None) => None,
                    Some(Some(budget)) => Some(json!({"type": "enabled", "budget_tokens": budget})),
                    None => {
                        return Err(ChatError::invalid(
                            "reasoning_effort",
                            format!(
                                "unknown value {e:?}: expected one of none, minimal, low, medium, high, xhigh"
                            ),
                        ));
                    }
                },
            },
        };
        if let Some(thinking) = thinking {
            let kind = type_of(&thinking);
            if matches!(kind, Some("enabled" | "adaptive")) {
                if let Some(t) = temperature.as_ref().and_then(Value::as_f64)
                    && t != 1.0
                {
                    return Err(ChatError::invalid(
                        "temperature",
                        "must be 1 or unset when reasoning is on (reasoning_effort or thinking): Claude models refuse other temperatures with thinking",
                    ));
                }
                if let Some(budget) = thinking.get("budget_tokens").and_then(Value::as_u64)
                    && kind == Some("enabled")
                    && max_tokens <= budget
                {
                    max_tokens = budget.saturating_add(max_tokens);
                }
            }
            out.insert("thinking".into(), thinking);
        }
        out.insert("max_tokens".into(), Value::from(max_tokens));

        self.output_config(&mut input, &mut out)?;
        self.metadata(&mut input, &mut out)?;
        if let Some(c) = input.remove("cache_control") {
            out.insert("cache_control".into(), c);
        }

        // Whatever is left: known OpenAI fields Claude cannot take, and unknown fields.
        for (key, _) in input {
            self.dropped.push(key);
        }
        let body = serde_json::to_vec(&Value::Object(out))
            .map_err(|e| ChatError::invalid("", e.to_string()))?;
        Ok(Translated {
            body,
            model,
            stream,
            include_usage,
            betas: Vec::new(),
            dropped: self.dropped,
        })
    }

    /// Fields whose presence asks for something Claude cannot do: refused, never dropped.
    fn refuse_unsupported(&mut self, input: &mut Map<String, Value>) -> Result<(), ChatError> {
        match input.remove("n") {
            None => {}
            Some(n) if n.as_u64() == Some(1) => {}
            Some(_) => {
                return Err(ChatError::invalid(
                    "n",
                    "only 1 is supported: Claude models return one choice per request",
                ));
            }
        }
        match input.remove("logprobs") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(ChatError::invalid(
                    "logprobs",
                    "not supported: Claude models do not return log probabilities",
                ));
            }
        }
        match input.remove("top_logprobs") {
            None => {}
            Some(n) if n.as_u64() == Some(0) => {}
            Some(_) => {
                return Err(ChatError::invalid(
                    "top_logprobs",
                    "not supported: Claude models do not return log probabilities",
                ));
            }
        }
        if let Some(m) = input.remove("modalities") {
            let Value::Array(items) = m else {
                return Err(ChatError::invalid(
                    "modalities",
                    "must be an array of strings",
                ));
            };
            for (i, item) in items.iter().enumerate() {
                if item.as_str() != Some("text") {
                    return Err(ChatError::invalid(
                        format!("modalities[{i}]"),
                        "only \"text\" is supported: Claude models answer in text",
                    ));
                }
            }
        }
        if input.remove("audio").is_some() {
            return Err(ChatError::invalid(
                "audio",
                "not supported: Claude models answer in text",
            ));
        }
        for legacy in ["functions", "function_call"] {
            if input.remove(legacy).is_some() {
                return Err(ChatError::invalid(
                    legacy,
                    "deprecated and not supported: send tools and tool_choice",
                ));
            }
        }
        for key in DROPPED {
            if input.remove(*key).is_some() {
                self.dropped.push((*key).into());
            }
        }
        Ok(())
    }

    fn tools(
        &mut self,
        input: &mut Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> Result<(), ChatError> {
        let tools = match input.remove("tools") {
            None => Vec::new(),
            Some(Value::Array(t)) => t,
            Some(_) => return Err(ChatError::invalid("tools", "must be an array")),
        };
        let parallel = take_bool(input, "parallel_tool_calls")?;
        let choice = input.remove("tool_choice");
        if tools.is_empty() {
            if choice.is_some() {
                self.dropped.push("tool_choice".into());
            }
            return Ok(());
        }
        let mut converted = Vec::with_capacity(tools.len());
        for (i, tool) in tools.into_iter().enumerate() {
            converted.push(convert_tool(i, tool)?);
        }
        out.insert("tools".into(), Value::Array(converted));

        let mut choice = match choice {
            None => None,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Some(json!({"type": "auto"})),
                "none" => Some(json!({"type": "none"})),
                "required" => Some(json!({"type": "any"})),
                other => {
                    return Err(ChatError::invalid(
                        "tool_choice",
                        format!(
                            "unknown value {other:?}: expected auto, none, required or {{\"type\":\"function\",\"function\":{{\"name\":…}}}}"
                        ),
                    ));
                }
            },
            Some(Value::Object(o)) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str);
                match (o.get("type").and_then(Value::as_str), name) {
                    (Some("function"), Some(name)) => Some(json!({"type": "tool", "name": name})),
                    (Some("function"), None) => {
                        return Err(ChatError::invalid(
                            "tool_choice.function.name",
                            "field required",
                        ));
                    }
                    _ => {
                        return Err(ChatError::invalid(
                            "tool_choice.type",
                            "only \"function\" is supported",
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(ChatError::invalid(
                    "tool_choice",
                    "must be a string or an object",
                ));
            }
        };
        if parallel == Some(false) {
            let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if type_of(choice) != Some("none")
                && let Some(map) = choice.as_object_mut()
            {
                map.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
        Ok(())
    }

    fn output_config(
        &mut self,
        input: &mut Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> Result<(), ChatError> {
        let mut config = match input.remove("output_config") {
            None => None,
            Some(Value::Object(o)) => Some(o),
            Some(_) => return Err(ChatError::invalid("output_config", "must be an object")),
        };
        if let Some(format) = input.remove("response_format") {
            match type_of(&format) {
                Some("text") => {}
                Some("json_schema") => {
                    let Some(schema) = format.get("json_schema").and_then(|s| s.get("schema"))
                    else {
                        return Err(ChatError::invalid(
                            "response_format.json_schema.schema",
                            "field required",
                        ));
                    };
                    if !schema.is_object() {
                        return Err(ChatError::invalid(
                            "response_format.json_schema.schema",
                            "must be an object",
                        ));
                    }
                    config.get_or_insert_with(Map::new).insert(
                        "format".into(),
                        json!({"type": "json_schema", "schema": schema}),
                    );
                }
                Some("json_object") => {
                    return Err(ChatError::invalid(
                        "response_format.type",
                        "\"json_object\" is not supported by Claude models: send {\"type\":\"json_schema\",\"json_schema\":{\"name\":…,\"schema\":{…}}} (structured outputs) instead",
                    ));
                }
                _ => {
                    return Err(ChatError::invalid(
                        "response_format.type",
                        "expected text, json_schema or json_object",
                    ));
                }
            }
        }
        if let Some(config) = config {
            out.insert("output_config".into(), Value::Object(config));
        }
        Ok(())
    }

    fn metadata(
        &mut self,
        input: &mut Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> Result<(), ChatError> {
        let user = take_str(input, "user")?;
        let mut metadata = match input.remove("metadata") {
            // Anthropic's: `{user_id}` and nothing else.
            Some(Value::Object(m)) if m.len() == 1 && m.contains_key("user_id") => Some(m),
            Some(_) => {
                self.dropped.push("metadata".into());
                None
            }
            None => None,
        };
        if let Some(user) = user {
            let m = metadata.get_or_insert_with(Map::new);
            if !m.contains_key("user_id") {
                m.insert("user_id".into(), Value::String(user));
            }
        }
        if let Some(m) = metadata {
            out.insert("metadata".into(), Value::Object(m));
        }
        Ok(())
    }

    // === Messages ===

    fn message(&mut self, i: usize, message: Value) -> Result<(), ChatError> {
        let path = format!("messages[{i}]");
        let Value::Object(mut m) = message else {
            return Err(ChatError::invalid(path, "must be an object"));
        };
        let role = match m.remove("role") {
            Some(Value::String(r)) => r,
            Some(_) => {
                return Err(ChatError::invalid(
                    format!("{path}.role"),
                    "must be a string",
                ));
            }
            None => return Err(ChatError::invalid(format!("{path}.role"), "field required")),
        };
        if m.remove("name").is_some_and(|n| !n.is_null()) {
            self.dropped.push(format!("{path}.name"));
        }
        let cache_control = m.remove("cache_control").filter(|c| !c.is_null());
        let content = m.remove("content").filter(|c| !c.is_null());
        let mut blocks = Vec::new();
        let turn = match role.as_str() {
            "system" | "developer" => {
                let mut blocks = text_blocks(&path, content, false)?;
                set_last_cache_control(&mut blocks, cache_control);
                self.system.extend(blocks);
                return Ok(());
            }
            "user" => {
                blocks = user_blocks(&path, content)?;
                "user"
            }
            "assistant" => {
                self.reasoning(&path, &mut m, &mut blocks)?;
                blocks.extend(text_blocks(&path, content, true)?);
                if let Some(refusal) = m.remove("refusal") {
                    match refusal {
                        Value::Null => {}
                        Value::String(s) if s.is_empty() => {}
                        Value::String(s) => blocks.push(json!({"type": "text", "text": s})),
                        _ => {
                            return Err(ChatError::invalid(
                                format!("{path}.refusal"),
                                "must be a string",
                            ));
                        }
                    }
                }
                tool_calls(&path, m.remove("tool_calls"), &mut blocks)?;
                "assistant"
            }
            "tool" => {
                let id = match m.remove("tool_call_id") {
                    Some(Value::String(s)) => s,
                    Some(_) => {
                        return Err(ChatError::invalid(
                            format!("{path}.tool_call_id"),
                            "must be a string",
                        ));
                    }
                    None => {
                        return Err(ChatError::invalid(
                            format!("{path}.tool_call_id"),
                            "field required",
                        ));
                    }
                };
                let mut result = Map::new();
                result.insert("type".into(), "tool_result".into());
                result.insert("tool_use_id".into(), Value::String(id));
                match content {
                    None => {}
                    Some(Value::String(s)) if s.is_empty() => {}
                    Some(Value::String(s)) => {
                        result.insert("content".into(), Value::String(s));
                    }
                    Some(c) => {
                        let parts = user_blocks(&path, Some(c))?;
                        if !parts.is_empty() {
                            result.insert("content".into(), Value::Array(parts));
                        }
                    }
                }
                if let Some(c) = cache_control {
                    result.insert("cache_control".into(), c);
                }
                self.push_tool_result(Value::Object(result));
                return Ok(());
            }
            "function" => {
                return Err(ChatError::invalid(
                    format!("{path}.role"),
                    "\"function\" messages are deprecated and not supported: use tool messages",
                ));
            }
            other => {
                return Err(ChatError::invalid(
                    format!("{path}.role"),
                    format!(
                        "unknown role {other:?}: expected system, developer, user, assistant or tool"
                    ),
                ));
            }
        };
        set_last_cache_control(&mut blocks, cache_control);
        self.push(turn, blocks);
        Ok(())
    }

    fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => self.turns.push((role, blocks)),
        }
    }

    /// A tool result joins the current user turn after the results already there and before
    /// any other content (Claude wants the results first).
    fn push_tool_result(&mut self, result: Value) {
        match self.turns.last_mut() {
            Some((role, content)) if *role == "user" => {
                let at = content
                    .iter()
                    .take_while(|b| type_of(b) == Some("tool_result"))
                    .count();
                content.insert(at, result);
            }
            _ => self.turns.push(("user", vec![result])),
        }
    }

    /// An assistant message's `reasoning_details` → thinking blocks (first in the turn);
    /// `reasoning_content` is unsigned and dropped.
    fn reasoning(
        &mut self,
        path: &str,
        m: &mut Map<String, Value>,
        blocks: &mut Vec<Value>,
    ) -> Result<(), ChatError> {
        if m.remove("reasoning_content").is_some_and(|r| !r.is_null()) {
            self.dropped.push(format!("{path}.reasoning_content"));
        }
        let details = match m.remove("reasoning_details") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(d)) => d,
            Some(_) => {
                return Err(ChatError::invalid(
                    format!("{path}.reasoning_details"),
                    "must be an array",
                ));
            }
        };
        // Text of a thinking block that has not met its signature yet (a streamed client sends
        // back the fragments it received, the signature in the last one).
        let mut pending: Option<String> = None;
        for (j, detail) in details.into_iter().enumerate() {
            let dpath = format!("{path}.reasoning_details[{j}]");
            let str_field = |key: &str| -> Result<Option<String>, ChatError> {
                match detail.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(ChatError::invalid(
                        format!("{dpath}.{key}"),
                        "must be a string",
                    )),
                }
            };
            match type_of(&detail) {
                Some("reasoning.text") => {
                    let text = str_field("text")?.unwrap_or_default();
                    pending.get_or_insert_with(String::new).push_str(&text);
                    if let Some(signature) = str_field("signature")?.filter(|s| !s.is_empty()) {
                        let thinking = pending.take().unwrap_or_default();
                        blocks.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
                    }
                }
                Some("reasoning.encrypted") => {
                    if pending.take().is_some() {
                        self.dropped
                            .push(format!("{dpath} (unsigned reasoning before it)"));
                    }
                    let Some(data) = str_field("data")? else {
                        return Err(ChatError::invalid(
                            format!("{dpath}.data"),
                            "field required",
                        ));
                    };
                    blocks.push(json!({"type": "redacted_thinking", "data": data}));
                }
                Some(_) => self.dropped.push(dpath),
                None => {
                    return Err(ChatError::invalid(
                        format!("{dpath}.type"),
                        "field required",
                    ));
                }
            }
        }
        if pending.is_some() {
            self.dropped.push(format!(
                "{path}.reasoning_details (reasoning without signature)"
            ));
        }
        Ok(())
    }
}

fn set_last_cache_control(blocks: &mut [Value], cache_control: Option<Value>) {
    if let (Some(c), Some(Value::Object(last))) = (cache_control, blocks.last_mut()) {
        last.insert("cache_control".into(), c);
    }
}

/// Content that may only hold text (system, developer, assistant): a string or `text` parts
/// (assistants' `refusal` parts too). Empty texts are left out (Claude refuses empty blocks).
fn text_blocks(
    path: &str,
    content: Option<Value>,
    assistant: bool,
) -> Result<Vec<Value>, ChatError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (k, part) in parts.into_iter().enumerate() {
                let ppath = format!("{path}.content[{k}]");
                let key = match type_of(&part) {
                    Some("text") => "text",
                    Some("refusal") if assistant => "refusal",
                    Some(other) => {
                        return Err(ChatError::invalid(
                            format!("{ppath}.type"),
                            format!("{other:?} parts are not supported here: only text"),
                        ));
                    }
                    None => {
                        return Err(ChatError::invalid(
                            format!("{ppath}.type"),
                            "field required",
                        ));
                    }
                };
                let text = part_text(&ppath, &part, key)?;
                if !text.is_empty() {
                    let mut block = json!({"type": "text", "text": text});
                    copy_cache_control(&part, &mut block);
                    blocks.push(block);
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(ChatError::invalid(
            format!("{path}.content"),
            "must be a string or an array of parts",
        )),
    }
}

fn part_text(ppath: &str, part: &Value, key: &str) -> Result<String, ChatError> {
    match part.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ChatError::invalid(
            format!("{ppath}.{key}"),
            "must be a string",
        )),
        None => Err(ChatError::invalid(
            format!("{ppath}.{key}"),
            "field required",
        )),
    }
}

fn copy_cache_control(part: &Value, block: &mut Value) {
    if let (Some(c), Some(map)) = (
        part.get("cache_control").filter(|c| !c.is_null()),
        block.as_object_mut(),
    ) {
        map.insert("cache_control".into(), c.clone());
    }
}

/// User (and tool) content: a string or parts (`text`, `image_url`, `file`).
fn user_blocks(path: &str, content: Option<Value>) -> Result<Vec<Value>, ChatError> {
    let parts = match content {
        Some(Value::Array(parts)) => parts,
        other => return text_blocks(path, other, false),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (k, part) in parts.into_iter().enumerate() {
        let ppath = format!("{path}.content[{k}]");
        let mut block = match type_of(&part) {
            Some("text") => {
                let text = part_text(&ppath, &part, "text")?;
                if text.is_empty() {
                    continue;
                }
                json!({"type": "text", "text": text})
            }
            Some("image_url") => {
                let url = match part.get("image_url") {
                    // Early SDKs sent the URL as a bare string.
                    Some(Value::String(u)) => u.as_str(),
                    Some(Value::Object(o)) => match o.get("url") {
                        Some(Value::String(u)) => u.as_str(),
                        _ => {
                            return Err(ChatError::invalid(
                                format!("{ppath}.image_url.url"),
                                "must be a string",
                            ));
                        }
                    },
                    _ => {
                        return Err(ChatError::invalid(
                            format!("{ppath}.image_url"),
                            "field required",
                        ));
                    }
                };
                json!({"type": "image", "source": image_source(&format!("{ppath}.image_url.url"), url)?})
            }
            Some("file") => file_block(&ppath, &part)?,
            Some("input_audio") => {
                return Err(ChatError::invalid(
                    format!("{ppath}.type"),
                    "audio input is not supported by Claude models",
                ));
            }
            Some(other) => {
                return Err(ChatError::invalid(
                    format!("{ppath}.type"),
                    format!("unknown part type {other:?}: expected text, image_url or file"),
                ));
            }
            None => {
                return Err(ChatError::invalid(
                    format!("{ppath}.type"),
                    "field required",
                ));
            }
        };
        copy_cache_control(&part, &mut block);
        blocks.push(block);
    }
    Ok(blocks)
}

fn image_source(path: &str, url: &str) -> Result<Value, ChatError> {
    super::super::image_source(url).map_err(|why| ChatError::invalid(path, why))
}

fn file_block(ppath: &str, part: &Value) -> Result<Value, ChatError> {
    let Some(file) = part.get("file").filter(|f| f.is_object()) else {
        return Err(ChatError::invalid(
            format!("{ppath}.file"),
            "field required",
        ));
    };
    let data = match file.get("file_data") {
        Some(Value::String(d)) => d,
        Some(_) => {
            return Err(ChatError::invalid(
                format!("{ppath}.file.file_data"),
                "must be a string",
            ));
        }
        None if file.get("file_id").is_some_and(|v| !v.is_null()) => {
            return Err(ChatError::invalid(
                format!("{ppath}.file.file_id"),
                "OpenAI file ids are not supported: send the file inline as file_data",
            ));
        }
        None => {
            return Err(ChatError::invalid(
                format!("{ppath}.file.file_data"),
                "field required",
            ));
        }
    };
    match data_url(data) {
        Some(("application/pdf", b64)) => {
            let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64}});
            if let (Some(Value::String(name)), Some(map)) =
                (file.get("filename"), block.as_object_mut())
                && !name.is_empty()
            {
                map.insert("title".into(), Value::String(name.clone()));
            }
            Ok(block)
        }
        _ => Err(ChatError::invalid(
            format!("{ppath}.file.file_data"),
            "only PDF files are supported, as data:application/pdf;base64,<data>",
        )),
    }
}

fn convert_tool(i: usize, tool: Value) -> Result<Value, ChatError> {
    let path = format!("tools[{i}]");
    match type_of(&tool) {
        Some("function") => {}
        Some(other) => {
            return Err(ChatError::invalid(
                format!("{path}.type"),
                format!("{other:?} tools are not supported: only function tools"),
            ));
        }
        None => return Err(ChatError::invalid(format!("{path}.type"), "field required")),
    }
    let Some(Value::Object(f)) = tool.get("function") else {
        return Err(ChatError::invalid(
            format!("{path}.function"),
            "field required",
        ));
    };
    let name = match f.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => {
            return Err(ChatError::invalid(
                format!("{path}.function.name"),
                "must be a non-empty string",
            ));
        }
    };
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name));
    match f.get("description") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) => {
            out.insert("description".into(), Value::String(d.clone()));
        }
        Some(_) => {
            return Err(ChatError::invalid(
                format!("{path}.function.description"),
                "must be a string",
            ));
        }
    }
    let schema = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(ChatError::invalid(
                format!("{path}.function.parameters"),
                "must be an object",
            ));
        }
    };
    out.insert("input_schema".into(), schema);
    match f.get("strict") {
        None | Some(Value::Null) => {}
        Some(s @ Value::Bool(_)) => {
            out.insert("strict".into(), s.clone());
        }
        Some(_) => {
            return Err(ChatError::invalid(
                format!("{path}.function.strict"),
                "must be a boolean",
            ));
        }
    }
    if let Some(c) = tool.get("cache_control").filter(|c| !c.is_null()) {
        out.insert("cache_control".into(), c.clone());
    }
    Ok(Value::Object(out))
}

fn tool_calls(path: &str, calls: Option<Value>, blocks: &mut Vec<Value>) -> Result<(), ChatError> {
    let calls = match calls {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(c)) => c,
        Some(_) => {
            return Err(ChatError::invalid(
                format!("{path}.tool_calls"),
                "must be an array",
            ));
        }
    };
    for (j, call) in calls.into_iter().enumerate() {
        let cpath = format!("{path}.tool_calls[{j}]");
        match type_of(&call) {
            None | Some("function") => {}
            Some(other) => {
                return Err(ChatError::invalid(
                    format!("{cpath}.type"),
                    format!("{other:?} tool calls are not supported: only function"),
                ));
            }
        }
        let id = match call.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(ChatError::invalid(
                    format!("{cpath}.id"),
                    "must be a non-empty string",
                ));
            }
        };
        let Some(f) = call.get("function").filter(|f| f.is_object()) else {
            return Err(ChatError::invalid(
                format!("{cpath}.function"),
                "field required",
            ));
        };
        let name = match f.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err(ChatError::invalid(
                    format!("{cpath}.function.name"),
                    "must be a string",
                ));
            }
        };
        let input = match f.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(a)) if a.trim().is_empty() => json!({}),
            Some(Value::String(a)) => match serde_json::from_str::<Value>(a) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return Err(ChatError::invalid(
                        format!("{cpath}.function.arguments"),
                        "must encode a JSON object",
                    ));
                }
                Err(_) => {
                    return Err(ChatError::invalid(
                        format!("{cpath}.function.arguments"),
                        "not valid JSON",
                    ));
                }
            },
            Some(_) => {
                return Err(ChatError::invalid(
                    format!("{cpath}.function.arguments"),
                    "must be a string (JSON-encoded arguments)",
                ));
            }
        };
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(())
}
