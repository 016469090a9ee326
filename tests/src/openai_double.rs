//! A loopback double of an OpenAI-compatible Chat Completions API, as strict as OpenAI's own.
//!
//! * `POST /v1/chat/completions` (JSON, or SSE when `"stream": true`) and `GET /v1/models`;
//!   query strings are ignored; anything else is a 404 `Invalid URL (METHOD /path)`.
//! * `Authorization: Bearer` must hold a configured key when keys are configured (401 otherwise,
//!   checked first, like the API: no header → `You didn't provide an API key…`, a wrong one →
//!   `Incorrect API key provided…` with `code: "invalid_api_key"`). With no key configured (a
//!   local vLLM or Ollama) any request is served; [`OpenAiRequest::header`] shows what was sent.
//! * Bodies are validated as OpenAI validates them: a JSON object; no unknown top-level member
//!   (`Unrecognized request argument supplied: X`); `model` present and known (404
//!   `model_not_found` otherwise, so a gateway's `provider/model` name that was not rewritten
//!   fails); `messages` a non-empty array of objects whose `role` is `system`, `developer`,
//!   `user`, `assistant`, `tool` or `function`, with content of the right shape per role; an
//!   assistant `tool_calls` entry `{id, type: "function", function: {name, arguments: <string>}}`;
//!   every `tool` message answering a `tool_call_id` of the assistant `tool_calls` right before
//!   it (`messages with role 'tool' must be a response to a preceeding message with
//!   'tool_calls'`), and every such call answered before the next other message;
//!   `tools[].function.name` matching `^[a-zA-Z0-9_-]{1,64}$`; `tool_choice` and
//!   `parallel_tool_calls` only with `tools`; `max_tokens` and `max_completion_tokens` not both,
//!   and `max_tokens` refused by reasoning models ([`OpenAiDoubleConfig::reasoning_models`]);
//!   `stream` a boolean and `stream_options` only with it; `temperature` 0–2, `top_p` 0–1,
//!   `stop` at most 4 strings, `user` at most 64 characters.
//! * Errors are OpenAI's shape: `{"error":{"message","type","param","code"}}`, with an
//!   `x-request-id` header.
//! * Answers: a `chat.completion`, or SSE `chat.completion.chunk`s sent one per body chunk (a
//!   role chunk, a chunk per word or per tool-argument piece, a chunk with `finish_reason`, the
//!   usage chunk with `choices: []` when `stream_options.include_usage`, then `data: [DONE]`).
//! * Behaviour is scripted by `[double:…]` triggers in the last message when it is a user
//!   message, trailing `system` messages aside (see [`Script`]); once the conversation ends with
//!   tool results the double answers text, so a client's tool loop ends.
//! * Every request is recorded with its headers, raw body and the exact answer bytes
//!   ([`OpenAiDouble::requests`]).
//!
//! The server runs on its own thread and Tokio runtime, like the other doubles.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::double_http::{
    alnum_id, first_header, header_pairs, insert_headers, lock, path_and_query, response,
    sse_response, triggers,
};
use crate::serve::{Bound, Running};

/// Text of the default reply.
pub const DEFAULT_REPLY: &str = "Hello from the OpenAI double.";
/// Models the double serves unless configured otherwise.
pub const DEFAULT_MODELS: [&str; 3] = ["gpt-4.1", "gpt-4.1-mini", "o4-mini"];
/// Message of `[double:rate-limit]`, as OpenAI words it.
pub const RATE_LIMIT_MESSAGE: &str = "Rate limit reached for gpt-4.1 in organization org-double on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s. Visit https://platform.openai.com/account/rate-limits to learn more.";
/// `retry-after` of `[double:rate-limit]`.
pub const RATE_LIMIT_RETRY_AFTER: &str = "7";
/// Message of `[double:context-length]`.
pub const CONTEXT_LENGTH_MESSAGE: &str = "This model's maximum context length is 128000 tokens. However, your messages resulted in 215321 tokens. Please reduce the length of the messages.";
/// Message of a server error (`[double:status:5xx]`, `[double:midstream]`).
pub const SERVER_ERROR_MESSAGE: &str =
    "The server had an error while processing your request. Sorry about that!";
/// OpenAI's wording for a `tool` message that answers no preceding `tool_calls`.
pub const TOOL_WITHOUT_CALL_MESSAGE: &str = "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.";
/// Requests larger than this get 413.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Top-level members of a Chat Completions request.
const FIELDS: [&str; 34] = [
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
];

/// Configuration of an [`OpenAiDouble`].
#[derive(Debug, Clone)]
pub struct OpenAiDoubleConfig {
    /// Accepted bearer keys; empty: no authentication (a local server).
    pub api_keys: HashSet<String>,
    /// The models that exist.
    pub models: HashSet<String>,
    /// Models that refuse `max_tokens` (OpenAI's reasoning models take only
    /// `max_completion_tokens`).
    pub reasoning_models: HashSet<String>,
}

impl Default for OpenAiDoubleConfig {
    fn default() -> Self {
        OpenAiDoubleConfig {
            api_keys: HashSet::new(),
            models: DEFAULT_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            reasoning_models: HashSet::from(["o4-mini".to_owned()]),
        }
    }
}

