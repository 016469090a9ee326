//! The three ways to run Tollgate, and the wiring each needs. No logic of either plane lives
//! here: only flags, listeners, and which channel connects what.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;
use tollgate_control_plane::{
    AdminAuth, ControlPlane, ControlPlaneConfig, EnvAllowlist, StoreConfig, grpc::GrpcAuth,
};
use tollgate_data_plane::grpc::{self as dp_grpc, ClientTls};
use tollgate_data_plane::otel;
use tollgate_data_plane::reporter::{ReporterConfig, start_reporter};
use tollgate_data_plane::source::RemoteConfig;
use tollgate_data_plane::usage::UsageSink;
use tollgate_data_plane::{DataPlane, DataPlaneConfig};
use tollgate_proto::usage::v1::UsageRecord;

use prometheus_client::registry::Registry;
use tollgate_control_plane::metrics as cp_metrics;
use tollgate_data_plane::metrics as dp_metrics;

use crate::listener::{GrpcListenerArgs, GrpcServerTls, HttpLimits, HttpListenerArgs, Listener};
use crate::metrics;

/// How long the spans still queued at shutdown get to reach the collector.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Usage records buffered between the request path and the reporter.
const USAGE_QUEUE: usize = 65_536;
/// Largest usage batch handed to the store in one transaction (all-in-one).
const USAGE_BATCH: usize = 500;
/// Longest a usage record waits for its batch to fill (all-in-one).
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the all-in-one's usage queue is drained.
const USAGE_DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of the inference API, shared by all-in-one and the data-plane role.
#[derive(Debug, Args)]
pub struct InferenceArgs {
    /// Largest accepted inference request body, in bytes (larger: 413).
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = tollgate_data_plane::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Silence, in milliseconds, after which a streaming response gets a keep-alive `ping` event.
    #[arg(long, env = "TOLLGATE_SSE_PING_INTERVAL_MS", default_value_t = 10_000)]
    sse_ping_interval_ms: u64,

    /// Largest number of bytes of recorded request and response bodies (content logging) held in
    /// memory on their way to the control plane; a record whose bodies would pass it is
    /// delivered without them (counted and logged), its usage kept.
    #[arg(long, env = "TOLLGATE_CONTENT_MAX_HELD_BYTES", default_value_t = tollgate_data_plane::content::DEFAULT_MAX_HELD_BYTES)]
    content_max_held_bytes: usize,

    /// Seconds that requests in flight (streams included) get to finish after SIGTERM/Ctrl-C.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,

    /// Export OpenTelemetry traces over OTLP to this collector: its base URL, as in
    /// OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318, or http://localhost:4317 with
    /// --otlp-protocol grpc). Traces are off unless this, OTEL_EXPORTER_OTLP_ENDPOINT or
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    /// OTLP transport: http/protobuf or grpc. Default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
    /// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
    #[arg(
        long,
        env = "TOLLGATE_OTLP_PROTOCOL",
        value_name = "grpc|http/protobuf"
    )]
    otlp_protocol: Option<String>,
}

impl InferenceArgs {
    /// Trace export, when configured (`tollgate_data_plane::otel`): the tracer the data plane
    /// starts spans with, and the export task to flush at shutdown.
    fn tracing(&self) -> anyhow::Result<Option<(otel::Tracer, otel::Exporting)>> {
        let settings = otel::OtlpSettings::resolve(
            self.otlp_endpoint.as_deref(),
            self.otlp_protocol.as_deref(),
            |name| std::env::var(name).ok(),
        )?;
        let Some(settings) = settings else {
            return Ok(None);
        };
        let started = otel::start(&settings).context("cannot start trace export")?;
        tracing::info!(
            endpoint = %settings.describe(),
            protocol = match settings.protocol {
                otel::OtlpProtocol::Grpc => "grpc",
                otel::OtlpProtocol::HttpProtobuf => "http/protobuf",
            },
            "exporting traces over OTLP"
        );
        Ok(Some(started))
    }

