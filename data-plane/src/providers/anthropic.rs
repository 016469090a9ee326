//! The Anthropic API: native pass-through of the body and the `anthropic-*` headers, with the
//! provider key as `x-api-key`. Only the top-level `model` is rewritten, and only when routing
//! changed it. Answers (errors included) are relayed unmodified; streams are relayed chunk by
//! chunk while an SSE parser watches them for usage.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, header};
use tollgate_protocol::anthropic::{ErrorKind, UsageTracker};
use tollgate_protocol::sse::SseParser;

use super::{
    Call, MAX_UPSTREAM_BODY, Operation, end_stream, fail, read_upstream_body, relay_channel, send,
};
use crate::DataPlane;
use crate::error::ProxyError;
use crate::runtime::KeyCredential;
use crate::server::Draft;

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const DEFAULT_VERSION: &str = "2023-06-01";

pub(crate) async fn call(dp: Arc<DataPlane>, c: Call, draft: Draft) -> Response {
    match prepare(&dp, &c) {
        Ok(req) => forward(dp, c, draft, req).await,
        Err(e) => fail(&dp, draft, e),
    }
}

fn prepare(dp: &DataPlane, c: &Call) -> Result<reqwest::RequestBuilder, ProxyError> {
    let KeyCredential::AnthropicApiKey(api_key) = &c.key().credential else {
        return Err(ProxyError::new(
            ErrorKind::Api,
            "gateway_config",
            "provider key has no API key",
        ));
    };
    let api_key = api_key
        .resolve()
        .map_err(|e| ProxyError::new(ErrorKind::Api, "gateway_config", e.to_string()))?;
    let base = c.provider.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
    let path = match c.op {
        Operation::Messages => "/v1/messages",
        Operation::CountTokens => "/v1/messages/count_tokens",
    };
    let body = if c.upstream_model == c.model {
        c.body.clone()
    } else {
        Bytes::from(
            tollgate_protocol::anthropic::set_model(&c.body, &c.upstream_model)
                .map_err(|e| ProxyError::invalid_request(e.to_string()))?,
        )
    };
    let mut req = dp
        .client(c.provider.connect_timeout)
        .post(format!("{base}{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-api-key", &*api_key);
    let mut has_version = false;
    for (name, value) in &c.headers {
        let n = name.as_str();
        if n.starts_with("anthropic-") {
            has_version |= n == "anthropic-version";
            req = req.header(name, value);
        }
    }
    if !has_version {
        req = req.header("anthropic-version", DEFAULT_VERSION);
    }
    for (name, value) in &c.provider.extra_headers {
        req = req.header(name, value);
    }
    Ok(req.body(body))
}

async fn forward(
    dp: Arc<DataPlane>,
    c: Call,
    mut draft: Draft,
    req: reqwest::RequestBuilder,
) -> Response {
    let provider = &c.provider;
    let upstream = match send(provider, req, provider.request_timeout).await {
        Ok(r) => r,
        Err(e) => return fail(&dp, draft, e),
    };
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    // Headers clients act on: request id, retry advice and rate-limit state.
    let relayed: Vec<(http::HeaderName, HeaderValue)> = upstream
        .headers()
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n == "request-id"
                || n == "retry-after"
                || n == "retry-after-ms"
                || n == "x-should-retry"
                || n.starts_with("anthropic-")
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let is_sse = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = if status.is_success() && is_sse {
        relay_stream(dp, provider.stream_idle_timeout, draft, upstream)
    } else {
        let bytes = match read_upstream_body(
            provider,
            upstream,
            provider.request_timeout,
            MAX_UPSTREAM_BODY,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return fail(&dp, draft, e),
        };
        if status.is_success()
            && c.op == Operation::Messages
            && let Some(u) = tollgate_protocol::anthropic::usage_from_message(&bytes)
        {
            draft.set_usage(&u);
        }
        let class = if status.is_success() {
            ""
        } else {
            "upstream_error"
        };
        draft.finish(&dp, status.as_u16(), class);
        Body::from(bytes)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    for (name, value) in relayed {
        h.append(name, value);
    }
    resp
}

fn relay_stream(
    dp: Arc<DataPlane>,
    idle: std::time::Duration,
    mut draft: Draft,
    upstream: reqwest::Response,
) -> Body {
    let (tx, body_out) = relay_channel();
    tokio::spawn(async move {
        let mut body = upstream.bytes_stream();
        let mut parser = SseParser::new();
        let mut usage = UsageTracker::default();
        let (status, class) = loop {
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    let message = format!("upstream stream was silent for {} s", idle.as_secs());
                    break end_stream(
                        &tx,
                        ErrorKind::Timeout,
                        504,
                        "upstream_idle_timeout",
                        message,
                    )
                    .await;
                }
                Ok(None) => break (200, ""),
                Ok(Some(Err(e))) => {
                    let message = format!("lost the upstream stream: {e}");
                    break end_stream(&tx, ErrorKind::Api, 502, "upstream_read", message).await;
                }
                Ok(Some(Ok(chunk))) => {
                    draft.mark_first_output();
                    parser.push(&chunk);
                    while let Some(event) = parser.next_event() {
                        usage.observe_sse(&event);
                    }
                    if tx.send(Ok(chunk)).await.is_err() {
                        break (499, "client_closed");
                    }
                }
            }
        };
        if let Some(u) = usage.usage() {
            draft.set_usage(&u);
        }
        draft.finish(&dp, status, class);
    });
    body_out
}
