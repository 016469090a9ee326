//! Anthropic Messages (Claude Code) -> an OpenAI-compatible upstream (OpenAI, vLLM, Ollama,
//! LM Studio, another gateway) speaking Chat Completions, and its answers back.
//!
//! | function / type | in | out |
//! |---|---|---|
//! | [`request`] | Anthropic Messages request ([`RequestBody`](crate::bedrock::RequestBody)) | Chat Completions request body + the names of what was dropped |
//! | [`message`] | `chat.completion` JSON | Anthropic Message JSON |
//! | [`ChatToAnthropic`] | Chat Completions SSE (`chat.completion.chunk`s, `[DONE]`) | Anthropic SSE events |
//! | [`error`] | a non-2xx status and body (OpenAI, vLLM, Ollama, plain text) | [`ApiError`] |
//!
//! ## Request: Anthropic -> Chat Completions ([`request`])
//!
//! | Anthropic | Chat Completions |
//! |---|---|
//! | `model` | `model`: the upstream model name given by the caller |
//! | `system` (string or `text` blocks) | a first `{"role":"system"}` message; blocks joined with `\n` |
//! | `messages[]` `{"role":"system"}` (mid-conversation system beta) | a `system` message in place (string or text blocks, joined with `\n`) |
//! | user `content` string | `{"role":"user","content":"…"}` |
//! | user `text` block | `{"type":"text","text"}` part (a lone text part becomes a plain string `content`) |
//! | user `image`, `base64` / `url` source | `{"type":"image_url","image_url":{"url":"data:<media_type>;base64,<data>"}}` / `{"url":<url>}` |
//! | user `document`, `base64` source (PDF) | `{"type":"file","file":{"filename":<title or "document.pdf">,"file_data":"data:application/pdf;base64,…"}}` |
//! | user `document`, `text` source / `content` source | text parts (and image parts for `content` images) |
//! | user `tool_result` | a `{"role":"tool","tool_call_id","content"}` message per block, emitted **before** the rest of that user turn (they must follow the assistant message with the `tool_calls`); text concatenated with `\n`; `is_error: true` prefixes the text with `Error: ` (Chat Completions has no error flag); images it holds go into the user message that follows the tool messages |
//! | assistant `text` blocks | `content` (joined with `\n`; `null` when the turn only calls tools) |
//! | assistant `tool_use` | `tool_calls[{id, type:"function", function:{name, arguments: <input as a JSON string>}}]` |
//! | `tools[]` custom (`{name, description?, input_schema}`, `type` absent or `"custom"`) | `{"type":"function","function":{name, description?, parameters: input_schema}}` |
//! | `tool_choice` `auto` / `any` / `none` / `tool`+`name` | `"auto"` / `"required"` / `"none"` / `{"type":"function","function":{"name"}}` |
//! | `tool_choice.disable_parallel_tool_use: true` | `parallel_tool_calls: false` |
//! | `max_tokens` | `max_tokens` or `max_completion_tokens` ([`MaxTokensField`]) |
//! | `temperature`, `top_p` | same (raw number) |
//! | `stop_sequences` | `stop` (omitted when empty) |
//! | `metadata.user_id` | `user`, only when at most 64 characters (OpenAI refuses longer ones; Claude Code's is ~150, so it is usually dropped) |
//! | (the caller's [`RequestOptions::stream`]) | `stream: true, stream_options: {include_usage: true}` |
//!
//! Dropped (their names are returned in [`Translated::dropped`] for a debug log):
//!
//! * top-level `top_k`, `thinking`, `context_management`, `cache_control`, `output_config`,
//!   `service_tier`, `container`, `mcp_servers`, `anthropic_beta`, `anthropic_version` and any
//!   unknown member: Chat Completions has no equivalent (the body's own `stream` is replaced by
//!   the caller's choice and the gateway's `fallbacks` is not reported);
//! * `thinking` / `redacted_thinking` blocks: their signatures can only be verified by
//!   Anthropic's platforms, and OpenAI-compatible servers take no reasoning input;
//! * `cache_control` everywhere (OpenAI caches prefixes automatically), `citations`, the tool
//!   fields `strict`, `defer_loading`, `input_examples`, `eager_input_streaming`, `cache_control`
//!   (a deferred tool is sent like any other: the upstream has no tool search);
//! * Anthropic server tools (a `type` other than `custom`, such as `web_search_20250305`,
//!   `bash_20250124`, `text_editor_20250728`): the upstream cannot run them. Claude Code only
//!   sends custom tools. When no tool is left, `tool_choice` is dropped too;
//! * content blocks with no Chat Completions form (`server_tool_use`, `*_tool_result` of server
//!   tools, `search_result`, `tool_reference`, …).
//!
//! Refused ([`EgressError`], with the JSON path): members of the wrong type, unknown roles,
//! image or document sources Chat Completions cannot carry (`file` ids from the Files API, PDF
//! URLs). A final assistant turn (prefill) is sent as an ordinary assistant message: Chat
//! Completions has no prefill, so the upstream answers in a new message.
//!
//! ## Response: Chat Completions -> Anthropic ([`message`], [`ChatToAnthropic`])
//!
//! | Chat Completions | Anthropic |
//! |---|---|
//! | `id` | `id`: `msg_` + the upstream id (characters outside `[A-Za-z0-9_-]` become `_`) |
//! | (the name the client asked for) | `model` |
//! | `choices[0].message.content` (+ `refusal`) | one `text` block, when not empty |
//! | `choices[0].message.tool_calls[]` | `tool_use` blocks `{id, name, input}`; `input` is the parsed `arguments` (empty -> `{}`; not a JSON object -> `{"_raw_arguments": "<the string>"}`, so the client's schema check reports the bad call back to the model instead of the turn failing) |
//! | `finish_reason` `stop` / `length` / `tool_calls`, `function_call` / `content_filter` | `stop_reason` `end_turn` / `max_tokens` / `tool_use` / `refusal`; `stop` (or none) with tool calls -> `tool_use`; others -> `end_turn` |
//! | `usage.prompt_tokens - prompt_tokens_details.cached_tokens` | `usage.input_tokens` |
//! | `usage.prompt_tokens_details.cached_tokens` | `usage.cache_read_input_tokens` |
//! | `usage.completion_tokens` | `usage.output_tokens` (`cache_creation_input_tokens` is 0) |
//! | `reasoning_content` / `reasoning` (vLLM, DeepSeek, Ollama) | dropped: a `thinking` block needs a signature, and Claude Code sends thinking blocks back; an unsigned one is refused once the conversation moves to a Claude model |
//!
//! `stop_sequence` is always `null`: Chat Completions does not say which stop string matched.
//! The upstream's tool call ids are kept (sanitized like the message id), so the next request
//! carries them back unchanged in `tool_calls` and `tool_call_id`.