impl OpenAiDoubleConfig {
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
        self.models = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }
}

/// What the double answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenAiVerdict {
    pub status: u16,
    /// `error.type` of an error (also of a mid-stream error chunk).
    pub error_type: Option<String>,
    /// `error.code` of an error, when it has one.
    pub code: Option<String>,
    pub message: Option<String>,
    /// Scripted behaviour that applied.
    pub scenario: Option<String>,
}

/// One request the double received, with the exact answer it gave.
#[derive(Debug, Clone)]
pub struct OpenAiRequest {
    pub seq: u64,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Lowercase header names with their values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Bytes,
    /// Whether the bearer key matched (always true when no key is configured).
    pub authenticated: bool,
    pub stream: bool,
    pub verdict: OpenAiVerdict,
    /// The response body bytes (for streams: every chunk sent, concatenated).
    pub response_body: Bytes,
}

impl OpenAiRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A running double. Dropping it stops the server.
pub struct OpenAiDouble {
    server: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OpenAiDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug(f, "OpenAiDouble")
    }
}

struct Shared {
    config: OpenAiDoubleConfig,
    requests: Mutex<Vec<OpenAiRequest>>,
    seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl OpenAiDouble {
    /// Starts the double on `127.0.0.1:0`.
    pub fn start(config: OpenAiDoubleConfig) -> std::io::Result<OpenAiDouble> {
        let bound = Bound::loopback()?;
        let shared = Arc::new(Shared {
            config,
            requests: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            shutdown: bound.stop_signal(),
        });
        let server = bound.serve("openai-double", 2, handle, Arc::clone(&shared))?;
        Ok(OpenAiDouble { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// The API root a client is configured with: `http://127.0.0.1:PORT/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<OpenAiRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The chat completion requests received so far, oldest first.
    pub fn completions(&self) -> Vec<OpenAiRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path.starts_with("/v1/chat/completions"))
            .cloned()
            .collect()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<OpenAiRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }
}

/// An OpenAI API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Extra response headers (`retry-after`, …).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
            param: None,
            code: None,
            headers: Vec::new(),
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    #[must_use]
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    #[must_use]
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The error object, as in a body or a stream's error chunk.
    pub fn value(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }})
    }

    /// The exact body the API sends.
    pub fn body(&self) -> Bytes {
        Bytes::from(self.value().to_string())
    }

    /// A server error with `status` (`[double:status:N]`).
    pub fn server(status: u16) -> Self {
        let kind = if status == 503 {
            "service_unavailable"
        } else {
            "server_error"
        };
        Self::new(status, kind, SERVER_ERROR_MESSAGE)
    }
}

/// Parsed `[double:…]` triggers (read from the last message, when it is a user message;
/// trailing `system` messages aside).
///
/// | trigger | non-stream | stream |
/// |---|---|---|
/// | (none) | text [`DEFAULT_REPLY`], `finish_reason: "stop"` | a content chunk per word |
/// | `[double:tool]` | one `tool_calls` entry calling the first tool offered, arguments fitting its schema (`Read`: `{"file_path":"/tmp/x"}`, `Bash`: `{"command":"echo hello","description":…}`) | the call's arguments in three pieces |
/// | `[double:tool:NAME]` | the same, calling tool NAME | same |
/// | `[double:read:PATH]` | a `Read` call `{"file_path": PATH}` | same |
/// | `[double:bash:CMD]` | a `Bash` call `{"command": CMD, …}` (CMD up to the closing `]`) | same |
/// | `[double:parallel]` | two `tool_calls` entries (the call above, twice, with their own ids) | both calls streamed one after the other |
/// | `[double:cached]` | half the prompt tokens reported as `cached_tokens` | same |
/// | `[double:rate-limit]` | 429 `rate_limit_exceeded`, `retry-after: 7`, `x-ratelimit-*` | same, before any chunk |
/// | `[double:status:N]` | status N in OpenAI's envelope (`server_error` for 5xx) | same |
/// | `[double:context-length]` | 400 `context_length_exceeded` | same |
/// | `[double:midstream]` | 500 | a role chunk, one content chunk, then an error chunk and the end (no `[DONE]`) |
/// | `[double:slow:MS]` | waits MS | MS between chunks |
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub tool: bool,
    /// `[double:tool:NAME]`: the tool to call.
    pub tool_name: Option<String>,
    /// `[double:read:PATH]`.
    pub read: Option<String>,
    /// `[double:bash:CMD]`.
    pub bash: Option<String>,
    pub parallel: bool,
    pub cached: bool,
    pub error: Option<ApiError>,
    pub midstream: bool,
    pub slow_ms: Option<u64>,
}

