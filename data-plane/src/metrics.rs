//! The data plane's Prometheus metrics, all defined here: every name, type, help text and label
//! set ([`DEFS`]), what each request adds ([`Metrics::observe`]) and what is read when `/metrics`
//! is scraped ([`register`], [`register_reporter`]). README "Metrics" is the reference table; a
//! test keeps it and [`DEFS`] alike. The crate is `prometheus-client` (the Prometheus project's
//! Rust client): a data plane's figures live in its own [`Metrics`], not in a process-global
//! recorder, so tests with several data planes in one process each read their own.
//!
//! **Per request.** [`Metrics::observe`] runs once per usage record, in `server::Draft::finish`,
//! so every route (Anthropic, Bedrock-format, OpenAI-format) counts alike; requests refused
//! before their virtual key was known write no record and are counted by [`crate::refusals`]
//! instead. A request adds to series resolved once per route (`RouteSeries`: one read-locked
//! hash lookup of its `(provider, model)` labels and an `Arc` clone, then atomic increments and
//! the histograms' mutexes), and allocates nothing once its route was seen
//! (`tests/metrics_alloc.rs`). Each failed attempt and a limit refusal add one family lookup
//! (no allocation either, unless an attempt's provider has left the config since).
//!
//! **Bounded labels.** `provider` is a configured provider name (`none`: refused before it was
//! routed). `model` is the upstream model id when the configuration names it (an alias target or
//! a model a provider key lists: [`ModelLabels`]), else `other`: a client's model string never
//! becomes a label. `status` is the code for the statuses the gateway and its providers answer
//! ([`STATUSES`]), else its class (`4xx`...). Error classes, levels and reasons are the gateway's
//! own constants. A route's series stay after a config change removes it (counters do not go
//! back); their number is bounded by the configurations the process has served.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::usage::v1::UsageRecord;

use crate::DataPlane;
use crate::health::{self, KeyHealth};
use crate::limits::{Exhausted, LevelId};
use crate::reporter::ReporterStats;
use crate::runtime::RuntimeHandle;

/// A metric's definition. `name` is the registered name: a counter is exposed with `_total`
/// appended ([`Def::exposed`]).
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl Def {
    /// The name series carry (`…_total` for counters; histograms add `_bucket`, `_sum`,
    /// `_count`).
    pub fn exposed(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            _ => self.name.to_owned(),
        }
    }
}

const fn def(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
) -> Def {
    Def {
        name,
        kind,
        help,
        labels,
    }
}

use MetricType::{Counter as C, Gauge as G, Histogram as H};

const ROUTE: &[&str] = &["provider", "model"];

