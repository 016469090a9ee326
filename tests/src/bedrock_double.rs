//! A loopback double of AWS bedrock-runtime, as strict as the real service: Anthropic models
//! through InvokeModel (and Converse), the other models (Llama, Mistral, Nova, DeepSeek) only
//! through Converse.
//!
//! * Every request must carry a valid SigV4 signature (checked by the independent
//!   [`crate::sigv4`] verifier) or a configured Bedrock API key (`Authorization: Bearer`).
//! * Operations: `POST /model/{modelId}/invoke`, `/invoke-with-response-stream`, `/count-tokens`,
//!   `/converse`, `/converse-stream`. The model id is one *raw* path segment, percent-decoded
//!   (ARNs arrive with `%3A`/`%2F`), and validated like Bedrock's `InvokeModelIdentifier`; the
//!   models that exist are Anthropic's Claude models and
//!   [`validate::converse::CONVERSE_MODELS`]. InvokeModel with an Anthropic body on one of the
//!   latter is a `ValidationException` (the body is not that model's native schema), and so is
//!   CountTokens (Bedrock counts tokens for Claude only).
//! * Converse bodies are validated like Bedrock does ([`validate::converse`]: roles, block shapes,
//!   tool use and results, `toolConfig`, `maxTokens`, `cachePoint` only on models with prompt
//!   caching, unknown members refused).
//! * Bodies are validated like Bedrock validates Anthropic bodies (allow-listed top-level
//!   fields, `anthropic_version`, supported betas, required fields, 20 MB limit), and per model
//!   ([`validate::model_body`]: betas per model, `cache_control.ttl` only on Claude 4.5+,
//!   fields that need their beta).
//! * Streaming answers are real AWS event-stream frames from [`crate::eventstream`] (`chunk`
//!   events for InvokeModel, `messageStart` … `metadata` for ConverseStream), sent one frame per
//!   body chunk through a channel (so the gateway sees them as they are produced).
//! * Errors look like Bedrock's: JSON `{"message": …}`, header
//!   `x-amzn-ErrorType: <Name>:http://internal.amazon.com/coral/<namespace>/`, `x-amzn-RequestId`.
//! * Behaviour is scripted by `[double:…]` triggers in the last user message (table in [`script`]).
//! * Every Bedrock request is recorded: [`BedrockDouble::requests`] in-process,
//!   `GET /_double/requests` over HTTP (`DELETE` clears).
//!
//! The server runs on its own thread and Tokio runtime, so it keeps answering while a test
//! blocks, and works from synchronous and asynchronous tests alike.

pub mod script;
pub mod validate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::double_http::{first_header, header_pairs, insert_header, lock, path_and_query};
use crate::eventstream;
use crate::serve::{Bound, Running};
use crate::sigv4::{self, Credentials};
use script::{Reply, Script};
use validate::ModelRef;

/// Namespace of service-level errors in `x-amzn-ErrorType`.
pub const BEDROCK_ERROR_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.bedrock/";
/// Namespace of authentication-layer errors in `x-amzn-ErrorType`.
pub const AUTH_ERROR_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.coral.service/";
/// The event-stream media type.
pub const EVENTSTREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";
/// Default size of the request log (bounded so a long benchmark cannot exhaust memory).
pub const DEFAULT_MAX_RECORDED: usize = 10_000;
/// Bodies larger than this are not even read (413); up to it they are read and validated.
const READ_LIMIT: usize = 32 * 1024 * 1024;

/// Configuration of a [`BedrockDouble`].
#[derive(Debug, Clone, Default)]
pub struct BedrockDoubleConfig {
    /// Access key id → credentials (secret and optional session token).
    pub credentials: HashMap<String, Credentials>,
    /// Bedrock API keys accepted as `Authorization: Bearer <key>`.
    pub api_keys: HashSet<String>,
    /// When set, a signature scoped to another region is rejected like AWS does.
    pub region: Option<String>,
    /// A fixed clock for the five-minute signature window (replaying recorded vectors).
    pub clock: Option<OffsetDateTime>,
    /// How many requests the log keeps (oldest dropped first); `None` = [`DEFAULT_MAX_RECORDED`].
    pub max_recorded: Option<usize>,
    /// Worker threads of the double's runtime; `None` = 2 (plenty for tests; raise for benchmarks).
    pub worker_threads: Option<usize>,
}

