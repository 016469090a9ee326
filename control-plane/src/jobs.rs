//! Jobs: long operations that run in the background with visible progress (pure: their types,
//! the recomputation's slices and its pricing of stored usage). Storage is `store/jobs.rs`
//! (migration 0017), the runner `job_runner.rs`, the API `api/jobs.rs`.
//!
//! **Recomputing costs** re-prices the usage records of a time range with the prices in force
//! now (the shipped table and the current overrides, exactly as a data plane would price a new
//! request: [`tollgate_proto::pricing::Tokens::charge`]), one UTC hour at a time, and brings the
//! spend rollups of each hour in line in the same transaction. Its checkpoint is the next hour
//! to do, so a job taken over from a replica that died resumes where it stopped.
//!
//! **Exports** write spend, request logs or the audit log as CSV or JSON Lines into the store
//! (`job_output`, migration 0019), a bounded chunk at a time, each chunk committed with the
//! checkpoint that moves the cursor past it ([`ExportParams`] is what is stored; the rows and
//! their rendering are `api/exports.rs`). The caller's scope is stored with the job and applied
//! by whichever replica runs it. Outputs are downloadable for [`EXPORT_TTL`] after the job ends.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tollgate_proto::config::v1 as pb;
use tollgate_proto::pricing::{PriceTable, PricingError, Tokens};
use uuid::Uuid;

use crate::spend::floor_to;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    RecomputeCosts,
    /// Writes a file to download ([`ExportParams`]).
    Export,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::RecomputeCosts => "recompute_costs",
            JobKind::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "recompute_costs" => Some(JobKind::RecomputeCosts),
            "export" => Some(JobKind::Export),
            _ => None,
        }
    }
}

/// How long an export's output stays downloadable after its job ended; the job runner deletes
/// it then (the job itself stays listed).
pub const EXPORT_TTL: Duration = Duration::days(7);

/// What an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// As `GET /api/spend`.
    Spend,
    /// As `GET /api/logs`.
    Logs,
    /// As `GET /api/audit-logs`.
    Audit,
}

impl ExportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Spend => "spend",
            ExportKind::Logs => "logs",
            ExportKind::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    /// JSON Lines: one object per line, as the JSON API shows a row.
    Jsonl,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/x-ndjson",
        }
    }
}

/// Whose rows an export may hold: the scope of the caller who asked for it, fixed when it was
/// asked (as [`crate::usage_log::LogScope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportScope {
    All,
    /// The rows billed to this team (`None`: nothing).
    Team(Option<Uuid>),
    /// The rows of this key (`None`: nothing).
    Key(Option<Uuid>),
}

impl From<crate::usage_log::LogScope> for ExportScope {
    fn from(s: crate::usage_log::LogScope) -> Self {
        use crate::usage_log::LogScope;
        match s {
            LogScope::All => ExportScope::All,
            LogScope::Team(t) => ExportScope::Team(t),
            LogScope::Key(k) => ExportScope::Key(k),
        }
    }
}

impl From<ExportScope> for crate::usage_log::LogScope {
    fn from(s: ExportScope) -> Self {
        use crate::usage_log::LogScope;
        match s {
            ExportScope::All => LogScope::All,
            ExportScope::Team(t) => LogScope::Team(t),
            ExportScope::Key(k) => LogScope::Key(k),
        }
    }
}

/// An export as stored (`params` of the job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportParams {
    pub export: ExportKind,
    pub format: ExportFormat,
    /// The query, with the fields of the corresponding GET endpoint (strings); its default
    /// times are filled in when the job is created, so every run reads the same range.
    pub query: serde_json::Map<String, serde_json::Value>,
    pub scope: ExportScope,
    /// The signed-in user who asked (null: the admin token or loopback): they may download it.
    pub user_id: Option<Uuid>,
}

