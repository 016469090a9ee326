//! Test support: a scriptable control plane speaking the real gRPC contract (`ConfigService`,
//! `UsageService`, gzip both ways) on 127.0.0.1, built from `tollgate-proto`'s generated server
//! traits only; the data plane never depends on the control-plane crate.
//!
//! Its state ([`FakeState`]) outlives the server, like a database: the server can be stopped
//! (every open stream ends with `UNAVAILABLE`, the port is closed) and started again on the same
//! port with what it had stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::config::v1::config_service_server::{ConfigService, ConfigServiceServer};
use tollgate_proto::config::v1::{Ack, ConfigUpdate, Hello, WatchRequest, watch_request};
use tollgate_proto::usage::v1::usage_service_server::{UsageService, UsageServiceServer};
use tollgate_proto::usage::v1::{UsageAck, UsageBatch, UsageRecord};
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::grpc::ConnectOptions;

/// Metadata of one gRPC call as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct CallInfo {
    pub method: &'static str,
    pub authorization: Option<String>,
    pub accept_encoding: Option<String>,
    /// `grpc-encoding` of the request messages.
    pub encoding: Option<String>,
}

/// Everything the fake control plane was told, and what it should send.
#[derive(Debug)]
pub(crate) struct FakeState {
    /// The snapshot every Watch stream gets at once and whenever it changes.
    pub snapshot: watch::Sender<Option<pb::Snapshot>>,
    pub hellos: Mutex<Vec<Hello>>,
    pub acks: Mutex<Vec<Ack>>,
    pub calls: Mutex<Vec<CallInfo>>,
    /// Usage storage: request id -> times received (storage is idempotent: a key is one row).
    pub usage: Mutex<HashMap<String, u32>>,
    /// (node id, batch id, records) of every batch received.
    pub batches: Mutex<Vec<(String, u64, usize)>>,
    /// Request id -> bytes of recorded bodies its record carried (content logging), for the
    /// records that carried some.
    pub content: Mutex<HashMap<String, usize>>,
    /// When false, usage batches are stored but not acknowledged (a commit whose ack is lost).
    pub ack_usage: AtomicBool,
    /// When set, calls without `authorization: Bearer <token>` are refused.
    pub required_token: Option<String>,
    /// Whether the server accepts gzip-compressed requests (read at start).
    pub accept_gzip: AtomicBool,
    /// When set, a call's response headers are sent only after its first request message
    /// (as a server that reads the Hello or the first batch before answering would).
    pub answer_after_first_message: AtomicBool,
}

impl FakeState {
    pub fn new(required_token: Option<&str>) -> Arc<FakeState> {
        Arc::new(FakeState {
            snapshot: watch::Sender::new(None),
            hellos: Mutex::default(),
            acks: Mutex::default(),
            calls: Mutex::default(),
            usage: Mutex::default(),
            batches: Mutex::default(),
            content: Mutex::default(),
            ack_usage: AtomicBool::new(true),
            required_token: required_token.map(str::to_owned),
            accept_gzip: AtomicBool::new(true),
            answer_after_first_message: AtomicBool::new(false),
        })
    }