impl Script {
    pub fn parse(text: &str) -> Script {
        let mut script = Script::default();
        for (name, arg) in triggers(text) {
            match name {
                "tool" => {
                    script.tool = true;
                    if !arg.is_empty() {
                        script.tool_name = Some(arg.to_owned());
                    }
                }
                "read" if !arg.is_empty() => {
                    script.tool = true;
                    script.read = Some(arg.to_owned());
                }
                "bash" if !arg.is_empty() => {
                    script.tool = true;
                    script.bash = Some(arg.to_owned());
                }
                "parallel" => {
                    script.tool = true;
                    script.parallel = true;
                }
                "cached" => script.cached = true,
                "rate-limit" => {
                    let mut e = ApiError::new(429, "requests", RATE_LIMIT_MESSAGE)
                        .code("rate_limit_exceeded");
                    e.headers = vec![
                        ("retry-after", RATE_LIMIT_RETRY_AFTER.to_owned()),
                        ("x-ratelimit-limit-requests", "3".to_owned()),
                        ("x-ratelimit-remaining-requests", "0".to_owned()),
                        ("x-ratelimit-reset-requests", "7s".to_owned()),
                    ];
                    script.error = Some(e);
                }
                "status" => {
                    if let Ok(status) = arg.parse::<u16>()
                        && (400..=599).contains(&status)
                    {
                        script.error = Some(if status >= 500 {
                            ApiError::server(status)
                        } else {
                            ApiError::new(
                                status,
                                "invalid_request_error",
                                format!("scripted {status} from the OpenAI double"),
                            )
                        });
                    }
                }
                "context-length" => {
                    script.error = Some(
                        ApiError::invalid(CONTEXT_LENGTH_MESSAGE)
                            .param("messages")
                            .code("context_length_exceeded"),
                    );
                }
                "midstream" => script.midstream = true,
                "slow" => script.slow_ms = arg.parse().ok(),
                _ => {}
            }
        }
        script
    }

    fn label(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(e) = &self.error {
            parts.push(format!("error:{}", e.status));
        }
        for (on, label) in [
            (self.tool && !self.parallel, "tool"),
            (self.parallel, "parallel"),
            (self.cached, "cached"),
            (self.midstream, "midstream"),
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

/// How to answer a valid request.
enum Answer {
    Json(Bytes),
    Stream {
        chunks: Vec<Bytes>,
        slow_ms: Option<u64>,
        /// The error chunk the stream ends with, if any.
        error: Option<ApiError>,
    },
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let mut record = OpenAiRequest {
        seq,
        method: parts.method.to_string(),
        path: path_and_query(&parts.uri),
        headers: header_pairs(&parts.headers).collect(),
        body: Bytes::new(),
        authenticated: false,
        stream: false,
        verdict: OpenAiVerdict::default(),
        response_body: Bytes::new(),
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
            )
        }
        Err(_) => Err(ApiError::new(
            413,
            "invalid_request_error",
            "Request too large: the body exceeds the maximum size.",
        )),
    };
    finish(&shared, record, result).await
}

fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    bytes: &Bytes,
    record: &mut OpenAiRequest,
) -> Result<(Answer, Option<String>), ApiError> {
    let completions = match (method, path) {
        (&Method::POST, "/v1/chat/completions") => true,
        (&Method::GET, "/v1/models") => false,
        _ => {
            return Err(ApiError::new(
                404,
                "invalid_request_error",
                format!("Invalid URL ({method} {path})"),
            ));
        }
    };
    authenticate(shared, headers)?;
    record.authenticated = true;
    if !completions {
        let mut models: Vec<&String> = shared.config.models.iter().collect();
        models.sort();
        let data: Vec<Value> = models
            .into_iter()
            .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "openai-double"}))
            .collect();
        return Ok((
            Answer::Json(Bytes::from(
                json!({"object": "list", "data": data}).to_string(),
            )),
            None,
        ));
    }
    let body = validate(shared, bytes)?;
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    record.stream = stream;
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let script = Script::parse(&trigger_text(&body));
    let scenario = script.label();
    if let Some(e) = script.error.clone() {
        return Err(e);
    }
    if script.midstream && !stream {
        return Err(ApiError::server(500));
    }
    let reply = Reply::build(&script, &body, record.seq);
    if stream {
        let (chunks, error) = reply.chunks(include_usage, script.midstream);
        Ok((
            Answer::Stream {
                chunks,
                slow_ms: script.slow_ms,
                error,
            },
            scenario,
        ))
    } else {
        Ok((Answer::Json(reply.completion()), scenario))
    }
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    if shared.config.api_keys.is_empty() {
        return Ok(());
    }
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = bearer else {
        return Err(ApiError::new(
            401,
            "invalid_request_error",
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        ));
    };
    if shared.config.api_keys.contains(key) {
        return Ok(());
    }
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ApiError::new(
        401,
        "invalid_request_error",
        format!("Incorrect API key provided: sk-...{tail}. You can find your API key at https://platform.openai.com/account/api-keys."),
    )
    .code("invalid_api_key"))
}

/// The JSON type name OpenAI's messages use.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid_type(path: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(format!(
        "Invalid type for '{path}': expected {expected}, but got {} instead.",
        match type_name(got) {
            "integer" => "an integer",
            "array" => "an array",
            "object" => "an object",
            other => match other {
                "null" => "null",
                "boolean" => "a boolean",
                "number" => "a decimal",
                _ => "a string",
            },
        }
    ))
    .param(path)
    .code("invalid_type")
}

