//! Bedrock models that are not Anthropic's (Llama, Mistral, Nova, DeepSeek, …): the request
//! goes to `Converse` / `ConverseStream` (`POST /model/{id}/converse`, `/converse-stream`),
//! translated from the Anthropic Messages body by [`tollgate_protocol::bedrock::converse`], and
//! the answer comes back as an Anthropic Message or SSE stream.
//!
//! Which ids come here is [`converse::uses_converse`]: every `provider.model` id whose provider
//! is not `anthropic` (with or without a cross-region prefix or a `foundation-model/` or
//! `inference-profile/` ARN around it). Application inference profile ARNs name no model and
//! stay on `InvokeModel`.
//!
//! * Signing, credentials, the URL and the error mapping are `InvokeModel`'s (the parent
//!   module); only the operation, the `accept` header (`application/vnd.amazon.eventstream` for
//!   `converse-stream`) and the body differ.
//! * Options of the translation: `cachePoint` blocks for Amazon Nova (Bedrock prompt caching),
//!   for every other model `cache_control` is dropped (they refuse cache points); `thinking` is
//!   always dropped (only Claude takes Anthropic's shape, and Claude goes to `InvokeModel`).
//!   The fields left out are logged at debug, once per request.
//! * `count_tokens`: Bedrock's `CountTokens` with a `converse` input (`{"input":{"converse":
//!   {messages, system, toolConfig}}}`, the translated body without `inferenceConfig`, which
//!   `ConverseTokensRequest` does not have), on the foundation-model id. Bedrock counts tokens
//!   only for some models; for the others its `ValidationException` reaches the client as a 400
//!   `invalid_request_error`, and a model that gains support works without a gateway change.
//! * Answers name the model the client asked for; the message id is derived from the request id
//!   (`req_tg_…` -> `msg_tg_…`; Converse has none). Streams are relayed frame by frame by
//!   [`RelayBody`](super::RelayBody) with the same pings and idle timeout as `InvokeModel`.

use axum::body::Bytes;
use tollgate_protocol::bedrock::converse::{self, ConverseStream, RequestOptions};

use super::super::{End, Operation, Step, StreamTranslation};
use crate::error::ProxyError;
use crate::logsafe::log_safe;

/// Signed headers of `Converse` (and `CountTokens`).
pub(super) const JSON_HEADERS: [(&str, &str); 2] = [
    ("accept", "application/json"),
    ("content-type", "application/json"),
];

/// Signed headers of `ConverseStream`: the answer is an event stream.
pub(super) const STREAM_HEADERS: [(&str, &str); 2] = [
    ("accept", "application/vnd.amazon.eventstream"),
    ("content-type", "application/json"),
];

/// The operation (last path segment) and body of a Converse-model request for `model_id`.
pub(super) fn operation_and_body(
    op: Operation,
    stream: bool,
    parsed: &tollgate_protocol::bedrock::RequestBody<'_>,
    model_id: &str,
) -> Result<(&'static str, Vec<u8>), ProxyError> {
    let options = RequestOptions {
        cache_points: converse::supports_cache_points(model_id),
        thinking: false,
    };
    let translated = converse::request_with(parsed, &options)
        .map_err(|e| ProxyError::invalid_request(e.to_string()))?;
    if !translated.dropped.is_empty() && tracing::enabled!(tracing::Level::DEBUG) {
        // Field paths may name the client's own fields: escaped and cut like any text the
        // gateway did not write.
        let dropped = translated.dropped.join(", ");
        tracing::debug!(
            model = %log_safe(model_id),
            dropped = %log_safe(&dropped),
            "request fields Bedrock Converse cannot take were left out"
        );
    }
    Ok(match (op, stream) {
        (Operation::CountTokens, _) => ("count-tokens", count_tokens_body(&translated.body)?),
        (Operation::Messages, true) => ("converse-stream", translated.body),
        (Operation::Messages, false) => ("converse", translated.body),
    })
}

