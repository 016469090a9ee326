//! Tollgate's control plane: it owns the configuration (providers, provider keys, virtual keys),
//! stores it in SQLite or PostgreSQL, serves the admin HTTP API (`/api/*`, OpenAPI at
//! `/openapi.json`), and publishes a complete, immutable [`Snapshot`] after every change. Data
//! planes consume only that snapshot; they never touch the database. In the split deployment
//! they receive it over gRPC ([`ControlPlane::grpc_router`]) and report usage back the same way;
//! all-in-one uses [`ControlPlane::snapshots`] and [`ControlPlane::ingest_usage`] in-process.
//!
//! # Modules
//! * [`crypto`]: AES-256-GCM sealing of provider secrets, the master key file, virtual-key values.
//! * [`model`]: the records the store keeps and their value types (sealed secrets, env refs).
//! * [`validate`]: input rules and [`validate::ValidationError`] (with the offending field).
//! * [`store`]: the [`Store`] trait and its SQLite and PostgreSQL backends (migrations in
//!   `migrations/{sqlite,postgres}`).
//! * [`snapshot`]: the pure function that turns loaded rows into a snapshot.
//! * [`audit`]: what an audit row says (source, before/after views with secrets redacted,
//!   result) and the audit query types; [`audit_chain`]: the rows' hash chain and its check.
//! * [`grpc`]: `ConfigService.Watch` (snapshots out, ACK/NACK in) and `UsageService.Report`
//!   (usage batches in, acks out) behind the join-token check ([`GrpcAuth`]).
//! * [`metrics`]: the control plane's Prometheus metrics (published config, fleet, usage ingest,
//!   store failures).
//! * [`probes`]: provider-key tests in flight, handed to a connected data plane (over its Watch
//!   stream, or in process in all-in-one) and their answers handed back.
//! * [`fleet`]: the in-memory registry of connected data planes behind `GET /api/data-planes`.
//!   Text from data planes (node ids, NACK reasons) is logged through
//!   `tollgate_proto::logsafe` (escaped, cut).
//! * `replicas` (private): follows config changes committed by other control-plane replicas
//!   (PostgreSQL `LISTEN`) and republishes; keeps the usage partitions ahead and applies
//!   retention.
//! * [`identity`]: users, roles, sessions, personal API tokens, group mappings, personal keys
//!   (pure); [`sso`] and `oidc` (private): single sign-on's settings, claims and cookies (pure) and the
//!   OpenID Connect relying party; [`scim`]: SCIM 2.0 resources, filters and PATCH (pure).
//! * `api` (private): axum handlers, the authentication middleware (a `Principal`: admin token,
//!   personal API token, SSO session or loopback), the one access table every `/api` route is
//!   checked against, the sign-in pages (`/auth/*`), SCIM (`/scim/v2`), JSON extractors and
//!   [`ApiError`], the single error type of the admin API; [`openapi()`] describes it.
//!
//! # Invariants
//! * Secrets (provider credentials, virtual-key values, the admin token) are never logged and
//!   never returned by the API. Responses show `env.NAME` references as written and literal
//!   secrets as `"<redacted>"`.
//! * Literal provider secrets and extra-header values are stored sealed (AES-256-GCM, fresh
//!   random nonce per value, bound to their key id and field, or provider and header name);
//!   `env.NAME` references are stored as references and passed to the data plane as
//!   `ValueRef{env}`, never resolved here. Admin input may only name variables the env allowlist
//!   allows ([`ControlPlaneConfig::env_allow`]; never `TOLLGATE_*`): anything else is a 400
//!   naming the field and the rule. Stored references the allowlist refuses (older rows) are
//!   kept, listed in the `refused_env_references` of GET responses, logged at start, and
//!   published as they are, for the data plane to refuse.
//! * Virtual keys are stored as SHA-256 digests; the value is shown once, in the create response.
//! * Every audit row is hash-chained to the one before it, and every writer of a row holds the
//!   writers' lock (the config-version row), so rows chain in id order. A refused change or a
//!   failed admin authentication writes a `failure` row of its own (without a new version;
//!   `auth.failed` rows are capped per source address). Audit rows never contain secrets.
//! * Every mutation is one transaction that bumps `config_version` and writes an audit row; after
//!   it commits, the snapshot is rebuilt from the store and published on a `watch` channel. The
//!   published version only ever increases. With PostgreSQL the transaction also `NOTIFY`s
//!   `tollgate_config` with the new version, and every replica rebuilds and republishes when it
//!   hears of a version newer than its own (and unconditionally after its listener reconnects).
//! * Usage storage is idempotent on the request id (at-least-once delivery, no double counts), a
//!   batch is acknowledged only after it committed, and nothing on the request path reads it.
//! * Bad input gets a JSON error (`{"error": {"type", "message", "field"?}}`) with a 4xx status;
//!   request bodies reject unknown fields.
//! * Admin auth: every `/api` request carries the admin token, a personal API token or an SSO
//!   session cookie (with the session's CSRF token on changes); without an admin token
//!   configured, loopback peers may be served as admins (optionally), and cross-origin browser
//!   requests and non-loopback `Host` names are refused so a local web page cannot drive the
//!   API. Every matched `/api` route has one access rule by role; a route without one is refused.
//! * A user has at most one personal virtual key; deactivating or deleting the user (admin API
//!   or SCIM) changes the key in the same transaction, which bumps the config version.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tollgate_proto::config::v1::Snapshot;
pub use tollgate_proto::env::EnvAllowlist;
use tollgate_proto::usage::v1::UsageRecord;