fn invalid_value(path: &str, message: String) -> ApiError {
    ApiError::invalid(message).param(path).code("invalid_value")
}

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Validates the body like the API; returns it parsed.
fn validate(shared: &Shared, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(ApiError::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "Unrecognized request argument supplied: {unknown}"
        )));
    }
    let model = match body.get("model") {
        None => return Err(ApiError::invalid("you must provide a model parameter")),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Err(invalid_type("model", "a string", other)),
    };
    if !shared.config.models.contains(model) {
        return Err(ApiError::new(
            404,
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .code("model_not_found"));
    }
    let messages = match body.get("messages") {
        None => {
            return Err(ApiError::invalid("Missing required parameter: 'messages'.")
                .param("messages")
                .code("missing_required_parameter"));
        }
        Some(Value::Array(m)) => m,
        Some(other) => return Err(invalid_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        )
        .param("messages")
        .code("empty_array"));
    }
    validate_messages(messages)?;
    let tools = match body.get("tools") {
        None => None,
        Some(Value::Array(t)) => Some(t),
        Some(other) => return Err(invalid_type("tools", "an array", other)),
    };
    if let Some(tools) = tools {
        validate_tools(tools)?;
    }
    for key in ["tool_choice", "parallel_tool_calls"] {
        if body.contains_key(key) && tools.is_none_or(|t| t.is_empty()) {
            return Err(ApiError::invalid(format!(
                "Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified."
            ))
            .param(key));
        }
    }
    for key in ["max_tokens", "max_completion_tokens", "n"] {
        if let Some(v) = body.get(key)
            && !v.is_null()
            && v.as_u64().is_none()
        {
            return Err(invalid_type(key, "an integer", v));
        }
    }
    if body.contains_key("max_tokens") && body.contains_key("max_completion_tokens") {
        return Err(ApiError::invalid(
            "max_tokens and max_completion_tokens cannot both be set. Use max_completion_tokens.",
        )
        .param("max_tokens")
        .code("invalid_value"));
    }
    if body.contains_key("max_tokens") && shared.config.reasoning_models.contains(model) {
        return Err(ApiError::invalid(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        )
        .param("max_tokens")
        .code("unsupported_parameter"));
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(invalid_type("stream", "a boolean", other)),
    };
    if let Some(options) = body.get("stream_options").filter(|o| !o.is_null()) {
        if !stream {
            return Err(ApiError::invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            )
            .param("stream_options"));
        }
        let Some(obj) = options.as_object() else {
            return Err(invalid_type("stream_options", "an object", options));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| *k != "include_usage" && *k != "include_obfuscation")
        {
            return Err(ApiError::invalid(format!(
                "Unrecognized request argument supplied: stream_options.{k}"
            )));
        }
    }
    for (key, max) in [("temperature", 2.0), ("top_p", 1.0)] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            let Some(x) = v.as_f64() else {
                return Err(invalid_type(key, "a decimal", v));
            };
            if !(0.0..=max).contains(&x) {
                return Err(ApiError::invalid(format!(
                    "Invalid '{key}': decimal above maximum value. Expected a value <= {max}, but got {x} instead."
                ))
                .param(key)
                .code("decimal_above_max_value"));
            }
        }
    }
    match body.get("stop") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(stops)) => {
            if stops.len() > 4 {
                return Err(ApiError::invalid(format!(
                    "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {} instead.",
                    stops.len()
                ))
                .param("stop")
                .code("array_above_max_length"));
            }
            if let Some((i, s)) = stops.iter().enumerate().find(|(_, s)| !s.is_string()) {
                return Err(invalid_type(&format!("stop[{i}]"), "a string", s));
            }
        }
        Some(other) => return Err(invalid_type("stop", "a string or an array", other)),
    }
    if let Some(user) = body.get("user") {
        let Some(u) = user.as_str() else {
            return Err(invalid_type("user", "a string", user));
        };
        let n = u.chars().count();
        if n > 64 {
            return Err(ApiError::invalid(format!(
                "Invalid 'user': string too long. Expected a string with maximum length 64, but got a string with length {n} instead."
            ))
            .param("user")
            .code("string_above_max_length"));
        }
    }
    Ok(body)
}

