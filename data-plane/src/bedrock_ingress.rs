//! Bedrock-format clients: Claude Code with `CLAUDE_CODE_USE_BEDROCK=1`,
//! `ANTHROPIC_BEDROCK_BASE_URL=http(s)://<gateway>/bedrock` and `CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`,
//! the virtual key as its Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`, sent as
//! `Authorization: Bearer`) or in a custom header (`ANTHROPIC_CUSTOM_HEADERS=x-api-key: …`).
//!
//! | route | what |
//! |---|---|
//! | `POST /bedrock/model/{modelId}/invoke` | `InvokeModel`: the Anthropic message JSON |
//! | `POST /bedrock/model/{modelId}/invoke-with-response-stream` | the binary event stream (`chunk` frames) |
//! | `POST /bedrock/model/{modelId}/count-tokens` | `CountTokens`: `{"inputTokens":N}` |
//! | `GET /bedrock/inference-profiles` | `ListInferenceProfiles`: the system-defined profiles the key may use |
//! | `GET /bedrock/inference-profiles/{id}` | `GetInferenceProfile` of one of them |
//!
//! A request is made into the Anthropic Messages request the inference API serves
//! (`tollgate_protocol::bedrock::ingress`: the path's model id, `anthropic_beta` into the
//! `anthropic-beta` header) and goes through [`server::handle`] unchanged: authentication,
//! routing, limits, fallbacks and usage records apply as on `/anthropic/v1/messages`. The
//! answer goes back in Bedrock's format whichever provider served it: a stream is re-encoded
//! event by event ([`server::ReencodedBody`]: each SSE event as it completes becomes one `chunk`
//! frame; nothing is buffered beyond the event being completed), errors become Bedrock's
//! (`{"message"}`, `x-amzn-ErrorType`, Bedrock's statuses). `text/event-stream` never goes back
//! on these routes: Claude Code refuses it.
//!
//! The model id in the path routes like the `model` field. A Bedrock id or inference profile
//! that routes nowhere as a bare name (a key reaching several providers, without an alias for
//! it) goes to the one Bedrock provider the key may use, if there is exactly one; the answers
//! still name the id the client sent.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawPathParams, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde::Serialize;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::bedrock::ingress::{
    self, BedrockError, IngressError, SseToEventStream, is_bedrock_model_id,
};

use crate::DataPlane;
use crate::error::ProxyError;
use crate::providers::Operation;
use crate::routing::{self, RouteError};
use crate::runtime::{ModelFilter, ProviderKind, Runtime, VirtualKey};
use crate::server::{self, Draft};

/// The event-stream media type Bedrock streams with (and Claude Code requires).
pub const EVENTSTREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Largest error body read to translate it (gateway and upstream error bodies are small).
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// The Bedrock-format routes, to merge into the inference router.
pub fn routes() -> Router<Arc<DataPlane>> {
    Router::new()
        .route(
            "/bedrock/model/{model_id}/invoke",
            only(Method::POST, post(invoke)),
        )
        .route(
            "/bedrock/model/{model_id}/invoke-with-response-stream",
            only(Method::POST, post(invoke_stream)),
        )
        .route(
            "/bedrock/model/{model_id}/count-tokens",
            only(Method::POST, post(count_tokens)),
        )
        .route(
            "/bedrock/inference-profiles",
            only(Method::GET, get(list_profiles)),
        )
        .route(
            "/bedrock/inference-profiles/{*profile_id}",
            only(Method::GET, get(get_profile)),
        )
        .route("/bedrock/{*rest}", any(no_route))
}

/// `route` with a Bedrock-shaped 405 for other methods.
fn only(method: Method, route: MethodRouter<Arc<DataPlane>>) -> MethodRouter<Arc<DataPlane>> {
    route.fallback(move |State(dp): State<Arc<DataPlane>>, uri: Uri| {
        let method = method.clone();
        async move {
            dp.refusals().count("no_route");
            let err = BedrockError::new(
                ErrorKind::InvalidRequest,
                format!("only {method} is served on {}", quote(uri.path())),
            );
            let mut resp = bedrock_error(HeaderMap::new(), &err);
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp
        }
    })
}

