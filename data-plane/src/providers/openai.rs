//! OpenAI-compatible upstreams (OpenAI itself, vLLM, Ollama, LM Studio, another gateway) behind
//! Anthropic-format clients: the Messages request becomes a Chat Completions request, and the
//! answer (stream included) becomes an Anthropic Message or Anthropic SSE again. The
//! translations are the pure [`tollgate_protocol::openai::chat_egress`] (its module docs have
//! the field-by-field tables, what is dropped and why); this module is the I/O around them.
//!
//! **Request.** `POST {base}/chat/completions`, where `base` is the provider's
//! `network.base_url` (the API root *including* `/v1`: `http://127.0.0.1:8000/v1` for vLLM,
//! `http://127.0.0.1:11434/v1` for Ollama) or, by default, [`DEFAULT_BASE_URL`]. Headers:
//! `content-type: application/json`, `accept: text/event-stream` for streams (else
//! `application/json`), `Authorization: Bearer <key>` (marked sensitive: never logged, kept out
//! of HPACK tables) when the provider key has a value (a key without one sends no
//! `Authorization`: local servers need none), then the provider's extra headers. No header of the
//! client's is forwarded (`anthropic-*` mean nothing upstream). The body is
//! [`chat_egress::request`] with the routed upstream model; what it dropped (thinking, server
//! tools, `cache_control`, unknown members, …) is logged once per request at debug.
//!
//! **The output limit's name.** OpenAI's own API takes `max_completion_tokens` and its reasoning
//! models (o-series, GPT-5) refuse `max_tokens`; most compatible servers (vLLM, Ollama, LM
//! Studio, older gateways) only know `max_tokens`. So the field is `max_completion_tokens` when
//! the provider talks to OpenAI (no `base_url`, or one on `api.openai.com`) and `max_tokens`
//! otherwise ([`max_tokens_field`]).
//!
//! **count_tokens.** Chat Completions has no way to count a prompt without running it. A
//! count_tokens request routed here is answered by the gateway, without an upstream call, with
//! 501 `api_error` and `x-should-retry: false` (class `not_supported`, logged at debug): the
//! answer Claude Code's own gateway gives when an upstream cannot count. Claude Code (2.1.331)
//! then estimates the count locally, or, in gateway-credential mode, counts with a minimal
//! billed Messages request, which this provider serves. The Anthropic SDKs raise it to the
//! caller without retrying. It is not retryable: no other key or fallback is tried.
//!
//! **Answers.** A stream is relayed chunk by chunk as it arrives (`RelayBody` with
//! `ChatSse`, which wraps [`ChatToAnthropic`]): its usage comes from the final usage chunk
//! (`stream_options.include_usage` is always asked for); an error chunk becomes an Anthropic
//! `error` event that ends the stream (`End::Upstream`); a chunk that cannot be read ends it
//! with a 502 `api_error` event; the gateway's `ping` events cover silences (OpenAI sends none
//! while a reasoning model thinks). A non-streaming answer is read (bounded, within what is left
//! of the request timeout) and translated with [`chat_egress::message`]; its usage is recorded.
//! Both report the model name the client asked for; the `x-tollgate-*` headers name the
//! provider, key and upstream model. Errors (any non-2xx) are read and mapped by
//! [`chat_egress::error`] into Anthropic's envelope with the status's kind (`401` →
//! `authentication_error`, `429` → `rate_limit_error`, a context-length error worded so Claude
//! Code compacts), `retry-after` and `retry-after-ms` kept; a redirect (never followed) or
//! another status that is not an error becomes a 502 `api_error`. 401/403, 429 and 5xx are
//! retryable like every provider's ([`super::Retryable`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::Full;
use tollgate_protocol::anthropic::ErrorKind;
use tollgate_protocol::openai::chat_egress::{
    self, ChatToAnthropic, MaxTokensField, RequestOptions,
};

use super::{
    Call, End, MAX_UPSTREAM_BODY, Operation, Outcome, Step, StreamTranslation, UpstreamResponse,
    config_error, fail, name_served_by,
};
use crate::DataPlane;
use crate::error::{ProxyError, error_response};
use crate::logsafe::log_safe;
use crate::runtime::KeyCredential;
use crate::server::Draft;
use crate::upstream;

/// OpenAI's API root, used when the provider has no `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Error class of a count_tokens request refused because the upstream cannot count.
pub const NOT_SUPPORTED_CLASS: &str = "not_supported";

/// Headers of an upstream error kept in the client's answer: its retry advice.
const RELAYED_ERROR_HEADERS: [&str; 2] = ["retry-after", "retry-after-ms"];

