//! The gRPC surface data planes talk to: `ConfigService.Watch` (config out) and
//! `UsageService.Report` (usage in), served by [`ControlPlane::grpc_router`].
//!
//! # Watch
//! The first message must be a `Hello` (else `INVALID_ARGUMENT`; 10 s to send it). The node is
//! registered in the [fleet registry](crate::fleet), is sent the current snapshot at once (unless
//! its `Hello.have_version` is already that new) and then every newer published version. Versions
//! that are not newer than what the node has or was last sent are never sent; when versions are
//! published faster than a node reads, it gets the newest one (snapshots are complete, so nothing
//! is lost by skipping). Acks are read concurrently and recorded per node (applied version, NACK
//! reason, last seen). The node is marked disconnected when the stream ends for any reason.
//!
//! Provider-key tests ([`crate::probes`]) go to the node as `ConfigUpdate{probe}` messages on the
//! same stream (one at a time waits for room there; the node's queue is bounded) and come back
//! as `WatchRequest.probe_result`; only the node a test was sent to can answer it, and its
//! unanswered tests fail when its stream ends.
//!
//! # Report
//! Each `UsageBatch` is committed in one store transaction, idempotent on the request id, and
//! only then acknowledged with `UsageAck{batch_id, accepted}`; `accepted` counts the records
//! that are now stored (duplicates of stored records included) and leaves out invalid ones
//! (empty request id), which are dropped with a log line. When the store fails the stream ends
//! with `UNAVAILABLE` and the data plane resends the unacknowledged batches after reconnecting.
//!
//! # Security and transport
//! * With a join token configured ([`GrpcAuth`]), every call must carry `authorization: Bearer
//!   <join token>` metadata (compared in constant time, on SHA-256 digests); otherwise the call
//!   fails with `UNAUTHENTICATED`. Snapshots carry decrypted provider secrets: without a join
//!   token (or mTLS in front) anyone who can reach the port can read them.
//! * Both services send gzip-compressed messages to clients that accept gzip and accept gzip
//!   from clients. A snapshot is encoded and compressed **once per version** and the same bytes
//!   are sent on every Watch stream ([`ConfigWatchServer`] replaces the generated server for
//!   this): with thousands of virtual keys, compressing per stream would cost the control plane
//!   tens of milliseconds per data plane and change.
//! * [`ControlPlane::shutdown`] ends every open stream with `UNAVAILABLE` (the data planes
//!   reconnect, possibly to another replica) and refuses new ones, so a graceful server shutdown
//!   does not wait for streams that would otherwise never end. Usage batches being committed are
//!   finished and acknowledged first.
//! * The server should enable HTTP/2 keepalive (`Server::http2_keepalive_interval`) so streams of
//!   vanished peers are noticed and their nodes marked disconnected.

use std::convert::Infallible;
use std::fmt;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::StreamExt as _;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prost::Message as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::config::v1::config_service_server::SERVICE_NAME as CONFIG_SERVICE;
use tollgate_proto::config::v1::{
    ConfigUpdate, FleetShare, Hello, Snapshot, WatchRequest, watch_request,
};
use tollgate_proto::usage::v1::usage_service_server::{UsageService, UsageServiceServer};
use tollgate_proto::usage::v1::{UsageAck, UsageBatch};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::service::Interceptor;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::ControlPlane;
use crate::crypto::sha256;
use crate::fleet::NodeSession;
use tollgate_proto::logsafe::log_safe;

/// How long a Watch stream may take to send its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted `UsageBatch` (the default 4 MiB would cut large batches of long model names).
const MAX_USAGE_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Acks buffered per Report stream.
const ACK_BUFFER: usize = 16;

/// How data planes authenticate to the gRPC services.
#[derive(Clone, Default)]
pub struct GrpcAuth {
    /// When set, every call must carry `authorization: Bearer <join token>` metadata.
    pub join_token: Option<String>,
}

