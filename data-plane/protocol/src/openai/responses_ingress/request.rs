//! Responses request → Anthropic Messages request.

use serde_json::{Map, Value, json};

use super::super::{data_url, effort_budget, image_source};
use super::{NAMESPACE_SEPARATOR, ResponseContext, ResponsesError, ToolName, decode_reasoning};
use crate::json;

/// The beta asked for when thinking and tools are both on (thinking between tool calls).
const INTERLEAVED_THINKING: &str = "interleaved-thinking-2025-05-14";

/// The smallest thinking budget Anthropic accepts.
const MIN_BUDGET: u32 = 1024;

/// Gateway settings for the translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestOptions {
    /// `max_tokens` when the request has no `max_output_tokens` (Anthropic requires one).
    pub default_max_tokens: u32,
}

/// An Anthropic Messages request made from a Responses one.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// The Anthropic body: `model` (as the client sent it), `max_tokens`, `system`, `messages`,
    /// then the optional members, `stream` last when streaming.
    pub body: Vec<u8>,
    /// The model as the client sent it.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `anthropic-beta` values the body needs.
    pub betas: Vec<&'static str>,
    /// What was accepted but not translated, one entry per member or item
    /// (`store`, `tools[9] (web_search)`, `input[4] (reasoning without encrypted_content)`), for
    /// logs and a response header.
    pub dropped: Vec<String>,
    /// What the answer needs from the request ([`super::response`], [`super::ResponsesStream`]).
    pub context: ResponseContext,
}

/// Turns a Responses request body into an Anthropic Messages request (mapping in the module
/// docs).
///
/// Errors (all meant as 400s): not a JSON object, duplicate top-level keys, a member of the
/// wrong shape, `temperature` above 1, an unknown `reasoning.effort`, no message at all, stored
/// state (`previous_response_id`, `conversation`, `item_reference`, `background`, `prompt`),
/// uploaded files (`file_id`), audio, a built-in tool forced by `tool_choice`.
pub fn request(body: &[u8], opts: &RequestOptions) -> Result<Translated, ResponsesError> {
    let fields = json::parse_object(body)?;
    let mut req = Request::default();
    for (key, raw) in &fields {
        let value: Value = serde_json::from_str(raw.get()).map_err(ResponsesError::Json)?;
        req.member(key, value)?;
    }
    req.finish(opts)
}

/// Which side of the conversation a turn is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Default)]
struct Request {
    model: Option<String>,
    stream: bool,
    instructions: Option<String>,
    input: Option<Value>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    max_output_tokens: Option<u32>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    reasoning: Option<Value>,
    text: Option<Value>,
    metadata: Option<Value>,
    user: Option<String>,
    safety_identifier: Option<String>,
    truncation: Option<Value>,
    prompt_cache_key: bool,
    dropped: Vec<String>,
}

fn expect_str(param: &str, value: Value) -> Result<Option<String>, ResponsesError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(ResponsesError::invalid(param, "must be a string")),
    }
}

fn expect_bool(param: &str, value: &Value) -> Result<Option<bool>, ResponsesError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(ResponsesError::invalid(param, "must be a boolean")),
    }
}

fn stateless(param: &str) -> ResponsesError {
    ResponsesError::unsupported(
        param,
        "this gateway is stateless and stores no responses or conversations: send the whole \
         conversation in `input` (with `store: false`)",
    )
}