/// One attempt: the request translated and sent; the answer's body is not read.
pub(crate) async fn send(c: &Call<'_>, request_id: &str) -> Outcome {
    let req = prepare(c, request_id)?;
    c.provider
        .client
        .send(&c.provider.name, req, c.head_timeout())
        .await
}

/// The name of the output limit for a provider at `base_url` (`None`: OpenAI's default):
/// `max_completion_tokens` for OpenAI's own API, `max_tokens` for every other server.
pub fn max_tokens_field(base_url: Option<&str>) -> MaxTokensField {
    let Some(base) = base_url else {
        return MaxTokensField::MaxCompletionTokens;
    };
    let host = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or_default();
    if host.eq_ignore_ascii_case("api.openai.com") {
        MaxTokensField::MaxCompletionTokens
    } else {
        MaxTokensField::MaxTokens
    }
}

/// The gateway's answer to count_tokens on an upstream that cannot count (see the module docs).
fn count_tokens_not_supported() -> ProxyError {
    let mut e = ProxyError::new(
        ErrorKind::Api,
        NOT_SUPPORTED_CLASS,
        "count_tokens is not available for this model: its provider is an OpenAI-compatible \
         API, which cannot count tokens without running the model",
    )
    .with_status(StatusCode::NOT_IMPLEMENTED);
    e.no_retry = true;
    e
}

