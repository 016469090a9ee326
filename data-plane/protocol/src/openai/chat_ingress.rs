//! OpenAI Chat Completions clients talking to a Claude model: `POST /v1/chat/completions`
//! bodies become Anthropic Messages requests (the gateway's hub format, then routed, signed and
//! sent to Bedrock, Anthropic or Vertex unchanged), and Anthropic answers become OpenAI's.
//!
//! | step | function |
//! |---|---|
//! | Chat Completions body → Anthropic body | [`request`] ([`RequestOptions`], [`Translated`]) |
//! | Anthropic `Message` → `chat.completion` | [`response`] |
//! | Anthropic SSE → `chat.completion.chunk` SSE | [`ChatStream`] |
//! | gateway or Anthropic error → OpenAI error body | [`error_body`], [`error_from_anthropic`], [`ChatError::to_openai`] |
//!
//! # Request: fields in, fields out
//!
//! `null` is read as absent everywhere. Refused requests get a [`ChatError`] naming the JSON path
//! (`messages[3].tool_calls[0].function.arguments: not valid JSON`), answered as a 400.
//!
//! | OpenAI | Anthropic | notes |
//! |---|---|---|
//! | `model` (required) | `model`, byte for byte | the gateway routes on it |
//! | `messages` (required, non-empty) | `messages` and `system` | see below |
//! | `max_completion_tokens` ?? `max_tokens` | `max_tokens` | else [`RequestOptions::default_max_tokens`]; raised for thinking (below) |
//! | `stream` | `"stream": true` | `stream_options.include_usage` → [`Translated::include_usage`] |
//! | `temperature` | `temperature` | OpenAI allows 0–2, Claude 0–1: above 1 is refused, never clamped |
//! | `top_p` | `top_p` | |
//! | `n` | – | absent or 1, else refused |
//! | `stop` (string or array) | `stop_sequences` | empty and whitespace-only entries removed (Claude refuses them) |
//! | `tools[{type:"function",function}]` | `tools[{name, description, input_schema, strict}]` | no `parameters` → `{"type":"object","properties":{}}`; a tool's `cache_control` is kept; other tool types refused |
//! | `tool_choice` `auto` / `none` / `required` / `{type:"function",function:{name}}` | `{type:"auto"}` / `{type:"none"}` / `{type:"any"}` / `{type:"tool",name}` | only sent with tools |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` | on the given choice, else on `{type:"auto"}`; not with `none` |
//! | `user` | `metadata.user_id` | unless Anthropic `metadata` already carries one |
//! | `response_format` `json_schema` | `output_config.format {type:"json_schema", schema}` | structured outputs, generally available: no beta header |
//! | `response_format` `json_object` | – | **refused**: Claude has no schema-less JSON mode; the message names `json_schema` |
//! | `response_format` `text` | – | the default |
//! | `reasoning_effort` | `thinking {type:"enabled", budget_tokens}` | [`effort_budget`]; `none` sends no thinking |
//! | `logprobs: true`, `top_logprobs` > 0 | – | refused: Claude returns no log probabilities |
//! | `modalities` with `audio`, `audio` | – | refused: text output only |
//! | `functions`, `function_call` | – | refused: the deprecated form of `tools` / `tool_choice` |
//! | `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `service_tier`, `store`, `prediction`, `web_search_options`, OpenAI `metadata` (a string map), `reasoning_effort` when `thinking` is given | – | dropped, named in [`Translated::dropped`] |
//! | Anthropic's own `thinking`, `top_k`, `cache_control`, `output_config`, `metadata {user_id}` | same | passed through: clients (LiteLLM and OpenRouter conventions) add them on purpose |
//! | any other field | – | dropped, named in [`Translated::dropped`] |
//!
//! **Thinking.** With `thinking.type` `enabled` (from `reasoning_effort` or given as is), Claude
//! needs `budget_tokens < max_tokens`: when `max_tokens` is not above the budget it becomes
//! `budget_tokens + max_tokens`, so the visible answer keeps the room the client asked for.
//! Claude also refuses a temperature other than 1 with thinking: such a request is refused here
//! with a clear message rather than by the upstream.
//!
//! **Messages.** `system` and `developer` messages, wherever they stand, become `system` text
//! blocks in their order (a `cache_control` on a part or on the message is kept). `user` content
//! (string or parts) becomes blocks: `text`; `image_url` with a `data:<type>;base64,` URL →
//! `image` with a `base64` source, with an `http(s)` URL → a `url` source; `file` with a
//! `data:application/pdf;base64,` `file_data` → a PDF `document`. `input_audio` and `file_id`
//! are refused. `assistant` messages become, in order: `reasoning_details` (OpenRouter's shape:
//! `reasoning.text` with a `signature` → `thinking`, fragments of one block are joined;
//! `reasoning.encrypted` → `redacted_thinking`), `content` and `refusal` as text, `tool_calls` as
//! `tool_use` (`arguments` parsed, must be a JSON object; empty means `{}`). Unsigned reasoning
//! (`reasoning_content`, `reasoning.text` without signature, `reasoning.summary`) is dropped and
//! named: Claude refuses thinking it did not sign. `tool` messages become `tool_result` blocks of
//! a user turn; consecutive messages of one role are merged into one turn, tool results first
//! (Claude requires them at the start of the turn). A message-level `cache_control` goes on the
//! message's last block. A message `name` is dropped and named.
//!
//! # Answers
//!
//! [`response`] and [`ChatStream`]: text → `content`; `tool_use` → `tool_calls`; thinking →
//! `reasoning_content` (the de-facto field of DeepSeek, vLLM and LiteLLM) and `reasoning_details`
//! (OpenRouter's, *with* signatures and redacted data, so a client can send them back for
//! multi-turn tool use with thinking). `stop_reason` → `finish_reason`: `end_turn`,
//! `stop_sequence`, `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` →
//! `length`; `tool_use` → `tool_calls`; `refusal` → `content_filter`. Usage: `prompt_tokens` =
//! input + cache reads + cache writes, `prompt_tokens_details.cached_tokens` = cache reads, plus a
//! non-standard `cache_creation_input_tokens` when non-zero: OpenAI has no field for cache
//! writes, which Anthropic bills at a higher rate, and cost trackers reading OpenAI-shaped usage
//! (LiteLLM, Langfuse) look for this name.
//!
//! # Errors
//!
//! [`error_body`] gives OpenAI's `{"error":{"message","type","param","code"}}` for an Anthropic
//! error kind; the HTTP status stays the caller's. In a stream an error becomes a
//! `data: {"error":{…}}` line and the stream ends without `[DONE]`: the OpenAI Python SDK raises
//! `APIError` on a data line with an `error` key, and a client that waits for `[DONE]` sees a
//! truncated stream rather than a clean end.