/// Checks `content` of a message with `role` at `path`: a string, or an array of the parts the
/// role takes (`null` only for an assistant calling tools).
fn validate_content(
    role: &str,
    content: Option<&Value>,
    has_tool_calls: bool,
    path: &str,
) -> Result<(), ApiError> {
    let path = format!("{path}.content");
    let parts: &[&str] = match role {
        "user" => &["text", "image_url", "input_audio", "file"],
        "assistant" => &["text", "refusal"],
        _ => &["text"],
    };
    match content {
        None | Some(Value::Null) if role == "assistant" && has_tool_calls => Ok(()),
        None => Err(
            ApiError::invalid(format!("Missing required parameter: '{path}'."))
                .param(path)
                .code("missing_required_parameter"),
        ),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) => {
            for (j, part) in items.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                let Some(obj) = part.as_object() else {
                    return Err(invalid_type(&ppath, "an object", part));
                };
                let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
                if !parts.contains(&kind) {
                    return Err(invalid_value(
                        &format!("{ppath}.type"),
                        format!(
                            "Invalid value: '{kind}'. Supported values are: {}.",
                            parts
                                .iter()
                                .map(|p| format!("'{p}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                let member = match kind {
                    "text" => ("text", "a string"),
                    "refusal" => ("refusal", "a string"),
                    "image_url" => ("image_url", "an object"),
                    "input_audio" => ("input_audio", "an object"),
                    _ => ("file", "an object"),
                };
                let value = obj.get(member.0).unwrap_or(&Value::Null);
                let ok = if member.1 == "a string" {
                    value.is_string()
                } else {
                    value.is_object()
                };
                if !ok {
                    return Err(invalid_type(
                        &format!("{ppath}.{}", member.0),
                        member.1,
                        value,
                    ));
                }
                if kind == "image_url"
                    && !value.get("url").and_then(Value::as_str).is_some_and(|u| {
                        u.starts_with("https://")
                            || u.starts_with("http://")
                            || u.starts_with("data:image/")
                    })
                {
                    return Err(invalid_value(
                        &format!("{ppath}.image_url.url"),
                        "Invalid image URL: expected an http(s) URL or a base64 data URL."
                            .to_owned(),
                    ));
                }
            }
            Ok(())
        }
        Some(other) => Err(invalid_type(&path, "a string or an array", other)),
    }
}

fn validate_messages(messages: &[Value]) -> Result<(), ApiError> {
    // Ids of the last assistant `tool_calls` not answered yet, with that message's index.
    let mut pending: Option<(usize, Vec<String>)> = None;
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let Some(obj) = message.as_object() else {
            return Err(invalid_type(&path, "an object", message));
        };
        let role = match obj.get("role") {
            Some(Value::String(r)) => r.as_str(),
            None => {
                return Err(ApiError::invalid(format!(
                    "Missing required parameter: '{path}.role'."
                ))
                .param(format!("{path}.role"))
                .code("missing_required_parameter"));
            }
            Some(other) => return Err(invalid_type(&format!("{path}.role"), "a string", other)),
        };
        if !ROLES.contains(&role) {
            return Err(invalid_value(
                &format!("{path}.role"),
                format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ),
            ));
        }
        if role != "tool"
            && let Some((at, ids)) = pending.take()
            && !ids.is_empty()
        {
            return Err(ApiError::invalid(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                ids.join(", ")
            ))
            .param(format!("messages.[{at}].role")));
        }
        let tool_calls = match obj.get("tool_calls") {
            None | Some(Value::Null) => None,
            Some(Value::Array(calls)) if role == "assistant" => Some(calls),
            Some(other) if role == "assistant" => {
                return Err(invalid_type(
                    &format!("{path}.tool_calls"),
                    "an array",
                    other,
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "Unrecognized request argument supplied: {path}.tool_calls"
                )));
            }
        };
        validate_content(
            role,
            obj.get("content"),
            tool_calls.is_some_and(|c| !c.is_empty()),
            &path,
        )?;
        match role {
            "assistant" => {
                let Some(calls) = tool_calls else { continue };
                let mut ids = Vec::with_capacity(calls.len());
                for (j, call) in calls.iter().enumerate() {
                    ids.push(validate_tool_call(
                        call,
                        &format!("{path}.tool_calls[{j}]"),
                    )?);
                }
                if !ids.is_empty() {
                    pending = Some((i, ids));
                }
            }
            "tool" => {
                let id = match obj.get("tool_call_id") {
                    Some(Value::String(id)) => id.as_str(),
                    None => {
                        return Err(ApiError::invalid(format!(
                            "Missing required parameter: '{path}.tool_call_id'."
                        ))
                        .param(format!("{path}.tool_call_id"))
                        .code("missing_required_parameter"));
                    }
                    Some(other) => {
                        return Err(invalid_type(
                            &format!("{path}.tool_call_id"),
                            "a string",
                            other,
                        ));
                    }
                };
                let Some((_, ids)) = pending.as_mut() else {
                    return Err(ApiError::invalid(TOOL_WITHOUT_CALL_MESSAGE)
                        .param(format!("messages.[{i}].role")));
                };
                let Some(k) = ids.iter().position(|p| p == id) else {
                    return Err(ApiError::invalid(format!(
                        "Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message."
                    ))
                    .param(format!("messages.[{i}].tool_call_id")));
                };
                ids.remove(k);
            }
            _ => {}
        }
    }
    if let Some((at, ids)) = pending
        && !ids.is_empty()
    {
        return Err(ApiError::invalid(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            ids.join(", ")
        ))
        .param(format!("messages.[{at}].role")));
    }
    Ok(())
}