pub const REQUESTS: Def = def(
    "tollgate_requests",
    C,
    &["provider", "model", "status"],
    "Requests with a valid virtual key (one usage record each), by the provider and model that \
     served or would have served them (none: refused before routing) and the HTTP status",
);
pub const REQUEST_DURATION: Def = def(
    "tollgate_request_duration_seconds",
    H,
    ROUTE,
    "Time from a request's arrival to the end of its answer (a stream's last byte)",
);
pub const TIME_TO_FIRST_TOKEN: Def = def(
    "tollgate_time_to_first_token_seconds",
    H,
    ROUTE,
    "Time from a streamed request's arrival to the first upstream output relayed to the client",
);
pub const TOKENS: Def = def(
    "tollgate_tokens",
    C,
    &["provider", "model", "kind"],
    "Tokens of answered requests: input, output, cache_read, cache_write (both cache TTLs)",
);
pub const COST: Def = def(
    "tollgate_cost_nano_usd",
    C,
    ROUTE,
    "What requests cost in nano-dollars (1e-9 USD), priced by the data plane",
);
pub const UNPRICED: Def = def(
    "tollgate_unpriced_requests",
    C,
    ROUTE,
    "Requests that used tokens of a model without a price (their cost is unknown, not 0)",
);
pub const RETRIES: Def = def(
    "tollgate_retries",
    C,
    ROUTE,
    "Attempts given up before the one that answered (another key, a retry after backoff, a \
     fallback, thinking blocks removed), by the route that answered",
);
pub const FALLBACKS: Def = def(
    "tollgate_fallbacks",
    C,
    ROUTE,
    "Requests whose last attempt went to an entry of the fallback list, by that entry's route",
);
pub const UPSTREAM_ERRORS: Def = def(
    "tollgate_upstream_errors",
    C,
    &["provider", "class"],
    "Failed upstream attempts: each attempt given up, and the answer when it is an upstream \
     failure, by class",
);
pub const LIMIT_REFUSALS: Def = def(
    "tollgate_limit_refusals",
    C,
    &["level", "reason"],
    "Requests refused by budgets, rate limits or concurrency, by the level that refused \
     (provider_config, virtual_key, team, customer) and what was exhausted",
);
pub const REFUSED: Def = def(
    "tollgate_requests_refused",
    C,
    &["reason"],
    "Requests refused before a virtual key was established (they write no usage record)",
);
pub const CONFIG_VERSION: Def = def(
    "tollgate_config_version",
    G,
    &[],
    "Config version being served (0: none yet)",
);
pub const CONFIG_PUBLISHED: Def = def(
    "tollgate_config_published_timestamp_seconds",
    G,
    &[],
    "When the control plane built the config being served (unix seconds; 0: none yet)",
);
pub const CONFIG_APPLIED: Def = def(
    "tollgate_config_applied_timestamp_seconds",
    G,
    &[],
    "When this data plane applied the config being served (unix seconds; 0: none yet)",
);
pub const CONFIG_LAG: Def = def(
    "tollgate_config_lag_seconds",
    G,
    &[],
    "Seconds between the served config's publication and its application here",
);
pub const CONTROL_PLANE_CONNECTED: Def = def(
    "tollgate_control_plane_connected",
    G,
    &[],
    "1 while the config stream to the control plane is up (always 1 in all-in-one)",
);
pub const CONTROL_PLANE_CONTACT: Def = def(
    "tollgate_control_plane_last_contact_timestamp_seconds",
    G,
    &[],
    "When the control plane's config stream last delivered a message (unix seconds; split \
     deployment only)",
);
pub const USAGE_QUEUE: Def = def(
    "tollgate_usage_queue_length",
    G,
    &[],
    "Usage records in the in-memory queue between requests and the reporter (or store)",
);
pub const USAGE_QUEUE_DROPPED: Def = def(
    "tollgate_usage_queue_dropped",
    C,
    &[],
    "Usage records dropped because the in-memory queue was full",
);
pub const USAGE_RECEIVED: Def = def(
    "tollgate_usage_records_received",
    C,
    &[],
    "Usage records handed to the reporter (split data plane)",
);
pub const USAGE_ACKED: Def = def(
    "tollgate_usage_records_acked",
    C,
    &[],
    "Usage records the control plane acknowledged",
);
pub const USAGE_PENDING: Def = def(
    "tollgate_usage_records_pending",
    G,
    &[],
    "Usage records spooled and not yet acknowledged",
);
pub const USAGE_DROPPED: Def = def(
    "tollgate_usage_records_dropped",
    C,
    &[],
    "Usage records dropped because the spool was full",
);
pub const USAGE_CONTENT_DROPPED: Def = def(
    "tollgate_usage_content_dropped",
    C,
    &[],
    "Usage records sent without their recorded bodies because the data plane held its limit of them",
);
pub const USAGE_CONTENT_HELD: Def = def(
    "tollgate_usage_content_held_bytes",
    G,
    &[],
    "Bytes of recorded bodies (content logging) held in memory on their way to the control plane",
);
pub const USAGE_STREAM_CONNECTED: Def = def(
    "tollgate_usage_stream_connected",
    G,
    &[],
    "1 while the usage stream to the control plane is open",
);
pub const KEY_EJECTED: Def = def(
    "tollgate_provider_key_ejected",
    G,
    &["provider", "key_id"],
    "1 while outlier detection keeps the provider key out of service (ejected, or awaiting a \
     probe)",
);
pub const KEY_FAILURES: Def = def(
    "tollgate_provider_key_consecutive_failures",
    G,
    &["provider", "key_id"],
    "Failed attempts of the provider key since its last success",
);
pub const KEY_EJECTIONS: Def = def(
    "tollgate_provider_key_ejections",
    C,
    &["provider", "key_id"],
    "Times outlier detection ejected the provider key",
);

