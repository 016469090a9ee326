//! Anthropic Messages API shapes the gateway produces or inspects: error kinds and envelopes,
//! token usage (from a whole Message or from a stream of events), and the only rewrite of an
//! Anthropic-format body toward an Anthropic upstream ([`set_model`]).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::bedrock::{BodyError, RequestBody};
use crate::json;
use crate::sse::{self, SseEvent};

// === ErrorKind ===

/// The `error.type` values of the Anthropic API, each with its canonical HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `invalid_request_error`, 400 (also used for unlisted 4xx statuses).
    InvalidRequest,
    /// `authentication_error`, 401.
    Authentication,
    /// `billing_error`, 402.
    Billing,
    /// `permission_error`, 403.
    Permission,
    /// `not_found_error`, 404.
    NotFound,
    /// `request_too_large`, 413.
    RequestTooLarge,
    /// `rate_limit_error`, 429.
    RateLimit,
    /// `api_error`, 500 (also used for unlisted 5xx statuses).
    Api,
    /// `timeout_error`, 504.
    Timeout,
    /// `overloaded_error`, 529.
    Overloaded,
}

impl ErrorKind {
    /// Every kind, in status order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Billing,
        ErrorKind::Permission,
        ErrorKind::NotFound,
        ErrorKind::RequestTooLarge,
        ErrorKind::RateLimit,
        ErrorKind::Api,
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
    ];

    /// The canonical HTTP status.
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Billing => 402,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Api => 500,
            ErrorKind::Timeout => 504,
            ErrorKind::Overloaded => 529,
        }
    }

    /// The `error.type` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Billing => "billing_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }

    /// The kind Anthropic uses for an HTTP status: the listed statuses map to their kind, other
    /// 4xx to `invalid_request_error`, everything else (5xx and non-error statuses) to
    /// `api_error`.
    pub const fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Authentication,
            402 => ErrorKind::Billing,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            504 => ErrorKind::Timeout,
            529 => ErrorKind::Overloaded,
            // 400 and every unlisted 4xx.
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Api,
        }
    }

    /// Parses an `error.type` string; `None` for unknown types.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === ApiError ===

/// An error to return to an Anthropic-format client, as an HTTP body or as an SSE `error` event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({status}): {message}")]
pub struct ApiError {
    /// The `error.type`.
    pub kind: ErrorKind,
    /// The HTTP status to answer with (normally `kind.status()`).
    pub status: u16,
    /// The human-readable `error.message`. Upstream wording is kept: Claude Code pattern-matches
    /// it to drive its recovery (e.g. `prompt is too long`).
    pub message: String,
}

impl ApiError {
    /// An error with the kind's canonical status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            status: kind.status(),
            message: message.into(),
        }
    }

    /// The response body: `{"type":"error","error":{"type":"…","message":"…"}}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 64);
        out.extend_from_slice(br#"{"type":"error","error":{"type":""#);
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(br#"","message":"#);
        json::write_str(&mut out, &self.message);
        out.extend_from_slice(b"}}");
        out
    }

    /// The same body as an SSE frame: `event: error\ndata: {…}\n\n`.
    pub fn to_sse(&self) -> Bytes {
        sse::event("error", &self.to_json())
    }

    /// Reads an Anthropic error answer (the HTTP body `{"type":"error","error":{…}}`, or the
    /// data of an SSE `error` event): its `error.type` (else the kind of `status`) and
    /// `error.message` (else a text naming the status). The status is the caller's, kept.
    pub fn read(status: u16, body: &[u8]) -> ApiError {
        #[derive(Deserialize)]
        struct Envelope {
            error: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(rename = "type")]
            kind: Option<String>,
            message: Option<String>,
        }
        let inner = serde_json::from_slice::<Envelope>(body)
            .ok()
            .and_then(|e| e.error);
        let (kind, message) = match inner {
            Some(Inner { kind, message }) => (kind.as_deref().and_then(ErrorKind::parse), message),
            None => (None, None),
        };
        let message = message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP {status} without an error message"));
        ApiError {
            kind: kind.unwrap_or(ErrorKind::from_status(status)),
            status,
            message,
        }
    }
}

// === Request bodies ===

