//! OpenAI-format clients: the OpenAI SDKs (`base_url = http(s)://<gateway>/openai/v1`, or
//! `…/v1`), Codex CLI, OpenCode and other tools that speak Chat Completions or Responses, with
//! the virtual key as their API key (`Authorization: Bearer`).
//!
//! | route | what |
//! |---|---|
//! | `POST /openai/v1/chat/completions`, `POST /v1/chat/completions` | Chat Completions, streaming (`chat.completion.chunk` SSE, `[DONE]`) or not |
//! | `POST /openai/v1/responses`, `POST /v1/responses` | Responses, streaming (`response.*` events) or not; stateless |
//! | `GET /openai/v1/models`, `GET /openai/v1/models/{id}` | the models the key may use, in OpenAI's list shape |
//!
//! A request is made into the Anthropic Messages request the inference API serves
//! (`tollgate_protocol::openai::{chat_ingress, responses_ingress}`) and goes through
//! [`server::handle`] unchanged: authentication, routing, limits, fallbacks and usage records
//! apply as on `/anthropic/v1/messages`, and the provider's own translation follows (Bedrock
//! still gets its native InvokeModel body). The answer goes back in the client's format: a
//! stream event by event as each Anthropic event completes ([`server::ReencodedBody`]; nothing is
//! buffered beyond the event being completed), a message as one JSON object, and errors in
//! OpenAI's envelope `{"error":{"message","type","param","code"}}` with the status kept.
//! Fields the client sent that Claude cannot take are dropped and named in a debug log line.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde::Serialize;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::openai::chat_ingress::{self, ChatStream};
use tollgate_protocol::openai::responses_ingress::{self, ResponseContext, ResponsesStream};

use crate::DataPlane;
use crate::error::ProxyError;
use crate::logsafe::log_safe;
use crate::models;
use crate::providers::Operation;
use crate::server::{self, Draft};

/// `max_tokens` of a request that names none (OpenAI's default is "as many as the model
/// allows", which Anthropic's API has no spelling for). Admission reserves budget for it.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// `max_tokens` of a Responses request that names none: Codex CLI never does, and treats an
/// answer cut at the limit as an error, so coding sessions need room.
pub const DEFAULT_RESPONSES_MAX_TOKENS: u32 = 32_000;

/// Largest error body read to translate it.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// The OpenAI-format routes, to merge into the inference router.
pub fn routes() -> Router<Arc<DataPlane>> {
    Router::new()
        .route("/openai/v1/chat/completions", post(chat))
        .route("/v1/chat/completions", post(chat))
        .route("/openai/v1/responses", post(responses))
        .route("/v1/responses", post(responses))
        .route("/openai/v1/models", get(list_models))
        .route("/openai/v1/models/{*model_id}", get(get_model))
        .route("/openai/{*rest}", any(no_route))
}

/// Which OpenAI API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
}

/// An OpenAI-shaped error response.
fn openai_error(status: StatusCode, mut headers: HeaderMap, body: Vec<u8>) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (status, headers, body).into_response()
}

/// Whether `path` is one of the OpenAI-format routes (their errors use OpenAI's envelope).
pub(crate) fn is_openai_path(path: &str) -> bool {
    path.starts_with("/openai/") || path == "/v1/chat/completions" || path == "/v1/responses"
}

/// An OpenAI-shaped error response of the gateway's own.
pub(crate) fn error_response(status: StatusCode, kind: ErrorKind, message: &str) -> Response {
    openai_error(
        status,
        HeaderMap::new(),
        chat_ingress::error_body(kind, message),
    )
}

/// A path under `/openai` that is not served: an OpenAI-shaped 404 that says what is.
async fn no_route(State(dp): State<Arc<DataPlane>>, method: Method, uri: Uri) -> Response {
    dp.refusals().count("no_route");
    tracing::debug!(method = %method, path = %log_safe(uri.path()), "no OpenAI-format route");
    let message = format!(
        "no route for {method} {}: the OpenAI-format API serves POST /openai/v1/chat/completions, \
         POST /openai/v1/responses and GET /openai/v1/models. Set the client's base URL to \
         http(s)://<gateway>/openai/v1",
        server::quote_path(uri.path())
    );
    error_response(StatusCode::NOT_FOUND, ErrorKind::NotFound, &message)
}

async fn chat(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    serve(dp, Api::Chat, req).await
}

async fn responses(State(dp): State<Arc<DataPlane>>, req: Request) -> Response {
    serve(dp, Api::Responses, req).await
}

