//! Anthropic error shapes and the Bedrock HTTP error mapping.

use serde_json::{Value, json};
use tollgate_protocol::anthropic::{ApiError, ErrorKind};
use tollgate_protocol::bedrock::map_error;

#[test]
fn error_kinds_have_the_documented_status_and_name() {
    let table = [
        (ErrorKind::InvalidRequest, 400, "invalid_request_error"),
        (ErrorKind::Authentication, 401, "authentication_error"),
        (ErrorKind::Billing, 402, "billing_error"),
        (ErrorKind::Permission, 403, "permission_error"),
        (ErrorKind::NotFound, 404, "not_found_error"),
        (ErrorKind::RequestTooLarge, 413, "request_too_large"),
        (ErrorKind::RateLimit, 429, "rate_limit_error"),
        (ErrorKind::Api, 500, "api_error"),
        (ErrorKind::Timeout, 504, "timeout_error"),
        (ErrorKind::Overloaded, 529, "overloaded_error"),
    ];
    assert_eq!(ErrorKind::ALL.len(), table.len());
    for (kind, status, name) in table {
        assert_eq!(kind.status(), status);
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.to_string(), name);
        assert_eq!(ErrorKind::from_status(status), kind);
        assert_eq!(ErrorKind::parse(name), Some(kind));
    }
}

#[test]
fn from_status_folds_unlisted_statuses() {
    for s in [405, 408, 409, 410, 418, 422, 424, 451, 499] {
        assert_eq!(ErrorKind::from_status(s), ErrorKind::InvalidRequest, "{s}");
    }
    for s in [501, 502, 503, 505, 599] {
        assert_eq!(ErrorKind::from_status(s), ErrorKind::Api, "{s}");
    }
    for s in [0, 200, 302, 600] {
        assert_eq!(ErrorKind::from_status(s), ErrorKind::Api, "{s}");
    }
}

#[test]
fn api_error_json_and_sse() {
    let err = ApiError::new(ErrorKind::Overloaded, "Overloaded");
    assert_eq!(err.status, 529);
    assert_eq!(
        err.to_json(),
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
    );
    assert_eq!(
        &err.to_sse()[..],
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    );

    // Escaping: the message survives any content, and the SSE frame stays one frame.
    let nasty = "line1\nline2\r\n\"quoted\" \\ \u{1} é 🦀 </script>";
    let err = ApiError::new(ErrorKind::InvalidRequest, nasty);
    let v: Value = serde_json::from_slice(&err.to_json()).unwrap();
    assert_eq!(
        v,
        json!({"type":"error","error":{"type":"invalid_request_error","message":nasty}})
    );
    let sse = err.to_sse();
    assert_eq!(
        sse.iter().filter(|&&b| b == b'\n').count(),
        3,
        "no raw newline in data"
    );
    assert_eq!(
        err.to_string(),
        format!("invalid_request_error (400): {nasty}")
    );
}

