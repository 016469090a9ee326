//! [`ApiError`]: the one error type of the admin HTTP surface, and its JSON shape.
//!
//! Every error response is `{"error": {"type", "message", "field"?}}`. Internal errors log their
//! cause and answer with a generic message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::crypto::CryptoError;
use crate::store::StoreError;
use crate::validate::ValidationError;

/// Machine-readable error category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequest,
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    Internal,
    /// 503: what the request needs is not there now (e.g. no data plane connected).
    Unavailable,
    /// 504: a data plane did not answer in time.
    Timeout,
    /// 429: the caller has too much of something in progress (e.g. queued exports).
    TooManyRequests,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub message: String,
    /// JSON path of the offending field (`bedrock_key_config.region`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Errors of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        field: Option<String>,
    },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but the role or scope does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// 410: it existed, and is gone for good (an expired export's output).
    #[error("{0}")]
    Gone(String),
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: the caller has as much in progress as they may (the message says what); they may
    /// try again once some of it ended.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: what the request needs is not available now; the message says what.
    #[error("{0}")]
    Unavailable(String),
    /// 504: something the request waited for did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500. The string is the cause: logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let (kind, message, field) = match self {
            ApiError::InvalidRequest { message, field } => {
                (ErrorType::InvalidRequest, message.clone(), field.clone())
            }
            ApiError::NotFound(m) | ApiError::Gone(m) => (ErrorType::NotFound, m.clone(), None),
            ApiError::MethodNotAllowed(m) | ApiError::PayloadTooLarge(m) => {
                (ErrorType::InvalidRequest, m.clone(), None)
            }
            ApiError::Conflict(m) => (ErrorType::Conflict, m.clone(), None),
            ApiError::Unauthorized(m) => (ErrorType::Unauthorized, m.clone(), None),
            ApiError::Forbidden(m) => (ErrorType::Forbidden, m.clone(), None),
            ApiError::TooManyRequests(m) => (ErrorType::TooManyRequests, m.clone(), None),
            ApiError::Unavailable(m) => (ErrorType::Unavailable, m.clone(), None),
            ApiError::GatewayTimeout(m) => (ErrorType::Timeout, m.clone(), None),
            ApiError::Internal(_) => (
                ErrorType::Internal,
                "internal error; the cause is in the server log".to_owned(),
                None,
            ),
        };
        ErrorBody {
            error: ErrorDetail {
                kind,
                message,
                field,
            },
        }
    }
}

/// The message of an error response (what its body says), kept as a response extension for the
/// audit log's failure rows (`api::audit`).
#[derive(Debug, Clone)]
pub(crate) struct ErrorMessage(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "admin API request failed");
        }
        let body = self.body();
        let message = ErrorMessage(body.error.message.clone());
        let mut response = (self.status(), Json(body)).into_response();
        response.extensions_mut().insert(message);
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
            );
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::InvalidRequest {
            message: e.message,
            field: e.field,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(v) => v.into(),
            other @ (StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. }
            | StoreError::Crypto(_)) => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Store(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