impl Request {
    fn member(&mut self, key: &str, value: Value) -> Result<(), ResponsesError> {
        match key {
            "model" => {
                self.model = expect_str(key, value)?;
            }
            "stream" => self.stream = expect_bool(key, &value)?.unwrap_or(false),
            "instructions" => match value {
                Value::Null => {}
                Value::String(s) => self.instructions = Some(s),
                _ => return Err(ResponsesError::invalid(key, "must be a string")),
            },
            "input" => self.input = Some(value),
            "tools" => match value {
                Value::Null => {}
                Value::Array(tools) => self.tools = Some(tools),
                _ => return Err(ResponsesError::invalid(key, "must be an array")),
            },
            "tool_choice" => {
                if !value.is_null() {
                    self.tool_choice = Some(value);
                }
            }
            "parallel_tool_calls" => self.parallel_tool_calls = expect_bool(key, &value)?,
            "max_output_tokens" => match value {
                Value::Null => {}
                v => {
                    let n = v
                        .as_u64()
                        .filter(|n| *n >= 1)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            ResponsesError::invalid(key, "must be a positive integer")
                        })?;
                    self.max_output_tokens = Some(n);
                }
            },
            "temperature" => match value.as_f64() {
                _ if value.is_null() => {}
                Some(t) if (0.0..=1.0).contains(&t) => self.temperature = Some(value),
                Some(_) => {
                    return Err(ResponsesError::invalid(
                        key,
                        "must be between 0 and 1 for Claude models",
                    ));
                }
                None => return Err(ResponsesError::invalid(key, "must be a number")),
            },
            "top_p" => match value.as_f64() {
                _ if value.is_null() => {}
                Some(p) if (0.0..=1.0).contains(&p) => self.top_p = Some(value),
                _ => return Err(ResponsesError::invalid(key, "must be a number in [0, 1]")),
            },
            "reasoning" => match value {
                Value::Null => {}
                Value::Object(_) => self.reasoning = Some(value),
                _ => return Err(ResponsesError::invalid(key, "must be an object")),
            },
            "text" => match value {
                Value::Null => {}
                Value::Object(_) => self.text = Some(value),
                _ => return Err(ResponsesError::invalid(key, "must be an object")),
            },
            "metadata" => {
                if !value.is_null() {
                    if !value.is_object() {
                        return Err(ResponsesError::invalid(key, "must be an object"));
                    }
                    self.dropped.push("metadata".into());
                    self.metadata = Some(value);
                }
            }
            "user" => self.user = expect_str(key, value)?,
            "safety_identifier" => self.safety_identifier = expect_str(key, value)?,
            "prompt_cache_key" => {
                self.prompt_cache_key = expect_str(key, value)?.is_some();
            }
            "previous_response_id" | "conversation" | "prompt" => {
                if !value.is_null() {
                    return Err(stateless(key));
                }
            }
            "background" => {
                if expect_bool(key, &value)? == Some(true) {
                    return Err(stateless(key));
                }
            }
            "store" => {
                if expect_bool(key, &value)? == Some(true) {
                    self.dropped.push("store".into());
                }
            }
            "include" => match value {
                Value::Null => {}
                Value::Array(items) => {
                    for item in items {
                        match item.as_str() {
                            // Always written (see the module docs).
                            Some("reasoning.encrypted_content") => {}
                            Some(s) => self.dropped.push(format!("include: {s}")),
                            None => {
                                return Err(ResponsesError::invalid(
                                    key,
                                    "must be an array of strings",
                                ));
                            }
                        }
                    }
                }
                _ => return Err(ResponsesError::invalid(key, "must be an array")),
            },
            "truncation" => match value.as_str() {
                _ if value.is_null() => {}
                Some("disabled") => self.truncation = Some(value),
                Some("auto") => {
                    self.dropped.push("truncation".into());
                    self.truncation = Some(value);
                }
                _ => return Err(ResponsesError::invalid(key, "must be `auto` or `disabled`")),
            },
            _ => {
                if !value.is_null() {
                    self.dropped.push(key.to_owned());
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, opts: &RequestOptions) -> Result<Translated, ResponsesError> {
        let model = self
            .model
            .take()
            .ok_or_else(|| ResponsesError::invalid("model", "required"))?;

        let mut tools = Tools::default();
        if let Some(list) = self.tools.take() {
            tools.declare(&list, &mut self.dropped)?;
        }
        let mut conv = Conversation::default();
        if let Some(text) = self.instructions.as_deref().filter(|t| !t.is_empty()) {
            conv.system.push(text_block(text));
        }
        match self.input.take() {
            None | Some(Value::Null) => {
                return Err(ResponsesError::invalid("input", "required"));
            }
            Some(Value::String(text)) => conv.push(Role::User, text_block(&text)),
            Some(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    conv.item(i, item, &tools, &mut self.dropped)?;
                }
            }
            Some(_) => {
                return Err(ResponsesError::invalid(
                    "input",
                    "must be a string or an array of items",
                ));
            }
        }
        if conv.turns.is_empty() {
            return Err(ResponsesError::invalid(
                "input",
                "must contain at least one user or assistant message",
            ));
        }
        for (role, blocks) in &mut conv.turns {
            if *role == Role::User {
                // Anthropic wants the tool results first in the turn that answers a tool use.
                blocks
                    .sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            }
        }

        // Thinking.
        let mut max_tokens = self.max_output_tokens.unwrap_or(opts.default_max_tokens);
        let (effort, summary) = match &self.reasoning {
            Some(r) => (
                r.get("effort").and_then(Value::as_str),
                r.get("summary")
                    .or_else(|| r.get("generate_summary"))
                    .is_some_and(|s| s.is_string() && s.as_str() != Some("none")),
            ),
            None => (None, false),
        };
        let mut budget = match effort {
            None => None,
            Some(e) => effort_budget(e).ok_or_else(|| {
                ResponsesError::invalid(
                    "reasoning.effort",
                    "must be one of none, minimal, low, medium, high, xhigh",
                )
            })?,
        };
        if let Some(b) = budget {
            if self.max_output_tokens.is_some() {
                if max_tokens <= MIN_BUDGET {
                    budget = None;
                    self.dropped
                        .push("reasoning (max_output_tokens leaves no room for thinking)".into());
                } else {
                    budget = Some(b.min(max_tokens - 1));
                }
            } else if max_tokens <= b {
                max_tokens = b.saturating_add(opts.default_max_tokens);
            }
        }
        if budget.is_some() && conv.continues_tool_use_without_thinking() {
            budget = None;
            self.dropped.push(
                "reasoning (the tool-use turn being continued has no reasoning item with \
                 encrypted_content)"
                    .into(),
            );
        }
        if budget.is_some() {
            if self.temperature.take().is_some() {
                self.dropped.push("temperature (thinking is on)".into());
            }
            if self.top_p.take().is_some() {
                self.dropped.push("top_p (thinking is on)".into());
            }
        }

        // Structured outputs.
        let mut output_format = None;
        if let Some(text) = &self.text {
            if let Some(format) = text.get("format").filter(|f| !f.is_null()) {
                match format.get("type").and_then(Value::as_str) {
                    Some("text") => {}
                    Some("json_schema") => {
                        let schema =
                            format
                                .get("schema")
                                .filter(|s| s.is_object())
                                .ok_or_else(|| {
                                    ResponsesError::invalid(
                                        "text.format.schema",
                                        "must be an object",
                                    )
                                })?;
                        output_format = Some(json!({"type": "json_schema", "schema": schema}));
                    }
                    Some("json_object") => self.dropped.push("text.format (json_object)".into()),
                    _ => {
                        return Err(ResponsesError::invalid(
                            "text.format.type",
                            "must be text, json_schema or json_object",
                        ));
                    }
                }
            }
            if text.get("verbosity").is_some_and(|v| !v.is_null()) {
                self.dropped.push("text.verbosity".into());
            }
        }

        // Tool choice.
        let parallel = self.parallel_tool_calls.unwrap_or(true);
        let tool_choice = if tools.anthropic.is_empty() {
            None
        } else {
            let mut choice = match &self.tool_choice {
                None => json!({"type": "auto"}),
                Some(c) => tools.choice(c, &mut self.dropped)?,
            };
            if !parallel
                && choice.get("type").and_then(Value::as_str) != Some("none")
                && let Some(obj) = choice.as_object_mut()
            {
                obj.insert("disable_parallel_tool_use".into(), json!(true));
            }
            Some(choice)
        };

        // Prompt caching.
        if self.prompt_cache_key {
            if let Some(Value::Object(last)) = conv.system.last_mut() {
                last.insert("cache_control".into(), json!({"type": "ephemeral"}));
            }
            if let Some((_, blocks)) = conv.turns.last_mut()
                && let Some(Value::Object(last)) = blocks.last_mut()
                && !matches!(
                    last.get("type").and_then(Value::as_str),
                    Some("thinking" | "redacted_thinking")
                )
            {
                last.insert("cache_control".into(), json!({"type": "ephemeral"}));
            }
        }

        // The body.
        let mut out = Map::new();
        out.insert("model".into(), json!(model));
        out.insert("max_tokens".into(), json!(max_tokens));
        if !conv.system.is_empty() {
            out.insert("system".into(), Value::Array(conv.system));
        }
        let messages: Vec<Value> = conv
            .turns
            .into_iter()
            .map(|(role, blocks)| json!({"role": role.as_str(), "content": blocks}))
            .collect();
        out.insert("messages".into(), Value::Array(messages));
        let has_tools = !tools.anthropic.is_empty();
        if has_tools {
            out.insert("tools".into(), Value::Array(tools.anthropic));
        }
        if let Some(choice) = tool_choice {
            out.insert("tool_choice".into(), choice);
        }
        if let Some(b) = budget {
            out.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
        }
        if let Some(t) = &self.temperature {
            out.insert("temperature".into(), t.clone());
        }
        if let Some(p) = &self.top_p {
            out.insert("top_p".into(), p.clone());
        }
        if let Some(format) = output_format {
            out.insert("output_config".into(), json!({"format": format}));
        }
        if let Some(user) = self.safety_identifier.as_ref().or(self.user.as_ref()) {
            out.insert("metadata".into(), json!({"user_id": user}));
        }
        if self.stream {
            out.insert("stream".into(), json!(true));
        }
        let body = serde_json::to_vec(&Value::Object(out)).map_err(ResponsesError::Json)?;

        let mut betas = Vec::new();
        if budget.is_some() && has_tools {
            betas.push(INTERLEAVED_THINKING);
        }

        let mut context = ResponseContext::new(model.clone());
        context.instructions = self.instructions.map_or(Value::Null, Value::String);
        context.max_output_tokens = self.max_output_tokens.map_or(Value::Null, |n| json!(n));
        context.parallel_tool_calls = parallel;
        if let Some(r) = self.reasoning {
            context.reasoning = json!({
                "effort": r.get("effort").cloned().unwrap_or(Value::Null),
                "summary": r.get("summary").cloned().unwrap_or(Value::Null),
            });
        }
        context.summaries = summary;
        context.temperature = self.temperature.unwrap_or(Value::Null);
        context.top_p = self.top_p.unwrap_or(Value::Null);
        if let Some(text) = self.text {
            context.text = text;
        }
        if let Some(choice) = self.tool_choice {
            context.tool_choice = choice;
        }
        context.tools = Value::Array(tools.declared);
        if let Some(t) = self.truncation {
            context.truncation = t;
        }
        if let Some(m) = self.metadata {
            context.metadata = m;
        }
        context.tool_names = tools.names;

        Ok(Translated {
            body,
            model,
            stream: self.stream,
            betas,
            dropped: self.dropped,
            context,
        })
    }
}