#[test]
fn map_error_by_exception_name() {
    let table = [
        ("ValidationException", 400, ErrorKind::InvalidRequest, 400),
        ("ConflictException", 400, ErrorKind::InvalidRequest, 400),
        (
            "ServiceQuotaExceededException",
            400,
            ErrorKind::RateLimit,
            429,
        ),
        ("AccessDeniedException", 403, ErrorKind::Permission, 403),
        ("ResourceNotFoundException", 404, ErrorKind::NotFound, 404),
        ("ModelTimeoutException", 408, ErrorKind::Timeout, 504),
        ("ThrottlingException", 429, ErrorKind::RateLimit, 429),
        ("ThrottlingException", 400, ErrorKind::RateLimit, 429),
        ("ModelNotReadyException", 429, ErrorKind::Overloaded, 529),
        ("ModelErrorException", 424, ErrorKind::Api, 500),
        ("ModelStreamErrorException", 424, ErrorKind::Api, 500),
        ("InternalServerException", 500, ErrorKind::Api, 500),
        (
            "ServiceUnavailableException",
            503,
            ErrorKind::Overloaded,
            529,
        ),
        (
            "UnrecognizedClientException",
            403,
            ErrorKind::Authentication,
            401,
        ),
        (
            "InvalidSignatureException",
            403,
            ErrorKind::Authentication,
            401,
        ),
        ("ExpiredTokenException", 403, ErrorKind::Authentication, 401),
        (
            "IncompleteSignatureException",
            400,
            ErrorKind::Authentication,
            401,
        ),
        (
            "MissingAuthenticationTokenException",
            403,
            ErrorKind::Authentication,
            401,
        ),
    ];
    for (name, status, kind, out_status) in table {
        let body = br#"{"message":"upstream says no"}"#;
        for header in [
            name.to_owned(),
            format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            format!("com.amazonaws.bedrock#{name}"),
        ] {
            let err = map_error(status, Some(&header), body);
            assert_eq!(
                (err.kind, err.status, err.message.as_str()),
                (kind, out_status, "upstream says no"),
                "{header} / {status}"
            );
        }
        // Without the header: body `code`, then `__type`.
        let body = format!(r#"{{"code":"{name}","Message":"upstream says no"}}"#);
        assert_eq!(
            map_error(status, None, body.as_bytes()).kind,
            kind,
            "code {name}"
        );
        let body = format!(r#"{{"__type":"com.amazon.coral.validate#{name}","message":"m"}}"#);
        assert_eq!(
            map_error(status, None, body.as_bytes()).kind,
            kind,
            "__type {name}"
        );
    }
}

#[test]
fn map_error_precedence_header_then_code_then_type() {
    let body = br#"{"code":"ThrottlingException","__type":"AccessDeniedException","message":"m"}"#;
    assert_eq!(
        map_error(400, Some("ValidationException"), body).kind,
        ErrorKind::InvalidRequest
    );
    assert_eq!(map_error(400, None, body).kind, ErrorKind::RateLimit);
    assert_eq!(
        map_error(400, Some(""), body).kind,
        ErrorKind::RateLimit,
        "empty header ignored"
    );
    let body = br#"{"__type":"AccessDeniedException","message":"m"}"#;
    assert_eq!(map_error(400, None, body).kind, ErrorKind::Permission);
}

#[test]
fn map_error_falls_back_to_the_status() {
    let cases = [
        (400, ErrorKind::InvalidRequest, 400),
        (401, ErrorKind::Authentication, 401),
        (403, ErrorKind::Permission, 403),
        (404, ErrorKind::NotFound, 404),
        (408, ErrorKind::Timeout, 504),
        (409, ErrorKind::InvalidRequest, 409),
        (413, ErrorKind::RequestTooLarge, 413),
        (418, ErrorKind::InvalidRequest, 418),
        (424, ErrorKind::Api, 500),
        (429, ErrorKind::RateLimit, 429),
        (500, ErrorKind::Api, 500),
        (502, ErrorKind::Api, 502),
        (503, ErrorKind::Overloaded, 529),
        (504, ErrorKind::Timeout, 504),
        (200, ErrorKind::Api, 500),
    ];
    for (status, kind, out_status) in cases {
        let err = map_error(status, Some("SomeNewException"), br#"{"message":"x"}"#);
        assert_eq!(
            (err.kind, err.status),
            (kind, out_status),
            "status {status}"
        );
        let err = map_error(status, None, b"<html>bad gateway</html>");
        assert_eq!(
            (err.kind, err.status),
            (kind, out_status),
            "status {status}, html"
        );
    }
}

#[test]
fn map_error_messages() {
    // `message` is kept verbatim (Claude Code pattern-matches upstream wording).
    let body = br#"{"message":"prompt is too long: 212345 tokens > 200000 maximum"}"#;
    let err = map_error(400, Some("ValidationException"), body);
    assert_eq!(
        err.message,
        "prompt is too long: 212345 tokens > 200000 maximum"
    );
    assert_eq!(
        err.to_json(),
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 212345 tokens > 200000 maximum"}}"#
    );
    // `Message` (capitalised) is accepted.
    let err = map_error(403, None, br#"{"Message":"The security token included in the request is invalid.","__type":"UnrecognizedClientException"}"#);
    assert_eq!(
        err.message,
        "The security token included in the request is invalid."
    );
    assert_eq!(err.kind, ErrorKind::Authentication);
    // No message: the exception name, else a generic text.
    assert_eq!(
        map_error(429, Some("ThrottlingException"), b"").message,
        "ThrottlingException"
    );
    assert_eq!(
        map_error(502, None, b"<html/>").message,
        "Bedrock returned HTTP 502"
    );
    assert_eq!(
        map_error(500, None, br#"{"message":""}"#).message,
        "Bedrock returned HTTP 500"
    );
    // Non-string fields do not break parsing of the others.
    let err = map_error(
        400,
        None,
        br#"{"code":7,"message":"m","__type":"ValidationException"}"#,
    );
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::InvalidRequest, "m")
    );
}
