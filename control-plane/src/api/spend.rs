//! `GET /api/spend` and `GET /api/spend/export`: usage and cost summed per key, user, team,
//! customer, model and provider, per hour or day or over the whole range ([`crate::spend`]),
//! narrowed to the caller's scope like the request logs (admins and viewers: everything; team
//! admins: what was billed to their team; members: their personal key). Read from the rollups
//! every usage insert keeps up to date, never from the raw records.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::logs::log_scope;
use super::{parse_opt_id, parse_time, timestamp};
use crate::ControlPlane;
use crate::spend::{
    Dimension, Interval, SpendQuery, SpendRow, SpendTotals, ceil_to, floor_to, usd_text,
};
use crate::usage_log::LogScope;

/// The range when `since` is not given.
pub(crate) const DEFAULT_RANGE: Duration = Duration::days(30);
/// The widest range of a day or whole-range report.
const MAX_RANGE: Duration = Duration::days(400);
/// The widest range of an hour-by-hour report.
const MAX_HOURLY_RANGE: Duration = Duration::days(31);
/// The most rows a JSON report returns (the CSV export allows more).
const MAX_JSON_ROWS: u32 = 10_000;
pub(crate) const MAX_CSV_ROWS: u32 = 1_000_000;
/// CSV rows per body chunk.
const CSV_CHUNK: usize = 1_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SpendParams {
    /// Comma-separated, any of `key`, `user`, `team`, `customer`, `model`, `provider` (default:
    /// none, one row of totals per bucket).
    pub group_by: Option<String>,
    /// `hour`, `day` or `none` (default): one row per group and UTC hour or day, or per group
    /// over the whole range.
    pub interval: Option<String>,
    /// RFC 3339, rounded down to the UTC hour (`interval=hour`) or day (default: 30 days before
    /// `until`). At most 400 days before `until` (31 days for `interval=hour`).
    pub since: Option<String>,
    /// RFC 3339, exclusive, rounded up to the UTC hour or day (default: now).
    pub until: Option<String>,
    /// Usage of this virtual key.
    pub virtual_key_id: Option<String>,
    /// Usage billed to this team.
    pub team_id: Option<String>,
    /// Usage billed to this customer (directly or through one of its teams).
    pub customer_id: Option<String>,
    /// Usage of this user's personal key.
    pub user_id: Option<String>,
    /// The resolved model.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// `json` (default) or `csv` (as `/api/spend/export`).
    pub format: Option<String>,
}

