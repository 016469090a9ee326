//! The listeners: every TCP port Tollgate serves goes through [`serve_http`] (the admin and
//! inference APIs, in every role) or [`serve_grpc`] (the control plane's port for data planes).
//! Both are one accept loop on hyper that keeps a client from holding a port with idle, slow or
//! silent connections:
//!
//! | limit | HTTP listeners | gRPC listener | flag (default) |
//! |---|---|---|---|
//! | header read | the request head must be complete within this long of its first byte (of the accept, for a connection's first request) | — | `--header-read-timeout-ms` (20 s) |
//! | body read | the whole request body must arrive within this long of the end of its head | — | `--body-read-timeout-ms` (120 s) |
//! | idle | a connection with no request in progress is closed this long after its last response ended | the same, for calls (a data plane always has its calls open) | `--idle-timeout-ms` (75 s), `--grpc-idle-timeout-ms` (75 s) |
//! | handshake | — | TLS handshake (when on) and the HTTP/2 preface within this long of the accept | `--grpc-handshake-timeout-ms` (10 s) |
//! | send | response bytes the client's socket does not take (it stopped reading) for this long | the same | `--send-timeout-ms` (60 s), `--grpc-send-timeout-ms` (60 s) |
//! | connections | at most this many open; at the limit the listener stops accepting (new connections wait in the kernel's backlog) until one closes | the same | `--max-connections` (10,000), `--grpc-max-connections` (4,096) |
//!
//! While a handler works on a request and while its response is being sent to a client that
//! takes it, no timeout runs: a Claude Code stream of any length (with its `ping`s) and the data
//! planes' gRPC streams are never cut. Only a client that stops reading altogether meets the
//! send timeout. A dead peer under a stream is found by TCP and, on the gRPC port, by HTTP/2
//! pings (every 20 s, answered within 20 s). On the gRPC port a connection has at most
//! [`GRPC_MAX_STREAMS`] calls open.
//!
//! The HTTP listeners speak HTTP/1.1 only. Claude Code, the Anthropic SDKs and load balancers
//! talk to a plaintext backend in HTTP/1.1; HTTP/2 without TLS (h2c) needs prior knowledge no
//! client is configured with, and it would multiplex request bodies over one connection, where
//! a slow body could not be told from a slow connection.
//!
//! How it works (`listener/conn.rs`): the service of each connection counts requests started,
//! request bodies still being read and responses finished, in three atomics shared with the
//! connection's IO wrapper. When hyper waits for bytes (a read returns `Pending`) and when it
//! has flushed a write (a response's end), the wrapper derives from them which wait this is
//! (handshake, head, body, idle, or none while a request is being handled) and its deadline,
//! and polls one timer per connection, moved only when a deadline comes earlier than the one it
//! holds (a timer that fires early is moved on then). An expired wait ends the connection: at
//! EOF for an idle one (hyper closes it quietly), with an error otherwise. Per request: three
//! atomic counter updates, two `Arc` clones, a clock read when an idle wait starts, and the
//! connection-info extension `axum::serve` also inserts; no lock, no allocation of our own.
//!
//! `SIGTERM`/Ctrl-C: the listener stops accepting, every connection is shut down gracefully
//! (HTTP/1.1: after its response in progress; HTTP/2: GOAWAY, then its calls may finish), and
//! connections still open when the grace period ends are closed.

mod conn;
#[cfg(test)]
mod tests;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::conn::{ConnService, ConnShared, Mode, TimedIo};
pub use self::conn::{RequestBody, Wait};
pub use self::tls::GrpcServerTls;

/// Most calls open at once on one gRPC connection (a data plane opens one per connection).
pub const GRPC_MAX_STREAMS: u32 = 32;
/// HTTP/2 ping interval on the gRPC port, and how long an answer may take.
const GRPC_KEEPALIVE: Duration = Duration::from_secs(20);
/// Pause after a failed `accept` (out of file descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits of the HTTP listeners (admin and inference APIs, every role).
#[derive(Debug, Clone, Args)]
pub struct HttpListenerArgs {
    /// Milliseconds a client has to send a request head (request line and headers) from its
    /// first byte, or from the accept for a connection's first request; then the connection is
    /// closed.
    #[arg(long, env = "TOLLGATE_HEADER_READ_TIMEOUT_MS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: u64,