    pub fn publish(&self, snapshot: pb::Snapshot) {
        self.snapshot.send_replace(Some(snapshot));
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    pub fn hellos(&self) -> Vec<Hello> {
        self.hellos.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<CallInfo> {
        self.calls.lock().unwrap().clone()
    }

    pub fn has_ack(&self, version: u64, applied: bool) -> bool {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.version == version && a.applied == applied)
    }

    pub fn usage(&self) -> HashMap<String, u32> {
        self.usage.lock().unwrap().clone()
    }

    pub fn stored(&self) -> usize {
        self.usage.lock().unwrap().len()
    }
}

#[derive(Clone)]
struct Svc {
    state: Arc<FakeState>,
    kill: watch::Receiver<bool>,
}

impl Svc {
    fn admit<T>(&self, method: &'static str, req: &Request<T>) -> Result<(), Status> {
        let header = |name: &str| {
            req.metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header("authorization");
        self.state.calls.lock().unwrap().push(CallInfo {
            method,
            authorization: authorization.clone(),
            accept_encoding: header("grpc-accept-encoding"),
            encoding: header("grpc-encoding"),
        });
        match &self.state.required_token {
            Some(token) if authorization.as_deref() != Some(&format!("Bearer {token}")) => {
                Err(Status::unauthenticated("invalid join token"))
            }
            _ => Ok(()),
        }
    }
}

/// Resolves once the server is stopped.
async fn killed(kill: &mut watch::Receiver<bool>) {
    let _ = kill.wait_for(|k| *k).await;
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigService for Svc {
    type WatchStream = ResponseStream<ConfigUpdate>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.admit("watch", &req)?;
        let mut inbound = req.into_inner();
        let state = Arc::clone(&self.state);
        if state.answer_after_first_message.load(Ordering::SeqCst) {
            match inbound.message().await? {
                Some(WatchRequest {
                    msg: Some(watch_request::Msg::Hello(h)),
                }) => state.hellos.lock().unwrap().push(h),
                _ => {
                    return Err(Status::invalid_argument(
                        "the first message must be a Hello",
                    ));
                }
            }
        }
        let mut kill = self.kill.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(WatchRequest { msg: Some(watch_request::Msg::Hello(h)) })) => {
                            state.hellos.lock().unwrap().push(h);
                        }
                        Ok(Some(WatchRequest { msg: Some(watch_request::Msg::Ack(a)) })) => {
                            state.acks.lock().unwrap().push(a);
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                    () = killed(&mut kill) => return,
                }
            }
        });
        let (tx, rx) = mpsc::channel(16);
        let mut snapshots = self.state.snapshot.subscribe();
        let mut kill = self.kill.clone();
        tokio::spawn(async move {
            loop {
                let current = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = current
                    && tx
                        .send(Ok(ConfigUpdate {
                            snapshot: Some(snapshot),
                            ..ConfigUpdate::default()
                        }))
                        .await
                        .is_err()
                {
                    return;
                }
                tokio::select! {
                    r = snapshots.changed() => if r.is_err() { return },
                    () = killed(&mut kill) => {
                        let _ = tx.send(Err(Status::unavailable("control plane going away"))).await;
                        return;
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl UsageService for Svc {
    type ReportStream = ResponseStream<UsageAck>;

    async fn report(
        &self,
        req: Request<Streaming<UsageBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        self.admit("report", &req)?;
        let mut inbound = req.into_inner();
        let state = Arc::clone(&self.state);
        let mut first = None;
        if state.answer_after_first_message.load(Ordering::SeqCst) {
            first = inbound.message().await?;
        }
        let mut kill = self.kill.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let next = match first.take() {
                    Some(batch) => Ok(Some(batch)),
                    None => tokio::select! {
                        m = inbound.message() => m,
                        () = killed(&mut kill) => {
                            let _ = tx.send(Err(Status::unavailable("control plane going away"))).await;
                            return;
                        }
                    },
                };
                match next {
                    Ok(Some(batch)) => {
                        {
                            let mut usage = state.usage.lock().unwrap();
                            let mut content = state.content.lock().unwrap();
                            for r in &batch.records {
                                *usage.entry(r.request_id.clone()).or_default() += 1;
                                if let Some(c) = &r.content {
                                    content.insert(
                                        r.request_id.clone(),
                                        c.request.len() + c.response.len(),
                                    );
                                }
                            }
                        }
                        state.batches.lock().unwrap().push((
                            batch.node_id.clone(),
                            batch.batch_id,
                            batch.records.len(),
                        ));
                        if state.ack_usage.load(Ordering::SeqCst) {
                            let ack = UsageAck {
                                batch_id: batch.batch_id,
                                accepted: batch.records.len() as u32,
                            };
                            if tx.send(Ok(ack)).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A running fake control plane.
pub(crate) struct FakeControlPlane {
    pub state: Arc<FakeState>,
    pub addr: SocketAddr,
    kill: watch::Sender<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeControlPlane {
    /// Starts serving `state` on `addr` (`None`: a free port on 127.0.0.1).
    pub async fn start(state: Arc<FakeState>, addr: Option<SocketAddr>) -> FakeControlPlane {
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(bind).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing::debug!(error = %e, "port busy; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind {bind}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let (kill, kill_rx) = watch::channel(false);
        let svc = Svc {
            state: Arc::clone(&state),
            kill: kill_rx,
        };
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let gzip = state.accept_gzip.load(Ordering::SeqCst);
        let mut config =
            ConfigServiceServer::new(svc.clone()).send_compressed(CompressionEncoding::Gzip);
        let mut usage = UsageServiceServer::new(svc).send_compressed(CompressionEncoding::Gzip);
        if gzip {
            config = config.accept_compressed(CompressionEncoding::Gzip);
            usage = usage.accept_compressed(CompressionEncoding::Gzip);
        }
        let task = tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(config)
                .add_service(usage)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        FakeControlPlane {
            state,
            addr,
            kill,
            shutdown: Some(shutdown_tx),
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server: open streams end with `UNAVAILABLE` and the port is closed.
    pub async fn stop(mut self) -> (Arc<FakeState>, SocketAddr) {
        self.kill.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        (self.state, self.addr)
    }
}

/// Fast reconnects for tests.
pub(crate) fn fast_options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        keepalive_interval: Duration::from_secs(5),
        keepalive_timeout: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        stable_after: Duration::from_secs(1),
        max_stream_lifetime: None,
        ack_timeout: Duration::from_secs(10),
    }
}

/// Polls `cond` every 5 ms; panics after 10 s.
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub(crate) async fn dead_endpoint() -> (String, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    (format!("http://{addr}"), addr)
}

pub(crate) const VIRTUAL_KEY: &str = "sk-tg-test-key";

/// A literal config value.
pub(crate) fn lit(s: &str) -> Option<pb::ValueRef> {
    Some(pb::ValueRef {
        source: Some(pb::value_ref::Source::Literal(s.into())),
    })
}

/// A provider's network block: `base_url`, 2 s to connect, 10 s per request.
pub(crate) fn network(base_url: &str) -> Option<pb::NetworkConfig> {
    Some(pb::NetworkConfig {
        base_url: base_url.into(),
        connect_timeout_ms: 2_000,
        request_timeout_ms: 10_000,
        ..Default::default()
    })
}

/// Serves `app` on a loopback port (a stand-in upstream); returns its `http://` URL.
pub(crate) async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A valid snapshot: one Bedrock provider with a static key and one virtual key.
pub(crate) fn snapshot(version: u64) -> pb::Snapshot {
    let lit = |s: &str| {
        Some(pb::ValueRef {
            source: Some(pb::value_ref::Source::Literal(s.into())),
        })
    };
    pb::Snapshot {
        version,
        providers: vec![pb::Provider {
            name: "bedrock".into(),
            kind: pb::ProviderKind::Bedrock as i32,
            network: None,
            keys: vec![pb::ProviderKey {
                id: "pk1".into(),
                name: "key-1".into(),
                models: vec!["*".into()],
                weight: 1.0,
                bedrock: Some(pb::BedrockKeyConfig {
                    access_key: lit("AKIDEXAMPLE"),
                    secret_key: lit("secret"),
                    region: lit("us-east-1"),
                    ..Default::default()
                }),
                enabled: true,
                ..Default::default()
            }],
        }],
        virtual_keys: vec![pb::VirtualKey {
            id: format!("vk-{version}"),
            name: "team".into(),
            key_sha256: Sha256::digest(VIRTUAL_KEY).to_vec().into(),
            providers: vec![],
            monthly_budget_usd: 0.0,
            active: true,
            ..Default::default()
        }],
        created_at_unix_ms: 1,
        ..Default::default()
    }
}

/// A snapshot that fails validation: a provider without a kind.
pub(crate) fn invalid_snapshot(version: u64) -> pb::Snapshot {
    let mut s = snapshot(version);
    s.providers[0].kind = pb::ProviderKind::Unspecified as i32;
    s
}

pub(crate) fn usage_record(i: usize) -> UsageRecord {
    UsageRecord {
        request_id: format!("req_{i:05}"),
        virtual_key_id: "vk".into(),
        provider: "bedrock".into(),
        input_tokens: i as u64,
        status: 200,
        ..Default::default()
    }
}
