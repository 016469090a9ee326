//! Clients that speak OpenAI's Responses API (`POST /v1/responses`: Codex CLI with
//! `wire_api = "responses"`, the OpenAI SDKs' `client.responses`) served by a Claude model.
//!
//! The data plane turns the request into an Anthropic Messages request (the hub format, then
//! routed to Bedrock, Anthropic or Vertex unchanged) and turns the answer back:
//!
//! | step | function |
//! |---|---|
//! | Responses request → Anthropic body, betas, what was left out | [`request`] |
//! | Anthropic Message → Response object | [`response`] |
//! | Anthropic SSE → Responses SSE | [`ResponsesStream`] |
//!
//! Non-2xx answers on this route use OpenAI's error envelope, written by
//! [`super::chat_ingress`]; [`ResponsesError::param`] gives its `param`. The stream's own
//! failures (`response.failed`) are written here.
//!
//! The gateway is **stateless**: it stores no response, so `previous_response_id`,
//! `conversation`, `item_reference` input items and `background` are refused (400) and the
//! client must send the whole conversation every turn (Codex does, with `store: false`).
//! `store: true` (the SDK's default) is accepted and ignored (listed in [`Translated::dropped`];
//! the Response says `"store": false`).
//!
//! Unlike the pass-through modules of this crate, this one is a translation: the Anthropic body
//! is rebuilt. Nested values the client wrote (tool schemas, tool inputs, the JSON schema of
//! `text.format`) keep their content and key order, not their exact spelling; thinking blocks
//! come back exactly (their strings are what the signature covers).
//!
//! # Request mapping
//!
//! | Responses | Anthropic |
//! |---|---|
//! | `model` | `model`, as sent (routing maps it later) |
//! | `instructions` (string) | first `system` text block |
//! | `input` (string) | one user turn with one text block |
//! | `message` items / items with `role` and no `type`, roles `system`, `developer` | `system` text blocks, in order (wherever they appear) |
//! | roles `user` / `assistant` | user / assistant turns; consecutive items of one side merge into one turn |
//! | `input_text`, `output_text`, `refusal` | `text` (empty texts are left out) |
//! | `input_image` `image_url` `data:<mime>;base64,…` / `http(s)://…` | `image` with a `base64` / `url` source; `file_id` → 400 |
//! | `input_file` `file_data` (data URL or bare base64) PDF / `text/plain` | `document` with a `base64` / `text` source; `file_url` → `url` source; `file_id` → 400 |
//! | `function_call` (`call_id`, `name`, `namespace`?, `arguments`) | assistant `tool_use` (`id` = `call_id`, `input` = parsed `arguments`, `""` = `{}`) |
//! | `custom_tool_call` (`call_id`, `name`, `input`) | assistant `tool_use` with `input` `{"input": …}` |
//! | `function_call_output` / `custom_tool_call_output` (`output` string, content array, or `{content, success}`) | user `tool_result` (`is_error` when `success` is false); tool results go first in their user turn |
//! | `reasoning` with `encrypted_content` made by this module | the exact `thinking` / `redacted_thinking` block (see below) |
//! | `reasoning` without it, or with another platform's | left out (listed) |
//! | `item_reference`, `previous_response_id`, `conversation`, `background: true`, `prompt` | 400 (stateless gateway) |
//! | other item types (`web_search_call`, `local_shell_call`, …) | left out (listed) |
//! | `tools` `function` `{name, description, parameters}` | `{name, description, input_schema}` (`strict` left out, listed) |
//! | `tools` `namespace` `{name, tools}` | each inner tool as `<namespace>__<name>`; calls come back with `namespace` and the inner name |
//! | `tools` `custom` (freeform, Codex's `apply_patch`) | a tool taking `{"input": string}`; a grammar `format` is appended to the description; calls come back as `custom_tool_call` |
//! | built-in tools (`web_search`, `file_search`, `computer_use*`, `code_interpreter`, `local_shell`, `shell`, `image_generation`, `mcp`, …) | left out (listed): Codex sends `web_search` to every provider |
//! | `tool_choice` `auto` / `none` / `required` / `{type:function\|custom,name}` | `{type:auto}` / `{type:none}` / `{type:any}` / `{type:tool,name}`; `allowed_tools` → `auto` (listed); a built-in tool → 400 |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `max_output_tokens` | `max_tokens` (else [`RequestOptions::default_max_tokens`]) |
//! | `temperature` (0–1; above 1 → 400), `top_p` | same (left out, listed, while thinking is on) |
//! | `reasoning.effort` | `thinking` (table below); `reasoning.summary` only shapes the answer |
//! | `text.format` `json_schema` `{schema}` | `output_config.format` `{type:"json_schema", schema}` (Anthropic's structured outputs, GA: no beta) |
//! | `text.format` `json_object` | left out (listed): Anthropic has no schema-less JSON mode |
//! | `safety_identifier` ?? `user` | `metadata.user_id` |
//! | `prompt_cache_key` present | prompt caching: `cache_control` on the last system block and on the last block of the last turn (the key itself is not sent) |
//! | `stream` | `stream` |
//! | `metadata`, `store`, `include` (other than `reasoning.encrypted_content`), `truncation: auto`, `service_tier`, `stream_options`, `text.verbosity`, `max_tool_calls`, `top_logprobs`, `client_metadata`, unknown members | left out (listed) |
//!
//! `reasoning.effort` → `thinking: {type:"enabled", budget_tokens}` by the table Chat
//! Completions uses too ([`super::EFFORT_BUDGETS`]): absent or `none`, no thinking; `minimal`
//! 1024, `low` 2048, `medium` 8192, `high` 16384, `xhigh` 32768.
//!
//! Anthropic wants `budget_tokens < max_tokens` and at least 1024. With the default
//! `max_tokens`, it is raised to `budget + default` when too small. An explicit
//! `max_output_tokens` (which in OpenAI's API includes reasoning too) is kept and the budget is
//! cut to fit; below 1025 tokens thinking is turned off (listed). Thinking is also turned off
//! (listed) when the request continues a tool-use turn whose reasoning the client did not send
//! back, which Anthropic would refuse. With thinking and tools, the beta
//! `interleaved-thinking-2025-05-14` is asked for.
//!
//! # Reasoning round trip (`encrypted_content`)
//!
//! A thinking block must come back byte for byte (its `signature` is verified). Every
//! `reasoning` item this module writes carries, in `encrypted_content`, the marker
//! [`ENCRYPTED_CONTENT_PREFIX`] followed by the standard base64 of the Anthropic block's JSON:
//! `{"type":"thinking","thinking":…,"signature":…}` or `{"type":"redacted_thinking","data":…}`.
//! When the client sends the item back, the block is decoded and put in the assistant turn
//! where the item stands. It is not encrypted (the signature already protects the thinking
//! from edits); it is always written, `include` or not, since a stateless gateway has no other
//! way to get it back. A value without the marker (another platform's) is left out.
//!
//! # Answer mapping
//!
//! | Anthropic | Response |
//! |---|---|
//! | `id` `msg_X` | `id` `resp_X`; item ids `rs_X_i`, `msg_X_i`, `fc_X_i`, `ctc_X_i` (`i` = block index) |
//! | `thinking` / `redacted_thinking` block | `reasoning` item: `summary` `[{type:"summary_text", text}]` (empty thinking: `[]`), `encrypted_content` |
//! | `text` block | `message` item with one `output_text` part (`annotations: []`) |
//! | `tool_use` block | `function_call` item (`call_id` = tool id, `arguments` = JSON text, `namespace` when the tool came from one), or `custom_tool_call` (`input`) |
//! | server-tool blocks | left out |
//! | `stop_reason` `max_tokens`, `model_context_window_exceeded` | `status: "incomplete"`, `incomplete_details.reason: "max_output_tokens"` |
//! | `stop_reason` `refusal` | `status: "incomplete"`, `incomplete_details.reason: "content_filter"` |
//! | other stop reasons | `status: "completed"` |
//! | `usage` | `input_tokens` = input + cache reads + cache writes, `input_tokens_details.cached_tokens` = cache reads, `input_tokens_details.cache_write_tokens` = cache writes, `output_tokens`, `output_tokens_details.reasoning_tokens` = 0 (not reported), `total_tokens` |
//!
//! The Response also echoes the request's `instructions`, `max_output_tokens`,
//! `parallel_tool_calls`, `reasoning`, `temperature`, `text`, `tool_choice`, `tools`, `top_p`,
//! `truncation` and `metadata` (from [`ResponseContext`]), so that the OpenAI SDK's `Response`
//! model parses it.
//!
//! # Stream mapping
//!
//! See [`ResponsesStream`].