impl fmt::Debug for GrpcAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuth")
            .field(
                "join_token",
                &self.join_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The join-token check, run on every call before the service sees it.
#[derive(Clone)]
pub struct JoinTokenCheck {
    token_sha256: Option<[u8; 32]>,
}

impl JoinTokenCheck {
    pub fn new(auth: &GrpcAuth) -> Self {
        Self {
            token_sha256: auth.join_token.as_deref().map(|t| sha256(t.as_bytes())),
        }
    }
}

impl fmt::Debug for JoinTokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTokenCheck")
            .field("required", &self.token_sha256.is_some())
            .finish()
    }
}

impl Interceptor for JoinTokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token_sha256 else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let peer = request.remote_addr();
        match presented {
            Some(token) if bool::from(sha256(token.as_bytes()).ct_eq(expected)) => Ok(request),
            Some(_) => {
                tracing::warn!(peer = ?peer, "gRPC call with an invalid join token refused");
                Err(Status::unauthenticated("invalid join token"))
            }
            None => {
                tracing::warn!(peer = ?peer, "gRPC call without a join token refused");
                Err(Status::unauthenticated(
                    "missing join token: send `authorization: Bearer <join token>` metadata",
                ))
            }
        }
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl ControlPlane {
    /// The gRPC services (`ConfigService`, `UsageService`) behind the join-token check, with
    /// gzip enabled both ways. Serve them with
    /// `tonic::transport::Server::builder().add_routes(cp.grpc_router(auth))`, and call
    /// [`ControlPlane::shutdown`] when the server's shutdown signal fires.
    pub fn grpc_router(&self, auth: GrpcAuth) -> Routes {
        if auth.join_token.is_none() {
            tracing::warn!(
                "the gRPC services run without a join token: any client that can reach them \
                 receives the configuration, provider secrets included"
            );
        } else if auth
            .join_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            tracing::warn!("the gRPC join token is empty: every call will be refused");
        }
        let check = JoinTokenCheck::new(&auth);
        let config = ConfigWatchServer::new(ConfigWatchService::new(self.clone()));
        let usage = UsageServiceServer::new(UsageReportService::new(self.clone()))
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_USAGE_BATCH_BYTES);
        Routes::new(InterceptedService::new(config, check.clone()))
            .add_service(InterceptedService::new(usage, check))
    }
}

/// `ConfigService` backed by a [`ControlPlane`]'s published snapshots.
#[derive(Debug, Clone)]
pub struct ConfigWatchService {
    cp: ControlPlane,
    encoded: Arc<EncodedCache>,
}

impl ConfigWatchService {
    pub fn new(cp: ControlPlane) -> Self {
        Self {
            cp,
            encoded: Arc::default(),
        }
    }
}

/// A `ConfigUpdate` message, encoded (protobuf, or gzip of it) once for every stream.
type UpdateSender = mpsc::Sender<Result<Bytes, Status>>;

/// The `ConfigUpdate` of one snapshot version, encoded once: protobuf bytes and their gzip.
#[derive(Debug)]
struct EncodedUpdate {
    version: u64,
    protobuf: Bytes,
    gzip: Bytes,
}

impl EncodedUpdate {
    fn new(snapshot: &Snapshot) -> Result<Self, std::io::Error> {
        // `ConfigUpdate { snapshot }`: field 1, length-delimited, without cloning the snapshot.
        let mut protobuf = Vec::with_capacity(snapshot.encoded_len() + 16);
        prost::encoding::message::encode(1, snapshot, &mut protobuf);
        // The level tonic uses.
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(protobuf.len() / 2),
            flate2::Compression::new(6),
        );
        gz.write_all(&protobuf)?;
        Ok(Self {
            version: snapshot.version,
            protobuf: protobuf.into(),
            gzip: gz.finish()?.into(),
        })
    }

    fn for_stream(&self, gzip: bool) -> Bytes {
        if gzip {
            self.gzip.clone()
        } else {
            self.protobuf.clone()
        }
    }
}