impl BedrockDoubleConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a long-term key.
    #[must_use]
    pub fn with_key(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.credentials.insert(
            access_key_id.to_owned(),
            Credentials::new(access_key_id, secret_access_key),
        );
        self
    }

    /// Adds a temporary key that must present `session_token` as `x-amz-security-token`.
    #[must_use]
    pub fn with_temporary_key(
        mut self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: &str,
    ) -> Self {
        self.credentials.insert(
            access_key_id.to_owned(),
            Credentials::new(access_key_id, secret_access_key).with_session_token(session_token),
        );
        self
    }

    #[must_use]
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_keys.insert(key.to_owned());
        self
    }

    #[must_use]
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    #[must_use]
    pub fn with_clock(mut self, now: OffsetDateTime) -> Self {
        self.clock = Some(now);
        self
    }

    #[must_use]
    pub fn with_max_recorded(mut self, max: usize) -> Self {
        self.max_recorded = Some(max);
        self
    }

    #[must_use]
    pub fn with_worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = Some(threads.max(1));
        self
    }
}

/// One request the double received, with the answer it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub seq: u64,
    pub method: String,
    /// Path and query exactly as received (`/model/us.anthropic…-v1%3A0/invoke`).
    pub path: String,
    /// Lowercase header names with their values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, if it was JSON.
    pub body: Option<Value>,
    pub body_len: usize,
    /// `InvokeModel`, `InvokeModelWithResponseStream`, `CountTokens`, `Converse` or
    /// `ConverseStream`, when the path routed.
    pub operation: Option<String>,
    /// The percent-decoded model id, when the path routed.
    pub model_id: Option<String>,
    /// Access key id (SigV4) or `bearer` (API key), once authenticated.
    pub access_key_id: Option<String>,
    /// Region of the credential scope, once authenticated.
    pub region: Option<String>,
    /// For CountTokens: the decoded InvokeModel body inside the envelope.
    pub count_tokens_body: Option<Value>,
    pub verdict: Verdict,
}

/// What the double answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// HTTP status (0 for `[double:hang]`, which never answers).
    pub status: u16,
    /// AWS exception name for errors (`InvalidSignatureException`, …) or a stream exception member.
    pub error_type: Option<String>,
    pub message: Option<String>,
    /// Scripted behaviour that applied (`tool`, `midstream:throttlingException`, …).
    pub scenario: Option<String>,
}

impl RecordedRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

/// A running double. Dropping it stops the server.
pub struct BedrockDouble {
    server: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BedrockDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug(f, "BedrockDouble")
    }
}

struct Shared {
    credentials: RwLock<HashMap<String, Credentials>>,
    api_keys: RwLock<HashSet<String>>,
    region: Option<String>,
    clock: RwLock<Option<OffsetDateTime>>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    max_recorded: usize,
    seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// A fault trigger applied to every request (`set_fault`), after authentication and
    /// validation, as if its `[double:…]` trigger were in the body.
    fault: RwLock<Option<String>>,
}

impl Shared {
    fn record(&self, record: RecordedRequest) {
        let mut log = lock(&self.requests);
        if self.max_recorded == 0 {
            return;
        }
        while log.len() >= self.max_recorded {
            log.pop_front();
        }
        log.push_back(record);
    }
}