/// A path under `/bedrock` that is not served: a Bedrock-shaped 404 that says what is.
async fn no_route(State(dp): State<Arc<DataPlane>>, method: Method, uri: Uri) -> Response {
    dp.refusals().count("no_route");
    tracing::debug!(method = %method, path = %crate::logsafe::log_safe(uri.path()), "no Bedrock-format route");
    let err = BedrockError::new(
        ErrorKind::NotFound,
        format!(
            "no route for {method} {}: the Bedrock-format API serves POST \
             /bedrock/model/{{modelId}}/invoke, /invoke-with-response-stream and /count-tokens, \
             and GET /bedrock/inference-profiles. Set ANTHROPIC_BEDROCK_BASE_URL to \
             http(s)://<gateway>/bedrock",
            quote(uri.path())
        ),
    );
    bedrock_error(HeaderMap::new(), &err)
}

/// `path`, cut for a message.
fn quote(path: &str) -> String {
    const MAX: usize = 200;
    match path.get(..MAX) {
        Some(head) if head.len() < path.len() => format!("{head}..."),
        _ => path.to_owned(),
    }
}

/// Which Bedrock operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ingress {
    Invoke,
    InvokeStream,
    CountTokens,
}

async fn invoke(State(dp): State<Arc<DataPlane>>, path: RawPathParams, req: Request) -> Response {
    serve(dp, Ingress::Invoke, &path, req).await
}

async fn invoke_stream(
    State(dp): State<Arc<DataPlane>>,
    path: RawPathParams,
    req: Request,
) -> Response {
    serve(dp, Ingress::InvokeStream, &path, req).await
}

async fn count_tokens(
    State(dp): State<Arc<DataPlane>>,
    path: RawPathParams,
    req: Request,
) -> Response {
    serve(dp, Ingress::CountTokens, &path, req).await
}

/// The request made Anthropic-format: headers, body, and the model name answers report when
/// routing needed another name than the client's.
struct Prepared {
    headers: HeaderMap,
    body: Bytes,
    report_model: Option<String>,
}

async fn serve(dp: Arc<DataPlane>, op: Ingress, path: &RawPathParams, req: Request) -> Response {
    // The segment as sent (not decoded by the router): decoded here, once.
    let raw_model = path
        .iter()
        .find(|(name, _)| *name == "model_id")
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let mut draft = Draft::new(server::new_request_id());
    let prepared = match prepare(&dp, op, &raw_model, parts.headers, body, &mut draft).await {
        Ok(p) => p,
        // A refusal before the request could be handed over: a usage record once the key is
        // known, only counted before (as on the Anthropic routes).
        Err(e) => return to_bedrock(server::refuse(&dp, draft, e), op, None).await,
    };
    let operation = match op {
        Ingress::Invoke | Ingress::InvokeStream => Operation::Messages,
        Ingress::CountTokens => Operation::CountTokens,
    };
    let resp = server::handle(dp, operation, prepared.headers, Body::from(prepared.body)).await;
    to_bedrock(resp, op, prepared.report_model).await
}

