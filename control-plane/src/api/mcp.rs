//! `/api/mcp/servers`: the MCP servers whose tools data planes serve at `/mcp` (read like
//! providers by configuration readers, changed by admins), and `/api/mcp/calls`: the tool-call
//! log, narrowed to the caller's scope like `/api/logs`.
//!
//! `env` and `headers` values are secrets: a literal is sealed before it reaches the store
//! (bound to the server's id, the map and the entry's name) and shown as `"<redacted>"`; an
//! `env.NAME` reference (under the env allowlist) is shown as written. Sent back in an update,
//! `"<redacted>"` keeps the stored value. Audit rows show the same redacted views.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::audit::Audit;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{parse_opt_id, parse_time, timestamp};
use crate::ControlPlane;
use crate::mcp::{
    CheckError, McpCallQuery, McpCallRow, McpServerInput, McpServerRecord, McpServerView,
    SecretMap, ServerChange,
};
use crate::model::now;
use crate::usage_log::StatusFilter;
use crate::validate::ValidationError;

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Invalid(v) => v.into(),
            CheckError::Crypto(c) => c.into(),
        }
    }
}

/// An MCP server. `env` and `headers` values show as `"<redacted>"` or `env.NAME`.
#[derive(Serialize, ToSchema)]
pub struct McpServerResponse {
    #[serde(flatten)]
    pub server: McpServerView,
    /// Entries whose stored `env.NAME` reference the env allowlist refuses; data planes refuse
    /// them too (the server does not start, or its requests go without the header). Absent
    /// when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["env.GITHUB_TOKEN"]))]
    pub refused_env_references: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl McpServerResponse {
    fn new(s: &McpServerRecord, cp: &ControlPlane) -> Self {
        McpServerResponse {
            server: McpServerView::of(s),
            refused_env_references: crate::mcp::refused_references(s, cp.env_allow()),
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct McpServerList {
    pub servers: Vec<McpServerResponse>,
    pub count: usize,
}

/// Checks `req` and seals its literal secrets for server `id`.
fn change_of(
    cp: &ControlPlane,
    req: &McpServerInput,
    id: Uuid,
    path_name: Option<&str>,
) -> Result<ServerChange, ApiError> {
    let secrets = cp.secrets();
    let seal =
        |map: SecretMap, name: &str, value: &str| crate::mcp::seal(secrets, id, map, name, value);
    Ok(req.check(path_name, cp.env_allow(), &seal)?)
}

/// Add an MCP server. Its tools are served at `/mcp` as `<name>__<tool>` once data planes
/// have the new configuration.
#[utoipa::path(
    post,
    path = "/api/mcp/servers",
    tag = "mcp",
    request_body(content = McpServerInput, example = json!({
        "name": "github", "transport": "stdio", "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-github"],
        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "env.GITHUB_TOKEN"}
    })),
    responses(
        (status = 201, description = "Created", body = McpServerResponse),
        (status = 400, description = "Invalid request (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 409, description = "An MCP server with this name exists", body = ErrorBody),
    )
)]
pub(crate) async fn create_server(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiJson(req): ApiJson<McpServerInput>,
) -> Result<(StatusCode, Json<McpServerResponse>), ApiError> {
    if req.id.is_some() {
        return Err(ApiError::invalid_field(
            "id",
            "ids are assigned by the gateway; leave `id` out",
        ));
    }
    let id = Uuid::new_v4();
    let change = change_of(&cp, &req, id, None)?;
    // `check` refused a missing or invalid name.
    let name = req.name.clone().unwrap_or_default();
    let record = change.create(id, name, now())?;
    let event = audit.event("mcp_server.create", format!("mcp/servers/{}", record.name));
    let version = cp.store().create_mcp_server(&record, &event).await?;
    cp.committed(&event, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(McpServerResponse::new(&record, &cp)),
    ))
}