impl BedrockDouble {
    /// Starts the double on `127.0.0.1:0`.
    pub fn start(config: BedrockDoubleConfig) -> std::io::Result<BedrockDouble> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts the double on `addr` (the standalone binary uses this).
    pub fn start_on(
        config: BedrockDoubleConfig,
        addr: SocketAddr,
    ) -> std::io::Result<BedrockDouble> {
        let bound = Bound::bind(addr)?;
        let shared = Arc::new(Shared {
            credentials: RwLock::new(config.credentials),
            api_keys: RwLock::new(config.api_keys),
            region: config.region,
            clock: RwLock::new(config.clock),
            requests: Mutex::new(VecDeque::new()),
            max_recorded: config.max_recorded.unwrap_or(DEFAULT_MAX_RECORDED),
            seq: AtomicU64::new(0),
            shutdown: bound.stop_signal(),
            fault: RwLock::new(None),
        });
        let server = bound.serve(
            "bedrock-double",
            config.worker_threads.unwrap_or(2),
            handle,
            Arc::clone(&shared),
        )?;
        Ok(BedrockDouble { server, shared })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every Bedrock request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    /// Fails every request from now on (after authentication and validation, like a real
    /// outage) as the `[double:<fault>]` trigger would, e.g. `throttle` or `unavailable`;
    /// `None` heals it.
    pub fn set_fault(&self, fault: Option<&str>) {
        *self
            .shared
            .fault
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fault.map(str::to_owned);
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Adds or replaces credentials (e.g. to rotate keys mid-test).
    pub fn set_credentials(&self, credentials: Credentials) {
        self.shared
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(credentials.access_key_id.clone(), credentials);
    }

    /// Removes an access key; later requests signed with it get `UnrecognizedClientException`.
    pub fn remove_credentials(&self, access_key_id: &str) {
        self.shared
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(access_key_id);
    }

    /// Sets (or with `None` clears) the fixed clock used for the signature window.
    pub fn set_clock(&self, now: Option<OffsetDateTime>) {
        *self
            .shared
            .clock
            .write()
            .unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Stops the server; hanging and streaming responses end at once.
    pub fn shutdown(self) {
        drop(self);
    }
}

/// A Bedrock-shaped error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
    pub namespace: &'static str,
}

impl ApiError {
    pub fn new(status: u16, error_type: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type: error_type.to_owned(),
            message: message.into(),
            namespace: BEDROCK_ERROR_NAMESPACE,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    fn auth(err: &sigv4::SigError) -> Self {
        ApiError {
            status: err.status(),
            error_type: err.error_type().to_owned(),
            message: err.to_string(),
            namespace: AUTH_ERROR_NAMESPACE,
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(json!({ "message": self.message }))).into_response();
        let headers = response.headers_mut();
        insert_header(
            headers,
            "x-amzn-errortype",
            &format!("{}:{}", self.error_type, self.namespace),
        );
        insert_header(headers, "x-amzn-requestid", request_id);
        response
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Invoke,
    InvokeStream,
    CountTokens,
    Converse,
    ConverseStream,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Invoke => "InvokeModel",
            Operation::InvokeStream => "InvokeModelWithResponseStream",
            Operation::CountTokens => "CountTokens",
            Operation::Converse => "Converse",
            Operation::ConverseStream => "ConverseStream",
        }
    }

    fn is_converse(self) -> bool {
        matches!(self, Operation::Converse | Operation::ConverseStream)
    }
}

/// How to answer a request that passed all checks.
enum Answer {
    Json {
        body: Value,
        headers: Vec<(&'static str, String)>,
    },
    Stream {
        reply: Box<Reply>,
        script: Script,
        /// ConverseStream events rather than InvokeModel chunks.
        converse: bool,
    },
    TruncatedJson {
        body: Value,
    },
    Hang,
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = path_and_query(&parts.uri);
    if parts.uri.path().starts_with("/_double/") {
        return control(&shared, &parts.method, parts.uri.path());
    }

    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = request_id(seq);
    let mut headers = parts.headers.clone();
    if !headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        // HTTP/2 carries the host as :authority; SigV4 signs it as `host`.
        headers.insert(http::header::HOST, v);
    }
    let mut record = RecordedRequest {
        seq,
        method: parts.method.to_string(),
        path: path.clone(),
        headers: header_pairs(&parts.headers).collect(),
        body: None,
        body_len: 0,
        operation: None,
        model_id: None,
        access_key_id: None,
        region: None,
        count_tokens_body: None,
        verdict: Verdict {
            status: 0,
            error_type: None,
            message: None,
            scenario: None,
        },
    };

    let bytes = match axum::body::to_bytes(body, READ_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            let err = ApiError::new(413, "ValidationException", "Request entity too large.");
            return finish(&shared, record, Err(err), &request_id, started).await;
        }
    };
    record.body_len = bytes.len();
    record.body = serde_json::from_slice(&bytes).ok();

    let result = process(&shared, &parts.method, &path, &headers, &bytes, &mut record).await;
    finish(&shared, record, result, &request_id, started).await
}

/// Authenticates, routes and validates; fills the record as it learns things.
async fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    bytes: &Bytes,
    record: &mut RecordedRequest,
) -> Result<(Answer, Option<String>), ApiError> {
    authenticate(shared, method, path, headers, bytes, record)?;

    let (operation, model) = route(method, path)?;
    record.operation = Some(operation.name().to_owned());
    record.model_id = Some(model.id.clone());

    validate::content_type(
        headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    let (body, script) = match operation {
        Operation::CountTokens => {
            validate::count_tokens_model(&model)?;
            let inner = validate::count_tokens_body(bytes, &model)?;
            if let Value::Object(map) = &inner {
                validate::model_body(map, &model)?;
            }
            record.count_tokens_body = Some(inner.clone());
            let script = Script::parse(&script::trigger_text(&inner));
            (inner, script)
        }
        Operation::Converse | Operation::ConverseStream => {
            if operation == Operation::Converse {
                accept_is_json(headers.get(http::header::ACCEPT))?;
            } else {
                accept_is_event_stream(headers.get(http::header::ACCEPT))?;
            }
            let caps = validate::converse::capabilities(&model);
            let body = Value::Object(validate::converse::body(bytes, &caps)?);
            let script = Script::parse(&script::converse_trigger_text(&body));
            (body, script)
        }
        Operation::Invoke | Operation::InvokeStream => {
            if operation == Operation::Invoke {
                accept_is_json(headers.get(http::header::ACCEPT))?;
            } else {
                accept_is_json(headers.get("x-amzn-bedrock-accept"))?;
            }
            if model.converse_only.is_some() {
                return Err(validate::converse::invoke_refusal(bytes));
            }
            let body = validate::invoke_body(bytes)?;
            validate::model_body(&body, &model)?;
            let body = Value::Object(body);
            let script = Script::parse(&script::trigger_text(&body));
            (body, script)
        }
    };
    let mut script = script.for_model(&model.id);
    if let Some(fault) = shared
        .fault
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_deref()
    {
        let forced = Script::parse(&format!("[double:{fault}]"));
        script.error = forced.error.or(script.error);
        script.hang |= forced.hang;
    }
    let scenario = script.label();

    if script.hang {
        return Ok((Answer::Hang, scenario));
    }
    if let Some((name, status, message)) = &script.error {
        return Err(ApiError::new(*status, name, message.clone()));
    }

    if operation == Operation::CountTokens {
        if let Some(ms) = script.slow_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        return Ok((
            Answer::Json {
                body: json!({ "inputTokens": script::input_tokens(&body) }),
                headers: Vec::new(),
            },
            scenario,
        ));
    }

    let body = match body {
        Value::Object(map) => map,
        _ => {
            return Err(ApiError::validation(
                "Malformed input request, please reformat your input and try again.",
            ));
        }
    };
    let converse = operation.is_converse();
    let reply = if converse {
        Reply::build_converse(&script, &body, record.seq)
    } else {
        Reply::build(&script, &body, &model.response_model, record.seq)
    };

    if matches!(
        operation,
        Operation::InvokeStream | Operation::ConverseStream
    ) {
        return Ok((
            Answer::Stream {
                reply: Box::new(reply),
                script,
                converse,
            },
            scenario,
        ));
    }

    // Non-streaming: stream-only triggers turn into their HTTP equivalents.
    if script.hang_midstream {
        return Ok((Answer::Hang, scenario));
    }
    if let Some(member) = &script.midstream {
        let (name, status, message) = script::http_error_for_stream_member(member);
        return Err(ApiError::new(status, &name, message));
    }
    if let Some(ms) = script.slow_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let message = if converse {
        reply.converse_json(script.slow_ms.unwrap_or(0))
    } else {
        reply.message_json()
    };
    if script.truncate || script.truncate_clean {
        return Ok((Answer::TruncatedJson { body: message }, scenario));
    }
    if converse {
        return Ok((
            Answer::Json {
                body: message,
                headers: Vec::new(),
            },
            scenario,
        ));
    }
    let mut extra = vec![
        (
            "x-amzn-bedrock-input-token-count",
            reply.input_tokens.to_string(),
        ),
        (
            "x-amzn-bedrock-output-token-count",
            reply.output_tokens.to_string(),
        ),
    ];
    if reply.cache_read > 0 || reply.cache_write > 0 {
        extra.push((
            "x-amzn-bedrock-cache-read-input-token-count",
            reply.cache_read.to_string(),
        ));
        extra.push((
            "x-amzn-bedrock-cache-write-input-token-count",
            reply.cache_write.to_string(),
        ));
    }
    Ok((
        Answer::Json {
            body: message,
            headers: extra,
        },
        scenario,
    ))
}

fn authenticate(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    bytes: &Bytes,
    record: &mut RecordedRequest,
) -> Result<(), ApiError> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        let known = shared
            .api_keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(token.trim());
        if !known {
            return Err(ApiError {
                status: 403,
                error_type: "UnrecognizedClientException".to_owned(),
                message: "Invalid API Key format: Must start with pre-defined prefix".to_owned(),
                namespace: AUTH_ERROR_NAMESPACE,
            });
        }
        record.access_key_id = Some("bearer".to_owned());
        return Ok(());
    }
    let now = (*shared.clock.read().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_else(OffsetDateTime::now_utc);
    let verified = {
        let creds = shared
            .credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        sigv4::verify(
            method.as_str(),
            path,
            headers,
            bytes,
            |akid| creds.get(akid).cloned(),
            now,
        )
    }
    .map_err(|e| ApiError::auth(&e))?;
    record.access_key_id = Some(verified.access_key_id.clone());
    record.region = Some(verified.region.clone());
    if let Some(expected) = &shared.region
        && &verified.region != expected
    {
        return Err(ApiError {
            status: 403,
            error_type: "InvalidSignatureException".to_owned(),
            message: format!(
                "Credential should be scoped to a valid region, not '{}'. Expected '{expected}'.",
                verified.region
            ),
            namespace: AUTH_ERROR_NAMESPACE,
        });
    }
    Ok(())
}