/// Replaces the top-level `model` of an Anthropic request body with `model` (used when a gateway
/// alias maps to a different upstream model). Only the top level is parsed: every other member
/// keeps its bytes and position, so the body stays byte-identical apart from the `model` value.
///
/// Errors as for [`RequestBody::parse`]: not JSON, not an object, duplicate top-level keys,
/// `model` missing or not a string, `stream` neither boolean nor null.
pub fn set_model(body: &[u8], model: &str) -> Result<Vec<u8>, BodyError> {
    Ok(set_model_parsed(&RequestBody::parse(body)?, model))
}

/// [`set_model`] of a body already parsed.
pub fn set_model_parsed(body: &RequestBody<'_>, model: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len + model.len());
    out.push(b'{');
    for (i, (key, value)) in body.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, key);
        out.push(b':');
        if key == "model" {
            json::write_str(&mut out, model);
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    out
}

// === Usage ===

/// Token usage of one request. `input_tokens` excludes cache reads and writes; the whole prompt
/// is [`Usage::total_input_tokens`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens (cumulative final count).
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache (both TTLs).
    pub cache_creation_input_tokens: u64,
    /// The part of `cache_creation_input_tokens` written with the 1-hour TTL (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`; 0 when the answer does not split them, which
    /// reads every cache write as the default 5-minute TTL). Never more than the total.
    #[serde(default)]
    pub cache_creation_1h_input_tokens: u64,
}

impl Usage {
    /// Input, cache-read and cache-creation tokens together (saturating).
    pub fn total_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_read_input_tokens)
            .saturating_add(self.cache_creation_input_tokens)
    }
}

/// A usage object as it appears on the wire: any field may be absent or `null`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<WireCacheCreation>,
}

/// `usage.cache_creation`: the cache writes split by TTL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
struct WireCacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

impl WireUsage {
    fn into_usage(self) -> Usage {
        let split = self.cache_creation.unwrap_or_default();
        cache_writes(
            Usage {
                input_tokens: self.input_tokens.unwrap_or(0),
                output_tokens: self.output_tokens.unwrap_or(0),
                cache_read_input_tokens: self.cache_read_input_tokens.unwrap_or(0),
                cache_creation_input_tokens: 0,
                cache_creation_1h_input_tokens: 0,
            },
            self.cache_creation_input_tokens,
            split,
        )
    }
}

/// Sets a usage's cache writes from the total (when reported) and the TTL split (when
/// reported): the total is the reported one, else the split's sum; the 1-hour part is the
/// split's, never more than the total.
fn cache_writes(mut usage: Usage, total: Option<u64>, split: WireCacheCreation) -> Usage {
    let one_hour = split.ephemeral_1h_input_tokens.unwrap_or(0);
    let total = total.unwrap_or_else(|| {
        split
            .ephemeral_5m_input_tokens
            .unwrap_or(0)
            .saturating_add(one_hour)
    });
    usage.cache_creation_input_tokens = total;
    usage.cache_creation_1h_input_tokens = one_hour.min(total);
    usage
}

/// Reads a `usage` object's raw JSON (absent or `null` counts are read as 0); `None` when it is
/// not an object.
pub(crate) fn usage_from_raw(raw: &serde_json::value::RawValue) -> Option<Usage> {
    let usage: Option<WireUsage> = serde_json::from_str(raw.get()).ok()?;
    usage.map(WireUsage::into_usage)
}

/// Extracts `usage` from a non-streaming Message body. `None` if the body is not a JSON object
/// with a `usage` object (absent or `null` counts inside it are read as 0). The gateway reads it
/// with the body's model name, in one pass: [`crate::response_model::read_message`].
pub fn usage_from_message(json: &[u8]) -> Option<Usage> {
    crate::response_model::read_message(json, None).usage
}

/// Usage counts that may be missing, used as a fallback source by [`UsageTracker`] (for example
/// Bedrock's `amazon-bedrock-invocationMetrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartialUsage {
    /// Uncached input tokens, if known.
    pub input_tokens: Option<u64>,
    /// Final output tokens, if known.
    pub output_tokens: Option<u64>,
    /// Cache-read input tokens, if known.
    pub cache_read_input_tokens: Option<u64>,
    /// Cache-creation input tokens, if known.
    pub cache_creation_input_tokens: Option<u64>,
}