    fn config(&self) -> DataPlaneConfig {
        DataPlaneConfig {
            max_body_bytes: self.max_body_bytes,
            sse_ping_interval: Duration::from_millis(self.sse_ping_interval_ms.max(1)),
            content_max_held_bytes: self.content_max_held_bytes,
            ..DataPlaneConfig::default()
        }
    }
}

/// Which environment variables `env.NAME` references may name; every role has it (the control
/// plane checks admin input against it, the data plane checks snapshots again).
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Environment variables that `env.NAME` references in the configuration may name, on top
    /// of the defaults AWS_*, ANTHROPIC_*, OPENAI_*, GOOGLE_*, AZURE_*: comma-separated exact
    /// names (PROXY_TOKEN) or prefixes ending in * (TEAM_*). TOLLGATE_* variables never
    /// resolve, and a pattern that could match one is refused at start.
    #[arg(
        long = "env-allow",
        env = "TOLLGATE_ENV_ALLOW",
        value_delimiter = ',',
        value_name = "NAME|PREFIX*"
    )]
    env_allow: Vec<String>,
}

impl EnvArgs {
    fn allowlist(&self) -> anyhow::Result<EnvAllowlist> {
        let list = EnvAllowlist::with_extra(&self.env_allow)?;
        tracing::info!(env_allow = %list.describe(), "env.NAME references may name these variables");
        Ok(list)
    }
}

/// Single sign-on (OIDC) for the admin API, the user's key page and `tollgate login`; all-in-one
/// and the control plane have it. With --oidc-issuer these flags are the OIDC configuration
/// (PUT /api/sso is then refused); without it, PUT /api/sso configures it.
#[derive(Args)]
pub struct SsoArgs {
    /// The identity provider's OIDC issuer URL (https://; http:// only on loopback, for tests),
    /// e.g. https://example.okta.com/oauth2/default.
    #[arg(long, env = "TOLLGATE_OIDC_ISSUER")]
    oidc_issuer: Option<String>,

    /// The client (application) id registered at the identity provider.
    #[arg(long, env = "TOLLGATE_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,

    /// The client secret (omit for a public client that relies on PKCE alone).
    #[arg(long, env = "TOLLGATE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    oidc_client_secret: Option<String>,

    /// Scopes to ask for, space- or comma-separated (default "openid email profile"; add e.g.
    /// "groups" when the provider needs it for the groups claim).
    #[arg(long, env = "TOLLGATE_OIDC_SCOPES")]
    oidc_scopes: Option<String>,

    /// The ID token claim listing the user's groups (default "groups"; a dotted path such as
    /// realm_access.roles is followed).
    #[arg(long, env = "TOLLGATE_OIDC_GROUPS_CLAIM")]
    oidc_groups_claim: Option<String>,

    /// The claim giving the user name (default "email", then preferred_username, then sub).
    #[arg(long, env = "TOLLGATE_OIDC_USER_NAME_CLAIM")]
    oidc_user_name_claim: Option<String>,

    /// The gateway's external base URL (https://gateway.example.com): the OIDC redirect URI is
    /// <public-url>/auth/callback, and the key page shows it as ANTHROPIC_BASE_URL.
    #[arg(long, env = "TOLLGATE_PUBLIC_URL")]
    public_url: Option<String>,

    /// Lifetime of a browser session, in hours (default 12).
    #[arg(long, env = "TOLLGATE_SESSION_HOURS")]
    session_hours: Option<u32>,
}

impl std::fmt::Debug for SsoArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.flags().fmt(f)
    }
}