mod request;
mod response;
mod stream;

pub use request::{RequestOptions, Translated, request};
pub use response::response;
pub use stream::ResponsesStream;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::anthropic::{ErrorKind, Usage};

/// Marks an `encrypted_content` written by this module (see the module docs).
pub const ENCRYPTED_CONTENT_PREFIX: &str = "tollgate.v1.";

/// The separator between a namespace and a tool name in the Anthropic tool name.
const NAMESPACE_SEPARATOR: &str = "__";

/// Why a Responses request (or an upstream answer) could not be translated. Request errors are
/// meant for the client, as a 400 `invalid_request_error` with [`ResponsesError::param`].
#[derive(Debug, thiserror::Error)]
pub enum ResponsesError {
    /// The body is not JSON.
    #[error("the request body is not valid JSON: {0}")]
    Json(serde_json::Error),
    /// The body is JSON but not an object.
    #[error("the request body must be a JSON object")]
    NotObject,
    /// A top-level key appears twice.
    #[error("duplicate top-level key `{0}`")]
    DuplicateKey(String),
    /// A member has the wrong shape or value.
    #[error("{param}: {message}")]
    Invalid {
        /// Where (`input[2].content[0].image_url`).
        param: String,
        /// What is wrong.
        message: String,
    },
    /// A feature this gateway does not serve (stored state, uploaded files, built-in tools).
    #[error("{param}: {message}")]
    Unsupported {
        /// Where.
        param: String,
        /// Why it is not served.
        message: String,
    },
    /// The upstream answer is not an Anthropic Message.
    #[error("the upstream answer is not an Anthropic Message: {0}")]
    Upstream(String),
}

