//! `GET /api/logs` and `GET /api/logs/{request_id}`: request logs, one entry per inference
//! request the data planes reported ([`crate::usage_log`]), narrowed to the caller's scope
//! (admins and viewers: every key; team admins: their team's keys; members: their personal key).

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{Principal, Scope};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::{parse_opt_id, parse_time, timestamp};
use crate::ControlPlane;
use crate::usage_log::{LogScope, StatusFilter, UsageLogQuery, UsageLogRow};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// The window when `since` is not given.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::hours(24);
/// The widest window one query may span.
const MAX_WINDOW: Duration = Duration::days(31);
/// The largest `min_cost_usd` accepted.
const MAX_COST_USD: f64 = 1e9;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many entries to return (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (send the same filters again).
    pub cursor: Option<String>,
    /// RFC 3339: requests that started at or after this time (default: 24 hours before
    /// `until`). At most 31 days before `until`.
    pub since: Option<String>,
    /// RFC 3339: requests that started before this time (default: now).
    pub until: Option<String>,
    /// Requests made with this virtual key.
    pub virtual_key_id: Option<String>,
    /// Requests billed to this team (its keys' requests while they were in it).
    pub team_id: Option<String>,
    /// Requests billed to this customer (directly or through one of its teams).
    pub customer_id: Option<String>,
    /// Requests made with this user's personal key.
    pub user_id: Option<String>,
    /// The model requested or the model it resolved to.
    pub model: Option<String>,
    /// The provider that served (or refused) the request.
    pub provider: Option<String>,
    /// An HTTP status (`429`) or a class (`2xx`, `4xx`, `5xx`).
    pub status: Option<String>,
    /// Priced requests that cost at least this many USD (`0.01`).
    pub min_cost_usd: Option<String>,
}

/// The virtual key a request was made with.
#[derive(Serialize, ToSchema)]
pub struct LogKey {
    pub id: String,
    /// The key's current name; null once the key is deleted.
    pub name: Option<String>,
}