impl ExportParams {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json(v: &serde_json::Value) -> Result<ExportParams, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("invalid parameters: {e}"))
    }

    /// The file name offered for download: `spend-<job id>.csv`.
    pub fn filename(&self, job: Uuid) -> String {
        format!(
            "{}-{}.{}",
            self.export.as_str(),
            job.simple(),
            self.format.extension()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub state: JobState,
    /// Progress in the job's unit (usage records for a recomputation).
    pub done: u64,
    /// The whole, once known.
    pub total: Option<u64>,
    /// Where to resume (the job's own format).
    pub cursor: Option<String>,
    /// The latest progress text, or the error of a failed job.
    pub message: Option<String>,
    /// The audit actor who asked for it.
    pub created_by: String,
    /// The replica running it.
    pub owner: Option<String>,
    pub cancel_requested: bool,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub heartbeat_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

impl JobRecord {
    /// A new queued job.
    pub fn queued(kind: JobKind, params: serde_json::Value, created_by: String) -> JobRecord {
        JobRecord {
            id: Uuid::now_v7(),
            kind,
            params,
            state: JobState::Queued,
            done: 0,
            total: None,
            cursor: None,
            message: None,
            created_by,
            owner: None,
            cancel_requested: false,
            created_at: crate::model::now(),
            started_at: None,
            heartbeat_at: None,
            finished_at: None,
        }
    }
}

/// The range of a cost recomputation: `[since, until)`, whole UTC hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecomputeParams {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// [`RecomputeParams`] as stored (`params` of the job): RFC 3339 texts.
#[derive(Serialize, Deserialize)]
struct RecomputeWire {
    since: String,
    until: String,
}

impl RecomputeParams {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"since": rfc3339(self.since), "until": rfc3339(self.until)})
    }

    pub fn from_json(v: &serde_json::Value) -> Result<RecomputeParams, String> {
        let w: RecomputeWire =
            serde_json::from_value(v.clone()).map_err(|e| format!("invalid parameters: {e}"))?;
        Ok(RecomputeParams {
            since: parse_rfc3339(&w.since)?,
            until: parse_rfc3339(&w.until)?,
        })
    }

    /// The hour slice to do after `cursor` (the start of the next hour; `None`: from `since`),
    /// or `None` when the range is done.
    pub fn slice(
        &self,
        cursor: Option<OffsetDateTime>,
    ) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let from = cursor.unwrap_or(self.since).max(self.since);
        if from >= self.until {
            return None;
        }
        let to = (floor_to(from, Duration::HOUR) + Duration::HOUR).min(self.until);
        Some((from, to))
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// What re-pricing needs of a stored usage record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageCostRow {
    pub request_id: String,
    pub started_at: OffsetDateTime,
    pub virtual_key_id: String,
    pub team_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub provider: String,
    pub model_resolved: String,
    pub provider_key_id: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_input_tokens: i64,
    pub cache_write_input_tokens: i64,
    pub cache_write_1h_input_tokens: i64,
    pub cost_nano_usd: Option<i64>,
}

/// Prices stored usage the way a data plane with the current config prices a new request:
/// the provider's kind from its name, Vertex AI keys at their region's rates.
#[derive(Debug)]
pub struct Repricer {
    table: PriceTable,
    /// Provider name → kind (`bedrock`, `anthropic`, `vertex`, `openai`).
    kinds: HashMap<String, &'static str>,
    /// Vertex AI key id → region.
    vertex_regions: HashMap<String, String>,
}

impl Repricer {
    /// From the published snapshot. A Vertex region given as `env.NAME` is read from this
    /// process's environment (where the data planes read it); unset, the key is priced at the
    /// global endpoint's rates.
    pub fn new(snapshot: &pb::Snapshot) -> Result<Repricer, PricingError> {
        let table = PriceTable::shipped().with_overrides(&snapshot.price_overrides)?;
        let mut kinds = HashMap::new();
        let mut vertex_regions = HashMap::new();
        for p in &snapshot.providers {
            let kind = match pb::ProviderKind::try_from(p.kind) {
                Ok(pb::ProviderKind::Bedrock) => "bedrock",
                Ok(pb::ProviderKind::Anthropic) => "anthropic",
                Ok(pb::ProviderKind::Vertex) => "vertex",
                Ok(pb::ProviderKind::Openai) => "openai",
                _ => continue,
            };
            kinds.insert(p.name.clone(), kind);
            for k in &p.keys {
                let region =
                    k.vertex
                        .as_ref()
                        .and_then(|v| v.region.as_ref())
                        .and_then(|r| match &r.source {
                            Some(pb::value_ref::Source::Literal(v)) => Some(v.clone()),
                            Some(pb::value_ref::Source::Env(name)) => std::env::var(name).ok(),
                            None => None,
                        });
                if let Some(region) = region {
                    vertex_regions.insert(k.id.clone(), region);
                }
            }
        }
        Ok(Repricer {
            table,
            kinds,
            vertex_regions,
        })
    }