/// A grouped id with its current name (both null for "none": no team, no customer, no user).
#[derive(Serialize, ToSchema)]
pub struct SpendNamed {
    pub id: Option<String>,
    /// The current name; null once deleted.
    pub name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SpendTokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// Sums over a group.
#[derive(Serialize, ToSchema)]
pub struct SpendSums {
    /// Requests served or failed (refusals by limits not counted).
    pub requests: u64,
    /// Requests refused by budgets, rate, concurrency or allowance limits, or for want of a price.
    pub refused_requests: u64,
    /// Requests (not refusals) that ended in an error.
    pub error_requests: u64,
    pub tokens: SpendTokens,
    /// USD of the priced requests.
    pub cost_usd: f64,
    /// The same, exactly, in 10^-9 USD.
    pub cost_nano_usd: u64,
    /// Records without a cost (tokens used on a model without a price; never counted as $0).
    pub unpriced_requests: u64,
}

impl From<&SpendTotals> for SpendSums {
    fn from(t: &SpendTotals) -> Self {
        SpendSums {
            requests: t.requests,
            refused_requests: t.refused_requests,
            error_requests: t.error_requests,
            tokens: SpendTokens {
                input: t.input_tokens,
                output: t.output_tokens,
                cache_read: t.cache_read_input_tokens,
                cache_write: t.cache_write_input_tokens,
            },
            cost_usd: t.cost_nano_usd as f64 / 1e9,
            cost_nano_usd: t.cost_nano_usd,
            unpriced_requests: t.unpriced_requests,
        }
    }
}

/// One group (and bucket). Only the grouped fields are present.
#[derive(Serialize, ToSchema)]
pub struct SpendEntry {
    /// RFC 3339: the bucket's start (`interval` hour or day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The virtual key (`group_by=key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<SpendNamed>,
    /// The user whose personal key it was (`group_by=user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<SpendNamed>,
    /// The team billed (`group_by=team`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<SpendNamed>,
    /// The customer billed (`group_by=customer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<SpendNamed>,
    /// The resolved model (`group_by=model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(flatten)]
    pub sums: SpendSums,
}

#[derive(Serialize, ToSchema)]
pub struct SpendReport {
    /// The range reported (the bounds rounded to whole buckets).
    pub since: String,
    pub until: String,
    pub interval: String,
    pub group_by: Vec<String>,
    /// By bucket, then cost (highest first).
    pub rows: Vec<SpendEntry>,
    pub count: usize,
    /// Over every row.
    pub totals: SpendSums,
}

fn named(grouped: bool, id: Option<String>, name: Option<String>) -> Option<SpendNamed> {
    grouped.then_some(SpendNamed { id, name })
}

pub(crate) fn entry(q: &SpendQuery, r: SpendRow) -> SpendEntry {
    let has = |d| q.group_by.contains(&d);
    SpendEntry {
        bucket: r.bucket.map(timestamp),
        key: named(has(Dimension::Key), r.virtual_key_id, r.key_name),
        user: named(
            has(Dimension::User),
            r.user_id.map(|u| u.to_string()),
            r.user_name,
        ),
        team: named(
            has(Dimension::Team),
            r.team_id.map(|u| u.to_string()),
            r.team_name,
        ),
        customer: named(
            has(Dimension::Customer),
            r.customer_id.map(|u| u.to_string()),
            r.customer_name,
        ),
        model: r.model,
        provider: r.provider,
        sums: SpendSums::from(&r.totals),
    }
}

/// Parses and checks the parameters (400 naming the field).
pub(crate) fn spend_query(
    scope: LogScope,
    q: &SpendParams,
    limit: u32,
) -> Result<SpendQuery, ApiError> {
    let interval = q
        .interval
        .as_deref()
        .map(|raw| Interval::parse(raw).map_err(|why| ApiError::invalid_field("interval", why)))
        .transpose()?
        .unwrap_or(Interval::None);
    let group_by = q
        .group_by
        .as_deref()
        .map(|raw| {
            Dimension::parse_list(raw).map_err(|why| ApiError::invalid_field("group_by", why))
        })
        .transpose()?
        .unwrap_or_default();
    let step = interval.step();
    let until = match q.until.as_deref() {
        Some(raw) => parse_time("until", raw)?,
        None => OffsetDateTime::now_utc(),
    };
    let since = match q.since.as_deref() {
        Some(raw) => parse_time("since", raw)?,
        None => until - DEFAULT_RANGE,
    };
    if until <= since {
        return Err(ApiError::invalid_field("until", "must be after `since`"));
    }
    let max = if interval == Interval::Hour {
        MAX_HOURLY_RANGE
    } else {
        MAX_RANGE
    };
    // The range asked for (rounding it outwards to whole buckets may add up to one).
    if until - since > max {
        return Err(ApiError::invalid_field(
            "since",
            format!(
                "must be at most {} days before `until` with interval={}",
                max.whole_days(),
                interval.name()
            ),
        ));
    }
    let (since, until) = (floor_to(since, step), ceil_to(until, step));
    Ok(SpendQuery {
        since,
        until,
        interval,
        group_by,
        virtual_key_id: parse_opt_id("virtual_key_id", q.virtual_key_id.as_deref())?,
        team_id: parse_opt_id("team_id", q.team_id.as_deref())?,
        customer_id: parse_opt_id("customer_id", q.customer_id.as_deref())?,
        user_id: parse_opt_id("user_id", q.user_id.as_deref())?,
        model: q.model.clone(),
        provider: q.provider.clone(),
        scope,
        // One row more than allowed tells the report is too large.
        limit: limit + 1,
    })
}

async fn rows(cp: &ControlPlane, q: &SpendQuery, max: u32) -> Result<Vec<SpendRow>, ApiError> {
    let rows = cp.store().query_spend(q).await?;
    if rows.len() > max as usize {
        return Err(ApiError::invalid_field(
            "group_by",
            format!(
                "the report has more than {max} rows; narrow it (a shorter range, fewer groups, \
                 a filter) or use /api/spend/export"
            ),
        ));
    }
    Ok(rows)
}

/// Spend: usage and cost summed per group (`group_by`) and bucket (`interval`), from the
/// rollups kept as usage arrives. Only usage within the caller's scope is summed; the team,
/// customer and user are who the requests were billed to when they ran, the names the current
/// ones. `format=csv` answers as `/api/spend/export`.
#[utoipa::path(
    get,
    path = "/api/spend",
    tag = "spend",
    params(SpendParams),
    responses(
        (status = 200, description = "The report", body = SpendReport),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn get_spend(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiQuery(p): ApiQuery<SpendParams>,
) -> Result<Response, ApiError> {
    match p.format.as_deref() {
        None | Some("json") => {}
        Some("csv") => return export(&cp, &caller, &p).await,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "format",
                format!("{other:?} is not json or csv"),
            ));
        }
    }
    let q = spend_query(log_scope(&caller), &p, MAX_JSON_ROWS)?;
    let rows = rows(&cp, &q, MAX_JSON_ROWS).await?;
    let mut totals = SpendTotals::default();
    for r in &rows {
        totals.add(&r.totals);
    }
    let rows: Vec<SpendEntry> = rows.into_iter().map(|r| entry(&q, r)).collect();
    Ok(Json(SpendReport {
        since: timestamp(q.since),
        until: timestamp(q.until),
        interval: q.interval.name().to_owned(),
        group_by: q.group_by.iter().map(|d| d.name().to_owned()).collect(),
        count: rows.len(),
        rows,
        totals: SpendSums::from(&totals),
    })
    .into_response())
}