/// The newest [`EncodedUpdate`], shared by all Watch streams of a server. The first stream that
/// needs a version encodes it (on a blocking thread, so the runtime keeps serving); the others
/// wait for it and reuse it.
#[derive(Debug, Default)]
struct EncodedCache {
    newest: tokio::sync::Mutex<Option<Arc<EncodedUpdate>>>,
}

impl EncodedCache {
    async fn get(&self, snapshot: &Arc<Snapshot>) -> Result<Arc<EncodedUpdate>, Status> {
        let mut newest = self.newest.lock().await;
        if let Some(e) = newest.as_ref().filter(|e| e.version == snapshot.version) {
            return Ok(e.clone());
        }
        let snap = snapshot.clone();
        let encoded = tokio::task::spawn_blocking(move || EncodedUpdate::new(&snap))
            .await
            .map_err(|e| Status::internal(format!("encoding the snapshot failed: {e}")))?
            .map_err(|e| Status::internal(format!("compressing the snapshot failed: {e}")))?;
        let encoded = Arc::new(encoded);
        // A stream that lags may ask for an older version than the cached one; keep the newest.
        if newest.as_ref().is_none_or(|e| e.version < encoded.version) {
            *newest = Some(encoded.clone());
        }
        Ok(encoded)
    }
}

