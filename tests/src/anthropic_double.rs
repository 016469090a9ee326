//! A loopback double of the Anthropic Messages API, as strict as the real service.
//!
//! * `POST /v1/messages` (JSON, or SSE when `"stream": true`) and
//!   `POST /v1/messages/count_tokens`; query strings are ignored, anything else is a 404
//!   `not_found_error`.
//! * `x-api-key` must equal a configured key (401 `authentication_error` otherwise, checked
//!   first, like the API); `anthropic-version` is required and must be a known version.
//! * Bodies are validated like the API validates them: a JSON object; `model` (a Claude model
//!   id: `claude-…`, so a gateway's `provider/model` name that was not rewritten is a 404
//!   `not_found_error` `model: …`), `max_tokens` (integer ≥ 0, messages only), `messages`
//!   (non-empty, roles `user`/`assistant`, content string or blocks), `stream` (boolean);
//!   unknown top-level fields are `Extra inputs are not permitted` (count_tokens rejects the
//!   sampling fields too).
//! * Errors are Anthropic's exact shape:
//!   `{"type":"error","error":{"type":…,"message":…},"request_id":"req_…"}` with a `request-id`
//!   header.
//! * Streams are real SSE, sent event by event (one body chunk each): `message_start`,
//!   `content_block_start`, a `ping` (`{"type": "ping"}`, with the API's space), one
//!   `content_block_delta` per word, `content_block_stop`, `message_delta`, `message_stop`.
//! * Behaviour is scripted by `[double:…]` triggers in the last user message (see [`Script`]).
//! * Every request is recorded with its headers, its raw body bytes and the exact bytes of the
//!   answer ([`AnthropicDouble::requests`]), so tests can compare byte for byte.
//!
//! The server runs on its own thread and Tokio runtime, like the Bedrock double.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::double_http::{
    alnum_id, first_header, header_pairs, insert_headers, lock, path_and_query, response,
    sse_response, triggers,
};
use crate::serve::{Bound, Running};

/// Text of the default reply.
pub const DEFAULT_REPLY: &str = "Hello from the Anthropic double.";
/// `anthropic-version` values the API accepts.
pub const KNOWN_VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];
/// Message of `[double:prompt-too-long]`, as the API words it.
pub const PROMPT_TOO_LONG_MESSAGE: &str = "prompt is too long: 215321 tokens > 200000 maximum";
/// Message of `[double:rate-limit]`.
pub const RATE_LIMIT_MESSAGE: &str = "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.";
/// `retry-after` of `[double:rate-limit]`.
pub const RATE_LIMIT_RETRY_AFTER: &str = "7";
/// The tool `[double:tool]` calls.
pub const TOOL_NAME: &str = "Read";
/// The `message` argument of a `[double:call:NAME]` tool call.
pub const CALL_MESSAGE: &str = "tollgate-mcp-e2e-4d1c";
/// Requests larger than this get 413 `request_too_large`.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

const MESSAGES_FIELDS: [&str; 22] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "service_tier",
    "context_management",
    "output_config",
    "output_format",
    "mcp_servers",
    "container",
    "inference_geo",
    "speed",
    "cache_control",
];
const COUNT_TOKENS_FIELDS: [&str; 11] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "mcp_servers",
    "context_management",
    "cache_control",
];

/// Configuration of an [`AnthropicDouble`].
#[derive(Debug, Clone, Default)]
pub struct AnthropicDoubleConfig {
    /// Accepted `x-api-key` values.
    pub api_keys: HashSet<String>,
    /// When set, only these model ids exist; otherwise every `claude-…` id does.
    pub models: Option<HashSet<String>>,
}

impl AnthropicDoubleConfig {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_keys.insert(key.to_owned());
        self
    }

    #[must_use]
    pub fn with_models(mut self, models: &[&str]) -> Self {
        self.models = Some(models.iter().map(|m| (*m).to_owned()).collect());
        self
    }
}

