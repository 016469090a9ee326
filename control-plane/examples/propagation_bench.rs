//! Config propagation from an admin call to a fleet of simulated data planes, end to end over
//! the real transports: admin API over HTTP, `ConfigService.Watch` over gRPC (one HTTP/2
//! connection per node, gzip, join token), PostgreSQL store.
//!
//! ```text
//! cargo run --release -p tollgate-control-plane --example propagation_bench -- \
//!     [--nodes 100] [--changes 50] [--large-keys 5000] [--poll-ms 10]
//! ```
//!
//! It creates a fresh database next to `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), starts a control plane in-process with its
//! admin API (axum, admin token) and its gRPC services (tonic, join token, HTTP/2 keepalive as
//! the `tollgate control-plane` role serves them) on loopback ports, and seeds a provider and a
//! key through the admin API. Then, for a small config and for a large one (`--large-keys`
//! virtual keys seeded through the store, then published once):
//!
//! 1. `--nodes` simulated data planes connect (`ConfigServiceClient`, each on its own HTTP/2
//!    connection, gzip accepted, `Hello` first, an `Ack` for every snapshot; each decodes the
//!    snapshot and counts its virtual keys, which is the part of "applying" that depends on the
//!    snapshot's size).
//! 2. **paced**: `--changes` admin calls (`POST /api/virtual-keys`), one after the other, each
//!    waiting until every node has received its version.
//! 3. **burst**: `--changes` admin calls back to back (each waits for its own response only).
//!
//! For every (change, node) pair it measures the time from the admin call's response to the
//! node receiving (decoded) a snapshot with that version or a newer one (a node that lags may
//! skip versions; snapshots are complete), and, from a poller that reads `GET /api/data-planes`
//! every `--poll-ms`, the time until the fleet view shows the node's ACK of that version. The
//! gRPC server's sockets count the bytes on the wire; the snapshot's protobuf and gzip sizes
//! and the cost of each per-node step (clone, encode, gzip, gunzip, decode) are measured apart.
//! The control plane runs on its own tokio runtime (2 worker threads, `cp-*`), the simulated
//! nodes, the admin client and the poller on another (`fleet-*`), so the control plane's
//! scheduling is not mixed with the clients' (as if they ran on other machines); they still
//! share this machine's cores, with PostgreSQL beside them. "Answered" is when the admin
//! handler finished (a middleware stamps it on the response); "returned" is when the client
//! had read the response. CPU time is read per thread from `/proc/self/task`. The database is
//! dropped at the end.

use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::State;
use futures::StreamExt as _;
use prost::Message as _;
use serde::Deserialize;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tollgate_control_plane::model::{AuditEvent, VirtualKeyRecord};
use tollgate_control_plane::{
    AdminAuth, ControlPlane, ControlPlaneConfig, GrpcAuth, PostgresStore, StoreConfig,
};
use tollgate_proto::config::v1::config_service_client::ConfigServiceClient;
use tollgate_proto::config::v1::{Ack, ConfigUpdate, Hello, Snapshot, WatchRequest, watch_request};
use tonic::codec::CompressionEncoding;
use tonic::transport::server::{Connected, TcpConnectInfo};

const ADMIN_TOKEN: &str = "propagation-bench-admin-token-0123456789";
const JOIN_TOKEN: &str = "propagation-bench-join-token-0123456789";
/// Longest wait for the whole fleet to reach a version.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    })
}

fn runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(format!("{name}-worker"))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// --- Measuring: wire bytes, CPU, time --------------------------------------------------------

/// Bytes the gRPC server wrote to / read from its sockets (HTTP/2 frames, gzip payloads).
static WIRE_OUT: AtomicU64 = AtomicU64::new(0);
static WIRE_IN: AtomicU64 = AtomicU64::new(0);

/// A server-side TCP stream that counts its bytes.
struct Counted(TcpStream);

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        WIRE_IN.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            WIRE_OUT.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            WIRE_OUT.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn wire() -> (u64, u64) {
    (
        WIRE_OUT.load(Ordering::Relaxed),
        WIRE_IN.load(Ordering::Relaxed),
    )
}

/// CPU seconds (user + system) used so far by the control plane's threads (`cp-*`) and by all
/// the others (simulated nodes, admin client, poller, main thread), from `/proc/self/task`
/// (USER_HZ = 100).
#[derive(Clone, Copy, Default)]
struct Cpu {
    cp: f64,
    fleet: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let mut cpu = Cpu::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(") ")) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let secs = ticks as f64 / 100.0;
            if comm.starts_with("cp-") {
                cpu.cp += secs;
            } else {
                cpu.fleet += secs;
            }
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            cp: self.cp - before.cp,
            fleet: self.fleet - before.fleet,
        }
    }
}