mod request;
mod response;
mod stream;

pub use super::effort_budget;
pub use request::{RequestOptions, Translated, request};
pub use response::response;
pub use stream::ChatStream;

use crate::anthropic::ErrorKind;
use crate::json;

/// Why a Chat Completions request (or an Anthropic answer) could not be translated.
///
/// Request errors are for the client (answer 400, [`ChatError::to_openai`]);
/// [`ChatError::UpstreamAnswer`] is the gateway's own problem (a 502).
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The body is not valid JSON.
    #[error("the request body is not valid JSON: {0}")]
    Json(serde_json::Error),
    /// The body is JSON but not an object.
    #[error("the request body must be a JSON object")]
    NotObject,
    /// A top-level key appears twice (parsers disagree on which one wins).
    #[error("{0}: duplicate key")]
    DuplicateKey(String),
    /// A field is missing, has the wrong type or a value Claude cannot take.
    #[error("{path}: {message}")]
    Invalid {
        /// The JSON path of the field, e.g. `messages[3].content[1].image_url.url`.
        path: String,
        /// What is wrong, for the client.
        message: String,
    },
    /// An Anthropic answer that is not a Message (non-streaming).
    #[error("the upstream answer is not an Anthropic message: {0}")]
    UpstreamAnswer(&'static str),
}

impl ChatError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ChatError {
        ChatError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The HTTP status to answer with: 502 for [`ChatError::UpstreamAnswer`], 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            ChatError::UpstreamAnswer(_) => 502,
            _ => 400,
        }
    }

    /// The OpenAI error body for this error: [`error_body`] of its kind, with `param` set to the
    /// offending path when there is one.
    pub fn to_openai(&self) -> Vec<u8> {
        let kind = match self {
            ChatError::UpstreamAnswer(_) => ErrorKind::Api,
            _ => ErrorKind::InvalidRequest,
        };
        let param = match self {
            ChatError::Invalid { path, .. } => Some(path.as_str()),
            ChatError::DuplicateKey(key) => Some(key.as_str()),
            _ => None,
        };
        write_error(kind, &self.to_string(), param)
    }
}

impl From<json::ObjectError> for ChatError {
    fn from(err: json::ObjectError) -> Self {
        match err {
            json::ObjectError::Syntax(e) => ChatError::Json(e),
            json::ObjectError::NotObject => ChatError::NotObject,
            json::ObjectError::Duplicate(key) => ChatError::DuplicateKey(key),
        }
    }
}

