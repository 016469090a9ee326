//! The inference API's routes and request flow:
//!
//! 1. load the current [`Runtime`](crate::runtime::Runtime) once (the request keeps it to the end);
//! 2. authenticate the virtual key (see [`presented_key`] for which header wins);
//! 3. read the body up to the configured cap (a larger `Content-Length` is refused before any
//!    byte is read) and parse its top level once ([`RequestBody`]): `model` and `stream` for
//!    routing, the members for the provider's translation;
//! 4. check the model id's shape ([`crate::model_id`]), route to a provider, upstream model and
//!    provider key ([`crate::routing`]);
//! 5. hand over to the provider ([`crate::providers`]), which forwards and relays the answer;
//! 6. every outcome once the virtual key is known ends in one usage record; a request refused
//!    before that (no configuration, no or a bad key, no such route) is not usage: it is
//!    counted in [`crate::refusals`] and logged at `debug` (a 404 at `info`).
//!
//! The in-process tests of this flow (auth rules, header precedence, error envelopes, refusals)
//! are in `server/tests.rs`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use tollgate_proto::pricing::{ModelPrice, Tokens};
use tollgate_proto::usage::v1::UsageRecord;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::bedrock::RequestBody;

use crate::DataPlane;
use crate::admission;
use crate::error::ProxyError;
use crate::limits::Reservation;
use crate::logsafe::{log_safe, log_safe_opt};
use crate::metrics::{LimitRefusal, RouteLabels};
use crate::models;
use crate::providers::Operation;
use crate::routing::Pick;
use crate::runtime::{Runtime, VirtualKey};

/// The inference routes. Claude Code appends `/v1/messages` to `ANTHROPIC_BASE_URL`, so both the
/// documented `/anthropic` prefix and the bare paths are served; query strings (`?beta=true`) are
/// ignored. Any other path gets a 404 that says what is served ([`no_route`]); it is the
/// fallback of whatever router this one is merged into.
pub fn router(dp: Arc<DataPlane>) -> Router {
    Router::new()
        .route("/anthropic/v1/messages", post(messages))
        .route("/v1/messages", post(messages))
        .route("/anthropic/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/anthropic/v1/models", get(list_models))
        .route("/v1/models", get(list_models))
        .route("/anthropic/v1/models/{*model_id}", get(get_model))
        .route("/v1/models/{*model_id}", get(get_model))
        .route("/v1/key", get(crate::key_info::key_info))
        // Claude Code's connection warm-up.
        .route("/", head(warm_up))
        .route("/api/hello", head(warm_up).get(warm_up))
        .route("/anthropic", head(warm_up))
        .route("/health", get(health))
        .route("/ready", get(ready))
        // Bedrock-format clients (Claude Code in Bedrock mode).
        .merge(crate::bedrock_ingress::routes())
        // OpenAI-format clients (the OpenAI SDKs, Codex CLI).
        .merge(crate::openai_ingress::routes())
        // The MCP gateway (`/mcp`, `/v1/mcp/servers`).
        .merge(crate::mcp::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        .with_state(dp)
}

/// What the inference API serves, for 404 and 405 messages.
const SERVED: &str = "the inference API serves POST /anthropic/v1/messages, POST \
                      /anthropic/v1/messages/count_tokens and GET /anthropic/v1/models (also \
                      without the /anthropic prefix), and for OpenAI-format clients POST \
                      /openai/v1/chat/completions, POST /openai/v1/responses and GET \
                      /openai/v1/models";

/// Longest part of a request path quoted back in an error message.
const MAX_QUOTED_PATH: usize = 200;

/// A 404 for a path nobody serves, logged at `info` (rate-limited, [`log_refused_path`]).
/// Inference-looking paths (`/anthropic/...`, `/v1/...`, anything ending in `/v1/messages`) get
/// Anthropic's error shape and a message that says what was expected; other paths the admin
/// API's shape.
async fn no_route(State(dp): State<Arc<DataPlane>>, method: Method, uri: Uri) -> Response {
    dp.refusals().count("no_route");
    let path = uri.path();
    let request_id = new_request_id();
    log_refused_path(&dp, &request_id, &method, path, "no route for this request");
    let quoted = quote_path(path);
    let inference = path == "/anthropic"
        || path.starts_with("/anthropic/")
        || path.starts_with("/v1/")
        || path.ends_with("/v1/messages")
        || path.ends_with("/v1/messages/count_tokens");
    if !inference {
        return admin_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {method} {quoted}"),
        );
    }
    let message = if path.contains("/v1/v1/") {
        format!(
            "no route for {method} {quoted}: {SERVED}. Clients append /v1/messages to their base \
             URL: set ANTHROPIC_BASE_URL to http(s)://<gateway>/anthropic, without /v1"
        )
    } else if path.ends_with("/v1/messages") || path.ends_with("/v1/messages/count_tokens") {
        format!(
            "no route for {method} {quoted}: {SERVED}. Check ANTHROPIC_BASE_URL: it should be \
             http(s)://<gateway>/anthropic"
        )
    } else {
        format!("no route for {method} {quoted}: {SERVED}")
    };
    ProxyError::new(ErrorKind::NotFound, "no_route", message).into_response_with(&request_id)
}