pub const MCP_TOOL_CALLS: Def = def(
    "tollgate_mcp_tool_calls",
    C,
    &["server", "status"],
    "Tool calls through the MCP gateway (`/mcp`), by MCP server (none: an unknown tool) and the \
     call's status (200, also for results the tool marked as errors; 403 not allowed, 404 \
     unknown, 502 unreachable or an upstream error, 504 timeout)",
);
pub const MCP_SERVER_UP: Def = def(
    "tollgate_mcp_server_up",
    G,
    &["server"],
    "1 while the MCP gateway's connection to the configured MCP server is ready, else 0 \
     (connecting, failed)",
);

/// Every data-plane metric, in the order `/metrics` shows them.
pub const DEFS: &[Def] = &[
    REQUESTS,
    REQUEST_DURATION,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
    COST,
    UNPRICED,
    RETRIES,
    FALLBACKS,
    UPSTREAM_ERRORS,
    LIMIT_REFUSALS,
    REFUSED,
    CONFIG_VERSION,
    CONFIG_PUBLISHED,
    CONFIG_APPLIED,
    CONFIG_LAG,
    CONTROL_PLANE_CONNECTED,
    CONTROL_PLANE_CONTACT,
    USAGE_QUEUE,
    USAGE_QUEUE_DROPPED,
    USAGE_RECEIVED,
    USAGE_ACKED,
    USAGE_PENDING,
    USAGE_DROPPED,
    USAGE_CONTENT_DROPPED,
    USAGE_CONTENT_HELD,
    USAGE_STREAM_CONNECTED,
    KEY_EJECTED,
    KEY_FAILURES,
    KEY_EJECTIONS,
    MCP_TOOL_CALLS,
    MCP_SERVER_UP,
];

/// Upper bounds (seconds) of the request duration histogram: coding agents' requests run from
/// a fraction of a second (count_tokens, refusals) to minutes (long streams).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Upper bounds (seconds) of the time-to-first-token histogram.
pub const TTFT_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0,
];

/// The `status` label values: the statuses the gateway and its providers answer, as codes;
/// any other status by its class.
pub const STATUSES: [&str; 20] = [
    "200", "400", "401", "403", "404", "405", "408", "413", "429", "499", "500", "502", "503",
    "504", "529", "2xx", "3xx", "4xx", "5xx", "other",
];

/// The [`STATUSES`] slot of an HTTP status.
fn status_slot(status: u32) -> usize {
    let code = match status {
        200 => Some(0),
        400 => Some(1),
        401 => Some(2),
        403 => Some(3),
        404 => Some(4),
        405 => Some(5),
        408 => Some(6),
        413 => Some(7),
        429 => Some(8),
        499 => Some(9),
        500 => Some(10),
        502 => Some(11),
        503 => Some(12),
        504 => Some(13),
        529 => Some(14),
        _ => None,
    };
    code.unwrap_or(match status / 100 {
        2 => 15,
        3 => 16,
        4 => 17,
        5 => 18,
        _ => 19,
    })
}

/// The `kind` values of [`TOKENS`], in the order of [`RouteSeries::tokens`].
pub const TOKEN_KINDS: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

/// The `class` of a failed attempt kept in a usage record (`providers::Retryable` classes, or
/// `thinking_unverifiable`).
fn attempt_class(class: &str) -> &'static str {
    match class {
        "rate_limited" => "rate_limited",
        "overloaded" => "overloaded",
        "server_error" => "server_error",
        "unreachable" => "unreachable",
        "timeout" => "timeout",
        "key_rejected" => "key_rejected",
        "thinking_unverifiable" => "thinking_unverifiable",
        _ => "other",
    }
}