mod request;
mod response;
mod stream;

pub use request::{MaxTokensField, RequestOptions, Translated, request};
pub use response::message;
pub use stream::{ChatToAnthropic, StreamError};

use serde::Deserialize;
use serde_json::Value;

use crate::anthropic::{ApiError, ErrorKind};

/// The longest upstream error message kept, in bytes (cut at a character boundary, `…` added).
pub const MAX_ERROR_MESSAGE: usize = 2048;

/// Why a request or an answer could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// A member of the Anthropic request has the wrong type or value (`path` is its JSON path,
    /// e.g. `messages[2].content[0].source.data`). For the client: a 400.
    #[error("{path}: {expected}")]
    InvalidRequest {
        /// The JSON path of the offending member.
        path: String,
        /// What it must be.
        expected: String,
    },
    /// The request holds something Chat Completions cannot express. For the client: a 400.
    #[error("{path}: {what} cannot be sent to an OpenAI-compatible upstream")]
    Unsupported {
        /// The JSON path of the offending member.
        path: String,
        /// What it is.
        what: String,
    },
    /// The upstream's answer is not a usable `chat.completion`. For the client: an `api_error`.
    #[error("invalid Chat Completions response: {0}")]
    InvalidResponse(String),
}

impl EgressError {
    /// The error to send the client: `invalid_request_error` (400) for request errors,
    /// `api_error` (500) for an unusable answer.
    pub fn to_api_error(&self) -> ApiError {
        let kind = match self {
            EgressError::InvalidRequest { .. } | EgressError::Unsupported { .. } => {
                ErrorKind::InvalidRequest
            }
            EgressError::InvalidResponse(_) => ErrorKind::Api,
        };
        ApiError::new(kind, self.to_string())
    }
}