fn prepare(c: &Call<'_>, request_id: &str) -> Result<Request<Full<Bytes>>, ProxyError> {
    if c.op == Operation::CountTokens {
        return Err(count_tokens_not_supported());
    }
    let KeyCredential::OpenAiApiKey(api_key) = &c.key().credential else {
        return Err(config_error(
            "the provider key has no OpenAI API key setting",
        ));
    };
    let base = c.provider.base_url.as_deref();
    let opts = RequestOptions {
        max_tokens_field: max_tokens_field(base),
        stream: c.stream,
    };
    let translated = chat_egress::request(c.parsed, &c.upstream_model, &opts).map_err(|e| {
        let api = e.to_api_error();
        ProxyError::new(api.kind, "invalid_request", api.message)
    })?;
    if !translated.dropped.is_empty() {
        // Member names come from the client: escaped and cut like any text the gateway did not
        // write.
        tracing::debug!(
            request_id = %request_id,
            model = %log_safe(&c.upstream_model),
            dropped = %log_safe(&translated.dropped.join(", ")),
            "parts of the request Chat Completions cannot carry were not sent"
        );
    }
    let uri = upstream::parse_url(&format!(
        "{}/chat/completions",
        base.unwrap_or(DEFAULT_BASE_URL)
    ))?;
    let mut headers = http::HeaderMap::with_capacity(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(if c.stream {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    if let Some(api_key) = api_key {
        let api_key = api_key
            .resolve()
            .map_err(|e| super::setting_unavailable("API key", e))?;
        let mut value = HeaderValue::try_from(format!("Bearer {api_key}"))
            .map_err(|_| config_error("the OpenAI API key is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    let extra_headers = c
        .provider
        .extra_headers
        .resolve()
        .map_err(|e| super::setting_unavailable("extra headers", e))?;
    Ok(upstream::post(
        uri,
        headers,
        &extra_headers,
        Bytes::from(translated.body),
    ))
}

/// The client's response to an answer: errors mapped to Anthropic's envelope, answers
/// translated (streams chunk by chunk).
pub(crate) async fn respond(
    dp: Arc<DataPlane>,
    c: Call<'_>,
    mut draft: Draft,
    upstream: UpstreamResponse,
) -> Response {
    let provider = &c.provider;
    let status = upstream.status();
    if !status.is_success() {
        let kept: Vec<(http::HeaderName, HeaderValue)> = upstream
            .headers()
            .iter()
            .filter(|(name, _)| RELAYED_ERROR_HEADERS.contains(&name.as_str()))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        // An error body that cannot be read still gets the status's kind and a generic message.
        let body = upstream::read_body(
            &provider.name,
            upstream,
            c.body_timeout(),
            MAX_UPSTREAM_BODY,
        )
        .await
        .unwrap_or_default();
        let mut api = chat_egress::error(status.as_u16(), &body);
        if !(400..=599).contains(&api.status) {
            // A redirect (never followed) or another non-error status: not an answer a client
            // can use, and not relayed as such.
            api.kind = ErrorKind::Api;
            api.status = StatusCode::BAD_GATEWAY.as_u16();
        }
        tracing::warn!(
            request_id = %draft.record.request_id,
            provider = %draft.record.provider,
            status = api.status,
            error_type = api.kind.as_str(),
            message = %log_safe(&api.message),
            "OpenAI-compatible upstream returned an error"
        );
        let mut resp = error_response(&api, &draft.record.request_id, false);
        let h = resp.headers_mut();
        for (name, value) in kept {
            h.insert(name, value);
        }
        name_served_by(h, &c);
        draft.capture_error(&api);
        draft.finish(&dp, api.status, "upstream_error");
        return resp;
    }
    if c.stream {
        let is_sse = upstream
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !is_sse {
            return fail(
                &dp,
                draft,
                ProxyError::new(
                    ErrorKind::Api,
                    "upstream_invalid",
                    "the OpenAI-compatible upstream answered a streaming request without an \
                     event stream",
                )
                .with_status(StatusCode::BAD_GATEWAY),
            );
        }
        let translation = ChatSse {
            translator: ChatToAnthropic::new(&c.parsed.model),
        };
        return super::translated_stream(dp, &c, draft, upstream, translation);
    }
    let body = match upstream::read_body(
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
    let message = match chat_egress::message(&body, &c.parsed.model) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                &dp,
                draft,
                ProxyError::new(
                    ErrorKind::Api,
                    "upstream_invalid",
                    "the OpenAI-compatible upstream's answer could not be translated",
                )
                .with_status(StatusCode::BAD_GATEWAY)
                .with_detail(e.to_string()),
            );
        }
    };
    if let Some(u) = tollgate_protocol::anthropic::usage_from_message(&message) {
        draft.set_usage(&u);
    }
    super::message_answer(&dp, &c, draft, Bytes::from(message))
}

/// A Chat Completions SSE stream as Anthropic SSE: every event a chunk completes goes out at
/// once.
pub(crate) struct ChatSse {
    translator: ChatToAnthropic,
}

impl ChatSse {
    fn upstream_error(&self) -> Option<End> {
        self.translator.terminal_error().map(|e| End::Upstream {
            status: e.status,
            error_type: e.kind.as_str(),
            message: e.message.clone(),
        })
    }
}

impl StreamTranslation for ChatSse {
    fn on_chunk(&mut self, chunk: &Bytes) -> Step {
        match self.translator.push(chunk) {
            Ok(out) => Step {
                out,
                end: self.upstream_error(),
            },
            Err(e) => Step {
                out: Bytes::new(),
                end: Some(End::bad_gateway(
                    "upstream_invalid",
                    format!("upstream stream not understood: {e}"),
                )),
            },
        }
    }

    fn on_end(&mut self) -> Result<Bytes, String> {
        self.translator.finish().map_err(|e| e.to_string())
    }

    fn usage(&self) -> Option<tollgate_protocol::anthropic::Usage> {
        self.translator.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_itself_gets_max_completion_tokens_and_other_servers_max_tokens() {
        use MaxTokensField::{MaxCompletionTokens, MaxTokens};
        for (base, field) in [
            (None, MaxCompletionTokens),
            (Some("https://api.openai.com/v1"), MaxCompletionTokens),
            (Some("https://API.OpenAI.com:443/v1"), MaxCompletionTokens),
            (Some("http://127.0.0.1:8000/v1"), MaxTokens),
            (Some("http://localhost:11434/v1"), MaxTokens),
            (Some("https://api.openai.com.evil.example/v1"), MaxTokens),
            (Some("https://gw.example/openai/api.openai.com"), MaxTokens),
        ] {
            assert_eq!(max_tokens_field(base), field, "{base:?}");
        }
    }

    /// An error chunk mid-stream is relayed as an `error` event and ends the stream as the
    /// upstream's error; a chunk that is not JSON ends it as the gateway's 502.
    #[test]
    fn stream_errors_end_the_relay() {
        let mut t = ChatSse {
            translator: ChatToAnthropic::new("openai/gpt-test"),
        };
        let first = t.on_chunk(&Bytes::from_static(
            b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ));
        assert!(first.end.is_none());
        assert!(
            String::from_utf8_lossy(&first.out).contains("\"model\":\"openai/gpt-test\""),
            "{:?}",
            first.out
        );
        let err = t.on_chunk(&Bytes::from_static(
            b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
        ));
        assert!(String::from_utf8_lossy(&err.out).contains("event: error"));
        assert!(
            matches!(err.end, Some(End::Upstream { ref message, .. }) if message == "boom"),
            "{:?}",
            err.end
        );

        let mut t = ChatSse {
            translator: ChatToAnthropic::new("m"),
        };
        let bad = t.on_chunk(&Bytes::from_static(b"data: not json\n\n"));
        assert!(bad.out.is_empty());
        assert!(
            matches!(bad.end, Some(End::Error { status: 502, .. })),
            "{:?}",
            bad.end
        );
    }
}
