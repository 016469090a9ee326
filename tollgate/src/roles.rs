//! The three ways to run Tollgate, and the wiring each needs. No logic of either plane lives
//! here: only flags, listeners, and which channel connects what.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;
use tollgate_control_plane::{AdminAuth, ControlPlane, ControlPlaneConfig, StoreConfig, grpc::GrpcAuth};
use tollgate_data_plane::reporter::{ReporterConfig, start_reporter};
use tollgate_data_plane::source::RemoteConfig;
use tollgate_data_plane::usage::UsageSink;
use tollgate_data_plane::{DataPlane, DataPlaneConfig};
use tollgate_proto::usage::v1::UsageRecord;

/// Usage records buffered between the request path and the reporter.
const USAGE_QUEUE: usize = 65_536;
/// Largest usage batch handed to the store in one transaction (all-in-one).
const USAGE_BATCH: usize = 500;

/// Settings of the inference API, shared by all-in-one and the data-plane role.
#[derive(Debug, Args)]
pub struct InferenceArgs {
    /// Largest accepted inference request body, in bytes (larger: 413).
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = tollgate_data_plane::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Silence, in milliseconds, after which a streaming response gets a keep-alive `ping` event.
    #[arg(long, env = "TOLLGATE_SSE_PING_INTERVAL_MS", default_value_t = 10_000)]
    sse_ping_interval_ms: u64,

    /// Seconds that requests in flight (streams included) get to finish after SIGTERM/Ctrl-C.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
}

impl InferenceArgs {
    fn config(&self) -> DataPlaneConfig {
        DataPlaneConfig {
            max_body_bytes: self.max_body_bytes,
            sse_ping_interval: Duration::from_millis(self.sse_ping_interval_ms.max(1)),
        }
    }
}

#[derive(Debug, Args)]
pub struct AllInOneArgs {
    /// Address to listen on for the admin and inference APIs. Listening on anything but a
    /// loopback address requires an admin token.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Directory for the embedded SQLite database and the generated secret key.
    /// Default: $XDG_DATA_HOME/tollgate or ~/.local/share/tollgate.
    #[arg(long, env = "TOLLGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Use this PostgreSQL database (postgres://...) instead of the embedded SQLite store.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Bearer token required on the admin API. Without it, only loopback clients may use the
    /// admin API, and Tollgate refuses to listen on a non-loopback address.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Key (base64, 32 bytes) that encrypts provider secrets at rest. Default: a key generated
    /// on first start and kept in DATA_DIR/secret.key (mode 0600).
    #[arg(long, env = "TOLLGATE_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,

    #[command(flatten)]
    inference: InferenceArgs,
}

#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// Address of the admin API.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Address of the gRPC services data planes connect to.
    #[arg(long, env = "TOLLGATE_GRPC_LISTEN", default_value = "127.0.0.1:8081")]
    grpc_listen: SocketAddr,

    /// PostgreSQL database (postgres://...). Several control planes may share it.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Bearer token required on every admin API call (the control plane never serves the admin
    /// API without credentials).
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,

    /// Token data planes present to the gRPC services (`TOLLGATE_JOIN_TOKEN` on the data planes).
    #[arg(long, env = "TOLLGATE_JOIN_TOKEN", hide_env_values = true)]
    join_token: String,

    /// Key (base64, 32 bytes) that encrypts provider secrets at rest; the same on every
    /// control-plane replica.
    #[arg(long, env = "TOLLGATE_SECRET_KEY", hide_env_values = true)]
    secret_key: String,

    /// Days of usage records to keep (older daily partitions are dropped); 0 keeps everything.
    #[arg(long, env = "TOLLGATE_USAGE_RETENTION_DAYS", default_value_t = 90)]
    usage_retention_days: u32,
}

#[derive(Debug, Args)]
pub struct DataPlaneRoleArgs {
    /// Address of the inference API.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The control plane's gRPC address, e.g. http://10.0.0.5:8081.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE")]
    control_plane: String,

    /// Token this data plane presents to the control plane.
    #[arg(long, env = "TOLLGATE_JOIN_TOKEN", hide_env_values = true)]
    join_token: String,

    /// Directory for the last good config (served at start when the control plane is down),
    /// the usage spool and the node id. Default: $XDG_DATA_HOME/tollgate or
    /// ~/.local/share/tollgate.
    #[arg(long, env = "TOLLGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Stable name of this node in the fleet view. Default: generated once and kept in
    /// DATA_DIR/node-id.
    #[arg(long, env = "TOLLGATE_NODE_ID")]
    node_id: Option<String>,