/// The user whose personal key served the request.
#[derive(Serialize, ToSchema)]
pub struct LogUser {
    pub id: Uuid,
    pub user_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LogTokens {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    /// Cache writes of every TTL.
    pub cache_write: i64,
    /// The part of `cache_write` written with the 1-hour TTL.
    pub cache_write_1h: i64,
}

/// One inference request. `user`, `team_id` and `customer_id` are who it was billed to when it
/// ran (a key moved to another team since keeps its past requests where they were); the key's
/// name is its current one.
#[derive(Serialize, ToSchema)]
pub struct LogEntry {
    pub request_id: String,
    /// RFC 3339 (milliseconds).
    pub started_at: String,
    pub virtual_key: LogKey,
    pub user: Option<LogUser>,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub provider: String,
    pub model_requested: String,
    pub model_resolved: String,
    pub provider_key_id: String,
    /// The HTTP status returned to the client.
    pub status: i32,
    /// Empty on success; otherwise the error's class (`rate_limited`, `upstream_error`, ...).
    pub error_class: String,
    pub stream: bool,
    pub tokens: LogTokens,
    /// USD; null when the model had no price.
    pub cost_usd: Option<f64>,
    pub latency_ms: i64,
    pub time_to_first_token_ms: i64,
    /// Which entry of the fallback list served (0: the model asked for).
    pub fallback_index: i32,
    /// The attempts given up before the one that served:
    /// `[{"provider", "model", "provider_key_id", "class", "status", "latency_ms"}]`; null when
    /// the first attempt served.
    #[schema(value_type = Option<Vec<Object>>)]
    pub attempts: Option<serde_json::Value>,
}

impl From<UsageLogRow> for LogEntry {
    fn from(r: UsageLogRow) -> Self {
        LogEntry {
            request_id: r.request_id,
            started_at: timestamp(r.started_at),
            virtual_key: LogKey {
                id: r.virtual_key_id,
                name: r.key_name,
            },
            user: r.user_id.map(|id| LogUser {
                id,
                user_name: r.user_name,
            }),
            team_id: r.team_id,
            customer_id: r.customer_id,
            provider: r.provider,
            model_requested: r.model_requested,
            model_resolved: r.model_resolved,
            provider_key_id: r.provider_key_id,
            status: r.status,
            error_class: r.error_class,
            stream: r.stream,
            tokens: LogTokens {
                input: r.input_tokens,
                output: r.output_tokens,
                cache_read: r.cache_read_input_tokens,
                cache_write: r.cache_write_input_tokens,
                cache_write_1h: r.cache_write_1h_input_tokens,
            },
            cost_usd: r.cost_nano_usd.map(|n| n as f64 / 1e9),
            latency_ms: r.latency_ms,
            time_to_first_token_ms: r.time_to_first_token_ms,
            fallback_index: r.fallback_index,
            attempts: r.attempts.and_then(|text| serde_json::from_str(&text).ok()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LogList {
    pub logs: Vec<LogEntry>,
    pub count: usize,
    /// Pass as `cursor` (with the same filters) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The opaque cursor of the page after a row started at `started_at` with `request_id` (newest
/// first): the request log's and the tool-call log's.
pub(super) fn encode_cursor(started_at: OffsetDateTime, request_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "v1:{}:{request_id}",
        started_at.unix_timestamp_nanos()
    ))
}

/// The position an [`encode_cursor`] cursor names; `route` names the list in the error.
pub(super) fn decode_cursor(raw: &str, route: &str) -> Result<(OffsetDateTime, String), ApiError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let rest = text.strip_prefix("v1:")?;
            let (nanos, request_id) = rest.split_once(':')?;
            let at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
            Some((at, request_id.to_owned()))
        })
        .ok_or_else(|| {
            ApiError::invalid_field(
                "cursor",
                format!("not a cursor from `next_cursor` of {route}"),
            )
        })
}

/// Whose requests the caller may see: a team admin those billed to their team, a member those
/// of their own key.
pub(crate) fn log_scope(caller: &Principal) -> LogScope {
    match caller.scope() {
        Scope::All => LogScope::All,
        Scope::Team(team) => LogScope::Team(team),
        Scope::Own => LogScope::Key(caller.personal_key_id),
    }
}

/// The query of the filters of `q` (not its page: `after` none, `limit` 0), within `scope`;
/// the window at most `max_window` (400 naming the field).
pub(crate) fn logs_query(
    q: &LogsQuery,
    scope: LogScope,
    max_window: Duration,
) -> Result<UsageLogQuery, ApiError> {
    let until = match q.until.as_deref() {
        Some(raw) => parse_time("until", raw)?,
        None => OffsetDateTime::now_utc(),
    };
    let since = match q.since.as_deref() {
        Some(raw) => parse_time("since", raw)?,
        None => until - DEFAULT_WINDOW,
    };
    if until <= since {
        return Err(ApiError::invalid_field("until", "must be after `since`"));
    }
    if until - since > max_window {
        return Err(ApiError::invalid_field(
            "since",
            format!(
                "must be at most {} days before `until` (page through longer periods window by window)",
                max_window.whole_days()
            ),
        ));
    }
    let status = q
        .status
        .as_deref()
        .map(|raw| StatusFilter::parse(raw).map_err(|why| ApiError::invalid_field("status", why)))
        .transpose()?;
    let min_cost_nano_usd = q
        .min_cost_usd
        .as_deref()
        .map(|raw| {
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|usd| usd.is_finite() && (0.0..=MAX_COST_USD).contains(usd))
                .map(|usd| (usd * 1e9).round() as i64)
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "min_cost_usd",
                        format!("{raw:?} is not an amount of USD between 0 and {MAX_COST_USD}"),
                    )
                })
        })
        .transpose()?;
    Ok(UsageLogQuery {
        since,
        until,
        virtual_key_id: parse_opt_id("virtual_key_id", q.virtual_key_id.as_deref())?,
        team_id: parse_opt_id("team_id", q.team_id.as_deref())?,
        customer_id: parse_opt_id("customer_id", q.customer_id.as_deref())?,
        user_id: parse_opt_id("user_id", q.user_id.as_deref())?,
        model: q.model.clone(),
        provider: q.provider.clone(),
        status,
        min_cost_nano_usd,
        scope,
        after: None,
        limit: 0,
    })
}

/// Request logs, newest first, filtered, a page at a time (keyset pagination: follow
/// `next_cursor`). Only requests within the caller's scope are listed; the owner fields are the
/// team, customer and user the request was billed to when it ran.
#[utoipa::path(
    get,
    path = "/api/logs",
    tag = "logs",
    params(LogsQuery),
    responses(
        (status = 200, description = "Newest requests first", body = LogList),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn list_logs(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<LogList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, "/api/logs"))
        .transpose()?;
    let query = UsageLogQuery {
        after,
        // One row more than asked tells whether there is a next page.
        limit: limit + 1,
        ..logs_query(&q, log_scope(&caller), MAX_WINDOW)?
    };
    let mut rows = cp.store().query_usage_logs(&query).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|r| encode_cursor(r.started_at, &r.request_id))
        })
        .flatten();
    let logs: Vec<_> = rows.into_iter().map(LogEntry::from).collect();
    Ok(Json(LogList {
        count: logs.len(),
        logs,
        next_cursor,
    }))
}

