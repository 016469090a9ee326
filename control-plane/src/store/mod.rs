//! Persistence: one [`Store`] trait, two backends ([`SqliteStore`], [`PostgresStore`]).
//!
//! Invariants every backend keeps:
//! * every mutation runs in ONE transaction that first bumps the single-row `config_version`
//!   counter (which also serialises writers), then changes rows, then writes an `audit_log` row
//!   carrying the new version and the changed record's redacted views before and after; the new
//!   version is returned only after commit;
//! * a standalone audit row ([`Store::append_audit`]) takes the same lock without bumping the
//!   version, so every audit row is chained in id order;
//! * uniqueness violations become [`StoreError::Conflict`], missing rows [`StoreError::NotFound`];
//! * the store never sees plaintext secrets: it stores [`SealedSecret`]s as given (the one
//!   exception: extra-header values that versions before migration 0003 stored in plaintext are
//!   read back as [`NetworkRecord::legacy_extra_headers`] until
//!   [`Store::seal_legacy_extra_headers`] seals them);
//! * SQL uses bind parameters only.
//!
//! Both backends share their SQL text (PostgreSQL and SQLite both accept `$N` placeholders,
//! `RETURNING` and `ON DELETE CASCADE`); the column types differ per migration set
//! (`migrations/sqlite`, `migrations/postgres`).
//!
//! Usage records (reported by data planes) are the exception: their SQL is per backend. In
//! PostgreSQL `usage_records` is append-only and partitioned by day (see
//! `migrations/postgres/0002_usage_records.sql`), written with one multi-row `UNNEST` insert per
//! chunk and `ON CONFLICT DO NOTHING`; in SQLite it is a plain table written with multi-row
//! `INSERT OR IGNORE`. Either way a batch is one transaction and storing the same record twice
//! keeps one row. The same transaction adds the rows it actually stored to the spend rollups
//! (`usage_rollup_hourly`, `usage_rollup_daily`, see [`rollup`]), so a resent batch counts once.
//!
//! Several control-plane replicas may share one PostgreSQL database: every mutation also runs
//! `pg_notify('tollgate_config', '<version>')` inside its transaction, and
//! [`Store::config_changes`] delivers those notifications (from every replica) to the caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use time::{Date, OffsetDateTime};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::crypto::CryptoError;
use crate::governance::KeyGovernance;
use crate::model::{
    AuditEvent, AuditRecord, BedrockKeyRecord, ConfigState, CustomerRecord, NetworkConfig,
    NetworkRecord, PriceOverrideRecord, ProviderKeyRecord, ProviderKind, ProviderRecord,
    SealedSecret, TeamRecord, ValueSource, VertexKeyRecord, VirtualKeyRecord,
};
use crate::validate::ValidationError;

pub(crate) mod cli_login;
mod governance;
pub(crate) mod identity;
pub mod jobs;
pub(crate) mod mcp;
mod postgres;
pub(crate) mod rollup;
pub(crate) mod scim;
mod sqlite;

pub(crate) use governance::sql as governance_sql;
pub(crate) use governance::{
    CustomerRow, PriceOverrideRow, TeamRow, check_key_ids, reference_conflict,
};

pub use cli_login::{CliLoginRecord, CliLoginStore, CliPoll};
pub use identity::{IdentityStore, PersonalKey, Provisioned};
pub use jobs::{Checkpoint, JobStore, Progress};
pub use mcp::McpStore;
pub use postgres::PostgresStore;
pub use scim::{ScimGroupRecord, ScimStore};
pub use sqlite::SqliteStore;
pub use tollgate_proto::usage::v1::UsageRecord;

/// Stored usage of some virtual keys in a time range ([`Store::usage_in`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeUsage {
    /// Usage records (requests that got past authentication).
    pub requests: u64,
    /// Tokens of every kind.
    pub tokens: u64,
    pub cost_nano_usd: u64,
    pub unpriced_requests: u64,
}

/// Stored usage of one virtual key ([`Store::usage_by_virtual_key`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    /// The summed cost of the priced rows, in nano-dollars.
    pub cost_nano_usd: u64,
    /// Rows without a cost (tokens used on a model without a price).
    pub unpriced_requests: u64,
}

/// The PostgreSQL channel on which every committed mutation announces its config version.
pub const CONFIG_CHANNEL: &str = "tollgate_config";

/// A config change committed by some process sharing the database (see [`Store::config_changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// A transaction committed this config version.
    Committed(u64),
    /// The listener (re)connected: changes committed while it was not listening were missed, so
    /// the receiver should reload the state unconditionally.
    Resync,
}

/// What [`Store::drop_usage_partitions_before`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagePurge {
    /// Daily partitions dropped whole (PostgreSQL), oldest first.
    pub dropped_partitions: Vec<String>,
    /// Rows deleted one by one: from the DEFAULT partition (PostgreSQL) or the table (SQLite).
    pub deleted_rows: u64,
    /// MCP tool calls deleted (`mcp_tool_calls`, kept as long as the usage).
    pub deleted_mcp_calls: u64,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row (or its parent) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness rule or a reference from another row forbids the change.
    #[error("{0}")]
    Conflict(String),
    /// The change is invalid given the current rows (e.g. a virtual key naming an unknown provider).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row the store cannot interpret (edited by hand, or written by a newer version).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// Sealing a value failed (see [`Store::seal_legacy_extra_headers`]).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Edits a record inside the update transaction; an error aborts the update.
pub type Apply<'a, T> = dyn Fn(&mut T) -> Result<(), ValidationError> + Send + Sync + 'a;

/// Seals the plaintext value of extra header `header` (2nd argument) of provider `provider`
/// (1st); the 3rd argument is the value.
pub type SealHeader<'a> =
    dyn Fn(&str, &str, &str) -> Result<SealedSecret, CryptoError> + Send + Sync + 'a;

