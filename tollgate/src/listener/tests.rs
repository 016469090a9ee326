//! The listener on real loopback sockets. Timeouts are short here; the assertions are on
//! connection counts (the listener's own, and sockets seeing EOF), never on wall time.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use super::{
    GrpcLimits, GrpcServerTls, HttpLimits, Listener, ListenerStats, Wait, serve_grpc, serve_http,
};

/// Longest any test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(60);

/// A response body of `left` chunks `tick\n`, each after `gap` of silence.
struct Ticks {
    left: usize,
    gap: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl http_body::Body for Ticks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + self.gap;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"tick\n")))))
    }
}

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .route(
            "/big/{kib}",
            get(|Path(kib): Path<usize>| async move { vec![b'x'; kib * 1024] }),
        )
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slow"
            }),
        )
        .route(
            "/stream/{chunks}/{gap_ms}",
            get(|Path((chunks, gap_ms)): Path<(usize, u64)>| async move {
                let gap = Duration::from_millis(gap_ms);
                Body::new(Ticks {
                    left: chunks,
                    gap,
                    sleep: Box::pin(tokio::time::sleep(gap)),
                })
            }),
        )
}

struct Server {
    addr: SocketAddr,
    stats: Arc<ListenerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn http_limits(header_ms: u64, body_ms: u64, idle_ms: u64, max: u32) -> HttpLimits {
    HttpLimits {
        header_read: Duration::from_millis(header_ms),
        body_read: Duration::from_millis(body_ms),
        idle: Duration::from_millis(idle_ms),
        send: PATIENCE,
        max_connections: max,
    }
}

async fn start_http(limits: HttpLimits, grace: Duration) -> Server {
    let listener = Listener::bind(([127, 0, 0, 1], 0).into(), "test")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let stats = listener.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_http(
        listener,
        limits,
        app(),
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    Server {
        addr,
        stats,
        stop: Some(stop),
        task,
    }
}

async fn start_h2(limits: GrpcLimits) -> Server {
    start_grpc(limits, None, Duration::from_secs(5)).await
}

/// The gRPC listener (TLS when `tls` is given) serving [`app`] until [`Server::stop`] (or the
/// `Server` is dropped).
async fn start_grpc(limits: GrpcLimits, tls: Option<GrpcServerTls>, grace: Duration) -> Server {
    let listener = Listener::bind(([127, 0, 0, 1], 0).into(), "test-h2")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let stats = listener.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_grpc(
        listener,
        limits,
        tls,
        app(),
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    Server {
        addr,
        stats,
        stop: Some(stop),
        task,
    }
}

/// Waits until `check` holds (panics after [`PATIENCE`]).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the peer closes the connection (EOF or reset); panics after [`PATIENCE`].
async fn closed_by_server(mut read: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(PATIENCE, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(result.is_ok(), "the server never closed the connection");
    seen
}

/// Reads one whole HTTP/1.1 response (Content-Length or chunked) and returns it as text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let body = &text[end + 4..];
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap());
            match length {
                Some(len) if body.len() >= len => return text,
                None if body.ends_with("0\r\n\r\n") => return text,
                _ => {}
            }
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("a response")
            .expect("read");
        assert!(n > 0, "connection closed mid-response: {text}");
        seen.extend_from_slice(&buf[..n]);
    }
}

async fn get_once(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut s).await
}

