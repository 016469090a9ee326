//! The gRPC services over real loopback connections, driven by the generated tonic clients the
//! data plane uses: join-token auth, Watch (Hello, snapshot at once, new versions, ACK/NACK in
//! the fleet view, disconnects, shutdown) and Report (idempotent storage, acks with batch ids).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tollgate_control_plane::{AdminAuth, ControlPlane, ControlPlaneConfig, GrpcAuth, StoreConfig};
use tollgate_proto::config::v1::config_service_client::ConfigServiceClient;
use tollgate_proto::config::v1::{Ack, ConfigUpdate, Hello, WatchRequest, watch_request};
use tollgate_proto::usage::v1::usage_service_client::UsageServiceClient;
use tollgate_proto::usage::v1::{UsageAck, UsageBatch, UsageRecord};
use tonic::codec::CompressionEncoding;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tower::ServiceExt as _;

const KEY: [u8; 32] = [7u8; 32];
const JOIN: &str = "join-token-for-tests";
const WAIT: Duration = Duration::from_secs(5);
/// "At once": pushed on the open stream rather than found by a later reconnect, with room for a
/// loaded CI machine. Not a speed target.
const AT_ONCE: Duration = Duration::from_secs(3);

/// A control plane with its gRPC services on a loopback port.
struct Server {
    cp: ControlPlane,
    admin: Router,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

async fn start(store: StoreConfig, dir: Option<tempfile::TempDir>, join: Option<&str>) -> Server {
    let cp = ControlPlane::start(ControlPlaneConfig {
        store,
        secret_key: KEY,
        admin_auth: AdminAuth {
            token: None,
            allow_loopback_without_token: true,
        },
        env_allow: Default::default(),
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = cp.grpc_router(GrpcAuth {
        join_token: join.map(str::to_owned),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let on_stop = cp.clone();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stopped.await;
                on_stop.shutdown();
            })
            .await
            .unwrap();
    });
    Server {
        admin: cp.admin_router(),
        cp,
        addr,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

async fn start_sqlite(join: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::Sqlite {
        path: dir.path().join("tollgate.db"),
    };
    start(store, Some(dir), join).await
}

impl Server {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the server shuts down although streams were open")
            .unwrap();
    }
}

#[derive(Clone)]
struct Token(Option<String>);

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut()
                .insert("authorization", t.parse().unwrap());
        }
        Ok(req)
    }
}

type ConfigClient =
    ConfigServiceClient<tonic::service::interceptor::InterceptedService<Channel, Token>>;
type UsageClient =
    UsageServiceClient<tonic::service::interceptor::InterceptedService<Channel, Token>>;

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn config_client(addr: SocketAddr, authorization: Option<&str>) -> ConfigClient {
    ConfigServiceClient::with_interceptor(channel(addr).await, Token(authorization.map(Into::into)))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
}

async fn usage_client(addr: SocketAddr, authorization: Option<&str>) -> UsageClient {
    UsageServiceClient::with_interceptor(channel(addr).await, Token(authorization.map(Into::into)))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
}

fn bearer() -> String {
    format!("Bearer {JOIN}")
}

fn hello(node: &str, have: u64) -> WatchRequest {
    WatchRequest {
        msg: Some(watch_request::Msg::Hello(Hello {
            node_id: node.into(),
            build_version: "0.1.0-test".into(),
            have_version: have,
            address: format!("{node}.internal:8080"),
        })),
    }
}

fn ack(version: u64, applied: bool, error: &str) -> WatchRequest {
    WatchRequest {
        msg: Some(watch_request::Msg::Ack(Ack {
            version,
            applied,
            error: error.into(),
        })),
    }
}

/// An open Watch stream: `tx` feeds the request side, `updates` is the response side.
struct Watch {
    tx: mpsc::Sender<WatchRequest>,
    updates: Streaming<ConfigUpdate>,
    gzip: bool,
    /// The last fleet share received `(slot, of)`.
    share: Option<(u32, u32)>,
}

async fn open_watch(client: &mut ConfigClient, first: WatchRequest) -> Result<Watch, Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(first).await.unwrap();
    let resp = client.watch(ReceiverStream::new(rx)).await?;
    let gzip = resp
        .metadata()
        .get("grpc-encoding")
        .is_some_and(|v| v == "gzip");
    Ok(Watch {
        tx,
        updates: resp.into_inner(),
        gzip,
        share: None,
    })
}