/// The control plane's storage. All mutations return the config version they produced.
#[async_trait]
pub trait Store:
    IdentityStore + ScimStore + CliLoginStore + JobStore + McpStore + Send + Sync + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Reads everything a snapshot needs in one consistent read transaction.
    async fn load_state(&self) -> Result<ConfigState, StoreError>;
    async fn config_version(&self) -> Result<u64, StoreError>;

    async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError>;
    async fn get_provider(&self, name: &str) -> Result<Option<ProviderRecord>, StoreError>;
    /// Conflict if the name is taken.
    async fn create_provider(
        &self,
        provider: &ProviderRecord,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// Applies `apply` to the stored provider (only `kind` and `network` are written; `updated_at`
    /// is set by the store) and returns the result.
    async fn update_provider(
        &self,
        name: &str,
        apply: &Apply<'_, ProviderRecord>,
        audit: &AuditEvent,
    ) -> Result<(ProviderRecord, u64), StoreError>;
    /// Deletes the provider and its keys. Conflict while a virtual key names it.
    async fn delete_provider(&self, name: &str, audit: &AuditEvent) -> Result<u64, StoreError>;
    /// Seals, with `seal`, every extra-header value that a version before migration 0003 left in
    /// plaintext inside `network_config` ([`NetworkRecord::legacy_extra_headers`]), moving it to
    /// `extra_header_secrets` (where it replaces a value of the same name), in one transaction
    /// that holds the writers' lock. Changes no configuration: the config version, `updated_at`
    /// and the audit log are untouched. Returns how many values it sealed (0 once done; safe to
    /// run concurrently from several replicas).
    async fn seal_legacy_extra_headers(&self, seal: &SealHeader<'_>) -> Result<usize, StoreError>;

    /// Keys of one provider, or of all providers, ordered by provider then name.
    async fn list_keys(&self, provider: Option<&str>)
    -> Result<Vec<ProviderKeyRecord>, StoreError>;
    async fn get_key(
        &self,
        provider: &str,
        id: Uuid,
    ) -> Result<Option<ProviderKeyRecord>, StoreError>;
    /// NotFound if the provider does not exist; Conflict if the name is taken for this provider.
    async fn create_key(
        &self,
        key: &ProviderKeyRecord,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// Applies `apply` to the stored key (`id` and `provider` cannot change; `updated_at` is set
    /// by the store) and returns the result.
    async fn update_key(
        &self,
        provider: &str,
        id: Uuid,
        apply: &Apply<'_, ProviderKeyRecord>,
        audit: &AuditEvent,
    ) -> Result<(ProviderKeyRecord, u64), StoreError>;
    async fn delete_key(
        &self,
        provider: &str,
        id: Uuid,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;

    async fn list_virtual_keys(&self) -> Result<Vec<VirtualKeyRecord>, StoreError>;
    async fn get_virtual_key(&self, id: Uuid) -> Result<Option<VirtualKeyRecord>, StoreError>;
    /// Invalid if a listed provider does not exist; Conflict if the name is taken.
    async fn create_virtual_key(
        &self,
        vk: &VirtualKeyRecord,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// Applies `apply` (`id`, `key_sha256` and `value_prefix` cannot change).
    async fn update_virtual_key(
        &self,
        id: Uuid,
        apply: &Apply<'_, VirtualKeyRecord>,
        audit: &AuditEvent,
    ) -> Result<(VirtualKeyRecord, u64), StoreError>;
    async fn delete_virtual_key(&self, id: Uuid, audit: &AuditEvent) -> Result<u64, StoreError>;

    async fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError>;
    async fn get_team(&self, id: Uuid) -> Result<Option<TeamRecord>, StoreError>;
    /// Invalid (naming `customer_id`) if its customer does not exist; Conflict if the name is
    /// taken.
    async fn create_team(&self, team: &TeamRecord, audit: &AuditEvent) -> Result<u64, StoreError>;
    /// Applies `apply` (`id` and `created_at` cannot change).
    async fn update_team(
        &self,
        id: Uuid,
        apply: &Apply<'_, TeamRecord>,
        audit: &AuditEvent,
    ) -> Result<(TeamRecord, u64), StoreError>;
    /// Conflict while virtual keys belong to the team.
    async fn delete_team(&self, id: Uuid, audit: &AuditEvent) -> Result<u64, StoreError>;

    async fn list_customers(&self) -> Result<Vec<CustomerRecord>, StoreError>;
    async fn get_customer(&self, id: Uuid) -> Result<Option<CustomerRecord>, StoreError>;
    /// Conflict if the name is taken.
    async fn create_customer(
        &self,
        customer: &CustomerRecord,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    async fn update_customer(
        &self,
        id: Uuid,
        apply: &Apply<'_, CustomerRecord>,
        audit: &AuditEvent,
    ) -> Result<(CustomerRecord, u64), StoreError>;
    /// Conflict while teams or virtual keys belong to the customer.
    async fn delete_customer(&self, id: Uuid, audit: &AuditEvent) -> Result<u64, StoreError>;

    /// Pricing overrides, oldest first (the order they are matched in).
    async fn list_price_overrides(&self) -> Result<Vec<PriceOverrideRecord>, StoreError>;
    async fn create_price_override(
        &self,
        o: &PriceOverrideRecord,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// Replaces the entry of override `o.id` (NotFound if there is none); returns it as stored.
    async fn replace_price_override(
        &self,
        o: &PriceOverrideRecord,
        audit: &AuditEvent,
    ) -> Result<(PriceOverrideRecord, u64), StoreError>;
    async fn delete_price_override(&self, id: Uuid, audit: &AuditEvent) -> Result<u64, StoreError>;

    /// The newest `limit` audit rows, newest first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// One page of audit rows matching `query.filter`, in `query.order`, after the keyset bounds
    /// `before_id` / `after_id` (never an offset). Every filter is a bound parameter and uses an
    /// index (migration 0010): `actor`, `action`, `target` exact or prefix, `result`, and the
    /// half-open time range `[since, until)`.
    async fn query_audit(
        &self,
        query: &crate::audit::AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Writes one standalone audit row, chained like every other, and returns its id: an event
    /// that changes no configuration (a refused change, a failed admin authentication; logins,
    /// failed logins and SCIM calls). Its `config_version` is the current version, which it does
    /// not bump, and no config change is announced. It runs in its own small transaction that
    /// takes the same writers' lock as every mutation (the config-version row: PostgreSQL
    /// `SELECT ... FOR UPDATE`, SQLite `BEGIN IMMEDIATE`), so rows written concurrently with
    /// changes, from any replica, keep one valid chain.
    ///
    /// Build the event with [`AuditEvent::new`] (actor, action, target, source) and finish it
    /// with [`AuditEvent::success`] or [`AuditEvent::failure`]; it must not contain secrets.
    /// Do not call it inside another store transaction (it would wait for that transaction's
    /// lock).
    async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError>;
    /// The whole audit log in id order, with its hash chain ([`crate::audit_chain::verify`]).
    async fn audit_chain(&self) -> Result<Vec<crate::audit_chain::ChainRow>, StoreError>;

    /// Config versions committed by any process sharing this database, as they commit. PostgreSQL
    /// starts a task that `LISTEN`s on [`CONFIG_CHANNEL`] on a dedicated connection, reconnects
    /// with backoff when the connection drops and sends [`ConfigChange::Resync`] after every
    /// (re)connect; the task ends when the receiver is dropped. `None` when no other process can
    /// write (SQLite: one process owns the file). Must be called inside a Tokio runtime.
    fn config_changes(&self) -> Option<mpsc::Receiver<ConfigChange>>;

    /// Stores usage records in one transaction. Idempotent: a record whose request id (and, in
    /// PostgreSQL, start time) is already stored is skipped, also within `records`. Records of
    /// MCP tool calls (`mcp` set) go to the tool-call log (`mcp_tool_calls`, idempotent on the
    /// request id) instead: never to the usage table, the spend rollups or recorded bodies.
    /// Returns how many rows were new.
    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError>;

    /// Stored usage per virtual key id: rows, their summed cost and how many were unpriced. A
    /// full scan: for tools and tests, never the request path.
    async fn usage_by_virtual_key(&self) -> Result<BTreeMap<String, UsageTotals>, StoreError>;

    /// One page of request logs ([`crate::usage_log`]): usage records that started in
    /// `[query.since, query.until)` and match its filters, each with the team, customer and
    /// personal-key user it was billed to and its key's CURRENT name, newest first by `(started_at, request_id)`,
    /// after `query.after`, at most `query.limit` rows.
    async fn query_usage_logs(
        &self,
        query: &crate::usage_log::UsageLogQuery,
    ) -> Result<Vec<crate::usage_log::UsageLogRow>, StoreError>;

    /// One request's log (as [`Store::query_usage_logs`] shows it), or `None`.
    async fn get_usage_log(
        &self,
        request_id: &str,
    ) -> Result<Option<crate::usage_log::UsageLogRow>, StoreError>;

    /// The bodies recorded for one request (content logging: written with its usage record by
    /// [`Store::insert_usage`] when the record carries them), or `None`.
    async fn get_request_content(
        &self,
        request_id: &str,
    ) -> Result<Option<crate::usage_log::RequestContent>, StoreError>;

    /// Content retention: deletes the recorded bodies of requests that started before
    /// `before`. Returns how many were deleted.
    async fn drop_request_content_before(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Usage of `virtual_key_ids` that started in `[from, to)`. Reads the usage table by key
    /// and time: for the admin API, never the request path.
    async fn usage_in(
        &self,
        virtual_key_ids: &[String],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<RangeUsage, StoreError>;

    /// Makes sure the daily usage partitions of the `days` UTC days starting at `from` exist,
    /// moving rows that the DEFAULT partition holds for those days into them. Returns the names of
    /// the partitions it created. Safe to run concurrently from several replicas. SQLite: nothing
    /// to do.
    async fn create_usage_partitions(
        &self,
        from: Date,
        days: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Retention: removes usage that started before `date` (00:00 UTC). PostgreSQL drops every
    /// daily partition that lies wholly before it and deletes older rows from the DEFAULT
    /// partition; SQLite deletes the rows. Both delete the MCP tool calls that started before
    /// it.
    async fn drop_usage_partitions_before(&self, date: Date) -> Result<UsagePurge, StoreError>;

    /// A spend report ([`crate::spend`]) from the rollup tables: one row per bucket (hour and
    /// day intervals) and group, ordered by bucket, then cost (highest first), then the group
    /// values; at most `query.limit` rows. Names are the current ones.
    async fn query_spend(
        &self,
        query: &crate::spend::SpendQuery,
    ) -> Result<Vec<crate::spend::SpendRow>, StoreError>;

    /// Rollup retention: deletes the hourly and daily spend buckets that start before `date`
    /// (00:00 UTC). Returns how many rows it deleted.
    async fn drop_spend_rollups_before(&self, date: Date) -> Result<u64, StoreError>;
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file, created if missing (WAL journal, foreign keys on).
    Sqlite { path: std::path::PathBuf },
    /// A PostgreSQL connection URL.
    Postgres { url: String },
}

/// Connects to the configured backend and runs its migrations.
pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config {
        StoreConfig::Sqlite { path } => Arc::new(SqliteStore::open(path).await?),
        StoreConfig::Postgres { url } => Arc::new(PostgresStore::connect(url).await?),
    })
}

// ---------------------------------------------------------------------------------------------
// Row shapes shared by both backends.

/// Non-secret part of a Bedrock key, stored as JSON in `provider_keys.bedrock_config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BedrockPlain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<ValueSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_arn: Option<ValueSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arn: Option<String>,
}

/// Non-secret part of a Vertex AI key, stored as JSON in `provider_keys.vertex_config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct VertexPlain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    project_id: Option<ValueSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<ValueSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_uri: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    name: String,
    kind: String,
    /// The non-secret settings; `extra_headers` in it holds only legacy plaintext values.
    network_config: Json<NetworkConfig>,
    /// Header name -> [`SealedSecret`] column text.
    extra_header_secrets: Json<BTreeMap<String, String>>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// How a provider's network settings map to its two columns.
struct NetworkColumns {
    network_config: NetworkConfig,
    extra_header_secrets: BTreeMap<String, String>,
}

impl NetworkColumns {
    fn of(n: &NetworkRecord) -> Self {
        NetworkColumns {
            network_config: NetworkConfig {
                extra_headers: n.legacy_extra_headers.clone(),
                ..n.settings.clone()
            },
            extra_header_secrets: n
                .extra_headers
                .iter()
                .map(|(name, v)| (name.clone(), v.to_column()))
                .collect(),
        }
    }
}

impl TryFrom<ProviderRow> for ProviderRecord {
    type Error = StoreError;
    fn try_from(r: ProviderRow) -> Result<Self, StoreError> {
        let kind = ProviderKind::parse(&r.kind).ok_or_else(|| StoreError::Corrupt {
            table: "providers",
            reason: format!("unknown kind {:?} for provider {:?}", r.kind, r.name),
        })?;
        let mut settings = r.network_config.0;
        let legacy_extra_headers = std::mem::take(&mut settings.extra_headers);
        let mut extra_headers = BTreeMap::new();
        for (header, text) in r.extra_header_secrets.0 {
            let sealed = SealedSecret::from_column(&text).ok_or_else(|| StoreError::Corrupt {
                table: "providers",
                reason: format!(
                    "extra header {header:?} of provider {:?} is not env:/enc: text",
                    r.name
                ),
            })?;
            extra_headers.insert(header, sealed);
        }
        Ok(ProviderRecord {
            name: r.name,
            kind,
            network: NetworkRecord {
                settings,
                extra_headers,
                legacy_extra_headers,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    provider: String,
    name: String,
    description: Option<String>,
    models: Json<Vec<String>>,
    weight: f64,
    aliases: Json<BTreeMap<String, String>>,
    enabled: bool,
    value_secret: Option<String>,
    bedrock_config: Option<Json<BedrockPlain>>,
    access_key_secret: Option<String>,
    secret_key_secret: Option<String>,
    session_token_secret: Option<String>,
    external_id_secret: Option<String>,
    vertex_config: Option<Json<VertexPlain>>,
    auth_credentials_secret: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<KeyRow> for ProviderKeyRecord {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        let id = r.id;
        let secret = |col: &'static str, text: Option<String>| -> Result<_, StoreError> {
            text.map(|t| {
                SealedSecret::from_column(&t).ok_or_else(|| StoreError::Corrupt {
                    table: "provider_keys",
                    reason: format!("column {col} of key {id} is not env:/enc: text"),
                })
            })
            .transpose()
        };
        let value = secret("value_secret", r.value_secret)?;
        let access_key = secret("access_key_secret", r.access_key_secret)?;
        let secret_key = secret("secret_key_secret", r.secret_key_secret)?;
        let session_token = secret("session_token_secret", r.session_token_secret)?;
        let external_id = secret("external_id_secret", r.external_id_secret)?;
        let bedrock = match r.bedrock_config {
            Some(Json(plain)) => Some(BedrockKeyRecord {
                access_key,
                secret_key,
                session_token,
                external_id,
                region: plain.region,
                role_arn: plain.role_arn,
                session_name: plain.session_name,
                arn: plain.arn,
            }),
            None if access_key.is_some()
                || secret_key.is_some()
                || session_token.is_some()
                || external_id.is_some() =>
            {
                return Err(StoreError::Corrupt {
                    table: "provider_keys",
                    reason: format!("key {id} has AWS secrets but no bedrock_config"),
                });
            }
            None => None,
        };
        let auth_credentials = secret("auth_credentials_secret", r.auth_credentials_secret)?;
        let vertex = match r.vertex_config {
            Some(Json(plain)) => Some(VertexKeyRecord {
                project_id: plain.project_id,
                region: plain.region,
                auth_credentials,
                token_uri: plain.token_uri,
            }),
            None if auth_credentials.is_some() => {
                return Err(StoreError::Corrupt {
                    table: "provider_keys",
                    reason: format!("key {id} has Vertex AI credentials but no vertex_config"),
                });
            }
            None => None,
        };
        Ok(ProviderKeyRecord {
            id,
            provider: r.provider,
            name: r.name,
            description: r.description,
            models: r.models.0,
            weight: r.weight,
            aliases: r.aliases.0,
            enabled: r.enabled,
            value,
            bedrock,
            vertex,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// How a key's sealed secrets and Bedrock and Vertex AI settings map to columns.
struct KeyColumns {
    bedrock_config: Option<Json<BedrockPlain>>,
    vertex_config: Option<Json<VertexPlain>>,
    auth_credentials_secret: Option<String>,
    value_secret: Option<String>,
    access_key_secret: Option<String>,
    secret_key_secret: Option<String>,
    session_token_secret: Option<String>,
    external_id_secret: Option<String>,
}

impl KeyColumns {
    fn of(k: &ProviderKeyRecord) -> Self {
        let col = |s: &Option<SealedSecret>| s.as_ref().map(SealedSecret::to_column);
        let b = k.bedrock.as_ref();
        KeyColumns {
            bedrock_config: b.map(|b| {
                Json(BedrockPlain {
                    region: b.region.clone(),
                    role_arn: b.role_arn.clone(),
                    session_name: b.session_name.clone(),
                    arn: b.arn.clone(),
                })
            }),
            vertex_config: k.vertex.as_ref().map(|v| {
                Json(VertexPlain {
                    project_id: v.project_id.clone(),
                    region: v.region.clone(),
                    token_uri: v.token_uri.clone(),
                })
            }),
            auth_credentials_secret: k.vertex.as_ref().and_then(|v| col(&v.auth_credentials)),
            value_secret: col(&k.value),
            access_key_secret: b.and_then(|b| col(&b.access_key)),
            secret_key_secret: b.and_then(|b| col(&b.secret_key)),
            session_token_secret: b.and_then(|b| col(&b.session_token)),
            external_id_secret: b.and_then(|b| col(&b.external_id)),
        }
    }
}

#[derive(sqlx::FromRow)]
struct VirtualKeyRow {
    id: Uuid,
    name: String,
    description: Option<String>,
    key_sha256: Vec<u8>,
    value_prefix: String,
    providers: Json<Vec<String>>,
    active: bool,
    team_id: Option<Uuid>,
    customer_id: Option<Uuid>,
    user_id: Option<Uuid>,
    governance: Json<KeyGovernance>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<VirtualKeyRow> for VirtualKeyRecord {
    type Error = StoreError;
    fn try_from(r: VirtualKeyRow) -> Result<Self, StoreError> {
        let key_sha256 =
            <[u8; 32]>::try_from(r.key_sha256.as_slice()).map_err(|_| StoreError::Corrupt {
                table: "virtual_keys",
                reason: format!("key_sha256 of {} is not 32 bytes", r.id),
            })?;
        Ok(VirtualKeyRecord {
            id: r.id,
            name: r.name,
            description: r.description,
            key_sha256,
            value_prefix: r.value_prefix,
            providers: r.providers.0,
            active: r.active,
            team_id: r.team_id,
            customer_id: r.customer_id,
            user_id: r.user_id,
            governance: r.governance.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditChainRow {
    id: i64,
    at: OffsetDateTime,
    actor: String,
    action: String,
    target: String,
    config_version: i64,
    details: Json<serde_json::Value>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl From<AuditChainRow> for crate::audit_chain::ChainRow {
    fn from(r: AuditChainRow) -> Self {
        crate::audit_chain::ChainRow {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            config_version: r.config_version,
            details: r.details.0,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: OffsetDateTime,
    actor: String,
    action: String,
    target: String,
    config_version: i64,
    details: Json<serde_json::Value>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            config_version: u64::try_from(r.config_version).unwrap_or(0),
            details: r.details.0,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

fn version_from_db(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "config_version",
        reason: format!("negative version {v}"),
    })
}

/// The start time of a usage record. Values outside years 1-9999 are clamped (deterministically,
/// so a resent record maps to the same row).
fn usage_started_at(unix_ms: i64) -> OffsetDateTime {
    const MIN_MS: i64 = -62_135_596_800_000; // 0001-01-01T00:00:00Z
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = unix_ms.clamp(MIN_MS, MAX_MS);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Token and latency counters are unsigned in the proto; the columns are signed 64-bit.
fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Rows of recorded bodies deleted per statement by the content retention.
pub(crate) const CONTENT_PURGE_SLICE: i64 = 1_000;

fn count_from_db(table: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("negative count {n}"),
    })
}

/// Maps a unique violation to [`StoreError::Conflict`] with `message`, anything else to Database.
fn unique_to_conflict(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(e),
    }
}

/// Checks that every provider in `wanted` exists in `existing`.
fn check_providers_exist(wanted: &[String], existing: &[String]) -> Result<(), StoreError> {
    for (i, p) in wanted.iter().enumerate() {
        if !existing.contains(p) {
            return Err(StoreError::Invalid(ValidationError::new(
                format!("providers[{i}]"),
                format!("unknown provider {p:?}; create it first with POST /api/providers"),
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SQL shared by both backends.

mod sql {
    pub const BUMP_VERSION: &str =
        "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version";
    pub const SELECT_VERSION: &str = "SELECT version FROM config_version WHERE id = 1";
    pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, action, target, config_version, details) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
    /// The hash of the row before `$1` (NULL before the chain began, no row for the first).
    pub const PREV_AUDIT_HASH: &str =
        "SELECT hash FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT 1";
    pub const CHAIN_AUDIT: &str = "UPDATE audit_log SET prev_hash = $2, hash = $3 WHERE id = $1";
    pub const AUDIT_CHAIN: &str = "SELECT id, at, actor, action, target, config_version, details, \
         prev_hash, hash FROM audit_log ORDER BY id";
    /// The start of every audit query ([`Store::query_audit`](super::Store::query_audit) adds
    /// the bound filters).
    pub const SELECT_AUDIT: &str = "SELECT id, at, actor, action, target, config_version, details, \
         prev_hash, hash FROM audit_log";

    pub const LIST_PROVIDERS: &str = "SELECT name, kind, network_config, extra_header_secrets, \
         created_at, updated_at FROM providers ORDER BY name";
    pub const GET_PROVIDER: &str = "SELECT name, kind, network_config, extra_header_secrets, \
         created_at, updated_at FROM providers WHERE name = $1";
    pub const PROVIDER_NAMES: &str = "SELECT name FROM providers ORDER BY name";
    pub const INSERT_PROVIDER: &str = "INSERT INTO providers (name, kind, network_config, \
         extra_header_secrets, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)";
    pub const UPDATE_PROVIDER: &str = "UPDATE providers SET kind = $2, network_config = $3, \
         extra_header_secrets = $4, updated_at = $5 WHERE name = $1";
    /// Rewrites the network columns without touching `updated_at` (sealing legacy values).
    pub const RESEAL_PROVIDER: &str =
        "UPDATE providers SET network_config = $2, extra_header_secrets = $3 WHERE name = $1";
    /// Takes the writers' lock (the version row) without bumping the version; returns the
    /// current one.
    pub const LOCK_WRITERS: &str =
        "UPDATE config_version SET version = version WHERE id = 1 RETURNING version";
    pub const DELETE_PROVIDER: &str = "DELETE FROM providers WHERE name = $1";

    pub const LIST_ALL_KEYS: &str = "SELECT id, provider, name, description, models, weight, aliases, enabled, \
         value_secret, bedrock_config, access_key_secret, secret_key_secret, \
         session_token_secret, external_id_secret, vertex_config, auth_credentials_secret, \
         created_at, updated_at FROM provider_keys ORDER BY provider, name";
    pub const LIST_PROVIDER_KEYS: &str = "SELECT id, provider, name, description, models, weight, aliases, enabled, \
         value_secret, bedrock_config, access_key_secret, secret_key_secret, \
         session_token_secret, external_id_secret, vertex_config, auth_credentials_secret, \
         created_at, updated_at FROM provider_keys WHERE provider = $1 ORDER BY name";
    pub const GET_KEY: &str = "SELECT id, provider, name, description, models, weight, aliases, enabled, \
         value_secret, bedrock_config, access_key_secret, secret_key_secret, \
         session_token_secret, external_id_secret, vertex_config, auth_credentials_secret, \
         created_at, updated_at FROM provider_keys WHERE provider = $1 AND id = $2";
    pub const INSERT_KEY: &str = "INSERT INTO provider_keys (id, provider, name, description, models, weight, aliases, \
         enabled, value_secret, bedrock_config, access_key_secret, secret_key_secret, \
         session_token_secret, external_id_secret, created_at, updated_at, vertex_config, \
         auth_credentials_secret) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
    pub const UPDATE_KEY: &str = "UPDATE provider_keys SET name = $3, description = $4, models = $5, weight = $6, \
         aliases = $7, enabled = $8, value_secret = $9, bedrock_config = $10, \
         access_key_secret = $11, secret_key_secret = $12, session_token_secret = $13, \
         external_id_secret = $14, updated_at = $15, vertex_config = $16, \
         auth_credentials_secret = $17 WHERE provider = $1 AND id = $2";
    pub const DELETE_KEY: &str = "DELETE FROM provider_keys WHERE provider = $1 AND id = $2";

    pub const LIST_VKS: &str = "SELECT id, name, description, key_sha256, value_prefix, providers, \
         active, team_id, customer_id, user_id, governance, created_at, updated_at FROM virtual_keys ORDER BY name";
    pub const GET_VK: &str = "SELECT id, name, description, key_sha256, value_prefix, providers, \
         active, team_id, customer_id, user_id, governance, created_at, updated_at FROM virtual_keys WHERE id = $1";
    pub const VK_PROVIDERS: &str = "SELECT name, providers FROM virtual_keys ORDER BY name";
    pub const INSERT_VK: &str = "INSERT INTO virtual_keys (id, name, description, key_sha256, value_prefix, providers, \
         active, team_id, customer_id, governance, created_at, updated_at, user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    pub const UPDATE_VK: &str = "UPDATE virtual_keys SET name = $2, description = $3, providers = $4, \
         active = $5, team_id = $6, customer_id = $7, governance = $8, updated_at = $9 WHERE id = $1";
    pub const DELETE_VK: &str = "DELETE FROM virtual_keys WHERE id = $1";

    pub const USAGE_COLUMNS: &str = "request_id, virtual_key_id, provider, model_requested, \
         model_resolved, provider_key_id, input_tokens, output_tokens, cache_read_input_tokens, \
         cache_write_input_tokens, latency_ms, time_to_first_token_ms, status, error_class, \
         started_at, stream, cache_write_1h_input_tokens, cost_nano_usd, fallback_index, attempts, \
         team_id, customer_id, user_id";
    /// Requests (refusals by limits not counted: keep the list in step with
    /// `tollgate_proto::usage::refusal::BY_LIMITS`, which a test checks), tokens, cost and
    /// unpriced requests of one key in a time range.
    pub const USAGE_IN_RANGE: &str = "SELECT CAST(COALESCE(SUM(CASE WHEN error_class IN \
         ('budget_exhausted', 'rate_limited', 'concurrency_limited', 'unpriced_model', \
         'allowance_moving') THEN 0 ELSE 1 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(input_tokens + output_tokens + cache_read_input_tokens \
         + cache_write_input_tokens), 0) AS BIGINT), \
         CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT), COUNT(*) - COUNT(cost_nano_usd) \
         FROM usage_records WHERE virtual_key_id = $1 AND started_at >= $2 AND started_at < $3";
    /// The start of every request-log query ([`Store::query_usage_logs`](super::Store::query_usage_logs)
    /// adds the bound filters): each record with its key's current name and the name of the
    /// user it was billed to. `{VK_ID}`
    /// is the backend's expression for `vk.id` as hyphenated text (the usage column's form).
    pub const SELECT_USAGE_LOGS: &str = "SELECT u.request_id, u.virtual_key_id, u.provider, \
         u.model_requested, u.model_resolved, u.provider_key_id, u.input_tokens, u.output_tokens, \
         u.cache_read_input_tokens, u.cache_write_input_tokens, u.cache_write_1h_input_tokens, \
         u.latency_ms, u.time_to_first_token_ms, u.status, u.error_class, u.started_at, u.stream, \
         u.cost_nano_usd, u.fallback_index, u.attempts, vk.name AS key_name, u.team_id, \
         u.customer_id, u.user_id, us.user_name \
         FROM usage_records u LEFT JOIN virtual_keys vk ON {VK_ID} = u.virtual_key_id \
         LEFT JOIN users us ON us.id = u.user_id";
    /// A request's recorded bodies (content logging), once: a resent record writes nothing.
    pub const INSERT_REQUEST_CONTENT: &str = "INSERT INTO request_content (request_id, started_at, \
         request, request_bytes, response, response_bytes) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (request_id) DO NOTHING";
    pub const GET_REQUEST_CONTENT: &str = "SELECT request, request_bytes, response, response_bytes \
         FROM request_content WHERE request_id = $1";
    /// One slice of the content retention (`$2` rows at most).
    pub const DELETE_OLD_REQUEST_CONTENT: &str = "DELETE FROM request_content WHERE request_id IN \
         (SELECT request_id FROM request_content WHERE started_at < $1 LIMIT $2)";
    pub const USAGE_TOTALS: &str = "SELECT virtual_key_id, COUNT(*), \
         CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT), COUNT(*) - COUNT(cost_nano_usd) \
         FROM usage_records GROUP BY virtual_key_id ORDER BY virtual_key_id";
}

/// A usage record's attempt trail as its `attempts` column holds it: a JSON array, `None` when
/// the first attempt served.
/// An owner id of a usage record (`team_id`, `customer_id`, `user_id`) as stored: `None` when
/// the data plane sent none (or, from a data plane that is not ours, something that is no id).
pub(crate) fn owner_id(id: &str) -> Option<Uuid> {
    if id.is_empty() {
        return None;
    }
    Uuid::parse_str(id).ok()
}

pub(crate) fn attempts_json(attempts: &[tollgate_proto::usage::v1::Attempt]) -> Option<String> {
    if attempts.is_empty() {
        return None;
    }
    let list: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "provider": a.provider,
                "model": a.model,
                "provider_key_id": a.provider_key_id,
                "class": a.class,
                "status": a.status,
                "latency_ms": a.latency_ms,
            })
        })
        .collect();
    Some(serde_json::Value::Array(list).to_string())
}

/// Implements [`Store`] for a backend struct that has `async fn begin_read(&self)` and
/// `async fn begin_write(&self)` returning `sqlx::Transaction<'static, $db>`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::sql;
        use $crate::store::governance_sql as gsql;
        use $crate::store::{check_key_ids, reference_conflict, CustomerRow, PriceOverrideRow, TeamRow};
        use $crate::model::{CustomerRecord, PriceOverrideRecord, TeamRecord};
        use $crate::validate::ValidationError;
        use $crate::store::{
            check_providers_exist, count_from_db, unique_to_conflict, version_from_db, Apply,
            AuditChainRow, AuditRow, ConfigChange, KeyColumns, KeyRow, NetworkColumns, ProviderRow, Store, StoreError,
            UsagePurge, UsageRecord, VirtualKeyRow,
        };
        use $crate::model::{
            AuditEvent, AuditRecord, ConfigState, ProviderKeyRecord, ProviderRecord,
            VirtualKeyRecord,
        };

        type Conn = <$db as sqlx::Database>::Connection;

        /// Takes the writers' lock (the version row every mutation bumps first) for a write that
        /// changes nothing data planes enforce; returns the current version.
        async fn lock_writers(conn: &mut Conn) -> Result<u64, StoreError> {
            let v: i64 = sqlx::query_scalar(sql::LOCK_WRITERS)
                .fetch_one(&mut *conn)
                .await?;
            version_from_db(v)
        }

        async fn bump(conn: &mut Conn) -> Result<u64, StoreError> {
            let v: i64 = sqlx::query_scalar(sql::BUMP_VERSION)
                .fetch_one(&mut *conn)
                .await?;
            version_from_db(v)
        }

        /// Writes the audit row of a change, chained to the row before it
        /// ([`crate::audit_chain`]). Every writer holds the config-version row (bumped first),
        /// so rows are chained in id order.
        async fn audit(conn: &mut Conn, event: &AuditEvent, version: u64) -> Result<(), StoreError> {
            write_audit_row(&mut *conn, event, version).await?;
            // Backend hook (PostgreSQL: NOTIFY other replicas, delivered at commit).
            notify_committed(&mut *conn, version).await
        }

        /// [`audit`] for a change of one record: `before` and `after` are its
        /// [`AuditView`](crate::audit::AuditView)s (`None` for a create and a delete), added to
        /// the event's details with `changed` and `result: "success"`
        /// ([`crate::audit::change_event`]).
        async fn audit_change<T: $crate::audit::AuditView>(
            conn: &mut Conn,
            event: &AuditEvent,
            version: u64,
            before: Option<&T>,
            after: Option<&T>,
        ) -> Result<(), StoreError> {
            audit(conn, &$crate::audit::change_event(event, before, after), version).await
        }

        /// Inserts one audit row and chains it; the caller holds the writers' lock (the
        /// config-version row) in its transaction. Returns the row's id.
        async fn write_audit_row(conn: &mut Conn, event: &AuditEvent, version: u64) -> Result<i64, StoreError> {
            let at = $crate::audit_chain::truncate_to_micros($crate::model::now());
            let db_version = i64::try_from(version).unwrap_or(i64::MAX);
            let id: i64 = sqlx::query_scalar(sql::INSERT_AUDIT)
                .bind(at)
                .bind(&event.actor)
                .bind(&event.action)
                .bind(&event.target)
                .bind(db_version)
                .bind(sqlx::types::Json(&event.details))
                .fetch_one(&mut *conn)
                .await?;
            let prev: Option<Option<String>> = sqlx::query_scalar(sql::PREV_AUDIT_HASH)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            let prev = prev.flatten().unwrap_or_default();
            let hash = $crate::audit_chain::row_hash(
                &prev, id, at, &event.actor, &event.action, &event.target, db_version, &event.details,
            );
            sqlx::query(sql::CHAIN_AUDIT)
                .bind(id)
                .bind(&prev)
                .bind(&hash)
                .execute(&mut *conn)
                .await?;
            Ok(id)
        }

        /// `AND column = $x` or, for a prefix, `AND column >= $p AND column < $end`
        /// ([`crate::audit::prefix_end`]), compared in code-point order (`TEXT_ORDER` is the
        /// backend's collation clause) so the column's index serves it.
        fn push_text_match(
            qb: &mut sqlx::QueryBuilder<$db>,
            column: &'static str,
            m: &$crate::audit::TextMatch,
        ) {
            match m {
                $crate::audit::TextMatch::Exact(text) => {
                    qb.push(" AND ").push(column).push(TEXT_ORDER).push(" = ").push_bind(text.clone());
                }
                $crate::audit::TextMatch::Prefix(prefix) => {
                    if prefix.is_empty() {
                        return;
                    }
                    qb.push(" AND ").push(column).push(TEXT_ORDER).push(" >= ").push_bind(prefix.clone());
                    if let Some(end) = $crate::audit::prefix_end(prefix) {
                        qb.push(" AND ").push(column).push(TEXT_ORDER).push(" < ").push_bind(end);
                    }
                }
            }
        }

        /// The caller's scope and the owner filters (virtual key, team, customer, user) of a
        /// usage query, on the columns `usage_records` and the rollups share (`prefix`: the
        /// table's alias and a dot, or nothing): one rule for request logs and spend.
        fn push_owner_filters(
            qb: &mut sqlx::QueryBuilder<$db>,
            prefix: &str,
            scope: $crate::usage_log::LogScope,
            [key, team, customer, user]: [Option<uuid::Uuid>; 4],
        ) {
            use $crate::usage_log::LogScope;
            match scope {
                LogScope::All => {}
                LogScope::Team(Some(team)) => {
                    qb.push(format!(" AND {prefix}team_id = ")).push_bind(team);
                }
                LogScope::Key(Some(key)) => {
                    qb.push(format!(" AND {prefix}virtual_key_id = "))
                        .push_bind(key.to_string());
                }
                LogScope::Team(None) | LogScope::Key(None) => {
                    qb.push(" AND 1 = 0");
                }
            }
            if let Some(id) = key {
                qb.push(format!(" AND {prefix}virtual_key_id = ")).push_bind(id.to_string());
            }
            for (column, id) in [("team_id", team), ("customer_id", customer), ("user_id", user)] {
                if let Some(id) = id {
                    qb.push(format!(" AND {prefix}{column} = ")).push_bind(id);
                }
            }
        }

        /// Inserts a virtual-key row (409 on a taken name or value).
        async fn insert_vk(conn: &mut Conn, vk: &VirtualKeyRecord) -> Result<(), StoreError> {
            sqlx::query(sql::INSERT_VK)
                .bind(vk.id)
                .bind(&vk.name)
                .bind(&vk.description)
                .bind(&vk.key_sha256[..])
                .bind(&vk.value_prefix)
                .bind(sqlx::types::Json(&vk.providers))
                .bind(vk.active)
                .bind(vk.team_id)
                .bind(vk.customer_id)
                .bind(sqlx::types::Json(&vk.governance))
                .bind(vk.created_at)
                .bind(vk.updated_at)
                .bind(vk.user_id)
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    let msg = vk_conflict(&e, &vk.name);
                    unique_to_conflict(e, || msg)
                })?;
            Ok(())
        }

        /// Writes a virtual key's settings (not its value, owner or creation time).
        async fn update_vk(conn: &mut Conn, vk: &VirtualKeyRecord) -> Result<(), StoreError> {
            sqlx::query(sql::UPDATE_VK)
                .bind(vk.id)
                .bind(&vk.name)
                .bind(&vk.description)
                .bind(sqlx::types::Json(&vk.providers))
                .bind(vk.active)
                .bind(vk.team_id)
                .bind(vk.customer_id)
                .bind(sqlx::types::Json(&vk.governance))
                .bind(vk.updated_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    let msg = vk_conflict(&e, &vk.name);
                    unique_to_conflict(e, || msg)
                })?;
            Ok(())
        }

        async fn provider_names(conn: &mut Conn) -> Result<Vec<String>, StoreError> {
            Ok(sqlx::query_scalar(sql::PROVIDER_NAMES)
                .fetch_all(&mut *conn)
                .await?)
        }

        async fn fetch_provider(conn: &mut Conn, name: &str) -> Result<Option<ProviderRecord>, StoreError> {
            sqlx::query_as::<_, ProviderRow>(sql::GET_PROVIDER)
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?
                .map(ProviderRecord::try_from)
                .transpose()
        }

        async fn fetch_key(
            conn: &mut Conn,
            provider: &str,
            id: uuid::Uuid,
        ) -> Result<Option<ProviderKeyRecord>, StoreError> {
            sqlx::query_as::<_, KeyRow>(sql::GET_KEY)
                .bind(provider)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .map(ProviderKeyRecord::try_from)
                .transpose()
        }

        async fn fetch_vk(conn: &mut Conn, id: uuid::Uuid) -> Result<Option<VirtualKeyRecord>, StoreError> {
            sqlx::query_as::<_, VirtualKeyRow>(sql::GET_VK)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .map(VirtualKeyRecord::try_from)
                .transpose()
        }

        async fn all_providers(conn: &mut Conn) -> Result<Vec<ProviderRecord>, StoreError> {
            sqlx::query_as::<_, ProviderRow>(sql::LIST_PROVIDERS)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(ProviderRecord::try_from)
                .collect()
        }

        async fn keys(conn: &mut Conn, provider: Option<&str>) -> Result<Vec<ProviderKeyRecord>, StoreError> {
            let rows = match provider {
                Some(p) => {
                    sqlx::query_as::<_, KeyRow>(sql::LIST_PROVIDER_KEYS)
                        .bind(p)
                        .fetch_all(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query_as::<_, KeyRow>(sql::LIST_ALL_KEYS)
                        .fetch_all(&mut *conn)
                        .await?
                }
            };
            rows.into_iter().map(ProviderKeyRecord::try_from).collect()
        }

        async fn vks(conn: &mut Conn) -> Result<Vec<VirtualKeyRecord>, StoreError> {
            sqlx::query_as::<_, VirtualKeyRow>(sql::LIST_VKS)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(VirtualKeyRecord::try_from)
                .collect()
        }

        async fn fetch_team(conn: &mut Conn, id: uuid::Uuid) -> Result<Option<TeamRecord>, StoreError> {
            Ok(sqlx::query_as::<_, TeamRow>(gsql::GET_TEAM)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .map(TeamRecord::from))
        }

        async fn fetch_customer(conn: &mut Conn, id: uuid::Uuid) -> Result<Option<CustomerRecord>, StoreError> {
            Ok(sqlx::query_as::<_, CustomerRow>(gsql::GET_CUSTOMER)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .map(CustomerRecord::from))
        }

        async fn all_teams(conn: &mut Conn) -> Result<Vec<TeamRecord>, StoreError> {
            Ok(sqlx::query_as::<_, TeamRow>(gsql::LIST_TEAMS)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(TeamRecord::from)
                .collect())
        }

        async fn all_price_overrides(conn: &mut Conn) -> Result<Vec<PriceOverrideRecord>, StoreError> {
            Ok(sqlx::query_as::<_, PriceOverrideRow>(gsql::LIST_PRICE_OVERRIDES)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(PriceOverrideRecord::from)
                .collect())
        }

        async fn fetch_price_override(
            conn: &mut Conn,
            id: uuid::Uuid,
        ) -> Result<Option<PriceOverrideRecord>, StoreError> {
            Ok(all_price_overrides(&mut *conn).await?.into_iter().find(|o| o.id == id))
        }

        async fn all_customers(conn: &mut Conn) -> Result<Vec<CustomerRecord>, StoreError> {
            Ok(sqlx::query_as::<_, CustomerRow>(gsql::LIST_CUSTOMERS)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(CustomerRecord::from)
                .collect())
        }

        /// A team's customer must exist (400 naming `customer_id`).
        async fn check_team_references(conn: &mut Conn, team: &TeamRecord) -> Result<(), StoreError> {
            if let Some(customer) = team.customer_id
                && fetch_customer(&mut *conn, customer).await?.is_none()
            {
                return Err(ValidationError::new("customer_id", format!("no customer {customer}")).into());
            }
            Ok(())
        }

        /// Names of the rows that belong to a team or customer (`sql` selects them), for the
        /// conflict message of a delete.
        async fn members(conn: &mut Conn, sql: &'static str, id: uuid::Uuid) -> Result<Vec<String>, StoreError> {
            Ok(sqlx::query_scalar(sql).bind(id).fetch_all(&mut *conn).await?)
        }

        /// A virtual key's references, checked in the transaction that writes it: its providers
        /// (named by their provider config when it has those), the provider keys its configs
        /// name (they must belong to that provider), its team or customer.
        async fn check_vk_references(conn: &mut Conn, vk: &VirtualKeyRecord) -> Result<(), StoreError> {
            let providers = provider_names(&mut *conn).await?;
            let configs = &vk.governance.provider_configs;
            for (i, c) in configs.iter().enumerate() {
                if !providers.contains(&c.provider) {
                    return Err(StoreError::Invalid(ValidationError::new(
                        format!("provider_configs[{i}].provider"),
                        format!("unknown provider {:?}; create it first with POST /api/providers", c.provider),
                    )));
                }
                if c.key_ids.is_empty() {
                    continue;
                }
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(gsql::KEY_IDS_OF_PROVIDER)
                    .bind(&c.provider)
                    .fetch_all(&mut *conn)
                    .await?;
                check_key_ids(i, c, &ids)?;
            }
            check_providers_exist(&vk.providers, &providers)?;
            if let Some(team) = vk.team_id
                && fetch_team(&mut *conn, team).await?.is_none()
            {
                return Err(ValidationError::new("team_id", format!("no team {team}")).into());
            }
            if let Some(customer) = vk.customer_id
                && fetch_customer(&mut *conn, customer).await?.is_none()
            {
                return Err(ValidationError::new("customer_id", format!("no customer {customer}")).into());
            }
            Ok(())
        }

        fn key_conflict(provider: &str, name: &str) -> String {
            format!("provider {provider:?} already has a key named {name:?}")
        }

        fn vk_conflict(e: &sqlx::Error, name: &str) -> String {
            let on_name = match e {
                sqlx::Error::Database(db) => db
                    .constraint()
                    .map(|c| c.contains("name"))
                    .unwrap_or_else(|| db.message().contains("virtual_keys.name")),
                _ => true,
            };
            if on_name {
                format!("a virtual key named {name:?} already exists")
            } else {
                "a virtual key with this value already exists".to_owned()
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn load_state(&self) -> Result<ConfigState, StoreError> {
                let mut tx = self.begin_read().await?;
                let version: i64 = sqlx::query_scalar(sql::SELECT_VERSION)
                    .fetch_one(&mut *tx)
                    .await?;
                let providers = all_providers(&mut tx).await?;
                let keys = keys(&mut tx, None).await?;
                let virtual_keys = vks(&mut tx).await?;
                let teams = all_teams(&mut tx).await?;
                let customers = all_customers(&mut tx).await?;
                let price_overrides = all_price_overrides(&mut tx).await?;
                let mcp_servers = all_mcp_servers(&mut tx).await?;
                tx.commit().await?;
                Ok(ConfigState {
                    version: version_from_db(version)?,
                    providers,
                    keys,
                    virtual_keys,
                    teams,
                    customers,
                    price_overrides,
                    mcp_servers,
                })
            }

            async fn config_version(&self) -> Result<u64, StoreError> {
                let v: i64 = sqlx::query_scalar(sql::SELECT_VERSION)
                    .fetch_one(&self.pool)
                    .await?;
                version_from_db(v)
            }

            async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                all_providers(&mut conn).await
            }

            async fn get_provider(&self, name: &str) -> Result<Option<ProviderRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_provider(&mut conn, name).await
            }

            async fn create_provider(
                &self,
                p: &ProviderRecord,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let n = NetworkColumns::of(&p.network);
                sqlx::query(sql::INSERT_PROVIDER)
                    .bind(&p.name)
                    .bind(p.kind.as_str())
                    .bind(sqlx::types::Json(&n.network_config))
                    .bind(sqlx::types::Json(&n.extra_header_secrets))
                    .bind(p.created_at)
                    .bind(p.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        unique_to_conflict(e, || format!("a provider named {:?} already exists", p.name))
                    })?;
                audit_change(&mut tx, event, version, None, Some(&p)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_provider(
                &self,
                name: &str,
                apply: &Apply<'_, ProviderRecord>,
                event: &AuditEvent,
            ) -> Result<(ProviderRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let mut p = fetch_provider(&mut tx, name)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("provider {name:?} not found")))?;
                let before = p.clone();
                let created_at = p.created_at;
                apply(&mut p)?;
                p.name = name.to_owned();
                p.created_at = created_at;
                p.updated_at = $crate::model::now();
                let n = NetworkColumns::of(&p.network);
                sqlx::query(sql::UPDATE_PROVIDER)
                    .bind(name)
                    .bind(p.kind.as_str())
                    .bind(sqlx::types::Json(&n.network_config))
                    .bind(sqlx::types::Json(&n.extra_header_secrets))
                    .bind(p.updated_at)
                    .execute(&mut *tx)
                    .await?;
                audit_change(&mut tx, event, version, Some(&before), Some(&p)).await?;
                tx.commit().await?;
                Ok((p, version))
            }

            async fn delete_provider(&self, name: &str, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let users: Vec<(String, sqlx::types::Json<Vec<String>>)> =
                    sqlx::query_as(sql::VK_PROVIDERS).fetch_all(&mut *tx).await?;
                let users: Vec<String> = users
                    .into_iter()
                    .filter(|(_, ps)| ps.0.iter().any(|p| p == name))
                    .map(|(vk, _)| vk)
                    .collect();
                let before = fetch_provider(&mut tx, name).await?;
                let deleted = sqlx::query(sql::DELETE_PROVIDER)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("provider {name:?} not found")));
                }
                if !users.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "provider {name:?} is used by virtual keys {users:?}; remove it from them or delete them first"
                    )));
                }
                audit_change(&mut tx, event, version, before.as_ref(), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn seal_legacy_extra_headers(
                &self,
                seal: &$crate::store::SealHeader<'_>,
            ) -> Result<usize, StoreError> {
                let mut tx = self.begin_write().await?;
                lock_writers(&mut tx).await?;
                let mut sealed = 0;
                for mut p in all_providers(&mut tx).await? {
                    if p.network.legacy_extra_headers.is_empty() {
                        continue;
                    }
                    for (header, value) in std::mem::take(&mut p.network.legacy_extra_headers) {
                        let s = seal(&p.name, &header, &value)?;
                        p.network.extra_headers.insert(header, s);
                        sealed += 1;
                    }
                    let n = NetworkColumns::of(&p.network);
                    sqlx::query(sql::RESEAL_PROVIDER)
                        .bind(&p.name)
                        .bind(sqlx::types::Json(&n.network_config))
                        .bind(sqlx::types::Json(&n.extra_header_secrets))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(sealed)
            }

            async fn list_keys(&self, provider: Option<&str>) -> Result<Vec<ProviderKeyRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                keys(&mut conn, provider).await
            }

            async fn get_key(
                &self,
                provider: &str,
                id: uuid::Uuid,
            ) -> Result<Option<ProviderKeyRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_key(&mut conn, provider, id).await
            }

            async fn create_key(&self, k: &ProviderKeyRecord, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                if fetch_provider(&mut tx, &k.provider).await?.is_none() {
                    return Err(StoreError::NotFound(format!("provider {:?} not found", k.provider)));
                }
                let c = KeyColumns::of(k);
                sqlx::query(sql::INSERT_KEY)
                    .bind(k.id)
                    .bind(&k.provider)
                    .bind(&k.name)
                    .bind(&k.description)
                    .bind(sqlx::types::Json(&k.models))
                    .bind(k.weight)
                    .bind(sqlx::types::Json(&k.aliases))
                    .bind(k.enabled)
                    .bind(c.value_secret)
                    .bind(c.bedrock_config)
                    .bind(c.access_key_secret)
                    .bind(c.secret_key_secret)
                    .bind(c.session_token_secret)
                    .bind(c.external_id_secret)
                    .bind(k.created_at)
                    .bind(k.updated_at)
                    .bind(c.vertex_config)
                    .bind(c.auth_credentials_secret)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique_to_conflict(e, || key_conflict(&k.provider, &k.name)))?;
                audit_change(&mut tx, event, version, None, Some(&k)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_key(
                &self,
                provider: &str,
                id: uuid::Uuid,
                apply: &Apply<'_, ProviderKeyRecord>,
                event: &AuditEvent,
            ) -> Result<(ProviderKeyRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let mut k = fetch_key(&mut tx, provider, id).await?.ok_or_else(|| {
                    StoreError::NotFound(format!("provider {provider:?} has no key {id}"))
                })?;
                let before = k.clone();
                let created_at = k.created_at;
                apply(&mut k)?;
                k.id = id;
                k.provider = provider.to_owned();
                k.created_at = created_at;
                k.updated_at = $crate::model::now();
                let c = KeyColumns::of(&k);
                sqlx::query(sql::UPDATE_KEY)
                    .bind(provider)
                    .bind(id)
                    .bind(&k.name)
                    .bind(&k.description)
                    .bind(sqlx::types::Json(&k.models))
                    .bind(k.weight)
                    .bind(sqlx::types::Json(&k.aliases))
                    .bind(k.enabled)
                    .bind(c.value_secret)
                    .bind(c.bedrock_config)
                    .bind(c.access_key_secret)
                    .bind(c.secret_key_secret)
                    .bind(c.session_token_secret)
                    .bind(c.external_id_secret)
                    .bind(k.updated_at)
                    .bind(c.vertex_config)
                    .bind(c.auth_credentials_secret)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique_to_conflict(e, || key_conflict(provider, &k.name)))?;
                audit_change(&mut tx, event, version, Some(&before), Some(&k)).await?;
                tx.commit().await?;
                Ok((k, version))
            }

            async fn delete_key(
                &self,
                provider: &str,
                id: uuid::Uuid,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_key(&mut tx, provider, id).await?;
                let deleted = sqlx::query(sql::DELETE_KEY)
                    .bind(provider)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("provider {provider:?} has no key {id}")));
                }
                audit_change(&mut tx, event, version, before.as_ref(), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn list_virtual_keys(&self) -> Result<Vec<VirtualKeyRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                vks(&mut conn).await
            }

            async fn get_virtual_key(&self, id: uuid::Uuid) -> Result<Option<VirtualKeyRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_vk(&mut conn, id).await
            }

            async fn create_virtual_key(
                &self,
                vk: &VirtualKeyRecord,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                check_vk_references(&mut tx, vk).await?;
                insert_vk(&mut tx, vk).await?;
                audit_change(&mut tx, event, version, None, Some(&vk)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_virtual_key(
                &self,
                id: uuid::Uuid,
                apply: &Apply<'_, VirtualKeyRecord>,
                event: &AuditEvent,
            ) -> Result<(VirtualKeyRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let mut vk = fetch_vk(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("virtual key {id} not found")))?;
                let before = vk.clone();
                let (key_sha256, value_prefix, created_at) =
                    (vk.key_sha256, vk.value_prefix.clone(), vk.created_at);
                apply(&mut vk)?;
                vk.id = id;
                vk.key_sha256 = key_sha256;
                vk.value_prefix = value_prefix;
                vk.created_at = created_at;
                vk.updated_at = $crate::model::now();
                check_vk_references(&mut tx, &vk).await?;
                update_vk(&mut tx, &vk).await?;
                audit_change(&mut tx, event, version, Some(&before), Some(&vk)).await?;
                tx.commit().await?;
                Ok((vk, version))
            }

            async fn delete_virtual_key(&self, id: uuid::Uuid, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_vk(&mut tx, id).await?;
                let deleted = sqlx::query(sql::DELETE_VK)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("virtual key {id} not found")));
                }
                audit_change(&mut tx, event, version, before.as_ref(), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                all_teams(&mut conn).await
            }

            async fn get_team(&self, id: uuid::Uuid) -> Result<Option<TeamRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_team(&mut conn, id).await
            }

            async fn create_team(&self, team: &TeamRecord, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                check_team_references(&mut tx, team).await?;
                sqlx::query(gsql::INSERT_TEAM)
                    .bind(team.id)
                    .bind(&team.name)
                    .bind(team.customer_id)
                    .bind(sqlx::types::Json(&team.limits))
                    .bind(team.created_at)
                    .bind(team.updated_at)
                    .bind(team.member_key_limits.as_ref().map(sqlx::types::Json))
                    .bind(team.content_logging.as_ref().map(sqlx::types::Json))
                    .bind(team.mcp_tools.as_ref().map(sqlx::types::Json))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| reference_conflict(e, || format!("a team named {:?} already exists", team.name)))?;
                audit_change(&mut tx, event, version, None, Some(&team)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_team(
                &self,
                id: uuid::Uuid,
                apply: &Apply<'_, TeamRecord>,
                event: &AuditEvent,
            ) -> Result<(TeamRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let mut team = fetch_team(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("team {id} not found")))?;
                let before = team.clone();
                let created_at = team.created_at;
                apply(&mut team)?;
                team.id = id;
                team.created_at = created_at;
                team.updated_at = $crate::model::now();
                check_team_references(&mut tx, &team).await?;
                sqlx::query(gsql::UPDATE_TEAM)
                    .bind(id)
                    .bind(&team.name)
                    .bind(team.customer_id)
                    .bind(sqlx::types::Json(&team.limits))
                    .bind(team.updated_at)
                    .bind(team.member_key_limits.as_ref().map(sqlx::types::Json))
                    .bind(team.content_logging.as_ref().map(sqlx::types::Json))
                    .bind(team.mcp_tools.as_ref().map(sqlx::types::Json))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| reference_conflict(e, || format!("a team named {:?} already exists", team.name)))?;
                audit_change(&mut tx, event, version, Some(&before), Some(&team)).await?;
                tx.commit().await?;
                Ok((team, version))
            }

            async fn delete_team(&self, id: uuid::Uuid, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let keys = members(&mut tx, gsql::TEAM_MEMBERS, id).await?;
                if !keys.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "team {id} has virtual keys {keys:?}; move them to another team or delete them first"
                    )));
                }
                let before = fetch_team(&mut tx, id).await?;
                let deleted = sqlx::query(gsql::DELETE_TEAM)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| reference_conflict(e, || format!("team {id} is still in use")))?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("team {id} not found")));
                }
                audit_change(&mut tx, event, version, before.as_ref(), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn list_customers(&self) -> Result<Vec<CustomerRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                all_customers(&mut conn).await
            }

            async fn get_customer(&self, id: uuid::Uuid) -> Result<Option<CustomerRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_customer(&mut conn, id).await
            }

            async fn create_customer(&self, customer: &CustomerRecord, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                sqlx::query(gsql::INSERT_CUSTOMER)
                    .bind(customer.id)
                    .bind(&customer.name)
                    .bind(sqlx::types::Json(&customer.limits))
                    .bind(customer.created_at)
                    .bind(customer.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| reference_conflict(e, || format!("a customer named {:?} already exists", customer.name)))?;
                audit_change(&mut tx, event, version, None, Some(&customer)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_customer(
                &self,
                id: uuid::Uuid,
                apply: &Apply<'_, CustomerRecord>,
                event: &AuditEvent,
            ) -> Result<(CustomerRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let mut customer = fetch_customer(&mut tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("customer {id} not found")))?;
                let before = customer.clone();
                let created_at = customer.created_at;
                apply(&mut customer)?;
                customer.id = id;
                customer.created_at = created_at;
                customer.updated_at = $crate::model::now();
                sqlx::query(gsql::UPDATE_CUSTOMER)
                    .bind(id)
                    .bind(&customer.name)
                    .bind(sqlx::types::Json(&customer.limits))
                    .bind(customer.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| reference_conflict(e, || format!("a customer named {:?} already exists", customer.name)))?;
                audit_change(&mut tx, event, version, Some(&before), Some(&customer)).await?;
                tx.commit().await?;
                Ok((customer, version))
            }

            async fn delete_customer(&self, id: uuid::Uuid, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let owned = members(&mut tx, gsql::CUSTOMER_MEMBERS, id).await?;
                if !owned.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "customer {id} has teams or virtual keys {owned:?}; move or delete them first"
                    )));
                }
                let before = fetch_customer(&mut tx, id).await?;
                let deleted = sqlx::query(gsql::DELETE_CUSTOMER)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| reference_conflict(e, || format!("customer {id} is still in use")))?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("customer {id} not found")));
                }
                audit_change(&mut tx, event, version, before.as_ref(), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn list_price_overrides(&self) -> Result<Vec<PriceOverrideRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                all_price_overrides(&mut conn).await
            }

            async fn create_price_override(
                &self,
                o: &PriceOverrideRecord,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                sqlx::query(gsql::INSERT_PRICE_OVERRIDE)
                    .bind(o.id)
                    .bind(sqlx::types::Json(&o.entry))
                    .bind(o.created_at)
                    .bind(o.updated_at)
                    .execute(&mut *tx)
                    .await?;
                audit_change(&mut tx, event, version, None, Some(&o)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn replace_price_override(
                &self,
                o: &PriceOverrideRecord,
                event: &AuditEvent,
            ) -> Result<(PriceOverrideRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_price_override(&mut tx, o.id).await?;
                let now = $crate::model::now();
                let updated = sqlx::query(gsql::UPDATE_PRICE_OVERRIDE)
                    .bind(o.id)
                    .bind(sqlx::types::Json(&o.entry))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    return Err(StoreError::NotFound(format!("price override {} not found", o.id)));
                }
                let stored = all_price_overrides(&mut tx)
                    .await?
                    .into_iter()
                    .find(|s| s.id == o.id)
                    .ok_or_else(|| StoreError::NotFound(format!("price override {} not found", o.id)))?;
                audit_change(&mut tx, event, version, before.as_ref(), Some(&stored)).await?;
                tx.commit().await?;
                Ok((stored, version))
            }

            async fn delete_price_override(&self, id: uuid::Uuid, event: &AuditEvent) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let before = fetch_price_override(&mut tx, id).await?;
                let deleted = sqlx::query(gsql::DELETE_PRICE_OVERRIDE)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("price override {id} not found")));
                }
                audit_change(&mut tx, event, version, before.as_ref(), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn audit_chain(&self) -> Result<Vec<$crate::audit_chain::ChainRow>, StoreError> {
                Ok(sqlx::query_as::<_, AuditChainRow>(sql::AUDIT_CHAIN)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::audit_chain::ChainRow::from)
                    .collect())
            }

            async fn list_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
                self.query_audit(&$crate::audit::AuditQuery {
                    limit,
                    ..Default::default()
                })
                .await
            }

            async fn query_audit(
                &self,
                q: &$crate::audit::AuditQuery,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                let f = &q.filter;
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql::SELECT_AUDIT);
                qb.push(" WHERE 1 = 1");
                for (column, m) in [("actor", &f.actor), ("action", &f.action), ("target", &f.target)] {
                    if let Some(m) = m {
                        push_text_match(&mut qb, column, m);
                    }
                }
                if let Some(result) = f.result {
                    qb.push(" AND ").push(AUDIT_RESULT).push(" = ").push_bind(result.as_str());
                }
                if let Some(since) = f.since {
                    push_at_bound(&mut qb, ">=", $crate::audit::ceil_to_micros(since));
                }
                if let Some(until) = f.until {
                    push_at_bound(&mut qb, "<", $crate::audit::ceil_to_micros(until));
                }
                if let Some(id) = q.before_id {
                    qb.push(" AND id < ").push_bind(id);
                }
                if let Some(id) = q.after_id {
                    qb.push(" AND id > ").push_bind(id);
                }
                qb.push(match q.order {
                    $crate::audit::AuditOrder::NewestFirst => " ORDER BY id DESC",
                    $crate::audit::AuditOrder::OldestFirst => " ORDER BY id",
                });
                qb.push(" LIMIT ").push_bind(i64::from(q.limit));
                Ok(qb
                    .build_query_as::<AuditRow>()
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(AuditRecord::from)
                    .collect())
            }

            async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
                let mut tx = self.begin_write().await?;
                // The writers' lock, without a new version: this row records no change.
                let version = lock_writers(&mut tx).await?;
                let id = write_audit_row(&mut tx, event, version).await?;
                tx.commit().await?;
                Ok(id)
            }

            fn config_changes(&self) -> Option<tokio::sync::mpsc::Receiver<ConfigChange>> {
                self.listen_config_changes()
            }

            async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
                self.insert_usage_rows(records).await
            }

            async fn usage_by_virtual_key(
                &self,
            ) -> Result<std::collections::BTreeMap<String, crate::store::UsageTotals>, StoreError> {
                let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(sql::USAGE_TOTALS)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(vk, n, cost, unpriced)| {
                        let totals = crate::store::UsageTotals {
                            requests: count_from_db("usage_records", n)?,
                            cost_nano_usd: count_from_db("usage_records", cost)?,
                            unpriced_requests: count_from_db("usage_records", unpriced)?,
                        };
                        Ok((vk, totals))
                    })
                    .collect()
            }

            async fn query_usage_logs(
                &self,
                q: &$crate::usage_log::UsageLogQuery,
            ) -> Result<Vec<$crate::usage_log::UsageLogRow>, StoreError> {
                use $crate::usage_log::ceil_to_millis;
                let select = sql::SELECT_USAGE_LOGS.replace("{VK_ID}", VK_ID_TEXT);
                let mut qb = sqlx::QueryBuilder::<$db>::new(select);
                // The time window first: PostgreSQL prunes partitions on it.
                qb.push(" WHERE u.started_at >= ")
                    .push_bind(usage_instant(ceil_to_millis(q.since)))
                    .push(" AND u.started_at < ")
                    .push_bind(usage_instant(ceil_to_millis(q.until)));
                push_owner_filters(
                    &mut qb,
                    "u.",
                    q.scope,
                    [q.virtual_key_id, q.team_id, q.customer_id, q.user_id],
                );
                if let Some(model) = &q.model {
                    qb.push(" AND (u.model_requested = ")
                        .push_bind(model.clone())
                        .push(" OR u.model_resolved = ")
                        .push_bind(model.clone())
                        .push(")");
                }
                if let Some(provider) = &q.provider {
                    qb.push(" AND u.provider = ").push_bind(provider.clone());
                }
                if let Some(status) = q.status {
                    let (low, high) = status.range();
                    qb.push(" AND u.status >= ")
                        .push_bind(low)
                        .push(" AND u.status < ")
                        .push_bind(high);
                }
                if let Some(min) = q.min_cost_nano_usd {
                    qb.push(" AND u.cost_nano_usd >= ").push_bind(min);
                }
                if let Some((at, request_id)) = &q.after {
                    let at = usage_instant(*at);
                    qb.push(" AND (u.started_at < ")
                        .push_bind(at.clone())
                        .push(" OR (u.started_at = ")
                        .push_bind(at)
                        .push(" AND u.request_id < ")
                        .push_bind(request_id.clone())
                        .push("))");
                }
                qb.push(" ORDER BY u.started_at DESC, u.request_id DESC LIMIT ")
                    .push_bind(i64::from(q.limit));
                Ok(qb
                    .build_query_as::<$crate::usage_log::UsageLogRow>()
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn get_usage_log(
                &self,
                request_id: &str,
            ) -> Result<Option<$crate::usage_log::UsageLogRow>, StoreError> {
                let select = sql::SELECT_USAGE_LOGS.replace("{VK_ID}", VK_ID_TEXT);
                let mut qb = sqlx::QueryBuilder::<$db>::new(select);
                qb.push(" WHERE u.request_id = ")
                    .push_bind(request_id.to_owned())
                    .push(" ORDER BY u.started_at DESC LIMIT 1");
                Ok(qb
                    .build_query_as::<$crate::usage_log::UsageLogRow>()
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn get_request_content(
                &self,
                request_id: &str,
            ) -> Result<Option<$crate::usage_log::RequestContent>, StoreError> {
                let row: Option<(Vec<u8>, i64, Vec<u8>, i64)> =
                    sqlx::query_as(sql::GET_REQUEST_CONTENT)
                        .bind(request_id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|(request, request_bytes, response, response_bytes)| {
                    Ok($crate::usage_log::RequestContent {
                        request,
                        request_bytes: count_from_db("request_content", request_bytes)?,
                        response,
                        response_bytes: count_from_db("request_content", response_bytes)?,
                    })
                })
                .transpose()
            }

            async fn drop_request_content_before(
                &self,
                before: time::OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let mut deleted = 0;
                // In slices, so a large purge never holds the table (or SQLite's writer lock)
                // for long.
                loop {
                    let n = sqlx::query(sql::DELETE_OLD_REQUEST_CONTENT)
                        .bind(usage_instant(before))
                        .bind($crate::store::CONTENT_PURGE_SLICE)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    deleted += n;
                    if n < $crate::store::CONTENT_PURGE_SLICE as u64 {
                        return Ok(deleted);
                    }
                }
            }

            async fn usage_in(
                &self,
                virtual_key_ids: &[String],
                from: time::OffsetDateTime,
                to: time::OffsetDateTime,
            ) -> Result<$crate::store::RangeUsage, StoreError> {
                let mut total = $crate::store::RangeUsage::default();
                let mut conn = self.pool.acquire().await?;
                for vk in virtual_key_ids {
                    let (n, tokens, cost, unpriced): (i64, i64, i64, i64) =
                        sqlx::query_as(sql::USAGE_IN_RANGE)
                            .bind(vk)
                            .bind(usage_instant(from))
                            .bind(usage_instant(to))
                            .fetch_one(&mut *conn)
                            .await?;
                    total.requests += count_from_db("usage_records", n)?;
                    total.tokens += count_from_db("usage_records", tokens)?;
                    total.cost_nano_usd += count_from_db("usage_records", cost)?;
                    total.unpriced_requests += count_from_db("usage_records", unpriced)?;
                }
                Ok(total)
            }

            async fn create_usage_partitions(
                &self,
                from: time::Date,
                days: u32,
            ) -> Result<Vec<String>, StoreError> {
                self.create_usage_partitions_for(from, days).await
            }

            async fn drop_usage_partitions_before(
                &self,
                date: time::Date,
            ) -> Result<UsagePurge, StoreError> {
                self.drop_usage_before(date).await
            }

            async fn drop_spend_rollups_before(&self, date: time::Date) -> Result<u64, StoreError> {
                self.drop_rollups_before(date).await
            }

            async fn query_spend(
                &self,
                q: &$crate::spend::SpendQuery,
            ) -> Result<Vec<$crate::spend::SpendRow>, StoreError> {
                use $crate::spend::{Dimension, Interval, SpendRow, SpendTotals};
                use sqlx::Row as _;
                let table = if q.interval == Interval::Hour {
                    "usage_rollup_hourly"
                } else {
                    "usage_rollup_daily"
                };
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                let mut group: Vec<&str> = Vec::new();
                if q.interval != Interval::None {
                    qb.push(ROLLUP_BUCKET_EPOCH).push(" AS bucket_epoch, ");
                    group.push("bucket");
                }
                for d in &q.group_by {
                    let col = d.column();
                    match d {
                        Dimension::Team | Dimension::Customer | Dimension::User => {
                            qb.push(format!("NULLIF({col}, {NIL_ID}) AS {col}, "));
                        }
                        Dimension::Key | Dimension::Model | Dimension::Provider => {
                            qb.push(col).push(", ");
                        }
                    }
                    group.push(col);
                }
                let sums = [
                    "requests",
                    "refused_requests",
                    "error_requests",
                    "input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                    "cache_write_input_tokens",
                    "cost_nano_usd",
                    "unpriced_requests",
                ];
                let sum_list: Vec<String> = sums
                    .iter()
                    .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
                    .collect();
                qb.push(sum_list.join(", "));
                qb.push(" FROM ").push(table);
                qb.push(" WHERE bucket >= ")
                    .push_bind(usage_instant(q.since))
                    .push(" AND bucket < ")
                    .push_bind(usage_instant(q.until));
                push_owner_filters(
                    &mut qb,
                    "",
                    q.scope,
                    [q.virtual_key_id, q.team_id, q.customer_id, q.user_id],
                );
                if let Some(model) = &q.model {
                    qb.push(" AND model = ").push_bind(model.clone());
                }
                if let Some(provider) = &q.provider {
                    qb.push(" AND provider = ").push_bind(provider.clone());
                }
                if !group.is_empty() {
                    qb.push(" GROUP BY ").push(group.join(", "));
                }
                qb.push(" ORDER BY ");
                if q.interval != Interval::None {
                    qb.push("bucket, ");
                }
                qb.push("SUM(cost_nano_usd) DESC");
                for col in group.iter().filter(|c| **c != "bucket") {
                    qb.push(", ").push(*col);
                }
                qb.push(" LIMIT ").push_bind(i64::from(q.limit));
                let rows = qb.build().fetch_all(&self.pool).await?;
                let count = |row: &<$db as sqlx::Database>::Row, col: &str| -> Result<u64, StoreError> {
                    let n: Option<i64> = row.try_get(col)?;
                    count_from_db("usage_rollup", n.unwrap_or(0))
                };
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    let totals = SpendTotals {
                        requests: count(row, "requests")?,
                        refused_requests: count(row, "refused_requests")?,
                        error_requests: count(row, "error_requests")?,
                        input_tokens: count(row, "input_tokens")?,
                        output_tokens: count(row, "output_tokens")?,
                        cache_read_input_tokens: count(row, "cache_read_input_tokens")?,
                        cache_write_input_tokens: count(row, "cache_write_input_tokens")?,
                        cost_nano_usd: count(row, "cost_nano_usd")?,
                        unpriced_requests: count(row, "unpriced_requests")?,
                    };
                    // An aggregate without GROUP BY returns one row even when nothing matched.
                    if totals.requests + totals.refused_requests == 0 {
                        continue;
                    }
                    let mut r = SpendRow { totals, ..SpendRow::default() };
                    if q.interval != Interval::None {
                        let epoch: i64 = row.try_get("bucket_epoch")?;
                        r.bucket = time::OffsetDateTime::from_unix_timestamp(epoch).ok();
                    }
                    for d in &q.group_by {
                        let col = d.column();
                        match d {
                            Dimension::Key => r.virtual_key_id = row.try_get(col)?,
                            Dimension::Team => r.team_id = row.try_get(col)?,
                            Dimension::Customer => r.customer_id = row.try_get(col)?,
                            Dimension::User => r.user_id = row.try_get(col)?,
                            Dimension::Model => r.model = row.try_get(col)?,
                            Dimension::Provider => r.provider = row.try_get(col)?,
                        }
                    }
                    out.push(r);
                }
                // Current names, one small read per named dimension.
                let names = |sql: &'static str| {
                    let pool = self.pool.clone();
                    async move {
                        let rows: Vec<(uuid::Uuid, String)> =
                            sqlx::query_as(sql).fetch_all(&pool).await?;
                        Ok::<_, StoreError>(rows.into_iter().collect::<std::collections::HashMap<_, _>>())
                    }
                };
                for d in &q.group_by {
                    match d {
                        Dimension::Key => {
                            let map = names("SELECT id, name FROM virtual_keys").await?;
                            for r in &mut out {
                                r.key_name = r
                                    .virtual_key_id
                                    .as_deref()
                                    .and_then(|id| id.parse::<uuid::Uuid>().ok())
                                    .and_then(|id| map.get(&id).cloned());
                            }
                        }
                        Dimension::Team => {
                            let map = names("SELECT id, name FROM teams").await?;
                            for r in &mut out {
                                r.team_name = r.team_id.and_then(|id| map.get(&id).cloned());
                            }
                        }
                        Dimension::Customer => {
                            let map = names("SELECT id, name FROM customers").await?;
                            for r in &mut out {
                                r.customer_name = r.customer_id.and_then(|id| map.get(&id).cloned());
                            }
                        }
                        Dimension::User => {
                            let map = names("SELECT id, user_name FROM users").await?;
                            for r in &mut out {
                                r.user_name = r.user_id.and_then(|id| map.get(&id).cloned());
                            }
                        }
                        Dimension::Model | Dimension::Provider => {}
                    }
                }
                Ok(out)
            }
        }
    };
}

use impl_sql_store;

#[cfg(test)]
mod usage_sql_tests {
    #[test]
    fn usage_in_range_leaves_out_every_refusal_by_limits() {
        for class in tollgate_proto::usage::refusal::BY_LIMITS {
            assert!(
                super::sql::USAGE_IN_RANGE.contains(&format!("'{class}'")),
                "{class} is not left out of the request count"
            );
        }
    }
}
