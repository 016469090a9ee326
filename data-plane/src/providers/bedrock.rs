//! Bedrock InvokeModel / InvokeModelWithResponseStream / CountTokens with the native Anthropic
//! body, signed with SigV4 (or a Bedrock API key as a bearer token).
//!
//! Streams are decoded frame by frame as bytes arrive and every event is written to the client
//! at once as Anthropic SSE. Bedrock sends no keep-alives, so after `sse_ping_interval` of
//! silence the relay sends its own `ping` event; Claude Code aborts streams silent for 300 s.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use tollgate_protocol::anthropic::{ApiError, ErrorKind};
use tollgate_protocol::bedrock::{self as translate, StreamTranslator};
use tollgate_protocol::{eventstream, sse};

use super::{
    Call, MAX_UPSTREAM_BODY, Operation, RelaySender, end_stream, fail, read_upstream_body,
    relay_channel, send,
};
use crate::DataPlane;
use crate::error::{ProxyError, error_response};
use crate::runtime::KeyCredential;
use crate::server::Draft;
use crate::signing::{BedrockCredential, sign_request};

/// Headers that are signed and sent with every Bedrock request (besides `host`, `x-amz-date`
/// and, with temporary credentials, `x-amz-security-token`).
const SIGNED_HEADERS: [(&str, &str); 2] = [
    ("accept", "application/json"),
    ("content-type", "application/json"),
];

pub(crate) async fn call(dp: Arc<DataPlane>, c: Call, draft: Draft) -> Response {
    let mut resp = match prepare_and_send(&dp, &c).await {
        Ok(r) => r,
        Err(e) => return fail(&dp, draft, e),
    };
    // Cached credentials (default chain, assumed role) may have been revoked or rotated since
    // they were fetched: when Bedrock rejects them, fetch fresh ones and retry once.
    if let KeyCredential::Bedrock(auth) = &c.key().credential
        && auth.is_cached()
        && credential_rejected(&resp)
    {
        tracing::warn!(
            request_id = %draft.record.request_id,
            provider_key = %c.key().name,
            "Bedrock rejected cached credentials; refreshing them and retrying once"
        );
        auth.invalidate();
        resp = match prepare_and_send(&dp, &c).await {
            Ok(r) => r,
            Err(e) => return fail(&dp, draft, e),
        };
    }
    forward(dp, c, draft, resp).await
}

/// Whether an upstream answer says the credentials themselves are bad (not the request).
fn credential_rejected(resp: &reqwest::Response) -> bool {
    if !matches!(resp.status().as_u16(), 400 | 401 | 403) {
        return false;
    }
    let error_type = resp
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(translate::sanitize_error_type)
        .unwrap_or_default();
    matches!(
        error_type,
        "ExpiredTokenException"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
    )
}

async fn prepare_and_send(dp: &DataPlane, c: &Call) -> Result<reqwest::Response, ProxyError> {
    let req = prepare(dp, c).await?;
    send(&c.provider, req, c.provider.request_timeout).await
}

fn body_error(e: translate::BodyError) -> ProxyError {
    ProxyError::invalid_request(e.to_string())
}

fn config_error(message: String) -> ProxyError {
    ProxyError::new(ErrorKind::Api, "gateway_config", message)
}

