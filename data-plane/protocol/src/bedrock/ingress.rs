//! The other direction: clients that speak Bedrock's `InvokeModel` format to the gateway
//! (Claude Code with `CLAUDE_CODE_USE_BEDROCK=1` and `ANTHROPIC_BEDROCK_BASE_URL`).
//!
//! The data plane turns such a request into the Anthropic Messages request its own flow serves
//! and turns the Anthropic answer back into what Bedrock would have sent:
//!
//! | step | function |
//! |---|---|
//! | `{modelId}` path segment → model id | [`decode_model_segment`] |
//! | `InvokeModel` body → Anthropic body and betas | [`invoke_request`] |
//! | `CountTokens` body → Anthropic body | [`count_tokens_request`] |
//! | `{"input_tokens":N}` → `{"inputTokens":N}` | [`count_tokens_answer`] |
//! | Anthropic SSE → event-stream `chunk` frames | [`SseToEventStream`], [`chunk_frame`] |
//! | Anthropic error → Bedrock error (HTTP or exception frame) | [`BedrockError`] |

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::body::{BodyError, CROSS_REGION_PREFIXES};
use crate::anthropic::{ApiError, ErrorKind};
use crate::eventstream::{self, Header, Message};
use crate::json;
use crate::response_model::set_message_start_model;
use crate::sse::SseParser;

/// Why a Bedrock-format request could not be turned into an Anthropic one. The messages are
/// meant for the client (a 400 `ValidationException`).
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The `{modelId}` path segment is not a valid percent-encoded UTF-8 string.
    #[error("model id in the path: {0}")]
    ModelSegment(&'static str),
    /// The (inner) `InvokeModel` body.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A `CountTokens` body that is not `{"input":{"invokeModel":{"body":"<base64>"}}}`.
    #[error("{0}")]
    CountTokensInput(&'static str),
}

// === Model id ===

/// Percent-decodes the `{modelId}` path segment. Claude Code keeps `:` literal and encodes `/`
/// as `%2F` (`arn:aws:bedrock:…:application-inference-profile%2Fabc`); AWS SDKs encode `:` as
/// `%3A` too. Both decode to the same id. `+` is a literal `+` (a path, not a form).
///
/// Errors: an empty segment, a `%` not followed by two hex digits, bytes that are not UTF-8.
pub fn decode_model_segment(raw: &str) -> Result<String, IngressError> {
    if raw.is_empty() {
        return Err(IngressError::ModelSegment("empty"));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |at: usize| bytes.get(at).and_then(|&c| char::from(c).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(IngressError::ModelSegment(
                    "'%' must be followed by two hex digits",
                ));
            };
            // Both digits are below 16.
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| IngressError::ModelSegment("not UTF-8 once decoded"))
}

/// Whether `id` is a system-defined (cross-Region) inference profile of an Anthropic model:
/// one of [`CROSS_REGION_PREFIXES`] then `anthropic.` (`us.anthropic.claude-sonnet-4-6`).
pub fn is_system_profile_id(id: &str) -> bool {
    CROSS_REGION_PREFIXES.iter().any(|prefix| {
        id.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with("anthropic."))
    })
}

/// Whether `id` has the shape of a Bedrock id for an Anthropic model: a foundation-model id
/// (`anthropic.claude-…`), a system-defined inference profile ([`is_system_profile_id`]) or an
/// ARN (`arn:aws…`, any partition).
pub fn is_bedrock_model_id(id: &str) -> bool {
    id.starts_with("anthropic.") || is_system_profile_id(id) || id.starts_with("arn:aws")
}

// === Request bodies ===

/// An Anthropic Messages request made from a Bedrock-format one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnthropicRequest {
    /// The Anthropic body: `model` first, the client's other members byte for byte in their
    /// order, then `"stream":true` for a streaming request.
    pub body: Vec<u8>,
    /// The body's `anthropic_beta` values (they travel in the `anthropic-beta` header in the
    /// Anthropic format), in order.
    pub betas: Vec<String>,
}