/// Logs a 404 or 405 at `info`, or at `debug` once this window's `info` lines are spent
/// ([`crate::refusals::INFO_BURST`]): a scan of paths is counted, not written out line by line.
fn log_refused_path(
    dp: &DataPlane,
    request_id: &str,
    method: &Method,
    path: &str,
    what: &'static str,
) {
    let path = log_safe(path);
    if dp.refusals().info_line_allowed() {
        tracing::info!(request_id, method = %method, path = %path, "{what}");
    } else {
        tracing::debug!(request_id, method = %method, path = %path, "{what}");
    }
}

/// A 405 on an inference route (e.g. `GET /v1/messages`), in Anthropic's error shape.
async fn method_not_allowed(
    State(dp): State<Arc<DataPlane>>,
    method: Method,
    uri: Uri,
) -> Response {
    dp.refusals().count("no_route");
    let path = uri.path();
    let request_id = new_request_id();
    log_refused_path(
        &dp,
        &request_id,
        &method,
        path,
        "method not allowed on this route",
    );
    let message = format!("{method} is not served on {}: {SERVED}", quote_path(path));
    // OpenAI-format clients get OpenAI's error envelope.
    if crate::openai_ingress::is_openai_path(path) {
        return crate::openai_ingress::error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::InvalidRequest,
            &message,
        );
    }
    ProxyError::new(ErrorKind::InvalidRequest, "method_not_allowed", message)
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into_response_with(&request_id)
}

/// `path`, cut to [`MAX_QUOTED_PATH`] bytes for a message (a URI path is ASCII).
pub(crate) fn quote_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.get(..MAX_QUOTED_PATH) {
        Some(head) if head.len() < path.len() => format!("{head}...").into(),
        _ => path.into(),
    }
}

/// The admin API's error shape, `{"error":{"type","message"}}`, for paths outside the inference
/// API.
fn admin_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"type": kind, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn warm_up() -> StatusCode {
    StatusCode::OK
}

