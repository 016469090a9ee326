//! Anthropic Messages <-> Bedrock Runtime `Converse` / `ConverseStream`, for Bedrock models that
//! are not Anthropic's (Llama, Mistral, Nova, DeepSeek, …): the gateway's hub format is Anthropic
//! Messages, these models only speak Converse.
//!
//! * [`request`] / [`request_with`]: an Anthropic request body ([`super::RequestBody`]) -> the
//!   body of `POST /model/{modelId}/converse` or `/converse-stream` (the caller picks the path
//!   from [`super::RequestBody::stream`]), plus the fields left out ([`Translated::dropped`]).
//! * [`message`]: a `Converse` reply -> an Anthropic Message.
//! * [`ConverseStream`]: the raw `ConverseStream` response bytes (AWS event stream) -> Anthropic
//!   SSE.
//! * [`uses_converse`] / [`supports_cache_points`]: which model ids go through Converse (every
//!   Bedrock model that is not Anthropic's) and which of them take `cachePoint` blocks (Nova).
//! * Errors: a non-2xx `Converse`/`ConverseStream` reply has the same shape as an `InvokeModel`
//!   one (`x-amzn-ErrorType`, `{"message":…}`, the same exception names), so
//!   [`super::map_error`] maps it; this module adds nothing for it. In-stream exceptions are
//!   mapped by [`ConverseStream`] with the same table ([`super::exception_kind`]).
//!
//! Pure like the rest of the crate: the response id is the caller's ([`message`],
//! [`ConverseStream::new`]), nothing is logged (dropped fields are returned).
//!
//! # Request mapping (Anthropic -> Converse)
//!
//! | Anthropic | Converse |
//! |---|---|
//! | `model`, `stream` | not in the body (path and operation); the gateway's `fallbacks` is ignored too |
//! | `system`: string | `system: [{text}]` (an empty string is left out) |
//! | `system`: text blocks | one `{text}` each; a block's `cache_control` -> a following `{cachePoint:{type:"default"}}` (`ttl` `5m`/`1h` kept), see [`RequestOptions::cache_points`] |
//! | `messages[]` with `role:"system"` (Claude Code's mid-conversation system prompt) | appended to `system`, in order (Converse has no system turns, so the position in the conversation is lost; keeping it a system prompt keeps its authority) |
//! | `messages[].content`: string | `[{text}]` |
//! | `text` | `{text}` (`citations` dropped); empty texts are left out (Converse refuses blank text) |
//! | `image`, `source.type:"base64"` | `{image:{format:"png"\|"jpeg"\|"gif"\|"webp", source:{bytes:"<base64>"}}}` (the base64 string is copied as is: Converse's JSON carries blobs as base64) |
//! | `image`/`document` with a `url` or `file` source, `document` with a `content` source | error [`ConverseError::Unsupported`] (Converse needs the bytes or an S3 location) |
//! | `document`, `source.type:"base64"` | `{document:{format, name, source:{bytes}}}`, format from the media type (`pdf`, `csv`, `doc`, `docx`, `xls`, `xlsx`, `html`, `txt`, `md`) |
//! | `document`, `source.type:"text"` | the same with format `txt` and the text base64-encoded |
//! | document name | required by Converse: the `title` made safe (ASCII letters and digits, `-`, `(`, `)`, `[`, `]`, single spaces; other characters become `-`; at most 200 characters), else `document-N`; names are made unique in the request with ` (2)`, ` (3)`, … |
//! | document `context` | `context`; `citations` dropped |
//! | `tool_use` | `{toolUse:{toolUseId, name, input}}` (`input` byte-identical) |
//! | `tool_result` | `{toolResult:{toolUseId, content, status:"error" when is_error}}`: string content -> `[{text}]`, `text`/`image`/`document` blocks as above; empty or absent content -> `[]` |
//! | `thinking` | `{reasoningContent:{reasoningText:{text, signature}}}` (an empty signature is left out) |
//! | `redacted_thinking` | `{reasoningContent:{redactedContent:"<base64>"}}` |
//! | a block's `cache_control` | a following `{cachePoint}` in the same content list (inside a `tool_result`'s content: dropped, Converse has no cache point there) |
//! | other block types (server tools, `search_result`, `container_upload`, …) | error [`ConverseError::Unsupported`] |
//! | consecutive turns of the same role (also after system turns are taken out, or empty turns left out) | merged into one (Converse refuses them) |
//! | `max_tokens`, `temperature`, `top_p`, `stop_sequences` | `inferenceConfig {maxTokens, temperature, topP, stopSequences}` |
//! | `top_k` | dropped: its name and place are model-specific (`additionalModelRequestFields`), and models refuse keys they do not know |
//! | `tools[]` (custom) | `toolConfig.tools[{toolSpec:{name, description, inputSchema:{json}}}]` (schema byte-identical); `cache_control` -> a following `{cachePoint}`; `strict`, `defer_loading`, `eager_input_streaming`, `input_examples` dropped |
//! | `tools[]` with another `type` (server and Anthropic-defined tools) | error [`ConverseError::Unsupported`] |
//! | `tool_choice` `auto` / `any` / `tool` | `toolChoice {auto:{}}` / `{any:{}}` / `{tool:{name}}` (`any` and `tool` only work on models that support them: Converse refuses them otherwise); `disable_parallel_tool_use` dropped |
//! | `tool_choice` `none` | Converse has no `none`: the tools are left out, unless the conversation holds `toolUse`/`toolResult` blocks (Converse then requires a `toolConfig`): the tools are kept without `toolChoice`, so the model *can* still call one |
//! | tool blocks in the conversation but no `tools` | `toolConfig.tools` gets a placeholder spec (`{"type":"object"}` schema) for each tool name the conversation uses, as Converse requires |
//! | `thinking` | dropped, unless [`RequestOptions::thinking`]: then `additionalModelRequestFields.thinking`, byte-identical (Anthropic's shape: only Claude takes it; other models refuse unknown fields) |
//! | everything else (`metadata`, `service_tier`, `context_management`, `output_config`, `anthropic_beta`, top-level `cache_control`, `container`, `mcp_servers`, unknown fields, …) | dropped |
//!
//! Dropped fields are named in [`Translated::dropped`] as paths with `[]` for array elements
//! (`top_k`, `tools[].strict`, `messages[].content[].citations`), deduplicated, in the order
//! first met. JSON `null` top-level values count as absent.
//!
//! # Response mapping (Converse -> Anthropic)
//!
//! | Converse | Anthropic |
//! |---|---|
//! | (no id) | `id`: the caller's |
//! | (no model) | `model`: the name the client asked for |
//! | `output.message.role` | `role: "assistant"` (always) |
//! | `output.message.content[]` `{text}` | `{type:"text", text}` |
//! | `{toolUse:{toolUseId, name, input}}` | `{type:"tool_use", id, name, input}` |
//! | `{reasoningContent:{reasoningText:{text, signature?}}}` | `{type:"thinking", thinking, signature}` (`""` when absent: non-Claude models sign nothing) |
//! | `{reasoningContent:{redactedContent}}` | `{type:"redacted_thinking", data}` |
//! | `{citationsContent:{content:[{text}…]}}` | `{type:"text", text}` (the texts joined; the citations are not carried) |
//! | other blocks (`image`, `document`, `guardContent`, …) | left out |
//! | `stopReason` | [`stop_reason`] |
//! | `additionalModelResponseFields.stop_sequence` (a string) | `stop_sequence`, else `null` (Converse does not say which sequence matched) |
//! | `usage.inputTokens` | `usage.input_tokens` (AWS documents `inputTokens` as the input *not* read from or written to the cache, like Anthropic's) |
//! | `usage.outputTokens` | `usage.output_tokens` |
//! | `usage.cacheReadInputTokens` / `cacheWriteInputTokens` | `cache_read_input_tokens` / `cache_creation_input_tokens` (0 when absent) |
//! | `usage.cacheDetails[{ttl, inputTokens}]` | `usage.cache_creation {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}` (only when present) |
//! | `metrics`, `trace`, `performanceConfig`, other `additionalModelResponseFields` | not carried |
//!
//! Counts are passed through as Bedrock reports them; nothing is recomputed (`totalTokens` is
//! not used).
//!
//! The stream mapping is documented on [`ConverseStream`].