/// Checks one assistant `tool_calls` entry; returns its id.
fn validate_tool_call(call: &Value, path: &str) -> Result<String, ApiError> {
    let Some(obj) = call.as_object() else {
        return Err(invalid_type(path, "an object", call));
    };
    let id = match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::String(_)) | None => {
            return Err(
                ApiError::invalid(format!("Missing required parameter: '{path}.id'."))
                    .param(format!("{path}.id"))
                    .code("missing_required_parameter"),
            );
        }
        Some(other) => return Err(invalid_type(&format!("{path}.id"), "a string", other)),
    };
    if obj.get("type").and_then(Value::as_str) != Some("function") {
        return Err(invalid_value(
            &format!("{path}.type"),
            "Invalid value. Supported values are: 'function'.".to_owned(),
        ));
    }
    let Some(function) = obj.get("function").and_then(Value::as_object) else {
        return Err(invalid_type(
            &format!("{path}.function"),
            "an object",
            obj.get("function").unwrap_or(&Value::Null),
        ));
    };
    for member in ["name", "arguments"] {
        match function.get(member) {
            Some(Value::String(_)) => {}
            other => {
                return Err(invalid_type(
                    &format!("{path}.function.{member}"),
                    "a string",
                    other.unwrap_or(&Value::Null),
                ));
            }
        }
    }
    Ok(id)
}

/// Whether `name` matches `^[a-zA-Z0-9_-]{1,64}$`.
fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_tools(tools: &[Value]) -> Result<(), ApiError> {
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let Some(obj) = tool.as_object() else {
            return Err(invalid_type(&path, "an object", tool));
        };
        if obj.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid_value(
                &format!("{path}.type"),
                "Invalid value. Supported values are: 'function' and 'custom'.".to_owned(),
            ));
        }
        if let Some(k) = obj.keys().find(|k| *k != "type" && *k != "function") {
            return Err(ApiError::invalid(format!(
                "Unrecognized request argument supplied: {path}.{k}"
            )));
        }
        let Some(function) = obj.get("function").and_then(Value::as_object) else {
            return Err(ApiError::invalid(format!(
                "Missing required parameter: '{path}.function'."
            ))
            .param(format!("{path}.function"))
            .code("missing_required_parameter"));
        };
        if let Some(k) = function
            .keys()
            .find(|k| !["name", "description", "parameters", "strict"].contains(&k.as_str()))
        {
            return Err(ApiError::invalid(format!(
                "Unrecognized request argument supplied: {path}.function.{k}"
            )));
        }
        let name_path = format!("{path}.function.name");
        let name = match function.get("name") {
            Some(Value::String(n)) => n,
            Some(other) => return Err(invalid_type(&name_path, "a string", other)),
            None => {
                return Err(ApiError::invalid(format!(
                    "Missing required parameter: '{name_path}'."
                ))
                .param(name_path)
                .code("missing_required_parameter"));
            }
        };
        if name.len() > 64 {
            return Err(ApiError::invalid(format!(
                "Invalid '{name_path}': string too long. Expected a string with maximum length 64, but got a string with length {} instead.",
                name.len()
            ))
            .param(name_path)
            .code("string_above_max_length"));
        }
        if !valid_function_name(name) {
            return Err(ApiError::invalid(format!(
                "Invalid '{name_path}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            ))
            .param(name_path)
            .code("invalid_value"));
        }
        if let Some(p) = function.get("parameters")
            && !p.is_object()
        {
            return Err(invalid_type(
                &format!("{path}.function.parameters"),
                "an object",
                p,
            ));
        }
    }
    Ok(())
}

/// The text of the last message when it is a user message (triggers), `system` and
/// `developer` messages after it aside (Claude Code puts its environment in a system message
/// after the prompt); empty otherwise (after tool results the double answers text).
fn trigger_text(body: &Map<String, Value>) -> String {
    let Some(last) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m["role"] != "system" && m["role"] != "developer")
        })
    else {
        return String::new();
    };
    if last["role"] != "user" {
        return String::new();
    }
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Deterministic: characters of every message's text / 4 + 1.
fn prompt_tokens(body: &Map<String, Value>) -> u64 {
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.chars().count(),
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(o) => ["text", "content", "arguments"]
                .iter()
                .filter_map(|k| o.get(*k))
                .map(chars)
                .sum(),
            _ => 0,
        }
    }
    let n: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |m| m.iter().map(|m| chars(&m["content"])).sum());
    (n / 4 + 1) as u64
}

/// Arguments that fit a JSON schema: every required property, by type.
fn arguments_for(schema: Option<&Value>) -> Value {
    let mut args = Map::new();
    let Some(schema) = schema else {
        return Value::Object(args);
    };
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    for name in required.iter().filter_map(Value::as_str) {
        let prop = &schema["properties"][name];
        let value = if let Some(first) = prop["enum"].as_array().and_then(|e| e.first()) {
            first.clone()
        } else {
            match prop["type"].as_str() {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(false),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!("x"),
            }
        };
        args.insert(name.to_owned(), value);
    }
    Value::Object(args)
}

/// One tool call of a reply.
#[derive(Debug, Clone)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// A reply to a valid request.
struct Reply {
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    /// Text words (empty for tool calls).
    words: Vec<String>,
    calls: Vec<ToolCall>,
    finish_reason: &'static str,
    completion_tokens: u64,
}

