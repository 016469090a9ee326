//! The HTTP client of Streamable HTTP MCP servers: rmcp's reqwest client with the server's
//! configured headers added to every request, their `env.NAME` values read at each request (at
//! use, as provider credentials are), so a rotated credential is sent from the next request on.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::value::Value;

type Error = StreamableHttpError<reqwest::Error>;

/// A reqwest client (no redirects) and one server's headers.
#[derive(Debug, Clone)]
pub(crate) struct HeaderClient {
    inner: reqwest::Client,
    headers: Arc<[(HeaderName, Value)]>,
}

impl HeaderClient {
    pub(crate) fn new(inner: reqwest::Client, headers: &[(HeaderName, Value)]) -> HeaderClient {
        HeaderClient {
            inner,
            headers: headers.to_vec().into(),
        }
    }

    /// The configured headers, values read now (marked sensitive), added to rmcp's own.
    pub(crate) fn with_headers(
        &self,
        mut custom: HashMap<HeaderName, HeaderValue>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, Error> {
        for (name, value) in self.headers.iter() {
            let value = value
                .resolve()
                .map_err(|e| Error::Io(std::io::Error::other(format!("header {name}: {e}"))))?;
            let mut value = HeaderValue::try_from(&*value).map_err(|_| {
                Error::Io(std::io::Error::other(format!(
                    "header {name}: not a valid header value"
                )))
            })?;
            value.set_sensitive(true);
            custom.insert(name.clone(), value);
        }
        Ok(custom)
    }
}

impl StreamableHttpClient for HeaderClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let headers = self.with_headers(custom_headers)?;
        self.inner
            .post_message(uri, message, session_id, auth_header, headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let headers = self.with_headers(custom_headers)?;
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let headers = self.with_headers(custom_headers)?;
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                limits,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let headers = self.with_headers(custom_headers)?;
        self.inner
            .delete_session(uri, session_id, auth_header, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let headers = self.with_headers(custom_headers)?;
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let headers = self.with_headers(custom_headers)?;
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_proto::env::EnvAllowlist;

    #[test]
    fn headers_are_read_at_each_request() {
        let allow = EnvAllowlist::with_extra(["HOME"]).expect("allowlist");
        let client = HeaderClient::new(
            reqwest::Client::new(),
            &[
                (
                    HeaderName::from_static("authorization"),
                    Value::Literal("Bearer t0k".into()),
                ),
                (
                    HeaderName::from_static("x-home"),
                    Value::env("HOME", &allow),
                ),
            ],
        );
        let mut own = HashMap::new();
        own.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2025-11-25"),
        );
        let headers = client.with_headers(own).expect("resolved");
        let get = |name: &'static str| &headers[&HeaderName::from_static(name)];
        assert_eq!(get("authorization"), "Bearer t0k");
        assert!(get("authorization").is_sensitive());
        assert_eq!(
            get("x-home").to_str().ok(),
            std::env::var("HOME").ok().as_deref()
        );
        assert_eq!(get("mcp-protocol-version"), "2025-11-25");

        let refused = HeaderClient::new(
            reqwest::Client::new(),
            &[(
                HeaderName::from_static("x-secret"),
                Value::env("TOLLGATE_ADMIN_TOKEN", &EnvAllowlist::default()),
            )],
        );
        let e = refused.with_headers(HashMap::new()).expect_err("refused");
        assert!(e.to_string().contains("env.TOLLGATE_ADMIN_TOKEN"), "{e}");
    }
}