/// Top-level members of an `InvokeModel` body that the Anthropic format does not have in the
/// body (`anthropic_beta` is read into [`AnthropicRequest::betas`]), or that the path decides
/// (`model`; `stream`, by the operation).
const NOT_ANTHROPIC: &[&str] = &["anthropic_version", "anthropic_beta", "model", "stream"];

/// Turns an `InvokeModel` / `InvokeModelWithResponseStream` body into an Anthropic Messages
/// body for `model` (the decoded path id): `anthropic_version` is removed (the Anthropic format
/// versions by header), `anthropic_beta` is removed and returned (an array of strings; absent or
/// `null` is none), a `model` or `stream` member is replaced by the path's model and the
/// operation. Every other member keeps its bytes and order. Only the top level is parsed.
///
/// Errors: not JSON, not an object, duplicate top-level keys, `anthropic_beta` not an array of
/// strings.
pub fn invoke_request(
    body: &[u8],
    model: &str,
    stream: bool,
) -> Result<AnthropicRequest, IngressError> {
    let fields = json::parse_object(body).map_err(BodyError::from)?;
    let betas = match json::get(&fields, "anthropic_beta") {
        None => Vec::new(),
        Some(raw) => json::decode::<Option<Vec<String>>>(raw)
            .ok_or(BodyError::InvalidField {
                field: "anthropic_beta",
                expected: "an array of strings",
            })?
            .unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(body.len() + model.len() + 32);
    out.extend_from_slice(br#"{"model":"#);
    json::write_str(&mut out, model);
    for (key, value) in fields
        .iter()
        .filter(|(k, _)| !NOT_ANTHROPIC.contains(&k.as_ref()))
    {
        out.push(b',');
        json::write_str(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    if stream {
        out.extend_from_slice(br#","stream":true"#);
    }
    out.push(b'}');
    Ok(AnthropicRequest { body: out, betas })
}

/// Turns a Bedrock `CountTokens` body, `{"input":{"invokeModel":{"body":"<base64 of an
/// InvokeModel body>"}}}`, into an Anthropic `count_tokens` body for `model` ([`invoke_request`]
/// of the inner body, without `stream`). The `converse` input shape is not served.
pub fn count_tokens_request(body: &[u8], model: &str) -> Result<AnthropicRequest, IngressError> {
    #[derive(Deserialize)]
    struct Outer<'a> {
        #[serde(borrow)]
        input: Option<Input<'a>>,
    }
    #[derive(Deserialize)]
    struct Input<'a> {
        #[serde(borrow, rename = "invokeModel")]
        invoke_model: Option<InvokeModel<'a>>,
        converse: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct InvokeModel<'a> {
        #[serde(borrow)]
        body: Option<Cow<'a, str>>,
    }
    let outer: Outer<'_> =
        serde_json::from_slice(body).map_err(|e| IngressError::Body(BodyError::InvalidJson(e)))?;
    let input = outer.input.ok_or(IngressError::CountTokensInput(
        "input: field required ({\"invokeModel\": {\"body\": \"<base64>\"}})",
    ))?;
    let Some(invoke) = input.invoke_model else {
        return Err(IngressError::CountTokensInput(
            if input.converse.is_some() {
                "input.converse is not served by this gateway: send input.invokeModel"
            } else {
                "input.invokeModel: field required"
            },
        ));
    };
    let encoded = invoke.body.ok_or(IngressError::CountTokensInput(
        "input.invokeModel.body: field required",
    ))?;
    let inner = BASE64
        .decode(encoded.as_bytes())
        .map_err(|_| IngressError::CountTokensInput("input.invokeModel.body: must be base64"))?;
    invoke_request(&inner, model, false)
}

/// Bedrock's `CountTokens` answer, `{"inputTokens":N}`, from Anthropic's `{"input_tokens":N}`;
/// `None` when the answer has no integer `input_tokens`.
pub fn count_tokens_answer(anthropic: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Answer {
        input_tokens: u64,
    }
    let answer: Answer = serde_json::from_slice(anthropic).ok()?;
    Some(format!(r#"{{"inputTokens":{}}}"#, answer.input_tokens).into_bytes())
}

// === Errors ===

/// An error as Bedrock sends it: HTTP status, exception name (`x-amzn-ErrorType`) and message
/// (body `{"message": …}`), or inside a stream as an exception frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BedrockError {
    /// The HTTP status Bedrock uses for the exception.
    pub status: u16,
    /// The exception name, as in `x-amzn-ErrorType` (`ThrottlingException`).
    pub error_type: &'static str,
    /// The message, verbatim (Claude Code matches upstream wording).
    pub message: String,
}

/// Anthropic error kinds -> Bedrock exceptions and their statuses (the reverse of
/// [`super::map_error`]; Bedrock has no 401, 402, 413 or 529).
///
/// | Anthropic | Bedrock |
/// |---|---|
/// | `invalid_request_error`, `request_too_large` | 400 `ValidationException` |
/// | `authentication_error` | 400 `UnrecognizedClientException` |
/// | `permission_error`, `billing_error` | 400 `AccessDeniedException` |
/// | `not_found_error` | 404 `ResourceNotFoundException` |
/// | `timeout_error` | 408 `ModelTimeoutException` |
/// | `rate_limit_error` | 429 `ThrottlingException` |
/// | `api_error` | 500 `InternalServerException` |
/// | `overloaded_error` | 503 `ServiceUnavailableException` |
///
/// The credential and permission refusals keep Bedrock's names but answer 400, not Bedrock's
/// 403: Claude Code 2.1.331 in Bedrock mode retries a 401 or 403 for minutes (it waits for
/// refreshed AWS credentials, `x-should-retry: false` or not), while a 400 ends the session at
/// once with the message. These refusals are final (an unknown virtual key, a model the key may
/// not use); retrying them only hides the message.
pub const fn bedrock_exception(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => (400, "ValidationException"),
        ErrorKind::Authentication => (400, "UnrecognizedClientException"),
        ErrorKind::Permission | ErrorKind::Billing => (400, "AccessDeniedException"),
        ErrorKind::NotFound => (404, "ResourceNotFoundException"),
        ErrorKind::Timeout => (408, "ModelTimeoutException"),
        ErrorKind::RateLimit => (429, "ThrottlingException"),
        ErrorKind::Api => (500, "InternalServerException"),
        ErrorKind::Overloaded => (503, "ServiceUnavailableException"),
    }
}

impl BedrockError {
    /// The Bedrock error for an Anthropic error kind ([`bedrock_exception`]).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BedrockError {
        let (status, error_type) = bedrock_exception(kind);
        BedrockError {
            status,
            error_type,
            message: message.into(),
        }
    }

    /// The Bedrock error for an Anthropic error answer: its `error.type` (else the kind of
    /// `status`) and `error.message` (else a text naming the status). Accepts the HTTP body
    /// `{"type":"error","error":{…}}` and the data of an SSE `error` event alike.
    pub fn from_anthropic(status: u16, body: &[u8]) -> BedrockError {
        let e = ApiError::read(status, body);
        BedrockError::new(e.kind, e.message)
    }

    /// The HTTP body: `{"message":"…"}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 16);
        out.extend_from_slice(br#"{"message":"#);
        json::write_str(&mut out, &self.message);
        out.push(b'}');
        out
    }

    /// The `:exception-type` of this error inside a stream: the camelCase member of Bedrock's
    /// `ResponseStream` union. Exceptions the union lacks become `validationException` (4xx) or
    /// `internalServerException`.
    pub fn stream_exception_type(&self) -> &'static str {
        match self.error_type {
            "ThrottlingException" => "throttlingException",
            "ModelTimeoutException" => "modelTimeoutException",
            "ServiceUnavailableException" => "serviceUnavailableException",
            "InternalServerException" => "internalServerException",
            _ if self.status < 500 => "validationException",
            _ => "internalServerException",
        }
    }

    /// The error as an event-stream exception frame (`:message-type` `exception`, payload
    /// `{"message":"…"}`).
    pub fn exception_frame(&self) -> Bytes {
        frame(
            vec![
                Header::string(":exception-type", self.stream_exception_type()),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "exception"),
            ],
            self.to_json(),
        )
    }
}