impl Reply {
    fn build(script: &Script, body: &Map<String, Value>, seq: u64) -> Reply {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!("openai:{seq}:{}", nanos.as_nanos());
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let prompt_tokens = prompt_tokens(body);
        let mut reply = Reply {
            id: format!("chatcmpl-{}", alnum_id(&seed, 29)),
            model,
            created: nanos.as_secs(),
            prompt_tokens,
            cached_tokens: if script.cached { prompt_tokens / 2 } else { 0 },
            words: Vec::new(),
            calls: Vec::new(),
            finish_reason: "stop",
            completion_tokens: 0,
        };
        if script.tool
            && let Some(call) = Self::tool_call(script, body)
        {
            let count = if script.parallel { 2 } else { 1 };
            for k in 0..count {
                reply.calls.push(ToolCall {
                    id: format!("call_{}", alnum_id(&format!("{seed}:{k}"), 24)),
                    ..call.clone()
                });
            }
            reply.finish_reason = "tool_calls";
            reply.completion_tokens = 12 * count;
            return reply;
        }
        // The output limit is honoured at 4 characters a token.
        let limit = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let mut used = 0u64;
        for (i, w) in DEFAULT_REPLY.split(' ').enumerate() {
            let piece = if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            };
            let cost = (piece.len() as u64).div_ceil(4);
            if used + cost > limit {
                reply.finish_reason = "length";
                break;
            }
            used += cost;
            reply.words.push(piece);
        }
        reply.completion_tokens = used.max(1);
        reply
    }

    /// The call `[double:tool…]` makes: `None` when no tool fits (none offered).
    fn tool_call(script: &Script, body: &Map<String, Value>) -> Option<ToolCall> {
        let tools: Vec<&Value> = body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("function"))
            .collect();
        let find = |name: &str| tools.iter().find(|f| f["name"] == name).copied();
        let (function, arguments) = if let Some(path) = &script.read {
            (find("Read")?, json!({ "file_path": path }))
        } else if let Some(cmd) = &script.bash {
            (
                find("Bash")?,
                json!({ "command": cmd, "description": "Run the command the user asked for" }),
            )
        } else {
            let function = match &script.tool_name {
                Some(name) => find(name)?,
                None => *tools.first()?,
            };
            let arguments = match function["name"].as_str() {
                Some("Read") => json!({ "file_path": "/tmp/x" }),
                Some("Bash") => json!({ "command": "echo hello", "description": "Print hello" }),
                _ => arguments_for(function.get("parameters")),
            };
            (function, arguments)
        };
        Some(ToolCall {
            id: String::new(),
            name: function["name"].as_str().unwrap_or_default().to_owned(),
            arguments: arguments.to_string(),
        })
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
            },
        })
    }

    fn completion(&self) -> Bytes {
        let content = if self.calls.is_empty() {
            Value::String(self.words.concat())
        } else {
            Value::Null
        };
        let mut message = json!({
            "role": "assistant",
            "content": content,
            "refusal": null,
            "annotations": [],
        });
        if !self.calls.is_empty() {
            message["tool_calls"] = Value::Array(
                self.calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect(),
            );
        }
        Bytes::from(
            json!({
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": self.finish_reason,
                }],
                "usage": self.usage(),
                "service_tier": "default",
                "system_fingerprint": "fp_d0ub1e",
            })
            .to_string(),
        )
    }

    /// The SSE chunks, one body chunk each, and the error chunk a midstream failure ends with.
    fn chunks(&self, include_usage: bool, midstream: bool) -> (Vec<Bytes>, Option<ApiError>) {
        let chunk = |delta: Value, finish: Option<&str>| {
            let mut c = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_d0ub1e",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            Bytes::from(format!("data: {c}\n\n"))
        };
        let mut out = Vec::new();
        if self.calls.is_empty() {
            out.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for (i, w) in self.words.iter().enumerate() {
                out.push(chunk(json!({"content": w}), None));
                if i == 0 && midstream {
                    let e = ApiError::server(500);
                    out.push(Bytes::from(format!("data: {}\n\n", e.value())));
                    return (out, Some(e));
                }
            }
        } else {
            for (index, call) in self.calls.iter().enumerate() {
                let mut first = json!({"tool_calls": [{
                    "index": index, "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }]});
                if index == 0 {
                    first["role"] = json!("assistant");
                    first["content"] = Value::Null;
                    first["refusal"] = Value::Null;
                }
                out.push(chunk(first, None));
                for piece in thirds(&call.arguments) {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                        None,
                    ));
                }
            }
        }
        out.push(chunk(json!({}), Some(self.finish_reason)));
        if include_usage {
            let c = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_d0ub1e",
                "choices": [],
                "usage": self.usage(),
            });
            out.push(Bytes::from(format!("data: {c}\n\n")));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        (out, None)
    }
}

/// `s` in three pieces cut at character boundaries (some may be empty).
fn thirds(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let (a, b) = (n / 3, 2 * n / 3);
    vec![
        chars[..a].iter().collect(),
        chars[a..b].iter().collect(),
        chars[b..].iter().collect(),
    ]
}