// === Tools ===

#[derive(Default)]
struct Tools {
    /// Anthropic tool definitions.
    anthropic: Vec<Value>,
    /// The client's tool definitions, as sent (the Response echoes them).
    declared: Vec<Value>,
    names: Vec<ToolName>,
}

const BUILT_IN: &str = "a built-in OpenAI tool; Claude models are served only function, custom \
                        and namespace tools";

impl Tools {
    fn declare(&mut self, list: &[Value], dropped: &mut Vec<String>) -> Result<(), ResponsesError> {
        let mut strict = false;
        for (i, tool) in list.iter().enumerate() {
            let param = format!("tools[{i}]");
            let kind = tool
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| ResponsesError::invalid(&param, "`type` is required"))?;
            match kind {
                "function" | "custom" => self.add(&param, tool, None, &mut strict)?,
                "namespace" => {
                    let ns = tool
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| ResponsesError::invalid(&param, "`name` is required"))?;
                    let inner = tool.get("tools").and_then(Value::as_array).ok_or_else(|| {
                        ResponsesError::invalid(format!("{param}.tools"), "must be an array")
                    })?;
                    for (j, t) in inner.iter().enumerate() {
                        let p = format!("{param}.tools[{j}]");
                        match t.get("type").and_then(Value::as_str) {
                            Some("function" | "custom") => {
                                self.add(&p, t, Some(ns), &mut strict)?
                            }
                            _ => {
                                return Err(ResponsesError::invalid(
                                    p,
                                    "a namespace holds function and custom tools only",
                                ));
                            }
                        }
                    }
                }
                other => {
                    dropped.push(format!("{param} ({other})"));
                    continue;
                }
            }
            self.declared.push(tool.clone());
        }
        if strict {
            dropped.push("tools.strict".into());
        }
        Ok(())
    }

    fn add(
        &mut self,
        param: &str,
        tool: &Value,
        namespace: Option<&str>,
        strict: &mut bool,
    ) -> Result<(), ResponsesError> {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ResponsesError::invalid(param, "`name` is required"))?;
        let anthropic_name = match namespace {
            Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
            None => name.to_owned(),
        };
        if self.names.iter().any(|t| t.anthropic == anthropic_name) {
            return Err(ResponsesError::invalid(
                param,
                format!("tool name `{anthropic_name}` is declared twice"),
            ));
        }
        let custom = tool.get("type").and_then(Value::as_str) == Some("custom");
        let mut description = tool
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let schema = if custom {
            if let Some(format) = tool.get("format").filter(|f| !f.is_null())
                && format.get("type").and_then(Value::as_str) == Some("grammar")
            {
                let syntax = format.get("syntax").and_then(Value::as_str).unwrap_or("");
                let definition = format
                    .get("definition")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !description.is_empty() {
                    description.push_str("\n\n");
                }
                description.push_str(&format!(
                    "The `input` must follow this {syntax} grammar:\n{definition}"
                ));
            }
            json!({
                "type": "object",
                "properties": {"input": {"type": "string", "description": "The tool's freeform input."}},
                "required": ["input"],
            })
        } else {
            if tool.get("strict").and_then(Value::as_bool) == Some(true) {
                *strict = true;
            }
            match tool.get("parameters") {
                Some(p) if p.is_object() => p.clone(),
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(_) => {
                    return Err(ResponsesError::invalid(
                        format!("{param}.parameters"),
                        "must be a JSON schema object",
                    ));
                }
            }
        };
        let mut def = Map::new();
        def.insert("name".into(), json!(anthropic_name));
        if !description.is_empty() {
            def.insert("description".into(), json!(description));
        }
        def.insert("input_schema".into(), schema);
        self.anthropic.push(Value::Object(def));
        self.names.push(ToolName {
            anthropic: anthropic_name,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            custom,
        });
        Ok(())
    }

    /// The Anthropic name of a tool the client calls `name` (in `namespace`).
    fn anthropic_name(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
            None => name.to_owned(),
        }
    }

    fn choice(&self, choice: &Value, dropped: &mut Vec<String>) -> Result<Value, ResponsesError> {
        const PARAM: &str = "tool_choice";
        if let Some(mode) = choice.as_str() {
            return match mode {
                "auto" => Ok(json!({"type": "auto"})),
                "none" => Ok(json!({"type": "none"})),
                "required" => Ok(json!({"type": "any"})),
                _ => Err(ResponsesError::invalid(
                    PARAM,
                    "must be auto, none, required or an object",
                )),
            };
        }
        match choice.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = choice
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ResponsesError::invalid("tool_choice.name", "required"))?;
                let namespace = choice.get("namespace").and_then(Value::as_str);
                let anthropic = self.anthropic_name(namespace, name);
                if !self.names.iter().any(|t| t.anthropic == anthropic) {
                    return Err(ResponsesError::invalid(
                        "tool_choice.name",
                        format!("`{name}` is not among the declared tools"),
                    ));
                }
                Ok(json!({"type": "tool", "name": anthropic}))
            }
            Some("allowed_tools") => {
                dropped.push("tool_choice (allowed_tools)".into());
                Ok(json!({"type": "auto"}))
            }
            Some(_) => Err(ResponsesError::unsupported(PARAM, BUILT_IN)),
            None => Err(ResponsesError::invalid(PARAM, "`type` is required")),
        }
    }
}