impl SsoArgs {
    fn flags(&self) -> tollgate_control_plane::sso::SsoFlags {
        tollgate_control_plane::sso::SsoFlags {
            issuer: self.oidc_issuer.clone(),
            client_id: self.oidc_client_id.clone(),
            client_secret: self.oidc_client_secret.clone(),
            scopes: self.oidc_scopes.as_deref().map(|s| {
                s.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            groups_claim: self.oidc_groups_claim.clone(),
            user_name_claim: self.oidc_user_name_claim.clone(),
            public_url: self.public_url.clone(),
            session_hours: self.session_hours,
        }
    }

    /// Checks the flags and hands them to the control plane.
    fn apply(&self, cp: &ControlPlane) -> anyhow::Result<()> {
        let flags = self.flags();
        cp.set_sso_flags(flags.clone())
            .context("invalid single sign-on flags")?;
        if let Some(issuer) = &flags.issuer {
            tracing::info!(issuer = %issuer, public_url = ?flags.public_url, "single sign-on configured by flags");
        }
        Ok(())
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

    /// Days to keep the request and response bodies content logging records (for the keys and
    /// teams that turn it on); older ones are deleted hourly. Never longer than the usage
    /// records they belong to; 0 keeps them as long as those.
    #[arg(long, env = "TOLLGATE_CONTENT_RETENTION_DAYS", default_value_t = 7)]
    content_retention_days: u32,

    #[command(flatten)]
    inference: InferenceArgs,

    #[command(flatten)]
    env: EnvArgs,

    #[command(flatten)]
    sso: SsoArgs,

    #[command(flatten)]
    http_limits: HttpListenerArgs,
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

    /// Days of spend rollups (the hourly and daily sums `GET /api/spend` reads) to keep, usually
    /// longer than the raw usage; 0 keeps everything.
    #[arg(long, env = "TOLLGATE_SPEND_RETENTION_DAYS", default_value_t = 400)]
    spend_retention_days: u32,

    /// Days to keep the request and response bodies content logging records (for the keys and
    /// teams that turn it on); older ones are deleted hourly. Never longer than the usage
    /// records they belong to; 0 keeps them as long as those.
    #[arg(long, env = "TOLLGATE_CONTENT_RETENTION_DAYS", default_value_t = 7)]
    content_retention_days: u32,

    /// PEM certificate (chain) of the gRPC listener: with --grpc-tls-key it serves TLS only, and
    /// data planes connect with https://.
    #[arg(long, env = "TOLLGATE_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    grpc_tls_cert: Option<PathBuf>,

    /// PEM private key of --grpc-tls-cert.
    #[arg(long, env = "TOLLGATE_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    grpc_tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): every data plane must present a client certificate signed by one
    /// of them (mutual TLS), on top of the join token. Needs --grpc-tls-cert and --grpc-tls-key.
    #[arg(long, env = "TOLLGATE_GRPC_CLIENT_CA", requires = "grpc_tls_cert")]
    grpc_client_ca: Option<PathBuf>,

    #[command(flatten)]
    env: EnvArgs,

    #[command(flatten)]
    sso: SsoArgs,

    #[command(flatten)]
    grpc_limits: GrpcListenerArgs,

    #[command(flatten)]
    http_limits: HttpListenerArgs,
}

#[derive(Debug, Args)]
pub struct DataPlaneRoleArgs {
    /// Address of the inference API.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The control plane's gRPC address, e.g. http://10.0.0.5:8081, or https://cp.internal:8081
    /// for TLS (see --control-plane-ca, --tls-cert, --tls-key).
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE")]
    control_plane: String,

    /// Token this data plane presents to the control plane.
    #[arg(long, env = "TOLLGATE_JOIN_TOKEN", hide_env_values = true)]
    join_token: String,

    /// PEM CA certificate(s) that sign the control plane's gRPC certificate (https:// endpoints).
    /// Default: the system's CA certificates.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE_CA")]
    control_plane_ca: Option<PathBuf>,

    /// PEM client certificate (chain) presented to the control plane (mutual TLS).
    #[arg(long, env = "TOLLGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "TOLLGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Name the control plane's certificate must carry, when it is not the endpoint's host
    /// (e.g. connecting by IP address to a certificate issued for a DNS name).
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE_SERVER_NAME")]
    control_plane_server_name: Option<String>,

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

    /// Longest wait, in milliseconds, between attempts to reach the control plane. Waits start
    /// at 100 ms and double up to this cap, each drawn at random below its cap, so a control
    /// plane that comes back is found within about this long and a fleet does not reconnect
    /// in lockstep.
    #[arg(long, env = "TOLLGATE_RECONNECT_MAX_DELAY_MS", default_value_t = dp_grpc::DEFAULT_BACKOFF_MAX.as_millis() as u64)]
    reconnect_max_delay_ms: u64,

    #[command(flatten)]
    inference: InferenceArgs,

    #[command(flatten)]
    env: EnvArgs,

    #[command(flatten)]
    http_limits: HttpListenerArgs,
}

pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("tollgate");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/share/tollgate");
    }
    PathBuf::from(".tollgate")
}

/// Creates the data directory (and missing parents) readable only by this user (0700). An
/// existing directory others can read is kept as it is, with a warning.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %dir.display(),
                mode = format!("{mode:o}"),
                "the data directory is open to other users; `chmod 700` it (Tollgate creates it 0700)"
            );
        }
    }
    Ok(())
}