async fn finish(
    shared: &Arc<Shared>,
    mut record: OpenAiRequest,
    result: Result<(Answer, Option<String>), ApiError>,
) -> Response {
    let request_id = format!("req_{}", alnum_id(&format!("rid:{}", record.seq), 32));
    let response = match result {
        Err(err) => {
            let body = err.body();
            record.verdict = OpenAiVerdict {
                status: err.status,
                error_type: Some(err.error_type.to_owned()),
                code: err.code.map(str::to_owned),
                message: Some(err.message.clone()),
                scenario: record.verdict.scenario.take(),
            };
            record.response_body = body.clone();
            let mut response = plain(err.status, body, &request_id);
            insert_headers(response.headers_mut(), &err.headers);
            response
        }
        Ok((answer, scenario)) => {
            record.verdict.scenario = scenario;
            record.verdict.status = 200;
            match answer {
                Answer::Json(body) => {
                    record.response_body = body.clone();
                    plain(200, body, &request_id)
                }
                Answer::Stream {
                    chunks,
                    slow_ms,
                    error,
                } => {
                    if let Some(e) = error {
                        record.verdict.error_type = Some(e.error_type.to_owned());
                        record.verdict.code = e.code.map(str::to_owned);
                        record.verdict.message = Some(e.message);
                    }
                    record.response_body = Bytes::from(chunks.concat());
                    sse_response(
                        chunks,
                        slow_ms,
                        shared.shutdown.clone(),
                        &[("x-request-id", &request_id)],
                    )
                }
            }
        }
    };
    lock(&shared.requests).push(record);
    response
}

/// A whole answer with OpenAI's headers.
fn plain(status: u16, body: Bytes, request_id: &str) -> Response {
    response(
        status,
        "application/json",
        body,
        &[
            ("x-request-id", request_id),
            ("openai-organization", "org-double"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        let (_tx, rx) = watch::channel(false);
        Shared {
            config: OpenAiDoubleConfig::default(),
            requests: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            shutdown: rx,
        }
    }

    fn check(body: Value) -> Result<Map<String, Value>, ApiError> {
        validate(&shared(), body.to_string().as_bytes())
    }

    #[test]
    fn triggers_parse() {
        let s = Script::parse("x [double:rate-limit] [double:slow:20] [double:read:/a/b]");
        assert_eq!(s.error.as_ref().map(|e| e.status), Some(429));
        assert_eq!(s.slow_ms, Some(20));
        assert_eq!(s.read.as_deref(), Some("/a/b"));
        assert!(s.tool);
        assert_eq!(Script::parse("plain"), Script::default());
        let e = Script::parse("[double:status:503]").error.expect("error");
        assert_eq!((e.status, e.error_type), (503, "service_unavailable"));
    }

    #[test]
    fn a_tool_message_must_answer_the_preceding_tool_calls() {
        let call = json!({"id": "call_1", "type": "function",
                          "function": {"name": "Read", "arguments": "{}"}});
        let ok = check(json!({"model": "gpt-4.1", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ]}));
        assert!(ok.is_ok(), "{ok:?}");
        let orphan = check(json!({"model": "gpt-4.1", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ]}))
        .expect_err("orphan tool message");
        assert_eq!(orphan.message, TOOL_WITHOUT_CALL_MESSAGE);
        let unanswered = check(json!({"model": "gpt-4.1", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "user", "content": "and?"},
        ]}))
        .expect_err("unanswered call");
        assert!(unanswered.message.contains("call_1"), "{unanswered:?}");
    }

    #[test]
    fn bodies_are_refused_as_openai_refuses_them() {
        let base = || json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]});
        let mut extra = base();
        extra["thinking"] = json!({"type": "enabled"});
        assert_eq!(
            check(extra).expect_err("unknown").message,
            "Unrecognized request argument supplied: thinking"
        );
        let mut model = base();
        model["model"] = json!("openai/gpt-4.1");
        let e = check(model).expect_err("model");
        assert_eq!((e.status, e.code), (404, Some("model_not_found")));
        let mut both = base();
        both["max_tokens"] = json!(5);
        both["max_completion_tokens"] = json!(5);
        assert!(check(both).is_err());
        let mut options = base();
        options["stream_options"] = json!({"include_usage": true});
        assert!(check(options).is_err());
        let mut tools = base();
        tools["tools"] = json!([{"type": "function", "function": {"name": "bad name"}}]);
        assert!(check(tools).is_err());
        let mut reasoning = base();
        reasoning["model"] = json!("o4-mini");
        reasoning["max_tokens"] = json!(5);
        assert_eq!(
            check(reasoning).expect_err("reasoning").code,
            Some("unsupported_parameter")
        );
        assert!(check(json!({"model": "gpt-4.1", "messages": []})).is_err());
        assert!(
            check(json!({"model": "gpt-4.1", "messages": [{"role": "robot", "content": "x"}]}))
                .is_err()
        );
    }

    #[test]
    fn tool_arguments_fit_the_schema() {
        let schema = json!({"type": "object", "required": ["pattern", "limit", "mode"],
            "properties": {"pattern": {"type": "string"}, "limit": {"type": "integer"},
                           "mode": {"type": "string", "enum": ["a", "b"]}}});
        assert_eq!(
            arguments_for(Some(&schema)),
            json!({"pattern": "x", "limit": 1, "mode": "a"})
        );
        assert_eq!(thirds("abcdef").concat(), "abcdef");
    }
}