async fn prepare(dp: &DataPlane, c: &Call) -> Result<reqwest::RequestBuilder, ProxyError> {
    let key = c.key();
    let KeyCredential::Bedrock(auth) = &key.credential else {
        return Err(config_error(format!(
            "provider key {:?} has no Bedrock credentials",
            key.name
        )));
    };
    let betas = c.betas();
    let (operation, body) = match (c.op, c.stream) {
        (Operation::CountTokens, _) => (
            "count-tokens",
            translate::count_tokens_body(&c.body, &betas).map_err(body_error)?,
        ),
        (Operation::Messages, stream) => {
            let invoke = translate::invoke_body(&c.body, &betas).map_err(body_error)?;
            if !invoke.dropped_betas.is_empty() {
                tracing::debug!(dropped = ?invoke.dropped_betas, "anthropic-beta values Bedrock does not accept were not forwarded");
            }
            (
                if stream {
                    "invoke-with-response-stream"
                } else {
                    "invoke"
                },
                invoke.body,
            )
        }
    };
    let mut model_id = std::borrow::Cow::Borrowed(c.upstream_model.as_str());
    if let Some(prefix) = &auth.arn_prefix
        && c.via_alias
        && !model_id.starts_with("arn:")
    {
        model_id = format!("{prefix}:{model_id}").into();
    }
    if c.op == Operation::CountTokens {
        model_id = translate::count_tokens_model_id(&model_id)
            .to_owned()
            .into();
    }
    let region = auth.region().map_err(|e| config_error(e.to_string()))?;
    let url = match &c.provider.base_url {
        Some(base) => format!(
            "{base}/model/{}/{operation}",
            translate::model_path_segment(&model_id)
        ),
        None => format!(
            "https://bedrock-runtime.{region}.amazonaws.com/model/{}/{operation}",
            translate::model_path_segment(&model_id)
        ),
    };
    let credential = auth
        .credential()
        .await
        .map_err(|e| config_error(format!("Bedrock credentials unavailable: {e}")))?;
    let client = dp.client(c.provider.connect_timeout);
    let mut req = client.post(&url);
    for (name, value) in SIGNED_HEADERS {
        req = req.header(name, value);
    }
    match credential {
        BedrockCredential::Bearer(token) => req = req.bearer_auth(&*token),
        BedrockCredential::SigV4(creds) => {
            let signed = sign_request(
                &creds,
                &region,
                SystemTime::now(),
                "POST",
                &url,
                &SIGNED_HEADERS,
                &body,
            )
            .map_err(|e| config_error(e.to_string()))?;
            for (name, value) in signed {
                req = req.header(name, value);
            }
        }
    }
    for (name, value) in &c.provider.extra_headers {
        req = req.header(name, value);
    }
    Ok(req.body(body))
}

async fn forward(dp: Arc<DataPlane>, c: Call, draft: Draft, resp: reqwest::Response) -> Response {
    let provider = &c.provider;
    let status = resp.status();
    if !status.is_success() {
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_upstream_body(provider, resp, provider.request_timeout, MAX_UPSTREAM_BODY)
            .await
            .unwrap_or_default();
        let api = translate::map_error(status.as_u16(), error_type.as_deref(), &body);
        return upstream_error(&dp, draft, &api);
    }
    if c.stream {
        return relay_stream(dp, &c, draft, resp);
    }
    let body = match read_upstream_body(provider, resp, provider.request_timeout, MAX_UPSTREAM_BODY)
        .await
    {
        Ok(b) => b,
        Err(e) => return fail(&dp, draft, e),
    };
    let body = match c.op {
        Operation::CountTokens => match translate::count_tokens_response(&body) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return fail(
                    &dp,
                    draft,
                    ProxyError::new(
                        ErrorKind::Api,
                        "upstream_invalid",
                        format!("Bedrock count-tokens answer not understood: {e}"),
                    )
                    .with_status(StatusCode::BAD_GATEWAY),
                );
            }
        },
        Operation::Messages => body,
    };
    let mut draft = draft;
    if c.op == Operation::Messages
        && let Some(u) = tollgate_protocol::anthropic::usage_from_message(&body)
    {
        draft.set_usage(&u);
    }
    draft.record.time_to_first_token_ms =
        u32::try_from(draft.started.elapsed().as_millis()).unwrap_or(u32::MAX);
    let request_id = draft.record.request_id.clone();
    draft.finish(&dp, 200, "");
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    resp
}