pub mod allowances;
mod api;
pub mod audit;
pub mod audit_chain;
pub mod crypto;
pub mod fleet;
pub mod governance;
pub mod grpc;
pub mod identity;
mod job_runner;
pub mod jobs;
pub mod mcp;
pub mod metrics;
pub mod model;
mod oidc;
pub mod probes;
mod replicas;
pub mod scim;
pub mod snapshot;
pub mod spend;
pub mod sso;
pub mod store;
pub mod usage_log;
pub mod validate;

pub use api::{ApiError, ErrorBody, ErrorDetail, ErrorType, openapi};
pub use grpc::GrpcAuth;
pub use snapshot::{SnapshotError, build_snapshot};
pub use store::{
    CliLoginRecord, CliPoll, ConfigChange, PostgresStore, SqliteStore, Store, StoreConfig,
    StoreError, UsagePurge,
};

/// Everything [`ControlPlane::start`] needs.
#[derive(Clone)]
pub struct ControlPlaneConfig {
    pub store: StoreConfig,
    /// AES-256-GCM key sealing provider secrets at rest (see [`crypto::load_or_create_key_file`]).
    pub secret_key: [u8; 32],
    pub admin_auth: AdminAuth,
    /// The environment variables admin input may name as `env.NAME`.
    pub env_allow: EnvAllowlist,
}

impl fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("store", &redact_store(&self.store))
            .field("secret_key", &"<redacted>")
            .field("admin_auth", &self.admin_auth)
            .field("env_allow", &self.env_allow.describe())
            .finish()
    }
}

fn redact_store(store: &StoreConfig) -> String {
    match store {
        StoreConfig::Sqlite { path } => format!("Sqlite({})", path.display()),
        // The URL may carry a password.
        StoreConfig::Postgres { .. } => "Postgres(<url redacted>)".to_owned(),
    }
}

/// Who may use the admin API.
#[derive(Clone, Default)]
pub struct AdminAuth {
    /// When set, every `/api` request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Without a token: accept requests whose peer address is loopback (otherwise refuse all).
    pub allow_loopback_without_token: bool,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "allow_loopback_without_token",
                &self.allow_loopback_without_token,
            )
            .finish()
    }
}

