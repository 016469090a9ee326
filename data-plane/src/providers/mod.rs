//! Upstream calls: the I/O around the pure translations of `tollgate-protocol`.
//!
//! Each provider module turns a routed [`Call`] into one upstream request, relays the answer
//! (streams event by event) and completes the request's usage record.

pub mod anthropic;
pub mod bedrock;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::response::Response;
use http::HeaderMap;

use crate::DataPlane;
use crate::error::ProxyError;
use crate::runtime::{Provider, ProviderKey, ProviderKind, Runtime};
use crate::server::Draft;

/// Which inference operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Messages,
    CountTokens,
}

/// A routed request, ready to go upstream.
#[derive(Debug)]
pub struct Call {
    pub op: Operation,
    /// Keeps the runtime the request was routed with alive until it ends.
    pub runtime: Arc<Runtime>,
    pub provider: Arc<Provider>,
    pub key_index: usize,
    pub upstream_model: String,
    pub via_alias: bool,
    /// The `model` the client sent.
    pub model: String,
    pub stream: bool,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Call {
    pub fn key(&self) -> &ProviderKey {
        &self.provider.keys[self.key_index]
    }

    /// `anthropic-beta` values, split on commas and trimmed, across all header lines.
    pub fn betas(&self) -> Vec<&str> {
        self.headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect()
    }
}

/// Sends the call to its provider and returns the client's response. The usage record is
/// completed here for unary answers and by the relay task for streams.
pub async fn call(dp: Arc<DataPlane>, call: Call, draft: Draft) -> Response {
    match call.provider.kind {
        ProviderKind::Bedrock => bedrock::call(dp, call, draft).await,
        ProviderKind::Anthropic => anthropic::call(dp, call, draft).await,
    }
}

/// Ends a request with an error response and its usage record.
pub(crate) fn fail(dp: &DataPlane, draft: Draft, err: ProxyError) -> Response {
    tracing::warn!(
        request_id = %draft.record.request_id,
        provider = %draft.record.provider,
        status = err.status.as_u16(),
        error_class = err.class,
        message = %err.message,
        "request failed"
    );
    let status = err.status.as_u16();
    let class = err.class;
    let resp = err.into_response_with(&draft.record.request_id);
    draft.finish(dp, status, class);
    resp
}

/// Sends an upstream request; `timeout` bounds the time to response headers.
pub(crate) async fn send(
    provider: &Provider,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, ProxyError> {
    match tokio::time::timeout(timeout, req.send()).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(ProxyError::from_upstream(&provider.name, &e)),
        Err(_) => Err(ProxyError::new(
            tollgate_protocol::anthropic::ErrorKind::Timeout,
            "upstream_timeout",
            format!(
                "upstream {} sent no response within {} s",
                provider.name,
                timeout.as_secs()
            ),
        )
        .with_status(http::StatusCode::GATEWAY_TIMEOUT)),
    }
}

/// Reads a whole (non-streaming) upstream body, bounded in size and time.
pub(crate) async fn read_upstream_body(
    provider: &Provider,
    resp: reqwest::Response,
    timeout: Duration,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    use futures::StreamExt;
    let read = async {
        let expected = resp.content_length().unwrap_or(0).min(limit as u64) as usize;
        let mut out = Vec::with_capacity(expected);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ProxyError::from_upstream(&provider.name, &e))?;
            if out.len() + chunk.len() > limit {
                return Err(ProxyError::new(
                    tollgate_protocol::anthropic::ErrorKind::Api,
                    "upstream_too_large",
                    format!(
                        "upstream {} sent a response over {limit} bytes",
                        provider.name
                    ),
                )
                .with_status(http::StatusCode::BAD_GATEWAY));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::new(
            tollgate_protocol::anthropic::ErrorKind::Timeout,
            "upstream_timeout",
            format!(
                "upstream {} did not finish its response in time",
                provider.name
            ),
        )
        .with_status(http::StatusCode::GATEWAY_TIMEOUT)),
    }
}

/// The sending side of a relayed stream (the client's response body).
pub(crate) type RelaySender = tokio::sync::mpsc::Sender<Result<Bytes, std::convert::Infallible>>;

/// Chunks buffered between a relay task and the client connection: a slow client slows the
/// relay instead of growing a buffer.
const RELAY_QUEUE: usize = 16;

/// A bounded channel whose receiving side is the client's response body.
pub(crate) fn relay_channel() -> (RelaySender, axum::body::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(RELAY_QUEUE);
    (
        tx,
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
}

/// Ends a relayed stream with an Anthropic `error` event (the client may already be gone) and
/// returns the outcome for the usage record.
pub(crate) async fn end_stream(
    tx: &RelaySender,
    kind: tollgate_protocol::anthropic::ErrorKind,
    status: u16,
    class: &'static str,
    message: String,
) -> (u16, &'static str) {
    let event = tollgate_protocol::anthropic::ApiError {
        kind,
        status,
        message,
    };
    let _ = tx.send(Ok(event.to_sse())).await;
    (status, class)
}

/// Largest non-streaming upstream response accepted.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