/// The `class` of a request's answer when it is an upstream failure: an upstream error relayed
/// (`upstream_error`, by status, in the classes of a failed attempt; `client_error` for other
/// 4xx), or the gateway's own `upstream_*` error (no answer, a broken or invalid one).
fn answer_class(status: u32, error_class: &str) -> Option<&'static str> {
    Some(match error_class {
        "upstream_error" => match status {
            429 => "rate_limited",
            529 => "overloaded",
            401 | 403 => "key_rejected",
            500..=599 => "server_error",
            _ => "client_error",
        },
        crate::upstream::TIMEOUT_CLASS => "timeout",
        crate::upstream::UNREACHABLE_CLASS => "unreachable",
        "upstream_idle_timeout" => "idle_timeout",
        "upstream_read" => "read_error",
        "upstream_truncated" => "truncated",
        "upstream_stream_exception" => "stream_exception",
        "upstream_invalid" => "invalid_answer",
        "upstream_corrupt" => "corrupt_answer",
        "upstream_too_large" => "too_large",
        c if c.starts_with("upstream_") => "other",
        _ => return None,
    })
}

/// The `provider` and `model` labels of a request's route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    pub provider: Arc<str>,
    pub model: Arc<str>,
}

/// `model="other"`: an upstream model the configuration does not name.
static OTHER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("other"));

/// The labels of requests refused before routing.
static UNROUTED: LazyLock<RouteLabels> = LazyLock::new(|| RouteLabels {
    provider: Arc::from("none"),
    model: Arc::from("none"),
});

/// The upstream model ids a provider's configuration names (its keys' alias targets and listed
/// models): the values its `model` label may take besides `other`. Built with the runtime.
#[derive(Debug, Default)]
pub struct ModelLabels(HashSet<Arc<str>>);

impl ModelLabels {
    pub fn of(provider: &pb::Provider) -> ModelLabels {
        let mut names = HashSet::new();
        for k in &provider.keys {
            for target in k.aliases.values() {
                names.insert(Arc::from(target.as_str()));
            }
            for m in k.models.iter().filter(|m| m.as_str() != "*") {
                names.insert(Arc::from(m.as_str()));
            }
        }
        ModelLabels(names)
    }

    /// The label of `upstream_model`: the configured name (no allocation), or `other`.
    pub fn label(&self, upstream_model: &str) -> Arc<str> {
        Arc::clone(self.0.get(upstream_model).unwrap_or(&OTHER))
    }
}

/// The labels of [`LIMIT_REFUSALS`]: the level that refused and what was exhausted
/// (`allowance_moving`: this node's allowance, while the limit has room elsewhere in the fleet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitRefusal {
    pub level: &'static str,
    pub reason: &'static str,
}