/// Authenticates (before the body is read, as the Anthropic routes do), reads the body, decodes
/// the model id and makes the Anthropic request.
async fn prepare(
    dp: &DataPlane,
    op: Ingress,
    raw_model: &str,
    mut headers: HeaderMap,
    body: Body,
    draft: &mut Draft,
) -> Result<Prepared, ProxyError> {
    let Some(rt) = dp.runtime().load() else {
        return Err(server::not_ready());
    };
    let vk = server::authenticate(&rt, &headers, draft.record.started_at_unix_ms)?;
    draft.bill_to(&vk);
    let body = server::read_body(body, dp.config.max_body_bytes).await?;
    let invalid = |e: IngressError| ProxyError::invalid_request(e.to_string());
    let model = ingress::decode_model_segment(raw_model).map_err(invalid)?;
    // Before the model is routed, logged or put in a body.
    if let Err(e) = crate::model_id::check(&model) {
        return Err(ProxyError::new(
            ErrorKind::InvalidRequest,
            "invalid_model",
            e.to_string(),
        ));
    }
    let routed = routable_name(&rt, &vk, &model);
    let request = match op {
        Ingress::Invoke => ingress::invoke_request(&body, &routed, false),
        Ingress::InvokeStream => ingress::invoke_request(&body, &routed, true),
        Ingress::CountTokens => ingress::count_tokens_request(&body, &routed),
    }
    .map_err(invalid)?;
    merge_betas(&mut headers, &request.betas);
    // The Anthropic format versions by header; Claude Code sends it, other Bedrock clients not.
    headers
        .entry("anthropic-version")
        .or_insert(HeaderValue::from_static("2023-06-01"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    let report_model = (routed != model).then_some(model);
    Ok(Prepared {
        headers,
        body: Bytes::from(request.body),
        report_model,
    })
}

/// The name to route `model` (a path id) by: itself, unless it is a Bedrock id that routes
/// nowhere as a bare name and the key may use exactly one Bedrock provider, then
/// `<that provider>/<model>`.
fn routable_name(rt: &Runtime, vk: &VirtualKey, model: &str) -> String {
    if !matches!(
        routing::route(rt, vk, model, routing::Pick::Draw(0.0)),
        Err(RouteError::UnknownModel(_))
    ) || !is_bedrock_model_id(model)
    {
        return model.to_owned();
    }
    let mut bedrock = rt
        .providers
        .values()
        .filter(|p| p.kind == ProviderKind::Bedrock && vk.allows_provider(&p.name));
    match (bedrock.next(), bedrock.next()) {
        (Some(only), None) => format!("{}/{model}", only.name),
        _ => model.to_owned(),
    }
}

/// Adds the body's `anthropic_beta` values to the `anthropic-beta` header (after the header's
/// own values, each once). Claude Code sends both: some betas in the header, others in the body.
fn merge_betas(headers: &mut HeaderMap, body_betas: &[String]) {
    if body_betas.is_empty() {
        return;
    }
    let mut all: Vec<String> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    for beta in body_betas {
        let beta = beta.trim();
        if !beta.is_empty() && !all.iter().any(|b| b == beta) {
            all.push(beta.to_owned());
        }
    }
    // Beta names are tokens; one that is not a valid header value is dropped with the header.
    headers.remove("anthropic-beta");
    if let Ok(v) = HeaderValue::from_str(&all.join(",")) {
        headers.insert("anthropic-beta", v);
    }
}

/// The headers kept on a translated answer ([`server::kept_headers`]), and the request id as
/// AWS SDKs read it.
fn kept_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = server::kept_headers(from);
    if let Some(id) = from.get("request-id") {
        out.insert("x-amzn-requestid", id.clone());
    }
    out
}

/// A Bedrock error response: `{"message"}` with `x-amzn-ErrorType`.
fn bedrock_error(mut headers: HeaderMap, err: &BedrockError) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-amzn-errortype", HeaderValue::from_static(err.error_type));
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, err.to_json()).into_response()
}

/// The inference API's Anthropic-format answer, in Bedrock's format.
async fn to_bedrock(resp: Response, op: Ingress, report_model: Option<String>) -> Response {
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let mut headers = kept_headers(&parts.headers);
    if !status.is_success() {
        let bytes = server::read_body(body, MAX_ERROR_BODY)
            .await
            .ok()
            .unwrap_or_default();
        return bedrock_error(
            headers,
            &BedrockError::from_anthropic(status.as_u16(), &bytes),
        );
    }
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let failed = |headers, message: &str| {
        bedrock_error(headers, &BedrockError::new(ErrorKind::Api, message))
    };
    match op {
        Ingress::InvokeStream if is_sse => {
            let conv = match report_model {
                Some(model) => SseToEventStream::reporting_model(model),
                None => SseToEventStream::new(),
            };
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(EVENTSTREAM_CONTENT_TYPE),
            );
            headers.insert(
                "x-amzn-bedrock-content-type",
                HeaderValue::from_static("application/json"),
            );
            let body = Body::new(server::ReencodedBody::new(body, conv));
            (status, headers, body).into_response()
        }
        Ingress::InvokeStream => failed(headers, "the provider answered without a stream"),
        Ingress::Invoke => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let Some(model) = report_model else {
                return (status, headers, body).into_response();
            };
            let Some(bytes) = server::read_body(body, crate::providers::MAX_UPSTREAM_BODY)
                .await
                .ok()
            else {
                return failed(headers, "could not read the provider's answer");
            };
            let bytes = tollgate_protocol::response_model::set_message_model(&bytes, &model)
                .map(Bytes::from)
                .unwrap_or(bytes);
            (status, headers, bytes).into_response()
        }
        Ingress::CountTokens => {
            let answer = server::read_body(body, MAX_ERROR_BODY)
                .await
                .ok()
                .and_then(|b| ingress::count_tokens_answer(&b));
            match answer {
                Some(json) => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    (status, headers, json).into_response()
                }
                None => failed(headers, "the provider's token count could not be read"),
            }
        }
    }
}

/// Anthropic SSE → event-stream `chunk` frames ([`server::ReencodedBody`]).
impl server::Reencode for SseToEventStream {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        SseToEventStream::push(self, chunk)
    }
}

// === Inference profiles ===

/// One entry of `ListInferenceProfiles` (the fields Claude Code and the AWS SDKs read).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSummary {
    inference_profile_id: String,
    inference_profile_name: String,
    description: &'static str,
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    models: &'static [&'static str],
}