fn timed_out(stats: &ListenerStats) -> [u64; 5] {
    Wait::ALL.map(|w| stats.timed_out_total(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_by_their_timeouts_while_others_are_served() {
    // Long enough that setting up 500 sockets on a busy machine never outlasts a timeout.
    let server = start_http(http_limits(8_000, 8_000, 8_000, 2_000), PATIENCE).await;
    let addr = server.addr;
    let mut stalled: Vec<(Wait, JoinHandle<Vec<u8>>)> = Vec::new();

    // 200 connections that never send a byte.
    for _ in 0..200 {
        let s = TcpStream::connect(addr).await.unwrap();
        stalled.push((Wait::HeaderRead, tokio::spawn(closed_by_server(s))));
    }
    // 100 that send part of a head.
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        stalled.push((Wait::HeaderRead, tokio::spawn(closed_by_server(s))));
    }
    // 100 that trickle a body: one byte every 50 ms of a declared megabyte.
    for _ in 0..100 {
        let s = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = s.into_split();
        write
            .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        tokio::spawn(async move {
            while write.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        stalled.push((Wait::BodyRead, tokio::spawn(closed_by_server(read))));
    }
    // 100 keep-alive connections that made one request and stay idle.
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut s).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        stalled.push((Wait::Idle, tokio::spawn(closed_by_server(s))));
    }
    eventually("500 connections open", || server.stats.open() == 500).await;

    // A normal client is answered while every stalled connection is still held: its answer did
    // not wait for any of them to time out.
    let response = get_once(addr, "/peer").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("127.0.0.1:"), "ConnectInfo: {response}");
    assert_eq!(timed_out(&server.stats), [0; 5], "nothing timed out yet");
    assert!(server.stats.open() >= 500);

    // Then each stalled connection is closed by its own timeout.
    for (_, task) in stalled {
        task.await.unwrap();
    }
    eventually("all connections closed", || server.stats.open() == 0).await;
    let stats = &server.stats;
    assert_eq!(stats.timed_out_total(Wait::HeaderRead), 300);
    assert_eq!(stats.timed_out_total(Wait::BodyRead), 100);
    assert_eq!(stats.timed_out_total(Wait::Idle), 100);
    assert_eq!(stats.timed_out_total(Wait::Handshake), 0);
    assert_eq!(stats.accepted_total(), 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_in_progress_outlive_every_timeout() {
    // Every timeout is 500 ms; each response below takes 6 to 9 times that.
    let server = start_http(http_limits(500, 500, 500, 100), PATIENCE).await;
    let addr = server.addr;
    let quick_ticks = tokio::spawn(get_once(addr, "/stream/15/200"));
    let slow_ticks = tokio::spawn(get_once(addr, "/stream/3/1500"));
    let slow_handler = tokio::spawn(get_once(addr, "/slow/4000"));
    // A keep-alive stream with gaps longer than every timeout; after its end the connection
    // idles, and only then is it closed.
    let mut keep_alive = TcpStream::connect(addr).await.unwrap();
    keep_alive
        .write_all(b"GET /stream/3/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut keep_alive).await;
    assert_eq!(response.matches("tick").count(), 3, "{response}");
    assert_eq!(timed_out(&server.stats), [0; 5], "the stream was not cut");

    let quick = quick_ticks.await.unwrap();
    assert_eq!(quick.matches("tick").count(), 15, "{quick}");
    let slow = slow_ticks.await.unwrap();
    assert_eq!(slow.matches("tick").count(), 3, "{slow}");
    let handled = slow_handler.await.unwrap();
    assert!(handled.ends_with("slow"), "{handled}");
    // Nothing was cut; the keep-alive connection may already have idled out since its stream
    // ended.
    let [header, body, idle, handshake, send] = timed_out(&server.stats);
    assert_eq!([header, body, handshake, send], [0; 4], "nothing was cut");
    assert!(idle <= 1, "{idle}");

    closed_by_server(keep_alive).await;
    assert_eq!(server.stats.timed_out_total(Wait::Idle), 1);
}

#[tokio::test]
async fn keep_alive_between_requests_and_the_head_timer_from_the_first_byte() {
    // Idle connections get 60 s; a started head gets 300 ms.
    let server = start_http(http_limits(300, 300, 60_000, 100), PATIENCE).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut s).await;
        assert!(response.ends_with("hello"), "{response}");
        // Longer than the head timeout: between requests only the idle timeout runs.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // The next head starts and stalls: closed by the head timeout, long before the idle one.
    s.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();
    closed_by_server(s).await;
    assert_eq!(timed_out(&server.stats), [1, 0, 0, 0, 0]);
    assert_eq!(server.stats.accepted_total(), 1);
}

/// A client that pipelines requests and never reads the answers: hyper reads no further while
/// its answers wait in a full socket, so only the send timeout can close the connection. A
/// client that reads slowly (a stream, taken as it comes) is never cut by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_by_the_send_timeout() {
    let mut limits = http_limits(60_000, 60_000, 60_000, 100);
    limits.send = Duration::from_millis(500);
    let server = start_http(limits, PATIENCE).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    let requests = "GET /big/64 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
    s.write_all(requests.as_bytes()).await.unwrap();
    eventually("the send timeout closed it", || {
        server.stats.timed_out_total(Wait::Send) == 1
    })
    .await;
    eventually("closed", || server.stats.open() == 0).await;
    // What the client had not read is all it got: far less than the 64 answers it asked for.
    let seen = closed_by_server(s).await;
    assert!(seen.len() < 64 * 64 * 1024, "{} bytes", seen.len());

    // A slow reader makes progress and keeps its connection: 1 MiB, 64 KiB at a time with
    // pauses longer than the send timeout between reads.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /big/1024 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < 1024 * 1024 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    assert_eq!(
        server.stats.timed_out_total(Wait::Send),
        1,
        "the slow reader was not cut"
    );
}

#[tokio::test]
async fn a_declared_body_is_read_within_its_timeout_and_the_connection_kept() {
    let server = start_http(http_limits(5_000, 5_000, 5_000, 100), PATIENCE).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"56789").await.unwrap();
        let response = read_response(&mut s).await;
        assert!(response.ends_with("10 bytes"), "{response}");
    }
    assert_eq!(timed_out(&server.stats), [0; 5]);
    assert_eq!(server.stats.accepted_total(), 1);
}

