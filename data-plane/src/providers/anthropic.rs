//! The Anthropic API: native pass-through of the body and the `anthropic-*` headers, with the
//! provider key as `x-api-key`. Only the top-level `model` is rewritten, and only when routing
//! changed it; then the answer's `message.model` (the body's, or the stream's `message_start`)
//! is set back to the name the client asked for. Everything else in the answers (errors
//! included) is relayed unmodified; streams are relayed chunk by chunk while an SSE parser
//! watches them for usage and for `error` events, which are logged at warn. Vertex AI's answers
//! are relayed here too (`super::vertex` sends them).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use tollgate_protocol::anthropic::UsageTracker;
use tollgate_protocol::response_model::{MessageAnswer, SseModelRewriter, read_message};
use tollgate_protocol::sse::{SseEvent, SseParser};

use super::{
    Call, End, MAX_UPSTREAM_BODY, Operation, Outcome, RelayBody, Step, StreamTranslation,
    UpstreamResponse, config_error, fail, name_served_by,
};
use crate::DataPlane;
use crate::error::ProxyError;
use crate::runtime::{KeyCredential, ProviderKind};
use crate::server::Draft;
use crate::upstream;

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const DEFAULT_VERSION: &str = "2023-06-01";

/// One attempt: the request built and sent; the answer's body is not read.
pub(crate) async fn send(c: &Call<'_>) -> Outcome {
    let req = prepare(c)?;
    c.provider
        .client
        .send(&c.provider.name, req, c.head_timeout())
        .await
}

fn prepare(c: &Call<'_>) -> Result<Request<Full<Bytes>>, ProxyError> {
    let KeyCredential::AnthropicApiKey(api_key) = &c.key().credential else {
        return Err(config_error("provider key has no API key"));
    };
    let api_key = api_key
        .resolve()
        .map_err(|e| super::setting_unavailable("API key", e))?;
    let base = c.provider.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
    let path = match c.op {
        Operation::Messages => "/v1/messages",
        Operation::CountTokens => "/v1/messages/count_tokens",
    };
    let body = if c.upstream_model == c.parsed.model {
        c.body.clone()
    } else {
        Bytes::from(tollgate_protocol::anthropic::set_model_parsed(
            c.parsed,
            &c.upstream_model,
        ))
    };
    let uri = upstream::parse_url(&format!("{base}{path}"))?;
    let mut headers = http::HeaderMap::with_capacity(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut key = HeaderValue::try_from(&*api_key)
        .map_err(|_| config_error("the Anthropic API key is not a valid header value"))?;
    key.set_sensitive(true);
    headers.insert("x-api-key", key);
    let mut has_version = false;
    for (name, value) in &c.headers {
        let n = name.as_str();
        if n.starts_with("anthropic-") {
            has_version |= n == "anthropic-version";
            headers.append(name, value.clone());
        }
    }
    if !has_version {
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(DEFAULT_VERSION),
        );
    }
    let extra_headers = c
        .provider
        .extra_headers
        .resolve()
        .map_err(|e| super::setting_unavailable("extra headers", e))?;
    Ok(upstream::post(uri, headers, &extra_headers, body))
}

/// The client's response to an answer: relayed as it is (streams chunk by chunk), with the
/// model renamed back when routing changed it.
pub(crate) async fn respond(
    dp: Arc<DataPlane>,
    c: Call<'_>,
    mut draft: Draft,
    upstream: UpstreamResponse,
) -> Response {
    let provider = &c.provider;
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
    // Routing changed the model: the answer reports the name the client asked for.
    let renamed = (c.upstream_model != c.parsed.model).then_some(c.parsed.model.as_str());
    let body = if status.is_success() && is_sse {
        Body::new(RelayBody::new(
            Arc::clone(&dp),
            upstream.into_body(),
            renamed.map_or_else(SseWatch::default, SseWatch::renaming),
            draft,
            provider.stream_idle_timeout,
            None,
        ))
    } else {
        let bytes = match upstream::read_body(
            &provider.name,
            upstream,
            c.body_timeout(),
            MAX_UPSTREAM_BODY,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return fail(&dp, draft, e),
        };
        // A Message answer is read once: its usage, and its `model` set back to the requested
        // name when routing changed it. Errors are relayed untouched.
        let answer = if status.is_success() && c.op == Operation::Messages {
            read_message(&bytes, renamed)
        } else {
            MessageAnswer::default()
        };
        if let Some(u) = &answer.usage {
            draft.set_usage(u);
        }
        // Vertex answers failures before the model ran in Google's envelope.
        if !status.is_success()
            && c.provider.kind == ProviderKind::Vertex
            && let Some(e) = tollgate_protocol::vertex::map_error(status.as_u16(), &bytes)
        {
            let json = e.to_json();
            draft.capture_response(&json);
            draft.finish(&dp, e.status, "upstream_error");
            let mut resp = Response::new(Body::from(json));
            *resp.status_mut() =
                http::StatusCode::from_u16(e.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            for (name, value) in relayed {
                h.append(name, value);
            }
            name_served_by(h, &c);
            return resp;
        }
        let class = if status.is_success() {
            ""
        } else {
            "upstream_error"
        };
        let body = answer.body.map_or(bytes, Bytes::from);
        draft.capture_response(&body);
        draft.finish(&dp, status.as_u16(), class);
        Body::from(body)
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
    name_served_by(h, &c);
    resp
}

/// Anthropic's own SSE, relayed chunk by chunk as it arrives while a parser watches it for
/// usage and `error` events (Anthropic sends its own pings). With `rename`, the first
/// `message_start` reports the requested model name; every other byte is relayed as received.
#[derive(Default)]
pub(crate) struct SseWatch {
    parser: SseParser,
    usage: UsageTracker,
    rename: Option<SseModelRewriter>,
}

impl SseWatch {
    /// A watch that also sets `message.model` of the first `message_start` to `model`.
    pub(crate) fn renaming(model: &str) -> SseWatch {
        SseWatch {
            rename: Some(SseModelRewriter::new(model)),
            ..SseWatch::default()
        }
    }
}

/// An Anthropic `error` event: how the stream ends for the log and the usage record.
fn upstream_error_event(event: &SseEvent) -> End {
    let e = tollgate_protocol::anthropic::ApiError::read(500, event.data.as_bytes());
    End::Upstream {
        status: e.kind.status(),
        error_type: e.kind.as_str(),
        message: e.message,
    }
}

impl StreamTranslation for SseWatch {
    fn on_chunk(&mut self, chunk: &Bytes) -> Step {
        self.parser.push(chunk);
        let mut end = None;
        while let Some(event) = self.parser.next_event() {
            if event.event.as_deref() == Some("error") {
                end = Some(upstream_error_event(&event));
            } else {
                self.usage.observe_sse(&event);
            }
        }
        let out = match &mut self.rename {
            Some(rename) => rename.push(chunk),
            None => chunk.clone(),
        };
        Step { out, end }
    }

    /// Anthropic streams are relayed as they come: bytes still held by the model rewrite (a
    /// stream that ended inside its first event) go out as they are.
    fn on_end(&mut self) -> Result<Bytes, String> {
        Ok(self
            .rename
            .as_mut()
            .map(SseModelRewriter::finish)
            .unwrap_or_default())
    }

    fn usage(&self) -> Option<tollgate_protocol::anthropic::Usage> {
        self.usage.usage()
    }
}