/// What the answer's translation needs from the request.
enum Answer {
    Chat { model: String, include_usage: bool },
    Responses(Box<ResponseContext>),
}

/// The request made Anthropic-format.
struct Prepared {
    headers: HeaderMap,
    body: Bytes,
    answer: Answer,
}

async fn serve(dp: Arc<DataPlane>, api: Api, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut draft = Draft::new(server::new_request_id());
    let prepared = match prepare(&dp, api, parts.headers, body, &mut draft).await {
        Ok(p) => p,
        // Refused before it could be handed over: a usage record once the key is known, only
        // counted before (as on the Anthropic routes).
        Err(Refusal::Gateway(e)) => {
            return to_openai(server::refuse(&dp, draft, e), None).await;
        }
        Err(Refusal::Translation { status, body, why }) => {
            let e = ProxyError::invalid_request(why);
            let refused = server::refuse(&dp, draft, e);
            let (parts, _) = refused.into_parts();
            return openai_error(status, kept_headers(&parts.headers), body);
        }
    };
    let resp = server::handle(
        dp,
        Operation::Messages,
        prepared.headers,
        Body::from(prepared.body),
    )
    .await;
    to_openai(resp, Some(prepared.answer)).await
}

/// Why a request was not handed over.
enum Refusal {
    /// The gateway's own refusal (no config, no or a bad key, a body too large).
    Gateway(ProxyError),
    /// The body could not be translated: the OpenAI error body (with `param`) to answer.
    Translation {
        status: StatusCode,
        body: Vec<u8>,
        why: String,
    },
}

impl From<ProxyError> for Refusal {
    fn from(e: ProxyError) -> Self {
        Refusal::Gateway(e)
    }
}

/// Authenticates (before the body is read, as the Anthropic routes do), reads the body and makes
/// the Anthropic request.
async fn prepare(
    dp: &DataPlane,
    api: Api,
    mut headers: HeaderMap,
    body: Body,
    draft: &mut Draft,
) -> Result<Prepared, Refusal> {
    let Some(rt) = dp.runtime().load() else {
        return Err(server::not_ready().into());
    };
    let vk = server::authenticate(&rt, &headers, draft.record.started_at_unix_ms)?;
    draft.bill_to(&vk);
    let body = server::read_body(body, dp.config.max_body_bytes).await?;
    let (anthropic, betas, dropped, answer) = match api {
        Api::Chat => {
            let opts = chat_ingress::RequestOptions {
                default_max_tokens: DEFAULT_MAX_TOKENS,
            };
            let t = chat_ingress::request(&body, &opts).map_err(|e| Refusal::Translation {
                status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                body: e.to_openai(),
                why: e.to_string(),
            })?;
            let answer = Answer::Chat {
                model: t.model,
                include_usage: t.include_usage,
            };
            (t.body, t.betas, t.dropped, answer)
        }
        Api::Responses => {
            let opts = responses_ingress::RequestOptions {
                default_max_tokens: DEFAULT_RESPONSES_MAX_TOKENS,
            };
            let t = responses_ingress::request(&body, &opts).map_err(|e| Refusal::Translation {
                status: StatusCode::BAD_REQUEST,
                body: chat_ingress::error_body_with_param(
                    ErrorKind::InvalidRequest,
                    &e.to_string(),
                    e.param(),
                ),
                why: e.to_string(),
            })?;
            (
                t.body,
                t.betas,
                t.dropped,
                Answer::Responses(Box::new(t.context)),
            )
        }
    };
    if !dropped.is_empty() {
        tracing::debug!(
            request_id = %draft.record.request_id,
            dropped = %log_safe(&dropped.join(", ")),
            "fields the upstream cannot take were left out of the translated request"
        );
    }
    // The Anthropic format versions by header; betas the translation needs join the client's.
    headers
        .entry("anthropic-version")
        .or_insert(HeaderValue::from_static("2023-06-01"));
    for beta in betas {
        headers.append("anthropic-beta", HeaderValue::from_static(beta));
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    Ok(Prepared {
        headers,
        body: Bytes::from(anthropic),
        answer,
    })
}

/// The headers kept on a translated answer ([`server::kept_headers`]), and the request id as
/// OpenAI SDKs read it (`x-request-id`).
fn kept_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = server::kept_headers(from);
    if let Some(id) = from.get("request-id") {
        out.insert("x-request-id", id.clone());
    }
    out
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The inference API's Anthropic-format answer, in the client's format (`None`: a refusal
/// before translation, only errors).
async fn to_openai(resp: Response, answer: Option<Answer>) -> Response {
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let mut headers = kept_headers(&parts.headers);
    let answer = match answer {
        Some(a) if status.is_success() => a,
        _ => {
            let bytes = server::read_body(body, MAX_ERROR_BODY)
                .await
                .ok()
                .unwrap_or_default();
            return openai_error(
                status,
                headers,
                chat_ingress::error_from_anthropic(status.as_u16(), &bytes),
            );
        }
    };
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let created = now_unix();
    if is_sse {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let body = match answer {
            Answer::Chat {
                model,
                include_usage,
            } => Body::new(server::ReencodedBody::new(
                body,
                ChatStream::new(&model, created, include_usage),
            )),
            Answer::Responses(ctx) => Body::new(server::ReencodedBody::new(
                body,
                ResponsesStream::new(*ctx, created),
            )),
        };
        return (status, headers, body).into_response();
    }
    let failed = |headers, message: &str| {
        openai_error(
            StatusCode::BAD_GATEWAY,
            headers,
            chat_ingress::error_body(ErrorKind::Api, message),
        )
    };
    let Some(bytes) = server::read_body(body, crate::providers::MAX_UPSTREAM_BODY)
        .await
        .ok()
    else {
        return failed(headers, "could not read the provider's answer");
    };
    let translated = match &answer {
        Answer::Chat { model, .. } => {
            chat_ingress::response(&bytes, model, created).map_err(|e| e.to_string())
        }
        Answer::Responses(ctx) => {
            responses_ingress::response(&bytes, ctx, created).map_err(|e| e.to_string())
        }
    };
    match translated {
        Ok(json) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (status, headers, json).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %log_safe(&e), "could not translate the provider's answer");
            failed(headers, "the provider's answer could not be translated")
        }
    }
}

