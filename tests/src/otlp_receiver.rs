//! An OTLP trace receiver on loopback, standing in for an OpenTelemetry Collector: OTLP/gRPC
//! (the generated `TraceService` server of `opentelemetry-proto`) or OTLP/HTTP with protobuf
//! bodies (`POST /v1/traces`, decoded with prost); either may be gzip-compressed. It keeps every span it receives, flattened
//! into [`ReceivedSpan`] (ids in hex, attributes as JSON values), and counts the requests it got.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::serve::{Bound, Running};

/// One span as the receiver got it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service_name: Option<String>,
    /// The resource's attributes.
    pub resource: Map<String, Value>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SpanKind` as the protocol numbers it: 2 server, 3 client.
    pub kind: i32,
    pub attributes: Map<String, Value>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// `SpanKind` numbers of the protocol.
pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;
/// `Status.code` of an error.
pub const STATUS_ERROR: i32 = 2;

#[derive(Debug, Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: AtomicUsize,
    /// OTLP/HTTP requests whose body was gzip-compressed.
    gzip: AtomicUsize,
}

impl Received {
    fn take(&self, request: ExportTraceServiceRequest) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut spans = self.spans.lock().expect("receiver lock");
        for rs in request.resource_spans {
            let resource = rs
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service_name = resource
                .get("service.name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                for s in ss.spans {
                    let status = s.status.unwrap_or_default();
                    spans.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent_span_id: hex::encode(&s.parent_span_id),
                        name: s.name,
                        kind: s.kind,
                        attributes: attributes(&s.attributes),
                        status_code: status.code,
                        status_message: status.message,
                        start_unix_nano: s.start_time_unix_nano,
                        end_unix_nano: s.end_time_unix_nano,
                    });
                }
            }
        }
    }
}

/// OTLP attributes as JSON: strings, booleans, integers, doubles, arrays.
fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
        .collect()
}

fn json(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(other) => Value::String(format!("{other:?}")),
        None => Value::Null,
    }
}

struct Service(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

enum Server {
    Grpc { _stop: watch::Sender<bool> },
    Http { _running: Running },
}

/// A receiver on loopback; dropping it stops it.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    _server: Server,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// OTLP/gRPC on `127.0.0.1:0`.
    pub fn grpc() -> std::io::Result<OtlpReceiver> {
        Self::grpc_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// OTLP/gRPC on `addr`, served from its own thread and runtime.
    pub fn grpc_on(addr: SocketAddr) -> std::io::Result<OtlpReceiver> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let (stop, mut stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-grpc")
            .enable_all()
            .build()?;
        let service = TraceServiceServer::new(Service(Arc::clone(&received)))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        std::thread::Builder::new()
            .name("otlp-grpc".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let _ = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, async move {
                            let _ = stopped.wait_for(|v| *v).await;
                        })
                        .await;
                });
                runtime.shutdown_background();
            })?;
        Ok(OtlpReceiver {
            addr,
            received,
            _server: Server::Grpc { _stop: stop },
        })
    }

    /// OTLP/HTTP (protobuf) on `127.0.0.1:0`.
    pub fn http() -> std::io::Result<OtlpReceiver> {
        Self::http_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// OTLP/HTTP (protobuf) on `addr`: `POST /v1/traces`, `application/x-protobuf`.
    pub fn http_on(addr: SocketAddr) -> std::io::Result<OtlpReceiver> {
        let bound = Bound::bind(addr)?;
        let received = Arc::new(Received::default());
        let running = bound.serve("otlp-http", 1, http_export, Arc::clone(&received))?;
        Ok(OtlpReceiver {
            addr: running.addr(),
            received,
            _server: Server::Http { _running: running },
        })
    }

    /// `http://127.0.0.1:PORT`: the base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("receiver lock").clone()
    }

    /// Export requests received (any path, any content).
    pub fn requests(&self) -> usize {
        self.received.requests.load(Ordering::SeqCst)
    }

    /// OTLP/HTTP requests that came gzip-compressed.
    pub fn gzip_requests(&self) -> usize {
        self.received.gzip.load(Ordering::SeqCst)
    }

    /// Waits until the spans received satisfy `done`, and returns them; panics with what was
    /// received after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("the OTLP receiver never got {what}; it got {spans:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn http_export(
    axum::extract::State(received): axum::extract::State<Arc<Received>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    if method != http::Method::POST || uri.path() != "/v1/traces" {
        received.requests.fetch_add(1, Ordering::SeqCst);
        return (
            http::StatusCode::NOT_FOUND,
            "OTLP traces go to POST /v1/traces",
        )
            .into_response();
    }
    if headers
        .get(http::header::CONTENT_TYPE)
        .is_none_or(|v| v != "application/x-protobuf")
    {
        received.requests.fetch_add(1, Ordering::SeqCst);
        return (
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/x-protobuf",
        )
            .into_response();
    }
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let body = if gzip {
        received.gzip.fetch_add(1, Ordering::SeqCst);
        let mut plain = Vec::new();
        if let Err(e) =
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_ref()), &mut plain)
        {
            received.requests.fetch_add(1, Ordering::SeqCst);
            return (http::StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
        Bytes::from(plain)
    } else {
        body
    };
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received.take(request);
            (
                [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(e) => {
            received.requests.fetch_add(1, Ordering::SeqCst);
            (http::StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}