impl LimitRefusal {
    pub fn of(r: &crate::limits::Refusal) -> LimitRefusal {
        let level = match r.level {
            LevelId::ProviderConfig { .. } => "provider_config",
            LevelId::VirtualKey(_) => "virtual_key",
            LevelId::Team(_) => "team",
            LevelId::Customer(_) => "customer",
        };
        let reason = match r.exhausted {
            _ if r.temporary => "allowance_moving",
            Exhausted::Budget { .. } => "budget",
            Exhausted::Requests { .. } => "requests",
            Exhausted::Tokens { .. } => "tokens",
            Exhausted::Concurrency { .. } => "concurrency",
            Exhausted::Unpriced { .. } => "unpriced",
        };
        LimitRefusal { level, reason }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    provider: Arc<str>,
    model: Arc<str>,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenLabels {
    provider: Arc<str>,
    model: Arc<str>,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct McpCallLabels {
    server: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamErrorLabels {
    provider: Arc<str>,
    class: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

/// The series of one route, resolved once: handles on the families' metrics (each an `Arc` of
/// the family's own), created when first used.
#[derive(Debug)]
struct RouteSeries {
    labels: RouteLabels,
    duration: Histogram,
    ttft: OnceLock<Histogram>,
    requests: [OnceLock<Counter>; STATUSES.len()],
    tokens: [OnceLock<Counter>; TOKEN_KINDS.len()],
    cost: OnceLock<Counter>,
    unpriced: OnceLock<Counter>,
    retries: OnceLock<Counter>,
    fallbacks: OnceLock<Counter>,
}

/// The per-request metrics of one data plane ([`DataPlane::metrics`]).
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    ttft: HistogramFamily,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<RouteLabels, Counter>,
    unpriced: Family<RouteLabels, Counter>,
    retries: Family<RouteLabels, Counter>,
    fallbacks: Family<RouteLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    limit_refusals: Family<LimitRefusal, Counter>,
    mcp_calls: Family<McpCallLabels, Counter>,
    routes: RwLock<HashMap<RouteLabels, Arc<RouteSeries>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            ttft: Family::new_with_constructor(ttft_histogram),
            tokens: Family::default(),
            cost: Family::default(),
            unpriced: Family::default(),
            retries: Family::default(),
            fallbacks: Family::default(),
            upstream_errors: Family::default(),
            limit_refusals: Family::default(),
            mcp_calls: Family::default(),
            routes: RwLock::default(),
        }
    }
}

impl Metrics {
    /// Adds a finished usage record: `route` names what served (`None`: refused before routing),
    /// `refusal` the limit that refused the request, if one did (counted only when the record's
    /// class says the limits refused it: a fallback entry refused by limits is only skipped).
    pub fn observe(
        &self,
        r: &UsageRecord,
        route: Option<&RouteLabels>,
        refusal: Option<LimitRefusal>,
        runtime: &RuntimeHandle,
    ) {
        let s = self.series(route.unwrap_or(&UNROUTED));
        let status = status_slot(r.status);
        s.requests[status]
            .get_or_init(|| {
                self.requests.get_or_create_owned(&RequestLabels {
                    provider: Arc::clone(&s.labels.provider),
                    model: Arc::clone(&s.labels.model),
                    status: STATUSES[status],
                })
            })
            .inc();
        s.duration.observe(f64::from(r.latency_ms) / 1000.0);
        if r.stream && r.time_to_first_token_ms > 0 {
            s.ttft
                .get_or_init(|| self.ttft.get_or_create_owned(&s.labels))
                .observe(f64::from(r.time_to_first_token_ms) / 1000.0);
        }
        let tokens = [
            r.input_tokens,
            r.output_tokens,
            r.cache_read_input_tokens,
            r.cache_write_input_tokens,
        ];
        for (i, n) in tokens.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            s.tokens[i]
                .get_or_init(|| {
                    self.tokens.get_or_create_owned(&TokenLabels {
                        provider: Arc::clone(&s.labels.provider),
                        model: Arc::clone(&s.labels.model),
                        kind: TOKEN_KINDS[i],
                    })
                })
                .inc_by(n);
        }
        match r.cost_nano_usd {
            Some(0) => {}
            Some(nano) => {
                let cost = s
                    .cost
                    .get_or_init(|| self.cost.get_or_create_owned(&s.labels));
                cost.inc_by(nano);
            }
            None => {
                s.unpriced
                    .get_or_init(|| self.unpriced.get_or_create_owned(&s.labels))
                    .inc();
            }
        }
        if r.fallback_index > 0 {
            s.fallbacks
                .get_or_init(|| self.fallbacks.get_or_create_owned(&s.labels))
                .inc();
        }
        if !r.attempts.is_empty() {
            s.retries
                .get_or_init(|| self.retries.get_or_create_owned(&s.labels))
                .inc_by(r.attempts.len() as u64);
            for a in &r.attempts {
                let provider = provider_label(&a.provider, &s.labels, runtime);
                self.upstream_error(provider, attempt_class(&a.class));
            }
        }
        if let Some(class) = answer_class(r.status, &r.error_class) {
            self.upstream_error(Arc::clone(&s.labels.provider), class);
        }
        if let Some(refusal) = refusal
            && tollgate_proto::usage::refusal::BY_LIMITS.contains(&r.error_class.as_str())
        {
            self.limit_refusals.get_or_create(&refusal).inc();
        }
    }

    /// Counts one MCP tool call (not a model request: [`Metrics::observe`] never sees it).
    /// `server`: a configured server's name, or empty for an unknown tool (`none`).
    pub fn observe_mcp_call(&self, server: &str, status: u16) {
        let server = if server.is_empty() { "none" } else { server };
        self.mcp_calls
            .get_or_create(&McpCallLabels {
                server: server.to_owned(),
                status: STATUSES[status_slot(u32::from(status))],
            })
            .inc();
    }

    fn upstream_error(&self, provider: Arc<str>, class: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels { provider, class })
            .inc();
    }