    /// Milliseconds a client has to send a whole request body from the end of its head; then
    /// the connection is closed. Raise it for large bodies over slow links (the default takes
    /// 32 MiB at about 2.2 Mbit/s).
    #[arg(long, env = "TOLLGATE_BODY_READ_TIMEOUT_MS", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_ms: u64,

    /// Milliseconds a keep-alive connection with no request in progress stays open after its
    /// last response. Behind a load balancer, set it above the balancer's idle timeout (AWS ALB:
    /// 60 s; Google Cloud: 600 s). Responses in progress (streams) are never cut.
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_MS", default_value_t = 75_000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,

    /// Milliseconds a client may leave response bytes untaken (its socket full: it stopped
    /// reading) before the connection is closed. A client reading a stream, however slowly,
    /// never meets it.
    #[arg(long, env = "TOLLGATE_SEND_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    send_timeout_ms: u64,

    /// Most connections open at once on each HTTP listener. At the limit the listener stops
    /// accepting (new connections wait in the kernel's backlog) until one closes.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
}

impl HttpListenerArgs {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_read: Duration::from_millis(self.header_read_timeout_ms),
            body_read: Duration::from_millis(self.body_read_timeout_ms),
            idle: Duration::from_millis(self.idle_timeout_ms),
            send: Duration::from_millis(self.send_timeout_ms),
            max_connections: self.max_connections,
        }
    }
}

/// Limits of the control plane's gRPC listener.
#[derive(Debug, Clone, Args)]
pub struct GrpcListenerArgs {
    /// Milliseconds a client of the gRPC port has, from the accept, to complete the TLS
    /// handshake (when TLS is on) and send the HTTP/2 connection preface.
    #[arg(long, env = "TOLLGATE_GRPC_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    grpc_handshake_timeout_ms: u64,

    /// Milliseconds a gRPC connection with no call open stays open after its last call ended
    /// (or after its handshake). Data planes keep their calls open while connected.
    #[arg(long, env = "TOLLGATE_GRPC_IDLE_TIMEOUT_MS", default_value_t = 75_000, value_parser = clap::value_parser!(u64).range(1..))]
    grpc_idle_timeout_ms: u64,

    /// Milliseconds a gRPC client may leave bytes untaken (it stopped reading) before its
    /// connection is closed.
    #[arg(long, env = "TOLLGATE_GRPC_SEND_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    grpc_send_timeout_ms: u64,

    /// Most connections open at once on the gRPC listener (a data plane uses two).
    #[arg(long, env = "TOLLGATE_GRPC_MAX_CONNECTIONS", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..))]
    grpc_max_connections: u32,
}

impl GrpcListenerArgs {
    pub fn limits(&self) -> GrpcLimits {
        GrpcLimits {
            handshake: Duration::from_millis(self.grpc_handshake_timeout_ms),
            idle: Duration::from_millis(self.grpc_idle_timeout_ms),
            send: Duration::from_millis(self.grpc_send_timeout_ms),
            max_connections: self.grpc_max_connections,
        }
    }
}

/// See the module documentation for what each limit means.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub idle: Duration,
    pub send: Duration,
    pub max_connections: u32,
}

/// See the module documentation for what each limit means.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    pub handshake: Duration,
    pub idle: Duration,
    pub send: Duration,
    pub max_connections: u32,
}

/// Connection counts of one listener, for `/metrics` and the tests.
#[derive(Debug)]
pub struct ListenerStats {
    name: &'static str,
    open: AtomicU64,
    accepted: AtomicU64,
    /// Indexed by [`Wait`] (`Wait::ALL` order).
    timed_out: [AtomicU64; 5],
    at_capacity: AtomicU64,
}

impl ListenerStats {
    fn new(name: &'static str) -> Self {
        ListenerStats {
            name,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            timed_out: Default::default(),
            at_capacity: AtomicU64::new(0),
        }
    }

    /// The listener's name (its `listener` label).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed because `wait` ran out.
    pub fn timed_out_total(&self, wait: Wait) -> u64 {
        self.timed_out[wait as usize].load(Ordering::Relaxed)
    }