fn upstream_error(dp: &DataPlane, draft: Draft, api: &ApiError) -> Response {
    tracing::warn!(
        request_id = %draft.record.request_id,
        status = api.status,
        error_type = api.kind.as_str(),
        message = %api.message,
        "Bedrock returned an error"
    );
    let resp = error_response(api, &draft.record.request_id, false);
    draft.finish(dp, api.status, "upstream_error");
    resp
}

/// Starts the relay task and returns the SSE response it feeds.
fn relay_stream(
    dp: Arc<DataPlane>,
    c: &Call,
    draft: Draft,
    upstream: reqwest::Response,
) -> Response {
    let (tx, body) = relay_channel();
    let request_id = draft.record.request_id.clone();
    let idle = c.provider.stream_idle_timeout;
    let ping = dp.config.sse_ping_interval;
    tokio::spawn(async move {
        let (status, class, draft) = relay(upstream, &tx, draft, idle, ping).await;
        draft.finish(&dp, status, class);
    });
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v);
    }
    resp
}

/// Relays one Bedrock event stream to the client. Returns the outcome for the usage record.
async fn relay(
    upstream: reqwest::Response,
    tx: &RelaySender,
    mut draft: Draft,
    idle: std::time::Duration,
    ping: std::time::Duration,
) -> (u16, &'static str, Draft) {
    let mut body = upstream.bytes_stream();
    let mut decoder = eventstream::Decoder::new();
    let mut translator = StreamTranslator::new();
    let mut last_upstream = Instant::now();
    let mut last_sent = Instant::now();
    let (status, class) = 'relay: loop {
        let ping_at = tokio::time::Instant::from_std(last_sent + ping);
        let idle_at = tokio::time::Instant::from_std(last_upstream + idle);
        tokio::select! {
            biased;
            () = tx.closed() => break 'relay (499, "client_closed"),
            next = tokio::time::timeout_at(idle_at, body.next()) => {
                let chunk = match next {
                    Err(_) => {
                        break 'relay end_stream(tx, ErrorKind::Timeout, 504, "upstream_idle_timeout", format!("upstream stream was silent for {} s", idle.as_secs())).await;
                    }
                    Ok(None) => {
                        if let Err(e) = decoder.finish().map_err(|e| e.to_string()).and_then(|()| translator.finish().map_err(|e| e.to_string())) {
                            break 'relay end_stream(tx, ErrorKind::Api, 502, "upstream_truncated", format!("upstream stream ended early: {e}")).await;
                        }
                        break 'relay (200, "");
                    }
                    Ok(Some(Err(e))) => {
                        break 'relay end_stream(tx, ErrorKind::Api, 502, "upstream_read", format!("lost the upstream stream: {e}")).await;
                    }
                    Ok(Some(Ok(chunk))) => chunk,
                };
                last_upstream = Instant::now();
                decoder.push(&chunk);
                loop {
                    let message = match decoder.next_message() {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(e) => {
                            break 'relay end_stream(tx, ErrorKind::Api, 502, "upstream_corrupt", format!("corrupt upstream event stream: {e}")).await;
                        }
                    };
                    let out = match translator.on_message(&message) {
                        Ok(out) => out,
                        Err(e) => {
                            break 'relay end_stream(tx, ErrorKind::Api, 502, "upstream_invalid", format!("upstream event not understood: {e}")).await;
                        }
                    };
                    if !out.is_empty() {
                        draft.mark_first_output();
                        if tx.send(Ok(out)).await.is_err() {
                            break 'relay (499, "client_closed");
                        }
                        last_sent = Instant::now();
                    }
                    if let Some(exception) = translator.terminal_error() {
                        break 'relay (exception.status, "upstream_stream_exception");
                    }
                }
            }
            () = tokio::time::sleep_until(ping_at) => {
                if tx.send(Ok(Bytes::from_static(sse::PING))).await.is_err() {
                    break 'relay (499, "client_closed");
                }
                last_sent = Instant::now();
            }
        }
    };
    if let Some(u) = translator.usage() {
        draft.set_usage(&u);
    }
    (status, class, draft)
}