/// Shortest admin and join token accepted, in every role.
const MIN_TOKEN_LEN: usize = 16;

/// Refuses a token shorter than [`MIN_TOKEN_LEN`] characters (surrounding spaces not counted).
fn check_token(name: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().chars().count() < MIN_TOKEN_LEN {
        anyhow::bail!(
            "{name} must be at least {MIN_TOKEN_LEN} characters; generate one with `openssl rand -hex 32`"
        );
    }
    Ok(())
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
    let env_allow = args.env.allowlist()?;
    if let Some(token) = &args.admin_token {
        check_token("TOLLGATE_ADMIN_TOKEN", token)?;
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
        env_allow: env_allow.clone(),
    })
    .await
    .context("cannot start the control plane")?;
    args.sso.apply(&cp)?;
    cp.set_content_retention_days(Some(args.content_retention_days));

    let (sink, usage_rx) = UsageSink::channel(USAGE_QUEUE);
    let (tracer, exporting) = args.inference.tracing()?.unzip();
    let dp = DataPlane::new(
        DataPlaneConfig {
            env_allow,
            tracing: tracer,
            ..args.inference.config()
        },
        sink,
    );
    dp.follow(cp.snapshots());
    let usage_task = tokio::spawn(ingest_in_process(cp.clone(), usage_rx));
    let limits_task = tokio::spawn(report_limits_in_process(cp.clone(), dp.clone()));
    let probe_task = tokio::spawn(answer_probes_in_process(
        cp.attach_probe_target(ALL_IN_ONE_NODE),
        dp.clone(),
    ));

    let listener = Listener::bind(args.listen, "http").await?;
    let mut registry = Registry::default();
    dp_metrics::register(&dp, &mut registry);
    cp_metrics::register(&cp, &mut registry);
    metrics::register_listeners(vec![listener.stats()], &mut registry);
    // The inference router's fallback answers unknown paths (admin paths in the admin shape).
    let app = cp
        .admin_router()
        .merge(tollgate_data_plane::server::router(dp.clone()))
        .route("/metrics", metrics::route(registry));
    let local = listener.local_addr();
    tracing::info!(
        listen = %local,
        store = %store_desc,
        admin_auth = if args.admin_token.is_some() { "token" } else { "loopback-only" },
        "tollgate all-in-one is serving: admin API at http://{local}/api, Anthropic API at http://{local}/anthropic"
    );
    serve_http(
        listener,
        args.http_limits.limits(),
        app,
        grace(&args.inference),
    )
    .await;
    // Let the usage of the last requests reach the store.
    limits_task.abort();
    let _ = limits_task.await;
    probe_task.abort();
    let _ = probe_task.await;
    // The MCP gateway's connections close and its servers' child processes end.
    dp.shutdown().await;
    drop(dp);
    let _ = tokio::time::timeout(Duration::from_secs(5), usage_task).await;
    if let Some(exporting) = exporting {
        exporting.shutdown(TRACE_FLUSH_TIMEOUT).await;
    }
    cp.shutdown();
    tracing::info!("tollgate stopped");
    Ok(())
}

