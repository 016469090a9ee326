//! The inference API's routes and request flow:
//!
//! 1. load the current [`Runtime`](crate::runtime::Runtime) once (the request keeps it to the end);
//! 2. authenticate the virtual key (`Authorization: Bearer`, `x-api-key` or `x-bf-vk`);
//! 3. read the body up to the configured cap and parse its top level once ([`RequestBody`]):
//!    `model` and `stream` for routing, the members for the provider's translation;
//! 4. route to a provider, upstream model and provider key ([`crate::routing`]);
//! 5. hand over to the provider ([`crate::providers`]), which forwards and relays the answer;
//! 6. every outcome ends in one usage record.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use tollgate_proto::usage::v1::UsageRecord;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::bedrock::RequestBody;

use crate::DataPlane;
use crate::error::ProxyError;
use crate::providers::{self, Call, Operation};
use crate::routing::{self, RouteError};
use crate::runtime::{Runtime, VirtualKey};

/// The inference routes. Claude Code appends `/v1/messages` to `ANTHROPIC_BASE_URL`, so both the
/// documented `/anthropic` prefix and the bare paths are served; query strings (`?beta=true`) are
/// ignored.
pub fn router(dp: Arc<DataPlane>) -> Router {
    Router::new()
        .route("/anthropic/v1/messages", post(messages))
        .route("/v1/messages", post(messages))
        .route("/anthropic/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/messages/count_tokens", post(count_tokens))
        // Claude Code's connection warm-up.
        .route("/", head(warm_up))
        .route("/api/hello", head(warm_up).get(warm_up))
        .route("/anthropic", head(warm_up))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(dp)
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

/// A usage record being filled in as the request progresses.
#[derive(Debug)]
pub struct Draft {
    pub started: Instant,
    pub record: UsageRecord,
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
        }
    }

    /// Records the token counts of an answer.
    pub fn set_usage(&mut self, u: &tollgate_protocol::anthropic::Usage) {
        self.record.input_tokens = u.input_tokens;
        self.record.output_tokens = u.output_tokens;
        self.record.cache_read_input_tokens = u.cache_read_input_tokens;
        self.record.cache_write_input_tokens = u.cache_creation_input_tokens;
    }

    /// Records the time to the first byte or event sent to the client (once).
    pub fn mark_first_output(&mut self) {
        if self.record.time_to_first_token_ms == 0 {
            self.record.time_to_first_token_ms =
                u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        }
    }

    /// Completes the record with the outcome and hands it to the sink.
    pub fn finish(mut self, dp: &DataPlane, status: u16, error_class: &str) {
        self.record.status = u32::from(status);
        self.record.error_class = error_class.to_owned();
        self.record.latency_ms =
            u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        dp.usage.record(self.record);
    }
}

async fn handle(dp: Arc<DataPlane>, op: Operation, headers: HeaderMap, body: Body) -> Response {
    let mut draft = Draft::new(format!("req_tg_{}", uuid::Uuid::now_v7().simple()));
    let (rt, vk, bytes) = match admit(&dp, &headers, body, &mut draft).await {
        Ok(admitted) => admitted,
        Err(e) => return refuse(&dp, draft, e),
    };
    // The top level is parsed once, here; the provider's translation reuses it.
    let parsed = match RequestBody::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return refuse(&dp, draft, ProxyError::invalid_request(e.to_string())),
    };
    match route_call(rt, &vk, op, headers, bytes.clone(), &parsed, &mut draft) {
        Ok(call) => providers::call(dp, call, draft).await,
        Err(e) => refuse(&dp, draft, e),
    }
}

/// Ends a request the gateway refused before any upstream call.
fn refuse(dp: &DataPlane, draft: Draft, e: ProxyError) -> Response {
    let status = e.status.as_u16();
    tracing::info!(
        request_id = %draft.record.request_id,
        status,
        error_class = e.class,
        message = %e.message,
        "request refused"
    );
    let class = e.class;
    let resp = e.into_response_with(&draft.record.request_id);
    draft.finish(dp, status, class);
    resp
}

/// The virtual key presented by the client, if any.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    headers
        .get("x-bf-vk")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn authenticate(rt: &Runtime, headers: &HeaderMap) -> Result<Arc<VirtualKey>, ProxyError> {
    let Some(presented) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(ProxyError::unauthenticated(
            "missing virtual key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ));
    };
    // One answer for unknown and inactive keys: the response never tells whether a key exists.
    match rt.virtual_key(presented) {
        Some(vk) if vk.active => Ok(Arc::clone(vk)),
        _ => Err(ProxyError::unauthenticated("invalid virtual key")),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ProxyError> {
    let too_large = || {
        ProxyError::new(
            ErrorKind::RequestTooLarge,
            "body_too_large",
            format!("request body exceeds the gateway's limit of {limit} bytes"),
        )
    };
    // A declared `Content-Length` over the limit is refused before any byte is read (nor a
    // `100 Continue` sent).
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ProxyError::invalid_request(
            "could not read the request body",
        )),
    }
}

/// Steps 1 to 3: the runtime, the virtual key and the body (bounded).
async fn admit(
    dp: &DataPlane,
    headers: &HeaderMap,
    body: Body,
    draft: &mut Draft,
) -> Result<(Arc<Runtime>, Arc<VirtualKey>, Bytes), ProxyError> {
    let Some(rt) = dp.runtime().load() else {
        return Err(ProxyError::new(
            ErrorKind::Overloaded,
            "not_ready",
            "the gateway has not received its configuration yet",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE));
    };
    let vk = authenticate(&rt, headers)?;
    draft.record.virtual_key_id = vk.id.to_string();
    let body = read_body(body, dp.config.max_body_bytes).await?;
    Ok((rt, vk, body))
}

/// Step 4: routing, and the call it makes.
fn route_call<'a>(
    rt: Arc<Runtime>,
    vk: &VirtualKey,
    op: Operation,
    headers: HeaderMap,
    body: Bytes,
    parsed: &'a RequestBody<'a>,
    draft: &mut Draft,
) -> Result<Call<'a>, ProxyError> {
    let stream = parsed.stream && op == Operation::Messages;
    draft.record.model_requested.clone_from(&parsed.model);
    draft.record.stream = stream;
    let route = routing::route(&rt, vk, &parsed.model, |total| {
        rand::random::<f64>() * total
    })
    .map_err(|e| match e {
        RouteError::ProviderNotAllowed(_) => {
            ProxyError::new(ErrorKind::Permission, "provider_not_allowed", e.to_string())
        }
        RouteError::NoKey { .. } | RouteError::UnknownModel(_) | RouteError::UnknownProvider(_) => {
            ProxyError::new(ErrorKind::NotFound, "unknown_model", e.to_string())
        }
    })?;
    draft.record.provider = route.provider.name.to_string();
    draft.record.model_resolved = route.upstream_model.to_owned();
    draft.record.provider_key_id = route.key.id.to_string();
    let upstream_model = route.upstream_model.to_owned();
    Ok(Call {
        op,
        provider: Arc::clone(route.provider),
        key_index: route.key_index,
        upstream_model,
        via_alias: route.via_alias,
        runtime: rt,
        parsed,
        stream,
        headers,
        body,
    })
}