impl ProfileSummary {
    fn new(id: String) -> ProfileSummary {
        ProfileSummary {
            inference_profile_name: id.clone(),
            inference_profile_id: id,
            description: "served through the Tollgate gateway",
            status: "ACTIVE",
            kind: "SYSTEM_DEFINED",
            models: &[],
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileList {
    inference_profile_summaries: Vec<ProfileSummary>,
}

/// The system-defined inference profiles (`us.anthropic.…`, `global.anthropic.…`) the key may
/// use through a Bedrock provider: the alias names and targets and the named models of the
/// provider keys it may use, each kept only when the path id routes to that provider.
fn profile_ids(rt: &Runtime, vk: &VirtualKey) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in rt
        .providers
        .values()
        .filter(|p| p.kind == ProviderKind::Bedrock && vk.allows_provider(&p.name))
    {
        let config = vk.config(&p.name);
        for k in p
            .keys
            .iter()
            .filter(|k| config.is_none_or(|c| c.allows_key(&k.id)))
        {
            let mut names: Vec<&str> = k
                .aliases
                .iter()
                .flat_map(|(name, target)| [name.as_str(), target.as_ref()])
                .collect();
            if let ModelFilter::Only(only) = &k.models {
                names.extend(only.iter().map(String::as_str));
            }
            for name in names {
                if !ingress::is_system_profile_id(name) {
                    continue;
                }
                let routed = routable_name(rt, vk, name);
                let served_here = routing::route(rt, vk, &routed, routing::Pick::Draw(0.0))
                    .is_ok_and(|r| *r.provider.name == *p.name);
                if served_here {
                    out.push(name.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The caller of a profile look-up: runtime and key, or the refusal (in Bedrock's shape).
async fn profiles_caller(
    dp: &Arc<DataPlane>,
    headers: &HeaderMap,
) -> Result<(Arc<Runtime>, Arc<VirtualKey>, Draft), Response> {
    let draft = Draft::new(server::new_request_id());
    let Some(rt) = dp.runtime().load() else {
        let resp = server::refuse(dp, draft, server::not_ready());
        return Err(to_bedrock(resp, Ingress::Invoke, None).await);
    };
    match server::authenticate(&rt, headers, draft.record.started_at_unix_ms) {
        Ok(vk) => Ok((rt, vk, draft)),
        Err(e) => Err(to_bedrock(server::refuse(dp, draft, e), Ingress::Invoke, None).await),
    }
}

/// `GET /bedrock/inference-profiles` (`ListInferenceProfiles`; its query is not needed: one
/// page, system-defined profiles only). Claude Code in Bedrock mode calls it at start, without
/// any credential when `CLAUDE_CODE_SKIP_BEDROCK_AUTH=1` (it then gets the 403 and uses its
/// built-in model ids); with `AWS_BEARER_TOKEN_BEDROCK` and without skip-auth it sends the key.
async fn list_profiles(State(dp): State<Arc<DataPlane>>, headers: HeaderMap) -> Response {
    let (rt, vk, draft) = match profiles_caller(&dp, &headers).await {
        Ok(caller) => caller,
        Err(resp) => return resp,
    };
    let ids = profile_ids(&rt, &vk);
    tracing::info!(
        request_id = %draft.record.request_id,
        virtual_key_id = %vk.id,
        profiles = ids.len(),
        "inference profile list served"
    );
    Json(ProfileList {
        inference_profile_summaries: ids.into_iter().map(ProfileSummary::new).collect(),
    })
    .into_response()
}

/// `GET /bedrock/inference-profiles/{id}` (`GetInferenceProfile`): one profile of the list, else
/// 404 `ResourceNotFoundException` (Claude Code asks for application inference profile ARNs, to
/// learn their model; the gateway cannot tell, and Claude Code goes on without it).
async fn get_profile(
    State(dp): State<Arc<DataPlane>>,
    headers: HeaderMap,
    Path(profile_id): Path<String>,
) -> Response {
    let (rt, vk, _draft) = match profiles_caller(&dp, &headers).await {
        Ok(caller) => caller,
        Err(resp) => return resp,
    };
    if profile_ids(&rt, &vk).contains(&profile_id) {
        return Json(ProfileSummary::new(profile_id)).into_response();
    }
    bedrock_error(
        HeaderMap::new(),
        &BedrockError::new(
            ErrorKind::NotFound,
            format!(
                "inference profile {:?} is not one this virtual key may use",
                quote(&profile_id)
            ),
        ),
    )
}

#[cfg(test)]
pub(crate) mod tests;