/// (busy, total) CPU ticks of the whole machine (`/proc/stat`).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return (0, 0);
    }
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    (busy, busy + v[3] + v[4])
}

/// Share of the machine's CPU used by other processes (PostgreSQL included) between two
/// [`machine_ticks`] readings, given this process's CPU seconds in between.
fn others_share(before: (u64, u64), after: (u64, u64), ours: f64) -> f64 {
    let total = after.1.saturating_sub(before.1) as f64;
    if total == 0.0 {
        return 0.0;
    }
    let busy = after.0.saturating_sub(before.0) as f64;
    ((busy - ours * 100.0) / total * 100.0).max(0.0)
}

/// The time base of the `x-bench-answered-ns` stamps.
static BASE: OnceLock<Instant> = OnceLock::new();

fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// Admin middleware: stamps when the handler finished and the version published then.
async fn stamp(
    State(cp): State<ControlPlane>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut resp = next.run(req).await;
    let at = u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX);
    let headers = resp.headers_mut();
    headers.insert("x-bench-answered-ns", at.into());
    headers.insert("x-bench-version", cp.published_version().into());
    resp
}

// --- The control plane, served as `tollgate control-plane` serves it --------------------------

struct Servers {
    cp: ControlPlane,
    admin_url: String,
    grpc_url: String,
    stop: tokio::sync::watch::Sender<bool>,
    grpc: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
}

async fn start_servers(database_url: String) -> Servers {
    let mut secret_key = [0u8; 32];
    rand::fill(&mut secret_key);
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: StoreConfig::Postgres { url: database_url },
        secret_key,
        admin_auth: AdminAuth {
            token: Some(ADMIN_TOKEN.into()),
            allow_loopback_without_token: false,
        },
        env_allow: Default::default(),
    })
    .await
    .expect("control plane");

    let admin_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin_listener.local_addr().expect("addr");
    let app = cp
        .admin_router()
        .layer(axum::middleware::from_fn_with_state(cp.clone(), stamp))
        .into_make_service_with_connect_info::<SocketAddr>();
    let admin = tokio::spawn(async move {
        axum::serve(admin_listener, app)
            .await
            .expect("admin server");
    });

    let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let grpc_addr = grpc_listener.local_addr().expect("addr");
    let routes = cp.grpc_router(GrpcAuth {
        join_token: Some(JOIN_TOKEN.into()),
    });
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let grpc = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(grpc_listener).map(|s| s.map(Counted)),
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
            )
            .await
            .expect("gRPC server");
    });
    Servers {
        cp,
        admin_url: format!("http://{admin_addr}"),
        grpc_url: format!("http://{grpc_addr}"),
        stop,
        grpc,
        admin,
    }
}

// --- Simulated data planes -------------------------------------------------------------------

/// A node received (and decoded) a snapshot.
struct Received {
    node: usize,
    version: u64,
    virtual_keys: usize,
    at: Instant,
}

fn node_id(i: usize) -> String {
    format!("bench-node-{i:04}")
}

/// One simulated data plane: connects, sends its Hello, then decodes and acks every snapshot.
async fn run_node(i: usize, url: String, events: mpsc::UnboundedSender<Received>) {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("endpoint")
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect to the gRPC server");
    let mut client = ConfigServiceClient::new(channel)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(256 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(8);
    tx.send(WatchRequest {
        msg: Some(watch_request::Msg::Hello(Hello {
            node_id: node_id(i),
            build_version: "bench".into(),
            have_version: 0,
            address: format!("10.0.{}.{}:8080", i / 250, i % 250 + 1),
        })),
    })
    .await
    .expect("queue hello");
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {JOIN_TOKEN}").parse().expect("metadata"),
    );
    let mut inbound = client.watch(req).await.expect("watch").into_inner();
    while let Ok(Some(update)) = inbound.message().await {
        let at = Instant::now();
        let Some(snapshot) = update.snapshot else {
            continue;
        };
        let version = snapshot.version;
        let _ = events.send(Received {
            node: i,
            version,
            virtual_keys: snapshot.virtual_keys.iter().filter(|vk| vk.active).count(),
            at,
        });
        let ack = WatchRequest {
            msg: Some(watch_request::Msg::Ack(Ack {
                version,
                applied: true,
                error: String::new(),
            })),
        };
        if tx.send(ack).await.is_err() {
            break;
        }
    }
}