impl Watch {
    /// The next message that is not a fleet share (shares are recorded in `share`).
    async fn next_message(&mut self) -> Result<Option<ConfigUpdate>, Status> {
        loop {
            match self.updates.message().await? {
                Some(ConfigUpdate {
                    snapshot: None,
                    share: Some(share),
                    ..
                }) => self.share = Some((share.slot, share.of)),
                other => return Ok(other),
            }
        }
    }

    async fn next_version(&mut self) -> u64 {
        let update = tokio::time::timeout(WAIT, self.next_message())
            .await
            .expect("a snapshot arrives")
            .expect("the stream is healthy")
            .expect("the stream is open");
        update.snapshot.expect("updates carry a snapshot").version
    }

    /// Waits until the fleet share is `want`.
    async fn share_becomes(&mut self, want: (u32, u32)) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.share != Some(want) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.updates.message()).await {
                Ok(Ok(Some(ConfigUpdate {
                    snapshot: None,
                    share: Some(share),
                    ..
                }))) => self.share = Some((share.slot, share.of)),
                Ok(Ok(Some(_))) => {}
                other => panic!(
                    "share {want:?} never came (last {:?}): {other:?}",
                    self.share
                ),
            }
        }
    }
}

async fn admin(
    router: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn data_planes(router: &Router) -> Value {
    let (status, body) = admin(router, Method::GET, "/api/data-planes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls the fleet view until `pred` holds for node `id`.
async fn wait_for_node(router: &Router, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = data_planes(router).await;
        if let Some(node) = list["data_planes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id)
            && pred(node)
        {
            return node.clone();
        }
        assert!(Instant::now() < deadline, "node {id} never matched: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_requires_the_join_token() {
    let server = start_sqlite(Some(JOIN)).await;
    for authorization in [
        None,
        Some("Bearer wrong-token"),
        Some(JOIN),
        Some("Basic x"),
    ] {
        let mut client = config_client(server.addr, authorization).await;
        let err = open_watch(&mut client, hello("dp", 0)).await.err();
        assert_eq!(
            err.map(|e| e.code()),
            Some(Code::Unauthenticated),
            "{authorization:?}"
        );
        let mut usage = usage_client(server.addr, authorization).await;
        let (_tx, rx) = mpsc::channel::<UsageBatch>(1);
        let err = usage.report(ReceiverStream::new(rx)).await.err();
        assert_eq!(err.map(|e| e.code()), Some(Code::Unauthenticated));
    }
    assert_eq!(data_planes(&server.admin).await["count"], 0);
    // The right token (any case of the scheme) is accepted.
    let mut client = config_client(server.addr, Some(&format!("bearer {JOIN}"))).await;
    let mut watch = open_watch(&mut client, hello("dp", 0)).await.unwrap();
    assert_eq!(watch.next_version().await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_sends_the_snapshot_at_once_then_new_versions_and_records_acks() {
    let server = start_sqlite(Some(JOIN)).await;
    let h = &server.admin;
    let (status, _) = admin(
        h,
        Method::POST,
        "/api/providers",
        Some(json!({"provider": "bedrock"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut client = config_client(server.addr, Some(&bearer())).await;
    let started = Instant::now();
    let mut watch = open_watch(&mut client, hello("dp-1", 0)).await.unwrap();
    assert_eq!(
        watch.next_version().await,
        2,
        "the current snapshot, at once"
    );
    assert!(started.elapsed() < AT_ONCE);
    assert!(
        watch.gzip,
        "snapshots are sent gzip-compressed to clients that accept gzip"
    );

    let node = wait_for_node(h, "dp-1", |n| n["sent_version"] == 2).await;
    assert_eq!(node["connected"], true);
    assert_eq!(node["address"], "dp-1.internal:8080");
    assert_eq!(node["build_version"], "0.1.0-test");
    assert_eq!(node["applied_version"], 0);
    assert_eq!(node["lagging"], true, "not applied yet");
    assert!(node["last_seen"].as_str().unwrap().ends_with('Z'));

    watch.tx.send(ack(2, true, "")).await.unwrap();
    let node = wait_for_node(h, "dp-1", |n| n["applied_version"] == 2).await;
    assert_eq!(node["lagging"], false);
    assert_eq!(node["last_error"], Value::Null);

    // An admin change reaches the open stream.
    let t = Instant::now();
    let (status, _) = admin(
        h,
        Method::POST,
        "/api/virtual-keys",
        Some(json!({"name": "team"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(watch.next_version().await, 3);
    assert!(t.elapsed() < AT_ONCE, "{:?}", t.elapsed());

    // A NACK shows in the fleet view; the node lags until it applies a newer version.
    watch
        .tx
        .send(ack(3, false, "alias table invalid"))
        .await
        .unwrap();
    let node = wait_for_node(h, "dp-1", |n| n["last_error"] != Value::Null).await;
    assert_eq!(node["last_error"], "alias table invalid");
    assert_eq!(node["last_error_version"], 3);
    assert_eq!(node["applied_version"], 2);
    assert_eq!(node["lagging"], true);
    let list = data_planes(h).await;
    assert_eq!(list["published_version"], 3);
    assert_eq!(list["count"], 1);

    let (status, _) = admin(h, Method::DELETE, "/api/providers/bedrock", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(watch.next_version().await, 4);
    watch.tx.send(ack(4, true, "")).await.unwrap();
    let node = wait_for_node(h, "dp-1", |n| n["applied_version"] == 4).await;
    assert_eq!(
        node["last_error"],
        Value::Null,
        "cleared by a newer applied version"
    );
    assert_eq!(node["lagging"], false);

    // The node goes away: it is marked disconnected and kept in the list.
    drop(watch);
    drop(client);
    let node = wait_for_node(h, "dp-1", |n| n["connected"] == false).await;
    assert_eq!(node["applied_version"], 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_skips_versions_the_node_already_has() {
    let server = start_sqlite(None).await;
    let h = &server.admin;
    admin(
        h,
        Method::POST,
        "/api/providers",
        Some(json!({"provider": "bedrock"})),
    )
    .await;
    let mut client = config_client(server.addr, None).await;
    // The node serves version 2 from its disk cache: nothing to send.
    let mut watch = open_watch(&mut client, hello("cached", 2)).await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), watch.next_message()).await;
    assert!(nothing.is_err(), "no snapshot the node already has");
    let node = wait_for_node(h, "cached", |_| true).await;
    assert_eq!(node["applied_version"], 2);
    assert_eq!(node["lagging"], false);
    admin(
        h,
        Method::POST,
        "/api/providers",
        Some(json!({"provider": "anthropic"})),
    )
    .await;
    assert_eq!(watch.next_version().await, 3);
    server.stop().await;
}

/// Every data plane gets its slot among the fleet's members and their number, right after its
/// first snapshot and whenever the fleet changes; a node that goes away keeps its slot for the
/// lease (so the others' shares do not grow while it may still be admitting).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_data_plane_gets_its_fleet_share() {
    let server = start_sqlite(None).await;
    let mut client = config_client(server.addr, None).await;
    let mut b = open_watch(&mut client, hello("dp-b", 0)).await.unwrap();
    assert_eq!(b.next_version().await, 1);
    b.share_becomes((0, 1)).await;
    let mut a = open_watch(&mut client, hello("dp-a", 0)).await.unwrap();
    let mut c = open_watch(&mut client, hello("dp-c", 0)).await.unwrap();
    assert_eq!(a.next_version().await, 1);
    assert_eq!(c.next_version().await, 1);
    // Slots by node id: a, b, c.
    a.share_becomes((0, 3)).await;
    b.share_becomes((1, 3)).await;
    c.share_becomes((2, 3)).await;
    // c goes away: within its lease, the others keep thirds.
    drop(c);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let _ = tokio::time::timeout(Duration::from_millis(100), a.next_message()).await;
    assert_eq!(a.share, Some((0, 3)));
    // It comes back and gets its slot again.
    let mut c = open_watch(&mut client, hello("dp-c", 1)).await.unwrap();
    c.share_becomes((2, 3)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_must_start_with_a_hello() {
    let server = start_sqlite(None).await;
    let mut client = config_client(server.addr, None).await;
    let err = open_watch(&mut client, ack(1, true, ""))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = open_watch(&mut client, hello("", 0)).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A second Hello ends the stream.
    let mut watch = open_watch(&mut client, hello("twice", 0)).await.unwrap();
    assert_eq!(watch.next_version().await, 1);
    watch.tx.send(hello("twice", 0)).await.unwrap();
    let end = tokio::time::timeout(WAIT, watch.next_message())
        .await
        .unwrap();
    assert_eq!(end.err().map(|e| e.code()), Some(Code::InvalidArgument));
    assert_eq!(data_planes(&server.admin).await["count"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_ends_open_streams() {
    let server = start_sqlite(None).await;
    let mut client = config_client(server.addr, None).await;
    let mut watch = open_watch(&mut client, hello("dp", 0)).await.unwrap();
    assert_eq!(watch.next_version().await, 1);
    // Connected, and lagging until it acknowledges version 1.
    let m = scrape(&server.cp);
    assert_eq!(m["tollgate_config_published_version"], 1.0);
    assert_eq!(m[r#"tollgate_data_planes{state="connected"}"#], 1.0);
    assert_eq!(m[r#"tollgate_data_planes{state="disconnected"}"#], 0.0);
    assert_eq!(m["tollgate_data_planes_lagging"], 1.0);
    let mut usage = usage_client(server.addr, None).await;
    let (_usage_tx, rx) = mpsc::channel::<UsageBatch>(1);
    let mut acks = usage
        .report(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let cp = server.cp.clone();
    server.stop().await;
    let end = tokio::time::timeout(WAIT, watch.next_message())
        .await
        .unwrap();
    assert_eq!(end.err().map(|e| e.code()), Some(Code::Unavailable));
    let end = tokio::time::timeout(WAIT, acks.message()).await.unwrap();
    assert!(
        matches!(&end, Err(e) if e.code() == Code::Unavailable),
        "{end:?}"
    );
    assert!(!cp.data_planes()[0].connected);
    let m = scrape(&cp);
    assert_eq!(m[r#"tollgate_data_planes{state="connected"}"#], 0.0);
    assert_eq!(m[r#"tollgate_data_planes{state="disconnected"}"#], 1.0);
}

/// The control plane's `/metrics` samples, `name{labels}` -> value (label order is fixed).
fn scrape(cp: &ControlPlane) -> std::collections::HashMap<String, f64> {
    let mut registry = prometheus_client::registry::Registry::default();
    tollgate_control_plane::metrics::register(cp, &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample");
        let old = samples.insert(series.to_owned(), value.parse().expect("a number"));
        assert!(old.is_none(), "{series} twice in\n{text}");
    }
    samples
}

fn record(id: &str, vk: &str) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        virtual_key_id: vk.into(),
        provider: "bedrock".into(),
        model_requested: "claude-sonnet-4-6".into(),
        model_resolved: "global.anthropic.claude-sonnet-4-6".into(),
        provider_key_id: "key-1".into(),
        input_tokens: 10,
        output_tokens: 5,
        cache_read_input_tokens: 0,
        cache_write_input_tokens: 0,
        latency_ms: 900,
        time_to_first_token_ms: 300,
        status: 200,
        error_class: String::new(),
        started_at_unix_ms: 1_767_225_600_000 + id.len() as i64,
        stream: true,
        cache_write_1h_input_tokens: 0,
        cost_nano_usd: Some(105_000),
        ..UsageRecord::default()
    }
}

fn batch(id: u64, records: Vec<UsageRecord>) -> UsageBatch {
    UsageBatch {
        node_id: "dp-usage".into(),
        batch_id: id,
        records,
    }
}

/// Sends `batches` on one Report stream and returns the acks, in order.
async fn report(client: &mut UsageClient, batches: Vec<UsageBatch>) -> Vec<UsageAck> {
    let n = batches.len();
    let (tx, rx) = mpsc::channel(n.max(1));
    for b in batches {
        tx.send(b).await.unwrap();
    }
    let mut acks = client
        .report(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    for _ in 0..n {
        let ack = tokio::time::timeout(WAIT, acks.message())
            .await
            .expect("an ack arrives")
            .unwrap()
            .expect("one ack per batch");
        out.push(ack);
    }
    // Closing our side ends the stream cleanly.
    drop(tx);
    let end = tokio::time::timeout(WAIT, acks.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    out
}

async fn usage_round_trip(server: Server) {
    let mut client = usage_client(server.addr, Some(&bearer())).await;
    let first = vec![
        record("r1", "vk-a"),
        record("r2", "vk-a"),
        record("r3", "vk-b"),
    ];
    let mut second = first.clone();
    second.push(record("r4", "vk-b"));
    let third = vec![record("", "vk-a"), record("r5", "vk-c")];
    let acks = report(
        &mut client,
        vec![batch(1, first.clone()), batch(2, second), batch(3, third)],
    )
    .await;
    assert_eq!(
        acks,
        [
            UsageAck {
                batch_id: 1,
                accepted: 3
            },
            UsageAck {
                batch_id: 2,
                accepted: 4
            },
            UsageAck {
                batch_id: 3,
                accepted: 1
            },
        ]
    );
    // The data plane resends batch 1 after a reconnect: acked again, stored once.
    let acks = report(&mut client, vec![batch(1, first)]).await;
    assert_eq!(
        acks,
        [UsageAck {
            batch_id: 1,
            accepted: 3
        }]
    );
    let counts = server.cp.store().usage_by_virtual_key().await.unwrap();
    let counts: Vec<(&str, u64)> = counts
        .iter()
        .map(|(k, v)| (k.as_str(), v.requests))
        .collect();
    assert_eq!(counts, [("vk-a", 2), ("vk-b", 2), ("vk-c", 1)]);
    // The in-process entry point (all-in-one) shares the storage and its idempotency.
    let n = server
        .cp
        .ingest_usage(&[record("r5", "vk-c"), record("r6", "vk-c")])
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Every batch counted once, each record by outcome: 3 new; 1 new and 3 resent; 1 new and
    // 1 without an id; 3 resent; in process 1 new and 1 already stored.
    let m = scrape(&server.cp);
    for (series, want) in [
        (
            r#"tollgate_usage_ingested_records_total{outcome="new"}"#,
            6.0,
        ),
        (
            r#"tollgate_usage_ingested_records_total{outcome="duplicate"}"#,
            7.0,
        ),
        (
            r#"tollgate_usage_ingested_records_total{outcome="invalid"}"#,
            1.0,
        ),
        (
            r#"tollgate_usage_ingest_batches_total{result="stored"}"#,
            5.0,
        ),
        (
            r#"tollgate_usage_ingest_batches_total{result="failed"}"#,
            0.0,
        ),
        (
            r#"tollgate_store_errors_total{operation="usage_ingest"}"#,
            0.0,
        ),
    ] {
        assert_eq!(m.get(series), Some(&want), "{series}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_reports_are_stored_once_and_acked_by_batch_id_sqlite() {
    usage_round_trip(start_sqlite(Some(JOIN)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_reports_are_stored_once_and_acked_by_batch_id_postgres() {
    common::with_postgres(|url| async move {
        usage_round_trip(start(StoreConfig::Postgres { url }, None, Some(JOIN)).await).await;
    })
    .await;
}

/// A data plane's batches carry MCP tool calls among the requests: acked like the rest, stored
/// once in the tool-call log, never as requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reported_tool_calls_go_to_the_tool_call_log() {
    use tollgate_control_plane::mcp::McpCallQuery;
    use tollgate_control_plane::usage_log::LogScope;
    let server = start_sqlite(Some(JOIN)).await;
    let mut client = usage_client(server.addr, Some(&bearer())).await;
    let mut call = record("call-1", "vk-a");
    call.provider.clear();
    call.model_requested.clear();
    call.model_resolved.clear();
    call.mcp = Some(tollgate_proto::usage::v1::McpCall {
        server: "github".into(),
        tool: "search_issues".into(),
    });
    let records = vec![record("r1", "vk-a"), call, record("r2", "vk-b")];
    for _ in 0..2 {
        let acks = report(&mut client, vec![batch(7, records.clone())]).await;
        assert_eq!(
            acks,
            [UsageAck {
                batch_id: 7,
                accepted: 3
            }]
        );
    }
    let counts = server.cp.store().usage_by_virtual_key().await.unwrap();
    let counts: Vec<(&str, u64)> = counts
        .iter()
        .map(|(k, v)| (k.as_str(), v.requests))
        .collect();
    assert_eq!(counts, [("vk-a", 1), ("vk-b", 1)]);
    let at = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
    let calls = server
        .cp
        .store()
        .query_mcp_calls(&McpCallQuery {
            since: at - time::Duration::hours(1),
            until: at + time::Duration::hours(1),
            virtual_key_id: None,
            team_id: None,
            server: None,
            tool: None,
            status: None,
            scope: LogScope::All,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    let stored: Vec<(&str, &str, &str)> = calls
        .iter()
        .map(|c| (c.request_id.as_str(), c.server.as_str(), c.tool.as_str()))
        .collect();
    assert_eq!(stored, [("call-1", "github", "search_issues")]);
    let m = scrape(&server.cp);
    assert_eq!(
        m.get(r#"tollgate_usage_ingested_records_total{outcome="new"}"#),
        Some(&3.0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_view_requires_admin_auth() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: StoreConfig::Sqlite {
            path: dir.path().join("t.db"),
        },
        secret_key: KEY,
        admin_auth: AdminAuth {
            token: Some("admin-token".into()),
            allow_loopback_without_token: false,
        },
        env_allow: Default::default(),
    })
    .await
    .unwrap();
    let (status, body) = admin(&cp.admin_router(), Method::GET, "/api/data-planes", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let mut req = Request::builder()
        .uri("/api/data-planes")
        .header(header::AUTHORIZATION, "Bearer admin-token")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.1:4000".parse::<SocketAddr>().unwrap()));
    let resp = cp.admin_router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body,
        json!({"data_planes": [], "count": 0, "published_version": 1})
    );
}