    /// The series of a route, created on its first request.
    fn series(&self, labels: &RouteLabels) -> Arc<RouteSeries> {
        if let Some(s) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(labels)
        {
            return Arc::clone(s);
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let s = routes.entry(labels.clone()).or_insert_with(|| {
            Arc::new(RouteSeries {
                labels: labels.clone(),
                duration: self.duration.get_or_create_owned(labels),
                ttft: OnceLock::new(),
                requests: [const { OnceLock::new() }; STATUSES.len()],
                tokens: [const { OnceLock::new() }; TOKEN_KINDS.len()],
                cost: OnceLock::new(),
                unpriced: OnceLock::new(),
                retries: OnceLock::new(),
                fallbacks: OnceLock::new(),
            })
        });
        Arc::clone(s)
    }

    /// Writes the per-request families, each after its descriptor.
    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        family(enc, &REQUESTS, &self.requests)?;
        family(enc, &REQUEST_DURATION, &self.duration)?;
        family(enc, &TIME_TO_FIRST_TOKEN, &self.ttft)?;
        family(enc, &TOKENS, &self.tokens)?;
        family(enc, &COST, &self.cost)?;
        family(enc, &UNPRICED, &self.unpriced)?;
        family(enc, &RETRIES, &self.retries)?;
        family(enc, &FALLBACKS, &self.fallbacks)?;
        family(enc, &UPSTREAM_ERRORS, &self.upstream_errors)?;
        family(enc, &LIMIT_REFUSALS, &self.limit_refusals)
    }
}

/// The `provider` label of an attempt: the route's when it is the same provider, else the
/// configured name's `Arc` (an allocation only if the provider left the config meanwhile).
fn provider_label(name: &str, route: &RouteLabels, runtime: &RuntimeHandle) -> Arc<str> {
    if *route.provider == *name {
        return Arc::clone(&route.provider);
    }
    runtime
        .load()
        .and_then(|rt| rt.providers.get_key_value(name).map(|(k, _)| Arc::clone(k)))
        .unwrap_or_else(|| Arc::from(name))
}

/// Writes `def`'s descriptor and then `metric` (a family).
fn family(enc: &mut DescriptorEncoder<'_>, def: &Def, metric: &impl EncodeMetric) -> fmt::Result {
    metric.encode(enc.encode_descriptor(def.name, def.help, None, def.kind)?)
}

/// Writes one unlabelled counter.
pub fn counter(enc: &mut DescriptorEncoder<'_>, def: &Def, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(enc.encode_descriptor(def.name, def.help, None, def.kind)?)
}

/// Writes one unlabelled gauge.
pub fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    def: &Def,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    ConstGauge::new(value).encode(enc.encode_descriptor(def.name, def.help, None, def.kind)?)
}

/// Registers a data plane's metrics: its per-request families and, read at each scrape, its
/// config link, usage queue, refusals before authentication and provider key health.
pub fn register(dp: &Arc<DataPlane>, registry: &mut Registry) {
    registry.register_collector(Box::new(DataPlaneCollector(Arc::clone(dp))));
}

/// Registers a split data plane's usage reporter (delivery to the control plane, spool).
pub fn register_reporter(stats: Arc<ReporterStats>, registry: &mut Registry) {
    registry.register_collector(Box::new(ReporterCollector(stats)));
}

/// The text exposition (Prometheus text format 0.0.4) of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct DataPlaneCollector(Arc<DataPlane>);