// === Input items ===

#[derive(Default)]
struct Conversation {
    system: Vec<Value>,
    turns: Vec<(Role, Vec<Value>)>,
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

impl Conversation {
    fn push(&mut self, role: Role, block: Value) {
        match self.turns.last_mut() {
            Some((r, blocks)) if *r == role => blocks.push(block),
            _ => self.turns.push((role, vec![block])),
        }
    }

    /// Whether the request ends with tool results answering an assistant turn that uses a tool
    /// but does not start with a thinking block (Anthropic refuses that with thinking on).
    fn continues_tool_use_without_thinking(&self) -> bool {
        let n = self.turns.len();
        if n < 2 {
            return false;
        }
        let (last_role, last) = &self.turns[n - 1];
        let (prev_role, prev) = &self.turns[n - 2];
        let ty = |b: &Value| b.get("type").and_then(Value::as_str).map(str::to_owned);
        *last_role == Role::User
            && *prev_role == Role::Assistant
            && last.iter().any(|b| ty(b).as_deref() == Some("tool_result"))
            && prev.iter().any(|b| ty(b).as_deref() == Some("tool_use"))
            && !matches!(
                prev.first().and_then(ty).as_deref(),
                Some("thinking" | "redacted_thinking")
            )
    }

    fn item(
        &mut self,
        i: usize,
        item: Value,
        tools: &Tools,
        dropped: &mut Vec<String>,
    ) -> Result<(), ResponsesError> {
        let param = format!("input[{i}]");
        let Value::Object(item) = item else {
            return Err(ResponsesError::invalid(param, "must be an object"));
        };
        let kind = match item.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None | Some(Value::Null) if item.contains_key("role") => "message",
            _ => return Err(ResponsesError::invalid(param, "`type` is required")),
        };
        let get_str = |key: &str| -> Result<&str, ResponsesError> {
            item.get(key).and_then(Value::as_str).ok_or_else(|| {
                ResponsesError::invalid(format!("{param}.{key}"), "must be a string")
            })
        };
        match kind {
            "message" => self.message(&param, &item),
            "function_call" | "custom_tool_call" => {
                let call_id = get_str("call_id")?;
                let name = get_str("name")?;
                let namespace = item.get("namespace").and_then(Value::as_str);
                let input = if kind == "function_call" {
                    let arguments = get_str("arguments")?;
                    if arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str::<Value>(arguments).map_err(|_| {
                            ResponsesError::invalid(
                                format!("{param}.arguments"),
                                "must be a JSON object text",
                            )
                        })?
                    }
                } else {
                    json!({"input": get_str("input")?})
                };
                if !input.is_object() {
                    return Err(ResponsesError::invalid(
                        format!("{param}.arguments"),
                        "must be a JSON object text",
                    ));
                }
                self.push(
                    Role::Assistant,
                    json!({
                        "type": "tool_use",
                        "id": call_id,
                        "name": tools.anthropic_name(namespace, name),
                        "input": input,
                    }),
                );
                Ok(())
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = get_str("call_id")?;
                let p = format!("{param}.output");
                let mut block = Map::new();
                block.insert("type".into(), json!("tool_result"));
                block.insert("tool_use_id".into(), json!(call_id));
                match item.get("output") {
                    Some(Value::String(s)) => {
                        block.insert("content".into(), json!(s));
                    }
                    Some(Value::Array(parts)) => {
                        let blocks = parts
                            .iter()
                            .enumerate()
                            .filter_map(|(j, part)| {
                                content_part(&format!("{p}[{j}]"), part, Role::User).transpose()
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        block.insert("content".into(), Value::Array(blocks));
                    }
                    // Codex's older failure shape.
                    Some(Value::Object(o)) if o.get("content").is_some_and(Value::is_string) => {
                        block.insert("content".into(), o["content"].clone());
                        if o.get("success") == Some(&json!(false)) {
                            block.insert("is_error".into(), json!(true));
                        }
                    }
                    _ => {
                        return Err(ResponsesError::invalid(
                            p,
                            "must be a string or an array of content parts",
                        ));
                    }
                }
                self.push(Role::User, Value::Object(block));
                Ok(())
            }
            "reasoning" => {
                match item
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .map(decode_reasoning)
                {
                    Some(Some(block)) => self.push(Role::Assistant, block),
                    Some(None) => {
                        dropped.push(format!("{param} (reasoning not produced by this gateway)"));
                    }
                    None => dropped.push(format!("{param} (reasoning without encrypted_content)")),
                }
                Ok(())
            }
            "item_reference" => Err(stateless(&param)),
            other => {
                dropped.push(format!("{param} ({other})"));
                Ok(())
            }
        }
    }