/// Spend as CSV (`text/csv`, a header row, then one row per group and bucket, as
/// `/api/spend` orders them): `bucket` (hour and day intervals), for each `group_by` dimension
/// its id and name columns (`key_id,key_name`, `team_id,team_name`, ...; `model`,
/// `provider`), then `requests`, `refused_requests`, `error_requests`, `input_tokens`,
/// `output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `cost_usd` (exact decimal),
/// `unpriced_requests`. Same parameters and scope as `/api/spend`; up to a million rows, read
/// at once while the request lasts: for large ranges, an export job (`POST /api/jobs/export`
/// with `kind: spend`) writes the same CSV in the background.
#[utoipa::path(
    get,
    path = "/api/spend/export",
    tag = "spend",
    params(SpendParams),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, description = "Invalid query (the field is named)", body = ErrorBody),
        (status = 401, description = "Not authorised", body = ErrorBody),
    )
)]
pub(crate) async fn export_spend(
    State(cp): State<ControlPlane>,
    caller: Principal,
    ApiQuery(p): ApiQuery<SpendParams>,
) -> Result<Response, ApiError> {
    if let Some(f) = p.format.as_deref().filter(|f| *f != "csv") {
        return Err(ApiError::invalid_field(
            "format",
            format!("{f:?}: the export is CSV only"),
        ));
    }
    export(&cp, &caller, &p).await
}

async fn export(
    cp: &ControlPlane,
    caller: &Principal,
    p: &SpendParams,
) -> Result<Response, ApiError> {
    let q = spend_query(log_scope(caller), p, MAX_CSV_ROWS)?;
    let rows = rows(cp, &q, MAX_CSV_ROWS).await?;
    let header_row = csv_header(&q);
    let filename = format!(
        "spend-{}-{}.csv",
        q.since.date(),
        (q.until - Duration::nanoseconds(1)).date()
    );
    // The rows are summed already; the body is written a chunk of rows at a time.
    let mut pending = Some(header_row);
    let mut rows = rows.into_iter();
    let chunks = std::iter::from_fn(move || {
        let mut w = csv::Writer::from_writer(Vec::with_capacity(CSV_CHUNK * 128));
        let mut any = false;
        if let Some(h) = pending.take() {
            w.write_record(&h).ok()?;
            any = true;
        }
        for r in rows.by_ref().take(CSV_CHUNK) {
            w.write_record(csv_row(&q, &r)).ok()?;
            any = true;
        }
        if !any {
            return None;
        }
        let bytes = w.into_inner().ok()?;
        Some(Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response())
}

pub(crate) fn csv_header(q: &SpendQuery) -> Vec<&'static str> {
    let mut h = Vec::new();
    if q.interval != Interval::None {
        h.push("bucket");
    }
    for d in &q.group_by {
        match d {
            Dimension::Key => h.extend(["key_id", "key_name"]),
            Dimension::User => h.extend(["user_id", "user_name"]),
            Dimension::Team => h.extend(["team_id", "team_name"]),
            Dimension::Customer => h.extend(["customer_id", "customer_name"]),
            Dimension::Model => h.push("model"),
            Dimension::Provider => h.push("provider"),
        }
    }
    h.extend([
        "requests",
        "refused_requests",
        "error_requests",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "unpriced_requests",
    ]);
    h
}

pub(crate) fn csv_row(q: &SpendQuery, r: &SpendRow) -> Vec<String> {
    let text = |v: &Option<String>| super::cells::text(v.as_deref());
    let id = |v: Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    let mut out = Vec::new();
    if q.interval != Interval::None {
        out.push(r.bucket.map(timestamp).unwrap_or_default());
    }
    for d in &q.group_by {
        match d {
            Dimension::Key => out.extend([text(&r.virtual_key_id), text(&r.key_name)]),
            Dimension::User => out.extend([id(r.user_id), text(&r.user_name)]),
            Dimension::Team => out.extend([id(r.team_id), text(&r.team_name)]),
            Dimension::Customer => out.extend([id(r.customer_id), text(&r.customer_name)]),
            Dimension::Model => out.push(text(&r.model)),
            Dimension::Provider => out.push(text(&r.provider)),
        }
    }
    let t = &r.totals;
    out.extend([
        t.requests.to_string(),
        t.refused_requests.to_string(),
        t.error_requests.to_string(),
        t.input_tokens.to_string(),
        t.output_tokens.to_string(),
        t.cache_read_input_tokens.to_string(),
        t.cache_write_input_tokens.to_string(),
        usd_text(t.cost_nano_usd),
        t.unpriced_requests.to_string(),
    ]);
    out
}