    /// Address reported to the control plane for the fleet view. Default: the listen address.
    #[arg(long, env = "TOLLGATE_ADVERTISE_ADDRESS")]
    advertise_address: Option<String>,

    /// Largest number of unacknowledged usage records kept on disk; beyond it the oldest are
    /// dropped (counted and logged).
    #[arg(long, env = "TOLLGATE_USAGE_SPOOL_MAX_RECORDS", default_value_t = tollgate_data_plane::reporter::DEFAULT_SPOOL_MAX_RECORDS)]
    usage_spool_max_records: usize,

    #[command(flatten)]
    inference: InferenceArgs,
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("tollgate");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/share/tollgate");
    }
    PathBuf::from(".tollgate")
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Everything in one process: control plane (SQLite by default), data plane fed in-process.
pub async fn all_in_one(args: AllInOneArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && args.admin_token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without an admin token: anyone who can reach that address \
             could change the gateway's configuration. Set TOLLGATE_ADMIN_TOKEN (or --admin-token), \
             or listen on 127.0.0.1",
            args.listen
        );
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    ensure_dir(&data_dir)?;
    let secret_key = match &args.secret_key {
        Some(k) => tollgate_control_plane::crypto::key_from_base64(k)
            .context("TOLLGATE_SECRET_KEY is not a base64-encoded 32-byte key")?,
        None => {
            tollgate_control_plane::crypto::load_or_create_key_file(&data_dir.join("secret.key"))
                .context("cannot load or create the secret key file")?
        }
    };
    let store = match &args.database_url {
        Some(url) => StoreConfig::Postgres { url: url.clone() },
        None => StoreConfig::Sqlite {
            path: data_dir.join("tollgate.db"),
        },
    };
    let store_desc = match &store {
        StoreConfig::Postgres { .. } => "postgres".to_owned(),
        StoreConfig::Sqlite { path } => format!("sqlite:{}", path.display()),
    };
    let cp = ControlPlane::start(ControlPlaneConfig {
        store,
        secret_key,
        admin_auth: AdminAuth {
            token: args.admin_token.clone(),
            allow_loopback_without_token: true,
        },
    })
    .await
    .context("cannot start the control plane")?;

    let (sink, usage_rx) = UsageSink::channel(USAGE_QUEUE);
    let dp = DataPlane::new(args.inference.config(), sink);
    dp.follow(cp.snapshots());
    let usage_task = tokio::spawn(ingest_in_process(cp.clone(), usage_rx));

    let app = cp
        .admin_router()
        .merge(tollgate_data_plane::server::router(dp.clone()))
        .fallback(not_found);
    let listener = bind(args.listen).await?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        store = %store_desc,
        admin_auth = if args.admin_token.is_some() { "token" } else { "loopback-only" },
        "tollgate all-in-one is serving: admin API at http://{local}/api, Anthropic API at http://{local}/anthropic"
    );
    serve_http(listener, app, grace(&args.inference)).await?;
    // Let the usage of the last requests reach the store.
    drop(dp);
    let _ = tokio::time::timeout(Duration::from_secs(5), usage_task).await;
    cp.shutdown();
    tracing::info!("tollgate stopped");
    Ok(())
}

