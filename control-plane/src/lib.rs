//! Tollgate's control plane: it owns the configuration (providers, provider keys, virtual keys),
//! stores it in SQLite or PostgreSQL, serves the admin HTTP API (`/api/*`, OpenAPI at
//! `/openapi.json`), and publishes a complete, immutable [`Snapshot`] after every change. Data
//! planes consume only that snapshot; they never touch the database.
//!
//! # Modules
//! * [`crypto`]: AES-256-GCM sealing of provider secrets, the master key file, virtual-key values.
//! * [`model`]: the records the store keeps and their value types (sealed secrets, env refs).
//! * [`validate`]: input rules and [`validate::ValidationError`] (with the offending field).
//! * [`store`]: the [`Store`] trait and its SQLite and PostgreSQL backends (migrations in
//!   `migrations/{sqlite,postgres}`).
//! * [`snapshot`]: the pure function that turns loaded rows into a snapshot.
//! * `api` (private): axum handlers, the admin-auth middleware, JSON extractors and [`ApiError`],
//!   the single error type of the HTTP surface; [`openapi()`] describes it.
//!
//! # Invariants
//! * Secrets (provider credentials, virtual-key values, the admin token) are never logged and
//!   never returned by the API. Responses show `env.NAME` references as written and literal
//!   secrets as `"<redacted>"`.
//! * Literal provider secrets are stored sealed (AES-256-GCM, fresh random nonce per value, bound
//!   to their key id and field); `env.NAME` references are stored as references and passed to
//!   the data plane as `ValueRef{env}`, never resolved here.
//! * Virtual keys are stored as SHA-256 digests; the value is shown once, in the create response.
//! * Every mutation is one transaction that bumps `config_version` and writes an audit row; after
//!   it commits, the snapshot is rebuilt from the store and published on a `watch` channel. The
//!   published version only ever increases.
//! * Bad input gets a JSON error (`{"error": {"type", "message", "field"?}}`) with a 4xx status;
//!   request bodies reject unknown fields.
//! * Admin auth: a configured token is required on every `/api` request; without one, only
//!   loopback peers are served (optionally), and cross-origin browser requests and non-loopback
//!   `Host` names are refused so a local web page cannot drive the API.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tollgate_proto::config::v1::Snapshot;

mod api;
pub mod crypto;
pub mod model;
pub mod snapshot;
pub mod store;
pub mod validate;

pub use api::{ApiError, ErrorBody, ErrorDetail, ErrorType, openapi};
pub use snapshot::{SnapshotError, build_snapshot};
pub use store::{PostgresStore, SqliteStore, Store, StoreConfig, StoreError};

/// Everything [`ControlPlane::start`] needs.
#[derive(Clone)]
pub struct ControlPlaneConfig {
    pub store: StoreConfig,
    /// AES-256-GCM key sealing provider secrets at rest (see [`crypto::load_or_create_key_file`]).
    pub secret_key: [u8; 32],
    pub admin_auth: AdminAuth,
}

impl fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("store", &redact_store(&self.store))
            .field("secret_key", &"<redacted>")
            .field("admin_auth", &self.admin_auth)
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
    admin_auth: AdminAuth,
    snapshots: watch::Sender<Arc<Snapshot>>,
    /// Serialises rebuilds so a slow old build cannot overwrite a newer one.
    publish: Mutex<()>,
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
        Self::with_store(store, &cfg.secret_key, cfg.admin_auth).await
    }

    /// Like [`ControlPlane::start`] with an already connected store.
    pub async fn with_store(
        store: Arc<dyn Store>,
        secret_key: &[u8; 32],
        admin_auth: AdminAuth,
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
        let state = store.load_state().await?;
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
        let (tx, _rx) = watch::channel(Arc::new(first));
        Ok(ControlPlane {
            inner: Arc::new(Inner {
                store,
                secrets,
                admin_auth,
                snapshots: tx,
                publish: Mutex::new(()),
            }),
        })
    }

    /// The admin API: every `/api/*` route (behind admin auth) and `GET /openapi.json`.
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the loopback rule
    /// can see the peer address.
    pub fn admin_router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// The published snapshots; the current one is available at once.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshots.subscribe()
    }

    /// The store (for tools and tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Rebuilds the snapshot from the store and publishes it if it is newer than the current
    /// one. Returns the version now published.
    pub async fn republish(&self) -> Result<u64, Error> {
        let _guard = self.inner.publish.lock().await;
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

    pub(crate) fn admin_auth(&self) -> &AdminAuth {
        &self.inner.admin_auth
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
        self.republish().await.map(|_| ())
    }
}

fn unix_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