impl ResponsesError {
    /// The `param` of OpenAI's error envelope, when the error is about one member.
    pub fn param(&self) -> Option<&str> {
        match self {
            ResponsesError::Invalid { param, .. } | ResponsesError::Unsupported { param, .. } => {
                Some(param)
            }
            _ => None,
        }
    }

    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ResponsesError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }

    fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        ResponsesError::Unsupported {
            param: param.into(),
            message: message.into(),
        }
    }
}

impl From<crate::json::ObjectError> for ResponsesError {
    fn from(e: crate::json::ObjectError) -> Self {
        match e {
            crate::json::ObjectError::Syntax(e) => ResponsesError::Json(e),
            crate::json::ObjectError::NotObject => ResponsesError::NotObject,
            crate::json::ObjectError::Duplicate(k) => ResponsesError::DuplicateKey(k),
        }
    }
}

/// How a tool the client declared is named toward Anthropic and how its calls come back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ToolName {
    /// The Anthropic tool name.
    anthropic: String,
    /// The namespace the tool was declared in.
    namespace: Option<String>,
    /// The name inside the namespace (the whole name without one).
    name: String,
    /// A `custom` (freeform) tool: calls are `custom_tool_call` items.
    custom: bool,
}

/// What the answer needs from the request: the model name to report, the request members the
/// Response object echoes, and how tool names map back. Made by [`request`]
/// ([`Translated::context`]); [`ResponseContext::new`] gives one for a bare model name.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseContext {
    model: String,
    instructions: Value,
    max_output_tokens: Value,
    parallel_tool_calls: bool,
    reasoning: Value,
    temperature: Value,
    text: Value,
    tool_choice: Value,
    tools: Value,
    top_p: Value,
    truncation: Value,
    metadata: Value,
    summaries: bool,
    tool_names: Vec<ToolName>,
}

impl ResponseContext {
    /// A context for `model` with the API's defaults (no tools, no instructions).
    pub fn new(model: impl Into<String>) -> Self {
        ResponseContext {
            model: model.into(),
            instructions: Value::Null,
            max_output_tokens: Value::Null,
            parallel_tool_calls: true,
            reasoning: json!({"effort": null, "summary": null}),
            temperature: Value::Null,
            text: json!({"format": {"type": "text"}}),
            tool_choice: json!("auto"),
            tools: json!([]),
            top_p: Value::Null,
            truncation: json!("disabled"),
            metadata: json!({}),
            summaries: true,
            tool_names: Vec::new(),
        }
    }

    /// The model name the answer reports (as the client sent it).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// How the Anthropic tool `name` comes back: `(namespace, name, custom)`.
    fn tool<'a>(&'a self, name: &'a str) -> (Option<&'a str>, &'a str, bool) {
        match self.tool_names.iter().find(|t| t.anthropic == name) {
            Some(t) => (t.namespace.as_deref(), &t.name, t.custom),
            None => (None, name, false),
        }
    }

    /// The Response object (without `output` items' streaming states).
    fn response_object(
        &self,
        id: &str,
        created_at: u64,
        state: State<'_>,
        output: Vec<Value>,
        usage: Option<Usage>,
    ) -> Value {
        json!({
            "id": id,
            "object": "response",
            "created_at": created_at,
            "status": state.status,
            "background": false,
            "error": state.error,
            "incomplete_details": state.incomplete.map(|r| json!({"reason": r})),
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": null,
            "reasoning": self.reasoning,
            "store": false,
            "temperature": self.temperature,
            "text": self.text,
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_p": self.top_p,
            "truncation": self.truncation,
            "usage": usage.map(usage_json),
            "metadata": self.metadata,
        })
    }
}

/// Where a Response stands: `status`, `incomplete_details.reason`, `error`.
struct State<'a> {
    status: &'a str,
    incomplete: Option<&'a str>,
    error: Value,
}