// === Streams ===

/// One Anthropic stream event (its JSON) as Bedrock's `chunk` frame: headers `:event-type`
/// `chunk`, `:content-type` `application/json`, `:message-type` `event`; payload
/// `{"bytes":"<base64 of the event JSON>"}`.
pub fn chunk_frame(event_json: &[u8]) -> Bytes {
    let encoded = BASE64.encode(event_json);
    let mut payload = Vec::with_capacity(encoded.len() + 12);
    payload.extend_from_slice(br#"{"bytes":""#);
    payload.extend_from_slice(encoded.as_bytes());
    payload.extend_from_slice(br#""}"#);
    frame(
        vec![
            Header::string(":event-type", "chunk"),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        payload,
    )
}

/// Encodes a frame. Only a payload beyond 4 GiB could fail to encode (the headers are fixed);
/// it becomes an exception frame instead.
fn frame(headers: Vec<Header>, payload: Vec<u8>) -> Bytes {
    let len = payload.len();
    eventstream::encode(&Message::new(headers, payload)).unwrap_or_else(|_| {
        let message = format!("a stream event of {len} bytes is too large to frame");
        let fallback = BedrockError::new(ErrorKind::Api, message);
        eventstream::encode(&Message::new(
            vec![
                Header::string(":exception-type", "internalServerException"),
                Header::string(":message-type", "exception"),
            ],
            fallback.to_json(),
        ))
        .unwrap_or_default()
    })
}

/// Re-encodes an Anthropic SSE stream as Bedrock's event stream, event by event: each event's
/// JSON becomes one [`chunk_frame`] as soon as the event is complete (`ping` events too: the
/// SDK's Bedrock client ignores them, and they keep a long silence from looking like a dead
/// connection); an `error` event becomes an exception frame ([`BedrockError::from_anthropic`])
/// and ends the stream (later events produce nothing). Comments are dropped; an event left
/// unterminated at the end of the input is discarded, as SSE clients discard it.
///
/// With [`SseToEventStream::reporting_model`], the `message.model` of `message_start` is set to
/// the given name.
#[derive(Debug, Default)]
pub struct SseToEventStream {
    parser: SseParser,
    model: Option<String>,
    ended: bool,
}

impl SseToEventStream {
    /// A converter at the start of a stream.
    pub fn new() -> Self {
        SseToEventStream::default()
    }

    /// A converter that reports `model` in `message_start`.
    pub fn reporting_model(model: impl Into<String>) -> Self {
        SseToEventStream {
            model: Some(model.into()),
            ..SseToEventStream::default()
        }
    }

    /// Whether an `error` event ended the stream.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds SSE bytes (split anywhere); returns the frames of the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.ended {
            return Bytes::new();
        }
        self.parser.push(chunk);
        let mut out = BytesMut::new();
        while let Some(event) = self.parser.next_event() {
            let data = event.data.as_bytes();
            if event.event.as_deref() == Some("error") {
                out.extend_from_slice(&BedrockError::from_anthropic(500, data).exception_frame());
                self.ended = true;
                break;
            }
            let renamed = match (&self.model, event.event.as_deref()) {
                (Some(model), Some("message_start")) => set_message_start_model(data, model),
                _ => None,
            };
            out.extend_from_slice(&chunk_frame(renamed.as_deref().unwrap_or(data)));
        }
        out.freeze()
    }
}