/// What the double answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicVerdict {
    /// HTTP status (0 for `[double:hang]`, which never answers).
    pub status: u16,
    /// Anthropic error type for errors (also for a mid-stream `error` event).
    pub error_type: Option<String>,
    pub message: Option<String>,
    /// Scripted behaviour that applied.
    pub scenario: Option<String>,
}

/// One request the double received, with the exact answer it gave.
#[derive(Debug, Clone)]
pub struct AnthropicRequest {
    pub seq: u64,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Lowercase header names with their values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Bytes,
    /// `Messages` or `CountTokens`, when the path routed.
    pub operation: Option<String>,
    /// Whether `x-api-key` matched a configured key.
    pub authenticated: bool,
    pub stream: bool,
    pub verdict: AnthropicVerdict,
    /// The response body bytes (for streams: every SSE event the double sends, concatenated).
    pub response_body: Bytes,
    /// The `request-id` the double answered with.
    pub request_id: String,
}

impl AnthropicRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every value of a header (name case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A running double. Dropping it stops the server.
pub struct AnthropicDouble {
    server: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AnthropicDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug(f, "AnthropicDouble")
    }
}

struct Shared {
    api_keys: RwLock<HashSet<String>>,
    models: Option<HashSet<String>>,
    requests: Mutex<Vec<AnthropicRequest>>,
    seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl AnthropicDouble {
    /// Starts the double on `127.0.0.1:0`.
    pub fn start(config: AnthropicDoubleConfig) -> std::io::Result<AnthropicDouble> {
        let bound = Bound::loopback()?;
        let shared = Arc::new(Shared {
            api_keys: RwLock::new(config.api_keys),
            models: config.models,
            requests: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            shutdown: bound.stop_signal(),
        });
        let server = bound.serve("anthropic-double", 2, handle, Arc::clone(&shared))?;
        Ok(AnthropicDouble { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<AnthropicRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<AnthropicRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Accepts another `x-api-key` from now on.
    pub fn add_api_key(&self, key: &str) {
        self.shared
            .api_keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned());
    }
}

/// An Anthropic API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
    /// Extra response headers (`retry-after`, …).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, error_type: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type: error_type.to_owned(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    /// The exact body the API sends.
    pub fn body(&self, request_id: &str) -> Bytes {
        Bytes::from(
            json!({
                "type": "error",
                "error": {"type": self.error_type, "message": self.message},
                "request_id": request_id,
            })
            .to_string(),
        )
    }

    /// The `data:` of a mid-stream `error` event (no request id, like the API).
    pub fn sse_event(&self) -> Bytes {
        Bytes::from(format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": self.error_type, "message": self.message}})
        ))
    }
}

/// HTTP status of an Anthropic error type (protocols.md §2.4).
pub fn status_for(error_type: &str) -> u16 {
    match error_type {
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 400,
    }
}

/// Parsed `[double:…]` triggers.
///
/// | trigger | messages | stream |
/// |---|---|---|
/// | (none) | text [`DEFAULT_REPLY`] | same, one `text_delta` per word, a `ping` after `content_block_start` |
/// | `[double:tool]` | one `tool_use` block | `input_json_delta` pieces |
/// | `[double:read:PATH]` | one `tool_use` block `Read {"file_path": PATH}` | same |
/// | `[double:call:NAME]` | one `tool_use` block `NAME {"message": CALL_MESSAGE}` when the request's `tools` offer NAME (as a model would only call a tool it was given); otherwise text saying it was not offered | same |
/// | `[double:thinking]` | a `thinking` block with a signature first, when the request has `thinking` enabled or adaptive | `thinking_delta`s, a `signature_delta` |
/// | `[double:overloaded]` | 529 `overloaded_error` `Overloaded` | same, before any event |
/// | `[double:prompt-too-long]` | 400 `invalid_request_error` [`PROMPT_TOO_LONG_MESSAGE`] | same |
/// | `[double:rate-limit]` | 429 `rate_limit_error`, `retry-after`, `x-should-retry: true`, `anthropic-ratelimit-*` | same |
/// | `[double:error:<type>]` | that error type with its status | same |
/// | `[double:html-502]` | 502 with an HTML body (a proxy in front of the API) | same |
/// | `[double:midstream-overloaded]` | 529 | `message_start`, block start, `ping`, one delta, then an `error` event |
/// | `[double:slow:MS]` | waits MS | MS between events |
/// | `[double:hang]` | never answers | same |
///
/// Fault triggers also apply to count_tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub tool: bool,
    /// `[double:read:PATH]`: the tool call reads PATH.
    pub read: Option<String>,
    /// `[double:call:NAME]`: the tool to call, if the request offers it.
    pub call: Option<String>,
    pub thinking: bool,
    pub error: Option<ApiError>,
    pub html_502: bool,
    pub midstream: Option<ApiError>,
    pub slow_ms: Option<u64>,
    pub hang: bool,
}

