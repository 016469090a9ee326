//! Spend rollups (`usage_rollup_hourly`, `usage_rollup_daily`, migration 0015): the sums a batch
//! of newly inserted usage records adds to each bucket. Pure code; the backends compute the
//! deltas of the rows their insert actually stored and upsert them in the same transaction.
//!
//! The deltas come back in a [`BTreeMap`], so every transaction upserts its buckets in the same
//! global order (bucket, key, team, customer, user, provider, model): two replicas inserting
//! batches that touch the same buckets wait for each other but never deadlock.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{UsageRecord, owner_id, saturating_i64, usage_started_at};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The key of a rollup row. Owner ids are [`Uuid::nil`] for "none" (the tables' sentinel).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RollupKey {
    /// The bucket's start, in Unix milliseconds (a UTC hour or day).
    pub bucket_ms: i64,
    pub virtual_key_id: String,
    pub team_id: Uuid,
    pub customer_id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    /// The resolved model.
    pub model: String,
}

impl RollupKey {
    /// The hourly bucket of a record that started at `started_ms` (as stored), billed as given
    /// (`None` owners become the tables' nil sentinel).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hourly(
        started_ms: i64,
        virtual_key_id: &str,
        team_id: Option<Uuid>,
        customer_id: Option<Uuid>,
        user_id: Option<Uuid>,
        provider: &str,
        model: &str,
    ) -> RollupKey {
        RollupKey {
            bucket_ms: started_ms.div_euclid(HOUR_MS) * HOUR_MS,
            virtual_key_id: virtual_key_id.to_owned(),
            team_id: team_id.unwrap_or_default(),
            customer_id: customer_id.unwrap_or_default(),
            user_id: user_id.unwrap_or_default(),
            provider: provider.to_owned(),
            model: model.to_owned(),
        }
    }

    /// The daily bucket holding this hourly one.
    pub(crate) fn daily(&self) -> RollupKey {
        RollupKey {
            bucket_ms: self.bucket_ms.div_euclid(DAY_MS) * DAY_MS,
            ..self.clone()
        }
    }
}

/// The sums of a rollup row (see migration 0015 for what each counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RollupSums {
    pub requests: i64,
    pub refused_requests: i64,
    pub error_requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_input_tokens: i64,
    pub cache_write_input_tokens: i64,
    pub cost_nano_usd: i64,
    pub unpriced_requests: i64,
}

impl RollupSums {
    fn of(r: &UsageRecord) -> Self {
        let refused = tollgate_proto::usage::refusal::BY_LIMITS.contains(&r.error_class.as_str());
        RollupSums {
            requests: i64::from(!refused),
            refused_requests: i64::from(refused),
            error_requests: i64::from(!refused && !r.error_class.is_empty()),
            input_tokens: saturating_i64(r.input_tokens),
            output_tokens: saturating_i64(r.output_tokens),
            cache_read_input_tokens: saturating_i64(r.cache_read_input_tokens),
            cache_write_input_tokens: saturating_i64(r.cache_write_input_tokens),
            cost_nano_usd: r.cost_nano_usd.map_or(0, saturating_i64),
            unpriced_requests: i64::from(r.cost_nano_usd.is_none()),
        }
    }

    fn add(&mut self, o: &RollupSums) {
        self.requests = self.requests.saturating_add(o.requests);
        self.refused_requests = self.refused_requests.saturating_add(o.refused_requests);
        self.error_requests = self.error_requests.saturating_add(o.error_requests);
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .saturating_add(o.cache_read_input_tokens);
        self.cache_write_input_tokens = self
            .cache_write_input_tokens
            .saturating_add(o.cache_write_input_tokens);
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(o.cost_nano_usd);
        self.unpriced_requests = self.unpriced_requests.saturating_add(o.unpriced_requests);
    }
}

/// A record's start time as stored (clamped like the `started_at` column), in Unix ms.
pub(crate) fn stored_start_ms(r: &UsageRecord) -> i64 {
    (usage_started_at(r.started_at_unix_ms).unix_timestamp_nanos() / 1_000_000) as i64
}