/// List MCP servers.
#[utoipa::path(
    get,
    path = "/api/mcp/servers",
    tag = "mcp",
    responses(
        (status = 200, description = "All MCP servers, by name", body = McpServerList),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_servers(
    State(cp): State<ControlPlane>,
) -> Result<Json<McpServerList>, ApiError> {
    let servers: Vec<_> = cp
        .store()
        .list_mcp_servers()
        .await?
        .iter()
        .map(|s| McpServerResponse::new(s, &cp))
        .collect();
    Ok(Json(McpServerList {
        count: servers.len(),
        servers,
    }))
}

async fn stored(cp: &ControlPlane, name: &str) -> Result<McpServerRecord, ApiError> {
    cp.store()
        .get_mcp_server(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("MCP server {name:?} not found")))
}

/// Get an MCP server.
#[utoipa::path(
    get,
    path = "/api/mcp/servers/{name}",
    tag = "mcp",
    params(("name" = String, Path, description = "Server name")),
    responses(
        (status = 200, description = "The server", body = McpServerResponse),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
    )
)]
pub(crate) async fn get_server(
    State(cp): State<ControlPlane>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<McpServerResponse>, ApiError> {
    Ok(Json(McpServerResponse::new(
        &stored(&cp, &name).await?,
        &cp,
    )))
}

/// Update an MCP server; omitted fields stay as they are. `env` and `headers` given replace
/// the stored map (`"<redacted>"` keeps an entry's stored value).
#[utoipa::path(
    put,
    path = "/api/mcp/servers/{name}",
    tag = "mcp",
    params(("name" = String, Path, description = "Server name")),
    request_body = McpServerInput,
    responses(
        (status = 200, description = "The updated server", body = McpServerResponse),
        (status = 400, description = "Invalid request (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "The server was replaced meanwhile; send the change again", body = ErrorBody),
    )
)]
pub(crate) async fn update_server(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<McpServerInput>,
) -> Result<Json<McpServerResponse>, ApiError> {
    // Literals are sealed for the stored server's id, which the update must still find.
    let id = stored(&cp, &name).await?.id;
    if let Some(given) = req.id
        && given != id
    {
        return Err(ApiError::invalid_field(
            "id",
            "does not match the stored server's id",
        ));
    }
    let change = change_of(&cp, &req, id, Some(&name))?;
    let event = audit.event("mcp_server.update", format!("mcp/servers/{name}"));
    let apply = |s: &mut McpServerRecord| -> Result<(), ValidationError> {
        if s.id != id {
            return Err(ValidationError::general(
                "the server was deleted and created again while this change was made; send it again",
            ));
        }
        change.apply(s)
    };
    let (record, version) = cp.store().update_mcp_server(&name, &apply, &event).await?;
    cp.committed(&event, version).await?;
    Ok(Json(McpServerResponse::new(&record, &cp)))
}