impl Script {
    pub fn parse(text: &str) -> Script {
        let mut script = Script::default();
        for (name, arg) in triggers(text) {
            match name {
                "tool" => script.tool = true,
                "read" if !arg.is_empty() => {
                    script.tool = true;
                    script.read = Some(arg.to_owned());
                }
                "call" if !arg.is_empty() => script.call = Some(arg.to_owned()),
                "thinking" => script.thinking = true,
                "overloaded" => {
                    script.error = Some(ApiError::new(529, "overloaded_error", "Overloaded"));
                }
                "prompt-too-long" => {
                    script.error = Some(ApiError::invalid(PROMPT_TOO_LONG_MESSAGE));
                }
                "rate-limit" => {
                    let mut e = ApiError::new(429, "rate_limit_error", RATE_LIMIT_MESSAGE);
                    e.headers = vec![
                        ("retry-after", RATE_LIMIT_RETRY_AFTER.to_owned()),
                        ("x-should-retry", "true".to_owned()),
                        ("anthropic-ratelimit-requests-limit", "50".to_owned()),
                        ("anthropic-ratelimit-requests-remaining", "0".to_owned()),
                    ];
                    script.error = Some(e);
                }
                "error" if !arg.is_empty() => {
                    script.error = Some(ApiError::new(
                        status_for(arg),
                        arg,
                        format!("scripted {arg} from the Anthropic double"),
                    ));
                }
                "html-502" => script.html_502 = true,
                "midstream-overloaded" => {
                    script.midstream = Some(ApiError::new(529, "overloaded_error", "Overloaded"));
                }
                "slow" => script.slow_ms = arg.parse().ok(),
                "hang" => script.hang = true,
                _ => {}
            }
        }
        script
    }

    fn label(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(e) = &self.error {
            parts.push(format!("error:{}", e.error_type));
        }
        if let Some(e) = &self.midstream {
            parts.push(format!("midstream:{}", e.error_type));
        }
        if let Some(name) = &self.call {
            parts.push(format!("call:{name}"));
        }
        for (on, label) in [
            (self.tool, "tool"),
            (self.thinking, "thinking"),
            (self.html_502, "html-502"),
            (self.hang, "hang"),
        ] {
            if on {
                parts.push(label.to_owned());
            }
        }
        if let Some(ms) = self.slow_ms {
            parts.push(format!("slow:{ms}"));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Messages,
    CountTokens,
}

/// How to answer a valid request.
enum Answer {
    Json(Bytes),
    Html502(Bytes),
    Stream {
        events: Vec<Bytes>,
        slow_ms: Option<u64>,
    },
    Hang,
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = request_id(seq);
    let mut record = AnthropicRequest {
        seq,
        method: parts.method.to_string(),
        path: path_and_query(&parts.uri),
        headers: header_pairs(&parts.headers).collect(),
        body: Bytes::new(),
        operation: None,
        authenticated: false,
        stream: false,
        verdict: AnthropicVerdict {
            status: 0,
            error_type: None,
            message: None,
            scenario: None,
        },
        response_body: Bytes::new(),
        request_id: request_id.clone(),
    };
    let result = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            record.body = bytes.clone();
            process(
                &shared,
                &parts.method,
                parts.uri.path(),
                &parts.headers,
                &bytes,
                &mut record,
                &request_id,
            )
        }
        Err(_) => Err(ApiError::new(
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        )),
    };
    finish(&shared, record, result, &request_id).await
}

fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    bytes: &Bytes,
    record: &mut AnthropicRequest,
    request_id: &str,
) -> Result<(Answer, Option<String>), ApiError> {
    let operation = match (method, path) {
        (&Method::POST, "/v1/messages") => Operation::Messages,
        (&Method::POST, "/v1/messages/count_tokens") => Operation::CountTokens,
        _ => return Err(ApiError::new(404, "not_found_error", "Not found")),
    };
    record.operation = Some(
        match operation {
            Operation::Messages => "Messages",
            Operation::CountTokens => "CountTokens",
        }
        .to_owned(),
    );

    // Authentication first, like the API.
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let Some(key) = key else {
        return Err(ApiError::new(
            401,
            "authentication_error",
            "x-api-key header is required",
        ));
    };
    let known = shared
        .api_keys
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(key);
    if !known {
        return Err(ApiError::new(
            401,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    record.authenticated = true;

    match headers.get("anthropic-version").map(HeaderValue::to_str) {
        None => return Err(ApiError::invalid("anthropic-version: header is required")),
        Some(Ok(v)) if KNOWN_VERSIONS.contains(&v) => {}
        Some(_) => return Err(ApiError::invalid("anthropic-version: invalid version")),
    }

    let betas: Vec<&str> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let body = validate(shared, operation, bytes, &betas)?;
    let stream = operation == Operation::Messages
        && body.get("stream").and_then(Value::as_bool) == Some(true);
    record.stream = stream;
    let script = Script::parse(&trigger_text(&body));
    let scenario = script.label();
    if script.hang {
        return Ok((Answer::Hang, scenario));
    }
    if script.html_502 {
        return Ok((
            Answer::Html502(Bytes::from_static(
                b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
            )),
            scenario,
        ));
    }
    if let Some(e) = script.error.clone() {
        return Err(e);
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let input_tokens = input_tokens(&body);
    if operation == Operation::CountTokens {
        return Ok((
            Answer::Json(Bytes::from(
                json!({ "input_tokens": input_tokens }).to_string(),
            )),
            scenario,
        ));
    }
    if !stream && let Some(e) = script.midstream.clone() {
        return Err(e);
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
    let thinking = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "enabled" || t == "adaptive");
    let offered = |name: &str| {
        body.get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == name))
    };
    let call = script.call.as_deref().map(|name| (name, offered(name)));
    let reply = Reply::build(
        &script,
        call,
        model,
        input_tokens,
        max_tokens,
        request_id,
        thinking,
    );
    if stream {
        Ok((
            Answer::Stream {
                events: reply.events(script.midstream.as_ref()),
                slow_ms: script.slow_ms,
            },
            scenario,
        ))
    } else {
        Ok((Answer::Json(reply.message()), scenario))
    }
}

/// Validates the body like the API; returns it parsed.
/// The beta under which the API takes `system` messages in `messages` (Claude Code sends them).
pub const MID_CONVERSATION_SYSTEM_BETA: &str = "mid-conversation-system-2026-04-07";

fn validate(
    shared: &Shared,
    operation: Operation,
    bytes: &[u8],
    betas: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(ApiError::invalid(
            "There was an error parsing the body of your request. Please make sure the body is valid JSON.",
        ));
    };
    let allowed: &[&str] = match operation {
        Operation::Messages => &MESSAGES_FIELDS,
        Operation::CountTokens => &COUNT_TOKENS_FIELDS,
    };
    if let Some(extra) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "{extra}: Extra inputs are not permitted"
        )));
    }
    let model = match body.get("model") {
        None => return Err(ApiError::invalid("model: Field required")),
        Some(Value::String(m)) => m,
        Some(_) => return Err(ApiError::invalid("model: Input should be a valid string")),
    };
    let exists = match &shared.models {
        Some(models) => models.contains(model),
        None => {
            model.starts_with("claude-")
                && model
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-.".contains(&c))
        }
    };
    if !exists {
        return Err(ApiError::new(
            404,
            "not_found_error",
            format!("model: {model}"),
        ));
    }
    if operation == Operation::Messages {
        match body.get("max_tokens") {
            None => return Err(ApiError::invalid("max_tokens: Field required")),
            Some(v) if v.as_u64().is_none() => {
                return Err(ApiError::invalid(
                    "max_tokens: Input should be a valid integer",
                ));
            }
            Some(_) => {}
        }
        if let Some(s) = body.get("stream")
            && !s.is_boolean()
        {
            return Err(ApiError::invalid("stream: Input should be a valid boolean"));
        }
    }
    let messages = match body.get("messages") {
        None => return Err(ApiError::invalid("messages: Field required")),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(ApiError::invalid("messages: Input should be a valid list")),
    };
    if messages.is_empty() && operation == Operation::Messages {
        return Err(ApiError::invalid(
            "messages: at least one message is required",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(ApiError::invalid(format!(
                "messages.{i}: Input should be a valid dictionary"
            )));
        };
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            Some("system") if betas.contains(&MID_CONVERSATION_SYSTEM_BETA) => {}
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )));
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "messages.{i}.role: Field required"
                )));
            }
        }
        match m.get("content") {
            None => {
                return Err(ApiError::invalid(format!(
                    "messages.{i}.content: Field required"
                )));
            }
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    if b.get("type").and_then(Value::as_str).is_none() {
                        return Err(ApiError::invalid(format!(
                            "messages.{i}.content.{j}.type: Field required"
                        )));
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                )));
            }
        }
        if let Some(extra) = m.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
            return Err(ApiError::invalid(format!(
                "messages.{i}.{extra}: Extra inputs are not permitted"
            )));
        }
    }
    if let Some(refusal) = crate::thinking::check(crate::thinking::Platform::Anthropic, &body) {
        return Err(ApiError::invalid(refusal));
    }
    Ok(body)
}