mod model;
mod request;
mod response;
mod stream;

pub use model::{supports_cache_points, uses_converse};
pub use request::{RequestOptions, Translated, request, request_with};
pub use response::message;
pub use stream::{ConverseStream, StreamError};

use serde::Deserialize;

use crate::anthropic::{ApiError, ErrorKind, Usage};

/// Why a request or a `Converse` reply could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConverseError {
    /// The Anthropic request is malformed where the translation needs to read it (a 400 for the
    /// client). `path` names the place, e.g. `messages[2].content[0].source`.
    #[error("{path}: {message}")]
    InvalidRequest {
        /// Where in the request.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The request is valid Anthropic but asks for something Converse cannot carry (a 400 for
    /// the client, naming what to change).
    #[error("{path}: {what} is not supported by Bedrock Converse models")]
    Unsupported {
        /// Where in the request.
        path: String,
        /// What cannot be carried.
        what: String,
    },
    /// The `Converse` reply is not what the API defines (a protocol violation by the upstream).
    #[error("invalid Bedrock Converse response: {0}")]
    InvalidResponse(String),
}

impl ConverseError {
    /// The error to answer the client with: `invalid_request_error` (400) for the request
    /// errors, `api_error` (500) for an invalid upstream reply.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            ConverseError::InvalidRequest { .. } | ConverseError::Unsupported { .. } => {
                ApiError::new(ErrorKind::InvalidRequest, self.to_string())
            }
            ConverseError::InvalidResponse(_) => ApiError::new(ErrorKind::Api, self.to_string()),
        }
    }
}

