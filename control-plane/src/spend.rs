//! Spend reports ([`Store::query_spend`](crate::store::Store::query_spend), `GET /api/spend`):
//! usage summed per key, user, team, customer, model and provider, per UTC hour or day or over
//! the whole range, read from the rollup tables (migration 0015) that every usage insert keeps
//! up to date, never from the raw records.
//!
//! Bounds are whole buckets: `since` and `until` must be UTC hours (`Interval::Hour`, read from
//! the hourly table) or UTC days (`Interval::Day` and `Interval::None`, read from the daily
//! table); the API rounds a caller's bounds outwards ([`floor_to`], [`ceil_to`]).
//!
//! The team, customer and user of a row are who the requests were billed to when they ran (as
//! stored on each usage record); the names are the current ones (`None` once deleted).

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::usage_log::LogScope;

/// What a report can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Key,
    User,
    Team,
    Customer,
    Model,
    Provider,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Key,
        Dimension::User,
        Dimension::Team,
        Dimension::Customer,
        Dimension::Model,
        Dimension::Provider,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Key => "key",
            Dimension::User => "user",
            Dimension::Team => "team",
            Dimension::Customer => "customer",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
        }
    }

    /// The rollup column.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Dimension::Key => "virtual_key_id",
            Dimension::User => "user_id",
            Dimension::Team => "team_id",
            Dimension::Customer => "customer_id",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
        }
    }

    /// A comma-separated list (`team,model`), without repeats, in the order given.
    pub fn parse_list(raw: &str) -> Result<Vec<Dimension>, String> {
        let mut out = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let d = Dimension::ALL
                .into_iter()
                .find(|d| d.name() == part)
                .ok_or_else(|| {
                    format!("{part:?} is not one of key, user, team, customer, model, provider")
                })?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// The buckets of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    /// One bucket: the whole range.
    None,
}

impl Interval {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            "none" => Ok(Interval::None),
            _ => Err(format!("{raw:?} is not one of hour, day, none")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::None => "none",
        }
    }

    /// The granularity of the bounds (and of the table read).
    pub fn step(self) -> Duration {
        match self {
            Interval::Hour => Duration::HOUR,
            Interval::Day | Interval::None => Duration::DAY,
        }
    }
}

/// `t` rounded down to a multiple of `step` (an hour or a day) since the Unix epoch (UTC).
pub fn floor_to(t: OffsetDateTime, step: Duration) -> OffsetDateTime {
    let step_s = step.whole_seconds();
    let s = t.unix_timestamp().div_euclid(step_s) * step_s;
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(t)
}

/// `t` rounded up to a multiple of `step`.
pub fn ceil_to(t: OffsetDateTime, step: Duration) -> OffsetDateTime {
    let down = floor_to(t, step);
    if down == t { t } else { down + step }
}

/// One spend report.
#[derive(Debug, Clone)]
pub struct SpendQuery {
    /// A bucket start (see the module docs).
    pub since: OffsetDateTime,
    /// A bucket start; exclusive.
    pub until: OffsetDateTime,
    pub interval: Interval,
    /// In the caller's order, without repeats.
    pub group_by: Vec<Dimension>,
    pub virtual_key_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// The resolved model.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Whose usage the caller may see (as for request logs).
    pub scope: LogScope,
    /// At most this many rows.
    pub limit: u32,
}

/// Sums over a group of usage records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendTotals {
    /// Records that are not refusals by limits.
    pub requests: u64,
    /// Refusals by limits (budget, rate, concurrency, unpriced model, allowance moving).
    pub refused_requests: u64,
    /// Requests (not refusals) that ended in an error.
    pub error_requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    /// The summed cost of the priced records.
    pub cost_nano_usd: u64,
    /// Records without a cost (tokens used on a model without a price).
    pub unpriced_requests: u64,
}

impl SpendTotals {
    pub fn add(&mut self, o: &SpendTotals) {
        self.requests += o.requests;
        self.refused_requests += o.refused_requests;
        self.error_requests += o.error_requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_input_tokens += o.cache_read_input_tokens;
        self.cache_write_input_tokens += o.cache_write_input_tokens;
        self.cost_nano_usd += o.cost_nano_usd;
        self.unpriced_requests += o.unpriced_requests;
    }
}

/// One row of a report: the group's values (only those of the grouped dimensions are set; an
/// owner id is `None` also when the group is "no team/customer/user"), the bucket's start for
/// hour and day intervals, and the sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpendRow {
    pub bucket: Option<OffsetDateTime>,
    pub virtual_key_id: Option<String>,
    /// The key's current name.
    pub key_name: Option<String>,
    pub team_id: Option<Uuid>,
    pub team_name: Option<String>,
    pub customer_id: Option<Uuid>,
    pub customer_name: Option<String>,
    pub user_id: Option<Uuid>,
    pub user_name: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub totals: SpendTotals,
}

/// The exact decimal text of a nano-dollar amount (`1.250000000`).
pub fn usd_text(nano: u64) -> String {
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_parse_in_order_without_repeats() {
        assert_eq!(
            Dimension::parse_list("team, model,team"),
            Ok(vec![Dimension::Team, Dimension::Model])
        );
        assert_eq!(Dimension::parse_list(""), Ok(vec![]));
        assert!(Dimension::parse_list("team,nope").is_err());
        assert_eq!(Interval::parse("day"), Ok(Interval::Day));
        assert!(Interval::parse("week").is_err());
    }

    #[test]
    fn bounds_round_to_whole_buckets() {
        let t = time::macros::datetime!(2026-01-15 10:20:00 UTC);
        assert_eq!(
            floor_to(t, Duration::HOUR),
            time::macros::datetime!(2026-01-15 10:00 UTC)
        );
        assert_eq!(
            ceil_to(t, Duration::DAY),
            time::macros::datetime!(2026-01-16 00:00 UTC)
        );
        let midnight = time::macros::datetime!(2026-01-15 00:00 UTC);
        assert_eq!(ceil_to(midnight, Duration::DAY), midnight);
        assert_eq!(usd_text(1_250_000_000), "1.250000000");
        assert_eq!(usd_text(7), "0.000000007");
    }
}