impl ConfigWatchService {
    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
        gzip: bool,
    ) -> Result<Response<ReceiverStream<Result<Bytes, Status>>>, Status> {
        if self.cp.inner.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::invalid_argument("no Hello within 10 s of opening the stream")
            })??;
        let hello = match first {
            Some(WatchRequest {
                msg: Some(watch_request::Msg::Hello(hello)),
            }) => hello,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a Watch stream must be a Hello",
                ));
            }
            None => {
                return Err(Status::invalid_argument(
                    "the Watch stream ended before its Hello",
                ));
            }
        };
        if hello.node_id.trim().is_empty() {
            return Err(Status::invalid_argument("Hello.node_id must not be empty"));
        }
        let session = self.cp.inner.fleet.register(&hello, peer);
        log_hello(&hello, peer, self.cp.published_version());
        // A snapshot and the share that follows it.
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(run_watch(
            self.cp.clone(),
            self.encoded.clone(),
            gzip,
            session,
            hello.have_version,
            inbound,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn log_hello(hello: &Hello, peer: Option<std::net::SocketAddr>, published: u64) {
    tracing::info!(
        node_id = %log_safe(&hello.node_id),
        build_version = %log_safe(&hello.build_version),
        address = %log_safe(&hello.address),
        peer = ?peer,
        have_version = hello.have_version,
        published_version = published,
        "data plane connected"
    );
    if hello.have_version > published {
        tracing::warn!(
            node_id = %log_safe(&hello.node_id),
            have_version = hello.have_version,
            published_version = published,
            "the data plane serves a newer config version than this control plane publishes \
             (database restored from an older backup?); it gets versions above its own only"
        );
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the control plane is shutting down; reconnect")
}

/// One Watch stream: sends snapshots newer than what the node has, records its acks, ends on
/// shutdown, on a broken inbound stream or when the client goes away.
async fn run_watch(
    cp: ControlPlane,
    encoded: Arc<EncodedCache>,
    gzip: bool,
    session: NodeSession,
    have_version: u64,
    mut inbound: Streaming<WatchRequest>,
    tx: UpdateSender,
) {
    let shutdown = cp.inner.shutdown.clone();
    let mut snapshots = cp.snapshots();
    let mut latest: Arc<Snapshot> = snapshots.borrow_and_update().clone();
    let mut sent = have_version;
    let mut inbound_open = true;
    // The fleet share last sent (`None`: none yet), checked after every snapshot sent and every
    // SHARE_CHECK: the fleet changes when nodes join or their lease runs out.
    let mut sent_share: Option<(u32, u32)> = None;
    let mut share_check = tokio::time::interval(SHARE_CHECK);
    share_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Grants of rebalanced allowances (crate::allowances) are picked up this often.
    let mut grant_check = tokio::time::interval(GRANT_CHECK);
    grant_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Provider-key probes for this node (crate::probes), and the one waiting for room on the
    // stream.
    let mut probes = cp.attach_probe_target(session.node_id());
    let mut queued_probe: Option<(u64, Bytes)> = None;
    loop {
        let pending = latest.version > sent;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = tx.try_send(Err(shutting_down()));
                break;
            }
            _ = tx.closed() => break,
            msg = inbound.next(), if inbound_open => match msg {
                Some(Ok(WatchRequest { msg: Some(watch_request::Msg::Ack(ack)) })) => {
                    if ack.applied {
                        tracing::debug!(node_id = %log_safe(session.node_id()), version = ack.version, "config applied");
                    } else {
                        tracing::warn!(
                            node_id = %log_safe(session.node_id()),
                            version = ack.version,
                            reason = %log_safe(&ack.error),
                            "data plane rejected a config snapshot"
                        );
                    }
                    session.acked(&ack);
                }
                Some(Ok(WatchRequest { msg: Some(watch_request::Msg::Limits(report)) })) => {
                    cp.report_limits(session.node_id(), report);
                }
                Some(Ok(WatchRequest { msg: Some(watch_request::Msg::KeyHealth(report)) })) => {
                    if !report.ejected.is_empty() {
                        tracing::info!(
                            node_id = %log_safe(session.node_id()),
                            ejected = report.ejected.len(),
                            "data plane reports provider keys out of service"
                        );
                    }
                    session.key_health(&report);
                }
                Some(Ok(WatchRequest { msg: Some(watch_request::Msg::ProbeResult(result)) })) => {
                    let probe_id = result.probe_id;
                    if !probes.answer(result) {
                        tracing::debug!(node_id = %log_safe(session.node_id()), probe_id, "key test answer nobody waits for (given up, or not this node's)");
                    }
                }
                Some(Ok(WatchRequest { msg: Some(watch_request::Msg::Hello(_)) })) => {
                    let _ = tx.try_send(Err(Status::invalid_argument(
                        "Hello may only be the first message of a Watch stream",
                    )));
                    break;
                }
                Some(Ok(WatchRequest { msg: None })) => {}
                Some(Err(status)) => {
                    tracing::debug!(node_id = %log_safe(session.node_id()), status = %status, "Watch stream broke");
                    break;
                }
                // The node closed its side; keep sending until it goes away.
                None => inbound_open = false,
            },
            permit = tx.reserve(), if pending => match permit {
                Ok(permit) => {
                    let update = match encoded.get(&latest).await {
                        Ok(update) => update,
                        Err(status) => {
                            tracing::error!(status = %status, "cannot encode a config snapshot");
                            permit.send(Err(status));
                            break;
                        }
                    };
                    permit.send(Ok(update.for_stream(gzip)));
                    sent = latest.version;
                    session.sent(sent);
                    send_share(&cp, &session, gzip, &tx, &mut sent_share);
                }
                Err(_) => break,
            },
            req = probes.next(), if queued_probe.is_none() => if let Some(req) = req {
                let probe_id = req.probe_id;
                let update = ConfigUpdate { probe: Some(req), ..ConfigUpdate::default() };
                match encode_small_update(&update, gzip) {
                    Some(bytes) => queued_probe = Some((probe_id, bytes)),
                    None => probes.abandon(probe_id),
                }
            },
            permit = tx.reserve(), if queued_probe.is_some() => match permit {
                Ok(permit) => {
                    if let Some((probe_id, bytes)) = queued_probe.take() {
                        permit.send(Ok(bytes));
                        tracing::debug!(node_id = %log_safe(session.node_id()), probe_id, "key test sent");
                    }
                }
                Err(_) => break,
            },
            _ = share_check.tick(), if sent > 0 => {
                send_share(&cp, &session, gzip, &tx, &mut sent_share);
            }
            _ = grant_check.tick(), if sent > 0 => {
                send_grants(&cp, &session, gzip, &tx);
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                latest = snapshots.borrow_and_update().clone();
            }
        }
    }
    // Fail the key tests this node was given and has not answered.
    drop(probes);
    // Mark the node disconnected before the client sees the stream end.
    drop(session);
    drop(tx);
}

/// How often a Watch stream checks whether its node's fleet share changed.
const SHARE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a Watch stream hands its node the grants waiting for it.
const GRANT_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// An update without a snapshot, encoded for the stream (`None` if compressing failed).
fn encode_small_update(update: &ConfigUpdate, gzip: bool) -> Option<Bytes> {
    let update = update.encode_to_vec();
    if !gzip {
        return Some(Bytes::from(update));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&update).ok()?;
    gz.finish().ok().map(Bytes::from)
}

/// Sends the node the grants of rebalanced allowances waiting for it. Grants that do not fit
/// in the stream's buffer are dropped: the allowances count them until the node's next report
/// says what it has (crate::allowances).
fn send_grants(cp: &ControlPlane, session: &NodeSession, gzip: bool, tx: &UpdateSender) {
    for grants in cp.inner.allowances.take_grants(session.node_id()) {
        let (seq, count) = (grants.seq, grants.grants.len());
        let update = ConfigUpdate {
            grants: Some(grants),
            ..ConfigUpdate::default()
        };
        let Some(bytes) = encode_small_update(&update, gzip) else {
            continue;
        };
        if tx.try_send(Ok(bytes)).is_ok() {
            tracing::debug!(node_id = %log_safe(session.node_id()), seq, grants = count, "allowance grants sent");
        }
    }
}

/// Sends the node its fleet share of every limit if it changed since `sent`; when the stream's
/// buffer is full the next check tries again.
fn send_share(
    cp: &ControlPlane,
    session: &NodeSession,
    gzip: bool,
    tx: &UpdateSender,
    sent: &mut Option<(u32, u32)>,
) {
    let share = cp.inner.fleet.share_of(session.node_id());
    if *sent == Some(share) {
        return;
    }
    let update = ConfigUpdate {
        share: Some(FleetShare {
            slot: share.0,
            of: share.1,
        }),
        ..ConfigUpdate::default()
    };
    let Some(bytes) = encode_small_update(&update, gzip) else {
        return;
    };
    if tx.try_send(Ok(bytes)).is_ok() {
        tracing::debug!(node_id = %log_safe(session.node_id()), slot = share.0, of = share.1, "fleet share sent");
        *sent = Some(share);
    }
}

const WATCH_PATH: &str = "/tollgate.config.v1.ConfigService/Watch";

/// The `ConfigService` server. It stands in for the generated `ConfigServiceServer` so that a
/// snapshot is encoded and gzip-compressed once per version ([`EncodedCache`]) rather than by
/// tonic for every stream: the streams carry pre-encoded bytes ([`PreEncoded`]) and, for
/// clients that accept gzip, the response is marked `grpc-encoding: gzip` and each message
/// flagged compressed ([`MarkCompressed`]). Requests are decoded by tonic as usual (gzip
/// accepted).
#[derive(Debug, Clone)]
pub struct ConfigWatchServer {
    svc: ConfigWatchService,
}

impl ConfigWatchServer {
    pub fn new(svc: ConfigWatchService) -> Self {
        Self { svc }
    }
}

impl NamedService for ConfigWatchServer {
    const NAME: &'static str = CONFIG_SERVICE;
}

/// Whether the request's `grpc-accept-encoding` lists gzip.
fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("grpc-accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim().eq_ignore_ascii_case("gzip"))
}

impl<B> tonic::codegen::Service<http::Request<B>> for ConfigWatchServer
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let svc = self.svc.clone();
        Box::pin(async move {
            if req.uri().path() != WATCH_PATH {
                return Ok(Status::unimplemented("").into_http());
            }
            let gzip = accepts_gzip(req.headers());
            let mut grpc =
                tonic::server::Grpc::new(WatchCodec).accept_compressed(CompressionEncoding::Gzip);
            let resp = grpc.streaming(WatchMethod { svc, gzip }, req).await;
            if !gzip {
                return Ok(resp);
            }
            let (mut parts, body) = resp.into_parts();
            parts
                .headers
                .insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(MarkCompressed::new(body)),
            ))
        })
    }
}