/// Hourly and daily deltas of the records `stored` says were inserted (called once per record,
/// in batch order).
pub(crate) struct Deltas {
    pub hourly: BTreeMap<RollupKey, RollupSums>,
    pub daily: BTreeMap<RollupKey, RollupSums>,
}

pub(crate) fn deltas<'a>(
    records: impl IntoIterator<Item = &'a UsageRecord>,
    mut stored: impl FnMut(&UsageRecord) -> bool,
) -> Deltas {
    let mut hourly: BTreeMap<RollupKey, RollupSums> = BTreeMap::new();
    for r in records {
        if !stored(r) {
            continue;
        }
        let key = RollupKey::hourly(
            stored_start_ms(r),
            &r.virtual_key_id,
            owner_id(&r.team_id),
            owner_id(&r.customer_id),
            owner_id(&r.user_id),
            &r.provider,
            &r.model_resolved,
        );
        hourly.entry(key).or_default().add(&RollupSums::of(r));
    }
    let mut daily: BTreeMap<RollupKey, RollupSums> = BTreeMap::new();
    for (k, s) in &hourly {
        daily.entry(k.daily()).or_default().add(s);
    }
    Deltas { hourly, daily }
}

/// A bucket start as an instant.
pub(crate) fn bucket_instant(ms: i64) -> time::OffsetDateTime {
    usage_started_at(ms)
}

/// The rollup tables, hourly first: every transaction upserts them in this order.
pub(crate) const TABLES: [&str; 2] = ["usage_rollup_hourly", "usage_rollup_daily"];

/// The upsert's column list and conflict clause for `table`, `{VALUES}` left for the backend.
pub(crate) fn upsert_sql(table: &str, values: &str) -> String {
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
    let set: Vec<String> = sums
        .iter()
        .map(|c| format!("{c} = {table}.{c} + EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} (bucket, virtual_key_id, team_id, customer_id, user_id, provider, \
         model, {}) {values} ON CONFLICT (bucket, virtual_key_id, team_id, customer_id, user_id, \
         provider, model) DO UPDATE SET {}",
        sums.join(", "),
        set.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, ms: i64, class: &str, cost: Option<u64>) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            virtual_key_id: "k".into(),
            provider: "p".into(),
            model_resolved: "m".into(),
            input_tokens: 10,
            output_tokens: 5,
            error_class: class.into(),
            started_at_unix_ms: ms,
            cost_nano_usd: cost,
            ..Default::default()
        }
    }

    #[test]
    fn deltas_count_only_stored_records_per_hour_and_day() {
        let recs = [
            rec("a", 0, "", Some(7)),
            rec("b", HOUR_MS - 1, "rate_limited", None),
            rec("c", HOUR_MS, "upstream_error", Some(1)),
            rec("d", -1, "", Some(100)),
            rec("skipped", 5, "", Some(1000)),
        ];
        let d = deltas(&recs, |r| r.request_id != "skipped");
        let hours: Vec<i64> = d.hourly.keys().map(|k| k.bucket_ms).collect();
        assert_eq!(hours, [-HOUR_MS, 0, HOUR_MS]);
        let first = d.hourly.values().nth(1).unwrap();
        assert_eq!(
            (first.requests, first.refused_requests, first.cost_nano_usd),
            (1, 1, 7)
        );
        assert_eq!(first.unpriced_requests, 1);
        assert_eq!(first.input_tokens, 20);
        let days: Vec<(i64, i64, i64)> = d
            .daily
            .iter()
            .map(|(k, s)| (k.bucket_ms, s.requests, s.error_requests))
            .collect();
        assert_eq!(days, [(-DAY_MS, 1, 0), (0, 2, 1)]);
        assert_eq!(d.daily.values().map(|s| s.cost_nano_usd).sum::<i64>(), 108);
    }

    #[test]
    fn owners_default_to_the_nil_sentinel() {
        let mut r = rec("a", 0, "", Some(1));
        r.team_id = "not an id".into();
        let d = deltas([&r], |_| true);
        let key = d.hourly.keys().next().unwrap();
        assert_eq!((key.team_id, key.user_id), (Uuid::nil(), Uuid::nil()));
    }
}