// === Errors ===

/// OpenAI's `error.type` and `error.code` for an Anthropic error kind:
///
/// | Anthropic kind (status) | `type` | `code` |
/// |---|---|---|
/// | `invalid_request_error` (400) | `invalid_request_error` | `null` |
/// | `authentication_error` (401) | `invalid_request_error` | `invalid_api_key` |
/// | `billing_error` (402) | `insufficient_quota` | `insufficient_quota` |
/// | `permission_error` (403) | `invalid_request_error` | `permission_denied` |
/// | `not_found_error` (404) | `invalid_request_error` | `model_not_found` |
/// | `request_too_large` (413) | `invalid_request_error` | `request_too_large` |
/// | `rate_limit_error` (429) | `requests` | `rate_limit_exceeded` |
/// | `api_error` (500), `timeout_error` (504), `overloaded_error` (529) | `server_error` | `null` |
///
/// OpenAI itself answers a bad key with type `invalid_request_error` and code
/// `invalid_api_key`, an unknown model with code `model_not_found`, a rate limit with type
/// `requests` (or `tokens`) and code `rate_limit_exceeded`, and server faults with type
/// `server_error`. OpenAI SDKs pick their exception class from the HTTP status, which the data
/// plane keeps, not from these strings.
pub const fn openai_error_type(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::Billing => ("insufficient_quota", Some("insufficient_quota")),
        ErrorKind::Permission => ("invalid_request_error", Some("permission_denied")),
        ErrorKind::NotFound => ("invalid_request_error", Some("model_not_found")),
        ErrorKind::RequestTooLarge => ("invalid_request_error", Some("request_too_large")),
        ErrorKind::RateLimit => ("requests", Some("rate_limit_exceeded")),
        ErrorKind::Api | ErrorKind::Timeout | ErrorKind::Overloaded => ("server_error", None),
    }
}

/// An OpenAI error body, `{"error":{"message","type","param":null,"code"}}`, for an error the
/// gateway produces ([`openai_error_type`] gives `type` and `code`).
pub fn error_body(kind: ErrorKind, message: &str) -> Vec<u8> {
    write_error(kind, message, None)
}

/// [`error_body`] naming the offending request member in `param` (a JSON path).
pub fn error_body_with_param(kind: ErrorKind, message: &str, param: Option<&str>) -> Vec<u8> {
    write_error(kind, message, param)
}

/// An Anthropic error answer (`{"type":"error","error":{"type","message"}}`, or the data of an
/// SSE `error` event) as OpenAI's error body: the kind from `error.type` (else from `status`),
/// the message unchanged. A body that is not such an envelope gets a generic message naming the
/// status. The HTTP status itself is the caller's to keep.
pub fn error_from_anthropic(status: u16, body: &[u8]) -> Vec<u8> {
    let (kind, message) = read_anthropic_error(status, body);
    error_body(kind, &message)
}

/// The kind and message of an Anthropic error answer ([`error_from_anthropic`]).
pub(crate) fn read_anthropic_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let e = crate::anthropic::ApiError::read(status, body);
    (e.kind, e.message)
}

fn write_error(kind: ErrorKind, message: &str, param: Option<&str>) -> Vec<u8> {
    let (kind, code) = openai_error_type(kind);
    let mut out = Vec::with_capacity(message.len() + 96);
    out.extend_from_slice(br#"{"error":{"message":"#);
    json::write_str(&mut out, message);
    out.extend_from_slice(br#","type":"#);
    json::write_str(&mut out, kind);
    out.extend_from_slice(br#","param":"#);
    match param {
        Some(p) => json::write_str(&mut out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","code":"#);
    match code {
        Some(c) => json::write_str(&mut out, c),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}}");
    out
}

/// The `format` OpenRouter gives reasoning that comes from Claude.
pub(crate) const REASONING_FORMAT: &str = "anthropic-claude-v1";

/// OpenAI's `finish_reason` for an Anthropic `stop_reason` (unknown reasons → `stop`).
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and reasons added later.
        _ => "stop",
    }
}

/// OpenAI's `usage` object for Anthropic usage.
pub(crate) fn usage_json(usage: &crate::anthropic::Usage) -> serde_json::Value {
    let prompt = usage.total_input_tokens();
    let mut out = serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt.saturating_add(usage.output_tokens),
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
    });
    if usage.cache_creation_input_tokens > 0
        && let Some(map) = out.as_object_mut()
    {
        map.insert(
            "cache_creation_input_tokens".into(),
            usage.cache_creation_input_tokens.into(),
        );
    }
    out
}