    /// The cost of `row` now, in nano-dollars; `None`: unpriced.
    pub fn cost(&self, row: &UsageCostRow) -> Option<u64> {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let tokens = Tokens::of_usage(
            n(row.input_tokens),
            n(row.output_tokens),
            n(row.cache_read_input_tokens),
            n(row.cache_write_input_tokens),
            n(row.cache_write_1h_input_tokens),
        );
        let price = match self.kinds.get(&row.provider) {
            Some(&"vertex") => match self.vertex_regions.get(&row.provider_key_id) {
                Some(region) => self.table.price_vertex(&row.model_resolved, region),
                None => self.table.price("vertex", &row.model_resolved),
            },
            Some(kind) => self.table.price(kind, &row.model_resolved),
            // A provider deleted since: its records are priced by their provider's name, which
            // is the kind for the four built-in names.
            None => self.table.price(&row.provider, &row.model_resolved),
        };
        tokens.charge(price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn export_params_round_trip_and_name_a_safe_file() {
        let team = Uuid::now_v7();
        let p = ExportParams {
            export: ExportKind::Logs,
            format: ExportFormat::Jsonl,
            query: serde_json::json!({"model": "m"})
                .as_object()
                .cloned()
                .unwrap(),
            scope: ExportScope::Team(Some(team)),
            user_id: None,
        };
        let v = p.to_json();
        assert_eq!(v["export"], "logs");
        assert_eq!(v["scope"], serde_json::json!({"team": team}));
        assert_eq!(ExportParams::from_json(&v).unwrap(), p);
        let id = Uuid::now_v7();
        let name = p.filename(id);
        assert_eq!(name, format!("logs-{}.jsonl", id.simple()));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        );
        assert!(ExportParams::from_json(&serde_json::json!({"export": "x"})).is_err());
    }

    #[test]
    fn a_range_is_walked_one_utc_hour_at_a_time() {
        let p = RecomputeParams {
            since: datetime!(2026-01-15 10:20 UTC),
            until: datetime!(2026-01-15 12:30 UTC),
        };
        let mut slices = Vec::new();
        let mut cursor = None;
        while let Some((from, to)) = p.slice(cursor) {
            slices.push((from, to));
            cursor = Some(to);
        }
        assert_eq!(
            slices,
            [
                (
                    datetime!(2026-01-15 10:20 UTC),
                    datetime!(2026-01-15 11:00 UTC)
                ),
                (
                    datetime!(2026-01-15 11:00 UTC),
                    datetime!(2026-01-15 12:00 UTC)
                ),
                (
                    datetime!(2026-01-15 12:00 UTC),
                    datetime!(2026-01-15 12:30 UTC)
                ),
            ]
        );
        assert_eq!(p.slice(Some(p.until)), None);
        assert_eq!(
            p.slice(Some(datetime!(2026-01-01 0:00 UTC))),
            Some((p.since, datetime!(2026-01-15 11:00 UTC))),
            "a cursor before the range starts at since"
        );
    }

    fn row(provider: &str, model: &str, key: &str, input: i64, output: i64) -> UsageCostRow {
        UsageCostRow {
            request_id: "r".into(),
            started_at: datetime!(2026-01-15 10:00 UTC),
            virtual_key_id: "vk".into(),
            team_id: None,
            customer_id: None,
            user_id: None,
            provider: provider.into(),
            model_resolved: model.into(),
            provider_key_id: key.into(),
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: 0,
            cache_write_input_tokens: 0,
            cache_write_1h_input_tokens: 0,
            cost_nano_usd: None,
        }
    }

    /// Rates in nano-dollars per token: an override of $1/$2 per million tokens is 1,000 and
    /// 2,000 per token.
    fn flat_override(provider: &str, model: &str, input: u64, output: u64) -> pb::PriceOverride {
        pb::PriceOverride {
            id: "o".into(),
            provider: provider.into(),
            models: vec![model.into()],
            rates: Some(pb::Rates {
                input,
                output,
                cache_write_5m: input,
                cache_write_1h: input,
                cache_read: input,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn records_are_priced_by_their_providers_kind_with_the_current_overrides() {
        let snapshot = pb::Snapshot {
            providers: vec![
                pb::Provider {
                    name: "ollama".into(),
                    kind: pb::ProviderKind::Openai as i32,
                    ..Default::default()
                },
                pb::Provider {
                    name: "bedrock".into(),
                    kind: pb::ProviderKind::Bedrock as i32,
                    ..Default::default()
                },
            ],
            price_overrides: vec![flat_override("openai", "llama3*", 1_000, 2_000)],
            ..Default::default()
        };
        let r = Repricer::new(&snapshot).unwrap();
        // A custom-named provider is priced by its kind: 10 × 1,000 + 5 × 2,000.
        assert_eq!(
            r.cost(&row("ollama", "llama3:8b", "k", 10, 5)),
            Some(20_000)
        );
        // No price: unpriced, not $0; no tokens: $0.
        assert_eq!(r.cost(&row("ollama", "mystery", "k", 10, 5)), None);
        assert_eq!(r.cost(&row("ollama", "mystery", "k", 0, 0)), Some(0));
        // The shipped table still applies to what no override names: Claude Haiku 4.5 on
        // Bedrock's global profile, $1 input and $5 output per million tokens.
        assert_eq!(
            r.cost(&row(
                "bedrock",
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "k",
                1_000,
                100
            )),
            Some(1_000 * 1_000 + 100 * 5_000)
        );
    }
}