/// Text of the last user message: its string content or its last text block.
fn trigger_text(body: &Map<String, Value>) -> String {
    let Some(last_user) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &last_user["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .rev()
            .find(|b| b["type"] == "text")
            .and_then(|b| b["text"].as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// Deterministic: characters of system and message text / 4 + 1.
fn input_tokens(body: &Map<String, Value>) -> u64 {
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.chars().count(),
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(o) => ["text", "content"]
                .iter()
                .filter_map(|k| o.get(*k))
                .map(chars)
                .sum(),
            _ => 0,
        }
    }
    let mut n = body.get("system").map_or(0, chars);
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        n += messages.iter().map(|m| chars(&m["content"])).sum::<usize>();
    }
    (n / 4 + 1) as u64
}

/// A reply to a valid messages request.
struct Reply {
    id: String,
    model: String,
    input_tokens: u64,
    /// Text words, or empty for a tool call.
    words: Vec<String>,
    /// The tool call's input (JSON text), for a tool call.
    tool: Option<String>,
    /// The called tool's name.
    tool_name: String,
    /// `(thinking, signature)` of a leading thinking block.
    thinking: Option<(String, String)>,
    stop_reason: &'static str,
    output_tokens: u64,
}

/// Thinking text of the `[double:thinking]` reply.
pub const THINKING_TEXT: &str = "Let me think about this step by step.";

const TOOL_ID: &str = "toolu_01DoubleReadCall0000001";
const TOOL_INPUT: &str = r#"{"file_path": "/tmp/x"}"#;

