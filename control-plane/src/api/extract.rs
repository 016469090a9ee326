//! Extractors whose rejections are [`ApiError`]s in the admin API's JSON error shape.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

mod strict;

/// A JSON request body. Requires a JSON content type; malformed JSON, wrong types, missing and
/// unknown fields become 400 errors naming the field's JSON path; too large bodies 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::invalid(
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        // A declared `Content-Length` over the limit is refused before any byte is read.
        if http_body::Body::size_hint(req.body()).lower() > super::MAX_BODY_BYTES as u64 {
            return Err(too_large());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON request body: `None` when the request has none (no `Content-Type` and an
/// empty body) or it is JSON `null`, otherwise as [`ApiJson`].
pub struct OptionalApiJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if req.headers().get(header::CONTENT_TYPE).is_none() {
            if http_body::Body::size_hint(req.body()).lower() > super::MAX_BODY_BYTES as u64 {
                return Err(too_large());
            }
            let bytes = Bytes::from_request(req, state)
                .await
                .map_err(body_rejection)?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalApiJson(None));
            }
            return Err(ApiError::invalid(
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        ApiJson::<Option<T>>::from_request(req, state)
            .await
            .map(|ApiJson(v)| OptionalApiJson(v))
    }
}

/// `application/json` and `application/*+json`; also `application/x-www-form-urlencoded`, which
/// is what `curl -d` sends, so the documented curl commands work as pasted (the body must still
/// be JSON). Browsers can send that type cross-site without a preflight, which is why the
/// loopback mode of admin auth refuses cross-origin requests.
fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json"
        || mime == "application/x-www-form-urlencoded"
        || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body too large: the admin API accepts at most {} bytes",
        super::MAX_BODY_BYTES
    ))
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::invalid(format!(
            "cannot read the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Deserialises `bytes`, reporting the JSON path of the failing field. A struct is read only from
/// a JSON object, never from an array of its fields in order (see [`strict`]).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(strict::Strict(&mut *de)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid(format!("malformed JSON: {inner}"));
        }
        data_error(&path, &inner.to_string())
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Builds the error for a serde data error at `path` (`.` for the root) with `message`.
fn data_error(path: &str, message: &str) -> ApiError {
    // serde quotes a mistyped string value ("invalid type: string \"GITHUB_TOKEN=ghp_…\",
    // expected a map"): that value may be a secret sent in the wrong shape, so the answer
    // leaves it out as the failure's audit row does.
    let message = &crate::audit::redact_echoed_strings(message);
    let base = if path == "." { "" } else { path };
    let join = |name: &str| {
        // serde_path_to_error already ends the path with an unknown field's name.
        if base == name || base.ends_with(&format!(".{name}")) {
            base.to_owned()
        } else if base.is_empty() {
            name.to_owned()
        } else {
            format!("{base}.{name}")
        }
    };
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let field = if let Some(name) = quoted("unknown field `") {
        Some(join(&name))
    } else if let Some(name) = quoted("missing field `") {
        Some(join(&name))
    } else if base.is_empty() {
        None
    } else {
        Some(base.to_owned())
    };
    let rename = |what: &str| {
        // "unknown field `x`, expected ..." -> "unknown field `path.x`, expected ..."
        let rest = message
            .strip_prefix(what)
            .and_then(|r| r.split_once('`'))
            .map_or("", |(_, rest)| rest);
        format!("{what}{}`{rest}", field.as_deref().unwrap_or_default())
    };
    let message = match &field {
        Some(_) if message.starts_with("unknown field `") => rename("unknown field `"),
        Some(_) if message.starts_with("missing field `") => rename("missing field `"),
        Some(f) => format!("invalid value for `{f}`: {message}"),
        None => format!("invalid request body: {message}"),
    };
    ApiError::InvalidRequest { message, field }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::invalid(e.body_text()))
    }
}

/// Query-string parameters; unknown parameters are rejected when `T` denies unknown fields.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| query_error(&e.body_text()))
    }
}