/// All-in-one's usage path: the same records the gRPC reporter sends, committed in-process in
/// batches. A failed batch is retried (storage is idempotent on the request id).
async fn ingest_in_process(cp: ControlPlane, mut rx: mpsc::Receiver<UsageRecord>) {
    let mut batch = Vec::with_capacity(USAGE_BATCH);
    while rx.recv_many(&mut batch, USAGE_BATCH).await > 0 {
        let mut delay = Duration::from_millis(100);
        loop {
            match cp.ingest_usage(batch.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, records = batch.len(), retry_in_ms = delay.as_millis() as u64, "storing usage failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        batch.clear();
    }
}

/// The control plane alone: admin API (token always required) and gRPC services.
pub async fn control_plane(args: ControlPlaneArgs) -> anyhow::Result<()> {
    for (name, value) in [
        ("TOLLGATE_ADMIN_TOKEN", &args.admin_token),
        ("TOLLGATE_JOIN_TOKEN", &args.join_token),
    ] {
        if value.trim().len() < 16 {
            anyhow::bail!("{name} must be at least 16 characters; generate one with `openssl rand -hex 32`");
        }
    }
    let secret_key = tollgate_control_plane::crypto::key_from_base64(&args.secret_key)
        .context("TOLLGATE_SECRET_KEY is not a base64-encoded 32-byte key")?;
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: StoreConfig::Postgres {
            url: args.database_url.clone(),
        },
        secret_key,
        admin_auth: AdminAuth {
            token: Some(args.admin_token.clone()),
            allow_loopback_without_token: false,
        },
    })
    .await
    .context("cannot start the control plane")?;
    cp.set_usage_retention_days(Some(args.usage_retention_days));

    let grpc_listener = bind(args.grpc_listen).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let routes = cp.grpc_router(GrpcAuth {
        join_token: Some(args.join_token.clone()),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(20)))
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                )
                .await
        })
    };
    let app = cp.admin_router().fallback(not_found);
    let listener = bind(args.listen).await?;
    tracing::info!(
        admin = %listener.local_addr()?,
        grpc = %grpc_addr,
        "tollgate control plane is serving"
    );
    let http = serve_http(listener, app, Duration::from_secs(10)).await;
    let _ = stop_tx.send(true);
    cp.shutdown();
    match tokio::time::timeout(Duration::from_secs(10), grpc).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("gRPC server did not stop in time"),
    }
    http?;
    tracing::info!("tollgate control plane stopped");
    Ok(())
}

/// A data plane alone: inference API, config from the control plane, usage reported back.
pub async fn data_plane(args: DataPlaneRoleArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    ensure_dir(&data_dir)?;
    let node_id = match &args.node_id {
        Some(id) => id.clone(),
        None => load_or_create_node_id(&data_dir)?,
    };
    let listener = bind(args.listen).await?;
    let local = listener.local_addr()?;
    let address = args.advertise_address.clone().unwrap_or_else(|| local.to_string());
    let (sink, usage_rx) = UsageSink::channel(USAGE_QUEUE);
    let dp = DataPlane::new(args.inference.config(), sink);
    dp.follow_remote(RemoteConfig {
        endpoint: args.control_plane.clone(),
        join_token: Some(args.join_token.clone()),
        node_id: node_id.clone(),
        address,
        cache_dir: Some(data_dir.join("config-cache")),
    });
    let reporter = start_reporter(
        usage_rx,
        ReporterConfig {
            join_token: Some(args.join_token.clone()),
            spool_dir: Some(data_dir.join("usage-spool")),
            spool_max_records: args.usage_spool_max_records,
            ..ReporterConfig::new(args.control_plane.clone(), node_id.clone())
        },
        tollgate_data_plane::grpc::ConnectOptions::default(),
    );
    let app = tollgate_data_plane::server::router(dp.clone()).fallback(not_found);
    tracing::info!(
        listen = %local,
        node_id = %node_id,
        control_plane = %args.control_plane,
        "tollgate data plane is serving: Anthropic API at http://{local}/anthropic"
    );
    serve_http(listener, app, grace(&args.inference)).await?;
    // Closing the sink lets the reporter deliver (or spool) what is left.
    drop(dp);
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter.task).await;
    tracing::info!("tollgate data plane stopped");
    Ok(())
}

fn load_or_create_node_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let id = format!("dp-{}", uuid::Uuid::now_v7().simple());
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn grace(args: &InferenceArgs) -> Duration {
    Duration::from_secs(args.shutdown_grace_secs)
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves `app` until SIGTERM/Ctrl-C, then lets requests in flight (streams included) finish
/// for up to `grace` before returning.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    grace: Duration,
) -> anyhow::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    tokio::select! {
        result = server => result.context("server error")?,
        () = async {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            tracing::info!(grace_s = grace.as_secs(), "draining requests in flight");
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; closing the remaining connections"),
    }
    Ok(())
}

async fn not_found(uri: axum::http::Uri) -> impl axum::response::IntoResponse {
    let path = uri.path();
    let body = if path.starts_with("/anthropic") || path.starts_with("/v1/") {
        r#"{"type":"error","error":{"type":"not_found_error","message":"no such route"}}"#
    } else {
        r#"{"error":{"type":"not_found","message":"no such route"}}"#
    };
    (
        axum::http::StatusCode::NOT_FOUND,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