    /// Times the listener reached its connection limit and stopped accepting.
    pub fn at_capacity_total(&self) -> u64 {
        self.at_capacity.load(Ordering::Relaxed)
    }

    fn count_timeout(&self, wait: Wait) {
        self.timed_out[wait as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A bound TCP listener and its connection counts.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    local: SocketAddr,
    stats: Arc<ListenerStats>,
}

impl Listener {
    /// Binds `addr`; `name` labels the listener in logs and metrics.
    pub async fn bind(addr: SocketAddr, name: &'static str) -> anyhow::Result<Listener> {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = tcp.local_addr()?;
        Ok(Listener {
            tcp,
            local,
            stats: Arc::new(ListenerStats::new(name)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> Arc<ListenerStats> {
        Arc::clone(&self.stats)
    }
}

/// Serves `app` over HTTP/1.1 on `listener` with `limits` until `stop` completes, then drains
/// (see the module documentation) for at most `grace`. Handlers see the peer address as
/// `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve_http(
    listener: Listener,
    limits: HttpLimits,
    app: axum::Router,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = http1::Builder::new();
    // Our own head timeout (conn.rs) replaces hyper's, which would also cut idle keep-alives.
    builder.header_read_timeout(None).keep_alive(true);
    let mode = Mode::Http1 {
        header_read: limits.header_read,
        body_read: limits.body_read,
        idle: limits.idle,
        send: limits.send,
    };
    run(
        listener,
        limits.max_connections,
        stop,
        grace,
        move |tcp, peer, accepted_at, ctx| {
            let io = TimedIo::new(tcp, mode, accepted_at, peer, &ctx.shared, &ctx.stats);
            let service = ConnService::new(
                app.clone(),
                Arc::clone(&ctx.shared),
                axum::extract::ConnectInfo(peer),
            );
            let conn = builder.serve_connection(TokioIo::new(io), service);
            async move {
                let result = drive(conn, |c| c.graceful_shutdown(), &ctx.tokens).await;
                if let Err(e) = result {
                    tracing::debug!(listener = ctx.stats.name, peer = %peer, error = %e, "connection ended with an error");
                }
            }
        },
    )
    .await;
}

/// Serves `routes` (tonic's `Routes`) over HTTP/2 on `listener` (TLS when `tls` is given) with
/// `limits` until `stop` completes, then drains for at most `grace`. Calls see the peer address
/// through `tonic::Request::remote_addr`.
pub async fn serve_grpc<S, B>(
    listener: Listener,
    limits: GrpcLimits,
    tls: Option<GrpcServerTls>,
    routes: S,
    stop: impl Future<Output = ()>,
    grace: Duration,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(GRPC_KEEPALIVE)
        .keep_alive_timeout(GRPC_KEEPALIVE)
        .max_concurrent_streams(GRPC_MAX_STREAMS);
    let mode = Mode::H2 {
        handshake: limits.handshake,
        idle: limits.idle,
        send: limits.send,
    };
    let local = listener.local_addr();
    let tls = tls.map(Arc::new);
    run(
        listener,
        limits.max_connections,
        stop,
        grace,
        move |tcp, peer, accepted_at, ctx| {
            let info = tonic::transport::server::TcpConnectInfo {
                local_addr: Some(local),
                remote_addr: Some(peer),
            };
            let service = ConnService::new(routes.clone(), Arc::clone(&ctx.shared), info);
            let builder = builder.clone();
            let tls = tls.clone();
            async move {
                let result = match tls {
                    None => {
                        let io = TimedIo::new(tcp, mode, accepted_at, peer, &ctx.shared, &ctx.stats);
                        let conn = builder.serve_connection(TokioIo::new(io), service);
                        drive(conn, |c| c.graceful_shutdown(), &ctx.tokens).await
                    }
                    Some(tls) => {
                        let deadline = accepted_at + limits.handshake;
                        // A handshake in progress when the drain starts is dropped: no request
                        // has started on it, and it would hold the drain for up to its timeout.
                        let accepted = tokio::select! {
                            stream = tls.accept(tcp, peer, deadline, &ctx.stats) => stream,
                            () = ctx.tokens.graceful.cancelled() => None,
                        };
                        let Some(stream) = accepted else {
                            return;
                        };
                        let io =
                            TimedIo::new(stream, mode, accepted_at, peer, &ctx.shared, &ctx.stats);
                        let conn = builder.serve_connection(TokioIo::new(io), service);
                        drive(conn, |c| c.graceful_shutdown(), &ctx.tokens).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(listener = ctx.stats.name, peer = %peer, error = %e, "gRPC connection ended with an error");
                }
            }
        },
    )
    .await;
}

/// What a connection task gets from the accept loop.
struct ConnCtx {
    shared: Arc<ConnShared>,
    stats: Arc<ListenerStats>,
    tokens: Tokens,
    /// Held for the connection's lifetime: the connection limit, and the drain's count.
    _slot: Slot,
}

/// The drain's signals: `graceful` asks connections to finish, `force` closes them.
#[derive(Clone)]
struct Tokens {
    graceful: CancellationToken,
    force: CancellationToken,
}

/// One open connection: a permit of the listener's semaphore and the open-connections gauge.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ListenerStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The accept loop shared by both protocols: one permit per connection, a task per connection
/// (built by `connection`), and the drain.
async fn run<F, Fut>(
    listener: Listener,
    max_connections: u32,
    stop: impl Future<Output = ()>,
    grace: Duration,
    mut connection: F,
) where
    F: FnMut(TcpStream, SocketAddr, Instant, Arc<ConnCtx>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Listener { tcp, stats, .. } = listener;
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let tokens = Tokens {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let mut stop = pin!(stop);
    let mut saturated = false;
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                saturated = false;
                permit
            }
            Err(_) => {
                if !saturated {
                    saturated = true;
                    stats.at_capacity.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        listener = stats.name,
                        max_connections,
                        "the listener is at its connection limit; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let (tcp_stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    drop(permit);
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(listener = stats.name, error = %e, "accepting a connection failed");
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                            () = &mut stop => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let accepted_at = Instant::now();
        // SSE events are small writes; without TCP_NODELAY each can wait ~40 ms for an ACK.
        let _ = tcp_stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let ctx = Arc::new(ConnCtx {
            shared: Arc::new(ConnShared::default()),
            stats: Arc::clone(&stats),
            tokens: tokens.clone(),
            _slot: Slot {
                _permit: permit,
                stats: Arc::clone(&stats),
            },
        });
        tokio::spawn(connection(tcp_stream, peer, accepted_at, ctx));
    }
    // Stop accepting: new connections are refused from here on.
    drop(tcp);
    tokens.graceful.cancel();
    let open = stats.open();
    if open > 0 {
        tracing::info!(
            listener = stats.name,
            connections = open,
            grace_s = grace.as_secs(),
            "draining requests in flight"
        );
    }
    let drained = tokio::time::timeout(grace, slots.acquire_many(max_connections)).await;
    if drained.is_err() {
        tracing::warn!(
            listener = stats.name,
            connections = stats.open(),
            "grace period over; closing the remaining connections"
        );
        tokens.force.cancel();
    }
}

/// Drives one connection until it ends, shutting it down gracefully when the drain starts and
/// dropping it when the grace period is over.
async fn drive<C, E>(conn: C, graceful_shutdown: fn(Pin<&mut C>), tokens: &Tokens) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        () = tokens.graceful.cancelled() => graceful_shutdown(conn.as_mut()),
        () = tokens.force.cancelled() => return Ok(()),
    }
    tokio::select! {
        result = conn => result,
        () = tokens.force.cancelled() => Ok(()),
    }
}

/// Errors of one connection that `accept` reports (the peer gave up before we took it).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Raises the soft limit on open files to the hard limit (listeners need one descriptor per
/// connection, the data plane another per upstream connection) and logs the figure.
pub fn raise_open_file_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => tracing::info!(
            open_files = now,
            was = before.map(|(soft, _)| soft),
            "open-file limit (soft RLIMIT_NOFILE) set to the hard limit"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            open_files = before.map(|(soft, _)| soft),
            "cannot raise the open-file limit; connections beyond it will be refused"
        ),
    }
}
