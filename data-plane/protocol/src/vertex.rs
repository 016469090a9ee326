//! Anthropic Messages <-> Google Vertex AI's Anthropic endpoints (`rawPredict`,
//! `streamRawPredict`).
//!
//! Vertex serves Claude with Anthropic's own request and answer formats, with three changes:
//!
//! | Anthropic API | Vertex AI |
//! |---|---|
//! | `POST /v1/messages` | `POST {base}/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict` for `"stream": true`, which stays in the body) |
//! | `POST /v1/messages/count_tokens` | `…/publishers/anthropic/models/count-tokens:rawPredict`, the model staying in the body |
//! | `model` in the body | in the path ([`path`]); removed from the body ([`body`]) |
//! | `anthropic-version` header | `"anthropic_version": "vertex-2023-10-16"` in the body |
//! | Anthropic error envelopes | Anthropic's, or Google's `{"error":{"code","message","status"}}` before the model ran ([`map_error`]) |
//!
//! Betas stay in the `anthropic-beta` header. Answers (messages and SSE streams) are
//! Anthropic's, byte for byte, so the gateway relays them like the Anthropic API's.

use serde::Deserialize;

use crate::anthropic::{ApiError, ErrorKind};
use crate::bedrock::RequestBody;
use crate::json;

/// The `anthropic_version` Vertex requires in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The OAuth 2.0 scope an access token needs for Vertex AI.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Which Vertex call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `rawPredict`: a Message in one answer.
    Predict,
    /// `streamRawPredict`: the answer as Anthropic SSE.
    StreamPredict,
    /// Token counting (`count-tokens:rawPredict`).
    CountTokens,
}

/// The API root for `region`: `global` and the multi-regions `us` and `eu` have their own hosts;
/// every other region is `https://{region}-aiplatform.googleapis.com/v1`.
pub fn base_url(region: &str) -> String {
    match region {
        "global" => "https://aiplatform.googleapis.com/v1".to_owned(),
        "us" | "eu" => format!("https://aiplatform.{region}.rep.googleapis.com/v1"),
        _ => format!("https://{region}-aiplatform.googleapis.com/v1"),
    }
}

