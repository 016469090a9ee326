//! `InvokeModelWithResponseStream` event-stream messages -> Anthropic SSE.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;

use crate::anthropic::{ApiError, ErrorKind, PartialUsage, Usage, UsageTracker};
use crate::eventstream::Message;
use crate::json;
use crate::sse;

use super::error::exception_kind;

/// The Bedrock-only member of the final chunk, removed before forwarding.
const INVOCATION_METRICS: &str = "amazon-bedrock-invocationMetrics";

/// Why a Bedrock stream message could not be translated, or why the stream ended badly. These
/// are protocol violations by the upstream; [`StreamError::to_api_error`] gives the `api_error`
/// to send the client before closing the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A required header is missing (`:message-type`, or `:event-type` on an event).
    #[error("Bedrock stream message lacks the `{0}` header")]
    MissingHeader(&'static str),
    /// `:message-type` is not `event`, `exception` or `error`.
    #[error("Bedrock stream message has unknown :message-type `{0}`")]
    UnknownMessageType(String),
    /// A `chunk` payload that is not `{"bytes":"<base64 of one JSON event object>"}`.
    #[error("invalid Bedrock stream chunk: {0}")]
    InvalidChunk(String),
    /// The stream ended without `message_stop` and without an error.
    #[error("Bedrock stream ended before message_stop")]
    Truncated,
}

impl StreamError {
    /// The error to send the client (`api_error`, 500) as an SSE `error` event.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(ErrorKind::Api, self.to_string())
    }
}