struct WatchMethod {
    svc: ConfigWatchService,
    gzip: bool,
}

impl tonic::server::StreamingService<WatchRequest> for WatchMethod {
    type Response = Bytes;
    type ResponseStream = ReceiverStream<Result<Bytes, Status>>;
    type Future = tonic::codegen::BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let (svc, gzip) = (self.svc.clone(), self.gzip);
        Box::pin(async move { svc.watch(request, gzip).await })
    }
}

/// Decodes `WatchRequest`s; encodes messages that are already encoded.
#[derive(Debug, Clone, Copy, Default)]
struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = Bytes;
    type Decode = WatchRequest;
    type Encoder = PreEncoded;
    type Decoder = WatchRequestDecoder;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> WatchRequestDecoder {
        WatchRequestDecoder
    }
}

/// Writes a message's bytes as they are.
#[derive(Debug)]
struct PreEncoded;

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug)]
struct WatchRequestDecoder;

impl Decoder for WatchRequestDecoder {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        WatchRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("invalid WatchRequest: {e}")))
    }
}

/// A gRPC response body whose messages are gzip bytes framed by tonic as uncompressed: sets
/// each message's compressed flag (the first byte of its 5-byte prefix). Tracks the message
/// boundaries across data frames.
struct MarkCompressed<B> {
    inner: B,
    /// Prefix bytes of the current message seen so far (0 = at a message start).
    prefix_seen: usize,
    /// Length being read from the prefix.
    len: usize,
    /// Payload bytes of the current message still to come.
    remaining: usize,
}