async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// Readiness: 200 once a config is loaded, 503 before. The body also tells operators which config
/// version is served, where it comes from and whether the control plane stream is up (a data
/// plane that lost its control plane stays ready: it keeps serving the last good config).
async fn ready(State(dp): State<Arc<DataPlane>>) -> Response {
    let runtime = dp.runtime().load();
    let link = dp.config_link();
    let mut body = serde_json::json!({
        "ready": runtime.is_some(),
        "config_version": runtime.as_ref().map(|rt| rt.version),
        "config_source": link.source().as_str(),
        "control_plane_connected": link.connected(),
    });
    let status = if runtime.is_some() {
        StatusCode::OK
    } else {
        body["reason"] = "no configuration loaded yet".into();
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// The request is taken whole and split, rather than through the `HeaderMap` extractor, which
// clones the headers.
async fn messages(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    handle(dp, Operation::Messages, parts.headers, body).await
}

async fn count_tokens(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    handle(dp, Operation::CountTokens, parts.headers, body).await
}

/// `GET /v1/models`: the models the presented virtual key may use (see [`crate::models`]). No
/// usage record: nothing goes upstream.
async fn list_models(
    State(dp): State<Arc<DataPlane>>,
    headers: HeaderMap,
    query: Result<Query<models::PageQuery>, QueryRejection>,
) -> Response {
    let draft = Draft::new(new_request_id());
    let (rt, vk) = match models_caller(&dp, &headers, &draft) {
        Ok(caller) => caller,
        Err(e) => return refuse(&dp, draft, e),
    };
    let page = query
        .map_err(|e| ProxyError::invalid_request(format!("bad query: {}", e.body_text())))
        .and_then(|Query(q)| {
            models::page(
                &models::ids(&rt, &vk),
                &q,
                &admission::rfc3339(rt.created_at_unix_ms),
            )
            .map_err(|e| ProxyError::invalid_request(e.to_string()))
        });
    match page {
        Ok(page) => {
            tracing::info!(
                request_id = %draft.record.request_id,
                virtual_key_id = %vk.id,
                models = page.data.len(),
                "model list served"
            );
            Json(page).into_response()
        }
        Err(e) => e.into_response_with(&draft.record.request_id),
    }
}

/// `GET /v1/models/{model_id}`: one model the presented virtual key may use.
async fn get_model(
    State(dp): State<Arc<DataPlane>>,
    headers: HeaderMap,
    Path(model_id): Path<String>,
) -> Response {
    let draft = Draft::new(new_request_id());
    let (rt, vk) = match models_caller(&dp, &headers, &draft) {
        Ok(caller) => caller,
        Err(e) => return refuse(&dp, draft, e),
    };
    if !models::ids(&rt, &vk).contains(&model_id) {
        return ProxyError::new(
            ErrorKind::NotFound,
            "unknown_model",
            format!(
                "model \"{}\" is not one this virtual key may use (GET /v1/models lists them)",
                quote_path(&model_id)
            ),
        )
        .into_response_with(&draft.record.request_id);
    }
    Json(models::ModelInfo::new(
        model_id,
        &admission::rfc3339(rt.created_at_unix_ms),
    ))
    .into_response()
}

/// The runtime and the virtual key of a model-list call.
pub(crate) fn models_caller(
    dp: &DataPlane,
    headers: &HeaderMap,
    draft: &Draft,
) -> Result<(Arc<Runtime>, Arc<VirtualKey>), ProxyError> {
    let Some(rt) = dp.runtime().load() else {
        return Err(not_ready());
    };
    let vk = authenticate(&rt, headers, draft.record.started_at_unix_ms)?;
    Ok((rt, vk))
}

/// A usage record being filled in as the request progresses.
#[derive(Debug)]
pub struct Draft {
    pub started: Instant,
    pub record: UsageRecord,
    /// The prices of the routed model (`None` before routing, and for a model the pricing table
    /// has no price for).
    pub price: Option<ModelPrice>,
    /// What the request holds of its limits (admission); settled with the actual cost and tokens
    /// when the record is finished, released if the request ends any other way (drop).
    pub reservation: Option<Reservation>,
    /// The request's spans when traces are exported and this one is sampled ([`crate::otel`]):
    /// they end when the record is finished, or as `client_closed` when the draft is dropped.
    pub trace: Option<Box<crate::otel::RequestTrace>>,
    /// The route's metric labels (`None` before routing; no allocation: `Arc`s of the config).
    pub labels: Option<RouteLabels>,
    /// The limit that refused the request's admission, if one did (for the metrics).
    pub limit_refusal: Option<LimitRefusal>,
    /// The virtual key the request authenticated with (`None` before): the record is billed to
    /// it, once, when it is finished.
    pub(crate) key: Option<Arc<VirtualKey>>,
    /// The bodies kept for content logging, when the key records them ([`crate::content`]).
    pub content: Option<Box<crate::content::Capture>>,
}

impl Draft {
    pub(crate) fn new(request_id: String) -> Draft {
        Draft {
            started: Instant::now(),
            record: UsageRecord {
                request_id,
                started_at_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_default(),
                ..Default::default()
            },
            price: None,
            reservation: None,
            trace: None,
            labels: None,
            limit_refusal: None,
            key: None,
            content: None,
        }
    }

    /// Names the virtual key the request authenticated with: its record is billed to the key
    /// and its team, customer and user when it is finished (an `Arc` clone now, the ids copied
    /// once then, however many drafts a format ingress goes through).
    pub(crate) fn bill_to(&mut self, vk: &Arc<VirtualKey>) {
        self.key = Some(Arc::clone(vk));
    }

    /// Starts content logging with the request's body when the key records bodies.
    pub(crate) fn capture_request(&mut self, body: &Bytes) {
        if let Some(max) = self.key.as_ref().and_then(|vk| vk.content_max_bytes) {
            self.content = Some(crate::content::Capture::new(max, body));
        }
    }

    /// Bytes of the answer sent to the client, for content logging (nothing when it is off).
    #[inline]
    pub fn capture_response(&mut self, bytes: &[u8]) {
        if let Some(c) = &mut self.content {
            c.response(bytes);
        }
    }

    /// An error envelope sent to the client, for content logging (nothing when it is off).
    pub(crate) fn capture_error(&mut self, api: &tollgate_protocol::anthropic::ApiError) {
        if self.content.is_some() {
            let json = crate::error::error_json(api, &self.record.request_id);
            self.capture_response(&json);
        }
    }

    /// A gateway error about to be sent, for content logging (nothing, not even the envelope
    /// built, when it is off).
    pub(crate) fn capture_proxy_error(&mut self, e: &ProxyError) {
        if self.content.is_some() {
            let api = e.api_error(&self.record.request_id);
            self.capture_error(&api);
        }
    }

    /// Records the token counts of an answer.
    pub fn set_usage(&mut self, u: &tollgate_protocol::anthropic::Usage) {
        self.record.input_tokens = u.input_tokens;
        self.record.output_tokens = u.output_tokens;
        self.record.cache_read_input_tokens = u.cache_read_input_tokens;
        self.record.cache_write_input_tokens = u.cache_creation_input_tokens;
        self.record.cache_write_1h_input_tokens = u.cache_creation_1h_input_tokens;
    }

    /// The record's tokens, split the way they are priced.
    fn tokens(&self) -> Tokens {
        let r = &self.record;
        Tokens::of_usage(
            r.input_tokens,
            r.output_tokens,
            r.cache_read_input_tokens,
            r.cache_write_input_tokens,
            r.cache_write_1h_input_tokens,
        )
    }

    /// Records the time to the first byte or event sent to the client (once; rounded up to
    /// 1 ms, since 0 means no output yet).
    pub fn mark_first_output(&mut self) {
        if self.record.time_to_first_token_ms == 0 {
            self.record.time_to_first_token_ms = u32::try_from(self.started.elapsed().as_millis())
                .unwrap_or(u32::MAX)
                .max(1);
        }
    }

    /// Completes the record with the outcome, adds it to the metrics and hands it to the sink.
    pub fn finish(mut self, dp: &DataPlane, status: u16, error_class: &str) {
        if let Some(vk) = &self.key {
            vk.bill(&mut self.record);
        }
        self.record.status = u32::from(status);
        self.record.error_class = error_class.to_owned();
        self.record.latency_ms =
            u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let tokens = self.tokens();
        self.record.cost_nano_usd = tokens.charge(self.price);
        if let Some(content) = self.content.take() {
            self.record.content = dp
                .content_budget()
                .admit(&self.record.request_id, content.finish());
        }
        if let Some(reservation) = self.reservation.take() {
            let all = tokens.total_input().saturating_add(tokens.output);
            reservation.settle(self.record.cost_nano_usd, all);
        }
        if let Some(mut trace) = self.trace.take() {
            trace.finish(&self.record);
        }
        dp.metrics().observe(
            &self.record,
            self.labels.as_ref(),
            self.limit_refusal,
            dp.runtime(),
        );
        dp.usage.record(self.record);
    }
}

/// A new request id (`req_tg_` and a time-ordered UUID).
pub(crate) fn new_request_id() -> String {
    format!("req_tg_{}", uuid::Uuid::now_v7().simple())
}

pub(crate) async fn handle(
    dp: Arc<DataPlane>,
    op: Operation,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut draft = Draft::new(new_request_id());
    let (rt, vk, bytes) = match admit(&dp, &headers, body, &mut draft).await {
        Ok(admitted) => admitted,
        Err(e) => return refuse_traced(&dp, &headers, op, draft, None, e),
    };
    // The top level is parsed once, here; the provider's translation reuses it.
    let parsed = match RequestBody::parse(&bytes) {
        Ok(p) => p,
        Err(e) => {
            let e = ProxyError::invalid_request(e.to_string());
            return refuse_traced(&dp, &headers, op, draft, None, e);
        }
    };
    // Before the model is routed, logged or put in a URL.
    if let Err(e) = crate::model_id::check(&parsed.model) {
        let e = ProxyError::new(ErrorKind::InvalidRequest, "invalid_model", e.to_string());
        return refuse_traced(&dp, &headers, op, draft, None, e);
    }
    let pick = Pick::for_session(session_id(&headers));
    // The gateway's own `fallbacks` field (rare: one look among the top-level fields) is read,
    // checked, and removed before anything goes upstream (the body is parsed again without it).
    // Without it, or with `null`, the key's list applies.
    let mut list = None;
    let mut without_fallbacks = None;
    if parsed.has("fallbacks") {
        let own = match parsed.fallbacks() {
            Ok(own) => own.unwrap_or_else(|| vk.fallbacks.clone()),
            Err(e) => {
                let e = ProxyError::invalid_request(e.to_string());
                return refuse_traced(&dp, &headers, op, draft, Some(&parsed), e);
            }
        };
        if let Err(e) = check_fallbacks(&own) {
            return refuse_traced(&dp, &headers, op, draft, Some(&parsed), e);
        }
        list = Some(own);
        without_fallbacks = Some(Bytes::from(parsed.without("fallbacks")));
    }
    let reparsed;
    let (body, parsed) = match &without_fallbacks {
        None => (bytes.clone(), &parsed),
        Some(stripped) => {
            reparsed = match RequestBody::parse(stripped) {
                Ok(p) => p,
                Err(e) => {
                    let e = ProxyError::invalid_request(e.to_string());
                    return refuse_traced(&dp, &headers, op, draft, Some(&parsed), e);
                }
            };
            (stripped.clone(), &reparsed)
        }
    };
    start_trace(&dp, &headers, op, &mut draft, Some(parsed));
    let fallbacks = list.as_deref().unwrap_or(&vk.fallbacks);
    let job = attempts::Job {
        rt,
        vk: &vk,
        op,
        parsed,
        body,
        fallbacks,
        pick,
        start: 0,
        may_strip: true,
    };
    match attempts::run(Arc::clone(&dp), job, headers, draft).await {
        attempts::Ran::Answered(resp) => resp,
        // Boxed: a cold path, kept out of the size of every request's future.
        attempts::Ran::Unverifiable(redo) => {
            Box::pin(without_thinking(dp, &vk, op, fallbacks, pick, *redo)).await
        }
    }
}

/// Starts the request's spans when traces are exported and the virtual key is known (requests
/// refused before that are not traced, as they are not usage). `body`: the parsed body, once its
/// model is known to be well-formed. With tracing off: one branch.
fn start_trace(
    dp: &DataPlane,
    headers: &HeaderMap,
    op: Operation,
    draft: &mut Draft,
    body: Option<&RequestBody<'_>>,
) {
    let Some(tracer) = &dp.config.tracing else {
        return;
    };
    let Some(vk) = &draft.key else {
        return;
    };
    if draft.trace.is_some() {
        return;
    }
    draft.trace = tracer.start_request(crate::otel::RequestStart {
        headers,
        arrived: draft.started,
        op,
        request_id: &draft.record.request_id,
        virtual_key_id: &vk.id,
        body,
        session: session_id(headers),
    });
}

/// [`refuse`], traced like any request with a virtual key.
fn refuse_traced(
    dp: &DataPlane,
    headers: &HeaderMap,
    op: Operation,
    mut draft: Draft,
    body: Option<&RequestBody<'_>>,
    e: ProxyError,
) -> Response {
    start_trace(dp, headers, op, &mut draft, body);
    refuse(dp, draft, e)
}

/// A platform refused thinking blocks it cannot verify (another platform signed them: the
/// conversation moved): the request goes again, once, from the entry that refused, without
/// those blocks ([`tollgate_protocol::thinking`]).
async fn without_thinking(
    dp: Arc<DataPlane>,
    vk: &VirtualKey,
    op: Operation,
    fallbacks: &[String],
    pick: Pick,
    redo: attempts::Unverifiable,
) -> Response {
    let attempts::Unverifiable {
        rt,
        draft,
        headers,
        entry,
        stripped,
    } = redo;
    tracing::info!(
        request_id = %draft.record.request_id,
        provider = %log_safe(&draft.record.provider),
        blocks = stripped.blocks,
        thinking_off = stripped.thinking_off,
        "the provider refused thinking blocks another platform signed; sending the request again without them"
    );
    let body = Bytes::from(stripped.body);
    let parsed = match RequestBody::parse(&body) {
        Ok(p) => p,
        Err(e) => return refuse(&dp, draft, ProxyError::invalid_request(e.to_string())),
    };
    let job = attempts::Job {
        rt,
        vk,
        op,
        parsed: &parsed,
        body: body.clone(),
        fallbacks,
        pick,
        start: entry,
        may_strip: false,
    };
    match attempts::run(Arc::clone(&dp), job, headers, draft).await {
        attempts::Ran::Answered(resp) => resp,
        // `may_strip` is off: a run cannot end this way twice.
        attempts::Ran::Unverifiable(redo) => refuse(
            &dp,
            redo.draft,
            ProxyError::invalid_request("the provider refused the request's thinking blocks"),
        ),
    }
}

/// Every entry of `fallbacks` must be a model name the gateway could route.
fn check_fallbacks(fallbacks: &[String]) -> Result<(), ProxyError> {
    use tollgate_proto::model_id::MAX_FALLBACKS;
    if fallbacks.len() > MAX_FALLBACKS {
        return Err(ProxyError::invalid_request(format!(
            "fallbacks: at most {MAX_FALLBACKS} entries"
        )));
    }
    for (i, model) in fallbacks.iter().enumerate() {
        if let Err(e) = crate::model_id::check(model) {
            return Err(ProxyError::new(
                ErrorKind::InvalidRequest,
                "invalid_model",
                format!("fallbacks[{i}]: {e}"),
            ));
        }
    }
    Ok(())
}

/// Ends a request the gateway refused before any upstream call. Once the virtual key is known
/// the refusal is usage (one record, logged at `info`); before that it is only counted and
/// logged at `debug` (see [`crate::refusals`]), so unauthenticated traffic cannot fill the usage
/// queue or the spool.
pub(crate) fn refuse(dp: &DataPlane, draft: Draft, e: ProxyError) -> Response {
    let status = e.status.as_u16();
    let class = e.class;
    if draft.key.is_none() {
        dp.refusals().count(class);
        tracing::debug!(
            request_id = %draft.record.request_id,
            status,
            error_class = class,
            message = %log_safe(&e.message),
            "request refused before a virtual key was established"
        );
        return e.into_response_with(&draft.record.request_id);
    }
    tracing::info!(
        request_id = %draft.record.request_id,
        status,
        error_class = class,
        message = %log_safe(&e.message),
        detail = log_safe_opt(e.detail.as_deref()),
        "request refused"
    );
    let mut draft = draft;
    draft.capture_proxy_error(&e);
    let resp = e.into_response_with(&draft.record.request_id);
    draft.finish(dp, status, class);
    resp
}

/// The virtual key presented by the client: `Ok(None)` when there is none.
///
/// The first of these headers that is present and not empty wins, and only it is checked (a bad
/// key there is a 401 even if a later header holds a good one):
///
/// | order | header | note |
/// |---|---|---|
/// | 1 | `x-api-key: <key>` | Anthropic SDKs, Claude Code's `ANTHROPIC_API_KEY` |
/// | 2 | `Authorization: Bearer <key>` | Claude Code's `ANTHROPIC_AUTH_TOKEN`; other schemes are not virtual keys and are skipped |
/// | 3 | `x-bf-vk: <key>` | Bifrost's header |
///
/// `Err(())`: the winning header is not valid text (it cannot hold a key).
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    fn text(v: &http::HeaderValue) -> Result<&str, ()> {
        v.to_str().map(str::trim).map_err(|_| ())
    }
    if let Some(v) = headers.get("x-api-key")
        && !v.is_empty()
    {
        let v = text(v)?;
        if !v.is_empty() {
            return Ok(Some(v));
        }
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes().trim_ascii();
        if v.len() >= 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            let token = std::str::from_utf8(&v[7..]).map_err(|_| ())?.trim();
            if !token.is_empty() {
                return Ok(Some(token));
            }
        }
    }
    match headers.get("x-bf-vk") {
        Some(v) => text(v).map(|v| (!v.is_empty()).then_some(v)),
        None => Ok(None),
    }
}