fn query_error(text: &str) -> ApiError {
    let message = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    // axum reports `path: message` when it knows the parameter.
    let (path, detail) = match message.split_once(": ") {
        Some((path, detail)) if !path.is_empty() && !path.contains(' ') => (path, detail),
        _ => (".", message),
    };
    match data_error(path, detail) {
        ApiError::InvalidRequest { field, .. } => ApiError::InvalidRequest {
            message: format!("invalid query string: {message}"),
            field,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        list: Option<Vec<u32>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        region: String,
    }

    fn field(json: &str) -> (Option<String>, String) {
        match parse_json::<Outer>(json.as_bytes()) {
            Err(ApiError::InvalidRequest { field, message }) => (field, message),
            other => panic!("expected InvalidRequest, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn mistyped_string_values_are_not_repeated() {
        let (f, message) = field(r#"{"name":"a","inner":"SECRET_TOKEN=ghp_abc\"def"}"#);
        assert_eq!(f.as_deref(), Some("inner"));
        assert!(!message.contains("ghp_abc"), "{message}");
        assert!(!message.contains("def\""), "{message}");
        assert!(
            message.contains(r#"invalid type: string "<redacted>", expected"#),
            "{message}"
        );
    }

    #[test]
    fn names_unknown_missing_and_mistyped_fields() {
        assert_eq!(
            field(r#"{"name":"a","bogus":1}"#).0.as_deref(),
            Some("bogus")
        );
        assert_eq!(
            field(r#"{"name":"a","inner":{"region":"x","extra":true}}"#)
                .0
                .as_deref(),
            Some("inner.extra")
        );
        assert_eq!(field(r#"{}"#).0.as_deref(), Some("name"));
        assert_eq!(
            field(r#"{"name":"a","inner":{}}"#).0.as_deref(),
            Some("inner.region")
        );
        assert_eq!(
            field(r#"{"name":"a","list":[1,"x"]}"#).0.as_deref(),
            Some("list[1]")
        );
        assert_eq!(field(r#"{"name":5}"#).0.as_deref(), Some("name"));
        let (_, m) = field(r#"{"name":"a","inner":{"region":"x","extra":true}}"#);
        assert!(
            m.starts_with("unknown field `inner.extra`, expected"),
            "{m}"
        );
        let (_, m) = field(r#"{"name":"a","inner":{}}"#);
        assert!(m.starts_with("missing field `inner.region`"), "{m}");
        let (f, m) = field(r#"{"name":"a","#);
        assert_eq!(f, None);
        assert!(m.starts_with("malformed JSON"), "{m}");
        let (f, m) = field(r#"{"name":"a"} trailing"#);
        assert_eq!(f, None);
        assert!(m.starts_with("malformed JSON"), "{m}");
    }

    /// serde reads a JSON array as a struct's fields in order; schemathesis found
    /// `PUT /api/providers/{p}/keys/{id}` accepting `[null, null]` and
    /// `{"network_config": ["https://x", 5]}` setting a base URL and a timeout.
    #[test]
    fn structs_are_read_only_from_objects() {
        let (f, m) = field(r#"["a", {"region": "x"}]"#);
        assert_eq!(f, None);
        assert!(
            m.contains("invalid type: sequence, expected struct Outer"),
            "{m}"
        );
        let (f, m) = field(r#"{"name": "a", "inner": ["x"]}"#);
        assert_eq!(f.as_deref(), Some("inner"));
        assert!(
            m.contains("invalid type: sequence, expected struct Inner"),
            "{m}"
        );
        let (f, m) = field(r#"{"name": "a", "inner": []}"#);
        assert_eq!(f.as_deref(), Some("inner"));
        assert!(m.contains("invalid type: sequence"), "{m}");
        // Arrays where the type is a sequence, objects where it is a struct, null for an Option.
        let ok: Outer =
            parse_json(br#"{"name":"a","inner":{"region":"x"},"list":[1,2]}"#).expect("valid");
        assert_eq!(ok.inner.map(|i| i.region).as_deref(), Some("x"));
        assert_eq!(ok.list, Some(vec![1, 2]));
        let ok: Outer = parse_json(br#"{"name":"a","inner":null}"#).expect("valid");
        assert!(ok.inner.is_none());
    }

    #[test]
    fn json_content_types() {
        let hv = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&hv("application/json"))));
        assert!(is_json(Some(&hv("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&hv("application/merge-patch+json"))));
        assert!(is_json(Some(&hv("application/x-www-form-urlencoded"))));
        assert!(!is_json(Some(&hv("text/plain"))));
        assert!(!is_json(Some(&hv("multipart/form-data; boundary=x"))));
        assert!(!is_json(None));
    }
}