/// Delete an MCP server. Its tools are no longer served once data planes have the new
/// configuration; its past calls stay in the log.
#[utoipa::path(
    delete,
    path = "/api/mcp/servers/{name}",
    tag = "mcp",
    params(("name" = String, Path, description = "Server name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
    )
)]
pub(crate) async fn delete_server(
    State(cp): State<ControlPlane>,
    audit: Audit,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let event = audit.event("mcp_server.delete", format!("mcp/servers/{name}"));
    let version = cp.store().delete_mcp_server(&name, &event).await?;
    cp.committed(&event, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// The widest window one query may span (as `/api/logs`).
const MAX_WINDOW: Duration = Duration::days(31);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct McpCallsQuery {
    /// How many entries to return (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (send the same filters again).
    pub cursor: Option<String>,
    /// RFC 3339: calls that started at or after this time (default: 24 hours before `until`).
    /// At most 31 days before `until`.
    pub since: Option<String>,
    /// RFC 3339: calls that started before this time (default: now).
    pub until: Option<String>,
    /// Calls made with this virtual key.
    pub virtual_key_id: Option<String>,
    /// Calls billed to this team (its keys' calls while they were in it).
    pub team_id: Option<String>,
    /// The MCP server's name.
    pub server: Option<String>,
    /// The tool's own name on its server (not the served `<server>__<tool>`).
    pub tool: Option<String>,
    /// A status (`200`, `403`, `504`) or a class (`2xx`, `4xx`, `5xx`).
    pub status: Option<String>,
}

/// The virtual key a call was made with.
#[derive(Serialize, ToSchema)]
pub struct McpCallKey {
    pub id: String,
    /// The key's current name; null once the key is deleted.
    pub name: Option<String>,
}

/// One tool call through the gateway's `/mcp`.
#[derive(Serialize, ToSchema)]
pub struct McpCallEntry {
    pub request_id: String,
    /// RFC 3339 (milliseconds).
    pub started_at: String,
    pub virtual_key: McpCallKey,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub server: String,
    pub tool: String,
    /// 200 for a result (also one the tool marked as an error: `error_class` `tool_error`);
    /// otherwise the gateway's refusal or failure (403 not allowed, 404 unknown tool, 502
    /// server unreachable, 504 timeout).
    pub status: i32,
    /// Empty on success.
    pub error_class: String,
    pub latency_ms: i64,
}

impl From<McpCallRow> for McpCallEntry {
    fn from(r: McpCallRow) -> Self {
        McpCallEntry {
            request_id: r.request_id,
            started_at: timestamp(r.started_at),
            virtual_key: McpCallKey {
                id: r.virtual_key_id,
                name: r.key_name,
            },
            team_id: r.team_id,
            customer_id: r.customer_id,
            user_id: r.user_id,
            server: r.server,
            tool: r.tool,
            status: r.status,
            error_class: r.error_class,
            latency_ms: r.latency_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct McpCallList {
    pub calls: Vec<McpCallEntry>,
    pub count: usize,
    /// Pass as `cursor` (with the same filters) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The tool-call log, newest first, filtered, a page at a time (keyset pagination: follow
/// `next_cursor`). Scoped like `/api/logs`: admins and viewers see every call, team admins
/// their team's, members their own key's.
#[utoipa::path(
    get,
    path = "/api/mcp/calls",
    tag = "mcp",
    params(McpCallsQuery),
    responses(
        (status = 200, description = "Newest calls first", body = McpCallList),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_calls(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiQuery(q): ApiQuery<McpCallsQuery>,
) -> Result<Json<McpCallList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let until = match q.until.as_deref() {
        Some(raw) => parse_time("until", raw)?,
        None => OffsetDateTime::now_utc(),
    };
    let since = match q.since.as_deref() {
        Some(raw) => parse_time("since", raw)?,
        None => until - super::logs::DEFAULT_WINDOW,
    };
    if until <= since {
        return Err(ApiError::invalid_field("until", "must be after `since`"));
    }
    if until - since > MAX_WINDOW {
        return Err(ApiError::invalid_field(
            "since",
            format!(
                "must be at most {} days before `until` (page through longer periods window by window)",
                MAX_WINDOW.whole_days()
            ),
        ));
    }
    let status = q
        .status
        .as_deref()
        .map(|raw| StatusFilter::parse(raw).map_err(|why| ApiError::invalid_field("status", why)))
        .transpose()?;
    let query = McpCallQuery {
        since,
        until,
        virtual_key_id: parse_opt_id("virtual_key_id", q.virtual_key_id.as_deref())?,
        team_id: parse_opt_id("team_id", q.team_id.as_deref())?,
        server: q.server.clone(),
        tool: q.tool.clone(),
        status,
        scope: super::logs::log_scope(&caller),
        after: q
            .cursor
            .as_deref()
            .map(|c| super::logs::decode_cursor(c, "/api/mcp/calls"))
            .transpose()?,
        // One row more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut rows = cp.store().query_mcp_calls(&query).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|r| super::logs::encode_cursor(r.started_at, &r.request_id))
        })
        .flatten();
    let calls: Vec<_> = rows.into_iter().map(McpCallEntry::from).collect();
    Ok(Json(McpCallList {
        count: calls.len(),
        calls,
        next_cursor,
    }))
}