impl Collector for DataPlaneCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let dp = &self.0;
        dp.metrics().encode(&mut enc)?;
        let refusals = dp.refusals();
        let mut m = enc.encode_descriptor(REFUSED.name, REFUSED.help, None, REFUSED.kind)?;
        for reason in crate::refusals::REASONS {
            ConstCounter::new(refusals.get(reason))
                .encode(m.encode_family(&[("reason", reason)])?)?;
        }
        let rt = dp.runtime().load();
        let (version, published_ms) = rt
            .as_ref()
            .map_or((0, 0), |rt| (rt.version, rt.created_at_unix_ms));
        let applied_ms = if rt.is_some() {
            dp.runtime().applied_at_unix_ms()
        } else {
            0
        };
        gauge(&mut enc, &CONFIG_VERSION, version)?;
        gauge(&mut enc, &CONFIG_PUBLISHED, seconds(published_ms))?;
        gauge(&mut enc, &CONFIG_APPLIED, seconds(applied_ms))?;
        let lag_ms = if rt.is_some() {
            applied_ms.saturating_sub(published_ms).max(0)
        } else {
            0
        };
        gauge(&mut enc, &CONFIG_LAG, seconds(lag_ms))?;
        let link = dp.config_link();
        gauge(
            &mut enc,
            &CONTROL_PLANE_CONNECTED,
            u64::from(link.connected()),
        )?;
        if link.source() == crate::source::ConfigSource::Remote {
            gauge(
                &mut enc,
                &CONTROL_PLANE_CONTACT,
                seconds(link.last_contact_unix_ms()),
            )?;
        }
        gauge(&mut enc, &USAGE_QUEUE, dp.usage.queued() as u64)?;
        counter(&mut enc, &USAGE_QUEUE_DROPPED, dp.usage.dropped())?;
        counter(
            &mut enc,
            &USAGE_CONTENT_DROPPED,
            dp.content_budget().dropped_total(),
        )?;
        gauge(
            &mut enc,
            &USAGE_CONTENT_HELD,
            dp.content_budget().held() as u64,
        )?;
        if let Some(rt) = &rt {
            key_health(&mut enc, rt, health::now_ms())?;
        }
        family(&mut enc, &MCP_TOOL_CALLS, &dp.metrics().mcp_calls)?;
        let catalog = dp.mcp().catalog();
        let mut up = enc.encode_descriptor(
            MCP_SERVER_UP.name,
            MCP_SERVER_UP.help,
            None,
            MCP_SERVER_UP.kind,
        )?;
        for server in catalog.servers() {
            let ready = server.state == crate::mcp::catalog::State::Ready;
            ConstGauge::new(u64::from(ready))
                .encode(up.encode_family(&[("server", &*server.name)])?)?;
        }
        Ok(())
    }
}

fn seconds(unix_ms: i64) -> f64 {
    unix_ms as f64 / 1000.0
}

/// The health of every provider key of `rt`, labelled by provider and key id. Not by key name:
/// `/metrics` is served without authentication on the inference port, and ids (random) say
/// less about the deployment than names; the admin API maps ids to names.
fn key_health(
    enc: &mut DescriptorEncoder<'_>,
    rt: &crate::runtime::Runtime,
    now: u64,
) -> fmt::Result {
    let mut keys: Vec<(&str, &str, &KeyHealth)> = rt
        .providers
        .values()
        .flat_map(|p| p.keys.iter().map(move |k| (&*p.name, &*k.id, &*k.health)))
        .collect();
    keys.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    type Read = fn(&KeyHealth, u64) -> u64;
    let series: [(&Def, Read); 3] = [
        (&KEY_EJECTED, |h, now| {
            u64::from(h.state(now) != health::State::InService)
        }),
        (&KEY_FAILURES, |h, _| u64::from(h.consecutive_failures())),
        (&KEY_EJECTIONS, |h, _| h.ejections_total()),
    ];
    for (def, value) in series {
        let mut m = enc.encode_descriptor(def.name, def.help, None, def.kind)?;
        for (provider, key_id, h) in &keys {
            let labels = [("provider", *provider), ("key_id", *key_id)];
            let m = m.encode_family(&labels)?;
            let v = value(h, now);
            if def.kind == MetricType::Counter {
                ConstCounter::new(v).encode(m)?;
            } else {
                ConstGauge::new(v).encode(m)?;
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
struct ReporterCollector(Arc<ReporterStats>);

impl Collector for ReporterCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        counter(&mut enc, &USAGE_RECEIVED, s.received_total())?;
        counter(&mut enc, &USAGE_ACKED, s.acked_total())?;
        gauge(&mut enc, &USAGE_PENDING, s.pending())?;
        counter(&mut enc, &USAGE_DROPPED, s.dropped_total())?;
        gauge(&mut enc, &USAGE_STREAM_CONNECTED, u64::from(s.connected()))
    }
}

#[cfg(test)]
pub(crate) mod exposition;
#[cfg(test)]
mod tests;
