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
//!   from clients: a snapshot with thousands of virtual keys compresses well.
//! * [`ControlPlane::shutdown`] ends every open stream with `UNAVAILABLE` (the data planes
//!   reconnect, possibly to another replica) and refuses new ones, so a graceful server shutdown
//!   does not wait for streams that would otherwise never end. Usage batches being committed are
//!   finished and acknowledged first.
//! * The server should enable HTTP/2 keepalive (`Server::http2_keepalive_interval`) so streams of
//!   vanished peers are noticed and their nodes marked disconnected.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::config::v1::config_service_server::{ConfigService, ConfigServiceServer};
use tollgate_proto::config::v1::{ConfigUpdate, Hello, Snapshot, WatchRequest, watch_request};
use tollgate_proto::usage::v1::usage_service_server::{UsageService, UsageServiceServer};
use tollgate_proto::usage::v1::{UsageAck, UsageBatch};
use tonic::codec::CompressionEncoding;
use tonic::service::Interceptor;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::ControlPlane;
use crate::crypto::sha256;
use crate::fleet::NodeSession;

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
        let config = ConfigServiceServer::new(ConfigWatchService::new(self.clone()))
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
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
}

impl ConfigWatchService {
    pub fn new(cp: ControlPlane) -> Self {
        Self { cp }
    }
}

type UpdateSender = mpsc::Sender<Result<ConfigUpdate, Status>>;

#[tonic::async_trait]
impl ConfigService for ConfigWatchService {
    type WatchStream = ReceiverStream<Result<ConfigUpdate, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
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
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(run_watch(
            self.cp.clone(),
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
        node_id = %hello.node_id,
        build_version = %hello.build_version,
        address = %hello.address,
        peer = ?peer,
        have_version = hello.have_version,
        published_version = published,
        "data plane connected"
    );
    if hello.have_version > published {
        tracing::warn!(
            node_id = %hello.node_id,
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
                        tracing::debug!(node_id = session.node_id(), version = ack.version, "config applied");
                    } else {
                        tracing::warn!(
                            node_id = session.node_id(),
                            version = ack.version,
                            reason = %ack.error,
                            "data plane rejected a config snapshot"
                        );
                    }
                    session.acked(&ack);
                }
                Some(Ok(WatchRequest { msg: Some(watch_request::Msg::Hello(_)) })) => {
                    let _ = tx.try_send(Err(Status::invalid_argument(
                        "Hello may only be the first message of a Watch stream",
                    )));
                    break;
                }
                Some(Ok(WatchRequest { msg: None })) => {}
                Some(Err(status)) => {
                    tracing::debug!(node_id = session.node_id(), status = %status, "Watch stream broke");
                    break;
                }
                // The node closed its side; keep sending until it goes away.
                None => inbound_open = false,
            },
            permit = tx.reserve(), if pending => match permit {
                Ok(permit) => {
                    permit.send(Ok(ConfigUpdate { snapshot: Some((*latest).clone()) }));
                    sent = latest.version;
                    session.sent(sent);
                }
                Err(_) => break,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                latest = snapshots.borrow_and_update().clone();
            }
        }
    }
    // Mark the node disconnected before the client sees the stream end.
    drop(session);
    drop(tx);
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
        match cp.store_usage(batch.records, &batch.node_id).await {
            Ok((accepted, stored)) => {
                tracing::debug!(
                    node_id = %batch.node_id,
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
                    node_id = %batch.node_id,
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