/// Whether `s` can stand in a Vertex path as a project id or region as it is: ASCII letters,
/// digits, `-`, `_`, `.` (project ids are lower-case letters, digits and hyphens; regions too).
pub fn is_path_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The path below the API root for `call` of `model` (percent-encoded as one segment; `@`, which
/// Vertex model versions use, stays literal). `project` and `region` must be
/// [`is_path_safe`].
pub fn path(project: &str, region: &str, model: &str, call: Call) -> String {
    let (model, method) = match call {
        Call::Predict => (model, "rawPredict"),
        Call::StreamPredict => (model, "streamRawPredict"),
        Call::CountTokens => ("count-tokens", "rawPredict"),
    };
    let mut out = format!("/projects/{project}/locations/{region}/publishers/anthropic/models/");
    push_segment(&mut out, model);
    out.push(':');
    out.push_str(method);
    out
}

fn push_segment(out: &mut String, segment: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The Vertex body of an Anthropic request: every member byte for byte, in order, except
/// `model` (in the path; for [`Call::CountTokens`] it stays, set to `model`) and any
/// `anthropic_version`, with `"anthropic_version":"vertex-2023-10-16"` first.
pub fn body(parsed: &RequestBody<'_>, model: &str, call: Call) -> Vec<u8> {
    let mut out = Vec::with_capacity(parsed.len + 48);
    out.extend_from_slice(b"{\"anthropic_version\":");
    json::write_str(&mut out, ANTHROPIC_VERSION);
    for (key, value) in &parsed.fields {
        if key == "anthropic_version" || (key == "model" && call != Call::CountTokens) {
            continue;
        }
        out.push(b',');
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

/// Google's error envelope, which Vertex sends for failures before the model ran (quota,
/// permission, unknown model, bad project).
#[derive(Deserialize)]
struct GoogleEnvelope {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    /// Always there in Google's envelope (and never in Anthropic's).
    code: u16,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// The Anthropic kind of a Google RPC status (`RESOURCE_EXHAUSTED`, …), else of the HTTP status.
fn google_kind(status: Option<&str>, http: u16) -> ErrorKind {
    match status {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            ErrorKind::InvalidRequest
        }
        Some("UNAUTHENTICATED") => ErrorKind::Authentication,
        Some("PERMISSION_DENIED") => ErrorKind::Permission,
        Some("NOT_FOUND") => ErrorKind::NotFound,
        Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimit,
        Some("UNAVAILABLE") => ErrorKind::Overloaded,
        Some("DEADLINE_EXCEEDED") => ErrorKind::Timeout,
        Some("INTERNAL" | "UNKNOWN" | "DATA_LOSS") => ErrorKind::Api,
        _ => ErrorKind::from_status(http),
    }
}

/// Longest upstream error message passed on.
const MAX_MESSAGE: usize = 2000;

/// An error answer in Google's envelope, as the Anthropic error a client of the gateway expects
/// (kind from the RPC status, message kept, cut at 2,000 bytes). `None` when the body is not
/// Google's envelope: Anthropic errors are relayed as they are.
pub fn map_error(http_status: u16, body: &[u8]) -> Option<ApiError> {
    let envelope: GoogleEnvelope = serde_json::from_slice(body).ok()?;
    let e = envelope.error;
    let kind = google_kind(e.status.as_deref(), e.code);
    let mut message = e
        .message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("Vertex AI answered {http_status}"));
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    Some(ApiError {
        kind,
        status: kind.status(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_have_their_hosts() {
        assert_eq!(
            base_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com/v1"
        );
        assert_eq!(base_url("global"), "https://aiplatform.googleapis.com/v1");
        assert_eq!(
            base_url("eu"),
            "https://aiplatform.eu.rep.googleapis.com/v1"
        );
    }

    #[test]
    fn paths_name_the_model_and_the_method() {
        assert_eq!(
            path(
                "p-1",
                "us-east5",
                "claude-sonnet-4-5@20250929",
                Call::Predict
            ),
            "/projects/p-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
        );
        assert_eq!(
            path("p-1", "global", "claude-haiku-4-5", Call::StreamPredict),
            "/projects/p-1/locations/global/publishers/anthropic/models/claude-haiku-4-5:streamRawPredict"
        );
        assert_eq!(
            path("p-1", "global", "claude-haiku-4-5", Call::CountTokens),
            "/projects/p-1/locations/global/publishers/anthropic/models/count-tokens:rawPredict"
        );
        assert!(path("p", "r", "a/b:c", Call::Predict).contains("/models/a%2Fb%3Ac:rawPredict"));
        assert!(is_path_safe("my-project-123"));
        assert!(!is_path_safe("a/../b") && !is_path_safe("") && !is_path_safe("a b"));
    }

    #[test]
    fn the_body_loses_model_and_gains_the_version() {
        let raw = br#"{"model":"vertex/claude","max_tokens":5,"anthropic_version":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let parsed = RequestBody::parse(raw).unwrap();
        let out = body(&parsed, "claude-sonnet-4-6", Call::StreamPredict);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
        let counted = body(&parsed, "claude-sonnet-4-6", Call::CountTokens);
        assert_eq!(
            std::str::from_utf8(&counted).unwrap(),
            r#"{"anthropic_version":"vertex-2023-10-16","model":"claude-sonnet-4-6","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
    }

    #[test]
    fn google_errors_become_anthropic_errors() {
        let quota = br#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED"}}"#;
        let e = map_error(429, quota).unwrap();
        assert_eq!((e.kind, e.status), (ErrorKind::RateLimit, 429));
        assert!(e.message.starts_with("Quota exceeded"));
        let denied =
            br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(map_error(403, denied).unwrap().kind, ErrorKind::Permission);
        let unavailable = br#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#;
        let e = map_error(503, unavailable).unwrap();
        assert_eq!((e.kind, e.status), (ErrorKind::Overloaded, 529));
        assert_eq!(e.message, "Vertex AI answered 503");
        // Anthropic's own envelope is not Google's: relayed as it is.
        let anthropic =
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"x"}}"#;
        assert!(map_error(400, anthropic).is_none());
        assert!(map_error(500, b"<html>").is_none());
        let long = format!(
            r#"{{"error":{{"code":400,"message":"{}","status":"INVALID_ARGUMENT"}}}}"#,
            "é".repeat(3000)
        );
        let e = map_error(400, long.as_bytes()).unwrap();
        assert!(e.message.len() <= MAX_MESSAGE + 3 && e.message.ends_with("..."));
    }
}