/// `{"input":{"converse":<the Converse body without inferenceConfig>}}`.
fn count_tokens_body(converse_body: &[u8]) -> Result<Vec<u8>, ProxyError> {
    let built = |e: serde_json::Error| {
        super::super::config_error("could not build the count-tokens request")
            .with_detail(e.to_string())
    };
    // The translation's own output: a JSON object, its members kept as they are (in name order).
    let fields: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(converse_body).map_err(built)?;
    let mut out = Vec::with_capacity(converse_body.len() + 32);
    out.extend_from_slice(br#"{"input":{"converse":{"#);
    let mut first = true;
    for (k, v) in fields
        .iter()
        .filter(|(k, _)| k.as_str() != "inferenceConfig")
    {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, k).map_err(built)?;
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.extend_from_slice(b"}}}");
    Ok(out)
}

/// The Anthropic message id of an answer: the request id with `msg_` for `req_`.
pub(super) fn message_id(request_id: &str) -> String {
    format!(
        "msg_{}",
        request_id.strip_prefix("req_").unwrap_or(request_id)
    )
}

/// A `Converse` reply (HTTP 200 body) as an Anthropic Message for `model`, with its usage.
pub(super) fn message(
    body: &[u8],
    model: &str,
    request_id: &str,
) -> Result<(Bytes, Option<tollgate_protocol::anthropic::Usage>), converse::ConverseError> {
    let out = converse::message(body, model, &message_id(request_id))?;
    let usage = tollgate_protocol::response_model::read_message(&out, None).usage;
    Ok((Bytes::from(out), usage))
}

/// `ConverseStream`'s event stream as Anthropic SSE (see [`ConverseStream`]).
pub(super) struct ConverseToSse {
    stream: ConverseStream,
    /// The upstream's exception was reported to the relay.
    reported: bool,
}

impl ConverseToSse {
    pub(super) fn new(model: &str, request_id: &str) -> Self {
        ConverseToSse {
            stream: ConverseStream::new(model, &message_id(request_id)),
            reported: false,
        }
    }
}

fn stream_end(e: &converse::StreamError) -> End {
    match e {
        converse::StreamError::Decode(_) => End::bad_gateway(
            "upstream_corrupt",
            format!("corrupt upstream event stream: {e}"),
        ),
        _ => End::bad_gateway(
            "upstream_invalid",
            format!("upstream event not understood: {e}"),
        ),
    }
}

impl StreamTranslation for ConverseToSse {
    fn on_chunk(&mut self, chunk: &Bytes) -> Step {
        match self.stream.push(chunk) {
            Ok(out) => {
                let end = match self.stream.terminal_error() {
                    Some(e) if !self.reported => {
                        self.reported = true;
                        Some(End::Upstream {
                            status: e.status,
                            error_type: e.kind.as_str(),
                            message: e.message.clone(),
                        })
                    }
                    _ => None,
                };
                Step { out, end }
            }
            Err(e) => Step {
                out: Bytes::new(),
                end: Some(stream_end(&e)),
            },
        }
    }

    fn on_end(&mut self) -> Result<Bytes, String> {
        self.stream.finish().map_err(|e| e.to_string())
    }

    fn usage(&self) -> Option<tollgate_protocol::anthropic::Usage> {
        self.stream.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_tokens_body_leaves_out_inference_config() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"system":[{"text":"s"}],"inferenceConfig":{"maxTokens":5}}"#;
        let out = count_tokens_body(body).expect("built");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"input": {"converse": {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "system": [{"text": "s"}],
            }}})
        );
    }

    fn frame(kind: &str, name: &str, payload: &str) -> Bytes {
        use tollgate_protocol::eventstream::{Header, Message, encode};
        let type_header = if kind == "event" {
            ":event-type"
        } else {
            ":exception-type"
        };
        let message = Message::new(
            vec![
                Header::string(type_header, name),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", kind),
            ],
            Bytes::from(payload.to_owned()),
        );
        encode(&message).expect("encodes")
    }

    /// Events become SSE with the requested model and the derived id; an exception frame ends
    /// the relay once with the upstream's error; a corrupt frame is a 502.
    #[test]
    fn stream_translation_reports_the_upstream_exception_once() {
        let mut t = ConverseToSse::new("bedrock/meta.llama3-3-70b-instruct-v1:0", "req_tg_1");
        let step = t.on_chunk(&frame("event", "messageStart", r#"{"role":"assistant"}"#));
        let out = String::from_utf8_lossy(&step.out).into_owned();
        assert!(out.contains("event: message_start"), "{out}");
        assert!(out.contains(r#""id":"msg_tg_1""#), "{out}");
        assert!(
            out.contains(r#""model":"bedrock/meta.llama3-3-70b-instruct-v1:0""#),
            "{out}"
        );
        assert!(step.end.is_none());
        let step = t.on_chunk(&frame(
            "exception",
            "throttlingException",
            r#"{"message":"slow down"}"#,
        ));
        assert!(String::from_utf8_lossy(&step.out).contains("rate_limit_error"));
        match step.end {
            Some(End::Upstream {
                status, message, ..
            }) => assert_eq!((status, message.as_str()), (429, "slow down")),
            other => panic!("{other:?}"),
        }
        assert!(t.on_chunk(&Bytes::new()).end.is_none(), "reported once");

        let mut t = ConverseToSse::new("m", "req_tg_2");
        let mut corrupt = frame("event", "messageStart", "{}").to_vec();
        corrupt[20] ^= 0xff;
        match t.on_chunk(&Bytes::from(corrupt)).end {
            Some(End::Error { status, class, .. }) => {
                assert_eq!((status, class), (502, "upstream_corrupt"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_ids_follow_the_request_id() {
        assert_eq!(message_id("req_tg_0192abc"), "msg_tg_0192abc");
        assert_eq!(message_id("other"), "msg_other");
    }
}