/// Errors of starting and running the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid control-plane configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The running control plane. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    secrets: crypto::SecretBox,
    /// Derives personal virtual keys ([`identity::personal_key_value`]); itself derived from
    /// the master key.
    personal_key_secret: [u8; 32],
    admin_auth: AdminAuth,
    env_allow: EnvAllowlist,
    snapshots: watch::Sender<Arc<Snapshot>>,
    /// Serialises rebuilds so a slow old build cannot overwrite a newer one.
    publish: Mutex<()>,
    /// Data planes watching this replica.
    fleet: Arc<fleet::Fleet>,
    /// Their allowances of every limit, rebalanced from their reports.
    allowances: allowances::Allowances,
    /// Provider-key tests waiting for a data plane's answer.
    probes: Arc<probes::Probes>,
    /// Cancelled by [`ControlPlane::shutdown`]: ends the gRPC streams.
    shutdown: CancellationToken,
    /// Cancelled when the last handle is dropped: ends the background tasks.
    tasks: CancellationToken,
    /// Usage retention in days (0: keep everything).
    usage_retention_days: AtomicU32,
    /// Spend-rollup retention in days (0: keep everything).
    spend_retention_days: AtomicU32,
    /// Recorded-body (content logging) retention in days (0: keep everything).
    content_retention_days: AtomicU32,
    /// Single sign-on: the flags, the identity provider's cached metadata.
    sso: oidc::SsoRuntime,
    /// Wakes this replica's job runner when a job is created here.
    jobs_wake: Arc<tokio::sync::Notify>,
    /// Usage ingest and store failures, for `/metrics` ([`metrics`]).
    metrics: metrics::Metrics,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.cancel();
    }
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("backend", &self.inner.store.backend())
            .field("version", &self.inner.snapshots.borrow().version)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Connects to the store, runs its migrations, builds and publishes the current snapshot.
    pub async fn start(cfg: ControlPlaneConfig) -> Result<ControlPlane, Error> {
        let store = store::connect(&cfg.store).await?;
        Self::with_store(store, &cfg.secret_key, cfg.admin_auth, cfg.env_allow).await
    }

    /// Like [`ControlPlane::start`] with an already connected store. Extra-header values that
    /// an older version stored in plaintext are sealed first
    /// ([`Store::seal_legacy_extra_headers`]).
    pub async fn with_store(
        store: Arc<dyn Store>,
        secret_key: &[u8; 32],
        admin_auth: AdminAuth,
        env_allow: EnvAllowlist,
    ) -> Result<ControlPlane, Error> {
        if admin_auth
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(Error::Config(
                "the admin token must not be empty".to_owned(),
            ));
        }
        let secrets = crypto::SecretBox::new(secret_key);
        let sealed = store
            .seal_legacy_extra_headers(&|provider: &str, header: &str, value: &str| {
                model::SealedSecret::seal_header(&secrets, provider, header, value)
            })
            .await?;
        if sealed > 0 {
            tracing::info!(
                values = sealed,
                "sealed extra-header values that an older version stored in plaintext"
            );
        }
        let state = store.load_state().await?;
        warn_refused_references(&state, &env_allow);
        let first = build_snapshot(&state, &secrets, unix_ms())?;
        tracing::info!(
            backend = store.backend(),
            version = first.version,
            providers = first.providers.len(),
            virtual_keys = first.virtual_keys.len(),
            token_auth = admin_auth.token.is_some(),
            loopback_without_token = admin_auth.allow_loopback_without_token,
            "control plane started"
        );
        let sso = oidc::SsoRuntime::new().map_err(Error::Config)?;
        let (tx, _rx) = watch::channel(Arc::new(first));
        let cp = ControlPlane {
            inner: Arc::new(Inner {
                store,
                secrets,
                personal_key_secret: crypto::derive_key(secret_key, b"tollgate personal keys v1"),
                admin_auth,
                env_allow,
                snapshots: tx,
                publish: Mutex::new(()),
                fleet: Arc::new(fleet::Fleet::new()),
                allowances: allowances::Allowances::new(
                    u64::try_from(unix_ms()).unwrap_or(0).saturating_mul(1_000),
                ),
                probes: Arc::default(),
                shutdown: CancellationToken::new(),
                tasks: CancellationToken::new(),
                usage_retention_days: AtomicU32::new(0),
                spend_retention_days: AtomicU32::new(0),
                content_retention_days: AtomicU32::new(0),
                sso,
                jobs_wake: Arc::new(tokio::sync::Notify::new()),
                metrics: metrics::Metrics::default(),
            }),
        };
        replicas::spawn_background_tasks(&cp);
        Ok(cp)
    }

    /// The admin API: every `/api/*` route (behind admin auth) and `GET /openapi.json`.
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the loopback rule
    /// can see the peer address.
    pub fn admin_router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Sets the single sign-on flags (`--oidc-*`, `--public-url`, `--session-hours`): checked
    /// here; with `--oidc-issuer` they are the OIDC configuration and `PUT /api/sso` is refused.
    pub fn set_sso_flags(&self, flags: sso::SsoFlags) -> Result<(), Error> {
        flags.validate().map_err(Error::Config)?;
        self.inner.sso.set_flags(flags);
        Ok(())
    }

    pub(crate) fn sso(&self) -> &oidc::SsoRuntime {
        &self.inner.sso
    }

    /// The published snapshots; the current one is available at once.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshots.subscribe()
    }

    /// Wakes this replica's job runner (a job was just created).
    pub(crate) fn wake_jobs(&self) {
        self.inner.jobs_wake.notify_one();
    }

    /// Whether [`ControlPlane::shutdown`] was called.
    pub(crate) fn shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// The store (for tools and tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The version of the snapshot published now.
    pub fn published_version(&self) -> u64 {
        self.inner.snapshots.borrow().version
    }

    /// Counts a failure of the store work `work` (`tollgate_store_errors_total`).
    pub(crate) fn count_store_error(&self, work: metrics::StoreWork) {
        self.inner.metrics.store_error(work);
    }

    /// The data planes that watch (or watched) this replica, ordered by node id. See [`fleet`]:
    /// the registry is in memory and per replica.
    pub fn data_planes(&self) -> Vec<fleet::NodeStatus> {
        self.inner.fleet.list(self.published_version())
    }

    /// Makes a data plane able to run provider-key tests for the admin API: it receives them
    /// from the returned target and answers through it ([`probes`]). Split data planes are
    /// attached by their Watch stream; all-in-one attaches its in-process data plane.
    pub fn attach_probe_target(&self, node_id: &str) -> probes::ProbeTarget {
        self.inner.probes.attach(node_id)
    }

    /// Has a connected data plane test a provider key and waits for its answer (at most
    /// [`probes::PROBE_TIMEOUT`], or what [`ControlPlane::set_probe_timeout`] set); returns the
    /// node that answered and its result. The data plane whose applied config is newest is
    /// asked.
    pub(crate) async fn probe_key(
        &self,
        req: tollgate_proto::config::v1::ProbeRequest,
    ) -> Result<(String, tollgate_proto::config::v1::ProbeResult), probes::ProbeError> {
        let applied: std::collections::HashMap<String, u64> = self
            .data_planes()
            .into_iter()
            .filter(|n| n.connected)
            .map(|n| (n.node_id, n.applied_version))
            .collect();
        self.inner
            .probes
            .run(
                req,
                |node| applied.get(node).copied().unwrap_or(0),
                self.inner.probes.timeout(),
            )
            .await
    }

    /// How long key tests wait for a data plane's answer (default [`probes::PROBE_TIMEOUT`];
    /// tests shorten it).
    pub fn set_probe_timeout(&self, timeout: std::time::Duration) {
        self.inner.probes.set_timeout(timeout);
    }

    /// Takes a data plane's report of its limits: what it holds of every counter in use and
    /// its requests in flight (all-in-one reports its in-process data plane here; split data
    /// planes report on their Watch stream). See [`allowances`].
    pub fn report_limits(&self, node_id: &str, report: tollgate_proto::config::v1::LimitsReport) {
        self.inner.allowances.report(node_id, report, unix_ms());
    }

    /// Requests in flight at a level (`(LevelKind, id, provider)`), summed over the data
    /// planes that reported in the last few seconds.
    pub(crate) fn in_flight(&self, level: &allowances::LevelKey) -> u64 {
        self.inner.allowances.in_flight(level, unix_ms())
    }

    /// Ends every open gRPC stream (Watch and Report; with `UNAVAILABLE`, so data planes
    /// reconnect) and refuses new ones. Call it when the gRPC server's shutdown signal fires:
    /// a graceful shutdown waits for open streams, and Watch streams never end by themselves.
    /// Usage batches being committed are finished and acknowledged first.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Stores usage records reported in-process (all-in-one mode), in one transaction,
    /// idempotent on the request id. Records with an empty request id are dropped (logged).
    /// Returns how many rows were new (records already stored are not counted).
    pub async fn ingest_usage(&self, records: &[UsageRecord]) -> Result<u64, Error> {
        self.store_usage(records, "in-process")
            .await
            .map(|(_, stored)| stored)
    }

    /// Validates and stores usage records. Returns (records now stored, duplicates included;
    /// rows that were new).
    pub(crate) async fn store_usage(
        &self,
        records: &[UsageRecord],
        source: &str,
    ) -> Result<(u32, u64), Error> {
        let has_id = |r: &UsageRecord| !r.request_id.trim().is_empty();
        // The batch is stored as it came unless some records lack an id (never from Tollgate).
        let kept: std::borrow::Cow<'_, [UsageRecord]> = if records.iter().all(has_id) {
            records.into()
        } else {
            let kept: Vec<UsageRecord> = records.iter().filter(|r| has_id(r)).cloned().collect();
            tracing::warn!(
                source,
                dropped = records.len() - kept.len(),
                "dropped usage records without a request id"
            );
            kept.into()
        };
        let stored = match self.inner.store.insert_usage(&kept).await {
            Ok(stored) => stored,
            Err(e) => {
                self.inner.metrics.batch_failed();
                return Err(e.into());
            }
        };
        let received = records.len() as u64;
        self.inner
            .metrics
            .batch_stored(received, received - kept.len() as u64, stored);
        Ok((u32::try_from(kept.len()).unwrap_or(u32::MAX), stored))
    }

    /// Keeps usage for `days` days (whole UTC days before today minus `days` are removed by the
    /// hourly maintenance); `None` or `Some(0)` keeps everything (the default).
    pub fn set_usage_retention_days(&self, days: Option<u32>) {
        self.inner
            .usage_retention_days
            .store(days.unwrap_or(0), Ordering::Relaxed);
    }

    /// Keeps the spend rollups (hourly and daily buckets, `GET /api/spend`) for `days` days,
    /// usually longer than the raw usage; `None` or `Some(0)` keeps everything (the default).
    pub fn set_spend_retention_days(&self, days: Option<u32>) {
        self.inner
            .spend_retention_days
            .store(days.unwrap_or(0), Ordering::Relaxed);
    }

    /// Keeps the request and response bodies content logging records for `days` days (rows
    /// older than now minus `days` are removed by the hourly maintenance); `None` or `Some(0)`
    /// keeps everything (the default of the library; the binary's default is 7 days).
    pub fn set_content_retention_days(&self, days: Option<u32>) {
        self.inner
            .content_retention_days
            .store(days.unwrap_or(0), Ordering::Relaxed);
    }

    /// Runs the usage-storage maintenance now (it also runs at start and hourly): creates the
    /// daily partitions from yesterday to two days ahead, then applies the retentions, if any
    /// (recorded bodies, spend rollups, then raw usage).
    pub async fn maintain_usage_storage(&self) -> Result<UsagePurge, Error> {
        let today = time::OffsetDateTime::now_utc().date();
        let from = today.previous_day().unwrap_or(today);
        self.inner
            .store
            .create_usage_partitions(from, replicas::USAGE_PARTITION_DAYS)
            .await?;
        // Bodies never outlive their usage records (they could no longer be read).
        let usage_days = self.inner.usage_retention_days.load(Ordering::Relaxed);
        let content_days = match self.inner.content_retention_days.load(Ordering::Relaxed) {
            0 => usage_days,
            days if usage_days > 0 => days.min(usage_days),
            days => days,
        };
        if content_days > 0 {
            let cutoff = time::OffsetDateTime::now_utc()
                .checked_sub(time::Duration::days(i64::from(content_days)))
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            // A failure here is logged and does not keep the other retentions from running.
            match self.inner.store.drop_request_content_before(cutoff).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(rows = deleted, before = %cutoff, "content retention removed recorded bodies");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "content retention failed; retried at the next maintenance");
                }
            }
        }
        let spend_days = self.inner.spend_retention_days.load(Ordering::Relaxed);
        if spend_days > 0 {
            let cutoff = today
                .checked_sub(time::Duration::days(i64::from(spend_days)))
                .unwrap_or(time::Date::MIN);
            let deleted = self.inner.store.drop_spend_rollups_before(cutoff).await?;
            if deleted > 0 {
                tracing::info!(rows = deleted, before = %cutoff, "spend retention removed old buckets");
            }
        }
        let days = self.inner.usage_retention_days.load(Ordering::Relaxed);
        if days == 0 {
            return Ok(UsagePurge::default());
        }
        let cutoff = today
            .checked_sub(time::Duration::days(i64::from(days)))
            .unwrap_or(time::Date::MIN);
        Ok(self
            .inner
            .store
            .drop_usage_partitions_before(cutoff)
            .await?)
    }

    /// Removes expired browser sessions and expired `tollgate login` sign-ins (hourly, with the
    /// usage maintenance).
    pub async fn purge_expired_logins(&self) {
        let now = time::OffsetDateTime::now_utc();
        let sessions = self.inner.store.purge_expired_sessions(now).await;
        let cli = self.inner.store.purge_cli_logins(now).await;
        match (sessions, cli) {
            (Ok(s), Ok(c)) if s + c > 0 => {
                tracing::info!(sessions = s, cli_logins = c, "purged expired sign-ins");
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "purging expired sign-ins failed; will retry");
            }
        }
    }

    /// Rebuilds the snapshot from the store and publishes it if it is newer than the current
    /// one. Returns the version now published.
    pub async fn republish(&self) -> Result<u64, Error> {
        self.republish_if_behind(u64::MAX).await
    }

    /// Like [`ControlPlane::republish`], but skips the rebuild when a snapshot of at least
    /// `version` is already published by the time the publish lock is held. A change and the
    /// replica listener's NOTIFY for it would otherwise both rebuild (one full store read each).
    pub async fn republish_if_behind(&self, version: u64) -> Result<u64, Error> {
        let _guard = self.inner.publish.lock().await;
        let current = self.published_version();
        if current >= version {
            return Ok(current);
        }
        let state = self.inner.store.load_state().await?;
        let snapshot = Arc::new(build_snapshot(&state, &self.inner.secrets, unix_ms())?);
        let mut published = 0;
        let changed = self.inner.snapshots.send_if_modified(|current| {
            if snapshot.version > current.version {
                *current = snapshot.clone();
                published = snapshot.version;
                true
            } else {
                published = current.version;
                false
            }
        });
        if changed {
            tracing::info!(
                version = snapshot.version,
                providers = snapshot.providers.len(),
                keys = snapshot
                    .providers
                    .iter()
                    .map(|p| p.keys.len())
                    .sum::<usize>(),
                virtual_keys = snapshot.virtual_keys.len(),
                "published config snapshot"
            );
        }
        Ok(published)
    }

    pub(crate) fn secrets(&self) -> &crypto::SecretBox {
        &self.inner.secrets
    }

    /// The value of a user's personal virtual key at `generation`.
    pub fn personal_key(&self, user_id: uuid::Uuid, generation: u64) -> String {
        identity::personal_key_value(&self.inner.personal_key_secret, user_id, generation)
    }

    /// The group → team and group → role rules (the `group_mappings` setting; none: every
    /// user is a `member` in no team).
    pub async fn group_mappings(&self) -> Result<identity::GroupMappings, Error> {
        match self
            .inner
            .store
            .setting(identity::GROUP_MAPPINGS_SETTING)
            .await?
        {
            None => Ok(identity::GroupMappings::default()),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::Store(StoreError::Corrupt {
                    table: "settings",
                    reason: format!("group_mappings: {e}"),
                })
            }),
        }
    }

    pub(crate) fn admin_auth(&self) -> &AdminAuth {
        &self.inner.admin_auth
    }

    /// The environment variables admin input may name as `env.NAME`.
    pub fn env_allow(&self) -> &EnvAllowlist {
        &self.inner.env_allow
    }

    /// Logs a committed change and publishes the snapshot that includes it.
    pub(crate) async fn committed(
        &self,
        event: &model::AuditEvent,
        version: u64,
    ) -> Result<(), Error> {
        tracing::info!(
            action = %event.action,
            target = %event.target,
            actor = %event.actor,
            config_version = version,
            "admin change committed"
        );
        self.republish_if_behind(version).await.map(|_| ())
    }
}

/// Logs every stored `env.NAME` reference the allowlist refuses: data planes with the same
/// allowlist refuse them too, so the requests that need them fail until they are changed.
fn warn_refused_references(state: &model::ConfigState, env: &EnvAllowlist) {
    for p in &state.providers {
        for field in validate::refused_network_references(&p.network, env) {
            tracing::warn!(provider = %p.name, field, allowed = %env.describe(), "stored env reference is outside the env allowlist; data planes will refuse it");
        }
    }
    for k in &state.keys {
        for field in validate::refused_key_references(k, env) {
            tracing::warn!(provider = %k.provider, provider_key = %k.name, field, allowed = %env.describe(), "stored env reference is outside the env allowlist; data planes will refuse it");
        }
    }
}

fn unix_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