    fn message(&mut self, param: &str, item: &Map<String, Value>) -> Result<(), ResponsesError> {
        let role = item
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ResponsesError::invalid(format!("{param}.role"), "must be a string"))?;
        let side = match role {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "system" | "developer" => None,
            _ => {
                return Err(ResponsesError::invalid(
                    format!("{param}.role"),
                    "must be user, assistant, system or developer",
                ));
            }
        };
        let blocks = match item.get("content") {
            Some(Value::String(s)) => {
                if s.is_empty() {
                    Vec::new()
                } else {
                    vec![text_block(s)]
                }
            }
            Some(Value::Array(parts)) => parts
                .iter()
                .enumerate()
                .filter_map(|(j, part)| {
                    let p = format!("{param}.content[{j}]");
                    content_part(&p, part, side.unwrap_or(Role::User)).transpose()
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(ResponsesError::invalid(
                    format!("{param}.content"),
                    "must be a string or an array of content parts",
                ));
            }
        };
        match side {
            Some(side) => {
                for block in blocks {
                    self.push(side, block);
                }
            }
            None => {
                for (j, block) in blocks.into_iter().enumerate() {
                    if block.get("type").and_then(Value::as_str) != Some("text") {
                        return Err(ResponsesError::invalid(
                            format!("{param}.content[{j}]"),
                            "system and developer messages hold text only",
                        ));
                    }
                    self.system.push(block);
                }
            }
        }
        Ok(())
    }
}

/// One content part as an Anthropic block; `None` for an empty text.
fn content_part(param: &str, part: &Value, side: Role) -> Result<Option<Value>, ResponsesError> {
    let kind = part
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ResponsesError::invalid(param, "`type` is required"))?;
    let field = |key: &str| {
        part.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match kind {
        "input_text" | "output_text" | "text" | "refusal" => {
            let key = if kind == "refusal" { "refusal" } else { "text" };
            match part.get(key) {
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(text_block(s))),
                _ => Err(ResponsesError::invalid(
                    format!("{param}.{key}"),
                    "must be a string",
                )),
            }
        }
        "input_image" if side == Role::User => {
            if let Some(url) = field("image_url") {
                let source = image_source(url)
                    .map_err(|m| ResponsesError::invalid(format!("{param}.image_url"), m))?;
                Ok(Some(json!({"type": "image", "source": source})))
            } else if field("file_id").is_some() {
                Err(uploaded_file(param))
            } else {
                Err(ResponsesError::invalid(param, "`image_url` is required"))
            }
        }
        "input_file" if side == Role::User => {
            if let Some(data) = field("file_data") {
                let filename = field("filename").unwrap_or("");
                let (media_type, data) = match data_url(data) {
                    Some((m, d)) => (m, d),
                    None if filename.to_ascii_lowercase().ends_with(".pdf") => {
                        ("application/pdf", data)
                    }
                    None => {
                        return Err(ResponsesError::invalid(
                            format!("{param}.file_data"),
                            "must be a `data:<media type>;base64,` URL (or a PDF's base64 with a \
                             `.pdf` filename)",
                        ));
                    }
                };
                let source = match media_type {
                    "application/pdf" => {
                        json!({"type": "base64", "media_type": "application/pdf", "data": data})
                    }
                    "text/plain" => {
                        use base64::Engine as _;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .ok_or_else(|| {
                                ResponsesError::invalid(
                                    format!("{param}.file_data"),
                                    "is not base64 of UTF-8 text",
                                )
                            })?;
                        json!({"type": "text", "media_type": "text/plain", "data": bytes})
                    }
                    _ => {
                        return Err(ResponsesError::invalid(
                            format!("{param}.file_data"),
                            "only PDF and plain-text files are served",
                        ));
                    }
                };
                let mut doc = json!({"type": "document", "source": source});
                if !filename.is_empty()
                    && let Some(obj) = doc.as_object_mut()
                {
                    obj.insert("title".into(), json!(filename));
                }
                Ok(Some(doc))
            } else if let Some(url) = field("file_url") {
                Ok(Some(
                    json!({"type": "document", "source": {"type": "url", "url": url}}),
                ))
            } else if field("file_id").is_some() {
                Err(uploaded_file(param))
            } else {
                Err(ResponsesError::invalid(
                    param,
                    "`file_data` or `file_url` is required",
                ))
            }
        }
        "input_image" | "input_file" => Err(ResponsesError::invalid(
            param,
            "images and files go in user messages",
        )),
        "input_audio" => Err(ResponsesError::unsupported(
            param,
            "audio input is not served by Claude models",
        )),
        other => Err(ResponsesError::invalid(
            param,
            format!("unknown content part type `{other}`"),
        )),
    }
}

fn uploaded_file(param: &str) -> ResponsesError {
    ResponsesError::unsupported(
        format!("{param}.file_id"),
        "uploaded files are not served by this gateway: send the content inline (a data URL)",
    )
}