/// `/model/{modelId}/{operation}` on the raw path; the id is one segment, percent-decoded.
fn route(method: &Method, path: &str) -> Result<(Operation, ModelRef), ApiError> {
    let unknown = || ApiError::new(404, "UnknownOperationException", "Unknown operation.");
    let raw_path = path.split('?').next().unwrap_or(path);
    let rest = raw_path.strip_prefix("/model/").ok_or_else(unknown)?;
    let (raw_id, op) = rest.rsplit_once('/').ok_or_else(unknown)?;
    if raw_id.contains('/') {
        return Err(unknown());
    }
    let operation = match op {
        "invoke" => Operation::Invoke,
        "invoke-with-response-stream" => Operation::InvokeStream,
        "count-tokens" => Operation::CountTokens,
        "converse" => Operation::Converse,
        "converse-stream" => Operation::ConverseStream,
        _ => return Err(unknown()),
    };
    if method != Method::POST {
        return Err(unknown());
    }
    let id = percent_encoding::percent_decode_str(raw_id)
        .decode_utf8()
        .map_err(|_| ApiError::validation("The provided model identifier is invalid."))?;
    Ok((operation, validate::model_id(&id)?))
}

/// InvokeModel's `Accept` (or the stream's `X-Amzn-Bedrock-Accept`) must allow JSON.
fn accept_is_json(value: Option<&HeaderValue>) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    let value = value.to_str().unwrap_or("");
    let ok = value.split(',').any(|part| {
        let mime = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(mime.as_str(), "application/json" | "application/*" | "*/*")
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "The requested accept type '{value}' is not supported. Use application/json."
        )))
    }
}

