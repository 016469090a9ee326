//! The HTTP client for provider calls: hyper-util's pooled client over rustls (native roots),
//! HTTP/1.1 keep-alive, `TCP_NODELAY`, no redirects (an upstream redirect is relayed, never
//! followed with the signed body), and `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` honoured through
//! a CONNECT tunnel.
//!
//! It is deliberately thin: the request path builds an `http::Request` once and hands it over;
//! nothing re-parses the URL or copies the body on the way out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tollgate_protocol::anthropic::ErrorKind;

use crate::error::ProxyError;
use crate::grpc::error_chain;

/// The body of an upstream answer: as it arrives, or already read (an error body the gateway
/// looked at before deciding what to do with the answer).
#[derive(Debug)]
pub enum UpstreamBody {
    Streaming(Incoming),
    Read(Full<Bytes>),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Streaming(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Read(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streaming(b) => b.is_end_stream(),
            UpstreamBody::Read(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Streaming(b) => b.size_hint(),
            UpstreamBody::Read(b) => b.size_hint(),
        }
    }
}

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type Connector = hyper_rustls::HttpsConnector<Egress>;

/// A pooled upstream client; cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<Connector, Full<Bytes>>,
}

impl HttpClient {
    /// A client whose TCP connect (to the upstream or to the proxy) gives up after
    /// `connect_timeout`. Proxy settings are read from the environment once, here.
    pub fn new(connect_timeout: Duration) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let proxies = Matcher::from_env();
        let egress = Egress {
            http,
            proxies: std::sync::Arc::new(proxies),
        };
        let builder =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config().clone());
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(egress);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        HttpClient { inner }
    }

    /// Sends a request; `timeout` bounds the time until the response head has arrived.
    pub async fn send(
        &self,
        provider: &str,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        match tokio::time::timeout(timeout, self.inner.request(req)).await {
            Ok(Ok(resp)) => Ok(resp.map(UpstreamBody::Streaming)),
            Ok(Err(e)) => Err(client_error(provider, &e)),
            Err(_) => Err(timeout_error(format!(
                "provider {provider:?} sent no response within {} s",
                timeout.as_secs()
            ))),
        }
    }
}

/// TLS to upstreams: rustls on aws-lc-rs with the system's root certificates, loaded once per
/// process. Without any, every
/// TLS handshake fails with "unknown issuer", which names the problem at use; plain-HTTP
/// upstreams (VPC endpoints, doubles) keep working.
fn tls_config() -> &'static rustls::ClientConfig {
    static CONFIG: std::sync::OnceLock<rustls::ClientConfig> = std::sync::OnceLock::new();
    CONFIG.get_or_init(load_tls_config)
}

fn load_tls_config() -> rustls::ClientConfig {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(error = %error, "could not load some native root certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no native root certificates found; TLS upstreams will be refused");
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// Reads a whole (non-streaming) upstream body, bounded in size and time.
pub async fn read_body(
    provider: &str,
    resp: Response<UpstreamBody>,
    timeout: Duration,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    // As the request body is read (`server::read_body`): bounded, and a body that arrives in one
    // frame (the usual case) is returned without a copy.
    let read = async {
        match Limited::new(resp.into_body(), limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(ProxyError::new(
                ErrorKind::Api,
                "upstream_too_large",
                format!("provider {provider:?} sent a response over {limit} bytes"),
            )
            .with_status(StatusCode::BAD_GATEWAY)),
            Err(e) => Err(unreachable_error("lost the connection to", provider, &*e)),
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(timeout_error(format!(
            "provider {provider:?} did not finish its response in time"
        ))),
    }
}

fn is_timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Error class of an upstream too slow to connect, answer or finish.
pub const TIMEOUT_CLASS: &str = "upstream_timeout";
/// Error class of an upstream that could not be reached, or dropped the connection.
pub const UNREACHABLE_CLASS: &str = "upstream_unreachable";

/// An upstream too slow to connect, answer or finish: 504 `upstream_timeout`.
fn timeout_error(message: String) -> ProxyError {
    ProxyError::new(ErrorKind::Timeout, TIMEOUT_CLASS, message)
        .with_status(StatusCode::GATEWAY_TIMEOUT)
}

/// An upstream that gave no usable answer: unreachable (502) or too slow to connect (504). The
/// client's message is stable; the OS or TLS error behind it goes to the log only (it can name
/// addresses, certificates and proxy settings of the gateway's network).
fn client_error(provider: &str, err: &hyper_util::client::legacy::Error) -> ProxyError {
    if is_timed_out(err) {
        return timeout_error(format!(
            "provider {provider:?} did not answer in time (connect timed out)"
        ))
        .with_detail(error_chain(err));
    }
    let what = if err.is_connect() {
        "could not connect to"
    } else {
        "lost the connection to"
    };
    unreachable_error(what, provider, err)
}

fn unreachable_error(
    what: &str,
    provider: &str,
    err: &(dyn std::error::Error + 'static),
) -> ProxyError {
    ProxyError::new(
        ErrorKind::Api,
        UNREACHABLE_CLASS,
        format!("{what} provider {provider:?}"),
    )
    .with_status(StatusCode::BAD_GATEWAY)
    .with_detail(error_chain(err))
}

/// A POST to `uri` with `headers`, then the provider's `extra_headers` (which replace headers of
/// the same name).
pub fn post(
    uri: Uri,
    mut headers: http::HeaderMap,
    extra_headers: &http::HeaderMap,
    body: Bytes,
) -> Request<Full<Bytes>> {
    for (name, value) in extra_headers {
        headers.insert(name, value.clone());
    }
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req
}

/// Parses an upstream URL built by a provider (`base_url` + path). The URL is internal: a bad
/// one is logged, and the client is told only that the provider's configuration is at fault.
pub fn parse_url(url: &str) -> Result<Uri, ProxyError> {
    url.parse::<Uri>().map_err(|e| {
        ProxyError::new(
            ErrorKind::Api,
            "gateway_config",
            "the gateway could not build the upstream URL from the provider's configuration",
        )
        .with_detail(format!("invalid upstream URL {url:?}: {e}"))
    })
}

/// TCP to the upstream, directly or through a CONNECT tunnel when the environment's proxy
/// settings (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) select one for it.
#[derive(Clone, Debug)]
pub struct Egress {
    http: HttpConnector,
    proxies: std::sync::Arc<Matcher>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Egress {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self.proxies.intercept(&dst) {
            None => {
                let fut = tower_service::Service::call(&mut self.http, dst);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.http.clone());
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut tunnel, cx))
                        .await?;
                    tower_service::Service::call(&mut tunnel, dst)
                        .await
                        .map_err(Into::into)
                })
            }
        }
    }
}