#[tokio::test]
async fn at_the_connection_limit_new_connections_wait_for_a_free_slot() {
    let server = start_http(http_limits(60_000, 60_000, 60_000, 5), PATIENCE).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    eventually("the limit is reached", || {
        server.stats.open() == 5 && server.stats.at_capacity_total() == 1
    })
    .await;
    // The kernel completes the sixth connection, but the listener does not take it.
    let waiting = tokio::spawn(get_once(server.addr, "/hello"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.stats.accepted_total(), 5);
    assert!(!waiting.is_finished());
    // A slot frees up: the waiting client is served.
    drop(held.pop());
    let response = waiting.await.unwrap();
    assert!(response.ends_with("hello"), "{response}");
    assert_eq!(server.stats.accepted_total(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_streams_closes_idle_connections_and_stops_accepting() {
    let mut server = start_http(http_limits(60_000, 60_000, 60_000, 100), PATIENCE).await;
    let addr = server.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut idle).await;
    let mut streaming = TcpStream::connect(addr).await.unwrap();
    streaming
        .write_all(b"GET /stream/10/150 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let n = streaming.read(&mut first).await.unwrap();
    assert!(n > 0);
    let mut response = first[..n].to_vec();

    server.stop();
    // The idle connection is closed at once; the stream runs to its end.
    closed_by_server(idle).await;
    response.extend(closed_by_server(streaming).await);
    let response = String::from_utf8_lossy(&response);
    assert_eq!(response.matches("tick").count(), 10, "{response}");
    assert!(response.ends_with("0\r\n\r\n"), "{response}");
    tokio::time::timeout(PATIENCE, &mut server.task)
        .await
        .expect("serve returns once drained")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    assert_eq!(server.stats.open(), 0);
}

#[tokio::test]
async fn after_the_grace_period_remaining_connections_are_closed() {
    let mut server = start_http(
        http_limits(60_000, 60_000, 60_000, 100),
        Duration::from_millis(300),
    )
    .await;
    let mut streaming = TcpStream::connect(server.addr).await.unwrap();
    streaming
        .write_all(b"GET /stream/100/100 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    assert!(streaming.read(&mut first).await.unwrap() > 0);
    server.stop();
    let rest = closed_by_server(streaming).await;
    assert!(
        String::from_utf8_lossy(&rest).matches("tick").count() < 99,
        "the stream was cut"
    );
    tokio::time::timeout(PATIENCE, &mut server.task)
        .await
        .unwrap()
        .unwrap();
}

/// An HTTP/2 client connection to `addr`, driven in the background; the handle ends when the
/// connection does.
async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
    JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_port_closes_silent_and_idle_connections_and_keeps_calls_in_progress() {
    use http_body_util::BodyExt as _;

    // The real client must beat the handshake and idle timeouts by its own speed: 1.5 s is
    // ample on a loaded machine; its call then lasts 8x that.
    let server = start_h2(GrpcLimits {
        handshake: Duration::from_millis(1_500),
        idle: Duration::from_millis(1_500),
        send: PATIENCE,
        max_connections: 1_000,
    })
    .await;
    let addr = server.addr;
    let mut silent = Vec::new();
    // Sockets that never send the preface, or only part of it.
    for i in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        silent.push(tokio::spawn(closed_by_server(s)));
    }
    // A call that lasts 8x every timeout, silent for 2x between its messages (like a data
    // plane's config stream).
    let (mut send, connection) = h2_client(addr).await;
    let request = http::Request::get(format!("http://{addr}/stream/4/3000"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"tick\ntick\ntick\ntick\n".as_slice());
    assert_eq!(server.stats.timed_out_total(Wait::Idle), 0);

    for task in silent {
        task.await.unwrap();
    }
    assert_eq!(server.stats.timed_out_total(Wait::Handshake), 100);
    // With its call over, the client's connection idles and is closed.
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert_eq!(server.stats.timed_out_total(Wait::Idle), 1);
    eventually("all closed", || server.stats.open() == 0).await;
}

#[tokio::test]
async fn metrics_text_names_the_listener_and_each_timeout() {
    let server = start_http(http_limits(200, 60_000, 60_000, 10), PATIENCE).await;
    let s = TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(s).await;
    eventually("closed", || server.stats.open() == 0).await;
    let mut registry = prometheus_client::registry::Registry::default();
    crate::metrics::register_listeners(vec![server.stats.clone()], &mut registry);
    let text = tollgate_data_plane::metrics::encode(&registry);
    for line in [
        "# TYPE tollgate_listener_connections_open gauge",
        "tollgate_listener_connections_open{listener=\"test\"} 0",
        "tollgate_listener_connections_accepted_total{listener=\"test\"} 1",
        "tollgate_listener_connections_timed_out_total{listener=\"test\",timeout=\"header_read\"} 1",
        "tollgate_listener_connections_timed_out_total{listener=\"test\",timeout=\"body_read\"} 0",
        "tollgate_listener_connections_timed_out_total{listener=\"test\",timeout=\"idle\"} 0",
        "tollgate_listener_connections_timed_out_total{listener=\"test\",timeout=\"handshake\"} 0",
        "tollgate_listener_at_capacity_total{listener=\"test\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
}

/// A CA, and a server certificate for `localhost` it signed, as PEM files in `dir`; returns the
/// CA certificate (DER) and the paths of the server's certificate and key.
/// A test CA (its DER) and the server TLS config of a `localhost` certificate it signed, loaded
/// from PEM files written to `dir`.
fn tls_files(dir: &std::path::Path) -> (Vec<u8>, GrpcServerTls) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = GrpcServerTls::from_files(&cert_path, &key_path, None).unwrap();
    (ca.der().to_vec(), tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_tls_handshake_and_preface_share_one_deadline() {
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = tls_files(dir.path());
    // The real TLS client must finish its handshake and preface within this: ample on a
    // loaded machine, and the silent sockets are closed by it.
    let limits = GrpcLimits {
        handshake: Duration::from_millis(2_000),
        idle: Duration::from_secs(60),
        send: PATIENCE,
        max_connections: 100,
    };
    let server = start_grpc(limits, Some(tls), Duration::from_secs(1)).await;
    let (addr, stats) = (server.addr, &server.stats);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.into()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls_connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("TLS handshake")
    };

    // No TLS handshake at all; a handshake and then no preface.
    let silent = tokio::spawn(closed_by_server(TcpStream::connect(addr).await.unwrap()));
    let no_preface = tokio::spawn(closed_by_server(tls_connect().await));
    // A real client gets its answer.
    let (mut send, _connection) = {
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls_connect().await),
        )
        .await
        .unwrap();
        (send, tokio::spawn(conn))
    };
    let response = send
        .send_request(
            http::Request::get("https://localhost/hello")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    silent.await.unwrap();
    no_preface.await.unwrap();
    // The count goes up when the deadline fires, the open gauge down when the connection's
    // task has ended: wait for both, then the real client's connection is the one left.
    eventually("both counted and closed", || {
        stats.timed_out_total(Wait::Handshake) == 2 && stats.open() <= 1
    })
    .await;
    assert_eq!(stats.open(), 1, "the real client's connection stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_in_progress_does_not_hold_up_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, tls) = tls_files(dir.path());
    // Timeouts and grace far beyond the test's patience: only the drain can close the socket.
    let limits = GrpcLimits {
        handshake: PATIENCE * 10,
        idle: PATIENCE * 10,
        send: PATIENCE * 10,
        max_connections: 100,
    };
    let mut server = start_grpc(limits, Some(tls), PATIENCE * 10).await;
    let stats = Arc::clone(&server.stats);
    // A client that opens TCP and never starts its TLS handshake.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    eventually("the silent connection is open", || stats.open() == 1).await;
    server.stop();
    closed_by_server(silent).await;
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("the listener stops once its only connection, a handshake, is dropped")
        .unwrap();
    assert_eq!(stats.open(), 0);
    assert_eq!(
        stats.timed_out_total(Wait::Handshake),
        0,
        "closed by the drain"
    );
}