/// One request's log. 404 when there is none, or when it is outside the caller's scope.
#[utoipa::path(
    get,
    path = "/api/logs/{request_id}",
    tag = "logs",
    params(("request_id" = String, Path, description = "The request id (`x-request-id`)")),
    responses(
        (status = 200, description = "The request", body = LogEntry),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 404, description = "No such request within the caller's scope", body = ErrorBody),
    )
)]
pub(crate) async fn get_log(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiPath(request_id): ApiPath<String>,
) -> Result<Json<LogEntry>, ApiError> {
    let row = scoped_log(&cp, &caller, &request_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no request log {request_id:?}")))?;
    Ok(Json(LogEntry::from(row)))
}

/// The log of `request_id`, or `None` when there is none or it is outside the caller's scope
/// (the two are one answer: a caller cannot tell whether a request exists beyond its scope).
async fn scoped_log(
    cp: &ControlPlane,
    caller: &Principal,
    request_id: &str,
) -> Result<Option<UsageLogRow>, ApiError> {
    let Some(row) = cp.store().get_usage_log(request_id).await? else {
        return Ok(None);
    };
    let visible = match row.virtual_key_id.parse::<Uuid>() {
        Ok(key) => caller.covers_key(key, row.team_id),
        Err(_) => caller.scope() == Scope::All,
    };
    Ok(visible.then_some(row))
}

/// One recorded body.
#[derive(Serialize, ToSchema)]
pub struct ContentBody {
    /// The body as recorded: text (`encoding` `utf8`), or base64 when it is not UTF-8.
    pub body: String,
    #[schema(example = "utf8")]
    pub encoding: &'static str,
    /// The body's whole size in bytes when it was sent.
    pub bytes: u64,
    /// The recording holds less than the whole body (cut at the key's `max_body_bytes`).
    pub truncated: bool,
}

impl ContentBody {
    fn new(body: Vec<u8>, bytes: u64) -> ContentBody {
        let truncated = (body.len() as u64) < bytes;
        match String::from_utf8(body) {
            Ok(text) => ContentBody {
                body: text,
                encoding: "utf8",
                bytes,
                truncated,
            },
            Err(e) => ContentBody {
                body: base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                encoding: "base64",
                bytes,
                truncated,
            },
        }
    }
}

/// The bodies recorded for one request (content logging).
#[derive(Serialize, ToSchema)]
pub struct LogContent {
    pub request_id: String,
    /// The request, in Anthropic Messages format (a Bedrock- or OpenAI-format request as the
    /// gateway translated it).
    pub request: ContentBody,
    /// The answer as the gateway's Anthropic relay sent it: a Message, a stream's SSE events
    /// (the gateway's own pings left out), or an error envelope.
    pub response: ContentBody,
}

/// The request and response bodies recorded for one request, when its virtual key (or team)
/// records them (`content_logging`). Credentials the gateway recognises were masked with `*`
/// before the bodies left the data plane; headers are never recorded. Bodies are kept
/// `--content-retention-days` (default 7). Admins, and team admins for the requests billed to
/// their team; every read is written to the audit log (`log.content.read`) before the bodies
/// are returned. 404 when the request is outside the caller's scope or has no recorded bodies.
#[utoipa::path(
    get,
    path = "/api/logs/{request_id}/content",
    tag = "logs",
    params(("request_id" = String, Path, description = "The request id (`x-request-id`)")),
    responses(
        (status = 200, description = "The recorded bodies", body = LogContent),
        (status = 401, description = "Not authorised", body = ErrorBody),
        (status = 403, description = "Not an admin or team admin", body = ErrorBody),
        (status = 404, description = "No recorded bodies for this request within the caller's scope", body = ErrorBody),
        (status = 500, description = "The read could not be written to the audit log", body = ErrorBody),
    )
)]
pub(crate) async fn get_log_content(
    State(cp): State<ControlPlane>,
    caller: Principal,
    audit: super::audit::Audit,
    ApiPath(request_id): ApiPath<String>,
) -> Result<Json<LogContent>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no recorded bodies for request {request_id:?}"));
    scoped_log(&cp, &caller, &request_id)
        .await?
        .ok_or_else(not_found)?;
    let content = cp
        .store()
        .get_request_content(&request_id)
        .await?
        .ok_or_else(not_found)?;
    let event = audit
        .event("log.content.read", format!("logs/{request_id}"))
        .success();
    if let Err(e) = cp.store().append_audit(&event).await {
        tracing::warn!(error = %e, request_id = %request_id, "cannot audit a read of recorded bodies; refused");
        return Err(ApiError::Internal(
            "the read could not be written to the audit log; try again".to_owned(),
        ));
    }
    Ok(Json(LogContent {
        request_id,
        request: ContentBody::new(content.request, content.request_bytes),
        response: ContentBody::new(content.response, content.response_bytes),
    }))
}