pub(crate) fn authenticate(
    rt: &Runtime,
    headers: &HeaderMap,
    now_unix_ms: i64,
) -> Result<Arc<VirtualKey>, ProxyError> {
    let presented = match presented_key(headers) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return Err(ProxyError::unauthenticated(
                "missing virtual key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`",
            ));
        }
        Err(()) => return Err(ProxyError::unauthenticated("invalid virtual key")),
    };
    // One answer for unknown and inactive keys: the response never tells whether a key exists.
    match rt.virtual_key(presented) {
        // The holder of an expired key is told so (they hold its value; nothing leaks).
        Some(vk) if vk.active && vk.expired(now_unix_ms) => Err(ProxyError::unauthenticated(
            "this virtual key has expired; ask the gateway's administrator for a new one",
        )),
        Some(vk) if vk.active => Ok(Arc::clone(vk)),
        _ => Err(ProxyError::unauthenticated("invalid virtual key")),
    }
}

fn too_large(limit: usize) -> ProxyError {
    ProxyError::new(
        ErrorKind::RequestTooLarge,
        "body_too_large",
        format!("request body exceeds the gateway's limit of {limit} bytes"),
    )
}

/// Reads a whole body, up to `limit` bytes: a request's, or an answer the format ingresses
/// translate back (they take an error as "nothing to translate").
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ProxyError> {
    // A declared length (`Content-Length`) over the cap is refused before any byte is read.
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(_) => Err(ProxyError::invalid_request(
            "could not read the request body",
        )),
    }
}