/// Maps a non-2xx answer of an OpenAI-compatible upstream to an Anthropic error.
///
/// The kind comes from the status ([`ErrorKind::from_status`]); the message from, in order:
/// OpenAI's `{"error":{"message":…}}` (also vLLM ≥ 0.9 and Ollama's `/v1` endpoints), Ollama's
/// native `{"error":"…"}`, vLLM's older `{"object":"error","message":…}`, FastAPI's
/// `{"detail":"…"}`, else the body as text (trimmed). An empty message becomes
/// `HTTP <status> from the upstream`. Messages are cut to [`MAX_ERROR_MESSAGE`] bytes.
///
/// OpenAI's `code: "context_length_exceeded"` gets the prefix `prompt is too long: ` (the
/// wording Claude Code recognizes to compact the conversation); the upstream's text follows.
pub fn error(status: u16, body: &[u8]) -> ApiError {
    let kind = ErrorKind::from_status(status);
    let (message, code) = match serde_json::from_slice::<Value>(body) {
        Ok(value) => error_text(&value),
        Err(_) => (Some(String::from_utf8_lossy(body).trim().to_owned()), None),
    };
    let message = message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {status} from the upstream"));
    let message = if code.as_deref() == Some("context_length_exceeded") {
        format!("prompt is too long: {message}")
    } else {
        message
    };
    ApiError {
        kind,
        status,
        message: cut(message, MAX_ERROR_MESSAGE),
    }
}

/// The message and the string `code` of an error body (or of a stream's error chunk).
pub(crate) fn error_text(value: &Value) -> (Option<String>, Option<String>) {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Inner {
        message: Option<Value>,
        code: Option<Value>,
    }
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let Some(obj) = value.as_object() else {
        return (text(value), None);
    };
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        if let Value::String(s) = err {
            return (Some(s.trim().to_owned()), None);
        }
        let inner: Inner = serde_json::from_value(err.clone()).unwrap_or_default();
        let code = inner
            .code
            .as_ref()
            .and_then(|c| c.as_str().map(str::to_owned));
        return (inner.message.as_ref().and_then(text), code);
    }
    for key in ["message", "detail"] {
        if let Some(m) = obj.get(key).and_then(text) {
            let code = obj.get("code").and_then(|c| c.as_str().map(str::to_owned));
            return (Some(m), code);
        }
    }
    (Some(value.to_string()), None)
}

/// Cuts `s` to at most `max` bytes at a character boundary, adding `…` when cut.
pub(crate) fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// Replaces every character outside `[A-Za-z0-9_-]` with `_` (Anthropic's id pattern).
pub(crate) fn sanitize_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Anthropic message id for an upstream completion id.
pub(crate) fn message_id(upstream: Option<&str>) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => format!("msg_{}", sanitize_id(id)),
        None => "msg_openai".to_owned(),
    }
}

/// The Anthropic `stop_reason` for a `finish_reason` (`None`: the upstream gave none).
pub(crate) fn stop_reason(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// The Anthropic usage for an OpenAI `usage` object (`prompt_tokens` includes cached tokens).
pub(crate) fn usage_from_openai(usage: &Value) -> Option<crate::anthropic::Usage> {
    let obj = usage.as_object()?;
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = count(obj.get("prompt_tokens"));
    let cached = count(
        obj.get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens")),
    )
    .min(prompt);
    Some(crate::anthropic::Usage {
        input_tokens: prompt - cached,
        output_tokens: count(obj.get("completion_tokens")),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
    })
}

/// The JSON bytes of a value (serializing a `Value` cannot fail).
pub(crate) fn to_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}
