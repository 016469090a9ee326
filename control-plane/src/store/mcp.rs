//! Storage of the MCP gateway (migration 0020), shared by both backends (one SQL text): MCP
//! servers (config: every change bumps the config version and writes its audit row, like
//! providers) and the tool-call log (`mcp_tool_calls`), which [`super::Store::insert_usage`]
//! writes from the usage records that carry `mcp`, in the batch's transaction, idempotent on the
//! request id, and never into `usage_records` or the spend rollups.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Apply, StoreError};
use crate::mcp::{McpCallQuery, McpCallRow, McpServerRecord, Transport, TransportRecord};
use crate::model::{AuditEvent, SealedSecret};

/// The MCP half of the store; every [`super::Store`] implements it.
#[async_trait]
pub trait McpStore: Send + Sync + 'static {
    /// Every server, by name.
    async fn list_mcp_servers(&self) -> Result<Vec<McpServerRecord>, StoreError>;
    async fn get_mcp_server(&self, name: &str) -> Result<Option<McpServerRecord>, StoreError>;
    /// Conflict if the name is taken.
    async fn create_mcp_server(
        &self,
        server: &McpServerRecord,
        event: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// Applies `apply` to the stored server (`id`, `name` and `created_at` cannot change;
    /// `updated_at` is set by the store) and returns the result.
    async fn update_mcp_server(
        &self,
        name: &str,
        apply: &Apply<'_, McpServerRecord>,
        event: &AuditEvent,
    ) -> Result<(McpServerRecord, u64), StoreError>;
    async fn delete_mcp_server(&self, name: &str, event: &AuditEvent) -> Result<u64, StoreError>;
    /// One page of the tool-call log: calls that started in `[query.since, query.until)` and
    /// match its filters and scope, each with its key's current name, newest first by
    /// `(started_at, request_id)`, after `query.after`, at most `query.limit` rows.
    async fn query_mcp_calls(&self, query: &McpCallQuery) -> Result<Vec<McpCallRow>, StoreError>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct McpServerRow {
    id: Uuid,
    name: String,
    transport: String,
    command: Option<String>,
    args: Json<Vec<String>>,
    /// Variable name -> [`SealedSecret`] column text.
    env_secrets: Json<BTreeMap<String, String>>,
    cwd: Option<String>,
    url: Option<String>,
    /// Header name -> [`SealedSecret`] column text.
    header_secrets: Json<BTreeMap<String, String>>,
    allowed_tools: Json<Vec<String>>,
    call_timeout_ms: i64,
    enabled: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<McpServerRow> for McpServerRecord {
    type Error = StoreError;
    fn try_from(r: McpServerRow) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "mcp_servers",
            reason,
        };
        let sealed = |map: BTreeMap<String, String>, what: &str| {
            map.into_iter()
                .map(|(name, text)| {
                    SealedSecret::from_column(&text)
                        .map(|s| (name.clone(), s))
                        .ok_or_else(|| {
                            corrupt(format!(
                                "{what} {name:?} of MCP server {:?} is not env:/enc: text",
                                r.name
                            ))
                        })
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        let transport = match (Transport::parse(&r.transport), r.command, r.url) {
            (Some(Transport::Stdio), Some(command), None) => TransportRecord::Stdio {
                command,
                args: r.args.0,
                env: sealed(r.env_secrets.0, "env entry")?,
                cwd: r.cwd,
            },
            (Some(Transport::Http), None, Some(url)) => TransportRecord::Http {
                url,
                headers: sealed(r.header_secrets.0, "header")?,
            },
            _ => {
                return Err(corrupt(format!(
                    "MCP server {:?} has transport {:?} without its settings",
                    r.name, r.transport
                )));
            }
        };
        Ok(McpServerRecord {
            id: r.id,
            name: r.name,
            transport,
            allowed_tools: r.allowed_tools.0,
            call_timeout_ms: u32::try_from(r.call_timeout_ms).unwrap_or(0),
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// How a server maps to its columns.
pub(crate) struct McpServerColumns {
    pub transport: &'static str,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env_secrets: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub url: Option<String>,
    pub header_secrets: BTreeMap<String, String>,
    pub call_timeout_ms: i64,
}

impl McpServerColumns {
    pub(crate) fn of(s: &McpServerRecord) -> Self {
        let column = |m: &BTreeMap<String, SealedSecret>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.to_column()))
                .collect::<BTreeMap<_, _>>()
        };
        let mut c = McpServerColumns {
            transport: s.transport.kind().as_str(),
            command: None,
            args: Vec::new(),
            env_secrets: BTreeMap::new(),
            cwd: None,
            url: None,
            header_secrets: BTreeMap::new(),
            call_timeout_ms: i64::from(s.call_timeout_ms),
        };
        match &s.transport {
            TransportRecord::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                c.command = Some(command.clone());
                c.args.clone_from(args);
                c.env_secrets = column(env);
                c.cwd.clone_from(cwd);
            }
            TransportRecord::Http { url, headers } => {
                c.url = Some(url.clone());
                c.header_secrets = column(headers);
            }
        }
        c
    }
}

/// Shared SQL (both backends).
pub(crate) mod sql {
    pub const SERVER_COLUMNS: &str = "id, name, transport, command, args, env_secrets, cwd, url, \
         header_secrets, allowed_tools, call_timeout_ms, enabled, created_at, updated_at";
    pub const INSERT_SERVER: &str = "INSERT INTO mcp_servers (id, name, transport, command, args, \
         env_secrets, cwd, url, header_secrets, allowed_tools, call_timeout_ms, enabled, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
    pub const UPDATE_SERVER: &str = "UPDATE mcp_servers SET transport = $2, command = $3, \
         args = $4, env_secrets = $5, cwd = $6, url = $7, header_secrets = $8, \
         allowed_tools = $9, call_timeout_ms = $10, enabled = $11, updated_at = $12 \
         WHERE name = $1";
    pub const DELETE_SERVER: &str = "DELETE FROM mcp_servers WHERE name = $1";
    /// One tool call, once: a resent record writes nothing.
    pub const INSERT_CALL: &str = "INSERT INTO mcp_tool_calls (request_id, started_at, \
         virtual_key_id, team_id, customer_id, user_id, server, tool, status, error_class, \
         latency_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (request_id) DO NOTHING";
    /// The start of every tool-call query (`{VK_ID}`: the backend's `vk.id` as hyphenated text).
    pub const SELECT_CALLS: &str = "SELECT c.request_id, c.started_at, c.virtual_key_id, \
         vk.name AS key_name, c.team_id, c.customer_id, c.user_id, c.server, c.tool, c.status, \
         c.error_class, c.latency_ms FROM mcp_tool_calls c \
         LEFT JOIN virtual_keys vk ON {VK_ID} = c.virtual_key_id";
    /// One slice of the retention (`$2` rows at most).
    pub const DELETE_OLD_CALLS: &str = "DELETE FROM mcp_tool_calls WHERE request_id IN \
         (SELECT request_id FROM mcp_tool_calls WHERE started_at < $1 LIMIT $2)";
}

/// Implements [`McpStore`] for a backend, and the helpers the backend's usage insert and
/// retention use (`insert_mcp_calls`, `purge_mcp_calls`) and `load_state` reads with
/// (`all_mcp_servers`). Expanded after `impl_sql_store!`, whose helpers (`bump`,
/// `audit_change`, `unique_to_conflict`, `Conn`) and the backend's `usage_instant` and
/// `VK_ID_TEXT` it uses.
macro_rules! impl_mcp_store {
    ($store:ty, $db:ty) => {
        use $crate::mcp::{McpCallQuery, McpCallRow, McpServerRecord};
        use $crate::store::mcp::{McpServerColumns, McpServerRow, McpStore, sql as msql};

        fn select_servers(tail: &str) -> String {
            format!("SELECT {} FROM mcp_servers {tail}", msql::SERVER_COLUMNS)
        }

        async fn all_mcp_servers(conn: &mut Conn) -> Result<Vec<McpServerRecord>, StoreError> {
            sqlx::query_as::<_, McpServerRow>(sqlx::AssertSqlSafe(select_servers("ORDER BY name")))
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(McpServerRecord::try_from)
                .collect()
        }

        async fn fetch_mcp_server(
            conn: &mut Conn,
            name: &str,
        ) -> Result<Option<McpServerRecord>, StoreError> {
            sqlx::query_as::<_, McpServerRow>(sqlx::AssertSqlSafe(select_servers(
                "WHERE name = $1",
            )))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .map(McpServerRecord::try_from)
            .transpose()
        }

        /// Stores the tool calls among `records` (those with `mcp` set), each once; returns how
        /// many were new. Runs in the usage batch's transaction.
        async fn insert_mcp_calls<'r>(
            conn: &mut Conn,
            records: impl IntoIterator<Item = &'r $crate::store::UsageRecord>,
        ) -> Result<u64, StoreError> {
            let mut stored = 0;
            for r in records {
                let Some(call) = &r.mcp else { continue };
                stored += sqlx::query(msql::INSERT_CALL)
                    .bind(r.request_id.as_str())
                    .bind(usage_instant($crate::store::usage_started_at(
                        r.started_at_unix_ms,
                    )))
                    .bind(r.virtual_key_id.as_str())
                    .bind($crate::store::owner_id(&r.team_id))
                    .bind($crate::store::owner_id(&r.customer_id))
                    .bind($crate::store::owner_id(&r.user_id))
                    .bind(call.server.as_str())
                    .bind(call.tool.as_str())
                    .bind(i32::try_from(r.status).unwrap_or(i32::MAX))
                    .bind(r.error_class.as_str())
                    .bind(i64::from(r.latency_ms))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            }
            Ok(stored)
        }

        /// Usage retention of the tool-call log: deletes the calls that started before
        /// `before`, in slices. Returns how many it deleted.
        async fn purge_mcp_calls(
            pool: &sqlx::Pool<$db>,
            before: time::OffsetDateTime,
        ) -> Result<u64, StoreError> {
            let mut deleted = 0;
            loop {
                let n = sqlx::query(msql::DELETE_OLD_CALLS)
                    .bind(usage_instant(before))
                    .bind($crate::store::CONTENT_PURGE_SLICE)
                    .execute(pool)
                    .await?
                    .rows_affected();
                deleted += n;
                if n < $crate::store::CONTENT_PURGE_SLICE as u64 {
                    return Ok(deleted);
                }
            }
        }

        async fn write_mcp_server(
            conn: &mut Conn,
            s: &McpServerRecord,
            insert: bool,
        ) -> Result<(), StoreError> {
            let c = McpServerColumns::of(s);
            let q = if insert {
                sqlx::query(msql::INSERT_SERVER).bind(s.id).bind(&s.name)
            } else {
                sqlx::query(msql::UPDATE_SERVER).bind(&s.name)
            };
            let q = q
                .bind(c.transport)
                .bind(c.command)
                .bind(sqlx::types::Json(c.args))
                .bind(sqlx::types::Json(c.env_secrets))
                .bind(c.cwd)
                .bind(c.url)
                .bind(sqlx::types::Json(c.header_secrets))
                .bind(sqlx::types::Json(&s.allowed_tools))
                .bind(c.call_timeout_ms)
                .bind(s.enabled);
            let q = if insert {
                q.bind(s.created_at).bind(s.updated_at)
            } else {
                q.bind(s.updated_at)
            };
            q.execute(&mut *conn).await.map_err(|e| {
                unique_to_conflict(e, || {
                    format!("an MCP server named {:?} already exists", s.name)
                })
            })?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl McpStore for $store {
            async fn list_mcp_servers(&self) -> Result<Vec<McpServerRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                all_mcp_servers(&mut conn).await
            }

            async fn get_mcp_server(
                &self,
                name: &str,
            ) -> Result<Option<McpServerRecord>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                fetch_mcp_server(&mut conn, name).await
            }

            async fn create_mcp_server(
                &self,
                s: &McpServerRecord,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                write_mcp_server(&mut tx, s, true).await?;
                audit_change(&mut tx, event, version, None, Some(s)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn update_mcp_server(
                &self,
                name: &str,
                apply: &Apply<'_, McpServerRecord>,
                event: &AuditEvent,
            ) -> Result<(McpServerRecord, u64), StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let mut s = fetch_mcp_server(&mut tx, name).await?.ok_or_else(|| {
                    StoreError::NotFound(format!("MCP server {name:?} not found"))
                })?;
                let before = s.clone();
                apply(&mut s)?;
                s.id = before.id;
                s.name = before.name.clone();
                s.created_at = before.created_at;
                s.updated_at = $crate::model::now();
                write_mcp_server(&mut tx, &s, false).await?;
                audit_change(&mut tx, event, version, Some(&before), Some(&s)).await?;
                tx.commit().await?;
                Ok((s, version))
            }

            async fn delete_mcp_server(
                &self,
                name: &str,
                event: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let version = bump(&mut tx).await?;
                let Some(before) = fetch_mcp_server(&mut tx, name).await? else {
                    return Err(StoreError::NotFound(format!(
                        "MCP server {name:?} not found"
                    )));
                };
                sqlx::query(msql::DELETE_SERVER)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                audit_change(&mut tx, event, version, Some(&before), None).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn query_mcp_calls(
                &self,
                q: &McpCallQuery,
            ) -> Result<Vec<McpCallRow>, StoreError> {
                use $crate::usage_log::{LogScope, ceil_to_millis};
                let select = msql::SELECT_CALLS.replace("{VK_ID}", VK_ID_TEXT);
                let mut qb = sqlx::QueryBuilder::<$db>::new(select);
                qb.push(" WHERE c.started_at >= ")
                    .push_bind(usage_instant(ceil_to_millis(q.since)))
                    .push(" AND c.started_at < ")
                    .push_bind(usage_instant(ceil_to_millis(q.until)));
                match q.scope {
                    LogScope::All => {}
                    LogScope::Team(Some(team)) => {
                        qb.push(" AND c.team_id = ").push_bind(team);
                    }
                    LogScope::Key(Some(key)) => {
                        qb.push(" AND c.virtual_key_id = ")
                            .push_bind(key.to_string());
                    }
                    LogScope::Team(None) | LogScope::Key(None) => {
                        qb.push(" AND 1 = 0");
                    }
                }
                if let Some(key) = q.virtual_key_id {
                    qb.push(" AND c.virtual_key_id = ")
                        .push_bind(key.to_string());
                }
                if let Some(team) = q.team_id {
                    qb.push(" AND c.team_id = ").push_bind(team);
                }
                if let Some(server) = &q.server {
                    qb.push(" AND c.server = ").push_bind(server.clone());
                }
                if let Some(tool) = &q.tool {
                    qb.push(" AND c.tool = ").push_bind(tool.clone());
                }
                if let Some(status) = q.status {
                    let (low, high) = status.range();
                    qb.push(" AND c.status >= ")
                        .push_bind(low)
                        .push(" AND c.status < ")
                        .push_bind(high);
                }
                if let Some((at, request_id)) = &q.after {
                    let at = usage_instant(*at);
                    qb.push(" AND (c.started_at < ")
                        .push_bind(at.clone())
                        .push(" OR (c.started_at = ")
                        .push_bind(at)
                        .push(" AND c.request_id < ")
                        .push_bind(request_id.clone())
                        .push("))");
                }
                qb.push(" ORDER BY c.started_at DESC, c.request_id DESC LIMIT ")
                    .push_bind(i64::from(q.limit));
                Ok(qb
                    .build_query_as::<McpCallRow>()
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}

pub(crate) use impl_mcp_store;