/// The Response id for an Anthropic message id (`msg_X` → `resp_X`) and the stem of its item ids.
fn ids(message_id: &str) -> (String, String) {
    let stem = message_id.strip_prefix("msg_").unwrap_or(message_id);
    let stem = if stem.is_empty() { "unknown" } else { stem };
    (format!("resp_{stem}"), stem.to_owned())
}

/// The `encrypted_content` carrying an Anthropic thinking or redacted-thinking block.
fn encode_reasoning(block: &Value) -> String {
    let json = serde_json::to_vec(block).unwrap_or_default();
    let mut out = String::with_capacity(ENCRYPTED_CONTENT_PREFIX.len() + json.len() * 4 / 3 + 4);
    out.push_str(ENCRYPTED_CONTENT_PREFIX);
    BASE64.encode_string(&json, &mut out);
    out
}

/// The Anthropic block inside an `encrypted_content` made by [`encode_reasoning`]; `None` for
/// anything else.
fn decode_reasoning(encrypted: &str) -> Option<Value> {
    let payload = encrypted.strip_prefix(ENCRYPTED_CONTENT_PREFIX)?;
    let bytes = BASE64.decode(payload).ok()?;
    let block: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    let is_str = |k: &str| block.get(k).is_some_and(Value::is_string);
    let ok = match block.get("type").and_then(Value::as_str) {
        Some("thinking") => is_str("thinking") && is_str("signature") && block.len() == 3,
        Some("redacted_thinking") => is_str("data") && block.len() == 2,
        _ => false,
    };
    ok.then_some(Value::Object(block))
}

/// The `reasoning` output item for a thinking or redacted-thinking block.
fn reasoning_item(id: &str, block: &Value, summaries: bool) -> Value {
    let text = block.get("thinking").and_then(Value::as_str).unwrap_or("");
    let summary = if summaries && !text.is_empty() {
        json!([{"type": "summary_text", "text": text}])
    } else {
        json!([])
    };
    json!({
        "id": id,
        "type": "reasoning",
        "summary": summary,
        "encrypted_content": encode_reasoning(block),
    })
}

/// The `message` output item for one text block.
fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

/// The `function_call` or `custom_tool_call` output item for a tool use (`arguments` is the
/// JSON text of the input).
fn call_item(
    ctx: &ResponseContext,
    stem: &str,
    index: u64,
    call_id: &str,
    anthropic_name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    let (namespace, name, custom) = ctx.tool(anthropic_name);
    let mut item = Map::new();
    if custom {
        let input = serde_json::from_str::<Value>(arguments)
            .ok()
            .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        item.insert("id".into(), json!(format!("ctc_{stem}_{index}")));
        item.insert("type".into(), json!("custom_tool_call"));
        item.insert("status".into(), json!(status));
        item.insert("call_id".into(), json!(call_id));
        item.insert("name".into(), json!(name));
        item.insert("input".into(), json!(input));
    } else {
        item.insert("id".into(), json!(format!("fc_{stem}_{index}")));
        item.insert("type".into(), json!("function_call"));
        item.insert("status".into(), json!(status));
        item.insert("call_id".into(), json!(call_id));
        item.insert("name".into(), json!(name));
        item.insert("arguments".into(), json!(arguments));
    }
    if let Some(ns) = namespace {
        item.insert("namespace".into(), json!(ns));
    }
    Value::Object(item)
}

/// `status` and `incomplete_details.reason` for an Anthropic stop reason.
fn status_for(stop_reason: Option<&str>) -> (&'static str, Option<&'static str>) {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => {
            ("incomplete", Some("max_output_tokens"))
        }
        Some("refusal") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// The Responses `error.code` for an Anthropic error: the codes Codex acts on
/// (`context_length_exceeded`, `insufficient_quota`, `rate_limit_exceeded`; everything else it
/// retries) and the SDK's `server_error` / `invalid_prompt`.
fn error_code(kind: Option<ErrorKind>, message: &str) -> &'static str {
    match kind {
        Some(ErrorKind::RateLimit) => "rate_limit_exceeded",
        Some(ErrorKind::Billing) => "insufficient_quota",
        Some(ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge)
            if message.contains("prompt is too long") || message.contains("context window") =>
        {
            "context_length_exceeded"
        }
        Some(
            ErrorKind::InvalidRequest
            | ErrorKind::RequestTooLarge
            | ErrorKind::Authentication
            | ErrorKind::Permission
            | ErrorKind::NotFound,
        ) => "invalid_prompt",
        Some(ErrorKind::Api | ErrorKind::Timeout | ErrorKind::Overloaded) | None => "server_error",
    }
}

/// OpenAI usage from Anthropic usage: the whole prompt as input, cache reads as cached, cache
/// writes as `cache_write_tokens` (the SDK's `ResponseUsage` requires it).
fn usage_json(usage: Usage) -> Value {
    let input = usage.total_input_tokens();
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_input_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input.saturating_add(usage.output_tokens),
    })
}