/// Follows the usage reported by an Anthropic event stream.
///
/// `message_start` carries `message.usage` (input and cache counts; `output_tokens` is only
/// provisional). `message_delta` carries cumulative `usage`; its `output_tokens` is final and
/// any input or cache counts it carries replace earlier ones (some deployments send cache counts
/// only on `message_start`, so those are kept when the delta omits them). A fallback source
/// ([`UsageTracker::set_fallback`]) fills what the events lack; its output count beats the
/// provisional `message_start` one. Malformed events are ignored: usage is best-effort and must
/// never break relaying.
#[derive(Clone, Debug, Default)]
pub struct UsageTracker {
    start: Option<WireUsage>,
    delta: Option<WireUsage>,
    fallback: Option<PartialUsage>,
}

#[derive(Deserialize)]
struct EventUsage {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<EventMessage>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct EventMessage {
    usage: Option<WireUsage>,
}

impl UsageTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        UsageTracker::default()
    }

    /// Observes one event's JSON (the SSE `data`), whatever its type.
    pub fn observe(&mut self, event_json: &[u8]) {
        if let Ok(mut event) = serde_json::from_slice::<EventUsage>(event_json) {
            let kind = event.kind.take();
            self.apply(kind.as_deref(), event);
        }
    }

    /// Observes one event whose type is already known, skipping the parse for event types that
    /// carry no usage.
    pub fn observe_typed(&mut self, event_type: &str, event_json: &[u8]) {
        if !matches!(event_type, "message_start" | "message_delta") {
            return;
        }
        if let Ok(event) = serde_json::from_slice::<EventUsage>(event_json) {
            self.apply(Some(event_type), event);
        }
    }

    /// Observes one parsed SSE event (used when relaying an Anthropic upstream stream).
    pub fn observe_sse(&mut self, event: &SseEvent) {
        match &event.event {
            Some(name) => self.observe_typed(name, event.data.as_bytes()),
            None => self.observe(event.data.as_bytes()),
        }
    }

    /// Records fallback counts, used for whatever the events do not provide.
    pub fn set_fallback(&mut self, fallback: PartialUsage) {
        self.fallback = Some(fallback);
    }

    /// Whether a `message_delta` with usage was seen (its output count is final).
    pub fn saw_final_usage(&self) -> bool {
        self.delta.is_some()
    }

    /// The usage so far; `None` if neither an event nor the fallback reported any.
    pub fn usage(&self) -> Option<Usage> {
        if self.start.is_none() && self.delta.is_none() && self.fallback.is_none() {
            return None;
        }
        let start = self.start.unwrap_or_default();
        let delta = self.delta.unwrap_or_default();
        let fb = self.fallback.unwrap_or_default();
        let usage = Usage {
            input_tokens: delta
                .input_tokens
                .or(start.input_tokens)
                .or(fb.input_tokens)
                .unwrap_or(0),
            output_tokens: delta
                .output_tokens
                .or(fb.output_tokens)
                .or(start.output_tokens)
                .unwrap_or(0),
            cache_read_input_tokens: delta
                .cache_read_input_tokens
                .or(start.cache_read_input_tokens)
                .or(fb.cache_read_input_tokens)
                .unwrap_or(0),
            cache_creation_input_tokens: 0,
            cache_creation_1h_input_tokens: 0,
        };
        let total = delta
            .cache_creation_input_tokens
            .or(start.cache_creation_input_tokens)
            .or(fb.cache_creation_input_tokens);
        // Like the counts, the delta's split replaces `message_start`'s.
        let split = delta.cache_creation.or(start.cache_creation);
        Some(cache_writes(usage, total, split.unwrap_or_default()))
    }

    fn apply(&mut self, kind: Option<&str>, event: EventUsage) {
        match kind {
            Some("message_start") => {
                if let Some(usage) = event.message.and_then(|m| m.usage) {
                    self.start = Some(usage);
                }
            }
            Some("message_delta") => {
                if let Some(usage) = event.usage {
                    // Cumulative: a later delta replaces the fields it carries.
                    let prev = self.delta.unwrap_or_default();
                    self.delta = Some(WireUsage {
                        input_tokens: usage.input_tokens.or(prev.input_tokens),
                        output_tokens: usage.output_tokens.or(prev.output_tokens),
                        cache_read_input_tokens: usage
                            .cache_read_input_tokens
                            .or(prev.cache_read_input_tokens),
                        cache_creation_input_tokens: usage
                            .cache_creation_input_tokens
                            .or(prev.cache_creation_input_tokens),
                        cache_creation: usage.cache_creation.or(prev.cache_creation),
                    });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            assert_eq!(ErrorKind::from_status(kind.status()), kind);
        }
        assert_eq!(ErrorKind::parse("nope"), None);
    }
}