/// The Anthropic `stop_reason` for a Converse `stopReason`.
///
/// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence` and `model_context_window_exceeded` keep
/// their name; `guardrail_intervened` and `content_filtered` -> `refusal` (the answer was blocked,
/// which is what `refusal` tells a client). `malformed_model_output`, `malformed_tool_use` and
/// unknown values -> `end_turn`: the turn is over and Anthropic has no reason for a broken
/// generation; `tool_use` would make the client run a tool call that may be incomplete.
pub fn stop_reason(converse: &str) -> &'static str {
    match converse {
        "tool_use" => "tool_use",
        "max_tokens" => "max_tokens",
        "stop_sequence" => "stop_sequence",
        "model_context_window_exceeded" => "model_context_window_exceeded",
        "guardrail_intervened" | "content_filtered" => "refusal",
        _ => "end_turn",
    }
}

/// Converse `TokenUsage` (reply `usage`, stream `metadata.usage`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TokenUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
    cache_details: Option<Vec<CacheDetail>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CacheDetail {
    ttl: Option<String>,
    input_tokens: Option<u64>,
}

impl TokenUsage {
    /// The usage in the crate's terms.
    fn to_usage(&self) -> Usage {
        let writes = self.cache_write_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_input_tokens: self.cache_read_input_tokens.unwrap_or(0),
            cache_creation_input_tokens: writes,
            cache_creation_1h_input_tokens: self.ttl_tokens("1h").unwrap_or(0).min(writes),
        }
    }

    /// The cache writes of one TTL, when `cacheDetails` is present.
    fn ttl_tokens(&self, ttl: &str) -> Option<u64> {
        self.cache_details.as_ref().map(|details| {
            details
                .iter()
                .filter(|d| d.ttl.as_deref() == Some(ttl))
                .filter_map(|d| d.input_tokens)
                .fold(0u64, u64::saturating_add)
        })
    }

    /// Appends the Anthropic `usage` object.
    fn write_anthropic(&self, out: &mut Vec<u8>) {
        let u = self.to_usage();
        out.extend_from_slice(
            format!(
                r#"{{"input_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},"output_tokens":{}"#,
                u.input_tokens,
                u.cache_creation_input_tokens,
                u.cache_read_input_tokens,
                u.output_tokens
            )
            .as_bytes(),
        );
        if self.cache_details.is_some() {
            out.extend_from_slice(
                format!(
                    r#","cache_creation":{{"ephemeral_5m_input_tokens":{},"ephemeral_1h_input_tokens":{}}}"#,
                    self.ttl_tokens("5m").unwrap_or(0),
                    self.ttl_tokens("1h").unwrap_or(0)
                )
                .as_bytes(),
            );
        }
        out.push(b'}');
    }
}

/// `additionalModelResponseFields.stop_sequence`, when it is a string (Claude reports it there).
fn additional_stop_sequence(fields: Option<&serde_json::value::RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Fields {
        stop_sequence: Option<String>,
    }
    fields
        .and_then(|raw| serde_json::from_str::<Fields>(raw.get()).ok())
        .and_then(|f| f.stop_sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons() {
        for (c, a) in [
            ("end_turn", "end_turn"),
            ("tool_use", "tool_use"),
            ("max_tokens", "max_tokens"),
            ("stop_sequence", "stop_sequence"),
            ("guardrail_intervened", "refusal"),
            ("content_filtered", "refusal"),
            (
                "model_context_window_exceeded",
                "model_context_window_exceeded",
            ),
            ("malformed_model_output", "end_turn"),
            ("malformed_tool_use", "end_turn"),
            ("something_new", "end_turn"),
        ] {
            assert_eq!(stop_reason(c), a, "{c}");
        }
    }

    #[test]
    fn usage_with_cache_details() {
        let u: TokenUsage = serde_json::from_str(
            r#"{"inputTokens":5,"outputTokens":7,"totalTokens":112,"cacheReadInputTokens":40,
                "cacheWriteInputTokens":60,"cacheDetails":[{"ttl":"5m","inputTokens":20},{"ttl":"1h","inputTokens":40}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        u.write_anthropic(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"input_tokens":5,"cache_creation_input_tokens":60,"cache_read_input_tokens":40,"output_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":40}}"#
        );
        assert_eq!(u.to_usage().cache_creation_1h_input_tokens, 40);
        assert_eq!(u.to_usage().total_input_tokens(), 105);
    }
}