impl Reply {
    fn build(
        script: &Script,
        call: Option<(&str, bool)>,
        model: &str,
        input_tokens: u64,
        max_tokens: u64,
        request_id: &str,
        thinking_enabled: bool,
    ) -> Reply {
        let digest = Sha256::digest(request_id.as_bytes());
        let id = format!("msg_01{}", &hex::encode(&digest[..11])[..22]);
        let thinking = (script.thinking && thinking_enabled).then(|| {
            (
                THINKING_TEXT.to_owned(),
                crate::thinking::sign(
                    crate::thinking::Platform::Anthropic,
                    &hex::encode(&digest[11..])[..22],
                    THINKING_TEXT,
                ),
            )
        });
        if let Some((name, true)) = call {
            return Reply {
                id,
                model: model.to_owned(),
                input_tokens,
                words: Vec::new(),
                tool: Some(json!({ "message": CALL_MESSAGE }).to_string()),
                tool_name: name.to_owned(),
                thinking,
                stop_reason: "tool_use",
                output_tokens: 12,
            };
        }
        if script.tool {
            let input = match &script.read {
                Some(path) => json!({ "file_path": path }).to_string(),
                None => TOOL_INPUT.to_owned(),
            };
            return Reply {
                id,
                model: model.to_owned(),
                input_tokens,
                words: Vec::new(),
                tool: Some(input),
                tool_name: TOOL_NAME.to_owned(),
                thinking,
                stop_reason: "tool_use",
                output_tokens: 12,
            };
        }
        if let Some((name, false)) = call {
            let text = format!("The tool {name} was not offered.");
            return Reply {
                id,
                model: model.to_owned(),
                input_tokens,
                output_tokens: (text.len() as u64).div_ceil(4),
                words: vec![text],
                tool: None,
                tool_name: String::new(),
                thinking,
                stop_reason: "end_turn",
            };
        }
        // max_tokens is honoured at 4 characters a token.
        let mut words = Vec::new();
        let mut used = 0u64;
        let mut stop_reason = "end_turn";
        for (i, w) in DEFAULT_REPLY.split(' ').enumerate() {
            let piece = if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            };
            let cost = (piece.len() as u64).div_ceil(4);
            if used + cost > max_tokens {
                stop_reason = "max_tokens";
                break;
            }
            used += cost;
            words.push(piece);
        }
        Reply {
            id,
            model: model.to_owned(),
            input_tokens,
            words,
            tool: None,
            tool_name: String::new(),
            thinking,
            stop_reason,
            output_tokens: used.max(1),
        }
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }

    fn message(&self) -> Bytes {
        let mut content = Vec::new();
        if let Some((thinking, signature)) = &self.thinking {
            content.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
        }
        content.push(match &self.tool {
            Some(input) => json!({"type": "tool_use", "id": TOOL_ID, "name": self.tool_name,
                    "input": serde_json::from_str::<Value>(input).unwrap_or_default()}),
            None => json!({"type": "text", "text": self.words.concat()}),
        });
        Bytes::from(
            json!({
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": content,
                "stop_reason": self.stop_reason,
                "stop_sequence": null,
                "usage": self.usage(self.output_tokens),
            })
            .to_string(),
        )
    }

    /// The SSE events, one body chunk each.
    fn events(&self, midstream: Option<&ApiError>) -> Vec<Bytes> {
        fn event(name: &str, data: &Value) -> Bytes {
            Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
        }
        let ping = Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
        let mut out = vec![event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": self.usage(1)}}),
        )];
        let mut blocks: Vec<(Value, Vec<Value>)> = Vec::new();
        if let Some((thinking, signature)) = &self.thinking {
            let mut deltas: Vec<Value> = thinking
                .split_inclusive(' ')
                .map(|w| json!({"type": "thinking_delta", "thinking": w}))
                .collect();
            deltas.push(json!({"type": "signature_delta", "signature": signature}));
            blocks.push((
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                deltas,
            ));
        }
        blocks.push(match &self.tool {
            Some(input) => {
                let split = input.find(':').map_or(input.len(), |p| p + 1);
                let pieces = ["", &input[..split], &input[split..]];
                (
                    json!({"type": "tool_use", "id": TOOL_ID, "name": self.tool_name, "input": {}}),
                    pieces
                        .iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
            None => (
                json!({"type": "text", "text": ""}),
                self.words
                    .iter()
                    .map(|w| json!({"type": "text_delta", "text": w}))
                    .collect(),
            ),
        });
        for (index, (start, deltas)) in blocks.iter().enumerate() {
            out.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": start}),
            ));
            if index == 0 {
                out.push(ping.clone());
            }
            for (i, d) in deltas.iter().enumerate() {
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": d}),
                ));
                if index == 0
                    && i == 0
                    && let Some(e) = midstream
                {
                    out.push(e.sse_event());
                    return out;
                }
            }
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
        out.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens}}),
        ));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }
}