/// All-in-one's limits report: what its data plane holds of every limit and its requests in
/// flight, handed to the control plane in process as often as a split data plane reports on
/// its stream (the usage endpoints show requests in flight from it). One node holds the whole
/// of every limit, so there is nothing to rebalance.
async fn report_limits_in_process(cp: ControlPlane, dp: Arc<DataPlane>) {
    let mut every = tokio::time::interval(tollgate_data_plane::source::LIMITS_REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // Only requests in flight matter here (one node holds every limit whole).
        for report in dp.in_flight_report() {
            cp.report_limits(ALL_IN_ONE_NODE, report);
        }
    }
}

/// All-in-one's provider-key tests (`POST /api/providers/{name}/keys/{key_id}/test`): its data
/// plane is attached to the control plane as a probe target, as a split data plane's Watch
/// stream is, and runs each test in a task of its own with its current runtime.
async fn answer_probes_in_process(
    mut target: tollgate_control_plane::probes::ProbeTarget,
    dp: Arc<DataPlane>,
) {
    while let Some(req) = target.next().await {
        let dp = dp.clone();
        let answers = target.answers();
        tokio::spawn(async move {
            answers.answer(dp.probe(&req).await);
        });
    }
}

/// The node id all-in-one's data plane reports its limits (and answers key tests) under.
const ALL_IN_ONE_NODE: &str = "all-in-one";