impl server::Reencode for ChatStream {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        ChatStream::push(self, chunk)
    }
    fn finish(&mut self) -> Bytes {
        ChatStream::finish(self)
    }
}

impl server::Reencode for ResponsesStream {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        ResponsesStream::push(self, chunk)
    }
    fn finish(&mut self) -> Bytes {
        ResponsesStream::finish(self)
    }
}

// === Models ===

/// One entry of OpenAI's model list.
#[derive(Debug, Serialize)]
struct OpenAiModel {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
}

impl OpenAiModel {
    fn new(id: String, created: i64) -> OpenAiModel {
        OpenAiModel {
            id,
            object: "model",
            created,
            owned_by: "tollgate",
        }
    }
}

#[derive(Debug, Serialize)]
struct OpenAiModelList {
    object: &'static str,
    data: Vec<OpenAiModel>,
}

/// `GET /openai/v1/models`: the models the presented virtual key may use (see
/// [`crate::models`]), in OpenAI's shape. No usage record: nothing goes upstream.
async fn list_models(State(dp): State<Arc<DataPlane>>, headers: HeaderMap) -> Response {
    let draft = Draft::new(server::new_request_id());
    let (rt, vk) = match server::models_caller(&dp, &headers, &draft) {
        Ok(caller) => caller,
        Err(e) => return to_openai(server::refuse(&dp, draft, e), None).await,
    };
    let created = rt.created_at_unix_ms / 1000;
    let data: Vec<OpenAiModel> = models::ids(&rt, &vk)
        .into_iter()
        .map(|id| OpenAiModel::new(id, created))
        .collect();
    tracing::info!(
        request_id = %draft.record.request_id,
        virtual_key_id = %vk.id,
        models = data.len(),
        "model list served (OpenAI format)"
    );
    axum::Json(OpenAiModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// `GET /openai/v1/models/{id}`: one model the presented virtual key may use.
async fn get_model(
    State(dp): State<Arc<DataPlane>>,
    headers: HeaderMap,
    Path(model_id): Path<String>,
) -> Response {
    let draft = Draft::new(server::new_request_id());
    let (rt, vk) = match server::models_caller(&dp, &headers, &draft) {
        Ok(caller) => caller,
        Err(e) => return to_openai(server::refuse(&dp, draft, e), None).await,
    };
    if !models::ids(&rt, &vk).contains(&model_id) {
        let message = format!(
            "The model `{}` does not exist or this virtual key may not use it (GET \
             /openai/v1/models lists them)",
            server::quote_path(&model_id)
        );
        return openai_error(
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            chat_ingress::error_body(ErrorKind::NotFound, &message),
        );
    }
    axum::Json(OpenAiModel::new(model_id, rt.created_at_unix_ms / 1000)).into_response()
}

#[cfg(test)]
mod tests;