/// 503: no configuration yet.
pub(crate) fn not_ready() -> ProxyError {
    ProxyError::new(
        ErrorKind::Overloaded,
        "not_ready",
        "the gateway has not received its configuration yet",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

/// Steps 1 to 3: the runtime, the virtual key and the body (bounded).
async fn admit(
    dp: &DataPlane,
    headers: &HeaderMap,
    body: Body,
    draft: &mut Draft,
) -> Result<(Arc<Runtime>, Arc<VirtualKey>, Bytes), ProxyError> {
    let Some(rt) = dp.runtime().load() else {
        return Err(not_ready());
    };
    let vk = authenticate(&rt, headers, draft.record.started_at_unix_ms)?;
    draft.bill_to(&vk);
    let body = read_body(body, dp.config.max_body_bytes).await?;
    draft.capture_request(&body);
    Ok((rt, vk, body))
}

/// Response headers a format-translating ingress (Bedrock's, OpenAI's) keeps on the answer; the
/// others describe the Anthropic-format answer or its upstream.
const KEPT_HEADERS: &[&str] = &[
    "retry-after",
    "x-should-retry",
    "request-id",
    crate::providers::PROVIDER_HEADER,
    crate::providers::PROVIDER_KEY_HEADER,
    crate::providers::MODEL_HEADER,
    FALLBACK_INDEX_HEADER,
];

/// The [`KEPT_HEADERS`] of an Anthropic-format answer.
pub(crate) fn kept_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in KEPT_HEADERS {
        if let Some(v) = from.get(*name) {
            out.insert(http::HeaderName::from_static(name), v.clone());
        }
    }
    out
}

mod attempts;
mod reencode;
pub use attempts::{FALLBACK_INDEX_HEADER, SESSION_HEADERS, session_id};
pub(crate) use reencode::{Reencode, ReencodedBody};

#[cfg(test)]
mod tests;