async fn finish(
    shared: &Arc<Shared>,
    mut record: AnthropicRequest,
    result: Result<(Answer, Option<String>), ApiError>,
    request_id: &str,
) -> Response {
    let response = match result {
        Err(err) => {
            let body = err.body(request_id);
            record.verdict = AnthropicVerdict {
                status: err.status,
                error_type: Some(err.error_type.clone()),
                message: Some(err.message.clone()),
                scenario: None,
            };
            record.response_body = body.clone();
            let mut response = plain(err.status, "application/json", body, request_id);
            insert_headers(response.headers_mut(), &err.headers);
            response
        }
        Ok((answer, scenario)) => {
            record.verdict.scenario = scenario;
            match answer {
                Answer::Json(body) => {
                    record.verdict.status = 200;
                    record.response_body = body.clone();
                    plain(200, "application/json", body, request_id)
                }
                Answer::Html502(body) => {
                    record.verdict.status = 502;
                    record.response_body = body.clone();
                    plain(502, "text/html", body, request_id)
                }
                Answer::Hang => {
                    record.verdict.status = 0;
                    lock(&shared.requests).push(record);
                    let mut stop = shared.shutdown.clone();
                    let _ = stop.wait_for(|v| *v).await;
                    return plain(503, "text/plain", Bytes::new(), request_id);
                }
                Answer::Stream { events, slow_ms } => {
                    record.verdict.status = 200;
                    if let Some(last) = events.last()
                        && last.starts_with(b"event: error\n")
                    {
                        let data: Value =
                            std::str::from_utf8(&last[b"event: error\ndata: ".len()..])
                                .ok()
                                .and_then(|s| serde_json::from_str(s.trim()).ok())
                                .unwrap_or_default();
                        record.verdict.error_type =
                            data["error"]["type"].as_str().map(str::to_owned);
                        record.verdict.message =
                            data["error"]["message"].as_str().map(str::to_owned);
                    }
                    record.response_body = Bytes::from(events.concat());
                    sse_response(
                        events,
                        slow_ms,
                        shared.shutdown.clone(),
                        &[("request-id", request_id)],
                    )
                }
            }
        }
    };
    lock(&shared.requests).push(record);
    response
}

/// A whole answer with Anthropic's headers.
fn plain(status: u16, content_type: &'static str, body: Bytes, request_id: &str) -> Response {
    response(
        status,
        content_type,
        body,
        &[
            ("request-id", request_id),
            (
                "anthropic-organization-id",
                "00000000-0000-4000-8000-d0ub1e000000",
            ),
        ],
    )
}

/// A request id shaped like Anthropic's (`req_011C…`, 24 characters after `req_`).
fn request_id(seq: u64) -> String {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!(
        "req_011C{}",
        alnum_id(&format!("anthropic:{seq}:{nanos}"), 20)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse() {
        let s = Script::parse("x [double:overloaded] [double:slow:20] [double:tool]");
        assert_eq!(s.error.as_ref().map(|e| e.status), Some(529));
        assert_eq!(s.slow_ms, Some(20));
        assert!(s.tool);
        assert_eq!(Script::parse("plain"), Script::default());
        let e = Script::parse("[double:error:permission_error]")
            .error
            .expect("error");
        assert_eq!((e.status, e.error_type.as_str()), (403, "permission_error"));
    }

    #[test]
    fn error_body_is_anthropic_shaped() {
        let e = ApiError::new(529, "overloaded_error", "Overloaded");
        assert_eq!(
            &e.body("req_1")[..],
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#
        );
    }

    #[test]
    fn request_ids_look_like_anthropics() {
        let id = request_id(1);
        assert!(id.starts_with("req_011C") && id.len() == 28, "{id}");
    }
}