impl<B> MarkCompressed<B> {
    fn new(inner: B) -> Self {
        Self {
            inner,
            prefix_seen: 0,
            len: 0,
            remaining: 0,
        }
    }

    fn mark(&mut self, data: Bytes) -> Bytes {
        let mut data = data
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len() - i);
                self.remaining -= n;
                i += n;
                continue;
            }
            if self.prefix_seen == 0 {
                data[i] = 1;
            } else {
                self.len = (self.len << 8) | usize::from(data[i]);
            }
            self.prefix_seen += 1;
            i += 1;
            if self.prefix_seen == 5 {
                self.remaining = self.len;
                self.prefix_seen = 0;
                self.len = 0;
            }
        }
        data.freeze()
    }
}

impl<B> HttpBody for MarkCompressed<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(frame.map(|r| {
            r.map(|f| match f.into_data() {
                Ok(data) => Frame::data(self.mark(data)),
                Err(other) => other,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `UsageService` committing batches to a [`ControlPlane`]'s store.
#[derive(Debug, Clone)]
pub struct UsageReportService {
    cp: ControlPlane,
}

impl UsageReportService {
    pub fn new(cp: ControlPlane) -> Self {
        Self { cp }
    }
}

#[tonic::async_trait]
impl UsageService for UsageReportService {
    type ReportStream = ReceiverStream<Result<UsageAck, Status>>;

    async fn report(
        &self,
        request: Request<Streaming<UsageBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        if self.cp.inner.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        tokio::spawn(run_report(self.cp.clone(), peer, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn run_report(
    cp: ControlPlane,
    peer: Option<std::net::SocketAddr>,
    mut inbound: Streaming<UsageBatch>,
    tx: mpsc::Sender<Result<UsageAck, Status>>,
) {
    let shutdown = cp.inner.shutdown.clone();
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = tx.try_send(Err(shutting_down()));
                break;
            }
            _ = tx.closed() => break,
            m = inbound.next() => m,
        };
        let batch = match next {
            Some(Ok(batch)) => batch,
            Some(Err(status)) => {
                tracing::debug!(peer = ?peer, status = %status, "Report stream broke");
                break;
            }
            None => break,
        };
        // Not raced against shutdown: a batch being committed is finished and acknowledged.
        match cp.store_usage(&batch.records, &batch.node_id).await {
            Ok((accepted, stored)) => {
                tracing::debug!(
                    node_id = %log_safe(&batch.node_id),
                    batch_id = batch.batch_id,
                    accepted,
                    new_rows = stored,
                    "usage batch committed"
                );
                let ack = UsageAck {
                    batch_id: batch.batch_id,
                    accepted,
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(
                    node_id = %log_safe(&batch.node_id),
                    batch_id = batch.batch_id,
                    error = %e,
                    "cannot store a usage batch; the data plane will resend it"
                );
                let _ = tx
                    .send(Err(Status::unavailable(
                        "cannot store usage right now; resend unacknowledged batches later",
                    )))
                    .await;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use tollgate_proto::config::v1::{ConfigUpdate, VirtualKey};

    use super::*;

    #[test]
    fn an_encoded_update_is_the_config_update_message_and_its_gzip() {
        let snapshot = Snapshot {
            version: 7,
            virtual_keys: (0..50)
                .map(|i| VirtualKey {
                    id: format!("vk-{i}"),
                    name: format!("team-{i}"),
                    key_sha256: Bytes::from(vec![i as u8; 32]),
                    providers: vec!["bedrock".into()],
                    monthly_budget_usd: 10.0,
                    active: true,
                    ..Default::default()
                })
                .collect(),
            created_at_unix_ms: 1,
            ..Default::default()
        };
        let encoded = EncodedUpdate::new(&snapshot).unwrap();
        let expected = ConfigUpdate {
            snapshot: Some(snapshot.clone()),
            ..ConfigUpdate::default()
        }
        .encode_to_vec();
        assert_eq!(encoded.version, 7);
        assert_eq!(encoded.protobuf[..], expected[..]);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&encoded.gzip[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, expected);
        assert_eq!(encoded.for_stream(true), encoded.gzip);
        assert_eq!(encoded.for_stream(false), encoded.protobuf);
    }

    /// gRPC frames (uncompressed flag) of `payloads`.
    fn frames(payloads: &[Vec<u8>], flag: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.push(flag);
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn every_message_is_flagged_compressed_however_the_body_is_chunked() {
        // Payloads full of 0 and 1 bytes, one empty, one longer than 256 bytes.
        let payloads = vec![vec![0u8; 3], Vec::new(), vec![1u8; 300], vec![0u8; 1]];
        let input = frames(&payloads, 0);
        let expected = frames(&payloads, 1);
        for chunk in 1..=input.len() {
            let mut body = MarkCompressed::new(());
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                out.extend_from_slice(&body.mark(Bytes::copy_from_slice(piece)));
            }
            assert_eq!(out, expected, "chunks of {chunk} bytes");
        }
    }

    #[test]
    fn gzip_is_detected_in_grpc_accept_encoding() {
        let mut headers = http::HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert("grpc-accept-encoding", "identity, deflate".parse().unwrap());
        assert!(!accepts_gzip(&headers));
        headers.insert("grpc-accept-encoding", "identity,gzip".parse().unwrap());
        assert!(accepts_gzip(&headers));
    }
}