/// Translates the messages of one `InvokeModelWithResponseStream` response into Anthropic SSE.
///
/// * `:message-type`=`event`, `:event-type`=`chunk`: the payload's `bytes` (base64) is one
///   Anthropic event, emitted as `event: <type>\ndata: <json>\n\n` with the decoded JSON bytes
///   verbatim, except that `amazon-bedrock-invocationMetrics` is removed from the event carrying
///   it (the other members keep their raw bytes) and serves as usage fallback. Other event types
///   are ignored (empty output), for forward compatibility.
/// * `:message-type`=`exception` (`:exception-type`, payload `{"message":…}`) or `error`
///   (`:error-code`, `:error-message` headers): emits an Anthropic `event: error` mapped with the
///   §3.7 table ([`super::exception_kind`], unknown names -> `api_error`) and terminates the
///   stream: [`StreamTranslator::terminal_error`] becomes `Some` and later messages produce no
///   output. An Anthropic `error` event inside a chunk is forwarded and terminates likewise.
///
/// With [`StreamTranslator::reporting_model`], the `message.model` of `message_start` is
/// replaced by the model name the client asked for ([`crate::response_model`]); no other event
/// is re-serialized.
///
/// Usage is tracked with [`UsageTracker`]. After the upstream ends, call
/// [`StreamTranslator::finish`].
#[derive(Clone, Debug, Default)]
pub struct StreamTranslator {
    usage: UsageTracker,
    saw_stop: bool,
    error: Option<ApiError>,
    /// The model name `message_start` reports, if it is to be rewritten.
    model: Option<String>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    bytes: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ExceptionPayload {
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InvocationMetrics {
    #[serde(rename = "inputTokenCount")]
    input: Option<u64>,
    #[serde(rename = "outputTokenCount")]
    output: Option<u64>,
    #[serde(rename = "cacheReadInputTokenCount")]
    cache_read: Option<u64>,
    #[serde(rename = "cacheWriteInputTokenCount")]
    cache_write: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorEvent {
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

impl StreamTranslator {
    /// A translator at the start of a stream.
    pub fn new() -> Self {
        StreamTranslator::default()
    }

    /// A translator whose `message_start` reports `model` (the name the client asked for).
    pub fn reporting_model(model: impl Into<String>) -> Self {
        StreamTranslator {
            model: Some(model.into()),
            ..StreamTranslator::default()
        }
    }

    /// Translates one decoded message into the SSE bytes to relay (possibly empty).
    pub fn on_message(&mut self, msg: &Message) -> Result<Bytes, StreamError> {
        if self.error.is_some() {
            return Ok(Bytes::new());
        }
        match msg.header_str(":message-type") {
            Some("event") => match msg.header_str(":event-type") {
                Some("chunk") => self.on_chunk(&msg.payload),
                Some(_) => Ok(Bytes::new()),
                None => Err(StreamError::MissingHeader(":event-type")),
            },
            Some("exception") => {
                let name = msg
                    .header_str(":exception-type")
                    .unwrap_or("unknown exception");
                let message = serde_json::from_slice::<ExceptionPayload>(&msg.payload)
                    .ok()
                    .and_then(|p| p.message.or(p.message_upper))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| name.to_owned());
                Ok(self.fail(exception_kind(name).unwrap_or(ErrorKind::Api), message))
            }
            Some("error") => {
                let code = msg.header_str(":error-code").unwrap_or("unknown error");
                let message = msg
                    .header_str(":error-message")
                    .filter(|m| !m.is_empty())
                    .unwrap_or(code)
                    .to_owned();
                Ok(self.fail(exception_kind(code).unwrap_or(ErrorKind::Api), message))
            }
            Some(other) => Err(StreamError::UnknownMessageType(other.to_owned())),
            None => Err(StreamError::MissingHeader(":message-type")),
        }
    }

    /// Call when the upstream ended: `Err(Truncated)` unless `message_stop` or an error was seen.
    pub fn finish(&self) -> Result<(), StreamError> {
        if self.saw_stop || self.error.is_some() {
            Ok(())
        } else {
            Err(StreamError::Truncated)
        }
    }

    /// Usage so far: Anthropic `message_start`/`message_delta` usage, falling back to the
    /// invocation metrics.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    /// Whether `message_stop` was relayed.
    pub fn saw_stop(&self) -> bool {
        self.saw_stop
    }

    /// The error that terminated the stream, if any.
    pub fn terminal_error(&self) -> Option<&ApiError> {
        self.error.as_ref()
    }

    /// Whether the stream is complete (`message_stop` seen) or terminated by an error.
    pub fn is_done(&self) -> bool {
        self.saw_stop || self.error.is_some()
    }

    fn fail(&mut self, kind: ErrorKind, message: String) -> Bytes {
        let err = ApiError::new(kind, message);
        let out = err.to_sse();
        self.error = Some(err);
        out
    }

    fn on_chunk(&mut self, payload: &[u8]) -> Result<Bytes, StreamError> {
        let invalid = |why: String| StreamError::InvalidChunk(why);
        let chunk: Chunk<'_> = serde_json::from_slice(payload)
            .map_err(|e| invalid(format!("payload is not a JSON object: {e}")))?;
        let encoded = chunk
            .bytes
            .ok_or_else(|| invalid("payload has no `bytes`".into()))?;
        let decoded = BASE64
            .decode(encoded.as_bytes())
            .map_err(|e| invalid(format!("`bytes` is not base64: {e}")))?;

        let fields = json::parse_object(&decoded)
            .map_err(|_| invalid("decoded event is not a JSON object".into()))?;
        let event_type: String = json::get(&fields, "type")
            .and_then(json::decode)
            .ok_or_else(|| invalid("decoded event has no string `type`".into()))?;
        if event_type.is_empty() || event_type.contains(['\n', '\r']) {
            return Err(invalid(format!("unusable event type {event_type:?}")));
        }

        let rebuilt = match json::get(&fields, INVOCATION_METRICS) {
            None => None,
            Some(raw) => {
                if let Some(m) = json::decode::<InvocationMetrics>(raw) {
                    self.usage.set_fallback(PartialUsage {
                        input_tokens: m.input,
                        output_tokens: m.output,
                        cache_read_input_tokens: m.cache_read,
                        cache_creation_input_tokens: m.cache_write,
                    });
                }
                Some(without_member(&fields, INVOCATION_METRICS))
            }
        };
        let rebuilt = match (&self.model, event_type.as_str()) {
            (Some(model), "message_start") => crate::response_model::set_message_start_model(
                rebuilt.as_deref().unwrap_or(&decoded),
                model,
            )
            .or(rebuilt),
            _ => rebuilt,
        };
        let data: &[u8] = rebuilt.as_deref().unwrap_or(&decoded);

        self.usage.observe_typed(&event_type, data);
        match event_type.as_str() {
            "message_stop" => self.saw_stop = true,
            "error" => {
                let body = serde_json::from_slice::<ErrorEvent>(data)
                    .ok()
                    .and_then(|e| e.error);
                let kind = body
                    .as_ref()
                    .and_then(|b| b.kind.as_deref())
                    .and_then(ErrorKind::parse);
                let message = body.and_then(|b| b.message).unwrap_or_default();
                self.error = Some(ApiError::new(kind.unwrap_or(ErrorKind::Api), message));
            }
            _ => {}
        }
        Ok(sse::event(&event_type, data))
    }
}

/// Re-serializes a top-level object without `skip`; other members keep their raw bytes.
fn without_member(fields: &[json::Field<'_>], skip: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    let mut first = true;
    for (key, value) in fields.iter().filter(|(k, _)| k != skip) {
        if !first {
            out.push(b',');
        }
        first = false;
        json::write_str(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    out
}