/// The simulated fleet and what each node received.
struct Fleet {
    nodes: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Highest version each node received.
    have: Vec<u64>,
    /// Virtual keys in the last snapshot each node received.
    keys: Vec<usize>,
    /// Every (version, time) each node received, in order.
    log: Vec<Vec<(u64, Instant)>>,
    delivered: u64,
}

impl Fleet {
    fn start(nodes: usize, url: &str) -> Fleet {
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = (0..nodes)
            .map(|i| tokio::spawn(run_node(i, url.to_owned(), tx.clone())))
            .collect();
        Fleet {
            nodes,
            tasks,
            rx,
            have: vec![0; nodes],
            keys: vec![0; nodes],
            log: vec![Vec::new(); nodes],
            delivered: 0,
        }
    }

    fn record(&mut self, r: Received) {
        self.have[r.node] = self.have[r.node].max(r.version);
        self.keys[r.node] = r.virtual_keys;
        self.log[r.node].push((r.version, r.at));
        self.delivered += 1;
    }

    /// Waits until every node has received `version` (or newer); false on timeout.
    async fn wait_for(&mut self, version: u64) -> bool {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        while let Ok(r) = self.rx.try_recv() {
            self.record(r);
        }
        while self.have.iter().any(|&h| h < version) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => self.record(r),
                _ => return false,
            }
        }
        true
    }

    /// When `node` first received `version` or a newer one.
    fn arrival(&self, node: usize, version: u64) -> Option<Instant> {
        self.log[node]
            .iter()
            .find(|(v, _)| *v >= version)
            .map(|(_, t)| *t)
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

// --- Fleet-view poller -----------------------------------------------------------------------

#[derive(Deserialize)]
struct DataPlaneList {
    data_planes: Vec<DataPlaneRow>,
}

#[derive(Deserialize)]
struct DataPlaneRow {
    node_id: String,
    applied_version: u64,
    connected: bool,
}

/// Samples of `GET /api/data-planes`: (response read, applied version per node index).
type Samples = Vec<(Instant, Vec<u64>)>;

fn start_poller(
    admin: &Admin,
    nodes: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Samples> {
    let (http, url) = (
        admin.http.clone(),
        format!("{}/api/data-planes", admin.base),
    );
    tokio::spawn(async move {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let resp = http
                .get(&url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("GET /api/data-planes");
            let body = resp.bytes().await.expect("body");
            let at = Instant::now();
            let list: DataPlaneList = serde_json::from_slice(&body).expect("data-planes JSON");
            let mut applied = vec![0; nodes];
            for row in list.data_planes.iter().filter(|r| r.connected) {
                if let Some(i) = row
                    .node_id
                    .strip_prefix("bench-node-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&i| i < nodes)
                {
                    applied[i] = row.applied_version;
                }
            }
            samples.push((at, applied));
            tokio::time::sleep(every).await;
        }
        samples
    })
}

// --- Admin calls -----------------------------------------------------------------------------

struct Admin {
    http: reqwest::Client,
    base: String,
}

/// One admin change: when it was sent, when the handler finished, when the client had read the
/// response, and the version it published.
struct Change {
    sent: Instant,
    answered: Instant,
    returned: Instant,
    version: u64,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> Change {
        let sent = Instant::now();
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let header = |name: &str| -> u64 {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{method} {path}: no {name} header"))
        };
        let answered = base() + Duration::from_nanos(header("x-bench-answered-ns"));
        let version = header("x-bench-version");
        let text = resp.text().await.unwrap_or_default();
        let returned = Instant::now();
        assert!(status.is_success(), "{method} {path} -> {status}: {text}");
        Change {
            sent,
            answered,
            returned,
            version,
        }
    }

    async fn create_virtual_key(&self, name: &str) -> Change {
        self.call(
            reqwest::Method::POST,
            "/api/virtual-keys",
            serde_json::json!({"name": name, "provider": "bedrock"}),
        )
        .await
    }
}

// --- Statistics ------------------------------------------------------------------------------

/// "p50 … p99 … max …" of `values` (ms).
fn dist(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "no samples".to_owned();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    format!(
        "p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
        at(0.50),
        at(0.99),
        values[values.len() - 1]
    )
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// Runs `changes` admin calls, paced (waiting for the fleet after each) or back to back, and
/// prints the propagation figures.
async fn measure(
    label: &str,
    paced: bool,
    changes: usize,
    admin: &Admin,
    fleet: &mut Fleet,
    poll: Option<Duration>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll.map(|every| start_poller(admin, fleet.nodes, every, stop.clone()));
    let delivered_before = fleet.delivered;
    let (out0, in0) = wire();
    let cpu0 = Cpu::now();
    let machine0 = machine_ticks();
    let t0 = Instant::now();
    let mut done = Vec::with_capacity(changes);
    let mut converged = true;
    for c in 0..changes {
        let name = format!("{label}-{}-{c}", uuid::Uuid::new_v4().simple());
        let change = admin.create_virtual_key(&name).await;
        if paced {
            converged &= fleet.wait_for(change.version).await;
        }
        done.push(change);
    }
    let last = done.last().map_or(0, |c| c.version);
    converged &= fleet.wait_for(last).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = Cpu::now().since(cpu0);
    let others = others_share(machine0, machine_ticks(), cpu.cp + cpu.fleet);
    let (out1, in1) = wire();
    // Let the last acks reach the fleet view.
    if let Some(every) = poll {
        tokio::time::sleep(every * 3 + Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let samples = match poller {
        Some(p) => p.await.expect("poller"),
        None => Vec::new(),
    };

    let (mut from_answered, mut from_returned, mut from_sent, mut acked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut early, mut missing, mut ack_missing) = (0usize, 0usize, 0usize);
    for change in &done {
        for node in 0..fleet.nodes {
            match fleet.arrival(node, change.version) {
                Some(t) => {
                    early += usize::from(t < change.answered);
                    from_answered.push(ms_between(change.answered, t));
                    from_returned.push(ms_between(change.returned, t));
                    from_sent.push(ms_between(change.sent, t));
                }
                None => missing += 1,
            }
            if poll.is_some() {
                match samples
                    .iter()
                    .find(|(at, applied)| *at >= change.sent && applied[node] >= change.version)
                {
                    Some((at, _)) => acked.push(ms_between(change.answered, *at)),
                    None => ack_missing += 1,
                }
            }
        }
    }
    let mut handler: Vec<f64> = done
        .iter()
        .map(|c| ms_between(c.sent, c.answered))
        .collect();
    let mut call: Vec<f64> = done
        .iter()
        .map(|c| ms_between(c.sent, c.returned))
        .collect();
    let delivered = fleet.delivered - delivered_before;
    println!(
        "  {label}: {changes} changes (POST /api/virtual-keys) x {} nodes in {elapsed:.2} s{}",
        fleet.nodes,
        if converged { "" } else { "  (NOT CONVERGED)" }
    );
    println!(
        "    admin call, sent -> answered by the server    {}",
        dist(&mut handler)
    );
    println!(
        "    admin call, sent -> response read by client   {}",
        dist(&mut call)
    );
    println!(
        "    PROPAGATION answered -> node has it ({:>5})   {}   ({early} pairs before the answer, counted as 0)",
        from_answered.len(),
        dist(&mut from_answered)
    );
    println!(
        "    response read by client -> node has it       {}",
        dist(&mut from_returned)
    );
    println!(
        "    admin request sent -> node has it            {}",
        dist(&mut from_sent)
    );
    if poll.is_some() {
        println!(
            "    answered -> ACK shown in GET /api/data-planes {}   ({} polls; {ack_missing} pairs never seen)",
            dist(&mut acked),
            samples.len()
        );
    }
    if missing > 0 {
        println!("    {missing} (change, node) pairs never received");
    }
    println!(
        "    snapshots delivered: {delivered} ({:.2} per node per change; a node that lags gets the newest version only)",
        delivered as f64 / (changes * fleet.nodes) as f64
    );
    println!(
        "    gRPC wire: {} out ({} per delivered snapshot), {} in",
        kib((out1 - out0) as f64),
        kib((out1 - out0) as f64 / delivered.max(1) as f64),
        kib((in1 - in0) as f64),
    );
    println!(
        "    CPU: control plane {:.2} s ({:.0} ms per change), nodes + client {:.2} s ({:.0} ms per change); \
         other processes (PostgreSQL included) {others:.0} % of the machine",
        cpu.cp,
        cpu.cp * 1e3 / changes as f64,
        cpu.fleet,
        cpu.fleet * 1e3 / changes as f64
    );
}

/// Connects the fleet and prints how long until every node has the current snapshot.
async fn connect_fleet(nodes: usize, servers: &Servers) -> Fleet {
    let (out0, _) = wire();
    let cpu0 = Cpu::now();
    let t = Instant::now();
    let mut fleet = Fleet::start(nodes, &servers.grpc_url);
    let version = servers.cp.published_version();
    assert!(fleet.wait_for(version).await, "the fleet did not connect");
    let (out1, _) = wire();
    let cpu = Cpu::now().since(cpu0);
    println!(
        "  {nodes} nodes connected and received version {version} ({} virtual keys) in {:.0} ms; \
         gRPC wire out {} per node; CPU: control plane {:.2} s, nodes {:.2} s",
        fleet.keys[0],
        t.elapsed().as_secs_f64() * 1e3,
        kib((out1 - out0) as f64 / nodes as f64),
        cpu.cp,
        cpu.fleet
    );
    fleet
}

/// Sizes of the current snapshot and the cost of each step the server and a node do per send.
fn snapshot_costs(snapshot: &Snapshot) {
    let update = ConfigUpdate {
        snapshot: Some(snapshot.clone()),
        ..ConfigUpdate::default()
    };
    let raw = update.encode_to_vec();
    let gz = |data: &[u8]| {
        // tonic's gzip: flate2, level 6.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    };
    let gzipped = gz(&raw);
    let iters = 20;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / f64::from(iters)
    };
    let clone_ms = time(&mut || {
        std::hint::black_box(snapshot.clone());
    });
    let encode_ms = time(&mut || {
        std::hint::black_box(update.encode_to_vec());
    });
    let gzip_ms = time(&mut || {
        std::hint::black_box(gz(&raw));
    });
    let gunzip_ms = time(&mut || {
        let mut out = Vec::with_capacity(raw.len());
        std::io::copy(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut out).expect("gunzip");
        std::hint::black_box(out);
    });
    let decode_ms = time(&mut || {
        std::hint::black_box(ConfigUpdate::decode(&raw[..]).expect("decode"));
    });
    println!(
        "  snapshot v{} ({} virtual keys): protobuf {} ({} B), gzip level 6 {} ({} B, {:.0} % of raw)",
        snapshot.version,
        snapshot.virtual_keys.len(),
        kib(raw.len() as f64),
        raw.len(),
        kib(gzipped.len() as f64),
        gzipped.len(),
        gzipped.len() as f64 * 100.0 / raw.len() as f64
    );
    println!(
        "  cost of one send on one core: server clone {clone_ms:.2} ms + protobuf encode {encode_ms:.2} ms \
         + gzip {gzip_ms:.2} ms; node gunzip {gunzip_ms:.2} ms + decode {decode_ms:.2} ms"
    );
}

/// Mean time of a snapshot rebuild (load the config from the store, build the snapshot), which
/// every admin change does before it answers. Runs on the control plane's runtime.
async fn rebuild_ms(cp: ControlPlane) -> f64 {
    let rounds = 5;
    let t = Instant::now();
    for _ in 0..rounds {
        cp.republish().await.expect("republish");
    }
    t.elapsed().as_secs_f64() * 1e3 / f64::from(rounds)
}

/// Seeds `n` virtual keys straight through the store (8 concurrent transactions), then
/// publishes once. Runs on the control plane's runtime.
async fn seed_virtual_keys(cp: ControlPlane, n: usize) -> (u64, f64) {
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cp, next) = (cp.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        break;
                    }
                    let value =
                        tollgate_control_plane::crypto::generate_virtual_key().expect("key");
                    let at = tollgate_control_plane::model::now();
                    let vk = VirtualKeyRecord {
                        id: uuid::Uuid::now_v7(),
                        name: format!("seeded-team-{i:05}"),
                        description: Some(format!("seeded virtual key {i}")),
                        key_sha256: tollgate_control_plane::crypto::sha256(value.as_bytes()),
                        value_prefix: value[..10].to_owned(),
                        providers: vec!["bedrock".into()],
                        active: true,
                        team_id: None,
                        customer_id: None,
                        user_id: None,
                        governance: Default::default(),
                        created_at: at,
                        updated_at: at,
                    };
                    let audit = AuditEvent {
                        actor: "bench".into(),
                        action: "virtual_key.create".into(),
                        target: format!("virtual-keys/{}", vk.id),
                        details: serde_json::json!({"name": vk.name}),
                    };
                    cp.store()
                        .create_virtual_key(&vk, &audit)
                        .await
                        .expect("seed virtual key");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("seed task");
    }
    let version = cp.republish().await.expect("republish");
    (version, t.elapsed().as_secs_f64())
}

struct Options {
    nodes: usize,
    changes: usize,
    large_keys: usize,
    poll: Option<Duration>,
}

/// Both configs: connect, paced changes, burst of changes.
async fn run(servers: &Servers, cp_rt: tokio::runtime::Handle, opts: &Options) {
    let admin = Admin {
        http: reqwest::Client::new(),
        base: servers.admin_url.clone(),
    };
    admin
        .call(
            reqwest::Method::POST,
            "/api/providers",
            serde_json::json!({"provider": "bedrock"}),
        )
        .await;
    admin
        .call(
            reqwest::Method::POST,
            "/api/providers/bedrock/keys",
            serde_json::json!({
                "name": "bench", "models": ["*"], "weight": 1.0,
                "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
                "bedrock_key_config": {"access_key": "AKIDEXAMPLE",
                    "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "region": "us-east-1"}
            }),
        )
        .await;
    let (load1, _) = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap_or_default();
    println!(
        "propagation to {} simulated data planes: control plane on PostgreSQL, admin API over HTTP, \
         ConfigService.Watch over gRPC (one HTTP/2 connection per node, gzip); {} cores shared by \
         everything (load average {load1} at start){}",
        opts.nodes,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.poll.map_or(String::new(), |p| format!(
            "; fleet view polled every {} ms",
            p.as_millis()
        ))
    );

    let mut phases = vec![("small config (1 provider, 1 key)", 0)];
    if opts.large_keys > 0 {
        phases.push(("large config", opts.large_keys));
    }
    for (title, seed) in phases {
        println!("\n{title}:");
        if seed > 0 {
            let (version, secs) = cp_rt
                .spawn(seed_virtual_keys(servers.cp.clone(), seed))
                .await
                .expect("seed");
            println!(
                "  seeded {seed} virtual keys through the store in {secs:.1} s; published version {version}"
            );
        }
        snapshot_costs(&servers.cp.snapshots().borrow().clone());
        let rebuild = cp_rt
            .spawn(rebuild_ms(servers.cp.clone()))
            .await
            .expect("rebuild");
        println!(
            "  snapshot rebuild from the store (every admin change does one): {rebuild:.1} ms"
        );
        let mut fleet = connect_fleet(opts.nodes, servers).await;
        for (label, paced) in [("paced", true), ("burst", false)] {
            measure(label, paced, opts.changes, &admin, &mut fleet, opts.poll).await;
        }
        let expected = servers.cp.snapshots().borrow().virtual_keys.len();
        assert!(
            fleet.keys.iter().all(|&k| k == expected),
            "every node ends with the published {expected} virtual keys"
        );
        println!(
            "  all {} nodes ended on version {} with {expected} virtual keys",
            opts.nodes,
            servers.cp.published_version()
        );
        fleet.stop();
        // Let the server notice the closed streams before the next phase.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn main() {
    let poll_ms = num("--poll-ms", 10);
    let opts = Options {
        nodes: num("--nodes", 100),
        changes: num("--changes", 50),
        large_keys: num("--large-keys", 5000),
        poll: (poll_ms > 0).then(|| Duration::from_millis(poll_ms as u64)),
    };
    base();
    // The control plane on its own runtime, sized like the binary's on this machine.
    let cp_rt = runtime("cp", 2);
    let fleet_rt = runtime("fleet", 2);

    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("tollgate_bench_{}", uuid::Uuid::new_v4().simple());
    let mut pg = fleet_rt.block_on(async {
        let mut pg = PgConnection::connect(&admin_url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut pg)
            .await
            .expect("create database");
        pg
    });

    let database_url = PostgresStore::url_with_database(&admin_url, &name);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let servers = cp_rt.block_on(start_servers(database_url));
        fleet_rt.block_on(run(&servers, cp_rt.handle().clone(), &opts));
        servers.cp.shutdown();
        let _ = servers.stop.send(true);
        servers.admin.abort();
        let grpc = servers.grpc;
        let _ = cp_rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), grpc).await });
    }));
    cp_rt.shutdown_timeout(Duration::from_secs(5));

    fleet_rt.block_on(async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut pg)
        .await
        .expect("drop database");
    });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
