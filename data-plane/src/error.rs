//! The one error type of the inference surface. Every failure becomes an Anthropic-shaped error
//! (`{"type":"error","error":{"type","message"},"request_id"}`) with the matching status, so
//! Claude Code and the Anthropic SDKs handle it like an error from the API itself.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tollgate_protocol::anthropic::{ApiError, ErrorKind};

/// A failure on the request path, before any response byte was sent.
#[derive(Debug)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    /// Short, stable class for logs and usage records (`auth`, `upstream_timeout`, ...).
    pub class: &'static str,
    /// Ask the client not to retry (e.g. budget exhausted).
    pub no_retry: bool,
    /// Seconds after which a retry may succeed (`retry-after`; rate limits).
    pub retry_after: Option<u64>,
    /// What went wrong inside (an OS, TLS or SDK error text, an upstream URL): logged with the
    /// request id, never sent to the client, whose message stays stable.
    pub detail: Option<String>,
}

impl ProxyError {
    pub fn new(
        kind: ErrorKind,
        class: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ProxyError {
            status: StatusCode::from_u16(kind.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            message: message.into(),
            class,
            no_retry: false,
            retry_after: None,
            detail: None,
        }
    }

    /// Adds the internal detail behind this error (see [`ProxyError::detail`]). The client's
    /// message then ends with the request id and a pointer to the gateway log.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, "invalid_request", message)
    }

    pub fn unauthenticated(message: &'static str) -> Self {
        Self::new(ErrorKind::Authentication, "auth", message)
    }

    /// The error the client is sent: the message, and when there is a detail (logged only), the
    /// request id and a pointer to the gateway log.
    /// (A copy of the message: for content logging, which records the envelope sent.)
    pub(crate) fn api_error(&self, request_id: &str) -> ApiError {
        self.api_error_with(self.message.clone(), request_id)
    }

    fn api_error_with(&self, message: Cow<'static, str>, request_id: &str) -> ApiError {
        let message = if self.detail.is_some() {
            format!("{message} (request id {request_id}; the gateway log has the details)")
        } else {
            message.into_owned()
        };
        ApiError {
            kind: self.kind,
            status: self.status.as_u16(),
            message,
        }
    }

    /// The JSON response, tagged with the request id. The detail, if any, is not part of it.
    pub fn into_response_with(mut self, request_id: &str) -> Response {
        // The message is moved, not copied.
        let message = std::mem::take(&mut self.message);
        let api = self.api_error_with(message, request_id);
        let mut resp = error_response(&api, request_id, self.no_retry);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// An Anthropic error's JSON with the request id inside the envelope:
/// `{"type":"error",...}` -> `{...,"request_id":"..."}`.
pub(crate) fn error_json(api: &ApiError, request_id: &str) -> Vec<u8> {
    let mut body = api.to_json();
    if body.last() == Some(&b'}') {
        body.pop();
        body.extend_from_slice(b",\"request_id\":");
        body.extend_from_slice(
            serde_json::to_string(request_id)
                .unwrap_or_else(|_| "\"\"".into())
                .as_bytes(),
        );
        body.push(b'}');
    }
    body
}

/// Renders an Anthropic error (from an upstream mapping or our own) as a response.
pub fn error_response(api: &ApiError, request_id: &str, no_retry: bool) -> Response {
    let status = StatusCode::from_u16(api.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, error_json(api, request_id)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    if no_retry {
        h.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    resp
}
