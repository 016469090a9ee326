//! Bedrock error replies (HTTP and in-stream) -> Anthropic errors.

use serde_json::{Map, Value};

use crate::anthropic::{ApiError, ErrorKind};

/// Bedrock exception names and the Anthropic kind each maps to (protocols.md §3.7). Matching is
/// ASCII case-insensitive, so the camelCase union member names used inside event streams
/// (`throttlingException`) match too.
///
/// Decisions beyond the table in protocols.md:
/// * `ServiceQuotaExceededException` -> `rate_limit_error` (429) although Bedrock answers 400:
///   it is a quota, not a malformed request.
/// * `ModelNotReadyException` -> `overloaded_error` (529): the model is warming up, a later retry
///   will succeed.
/// * The signing/credential failures (`UnrecognizedClientException`, `InvalidSignatureException`,
///   `ExpiredTokenException`, `IncompleteSignatureException`, `MissingAuthenticationToken…`,
///   `InvalidClientTokenId`, `SignatureDoesNotMatch`) -> `authentication_error` (401). They
///   concern the gateway's AWS credentials, not the client's key, but 401 stops Claude Code's
///   retry loop at once instead of retrying a hopeless request ten times; the upstream message
///   (which names the AWS problem) is kept so the user sees the cause.
const EXCEPTIONS: &[(&str, ErrorKind)] = &[
    ("ValidationException", ErrorKind::InvalidRequest),
    ("ConflictException", ErrorKind::InvalidRequest),
    ("ServiceQuotaExceededException", ErrorKind::RateLimit),
    ("AccessDeniedException", ErrorKind::Permission),
    ("ResourceNotFoundException", ErrorKind::NotFound),
    ("ModelTimeoutException", ErrorKind::Timeout),
    ("ThrottlingException", ErrorKind::RateLimit),
    ("TooManyRequestsException", ErrorKind::RateLimit),
    ("ModelNotReadyException", ErrorKind::Overloaded),
    ("ModelErrorException", ErrorKind::Api),
    ("ModelStreamErrorException", ErrorKind::Api),
    ("InternalServerException", ErrorKind::Api),
    ("InternalFailure", ErrorKind::Api),
    ("ServiceUnavailableException", ErrorKind::Overloaded),
    ("ServiceUnavailable", ErrorKind::Overloaded),
    ("UnrecognizedClientException", ErrorKind::Authentication),
    ("InvalidSignatureException", ErrorKind::Authentication),
    ("ExpiredTokenException", ErrorKind::Authentication),
    ("ExpiredToken", ErrorKind::Authentication),
    ("IncompleteSignatureException", ErrorKind::Authentication),
    ("IncompleteSignature", ErrorKind::Authentication),
    (
        "MissingAuthenticationTokenException",
        ErrorKind::Authentication,
    ),
    ("MissingAuthenticationToken", ErrorKind::Authentication),
    ("InvalidClientTokenId", ErrorKind::Authentication),
    ("SignatureDoesNotMatch", ErrorKind::Authentication),
];

/// The Anthropic kind for a Bedrock exception name (HTTP `x-amzn-ErrorType` after
/// [`sanitize_error_type`], or an event-stream `:exception-type`); `None` if unknown.
pub fn exception_kind(name: &str) -> Option<ErrorKind> {
    EXCEPTIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, k)| *k)
}

/// Normalises an AWS error type: cuts at the first `:` (drops a
/// `:http://internal.amazon.com/…` suffix), then keeps what follows the last `#` (drops a
/// `namespace#` prefix), trimmed. `aws.protocoltests#FooError:http://x` -> `FooError`.
pub fn sanitize_error_type(raw: &str) -> &str {
    let cut = raw.split_once(':').map_or(raw, |(head, _)| head);
    let name = cut.rsplit_once('#').map_or(cut, |(_, tail)| tail);
    name.trim()
}

/// Maps a non-2xx Bedrock HTTP reply to an Anthropic error.
///
/// The exception name comes from the `x-amzn-ErrorType` header, else the body's `code`, else its
/// `__type` (each sanitized by [`sanitize_error_type`]). A known name decides the kind and the
/// status is the kind's canonical one (the name is trusted over the status: AWS has answered
/// `ThrottlingException` with 400). Otherwise the status decides: 408 -> `timeout_error` (504),
/// 424 -> `api_error` (500), 503 -> `overloaded_error` (529), other 4xx/5xx ->
/// [`ErrorKind::from_status`] keeping the status, anything else -> `api_error` (500).
///
/// The message is the body's `message` (or `Message`) verbatim, else the exception name, else a
/// generic text naming the status.
pub fn map_error(status: u16, error_type_header: Option<&str>, body: &[u8]) -> ApiError {
    let fields: Map<String, Value> = serde_json::from_slice(body).unwrap_or_default();
    let str_field = |name: &str| fields.get(name).and_then(Value::as_str);

    let name = [error_type_header, str_field("code"), str_field("__type")]
        .into_iter()
        .flatten()
        .map(sanitize_error_type)
        .find(|n| !n.is_empty());
    let message = str_field("message")
        .or_else(|| str_field("Message"))
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| name.map(str::to_owned))
        .unwrap_or_else(|| format!("Bedrock returned HTTP {status}"));

    if let Some(kind) = name.and_then(exception_kind) {
        return ApiError::new(kind, message);
    }
    match status {
        408 => ApiError::new(ErrorKind::Timeout, message),
        424 => ApiError::new(ErrorKind::Api, message),
        503 => ApiError::new(ErrorKind::Overloaded, message),
        400..=599 => ApiError {
            kind: ErrorKind::from_status(status),
            status,
            message,
        },
        _ => ApiError::new(ErrorKind::Api, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_examples() {
        assert_eq!(
            sanitize_error_type("ThrottlingException"),
            "ThrottlingException"
        );
        assert_eq!(
            sanitize_error_type(
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ),
            "ValidationException"
        );
        assert_eq!(
            sanitize_error_type("com.amazon.coral.service#ExpiredTokenException"),
            "ExpiredTokenException"
        );
        assert_eq!(
            sanitize_error_type("aws.protocoltests#FooError:http://x#y"),
            "FooError"
        );
        assert_eq!(sanitize_error_type(" Foo "), "Foo");
        assert_eq!(sanitize_error_type(""), "");
    }

    #[test]
    fn exception_names_are_case_insensitive() {
        assert_eq!(
            exception_kind("throttlingException"),
            Some(ErrorKind::RateLimit)
        );
        assert_eq!(
            exception_kind("THROTTLINGEXCEPTION"),
            Some(ErrorKind::RateLimit)
        );
        assert_eq!(exception_kind("Throttling"), None);
    }
}