/// ConverseStream's `Accept`, when sent, must allow the event stream (or JSON, which the SDKs
/// also send).
fn accept_is_event_stream(value: Option<&HeaderValue>) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    let value = value.to_str().unwrap_or("");
    let ok = value.split(',').any(|part| {
        let mime = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            mime.as_str(),
            "application/vnd.amazon.eventstream" | "application/json" | "application/*" | "*/*"
        )
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "The requested accept type '{value}' is not supported."
        )))
    }
}

/// Records the verdict and turns the outcome into a response.
async fn finish(
    shared: &Arc<Shared>,
    mut record: RecordedRequest,
    result: Result<(Answer, Option<String>), ApiError>,
    request_id: &str,
    started: Instant,
) -> Response {
    match result {
        Err(err) => {
            record.verdict = Verdict {
                status: err.status,
                error_type: Some(err.error_type.clone()),
                message: Some(err.message.clone()),
                scenario: None,
            };
            shared.record(record);
            err.into_response(request_id)
        }
        Ok((answer, scenario)) => {
            record.verdict.scenario = scenario;
            match answer {
                Answer::Json { body, headers } => {
                    record.verdict.status = 200;
                    shared.record(record);
                    let mut response = axum::Json(body).into_response();
                    let h = response.headers_mut();
                    insert_header(h, "x-amzn-requestid", request_id);
                    insert_header(
                        h,
                        "x-amzn-bedrock-invocation-latency",
                        &elapsed_ms(started).to_string(),
                    );
                    for (name, value) in headers {
                        insert_header(h, name, &value);
                    }
                    response
                }
                Answer::TruncatedJson { body } => {
                    record.verdict.status = 200;
                    shared.record(record);
                    truncated_json(&body, request_id, shared.shutdown.clone())
                }
                Answer::Hang => {
                    // Never answer: not even the status line, until the double shuts down.
                    record.verdict.status = 0;
                    shared.record(record);
                    let mut stop = shared.shutdown.clone();
                    let _ = stop.wait_for(|v| *v).await;
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
                Answer::Stream {
                    reply,
                    script,
                    converse,
                } => {
                    record.verdict.status = 200;
                    if let Some(member) = &script.midstream {
                        record.verdict.error_type = Some(member.clone());
                    }
                    shared.record(record);
                    stream_response(
                        *reply,
                        script,
                        converse,
                        request_id,
                        started,
                        shared.shutdown.clone(),
                    )
                }
            }
        }
    }
}

fn truncated_json(body: &Value, request_id: &str, shutdown: watch::Receiver<bool>) -> Response {
    let text = body.to_string();
    let half = Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let _ = tx.send(Ok(half)).await;
        // Give the first half time to reach the client, then cut the connection.
        let mut stop = shutdown;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.wait_for(|v| *v) => {}
        }
        let _ = tx
            .send(Err(std::io::Error::other("scripted truncation")))
            .await;
    });
    let mut response = Response::new(channel_body(rx));
    let h = response.headers_mut();
    insert_header(h, "content-type", "application/json");
    insert_header(h, "content-length", &text.len().to_string());
    insert_header(h, "x-amzn-requestid", request_id);
    response
}

fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// One event of a streamed answer, encoded when it is sent (the last one carries latencies).
enum StreamEvent {
    /// An InvokeModel `chunk` holding this Anthropic event.
    Chunk(Value),
    /// A ConverseStream event of this `:event-type`.
    Converse(&'static str, Value),
}

impl StreamEvent {
    fn frame(self, i: usize, reply: &Reply, started: Instant, first_byte: u64) -> Bytes {
        match self {
            StreamEvent::Chunk(mut event) => {
                if event.get("type").and_then(Value::as_str) == Some("message_stop") {
                    event["amazon-bedrock-invocationMetrics"] =
                        reply.invocation_metrics(elapsed_ms(started), first_byte);
                }
                eventstream::bedrock_chunk(event.to_string().as_bytes(), &eventstream::padding(i))
            }
            StreamEvent::Converse(kind, mut payload) => {
                if kind == "metadata" {
                    payload["metrics"] = json!({"latencyMs": elapsed_ms(started)});
                }
                payload["p"] = json!(eventstream::padding(i));
                eventstream::converse_event(kind, payload.to_string().as_bytes())
            }
        }
    }
}

fn stream_response(
    reply: Reply,
    script: Script,
    converse: bool,
    request_id: &str,
    started: Instant,
    shutdown: watch::Receiver<bool>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut stop = shutdown;
        let events: Vec<StreamEvent> = if converse {
            reply
                .converse_events()
                .into_iter()
                .map(|(kind, payload)| StreamEvent::Converse(kind, payload))
                .collect()
        } else {
            reply
                .stream_events()
                .into_iter()
                .map(StreamEvent::Chunk)
                .collect()
        };
        let cut_after = 3usize.min(events.len());
        let mut first_byte: Option<u64> = None;
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 {
                if let Some(ms) = script.slow_ms {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                        _ = stop.wait_for(|v| *v) => return,
                    }
                }
                if script.hang_midstream {
                    let _ = stop.wait_for(|v| *v).await;
                    return;
                }
                if i == cut_after {
                    if let Some(member) = &script.midstream {
                        let message = if member == "throttlingException" {
                            script::THROTTLE_MESSAGE.to_owned()
                        } else {
                            script::http_error_for_stream_member(member).2
                        };
                        let extra = (member == "modelStreamErrorException").then(
                            || json!({"originalStatusCode": 500, "originalMessage": "scripted"}),
                        );
                        let _ = tx
                            .send(Ok(eventstream::bedrock_exception(
                                member,
                                &message,
                                extra.as_ref(),
                            )))
                            .await;
                        return;
                    }
                    if script.truncate {
                        let _ = tx
                            .send(Err(std::io::Error::other("scripted truncation")))
                            .await;
                        return;
                    }
                    if script.truncate_clean {
                        return;
                    }
                }
            }
            let fb = *first_byte.get_or_insert_with(|| elapsed_ms(started));
            let frame = event.frame(i, &reply, started, fb);
            if tx.send(Ok(frame)).await.is_err() {
                return; // client went away
            }
        }
    });
    let mut response = Response::new(channel_body(rx));
    let h = response.headers_mut();
    insert_header(h, "content-type", EVENTSTREAM_CONTENT_TYPE);
    if !converse {
        insert_header(h, "x-amzn-bedrock-content-type", "application/json");
    }
    insert_header(h, "x-amzn-requestid", request_id);
    response
}

fn control(shared: &Shared, method: &Method, path: &str) -> Response {
    match (method.as_str(), path) {
        ("GET", "/_double/requests") => {
            let log: Vec<RecordedRequest> = lock(&shared.requests).iter().cloned().collect();
            axum::Json(log).into_response()
        }
        ("DELETE", "/_double/requests") => {
            lock(&shared.requests).clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "/_double/health") => "ok".into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A request id shaped like AWS's (UUID form), unique per request.
fn request_id(seq: u64) -> String {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{seq}:{nanos}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