/// All-in-one's usage path: the same records the gRPC reporter sends, committed in-process in
/// batches of up to 500 records or 1 s (one store transaction each, not one per request). A
/// failed batch is retried (storage is idempotent on the request id).
///
/// The queue is drained on a timer rather than on every record: a request never wakes this task
/// (at 1,000 req/s that wake-up cost as much CPU as signing the request).
async fn ingest_in_process(cp: ControlPlane, mut rx: mpsc::Receiver<UsageRecord>) {
    let mut drain = tokio::time::interval(USAGE_DRAIN_INTERVAL);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(USAGE_BATCH);
    let mut oldest = tokio::time::Instant::now();
    loop {
        drain.tick().await;
        let was_empty = batch.is_empty();
        let closed = tollgate_data_plane::usage::drain(&mut rx, &mut batch, USAGE_BATCH);
        if was_empty && !batch.is_empty() {
            oldest = tokio::time::Instant::now();
        }
        let full = batch.len() == USAGE_BATCH
            || tollgate_data_plane::usage::content_len(&batch)
                >= tollgate_data_plane::usage::DRAIN_CONTENT_BYTES;
        if full {
            drain.reset_immediately();
        }
        if !batch.is_empty() && (full || closed || oldest.elapsed() >= USAGE_FLUSH_INTERVAL) {
            let mut delay = Duration::from_millis(100);
            loop {
                match cp.ingest_usage(&batch).await {
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
        if closed && batch.is_empty() {
            return;
        }
    }
}

/// The control plane alone: admin API (token always required) and gRPC services.
pub async fn control_plane(args: ControlPlaneArgs) -> anyhow::Result<()> {
    check_token("TOLLGATE_ADMIN_TOKEN", &args.admin_token)?;
    check_token("TOLLGATE_JOIN_TOKEN", &args.join_token)?;
    if args.admin_token.trim() == args.join_token.trim() {
        anyhow::bail!(
            "TOLLGATE_ADMIN_TOKEN and TOLLGATE_JOIN_TOKEN must differ: every data plane holds the \
             join token, and it must not open the admin API"
        );
    }
    let env_allow = args.env.allowlist()?;
    let secret_key = tollgate_control_plane::crypto::key_from_base64(&args.secret_key)
        .context("TOLLGATE_SECRET_KEY is not a base64-encoded 32-byte key")?;
    // TLS files are checked before anything starts, so a bad file is a startup error.
    let grpc_tls = grpc_server_tls(&args)?;
    let cp = ControlPlane::start(ControlPlaneConfig {
        store: StoreConfig::Postgres {
            url: args.database_url.clone(),
        },
        secret_key,
        admin_auth: AdminAuth {
            token: Some(args.admin_token.clone()),
            allow_loopback_without_token: false,
        },
        env_allow,
    })
    .await
    .context("cannot start the control plane")?;
    args.sso.apply(&cp)?;
    cp.set_usage_retention_days(Some(args.usage_retention_days));
    cp.set_content_retention_days(Some(args.content_retention_days));
    cp.set_spend_retention_days(Some(args.spend_retention_days));

    let grpc_listener = Listener::bind(args.grpc_listen, "grpc").await?;
    let grpc_addr = grpc_listener.local_addr();
    let grpc_stats = grpc_listener.stats();
    let routes = cp.grpc_router(GrpcAuth {
        join_token: Some(args.join_token.clone()),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_mode = grpc_tls.as_ref().map_or("plaintext", |t| t.mode());
    if grpc_tls.is_none() && !grpc_addr.ip().is_loopback() {
        tracing::warn!(
            grpc = %grpc_addr,
            "the gRPC listener is plaintext on a non-loopback address: snapshots (provider \
             secrets included) and the join token travel unencrypted; set --grpc-tls-cert and \
             --grpc-tls-key (and --grpc-client-ca for mutual TLS) unless the network is trusted"
        );
    }
    let grpc = {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::spawn(crate::listener::serve_grpc(
            grpc_listener,
            args.grpc_limits.limits(),
            grpc_tls,
            routes,
            shutdown,
            GRPC_SHUTDOWN_GRACE,
        ))
    };
    let listener = Listener::bind(args.listen, "admin").await?;
    let mut registry = Registry::default();
    cp_metrics::register(&cp, &mut registry);
    metrics::register_listeners(vec![listener.stats(), grpc_stats], &mut registry);
    let app = cp
        .admin_router()
        .route("/metrics", metrics::route(registry))
        .fallback(not_found);
    tracing::info!(
        admin = %listener.local_addr(),
        grpc = %grpc_addr,
        grpc_tls = grpc_mode,
        "tollgate control plane is serving"
    );
    serve_http(
        listener,
        args.http_limits.limits(),
        app,
        Duration::from_secs(10),
    )
    .await;
    let _ = stop_tx.send(true);
    cp.shutdown();
    // The gRPC listener closes what is left after its own grace period.
    if tokio::time::timeout(GRPC_SHUTDOWN_GRACE + Duration::from_secs(1), grpc)
        .await
        .is_err()
    {
        tracing::warn!("gRPC server did not stop in time");
    }
    tracing::info!("tollgate control plane stopped");
    Ok(())
}

/// A data plane alone: inference API, config from the control plane, usage reported back.
pub async fn data_plane(args: DataPlaneRoleArgs) -> anyhow::Result<()> {
    check_token("TOLLGATE_JOIN_TOKEN", &args.join_token)?;
    let env_allow = args.env.allowlist()?;
    let tls = client_tls(&args)?;
    dp_grpc::check_endpoint(&args.control_plane, tls.as_ref()).map_err(anyhow::Error::msg)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    ensure_dir(&data_dir)?;
    let node_id = match &args.node_id {
        Some(id) => id.clone(),
        None => load_or_create_node_id(&data_dir)?,
    };
    let listener = Listener::bind(args.listen, "inference").await?;
    let local = listener.local_addr();
    let address = args
        .advertise_address
        .clone()
        .unwrap_or_else(|| local.to_string());
    let (sink, usage_rx) = UsageSink::channel(USAGE_QUEUE);
    let (tracer, exporting) = args.inference.tracing()?.unzip();
    let dp = DataPlane::new(
        DataPlaneConfig {
            env_allow,
            tracing: tracer,
            ..args.inference.config()
        },
        sink,
    );
    let connect = dp_grpc::ConnectOptions {
        backoff_max: Duration::from_millis(args.reconnect_max_delay_ms.max(100)),
        ..dp_grpc::ConnectOptions::default()
    };
    dp.follow_remote_with(
        RemoteConfig {
            endpoint: args.control_plane.clone(),
            tls: tls.clone(),
            join_token: Some(args.join_token.clone()),
            node_id: node_id.clone(),
            address,
            cache_dir: Some(data_dir.join("config-cache")),
        },
        connect.clone(),
    );
    let reporter = start_reporter(
        usage_rx,
        ReporterConfig {
            tls: tls.clone(),
            join_token: Some(args.join_token.clone()),
            spool_dir: Some(data_dir.join("usage-spool")),
            spool_max_records: args.usage_spool_max_records,
            ..ReporterConfig::new(args.control_plane.clone(), node_id.clone())
        },
        connect,
    );
    let mut registry = Registry::default();
    dp_metrics::register(&dp, &mut registry);
    dp_metrics::register_reporter(reporter.stats.clone(), &mut registry);
    metrics::register_listeners(vec![listener.stats()], &mut registry);
    let app =
        tollgate_data_plane::server::router(dp.clone()).route("/metrics", metrics::route(registry));
    tracing::info!(
        listen = %local,
        node_id = %node_id,
        control_plane = %args.control_plane,
        control_plane_tls = match &tls {
            Some(t) if t.has_client_certificate() => "mutual",
            Some(_) => "tls",
            None if args.control_plane.starts_with("https") => "tls (system roots)",
            None => "plaintext",
        },
        "tollgate data plane is serving: Anthropic API at http://{local}/anthropic"
    );
    serve_http(
        listener,
        args.http_limits.limits(),
        app,
        grace(&args.inference),
    )
    .await;
    // The MCP gateway's connections close and its servers' child processes end.
    dp.shutdown().await;
    // Closing the sink lets the reporter deliver (or spool) what is left.
    drop(dp);
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter.task).await;
    if let Some(exporting) = exporting {
        exporting.shutdown(TRACE_FLUSH_TIMEOUT).await;
    }
    tracing::info!("tollgate data plane stopped");
    Ok(())
}

/// The data plane's TLS settings towards the control plane, read and checked now; `None` when
/// no TLS flag is given.
fn client_tls(args: &DataPlaneRoleArgs) -> anyhow::Result<Option<ClientTls>> {
    if args.control_plane_ca.is_none()
        && args.tls_cert.is_none()
        && args.tls_key.is_none()
        && args.control_plane_server_name.is_none()
    {
        return Ok(None);
    }
    let tls = ClientTls::from_files(
        args.control_plane_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        args.control_plane_server_name.as_deref(),
    )
    .context("invalid TLS settings for the control plane connection")?;
    Ok(Some(tls))
}

/// Seconds the control plane's gRPC calls get to finish at shutdown.
const GRPC_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Reads and checks the gRPC TLS files; `None` when TLS is not configured.
fn grpc_server_tls(args: &ControlPlaneArgs) -> anyhow::Result<Option<GrpcServerTls>> {
    let (cert_path, key_path) = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if args.grpc_client_ca.is_none() => return Ok(None),
        _ => anyhow::bail!(
            "TLS on the gRPC listener needs both TOLLGATE_GRPC_TLS_CERT and TOLLGATE_GRPC_TLS_KEY \
             (TOLLGATE_GRPC_CLIENT_CA adds client certificates on top of them)"
        ),
    };
    GrpcServerTls::from_files(cert_path, key_path, args.grpc_client_ca.as_deref()).map(Some)
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

/// Serves `app` on `listener` until SIGTERM/Ctrl-C, then lets requests in flight (streams
/// included) finish for up to `grace` before returning.
async fn serve_http(listener: Listener, limits: HttpLimits, app: axum::Router, grace: Duration) {
    crate::listener::serve_http(listener, limits, app, shutdown_signal(), grace).await;
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
