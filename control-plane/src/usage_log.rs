//! Request logs: reading stored usage records one request at a time
//! ([`Store::query_usage_logs`](crate::store::Store::query_usage_logs),
//! [`Store::get_usage_log`](crate::store::Store::get_usage_log), `GET /api/logs`).
//!
//! Each record carries who it was billed to when it was served (team, customer, personal-key
//! user: the data plane stamps them, migration 0014), joined with its key's current name (a key
//! moved to another team keeps its old requests under the old team; a deleted key's requests
//! show no name but keep their owner). Rows are ordered newest first by
//! `(started_at, request_id)`, and pages continue after the last row's pair (keyset cursor), so
//! rows arriving while a client pages never shift a page.
//!
//! Every query has a time window (`[since, until)`): in PostgreSQL it lets the planner prune the
//! daily partitions. Start times are stored with millisecond precision, so bounds are rounded up
//! to the next millisecond ([`ceil_to_millis`]), which keeps `started_at >= since` exact.

use time::OffsetDateTime;
use uuid::Uuid;

/// A status filter: one code, or a class (`2xx`, `4xx`, `5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Exact(u16),
    /// The hundreds digit: `4` is `400..=499`.
    Class(u8),
}

impl StatusFilter {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("{raw:?} is not a status code (e.g. 429) or `2xx`, `4xx`, `5xx`");
        match raw.as_bytes() {
            [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(StatusFilter::Class(d - b'0')),
            _ => raw
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(StatusFilter::Exact)
                .ok_or_else(bad),
        }
    }

    /// The half-open range `[low, high)` of codes it matches.
    pub fn range(self) -> (i32, i32) {
        match self {
            StatusFilter::Exact(c) => (i32::from(c), i32::from(c) + 1),
            StatusFilter::Class(d) => (i32::from(d) * 100, i32::from(d) * 100 + 100),
        }
    }
}

/// Whose requests a query may return, whatever its filters ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogScope {
    All,
    /// The requests billed to this team (`None`: nothing).
    Team(Option<Uuid>),
    /// The requests made with this key (`None`: nothing).
    Key(Option<Uuid>),
}

/// One page of request logs.
#[derive(Debug, Clone)]
pub struct UsageLogQuery {
    /// Requests that started at or after this time.
    pub since: OffsetDateTime,
    /// Requests that started before this time.
    pub until: OffsetDateTime,
    pub virtual_key_id: Option<Uuid>,
    /// The team the request was billed to.
    pub team_id: Option<Uuid>,
    /// The customer the request was billed to (the key's own or its team's).
    pub customer_id: Option<Uuid>,
    /// The user whose personal key served the request.
    pub user_id: Option<Uuid>,
    /// Matches the model requested or the model resolved.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<StatusFilter>,
    /// Priced requests that cost at least this many nano-dollars.
    pub min_cost_nano_usd: Option<i64>,
    /// Whose requests the caller may see.
    pub scope: LogScope,
    /// Continue after this `(started_at, request_id)` (newest first).
    pub after: Option<(OffsetDateTime, String)>,
    pub limit: u32,
}

/// The bodies recorded for one request (content logging), as the data plane kept them: each
/// cut to its key's `max_body_bytes` with credentials masked; the `*_bytes` are the whole sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContent {
    pub request: Vec<u8>,
    pub request_bytes: u64,
    pub response: Vec<u8>,
    pub response_bytes: u64,
}

/// A usage record with the owner it was billed to and its key's current name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageLogRow {
    pub request_id: String,
    pub virtual_key_id: String,
    pub provider: String,
    pub model_requested: String,
    pub model_resolved: String,
    pub provider_key_id: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_input_tokens: i64,
    pub cache_write_input_tokens: i64,
    pub cache_write_1h_input_tokens: i64,
    pub latency_ms: i64,
    pub time_to_first_token_ms: i64,
    pub status: i32,
    pub error_class: String,
    pub started_at: OffsetDateTime,
    pub stream: bool,
    /// `None`: unpriced.
    pub cost_nano_usd: Option<i64>,
    pub fallback_index: i32,
    /// The attempt trail (a JSON array), `None` when the first attempt served.
    pub attempts: Option<String>,
    /// The key's name; `None` once the key is deleted.
    pub key_name: Option<String>,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub user_name: Option<String>,
}

/// `t` rounded up to a whole millisecond (start times are stored in milliseconds); the last
/// representable instant stays as it is.
pub fn ceil_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let sub = t.nanosecond() % 1_000_000;
    if sub == 0 {
        return t;
    }
    t.checked_add(time::Duration::nanoseconds(i64::from(1_000_000 - sub)))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse() {
        assert_eq!(StatusFilter::parse("429"), Ok(StatusFilter::Exact(429)));
        assert_eq!(StatusFilter::parse("5xx"), Ok(StatusFilter::Class(5)));
        assert_eq!(StatusFilter::parse("2XX").unwrap().range(), (200, 300));
        assert_eq!(StatusFilter::Exact(404).range(), (404, 405));
        for bad in ["", "6xx", "99", "600", "abc", "4x", "-1"] {
            assert!(StatusFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_round_up_to_milliseconds() {
        let t = time::macros::datetime!(2026-01-15 10:00:00.123_000_001 UTC);
        assert_eq!(
            ceil_to_millis(t),
            time::macros::datetime!(2026-01-15 10:00:00.124 UTC)
        );
        let whole = time::macros::datetime!(2026-01-15 10:00:00.123 UTC);
        assert_eq!(ceil_to_millis(whole), whole);
        let last = time::macros::datetime!(9999-12-31 23:59:59.999_999_999 UTC);
        assert_eq!(ceil_to_millis(last), last);
    }
}
