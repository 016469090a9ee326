//! The `tollgate` binary. With no arguments it runs everything in one process (all-in-one):
//! the control plane on an embedded SQLite store and a data plane fed in-process with the same
//! config snapshots the gRPC stream carries, on 127.0.0.1:8080.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tollgate_control_plane::{AdminAuth, ControlPlane, ControlPlaneConfig, StoreConfig};
use tollgate_data_plane::{DataPlane, DataPlaneConfig, usage::UsageSink};

/// Tollgate: an AI gateway for coding agents. Every flag can also be set with the environment
/// variable shown next to it.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, long_about = None)]
struct Args {
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

    /// Largest accepted inference request body, in bytes (larger: 413).
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = tollgate_data_plane::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Silence, in milliseconds, after which a streaming response gets a keep-alive `ping` event.
    #[arg(long, env = "TOLLGATE_SSE_PING_INTERVAL_MS", default_value_t = 10_000)]
    sse_ping_interval_ms: u64,

    /// Seconds that requests in flight (streams included) get to finish after SIGTERM/Ctrl-C.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,

    /// Log format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `tollgate=debug`.
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tollgate stopped");
            ExitCode::from(2)
        }
    }
}

fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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

async fn run(args: Args) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && args.admin_token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without an admin token: anyone who can reach that address \
             could change the gateway's configuration. Set TOLLGATE_ADMIN_TOKEN (or --admin-token), \
             or listen on 127.0.0.1",
            args.listen
        );
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
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

    let dp = DataPlane::new(
        DataPlaneConfig {
            max_body_bytes: args.max_body_bytes,
            sse_ping_interval: Duration::from_millis(args.sse_ping_interval_ms.max(1)),
        },
        UsageSink::log_only(),
    );
    dp.follow(cp.snapshots());

    let app = cp
        .admin_router()
        .merge(tollgate_data_plane::server::router(dp.clone()))
        .fallback(not_found);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        store = %store_desc,
        admin_auth = if args.admin_token.is_some() { "token" } else { "loopback-only" },
        "tollgate all-in-one is serving: admin API at http://{local}/api, Anthropic API at http://{local}/anthropic"
    );
    // On SIGTERM/Ctrl-C stop accepting, let requests in flight finish for up to the grace
    // period (Claude Code streams can run for a long time), then exit.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    tokio::select! {
        result = server => result.context("server error")?,
        () = async {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            tracing::info!(grace_s = grace.as_secs(), "draining requests in flight");
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; closing the remaining connections"),
    }
    tracing::info!("tollgate stopped");
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
